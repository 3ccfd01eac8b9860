"""Webhook routes: the canonical Standard Webhooks endpoint and the Shopify/WooCommerce ones."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from cancelnotify.api.deps import read_body
from cancelnotify.schemas.api import WebhookAccepted, WebhookIgnored
from cancelnotify.schemas.problem import problem_responses
from cancelnotify.services import platforms, webhooks
from cancelnotify.services.ingest import IngestResult
from cancelnotify.services.platforms import Ignored

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
async def order_cancelled(request: Request, response: Response) -> WebhookAccepted:
    body = await read_body(request)
    state = request.app.state
    result = await webhooks.receive_canonical(
        state.store,
        body,
        headers=request.headers,
        settings=state.settings,
        now=state.clock(),
        request_id=request.state.request_id,
        handover=state.dispatcher,
    )
    answer = _answer(result, request, response)
    assert isinstance(answer, WebhookAccepted)  # noqa: S101
    return answer


def _answer(
    result: IngestResult | Ignored, request: Request, response: Response
) -> WebhookAccepted | WebhookIgnored:
    if isinstance(result, Ignored):
        response.status_code = status.HTTP_200_OK
        return WebhookIgnored(reason=result.reason)
    if result.duplicate:
        response.status_code = status.HTTP_200_OK
    elif not result.handed_over:
        request.app.state.dispatcher.wake()  # stored and committed: send it now
    return WebhookAccepted(
        cancellation_id=result.cancellation_id,
        notification_id=result.notification_id,
        status=result.status,
        duplicate=result.duplicate,
    )


_PLATFORM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": WebhookAccepted | WebhookIgnored,
        "description": "Duplicate (same ids), or acknowledged and ignored (topic, status, ping)",
    },
    **problem_responses(400, 401, 413, 415, 422, 503),
}


@router.post(
    "/shopify",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookAccepted | WebhookIgnored,
    summary="Receive Shopify's orders/cancelled webhook (X-Shopify-Hmac-Sha256)",
    responses=_PLATFORM_RESPONSES,
)
async def shopify(request: Request, response: Response) -> WebhookAccepted | WebhookIgnored:
    body = await read_body(request)
    state = request.app.state
    result = await platforms.receive_shopify(
        state.store,
        body,
        headers=request.headers,
        settings=state.settings,
        now=state.clock(),
        request_id=request.state.request_id,
        handover=state.dispatcher,
    )
    return _answer(result, request, response)


@router.post(
    "/woocommerce",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookAccepted | WebhookIgnored,
    summary="Receive WooCommerce's order.updated webhook (X-WC-Webhook-Signature)",
    responses=_PLATFORM_RESPONSES,
)
async def woocommerce(request: Request, response: Response) -> WebhookAccepted | WebhookIgnored:
    body = await read_body(request)
    state = request.app.state
    result = await platforms.receive_woocommerce(
        state.store,
        body,
        headers=request.headers,
        settings=state.settings,
        now=state.clock(),
        request_id=request.state.request_id,
        handover=state.dispatcher,
    )
    return _answer(result, request, response)
