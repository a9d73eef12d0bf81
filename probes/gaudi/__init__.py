"""The ``gaudi`` probe: Intel Gaudi accelerator power from ``hl-smi`` in its loop mode.

At ``open`` one ``hl-smi -Q index,uuid,name,power.draw,power.max -f csv,noheader`` lists the
devices. Then the same query with ``-l <seconds>`` is started ONCE and read as a stream on a
thread (``clistream.LineStream``): every line is one device's reading, stamped when it arrives
and parsed by the pure ``parse.parse_line``. A dead ``hl-smi`` is restarted with backoff; one
that stays silent for ``max(5 s, 5 intervals)`` is killed and restarted; both gaps are reported.

Channels: ``gaudi:<index>`` per device, ``power.draw`` in W, ``telemetry``,
``measures = gaudi-card:<uuid>``. ``power.max`` (the power limit) is never a reading.

Spec: ``gaudi[:interval=SECONDS,path=EXECUTABLE,timeout=SECONDS]`` (default 1 s: hl-smi's loop
takes seconds; ``hl-smi`` on PATH or in /usr/bin, /opt/habanalabs/bin; 10 s for the first call).
"""

from __future__ import annotations

import time

from powerd.channel import Accuracy, Channel
from powerd.errors import ProbeUnavailable
from powerd.probes.base import Availability, parse_kv
from powerd.probes.cliexec import ToolError, find_tool, run_tool, timeout_arg
from powerd.probes.clistream import Arrived, LineStream, Parsed, StreamedProbe
from powerd.probes.gaudi.parse import FIELDS, Row, parse_line
from powerd.probes.hwmon.poll import interval_arg

TOOL = "hl-smi"
EXTRA_PATHS = ("/usr/bin/hl-smi", "/usr/local/bin/hl-smi", "/opt/habanalabs/bin/hl-smi")
DEFAULT_INTERVAL_S = 1.0
DEFAULT_TIMEOUT_S = 10.0
READING_FRAC = 0.10  # not documented by Intel for hl-smi: a working 95 % bound
RESOLUTION_W = 0.5  # integer W


def query_args() -> list[str]:
    return ["-Q", ",".join(FIELDS), "-f", "csv,noheader"]


def device_channel(row: Row, interval_s: float) -> Channel:
    return Channel(
        id=f"gaudi:{row.index}",
        kind="power",
        source_class="telemetry",
        nominal_period_s=interval_s,
        accuracy=Accuracy(reading_frac=READING_FRAC, offset_w=RESOLUTION_W),
        measures=f"gaudi-card:{row.uuid}",
        description=f"{row.name} {row.uuid}: hl-smi power.draw (limit {row.limit_w or '?'} W)",
        stamp_uncertainty_s=interval_s,
    )


class LineFeeder:
    """Every line of the loop output is one device's reading."""

    def feed(self, lines: list[Arrived], now_mono_ns: int) -> list[Parsed]:
        out: list[Parsed] = []
        for a in lines:
            try:
                row = parse_line(a.text)
            except ValueError as err:
                out.append(Parsed(a.mono_ns, {}, [f"gaudi: unreadable line: {err}"]))
                continue
            if row is None:
                continue
            cid = f"gaudi:{row.index}"
            if row.power_w is None:
                out.append(Parsed(a.mono_ns, {}, [f"{cid}: {row.power_error}"]))
            else:
                out.append(Parsed(a.mono_ns, {cid: row.power_w}, []))
        return out


def find_hlsmi(path: str | None = None) -> str | None:
    return find_tool(path, (path,)) if path else find_tool(TOOL, EXTRA_PATHS)


class GaudiFamily:
    name = "gaudi"
    summary = "Intel Gaudi power.draw from hl-smi -Q ... -l (one stream for all devices)"

    def available(self) -> Availability:
        exe = find_hlsmi()
        if exe is None:
            return Availability(False, "hl-smi not found on PATH or in /opt/habanalabs/bin")
        return Availability(True, exe)

    def open(self, args: str) -> StreamedProbe:
        kv = parse_kv(args, {"interval", "path", "timeout"})
        interval_s = interval_arg(kv.get("interval"), DEFAULT_INTERVAL_S, 0.01, 3600.0)
        timeout_s = timeout_arg(kv, DEFAULT_TIMEOUT_S)
        exe = find_hlsmi(kv.get("path"))
        if exe is None:
            raise ProbeUnavailable(f"probe 'gaudi' is not usable here: no {kv.get('path') or TOOL}")
        try:
            first = run_tool([exe, *query_args()], time.monotonic_ns, timeout_s)
            rows = [parse_line(x) for x in first.stdout.decode("utf-8", "replace").splitlines()]
        except (ToolError, ValueError) as err:
            raise ProbeUnavailable(f"probe 'gaudi' is not usable here: {err}") from None
        devices = sorted((r for r in rows if r is not None), key=lambda r: r.index)
        if not devices:
            raise ProbeUnavailable(f"probe 'gaudi' is not usable here: {exe} lists no device")
        argv = [exe, *query_args(), "-l", f"{interval_s:g}"]
        stream = LineStream(argv, "gaudi", stall_s=max(5.0, 5 * interval_s))
        channels = [device_channel(r, interval_s) for r in devices]
        return StreamedProbe("gaudi", [(stream, LineFeeder())], channels, interval_s)


family = GaudiFamily()
