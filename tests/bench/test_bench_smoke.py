"""The benchmarks still run (smoke sizes). Figures are read from BENCHMARKS.md, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_run_all_quick_completes_and_writes_results() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    quick = ROOT / "bench" / "results" / "quick"
    for name in ("integrate", "ingest", "memory"):
        data = json.loads((quick / f"{name}.json").read_text())
        assert data, name
