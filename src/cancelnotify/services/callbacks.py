"""Call-back tasks: rules that open one at ingest, the ops queue, and closing a task."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from cancelnotify import repository
from cancelnotify.errors import Conflict, InvalidEvent, NotFound
from cancelnotify.models import ApiKey, CallbackTask
from cancelnotify.schemas.beyond import (
    CallbackComplete,
    CallbackFilters,
    CallbackPage,
    CallbackRead,
)
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.settings import Settings

log = logging.getLogger(__name__)


def encode_cursor(due_at: datetime, task_id: uuid.UUID) -> str:
    raw = json.dumps([due_at.astimezone(UTC).isoformat(), task_id.hex])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        due, ident = json.loads(raw)
        return datetime.fromisoformat(due).astimezone(UTC), uuid.UUID(hex=ident)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidEvent(
            "The cursor is not one this API returned",
            errors=[{"field": "cursor", "message": "invalid cursor", "type": "value_error"}],
        ) from None


def matching_rules(event: CancellationEventV1, settings: Settings) -> list[str]:
    """Which call-back rules this cancellation meets (empty: no call)."""
    rules = []
    threshold = settings.callback_min_total.get(event.order.currency)
    total = event.order.total
    if threshold is not None and total is not None and total >= Decimal(threshold):
        rules.append("high_value")
    if settings.callback_vip and event.customer.vip:
        rules.append("vip")
    if event.cancellation.reason.value in settings.callback_reasons:
        rules.append("reason")
    return rules


TASK_COLUMNS = (
    "id",
    "order_number",
    "first_name",
    "phone",
    "reason",
    "rules",
    "status",
    "due_at",
    "created_at",
)


def task_values(
    event: CancellationEventV1, *, settings: Settings, now: datetime
) -> dict[str, object] | None:
    """The call-back task to open with this cancellation, when a rule matches and there is a
    phone (stored in the ingest transaction, with the cancellation's id).

    The task holds only what the call needs: phone, first name, order number, reason.
    """
    rules = matching_rules(event, settings)
    phone = " ".join((event.customer.phone or "").split())
    if not rules or not phone:
        return None
    return {
        "id": uuid.uuid4(),
        "order_number": (event.order.number or event.order.id)[:100],
        "first_name": (event.customer.first_name or None) and event.customer.first_name[:100],
        "phone": phone[:40],
        "reason": event.cancellation.reason.value,
        "rules": ",".join(rules),
        "status": "open",
        "due_at": now + timedelta(seconds=settings.callback_due_within_seconds),
        "created_at": now,
    }


def _read(task: CallbackTask, now: datetime) -> CallbackRead:
    read = CallbackRead.model_validate(task)
    return read.model_copy(update={"overdue": task.status == "open" and task.due_at < now})


async def list_page(
    session: AsyncSession, filters: CallbackFilters, *, now: datetime
) -> CallbackPage:
    """Open (or all) tasks, earliest due first, with a cursor for the next page."""
    after = decode_cursor(filters.cursor) if filters.cursor else None
    rows = await repository.list_callbacks(
        session,
        status=filters.status,
        overdue=filters.overdue,
        now=now,
        after=after,
        limit=filters.limit + 1,
    )
    items = [_read(t, now) for t in rows[: filters.limit]]
    more = len(rows) > filters.limit
    next_cursor = encode_cursor(items[-1].due_at, items[-1].id) if more and items else None
    return CallbackPage(items=items, next_cursor=next_cursor)


async def complete(
    session: AsyncSession,
    callback_id: uuid.UUID,
    body: CallbackComplete,
    *,
    key: ApiKey,
    now: datetime,
) -> CallbackRead:
    """Close an open task with its outcome and note; 409 when it was closed already."""
    done = await repository.complete_callback(
        session,
        callback_id,
        {"completed_at": now, "outcome": body.outcome, "note": body.note, "completed_by": key.name},
    )
    task = await repository.get_callback(session, callback_id)
    if task is None:
        raise NotFound(f"No call-back task {callback_id}")
    if not done:
        raise Conflict(f"Call-back task {callback_id} is already {task.status}")
    await session.refresh(task)
    return _read(task, now)
