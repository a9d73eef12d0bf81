"""Marker alignment through the real broker with an agent whose clock is seconds off.

Debian's mosquitto on loopback; powerd's daemon (``Daemon`` + ``run_mqtt``, as in
bench/mqtt_pipeline.py); ``powerd-agent`` started under ``faketime -f <offset>`` (libfaketime shifts
the process's wall clock by exactly that offset; ``FAKETIME_DONT_FAKE_MONOTONIC=1`` leaves the
monotonic clock, whose epoch is arbitrary anyway, alone), sampling ``sim:constant`` at 100 Hz and
relaying markers from a local harness, which runs under the same ``faketime`` (it is on the
agent's host) and marks phases through the agent's HTTP endpoint with ``powerd.client``, each
marker stamped ``t_ns`` on its (shifted) clock at the edge. The daemon estimates the agent's
offset by NTP-style exchanges and moves the markers onto its own clock.

Truth: a marker stamped ``t_ns`` on the shifted clock happened at ``t_ns − offset`` on the true
clock. The shift is checked in the run: the harness answers "what time is it" over a pipe, and its
answer minus the offset must fall between this process's clock reads before and after (the
bracket, ~0.1 ms, is recorded). Figure: |t_begin_ns − truth| (and t_end) of every phase in the
published results, over repeated markers, for each offset; and whether it lies within the
result's own timing uncertainty. Goal (BENCHMARKS.md, `alignment`): within 1 ms of the truth.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
import numpy as np
import paho.mqtt.client as paho
from _common import free_port, wait_port
from mqtt_pipeline import broker, daemon_thread

NAME = "alignment"
GOAL_MS = 1.0
OFFSETS_S = (5.0, -3.5)
HARNESS = r"""
import json, random, select, sys, time
from powerd.client import PowerdClient
# select, not time.sleep: under libfaketime with FAKETIME_DONT_FAKE_MONOTONIC=1, Python's sleep
# (clock_nanosleep on an absolute monotonic deadline) fails with EINVAL
url, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == "now":
        print(time.time_ns(), flush=True)
    elif cmd[0] == "mark":
        run = cmd[1]
        client = PowerdClient(url=url, run=run)
        tb = time.time_ns()
        client.mark("begin", "p", trial=0, t_ns=tb)
        select.select([], [], [], rng.uniform(0.05, 0.3))
        tc = time.time_ns()
        client.mark("end", "p", trial=0, t_ns=tc, count=1)
        print(json.dumps({"run": run, "tb": tb, "tc": tc}), flush=True)
    elif cmd[0] == "quit":
        break
"""


def stop_group(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group (faketime's child is the real process), then SIGKILL."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        proc.wait(5)


def faketime_spec(offset_s: float) -> str:
    return f"{offset_s:+g}s"


def check_shift(harness: subprocess.Popen[str], offset_ns: int, n: int = 20) -> dict[str, Any]:
    """The shifted clock minus the offset, against brackets of this process's clock."""
    assert harness.stdin is not None and harness.stdout is not None
    residuals, widths = [], []
    for _ in range(n):
        t0 = time.time_ns()
        harness.stdin.write("now\n")
        harness.stdin.flush()
        fake = int(harness.stdout.readline())
        t1 = time.time_ns()
        true = fake - offset_ns
        mid = (t0 + t1) // 2
        residuals.append(true - mid)
        widths.append(t1 - t0)
    inside = all(abs(r) <= w / 2 for r, w in zip(residuals, widths, strict=True))
    return {
        "max_abs_residual_us": max(abs(r) for r in residuals) / 1e3,
        "median_bracket_us": float(np.median(widths)) / 1e3,
        "inside_bracket": inside,
    }


