"""Ops routes for cancellations: by id, and by the shop's order id."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from cancelnotify.api.deps import ApiKeyDep, SessionDep
from cancelnotify.schemas.api import PRINTABLE, CancellationList, CancellationRead, Source
from cancelnotify.schemas.problem import problem_responses
from cancelnotify.services import cancellations

router = APIRouter(prefix="/v1/cancellations", tags=["cancellations"])


@router.get(
    "",
    response_model=CancellationList,
    summary="Every cancellation received for an order id, newest first, with its emails",
    responses=problem_responses(401, 422, 503),
)
async def find_cancellations(
    order_id: Annotated[str, Query(min_length=1, max_length=100, pattern=PRINTABLE)],
    session: SessionDep,
    key: ApiKeyDep,
    source: Source | None = None,
) -> CancellationList:
    return await cancellations.find_by_order(
        session, order_id, source=source, reveal_recipient=key.scope == "admin"
    )


@router.get(
    "/{cancellation_id}",
    response_model=CancellationRead,
    summary="A cancellation with the notifications it caused",
    responses=problem_responses(401, 404, 422, 503),
)
async def get_cancellation(
    cancellation_id: uuid.UUID, session: SessionDep, key: ApiKeyDep
) -> CancellationRead:
    return await cancellations.get(session, cancellation_id, reveal_recipient=key.scope == "admin")
