"""The sampler: polls each probe at its own interval and feeds timeline and store.

One thread serves all probes (they are cheap, non-blocking reads here); each probe keeps its own
deadline. A probe that raises is counted and retried at its next deadline, never stopping
the others.

Probes come back. A probe that could not be opened at start is not dropped: its spec is retried
with capped exponential backoff (``RETRY_FIRST_S`` doubling to ``RETRY_MAX_S``) for ever, and
shown down (``on_status(component, reason)``) until it opens; then its channels join the
timeline and store. An open probe is down while ``READ_ERRORS_DOWN`` reads in a row failed, or
while its link says so (a serial meter unplugged: ``link_outages()``). Every outage becomes an
exact gap per channel through ``put_gap(channel, t_last_good_ns, t_first_after_ns, "probe_down")``
(open end None while still down); a probe that never opened has its gap from the sampler's start
to its first sample.
The store is flushed about once a second, so a crash loses at most that much buffered data.
The flush and the wall-clock check run on a poll's wake when due within one poll interval (never
a wake of their own while probes are polled: each wake costs the measured machine CPU).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from powerd.block import Block
from powerd.channel import Accuracy, Channel
from powerd.errors import SpecError
from powerd.probes.base import Probe
from powerd.timebase import TimeAnchor
from powerd.timeline import Timeline

FLUSH_INTERVAL_S = 1.0
ANCHOR_CHECK_S = 1.0
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
READ_ERRORS_DOWN = 3
GAP_REASON = "probe_down"

# (component, reason): the component is down for ``reason``; reason None: it is up again.
StatusHook = Callable[[str, str | None], None]
GapHook = Callable[[str, int, int | None, str], None]
# (channel, t_ns, accuracy): the channel's accuracy from t_ns on (Store.put_accuracy)
AccuracyHook = Callable[[str, int, Accuracy], None]
Opener = Callable[[], Probe]


@dataclass
class ProbeHealth:
    """What a probe did so far: reads, samples, its last error, and whether it is up now."""

    reads: int = 0
    samples: int = 0
    errors: int = 0
    last_error: str = ""
    problems: int = 0
    recent_problems: deque[str] = field(default_factory=lambda: deque(maxlen=5))
    up: bool = True
    down_reason: str = ""
    opens_failed: int = 0


class BlockSink(Protocol):
    """Where sampled blocks go: the daemon's Store, or the agent's publisher."""

    def put_channel(self, ch: Channel) -> None: ...

    def append(self, block: Block) -> None: ...

    def flush(self) -> int: ...

    def put_clock_step(self, mono_ns: int, utc_ns: int, step_ns: int) -> None: ...


def open_probes(
    specs: tuple[str, ...] | list[str], log: Callable[[str], None]
) -> tuple[list[tuple[str, Probe]], list[tuple[str, Opener, str]]]:
    """Open each spec now: the probes that opened (with their spec, the ``probe`` label of
    their health series), and those that did not (spec, opener, why) for the sampler to retry
    for ever. A spec that cannot be understood (``SpecError``) stops the start: retrying
    cannot fix it."""
    from powerd.probes.registry import open_probe

    opened: list[tuple[str, Probe]] = []
    pending: list[tuple[str, Opener, str]] = []
    for spec in specs:
        try:
            opened.append((spec, open_probe(spec)))
        except SpecError:
            raise
        except Exception as err:
            why = f"cannot open: {type(err).__name__}: {err}"
            log(f"warning: probe {spec}: {why}; retrying with backoff")
            pending.append((spec, functools.partial(open_probe, spec), why))
    return opened, pending


def component(spec: str) -> str:
    """The health component name of a probe."""
    return f"probe:{spec}"


@dataclass
class _Outage:
    """One time a probe was unreachable, on the sampler's UTC clock (``end_ns`` None: still)."""

    start_ns: int
    end_ns: int | None = None


@dataclass
class _Slot:
    """One configured probe: opened or still being retried, its health and its gaps."""

    spec: str
    health: ProbeHealth
    probe: Probe | None = None
    opener: Opener | None = None
    retry_s: float = RETRY_FIRST_S
    next_open_mono: float = 0.0
    channel_ids: list[str] = field(default_factory=list)
    # outages known to the sampler; the serial link's are mirrored from the probe
    outages: list[_Outage] = field(default_factory=list)
    link_map: list[_Outage] = field(default_factory=list)
    error_streak: int = 0
    error_outage: _Outage | None = None
    streak_start_ns: int = 0
    last_good_ns: dict[str, int] = field(default_factory=dict)
    # channel -> [t_last_good_ns, resume_after_ns or None while the outage lasts]
    open_gaps: dict[str, list[int | None]] = field(default_factory=dict)
    accuracy_unkept: bool = False
    instrument: object = None  # the identity last put on the channels (probe.instrument())


