"""One energy tool measuring phases on the fake NVML device, driven line by line by bench/peers.py.

Run with the tool's own interpreter (its venv), the fake ``libnvidia-ml.so.1`` on
``LD_LIBRARY_PATH`` and ``FAKE_NVML_CONFIG`` set::

    python bench/peers/harness.py zeus|zeus-approx|codecarbon|powerd|powerd-window|none

It sets the tool up (CPU time reported as ``setup_cpu_s``), prints ``{"ready": ...}``, then for each
line ``<seconds>`` on stdin measures one phase, a ``time.sleep`` of that length, with the tool's
documented phase API, and prints one JSON line:

- ``tb_ns``/``tc_ns``: ``time.time_ns()`` just after the tool's begin call returned and just before
  its end call: the phase the workload ran, whose true energy bench/peers.py computes;
- ``energy_j``: the tool's figure for the GPU;
- ``cpu_s``: this process's CPU time (user + sys, every thread) from just before begin to just
  after the figure is in hand (the harness itself only sleeps meanwhile). bench/peers.py also
  measures the whole process from outside (its CPU clock and ``/proc``), which this in-process
  figure misses (reading stdin, writing the reply, threads working between phases).

Tools, with their defaults except where said:

- ``zeus`` (the ``zeus`` distribution, formerly ``zeus-ml``; API as documented for 0.16):
  ``ZeusMonitor(gpu_indices=[0], cpu_indices=[])``, ``begin_window``/``end_window`` with
  ``sync_execution=False`` (no torch/JAX here; nothing to synchronise on a fake GPU);
- ``zeus-approx``: the same with ``approx_instant_energy=True``, Zeus's documented option for
  windows shorter than the counter's update (a window that reads 0 J becomes instant power ×
  duration);
- ``codecarbon``: ``OfflineEmissionsTracker(country_iso_code="FRA", save_to_file=False)``
  (offline: no network), ``start()`` once, then ``start_task``/``stop_task``; GPU energy from
  ``EmissionsData.gpu_energy`` (kWh);
- ``powerd``: in-process, the ``nvml`` probe sampled by powerd's ``Sampler`` into a ``Timeline``
  and a SQLite ``Store`` (as the daemon does); the phase's edges are ``tb_ns``/``tc_ns`` (what a
  workload's markers carry), and the figure is ``integrate`` over the primary channel chosen by
  ``powerd.results.choose_primary`` (the energy counter) once a reading past the end has
  arrived, i.e. the same figure a result would carry;
- ``powerd-window``: in-process, ``powerd.window.Monitor(["nvml:0"])`` with ``begin``/``end``:
  the energy counter read at the phase edges (no sampler thread), its staleness stated in the
  uncertainty; a figure the monitor cannot give (a failed read) is NaN here, never 0;
- ``none``: no tool, the harness alone (its stdin/stdout and sleep): the floor under every
  tool's CPU as measured from outside.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import tempfile
import time
from typing import Any


def cpu_s() -> float:
    return time.process_time()  # user + sys of every thread, ns resolution (os.times: 10 ms)


class Zeus:
    approx = False

    def __init__(self) -> None:
        import warnings

        from zeus.monitor import ZeusMonitor

        logging.getLogger("zeus").setLevel(logging.ERROR)
        # end_window warns on every window that reads 0 J (shorter than the counter's update)
        warnings.filterwarnings("ignore", message="The energy consumption of one or more GPUs")
        self.m = ZeusMonitor(gpu_indices=[0], cpu_indices=[], approx_instant_energy=self.approx)
        self.k = 0
        self.version = _version("zeus")

    def begin(self) -> None:
        self.k += 1
        self.m.begin_window(f"w{self.k}", sync_execution=False)

    def end(self, _tb: int, _tc: int) -> float:
        r = self.m.end_window(f"w{self.k}", sync_execution=False)
        return float(r.gpu_energy[0])


class ZeusApprox(Zeus):
    approx = True


class NoTool:
    """The harness alone: what every tool's outside CPU figure includes besides the tool."""

    version = "-"

    def begin(self) -> None:
        return None

    def end(self, _tb: int, _tc: int) -> float:
        return 0.0


