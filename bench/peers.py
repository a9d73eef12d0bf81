"""powerd side by side with Zeus and CodeCarbon on one fake NVML GPU serving a known waveform.

The GPU is the tests' fake ``libnvidia-ml.so.1`` (``tests/probes/nvml/fake_nvml.c``), built here
with gcc together with ``bench/peers/nvml_extra.c`` (read-only queries CodeCarbon and Zeus make at
start: temperature, memory, utilisation, limits, processes; no effect on power or energy) and a stub
``nvidia-smi`` on PATH (CodeCarbon looks for it before it tries NVML). Its board power is a square
wave (``WAVE``) whose exact energy over any interval is ``Waveform.energy_j``; the energy counter
(``nvmlDeviceGetTotalEnergyConsumption``) updates every 100 ms, as on real GPUs, and the instant
power field (186) is served as on Hopper.

Zeus (``zeus-ml``) and CodeCarbon are installed from PyPI into their own venvs under
``bench/.venvs/`` (created on the first full run, or with ``--setup``; ``--quick`` uses them only if
they exist). powerd runs in-process (probe + sampler + integrator; see ``bench/peers/harness.py``).
Each tool is one long-lived process (``bench/peers/harness.py <tool>``); the three measure the same
phases **at the same time** (each phase length is sent to all three at once), so load and waveform
are shared. For every phase: the relative error of the tool's GPU energy against the truth of the
interval the workload ran (``tb_ns``..``tc_ns`` as the tool's harness stamped it), and the tool's
own CPU time over the phase (its process's user + sys, every thread).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
import numpy as np

from powerd.probes.sim.waveform import parse_spec

NAME = "peers"
WAVE = "square,high=300,low=80,period=0.35,duty=0.4"
UPDATE_MS = 100
PHASES = {50: 20, 500: 10, 5000: 4, 60000: 2}  # ms: repeats
QUICK_PHASES = {50: 4, 500: 2}
PEERS = {"zeus": "zeus-ml", "codecarbon": "codecarbon"}
VENVS = benchlib.BENCH_DIR / ".venvs"
FAKE_C = benchlib.ROOT / "tests" / "probes" / "nvml" / "fake_nvml.c"
EXTRA_C = benchlib.BENCH_DIR / "peers" / "nvml_extra.c"
HARNESS = benchlib.BENCH_DIR / "peers" / "harness.py"


def venv_python(tool: str) -> Path:
    return VENVS / tool / "bin" / "python"


def setup_venv(tool: str) -> dict[str, Any]:
    """Create bench/.venvs/<tool> and pip install the peer from PyPI; returns what happened."""
    py = venv_python(tool)
    t0 = time.perf_counter()
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENVS / tool)], check=True)
    r = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", PEERS[tool]],
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "tool": tool,
        "ok": r.returncode == 0,
        "seconds": time.perf_counter() - t0,
        "error": None if r.returncode == 0 else r.stderr[-1500:],
    }


def build_fake(work: Path) -> tuple[Path, Path]:
    """The fake library (with the peers' extra queries) and a stub nvidia-smi; returns dirs."""
    lib = work / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "gcc",
            "-O2",
            "-shared",
            "-fPIC",
            "-Wl,-soname,libnvidia-ml.so.1",
            "-I",
            str(FAKE_C.parent),
            "-o",
            str(lib / "libnvidia-ml.so.1"),
            str(EXTRA_C),
        ],
        check=True,
        capture_output=True,
    )
    bin_dir = work / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI stub (powerd bench: fake NVML)'\nexit 0\n")
    smi.chmod(0o755)
    return lib, bin_dir


def scenario(path: Path) -> None:
    wf = parse_spec(WAVE).waveform
    path.write_text(
        "\n".join(
            [
                "gpus=1",
                f"energy_update_ms={UPDATE_MS}",
                "gpu0.arch=hopper",
                f"gpu0.high_w={wf.high_w!r}",
                f"gpu0.low_w={wf.low_w!r}",
                f"gpu0.period_ns={wf.period_ns}",
                f"gpu0.high_ns={wf.high_ns}",
                "gpu0.instant=1",
            ]
        )
        + "\n"
    )


