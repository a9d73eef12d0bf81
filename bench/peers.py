"""powerd side by side with Zeus and CodeCarbon on one fake NVML GPU serving a known waveform.

The GPU is the tests' fake ``libnvidia-ml.so.1`` (``tests/probes/nvml/fake_nvml.c``), built here
with gcc together with ``bench/peers/nvml_extra.c`` (read-only queries CodeCarbon and Zeus make at
start: temperature, memory, utilisation, limits, processes; no effect on power or energy) and a stub
``nvidia-smi`` on PATH (CodeCarbon looks for it before it tries NVML). Its board power is a square
wave (``WAVE``) whose exact energy over any interval is ``Waveform.energy_j``; the energy counter
(``nvmlDeviceGetTotalEnergyConsumption``) updates every 100 ms, as on real GPUs, and the instant
power field (186) is served as on Hopper.

Zeus (the ``zeus`` distribution, formerly ``zeus-ml``) and CodeCarbon are installed from PyPI at
the pinned releases in ``PEERS`` into their own venvs under ``bench/.venvs/`` (created or brought to
the pinned release on a full run, or with ``--setup``; ``--quick`` uses them only if they exist).
powerd runs in-process (probe + sampler + integrator; see ``bench/peers/harness.py``). Each tool is
one long-lived process (``bench/peers/harness.py <tool>``); all measure the same phases **at the
same time** (each phase length is sent to every tool at once), so load and waveform are shared.
Zeus runs twice: with its defaults and with ``approx_instant_energy=True`` (its documented option
for windows shorter than the counter's update). powerd also runs twice: its timeline path
(``powerd``) and ``powerd.window`` reading the counter at the phase edges (``powerd-window``; its
rows are not part of the verdict, which compares ``powerd`` with the peers). One more process,
the harness with no tool, is the floor under every CPU figure.

Phase lengths (``PHASES``) are not multiples of the counter's 100 ms update nor of the waveform's
350 ms period: with a length of whole updates, a peer's stale reading at the begin edge is as old
as the one at the end edge and the two errors largely cancel; here they differ by 53, 37, 70 and
70 ms of the update. For every phase: the relative error of the tool's GPU energy against the truth
of the interval the workload ran (``tb_ns``..``tc_ns`` as the tool's harness stamped it). Each
median comes with a 95 % bootstrap confidence interval, and powerd is called lower than a peer at a
length only when the two intervals are disjoint. CPU is measured from outside on the whole process
running the tool (every thread; its reaped children; any child process found at start-up): its
CPU clock (``clock_getcpuclockid``, ns) and ``/proc/<pid>/stat`` utime + stime (clock ticks, the
cross-check), per phase, over the whole run, and idle (the tool set up, no phase open) for
``IDLE_S``. The in-process figure (the harness's ``time.process_time`` around begin..end) is kept
for comparison with earlier runs.

``--compare A.json B.json`` prints, side by side, the medians and verdicts of two runs (is the
verdict per length stable from run to run?).
"""

from __future__ import annotations

import ctypes
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
PHASES = {53: 600, 537: 200, 5370: 60, 61370: 30}  # ms: repeats (not whole 100 ms updates)
QUICK_PHASES = {53: 4, 537: 2}
IDLE_S = 60.0  # each tool set up, no phase open: its idle cost
QUICK_IDLE_S = 1.0
BOOTSTRAP = 5000  # resamples for each median's 95 % interval
# The latest releases on PyPI on 2026-12-03 (zeus-ml is the old name of zeus, last 0.11).
PEERS = {"zeus": "zeus==0.16.0", "codecarbon": "codecarbon==3.3.2"}
STALE = ("zeus-ml",)  # distributions an older venv may hold (same import name as zeus)
ENERGY_TOOLS = ("powerd", "powerd-window", "zeus", "zeus-approx", "codecarbon")
VENV_OF = {"zeus": "zeus", "zeus-approx": "zeus", "codecarbon": "codecarbon"}
POWERD_TOOLS = ("powerd", "powerd-window")  # in this interpreter; powerd-window: edge reads
PEER_TOOLS = tuple(VENV_OF)
BASELINE = "none"  # the harness with no tool
CLK_TCK = os.sysconf("SC_CLK_TCK")
VENVS = benchlib.BENCH_DIR / ".venvs"
FAKE_C = benchlib.ROOT / "tests" / "probes" / "nvml" / "fake_nvml.c"
EXTRA_C = benchlib.BENCH_DIR / "peers" / "nvml_extra.c"
HARNESS = benchlib.BENCH_DIR / "peers" / "harness.py"


