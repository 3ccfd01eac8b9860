"""The cancelnotify benchmark: one command, real servers, ratios measured side by side.

    .venv/bin/python -m benchmarks.run            # quick: 20 s at the fixed rate
    .venv/bin/python -m benchmarks.run --full     # 60 s at 100/s, the issue's 200/s, and 300/s
    .venv/bin/python -m benchmarks.run --full --soak 600 --soak-rate 100   # + 10 min (RSS)

It starts a private PostgreSQL, an aiosmtpd server in its own process, and the service as
`cancelnotify serve`; drives Standard-Webhooks-signed requests at a fixed rate (open loop) and at
saturation (closed loop); measures the raw ceilings (asyncpg row-pair inserts, aiosmtplib sends on
reused connections) and a naive baseline on the same servers in the same run; prints a table and
writes artifacts/benchmark.json. With `--pairs N` (`--full`: 3) the service's saturation phase and
the baseline's run N times, alternating, and the ratio is also given as the median of the N.
Nothing in the test suite asserts timings.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import aiosmtplib
import asyncpg
import uvloop
from tests.pgserver import PgServer, free_port, wait_for_port

from cancelnotify.samples import sample_event
from cancelnotify.signatures import sign

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
KEY = b"benchmark-secret-0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
CLK = os.sysconf("SC_CLK_TCK")
DOMAIN = "bench.example"  # of MAIL_FROM, hence of every Message-ID


# --- process accounting -------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pg_cpu(pg: PgServer) -> float:
    """CPU of the postmaster and all its backends (including exited children via cutime)."""
    master = int((pg.data / "postmaster.pid").read_text().split()[0])
    total = 0.0
    fields = Path(f"/proc/{master}/stat").read_text().rsplit(")", 1)[1].split()
    total += sum(int(f) for f in fields[11:15]) / CLK  # utime stime cutime cstime
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                f = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                if int(f[1]) == master:
                    total += (int(f[11]) + int(f[12])) / CLK
    return total


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


# --- a minimal keep-alive HTTP/1.1 client (cheaper than httpx at thousands of requests/s) ----
class Http:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length)
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def signed_request(path: str, event: dict[str, Any]) -> bytes:
    body = json.dumps(event, separators=(",", ":")).encode()
    msg_id = f"msg_{uuid.uuid4().hex}"
    ts = int(time.time())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nwebhook-id: {msg_id}\r\nwebhook-timestamp: {ts}\r\n"
        f"webhook-signature: {sign(KEY, msg_id, ts, body)}\r\n\r\n"
    )
    return head.encode() + body


class Requests(Sequence[bytes]):
    """`n` distinct signed webhooks, each signed when taken: a Standard Webhooks signature is
    only valid for 5 minutes, which a 10-minute run would outlive if signed up front."""

    def __init__(self, n: int, prefix: str) -> None:
        self.n, self.prefix = n, prefix

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> bytes: ...
    @overload
    def __getitem__(self, i: slice) -> list[bytes]: ...
    def __getitem__(self, i: int | slice) -> bytes | list[bytes]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not 0 <= i < self.n:
            raise IndexError(i)
        return signed_request(
            "/v1/webhooks/order-cancelled",
            sample_event(order_id=f"{self.prefix}-{i}", email=f"customer{i}@example.com"),
        )


def make_requests(n: int, prefix: str) -> Requests:
    return Requests(n, prefix)


@dataclass
class Load:
    sent_at: list[float] = field(default_factory=list)  # of each accepted request, as `nids`
    latency: list[float] = field(default_factory=list)
    nids: list[str] = field(default_factory=list)
    errors: int = 0
    started: float = 0.0
    ended: float = 0.0
    late_max: float = 0.0  # open loop: the most a request left after its scheduled time

    @property
    def accepted(self) -> int:
        return len(self.nids)


@contextlib.contextmanager
def no_gc_pauses() -> Iterator[None]:
    """No cycle collection in the load generator while it drives load.

    A full collection over this process (the requests, the results so far, every module) took
    80 ms at second 24 of a 200/s run: the open loop then sent a burst of 16 requests late, and
    the service's p99 showed a spike that was the generator's. What it leaves is collected after.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
        gc.collect()


