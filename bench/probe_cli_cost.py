"""CPU cost of the CLI-based probes at their natural rates: powerd's process and the tools' own.

Each probe runs against fake vendor tools written into tmp and put first on PATH, printing the
tests' captured-shape outputs (``tests/probes/<family>/testdata``):

- a tool without a loop mode (``rbln-smi --json``, ``hyperdex-smi``, ``npu-smi info -t power``,
  ``mobilint-cli status -q`` in ``mode=poll``) is a ``/bin/sh`` script that ``exec``s ``cat`` of
  the output: a process start per poll, as with the real (native) tool, minus whatever the real
  tool does to read the hardware;
- a tool in loop mode (``hl-smi -l``, ``mobilint-cli status -q -m``, ``tegrastats --interval``)
  is one Python process printing the output every interval (started once, like the real one;
  its interpreter start-up, tens of ms, is in the tools' figure).

A child process opens one probe with its default interval and runs the real ``Sampler``
(timeline, SQLite store) for the duration. "powerd" is the child's CPU time (user + sys of all
its threads: sampler, readers, pollers; ``RUSAGE_SELF``) over the sampling period; "tools" is
the CPU of the tool processes it started in that period (``RUSAGE_CHILDREN`` after the probe is
closed and every tool reaped), both as % of one core. An empty sampler is measured too. Goal:
<= 1 % of one core for powerd with loop mode. The tools' figure depends on the fake (a real tool
reads hardware, a Python fake pays interpreter start-up once); it is shown, not judged.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import benchlib
from _common import cost_bench_start, run_child, sample

NAME = "probe_cli_cost"
GOAL_PCT = 1.0
TESTDATA = benchlib.ROOT / "tests" / "probes"

PLAYER = """#!{python}
import json, sys, time
cfg = json.loads({cfg!r})
args = sys.argv[1:]
frames = [open(p).read() for p in cfg["frames"]]
if cfg["arg"] not in args:
    sys.stdout.write(frames[0]); sys.exit(0)
interval = float(args[args.index(cfg["arg"]) + 1]) * cfg["scale"]
out = sys.stdout
n = 0
while True:
    out.write(frames[n % len(frames)]); out.flush()
    n += 1
    time.sleep(interval)
