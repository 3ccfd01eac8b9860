"""Fault-test harness: restartable SMTP sink, replica processes, DB probes, figures file."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cancelnotify.clock import utcnow
from cancelnotify.db import create_engine, create_sessionmaker
from cancelnotify.mail.sink import RecordingHandler, start_sink
from cancelnotify.samples import sample_event
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.services.ingest import ingest
from cancelnotify.settings import Settings
from cancelnotify.store import open_store
from tests.conftest import SECRET, Sink
from tests.pgserver import free_port

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "artifacts" / "fault-figures.json"


# -- figures --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def figures() -> Iterator[dict[str, dict[str, Any]]]:
    """Each fault test files one line of figures; written to artifacts/fault-figures.json."""
    collected: dict[str, dict[str, Any]] = {}
    yield collected
    if collected:
        FIGURES.parent.mkdir(exist_ok=True)
        FIGURES.write_text(json.dumps(collected, indent=2, sort_keys=True) + "\n")


@pytest.fixture
def figure(
    figures: dict[str, dict[str, Any]], request: pytest.FixtureRequest
) -> Callable[..., None]:
    def record(**values: Any) -> None:
        name = request.node.name
        figures[name] = values
        line = " ".join(f"{k}={v}" for k, v in values.items())
        print(f"\nFIGURE {name}: {line}")  # noqa: T201 - quoted by the report

    return record


# -- SMTP sink ------------------------------------------------------------------------------
@dataclass
class RestartableSink(Sink):
    server: asyncio.Server | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def ids(self) -> collections.Counter[str]:
        return collections.Counter(m.message_id for m in self.handler.messages)

    async def stop(self) -> None:
        """The relay goes away: the port refuses connections, open ones are cut."""
        if self.server is not None:
            self.server.close()
            self.handler.drop_connections()
            await self.server.wait_closed()
            self.server = None

    async def start(self) -> None:
        self.server = await start_sink(self.handler, port=self.port, **self.kwargs)


@pytest.fixture
async def sink() -> AsyncIterator[RestartableSink]:
    handler = RecordingHandler()
    s = RestartableSink(handler, free_port())
    await s.start()
    try:
        yield s
    finally:
        for held in handler.holds:
            held.release.set()
        await s.stop()


# -- database probes ------------------------------------------------------------------------
@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def status_counts(engine: AsyncEngine) -> dict[str, int]:
    found = await rows(engine, "SELECT status, count(*) FROM notifications GROUP BY status")
    return {r[0]: r[1] for r in found}


async def enqueue(settings: Settings, count: int, *, prefix: str = "") -> list[uuid.UUID]:
    """Queue `count` notifications through the ingest service, no wake-up."""
    engine = create_engine(settings)
    store = await open_store(settings, engine, create_sessionmaker(engine))
    ids = []
    try:
        for i in range(count):
            event = sample_event(order_id=f"{prefix}{i}-{uuid.uuid4().hex[:6]}")
            result = await ingest(
                store,
                CancellationEventV1.model_validate(event),
                source="canonical",
                webhook_id=None,
                payload=event,
                settings=settings,
                now=utcnow(),
            )
            ids.append(result.notification_id)
    finally:
        await store.close()
        await engine.dispose()
    return ids


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, step: float = 0.05
) -> float:
    """Poll `check` until true; return the seconds it took, or fail saying `what`."""
    t0 = time.monotonic()
    while not await check():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(step)
    return time.monotonic() - t0


# -- replica processes ----------------------------------------------------------------------
class Replica:
    """`python -m cancelnotify serve` as a real process, configured through CANCELNOTIFY_*."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = env
        self.workdir = workdir
        self.proc: asyncio.subprocess.Process | None = None
        self.log = workdir / f"{name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Replica:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cancelnotify",
                "serve",
                "--port",
                str(self.port),
                env=self.env,
                cwd=self.workdir,
                stdout=out,
                stderr=out,
            )
        return self

    async def ready(self, timeout: float = 30.0) -> None:
        async with httpx.AsyncClient() as client:
            t0 = time.monotonic()
            while True:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    raise AssertionError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    r = await client.get(self.url + "/healthz", timeout=1)
                    if r.status_code == 200:
                        return
                if time.monotonic() - t0 > timeout:
                    raise AssertionError(f"{self.name} not ready: {self.log.read_text()[-2000:]}")
                await asyncio.sleep(0.05)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    async def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)


@dataclass
class Cluster:
    database_url: str
    sink: Sink
    workdir: Path
    replicas: list[Replica] = field(default_factory=list)

    def env(self, name: str, **overrides: Any) -> dict[str, str]:
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "database_pool_size": 5,
            "smtp_host": "127.0.0.1",
            "smtp_port": self.sink.port,
            "smtp_security": "none",
            "webhook_secret": SECRET,
            "worker_id": name,
            "poll_interval_seconds": 0.2,
            "lease_seconds": 1.5,
            "retry_base_seconds": 0.05,
            "retry_max_seconds": 0.5,
            "shutdown_grace_seconds": 2.0,
            "smtp_connect_timeout_seconds": 5,
            "log_level": "warning",
        }
        values.update(overrides)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CANCELNOTIFY_")}
        env.update({f"CANCELNOTIFY_{k.upper()}": str(v) for k, v in values.items()})
        env["PYTHONPATH"] = str(ROOT / "src")
        return env

    async def start(self, name: str, **overrides: Any) -> Replica:
        replica = Replica(name, self.env(name, **overrides), self.workdir)
        self.replicas.append(replica)
        await replica.start()
        await replica.ready()
        return replica

    async def start_many(self, names: list[str], **overrides: Any) -> list[Replica]:
        return list(await asyncio.gather(*(self.start(n, **overrides) for n in names)))

    async def close(self) -> None:
        for replica in self.replicas:
            replica.kill()
        for replica in self.replicas:
            if replica.proc is not None:
                with contextlib.suppress(Exception):
                    await replica.wait(10)


@pytest.fixture
async def cluster(
    database_url: str, sink: RestartableSink, tmp_path: Path
) -> AsyncIterator[Cluster]:
    c = Cluster(database_url, sink, tmp_path)
    try:
        yield c
    finally:
        await c.close()