def venv_python(tool: str) -> Path:
    return VENVS / tool / "bin" / "python"


def installed(tool: str) -> str | None:
    """The version of the peer's distribution in its venv, None if absent."""
    py = venv_python(tool)
    if not py.exists():
        return None
    dist = PEERS[tool].split("==")[0]
    r = subprocess.run(
        [str(py), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return r.stdout.strip() if r.returncode == 0 else None


def setup_venv(tool: str) -> dict[str, Any]:
    """Create bench/.venvs/<tool> and pip install the pinned peer from PyPI; returns what happened.

    An older venv's ``zeus-ml`` is uninstalled first, and the peer with it: both own the same
    ``zeus`` package directory, so removing one alone would leave the other broken.
    """
    py = venv_python(tool)
    t0 = time.perf_counter()
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENVS / tool)], check=True)
    subprocess.run(
        [str(py), "-m", "pip", "uninstall", "-q", "-y", *STALE, PEERS[tool].split("==")[0]],
        capture_output=True,
        check=False,
    )
    r = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", PEERS[tool]],
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "tool": tool,
        "spec": PEERS[tool],
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
            "-lm",
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


_LIBC = ctypes.CDLL(None, use_errno=True)


def _children_of(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (a scan of /proc: this kernel has no ``children`` file)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def _ticks(pid: int) -> tuple[int, int]:
    """(utime + stime, cutime + cstime) of ``pid`` in clock ticks: its own, its reaped children."""
    f = (Path(f"/proc/{pid}/stat")).read_text().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12]), int(f[13]) + int(f[14])


