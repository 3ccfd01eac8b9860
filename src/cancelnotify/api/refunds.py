"""Refund updates from the shop's backend (admin): the status page follows, `completed` emails."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from cancelnotify.api.deps import AdminKeyDep, ClockDep, SessionDep, SettingsDep
from cancelnotify.api.notifications import IdempotencyKey
from cancelnotify.schemas.beyond import RefundEventCreate, RefundEventResult
from cancelnotify.schemas.problem import problem_responses
from cancelnotify.services import refunds

router = APIRouter(prefix="/v1/cancellations", tags=["refunds"])


@router.post(
    "/{cancellation_id}/refund-events",
    status_code=status.HTTP_201_CREATED,
    response_model=RefundEventResult,
    summary="Record a refund update; `completed` queues one 'refund is on its way' email",
    responses={
        200: {"model": RefundEventResult, "description": "Same Idempotency-Key: the first result"},
        **problem_responses(400, 401, 403, 404, 409, 422, 503),
    },
)
async def post_refund_event(
    cancellation_id: uuid.UUID,
    body: RefundEventCreate,
    response: Response,
    session: SessionDep,
    _key: AdminKeyDep,
    settings: SettingsDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> RefundEventResult:
    result, created = await refunds.record(
        session,
        cancellation_id,
        body,
        idempotency_key=idempotency_key,
        settings=settings,
        now=clock(),
    )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return result
