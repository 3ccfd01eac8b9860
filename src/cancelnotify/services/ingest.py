"""Ingest: store a verified cancellation and its notification once, however often it arrives."""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cancelnotify.errors import raise_if_database_down
from cancelnotify.mail.message import make_message_id
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.services import callbacks
from cancelnotify.settings import Settings
from cancelnotify.states import Status
from cancelnotify.store import Store

WAKE = "wake_dispatcher"  # set in session.info by a write that queued a notification
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
    store: Store,
    event: CancellationEventV1,
    *,
    source: str,
    webhook_id: str | None,
    payload: dict[str, Any],
    settings: Settings,
    now: datetime,
    request_id: str | None = None,
    payload_text: str | None = None,
) -> IngestResult:
    """Store the cancellation and its queued notification, or return the existing ids.

    Both inserts use ON CONFLICT DO NOTHING on permanent unique keys, so 50 concurrent copies
    resolve in the database: the first commits, the others wait on its row lock and then see it.
    The notification row is only written when its cancellation was; a call-back task, when a
    rule matches, joins the same transaction. `payload_text`, when given, is `payload` as the
    JSON text that was received: stored as it is instead of encoding the dict again.
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
    notification_id = uuid.uuid4()
    notification = {
        "id": notification_id,
        "kind": "order_cancelled",
        "dedupe_key": dedupe_key("order_cancelled", source, event.order.id),
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
    task = callbacks.task_values(event, settings=settings, now=now)
    try:
        stored = await store.ingest(cancellation, notification, task, payload_text=payload_text)
    except Exception as exc:
        raise_if_database_down(exc)
        raise
    if task is not None and stored.new_cancellation:
        log.info(
            "call-back task opened",
            extra={"callback_id": str(task["id"]), "cancellation_id": str(stored.cancellation_id)},
        )
    if stored.new_notification:
        log.info(
            "cancellation stored",
            extra={
                "request_id": request_id,
                "notification_id": str(notification_id),
                "cancellation_id": str(stored.cancellation_id),
                "source": source,
                "event_id": event.event_id,
                "order_id": event.order.id,
                # A hash, never the address: enough to correlate, useless to harvest.
                "recipient_hash": hashlib.sha256(str(event.customer.email).encode()).hexdigest()[
                    :16
                ],
            },
        )
    return IngestResult(
        stored.cancellation_id,
        stored.notification_id,
        stored.status,
        duplicate=not stored.new_notification,
    )
