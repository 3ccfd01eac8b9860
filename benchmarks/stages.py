"""Where one email's service CPU goes: each step of the hot path timed alone, in this process.

    .venv/bin/python -m benchmarks.stages
    .venv/bin/python -m benchmarks.stages -n 2000 --repeats 7

A sampling profiler of the running service (py-spy) charges a syscall that wakes another process
on these 2 shared cores (PostgreSQL, the SMTP server, the load generator) with the time the
service then waits to run again, so it overstates socket writes; this times each step with the
CPU clock instead (`time.process_time`, median of the repeats, microseconds per call):

- webhook: the event validated from its bytes (`model_validate_json`);
- http: one request through the service's ASGI stack (its middleware and routers, GET /healthz)
  beside the same route on a bare FastAPI app and a bare ASGI callable: the framework's share;
  and a signed webhook POSTed through it to a store that answers at once (no database: the
  route, signature check, validation and ingest bookkeeping without the statement);
- render, mime, data: `Renderer.render`, `wire_message` and the DATA payload of the sample email;
- smtp: `Mailer.send` of that message to aiosmtpd in its own process on a reused connection
  (the client's side of MAIL, RCPT, DATA, the payload and the four replies);
- log: one JSON log line at info (to /dev/null).

The ingest statement alone is `benchmarks.ingest_pair`; the whole flow is `benchmarks.run`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvloop
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.types import Message, Receive, Scope, Send

from benchmarks.run import SECRET, SinkProc, signed_request
from cancelnotify.app import create_app, get_scope
from cancelnotify.clock import utcnow
from cancelnotify.logging import configure_logging
from cancelnotify.mail.message import wire_message
from cancelnotify.mail.render import RenderedEmail, Renderer
from cancelnotify.mail.transport import Mailer, WireMessage, data_payload
from cancelnotify.samples import sample_event
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.settings import Settings
from cancelnotify.store import Ingested, Store


def median_us(repeats: list[float], n: int) -> float:
    return statistics.median(repeats) * 1e6 / n


def cpu_per_call(fn: Callable[[], object], n: int, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(n):
            fn()
        samples.append(time.process_time() - start)
    return median_us(samples, n)


async def acpu_per_call(fn: Callable[[], Awaitable[object]], n: int, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(n):
            await fn()
        samples.append(time.process_time() - start)
    return median_us(samples, n)


class _Health(BaseModel):
    status: str


def bare_fastapi() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz", response_model=_Health)
    async def healthz() -> _Health:
        return _Health(status="ok")

    return app


async def bare_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})


class _InstantStore(Store):
    """A store whose ingest finds nothing stored before and writes nowhere."""

    async def ingest(
        self,
        cancellation: dict[str, Any],
        notification: dict[str, Any],
        callback: dict[str, Any] | None,
        *,
        payload_text: str | None = None,
    ) -> Ingested:
        return Ingested(cancellation["id"], notification["id"], notification["status"], True, True)


class _NoDispatcher:
    def reserve(self) -> None:
        return None

    def wake(self) -> None:
        return None


async def webhook_stage(settings: Settings, n: int, repeats: int) -> float:
    """CPU per signed webhook POSTed through the service's app to `_InstantStore`."""
    app = create_app(settings)
    app.state.settings = settings
    app.state.store = _InstantStore()
    app.state.dispatcher = _NoDispatcher()
    app.state.clock = utcnow
    raw = signed_request(
        "/v1/webhooks/order-cancelled",
        sample_event(order_id="stages-1", email="customer1@example.com"),
    )
    head, body = raw.split(b"\r\n\r\n", 1)
    headers = [
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
    ]
    statuses: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def call() -> None:
        scope = get_scope("/v1/webhooks/order-cancelled")
        scope.update(method="POST", headers=headers)
        await app(scope, receive, send)

    us = await acpu_per_call(call, n, repeats)
    if set(statuses) != {202}:
        raise SystemExit(f"the webhook answered {sorted(set(statuses))}")
    return us


async def http_stages(settings: Settings, n: int, repeats: int) -> dict[str, float]:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    apps: dict[str, Any] = {
        "http: bare ASGI callable": bare_asgi,
        "http: bare FastAPI route": bare_fastapi(),
        "http: the service's stack (GET /healthz)": create_app(settings),
    }
    out = {}
    for name, app in apps.items():

        async def call(app: Any = app) -> None:
            await app(get_scope("/healthz"), receive, send)

        out[name] = await acpu_per_call(call, n, repeats)
        if set(statuses) != {200}:
            raise SystemExit(f"{name} answered {sorted(set(statuses))}")
        statuses.clear()
    out["http: POST a signed webhook (store answers at once)"] = await webhook_stage(
        settings, n, repeats
    )
    return out


