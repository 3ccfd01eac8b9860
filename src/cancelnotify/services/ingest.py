"""Ingest: store a verified cancellation and its notification once, however often it arrives."""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from cancelnotify.errors import raise_if_database_down
from cancelnotify.mail.message import make_message_id
from cancelnotify.repository import Claim, Lease, claim_from_row
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
    handed_over: bool = False  # claimed by this replica's dispatcher in the ingest statement


class Handover(Protocol):
    """The local dispatcher, as ingest sees it (`dispatcher.Dispatcher`)."""

    def reserve(self) -> Lease | None: ...
    def adopt(self, lease: Lease, claim: Claim, event: CancellationEventV1) -> None: ...
    def cancel(self, lease: Lease) -> None: ...


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
    payload: dict[str, Any] | None,
    settings: Settings,
    now: datetime,
    request_id: str | None = None,
    payload_text: str | None = None,
    handover: Handover | None = None,
) -> IngestResult:
    """Store the cancellation and its queued notification, or return the existing ids.

    Both inserts use ON CONFLICT DO NOTHING on permanent unique keys, so 50 concurrent copies
    resolve in the database: the first commits, the others wait on its row lock and then see it.
    The notification row is only written when its cancellation was; a call-back task, when a
    rule matches, joins the same transaction. `payload_text`, when given, is `payload` as the
    JSON text that was received: stored as it is instead of encoding the dict again (and then
    `payload` may be None: nobody parsed it into a dict).

    With `handover` (the local dispatcher) and a free slot there, the notification is inserted
    already claimed (`sending`, attempt 1, leased to this replica) and handed over in memory:
    it is sent without a claim statement (`Dispatcher.reserve`).
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
    lease = None if handover is None else handover.reserve()
    notification = {
        "id": notification_id,
        "kind": "order_cancelled",
        "dedupe_key": dedupe_key("order_cancelled", source, event.order.id),
        "recipient": str(event.customer.email),
        "locale": event.customer.locale,
        "status": Status.queued.value if lease is None else Status.sending.value,
        "attempts": 0 if lease is None else 1,
        "next_attempt_at": now,
        "locked_by": None if lease is None else lease.worker,
        "locked_until": None if lease is None else now + timedelta(seconds=lease.seconds),
        "message_id": make_message_id(notification_id, settings),
        "send_by": now + timedelta(seconds=settings.send_lifetime_seconds),
        "request_id": request_id,
        "created_at": now,
        "updated_at": now,
    }
    task = callbacks.task_values(event, settings=settings, now=now)
    adopted = False
    try:
        stored = await store.ingest(cancellation, notification, task, payload_text=payload_text)
        if lease is not None and stored.new_notification:
            assert handover is not None  # noqa: S101 - a lease comes from it
            claim = _claim(cancellation, notification)
            adopted = True  # from here the slot is the dispatcher's, whatever happens
            handover.adopt(lease, claim, event)
    except Exception as exc:
        raise_if_database_down(exc)
        raise
    finally:
        if lease is not None and not adopted:
            assert handover is not None  # noqa: S101
            handover.cancel(lease)
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
        handed_over=adopted,
    )


def _claim(cancellation: dict[str, Any], notification: dict[str, Any]) -> Claim:
    """The claim the dispatcher would have read back for the row just inserted under a lease."""
    return claim_from_row(
        {**notification, "cancellation_id": cancellation["id"]},
        rescued=False,
        payload=None,  # the validated event travels with the hand-over
        reference=cancellation["reference"],
        failures=0,
    )
