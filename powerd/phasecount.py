"""Counts per phase from serving-engine counters: read at a phase's begin and end markers.

A begin marker's ``count_from`` (contract 1, added key), else ``[daemon] count_from``, names
counters (``powerd.promcount`` specs). ``PhaseCounter`` reads each one on its own thread as soon
as the begin marker is applied, polls it every ``poll_s`` while the phase is open (so an engine
restart inside the phase is seen, and the increase before it kept), and reads it again as soon as
the end marker is applied. The daemon holds the run's result until those reads are done
(``busy``); the counts are stored (``Store.put_phase_counts``) and merged into the phase's
contract-2 entry by ``attach_counts`` whenever the run is computed.

Uncertainty of a count (95 %, a bound under the stated assumption). The count is the counter's
increase between the two reads. It differs from the units done between the two markers' times by
what the engine counted between each marker's time and its read: at most ``r * (|t_read -
t_marker| + h)`` per edge, with ``h`` the read's half-bracket (the engine took its value somewhere
in the bracket) and ``r`` the counter's rate near the edge, taken as its mean rate over the
phase, plus one unit per edge (units are discrete: a unit may complete just inside either gap).
So ``count_uncertainty = r * (|tb - tmb| + hb + |te - tme| + he) + 2 + lost``, where ``lost``
bounds what an engine restart hid (``CounterTrack.lost_bound``). The assumption is that the rate
near an edge is not above the phase's mean rate; reads follow the markers within milliseconds, so
the edge terms are small next to any count worth reporting. ``j_per_unit_uncertainty`` combines
the energy's and the count's relative uncertainties in quadrature (independent sources).

Nothing silent: an endpoint that cannot be read gives the count ``null`` with the flag
``count_unavailable`` (phase and count entry), is counted (``counter_unreachable``) and logged
once, and shows on /healthz as component ``counter:<url>``; a restart gives ``counter_reset``.
"""

from __future__ import annotations

import functools
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from powerd.health import Health
from powerd.phases import StampedMarker
from powerd.promcount import (
    DEFAULT_TIMEOUT_S,
    CounterError,
    CounterSpec,
    CounterTrack,
    Reading,
    read_endpoint,
)

DEFAULT_POLL_S = 1.0
# Units are discrete: between a marker and a read, one more unit than rate x time may complete
# (one per edge).
DISCRETE_UNITS = 2.0
PhaseKey = tuple[str, str, int]


def unit_of(spec: CounterSpec) -> str:
    """The unit a counter counts, from its name: token, request, else ``unit``."""
    name = spec.metric.lower()
    if "token" in name:
        return "token"
    if "request" in name or "inference_count" in name:
        return "request"
    return "unit"


def component(url: str) -> str:
    """The /healthz component of an endpoint."""
    return f"counter:{url}"


class CounterReader:
    """Reads counters grouped by endpoint, reporting each endpoint's state to ``health``."""

    def __init__(self, clock_ns: Callable[[], int], health: Health, timeout_s: float) -> None:
        self.clock_ns, self.health, self.timeout_s = clock_ns, health, timeout_s

    def read(self, specs: Iterable[CounterSpec]) -> dict[CounterSpec, Reading | CounterError]:
        by_url: dict[str, list[CounterSpec]] = {}
        for s in specs:
            by_url.setdefault(s.url, []).append(s)
        out: dict[CounterSpec, Reading | CounterError] = {}
        for url, group in by_url.items():
            got = read_endpoint(group, self.clock_ns, self.timeout_s)
            errors = [e for e in got.values() if isinstance(e, CounterError)]
            if errors and len(errors) == len(group):
                self.health.down(component(url), str(errors[0]))
            else:
                self.health.up(component(url))
            for e in errors:
                self.health.problem(component(url), "counter_unreachable", str(e))
            out.update(got)
        return out


@dataclass
class _Open:
    """One counter of an open phase: its spec, the begin marker's time, its track or error."""

    spec: CounterSpec | None
    source: str
    t_marker_begin_ns: int
    track: CounterTrack | None = None
    error: str | None = None
    flags: list[str] = field(default_factory=list)


def specs_of(texts: Iterable[str]) -> list[tuple[str, CounterSpec | None, str | None]]:
    """(text, spec or None, error) for each counter text."""
    out: list[tuple[str, CounterSpec | None, str | None]] = []
    for t in texts:
        try:
            out.append((t, CounterSpec.parse(t), None))
        except CounterError as err:
            out.append((t, None, str(err)))
    return out


