"""The ``mobilint`` probe: Mobilint ARIES (MLA100, MLA400) card and rail power, from mobilint-cli.

At ``open`` one ``mobilint-cli status -q`` (the query format; the legacy table of
``mobilint-cli status`` if ``-q`` is not understood) lists the chips and their rails; the pure
``parse.py`` reads both formats and decides which rail is the card total and which are its parts.
Then, in the default ``mode=loop``, the tool's loop mode (``-m <ms>``, which shows one device,
``-i``) is started ONCE per chip and read as a stream on a thread
(``clistream.LineStream``); each output is framed by its timestamp line and stamped when its
first line arrives. ``mode=poll`` instead runs ``status -q`` (all chips) every interval.

Channels: ``mobilint:<first chip>`` the card's ``Total`` (``telemetry``, ``measures =
mobilint-card:<first chip>``); ``mobilint:<chip>:<rail>`` for ``GOLDFINGER``, ``NPU``, ``DDR``,
``PMIC``: parts of the total, ``estimate`` (never summed with it), each its own ``measures``.

Spec: ``mobilint[:interval=SECONDS,mode=loop|poll,path=EXECUTABLE,timeout=SECONDS]`` (default
0.5 s, loop, ``mobilint-cli`` on PATH, /usr/bin or /usr/local/bin, 5 s).
"""

from __future__ import annotations

import time

from powerd.channel import Accuracy, Channel
from powerd.errors import ProbeUnavailable, SpecError
from powerd.probes.base import Availability, parse_kv
from powerd.probes.cliexec import ToolError, find_tool, run_tool, timeout_arg
from powerd.probes.clistream import (
    Arrived,
    Feeder,
    LineStream,
    Parsed,
    PolledProbe,
    StreamedProbe,
    ToolPoller,
    Values,
)
from powerd.probes.hwmon.poll import interval_arg
from powerd.probes.mobilint.parse import Chip, RailRole, is_record_start, parse_status, rail_roles

TOOL = "mobilint-cli"
EXTRA_PATHS = ("/usr/bin/mobilint-cli", "/usr/local/bin/mobilint-cli")
DEFAULT_INTERVAL_S = 0.5
DEFAULT_TIMEOUT_S = 5.0
READING_FRAC = 0.10  # not documented by Mobilint: a working 95 % bound
RESOLUTION_W = 0.005  # values are printed with 2 decimals
MAX_RECORD_LINES = 2000

Plan = dict[tuple[str, str], str]
"""(chip, rail) → channel id."""


def channel_id(role: RailRole) -> str:
    return f"mobilint:{role.chip}" if role.rail == "Total" else f"mobilint:{role.chip}:{role.rail}"


def rail_channel(role: RailRole, interval_s: float) -> Channel:
    measures = (
        f"mobilint-card:{role.card}"
        if role.rail == "Total"
        else f"mobilint-rail:{role.chip}:{role.rail}"
    )
    return Channel(
        id=channel_id(role),
        kind="power",
        source_class=role.source_class,
        nominal_period_s=interval_s,
        accuracy=Accuracy(reading_frac=READING_FRAC, offset_w=RESOLUTION_W),
        measures=measures,
        description=f"ARIES {role.chip} {role.rail} ({role.note}), mobilint-cli status",
        stamp_uncertainty_s=interval_s,
    )


def values_of(chips: list[Chip], plan: Plan) -> tuple[Values, list[str]]:
    """The planned rails of one output in W; a missing chip or rail, or N/A, is a problem."""
    by_name = {c.name: c for c in chips}
    values: Values = {}
    problems: list[str] = []
    for (chip_name, rail), cid in plan.items():
        chip = by_name.get(chip_name)
        if chip is None:
            problems.append(f"{cid}: {chip_name} missing from the output")
        elif rail not in chip.rails:
            problems.append(f"{cid}: rail {rail} missing from the output")
        else:
            w = chip.rails[rail]
            if w is None:
                problems.append(f"{cid}: {chip.errors.get(rail, 'no reading')}")
            else:
                values[cid] = w
    return values, problems


def _anchor(text: str) -> bool:
    s = text.strip()
    return s.startswith("/dev/aries") or s.startswith("| Mobilint-NPU-Monitor")


