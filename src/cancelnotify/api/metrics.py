"""GET /metrics in the Prometheus text format, and the middleware counting webhook outcomes."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cancelnotify.api.deps import ClockDep, SessionDep
from cancelnotify.metrics import Metrics
from cancelnotify.schemas.problem import problem_responses
from cancelnotify.services import stats

router = APIRouter(tags=["metrics"])
log = logging.getLogger(__name__)


@router.get(
    "/metrics",
    summary="Prometheus metrics (no auth: expose only to the scraper's network)",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **problem_responses(503),
    },
)
async def metrics(request: Request, session: SessionDep, clock: ClockDep) -> Response:
    registry: Metrics = request.app.state.metrics
    await stats.refresh_gauges(session, registry, now=clock())
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)


_PREFIX = "/v1/webhooks/"
_SOURCES = {"order-cancelled": "canonical", "shopify": "shopify", "woocommerce": "woocommerce"}


def webhook_outcome(status: int) -> str:
    """accepted (202), duplicate (200), rejected (4xx: signature, body, schema), error (5xx)."""
    if status == 202:
        return "accepted"
    if status == 200:
        return "duplicate"
    return "rejected" if status < 500 else "error"


class WebhookMetricsMiddleware:
    """Counts every webhook request by source (the path's last part) and outcome.

    A route may name its outcome itself (e.g. "ignored") in `request.state.webhook_outcome`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(_PREFIX):
            await self.app(scope, receive, send)
            return
        source = _SOURCES.get(path.removeprefix(_PREFIX).strip("/"), "unknown")
        status = 500

        async def send_and_count(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_count)
        finally:
            metrics: Metrics | None = getattr(scope["app"].state, "metrics", None)
            state = scope.get("state", {})
            outcome = state.get("webhook_outcome") or webhook_outcome(status)
            if metrics is not None:
                metrics.webhooks.labels(source, outcome).inc()
            # An accepted webhook already has its line, "cancellation stored" (same request id,
            # with the ids): one line per webhook in a storm, not two.
            log.log(
                logging.DEBUG if outcome == "accepted" else logging.INFO,
                "webhook %s",
                outcome,
                extra={
                    "source": source,
                    "outcome": outcome,
                    "status": status,
                    "request_id": state.get("request_id"),
                },
            )
