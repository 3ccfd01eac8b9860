"""Notification queries and the explicit ops resend."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from cancelnotify import repository
from cancelnotify.errors import Conflict, IdempotencyKeyReused, InvalidEvent, NotFound
from cancelnotify.mail.message import make_message_id
from cancelnotify.models import ApiKey
from cancelnotify.schemas.api import (
    AuditEventRead,
    NotificationFilters,
    NotificationPage,
    NotificationRead,
    NotificationSummary,
)
from cancelnotify.services import engagement
from cancelnotify.services.ingest import WAKE
from cancelnotify.settings import Settings
from cancelnotify.states import TERMINAL, Status

log = logging.getLogger(__name__)
_EMAIL = re.compile(r"[^\s<>\"'(),;:@]+@[^\s<>\"'(),;:@]+\.[A-Za-z]{2,}")


def mask_email(address: str) -> str:
    """`ana@example.com` -> `a**@example.com`: enough to recognise, not to harvest."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}{'*' * max(2, len(local) - 1)}@{domain}"


def mask_emails_in(text: str | None) -> str | None:
    """Mask addresses inside free text (relays quote the recipient: `550 <ana@x.com> unknown`)."""
    return None if text is None else _EMAIL.sub(lambda m: mask_email(m.group(0)), text)


def as_utc(value: datetime) -> datetime:
    """Naive means UTC; times beyond what a UTC timestamp can hold are clamped, not a 500."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (
            datetime.min.replace(tzinfo=UTC)
            if value.year == 1
            else datetime.max.replace(tzinfo=UTC)
        )


def encode_cursor(created_at: datetime, notification_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.astimezone(UTC).isoformat(), notification_id.hex])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, ident = json.loads(raw)
        return as_utc(datetime.fromisoformat(created)), uuid.UUID(hex=ident)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidEvent(
            "The cursor is not one this API returned",
            errors=[{"field": "cursor", "message": "invalid cursor", "type": "value_error"}],
        ) from None


def _summary(row: Row[Any], *, reveal_recipient: bool) -> NotificationSummary:
    item = NotificationSummary.model_validate(row)
    if not reveal_recipient:
        item = item.model_copy(update={"recipient": mask_email(item.recipient)})
    return item


async def summaries(
    session: AsyncSession,
    query: repository.NotificationQuery,
    *,
    reveal_recipient: bool,
    limit: int = 500,
) -> list[NotificationSummary]:
    rows = await repository.list_notifications(session, query, limit=limit)
    return [_summary(r, reveal_recipient=reveal_recipient) for r in rows]


async def list_page(
    session: AsyncSession,
    filters: NotificationFilters,
    *,
    cursor: str | None,
    limit: int,
    reveal_recipient: bool,
) -> NotificationPage:
    """One page, newest first; the cursor is the (created_at, id) of the last row shown."""
    query = repository.NotificationQuery(
        status=filters.status.value if filters.status else None,
        order_id=filters.order_id,
        recipient=filters.recipient,
        reason=filters.reason.value if filters.reason else None,
        source=filters.source,
        since=as_utc(filters.since) if filters.since else None,
        until=as_utc(filters.until) if filters.until else None,
    )
    after = decode_cursor(cursor) if cursor else None
    rows = await repository.list_notifications(session, query, after=after, limit=limit + 1)
    items = [_summary(r, reveal_recipient=reveal_recipient) for r in rows[:limit]]
    more = len(rows) > limit
    next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if more and items else None
    return NotificationPage(items=items, next_cursor=next_cursor)


async def get(
    session: AsyncSession, notification_id: uuid.UUID, *, reveal_recipient: bool
) -> NotificationRead:
    row = await repository.get_notification(session, notification_id)
    if row is None:
        raise NotFound(f"No notification {notification_id}")
    read = NotificationRead.model_validate(row)
    audit = await repository.audit_events_for(session, notification_id)
    read = read.model_copy(
        update={
            "resends": await repository.resend_ids(session, notification_id),
            "audit": [AuditEventRead.model_validate(a) for a in audit],
            "engagement": await engagement.for_notification(session, notification_id),
        }
    )
    if not reveal_recipient:
        read = read.model_copy(
            update={
                "recipient": mask_email(read.recipient),
                "last_error": mask_emails_in(read.last_error),
                "attempt_timeline": [
                    a.model_copy(update={"smtp_text": mask_emails_in(a.smtp_text)})
                    for a in read.attempt_timeline
                ],
            }
        )
    return read


async def resend(
    session: AsyncSession,
    notification_id: uuid.UUID,
    *,
    reason: str,
    idempotency_key: str | None,
    key: ApiKey,
    settings: Settings,
    now: datetime,
    request_id: str | None,
) -> tuple[NotificationRead, bool]:
    """Queue a new email (new Message-ID) for a finished notification; audited, idempotent.

    Returns the new notification and whether it was created by this call (False: the same
    Idempotency-Key was seen before, and its first result is returned).
    """
    original = await repository.get_notification(session, notification_id)
    if original is None:
        raise NotFound(f"No notification {notification_id}")
    if idempotency_key is not None:
        replay = await _replay(session, notification_id, idempotency_key)
        if replay is not None:
            return replay, False
    if Status(original.status) not in TERMINAL:
        raise Conflict(
            f"Notification {notification_id} is still {original.status}; "
            "resend it once it is sent or failed"
        )
    audit_id = await repository.insert_audit_event(
        session,
        {
            "id": uuid.uuid4(),
            "action": "resend",
            "notification_id": notification_id,
            "api_key_id": key.id,
            "api_key_name": key.name,
            "reason": reason,
            "idempotency_key": idempotency_key,
            "request_id": request_id,
            "created_at": now,
        },
    )
    if audit_id is None:  # a concurrent request with the same key committed first
        assert idempotency_key is not None  # noqa: S101 - only a key can conflict
        replay = await _replay(session, notification_id, idempotency_key)
        if replay is None:  # pragma: no cover - the unique key says otherwise
            raise Conflict("The Idempotency-Key is in use by a request still running")
        return replay, False
    new_id = uuid.uuid4()
    await repository.insert_notification(
        session,
        {
            "id": new_id,
            "cancellation_id": original.cancellation_id,
            "kind": original.kind,
            "dedupe_key": None,  # an explicit ops action, outside the once-per-order key
            "recipient": original.recipient,
            "locale": original.locale,
            "status": Status.queued,
            "attempts": 0,
            "next_attempt_at": now,
            "message_id": make_message_id(new_id, settings),
            "send_by": now + timedelta(seconds=settings.send_lifetime_seconds),
            "resend_of_id": notification_id,
            "request_id": request_id,
            "created_at": now,
            "updated_at": now,
        },
    )
    await repository.set_audit_result(session, audit_id, new_id)
    session.info[WAKE] = True
    log.info(
        "resend queued",
        extra={
            "request_id": request_id,
            "notification_id": str(new_id),
            "resend_of_id": str(notification_id),
            "api_key_id": str(key.id),
            "api_key_name": key.name,
            "audit_id": str(audit_id),
        },
    )
    return await get(session, new_id, reveal_recipient=True), True


async def _replay(
    session: AsyncSession, notification_id: uuid.UUID, idempotency_key: str
) -> NotificationRead | None:
    previous = await repository.find_audit_by_idempotency_key(session, idempotency_key)
    if previous is None:
        return None
    if previous.notification_id != notification_id or previous.result_notification_id is None:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used for another request; use a new key"
        )
    return await get(session, previous.result_notification_id, reveal_recipient=True)
