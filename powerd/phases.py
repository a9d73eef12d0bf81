"""Markers become phases here, and only here: a small state machine over contract-1 markers.

Phases are keyed by (run, phase, trial): distinct phases may nest or overlap freely. Sequence
numbers count per (source, run), so every run may start again at 1. A repeat of (source, run, seq)
with the same content is ignored (QoS 1 redelivery), and so is an identical repeat of a marker that
carries no ``seq``; the same (source, run, seq) with other content, an ``end`` without a ``begin``,
a second ``begin`` of an open phase, or an end before its begin is rejected with a reason, and a
rejected marker changes nothing.

Plausibility, whatever way a marker came in: a stamp plus the sender's clock offset that leaves
int64 is rejected (SQLite and numpy hold int64 ns); a live marker whose stamp is further than
``max_skew_ns`` from the daemon's receive time is rejected with a reason that names the likely
unit mistake (seconds or milliseconds sent as nanoseconds); a phase longer than ``max_phase_ns``
is rejected at its end marker (a begin at 0 and an end at 2**63-1 must not become 46 GJ).
Importing stored historic markers (``powerd markers apply``) passes no skew window.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from powerd.agent.wire import Marker
from powerd.errors import MarkerError

TimingSource = Literal["marker", "receive-time"]
SEEN_LIMIT = 1 << 16
INT64_MAX = 2**63 - 1
NS_PER_S = 1_000_000_000
DEFAULT_MAX_MARKER_SKEW_S = 86_400.0
DEFAULT_MAX_PHASE_S = 7 * 86_400.0
DEFAULT_MAX_PHASE_NS = int(DEFAULT_MAX_PHASE_S * NS_PER_S)
# what a stamp in another unit looks like: (unit, factor to ns)
_UNIT_MISTAKES = (("seconds", 10**9), ("milliseconds", 10**6), ("microseconds", 10**3))


@dataclass(frozen=True)
class Timing:
    """How an edge was placed on the daemon's clock: the sender's stamp moved by a clock offset
    (``marker``), or the receive time when the sender gave none (``receive-time``)."""

    source: TimingSource
    offset_ns: int = 0
    uncertainty_ns: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "offset_ns": self.offset_ns,
            "uncertainty_ns": self.uncertainty_ns,
        }


@dataclass(frozen=True)
class StampedMarker:
    """A valid marker from ``source`` with its edge time ``t_ns`` on the daemon's UTC clock."""

    source: str
    marker: Marker
    t_ns: int
    timing: Timing
    received_ns: int


def stamp(
    source: str,
    marker: Marker,
    received_ns: int,
    offset_ns: int = 0,
    uncertainty_ns: int = 0,
    max_skew_ns: int | None = None,
) -> StampedMarker:
    """Place a marker on the daemon clock: its own ``t_ns`` plus the sender's clock offset, else
    the receive time. ``uncertainty_ns`` is the 95 % half-width of the resulting edge time.

    MarkerError when the stamp leaves int64 after the offset, or (with ``max_skew_ns``, for live
    markers) lies further than that from ``received_ns``."""
    if marker.t_ns is None:
        timing = Timing("receive-time", 0, uncertainty_ns)
        return StampedMarker(source, marker, received_ns, timing, received_ns)
    t_ns = marker.t_ns + offset_ns
    if not 0 <= t_ns <= INT64_MAX:
        raise MarkerError(
            f"t_ns {marker.t_ns} plus the sender's clock offset {offset_ns} ns is {t_ns}, "
            "outside 0..2**63-1 ns"
        )
    if max_skew_ns is not None and abs(t_ns - received_ns) > max_skew_ns:
        raise MarkerError(skew_reason(marker.t_ns, t_ns, received_ns, max_skew_ns))
    timing = Timing("marker", offset_ns, uncertainty_ns)
    return StampedMarker(source, marker, t_ns, timing, received_ns)


def skew_reason(t_ns: int, stamped_ns: int, received_ns: int, max_skew_ns: int) -> str:
    """Why a stamp is implausible: a likely unit mistake by name, else how far off it is."""
    for unit, factor in _UNIT_MISTAKES:
        if abs(t_ns * factor - received_ns) <= max_skew_ns:
            return (
                f"t_ns {t_ns} looks like {unit} since the epoch; send nanoseconds "
                f"(e.g. time.time_ns())"
            )
    off_s = (stamped_ns - received_ns) / NS_PER_S
    where = "ahead of" if off_s > 0 else "behind"
    return (
        f"t_ns {t_ns} is {abs(off_s):.6g} s {where} the daemon's clock at receipt; at most "
        f"{max_skew_ns / NS_PER_S:g} s is accepted ([daemon] max_marker_skew_s): check the "
        "sender's clock and that t_ns is UTC nanoseconds"
    )


