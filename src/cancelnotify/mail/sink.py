"""An in-process SMTP server (aiosmtpd) that records every message: the `dev` mailbox and tests."""

from __future__ import annotations

import asyncio
import email
import email.policy
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any, cast

from aiosmtpd.smtp import SMTP, Envelope, Session

from cancelnotify.clock import utcnow

# Where a fault or a hold can be placed: the TCP connection before the greeting, the reply to
# MAIL FROM, to RCPT TO, and the reply after the final dot (the message is stored by then).
STAGES = ("connect", "mail", "rcpt", "data")


@dataclass
class Captured:
    """One accepted message as the server saw it."""

    mail_from: str
    recipients: list[str]
    data: bytes
    received_at: datetime = field(default_factory=utcnow)
    mail_options: list[str] = field(default_factory=list)  # e.g. ["BODY=8BITMIME"]

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
    """Answer `reply` at `stage` (mail, rcpt or data) for the next `times` messages."""

    stage: str
    reply: str
    times: int = 1


@dataclass
class Hold:
    """Stop at `stage` for the next `times` sessions: `reached` is set, then wait for `release`."""

    stage: str
    times: int = 1
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    seen: int = 0


class RecordingHandler:
    """aiosmtpd handler that stores accepted messages and can refuse, delay, hold or drop."""

    def __init__(self, limit: int = 10_000) -> None:
        self.messages: list[Captured] = []
        self.limit = limit
        self.faults: list[Fault] = []
        self.holds: list[Hold] = []
        self.data_delay: float = 0.0
        self.data_delay_times = -1  # how many replies get `data_delay`; -1 means all
        self.drop_after_data = 0  # store the message, then cut the connection without a reply
        self.received = asyncio.Event()
        self.connections = 0  # TCP connections accepted, ever
        self.commands: dict[str, int] = {stage: 0 for stage in STAGES}
        self._live: set[asyncio.Transport] = set()

    # -- fault injection -----------------------------------------------------------------
    def fail(self, stage: str, reply: str, times: int = 1) -> None:
        if stage not in STAGES[1:]:
            raise ValueError(f"unknown stage {stage!r}")
        self.faults.append(Fault(stage, reply, times))

    def hold(self, stage: str, times: int = 1) -> Hold:
        """Block the next `times` sessions at `stage` until the returned hold is released."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        held = Hold(stage, times)
        self.holds.append(held)
        return held

    def delay_data(self, seconds: float, times: int = -1) -> None:
        """Store the message, then wait `seconds` before the 250 (past a client's timeout)."""
        self.data_delay = seconds
        self.data_delay_times = times

    def drop_connections(self) -> int:
        """Cut every open connection without a word (a relay restart, a NAT timeout)."""
        live = list(self._live)
        for transport in live:
            transport.abort()
        return len(live)

    def _fault(self, stage: str) -> str | None:
        for fault in self.faults:
            if fault.stage == stage and fault.times > 0:
                fault.times -= 1
                return fault.reply
        return None

    async def _stage(self, stage: str) -> None:
        self.commands[stage] += 1
        for held in self.holds:
            if held.stage == stage and held.times > 0:
                held.times -= 1
                held.seen += 1
                held.reached.set()
                await held.release.wait()
                return

    # -- connection tracking (called by SinkSMTP) ----------------------------------------
    def opened(self, transport: asyncio.Transport) -> None:
        self.connections += 1
        self._live.add(transport)

    def closed(self, transport: asyncio.Transport | None) -> None:
        if transport is not None:
            self._live.discard(transport)

    # -- aiosmtpd hooks ------------------------------------------------------------------
    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        await self._stage("mail")
        reply = self._fault("mail")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        await self._stage("rcpt")
        reply = self._fault("rcpt")
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._fault("data")
        if reply:
            await self._stage("data")
            return reply
        content = envelope.original_content or envelope.content or b""
        data = content if isinstance(content, bytes) else content.encode()
        self.messages.append(
            Captured(
                str(envelope.mail_from),
                [str(r) for r in envelope.rcpt_tos],
                data,
                mail_options=list(envelope.mail_options),
            )
        )
        del self.messages[: -self.limit]
        self.received.set()
        await self._stage("data")
        if self.drop_after_data > 0:
            self.drop_after_data -= 1
            transport: Any = server.transport
            transport.abort()
            return "250 OK"  # never reaches the client
        if self.data_delay and self.data_delay_times != 0:
            if self.data_delay_times > 0:
                self.data_delay_times -= 1
            await asyncio.sleep(self.data_delay)
        return "250 2.0.0 OK queued"


class SinkSMTP(SMTP):
    """aiosmtpd's server with connection tracking and a hold before the greeting."""

    def __init__(self, handler: RecordingHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._recorder = handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # not the STARTTLS re-entry
            self._recorder.opened(cast(asyncio.Transport, transport))
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._recorder.closed(cast("asyncio.Transport | None", self.transport))
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        await self._recorder._stage("connect")
        await super()._handle_client()


async def start_sink(
    handler: RecordingHandler, host: str = "127.0.0.1", port: int = 0, **smtp_kwargs: Any
) -> asyncio.Server:
    """Serve SMTP on the running loop; port 0 picks a free port (read it from the server)."""
    loop = asyncio.get_running_loop()
    options: dict[str, Any] = {
        "hostname": "cancelnotify-sink",
        "enable_SMTPUTF8": True,
        "data_size_limit": 10 * 1024 * 1024,
    }
    options.update(smtp_kwargs)

    def factory() -> SinkSMTP:
        with warnings.catch_warnings():
            # A test relay may demand AUTH over plain TCP on loopback; aiosmtpd warns each time.
            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            return SinkSMTP(handler, **options)

    return await loop.create_server(factory, host=host, port=port)


def sink_port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])
