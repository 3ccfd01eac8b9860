"""Cancellation lookups for ops: by id, or every cancellation received for an order."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from cancelnotify import repository
from cancelnotify.errors import NotFound
from cancelnotify.models import Cancellation
from cancelnotify.schemas.api import CancellationList, CancellationRead, NotificationSummary
from cancelnotify.services.notifications import summaries


async def _read(
    session: AsyncSession, rows: list[Cancellation], *, reveal_recipient: bool
) -> list[CancellationRead]:
    query = repository.NotificationQuery(cancellation_ids=tuple(c.id for c in rows))
    found = await summaries(session, query, reveal_recipient=reveal_recipient) if rows else []
    by_cancellation: dict[uuid.UUID, list[NotificationSummary]] = {}
    for item in reversed(found):  # oldest first: the original email, then its resends
        by_cancellation.setdefault(item.cancellation_id, []).append(item)
    return [
        CancellationRead(
            id=c.id,
            source=c.source,
            event_id=c.event_id,
            webhook_id=c.webhook_id,
            order_id=c.order_id,
            order_number=c.order_number,
            reason=c.reason,
            reference=c.reference,
            occurred_at=c.occurred_at,
            received_at=c.received_at,
            notifications=by_cancellation.get(c.id, []),
        )
        for c in rows
    ]


async def get(
    session: AsyncSession, cancellation_id: uuid.UUID, *, reveal_recipient: bool
) -> CancellationRead:
    row = await repository.get_cancellation(session, cancellation_id)
    if row is None:
        raise NotFound(f"No cancellation {cancellation_id}")
    return (await _read(session, [row], reveal_recipient=reveal_recipient))[0]


async def find_by_order(
    session: AsyncSession, order_id: str, *, source: str | None, reveal_recipient: bool
) -> CancellationList:
    """Every cancellation received for this order id, newest first (a list: sources differ)."""
    rows = await repository.find_cancellations_by_order(session, order_id, source=source, limit=100)
    return CancellationList(items=await _read(session, rows, reveal_recipient=reveal_recipient))