def _record(load: Load, sent: float, t0: float, status: int, body: bytes) -> None:
    load.latency.append(time.perf_counter() - t0)
    if status in (200, 202):
        load.sent_at.append(sent)
        load.nids.append(json.loads(body).get("notification_id", ""))
    else:
        load.errors += 1


async def fixed_rate(port: int | list[int], requests: Sequence[bytes], rate: float) -> Load:
    """Open loop: request i leaves at start + i/rate, whatever the server's speed.

    With several ports (replicas behind a round-robin balancer), request i goes to port i mod n.
    """
    load = Load()
    ports = port if isinstance(port, list) else [port]
    idle: dict[int, asyncio.Queue[Http]] = {p: asyncio.Queue() for p in ports}

    async def one(port: int, raw: bytes) -> None:
        try:
            conn = idle[port].get_nowait()
        except asyncio.QueueEmpty:
            conn = Http(port)
        sent, t0 = time.time(), time.perf_counter()
        try:
            status, body = await conn.post(raw)
        except (OSError, asyncio.IncompleteReadError):
            load.errors += 1
            conn.close()
            return
        _record(load, sent, t0, status, body)
        idle[port].put_nowait(conn)

    with no_gc_pauses():
        load.started = time.time()
        start = time.perf_counter()
        tasks = []
        for i, raw in enumerate(requests):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            load.late_max = max(load.late_max, time.perf_counter() - due)
            tasks.append(asyncio.create_task(one(ports[i % len(ports)], raw)))
        await asyncio.gather(*tasks)
        load.ended = time.time()
    for queue in idle.values():
        while not queue.empty():
            queue.get_nowait().close()
    return load


async def saturate(
    port: int | list[int], requests: Sequence[bytes], concurrency: int, seconds: float
) -> Load:
    """Closed loop: `concurrency` connections send back to back until the time is up.

    With several ports (replicas), the connections are spread over them round-robin.
    """
    load = Load()
    it = iter(requests)
    deadline = time.perf_counter() + seconds
    ports = port if isinstance(port, list) else [port]

    async def worker(port: int) -> None:
        conn = Http(port)
        try:
            for raw in it:
                if time.perf_counter() > deadline:
                    return
                sent, t0 = time.time(), time.perf_counter()
                try:
                    status, body = await conn.post(raw)
                except (OSError, asyncio.IncompleteReadError):
                    load.errors += 1
                    conn.close()
                    conn = Http(port)
                    continue
                _record(load, sent, t0, status, body)
        finally:
            conn.close()

    with no_gc_pauses():
        load.started = time.time()
        await asyncio.gather(*(worker(ports[i % len(ports)]) for i in range(concurrency)))
        load.ended = time.time()
    return load