"""


def shell_tool(bin_dir: Path, name: str, routes: list[tuple[str, Path]]) -> None:
    """A /bin/sh tool: ``cat`` of the file of the first route whose word is in its arguments."""
    cases = "".join(f'  *"{word}"*) exec cat {path} ;;\n' for word, path in routes)
    exe = bin_dir / name
    exe.write_text(f'#!/bin/sh\ncase " $* " in\n{cases}esac\nexit 2\n')
    exe.chmod(0o755)


def loop_tool(bin_dir: Path, name: str, frames: list[Path], arg: str, scale: float) -> None:
    cfg = json.dumps({"frames": [str(f) for f in frames], "arg": arg, "scale": scale})
    exe = bin_dir / name
    exe.write_text(PLAYER.format(python=sys.executable, cfg=cfg))
    exe.chmod(0o755)


def mobilint_chip_frames(work: Path) -> list[Path]:
    """One ``status -q -i N`` output per chip of the 4-chip MLA400 capture."""
    text = (
        TESTDATA / "mobilint/testdata/mla400-4chips-utility1.12.0-status-q/stdout.txt"
    ).read_text()
    head, _, body = text.partition("/dev/aries0\n")
    blocks = ("/dev/aries0\n" + body).split("\n/dev/")
    paths = []
    for i, block in enumerate(blocks):
        p = work / f"mobilint-chip{i}.txt"
        p.write_text(head + ("" if i == 0 else "/dev/") + block.rstrip("\n") + "\n")
        paths.append(p)
    return paths


def install_tools(bin_dir: Path, work: Path) -> None:
    bin_dir.mkdir(parents=True)
    rbln = TESTDATA / "rbln/testdata/atom-max-rbln-ca25-2cards-4dies-kmd3.0.0/stdout.json"
    shell_tool(bin_dir, "rbln-smi", [("--json", rbln)])
    lpu = TESTDATA / "hyperaccel/testdata/u55c-4lpu-hyperdex1.5.2-xrt2022.2/stdout.txt"
    shell_tool(bin_dir, "hyperdex-smi", [("", lpu)])
    listing = work / "npu-smi-list.txt"
    listing.write_text("".join(f"\tNPU ID                         : {i}\n" for i in range(2)))
    board = TESTDATA / "ascend/testdata/atlas800t-a2-910b3-npu-smi23-power-dissipation/stdout.bin"
    shell_tool(bin_dir, "npu-smi", [(" -l ", listing), ("power", board)])
    g3 = TESTDATA / "gaudi/testdata/gaudi3-hl-325l-8cards-driver1.22.1/stdout.txt"
    loop_tool(bin_dir, "hl-smi", [g3], "-l", 1.0)
    chips = mobilint_chip_frames(work)
    whole = TESTDATA / "mobilint/testdata/mla400-4chips-utility1.12.0-status-q/stdout.txt"
    # status -q -i N -m MS: a Python loop of chip N; plain status -q: cat of all chips (sh)
    routes = "".join(
        f'    if "{i}" == args[args.index("-i") + 1]: frames = [{str(p)!r}]\n'
        for i, p in enumerate(chips)
    )
    player = PLAYER.replace(
        'frames = [open(p).read() for p in cfg["frames"]]\n',
        'frames = cfg["frames"]\nif "-i" in args:\n'
        + routes
        + "frames = [open(p).read() for p in frames]\n",
    )
    cfg = json.dumps({"frames": [str(whole)], "arg": "-m", "scale": 0.001})
    loop = work / "mobilint-loop.py"
    loop.write_text(player.format(python=sys.executable, cfg=cfg))
    exe = bin_dir / "mobilint-cli"
    exe.write_text(
        f'#!/bin/sh\ncase " $* " in\n  *" -m "*) exec {sys.executable} {loop} "$@" ;;\n'
        f"esac\nexec cat {whole}\n"
    )
    exe.chmod(0o755)
    orin = work / "tegrastats.txt"
    orin.write_text("VDD_IN 5000mW/5000mW VDD_CPU_GPU_CV 1000mW/1000mW VDD_SOC 1500mW/1500mW\n")
    loop_tool(bin_dir, "tegrastats", [orin], "--interval", 0.001)


PROBES = [
    ("rbln", "poll", "ATOM Max, 2 cards (8 dies)"),
    ("hyperaccel", "poll", "4 LPUs"),
    ("ascend", "poll", "2 NPUs (a call each)"),
    ("mobilint:mode=poll", "poll", "MLA400, 4 chips"),
    ("gaudi", "loop", "8 devices, one hl-smi"),
    ("mobilint", "loop", "MLA400, 4 chips (a loop each)"),
    ("tegrastats", "loop", "3 rails"),
]


def child(spec: str, duration_s: float, state_dir: Path) -> dict[str, Any]:
    """In the child: open ``spec`` (none if empty), sample for ``duration_s``, report CPU."""
    from powerd.probes.base import Probe
    from powerd.probes.registry import open_probe

    probes: list[Probe] = [open_probe(spec)] if spec else []
    s = sample(probes, duration_s, state_dir)
    return {
        "spec": spec or "(no probe)",
        "channels": sum(len(p.channels()) for p in probes),
        "wall_s": s.wall_s,
        "powerd_cpu_s": s.cpu_s,
        "tools_cpu_s": s.tools_cpu_s,
        "powerd_core_pct": s.core_pct,
        "tools_core_pct": s.tools_core_pct,
        "reads": s.reads,
        "samples": s.samples,
        "problems": s.problems,
        "errors": s.errors,
    }


def run_cli_child(spec: str, duration_s: float, bin_dir: Path, work: Path) -> Any:
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    return run_child(__file__, spec, duration_s, work, {"PATH": path})


def main() -> int:
    started = cost_bench_start(__doc__, NAME, child, "sampling time per probe", default_s=15.0)
    if started is None:
        return 0  # a child: it printed its figures
    args, setup, duration = started.args, started.setup, started.duration_s
    result = benchlib.envelope(NAME, args.quick, setup)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="powerd-bench-cli-") as tmp:
        work = Path(tmp)
        bin_dir = work / "bin"
        install_tools(bin_dir, work)
        empty = run_cli_child("", duration, bin_dir, work)
        for spec, mode, host in PROBES:
            r = run_cli_child(spec, duration, bin_dir, work)
            r |= {"mode": mode, "host": host, "load": benchlib.load()}
            runs.append(r)
    rows = [
        [
            f"`{r['spec']}`",
            r["mode"],
            r["host"],
            r["channels"],
            r["reads"],
            r["samples"],
            r["problems"] + r["errors"],
            f"{r['powerd_core_pct']:.2f}",
            f"{r['powerd_core_pct'] - empty['powerd_core_pct']:.2f}",
            f"{r['tools_core_pct']:.2f}",
        ]
        for r in runs
    ]
    header = [
        "probe (default rate)", "mode", "fake host", "channels", "reads", "samples",
        "problems", "powerd % core", "above empty", "tools % core",
    ]  # fmt: skip
    print(benchlib.md_table(header, rows))
    print(
        f"\nempty sampler: {empty['powerd_core_pct']:.2f} % of one core; "
        f"{duration:g} s per probe; goal <= {GOAL_PCT:g} % for powerd with loop mode"
    )
    loop_ok = all(r["powerd_core_pct"] <= GOAL_PCT for r in runs if r["mode"] == "loop")
    print(f"loop-mode probes within the goal: {'yes' if loop_ok else 'NO'}")
    result |= {
        "goal_core_pct": GOAL_PCT,
        "duration_s": duration,
        "empty": empty,
        "runs": runs,
        "loop_goal_met": loop_ok,
        "load_after": benchlib.load(),
    }
    path = benchlib.write_result(NAME, args.quick, args.out, result)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
