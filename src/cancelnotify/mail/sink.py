"""An in-process SMTP server (aiosmtpd) that records every message: the `dev` mailbox and tests."""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from cancelnotify.clock import utcnow


@dataclass
class Captured:
    """One accepted message as the server saw it."""

    mail_from: str
    recipients: list[str]
    data: bytes
    received_at: datetime = field(default_factory=utcnow)

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)  # noqa: S101
        return parsed

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"  # noqa: S101
        content = body.get_content()
        assert isinstance(content, str)  # noqa: S101
        return content


@dataclass
class Fault:
    """Make the sink answer `reply` at `stage` (rcpt or data) for the next `times` messages."""

    stage: str
    reply: str
    times: int = 1


class RecordingHandler:
    """aiosmtpd handler that stores accepted messages and can refuse, delay or drop on demand."""

    def __init__(self, limit: int = 10_000) -> None:
        self.messages: list[Captured] = []
        self.limit = limit
        self.faults: list[Fault] = []
        self.data_delay: float = 0.0
        self.drop_after_data = 0  # store the message, then cut the connection without a reply
        self.received = asyncio.Event()

    def fail(self, stage: str, reply: str, times: int = 1) -> None:
        self.faults.append(Fault(stage, reply, times))

    def _fault(self, stage: str) -> str | None:
        for fault in self.faults:
            if fault.stage == stage and fault.times > 0:
                fault.times -= 1
                return fault.reply
        return None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self._fault("rcpt")
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._fault("data")
        if reply:
            return reply
        content = envelope.original_content or envelope.content or b""
        data = content if isinstance(content, bytes) else content.encode()
        self.messages.append(
            Captured(str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos], data)
        )
        del self.messages[: -self.limit]
        self.received.set()
        if self.drop_after_data > 0:
            self.drop_after_data -= 1
            transport: Any = session.transport if hasattr(session, "transport") else None
            if transport is None:
                transport = server.transport
            transport.abort()
            return "250 OK"  # never reaches the client
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        return "250 2.0.0 OK queued"


async def start_sink(
    handler: RecordingHandler, host: str = "127.0.0.1", port: int = 0
) -> asyncio.Server:
    """Serve SMTP on the running loop; port 0 picks a free port (read it from the server)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="cancelnotify-sink",
            enable_SMTPUTF8=True,
            data_size_limit=10 * 1024 * 1024,
        ),
        host=host,
        port=port,
    )


def sink_port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])
