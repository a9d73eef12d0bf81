"""The ``tegrastats`` probe: Jetson power rails from NVIDIA's ``tegrastats`` utility, a fallback.

Prefer the ``jetson`` probe (direct sysfs reads, no subprocess). This one is for hosts where the
INA3221 files cannot be read but ``tegrastats`` runs. It starts ``tegrastats --interval <ms>``
ONCE and reads its output as a stream on a thread (``powerd.probes.clistream.LineStream``, never a
process per sample); each line is stamped when it arrives (``time.monotonic_ns``, mapped onto
the caller's UTC timeline at the next ``read``), parsed by the pure ``parse.parse_line``, and
the first (instantaneous) value of each rail is a power sample in W. Rails follow the Jetson
total/part rules (``probes/jetson/rails.py``) and share their ``measures`` with the ``jetson``
probe's channels.

A rail that reads negative (Jetson Thor's ``VDD_GPU -392mW`` at idle) is kept as read, never
dropped or clamped, and flagged through ``problems()`` each time it turns negative: a negative
power is a sensor or wiring problem (an offset larger than the reading, a reversed shunt).

If tegrastats exits, it is restarted with exponential backoff (0.5 s doubling to 30 s); the exit
and the length of the gap are reported through ``problems()``. The channels are the rails of the
first line, so ``open`` waits for it (``timeout``).

Spec: ``tegrastats[:interval=SECONDS,path=EXECUTABLE,timeout=SECONDS]`` (default 0.1 s, the
``tegrastats`` found on PATH or in /usr/bin, 10 s).
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np

from powerd.block import Block
from powerd.channel import Accuracy, Channel
from powerd.errors import ProbeUnavailable
from powerd.probes.base import Availability, parse_kv
from powerd.probes.cliexec import timeout_arg
from powerd.probes.clistream import Arrived, LineStream, utc_of
from powerd.probes.hwmon.chips import READING_FRAC, clean
from powerd.probes.hwmon.poll import interval_arg
from powerd.probes.jetson.rails import rail_roles, skip_rail
from powerd.probes.tegrastats.parse import parse_line

DEFAULT_INTERVAL_S = 0.1
DEFAULT_TIMEOUT_S = 10.0
FALLBACK_PATHS = ("/usr/bin/tegrastats", "/usr/sbin/tegrastats")


def find_tegrastats(path: str | None = None) -> str | None:
    if path:
        return path if os.access(path, os.X_OK) else None
    found = shutil.which("tegrastats")
    if found:
        return found
    return next((p for p in FALLBACK_PATHS if os.access(p, os.X_OK)), None)


def tegrastats_stream(exe: str, interval_ms: int) -> LineStream:
    """tegrastats started once in its loop mode, read on a thread (``powerd.probes.clistream``)."""
    return LineStream([exe, "--interval", str(interval_ms)], "tegrastats")


def _channels(rails: list[str], interval_s: float) -> dict[str, Channel]:
    roles = rail_roles(rails)
    out: dict[str, Channel] = {}
    for name in rails:
        role = roles[name]
        out[name] = Channel(
            id=f"tegrastats:{clean(name)}",
            kind="power",
            source_class=role.source_class,
            nominal_period_s=interval_s,
            accuracy=Accuracy(reading_frac=READING_FRAC["ina3221"]),
            measures=role.measures,
            description=f"INA3221 rail {name} via tegrastats ({role.note})",
            stamp_uncertainty_s=interval_s,
        )
    return out


class TegrastatsProbe:
    """Turns the stream's lines into one Block per rail per read."""

    def __init__(self, stream: LineStream, interval_s: float, timeout_s: float) -> None:
        self.stream = stream
        self.poll_interval_s = max(0.05, min(1.0, interval_s))
        self._problems: list[str] = []
        self._last_t: dict[str, int] = {}
        stream.start()
        pending: list[Arrived] = []
        rails: list[str] = []
        deadline = time.monotonic() + timeout_s
        while not rails and time.monotonic() < deadline:
            stream.first_line.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            for a in stream.drain():
                pending.append(a)
                if not rails:
                    rails = [r for r in parse_line(a.text).rails if not skip_rail(r)]
        if not rails:
            stream.stop()
            seen = "no output" if not pending else f"last line {pending[-1].text.strip()[:80]!r}"
            raise ProbeUnavailable(
                f"probe 'tegrastats' is not usable here: no power rails from "
                f"{' '.join(stream.argv)} within {timeout_s:g} s ({seen})"
            )
        self._by_rail = _channels(rails, interval_s)
        self._pending = pending
        self._unknown: set[str] = set()
        self._negative: set[str] = set()  # rails whose last reading was negative

    def channels(self) -> list[Channel]:
        return list(self._by_rail.values())

    def read(self, now_utc_ns: int) -> list[Block]:
        arrived = self._pending + self.stream.drain()
        self._pending = []
        mono_now = time.monotonic_ns()
        t: dict[str, list[int]] = {r: [] for r in self._by_rail}
        v: dict[str, list[float]] = {r: [] for r in self._by_rail}
        for a in arrived:
            line = parse_line(a.text)
            if not line.rails:
                text = a.text.strip()
                if text:
                    self._problems.append(f"tegrastats: line without power rails: {text[:120]!r}")
                continue
            t_ns = utc_of(a.mono_ns, now_utc_ns, mono_now)
            for name in self._by_rail:
                rail = line.rails.get(name)
                if rail is None:
                    self._problems.append(f"{self._by_rail[name].id}: missing from a line")
                    continue
                if (t[name] and t_ns <= t[name][-1]) or t_ns <= self._last_t.get(name, -1):
                    continue
                t[name].append(t_ns)
                v[name].append(rail.power_w)
                self._flag_negative(name, rail.power_w)
            for name in line.rails:
                if name not in self._by_rail and not skip_rail(name) and name not in self._unknown:
                    self._unknown.add(name)
                    self._problems.append(f"tegrastats: rail {name} appeared after start; ignored")
        blocks: list[Block] = []
        for name, ch in self._by_rail.items():
            if t[name]:
                self._last_t[name] = t[name][-1]
                blocks.append(
                    Block(ch.id, np.array(t[name], np.int64), np.array(v[name], np.float64))
                )
        return blocks

    def _flag_negative(self, name: str, power_w: float) -> None:
        """One problem each time a rail turns negative (kept as read, never clamped)."""
        if power_w >= 0:
            self._negative.discard(name)
        elif name not in self._negative:
            self._negative.add(name)
            self._problems.append(
                f"{self._by_rail[name].id}: rail {name} reads {power_w * 1e3:g} mW, a negative "
                "power: a sensor or wiring problem (offset or reversed shunt); kept as read"
            )

    def problems(self) -> list[str]:
        out = self._problems
        while self.stream.problems:
            out.append(self.stream.problems.popleft())
        self._problems = []
        return out

    def close(self) -> None:
        self.stream.stop()


class TegrastatsFamily:
    name = "tegrastats"
    summary = "Jetson power rails from the tegrastats utility (fallback for the jetson probe)"

    def available(self) -> Availability:
        exe = find_tegrastats()
        if exe is None:
            return Availability(False, "tegrastats not found on PATH or in /usr/bin (not a Jetson)")
        return Availability(True, f"{exe}")

    def open(self, args: str) -> TegrastatsProbe:
        kv = parse_kv(args, {"interval", "path", "timeout"})
        interval_s = interval_arg(kv.get("interval"), DEFAULT_INTERVAL_S, 0.01, 60.0)
        timeout_s = timeout_arg(kv, DEFAULT_TIMEOUT_S)
        exe = find_tegrastats(kv.get("path"))
        if exe is None:
            where = kv.get("path") or "PATH or /usr/bin"
            raise ProbeUnavailable(
                f"probe 'tegrastats' is not usable here: no tegrastats at {where}"
            )
        stream = tegrastats_stream(exe, max(1, round(interval_s * 1000)))
        return TegrastatsProbe(stream, interval_s, max(timeout_s, 3 * interval_s))


family = TegrastatsFamily()
