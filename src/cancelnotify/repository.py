"""The SQL: ingest inserts, the outbox claim with SKIP LOCKED and leases, and lookups."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from cancelnotify.models import ApiKey, Cancellation, DeliveryAttempt, Notification
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
    payload: dict[str, Any] | None
    reference: str
    failures: int = 0  # earlier transient/ambiguous attempts: drives the backoff
    created_at: datetime | None = None


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
        Claim(
            id=r.id,
            cancellation_id=r.cancellation_id,
            kind=r.kind,
            recipient=r.recipient,
            locale=r.locale,
            message_id=r.message_id,
            attempt=r.attempts,
            send_by=r.send_by,
            rescued=r.id in rescued,
            payload=extra[r.cancellation_id][0],
            reference=extra[r.cancellation_id][1],
            failures=failures.get(r.id, 0),
            created_at=r.created_at,
        )
        for r in rows
    ]


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
    session: AsyncSession,
    *,
    claim: Claim,
    worker: str,
    started_at: datetime,
    duration_ms: int,
    outcome: str,
    smtp_code: int | None,
    smtp_text: str | None,
    status: Status,
    next_attempt_at: datetime | None,
    failure_reason: str | None,
    subject: str | None,
    body_text: str | None,
    now: datetime,
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
            started_at=started_at,
            duration_ms=duration_ms,
            outcome=outcome,
            smtp_code=smtp_code,
            smtp_text=smtp_text,
        )
    )
    values: dict[str, Any] = {
        "status": status,
        "locked_until": None,
        "locked_by": None,
        "updated_at": now,
        "last_error": None if status is Status.sent else smtp_text,
        "failure_reason": failure_reason,
    }
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    if status is Status.sent:
        values["sent_at"] = now
    if subject is not None:
        values["subject"] = subject
        values["body_text"] = body_text
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