# --- the sink ------------------------------------------------------------------------------
class SinkProc:
    def __init__(self, *, fast: bool = False) -> None:
        self.port = free_port()
        self.path = Path(tempfile.mkstemp(prefix="bench-sink-", suffix=".log")[1])
        self.proc = subprocess.Popen(
            [PY, "-m", "benchmarks.sink", str(self.port), str(self.path)]
            + (["--fast"] if fast else []),
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.proc.stdout.readline()

    def arrivals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in self.path.read_text().splitlines():
            ts, _, mid = line.partition(" ")
            out.setdefault(mid, float(ts))
        return out

    def count(self) -> int:
        return sum(1 for _ in self.path.open())

    def reset(self) -> None:
        self.path.write_text("")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.path.unlink(missing_ok=True)


def delivered_ids(sink: SinkProc, load: Load) -> int:
    """How many of this load's accepted webhooks reached the sink (by Message-ID): the sink's
    file may still receive lines of an earlier phase after a reset (it flushes every 0.2 s)."""
    arrivals = sink.arrivals()
    return sum(1 for nid in load.nids if f"<{nid}@{DOMAIN}>" in arrivals)


async def wait_delivered(sink: SinkProc, load: Load, timeout: float) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sink.count() >= load.accepted and delivered_ids(sink, load) >= load.accepted:
            break
        await asyncio.sleep(0.2)
    return time.time()


# --- the service and the baseline ------------------------------------------------------------
class Service:
    def __init__(self, db_url: str, smtp_port: int, **env: str) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "CANCELNOTIFY_DATABASE_URL": db_url,
            "CANCELNOTIFY_SMTP_HOST": "127.0.0.1",
            "CANCELNOTIFY_SMTP_PORT": str(smtp_port),
            "CANCELNOTIFY_SMTP_SECURITY": "none",
            "CANCELNOTIFY_WEBHOOK_SECRET": SECRET,
            "CANCELNOTIFY_MAIL_FROM": "Bench Shop <orders@bench.example>",
            "CANCELNOTIFY_LOG_LEVEL": "info",  # the default: its JSON lines are part of the cost
            "CANCELNOTIFY_PORT": str(self.port),
            **env,
        }
        # Logs go to a file, as they would to a collector; a pipe nobody reads would block.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [PY, "-m", "cancelnotify", "serve"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        wait_for_port(self.port, 30)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Naive:
    def __init__(self, pg_dsn: str, smtp_port: int) -> None:
        self.port = free_port()
        env = {**os.environ, "NAIVE_DATABASE_URL": pg_dsn, "NAIVE_SMTP_PORT": str(smtp_port)}
        self.proc = subprocess.Popen(
            [
                PY,
                "-m",
                "uvicorn",
                "benchmarks.naive_app:app",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, 30)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


# --- raw ceilings --------------------------------------------------------------------------
async def ceiling_inserts(dsn: str, seconds: float, concurrency: int = 16) -> float:
    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            cid, nid, now = uuid.uuid4(), uuid.uuid4(), time.time()
            from datetime import UTC, datetime

            ts = datetime.fromtimestamp(now, UTC)
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO cancellations (id, source, event_id, order_id, reason,"
                    " reference, payload, occurred_at, received_at)"
                    " VALUES ($1,'ceiling',$2,$3,'out_of_stock',$4,$5,$6,$6)",
                    cid,
                    cid.hex,
                    cid.hex,
                    cid.hex[:20],
                    json.dumps(sample_event()),
                    ts,
                )
                await conn.execute(
                    "INSERT INTO notifications (id, cancellation_id, kind, dedupe_key, recipient,"
                    " status, attempts, next_attempt_at, message_id, send_by, created_at,"
                    " updated_at) VALUES ($1,$2,'ceiling',$3,'x@example.com','sent',0,$4,$5,$4,"
                    "$4,$4)",
                    nid,
                    cid,
                    nid.hex,
                    ts,
                    f"<{nid}@x>",
                )
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await pool.close()
    return done / elapsed


async def ceiling_smtp(port: int, message: bytes, seconds: float, connections: int) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        while time.perf_counter() < deadline:
            mid = f"<{uuid.uuid4()}@ceiling>".encode()
            await client.sendmail(
                "a@bench.example", ["b@example.com"], message.replace(b"<MID@bench.example>", mid)
            )
            done += 1
        await client.quit()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return done / (time.perf_counter() - start)


def sample_message() -> bytes:
    from cancelnotify.mail.message import build_message
    from cancelnotify.mail.render import Renderer
    from cancelnotify.schemas.event import CancellationEventV1
    from cancelnotify.settings import Settings

    settings = Settings(_env_file=None)
    event = CancellationEventV1.model_validate(sample_event())
    rendered = Renderer(settings).render(event, notification_id=uuid.uuid4(), reference="CX-1")
    msg = build_message(rendered, settings, to="b@example.com", message_id="<MID@bench.example>")
    return msg.as_bytes()


# --- phases -------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def delivery_latencies(
    load: Load, arrivals: dict[str, float], domain: str, *, within: float = float("inf")
) -> list[float]:
    """Webhook -> SMTP acceptance of each delivered webhook sent in the first `within` s."""
    out = []
    for sent, nid in zip(load.sent_at, load.nids, strict=True):
        arrived = arrivals.get(f"<{nid}@{domain}>")
        if arrived is not None and sent - load.started < within:
            out.append(arrived - sent)
    return out


