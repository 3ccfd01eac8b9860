"""Shared fixtures: a real PostgreSQL cluster, a real SMTP sink, the app with its lifespan."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cancelnotify.app import create_app
from cancelnotify.db import run_migrations
from cancelnotify.mail.sink import RecordingHandler, sink_port, start_sink
from cancelnotify.settings import Settings
from cancelnotify.signatures import sign
from tests.pgserver import PgServer

SECRET_KEY = b"test-secret-key-0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(SECRET_KEY).decode()
ADMIN_KEY = "cn_test_admin_key"
READ_KEY = "cn_test_read_key"
TABLES = (
    "engagement_events",
    "refund_events",
    "callbacks",
    "audit_events",
    "delivery_attempts",
    "notifications",
    "cancellations",
    "api_keys",
)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """One private PostgreSQL 15 cluster per test run (initdb in a temp dir, loopback only)."""
    server = PgServer()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def pg_url(pg: PgServer) -> str:
    """A fresh database, built by `alembic upgrade head`."""
    url = pg.create_database(f"cn_{uuid.uuid4().hex[:8]}")
    run_migrations(url)
    return url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}"
    run_migrations(url)
    return url


@pytest.fixture(params=["postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Which database a test runs on; API tests override the params to add SQLite."""
    return str(request.param)


@pytest.fixture
async def database_url(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    url = str(request.getfixturevalue("pg_url" if backend == "postgresql" else "sqlite_url"))
    await truncate(url)
    await _seed_keys(url)
    yield url


async def truncate(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        if url.startswith("postgresql"):
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
        else:
            for table in TABLES:
                await conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names
    await engine.dispose()


async def _seed_keys(url: str) -> None:
    from cancelnotify.services.apikeys import hash_key

    engine = create_async_engine(url)
    async with engine.begin() as conn:
        for key, scope in ((ADMIN_KEY, "admin"), (READ_KEY, "read")):
            await conn.execute(
                text(
                    "INSERT INTO api_keys (id, name, scope, prefix, key_hash, created_at) "
                    "VALUES (:id, :name, :scope, :prefix, :hash, CURRENT_TIMESTAMP)"
                ),
                {
                    "id": uuid.uuid4() if url.startswith("postgresql") else uuid.uuid4().hex,
                    "name": scope,
                    "scope": scope,
                    "prefix": key[:12],
                    "hash": hash_key(key),
                },
            )
    await engine.dispose()


@dataclass
class Sink:
    handler: RecordingHandler
    port: int

    @property
    def messages(self) -> list[Any]:
        return self.handler.messages

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.handler.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} message(s) at the sink, got {len(self.handler.messages)}"
                )
            await asyncio.sleep(0.01)


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    handler = RecordingHandler()
    server = await start_sink(handler)
    try:
        yield Sink(handler, sink_port(server))
    finally:
        server.close()


@pytest.fixture
def make_settings(database_url: str, sink: Sink) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "smtp_host": "127.0.0.1",
            "smtp_port": sink.port,
            "smtp_security": "none",
            "webhook_secret": SECRET,
            "mail_from": "Example Shop <orders@shop.example>",
            "reply_to": "help@shop.example",
            "support_email": "help@shop.example",
            "poll_interval_seconds": 0.2,
            "retry_base_seconds": 0.05,
            "retry_max_seconds": 0.2,
            "lease_seconds": 5.0,
            "shutdown_grace_seconds": 2.0,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, lifespan and dispatcher running, over an in-process ASGI transport."""
    async with running_client(settings) as c:
        yield c


class running_client:
    def __init__(self, settings: Settings, **app_kwargs: Any) -> None:
        self.app = create_app(settings, **app_kwargs)
        self._cm = self.app.router.lifespan_context(self.app)

    async def __aenter__(self) -> httpx.AsyncClient:
        await self._cm.__aenter__()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://testserver"
        )
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self._cm.__aexit__(None, None, None)


def signed_headers(
    body: bytes,
    *,
    webhook_id: str | None = None,
    timestamp: int | None = None,
    key: bytes = SECRET_KEY,
) -> dict[str, str]:
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(key, webhook_id, ts, body),
    }


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode()


SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "platforms"