class RecordFeeder:
    """Frames one chip's loop output into records (one per interval) and parses each.

    A record starts at its ``Timestamp`` (query) or date (table) line, or, if the tool prints
    none, at a second device/title line. A record is complete when the next one starts, so it
    is passed on one interval late, stamped with the arrival of its first line.
    """

    def __init__(self, chip: str, plan: Plan) -> None:
        self.chip = chip
        self.plan = plan
        self.pending: list[Arrived] = []
        self._anchored = False

    def _close(self) -> Parsed | None:
        lines, self.pending, self._anchored = self.pending, [], False
        text = "".join(a.text for a in lines)
        if not text.strip():
            return None
        try:
            values, problems = values_of(parse_status(text), self.plan)
        except ValueError as err:
            return Parsed(lines[0].mono_ns, {}, [f"mobilint:{self.chip}: {err}"])
        return Parsed(lines[0].mono_ns, values, problems)

    def feed(self, lines: list[Arrived], now_mono_ns: int) -> list[Parsed]:
        out: list[Parsed] = []
        for a in lines:
            boundary = is_record_start(a.text) or (_anchor(a.text) and self._anchored)
            if boundary or len(self.pending) >= MAX_RECORD_LINES:
                p = self._close()
                if p is not None:
                    out.append(p)
            self.pending.append(a)
            self._anchored = self._anchored or _anchor(a.text)
        return out


def find_mobilint(path: str | None = None) -> str | None:
    if path:
        return find_tool(path, (path,))
    return find_tool(TOOL, EXTRA_PATHS)


def discover(exe: str, timeout_s: float) -> tuple[list[str], list[Chip]]:
    """The status arguments that work (query, else the legacy table) and the chips they list."""
    errors: list[str] = []
    for args in (["status", "-q"], ["status"]):
        try:
            out = run_tool([exe, *args], time.monotonic_ns, timeout_s)
            return args, parse_status(out.stdout.decode("utf-8", "replace"))
        except (ToolError, ValueError) as err:
            errors.append(str(err))
    raise ProbeUnavailable(f"probe 'mobilint' is not usable here: {'; '.join(errors)}")


class MobilintFamily:
    name = "mobilint"
    summary = "Mobilint ARIES MLA100/MLA400 card power and rails from mobilint-cli status"

    def available(self) -> Availability:
        exe = find_mobilint()
        if exe is None:
            return Availability(False, "mobilint-cli not found on PATH or in /usr/bin")
        return Availability(True, exe)

    def open(self, args: str) -> PolledProbe | StreamedProbe:
        kv = parse_kv(args, {"interval", "mode", "path", "timeout"})
        interval_s = interval_arg(kv.get("interval"), DEFAULT_INTERVAL_S, 0.01, 3600.0)
        mode = kv.get("mode", "loop")
        if mode not in ("loop", "poll"):
            raise SpecError(f"mode={mode!r}: expected loop or poll")
        timeout_s = timeout_arg(kv, DEFAULT_TIMEOUT_S)
        exe = find_mobilint(kv.get("path"))
        if exe is None:
            raise ProbeUnavailable(
                f"probe 'mobilint' is not usable here: no {kv.get('path') or TOOL}"
            )
        status_args, chips = discover(exe, timeout_s)
        roles = rail_roles(chips)
        if not roles:
            raise ProbeUnavailable("probe 'mobilint' is not usable here: no power rails listed")
        channels = [rail_channel(r, interval_s) for r in roles]
        plan: Plan = {(r.chip, r.rail): channel_id(r) for r in roles}
        if mode == "poll":
            poller = ToolPoller([exe, *status_args], "mobilint", interval_s, timeout_s=timeout_s)
            return PolledProbe(
                "mobilint",
                poller,
                channels,
                lambda out: values_of(parse_status(out.decode("utf-8", "replace")), plan),
            )
        ms = max(1, round(interval_s * 1000))
        streams: list[tuple[LineStream, Feeder]] = []
        for chip in chips:
            chip_plan = {k: v for k, v in plan.items() if k[0] == chip.name}
            if not chip_plan:
                continue
            argv = [exe, *status_args, "-i", str(chip.index), "-m", str(ms)]
            stream = LineStream(argv, f"mobilint:{chip.name}", stall_s=max(5.0, 10 * interval_s))
            streams.append((stream, RecordFeeder(chip.name, chip_plan)))
        return StreamedProbe("mobilint", streams, channels, interval_s)


family = MobilintFamily()
