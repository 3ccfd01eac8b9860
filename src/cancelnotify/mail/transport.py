"""SMTP delivery over a small pool of reused aiosmtplib connections, with reply classification."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass

import aiosmtplib

from cancelnotify.settings import Settings
from cancelnotify.states import Outcome

log = logging.getLogger(__name__)

# RFC 5321 §4.2.1; 552 "too many recipients" is treated like 452 (RFC 5321 §4.5.3.1.10).
CONFIG_CODES = frozenset({530, 535, 534, 538})


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    code: int | None
    text: str


def classify(code: int, text: str) -> Outcome:
    """Map an SMTP reply code onto what we do next (RELIABILITY.md §2)."""
    if 200 <= code < 300:
        return Outcome.sent
    if code in CONFIG_CODES:
        return Outcome.config
    if code == 552 and "too many recipients" in text.lower():
        return Outcome.transient
    if 400 <= code < 500:
        return Outcome.transient
    return Outcome.permanent


class Mailer:
    """Keeps up to SMTP_POOL_SIZE connections open and sends one message per call."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._slots = asyncio.Semaphore(settings.smtp_pool_size)
        self._closed = False

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context() if s.smtp_security != "none" else None
        if context is not None and not s.smtp_validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            timeout=s.smtp_connect_timeout_seconds,
            use_tls=s.smtp_security == "tls",
            start_tls=True if s.smtp_security == "starttls" else False,  # noqa: SIM210
            validate_certs=s.smtp_validate_certs,
            tls_context=context,
            local_hostname="cancelnotify.localdomain",
        )

    async def _acquire(self) -> aiosmtplib.SMTP:
        await self._slots.acquire()
        try:
            client = self._idle.get_nowait()
        except asyncio.QueueEmpty:
            client = self._new_client()
        if not client.is_connected:
            try:
                await client.connect()
            except BaseException:
                self._slots.release()
                raise
        return client

    def _release(self, client: aiosmtplib.SMTP, *, reuse: bool) -> None:
        if reuse and client.is_connected and not self._closed:
            self._idle.put_nowait(client)
        else:
            client.close()
        self._slots.release()

    async def send(self, sender: str, recipient: str, message: bytes) -> SendResult:
        """One SMTP transaction; never raises for SMTP or network trouble, it classifies it."""
        s = self.settings
        try:
            client = await self._acquire()
        except aiosmtplib.SMTPAuthenticationError as exc:
            return SendResult(Outcome.config, exc.code, exc.message)
        except aiosmtplib.SMTPResponseException as exc:
            return SendResult(classify(exc.code, exc.message), exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return SendResult(Outcome.transient, None, f"connect: {type(exc).__name__}: {exc}")
        reuse = True
        phase = "MAIL FROM"
        try:
            await client.mail(sender, timeout=s.smtp_command_timeout_seconds)
            phase = "RCPT TO"
            await client.rcpt(recipient, timeout=s.smtp_command_timeout_seconds)
            phase = "DATA"
            response = await client.data(message, timeout=s.smtp_data_timeout_seconds)
            return SendResult(Outcome.sent, response.code, response.message)
        except aiosmtplib.SMTPResponseException as exc:
            outcome = classify(exc.code, exc.message)
            if exc.code == 421:
                reuse = False  # the server is closing this channel (RFC 5321 §3.8)
            else:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await client.rset(timeout=s.smtp_command_timeout_seconds)
            return SendResult(outcome, exc.code, f"{phase}: {exc.message}")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            reuse = False
            # Once the message went out, a lost reply may hide an accepted mail (RFC 1047).
            outcome = Outcome.ambiguous if phase == "DATA" else Outcome.transient
            return SendResult(outcome, None, f"{phase}: {type(exc).__name__}: {exc}")
        finally:
            self._release(client, reuse=reuse)

    async def check(self) -> None:
        """Connect (or NOOP a pooled connection) to prove the relay answers; raises if not."""
        client = await self._acquire()
        ok = False
        try:
            await client.noop(timeout=self.settings.smtp_command_timeout_seconds)
            ok = True
        finally:
            self._release(client, reuse=ok)

    async def close(self) -> None:
        self._closed = True
        while not self._idle.empty():
            client = self._idle.get_nowait()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), 2)
            client.close()
