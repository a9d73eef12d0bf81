"""In-process energy windows for a harness that calls powerd as a library (issue 16 item 4).

::

    from powerd.window import Monitor

    with Monitor(["nvml:0"]) as mon:
        mon.begin("step")
        train_step()
        r = mon.end("step")  # r.energy_j, r.uncertainty_j, r.flags, r.channels, r.problems

Two paths, chosen per probe when the monitor opens:

- **counter edges** (a probe that reads its energy counters on demand, ``EdgeProbe``: NVML):
  ``begin`` and ``end`` each read every counter once (``end`` also the instantaneous power
  beside it; ``begin`` does not, to keep the phase's start cheap); the energy is the counter's
  difference. No thread runs between the edges, so a phase costs
  two reads whatever its length (Zeus's ``begin_window``/``end_window`` do the same). What this
  path cannot hide: the counter updates only every ``update_period_s`` (NVML: ~100 ms), so the
  value read at an edge may be up to one period old, and the difference is the energy of a
  window shifted by up to a period at each edge. That is stated, never hidden: the term
  ``counter_staleness_j`` = period × the largest power seen (end-edge powers, and counter
  rates over duration + one period; this window's and the earlier ones') is in the 95 %
  uncertainty, and a window shorter than 10
  periods is flagged ``stale_edges``. A window in which the counter did not move at all is
  flagged ``counter_not_updated``; its figure is then the mean of the edge powers (the end's)
  × the duration (flag ``estimated_from_edge_power``; uncertainty: the truth lies between 0
  and the largest power seen × the duration, the figure's larger distance to those), or None
  when there is no power reading. A failed read is flagged ``read_failed`` with no figure, never 0.
- **timeline** (polled power channels, a probe without counters, or ``full=True``): powerd's
  ``Sampler`` fills a ``Timeline`` in a thread, as the daemon does (no store: nothing is
  persisted); ``end`` waits for a reading past the end (bounded) and integrates. With
  ``full=True`` it is ``integrate`` (uncertainty, every flag, as a result carries); without,
  ``energy_only`` (the same energy, no uncertainty: flag ``uncertainty_not_computed``).

``WindowResult.energy_j`` sums the channels ``results.choose_primary`` picks (alternatives that
measure the same thing are never summed); it is None when a device has no figure. Every probe
problem seen while the monitor runs is logged once and returned in ``problems`` of the next
result; ``health()`` counts them.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, cast

from powerd.block import Block
from powerd.channel import Channel
from powerd.errors import PowerdError
from powerd.integrate import ChannelEnergy, Window, energy_only, integrate
from powerd.probes.base import EdgeProbe, EdgeReading, Probe
from powerd.results import choose_primary
from powerd.runner import Sampler
from powerd.timebase import TimeAnchor
from powerd.timeline import Timeline

log = logging.getLogger("powerd.window")

STALE_EDGE_PERIODS = 10  # a window shorter than this many counter updates: flag stale_edges
WAIT_PERIODS = 5  # timeline path: wait at most this many sample periods (+ WAIT_EXTRA_S) ...
WAIT_EXTRA_S = 1.0  # ... for a reading past the window's end


@dataclass(frozen=True)
class WindowResult:
    """One window's figures: the total over the primary channels, and each channel's."""

    name: str
    t_begin_ns: int
    t_end_ns: int
    energy_j: float | None
    uncertainty_j: float | None
    flags: tuple[str, ...]
    channels: dict[str, ChannelEnergy]
    primary: tuple[str, ...]
    problems: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        return (self.t_end_ns - self.t_begin_ns) / 1e9


def counter_edges_figure(
    begin: EdgeReading, end: EdgeReading, ch: Channel, seen_max_w: float = 0.0
) -> ChannelEnergy:
    """A counter channel's energy between two edge reads, with the staleness stated.

    Terms (95 %, summed in quadrature): ``accuracy_j`` (the channel's spec on the energy),
    ``resolution_j`` (one counter step at each edge), ``counter_staleness_j`` (see the module
    docstring: each edge's value may be one update period old, so the difference may miss or
    include up to a period's energy at either edge; bounded by period × the largest power
    seen: the edge powers, the window's mean rate, and ``seen_max_w``, the largest the caller
    has seen on this channel before) and ``edge_read_j`` (the reads' own duration at that
    power). The staleness term is a bound only if the power in an edge's stale sliver stays
    below the largest power seen: a load that peaks only between edge reads can exceed it.
    """
    flags = ["counter_edges"]
    if begin.energy_j is None or end.energy_j is None:
        return ChannelEnergy(None, None, None, 0, 0.0, None, "counter", (*flags, "read_failed"))
    duration_s = (end.t_ns - begin.t_ns) / 1e9
    if duration_s <= 0:
        raise ValueError("an edge read must follow the begin read")
    delta_j = end.energy_j - begin.energy_j
    if delta_j < 0 and ch.wrap_j:
        delta_j += ch.wrap_j
    if delta_j < 0:  # the counter restarted (driver reload) between the edges: unknown
        return ChannelEnergy(None, None, None, 2, 0.0, None, "counter", (*flags, "counter_reset"))
    period_s = max(begin.update_period_s, end.update_period_s)
    powers = [p for p in (begin.power_w, end.power_w) if p is not None]
    if duration_s < STALE_EDGE_PERIODS * period_s:
        flags.append("stale_edges")
    if delta_j == 0:
        flags.append("counter_not_updated")
        if not powers:
            return ChannelEnergy(None, None, None, 2, 0.0, None, "counter", tuple(flags))
        flags.append("estimated_from_edge_power")
        est_j = sum(powers) / len(powers) * duration_s
        # Unobserved: the truth lies between 0 and the largest power seen × the duration.
        hi_j = max(seen_max_w, *powers) * duration_s
        unc_j = max(est_j, hi_j - est_j)
        terms = {"unobserved_j": unc_j}
        return ChannelEnergy(
            est_j, est_j / duration_s, max(powers), 2, 0.0, unc_j, "counter", tuple(flags), terms
        )
    # The difference spans at most duration + one period: its rate over that span is a power
    # the load surely reached (ΔC / duration is not, for a window shorter than a period).
    rate_w = delta_j / (duration_s + period_s)
    p_max_w = max([rate_w, seen_max_w, *powers])
    acc = ch.accuracy
    terms = {
        "accuracy_j": acc.reading_frac * delta_j + acc.offset_w * duration_s,
        "resolution_j": 2 * acc.resolution_j,
        "counter_staleness_j": period_s * p_max_w,
        "edge_read_j": p_max_w * (begin.read_ns + end.read_ns) / 2e9,
    }
    unc_j = math.sqrt(sum(v * v for v in terms.values()))
    return ChannelEnergy(
        delta_j, delta_j / duration_s, None, 2, 1.0, unc_j, "counter", tuple(flags), terms
    )


def _reached_w(begin: EdgeReading, end: EdgeReading, f: ChannelEnergy) -> float:
    """A power the load surely reached between two edge reads (0: none known): the counter
    difference over the longest span it can cover, the duration plus one update period."""
    if f.energy_j is None or "counter_not_updated" in f.flags:
        return 0.0
    span_s = (end.t_ns - begin.t_ns) / 1e9 + max(begin.update_period_s, end.update_period_s)
    return f.energy_j / span_s


class _NoStore:
    """The sampler's sink when nothing is persisted: it counts what it was given."""

    def __init__(self) -> None:
        self.blocks = 0

    def put_channel(self, ch: Channel) -> None:
        return None

    def append(self, block: Block) -> None:
        self.blocks += 1

    def flush(self) -> int:
        return 0

    def put_clock_step(self, mono_ns: int, utc_ns: int, step_ns: int) -> None:
        return None


@dataclass
class _Open:
    """A window between ``begin`` and ``end``: its begin time and edge reads."""

    t_begin_ns: int
    edges: dict[str, EdgeReading] = field(default_factory=dict)


class Monitor:
    """Energy of named windows, measured in this process; see the module docstring.

    ``probes`` are specs (``"nvml:0"``, ``"sim:constant,w=5"``) or opened probes (the monitor
    then closes them too). ``full=True`` keeps every probe on the timeline path with the full
    uncertainty model. Windows may overlap and nest; names must be unique while open. Call
    ``begin``/``end`` from one thread at a time (as Zeus's monitor: no lock on the fast path).
    """

    def __init__(self, probes: Sequence[str | Probe], full: bool = False) -> None:
        from powerd.probes.registry import open_probe

        self.full = full
        self._anchor = TimeAnchor()
        self._lock = threading.Lock()
        self._problems: list[str] = []
        self.problem_count = 0
        self._open: dict[str, _Open] = {}
        self._seen_max_w: dict[str, float] = {}  # counter: the largest power seen so far
        self._seen: dict[str, tuple[int, int]] = {}  # sampled probe: (problems, errors) seen
        self._edge_probes: list[Probe] = []  # each an EdgeProbe too
        self._all: list[Probe] = []
        self.channels: dict[str, Channel] = {}
        timed: list[Probe] = []
        names: list[str] = []
        try:
            for p in probes:
                probe = open_probe(p) if isinstance(p, str) else p
                name = p if isinstance(p, str) else type(p).__name__
                self._all.append(probe)
                chans = probe.channels()
                self.channels.update({c.id: c for c in chans})
                if not full and isinstance(probe, EdgeProbe) and _counters_cover(chans):
                    self._edge_probes.append(probe)
                else:
                    timed.append(probe)
                    names.append(name)
        except BaseException:
            self.close()
            raise
        self._edge_ids = [
            c.id for p in self._edge_probes for c in p.channels() if c.kind == "energy"
        ]
        self.timeline: Timeline | None = None
        self._sampler: Sampler | None = None
        self._timed_ids = [c.id for p in timed for c in p.channels()]
        if timed:
            self.timeline = Timeline()
            self._sampler = Sampler(
                timed,
                self.timeline,
                _NoStore(),
                self._anchor,
                names=names,
                on_status=self._status,
                log=self._problem,
            )
            self._sampler.start()
        self._drain()

    # -- problems ------------------------------------------------------------------------------

    def _problem(self, text: str) -> None:
        """One probe problem: logged once, counted, and returned with the next result."""
        log.warning("powerd.window: %s", text)
        with self._lock:
            self._problems.append(text)
            self.problem_count += 1

    def _status(self, component: str, reason: str | None) -> None:
        if reason is not None:
            self._problem(f"{component}: down: {reason}")

    def _drain(self) -> None:
        """Collect the edge probes' problems, and what the sampler counted since last time."""
        for p in self._edge_probes:
            for text in p.problems():
                self._problem(text)
        if self._sampler is None:
            return
        for spec, h in self._sampler.probe_health():
            problems, errors = self._seen.get(spec, (0, 0))
            new = h.problems - problems
            if new > 0:
                recent = list(h.recent_problems)[-min(new, len(h.recent_problems)) :]
                for text in recent:
                    self._problem(f"{spec}: {text}")
                if new > len(recent):
                    self._problem(f"{spec}: {new - len(recent)} more problems")
            if h.errors > errors:
                self._problem(f"{spec}: {h.errors - errors} read(s) failed: {h.last_error}")
            self._seen[spec] = (h.problems, h.errors)

    def _take_problems(self) -> tuple[str, ...]:
        with self._lock:
            out, self._problems = tuple(self._problems), []
        return out

    def health(self) -> dict[str, object]:
        """Counts for a harness to show: problems so far, which channel takes which path, and
        each sampled probe's health (up, read errors)."""
        out: dict[str, object] = {
            "problems": self.problem_count,
            "counter_edges": list(self._edge_ids),
            "timeline": list(self._timed_ids),
        }
        if self._sampler is not None:
            out["probes"] = {
                spec: {"up": h.up, "read_errors": h.errors, "problems": h.problems}
                for spec, h in self._sampler.probe_health()
            }
        return out

    # -- windows -------------------------------------------------------------------------------

    def _read_edges(self, with_power: bool) -> dict[str, EdgeReading]:
        now_ns = self._anchor.utc_ns()
        probes = [cast(EdgeProbe, p) for p in self._edge_probes]
        got = {r.channel: r for p in probes for r in p.read_edge(now_ns, with_power)}
        self._drain()
        return got

    def begin(self, name: str) -> None:
        """Open window ``name`` now (a name already open is an error)."""
        if name in self._open:
            raise PowerdError(f"window {name!r} is already open")
        t_ns = self._anchor.utc_ns()
        self._open[name] = _Open(t_ns, self._read_edges(False) if self._edge_probes else {})

    def end(self, name: str) -> WindowResult:
        """Close window ``name`` and return its figures."""
        w = self._open.pop(name, None)
        if w is None:
            raise PowerdError(f"window {name!r} was not begun")
        edges = self._read_edges(True) if self._edge_probes else {}
        t_end_ns = self._anchor.utc_ns()
        figs: dict[str, ChannelEnergy] = {}
        for cid in self._edge_ids:
            b, e = w.edges.get(cid), edges.get(cid)
            if b is None or e is None:
                figs[cid] = ChannelEnergy(
                    None, None, None, 0, 0.0, None, "counter", ("counter_edges", "read_failed")
                )
            else:
                seen_w = self._seen_max_w.get(cid, 0.0)
                figs[cid] = f = counter_edges_figure(b, e, self.channels[cid], seen_w)
                self._seen_max_w[cid] = max(seen_w, e.power_w or 0.0, _reached_w(b, e, f))
        flags: set[str] = set()
        if self.timeline is not None and self._timed_ids:
            window = Window(w.t_begin_ns, max(t_end_ns, w.t_begin_ns + 1))
            if not self._wait_past(t_end_ns):
                flags.add("no_reading_after_end")
            for cid in self._timed_ids:
                figs[cid] = self._timeline_figure(cid, window)
            self._drain()
        return self._result(name, w.t_begin_ns, t_end_ns, figs, flags)

    def _wait_past(self, t_end_ns: int) -> bool:
        """Wait (bounded) until every sampled channel has a reading past ``t_end_ns``."""
        assert self.timeline is not None
        period_s = max(self.channels[c].nominal_period_s for c in self._timed_ids)
        deadline = time.monotonic() + WAIT_PERIODS * period_s + WAIT_EXTRA_S
        while True:
            last = [self.timeline.latest(c) for c in self._timed_ids]
            if all(x is not None and x[0] > t_end_ns for x in last):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(period_s / 4, 0.05))

    def _timeline_figure(self, cid: str, w: Window) -> ChannelEnergy:
        assert self.timeline is not None
        t, v = self.timeline.window(cid, w.t_begin_ns, w.t_end_ns)
        ch = self.channels[cid]
        if self.full:
            return integrate(t, v, w, ch)
        method: Literal["trapezoid", "counter"] = "counter" if ch.kind == "energy" else "trapezoid"
        e = energy_only(t, v, w, ch)
        if e is None:
            return ChannelEnergy(None, None, None, int(t.size), 0.0, None, method, ("no_data",))
        flags = ("uncertainty_not_computed",)
        return ChannelEnergy(e, e / w.duration_s, None, int(t.size), 1.0, None, method, flags)

    def _result(
        self,
        name: str,
        t0: int,
        t1: int,
        figs: dict[str, ChannelEnergy],
        flags: set[str],
    ) -> WindowResult:
        prim = choose_primary(figs, self.channels)
        devices = {self.channels[c].device_id for c in figs}
        covered = {self.channels[c].device_id for c in prim}
        energy: float | None = sum(figs[c].energy_j or 0.0 for c in prim)
        unc: float | None = math.sqrt(sum((figs[c].uncertainty_j or 0.0) ** 2 for c in prim))
        if not prim or covered != devices:
            energy = unc = None
            flags.add("no_figure")
        elif any(figs[c].uncertainty_j is None for c in prim):
            unc = None
        uncovered = [c for c in figs if self.channels[c].device_id not in covered]
        for c in [*prim, *uncovered]:  # why a device has no figure is said too
            flags.update(f for f in figs[c].flags if f != "counter_edges")
        return WindowResult(
            name, t0, t1, energy, unc, tuple(sorted(flags)), figs, tuple(prim),
            self._take_problems(),
        )  # fmt: skip

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the sampler (if any) and close every probe."""
        if getattr(self, "_sampler", None) is not None:
            assert self._sampler is not None
            self._sampler.stop()
            self._sampler = None
        for p in self._all:
            try:
                p.close()
            except Exception as err:  # a close that fails is reported, not raised over others
                self._problem(f"closing a probe: {type(err).__name__}: {err}")
        self._all = []

    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _counters_cover(chans: list[Channel]) -> bool:
    """Whether every thing these channels measure has an energy counter among them."""
    counted = {c.measured_thing for c in chans if c.kind == "energy"}
    return bool(counted) and all(c.measured_thing in counted for c in chans)
