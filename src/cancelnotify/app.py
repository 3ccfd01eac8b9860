"""The application factory: lifespan-owned state, routers and problem+json handlers."""

from __future__ import annotations

import contextlib
import gc
import re
import secrets
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cancelnotify import __version__
from cancelnotify.api import (
    callbacks,
    cancellations,
    customer,
    health,
    metrics,
    notifications,
    preview,
    refunds,
    stats,
    webhooks,
)
from cancelnotify.clock import Clock, utcnow
from cancelnotify.db import create_engine, create_sessionmaker
from cancelnotify.dispatcher import Dispatcher
from cancelnotify.errors import install_handlers
from cancelnotify.logging import request_id_var
from cancelnotify.mail.render import Renderer
from cancelnotify.mail.sink import RecordingHandler
from cancelnotify.mail.transport import Mailer
from cancelnotify.metrics import Metrics
from cancelnotify.settings import Settings
from cancelnotify.store import open_store

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Give every request an id (the caller's X-Request-ID if sane) and echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode(
            "latin-1"
        )
        request_id = given if _REQUEST_ID.match(given) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


def get_scope(path: str) -> Scope:
    """The ASGI scope of a plain GET of `path` from loopback, for a request made in process."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
        "state": {},
    }


async def _warm_up_routes(app: ASGIApp) -> None:
    """Send the app one request, in process, for a path that no route has.

    FastAPI builds a route's request handling (the validators of its parameters and response
    model) the first time a request is matched against it: 20-30 ms for the first request of
    each router, which the first webhooks after a start would pay (measured). A path that
    matches nothing is matched against every route. It answers 404 and nothing is logged.
    """

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: Message) -> None:
        return None

    await app(get_scope("/-/warm-up"), receive, send)


def create_app(
    settings: Settings,
    *,
    clock: Clock = utcnow,
    mailbox: RecordingHandler | None = None,
    own_process: bool = False,
) -> FastAPI:
    """Build the app; nothing connects until the lifespan starts.

    `own_process` (the `serve` and `dev` commands): every language's templates compiled at
    start-up; once started, everything built so far (modules, compiled templates, catalogs, the
    app) moved out of the garbage collector's sight.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        store = await open_store(settings, engine, sessionmaker)
        renderer = Renderer(settings)
        if own_process:
            renderer.compile_all()  # tests build many apps and render few languages
            renderer.warm_up()
        mailer = Mailer(settings)
        registry = Metrics()
        dispatcher = Dispatcher(
            settings, store, sessionmaker, renderer, mailer, clock=clock, metrics=registry
        )
        app.state.settings = settings
        app.state.clock = clock
        app.state.engine = engine
        app.state.sessionmaker = sessionmaker
        app.state.store = store
        app.state.renderer = renderer
        app.state.mailer = mailer
        app.state.dispatcher = dispatcher
        app.state.mailbox = mailbox
        app.state.metrics = registry
        if settings.dispatcher_enabled:
            dispatcher.start()
        if own_process:
            await _warm_up_routes(app)
            # Start-up objects live as long as the process; without this every full collection
            # walks them again (gc.freeze, as CPython's docs advise for long-running servers).
            # A request frees almost everything by reference counting, so the cycle collector
            # runs every 20,000 allocations instead of 700: fewer pauses in the latency tail
            # (measured with benchmarks.compare --fixed; README, Performance).
            gc.collect()
            gc.freeze()
            gc.set_threshold(20_000, 20, 20)
        try:
            yield
        finally:
            await dispatcher.stop()
            await mailer.close()
            await store.close()
            await engine.dispose()

    app = FastAPI(
        title="cancelnotify",
        version=__version__,
        summary="Order-cancellation emails: webhook in, email out, at once.",
        lifespan=lifespan,
        # We export Prometheus metrics and JSON logs; FastAPI's OpenTelemetry hooks looked up the
        # global tracer provider (and the environment) on every request: 3 % of a webhook's CPU.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.add_middleware(webhooks.DirectRoutes, routes=webhooks.router.routes)
    app.add_middleware(metrics.WebhookMetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)
    install_handlers(app)
    app.include_router(webhooks.router)
    app.include_router(notifications.router)
    app.include_router(cancellations.router)
    app.include_router(stats.router)
    app.include_router(metrics.router)
    app.include_router(health.router)
    app.include_router(refunds.router)
    app.include_router(callbacks.router)
    app.include_router(customer.router)
    if settings.preview_enabled:  # off: every /preview URL is a 404 problem
        preview.install(app)
    if mailbox is not None:
        from cancelnotify.api import devmail

        app.include_router(devmail.router)
    return app
