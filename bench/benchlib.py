"""Shared helpers for the benchmarks: one-core setup, machine description, tables, JSON output.

Each benchmark script calls :func:`single_core` first thing in ``main()``. It re-executes the
script with the thread-count variables set to 1 when they are not already (they must be set before
numpy loads OpenBLAS), then pins the process to one CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
QUICK_RESULTS_DIR = RESULTS_DIR / "quick"
PLOTS_DIR = BENCH_DIR / "plots"

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
REEXEC_MARK = "POWERD_BENCH_REEXEC"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not a figure")
    p.add_argument("--cpu", type=int, default=0, help="CPU to pin to (default 0)")
    p.add_argument("--out", type=Path, default=None, help="JSON output path")
    return p


def single_core(cpu: int) -> dict[str, Any]:
    """Make this process single-threaded and pinned to ``cpu``; returns what was done."""
    if any(os.environ.get(v) != "1" for v in THREAD_VARS):
        if os.environ.get(REEXEC_MARK):
            raise RuntimeError("thread variables still not 1 after re-exec")
        env = dict(os.environ, **{v: "1" for v in THREAD_VARS}, **{REEXEC_MARK: "1"})
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    pinned: list[int] | None = None
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})
            pinned = sorted(os.sched_getaffinity(0))
        except OSError:
            pinned = None
    return {"thread_env": {v: os.environ.get(v) for v in THREAD_VARS}, "affinity": pinned}


def command_line() -> str:
    """The command that reproduces this run, relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(ROOT))
    except ValueError:
        shown = str(script)
    return shlex.join([".venv/bin/python", shown, *sys.argv[1:]])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024 / 2**30
    except OSError:
        pass
    return None


def blas_info() -> dict[str, Any]:
    """numpy's BLAS as built (np.show_config) and the thread settings it runs with."""
    import numpy as np

    info: dict[str, Any] = {}
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info = {
            "name": blas.get("name"),
            "version": blas.get("version"),
            "config": blas.get("openblas configuration"),
        }
        simd = cfg.get("SIMD Extensions", {})
        info["simd_found"] = simd.get("found")
    except Exception as err:  # show_config's format changes between numpy versions
        info = {"error": repr(err)}
    info["threads_env"] = {v: os.environ.get(v) for v in THREAD_VARS}
    return info


def machine() -> dict[str, Any]:
    import numpy as np

    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "ram_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def load() -> list[float]:
    """1, 5 and 15 minute load averages (what `uptime` shows)."""
    return [round(x, 2) for x in os.getloadavg()]


def timed_repeats(fn: Callable[[], object], repeats: int, min_time_s: float) -> list[float]:
    """Seconds per call of ``fn``, one per repeat; short calls are looped to ``min_time_s``."""
    t0 = time.perf_counter()
    fn()  # warm-up, and a first estimate of the cost
    once = time.perf_counter() - t0
    loops = max(1, int(min_time_s / max(once, 1e-9)))
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        out.append((time.perf_counter() - t0) / loops)
    return out


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A Markdown table; ``align`` is one char per column, 'l' or 'r' (default right)."""
    al = align or "l" + "r" * (len(header) - 1)
    sep = ["---" if a == "l" else "---:" for a in al]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def si(x: float, unit: str = "") -> str:
    """Compact human figure: 1.23e8 -> '123 M'."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def write_result(name: str, quick: bool, out: Path | None, data: dict[str, Any]) -> Path:
    """Write ``data`` as JSON to bench/results/<name>.json (quick runs: results/quick/)."""
    path = out or (QUICK_RESULTS_DIR if quick else RESULTS_DIR) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def envelope(name: str, quick: bool, setup: dict[str, Any]) -> dict[str, Any]:
    """The common head of every result file."""
    return {
        "benchmark": name,
        "quick": quick,
        "command": command_line(),
        "machine": machine(),
        "blas": blas_info(),
        "single_core": setup,
        "load_before": load(),
    }


def pyplot() -> Any:
    """matplotlib's pyplot with the file-only Agg backend, or None when matplotlib is missing
    (``pip install -e '.[bench]'``); a benchmark then writes its table without the plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plot_path(name: str, quick: bool) -> Path:
    """Where a benchmark's PNG goes: bench/plots/<name>.png (quick runs: results/quick/plots/)."""
    folder = QUICK_RESULTS_DIR / "plots" if quick else PLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.png"


def save_plot(fig: Any, name: str, quick: bool) -> str:
    """Save ``fig`` and return its path relative to the repository root (for BENCHMARKS.md)."""
    path = plot_path(name, quick)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    fig.clf()
    return str(path.relative_to(ROOT))


def uptime() -> str:
    """What `uptime` prints (load beside each figure, as the machine was shared)."""
    import subprocess

    try:
        out = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in load())
