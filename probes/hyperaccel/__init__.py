"""The ``hyperaccel`` probe: HyperAccel LPU board power from the ``hyperdex-smi`` table.

``hyperdex-smi`` (HyperDex runtime, ``/opt/hyperdex``) prints an nvidia-smi-like table with
``Pwr:Usage/Cap`` per device in integer W; ``parse.py`` reads the usage and ignores the cap (a
limit, not a reading). The tool has no loop mode (HyperAccel's docs run it under
``watch -n 1``), so a ``clistream.ToolPoller`` runs it once per interval on a thread.

Channels: ``hyperaccel:<id>`` per device, power in W, ``telemetry``,
``measures = hyperaccel-card:<PCI bus id>``. The devices are those listed at ``open``.

Spec: ``hyperaccel[:interval=SECONDS,path=EXECUTABLE,timeout=SECONDS]`` (default 1 s;
``hyperdex-smi`` on PATH or in /opt/hyperdex/hrt/bin, /opt/hyperdex/bin; 5 s).
"""

from __future__ import annotations

import time

from powerd.channel import Accuracy, Channel
from powerd.errors import ProbeUnavailable
from powerd.probes.base import Availability, parse_kv
from powerd.probes.cliexec import ToolError, find_tool, run_tool, timeout_arg
from powerd.probes.clistream import PolledProbe, ToolPoller, Values
from powerd.probes.hwmon.poll import interval_arg
from powerd.probes.hyperaccel.parse import Lpu, parse_table

TOOL = "hyperdex-smi"
EXTRA_PATHS = ("/opt/hyperdex/hrt/bin/hyperdex-smi", "/opt/hyperdex/bin/hyperdex-smi")
DEFAULT_INTERVAL_S = 1.0
DEFAULT_TIMEOUT_S = 5.0
READING_FRAC = 0.10  # not documented by HyperAccel: a working 95 % bound
RESOLUTION_W = 0.5  # integer W


def lpu_channel(lpu: Lpu, interval_s: float) -> Channel:
    return Channel(
        id=f"hyperaccel:{lpu.index}",
        kind="power",
        source_class="telemetry",
        nominal_period_s=interval_s,
        accuracy=Accuracy(reading_frac=READING_FRAC, offset_w=RESOLUTION_W),
        measures=f"hyperaccel-card:{lpu.bus_id}",
        description=f"LPU {lpu.index} on {lpu.name} ({lpu.bus_id}): hyperdex-smi Pwr:Usage",
        stamp_uncertainty_s=interval_s,
    )


def readings(stdout: bytes) -> tuple[Values, list[str]]:
    values: Values = {}
    problems: list[str] = []
    for lpu in parse_table(stdout.decode("utf-8", "replace")):
        cid = f"hyperaccel:{lpu.index}"
        if lpu.power_w is None:
            problems.append(f"{cid}: {lpu.power_error}")
        else:
            values[cid] = lpu.power_w
    return values, problems


def find_hyperdex(path: str | None = None) -> str | None:
    return find_tool(path, (path,)) if path else find_tool(TOOL, EXTRA_PATHS)


class HyperaccelFamily:
    name = "hyperaccel"
    summary = "HyperAccel LPU board power from the hyperdex-smi table (Pwr:Usage)"

    def available(self) -> Availability:
        exe = find_hyperdex()
        if exe is None:
            return Availability(False, "hyperdex-smi not found on PATH or in /opt/hyperdex")
        return Availability(True, exe)

    def open(self, args: str) -> PolledProbe:
        kv = parse_kv(args, {"interval", "path", "timeout"})
        interval_s = interval_arg(kv.get("interval"), DEFAULT_INTERVAL_S, 0.05, 3600.0)
        timeout_s = timeout_arg(kv, DEFAULT_TIMEOUT_S)
        exe = find_hyperdex(kv.get("path"))
        if exe is None:
            raise ProbeUnavailable(
                f"probe 'hyperaccel' is not usable here: no {kv.get('path') or TOOL}"
            )
        try:
            first = run_tool([exe], time.monotonic_ns, timeout_s)
            lpus = parse_table(first.stdout.decode("utf-8", "replace"))
        except (ToolError, ValueError) as err:
            raise ProbeUnavailable(f"probe 'hyperaccel' is not usable here: {err}") from None
        poller = ToolPoller([exe], "hyperaccel", interval_s, timeout_s=timeout_s)
        channels = [lpu_channel(lpu, interval_s) for lpu in lpus]
        return PolledProbe("hyperaccel", poller, channels, readings)


family = HyperaccelFamily()