class CodeCarbon:
    def __init__(self) -> None:
        from codecarbon import OfflineEmissionsTracker

        self.t = OfflineEmissionsTracker(
            country_iso_code="FRA", save_to_file=False, log_level="error"
        )
        self.t.start()
        self.k = 0
        self.version = _version("codecarbon")

    def begin(self) -> None:
        self.k += 1
        self.t.start_task(f"w{self.k}")

    def end(self, _tb: int, _tc: int) -> float:
        d = self.t.stop_task(f"w{self.k}")
        return float(d.gpu_energy) * 3.6e6  # kWh -> J

    def close(self) -> None:
        self.t.stop()


class Powerd:
    def __init__(self) -> None:
        from pathlib import Path

        from powerd.probes.registry import open_probe
        from powerd.runner import Sampler
        from powerd.store import Store
        from powerd.timebase import TimeAnchor
        from powerd.timeline import Timeline

        self.probe = open_probe("nvml:0")
        self.tmp = tempfile.mkdtemp(prefix="powerd-peers-")
        self.store = Store(Path(self.tmp) / "powerd.db")
        self.timeline = Timeline()
        self.sampler = Sampler([self.probe], self.timeline, self.store, TimeAnchor())
        self.sampler.start()
        self.version = _version("powerd")

    def begin(self) -> None:
        return None  # the begin marker is the harness's time stamp, taken next

    def end(self, tb: int, tc: int) -> float:
        from powerd.integrate import Window, integrate
        from powerd.results import choose_primary

        chans = self.timeline.channels
        period = max(c.nominal_period_s for c in chans.values())
        deadline = time.monotonic() + 5 * period + 1.0
        while time.monotonic() < deadline:  # a reading past the end (the daemon's grace)
            if all((x := self.timeline.latest(c)) is not None and x[0] > tc for c in chans):
                break
            time.sleep(period / 10)
        w = Window(tb, tc)
        figs = {
            c: integrate(*self.timeline.window(c, w.t_begin_ns, w.t_end_ns), w, ch)
            for c, ch in chans.items()
        }
        prim = choose_primary(figs, chans)
        self.uncertainty_j = math.sqrt(sum((figs[c].uncertainty_j or 0.0) ** 2 for c in prim))
        return float(sum(figs[c].energy_j or 0.0 for c in prim))

    def close(self) -> None:
        self.sampler.stop()
        self.store.close()
        self.probe.close()


class PowerdWindow:
    """powerd as a library: ``powerd.window.Monitor``, counter read at the phase edges."""

    def __init__(self) -> None:
        from powerd.window import Monitor

        self.m = Monitor(["nvml:0"])
        self.k = 0
        self.version = _version("powerd")

    def begin(self) -> None:
        self.k += 1
        self.m.begin(f"w{self.k}")

    def end(self, _tb: int, _tc: int) -> float:
        r = self.m.end(f"w{self.k}")
        if r.problems:
            print(f"powerd-window: {r.problems}", file=sys.stderr)
        self.uncertainty_j = math.nan if r.uncertainty_j is None else r.uncertainty_j
        return math.nan if r.energy_j is None else r.energy_j

    def close(self) -> None:
        self.m.close()


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


TOOLS = {
    "zeus": Zeus,
    "zeus-approx": ZeusApprox,
    "codecarbon": CodeCarbon,
    "powerd": Powerd,
    "powerd-window": PowerdWindow,
    "none": NoTool,
}


def main() -> int:
    name = sys.argv[1]
    out = sys.stdout  # the reply channel; whatever the tools print goes to stderr
    sys.stdout = sys.stderr
    c0, w0 = cpu_s(), time.monotonic()
    tool: Any = TOOLS[name]()
    ready = {
        "ready": name,
        "version": tool.version,
        "setup_cpu_s": cpu_s() - c0,
        "setup_wall_s": time.monotonic() - w0,
    }
    print(json.dumps(ready), file=out, flush=True)
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        if line == "quit":
            break
        seconds = float(line)
        c0 = cpu_s()
        tool.begin()
        tb = time.time_ns()
        time.sleep(seconds)
        tc = time.time_ns()
        energy = tool.end(tb, tc)
        cpu = cpu_s() - c0
        reply = {"tb_ns": tb, "tc_ns": tc, "energy_j": energy, "cpu_s": cpu}
        if hasattr(tool, "uncertainty_j"):  # powerd's 95 % uncertainty of the same figure
            reply["uncertainty_j"] = tool.uncertainty_j
        print(json.dumps(reply), file=out, flush=True)
    if hasattr(tool, "close"):
        tool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
