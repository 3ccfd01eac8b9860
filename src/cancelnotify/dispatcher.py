"""The sender: claim due notifications, render, send over SMTP, record, move the state machine.

Duplicates, and where they can still come from (RELIABILITY.md §1-2):
- A claim is a lease (`locked_until`) kept alive by a heartbeat while the send is live, so a
  slow relay is never mistaken for a dead replica. Every write after the claim is fenced on
  (owner, claim number), so a replica that lost its lease cannot overwrite a rescuer's outcome.
- A replica that dies before DATA leaves a row that another replica rescues after the lease:
  nothing reached the relay, so the rescue sends the only copy.
- A replica that dies (or a send that is cut) after DATA began may have delivered already; the
  rescue resends with the same Message-ID. That is the one duplicate window SMTP cannot close;
  cuts we see are counted in `cancelnotify_ambiguous_sends_total`.
- Graceful shutdown: claimed rows that have not reached DATA are released at once (no copy on
  the wire, no attempt spent). Sends already in DATA get `shutdown_grace_seconds` to finish;
  past that they are cut and recorded as ambiguous, due again after backoff.
"""

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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cancelnotify.clock import Clock, utcnow
from cancelnotify.errors import is_retryable_db_error
from cancelnotify.mail.message import wire_message
from cancelnotify.mail.render import Renderer
from cancelnotify.mail.transport import Mailer, Phase, SendProgress, SendResult, WireMessage
from cancelnotify.metrics import Metrics, code_class
from cancelnotify.repository import Attempt, Claim, Lease
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.services.refunds import render_payload
from cancelnotify.settings import Settings
from cancelnotify.states import LIFETIME_EXCEEDED, Outcome, Status, Transition, after_attempt
from cancelnotify.store import Store

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def instance_id(name: str | None) -> str:
    """The lease owner: the replica name plus a random suffix, fresh on every start.

    A restarted pod that reuses its name (or a fixed WORKER_ID) must not look like the old
    owner: its rows are rescued by lease expiry like anyone's, never adopted or stranded.
    """
    return f"{name or default_worker_id()}:{secrets.token_hex(3)}"


