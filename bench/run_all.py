"""Run every benchmark, each in its own process, and rewrite its table in BENCHMARKS.md.

Each figure lives between ``<!-- bench:<name> -->`` and ``<!-- /bench:<name> -->`` in
BENCHMARKS.md, with the goal, the verdict, the exact command, the load and the table; the machine
description goes between ``<!-- bench:machine -->`` markers. Text outside the markers is left as
it is; a missing section is appended at the end.

``--quick`` runs the smoke sizes (results under bench/results/quick/) and leaves BENCHMARKS.md
alone.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from typing import Any

import benchlib

BENCHMARKS = (
    ("integrate", "integrate_throughput.py"),
    ("ingest", "ingest.py"),
    ("memory", "memory.py"),
)
DOC = benchlib.ROOT / "BENCHMARKS.md"


def run_one(script: str, quick: bool, cpu: int) -> tuple[float, str]:
    cmd = [sys.executable, str(benchlib.BENCH_DIR / script), "--cpu", str(cpu)]
    if quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=benchlib.ROOT)
    elapsed = time.perf_counter() - t0
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed with exit code {proc.returncode}")
    return elapsed, proc.stdout


def section(name: str, body: str) -> str:
    return f"<!-- bench:{name} -->\n{body.strip()}\n<!-- /bench:{name} -->"


def replace_section(doc: str, name: str, body: str) -> str:
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.DOTALL
    )
    new = section(name, body)
    if pattern.search(doc):
        return pattern.sub(lambda _m: new, doc, count=1)
    return doc.rstrip("\n") + "\n\n" + new + "\n"


def figure_body(res: dict[str, Any], elapsed: float) -> str:
    return "\n".join(
        [
            f"Goal: {res['goal']}. **Measured: {res['verdict']}**",
            "",
            f"Command: `{res['command']}` — {res['machine']['date_utc']}, took {elapsed:.0f} s; "
            f"load average (1/5/15 min) before {res['load_before']}, after {res['load_after']}.",
            "",
            res["markdown"],
        ]
    )


def machine_body(results: dict[str, dict[str, Any]], elapsed: dict[str, float], cmd: str) -> str:
    first = next(iter(results.values()))
    m, blas, sc = first["machine"], first["blas"], first["single_core"]
    threads = ", ".join(f"{k}={v}" for k, v in sc["thread_env"].items())
    total = sum(elapsed.values())
    lines = [
        benchlib.md_table(
            ["", ""],
            [
                ["CPU", m["cpu_model"]],
                ["logical CPUs", m["logical_cpus"]],
                ["RAM", f"{m['ram_gib']:.1f} GiB"],
                ["kernel", m["kernel"]],
                ["Python", m["python"]],
                ["numpy", m["numpy"]],
                ["BLAS", f"{blas.get('name')} {blas.get('version')} ({blas.get('config')})"],
                ["SIMD found", ", ".join(blas.get("simd_found") or [])],
                ["date", m["date_utc"]],
            ],
            "ll",
        ),
        "",
        f"Every benchmark runs in its own process pinned to CPU {sc['affinity']} "
        f"(`os.sched_setaffinity`), with {threads} set before numpy is imported.",
        "",
        f"Produced by `{cmd}` in {total:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in elapsed.items())
        + ").",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke sizes; BENCHMARKS.md untouched")
    ap.add_argument("--cpu", type=int, default=0, help="CPU to pin each benchmark to")
    ap.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    args = ap.parse_args()
    cmd = shlex.join([".venv/bin/python", "bench/run_all.py", *sys.argv[1:]])
    results: dict[str, dict[str, Any]] = {}
    elapsed: dict[str, float] = {}
    results_dir = benchlib.QUICK_RESULTS_DIR if args.quick else benchlib.RESULTS_DIR
    for name, script in BENCHMARKS:
        print(f"## {name}: {script}", flush=True)
        elapsed[name], _ = run_one(script, args.quick, args.cpu)
        results[name] = json.loads((results_dir / f"{name}.json").read_text())
        print(flush=True)
    summary = {
        "command": cmd,
        "elapsed_s": elapsed,
        "total_s": sum(elapsed.values()),
        "verdicts": {k: v["verdict"] for k, v in results.items()},
    }
    benchlib.write_result("run_all", args.quick, None, summary)
    print(f"run_all: {summary['total_s']:.0f} s in total")
    if args.quick or args.no_write:
        return 0
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    doc = replace_section(doc, "machine", machine_body(results, elapsed, cmd))
    for name, _ in BENCHMARKS:
        doc = replace_section(doc, name, figure_body(results[name], elapsed[name]))
    DOC.write_text(doc)
    print(f"rewrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
