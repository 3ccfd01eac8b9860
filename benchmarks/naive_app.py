"""The naive baseline: validate, insert and send over a NEW SMTP connection inside the request.

What a first version of this service would look like; the benchmark runs it on the same servers
so the ratio to cancelnotify is measured, not assumed. It sends the same email (the same
templates, rendered by the same Renderer), built the obvious way with `EmailMessage`: the
comparison is between designs, not between a two-line email and a real one. Run with uvicorn
`benchmarks.naive_app:app` and env NAIVE_DATABASE_URL (asyncpg DSN), NAIVE_SMTP_PORT.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import aiosmtplib
import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from cancelnotify.mail.message import build_message
from cancelnotify.mail.render import Renderer
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.settings import Settings

app = FastAPI()
_pool: asyncpg.Pool | None = None
_settings = Settings(
    _env_file=None,
    database_url="sqlite+aiosqlite:///unused.db",
    mail_from="Bench Shop <orders@bench.example>",
)
_renderer = Renderer(_settings)


async def pool() -> asyncpg.Pool:
    global _pool
    if _pool is None:
        _pool = await asyncpg.create_pool(os.environ["NAIVE_DATABASE_URL"], max_size=10)
    return _pool


@app.post("/v1/webhooks/order-cancelled")
async def receive(request: Request) -> JSONResponse:
    event = CancellationEventV1.model_validate_json(await request.body())
    now = datetime.now(UTC)
    cid, nid = uuid.uuid4(), uuid.uuid4()
    async with (await pool()).acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO cancellations (id, source, event_id, order_id, reason, reference,"
            " occurred_at, received_at) VALUES ($1,'naive',$2,$3,$4,$5,$6,$7)",
            cid,
            event.event_id,
            event.order.id,
            event.cancellation.reason.value,
            uuid.uuid4().hex[:20],
            event.occurred_at,
            now,
        )
        await conn.execute(
            "INSERT INTO notifications (id, cancellation_id, kind, recipient, status, attempts,"
            " next_attempt_at, message_id, send_by, created_at, updated_at)"
            " VALUES ($1,$2,'naive',$3,'sent',1,$4,$5,$4,$4,$4)",
            nid,
            cid,
            str(event.customer.email),
            now,
            f"<{nid}@bench.example>",
        )
    rendered = _renderer.render(event, notification_id=nid, reference=cid.hex[:12])
    msg = build_message(
        rendered,
        _settings,
        to=str(event.customer.email),
        to_name=event.customer.first_name,
        message_id=f"<{nid}@bench.example>",
    )
    await aiosmtplib.send(
        msg, hostname="127.0.0.1", port=int(os.environ["NAIVE_SMTP_PORT"]), start_tls=False
    )
    return JSONResponse({"notification_id": str(nid)}, status_code=202)