class Recorder:
    """Group commit of send outcomes: the ones that finish while a write runs share the next.

    An outcome that finds no write running is written at once, alone: a trickle of sends waits
    for nothing. In a storm, sends finish while the previous write is on its way to PostgreSQL
    and the next statement carries all of them (up to `limit`): fewer statements and round
    trips per email, and the sooner each outcome lands. One write runs at a time per process.

    A batch fails as a whole; if that was not the database being away, each of its outcomes
    is written alone so one bad row cannot keep the others from landing (an unrecorded send
    would be resent after its lease runs out).
    """

    def __init__(self, store: Store, worker: str, clock: Clock, *, limit: int = 64) -> None:
        self.store = store
        self.worker = worker
        self.clock = clock
        self.limit = limit
        self.writes = 0  # statements run (tests count them)
        self._pending: list[tuple[Claim, Attempt, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, claim: Claim, attempt: Attempt) -> bool:
        """Write the outcome; True if this worker still owned the claim (the fence held)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((claim, attempt, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_pending(), name="cancelnotify-record")
        return await future

    async def _write_pending(self) -> None:
        batch: list[tuple[Claim, Attempt, asyncio.Future[bool]]] = []
        try:
            while self._pending:
                batch = self._pending[: self.limit]
                del self._pending[: self.limit]
                await self._write_batch(batch)
        except BaseException as exc:  # cancelled with the event loop: wake whoever still waits
            _fail(batch + self._pending, exc)
            self._pending.clear()
            raise
        finally:
            self._writer = None

    async def _write_batch(self, batch: list[tuple[Claim, Attempt, asyncio.Future[bool]]]) -> None:
        try:
            await self._write(batch)
        except Exception as exc:
            if len(batch) == 1 or is_retryable_db_error(exc):
                _fail(batch, exc)  # each caller retries while the database is away
                return
            for one in batch:
                try:
                    await self._write([one])
                except Exception as alone:
                    _fail([one], alone)

    async def _write(self, batch: list[tuple[Claim, Attempt, asyncio.Future[bool]]]) -> None:
        self.writes += 1
        owned = await self.store.record(
            [(claim, attempt) for claim, attempt, _ in batch], worker=self.worker, now=self.clock()
        )
        for claim, _, future in batch:
            if not future.done():
                future.set_result(claim.id in owned)


def _fail(batch: list[tuple[Claim, Attempt, asyncio.Future[bool]]], exc: BaseException) -> None:
    for _, _, future in batch:
        if future.done():
            continue
        if isinstance(exc, Exception):
            future.set_exception(exc)
        else:
            future.cancel()


@dataclass
class _Job:
    claim: Claim
    event: CancellationEventV1 | None = None  # validated at ingest when the row was handed over
    progress: SendProgress = field(default_factory=SendProgress)
    task: asyncio.Task[None] | None = None
    started: bool = False


class Dispatcher:
    """One per process. `wake()` after an ingest commit; it also polls, so no wake-up is needed."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        sessionmaker: async_sessionmaker[AsyncSession],
        renderer: Renderer,
        mailer: Mailer,
        *,
        clock: Clock = utcnow,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.sessionmaker = sessionmaker  # read-only: a follow-up's refund event
        self.renderer = renderer
        self.mailer = mailer
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.worker = instance_id(settings.worker_id)
        self.sender = parseaddr(settings.mail_from)[1]
        self._wake = asyncio.Event()
        self._stopping = False
        self._stop_deadline = float("inf")
        self._task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self.recorder = Recorder(store, self.worker, clock)
        self._jobs: dict[uuid.UUID, _Job] = {}
        self._reserved = 0  # slots promised to ingests whose statement is still running
        self._handback: list[uuid.UUID] = []  # handed over while stopping: release, don't send
        # Refill when a quarter of the slots are free: a claim is a transaction of 3 statements,
        # so claiming per finished send would cost more than the send (profiled).
        self._batch = max(1, settings.dispatcher_concurrency // 4)
        self._backlog = True  # rows may be due: the last claim was full, or one was queued since
        self._queued = 0  # rows queued (or announced) so far: a claim sees only those before it
        # Pause after a 530/535: monotonic end of the pause; then one probe send at a time.
        self._paused_until: float | None = None
        self._probe: uuid.UUID | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cancelnotify-dispatcher")
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="cancelnotify-lease")

    def wake(self) -> None:
        """A row was queued (or became due): claim now."""
        self._note_queued()
        self._wake.set()

    def _note_queued(self) -> None:
        self._backlog = True
        self._queued += 1

    async def stop(self) -> None:
        """Stop claiming, let in-flight sends finish within the grace period, release the rest."""
        self._stopping = True
        grace = self.settings.shutdown_grace_seconds
        self._stop_deadline = time.monotonic() + grace
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        jobs = list(self._jobs.values())
        tasks = {job.task: job for job in jobs if job.task is not None}
        # Claimed but nothing on the wire yet: give them back now rather than after the grace.
        for task, job in tasks.items():
            if job.progress.phase is Phase.waiting:
                task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                # A finished send only has its DB write left, which bounds itself: never cut it.
                if tasks[task].progress.phase is not Phase.done:
                    task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        # A task cancelled before its first step never ran its own hand-back.
        unstarted = [job.claim.id for job in jobs if not job.started] + self._handback
        if unstarted:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self.store.release(unstarted, worker=self.worker, now=self.clock())

    @property
    def inflight(self) -> int:
        return len(self._jobs)

    @property
    def paused(self) -> bool:
        return self._paused_until is not None

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
            timeout = self.settings.poll_interval_seconds
            if self._paused_until is not None:
                timeout = min(timeout, max(0.01, self._paused_until - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    async def _fill(self) -> None:
        while not self._stopping:
            room = self._room()
            if self._paused_until is not None:
                if time.monotonic() < self._paused_until or self._probe is not None:
                    return
                room = 1  # the pause is over: probe with one send before opening up
            if room <= 0 or (self._jobs and room < self._batch):
                return  # a finishing send wakes us; claiming one row at a time costs a lot
            t0 = time.monotonic()  # before the claim statement: the lease surely lasts to t0+L
            queued = self._queued
            claims = await self._claim(room)
            # Full, or a row was queued while the statement ran (its snapshot may have missed
            # it): more may be due, so rows are not handed over ahead of them.
            self._backlog = len(claims) == room or self._queued != queued
            for claim in claims:
                self._start(_Job(claim), t0)
                if self._paused_until is not None:
                    self._probe = claim.id
            if len(claims) < room or self._paused_until is not None:
                return

    def _room(self) -> int:
        return self.settings.dispatcher_concurrency - len(self._jobs) - self._reserved

    def _start(self, job: _Job, t0: float) -> None:
        job.progress.lease_until = t0 + self.settings.lease_seconds
        job.task = asyncio.create_task(self._deliver(job))
        self._jobs[job.claim.id] = job
        job.task.add_done_callback(functools.partial(self._done, job.claim.id))

    # -- hand-over from ingest ------------------------------------------------------------
    def reserve(self) -> Lease | None:
        """A slot for the row an ingest is about to insert, or None: insert it `queued`.

        With a slot, the ingest statement inserts the notification already claimed by this
        replica (`sending`, leased, attempt 1) and hands it over in memory: no claim statement,
        no payload read back, no second validation. Only when nothing older is waiting (the
        last claim found every due row) and there is room, so the queue stays first come,
        first served; a row whose replica dies before sending is rescued after the lease.
        """
        if (
            self._task is None
            or self._stopping
            or self._paused_until is not None
            or self._backlog
            or self._room() <= 0
        ):
            self._note_queued()  # from now on until a claim finds the queue empty: queue too
            return None
        self._reserved += 1
        return Lease(self.worker, self.settings.lease_seconds, time.monotonic())

    def adopt(self, lease: Lease, claim: Claim, event: CancellationEventV1) -> None:
        """Send a row that the ingest committed under `lease`."""
        self._reserved -= 1
        if self._stopping:
            self._handback.append(claim.id)  # released by stop(); else rescued after the lease
            return
        self.metrics.handovers.inc()
        self._start(_Job(claim, event), lease.started)

    def cancel(self, lease: Lease) -> None:
        """The reserved slot was not used (a duplicate, or the insert failed)."""
        self._reserved -= 1

    def _done(self, notification_id: uuid.UUID, _task: object = None) -> None:
        self._jobs.pop(notification_id, None)
        probe_done = self._probe == notification_id
        if probe_done:
            self._probe = None
        room = self._room()
        # Claim again only if the last claim was cut short by our room: otherwise nothing was
        # left due and an empty claim is a wasted statement per email (new rows wake us; the
        # poll finds retries and other replicas' rows).
        if probe_done or (self._backlog and room >= self._batch):
            self._wake.set()

    async def _claim(self, limit: int) -> list[Claim]:
        return await self.store.claim(
            worker=self.worker,
            now=self.clock(),
            lease=self.settings.lease_seconds,
            limit=limit,
            exclude=list(self._jobs),
        )

    # -- pause on configuration errors (530/535) ------------------------------------------
    def _pause(self, result: SendResult) -> None:
        seconds = self.settings.smtp_auth_pause_seconds
        self._paused_until = time.monotonic() + seconds
        self.metrics.sending_paused.set(1)
        log.error(
            "SMTP relay refused our credentials or requires AUTH: sending PAUSED; fix "
            "CANCELNOTIFY_SMTP_USERNAME/PASSWORD; will probe again",
            extra={"smtp_code": result.code, "pause_seconds": seconds, "worker": self.worker},
        )

    def _settle_pause(self, claim: Claim, result: SendResult) -> None:
        if result.outcome is Outcome.config:
            self._pause(result)
        elif self._paused_until is not None and self._probe == claim.id:
            self._paused_until = None
            self.metrics.sending_paused.set(0)
            log.warning(
                "SMTP relay accepts us again: sending resumed", extra={"worker": self.worker}
            )

    # -- one notification -----------------------------------------------------------------
    async def _deliver(self, job: _Job) -> None:
        job.started = True
        claim = job.claim
        if claim.rescued:
            self.metrics.lease_rescues.inc()
        trace = {"notification_id": str(claim.id), "request_id": claim.request_id}
        log.debug(
            "notification claimed",
            extra={**trace, "attempt": claim.attempt, "rescued": claim.rescued},
        )
        started = self.clock()
        t0 = time.perf_counter()
        subject = body_text = None
        try:
            if started > claim.send_by:
                result = SendResult(Outcome.expired, None, "send-by deadline passed before sending")
                transition = Transition(Status.failed, None, LIFETIME_EXCEEDED)
            else:
                try:
                    event = job.event or await self._event(claim)
                    rendered = self.renderer.render(
                        event,
                        notification_id=claim.id,
                        reference=claim.reference,
                        template=claim.kind,
                        locale=claim.locale,
                    )
                except Exception as exc:
                    if is_retryable_db_error(exc):  # the follow-up's lookup: nothing was sent
                        result = SendResult(Outcome.transient, None, "render: database away")
                        transition = self._transition(claim, result)
                    else:  # a bad payload or template bug must not retry forever
                        log.exception("render failed", extra={"notification_id": str(claim.id)})
                        result = SendResult(
                            Outcome.permanent, None, f"render: {type(exc).__name__}"
                        )
                        transition = Transition(Status.failed, None, "render_error")
                else:
                    subject, body_text = rendered.subject, rendered.text
                    message = wire_message(
                        rendered,
                        self.settings,
                        to=claim.recipient,
                        to_name=event.customer.first_name,
                        message_id=claim.message_id,
                    )
                    result = await self._send_with_lease(job, message)
                    transition = self._transition(claim, result)
        except asyncio.CancelledError:
            await self._abandon(job, started, int((time.perf_counter() - t0) * 1000))
            raise
        job.progress.phase = Phase.done
        seconds = time.perf_counter() - t0
        self._observe(claim, result, seconds)
        self._settle_pause(claim, result)
        log.info(
            "send result",
            extra={
                **trace,
                "attempt": claim.attempt,
                "rescued": claim.rescued or None,
                "outcome": result.outcome.value,
                "smtp_code": result.code,
                "status": transition.status.value,
                "failure_reason": transition.failure_reason,
                "duration_ms": int(seconds * 1000),
            },
        )
        await self._record(
            claim, started, int(seconds * 1000), result, transition, subject, body_text
        )

    async def _event(self, claim: Claim) -> CancellationEventV1:
        # A follow-up (refund_completed) merges its refund event into the payload.
        payload = await render_payload(
            self.sessionmaker, claim.kind, claim.cancellation_id, claim.payload
        )
        if isinstance(payload, str):  # JSON text from PostgreSQL: half the cost of a dict
            return CancellationEventV1.model_validate_json(payload)
        return CancellationEventV1.model_validate(payload)

    def _transition(self, claim: Claim, result: SendResult) -> Transition:
        now = self.clock()
        resume_at = None
        if result.outcome is Outcome.config:
            resume_at = now + timedelta(seconds=self.settings.smtp_auth_pause_seconds)
        return after_attempt(
            result.outcome,
            attempt=claim.failures + 1,
            now=now,
            send_by=claim.send_by,
            retry_base=self.settings.retry_base_seconds,
            retry_max=self.settings.retry_max_seconds,
            resume_at=resume_at,
        )

    async def _abandon(self, job: _Job, started: datetime, duration_ms: int) -> None:
        """Shutdown cut this send: release it if nothing reached the relay, else record it."""
        claim = job.claim
        try:
            async with asyncio.timeout(5):
                if job.progress.phase in (Phase.waiting, Phase.smtp):
                    await self.store.release([claim.id], worker=self.worker, now=self.clock())
                    log.info("released on shutdown", extra={"notification_id": str(claim.id)})
                elif job.progress.phase is Phase.data:
                    result = SendResult(Outcome.ambiguous, None, "DATA: cut by shutdown")
                    self._observe(claim, result, duration_ms / 1000)
                    await self._record_once(
                        claim,
                        started,
                        duration_ms,
                        result,
                        self._transition(claim, result),
                        None,
                        None,
                    )
        except Exception as exc:  # the lease runs out and another replica rescues the row
            log.warning(
                "could not hand back on shutdown; left to lease expiry",
                extra={"notification_id": str(claim.id), "error": type(exc).__name__},
            )

    def _observe(self, claim: Claim, result: SendResult, seconds: float) -> None:
        m = self.metrics
        m.attempts.labels(result.outcome.value).inc()
        m.smtp_replies.labels(code_class(result.code)).inc()
        m.send_seconds.observe(seconds)
        if result.outcome is Outcome.ambiguous:
            m.ambiguous_sends.inc()
            log.warning(
                "ambiguous send: the relay may have the message; resending with the same "
                "Message-ID after backoff",
                extra={"notification_id": str(claim.id)},
            )
        if result.outcome is Outcome.sent and claim.created_at is not None:
            m.delivery_latency.observe(max(0.0, (self.clock() - claim.created_at).total_seconds()))

    async def _send_with_lease(self, job: _Job, message: WireMessage) -> SendResult:
        # The lease is kept by `_heartbeat` from claim to record, for every job of this process.
        return await self.mailer.send(self.sender, job.claim.recipient, message, job.progress)

    async def _heartbeat(self) -> None:
        """Extend every live claim's lease, so a slow relay is not mistaken for a crash.

        One UPDATE per tick for all of this process's claims (claimed, sending, or writing the
        outcome), every third of the lease: a stall has two chances before the lease runs out.
        """
        lease = self.settings.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            jobs = list(self._jobs.values())
            if not jobs:
                continue
            t0 = time.monotonic()
            try:
                owned = await self.store.extend(
                    [job.claim for job in jobs],
                    worker=self.worker,
                    until=self.clock() + timedelta(seconds=lease),
                )
            except Exception as exc:
                log.warning("lease extension failed", extra={"error": type(exc).__name__})
                continue
            for job in jobs:
                if job.claim.id in owned:
                    job.progress.lease_until = t0 + lease
                    continue
                if job.progress.phase is Phase.done:
                    continue  # recorded meanwhile (or about to be): the fence has the last word
                if not job.progress.lease_lost:
                    # Another replica rescued the row: do not start DATA (the send stops at RCPT).
                    job.progress.lease_lost = True
                    log.warning("lease lost", extra={"notification_id": str(job.claim.id)})

    async def _record(
        self,
        claim: Claim,
        started: datetime,
        duration_ms: int,
        result: SendResult,
        transition: Transition,
        subject: str | None,
        body_text: str | None,
    ) -> None:
        # The SMTP outcome is a fact: keep trying to write it while the database is away. The
        # fence makes a late write harmless; until it lands a rescuer may resend (same Message-ID).
        delay = 0.05
        while True:
            try:
                await self._record_once(
                    claim, started, duration_ms, result, transition, subject, body_text
                )
                return
            except Exception as exc:
                give_up = self._stopping and time.monotonic() > self._stop_deadline
                if not is_retryable_db_error(exc) or give_up:
                    log.exception("could not record attempt", extra={"notification": str(claim.id)})
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def _record_once(
        self,
        claim: Claim,
        started: datetime,
        duration_ms: int,
        result: SendResult,
        transition: Transition,
        subject: str | None,
        body_text: str | None,
    ) -> None:
        attempt = Attempt(
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
        )
        owned = await self.recorder.record(claim, attempt)
        if not owned:
            log.warning("lease lost before recording", extra={"notification": str(claim.id)})