class OutsideCpu:
    """A process's CPU time read from outside it: what the machine pays, not what it reports.

    ``sample()`` returns (clock_s, ticks_s): the process's CPU clock (every thread, live or
    exited; ns resolution, via ``clock_getcpuclockid``) plus its reaped children's /proc time and
    that of the descendants alive at start-up, and /proc/<pid>/stat utime + stime (+ children)
    over the same processes (10 ms ticks; the cross-check).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.descendants = _children_of(pid)
        self.clocks = [self._clockid(p) for p in [pid, *self.descendants]]

    @staticmethod
    def _clockid(pid: int) -> int:
        cid = ctypes.c_int()
        if _LIBC.clock_getcpuclockid(pid, ctypes.byref(cid)) != 0:
            raise OSError(ctypes.get_errno(), f"clock_getcpuclockid({pid})")
        return cid.value

    def sample(self) -> tuple[float, float]:
        procs = [self.pid, *self.descendants]
        clock = 0.0
        ticks = 0
        for i, (p, cid) in enumerate(zip(procs, self.clocks, strict=True)):
            try:
                own, reaped = _ticks(p)
                clock += time.clock_gettime_ns(cid) / 1e9
            except OSError:
                continue  # a descendant that exited (its time is in its parent's cutime)
            ticks += own + reaped
            if i == 0:  # the harness's reaped children: only in /proc
                clock += reaped / CLK_TCK
        return clock, ticks / CLK_TCK


class Tool:
    """A harness process; one JSON line per request; its CPU measured from outside."""

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
        self.cpu = OutsideCpu(self.proc.pid)
        self.ready["descendants"] = len(self.cpu.descendants)

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


def run(
    quick: bool, setup: bool, work: Path, phases: dict[int, int] | None = None
) -> dict[str, Any]:
    notes: list[str] = []
    installs = []
    for tool, spec in PEERS.items():
        have = installed(tool)
        if setup or (not quick and have != spec.split("==")[1]):
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
    pythons = {t: Path(sys.executable) for t in POWERD_TOOLS}
    for tool in PEER_TOOLS:
        py = venv_python(VENV_OF[tool])
        if py.exists():
            pythons[tool] = py
        else:
            notes.append(
                f"{tool}: not measured, bench/.venvs/{VENV_OF[tool]} does not exist "
                "(a full run or `bench/peers.py --setup` installs it)"
            )
    pythons[BASELINE] = Path(sys.executable)
    tools: dict[str, Tool] = {}
    for name, py in pythons.items():
        try:
            tools[name] = Tool(name, py, env if name in POWERD_TOOLS else _peer_env(env), work)
        except RuntimeError as err:
            notes.append(f"{name}: could not start: {err}")
    wf = parse_spec(WAVE).waveform
    trials: list[dict[str, Any]] = []
    plan = phases or (QUICK_PHASES if quick else PHASES)
    idle_s = QUICK_IDLE_S if quick else IDLE_S
    try:
        idle = _idle(tools, idle_s)
        w0 = time.monotonic()
        run0 = {n: t.cpu.sample() for n, t in tools.items()}
        for ms, reps in plan.items():
            for rep in range(reps):
                before = {n: t.cpu.sample() for n, t in tools.items()}
                for t in tools.values():
                    t.send(f"{ms / 1000:.6f}")
                for name, t in tools.items():
                    r = t.read()
                    clock_s, ticks_s = t.cpu.sample()
                    trial = {
                        "tool": name,
                        "phase_ms": ms,
                        "rep": rep,
                        **r,
                        "out_cpu_s": clock_s - before[name][0],
                        "out_ticks_s": ticks_s - before[name][1],
                    }
                    if name in ENERGY_TOOLS:
                        truth = wf.energy_j(r["tb_ns"], r["tc_ns"])
                        trial["truth_j"] = truth
                        trial["err_rel"] = (r["energy_j"] - truth) / truth
                    trials.append(trial)
        whole_run = _cpu_since(tools, run0, time.monotonic() - w0)
    finally:
        for t in tools.values():
            t.close()
    return {
        "installs": installs,
        "notes": notes,
        "ready": {n: t.ready for n, t in tools.items()},
        "idle": idle,
        "whole_run": whole_run,
        "trials": trials,
        "plan_ms": plan,
    }


def _idle(tools: dict[str, Tool], seconds: float) -> dict[str, dict[str, float]]:
    """Each tool's CPU while set up with no phase open, measured from outside."""
    time.sleep(min(1.0, seconds))  # let start-up's tail (first samples, threads) pass
    before = {n: t.cpu.sample() for n, t in tools.items()}
    w0 = time.monotonic()
    time.sleep(seconds)
    return _cpu_since(tools, before, time.monotonic() - w0)


def _cpu_since(
    tools: dict[str, Tool], before: dict[str, tuple[float, float]], wall_s: float
) -> dict[str, dict[str, float]]:
    """Each tool's CPU (CPU clock and /proc ticks) since ``before``, % of a core over ``wall_s``."""
    out = {}
    for n, t in tools.items():
        c1, k1 = t.cpu.sample()
        out[n] = {
            "wall_s": wall_s,
            "clock_pct": 100 * (c1 - before[n][0]) / wall_s,
            "ticks_pct": 100 * (k1 - before[n][1]) / wall_s,
        }
    return out


def _peer_env(env: dict[str, str]) -> dict[str, str]:
    """A peer's venv must not see powerd's sources (it runs only the peer and the harness)."""
    return {k: v for k, v in env.items() if k != "PYTHONPATH"}