class PhaseCounter:
    """The daemon's counter reads at phase edges (see the module docstring).

    ``on_marker`` is a Daemon marker listener (called under its lock: it only enqueues);
    ``busy(run)`` says whether reads of the run are still to be done; ``put`` stores a phase's
    finished counts (``Store.put_phase_counts``)."""

    def __init__(
        self,
        clock_ns: Callable[[], int],
        health: Health,
        put: Callable[[str, str, int, list[dict[str, Any]]], None],
        default_count_from: tuple[str, ...] = (),
        poll_s: float = DEFAULT_POLL_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.reader = CounterReader(clock_ns, health, timeout_s)
        self.put = put
        self.default_count_from = default_count_from
        self.poll_s = poll_s
        self._queue: queue.SimpleQueue[tuple[str, StampedMarker] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._busy: dict[str, int] = {}  # run -> edges queued and not yet read
        self._open: dict[PhaseKey, list[_Open]] = {}
        self._counted: set[PhaseKey] = set()  # phases whose begin was queued with counters
        self._thread: threading.Thread | None = None

    # on the daemon's threads --------------------------------------------------------------------

    def on_marker(self, sm: StampedMarker) -> None:
        m = sm.marker
        key = (m.run, m.phase, m.trial)
        with self._lock:
            if m.event == "begin":
                texts = m.count_from if m.count_from is not None else self.default_count_from
                if not texts:
                    return
                self._counted.add(key)
            elif key in self._counted:
                self._counted.discard(key)
            else:
                return  # its begin named no counters (or came before a restart): nothing to read
            self._busy[m.run] = self._busy.get(m.run, 0) + 1
        self._queue.put((m.event, sm))

    def busy(self, run: str) -> bool:
        with self._lock:
            return self._busy.get(run, 0) > 0

    # the worker ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="powerd-counts", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        next_poll = time.monotonic() + self.poll_s
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, next_poll - time.monotonic()))
            except queue.Empty:
                self._guarded(self._poll)
                next_poll = time.monotonic() + self.poll_s
                continue
            if item is None:
                return
            kind, sm = item
            try:
                self._guarded(functools.partial(self._begin if kind == "begin" else self._end, sm))
            finally:
                with self._lock:
                    self._busy[sm.marker.run] -= 1
                    if self._busy[sm.marker.run] <= 0:
                        del self._busy[sm.marker.run]

    def _guarded(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as err:  # a bug here must not stop the counts of other phases
            self.reader.health.problem("counts", "count_failed", f"{type(err).__name__}: {err}")

    def _begin(self, sm: StampedMarker) -> None:
        m = sm.marker
        texts = m.count_from if m.count_from is not None else self.default_count_from
        entries = [_Open(spec, text, sm.t_ns, error=err) for text, spec, err in specs_of(texts)]
        got = self.reader.read(e.spec for e in entries if e.spec is not None)
        for e in entries:
            if e.spec is None:
                continue
            r = got[e.spec]
            if isinstance(r, CounterError):
                e.error = str(r)
            else:
                e.track = CounterTrack.start(r)
        key = (m.run, m.phase, m.trial)
        with self._lock:
            self._open[key] = entries

    def _poll(self) -> None:
        with self._lock:
            entries = [e for es in self._open.values() for e in es]
        live = [e for e in entries if e.track is not None and e.spec is not None]
        if not live:
            return
        got = self.reader.read({e.spec for e in live if e.spec is not None})
        for e in live:
            assert e.spec is not None and e.track is not None
            r = got[e.spec]
            if isinstance(r, Reading):
                e.track.feed(r)
            # a failed poll is not fatal to the count: the end read decides (a restart between
            # is still seen by its start time); the failure is on /healthz and counted

    def _end(self, sm: StampedMarker) -> None:
        m = sm.marker
        key = (m.run, m.phase, m.trial)
        with self._lock:
            entries = self._open.pop(key, None)
        if entries is None:
            return
        live = [e for e in entries if e.track is not None and e.spec is not None]
        got = self.reader.read({e.spec for e in live if e.spec is not None})
        counts = [self._finish(e, got.get(e.spec) if e.spec else None, sm.t_ns) for e in entries]
        self.put(m.run, m.phase, m.trial, counts)

    @staticmethod
    def _finish(
        e: _Open, end: Reading | CounterError | None, t_marker_end_ns: int
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "source": e.source,
            "metric": e.spec.selector if e.spec is not None else None,
            "unit": unit_of(e.spec) if e.spec is not None else "unit",
            "count": None,
            "count_uncertainty": None,
            "flags": [],
        }
        if isinstance(end, CounterError):
            e.error = e.error or str(end)
        if e.track is None or not isinstance(end, Reading):
            entry["flags"].append("count_unavailable")
            entry["error"] = e.error or "counter not read"
            return entry
        tr = e.track
        tr.feed(end)
        rate = tr.rate_per_s or 0.0
        edge_s = (
            abs(tr.first.t_ns - e.t_marker_begin_ns)
            + tr.first.uncertainty_ns
            + abs(end.t_ns - t_marker_end_ns)
            + end.uncertainty_ns
        ) / 1e9
        count = tr.increase
        entry["count"] = int(count) if float(count).is_integer() else count
        entry["count_uncertainty"] = rate * edge_s + DISCRETE_UNITS + tr.lost_bound
        entry["series"] = end.series
        entry["resets"] = tr.resets
        entry["reads"] = {
            "begin_t_ns": tr.first.t_ns,
            "begin_uncertainty_ns": tr.first.uncertainty_ns,
            "end_t_ns": end.t_ns,
            "end_uncertainty_ns": end.uncertainty_ns,
        }
        if tr.resets:
            entry["flags"].append("counter_reset")
        return entry


def unread_counts(count_from: tuple[str, ...] | None) -> list[dict[str, Any]] | None:
    """The counts of a phase whose begin marker asked for counters that were never read (the
    daemon restarted while it was open, or this process reads no counters, e.g. ``powerd
    measure``): each unavailable and flagged, never left out without a word."""
    if not count_from:
        return None
    return [
        {
            "source": text,
            "metric": spec.selector if spec is not None else None,
            "unit": unit_of(spec) if spec is not None else "unit",
            "count": None,
            "count_uncertainty": None,
            "flags": ["count_unavailable"],
            "error": err
            or "not read: no counter reader was running at this phase's edges "
            "(the daemon restarted while the phase was open?)",
        }
        for text, spec, err in specs_of(count_from)
    ]


def attach_counts(entry: dict[str, Any], counts: list[dict[str, Any]] | None) -> None:
    """Put a phase's ``counts`` (with their per-unit figures from the phase's energy) into its
    contract-2 entry; raise their flags to the phase. Without a marker ``count``, the first
    available count becomes the phase's headline (``count``, ``unit``, ``j_per_unit``, ...) and
    ``count_source`` names it."""
    if counts is None:
        return
    energy, u_energy = entry.get("energy_j"), entry.get("uncertainty_j")
    out = []
    for stored in counts:
        c = {
            **stored,
            **per_unit(energy, u_energy, stored.get("count"), stored.get("count_uncertainty")),
        }
        for f in c.get("flags") or ():
            if f not in entry["flags"]:
                entry["flags"].append(f)
        out.append(c)
    entry["counts"] = out
    if entry.get("count") is None:
        head = next((c for c in out if c.get("count")), None)
        if head is not None:
            entry["count"] = head["count"]
            entry["unit"] = head["unit"]
            entry["count_source"] = head["source"]
            for key in ("j_per_unit", "j_per_unit_uncertainty", "units_per_j"):
                entry[key] = head[key]


def per_unit(
    energy_j: float | None, u_energy_j: float | None, count: float | None, u_count: float | None
) -> dict[str, float | None]:
    """J per unit and units per J with their 95 % uncertainties (relative terms in quadrature)."""
    none: dict[str, float | None] = {
        "j_per_unit": None,
        "j_per_unit_uncertainty": None,
        "units_per_j": None,
        "units_per_j_uncertainty": None,
    }
    if energy_j is None or not count or not energy_j:
        return none
    rel = math.hypot((u_energy_j or 0.0) / energy_j, (u_count or 0.0) / count)
    jpu = energy_j / count
    upj = count / energy_j
    return {
        "j_per_unit": jpu,
        "j_per_unit_uncertainty": jpu * rel,
        "units_per_j": upj,
        "units_per_j_uncertainty": upj * rel,
    }
