"""Refund updates from the shop: store them, follow them on the status page, and queue the
one "your refund is on its way" email when a refund completes."""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cancelnotify import repository
from cancelnotify.errors import IdempotencyKeyReused, InvalidEvent, NotFound
from cancelnotify.mail.message import make_message_id
from cancelnotify.models import Cancellation, RefundEvent
from cancelnotify.schemas.beyond import (
    RefundEventCreate,
    RefundEventKind,
    RefundEventRead,
    RefundEventResult,
)
from cancelnotify.services.ingest import WAKE
from cancelnotify.settings import Settings
from cancelnotify.states import Status

log = logging.getLogger(__name__)
FOLLOW_UP = "refund_completed"


def follow_up_key(cancellation_id: uuid.UUID) -> str:
    """The business key of the follow-up: one "refund is on its way" email per refund."""
    return f"{FOLLOW_UP}:{cancellation_id}"


def refund_state(events: Sequence[RefundEvent]) -> RefundEventKind | None:
    """Where a refund stands: completed is final; otherwise the latest update wins."""
    if any(e.kind == "completed" for e in events):
        return "completed"
    if not events:
        return None
    latest = events[-1].kind
    return "failed" if latest == "failed" else "initiated"


async def record(
    session: AsyncSession,
    cancellation_id: uuid.UUID,
    body: RefundEventCreate,
    *,
    idempotency_key: str | None,
    settings: Settings,
    now: datetime,
) -> tuple[RefundEventResult, bool]:
    """Store a refund event; `completed` queues the follow-up email at most once.

    Returns the result and whether this call stored the event (False: Idempotency-Key replay).
    """
    cancellation = await repository.get_cancellation(session, cancellation_id)
    if cancellation is None:
        raise NotFound(f"No cancellation {cancellation_id}")
    if idempotency_key is not None:
        replay = await _replay(session, cancellation_id, idempotency_key, body)
        if replay is not None:
            return replay, False
    original = (cancellation.payload or {}).get("refund") or {}
    order = (cancellation.payload or {}).get("order") or {}
    currency = body.currency or original.get("currency") or order.get("currency")
    method = body.method or original.get("method")
    if currency is None or (body.kind == "completed" and method in (None, "none")):
        raise InvalidEvent(
            "This cancellation carries no refund: say its method and currency",
            errors=[
                {"field": "method", "message": "required for this cancellation", "type": "missing"}
            ],
        )
    event_id = uuid.uuid4()
    stored = await repository.insert_refund_event(
        session,
        {
            "id": event_id,
            "cancellation_id": cancellation_id,
            "kind": body.kind,
            "amount": format(Decimal(body.amount), "f"),
            "currency": currency,
            "method": method,
            "idempotency_key": idempotency_key,
            "occurred_at": body.occurred_at or now,
            "created_at": now,
        },
    )
    if stored is None:  # a concurrent request with the same key committed first
        assert idempotency_key is not None  # noqa: S101 - only the key can conflict
        replay = await _replay(session, cancellation_id, idempotency_key, body)
        if replay is None:  # pragma: no cover - the unique key says otherwise
            raise IdempotencyKeyReused("The Idempotency-Key is in use by a request still running")
        return replay, False
    duplicate = False
    if body.kind == "completed":
        duplicate = not await _queue_follow_up(session, cancellation, event_id, settings, now)
    log.info(
        "refund event stored",
        extra={"cancellation_id": str(cancellation_id), "kind": body.kind, "event": str(event_id)},
    )
    return await _result(session, cancellation_id, event_id, duplicate=duplicate), True


async def _queue_follow_up(
    session: AsyncSession,
    cancellation: Cancellation,
    event_id: uuid.UUID,
    settings: Settings,
    now: datetime,
) -> bool:
    """Queue the refund_completed email through the outbox; False when one already exists."""
    original = await repository.first_notification(session, cancellation.id)
    if original is None:  # this order's email went out for another cancellation event
        return False
    notification_id = uuid.uuid4()
    inserted = await repository.insert_notification(
        session,
        {
            "id": notification_id,
            "cancellation_id": cancellation.id,
            "kind": FOLLOW_UP,
            "dedupe_key": follow_up_key(cancellation.id),
            "recipient": original.recipient,
            "locale": original.locale,
            "status": Status.queued,
            "attempts": 0,
            "next_attempt_at": now,
            "message_id": make_message_id(notification_id, settings),
            "send_by": now + timedelta(seconds=settings.send_lifetime_seconds),
            "created_at": now,
            "updated_at": now,
        },
    )
    if inserted is None:
        return False
    await repository.set_refund_event_notification(session, event_id, notification_id)
    session.info[WAKE] = True
    return True


async def _result(
    session: AsyncSession, cancellation_id: uuid.UUID, event_id: uuid.UUID, *, duplicate: bool
) -> RefundEventResult:
    events = await repository.refund_events_for(session, cancellation_id)
    event = next(e for e in events if e.id == event_id)
    follow_up = await repository.find_notification_by_key(session, follow_up_key(cancellation_id))
    return RefundEventResult(
        event=RefundEventRead.model_validate(event),
        refund_status=refund_state(events) or "initiated",
        follow_up_notification_id=follow_up[0] if follow_up else None,
        follow_up_duplicate=duplicate,
    )


async def _replay(
    session: AsyncSession, cancellation_id: uuid.UUID, key: str, body: RefundEventCreate
) -> RefundEventResult | None:
    previous = await repository.find_refund_event_by_key(session, cancellation_id, key)
    if previous is None:
        return None
    if previous.kind != body.kind or previous.amount != format(Decimal(body.amount), "f"):
        raise IdempotencyKeyReused("This Idempotency-Key was used for another refund event")
    return await _result(session, cancellation_id, previous.id, duplicate=False)


def merge_refund(payload: dict[str, Any], event: RefundEvent | None) -> dict[str, Any]:
    """The cancellation event as the follow-up email sees it: the refund as it completed.

    The stored payload stays as the sender sent it; this is a copy for rendering. Its
    `occurred_at` becomes the completion time, from which the renderer counts the window.
    """
    if event is None:
        return payload
    merged = copy.deepcopy(payload)
    refund = dict(merged.get("refund") or {})
    refund.update(amount=event.amount, currency=event.currency, status="completed")
    if event.method is not None:
        refund["method"] = event.method
    merged["refund"] = refund
    merged["occurred_at"] = event.occurred_at.isoformat()
    return merged


async def render_payload(
    sessionmaker: async_sessionmaker[AsyncSession],
    kind: str,
    cancellation_id: uuid.UUID,
    payload: dict[str, Any] | str | None,
) -> dict[str, Any] | str:
    """What the dispatcher renders: the stored payload (a dict, or JSON text as stored), with the
    refund merged in for follow-ups."""
    if kind != FOLLOW_UP:
        return payload or {}
    stored: dict[str, Any] = json.loads(payload) if isinstance(payload, str) else payload or {}
    async with sessionmaker() as session:
        event = await repository.latest_completed_refund(session, cancellation_id)
    return merge_refund(stored, event)