async def smtp_stage(settings: Settings, message: bytes, n: int, repeats: int) -> float:
    mailer = Mailer(settings)
    try:
        sender, recipient = "orders@bench.example", "customer1@example.com"
        first = await mailer.send(sender, recipient, message)  # connect and EHLO outside
        if first.code != 250:
            raise SystemExit(f"the SMTP server answered {first}")

        async def send() -> None:
            result = await mailer.send(sender, recipient, message)
            if result.code != 250:
                raise SystemExit(f"the SMTP server answered {result}")

        return await acpu_per_call(send, max(1, n // 4), repeats)
    finally:
        await mailer.close()


@dataclass(frozen=True)
class SampleSteps:
    """The sample webhook's steps, ready to call (here and in `benchmarks.inflow`)."""

    raw: str  # the webhook's body
    render: Callable[[], RenderedEmail]
    mime: Callable[[], WireMessage]  # of the email `render` made first


def sample_steps(settings: Settings, *, locale: str | None) -> SampleSteps:
    """`locale` None: the customer's, as the service renders it."""
    raw = json.dumps(sample_event(order_id="stages-1", email="customer1@example.com"), default=str)
    event = CancellationEventV1.model_validate_json(raw)
    renderer = Renderer(settings)
    renderer.compile_all()
    notification_id = uuid.uuid4()

    def render() -> RenderedEmail:
        return renderer.render(
            event,
            notification_id=notification_id,
            reference="CX-7K2M-9QZP-D4TR",
            template="order_cancelled",
            locale=locale,
        )

    rendered = render()

    def mime() -> WireMessage:
        return wire_message(
            rendered,
            settings,
            to="customer1@example.com",
            message_id=f"<{notification_id}@bench.example>",
            to_name=event.customer.first_name,
        )

    return SampleSteps(raw, render, mime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-n", type=int, default=1000, help="calls per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n, repeats = args.n, args.repeats

    sink = SinkProc()
    try:
        settings = Settings(
            _env_file=None,
            database_url="sqlite+aiosqlite://",
            smtp_host="127.0.0.1",
            smtp_port=sink.port,
            smtp_security="none",
            mail_from="Bench Shop <orders@bench.example>",
            webhook_secret=SECRET,
        )
        sample = sample_steps(settings, locale="en")
        raw, render, mime = sample.raw, sample.render, sample.mime
        rendered = render()
        wire = mime()
        configure_logging("info")
        log = logging.getLogger("cancelnotify.dispatcher")
        extra = {"notification_id": str(uuid.uuid4()), "outcome": "sent", "smtp_code": 250}
        results: dict[str, float] = {}
        with open(os.devnull, "w") as devnull:
            handler = logging.getLogger().handlers[0]
            assert isinstance(handler, logging.StreamHandler)
            handler.setStream(devnull)
            results["log: one JSON line at info"] = cpu_per_call(
                lambda: log.info("send result", extra=extra), n, repeats
            )
            logging.getLogger().setLevel(logging.WARNING)  # the app's start-up says nothing here
            results["webhook: validate the event from its bytes"] = cpu_per_call(
                lambda: CancellationEventV1.model_validate_json(raw), n, repeats
            )
            results["render: Renderer.render (order_cancelled, en)"] = cpu_per_call(
                render, max(1, n // 4), repeats
            )
            results["mime: wire_message"] = cpu_per_call(mime, n, repeats)
            results["data: the DATA payload (CRLF, dot-stuffed)"] = cpu_per_call(
                lambda: data_payload(wire.data, crlf=wire.crlf), n, repeats
            )
            results.update(uvloop.run(http_stages(settings, n, repeats)))
            results["smtp: Mailer.send to aiosmtpd, reused connection"] = uvloop.run(
                smtp_stage(settings, wire.data, n, repeats)
            )
    finally:
        with contextlib.suppress(Exception):
            sink.stop()

    width = max(len(name) for name in results)
    print(f"{'step':<{width}}  CPU µs per call (median of {repeats})")
    for name, us in results.items():
        print(f"{name:<{width}}  {us:8.1f}")
    print(f"the sample email: {len(wire.data):,} bytes, HTML {len(rendered.html):,} characters")


if __name__ == "__main__":
    main()
