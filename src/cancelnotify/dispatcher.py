"""The sender: claim due notifications, render, send over SMTP, record, move the state machine."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import time
import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cancelnotify import repository
from cancelnotify.clock import Clock, utcnow
from cancelnotify.errors import is_retryable_db_error
from cancelnotify.mail.message import build_message_bytes
from cancelnotify.mail.render import Renderer
from cancelnotify.mail.transport import Mailer, SendResult
from cancelnotify.metrics import Metrics, code_class
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.services.refunds import render_payload
from cancelnotify.settings import Settings
from cancelnotify.states import Outcome, Status, Transition, after_attempt

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    # A random suffix: a restarted pod with the same name must not look like the old owner.
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Dispatcher:
    """One per process. `wake()` after an ingest commit; it also polls, so no wake-up is needed."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        renderer: Renderer,
        mailer: Mailer,
        *,
        clock: Clock = utcnow,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.renderer = renderer
        self.mailer = mailer
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.worker = settings.worker_id or default_worker_id()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[uuid.UUID, asyncio.Task[None]] = {}

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cancelnotify-dispatcher")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming, let in-flight sends finish within the grace period, release the rest."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._inflight:
            _, pending = await asyncio.wait(
                list(self._inflight.values()), timeout=self.settings.shutdown_grace_seconds
            )
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    # -- loop -----------------------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._fill()
            except Exception as exc:
                if not is_retryable_db_error(exc):
                    log.exception("dispatcher claim failed")
                else:
                    log.warning("dispatcher: database unavailable", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_seconds)
            self._wake.clear()

    async def _fill(self) -> None:
        while not self._stopping:
            room = self.settings.dispatcher_concurrency - len(self._inflight)
            if room <= 0:
                return
            claims = await self._claim(room)
            for claim in claims:
                task = asyncio.create_task(self._deliver(claim))
                self._inflight[claim.id] = task
                task.add_done_callback(functools.partial(self._done, claim.id))
            if len(claims) < room:
                return

    def _done(self, notification_id: uuid.UUID, _task: object = None) -> None:
        self._inflight.pop(notification_id, None)
        self._wake.set()  # room for more

    async def _claim(self, limit: int) -> list[repository.Claim]:
        async with self.sessionmaker.begin() as session:
            return await repository.claim_due(
                session,
                worker=self.worker,
                now=self.clock(),
                lease=self.settings.lease_seconds,
                limit=limit,
            )

    # -- one notification -----------------------------------------------------------------
    async def _deliver(self, claim: repository.Claim) -> None:
        if claim.rescued:
            self.metrics.lease_rescues.inc()
        trace = {"notification_id": str(claim.id), "request_id": claim.request_id}
        log.info(
            "notification claimed",
            extra={**trace, "attempt": claim.attempt, "rescued": claim.rescued},
        )
        started = self.clock()
        t0 = time.perf_counter()
        subject = body_text = None
        if started > claim.send_by:
            result = SendResult(Outcome.permanent, None, "send-by deadline passed before sending")
            transition = Transition(Status.failed, None, "lifetime_exceeded")
        else:
            try:
                payload = await render_payload(
                    self.sessionmaker, claim.kind, claim.cancellation_id, claim.payload
                )
                event = CancellationEventV1.model_validate(payload)
                rendered = self.renderer.render(
                    event,
                    notification_id=claim.id,
                    reference=claim.reference,
                    template=claim.kind,
                    locale=claim.locale,
                )
            except Exception as exc:  # a bad payload or template bug must not retry forever
                log.exception("render failed", extra={"notification_id": str(claim.id)})
                result = SendResult(Outcome.permanent, None, f"render: {type(exc).__name__}")
                transition = Transition(Status.failed, None, "render_error")
            else:
                subject, body_text = rendered.subject, rendered.text
                message = build_message_bytes(
                    rendered,
                    self.settings,
                    to=claim.recipient,
                    to_name=event.customer.first_name,
                    message_id=claim.message_id,
                )
                result = await self._send_with_lease(claim, message)
                transition = after_attempt(
                    result.outcome,
                    attempt=claim.attempt,
                    now=self.clock(),
                    send_by=claim.send_by,
                    retry_base=self.settings.retry_base_seconds,
                    retry_max=self.settings.retry_max_seconds,
                )
        self._observe(result, time.perf_counter() - t0)
        log.info(
            "send result",
            extra={
                **trace,
                "attempt": claim.attempt,
                "outcome": result.outcome.value,
                "smtp_code": result.code,
                "status": transition.status.value,
                "failure_reason": transition.failure_reason,
                "duration_ms": int((time.perf_counter() - t0) * 1000),
            },
        )
        await self._record(
            claim,
            started,
            int((time.perf_counter() - t0) * 1000),
            result,
            transition,
            subject,
            body_text,
        )

    def _observe(self, result: SendResult, seconds: float) -> None:
        m = self.metrics
        m.attempts.labels(result.outcome.value).inc()
        m.smtp_replies.labels(code_class(result.code)).inc()
        m.send_seconds.observe(seconds)
        if result.outcome is Outcome.ambiguous:
            m.ambiguous_sends.inc()

    async def _send_with_lease(self, claim: repository.Claim, data: bytes) -> SendResult:
        from email.utils import parseaddr

        sender = parseaddr(self.settings.mail_from)[1]
        heartbeat = asyncio.create_task(self._heartbeat(claim.id))
        try:
            return await self.mailer.send(sender, claim.recipient, data)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self, notification_id: uuid.UUID) -> None:
        """Extend the lease while a send is live, so a slow relay is not mistaken for a crash."""
        lease = self.settings.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            try:
                async with self.sessionmaker.begin() as session:
                    await repository.extend_lease(
                        session,
                        notification_id,
                        worker=self.worker,
                        until=self.clock() + timedelta(seconds=lease),
                    )
            except Exception as exc:
                log.warning("lease extension failed", extra={"error": type(exc).__name__})

    async def _record(
        self,
        claim: repository.Claim,
        started: datetime,
        duration_ms: int,
        result: SendResult,
        transition: Transition,
        subject: str | None,
        body_text: str | None,
    ) -> None:
        # The SMTP outcome is a fact; keep trying to write it while the lease still protects us.
        deadline = time.monotonic() + self.settings.lease_seconds
        delay = 0.1
        while True:
            try:
                async with self.sessionmaker.begin() as session:
                    owned = await repository.record_attempt(
                        session,
                        claim=claim,
                        worker=self.worker,
                        started_at=started,
                        duration_ms=duration_ms,
                        outcome=result.outcome,
                        smtp_code=result.code,
                        smtp_text=result.text[:2000],
                        status=transition.status,
                        next_attempt_at=transition.next_attempt_at,
                        failure_reason=transition.failure_reason,
                        subject=subject,
                        body_text=body_text,
                        now=self.clock(),
                    )
                if not owned:
                    log.warning(
                        "lease lost before recording", extra={"notification": str(claim.id)}
                    )
                return
            except Exception as exc:
                if not is_retryable_db_error(exc) or time.monotonic() > deadline:
                    log.exception("could not record attempt", extra={"notification": str(claim.id)})
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