class Tool:
    """A harness process; one JSON line per request."""

    def __init__(self, name: str, python: Path, env: dict[str, str], work: Path) -> None:
        self.name = name
        self.err_path = work / f"{name}.stderr"
        self.proc = subprocess.Popen(
            [str(python), str(HARNESS), name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err_path.open("w"),
            text=True,
            env=env,
            cwd=work,
        )
        self.ready = self.read()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                tail = self.err_path.read_text()[-1500:]
                raise RuntimeError(f"{self.name} harness died: {tail}")
            if line.startswith("{"):  # a tool printing on stdout (fd level) is skipped
                return dict(json.loads(line))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self.send("quit")
            self.proc.wait(60)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(10)


def run(quick: bool, setup: bool, work: Path) -> dict[str, Any]:
    notes: list[str] = []
    installs = []
    for tool in PEERS:
        if setup or (not quick and not venv_python(tool).exists()):
            installs.append(setup_venv(tool))
    lib, bin_dir = build_fake(work)
    cfg = work / "fake.conf"
    scenario(cfg)
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": str(lib),
        "FAKE_NVML_CONFIG": str(cfg),
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(benchlib.ROOT),
    }
    pythons = {"powerd": Path(sys.executable)}
    for tool in PEERS:
        py = venv_python(tool)
        if py.exists():
            pythons[tool] = py
        else:
            notes.append(
                f"{tool}: not measured, bench/.venvs/{tool} does not exist "
                "(a full run or `bench/peers.py --setup` installs it)"
            )
    tools: dict[str, Tool] = {}
    for name, py in pythons.items():
        try:
            tools[name] = Tool(name, py, env if name == "powerd" else _peer_env(env), work)
        except RuntimeError as err:
            notes.append(f"{name}: could not start: {err}")
    wf = parse_spec(WAVE).waveform
    trials: list[dict[str, Any]] = []
    plan = QUICK_PHASES if quick else PHASES
    try:
        for ms, reps in plan.items():
            for rep in range(reps):
                for t in tools.values():
                    t.send(f"{ms / 1000:.6f}")
                for name, t in tools.items():
                    r = t.read()
                    truth = wf.energy_j(r["tb_ns"], r["tc_ns"])
                    trials.append(
                        {
                            "tool": name,
                            "phase_ms": ms,
                            "rep": rep,
                            **r,
                            "truth_j": truth,
                            "err_rel": (r["energy_j"] - truth) / truth,
                        }
                    )
    finally:
        for t in tools.values():
            t.close()
    return {
        "installs": installs,
        "notes": notes,
        "ready": {n: t.ready for n, t in tools.items()},
        "trials": trials,
        "plan_ms": plan,
    }


def _peer_env(env: dict[str, str]) -> dict[str, str]:
    """A peer's venv must not see powerd's sources (it runs only the peer and the harness)."""
    return {k: v for k, v in env.items() if k != "PYTHONPATH"}


def summarise(res: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    tools = list(res["ready"])
    for ms in res["plan_ms"]:
        row: dict[str, Any] = {"phase_ms": int(ms)}
        for tool in tools:
            tr = [t for t in res["trials"] if t["tool"] == tool and t["phase_ms"] == int(ms)]
            if not tr:
                continue
            err = np.abs([t["err_rel"] for t in tr]) * 100
            cpu = np.array([t["cpu_s"] for t in tr])
            dur = np.array([(t["tc_ns"] - t["tb_ns"]) / 1e9 for t in tr])
            cov = [
                abs(t["energy_j"] - t["truth_j"]) <= t["uncertainty_j"]
                for t in tr
                if "uncertainty_j" in t
            ]
            row[tool] = {
                "coverage_pct": 100.0 * float(np.mean(cov)) if cov else None,
                "n": len(tr),
                "median_err_pct": float(np.median(err)),
                "max_err_pct": float(err.max()),
                "mean_err_pct": float(err.mean()),
                "cpu_ms_per_phase": float(np.median(cpu) * 1e3),
                "cpu_pct_of_phase": float(100 * cpu.sum() / dur.sum()),
            }
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]], tools: list[str]) -> str:
    head = ["phase", "n"]
    head += [f"{t} median \\|err\\| %" for t in tools]
    head += [f"{t} max \\|err\\| %" for t in tools]
    head += [f"{t} ÷ powerd (median err)" for t in tools if t != "powerd"]
    head += [f"{t} CPU ms/phase" for t in tools]
    head += ["powerd ±U covers truth"]
    out = []
    for r in rows:
        p = r.get("powerd")
        line: list[Any] = [f"{r['phase_ms'] / 1000:g} s", max(r[t]["n"] for t in tools if t in r)]
        line += [f"{r[t]['median_err_pct']:.3g}" if t in r else "-" for t in tools]
        line += [f"{r[t]['max_err_pct']:.3g}" if t in r else "-" for t in tools]
        for t in tools:
            if t == "powerd":
                continue
            if t in r and p and p["median_err_pct"] > 0:
                line.append(f"{r[t]['median_err_pct'] / p['median_err_pct']:.3g}×")
            else:
                line.append("-")
        line += [f"{r[t]['cpu_ms_per_phase']:.3g}" if t in r else "-" for t in tools]
        cov = p["coverage_pct"] if p else None
        line.append("-" if cov is None else f"{cov:.0f} %")
        out.append(line)
    return benchlib.md_table(head, out)