@dataclass
class Ctx:
    pg: PgServer
    db_url: str
    sink: SinkProc
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def dsn(self) -> str:
        """`db_url` for asyncpg itself (the naive baseline, the ceilings)."""
        return self.db_url.replace("postgresql+asyncpg://", "postgresql://")

    def truncate(self) -> None:
        self.pg.psql(
            "TRUNCATE delivery_attempts, notifications, cancellations CASCADE",
            self.db_url.rsplit("/", 1)[1],
        )
        self.sink.reset()


async def phase_fixed(
    ctx: Ctx, rate: float, seconds: float, label: str, replicas: int = 1
) -> dict[str, Any]:
    """Open-loop load at `rate` on one service (or `replicas`, requests spread round-robin)."""
    ctx.truncate()
    n = int(rate * seconds)
    requests = make_requests(n, f"{label}-{uuid.uuid4().hex[:6]}")
    services = [Service(ctx.db_url, ctx.sink.port) for _ in range(replicas)]
    try:
        await asyncio.sleep(1.0)

        def service_cpu() -> float:
            return sum(cpu_seconds(svc.proc.pid) for svc in services)

        cpu0 = (service_cpu(), pg_cpu(ctx.pg), self_cpu())
        smtp0 = cpu_seconds(ctx.sink.proc.pid)
        rss = []

        async def sample_rss() -> None:
            while True:
                rss.append(max(rss_mb(svc.proc.pid) for svc in services))
                await asyncio.sleep(1)

        sampler = asyncio.create_task(sample_rss())
        load = await fixed_rate([svc.port for svc in services], requests, rate)
        end = await wait_delivered(ctx.sink, load, 60)
        sampler.cancel()
        cpu1 = (service_cpu(), pg_cpu(ctx.pg), self_cpu())
        smtp1 = cpu_seconds(ctx.sink.proc.pid)
        arrivals = ctx.sink.arrivals()
        lat = delivery_latencies(load, arrivals, DOMAIN)
        cold = delivery_latencies(load, arrivals, DOMAIN, within=1.0)  # a fresh service
        delivered = len(lat)
        cpu = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
        result = {
            "rate": rate,
            "seconds": seconds,
            "replicas": replicas,
            "requests": n,
            "accepted": load.accepted,
            "errors": load.errors,
            "delivered": delivered,
            "accepted_per_s": load.accepted / (load.ended - load.started),
            "delivered_per_s": delivered / max(1e-9, end - load.started),
            "webhook_p50_ms": pct(load.latency, 0.5) * 1000,
            "webhook_p99_ms": pct(load.latency, 0.99) * 1000,
            "generator_late_max_ms": load.late_max * 1000,
            "e2e_p50_ms": pct(lat, 0.5) * 1000,
            "e2e_p95_ms": pct(lat, 0.95) * 1000,
            "e2e_p99_ms": pct(lat, 0.99) * 1000,
            "e2e_first_second_p50_ms": pct(cold, 0.5) * 1000,
            "e2e_first_second_p99_ms": pct(cold, 0.99) * 1000,
            "cpu_ms_per_delivered": {
                "service": cpu[0] * 1000 / max(1, delivered),
                "postgres": cpu[1] * 1000 / max(1, delivered),
                "load_generator": cpu[2] * 1000 / max(1, delivered),
                "total": sum(cpu) * 1000 / max(1, delivered),
            },
            # Not in the total (the target excludes it), but it shares the machine.
            "smtp_server_cpu_ms_per_delivered": (smtp1 - smtp0) * 1000 / max(1, delivered),
            "peak_rss_mb": max(peak_rss_mb(svc.proc.pid) for svc in services),
            "rss_first_last_mb": [rss[0], rss[-1]] if rss else [],
            "rss_mb_every_10s": [round(x, 1) for x in rss[::10]],
        }
    finally:
        for svc in services:
            svc.stop()
    return result