def median_ci(x: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the median of ``x``."""
    idx = rng.integers(0, len(x), size=(BOOTSTRAP, len(x)))
    lo, hi = np.quantile(np.median(x[idx], axis=1), [0.025, 0.975])
    return float(lo), float(hi)


def summarise(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Per phase length and tool: errors with the median's interval, CPU in and out of process."""
    rng = np.random.default_rng(20261203)
    rows = []
    tools = list(res["ready"])
    for ms in res["plan_ms"]:
        row: dict[str, Any] = {"phase_ms": int(ms)}
        for tool in tools:
            tr = [t for t in res["trials"] if t["tool"] == tool and t["phase_ms"] == int(ms)]
            if not tr:
                continue
            out = np.array([t["out_cpu_s"] for t in tr])
            dur = np.array([(t["tc_ns"] - t["tb_ns"]) / 1e9 for t in tr])
            row[tool] = {
                "n": len(tr),
                "cpu_ms_per_phase": float(np.median([t["cpu_s"] for t in tr]) * 1e3),
                "out_cpu_ms_per_phase": float(np.median(out) * 1e3),
                "out_ticks_ms_per_phase_mean": float(np.mean([t["out_ticks_s"] for t in tr]) * 1e3),
                "out_cpu_pct_of_phase": float(100 * out.sum() / dur.sum()),
            }
            if tool not in ENERGY_TOOLS:
                continue
            err = np.abs([t["err_rel"] for t in tr]) * 100
            lo, hi = median_ci(err, rng)
            cov = [
                abs(t["energy_j"] - t["truth_j"]) <= t["uncertainty_j"]
                for t in tr
                if "uncertainty_j" in t
            ]
            row[tool] |= {
                "coverage_pct": 100.0 * float(np.mean(cov)) if cov else None,
                "median_err_pct": float(np.median(err)),
                "median_ci_pct": [lo, hi],
                "max_err_pct": float(err.max()),
                "mean_err_pct": float(err.mean()),
                "zero_readings": int(sum(t["energy_j"] == 0.0 for t in tr)),
            }
        p = row.get("powerd")
        for tool in PEER_TOOLS:
            if tool not in row or p is None:
                continue
            mine = {
                t["rep"]: abs(t["err_rel"])
                for t in res["trials"]
                if t["tool"] == "powerd" and t["phase_ms"] == int(ms)
            }
            theirs = [
                (abs(t["err_rel"]), mine[t["rep"]])
                for t in res["trials"]
                if t["tool"] == tool and t["phase_ms"] == int(ms) and t["rep"] in mine
            ]
            row[tool]["powerd_closer"] = sum(m < x for x, m in theirs)
            row[tool]["verdict"] = compare_ci(p["median_ci_pct"], row[tool]["median_ci_pct"])
        rows.append(row)
    return rows


def compare_ci(powerd: list[float], peer: list[float]) -> str:
    """powerd against a peer at one length, from the two medians' 95 % intervals."""
    if powerd[1] < peer[0]:
        return "powerd lower"
    if peer[1] < powerd[0]:
        return "powerd higher"
    return "not separated"


def _ms(x: float) -> str:
    return f"{x:.3g}"


def accuracy_table(rows: list[dict[str, Any]]) -> str:
    head = [
        "phase",
        "tool",
        "n",
        "median \\|err\\| % (95 % CI)",
        "max \\|err\\| %",
        "read 0 J",
        "÷ powerd",
        "powerd closer",
        "verdict",
    ]
    out = []
    for r in rows:
        p = r.get("powerd")
        for tool in ENERGY_TOOLS:
            if tool not in r:
                continue
            x = r[tool]
            lo, hi = x["median_ci_pct"]
            line: list[Any] = [
                f"{r['phase_ms'] / 1000:g} s",
                tool,
                x["n"],
                f"{x['median_err_pct']:.3g} ({lo:.3g}–{hi:.3g})",
                f"{x['max_err_pct']:.3g}",
                x["zero_readings"],
            ]
            if tool in POWERD_TOOLS:
                cov = x["coverage_pct"]
                line += ["-", "-", "-" if cov is None else f"±U covers truth {cov:.0f} %"]
            else:
                ratio = (
                    f"{x['median_err_pct'] / p['median_err_pct']:.3g}×"
                    if p and p["median_err_pct"] > 0
                    else "-"
                )
                line += [ratio, f"{x.get('powerd_closer', '-')} of {x['n']}", x.get("verdict", "-")]
            out.append(line)
    return benchlib.md_table(head, out)


def cost_table(res: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    tools = list(res["ready"])
    head = ["tool", "start-up CPU s", "idle % of a core (clock / ticks)"]
    head += [f"{r['phase_ms'] / 1000:g} s: ms/phase out (in)" for r in rows]
    head += ["whole run % of a core (clock / ticks)"]
    out = []
    for tool in tools:
        idle = res["idle"][tool]
        whole = res["whole_run"][tool]
        line: list[Any] = [
            "harness alone" if tool == BASELINE else tool,
            f"{res['ready'][tool]['setup_cpu_s']:.2f}",
            f"{idle['clock_pct']:.3g} / {idle['ticks_pct']:.3g}",
        ]
        for r in rows:
            x = r.get(tool)
            line.append(
                "-"
                if x is None
                else f"{_ms(x['out_cpu_ms_per_phase'])} ({_ms(x['cpu_ms_per_phase'])})"
            )
        line.append(f"{whole['clock_pct']:.3g} / {whole['ticks_pct']:.3g}")
        out.append(line)
    return benchlib.md_table(head, out)


def verdict(rows: list[dict[str, Any]], tools: list[str]) -> str:
    peers = [t for t in tools if t in PEER_TOOLS]
    if not peers:
        return "no peer measured (see notes)"
    wins = [all(r[t].get("verdict") == "powerd lower" for t in peers if t in r) for r in rows]
    return (
        f"powerd's median error lower than {', '.join(peers)} (95 % intervals disjoint) on "
        f"{sum(wins)} of {len(rows)} phase lengths"
        + (" (met)" if all(wins) and len(peers) == len(PEER_TOOLS) else "")
    )


def plot(res: dict[str, Any], rows: list[dict[str, Any]], quick: bool) -> str | None:
    plt = benchlib.pyplot()
    if plt is None:
        return None
    tools = list(res["ready"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for tool in tools:
        if tool in ENERGY_TOOLS:
            tr = [t for t in res["trials"] if t["tool"] == tool]
            ax1.scatter(
                [t["phase_ms"] / 1000 * (1 + 0.05 * tools.index(tool)) for t in tr],
                [max(abs(t["err_rel"]) * 100, 1e-4) for t in tr],
                label=tool,
                s=10,
                alpha=0.5,
            )
        ax2.plot(
            [r["phase_ms"] / 1000 for r in rows if tool in r],
            [max(r[tool]["out_cpu_ms_per_phase"], 1e-3) for r in rows if tool in r],
            marker="o",
            label="harness alone" if tool == BASELINE else tool,
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
        ylabel="process CPU per phase, from outside (ms)",
        title="each tool's whole process while measuring",
    )
    ax1.legend()
    ax2.legend()
    return benchlib.save_plot(fig, NAME, quick)


def compare_runs(a_path: Path, b_path: Path) -> str:
    """Two runs' medians, intervals and verdicts side by side: is each verdict stable?"""
    runs = [json.loads(x.read_text()) for x in (a_path, b_path)]
    head = ["phase", "tool", "run A median % (95 % CI)", "run B median % (95 % CI)"]
    head += ["run A verdict", "run B verdict", "same"]
    out = []
    by_len = [{r["phase_ms"]: r for r in run["rows"]} for run in runs]
    for ms in by_len[0]:
        for tool in ENERGY_TOOLS:
            xs = [b.get(ms, {}).get(tool) for b in by_len]
            if any(x is None for x in xs):
                continue
            cells = [
                f"{x['median_err_pct']:.3g} ({x['median_ci_pct'][0]:.3g}–"
                f"{x['median_ci_pct'][1]:.3g})"
                for x in xs
            ]
            vs = [x.get("verdict", "-") for x in xs]
            out.append(
                [f"{ms / 1000:g} s", tool, *cells, *vs, "yes" if vs[0] == vs[1] else "**no**"]
            )
    dates = " and ".join(r["machine"]["date_utc"] for r in runs)
    return f"Runs of {dates}.\n\n" + benchlib.md_table(head, out)


def _phases(text: str | None) -> dict[int, int] | None:
    """``--phases 53:40,537:20`` as {ms: repeats}; None keeps the plan."""
    if not text:
        return None
    return {int(ms): int(n) for ms, n in (x.split(":") for x in text.split(","))}


def main() -> int:
    p = benchlib.parser(__doc__.splitlines()[0])
    p.add_argument("--setup", action="store_true", help="(re)install the peers' venvs first")
    p.add_argument(
        "--phases",
        metavar="MS:N,...",
        help="phase lengths (ms) and repeats instead of the plan, e.g. 53:40,537:20",
    )
    p.add_argument("--compare", nargs=2, type=Path, metavar="JSON", help="compare two runs")
    args = p.parse_args()
    if args.compare:
        print(compare_runs(*args.compare))
        return 0
    data = benchlib.envelope(NAME, args.quick, {"pinned": False})
    data["uptime_before"] = benchlib.uptime()
    data["goal"] = (
        "lower energy error than Zeus (defaults and approx_instant_energy) and CodeCarbon on "
        "every phase length, the medians' 95 % intervals disjoint"
    )
    data["waveform"] = WAVE
    data["counter_update_ms"] = UPDATE_MS
    t0 = time.perf_counter()
    if shutil.which("gcc") is None:
        raise SystemExit("gcc is needed to build the fake NVML library")
    with tempfile.TemporaryDirectory(prefix="powerd-bench-peers-") as tmp:
        res = run(args.quick, args.setup, Path(tmp), _phases(args.phases))
    tools = list(res["ready"])
    rows = summarise(res)
    data.update(res)
    data["rows"] = rows
    data["verdict"] = verdict(rows, tools) + "."
    data["plot"] = plot(res, rows, args.quick)
    data["load_after"] = benchlib.load()
    data["uptime_after"] = benchlib.uptime()
    data["elapsed_s"] = time.perf_counter() - t0
    versions = ", ".join(
        f"{n} {r['version']}" for n, r in res["ready"].items() if n in ENERGY_TOOLS
    )
    idle_s = QUICK_IDLE_S if args.quick else IDLE_S
    md = [
        f"Versions: {versions}. Fake GPU: `{WAVE}` (W, s), energy counter updated every "
        f"{UPDATE_MS} ms. All tools measure each phase at the same time. Errors are "
        "|tool's GPU energy − truth| / truth for the interval the workload ran; the interval is "
        f"a {BOOTSTRAP}-resample bootstrap of the median; *powerd closer*: the phases (paired, "
        "same phase) where powerd's error was the smaller; *verdict*: powerd lower or higher "
        "only when the two intervals are disjoint.",
        "",
        accuracy_table(rows),
        "",
        "CPU of the whole process running each tool, from outside: its CPU clock (all "
        "threads, ns) and /proc utime + stime (10 ms ticks). *ms/phase out (in)*: median per "
        "phase from outside, in parentheses the in-process `time.process_time` around "
        f"begin..end as in earlier runs. *Idle*: tool set up, no phase open, {idle_s:g} s. "
        "*Whole run*: over every phase and the gaps between them. *Harness alone*: the "
        "harness process with no tool, the floor under every row.",
        "",
        cost_table(res, rows),
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
