"""The daemon's core, independent of transport: markers, agent blocks, clock offsets, results.

MQTT (``mqtt_link``), the HTTP API (``api``) and ``powerd measure`` all feed this one object, so
every marker goes through the same validation, stamping, store and phase state machine whatever
way it came in. It is thread-safe (one lock), because the HTTP server, the MQTT loop and the
sampler may run on different threads.

Results are not computed the instant a phase closes: the samples that cover its end may still be
on their way from an agent. A closed phase's run becomes due once every channel with data in the
run has a sample at or after the phase's end, or after ``result_grace_s`` at the latest.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from agent import wire
from agent.epoch import epoch_link
from powerd.block import Block
from powerd.channel import Channel
from powerd.clocksync import Exchange, OffsetEstimator
from powerd.errors import MarkerError
from powerd.health import Health
from powerd.phases import Phase, PhaseTracker, StampedMarker, stamp
from powerd.runs import compute_run
from powerd.store import Store
from powerd.timeline import Timeline

if TYPE_CHECKING:
    from powerd.metrics import LiveSource

SEEN_BLOCKS = 1 << 16
HELD_MAX = 1 << 14
MIN_EXCHANGES = 3
CLOCK_PENDING = 256
EPOCHS_KEPT = 8
# An epoch placed through anchors (agent/epoch.py): the anchors' bracketed reads, with margin.
LINK_UNCERTAINTY_NS = 20_000


@dataclass(frozen=True)
class MarkerOutcome:
    """What became of a marker: applied (maybe closing a phase), a repeat, or rejected."""

    applied: bool
    repeat: bool = False
    error: str | None = None
    phase: Phase | None = None
    stamped: StampedMarker | None = None
    held: bool = False


@dataclass
class Daemon:
    store: Store
    timeline: Timeline
    clock: Callable[[], int]
    idle_power_w: float | None = None
    primary: tuple[str, ...] = ()
    result_grace_s: float = 2.0
    tracker: PhaseTracker = field(default_factory=PhaseTracker)
    # Each agent's offset estimate for its CURRENT clock epoch (boot); older epochs' estimates
    # are kept in _epochs only to place their backlog (see agent/epoch.py).
    offsets: dict[str, OffsetEstimator] = field(default_factory=dict)
    _epochs: OrderedDict[tuple[str, int | None], OffsetEstimator] = field(
        default_factory=OrderedDict
    )
    _boot_now: dict[str, int | None] = field(default_factory=dict)
    _held_boots: Counter[tuple[str, int | None]] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    rejected_by_source: Counter[str] = field(default_factory=Counter)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    _pending: dict[str, tuple[int, int]] = field(default_factory=dict)
    _pending_since: dict[str, int] = field(default_factory=dict)
    _seen_blocks: OrderedDict[tuple[str, int, int], None] = field(default_factory=OrderedDict)
    _held: dict[str, list[tuple[str, Any, int]]] = field(default_factory=dict)
    _clock_sent: OrderedDict[tuple[str, int], int] = field(default_factory=OrderedDict)
    _next_clock_id: int = 0
    last_error: str = ""
    result_listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    pending_listeners: list[Callable[[], None]] = field(default_factory=list)
    # Called with each accepted agent block (under the lock: must only enqueue, e.g. the sinks).
    block_listeners: list[Callable[[Block], None]] = field(default_factory=list)
    # The sink hub's live figures (energy totals, recent results, probe health) for /metrics.
    live_metrics: LiveSource | None = None
    # What is down now and every problem counted: the source of /healthz and its metrics.
    health: Health = field(default_factory=Health)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        for sm in self.store.markers():
            try:
                self.tracker.feed(sm)
            except MarkerError:
                continue
        for ch in self.store.channels().values():
            self.timeline.add_channel(ch)

    # markers ----------------------------------------------------------------------------------

    def submit_marker(
        self,
        source: str,
        payload: bytes | str | Any,
        received_ns: int | None = None,
        uncertainty_ns: int = 0,
    ) -> MarkerOutcome:
        """Validate, stamp (moving an agent's stamp onto our clock), store, apply.

        ``uncertainty_ns`` is the sender's own uncertainty of its stamp (e.g. ``powerd measure``
        bracketing a process start); an agent's clock-offset uncertainty is added to it."""
        received = self.clock() if received_ns is None else received_ns
        with self._lock:
            try:
                if not wire.SOURCE_RE.match(source):
                    raise MarkerError(f"bad source id {source!r}")
                if source in self.agents and self._hold(source, "marker", payload, received):
                    return MarkerOutcome(False, held=True)
                marker = (
                    wire.decode_marker(payload)
                    if isinstance(payload, bytes | str)
                    else wire.parse_marker(payload)
                )
                offset_ns, unc_ns = self._offset_for(source, marker.t_ns, marker.boot_ns)
                sm = stamp(source, marker, received, offset_ns, unc_ns + uncertainty_ns)
                if not self.tracker.check(sm):
                    self.counts["markers_repeated"] += 1
                    return MarkerOutcome(False, repeat=True, stamped=sm)
                self.store.put_marker(sm)
                phase = self.tracker.feed(sm)
            except MarkerError as err:
                self.counts["markers_rejected"] += 1
                self.rejected_by_source[source] += 1
                return MarkerOutcome(False, error=str(err))
            self.counts["markers_applied"] += 1
            if phase is not None:
                begin, end = self._pending.get(phase.run, (phase.t_begin_ns, phase.t_end_ns))
                self._pending[phase.run] = (min(begin, phase.t_begin_ns), max(end, phase.t_end_ns))
                self._pending_since.setdefault(phase.run, received)
                for wake in self.pending_listeners:
                    wake()
            return MarkerOutcome(True, phase=phase, stamped=sm)

    def _offset_for(
        self, source: str, t_ns: int | None, boot_ns: int | None = None
    ) -> tuple[int, int]:
        """(offset, uncertainty) for a stamp of ``source``'s clock epoch ``boot_ns`` (None: its
        current one), from that epoch's exchanges only; (0, 0) when it has none."""
        est = self._estimator(source, boot_ns)
        if t_ns is None:
            return 0, 0
        if boot_ns is not None and (est is None or len(est.exchanges) < MIN_EXCHANGES):
            delta = self._link(source, boot_ns)
            if delta is not None:
                off = self.offsets[source].estimate(t_ns)
                if off is not None:
                    return off.offset_ns + delta, off.uncertainty_ns + LINK_UNCERTAINTY_NS
        off = None if est is None else est.estimate(t_ns)
        return (0, 0) if off is None else (off.offset_ns, off.uncertainty_ns)

    def _link(self, agent: str, boot_ns: int) -> int | None:
        """For an epoch never measured: its offset relative to the current epoch's, from the
        anchors the agent reports (same host boot); None unless the current one is known."""
        now = self.offsets.get(agent)
        if now is None or len(now.exchanges) < MIN_EXCHANGES:
            return None
        status = self.agents.get(agent) or {}
        return epoch_link(status.get("epochs"), self._boot_now.get(agent), boot_ns)

    def _estimator(self, agent: str, boot_ns: int | None) -> OffsetEstimator | None:
        if boot_ns is None or boot_ns == self._boot_now.get(agent):
            return self.offsets.get(agent)
        return self._epochs.get((agent, boot_ns))

    def _ready(self, agent: str, boot_ns: int | None) -> bool:
        """Whether stamps of this clock epoch can be placed: its offset is known."""
        est = self._estimator(agent, boot_ns)
        if est is not None and len(est.exchanges) >= MIN_EXCHANGES:
            return True
        return boot_ns is not None and self._link(agent, boot_ns) is not None

    def _switch_boot(self, agent: str, boot_ns: int | None) -> None:
        """``agent`` now stamps in epoch ``boot_ns`` (a restart or a clock step): its current
        estimate starts from that epoch's own exchanges, never from the previous epoch's; the
        previous one is kept (bounded) to place that epoch's backlog."""
        if agent in self.offsets and self._boot_now.get(agent) == boot_ns:
            return
        est = self._epochs.get((agent, boot_ns))
        if est is None:
            est = self._epochs[(agent, boot_ns)] = OffsetEstimator()
            mine = [k for k in self._epochs if k[0] == agent]
            for old in mine[: max(0, len(mine) - EPOCHS_KEPT)]:
                del self._epochs[old]
            if agent in self.offsets:
                self.counts["agent_clock_epochs"] += 1
        self._boot_now[agent] = boot_ns
        self.offsets[agent] = est

    # agents: channels, blocks, clock ----------------------------------------------------------

    def accept_status(self, agent: str, payload: bytes) -> None:
        """An agent's retained status: its clock epoch (a new one starts a fresh offset estimate)
        and its spool's state (full or failing: the agent is shown degraded)."""
        try:
            obj = json.loads(payload)
        except (ValueError, RecursionError):
            self.counts["status_malformed"] += 1
            return
        with self._lock:
            self.agents[agent] = obj if isinstance(obj, dict) else {}
            boot = wire.status_boot(obj)
            online = self.agents[agent].get("state") != "offline"  # a last will may be stale
            if agent not in self.offsets or (boot is not None and online):
                self._switch_boot(agent, boot)
            self._note_spool(agent, self.agents[agent].get("spool"))

    def _note_spool(self, agent: str, spool: Any) -> None:
        """An agent spool that is full or failing makes the agent a down component (healthz)."""
        if not isinstance(spool, dict):
            return
        component = f"agent:{agent}:spool"
        state = spool.get("state")
        if state in ("full", "error"):
            detail = str(spool.get("error") or "")[:200]
            self.health.down(component, f"spool_{state}: {detail}")
        elif state == "ok":
            self.health.up(component)

    def accept_gaps(self, agent: str, payload: bytes) -> bool:
        """Data an agent had to drop (its spool full or failing), each with its exact extent on
        the agent's clock: recorded as ``agent_dropped`` gaps on our clock, so every result that
        overlaps one is flagged. Held like blocks until that epoch's offset is known."""
        try:
            gaps = wire.decode_gaps(payload)
        except wire.WireError as err:
            self.counts["gaps_malformed"] += 1
            self.health.problem(f"agent:{agent}", "gaps_malformed", str(err))
            return False
        with self._lock:
            if self._hold(agent, "gaps", payload, self.clock()):
                return True
            for g in gaps:
                cid = g.channel if g.channel.startswith(f"{agent}/") else f"{agent}/{g.channel}"
                offset_ns, _ = self._offset_for(agent, g.t_last_ns, g.boot_ns)
                t0, t1 = g.t_first_ns + offset_ns, g.t_last_ns + offset_ns
                if not (0 <= t0 <= t1 <= wire.MAX_INT):
                    self.counts["gaps_malformed"] += 1
                    self.health.problem(f"agent:{agent}", "gaps_malformed", "extent out of range")
                    continue
                self.store.put_gap(cid, t0, t1, g.reason)
                self.counts["agent_dropped_samples"] += g.samples
                self.health.problem(
                    f"agent:{agent}",
                    "agent_dropped",
                    f"{g.samples} samples of {cid} dropped by the agent ({g.reason})",
                )
            return True

    def accept_channels(self, agent: str, payload: bytes) -> None:
        """An agent's channel list: ids are prefixed with the agent id."""
        try:
            items = json.loads(payload)
            chans = [Channel.from_json(obj) for obj in items]
        except (ValueError, TypeError, KeyError) as err:
            self.counts["channels_malformed"] += 1
            self.last_error = f"channels from {agent}: {type(err).__name__}: {err}"
            return
        with self._lock:
            for ch in chans:
                cid = ch.id if ch.id.startswith(f"{agent}/") else f"{agent}/{ch.id}"
                full = Channel.from_json({**ch.to_json(), "id": cid})
                self.timeline.add_channel(full, replace=True)
                self.store.put_channel(full)

    def accept_block(self, agent: str, payload: bytes) -> bool:
        """A message of sample blocks from an agent, moved onto our clock.

        False if malformed; blocks already seen (a QoS 1 resend) are skipped and counted."""
        try:
            messages = wire.decode_blocks(payload)
        except wire.WireError:
            self.counts["blocks_malformed"] += 1
            return False
        with self._lock:
            if self._hold(agent, "block", payload, self.clock()):
                return True
            for msg in messages:
                self._apply_block(agent, msg)
            return True

    def _apply_block(self, agent: str, msg: wire.BlockMessage) -> None:
        cid = msg.channel if msg.channel.startswith(f"{agent}/") else f"{agent}/{msg.channel}"
        key = (agent, msg.boot_ns, msg.seq)
        if key in self._seen_blocks:
            self.counts["blocks_repeated"] += 1
            return
        if cid not in self.timeline.channels:
            self.counts["blocks_unknown_channel"] += 1
            return
        self._seen_blocks[key] = None
        if len(self._seen_blocks) > SEEN_BLOCKS:
            self._seen_blocks.popitem(last=False)
        offset_ns, unc_ns = self._offset_for(agent, int(msg.t_ns[-1]), msg.boot_ns)
        self._track_stamp_uncertainty(cid, unc_ns)
        block = Block(cid, msg.t_ns + np.int64(offset_ns), msg.value)
        self.timeline.append(block)
        self.store.append(block)
        for listener in self.block_listeners:
            listener(block)
        self.counts["blocks_accepted"] += 1
        self.counts["samples_accepted"] += len(block)

    def _track_stamp_uncertainty(self, cid: str, offset_uncertainty_ns: int) -> None:
        """An agent channel's stamps are as uncertain as the agent's clock offset: keep the
        channel's ``stamp_uncertainty_s`` at the uncertainty its latest block was moved with."""
        ch = self.timeline.channels[cid]
        unc_s = offset_uncertainty_ns / 1e9
        if abs(ch.stamp_uncertainty_s - unc_s) <= 0.1 * max(ch.stamp_uncertainty_s, unc_s):
            return
        updated = Channel.from_json({**ch.to_json(), "stamp_uncertainty_s": unc_s})
        self.timeline.add_channel(updated, replace=True)
        self.store.put_channel(updated)

    def clock_request(self, agent: str) -> bytes:
        """A request to publish to the agent now; t1 is taken here."""
        with self._lock:
            self._next_clock_id += 1
            req_id = self._next_clock_id
            t1 = self.clock()
            self._clock_sent[(agent, req_id)] = t1
            if len(self._clock_sent) > CLOCK_PENDING:
                self._clock_sent.popitem(last=False)
            return wire.clock_request(req_id, t1)

    def accept_clock_reply(self, agent: str, payload: bytes, t4_ns: int | None = None) -> bool:
        """One exchange, added to the estimate of the clock epoch the agent stamped it in; an
        epoch never seen before (the agent restarted or its clock stepped) becomes current."""
        t4 = self.clock() if t4_ns is None else t4_ns
        try:
            req_id, t1, t2, t3, boot = wire.parse_clock_reply_boot(payload)
        except wire.WireError:
            self.counts["clock_malformed"] += 1
            return False
        with self._lock:
            sent = self._clock_sent.pop((agent, req_id), None)
            if sent is None or sent != t1:
                self.counts["clock_unmatched"] += 1
                return False
            if agent not in self.offsets or (
                boot is not None and (agent, boot) not in self._epochs
            ):
                self._switch_boot(agent, boot)
            est = self._estimator(agent, boot)
            if est is None:
                self.counts["clock_unmatched"] += 1
                return False
            ok = est.add(Exchange(t1, t2, t3, t4))
            self._release(agent)
            return ok

    def _held_boots_of(self, kind: str, payload: Any) -> list[int | None]:
        """The clock epochs a held message's stamps belong to (None: the agent's current)."""
        try:
            if kind == "block":
                return list(wire.block_boots(payload))
            if kind == "gaps":
                return list({g.boot_ns for g in wire.decode_gaps(payload)})
            obj = json.loads(payload) if isinstance(payload, bytes | str) else payload
            boot = obj.get("boot_ns") if isinstance(obj, dict) else None
            return [boot if isinstance(boot, int) and not isinstance(boot, bool) else None]
        except (ValueError, RecursionError):
            return [None]

    def _hold(self, agent: str, kind: str, payload: Any, received_ns: int) -> bool:
        """Keep an agent's stamped data until the offset of ITS clock epoch is known (True if
        held): applying it earlier, or with another epoch's offset, would misplace it by the
        whole offset or clock step. Data of one epoch keeps its order."""
        boots = self._held_boots_of(kind, payload)
        if all(self._ready(agent, b) and not self._held_boots[(agent, b)] for b in boots):
            return False
        held = self._held.setdefault(agent, [])
        held.append((kind, payload, received_ns))
        self._held_boots[(agent, boots[0])] += 1
        if len(held) > HELD_MAX:
            old_kind, old_payload, _ = held.pop(0)
            self._held_boots[(agent, self._held_boots_of(old_kind, old_payload)[0])] -= 1
            self.counts["held_dropped"] += 1
        return True

    def _release(self, agent: str) -> None:
        """Apply held data whose epoch's offset is now known (the rest is held again)."""
        waiting = [b for (a, b), n in self._held_boots.items() if a == agent and n > 0]
        if not any(self._ready(agent, b) for b in waiting):
            return
        held = self._held.pop(agent, [])
        for key in [k for k in self._held_boots if k[0] == agent]:
            del self._held_boots[key]
        for kind, payload, received_ns in held:
            if kind == "block":
                self.accept_block(agent, payload)
            elif kind == "gaps":
                self.accept_gaps(agent, payload)
            else:
                self.submit_marker(agent, payload, received_ns)

    # results ----------------------------------------------------------------------------------

    def has_pending(self) -> bool:
        """Whether some closed phase still waits for its result."""
        return bool(self._pending)

    def due_results(self) -> list[dict[str, Any]]:
        """Compute the runs whose closed phases are now covered by data (or waited long enough)."""
        now = self.clock()
        out = []
        with self._lock:
            for run, (t_begin, t_end) in list(self._pending.items()):
                waited = now - self._pending_since[run] >= self.result_grace_s * 1e9
                if not (waited or self._covered(t_begin, t_end)):
                    continue
                del self._pending[run], self._pending_since[run]
                self.store.flush()
                result = compute_run(self.store, run, self.idle_power_w, self.primary)
                self.store.put_result(result, now)
                self.counts["results"] += 1
                out.append(result)
        for result in out:
            for listener in self.result_listeners:
                listener(result)
        return out

    def _covered(self, t_begin_ns: int, t_end_ns: int) -> bool:
        """Every channel that was sampling during the run has a sample at or after its end
        (channels silent since before the run, e.g. an agent long gone, are not waited for)."""
        latest = [self.timeline.latest(c) for c in list(self.timeline.channels)]
        live = [t for t, _ in (x for x in latest if x is not None) if t >= t_begin_ns]
        return bool(live) and all(t >= t_end_ns for t in live)

    def run_result(self, run: str) -> dict[str, Any] | None:
        with self._lock:
            return self.store.result(run)

    def channels_latest(self) -> dict[str, dict[str, Any]]:
        """Latest power per channel: the last sample of a power channel, a counter's last rate."""
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for cid, ch in self.timeline.channels.items():
                if ch.kind == "power":
                    last = self.timeline.latest(cid)
                    if last is not None:
                        out[cid] = {"t_ns": last[0], "power_w": last[1], "kind": ch.kind}
                    continue
                t, v = self.timeline.tail(cid, 2)
                if t.size == 2 and t[1] > t[0]:
                    rate = (v[1] - v[0]) / ((t[1] - t[0]) / 1e9)
                    out[cid] = {"t_ns": int(t[1]), "power_w": float(rate), "kind": ch.kind}
        return out

    def offsets_json(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for agent, est in self.offsets.items():
                off = est.estimate(self.clock())
                if off is not None:
                    out[agent] = {
                        "offset_ns": off.offset_ns,
                        "uncertainty_ns": off.uncertainty_ns,
                        "drift_ppm": off.drift_ppm,
                        "exchanges": off.exchanges,
                        "boot_ns": self._boot_now.get(agent),
                    }
        return out