async def phase_saturation(
    ctx: Ctx,
    seconds: float,
    concurrency: int,
    *,
    naive: bool = False,
    ingest_only: bool = False,
    replicas: int = 1,
    sink: SinkProc | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Closed-loop load on one server (or `replicas` services sharing the database and `sink`).

    Besides the whole phase's delivered rate (emails / from the first request to the last
    email), it reports the two rates it mixes: delivered while the load runs, and the drain of
    the backlog left when it stops.
    """
    env = env or {}
    ctx.truncate()
    sink = sink or ctx.sink
    sink.reset()
    requests = make_requests(int(seconds * 2500), f"sat-{uuid.uuid4().hex[:6]}")
    servers: list[Service | Naive]
    if naive:
        servers = [Naive(ctx.dsn, sink.port)]
    elif ingest_only:
        servers = [
            Service(ctx.db_url, sink.port, **{**env, "CANCELNOTIFY_DISPATCHER_ENABLED": "false"})
        ]
    else:
        servers = [Service(ctx.db_url, sink.port, **env) for _ in range(replicas)]
    try:
        await asyncio.sleep(1.0)
        cpu0 = (sum(cpu_seconds(s.proc.pid) for s in servers), pg_cpu(ctx.pg), self_cpu())
        load = await saturate([s.port for s in servers], requests, concurrency, seconds)
        end = load.ended
        if not ingest_only:
            end = await wait_delivered(sink, load, 120)
        cpu1 = (sum(cpu_seconds(s.proc.pid) for s in servers), pg_cpu(ctx.pg), self_cpu())
        arrivals = sink.arrivals()
        sent = [arrivals.get(f"<{nid}@{DOMAIN}>") for nid in load.nids]
        delivered = sum(1 for t in sent if t is not None)
        during = sum(1 for t in sent if t is not None and t <= load.ended)
        per = max(1, delivered if not ingest_only else load.accepted)
        cpu = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
        return {
            "replicas": len(servers),
            "seconds": seconds,
            "concurrency": concurrency,
            "accepted": load.accepted,
            "errors": load.errors,
            "accepted_per_s": load.accepted / (load.ended - load.started),
            "delivered": delivered,
            "delivered_per_s": delivered / max(1e-9, end - load.started),
            "delivered_during_load_per_s": during / (load.ended - load.started),
            "drain_per_s": (delivered - during) / max(1e-9, end - load.ended),
            "webhook_p50_ms": pct(load.latency, 0.5) * 1000,
            "webhook_p99_ms": pct(load.latency, 0.99) * 1000,
            # per email delivered (per webhook accepted when ingest only)
            "cpu_ms_per_delivered": {
                "service": cpu[0] * 1000 / per,
                "postgres": cpu[1] * 1000 / per,
                "load_generator": cpu[2] * 1000 / per,
                "total": sum(cpu) * 1000 / per,
            },
            "peak_rss_mb": max(peak_rss_mb(s.proc.pid) for s in servers),
        }
    finally:
        for server in servers:
            server.stop()


@contextlib.contextmanager
def servers() -> Iterator[Ctx]:
    """A private PostgreSQL with the schema, and the aiosmtpd server in its own process."""
    pg = PgServer()
    pg.start()
    sink = SinkProc()
    try:
        db_url = pg.create_database("bench")
        from cancelnotify.db import run_migrations

        run_migrations(db_url)
        yield Ctx(pg, db_url, sink)
    finally:
        sink.stop()
        pg.destroy()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with servers() as ctx:
        sink, dsn = ctx.sink, ctx.dsn
        r = ctx.results
        r["machine"] = {"cores": os.cpu_count(), "python": sys.version.split()[0]}
        step: Callable[[str], None] = lambda s: print(f"-- {s}", file=sys.stderr, flush=True)  # noqa: E731
        step("ceiling: asyncpg row-pair inserts")
        ctx.truncate()
        r["ceiling_insert_pairs_per_s"] = await ceiling_inserts(dsn, args.ceiling_seconds)
        step("ceiling: aiosmtplib on reused connections")
        r["ceiling_smtp_per_s"] = await ceiling_smtp(
            sink.port, sample_message(), args.ceiling_seconds, connections=2
        )
        for rate in args.rates:
            step(f"service at a fixed {rate}/s for {args.seconds} s")
            r[f"fixed_{int(rate)}"] = await phase_fixed(ctx, rate, args.seconds, f"f{int(rate)}")
        for rate in args.replica_rates:
            n = args.replicas
            step(f"{n} replicas at a fixed {rate}/s for {args.seconds} s (round-robin, aiosmtpd)")
            r[f"fixed_{int(rate)}_{n}_replicas"] = await phase_fixed(
                ctx, rate, args.seconds, f"f{int(rate)}r{n}", replicas=n
            )
        if args.soak:
            step(f"soak: {args.soak_rate}/s for {args.soak} s (memory over time)")
            r["soak"] = await phase_fixed(ctx, args.soak_rate, args.soak, "soak")
        step("service at saturation")
        r["saturation"] = await phase_saturation(ctx, args.saturation_seconds, 64)
        step("service ingest only (dispatcher off)")
        r["ingest_only"] = await phase_saturation(
            ctx, args.saturation_seconds, 64, ingest_only=True
        )
        step("naive baseline at saturation")
        r["naive"] = await phase_saturation(ctx, args.saturation_seconds, 64, naive=True)
        if args.scale:
            fast = SinkProc(fast=True)
            try:
                for replicas in range(1, args.scale + 1):
                    step(f"{replicas} replica(s) at saturation, fast SMTP server")
                    r[f"scale_{replicas}_fast_smtp"] = await phase_saturation(
                        ctx, args.saturation_seconds, 64, replicas=replicas, sink=fast
                    )
            finally:
                fast.stop()
        pairs = [(r["saturation"]["delivered_per_s"], r["naive"]["delivered_per_s"])]
        for i in range(1, args.pairs):
            # More pairs, the baseline first every other time: on a shared machine one pair's
            # ratio moves by a tenth or more from one pair to the next.
            step(f"saturation pair {i + 1} of {args.pairs}: service and naive baseline")
            order = (False, True) if i % 2 == 0 else (True, False)
            rates = {}
            for naive in order:
                phase = await phase_saturation(ctx, args.saturation_seconds, 64, naive=naive)
                rates[naive] = phase["delivered_per_s"]
            pairs.append((rates[False], rates[True]))
        lower = min(r["ceiling_insert_pairs_per_s"], r["ceiling_smtp_per_s"])
        r["delivered_vs_lower_ceiling_pct"] = 100 * r["saturation"]["delivered_per_s"] / lower
        r["delivered_vs_naive_ratio"] = pairs[0][0] / pairs[0][1]
        r["saturation_pairs"] = [
            {"service": service, "naive": naive, "ratio": service / naive}
            for service, naive in pairs
        ]
        r["delivered_vs_naive_ratio_median"] = statistics.median(
            service / naive for service, naive in pairs
        )
        return r


def table(r: dict[str, Any]) -> str:
    lines = [
        f"raw ceilings (same run): asyncpg row pairs {r['ceiling_insert_pairs_per_s']:.0f}/s, "
        f"aiosmtplib reused {r['ceiling_smtp_per_s']:.0f}/s",
        "",
        "| phase | accepted/s | delivered/s | webhook p50/p99 ms | e2e p50/p95/p99 ms "
        "| CPU ms/delivered | peak RSS MB | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, value in r.items():
        if not isinstance(value, dict) or "accepted_per_s" not in value:
            continue
        e2e = (
            f"{value['e2e_p50_ms']:.1f} / {value['e2e_p95_ms']:.1f} / {value['e2e_p99_ms']:.1f}"
            if "e2e_p50_ms" in value
            else "-"
        )
        cpu = value.get("cpu_ms_per_delivered", {}).get("total")
        lines.append(
            f"| {key} | {value['accepted_per_s']:.0f} | {value['delivered_per_s']:.0f} | "
            f"{value['webhook_p50_ms']:.1f} / {value['webhook_p99_ms']:.1f} | {e2e} | "
            f"{'-' if cpu is None else f'{cpu:.2f}'} | {value['peak_rss_mb']:.0f} | "
            f"{value['errors']} |"
        )
    fixed = {k: v for k, v in r.items() if isinstance(v, dict) and "e2e_first_second_p99_ms" in v}
    if fixed:
        lines += [
            "",
            "first second of each fixed phase (a service just started), webhook -> SMTP "
            "p50 / p99 ms: "
            + ", ".join(
                f"{k} {v['e2e_first_second_p50_ms']:.1f} / {v['e2e_first_second_p99_ms']:.1f}"
                for k, v in fixed.items()
            ),
            "load generator's worst lateness against its schedule, ms: "
            + ", ".join(f"{k} {v['generator_late_max_ms']:.1f}" for k, v in fixed.items()),
        ]
    lines += [
        "",
        f"service delivered at saturation = {r['delivered_vs_lower_ceiling_pct']:.0f}% of the "
        f"lower raw ceiling; {r['delivered_vs_naive_ratio']:.2f}x the naive baseline",
    ]
    pairs = r.get("saturation_pairs", [])
    if len(pairs) > 1:
        lines.append(
            f"saturation against the naive baseline, {len(pairs)} pairs alternating, emails/s: "
            + ", ".join(f"{p['service']:.0f} / {p['naive']:.0f} = {p['ratio']:.2f}x" for p in pairs)
            + f"; median ratio {r['delivered_vs_naive_ratio_median']:.2f}x"
        )
    one = r.get("scale_1_fast_smtp")
    for n in range(2, 9):
        more = r.get(f"scale_{n}_fast_smtp")
        if one and more:
            lines.append(
                f"{n} replicas on a fast SMTP server deliver "
                f"{more['delivered_per_s'] / one['delivered_per_s']:.2f}x what 1 does"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--full",
        action="store_true",
        help="60 s at 100/s, 200/s and 300/s, and at 200/s and 300/s on --replicas services",
    )
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--rates", type=float, nargs="+", default=[200])
    p.add_argument("--saturation-seconds", type=float, default=10)
    p.add_argument("--ceiling-seconds", type=float, default=5)
    p.add_argument(
        "--scale", type=int, default=2, help="replicas 1..N at saturation on a fast SMTP server"
    )
    p.add_argument(
        "--replica-rates",
        type=float,
        nargs="*",
        default=[],
        help="fixed rates also run on --replicas services sharing the database and SMTP server",
    )
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument(
        "--pairs",
        type=int,
        default=1,
        help="saturation pairs (service, naive baseline) for the ratio's median; --full: 3",
    )
    p.add_argument("--soak", type=float, default=0, help="also run this many seconds (600)")
    p.add_argument("--soak-rate", type=float, default=200)
    p.add_argument("--out", type=Path, default=ROOT / "artifacts" / "benchmark.json")
    args = p.parse_args()
    if args.full:
        args.seconds, args.rates, args.replica_rates = 60, [100, 200, 300], [200, 300]
        args.pairs = max(args.pairs, 3)
    # uvloop, as the service and the SMTP server run: the load generator's CPU counts in the
    # per-email figure, and a real sender would be on other machines.
    results = uvloop.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
