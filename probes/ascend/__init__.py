"""The ``ascend`` probe: Huawei Ascend NPU power from ``npu-smi info -t power``.

At ``open``, ``npu-smi info -l`` lists the devices (or ``ids`` selects them) and one
``npu-smi info -t power -i <id> [-c <chip>]`` per device says what it can report (``parse.py``):
a reading (``Power Dissipation(W)``, ``NPU Real-time Power(W)``) makes a channel; an Ascend 310's
``Rated Power Dissipation(W)`` is its specified rating, not a measurement, so that device gets no
channel and a problem saying it has no power sensor (if no device has one, the probe is
unavailable with that reason). ``-t power`` has no loop mode, so each device's command is run
once per interval by a ``clistream.ToolPoller`` on a thread. (``npu-smi info watch`` loops, but
its ``Pwr(W)`` column does not say whether a value is a rating or which part it covers.)

Channels: ``ascend:<id>`` (``ascend:<id>:<chip>`` with ``chip``), power in W, ``telemetry``,
``measures = ascend-board:<id>`` for the board's ``Power Dissipation``,
``ascend-chip:<id>:<chip>`` for a chip's ``NPU Real-time Power``.

Spec: ``ascend[:ids=ID+ID,chip=CHIP,interval=SECONDS,path=EXECUTABLE,timeout=SECONDS]``
(default all devices, no ``-c``, 1 s, ``npu-smi`` on PATH or in /usr/local/bin, /usr/local/sbin,
5 s).
"""

from __future__ import annotations

import time

from powerd.block import Block
from powerd.channel import Accuracy, Channel
from powerd.errors import ProbeUnavailable, SpecError
from powerd.probes.ascend.parse import READING_LABELS, PowerInfo, parse_list, parse_power
from powerd.probes.base import Availability, parse_kv
from powerd.probes.cliexec import ToolError, find_tool, run_tool
from powerd.probes.clistream import PolledProbe, ToolPoller, Values
from powerd.probes.hwmon.poll import interval_arg

TOOL = "npu-smi"
EXTRA_PATHS = ("/usr/local/bin/npu-smi", "/usr/local/sbin/npu-smi", "/usr/bin/npu-smi")
DEFAULT_INTERVAL_S = 1.0
DEFAULT_TIMEOUT_S = 5.0
READING_FRAC = 0.10  # not documented by Huawei for npu-smi: a working 95 % bound
RESOLUTION_W = 0.05  # one decimal


def power_argv(exe: str, npu: int, chip: int | None) -> list[str]:
    return [
        exe,
        "info",
        "-t",
        "power",
        "-i",
        str(npu),
        *(["-c", str(chip)] if chip is not None else []),
    ]


def channel_id(npu: int, chip: int | None) -> str:
    return f"ascend:{npu}" if chip is None else f"ascend:{npu}:{chip}"


def npu_channel(npu: int, chip: int | None, info: PowerInfo, interval_s: float) -> Channel:
    board = info.label == READING_LABELS[0]
    chip_part = "" if chip is None else f":{chip}"
    measures = f"ascend-board:{npu}" if board else f"ascend-chip:{npu}{chip_part}"
    return Channel(
        id=channel_id(npu, chip),
        kind="power",
        source_class="telemetry",
        nominal_period_s=interval_s,
        accuracy=Accuracy(reading_frac=READING_FRAC, offset_w=RESOLUTION_W),
        measures=measures,
        description=f"NPU {npu}{'' if chip is None else f' chip {chip}'}: npu-smi {info.label}",
        stamp_uncertainty_s=interval_s,
    )


class DeviceReadings:
    """One device's ``-t power`` output → its channel's value, or a problem."""

    def __init__(self, cid: str) -> None:
        self.cid = cid

    def __call__(self, stdout: bytes) -> tuple[Values, list[str]]:
        info = parse_power(stdout)
        if info.reading_w is None:
            return {}, [f"{self.cid}: {info.problem}"]
        return {self.cid: info.reading_w}, []


class AscendProbe:
    """One poller per device (``-t power`` takes one ``-i``), read together."""

    def __init__(self, parts: list[PolledProbe], notes: list[str], interval_s: float) -> None:
        self.parts = parts
        self.poll_interval_s = max(0.05, min(1.0, interval_s))
        self._notes = notes

    def channels(self) -> list[Channel]:
        return [c for p in self.parts for c in p.channels()]

    def start(self, clock: object = None) -> None:
        for p in self.parts:
            p.start()

    def read(self, now_utc_ns: int) -> list[Block]:
        return [b for p in self.parts for b in p.read(now_utc_ns)]

    def problems(self) -> list[str]:
        out, self._notes = self._notes, []
        for p in self.parts:
            out.extend(p.problems())
        return out

    def close(self) -> None:
        for p in self.parts:
            p.close()


def find_npusmi(path: str | None = None) -> str | None:
    return find_tool(path, (path,)) if path else find_tool(TOOL, EXTRA_PATHS)


def _ids(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split("+") if x]
    except ValueError:
        raise SpecError(f"ids={text!r}: expected NPU IDs joined by +, e.g. ids=0+1") from None


class AscendFamily:
    name = "ascend"
    summary = "Huawei Ascend NPU power from npu-smi info -t power (a 310's rating is not used)"

    def available(self) -> Availability:
        exe = find_npusmi()
        if exe is None:
            return Availability(False, "npu-smi not found on PATH or in /usr/local/bin")
        return Availability(True, exe)

    def open(self, args: str) -> AscendProbe:
        kv = parse_kv(args, {"ids", "chip", "interval", "path", "timeout"})
        interval_s = interval_arg(kv.get("interval"), DEFAULT_INTERVAL_S, 0.05, 3600.0)
        try:
            timeout_s = float(kv.get("timeout", DEFAULT_TIMEOUT_S))
            chip = int(kv["chip"]) if "chip" in kv else None
        except ValueError:
            raise SpecError("timeout= expects seconds and chip= a chip ID") from None
        exe = find_npusmi(kv.get("path"))
        if exe is None:
            raise ProbeUnavailable(
                f"probe 'ascend' is not usable here: no {kv.get('path') or TOOL}"
            )
        try:
            if "ids" in kv:
                ids = _ids(kv["ids"])
            else:
                listing = run_tool([exe, "info", "-l"], time.monotonic_ns, timeout_s)
                ids = [npu for npu, _ in parse_list(listing.stdout)]
        except (ToolError, ValueError) as err:
            raise ProbeUnavailable(f"probe 'ascend' is not usable here: {err}") from None
        parts: list[PolledProbe] = []
        notes: list[str] = []
        for npu in ids:
            cid = channel_id(npu, chip)
            argv = power_argv(exe, npu, chip)
            try:
                info = parse_power(run_tool(argv, time.monotonic_ns, timeout_s).stdout)
            except ToolError as err:
                notes.append(f"{cid}: {err}")
                continue
            if info.label is None:  # a rating, or no power line at all: no channel
                notes.append(f"{cid}: {info.problem}")
                continue
            poller = ToolPoller(argv, cid, interval_s, timeout_s=timeout_s)
            channel = npu_channel(npu, chip, info, interval_s)
            parts.append(PolledProbe(cid, poller, [channel], DeviceReadings(cid)))
        if not parts:
            raise ProbeUnavailable(f"probe 'ascend' is not usable here: {'; '.join(notes)}")
        return AscendProbe(parts, notes, interval_s)


family = AscendFamily()