def verdict(rows: list[dict[str, Any]], tools: list[str]) -> str:
    peers = [t for t in tools if t != "powerd"]
    if not peers:
        return "no peer measured (see notes)"
    wins = []
    for r in rows:
        p = r["powerd"]
        worse = [t for t in peers if t in r and r[t]["median_err_pct"] <= p["median_err_pct"]]
        wins.append(not worse)
    return (
        f"powerd's median error lower than {' and '.join(peers)} on "
        f"{sum(wins)} of {len(rows)} phase lengths"
        + (" (met)" if all(wins) and len(peers) == len(PEERS) else "")
    )


def plot(res: dict[str, Any], rows: list[dict[str, Any]], quick: bool) -> str | None:
    plt = benchlib.pyplot()
    if plt is None:
        return None
    tools = list(res["ready"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for tool in tools:
        tr = [t for t in res["trials"] if t["tool"] == tool]
        ax1.scatter(
            [t["phase_ms"] / 1000 * (1 + 0.05 * tools.index(tool)) for t in tr],
            [max(abs(t["err_rel"]) * 100, 1e-4) for t in tr],
            label=tool,
            s=14,
            alpha=0.7,
        )
        ax2.plot(
            [r["phase_ms"] / 1000 for r in rows if tool in r],
            [r[tool]["cpu_ms_per_phase"] for r in rows if tool in r],
            marker="o",
            label=tool,
        )
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="phase length (s)",
        ylabel="|energy error| (%), floor 1e-4",
        title="GPU energy error per phase (fake NVML)",
    )
    ax2.set(
        xscale="log",
        yscale="log",
        xlabel="phase length (s)",
        ylabel="tool CPU time per phase (ms)",
        title="each tool's own CPU while measuring",
    )
    ax1.legend()
    ax2.legend()
    return benchlib.save_plot(fig, NAME, quick)


def main() -> int:
    p = benchlib.parser(__doc__.splitlines()[0])
    p.add_argument("--setup", action="store_true", help="(re)install the peers' venvs first")
    args = p.parse_args()
    data = benchlib.envelope(NAME, args.quick, {"pinned": False})
    data["uptime_before"] = benchlib.uptime()
    data["goal"] = "lower energy error than both Zeus and CodeCarbon on every phase length"
    data["waveform"] = WAVE
    data["counter_update_ms"] = UPDATE_MS
    t0 = time.perf_counter()
    if shutil.which("gcc") is None:
        raise SystemExit("gcc is needed to build the fake NVML library")
    with tempfile.TemporaryDirectory(prefix="powerd-bench-peers-") as tmp:
        res = run(args.quick, args.setup, Path(tmp))
    tools = list(res["ready"])
    rows = summarise(res)
    data.update(res)
    data["rows"] = rows
    data["verdict"] = verdict(rows, tools) + "."
    data["plot"] = plot(res, rows, args.quick)
    data["load_after"] = benchlib.load()
    data["uptime_after"] = benchlib.uptime()
    data["elapsed_s"] = time.perf_counter() - t0
    versions = ", ".join(f"{n} {r['version']}" for n, r in res["ready"].items())
    setup_cpu = ", ".join(f"{n} {r['setup_cpu_s']:.2f} s" for n, r in res["ready"].items())
    md = [
        f"Versions: {versions}. Fake GPU: `{WAVE}` (W, s), energy counter updated every "
        f"{UPDATE_MS} ms. The three tools measure each phase at the same time. Errors are "
        "|tool's GPU energy − truth| / truth for the interval the workload ran; CPU is the "
        "tool process's own CPU time over the phase (median). Start-up CPU (import, init, "
        f"not in the table): {setup_cpu}.",
        "",
        table(rows, tools),
    ]
    md += [f"\nNote: {n}" for n in res["notes"]]
    if data["plot"]:
        md += ["", f"![peers]({data['plot']})"]
    data["markdown"] = "\n".join(md)
    path = benchlib.write_result(NAME, args.quick, args.out, data)
    print(data["markdown"])
    print(f"\n{data['verdict']}\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
