"""The hot steps' CPU inside the running service, beside the same steps alone.

    .venv/bin/python -m benchmarks.inflow                  # 30 s at 200/s
    .venv/bin/python -m benchmarks.inflow --rate 100 --seconds 60

`benchmarks.stages` times each step alone, back to back, so its code and data stay in the CPU's
caches. The service runs each step once per email, and between two emails PostgreSQL, the SMTP
server and the load generator run on the same two cores. This runs `benchmarks.run`'s fixed
phase with a few steps of `cancelnotify serve` timed by the thread CPU clock (a sitecustomize
on the service's PYTHONPATH wraps them; nothing in the service changes), then times the same
steps in this process alone, and alone with `--evict-mb` of memory read between two calls
(which is what the other processes do to the caches).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

from benchmarks.run import phase_fixed, servers
from benchmarks.stages import sample_steps
from cancelnotify.mail.transport import data_payload
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.settings import Settings

ENV = "CANCELNOTIFY_BENCH_INFLOW"

# Runs in every Python process started with the directory on PYTHONPATH; acts only in
# `cancelnotify serve` with ENV set: wraps the steps once the app's modules are imported and,
# when the service is stopped, writes {step: [calls, thread CPU seconds]} to the file ENV names.
SITECUSTOMIZE = f"""
import os, sys
if os.environ.get("{ENV}") and sys.orig_argv[-2:] == ["cancelnotify", "serve"]:
    import json, signal, threading, time

    totals = {{}}
    counting = []  # from the first webhook on: the start-up warm-up renders are not counted

    def _write(signum, frame):
        # uvicorn saves this handler as the one it found and, once it has shut down, puts it
        # back and raises the signal again: the totals are written after the last email.
        with open(os.environ["{ENV}"], "w") as out:
            json.dump(totals, out)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, _write)

    def timed(owner, name, step):
        inner = getattr(owner, name)
        totals[step] = [0, 0.0]

        def wrapper(*args, **kwargs):
            if step == "validate" and not counting:
                counting.append(True)
            t0 = time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                if counting:
                    total = totals[step]
                    total[0] += 1
                    total[1] += time.thread_time() - t0

        setattr(owner, name, wrapper)

    def _watch():
        while "cancelnotify.app" not in sys.modules:
            time.sleep(0.005)
        import cancelnotify.dispatcher as dispatcher
        import cancelnotify.mail.render as render
        import cancelnotify.mail.transport as transport
        import cancelnotify.services.webhooks as webhooks

        timed(webhooks, "_event_from", "validate")
        timed(render.Renderer, "render", "render")
        timed(dispatcher, "wire_message", "mime")
        timed(transport, "data_payload", "data")

    threading.Thread(target=_watch, daemon=True).start()
"""


def alone(evict_mb: int, calls: int) -> dict[str, float]:
    """Microseconds of thread CPU per call, each step alone (median of 5 rounds)."""
    settings = Settings(
        _env_file=None,
        database_url="sqlite+aiosqlite://",
        mail_from="Bench Shop <orders@bench.example>",
    )
    sample = sample_steps(settings, locale=None)  # the customer's language, as in the flow
    wire = sample.mime()
    steps: dict[str, Callable[[], object]] = {
        "validate": lambda: CancellationEventV1.model_validate_json(sample.raw),
        "render": sample.render,
        "mime": sample.mime,
        "data": lambda: data_payload(wire.data, crlf=wire.crlf),
    }
    memory = bytearray(evict_mb * 1024 * 1024)
    out = {}
    for name, fn in steps.items():
        rounds = []
        for _ in range(5):
            spent = 0.0
            for _ in range(calls):
                if evict_mb:
                    bytes(memory)  # read (and copy) it all: other code's turn on this core
                t0 = time.thread_time()
                fn()
                spent += time.thread_time() - t0
            rounds.append(spent / calls * 1e6)
        out[name] = statistics.median(rounds)
    return out


def in_flow(rate: float, seconds: float) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """benchmarks.run's fixed phase, and the wrapped steps' totals the service wrote as the
    phase stopped it."""
    with tempfile.TemporaryDirectory() as site:
        Path(site, "sitecustomize.py").write_text(SITECUSTOMIZE)
        totals_file = Path(site, "totals.json")
        os.environ[ENV] = str(totals_file)  # the service's environment is this one's
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (site, os.environ.get("PYTHONPATH")) if p
        )
        try:
            with servers() as ctx:
                phase = uvloop.run(phase_fixed(ctx, rate, seconds, "inflow"))
            totals: dict[str, list[float]] = json.loads(totals_file.read_text())
        finally:
            del os.environ[ENV]
    return totals, phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--evict-mb", type=int, default=32)
    parser.add_argument("--calls", type=int, default=200, help="calls per round, alone")
    args = parser.parse_args()
    quiet, evicted = alone(0, args.calls), alone(args.evict_mb, args.calls)  # before the flow
    totals, phase = in_flow(args.rate, args.seconds)
    header = f"{'step':<10}{'alone':>10}{f'{args.evict_mb} MB read between':>24}{'in the flow':>14}"
    print(f"thread CPU µs per call; the flow: {args.rate:g}/s for {args.seconds:g} s")
    print(header)
    for step, (calls, spent) in totals.items():
        flow = spent / calls * 1e6 if calls else float("nan")
        row = f"{step:<10}{quiet.get(step, float('nan')):>10.1f}"
        print(f"{row}{evicted.get(step, float('nan')):>24.1f}{flow:>14.1f}  ({int(calls)} calls)")
    cpu = phase["cpu_ms_per_delivered"]
    print(
        f"service CPU per email delivered in the flow: {cpu['service']:.2f} ms "
        f"({phase['delivered']} delivered, {phase['errors']} errors)"
    )
    if phase["errors"] or phase["delivered"] != phase["accepted"]:
        sys.exit("the flow lost or refused webhooks")


if __name__ == "__main__":
    main()
