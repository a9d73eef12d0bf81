"""Continuous efficiency: J per unit of a serving engine's work, every interval, no markers.

Config (``[[efficiency]]``, one table per device)::

    [[efficiency]]
    device = "local"                    # a device id: an agent's id, a [daemon] probe's device=,
                                        # or "local" (the daemon's unassigned probes)
    counters = [
        {source = "prom:http://vllm:8000/metrics#vllm:generation_tokens_total", unit = "token"},
        {source = "prom:http://vllm:8000/metrics#vllm:request_success_total", unit = "request"},
    ]
    interval_s = 10.0                   # one set of figures per interval
    poll_s = 1.0                        # counters are read this often (idle fraction, resets)

Every ``poll_s`` the monitor reads the counters (``powerd.promcount``; one request per endpoint);
every ``interval_s`` it closes the interval and computes, per device:

- ``power_w``: mean power of the device's primary channels (the rule of ``powerd.results``)
  over the interval's window, with its 95 % uncertainty from ``powerd.integrate``;
- per counter: ``units_per_s`` (the counter's increase over the time between its first and last
  read of the interval), ``j_per_unit`` = energy / increase over that same window, ``units_per_j``,
  and their 95 % uncertainties: the energy's (integrate, with the reads' half-brackets as the
  window edges' uncertainty) and the count's (rate times both half-brackets, one unit per edge
  for discreteness, plus what a restart hid) combined in quadrature as relative terms;
- ``idle_fraction``: the fraction of the interval (first to last read of the device's first
  counter) spent between consecutive polls across which that counter did not advance.

An interval whose counter could not be read (or read only once) has no figures for that counter,
and the device's figures of that interval are absent when its first counter has none: never 0.
The endpoint is counted (``counter_unreachable``), logged once, and shown on /healthz as
``counter:<url>`` (``powerd.phasecount.CounterReader``). A restart in an interval flags its
figures ``counter_reset``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from powerd.block import F64, I64
from powerd.channel import Channel
from powerd.health import Health
from powerd.integrate import ChannelEnergy, Window, combined_u95_j, integrate
from powerd.phasecount import DISCRETE_UNITS, CounterReader, per_unit
from powerd.promcount import DEFAULT_TIMEOUT_S, CounterError, CounterSpec, CounterTrack, Reading
from powerd.results import choose_primary
from powerd.schema import Name, Seconds, Table

if TYPE_CHECKING:
    from powerd.daemon import Daemon

import msgspec


class CounterRef(Table, frozen=True):
    """One counter of an ``[[efficiency]]`` entry: its spec and the unit it counts."""

    source: Name
    unit: Name = "token"


class EfficiencyTable(Table, frozen=True):
    """``[[efficiency]]``: a device and the counters of the work it does."""

    device: Name
    counters: tuple[CounterRef, ...] = msgspec.field(default_factory=tuple)
    interval_s: Seconds = 10.0
    poll_s: Seconds = 1.0


def check_entries(entries: tuple[EfficiencyTable, ...]) -> None:
    """Each counter spec parses and each entry has one; CounterError says which is wrong."""
    for i, e in enumerate(entries):
        if not e.counters:
            raise CounterError(f"[[efficiency]] #{i + 1} (device {e.device!r}): counters is empty")
        if e.poll_s > e.interval_s:
            raise CounterError(
                f"[[efficiency]] #{i + 1}: poll_s {e.poll_s} is longer than interval_s"
            )
        for c in e.counters:
            try:
                CounterSpec.parse(c.source)
            except CounterError as err:
                raise CounterError(f"[[efficiency]] #{i + 1} counters: {err}") from None


def device_energy(
    channels: dict[str, Channel],
    window_of: Callable[[str, int, int], tuple[I64, F64]],
    device: str,
    primary: tuple[str, ...],
    w: Window,
) -> ChannelEnergy | None:
    """Energy of a device's primary channels over ``w`` (None: no channel has data)."""
    mine = {c: ch for c, ch in channels.items() if ch.device_id == device}
    figures: dict[str, ChannelEnergy] = {}
    for c, ch in mine.items():
        t, v = window_of(c, w.t_begin_ns, w.t_end_ns)
        figures[c] = integrate(t, v, w, ch)
    chosen = choose_primary(figures, mine, primary)
    if not chosen:
        return None
    energy = sum(figures[c].energy_j or 0.0 for c in chosen)
    unc = combined_u95_j([figures[c] for c in chosen])
    flags = tuple(dict.fromkeys(f for c in chosen for f in figures[c].flags))
    return ChannelEnergy(energy, energy / w.duration_s, None, 0, 1.0, unc, "trapezoid", flags)


@dataclass
class _Counter:
    ref: CounterRef
    spec: CounterSpec
    track: CounterTrack | None = None
    failed: bool = False  # a read of this interval failed


