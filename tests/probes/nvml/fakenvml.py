"""Build and configure the fake ``libnvidia-ml.so.1`` (``fake_nvml.c``) for tests and benchmarks.

nvidia-ml-py loads the library by name (``CDLL("libnvidia-ml.so.1")``), and only once per process,
so the fake is used the way a real driver would be: a new process whose ``LD_LIBRARY_PATH`` points
at the directory holding the built fake. Nothing edits pynvml's internals.

A scenario is a list of ``FakeGpu``; each GPU's power is a ``probes/sim/waveform.py`` spec, so the
truth of any window comes from ``FakeGpu.waveform.energy_j`` exactly as for the ``sim`` probe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from powerd.probes.sim.waveform import Waveform, parse_spec

HERE = Path(__file__).resolve().parent
FAKE_C = HERE / "fake_nvml.c"
DRIVE = HERE / "drive_probe.py"
ROOT = HERE.parents[2]
SONAME = "libnvidia-ml.so.1"


def build_fake(out_dir: Path, gcc: str = "gcc") -> Path:
    """Compile the fake into ``out_dir/libnvidia-ml.so.1``; returns ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [gcc, "-O2", "-shared", "-fPIC", f"-Wl,-soname,{SONAME}"]
    subprocess.run(
        [*cmd, "-o", str(out_dir / SONAME), str(FAKE_C), "-lm"], check=True, capture_output=True
    )
    return out_dir


@dataclass(frozen=True)
class FakeGpu:
    """One fake GPU. ``wave`` is a sim spec (square or constant); times are UTC ns."""

    wave: str = "square,high=250,low=150,period=1,duty=0.5"
    arch: str = "hopper"
    instant: bool = True
    name: str = ""
    uuid: str = ""
    mig: bool = False
    energy_update_ms: int | None = None
    reset_at_ns: int | None = None
    lost_at_ns: int | None = None
    temp_c: float | None = None  # the core temperature settles here (None: not supported)
    temp_start_c: float | None = None
    temp_tau_ms: float | None = None
    temp_drift_mc_per_s: float | None = None  # m°C/s: a GPU that never settles

    @property
    def waveform(self) -> Waveform:
        wf = parse_spec(self.wave).waveform
        if wf.shape not in ("square", "constant"):
            raise ValueError("the fake NVML knows square and constant waves only")
        return wf


def write_config(
    path: Path,
    gpus: list[FakeGpu],
    *,
    energy_update_ms: int = 100,
    start_ns: int | None = None,
    init_error: int | None = None,
    driver: str = "550.54.15",
) -> Path:
    """Write a scenario file for ``$FAKE_NVML_CONFIG``."""
    lines = [f"gpus={len(gpus)}", f"driver={driver}", f"energy_update_ms={energy_update_ms}"]
    if start_ns is not None:
        lines.append(f"start_ns={start_ns}")
    if init_error is not None:
        lines.append(f"init_error={init_error}")
    for i, g in enumerate(gpus):
        wf = g.waveform
        keys: dict[str, object] = {
            "name": g.name or f"NVIDIA Fake {g.arch.title()} {i}",
            "uuid": g.uuid or f"GPU-fa4e{i:04d}-0000-4000-8000-{i:012d}",
            "arch": g.arch,
            "high_w": repr(wf.high_w),
            "low_w": repr(wf.low_w),
            "period_ns": wf.period_ns,
            "high_ns": wf.high_ns,
            "instant": int(g.instant),
            "mig": int(g.mig),
            "energy_update_ms": g.energy_update_ms,
            "reset_at_ns": g.reset_at_ns,
            "lost_at_ns": g.lost_at_ns,
            "temp_c": g.temp_c,
            "temp_start_c": g.temp_start_c,
            "temp_tau_ms": g.temp_tau_ms,
            "temp_drift_mc_per_s": g.temp_drift_mc_per_s,
        }
        lines += [f"gpu{i}.{k}={v}" for k, v in keys.items() if v is not None]
    path.write_text("\n".join(lines) + "\n")
    return path


def fake_env(lib_dir: Path | None, config: Path | None) -> dict[str, str]:
    """The environment of a process that loads the fake (``lib_dir`` None: no NVML at all)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "FAKE_NVML_CONFIG")}
    if lib_dir is not None:
        env["LD_LIBRARY_PATH"] = str(lib_dir)
    if config is not None:
        env["FAKE_NVML_CONFIG"] = str(config)
    return env


def run_driver(script: Path, fake_lib: Path, config: Path, *args: str) -> dict[str, Any]:
    """Run a driver script (``drive_probe.py``, ``drive_window.py``) with ``args`` in a process that
    loads the fake with ``config``; asserts it succeeded and returns the JSON it printed."""
    r = subprocess.run(
        [sys.executable, str(script), *args],
        env=fake_env(fake_lib, config),
        cwd=ROOT,
        text=True,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))
