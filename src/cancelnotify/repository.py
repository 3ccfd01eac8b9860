"""The SQL through SQLAlchemy sessions: the outbox paths for SQLite (PostgreSQL runs them in
store.py), and every lookup and write of the ops API."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Float,
    Row,
    Select,
    Table,
    Uuid,
    and_,
    case,
    func,
    literal,
    null,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy import cast as cast_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from cancelnotify.db import UtcDateTime
from cancelnotify.models import (
    ApiKey,
    AuditEvent,
    CallbackTask,
    Cancellation,
    DeliveryAttempt,
    EngagementEvent,
    Notification,
    RefundEvent,
)
from cancelnotify.states import DUE, Status

_cancellations = cast(Table, Cancellation.__table__)
_notifications = cast(Table, Notification.__table__)
_attempts = cast(Table, DeliveryAttempt.__table__)


def _insert(session: AsyncSession, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


async def insert_cancellation(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """Insert unless (source, event_id) or (source, webhook_id) exists; None means duplicate."""
    stmt = (
        _insert(session, _cancellations)
        .values(**values)
        .on_conflict_do_nothing()
        .returning(_cancellations.c.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def insert_notification(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """Insert unless the business key (dedupe_key) exists; None means already notified."""
    stmt = (
        _insert(session, _notifications)
        .values(**values)
        .on_conflict_do_nothing()
        .returning(_notifications.c.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def insert_pair(
    session: AsyncSession, cancellation: dict[str, Any], notification: dict[str, Any]
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """Insert a cancellation and, only if it was new, its notification.

    Returns (cancellation id or None if the event was a duplicate, notification id or None if the
    order already has one). Two statements in the caller's transaction: the session path (SQLite,
    tests). The service on PostgreSQL uses `store.PgStore`, one statement.
    """
    cancellation_id = await insert_cancellation(session, cancellation)
    if cancellation_id is None:
        return None, None
    notification_id = await insert_notification(
        session, {**notification, "cancellation_id": cancellation_id}
    )
    return cancellation_id, notification_id


async def find_cancellation_id(
    session: AsyncSession, source: str, event_id: str, webhook_id: str | None
) -> uuid.UUID | None:
    match = _cancellations.c.event_id == event_id
    if webhook_id is not None:
        match = or_(match, _cancellations.c.webhook_id == webhook_id)
    stmt = select(_cancellations.c.id).where(_cancellations.c.source == source, match).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_notification_by_key(
    session: AsyncSession, dedupe_key: str
) -> tuple[uuid.UUID, str] | None:
    stmt = select(_notifications.c.id, _notifications.c.status).where(
        _notifications.c.dedupe_key == dedupe_key
    )
    row = (await session.execute(stmt)).one_or_none()
    return (row[0], row[1]) if row else None


@dataclass(frozen=True, slots=True)
class Claim:
    """A notification this worker now owns until `locked_until`."""

    id: uuid.UUID
    cancellation_id: uuid.UUID
    kind: str
    recipient: str
    locale: str | None
    message_id: str
    attempt: int  # this claim's number; with `locked_by` it fences every later write
    send_by: datetime
    rescued: bool
    payload: dict[str, Any] | str | None  # as stored; text when the driver returns JSON text
    reference: str
    request_id: str | None = None  # of the webhook that created it: logs follow it to SMTP
    failures: int = 0  # earlier transient/ambiguous attempts: drives the backoff
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """A dispatcher slot granted to a row the ingest statement claims itself (born `sending`)."""

    worker: str
    seconds: float
    started: float  # time.monotonic() before the insert: the lease lasts at least until +seconds


@dataclass(frozen=True, slots=True)
class Attempt:
    """One finished attempt and the state it moves the notification to."""

    started_at: datetime
    duration_ms: int
    outcome: str
    smtp_code: int | None
    smtp_text: str
    status: Status
    next_attempt_at: datetime | None
    failure_reason: str | None
    subject: str | None
    body_text: str | None

    @property
    def sent(self) -> bool:
        return self.status is Status.sent

    @property
    def last_error(self) -> str | None:
        """What the notification shows as its last error: nothing once sent."""
        return None if self.sent else self.smtp_text


def _due(now: datetime) -> ColumnElement[bool]:
    return or_(
        and_(
            _notifications.c.status.in_([s.value for s in DUE]),
            _notifications.c.next_attempt_at <= now,
        ),
        # A lease that ran out belongs to a replica that died or hung: rescue it.
        and_(_notifications.c.status == Status.sending, _notifications.c.locked_until < now),
    )


_FAILURES = ("transient", "ambiguous")


async def claim_due(
    session: AsyncSession,
    *,
    worker: str,
    now: datetime,
    lease: float,
    limit: int,
    exclude: Collection[uuid.UUID] = (),
) -> list[Claim]:
    """Take up to `limit` due notifications: FOR UPDATE SKIP LOCKED on PostgreSQL.

    On SQLite the transaction already holds the write lock (BEGIN IMMEDIATE), which is the
    single-writer equivalent. `exclude` holds the rows this process is still working on: if
    their lease ran out (say the database was away), another replica may rescue them, but this
    one must not start a second send of its own.
    """
    due = _due(now)
    if exclude:
        due = and_(due, _notifications.c.id.not_in(list(exclude)))
    candidates = (
        select(_notifications.c.id, _notifications.c.status)
        .where(due)
        .order_by(_notifications.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    locked = (await session.execute(candidates)).all()
    if not locked:
        return []
    # Rows taken from `sending` had a lease that ran out: their replica died or hung.
    rescued = {r.id for r in locked if r.status == Status.sending}
    stmt = (
        update(_notifications)
        .where(_notifications.c.id.in_([r.id for r in locked]))
        .values(
            status=Status.sending,
            locked_until=now + timedelta(seconds=lease),
            locked_by=worker,
            attempts=_notifications.c.attempts + 1,
            updated_at=now,
        )
        .returning(
            _notifications.c.id,
            _notifications.c.cancellation_id,
            _notifications.c.kind,
            _notifications.c.recipient,
            _notifications.c.locale,
            _notifications.c.message_id,
            _notifications.c.attempts,
            _notifications.c.send_by,
            _notifications.c.request_id,
            _notifications.c.created_at,
        )
    )
    rows = (await session.execute(stmt)).all()
    failures: dict[uuid.UUID, int] = {
        nid: count
        for nid, count in (
            await session.execute(
                select(_attempts.c.notification_id, func.count())
                .where(
                    _attempts.c.notification_id.in_([r.id for r in rows]),
                    _attempts.c.outcome.in_(_FAILURES),
                )
                .group_by(_attempts.c.notification_id)
            )
        ).all()
    }
    ids = {r.cancellation_id for r in rows}
    extra = {
        r.id: (r.payload, r.reference)
        for r in (
            await session.execute(
                select(
                    _cancellations.c.id, _cancellations.c.payload, _cancellations.c.reference
                ).where(_cancellations.c.id.in_(ids))
            )
        ).all()
    }
    return [
        claim_from_row(
            r._mapping,
            rescued=r.id in rescued,
            payload=extra[r.cancellation_id][0],
            reference=extra[r.cancellation_id][1],
            failures=failures.get(r.id, 0),
        )
        for r in rows
    ]


def claim_from_row(
    row: Mapping[Any, Any], *, rescued: bool, payload: Any, reference: str, failures: int
) -> Claim:
    """A Claim from a claimed notifications row: a SQLAlchemy row's `_mapping` here, an asyncpg
    record in `store.PgStore` (both claim paths return the same columns)."""
    return Claim(
        id=row["id"],
        cancellation_id=row["cancellation_id"],
        kind=row["kind"],
        recipient=row["recipient"],
        locale=row["locale"],
        message_id=row["message_id"],
        attempt=row["attempts"],
        send_by=row["send_by"],
        rescued=rescued,
        payload=payload,
        reference=reference,
        request_id=row["request_id"],
        failures=failures,
        created_at=row["created_at"],
    )


def _owned(claim: Claim, worker: str) -> ColumnElement[bool]:
    """Still this claim: same worker, same claim number, still sending (lease fencing)."""
    return and_(
        _notifications.c.id == claim.id,
        _notifications.c.locked_by == worker,
        _notifications.c.attempts == claim.attempt,
        _notifications.c.status == Status.sending,
    )


async def extend_leases(
    session: AsyncSession, claims: Collection[Claim], *, worker: str, until: datetime
) -> set[uuid.UUID]:
    """Keep this worker's live claims (one statement per heartbeat); returns the ones still owned.

    A claim missing from the answer was rescued by another replica after its lease ran out.
    """
    if not claims:
        return set()
    stmt = (
        update(_notifications)
        .where(
            _notifications.c.id.in_([c.id for c in claims]),
            _notifications.c.locked_by == worker,
            _notifications.c.status == Status.sending,
        )
        .values(locked_until=until)
        .returning(_notifications.c.id, _notifications.c.attempts)
    )
    numbers = {c.id: c.attempt for c in claims}
    found = (await session.execute(stmt)).all()
    return {r.id for r in found if numbers.get(r.id) == r.attempts}


async def record_attempt(
    session: AsyncSession, claim: Claim, attempt: Attempt, *, worker: str, now: datetime
) -> bool:
    """Write the attempt row and move the notification, fenced on still owning the claim.

    The fence is the owner and the claim number, not `locked_until`: if the lease ran out
    (the database was away) but nobody claimed the row since, the outcome still lands. The
    attempt row is written either way; it is what happened on the wire.
    """
    await session.execute(
        _attempts.insert().values(
            id=uuid.uuid4(),
            notification_id=claim.id,
            number=claim.attempt,
            worker=worker,
            started_at=attempt.started_at,
            duration_ms=attempt.duration_ms,
            outcome=attempt.outcome,
            smtp_code=attempt.smtp_code,
            smtp_text=attempt.smtp_text,
        )
    )
    values: dict[str, Any] = {
        "status": attempt.status,
        "locked_until": None,
        "locked_by": None,
        "updated_at": now,
        "last_error": attempt.last_error,
        "failure_reason": attempt.failure_reason,
    }
    if attempt.next_attempt_at is not None:
        values["next_attempt_at"] = attempt.next_attempt_at
    if attempt.sent:
        values["sent_at"] = now
    if attempt.subject is not None:
        values["subject"] = attempt.subject
        values["body_text"] = attempt.body_text
    result = await session.execute(
        update(_notifications).where(_owned(claim, worker)).values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release(
    session: AsyncSession, ids: list[uuid.UUID], *, worker: str, now: datetime
) -> None:
    """Give claimed-but-unsent rows back (graceful shutdown) so any replica can take them.

    Only for claims that put nothing on the wire after RCPT: the claim is undone (attempts
    goes back down), so no attempt is recorded and no retry budget is spent.
    """
    if not ids:
        return
    await session.execute(
        update(_notifications)
        .where(
            _notifications.c.id.in_(ids),
            _notifications.c.locked_by == worker,
            _notifications.c.status == Status.sending,
        )
        .values(
            status=Status.queued,
            locked_until=None,
            locked_by=None,
            attempts=_notifications.c.attempts - 1,
            next_attempt_at=now,
            updated_at=now,
        )
    )


async def get_notification(
    session: AsyncSession, notification_id: uuid.UUID
) -> Notification | None:
    stmt = (
        select(Notification)
        .where(Notification.id == notification_id)
        .options(selectinload(Notification.attempt_rows), selectinload(Notification.cancellation))
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def next_due_at(session: AsyncSession) -> datetime | None:
    stmt = select(func.min(_notifications.c.next_attempt_at)).where(
        _notifications.c.status.in_([s.value for s in DUE])
    )
    value: datetime | None = (await session.execute(stmt)).scalar_one_or_none()
    return value


async def find_api_key(session: AsyncSession, key_hash: str) -> ApiKey | None:
    stmt = select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    return (await session.execute(stmt)).scalar_one_or_none()


# --- ops reads (GET /v1/notifications, /v1/cancellations, /v1/stats, /metrics) -------------


@dataclass(frozen=True, slots=True)
class NotificationQuery:
    """Filters of the ops notification list; every field optional, combined with AND."""

    status: str | None = None
    order_id: str | None = None
    recipient: str | None = None
    reason: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cancellation_ids: tuple[uuid.UUID, ...] | None = None


def notification_list_statement(
    query: NotificationQuery, *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> Select[Any]:
    """Newest first by (created_at, id), keyset-paginated: rows inserted later never shift a page.

    Every filter has an index that yields rows in this order (see migration 0002_ops), so the
    database stops after `limit` rows instead of sorting the whole table.
    """
    n, c = _notifications, _cancellations
    stmt = select(
        n.c.id,
        n.c.kind,
        n.c.status,
        n.c.recipient,
        n.c.attempts,
        n.c.message_id,
        n.c.subject,
        n.c.failure_reason,
        n.c.created_at,
        n.c.sent_at,
        n.c.resend_of_id,
        n.c.cancellation_id,
        c.c.order_id,
        c.c.order_number,
        c.c.reason,
        c.c.source,
    ).join(c, c.c.id == n.c.cancellation_id)
    if query.status is not None:
        stmt = stmt.where(n.c.status == query.status)
    if query.order_id is not None:
        stmt = stmt.where(c.c.order_id == query.order_id)
    if query.recipient is not None:
        stmt = stmt.where(n.c.recipient == query.recipient)
    if query.reason is not None:
        stmt = stmt.where(c.c.reason == query.reason)
    if query.source is not None:
        stmt = stmt.where(c.c.source == query.source)
    if query.since is not None:
        stmt = stmt.where(n.c.created_at >= query.since)
    if query.until is not None:
        stmt = stmt.where(n.c.created_at < query.until)
    if query.cancellation_ids is not None:
        stmt = stmt.where(n.c.cancellation_id.in_(query.cancellation_ids))
    if after is not None:
        created_at, last_id = after
        stmt = stmt.where(
            tuple_(n.c.created_at, n.c.id)
            < tuple_(literal(created_at, UtcDateTime()), literal(last_id, Uuid()))
        )
    return stmt.order_by(n.c.created_at.desc(), n.c.id.desc()).limit(limit)


async def list_notifications(
    session: AsyncSession,
    query: NotificationQuery,
    *,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[Row[Any]]:
    stmt = notification_list_statement(query, after=after, limit=limit)
    return list((await session.execute(stmt)).all())


async def get_cancellation(
    session: AsyncSession, cancellation_id: uuid.UUID
) -> Cancellation | None:
    return await session.get(Cancellation, cancellation_id)


async def find_cancellations_by_order(
    session: AsyncSession, order_id: str, *, source: str | None, limit: int
) -> list[Cancellation]:
    stmt = select(Cancellation).where(Cancellation.order_id == order_id)
    if source is not None:
        stmt = stmt.where(Cancellation.source == source)
    stmt = stmt.order_by(Cancellation.received_at.desc(), Cancellation.id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def resend_ids(session: AsyncSession, notification_id: uuid.UUID) -> list[uuid.UUID]:
    stmt = (
        select(_notifications.c.id)
        .where(_notifications.c.resend_of_id == notification_id)
        .order_by(_notifications.c.created_at, _notifications.c.id)
    )
    return list((await session.execute(stmt)).scalars())


async def audit_events_for(session: AsyncSession, notification_id: uuid.UUID) -> list[AuditEvent]:
    stmt = (
        select(AuditEvent)
        .where(
            or_(
                AuditEvent.notification_id == notification_id,
                AuditEvent.result_notification_id == notification_id,
            )
        )
        .order_by(AuditEvent.created_at, AuditEvent.id)
    )
    return list((await session.execute(stmt)).scalars())


async def find_audit_by_idempotency_key(session: AsyncSession, key: str) -> AuditEvent | None:
    stmt = select(AuditEvent).where(AuditEvent.idempotency_key == key)
    return (await session.execute(stmt)).scalar_one_or_none()


async def insert_audit_event(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """Insert unless its idempotency key is taken; None means another request holds the key.

    On PostgreSQL a concurrent insert of the same key waits for the other transaction, then
    sees its committed row, so a racing retry returns the first request's result.
    """
    stmt = (
        _insert(session, AuditEvent.__table__)
        .values(**values)
        .on_conflict_do_nothing()
        .returning(AuditEvent.__table__.c.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def set_audit_result(
    session: AsyncSession, audit_id: uuid.UUID, result_notification_id: uuid.UUID
) -> None:
    await session.execute(
        update(AuditEvent)
        .where(AuditEvent.id == audit_id)
        .values(result_notification_id=result_notification_id)
    )


@dataclass(frozen=True, slots=True)
class QueueState:
    """What /metrics reads from the database at scrape time."""

    by_status: dict[str, int]
    oldest_pending_at: datetime | None


async def queue_state(session: AsyncSession) -> QueueState:
    n = _notifications
    counts = await session.execute(select(n.c.status, func.count()).group_by(n.c.status))
    oldest = await session.execute(select(func.min(n.c.created_at)).where(n.c.status.in_(_PENDING)))
    return QueueState({s: int(k) for s, k in counts.all()}, oldest.scalar_one_or_none())


_PENDING = [Status.queued.value, Status.retrying.value, Status.sending.value]


@dataclass(frozen=True, slots=True)
class StatsRows:
    """Aggregates over notifications created in a window (latency percentiles in seconds)."""

    by_status: dict[str, int]
    latency: tuple[float | None, float | None, float | None]
    attempts: int
    retries: int
    retried: int
    failure_reasons: list[tuple[str, int]]
    oldest_pending_at: datetime | None


def percentile_cont(values: list[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def stats(session: AsyncSession, *, since: datetime, until: datetime) -> StatsRows:
    """Aggregates in SQL; percentiles with percentile_cont on PostgreSQL, in Python on SQLite."""
    n = _notifications
    window = and_(n.c.created_at >= since, n.c.created_at < until)
    counts = await session.execute(
        select(n.c.status, func.count()).where(window).group_by(n.c.status)
    )
    by_status = {s: int(k) for s, k in counts.all()}
    sent = and_(window, n.c.status == Status.sent, n.c.sent_at.is_not(None))
    latency: tuple[float | None, float | None, float | None]
    if session.get_bind().dialect.name == "postgresql":
        seconds = cast_(func.extract("epoch", n.c.sent_at - n.c.created_at), Float)
        row = (
            await session.execute(
                select(
                    *(func.percentile_cont(p).within_group(seconds) for p in (0.5, 0.95, 0.99))
                ).where(sent)
            )
        ).one()
        latency = (row[0], row[1], row[2])
    else:
        pairs = (await session.execute(select(n.c.created_at, n.c.sent_at).where(sent))).all()
        values = [(s - c).total_seconds() for c, s in pairs]
        latency = (
            percentile_cont(values, 0.5),
            percentile_cont(values, 0.95),
            percentile_cont(values, 0.99),
        )
    extra = case((n.c.attempts > 1, n.c.attempts - 1), else_=0)
    totals = (
        await session.execute(
            select(
                func.coalesce(func.sum(n.c.attempts), 0),
                func.coalesce(func.sum(extra), 0),
                func.count().filter(n.c.attempts > 1),
            ).where(window)
        )
    ).one()
    label = func.coalesce(n.c.failure_reason, "unknown")
    reasons = await session.execute(
        select(label, func.count())
        .where(window, n.c.status == Status.failed)
        .group_by(label)
        .order_by(func.count().desc(), label)
        .limit(5)
    )
    oldest = await session.execute(select(func.min(n.c.created_at)).where(n.c.status.in_(_PENDING)))
    return StatsRows(
        by_status=by_status,
        latency=latency,
        attempts=int(totals[0]),
        retries=int(totals[1]),
        retried=int(totals[2]),
        failure_reasons=[(r, int(k)) for r, k in reasons.all()],
        oldest_pending_at=oldest.scalar_one_or_none(),
    )


# --- beyond the email: refund events, call-back tasks, engagement, retention ---------------


async def insert_refund_event(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """Insert unless (cancellation_id, idempotency_key) exists; None means a replay."""
    table = RefundEvent.__table__
    stmt = _insert(session, table).values(**values).on_conflict_do_nothing().returning(table.c.id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_refund_event_by_key(
    session: AsyncSession, cancellation_id: uuid.UUID, idempotency_key: str
) -> RefundEvent | None:
    stmt = select(RefundEvent).where(
        RefundEvent.cancellation_id == cancellation_id,
        RefundEvent.idempotency_key == idempotency_key,
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def refund_events_for(session: AsyncSession, cancellation_id: uuid.UUID) -> list[RefundEvent]:
    """Every refund update of a cancellation, in the order they happened."""
    stmt = (
        select(RefundEvent)
        .where(RefundEvent.cancellation_id == cancellation_id)
        .order_by(RefundEvent.occurred_at, RefundEvent.created_at, RefundEvent.id)
    )
    return list((await session.execute(stmt)).scalars())


async def set_refund_event_notification(
    session: AsyncSession, refund_event_id: uuid.UUID, notification_id: uuid.UUID
) -> None:
    await session.execute(
        update(RefundEvent)
        .where(RefundEvent.id == refund_event_id)
        .values(notification_id=notification_id)
    )


async def latest_completed_refund(
    session: AsyncSession, cancellation_id: uuid.UUID
) -> RefundEvent | None:
    stmt = (
        select(RefundEvent)
        .where(RefundEvent.cancellation_id == cancellation_id, RefundEvent.kind == "completed")
        .order_by(RefundEvent.occurred_at.desc(), RefundEvent.created_at.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def first_notification(
    session: AsyncSession, cancellation_id: uuid.UUID
) -> Notification | None:
    """The cancellation email of a cancellation (its recipient and locale serve follow-ups)."""
    stmt = (
        select(Notification)
        .where(
            Notification.cancellation_id == cancellation_id,
            Notification.kind == "order_cancelled",
        )
        .order_by(Notification.created_at, Notification.id)
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_notification_with_cancellation(
    session: AsyncSession, notification_id: uuid.UUID
) -> Notification | None:
    stmt = (
        select(Notification)
        .where(Notification.id == notification_id)
        .options(selectinload(Notification.cancellation))
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def insert_callback(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """Open a call-back task unless the cancellation already has one."""
    table = CallbackTask.__table__
    stmt = _insert(session, table).values(**values).on_conflict_do_nothing().returning(table.c.id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_callbacks(
    session: AsyncSession,
    *,
    status: str | None,
    overdue: bool | None,
    now: datetime,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[CallbackTask]:
    """Call-back tasks, most urgent (earliest due) first, keyset-paginated on (due_at, id)."""
    stmt = select(CallbackTask)
    if status is not None:
        stmt = stmt.where(CallbackTask.status == status)
    if overdue is True:
        stmt = stmt.where(CallbackTask.status == "open", CallbackTask.due_at < now)
    elif overdue is False:
        stmt = stmt.where(or_(CallbackTask.status != "open", CallbackTask.due_at >= now))
    if after is not None:
        due_at, last_id = after
        stmt = stmt.where(
            tuple_(CallbackTask.due_at, CallbackTask.id)
            > tuple_(literal(due_at, UtcDateTime()), literal(last_id, Uuid()))
        )
    stmt = stmt.order_by(CallbackTask.due_at, CallbackTask.id).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def get_callback(session: AsyncSession, callback_id: uuid.UUID) -> CallbackTask | None:
    return await session.get(CallbackTask, callback_id)


async def complete_callback(
    session: AsyncSession, callback_id: uuid.UUID, values: dict[str, Any]
) -> bool:
    """Close an open task; False when it was not open (already completed, or missing)."""
    result = await session.execute(
        update(CallbackTask)
        .where(CallbackTask.id == callback_id, CallbackTask.status == "open")
        .values(status="completed", **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def insert_engagement(session: AsyncSession, values: dict[str, Any]) -> uuid.UUID | None:
    """Record an engagement event unless its dedupe key exists; None means already counted."""
    table = EngagementEvent.__table__
    stmt = _insert(session, table).values(**values).on_conflict_do_nothing().returning(table.c.id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def engagement_for(
    session: AsyncSession, notification_id: uuid.UUID
) -> list[EngagementEvent]:
    stmt = (
        select(EngagementEvent)
        .where(EngagementEvent.notification_id == notification_id)
        .order_by(EngagementEvent.occurred_at, EngagementEvent.id)
    )
    return list((await session.execute(stmt)).scalars())


async def notification_exists(session: AsyncSession, notification_id: uuid.UUID) -> bool:
    stmt = select(_notifications.c.id).where(_notifications.c.id == notification_id)
    return (await session.execute(stmt)).scalar_one_or_none() is not None


@dataclass(frozen=True, slots=True)
class EngagementRows:
    """Engagement and follow-through aggregates for a window."""

    sent_cancellation_emails: int
    feedback: dict[str, int]
    clicked: dict[str, int]  # label -> notifications with at least one click on it
    opened: int
    cancellation_to_email: list[float]
    callbacks_open: int
    callbacks_overdue: int


async def engagement_stats(
    session: AsyncSession, *, since: datetime, until: datetime, now: datetime
) -> EngagementRows:
    """Engagement counted by when it happened (so retention, which unlinks old rows, keeps it)."""
    n, c, e = _notifications, _cancellations, cast(Table, EngagementEvent.__table__)
    sent = and_(
        n.c.kind == "order_cancelled",
        n.c.resend_of_id.is_(None),
        n.c.status == Status.sent,
        n.c.sent_at >= since,
        n.c.sent_at < until,
    )
    sent_count = (await session.execute(select(func.count()).where(sent))).scalar_one()
    window = and_(e.c.occurred_at >= since, e.c.occurred_at < until)
    rows = await session.execute(
        select(e.c.kind, e.c.value, func.count()).where(window).group_by(e.c.kind, e.c.value)
    )
    feedback: dict[str, int] = {"yes": 0, "no": 0}
    clicked: dict[str, int] = {"reorder": 0, "alternative": 0}
    opened = 0
    for kind, value, count in rows.all():
        if kind == "feedback":
            feedback[value] = int(count)
        elif kind == "click":
            clicked[value] = int(count)
        else:
            opened += int(count)
    pairs = await session.execute(
        select(c.c.occurred_at, n.c.sent_at).join(c, c.c.id == n.c.cancellation_id).where(sent)
    )
    latencies = [max(0.0, (s - o).total_seconds()) for o, s in pairs.all()]
    ct = cast(Table, CallbackTask.__table__)
    open_rows = await session.execute(
        select(func.count(), func.count().filter(ct.c.due_at < now)).where(ct.c.status == "open")
    )
    open_count, overdue = open_rows.one()
    return EngagementRows(
        sent_cancellation_emails=int(sent_count),
        feedback=feedback,
        clicked=clicked,
        opened=opened,
        cancellation_to_email=latencies,
        callbacks_open=int(open_count),
        callbacks_overdue=int(overdue),
    )


async def purge_before(session: AsyncSession, cutoff: datetime) -> dict[str, int]:
    """Drop payloads, rendered bodies, relay texts, engagement links and call-back PII.

    Keeps every row and every idempotency key (event_id, webhook_id, dedupe_key, message_id,
    engagement dedupe keys), so a late retry of an old webhook is still answered as a duplicate.
    """

    async def run(stmt: Any) -> int:
        return int((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]

    a, ct, e = (
        _attempts,
        cast(Table, CallbackTask.__table__),
        cast(Table, EngagementEvent.__table__),
    )
    return {
        "payloads": await run(
            update(_cancellations)
            .where(_cancellations.c.received_at < cutoff, _cancellations.c.payload.is_not(None))
            .values(payload=null())
        ),
        "bodies": await run(
            update(_notifications)
            .where(
                _notifications.c.created_at < cutoff,
                or_(
                    _notifications.c.subject.is_not(None),
                    _notifications.c.body_text.is_not(None),
                    _notifications.c.last_error.is_not(None),
                ),
            )
            .values(subject=None, body_text=None, last_error=None)
        ),
        "attempt_texts": await run(
            update(a)
            .where(a.c.started_at < cutoff, a.c.smtp_text.is_not(None))
            .values(smtp_text=None)
        ),
        "engagement": await run(
            update(e)
            .where(e.c.occurred_at < cutoff, e.c.notification_id.is_not(None))
            .values(notification_id=None, detail=None)
        ),
        "callbacks": await run(
            update(ct)
            .where(
                ct.c.created_at < cutoff,
                ct.c.status == "completed",
                or_(ct.c.phone.is_not(None), ct.c.first_name.is_not(None), ct.c.note.is_not(None)),
            )
            .values(phone=None, first_name=None, note=None)
        ),
    }
