"""Webhook routes: the canonical Standard Webhooks endpoint (platform routes join it here)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from cancelnotify.api.deps import ClockDep, RawBodyDep, SessionDep, SettingsDep
from cancelnotify.schemas.api import WebhookAccepted
from cancelnotify.schemas.problem import problem_responses
from cancelnotify.services import webhooks

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post(
    "/order-cancelled",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookAccepted,
    summary="Receive a canonical order-cancelled event (Standard Webhooks signed)",
    responses={
        200: {"model": WebhookAccepted, "description": "Already received; same ids"},
        **problem_responses(400, 401, 413, 415, 422, 503),
    },
)
async def order_cancelled(
    request: Request,
    response: Response,
    body: RawBodyDep,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> WebhookAccepted:
    result = await webhooks.receive_canonical(
        session,
        body,
        headers=dict(request.headers),
        settings=settings,
        now=clock(),
        request_id=request.state.request_id,
    )
    if result.duplicate:
        response.status_code = status.HTTP_200_OK
    return WebhookAccepted(
        cancellation_id=result.cancellation_id,
        notification_id=result.notification_id,
        status=result.status,
        duplicate=result.duplicate,
    )