def _next_tick(tick: float, interval_s: float, now: float) -> float:
    """The next deadline of a periodic task run at ``now`` (maybe a little early): one interval
    after the last deadline, keeping the cadence; one interval from now if it fell behind."""
    nxt = tick + interval_s
    return nxt if nxt > now else now + interval_s


@dataclass
class Sampler:
    probes: list[Probe]
    timeline: Timeline | None
    store: BlockSink
    anchor: TimeAnchor
    flush_interval_s: float = FLUSH_INTERVAL_S
    health: list[ProbeHealth] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    # probes that did not open yet: (spec, opener, why it failed at start)
    pending: list[tuple[str, Opener, str]] = field(default_factory=list)
    on_status: StatusHook | None = None
    put_gap: GapHook | None = None
    put_accuracy: AccuracyHook | None = None
    retry_first_s: float = RETRY_FIRST_S
    retry_max_s: float = RETRY_MAX_S
    read_errors_down: int = READ_ERRORS_DOWN
    log: Callable[[str], None] | None = None
    _slots: list[_Slot] = field(default_factory=list)
    _start_ns: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    # wakes the sampling thread early: on stop, or when asked to read every probe now
    _wake: threading.Event = field(default_factory=threading.Event)
    _read_now: bool = False
    reads_asked: int = 0  # reads of every probe asked for out of cadence (poll_now)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._start_ns = self.anchor.utc_ns()
        names = self.names or [f"probe{i}" for i in range(len(self.probes))]
        self.health = [ProbeHealth() for _ in self.probes]
        self._slots = [
            _Slot(spec, h, probe)
            for spec, h, probe in zip(names, self.health, self.probes, strict=True)
        ]
        for slot in self._slots:
            self._attach(slot)
        now = time.monotonic()
        for spec, opener, why in self.pending:
            slot = _Slot(spec, ProbeHealth(up=False, down_reason=why, opens_failed=1))
            slot.opener = opener
            slot.retry_s = self.retry_first_s
            slot.next_open_mono = now + slot.retry_s
            slot.outages.append(_Outage(self._start_ns))
            self._slots.append(slot)
            self._status(slot, why)
        self._thread = threading.Thread(target=self._run, name="powerd-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self.store.flush()

    def poll_now(self) -> None:
        """Ask the sampling thread to read every opened probe at once, out of its cadence
        (callable from any thread): the agent does so on an end marker, so each channel has a
        real reading at or after the phase end right away rather than up to a poll interval
        later (issue 16). The sampling thread stays the only reader of a probe."""
        self._read_now = True
        self._wake.set()

    def probe_health(self) -> list[tuple[str, ProbeHealth]]:
        """Every configured probe (opened or not) with its health, for /metrics."""
        with self._lock:
            return [(s.spec, s.health) for s in self._slots]

    # opening ----------------------------------------------------------------------------------

    def _attach(self, slot: _Slot) -> None:
        """Give an opened probe's channels to timeline and store, and start it."""
        assert slot.probe is not None
        for ch in slot.probe.channels():
            if self.timeline is not None:
                self.timeline.add_channel(ch, replace=True)  # a restart may change its spec
            self.store.put_channel(ch)
            slot.channel_ids.append(ch.id)
        start = getattr(slot.probe, "start", None)
        if callable(start):
            start(self.anchor.utc_ns)

    def _try_open(self, slot: _Slot, now_mono: float) -> None:
        """One attempt to open (and start) a probe that is not open yet; any failure, a spec
        the device turns out not to match included, is a reason to stay down and retry later."""
        assert slot.opener is not None
        probe: Probe | None = None
        try:
            probe = slot.opener()
            slot.probe, slot.channel_ids = probe, []
            self._attach(slot)
        except Exception as err:
            slot.probe = None
            if probe is not None:
                with contextlib.suppress(Exception):
                    probe.close()
            why = f"cannot open: {type(err).__name__}: {err}"
            slot.health.opens_failed += 1
            slot.retry_s = min(slot.retry_s * 2, self.retry_max_s)
            slot.next_open_mono = now_mono + slot.retry_s
            if why != slot.health.down_reason:
                self._status(slot, why)
            return
        slot.opener = None
        slot.outages[-1].end_ns = self.anchor.utc_ns()
        # channels are known now: each has a gap from the start until its first sample
        for cid in slot.channel_ids:
            slot.open_gaps[cid] = [self._start_ns, slot.outages[-1].end_ns]
            self._gap(cid, self._start_ns, None)
        self._status(slot, None)
        if self.log is not None:
            self.log(f"probe {slot.spec} opened after {slot.health.opens_failed} failed attempts")

    # polling ----------------------------------------------------------------------------------

    def poll_once(self, i: int) -> None:
        """Poll the i-th opened probe (the order of ``probes``, then those opened later)."""
        slots = [s for s in self._slots if s.probe is not None]
        self._poll(slots[i])

    def _poll(self, slot: _Slot) -> None:
        probe, health = slot.probe, slot.health
        assert probe is not None
        new_outages = self._link_outages(slot)
        before_ns = self.anchor.utc_ns()
        try:
            blocks = probe.read(self.anchor.utc_ns())
        except Exception as err:
            health.errors += 1
            health.last_error = f"{type(err).__name__}: {err}"
            if slot.error_streak == 0:
                slot.streak_start_ns = before_ns
            slot.error_streak += 1
            if slot.error_streak == self.read_errors_down:
                slot.error_outage = _Outage(slot.streak_start_ns)
                slot.outages.append(slot.error_outage)
                self._outage_began(slot, slot.error_outage, [])
                self._status(
                    slot, f"{slot.error_streak} reads in a row failed: {health.last_error}"
                )
            return
        if slot.error_outage is not None:
            slot.error_outage.end_ns = before_ns
            slot.error_outage = None
            self._outage_ended(slot, before_ns)
        slot.error_streak = 0
        self._sync_instrument(slot)
        health.reads += 1
        for problem in probe.problems():
            health.problems += 1
            health.recent_problems.append(problem)
        self._accuracy_changes(slot)
        for outage in new_outages:
            self._outage_began(slot, outage, blocks)
        for block in blocks:
            health.samples += len(block)
            self._close_gaps(slot, block)
            if self.timeline is not None:
                self.timeline.append(block)
            self.store.append(block)
        down = any(o.end_ns is None for o in slot.outages)
        if health.up and down:
            self._status(slot, health.down_reason or "link down")
        elif not health.up and not down:
            self._status(slot, None)

    def _accuracy_changes(self, slot: _Slot) -> None:
        """Store a probe's accuracy changes (a meter's range moved) in the accuracy history, so
        results use the accuracy in effect for the samples they integrate. Without a store
        (an agent) they cannot be kept: counted as problems, logged once."""
        changes_of = getattr(slot.probe, "accuracy_changes", None)
        if not callable(changes_of):
            return
        for change in changes_of():
            if self.put_accuracy is not None:
                self.put_accuracy(change.channel, change.t_ns, change.accuracy)
                continue
            slot.health.problems += 1
            text = (
                f"{change.channel}: accuracy changed (range {change.accuracy.range_w:g} W) but "
                "this sampler keeps no accuracy history: results use the accuracy at open"
            )
            slot.health.recent_problems.append(text)
            if not slot.accuracy_unkept and self.log is not None:
                self.log(text)
            slot.accuracy_unkept = True

    def _sync_instrument(self, slot: _Slot) -> None:
        """A probe that learns its instrument's identity after opening (``*IDN?`` in the reader
        thread) exposes ``instrument()``; when it appears or changes, its channels are put again
        with it, so the store (and an agent's daemon) know which instrument measured."""
        probe = slot.probe
        identify = getattr(probe, "instrument", None)
        if probe is None or not callable(identify):
            return
        ident = identify()
        if ident is None or ident == slot.instrument:
            return
        slot.instrument = ident
        for ch in probe.channels():
            updated = replace(ch, instrument=ident)
            if self.timeline is not None:
                self.timeline.add_channel(updated, replace=True)
            self.store.put_channel(updated)

    def _link_outages(self, slot: _Slot) -> list[_Outage]:
        """Mirror a probe's own link outages (a serial unplug) before draining its samples:
        an outage listed now began before the drain, so every sample before it is drained."""
        outages_of = getattr(slot.probe, "link_outages", None)
        if not callable(outages_of):
            return []
        link: list[tuple[int, int | None, str]] = outages_of()
        fresh: list[_Outage] = []
        for k, (start_ns, end_ns, why) in enumerate(link):
            if k < len(slot.link_map):
                mine = slot.link_map[k]
                if mine.end_ns is None and end_ns is not None:
                    mine.end_ns = end_ns
                    self._outage_ended(slot, end_ns)
                continue
            outage = _Outage(start_ns, end_ns)
            slot.outages.append(outage)
            slot.link_map.append(outage)
            slot.health.down_reason = why
            fresh.append(outage)
        return fresh

    def _outage_began(self, slot: _Slot, outage: _Outage, blocks: list[Block]) -> None:
        """Open a gap on each channel from its last sample before the outage."""
        last = dict(slot.last_good_ns)
        for block in blocks:
            before = block.t_ns[block.t_ns <= outage.start_ns]
            if before.size:
                last[block.channel] = max(last.get(block.channel, 0), int(before[-1]))
        for cid in slot.channel_ids:
            gap = slot.open_gaps.get(cid)
            if gap is not None:  # still waiting for a sample after an earlier outage
                gap[1] = outage.end_ns
                continue
            begin = last.get(cid, self._start_ns)
            slot.open_gaps[cid] = [begin, outage.end_ns]
            self._gap(cid, begin, None)

    def _outage_ended(self, slot: _Slot, end_ns: int) -> None:
        for gap in slot.open_gaps.values():
            if gap[1] is None:
                gap[1] = end_ns

    def _close_gaps(self, slot: _Slot, block: Block) -> None:
        """A channel's gap ends at its first sample after the outage ended."""
        cid = block.channel
        if len(block) == 0:
            return
        gap = slot.open_gaps.get(cid)
        if gap is not None and gap[1] is not None:
            after = block.t_ns[block.t_ns >= gap[1]]
            if after.size:
                begin = gap[0]
                assert begin is not None
                self._gap(cid, begin, int(after[0]))
                del slot.open_gaps[cid]
        slot.last_good_ns[cid] = int(block.t_ns[-1])

    def _gap(self, channel: str, begin_ns: int, end_ns: int | None) -> None:
        if self.put_gap is not None:
            self.put_gap(channel, begin_ns, end_ns, GAP_REASON)

    def _status(self, slot: _Slot, reason: str | None) -> None:
        slot.health.up = reason is None
        if reason is not None:
            slot.health.down_reason = reason
        if self.on_status is not None:
            self.on_status(component(slot.spec), reason)

    def _guarded(self, slot: _Slot, fn: Callable[..., None], *args: object) -> None:
        """Run one probe's step; whatever it raises is counted and logged (once per kind of
        error), never the end of the sampling thread that serves every probe."""
        try:
            fn(*args)
        except Exception as err:
            text = f"{type(err).__name__}: {err}"
            slot.health.errors += 1
            if self.log is not None and text != slot.health.last_error:
                self.log(f"probe {slot.spec}: sampling step failed: {text}")
            slot.health.last_error = text

    def _run(self) -> None:
        mono = time.monotonic
        now = mono()
        due: dict[int, float] = {}
        next_flush = now + self.flush_interval_s
        next_anchor = now + ANCHOR_CHECK_S
        while not self._stop.is_set():
            now = mono()
            self._wake.clear()
            read_now, self._read_now = self._read_now, False
            if read_now:
                self.reads_asked += 1
            for k, slot in enumerate(self._slots):
                if slot.probe is None:
                    if now >= slot.next_open_mono:
                        self._guarded(slot, self._try_open, slot, now)
                    continue
                if now >= due.setdefault(k, now):
                    self._guarded(slot, self._poll, slot)
                    due[k] = max(due[k] + slot.probe.poll_interval_s, now)
                elif read_now:  # an extra reading; the cadence stays as it was
                    self._guarded(slot, self._poll, slot)
            # the clock check and the flush need no exact time: due within one poll interval,
            # they ride on a poll's wake instead of waking the thread on their own
            early_s = min(
                (s.probe.poll_interval_s for s in self._slots if s.probe is not None),
                default=0.0,
            )
            early_s = min(early_s, self.flush_interval_s / 4, ANCHOR_CHECK_S / 4)
            if now >= next_anchor - early_s:
                step = self.anchor.check()
                if step is not None:
                    self.store.put_clock_step(step.mono_ns, step.utc_ns, step.step_ns)
                next_anchor = _next_tick(next_anchor, ANCHOR_CHECK_S, now)
            if now >= next_flush - early_s:
                self.store.flush()
                next_flush = _next_tick(next_flush, self.flush_interval_s, now)
            waits = [*due.values(), next_flush, next_anchor]
            waits += [s.next_open_mono for s in self._slots if s.probe is None]
            wait = min(waits) - mono()
            if wait > 0 and not self._read_now:
                self._wake.wait(wait)
        for slot in self._slots:
            if slot.probe is not None:
                self._guarded(slot, self._poll, slot)
