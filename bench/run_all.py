"""Run every benchmark, each in its own process, and rewrite its table in BENCHMARKS.md.

Each figure lives between ``<!-- bench:<name> -->`` and ``<!-- /bench:<name> -->`` in
BENCHMARKS.md, with the goal, the verdict, the exact command, the load (``uptime``) and the table
(and its plot, bench/plots/<name>.png); the machine description goes between
``<!-- bench:machine -->`` markers. Text outside the markers is left as it is; a missing section
is appended at the end.

A benchmark whose script is missing, or whose server/tool is not installed (mosquitto,
victoria-metrics, faketime, gcc), is skipped with a note in the machine section, and its old
section is left as it was. A benchmark that fails is reported and its section left alone; the run
goes on and exits 1 at the end.

``--quick`` runs the smoke sizes (results and plots under bench/results/quick/) and leaves
BENCHMARKS.md alone. ``--only NAME`` (repeatable) runs a subset. The benchmarks in ``ON_REQUEST``
(the hour-long ``soak``) run only when named: ``--only soak``.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import benchlib

# (name, script, executables it needs); in the order they run.
BENCHMARKS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("integrate", "integrate_throughput.py", ()),
    ("ingest", "ingest.py", ()),
    ("memory", "memory.py", ()),
    ("block_encoding", "block_encoding.py", ()),
    ("accuracy", "accuracy.py", ()),
    ("peers", "peers.py", ("gcc",)),
    ("alignment", "alignment.py", ("mosquitto", "faketime")),
    ("machine_cost", "machine_cost.py", ("mosquitto",)),
    ("mqtt_pipeline", "mqtt_pipeline.py", ("mosquitto",)),
    ("probe_nvml_cost", "probe_nvml_cost.py", ("gcc",)),
    ("probe_sysfs_cost", "probe_sysfs_cost.py", ()),
    ("probe_cli_cost", "probe_cli_cost.py", ()),
    ("lpm01a_stream", "lpm01a_stream.py", ()),
    ("sink_throughput", "sink_throughput.py", ("victoria-metrics",)),
    ("live_view", "live_view.py", ()),
)
# Run only when named with --only (too long for the default run: the soak takes an hour).
ON_REQUEST: tuple[tuple[str, str, tuple[str, ...]], ...] = (("soak", "soak.py", ("mosquitto",)),)
ON_REQUEST_NAMES = {name for name, _, _ in ON_REQUEST}
DOC = benchlib.ROOT / "BENCHMARKS.md"
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def have(exe: str) -> bool:
    return shutil.which(exe) is not None or any((Path(d) / exe).exists() for d in SBIN)


def run_one(script: str, quick: bool, cpu: int) -> tuple[float, str, int]:
    cmd = [sys.executable, str(benchlib.BENCH_DIR / script), "--cpu", str(cpu)]
    if quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=benchlib.ROOT)
    elapsed = time.perf_counter() - t0
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr[-4000:])
    return elapsed, proc.stdout, proc.returncode


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


def tables_from(stdout: str) -> str:
    """The Markdown tables a script printed (for scripts whose JSON has no ``markdown``)."""
    blocks, cur = [], []
    for line in stdout.splitlines():
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            blocks.append("\n".join(cur))
            cur = []
    if cur:
        blocks.append("\n".join(cur))
    return "\n\n".join(blocks)


def normalise(res: dict[str, Any], stdout: str) -> dict[str, Any]:
    """Fill goal/verdict/markdown for scripts that write other keys (older conventions)."""
    res = dict(res)
    if not res.get("markdown"):
        res["markdown"] = tables_from(stdout) or "(no table)"
    if not res.get("goal"):
        pct = res.get("goal_core_pct")
        res["goal"] = f"<= {pct:g} % of one core" if pct is not None else "see the table"
    if not res.get("verdict"):
        for key in ("goal_met", "loop_goal_met"):
            if key in res:
                res["verdict"] = "met" if res[key] else "not met"
                break
        else:
            r = res.get("result")
            if isinstance(r, dict) and "cpu_pct_one_core" in r:
                res["verdict"] = (
                    f"{r['cpu_pct_one_core']:.1f} % of one core, {r.get('dropped', '?')} dropped"
                )
            else:
                res["verdict"] = "see the table"
    return res


def load_text(res: dict[str, Any]) -> str:
    before = res.get("uptime_before") or f"load average {res.get('load_before', '?')}"
    after = res.get("uptime_after") or f"load average {res.get('load_after', '?')}"
    return f"`uptime` before: {before}; after: {after}"


def figure_body(res: dict[str, Any], elapsed: float) -> str:
    verdict = str(res["verdict"]).rstrip(".")
    lines = [
        f"Goal: {res['goal']}. **Measured: {verdict}.**",
        "",
        f"Command: `{res['command']}` — {res['machine']['date_utc']}, took {elapsed:.0f} s; "
        f"{load_text(res)}.",
        "",
        res["markdown"],
    ]
    plot = res.get("plot")
    if plot and plot not in res["markdown"]:
        lines += ["", f"![{res.get('benchmark', 'plot')}]({plot})"]
    return "\n".join(lines)


def machine_body(
    results: dict[str, dict[str, Any]],
    elapsed: dict[str, float],
    cmd: str,
    skipped: dict[str, str],
    failed: dict[str, int],
) -> str:
    first = next(iter(results.values()))
    m, blas = first["machine"], first["blas"]
    pinned = next(
        (r["single_core"] for r in results.values() if "thread_env" in r.get("single_core", {})),
        None,
    )
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
    ]
    if pinned:
        threads = ", ".join(f"{k}={v}" for k, v in pinned["thread_env"].items())
        lines += [
            f"Single-core benchmarks run in their own process pinned to CPU {pinned['affinity']} "
            f"(`os.sched_setaffinity`), with {threads} set before numpy is imported; the "
            "others (servers, agents, simulators, peers) run as separate processes, as deployed.",
            "",
        ]
    lines.append(
        f"Produced by `{cmd}` in {total:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in elapsed.items())
        + ")."
    )
    for name, why in skipped.items():
        lines += ["", f"Skipped: {name} ({why}); its section below is from an earlier run."]
    for name, rc in failed.items():
        lines += ["", f"Failed: {name} (exit code {rc}); its section below is from an earlier run."]
    return "\n".join(lines)


def summary_body(results: dict[str, dict[str, Any]], skipped: dict[str, str]) -> str:
    rows = [
        [f"`{name}`", res["goal"], str(res["verdict"]).rstrip(".")] for name, res in results.items()
    ]
    rows += [[name, "-", f"skipped: {why}"] for name, why in skipped.items()]
    return benchlib.md_table(["benchmark", "goal", "measured"], rows, "lll")


def core_plots(results: dict[str, dict[str, Any]], quick: bool) -> dict[str, str]:
    """Plots for the benchmarks that do not draw their own (integrate, ingest)."""
    plt = benchlib.pyplot()
    if plt is None:
        return {}
    out = {}
    if "integrate" in results:
        rows = results["integrate"]["rows"]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for kind in ("power", "counter"):
            ax.plot(
                [r["samples"] for r in rows],
                [r[kind]["samples_per_s"] / 1e6 for r in rows],
                marker="o",
                label=f"integrate_{kind}",
            )
        ax.axhline(100, color="k", ls="--", lw=1, label="goal 100 M/s")
        ax.set(xscale="log", xlabel="window (samples)", ylabel="M samples/s (one core)")
        ax.legend()
        out["integrate"] = benchlib.save_plot(fig, "integrate", quick)
    if "ingest" in results:
        rows = results["ingest"]["rows"]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        labels = [f"{r['block']} @ {benchlib.si(r['rate_hz'], 'Hz')}" for r in rows]
        ax.bar(labels, [r["samples_per_s"] / 1e6 for r in rows])
        ax.axhline(2, color="k", ls="--", lw=1, label="goal 2 M/s")
        ax.set(xlabel="block (samples) @ rate", ylabel="M samples/s (one core)")
        ax.legend()
        out["ingest"] = benchlib.save_plot(fig, "ingest", quick)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke sizes; BENCHMARKS.md untouched")
    ap.add_argument("--cpu", type=int, default=0, help="CPU to pin each benchmark to")
    ap.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    ap.add_argument("--only", action="append", default=[], help="run only this benchmark")
    args = ap.parse_args()
    cmd = shlex.join([".venv/bin/python", "bench/run_all.py", *sys.argv[1:]])
    results: dict[str, dict[str, Any]] = {}
    elapsed: dict[str, float] = {}
    skipped: dict[str, str] = {}
    failed: dict[str, int] = {}
    results_dir = benchlib.QUICK_RESULTS_DIR if args.quick else benchlib.RESULTS_DIR
    for name, script, needs in BENCHMARKS + ON_REQUEST:
        if (args.only or name in ON_REQUEST_NAMES) and name not in args.only:
            continue
        if not (benchlib.BENCH_DIR / script).exists():
            skipped[name] = f"bench/{script} is missing"
        elif missing := [x for x in needs if not have(x)]:
            skipped[name] = f"not installed: {', '.join(missing)}"
        if name in skipped:
            print(f"## {name}: skipped ({skipped[name]})", flush=True)
            continue
        print(f"## {name}: {script}", flush=True)
        path = results_dir / f"{name}.json"
        path.unlink(missing_ok=True)
        elapsed[name], stdout, rc = run_one(script, args.quick, args.cpu)
        if rc != 0 or not path.exists():
            failed[name] = rc
            print(f"## {name} FAILED (exit code {rc})", flush=True)
            continue
        results[name] = normalise(json.loads(path.read_text()), stdout)
        print(flush=True)
    for name, plot in core_plots(results, args.quick).items():
        results[name]["plot"] = plot
    summary = {
        "command": cmd,
        "elapsed_s": elapsed,
        "total_s": sum(elapsed.values()),
        "verdicts": {k: v["verdict"] for k, v in results.items()},
        "skipped": skipped,
        "failed": failed,
    }
    benchlib.write_result("run_all", args.quick, None, summary)
    print(f"run_all: {summary['total_s']:.0f} s in total")
    for name, why in skipped.items():
        print(f"run_all: skipped {name}: {why}")
    if failed:
        print(f"run_all: FAILED: {', '.join(failed)}")
    if not (args.quick or args.no_write) and results:
        doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
        if not args.only:  # a subset keeps the full run's machine section
            doc = replace_section(
                doc, "machine", machine_body(results, elapsed, cmd, skipped, failed)
            )
        latest = {}  # the summary: this run's figures, else the last full run's
        for name, _script, _needs in BENCHMARKS + ON_REQUEST:
            path = results_dir / f"{name}.json"
            if name in results:
                latest[name] = results[name]
            elif (args.only or name in ON_REQUEST_NAMES) and path.exists():
                latest[name] = normalise(json.loads(path.read_text()), "")
        doc = replace_section(doc, "summary", summary_body(latest, {} if args.only else skipped))
        for name, res in results.items():
            doc = replace_section(doc, name, figure_body(res, elapsed[name]))
        DOC.write_text(doc)
        print(f"rewrote {DOC}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
