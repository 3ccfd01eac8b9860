"""Side-by-side A/B of source trees: CPU per webhook ingested and per email delivered.

    git worktree add /tmp/before <commit>
    .venv/bin/python -m benchmarks.compare /tmp/before . --rounds 3
    .venv/bin/python -m benchmarks.compare . ".@CANCELNOTIFY_DISPATCHER_CONCURRENCY=8"
    .venv/bin/python -m benchmarks.compare /tmp/before . --fixed --rate 100 --requests 3000

Each variant is a source tree (its `src/` is put first on PYTHONPATH of `cancelnotify serve`),
optionally followed by `@NAME=VALUE+NAME=VALUE` settings. Per round and variant, on one private
PostgreSQL and one aiosmtpd server: the service ingests N signed webhooks at a fixed rate with the
dispatcher off (ingest only), then a fresh service with the dispatcher on drains them (delivery
only). It prints the CPU of the service and of PostgreSQL per unit for each phase, the webhook
p50/p99 and the drain rate. Variants alternate, A then B, then B then A in the next round (the
machine is shared and noisy); each run's database is dropped after it; the last lines are the
medians over the rounds.

With `--saturate 10 --requests 25000`, the ingest phase is closed-loop instead (64 connections
for 10 s): its CPU per webhook is the ingest cost at saturation, as in `benchmarks.run`'s
ingest-only row.

With `--fixed`, each variant instead runs the whole flow as in production (dispatcher on while
webhooks arrive at `--rate`) and reports webhook and webhook → SMTP latencies and the CPU per
email delivered (service, PostgreSQL, and the SMTP server, which shares the machine): what the
split phases cannot show (a row handed from ingest to the dispatcher).

With `--storm 10`, each variant runs `benchmarks.run`'s saturation phase (the whole flow, 64
connections closed-loop for 10 s, then the backlog drained) and reports the delivered rate, and
the two rates it mixes: while the load runs, and the drain after it. The variant `naive` is the
naive baseline, so `. naive` measures the issue's ratio, alternating, in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

import uvloop
from tests.pgserver import PgServer

from benchmarks import run as bench
from cancelnotify.db import run_migrations

FIELDS = (
    "ingest service ms",
    "ingest postgres ms",
    "webhook p50 ms",
    "webhook p99 ms",
    "delivered/s",
    "delivery service ms",
    "delivery postgres ms",
)


def prepare(
    variant: str, pg: PgServer, sink: bench.SinkProc, database: str
) -> tuple[str, dict[str, str]]:
    """A migrated database, services started from the variant's tree, its settings, a clean sink."""
    tree, _, overrides = variant.partition("@")
    tree = "." if tree == "naive" else tree  # the baseline from this tree
    env = dict(kv.split("=", 1) for kv in overrides.split("+") if kv)
    db_url = pg.create_database(database)
    run_migrations(db_url)
    root = Path(os.path.abspath(tree))
    os.environ["PYTHONPATH"] = str(root / "src")
    bench.ROOT = root
    sink.reset()
    return db_url, env


async def one(
    variant: str,
    pg: PgServer,
    sink: bench.SinkProc,
    tag: int,
    n: int,
    rate: float,
    saturate: float = 0,
) -> tuple[float, ...]:
    db_url, env = prepare(variant, pg, sink, f"compare{tag}")
    svc = bench.Service(db_url, sink.port, CANCELNOTIFY_DISPATCHER_ENABLED="false", **env)
    try:
        await asyncio.sleep(1)
        requests = bench.make_requests(n, f"compare{tag}")
        c0, p0 = bench.cpu_seconds(svc.proc.pid), bench.pg_cpu(pg)
        if saturate:  # closed loop, 64 connections: the ingest-only ceiling
            load = await bench.saturate(svc.port, requests, 64, saturate)
        else:
            load = await bench.fixed_rate(svc.port, requests, rate)
        c1, p1 = bench.cpu_seconds(svc.proc.pid), bench.pg_cpu(pg)
    finally:
        svc.stop()
    accepted = max(1, load.accepted)
    ingest = (
        1000 * (c1 - c0) / accepted,
        1000 * (p1 - p0) / accepted,
        bench.pct(load.latency, 0.5) * 1000,
        bench.pct(load.latency, 0.99) * 1000,
    )
    svc = bench.Service(db_url, sink.port, **env)
    try:
        c0, p0, t0 = bench.cpu_seconds(svc.proc.pid), bench.pg_cpu(pg), time.time()
        await bench.wait_delivered(sink, load, 300)
        seconds = time.time() - t0
        c1, p1 = bench.cpu_seconds(svc.proc.pid), bench.pg_cpu(pg)
    finally:
        svc.stop()
    sent = max(1, bench.delivered_ids(sink, load))
    return (*ingest, sent / seconds, 1000 * (c1 - c0) / sent, 1000 * (p1 - p0) / sent)


FIXED_FIELDS = (
    "webhook p50 ms",
    "webhook p99 ms",
    "e2e p50 ms",
    "e2e p99 ms",
    "delivered/s",
    "service ms/email",
    "postgres ms/email",
    "smtp server ms/email",
)