@dataclass
class _Device:
    entry: EfficiencyTable
    counters: list[_Counter]
    t_start_ns: int = 0
    next_poll_s: float = 0.0
    next_close_s: float = 0.0
    latest: dict[str, Any] | None = None


@dataclass
class EfficiencyMonitor:
    """Polls the entries' counters and publishes figures every interval (module docstring)."""

    daemon: Daemon
    entries: tuple[EfficiencyTable, ...]
    publish: Callable[[dict[str, Any]], None] | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    _devices: list[_Device] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        now = time.monotonic()
        for e in self.entries:
            counters = [_Counter(c, CounterSpec.parse(c.source)) for c in e.counters]
            self._devices.append(_Device(e, counters, self.daemon.clock(), now, now + e.interval_s))
        self.reader = CounterReader(self.daemon.clock, self._health, self.timeout_s)

    @property
    def _health(self) -> Health:
        return self.daemon.health

    def figures(self) -> list[dict[str, Any]]:
        """The latest closed interval's figures of each device (for /metrics)."""
        with self._lock:
            return [d.latest for d in self._devices if d.latest is not None]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="powerd-efficiency", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for d in self._devices:
                try:
                    if now >= d.next_poll_s:
                        d.next_poll_s = now + d.entry.poll_s
                        self.poll(d)
                    if now >= d.next_close_s:
                        d.next_close_s += d.entry.interval_s
                        self.close(d)
                except Exception as err:  # never let one device's bug stop the others
                    self._health.problem(
                        f"efficiency:{d.entry.device}", "efficiency_failed", f"{err!r}"
                    )
            wait = min(min(d.next_poll_s, d.next_close_s) for d in self._devices) - time.monotonic()
            self._stop.wait(max(0.01, wait))

    def poll(self, d: _Device) -> None:
        got = self.reader.read(c.spec for c in d.counters)
        for c in d.counters:
            r = got[c.spec]
            if isinstance(r, Reading):
                if c.track is None:
                    c.track = CounterTrack.start(r)
                else:
                    c.track.feed(r)
            else:
                c.failed = True

    def close(self, d: _Device) -> None:
        """End the interval: compute and publish its figures, start the next from the last read."""
        self.poll(d)
        now_ns = self.daemon.clock()
        out = self.interval_figures(d, now_ns)
        d.t_start_ns = now_ns
        for c in d.counters:
            c.track = None if c.failed or c.track is None else CounterTrack.start(c.track.last)
            c.failed = False
        with self._lock:
            d.latest = out
        if out is not None and self.publish is not None:
            self.publish(out)

    def interval_figures(self, d: _Device, now_ns: int) -> dict[str, Any] | None:
        """The figures of ``d``'s current interval (None when its first counter has none)."""
        channels = dict(self.daemon.timeline.channels)
        window_of = self.daemon.timeline.window
        primary = self.daemon.primary
        out: list[dict[str, Any]] = []
        first_track: CounterTrack | None = None
        for i, c in enumerate(d.counters):
            tr = c.track
            if c.failed or tr is None or tr.duration_ns <= 0:
                continue
            w = Window(tr.first.t_ns, tr.last.t_ns, tr.first.uncertainty_ns, tr.last.uncertainty_ns)
            e = device_energy(channels, window_of, d.entry.device, primary, w)
            if e is None:
                continue
            rate = tr.increase / w.duration_s
            edges_s = (tr.first.uncertainty_ns + tr.last.uncertainty_ns) / 1e9
            u_count = rate * edges_s + DISCRETE_UNITS + tr.lost_bound
            figs = per_unit(e.energy_j, e.uncertainty_j, tr.increase, u_count)
            out.append(
                {
                    "counter": c.spec.selector,
                    "source": c.spec.text,
                    "unit": c.ref.unit,
                    "units_per_s": rate,
                    "count": tr.increase,
                    "count_uncertainty": u_count,
                    "energy_j": e.energy_j,
                    "uncertainty_j": e.uncertainty_j,
                    **figs,
                    "flags": ["counter_reset"] if tr.resets else [],
                }
            )
            if i == 0:
                first_track = tr
        if first_track is None:
            return None
        w = Window(
            first_track.first.t_ns,
            first_track.last.t_ns,
            first_track.first.uncertainty_ns,
            first_track.last.uncertainty_ns,
        )
        e = device_energy(channels, window_of, d.entry.device, primary, w)
        if e is None or e.energy_j is None:
            return None
        return {
            "device": d.entry.device,
            "t_ns": now_ns,
            "t_begin_ns": w.t_begin_ns,
            "t_end_ns": w.t_end_ns,
            "power_w": e.mean_power_w,
            "power_uncertainty_w": (e.uncertainty_j or 0.0) / w.duration_s,
            "idle_fraction": min(1.0, first_track.idle_ns / first_track.duration_ns),
            "counters": out,
            "flags": list(e.flags),
        }
