"""The benchmark keeps working: a short run end to end reports every figure (no timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_a_short_benchmark_run_reports_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "benchmark.json"
    args = ["--seconds", "2", "--rates", "20", "--saturation-seconds", "1"]
    args += ["--ceiling-seconds", "0.5", "--scale", "2", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(out.read_text())
    fixed = r["fixed_20"]
    # Every accepted webhook was delivered, and the latencies were measured from the sink.
    assert fixed["errors"] == 0
    assert fixed["delivered"] == fixed["accepted"] == 40
    assert 0 < fixed["e2e_p50_ms"] <= fixed["e2e_p99_ms"]
    assert fixed["cpu_ms_per_delivered"]["service"] > 0
    assert r["ingest_only"]["delivered"] == 0 < r["ingest_only"]["accepted"]
    for phase in ("saturation", "naive", "scale_1_fast_smtp", "scale_2_fast_smtp"):
        assert r[phase]["delivered"] > 0, phase
    assert r["scale_2_fast_smtp"]["replicas"] == 2
    assert r["ceiling_insert_pairs_per_s"] > 0
    assert r["ceiling_smtp_per_s"] > 0
    assert "x the naive baseline" in done.stdout
    assert "2 replicas on a fast SMTP server deliver" in done.stdout
