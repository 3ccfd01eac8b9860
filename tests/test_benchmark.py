"""The benchmark keeps working: a short run end to end reports every figure (no timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def run_module(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m module args` from the checkout; it must exit 0."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_a_short_benchmark_run_reports_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "benchmark.json"
    args = ["--seconds", "2", "--rates", "20", "--saturation-seconds", "1"]
    args += ["--ceiling-seconds", "0.5", "--scale", "2", "--pairs", "2", "--out", str(out)]
    done = run_module("benchmarks.run", *args, timeout=600)
    r = json.loads(out.read_text())
    fixed = r["fixed_20"]
    # Every accepted webhook was delivered, and the latencies were measured from the sink.
    assert fixed["errors"] == 0
    assert fixed["delivered"] == fixed["accepted"] == 40
    assert 0 < fixed["e2e_p50_ms"] <= fixed["e2e_p99_ms"]
    assert 0 < fixed["e2e_first_second_p50_ms"] <= fixed["e2e_first_second_p99_ms"]
    assert fixed["generator_late_max_ms"] >= 0
    assert fixed["cpu_ms_per_delivered"]["service"] > 0
    assert r["ingest_only"]["delivered"] == 0 < r["ingest_only"]["accepted"]
    for phase in ("saturation", "naive", "scale_1_fast_smtp", "scale_2_fast_smtp"):
        assert r[phase]["delivered"] > 0, phase
    assert r["scale_2_fast_smtp"]["replicas"] == 2
    assert r["ceiling_insert_pairs_per_s"] > 0
    assert r["ceiling_smtp_per_s"] > 0
    assert "x the naive baseline" in done.stdout
    # The ratio again from a second pair, the baseline first: two ratios, and their median.
    pairs = r["saturation_pairs"]
    assert len(pairs) == 2
    assert all(p["service"] > 0 and p["naive"] > 0 for p in pairs)
    assert r["delivered_vs_naive_ratio_median"] == sum(p["ratio"] for p in pairs) / 2
    assert "2 pairs alternating" in done.stdout
    assert "first second of each fixed phase" in done.stdout
    assert "2 replicas on a fast SMTP server deliver" in done.stdout


def test_the_stage_timings_run_every_step() -> None:
    # benchmarks.stages exits non-zero when a step fails (a non-200 from the app's stack, a
    # refused email), so a clean run means every step ran for real.
    done = run_module("benchmarks.stages", "-n", "8", "--repeats", "1", timeout=300)
    rows = dict(line.rsplit(None, 1) for line in done.stdout.splitlines()[1:-1])
    steps = [name.split(":")[0] for name in rows]
    assert steps == ["log", "webhook", "render", "mime", "data"] + ["http"] * 4 + ["smtp"]
    assert all(float(us) >= 0 for us in rows.values())
    assert float(rows["render: Renderer.render (order_cancelled, en)"]) > 0
    assert "the sample email:" in done.stdout


def test_the_in_flow_timings_come_from_the_running_service() -> None:
    # The steps are timed inside `cancelnotify serve`: each was called once per webhook.
    args = ["--rate", "20", "--seconds", "2", "--calls", "3", "--evict-mb", "1"]
    done = run_module("benchmarks.inflow", *args, timeout=300)
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[2:-1]}
    assert set(rows) == {"validate", "render", "mime", "data"}
    assert all(row.endswith("(40 calls)") for row in rows.values()), rows
    assert "service CPU per email delivered in the flow" in done.stdout