@dataclass(frozen=True)
class Phase:
    """A closed phase: the window between a begin and its end, with what the end reported."""

    run: str
    phase: str
    trial: int
    t_begin_ns: int
    t_end_ns: int
    count: int | None
    unit: str
    meta: dict[str, Any]
    begin: Timing
    end: Timing
    device: tuple[str, ...] | None = None
    source: str = ""
    # the begin marker's count_from (serving-engine counters; powerd.phasecount)
    count_from: tuple[str, ...] | None = None

    @property
    def timing(self) -> Timing:
        """The phase's timing summary: receive-time if either edge was, the worse uncertainty."""
        source: TimingSource = (
            "marker" if self.begin.source == self.end.source == "marker" else "receive-time"
        )
        unc = max(self.begin.uncertainty_ns, self.end.uncertainty_ns)
        return Timing(source, self.end.offset_ns, unc)


PhaseKey = tuple[str, str, int]
SeenKey = tuple[str, str, int | str]


def seen_key(source: str, m: Marker) -> SeenKey:
    """What makes a marker a repeat: (source, run, seq), or its whole content without a seq."""
    if m.seq is not None:
        return (source, m.run, m.seq)
    return (source, m.run, json.dumps(m.to_json(), sort_keys=True))


@dataclass
class PhaseTracker:
    """Feeds stamped markers, holds open phases, returns phases as they close."""

    open: dict[PhaseKey, StampedMarker] = field(default_factory=dict)
    seen: OrderedDict[SeenKey, Marker] = field(default_factory=OrderedDict)
    # the longest phase accepted, ns (None: any; the results of stored markers are rebuilt so)
    max_phase_ns: int | None = DEFAULT_MAX_PHASE_NS
    duplicates: int = 0
    rejected: int = 0

    def feed(self, sm: StampedMarker) -> Phase | None:
        """Apply one marker. Returns the closed Phase on a valid end, None on a begin or repeat.

        Raises MarkerError (and counts it) when the marker does not fit; state is then unchanged.
        """
        try:
            return self._apply(sm)
        except MarkerError:
            self.rejected += 1
            raise

    def check(self, sm: StampedMarker) -> bool:
        """Validate without applying: True if new, False if a repeat; MarkerError if unfit."""
        m = sm.marker
        prior = self.seen.get(seen_key(sm.source, m))
        if prior is not None:
            if prior == m:
                return False
            raise MarkerError(
                f"seq {m.seq} from source {sm.source!r} was already used in run {m.run!r} for "
                "another marker; sequence numbers count per source and run and must not be "
                "reused within a run (or leave seq out)"
            )
        key = (m.run, m.phase, m.trial)
        what = f"phase {m.phase!r} (run {m.run!r}, trial {m.trial})"
        if m.event == "begin":
            if key in self.open:
                raise MarkerError(
                    f"{what} is already open; send its end first, or give the repeat another trial"
                )
            return True
        begin = self.open.get(key)
        if begin is None:
            raise MarkerError(f"end of {what} without a begin; send a begin marker first")
        if sm.t_ns <= begin.t_ns:
            raise MarkerError(
                f"end of {what} at {sm.t_ns} ns is not after its begin at {begin.t_ns} ns"
            )
        if self.max_phase_ns is not None and sm.t_ns - begin.t_ns > self.max_phase_ns:
            raise MarkerError(
                f"end of {what} makes it {(sm.t_ns - begin.t_ns) / NS_PER_S:.6g} s long; at most "
                f"{self.max_phase_ns / NS_PER_S:g} s is accepted ([daemon] max_phase_s): check "
                "both markers' t_ns"
            )
        return True

    def _apply(self, sm: StampedMarker) -> Phase | None:
        if not self.check(sm):
            self.duplicates += 1
            return None
        m = sm.marker
        self._remember(seen_key(sm.source, m), m)
        key = (m.run, m.phase, m.trial)
        if m.event == "begin":
            self.open[key] = sm
            return None
        begin = self.open.pop(key)
        meta = {**begin.marker.meta, **m.meta}
        return Phase(
            run=m.run,
            phase=m.phase,
            trial=m.trial,
            t_begin_ns=begin.t_ns,
            t_end_ns=sm.t_ns,
            count=m.count,
            unit=m.unit,
            meta=meta,
            begin=begin.timing,
            end=sm.timing,
            device=begin.marker.device,
            source=begin.source,
            count_from=begin.marker.count_from,
        )

    def _remember(self, key: SeenKey, m: Marker) -> None:
        self.seen[key] = m
        if len(self.seen) > SEEN_LIMIT:
            self.seen.popitem(last=False)


def replay(markers: list[StampedMarker]) -> tuple[list[Phase], list[tuple[StampedMarker, str]]]:
    """Rebuild phases from stored markers in their stored order; returns phases and rejects."""
    tracker = PhaseTracker(max_phase_ns=None)
    phases: list[Phase] = []
    rejects: list[tuple[StampedMarker, str]] = []
    for sm in markers:
        try:
            ph = tracker.feed(sm)
        except MarkerError as err:
            rejects.append((sm, str(err)))
            continue
        if ph is not None:
            phases.append(ph)
    return phases, rejects
