"""Ingest: store a verified cancellation and its notification once, however often it arrives."""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cancelnotify import repository
from cancelnotify.mail.message import make_message_id
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.services import callbacks
from cancelnotify.settings import Settings
from cancelnotify.states import Status

WAKE = "wake_dispatcher"
log = logging.getLogger(__name__)
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


@dataclass(frozen=True, slots=True)
class IngestResult:
    cancellation_id: uuid.UUID
    notification_id: uuid.UUID
    status: str
    duplicate: bool


def new_reference() -> str:
    """A customer-facing cancellation reference, e.g. `CX-7K2M-9QZP-D4TR` (60 random bits)."""
    bits = secrets.randbits(60)  # one call to the OS RNG, not twelve (profiled on the hot path)
    chars = "".join(_ALPHABET[(bits >> (5 * i)) & 31] for i in range(12))
    return f"CX-{chars[:4]}-{chars[4:8]}-{chars[8:]}"


def dedupe_key(kind: str, source: str, order_id: str) -> str:
    """The business key: one email of a kind per order and source, forever."""
    return f"{kind}:{source}:{order_id}"


async def ingest(
    session: AsyncSession,
    event: CancellationEventV1,
    *,
    source: str,
    webhook_id: str | None,
    payload: dict[str, Any],
    settings: Settings,
    now: datetime,
    request_id: str | None = None,
) -> IngestResult:
    """Insert the cancellation and its queued notification, or return the existing ids.

    Both inserts use ON CONFLICT DO NOTHING on permanent unique keys, so 50 concurrent copies
    resolve in the database: the first commits, the others wait on its row lock and then see it.
    On PostgreSQL the pair is one statement (one round trip); the notification row is only
    written when its cancellation was.
    """
    cancellation = {
        "id": uuid.uuid4(),
        "source": source,
        "event_id": event.event_id,
        "webhook_id": webhook_id,
        "order_id": event.order.id,
        "order_number": event.order.number,
        "reason": event.cancellation.reason.value,
        "reference": new_reference(),
        "payload": payload,
        "occurred_at": event.occurred_at,
        "received_at": now,
    }
    key = dedupe_key("order_cancelled", source, event.order.id)
    notification_id = uuid.uuid4()
    notification = {
        "id": notification_id,
        "kind": "order_cancelled",
        "dedupe_key": key,
        "recipient": str(event.customer.email),
        "locale": event.customer.locale,
        "status": Status.queued.value,
        "attempts": 0,
        "next_attempt_at": now,
        "message_id": make_message_id(notification_id, settings),
        "send_by": now + timedelta(seconds=settings.send_lifetime_seconds),
        "request_id": request_id,
        "created_at": now,
        "updated_at": now,
    }
    cancellation_id, inserted = await repository.insert_pair(session, cancellation, notification)
    if cancellation_id is None:
        existing = await repository.find_cancellation_id(
            session, source, event.event_id, webhook_id
        )
        found = await repository.find_notification_by_key(session, key)
        if existing is None or found is None:  # pragma: no cover - constraint says otherwise
            raise RuntimeError("duplicate cancellation without its rows")
        return IngestResult(existing, found[0], found[1], duplicate=True)
    await callbacks.open_if_needed(session, event, cancellation_id, settings=settings, now=now)
    if inserted is None:
        # Another event for the same order already has its email: store, do not send twice.
        found = await repository.find_notification_by_key(session, key)
        if found is None:  # pragma: no cover
            raise RuntimeError("notification conflict without a row")
        return IngestResult(cancellation_id, found[0], found[1], duplicate=True)
    session.info[WAKE] = True
    log.info(
        "cancellation stored",
        extra={
            "request_id": request_id,
            "notification_id": str(notification_id),
            "cancellation_id": str(cancellation_id),
            "source": source,
            "event_id": event.event_id,
            "order_id": event.order.id,
            # A hash, never the address: enough to correlate, useless to harvest.
            "recipient_hash": hashlib.sha256(str(event.customer.email).encode()).hexdigest()[:16],
        },
    )
    return IngestResult(cancellation_id, notification_id, Status.queued, duplicate=False)
