"""Webhook routes: the canonical Standard Webhooks endpoint and the Shopify/WooCommerce ones."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from cancelnotify.api.deps import read_body
from cancelnotify.schemas.api import WebhookAccepted, WebhookIgnored
from cancelnotify.schemas.problem import problem_responses
from cancelnotify.services import platforms, webhooks
from cancelnotify.services.ingest import IngestResult
from cancelnotify.services.platforms import Ignored


class PlainRoute(APIRoute):
    """A route whose endpoint takes the Request and returns the Response itself.

    FastAPI's own handler would solve the endpoint's parameters and validate and serialize its
    return value through the response model: without them a webhook costs 175 us in process
    instead of 207 (benchmarks/stages.py, "http: POST a signed webhook"). The declared
    `response_model`, `status_code` and `responses` still document the route (the OpenAPI
    document is the same); the endpoint serializes those models itself.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        # Checked as the route is made (at import): an endpoint given parameters of its own
        # would otherwise be called without them, at the first request.
        if len(inspect.signature(self.endpoint).parameters) != 1:
            raise TypeError(f"{self.path}: a PlainRoute endpoint takes the Request alone")
        handler: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return handler


class DirectRoutes:
    """Requests for the webhook routes go straight to their endpoints, around FastAPI's router.

    A webhook is the hot path of a storm. Its endpoint (a `PlainRoute`'s) takes the Request and
    returns the Response, so FastAPI adds nothing to it but the way there: its exception
    middleware, the exit stacks, matching the path against the routes of every router: a signed
    webhook costs 93 instead of 127 us in process without them (benchmarks/stages.py, "http:
    POST a signed webhook"). This middleware sits inside the app's own (request id, webhook
    metrics), finds the endpoint by exact path and method, and answers an exception the
    endpoint raises with the app's handler for it, looked up as Starlette's ExceptionMiddleware
    does (the handler of `Exception` is the outermost ServerErrorMiddleware's, as before).
    Anything else (another path or method, a trailing slash) goes through FastAPI.
    """

    def __init__(self, app: ASGIApp, routes: Iterable[BaseRoute]) -> None:
        self.app = app
        self.endpoints = {
            (route.path, method): route.endpoint
            for route in routes
            if isinstance(route, PlainRoute)
            for method in route.methods or ()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = None
        if scope["type"] == "http":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            endpoint = self.endpoints.get((path, scope["method"]))
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = _handler_for(scope["app"].exception_handlers, exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)


def _handler_for(handlers: Mapping[Any, Any], exc: Exception) -> Any:
    """The app's handler for `exc` below the catch-all one (Starlette's own lookup)."""
    if isinstance(exc, StarletteHTTPException) and exc.status_code in handlers:
        return handlers[exc.status_code]
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None


router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=PlainRoute)


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
async def order_cancelled(request: Request) -> Response:
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
    return _answer(result, request)


def _answer(result: IngestResult | Ignored, request: Request) -> Response:
    """202 with the ids; 200 for a duplicate (same ids) or an ignored platform event."""
    if isinstance(result, Ignored):
        return _json(status.HTTP_200_OK, WebhookIgnored(reason=result.reason))
    if not (result.duplicate or result.handed_over):
        request.app.state.dispatcher.wake()  # stored and committed: send it now
    accepted = WebhookAccepted(
        cancellation_id=result.cancellation_id,
        notification_id=result.notification_id,
        status=result.status,
        duplicate=result.duplicate,
    )
    return _json(status.HTTP_200_OK if result.duplicate else status.HTTP_202_ACCEPTED, accepted)


def _json(code: int, model: BaseModel) -> Response:
    return Response(model.model_dump_json(), status_code=code, media_type="application/json")


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
async def shopify(request: Request) -> Response:
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
    return _answer(result, request)


@router.post(
    "/woocommerce",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookAccepted | WebhookIgnored,
    summary="Receive WooCommerce's order.updated webhook (X-WC-Webhook-Signature)",
    responses=_PLATFORM_RESPONSES,
)
async def woocommerce(request: Request) -> Response:
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
    return _answer(result, request)