async def fixed(
    variant: str,
    pg: PgServer,
    sink: bench.SinkProc,
    tag: int,
    n: int,
    rate: float,
) -> tuple[float, ...]:
    db_url, env = prepare(variant, pg, sink, f"fixed{tag}")
    svc = bench.Service(db_url, sink.port, **env)
    try:
        await asyncio.sleep(1)
        requests = bench.make_requests(n, f"fixed{tag}")
        c0, p0 = bench.cpu_seconds(svc.proc.pid), bench.pg_cpu(pg)
        s0 = bench.cpu_seconds(sink.proc.pid)
        load = await bench.fixed_rate(svc.port, requests, rate)
        end = await bench.wait_delivered(sink, load, 120)
        c1, p1 = bench.cpu_seconds(svc.proc.pid), bench.pg_cpu(pg)
        s1 = bench.cpu_seconds(sink.proc.pid)
        lat = bench.delivery_latencies(load, sink.arrivals(), bench.DOMAIN)
    finally:
        svc.stop()
    sent = max(1, len(lat))
    return (
        bench.pct(load.latency, 0.5) * 1000,
        bench.pct(load.latency, 0.99) * 1000,
        bench.pct(lat, 0.5) * 1000,
        bench.pct(lat, 0.99) * 1000,
        len(lat) / max(1e-9, end - load.started),
        1000 * (c1 - c0) / sent,
        1000 * (p1 - p0) / sent,
        1000 * (s1 - s0) / sent,
    )


STORM_FIELDS = (
    "accepted/s",
    "delivered/s",
    "during load/s",
    "drain/s",
    "webhook p99 ms",
    "service ms/email",
    "postgres ms/email",
)


async def storm(
    variant: str, pg: PgServer, sink: bench.SinkProc, tag: int, seconds: float
) -> tuple[float, ...]:
    """`benchmarks.run`'s saturation phase for one variant; `naive` is the naive baseline."""
    db_url, env = prepare(variant, pg, sink, f"storm{tag}")
    ctx = bench.Ctx(pg, db_url, sink)
    r = await bench.phase_saturation(ctx, seconds, 64, naive=variant == "naive", env=env)
    cpu = r["cpu_ms_per_delivered"]
    return (
        r["accepted_per_s"],
        r["delivered_per_s"],
        r["delivered_during_load_per_s"],
        r["drain_per_s"],
        r["webhook_p99_ms"],
        cpu["service"],
        cpu["postgres"],
    )


def forget(pg: PgServer, database: str) -> None:
    """Drop a finished run's database and checkpoint: otherwise autovacuum works through its
    rows (12,000 inserted and updated) during the next run, which is charged with it: in two
    A/B runs of trees with the same SQL, the second variant of each round measured 0.1-0.2 ms
    more PostgreSQL CPU per email in five rounds of six."""
    pg.psql(f'DROP DATABASE "{database}"')
    pg.psql("CHECKPOINT")


def line(label: str, values: tuple[float, ...], fields: tuple[str, ...] = FIELDS) -> str:
    return f"{label}: " + ", ".join(f"{f} {v:.2f}" for f, v in zip(fields, values, strict=True))


async def main(args: argparse.Namespace) -> None:
    results: dict[str, list[tuple[float, ...]]] = {v: [] for v in args.variants}
    fields = STORM_FIELDS if args.storm else FIXED_FIELDS if args.fixed else FIELDS
    with bench.servers() as ctx:  # each run makes its own database beside the benchmark's
        pg, sink = ctx.pg, ctx.sink
        tag = 0
        for round_ in range(args.rounds):
            # A, B then B, A: whatever a run leaves behind is charged to each variant alike.
            order = args.variants if round_ % 2 == 0 else args.variants[::-1]
            for variant in order:
                tag += 1
                if args.storm:
                    values = await storm(variant, pg, sink, tag, args.storm)
                    database = f"storm{tag}"
                elif args.fixed:
                    values = await fixed(variant, pg, sink, tag, args.requests, args.rate)
                    database = f"fixed{tag}"
                else:
                    values = await one(
                        variant, pg, sink, tag, args.requests, args.rate, args.saturate
                    )
                    database = f"compare{tag}"
                results[variant].append(values)
                print(line(variant, values, fields), flush=True)
                forget(pg, database)
        for variant, rows in results.items():
            medians = tuple(statistics.median(r[i] for r in rows) for i in range(len(fields)))
            print(line(f"MEDIAN {variant}", medians, fields))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("variants", nargs="+", help="TREE or TREE@NAME=VALUE+NAME=VALUE")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--requests", type=int, default=1500)
    p.add_argument("--rate", type=float, default=150)
    p.add_argument("--fixed", action="store_true", help="the whole flow at a fixed rate")
    p.add_argument(
        "--saturate",
        type=float,
        default=0,
        metavar="SECONDS",
        help="ingest closed-loop (64 connections) for SECONDS instead of at --rate",
    )
    p.add_argument(
        "--storm",
        type=float,
        default=0,
        metavar="SECONDS",
        help="the whole flow closed-loop for SECONDS, as benchmarks.run's saturation phase; "
        "a variant named `naive` runs the naive baseline",
    )
    uvloop.run(main(p.parse_args()))