def run_offset(tmp: Path, offset_s: float, n: int, seed: int) -> dict[str, Any]:
    offset_ns = round(offset_s * 1e9)
    results: dict[str, dict[str, Any]] = {}
    with broker(tmp) as port, daemon_thread(tmp, port, None):
        http_port = free_port()
        agent_id = f"skew{abs(seed)}"
        fake = ["faketime", "-f", faketime_spec(offset_s)]
        # The wall clock is shifted; CLOCK_MONOTONIC is left alone (its epoch is arbitrary anyway):
        # with it faked too, libfaketime stalls the agent's block publishing (no samples arrive).
        env = {**os.environ, "PYTHONPATH": str(benchlib.ROOT), "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        agent = subprocess.Popen(
            [
                *fake,
                sys.executable,
                "-m",
                "powerd.agent",
                "--id",
                agent_id,
                "--mqtt",
                f"127.0.0.1:{port}",
                "--spool-dir",
                str(tmp / f"spool-{seed}"),
                "--http-port",
                str(http_port),
                "--probe",
                "sim:constant,w=5,rate=100",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # faketime forks: stop the whole group
        )
        hpath = tmp / "harness.py"
        hpath.write_text(HARNESS)
        harness_err = (tmp / f"harness-{seed}.stderr").open("w")
        harness = subprocess.Popen(
            [*fake, sys.executable, str(hpath), f"http://127.0.0.1:{http_port}", str(seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=harness_err,
            text=True,
            env=env,
            start_new_session=True,
        )
        client = paho.Client(paho.CallbackAPIVersion.VERSION2)

        def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
            with contextlib.suppress(ValueError):
                results[msg.topic.rsplit("/", 1)[1]] = json.loads(msg.payload)

        client.on_message = on_message
        client.connect("127.0.0.1", port)
        client.subscribe("powerd/v1/results/#", qos=1)
        client.loop_start()
        try:
            wait_port(http_port)
            shift = check_shift(harness, offset_ns)
            time.sleep(3.0)  # a few clock exchanges before the first marker
            assert harness.stdin is not None and harness.stdout is not None
            marks = []
            for i in range(n):
                harness.stdin.write(f"mark align{seed}-{i}\n")
                harness.stdin.flush()
                marks.append(json.loads(harness.stdout.readline()))
                time.sleep(0.05)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(m["run"] in results for m in marks):
                time.sleep(0.1)
        except (BrokenPipeError, ValueError) as err:
            tail = (tmp / f"harness-{seed}.stderr").read_text()[-1500:]
            raise RuntimeError(f"the harness failed: {tail}") from err
        finally:
            client.loop_stop()
            stop_group(harness)
            stop_group(agent)
    rows = []
    for m in marks:
        res = results.get(m["run"])
        if res is None:
            continue
        ph = next(p for p in res["phases"] if p["phase"] == "p")
        err_b = ph["t_begin_ns"] - (m["tb"] - offset_ns)
        err_e = ph["t_end_ns"] - (m["tc"] - offset_ns)
        unc = ph["timing"]["uncertainty_ns"]
        rows.append(
            {
                "run": m["run"],
                "err_begin_ns": err_b,
                "err_end_ns": err_e,
                "estimated_offset_ns": ph["timing"]["offset_ns"],
                "uncertainty_ns": unc,
                "within_uncertainty": abs(err_b) <= unc and abs(err_e) <= unc,
                "energy_j": ph["energy_j"],
                "flags": ph["flags"],
            }
        )
    return {"offset_s": offset_s, "markers": n, "shift_check": shift, "phases": rows}


def summary(r: dict[str, Any]) -> dict[str, Any]:
    errs = np.abs([x["err_begin_ns"] for x in r["phases"]] + [x["err_end_ns"] for x in r["phases"]])
    ms = errs / 1e6
    return {
        "offset_s": r["offset_s"],
        "results": len(r["phases"]),
        "markers": r["markers"],
        "median_ms": float(np.median(ms)) if ms.size else None,
        "p95_ms": float(np.percentile(ms, 95)) if ms.size else None,
        "max_ms": float(ms.max()) if ms.size else None,
        "within_goal_pct": float(100 * np.mean(ms <= GOAL_MS)) if ms.size else None,
        "within_uncertainty_pct": (
            float(100 * np.mean([x["within_uncertainty"] for x in r["phases"]]))
            if r["phases"]
            else None
        ),
        "median_uncertainty_ms": (
            float(np.median([x["uncertainty_ns"] for x in r["phases"]])) / 1e6
            if r["phases"]
            else None
        ),
    }


def plot(runs: list[dict[str, Any]], quick: bool) -> str | None:
    plt = benchlib.pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for r in runs:
        ms = [abs(x["err_begin_ns"]) / 1e6 for x in r["phases"]]
        ms += [abs(x["err_end_ns"]) / 1e6 for x in r["phases"]]
        if ms:
            xs = np.sort(ms)
            ax.step(
                xs, np.arange(1, len(xs) + 1) / len(xs), where="post", label=f"{r['offset_s']:+g} s"
            )
    ax.axvline(GOAL_MS, color="k", ls="--", lw=1, label=f"goal {GOAL_MS:g} ms")
    ax.set(
        xscale="log",
        xlabel="|marker time − truth| (ms)",
        ylabel="fraction of edges",
        title="marker alignment, agent clock offset (faketime)",
    )
    ax.legend()
    return benchlib.save_plot(fig, NAME, quick)


def main() -> int:
    args = benchlib.parser(__doc__.splitlines()[0]).parse_args()
    data = benchlib.envelope(NAME, args.quick, {"pinned": False})
    data["uptime_before"] = benchlib.uptime()
    data["goal"] = f"a marker from an agent whose clock is seconds off lands within {GOAL_MS:g} ms"
    t0 = time.perf_counter()
    has_broker = shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()
    if not (shutil.which("faketime") and has_broker):
        data["skipped"] = "needs Debian's faketime and mosquitto (apt-get install ...)"
    runs: list[dict[str, Any]] = []
    if "skipped" not in data:
        offsets = OFFSETS_S[:1] if args.quick else OFFSETS_S
        n = 5 if args.quick else 60
        with tempfile.TemporaryDirectory(prefix="powerd-bench-align-") as tmp:
            for i, off in enumerate(offsets):
                runs.append(run_offset(Path(tmp) / f"o{i}", off, n, seed=i + 1))
    sums = [summary(r) for r in runs]
    data["runs"] = runs
    data["rows"] = sums
    if "skipped" in data:
        data["verdict"] = f"not measured: {data['skipped']}"
        data["markdown"] = f"Not measured: {data['skipped']}."
    else:
        worst = max((s["max_ms"] or float("inf")) for s in sums)
        p95 = max((s["p95_ms"] or float("inf")) for s in sums)
        data["verdict"] = (
            f"{'met' if worst <= GOAL_MS else 'not met'}: worst edge {worst:.3g} ms, p95 "
            f"{p95:.3g} ms over {sum(s['results'] for s in sums)} phases"
        )
        table = benchlib.md_table(
            [
                "agent clock offset",
                "phases (results / markers)",
                "median \\|err\\| ms",
                "p95 ms",
                "max ms",
                "edges within 1 ms",
                "edges within the result's timing uncertainty",
                "median reported uncertainty ms",
                "faketime shift: true clock = shifted − offset",
            ],
            [
                [
                    f"{s['offset_s']:+g} s",
                    f"{s['results']} / {s['markers']}",
                    f"{s['median_ms']:.3g}",
                    f"{s['p95_ms']:.3g}",
                    f"{s['max_ms']:.3g}",
                    f"{s['within_goal_pct']:.0f} %",
                    f"{s['within_uncertainty_pct']:.0f} %",
                    f"{s['median_uncertainty_ms']:.3g}",
                    (
                        "inside every bracket"
                        if r["shift_check"]["inside_bracket"]
                        else "**outside**"
                    )
                    + f" (median bracket {r['shift_check']['median_bracket_us']:.0f} µs)",
                ]
                for s, r in zip(sums, runs, strict=True)
            ],
        )
        data["plot"] = plot(runs, args.quick)
        data["markdown"] = table + (f"\n\n![alignment]({data['plot']})" if data["plot"] else "")
    data["load_after"] = benchlib.load()
    data["uptime_after"] = benchlib.uptime()
    data["elapsed_s"] = time.perf_counter() - t0
    path = benchlib.write_result(NAME, args.quick, args.out, data)
    print(data["markdown"])
    print(f"\n{data['verdict']}\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
