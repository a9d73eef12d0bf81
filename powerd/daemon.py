"""The daemon's core, independent of transport: markers, agent blocks, clock offsets, results.

MQTT (``mqtt_link``), the HTTP API (``api``) and ``powerd measure`` all feed this one object, so
every marker goes through the same validation, stamping, store and phase state machine whatever
way it came in. It is thread-safe (one lock), because the HTTP server, the MQTT loop and the
sampler may run on different threads.

Results are not computed the instant a phase closes: the samples that cover its end may still be
on their way from an agent. A closed phase's run becomes due once every channel of the devices
its phases cover that has data in the run has a sample at or after the phase's end (another
agent's data is not waited for), or after ``result_grace_s`` at the latest. On start, runs whose
stored markers close a phase the stored result does not cover are queued the same way, over
every channel (their devices are known only when their result is computed). Samples committed
after a run's result (an agent back after ``result_grace_s``, a held backlog, a local reader
catching up) make it due again: recomputed, resealed, republished and counted
(``powerd.latedata``; the result's ``revised_after_late_data``).

Agents: an id becomes known with a valid status (or, after a restart, from its stored channels);
unknown ids get no channels, no clock requests and only a small durable hold. Stamped data from
an agent whose clock offset is not yet known is held durably (``powerd.held``), bounded per agent
and in total; every drop and every malformed message is counted in ``health``.

Clock epochs: an agent's offset belongs to one epoch of its clock (``boot_ns``: a process start
or a wall-clock step, see agent/epoch.py). Each epoch has its own estimate; a new one never
inherits the previous one's exchanges, and its data is held until its own offset is known (or,
for an epoch never measured, derived from the anchors the agent reports). Data an agent had to
drop (its spool full or failing) arrives on ``powerd/v1/gaps/<agent>`` and is recorded as an
``agent_dropped`` gap with its exact extent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from powerd.agent import wire
from powerd.agent.epoch import epoch_link
from powerd.audit import AuditContext, result_agents, seal_manifest
from powerd.block import I64, Block
from powerd.channel import LOCAL_DEVICE, Channel
from powerd.clocksync import Exchange, OffsetEstimator
from powerd.errors import MarkerError
from powerd.gapedges import GapEdges
from powerd.health import Health
from powerd.held import HELD_PLACE_BOUND_S, HeldStore
from powerd.latedata import LATE_DATA_FLAG, LateData
from powerd.phases import (
    DEFAULT_MAX_MARKER_SKEW_S,
    DEFAULT_MAX_PHASE_S,
    Phase,
    PhaseTracker,
    StampedMarker,
    replay,
    stamp,
)
from powerd.result_worker import (
    DEATHS_PER_JOB,
    Answer,
    Job,
    ResultWorker,
    WorkerClosed,
    with_clock_sync,
)
from powerd.runs import compute_run
from powerd.store import Store
from powerd.timeline import Timeline

if TYPE_CHECKING:
    from powerd.metrics import LiveSource

SEEN_BLOCKS = 1 << 16
MIN_EXCHANGES = 3
# Clock requests awaiting their reply are kept this long (and at most CLOCK_PENDING of them):
# under a fleet's load a reply may come seconds late, queued behind ingestion, and a request
# forgotten by then makes its reply "unmatched", the agent backed off, its data held (issue 16:
# a count bound of 256 at 200 requests/s forgot every request older than 1.3 s).
CLOCK_PENDING_S = 30.0
CLOCK_PENDING = 1 << 16
# Messages from agent ids never seen with a valid status: held (durably) only this many per id
# and in all, so unknown ids cost (almost) nothing until they announce themselves properly.
UNKNOWN_HELD_PER_AGENT = 256
UNKNOWN_HELD_TOTAL = 1024
# Distinct agent ids the daemon keeps state for (status, clock estimator); more are refused.
MAX_AGENTS = 10_000
MAX_INT = wire.MAX_INT
# Clock epochs (agent restarts, clock steps; see agent/epoch.py) whose estimate is kept per agent;
# an epoch that held messages still wait for is not forgotten, up to EPOCHS_KEPT_MAX in all.
EPOCHS_KEPT = 8
EPOCHS_KEPT_MAX = 64
# A held message not placeable this long after it arrived is reported (``_check_held``):
# HELD_PLACE_BOUND_S, from powerd.held ([daemon] held_place_bound_s).
HELD_SCAN = 1024  # held messages examined per check
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
    # each agent's epochs in _epochs, oldest first (so no per-agent scan of every agent's epochs)
    _agent_epochs: dict[str, list[int | None]] = field(default_factory=dict)
    # Held messages of epochs whose offset is not known yet, left held by the last release, and
    # what the release saw (so an unchanged situation is not re-examined at every exchange).
    _unready: dict[str, tuple[Any, int, set[int | None]]] = field(default_factory=dict)
    # Held messages reported as not placeable within ``held_place_bound_s`` (per agent: keys of
    # the messages, so each is counted once, however often the release re-holds it).
    held_place_bound_s: float = HELD_PLACE_BOUND_S
    _unplaceable: dict[str, set[tuple[str, int, int]]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    rejected_by_source: Counter[str] = field(default_factory=Counter)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    _pending: dict[str, tuple[int, int]] = field(default_factory=dict)
    _pending_since: dict[str, int] = field(default_factory=dict)
    # The devices each pending run's closed phases cover (None: not known, e.g. queued after a
    # restart): its coverage is checked over their channels alone, so a result for agent A
    # does not wait for agent B's data (issue 16).
    _pending_devices: dict[str, frozenset[str] | None] = field(default_factory=dict)
    _stored_in_run: dict[tuple[int, int], list[str]] = field(default_factory=dict)
    _seen_blocks: OrderedDict[tuple[str, int, int], None] = field(default_factory=OrderedDict)
    # The offsets agents' blocks were placed with, so a gap report's edges meet its neighbours
    # (a report arrives later, when the estimate has moved; see powerd.gapedges).
    gap_edges: GapEdges = field(default_factory=GapEdges)
    # Agents' messages waiting for their clock offset (durable; see powerd.held); default: a
    # file beside the store.
    held: HeldStore | None = None
    # Agent ids seen with a valid status (now or, via their stored channels, before a restart).
    known_agents: set[str] = field(default_factory=set)
    _releasing: str | None = None
    _clock_sent: OrderedDict[tuple[str, int], int] = field(default_factory=OrderedDict)
    _next_clock_id: int = 0
    last_error: str = ""
    result_listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    pending_listeners: list[Callable[[], None]] = field(default_factory=list)
    # Called with each accepted agent block (under the lock: must only enqueue, e.g. the sinks).
    block_listeners: list[Callable[[Block], None]] = field(default_factory=list)
    # Called with each applied marker (under the lock: must only enqueue; powerd.phasecount,
    # the live view).
    marker_listeners: list[Callable[[StampedMarker], None]] = field(default_factory=list)
    # Whether a run still waits for something besides its samples (counter reads at its phase
    # edges, powerd.phasecount): its result is not computed before this says False.
    run_busy: Callable[[str], bool] | None = None
    # The daemon's own sampler's reads out of cadence (end markers; serve.read_at_ends), for
    # /metrics.
    local_reads_asked: Callable[[], int] | None = None
    # The latest continuous-efficiency figures (powerd.efficiency) for /metrics.
    efficiency: Callable[[], list[dict[str, Any]]] | None = None
    # The sink hub's live figures (energy totals, recent results, probe health) for /metrics.
    live_metrics: LiveSource | None = None
    # What is down now and every problem counted: the source of /healthz and its metrics.
    health: Health = field(default_factory=Health)
    # marker plausibility ([daemon] max_marker_skew_s, max_phase_s; see powerd.phases)
    max_marker_skew_s: float = DEFAULT_MAX_MARKER_SKEW_S
    max_phase_s: float = DEFAULT_MAX_PHASE_S
    # what the manifest sealed with each result records of this process (powerd.audit)
    audit_context: AuditContext | None = None
    # computes due results in another process (``powerd run``; powerd.result_worker); None:
    # in this one (``powerd measure``, tools, tests that drive the daemon directly)
    result_worker: ResultWorker | None = None
    # samples committed after their run's result was computed: the run is recomputed
    # (powerd.latedata; default: made in __post_init__ and fed by the store's commits)
    late: LateData | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.tracker.max_phase_ns = int(self.max_phase_s * 1e9)
        closed: dict[str, list[Phase]] = {}
        for sm in self.store.markers():
            try:
                phase = self.tracker.feed(sm)
            except MarkerError:
                continue
            if phase is not None:
                closed.setdefault(phase.run, []).append(phase)
        for key in self.store.seen_blocks(SEEN_BLOCKS):
            self._seen_blocks[key] = None  # a block resent after our restart is a repeat
        for ch in self.store.channels().values():
            self.timeline.add_channel(ch)
            if "/" in ch.id:
                self.known_agents.add(ch.id.split("/", 1)[0])
        if self.held is None:
            self.held = HeldStore(self.store.path.with_name(f"{self.store.path.stem}-held.db"))
        self.known_agents.update(self.held.agents())
        self.recover_due(closed)
        self._watch_late_data()

    def _watch_late_data(self) -> None:
        """Index the stored results and watch every store commit for samples they lack."""
        if self.late is None:
            self.late = LateData(self._channel_devices, self.store)
        self.late.load(self.store)
        self.store.commit_listeners.append(self._late_commit)

    def _channel_devices(self, ids: Iterable[str]) -> dict[str, str | None]:
        """Channels' devices, from the timeline's channels (no copy per commit); a channel it
        lacks from the store's."""
        chans = self.timeline.channels
        out: dict[str, str | None] = {}
        missing = []
        for c in ids:
            ch = chans.get(c)
            if ch is None:
                missing.append(c)
            else:
                out[c] = ch.device_id
        if missing:
            stored = self.store.channels()
            for c in missing:
                ch = stored.get(c)
                out[c] = None if ch is None else ch.device_id
        return out

    def _late_commit(self, spans: dict[str, tuple[int, int]]) -> None:
        """A store commit (any thread, under the store's lock, in commit order): note the runs it
        makes late; housekeeping recomputes them (``due_results``). Quick; never raises into the
        store's flush."""
        assert self.late is not None
        try:
            found = self.late.on_commit(spans, self.clock())
        except Exception as err:  # counted, logged once: late runs would go unnoticed
            self.counts["late_data_check_failed"] += 1
            self.health.problem("local", "late_data_check_failed", f"{type(err).__name__}: {err}")
            return
        if found:
            for wake in self.pending_listeners:
                wake()

    def recover_due(self, closed: dict[str, list[Phase]] | None = None) -> list[str]:
        """Queue every run whose stored markers close a phase but whose stored result does not
        cover all of them (e.g. the daemon was killed before computing it): they are computed
        as they fall due, like any closing phase. ``closed``: the closed phases per run, if the
        caller just replayed the stored markers. Returns the runs queued."""
        if closed is None:
            closed = {}
            for phase in replay(self.store.markers())[0]:
                closed.setdefault(phase.run, []).append(phase)
        queued = []
        now = self.clock()
        with self._lock:
            for run, phases in closed.items():
                result = self.store.result(run)
                if result is not None and len(result.get("phases", [])) >= len(phases):
                    continue
                begin = min(p.t_begin_ns for p in phases)
                end = max(p.t_end_ns for p in phases)
                self._pending[run] = (begin, end)
                self._pending_since.setdefault(run, now)
                self._pending_devices[run] = None
                queued.append(run)
        return queued

    # markers ----------------------------------------------------------------------------------

    def submit_marker(
        self,
        source: str,
        payload: bytes | str | Any,
        received_ns: int | None = None,
        uncertainty_ns: int = 0,
        commit_at_flush: bool = False,
    ) -> MarkerOutcome:
        """Validate, stamp (moving an agent's stamp onto our clock), store, apply.

        ``uncertainty_ns`` is the sender's own uncertainty of its stamp (e.g. ``powerd measure``
        bracketing a process start); an agent's clock-offset uncertainty is added to it.
        ``commit_at_flush``: the marker is committed by the store's next flush, not before this
        returns (``Store.put_marker(defer=True)``; the MQTT link acknowledges after that flush)."""
        received = self.clock() if received_ns is None else received_ns
        with self._lock:
            try:
                if not wire.SOURCE_RE.match(source):
                    raise MarkerError(f"bad source id {source!r}")
                marker = (
                    wire.decode_marker(payload)
                    if isinstance(payload, bytes | str)
                    else wire.parse_marker(payload)
                )
                # only a well-formed marker waits for its sender's clock offset
                if self._is_agent(source) and self._hold(source, "marker", payload, received):
                    return MarkerOutcome(False, held=True)
                offset_ns, unc_ns = self._offset_for(source, marker.t_ns, marker.boot_ns)
                skew_ns = int(self.max_marker_skew_s * 1e9)
                sm = stamp(source, marker, received, offset_ns, unc_ns + uncertainty_ns, skew_ns)
                if not self.tracker.check(sm):
                    self.counts["markers_repeated"] += 1
                    return MarkerOutcome(False, repeat=True, stamped=sm)
                self.store.put_marker(sm, defer=commit_at_flush)
                phase = self.tracker.feed(sm)
                for listener in self.marker_listeners:
                    listener(sm)
            except MarkerError as err:
                self.counts["markers_rejected"] += 1
                self.rejected_by_source[source] += 1
                return MarkerOutcome(False, error=str(err))
            self.counts["markers_applied"] += 1
            if phase is not None:
                span = self._pending.get(phase.run)
                begin, end = span if span is not None else (phase.t_begin_ns, phase.t_end_ns)
                self._pending[phase.run] = (min(begin, phase.t_begin_ns), max(end, phase.t_end_ns))
                self._pending_since.setdefault(phase.run, received)
                self._scope_pending(phase.run, self._phase_devices(phase), fresh=span is None)
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
            link = self._link(source, boot_ns)
            if link is not None:
                base, delta = link
                off = base.estimate(t_ns)
                if off is not None:
                    return off.offset_ns + delta, off.uncertainty_ns + LINK_UNCERTAINTY_NS
        off = None if est is None else est.estimate(t_ns)
        return (0, 0) if off is None else (off.offset_ns, off.uncertainty_ns)

    def _measured(self, agent: str) -> list[tuple[int | None, OffsetEstimator]]:
        """The agent's epochs whose offset is known (enough exchanges), the current one first."""
        now = self._boot_now.get(agent)
        out: list[tuple[int | None, OffsetEstimator]] = []
        if self._offset_known(agent):
            out.append((now, self.offsets[agent]))
        for boot in reversed(self._agent_epochs.get(agent, ())):
            est = self._epochs.get((agent, boot))
            if boot != now and est is not None and len(est.exchanges) >= MIN_EXCHANGES:
                out.append((boot, est))
        return out

    def _link(self, agent: str, boot_ns: int) -> tuple[OffsetEstimator, int] | None:
        """For an epoch never measured: a measured epoch of the same host boot (the current one
        if it is measured, else the latest) and what to add to its offset, from the anchors the
        agent reports; None unless one is both measured and reported. Any measured epoch will
        do: with epochs changing quickly, the current one may never get its exchanges."""
        epochs = (self.agents.get(agent) or {}).get("epochs")
        if not isinstance(epochs, dict):
            return None
        for boot, est in self._measured(agent):
            delta = epoch_link(epochs, boot, boot_ns)
            if delta is not None:
                return est, delta
        return None

    def _estimator(self, agent: str, boot_ns: int | None) -> OffsetEstimator | None:
        now = self._boot_now.get(agent)
        # an agent that reports no epoch (older than agent/epoch.py) has one estimate for all
        if boot_ns is None or boot_ns == now or now is None:
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
            self._agent_epochs.setdefault(agent, []).append(boot_ns)
            self._forget_epochs(agent, boot_ns)
            if agent in self.offsets:
                self.counts["agent_clock_epochs"] += 1
        self._boot_now[agent] = boot_ns
        self.offsets[agent] = est

    def _forget_epochs(self, agent: str, current: int | None) -> None:
        """Keep EPOCHS_KEPT of the agent's epoch estimates, oldest forgotten first, but not those
        held messages still wait for (their own estimate, or a measured one to link them to:
        the latest measured is kept), unless more than EPOCHS_KEPT_MAX."""
        mine = self._agent_epochs.get(agent, [])
        extra = len(mine) - EPOCHS_KEPT
        if extra <= 0:
            return
        waited = self._unready.get(agent, (None, 0, set()))[2]
        measured = [b for b, _ in self._measured(agent)][:1]
        spare = len(mine) - EPOCHS_KEPT_MAX
        for boot in list(mine):
            if extra <= 0:
                break
            if boot == current:
                continue
            if (boot in waited or boot in measured) and spare <= 0:
                continue
            if boot in waited or boot in measured:
                spare -= 1
            self._epochs.pop((agent, boot), None)
            mine.remove(boot)
            extra -= 1

    # agents: channels, blocks, clock ----------------------------------------------------------

    def _is_agent(self, source: str) -> bool:
        return source in self.agents or source in self.known_agents

    def _problem(self, source: str, kind: str, message: str) -> None:
        """One bad message or failed operation: counted here and in health (logged once)."""
        self.counts[kind] += 1
        self.last_error = f"{kind} from {source}: {message}"
        self.health.problem(source, kind, message)

    def accept_status(self, agent: str, payload: bytes) -> bool:
        """An agent's status; only a valid one (a JSON object with ``v`` 1, ``agent`` equal to
        the topic's id, a ``state`` name) makes the id a known agent. False if invalid."""
        try:
            obj = wire.decode_json(payload)
        except ValueError as err:
            self._problem(agent, "status_malformed", str(err))
            return False
        reason = wire.status_problem(agent, obj)
        if reason is None and agent not in self.agents and len(self.agents) >= MAX_AGENTS:
            reason = f"{MAX_AGENTS} agents known already; a new id is refused"
        if reason is not None:
            self._problem(agent, "status_malformed", reason)
            return False
        with self._lock:
            was_online = (self.agents.get(agent) or {}).get("state") == "online"
            if was_online and obj["state"] == "offline":
                self._open_agent_gaps(agent)
            self.agents[agent] = obj
            self.known_agents.add(agent)
            # a new clock epoch starts a fresh estimate; a last will (offline) may be stale
            boot = wire.status_boot(obj)
            if agent not in self.offsets or (boot is not None and obj["state"] != "offline"):
                self._switch_boot(agent, boot)
            self._note_spool(agent, obj.get("spool"))
            self._note_probes(agent, obj.get("probes_down"), obj["state"])
        return True

    def _open_agent_gaps(self, agent: str) -> None:
        """An agent went offline (its last will, or a clean stop): its channels' data may stop
        here. Each gets an open ``agent_down`` gap from its newest sample; it ends where the
        agent's data resumes (``Store.gaps``), and one no longer than a few sample periods (a
        backlog that continues right after) is no gap (``runs.flag_known_gaps``)."""
        for cid in [c for c in self.timeline.channels if c.startswith(f"{agent}/")]:
            latest = self.timeline.latest(cid)
            if latest is not None:
                self.store.put_gap(cid, int(latest[0]), None, "agent_down")

    def _note_probes(self, agent: str, down: Any, state: str) -> None:
        """An agent's probes that are down (its status' ``probes_down``) are down components
        here too, ``agent:<id>:probe:<spec>``, until the agent says they are back."""
        prefix = f"agent:{agent}:"
        now = (
            {f"{prefix}{k}"[:300]: str(v)[:200] for k, v in list(down.items())[:64]}
            if isinstance(down, dict) and state != "offline"
            else {}
        )
        for component in self.health.down_reasons():
            if component.startswith(f"{prefix}probe:") and component not in now:
                self.health.up(component)
        for component, reason in now.items():
            self.health.down(component, reason)

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
        """Data an agent had to drop (its spool full or failing) or could not sample (a probe
        down), each with its exact extent on the agent's clock: recorded as ``agent_dropped`` or
        ``probe_down`` gaps on our clock, so every result that overlaps one is flagged. Held
        like blocks until that epoch's offset is known."""
        if not self._is_agent(agent):
            self._problem(agent, "gaps_unknown_agent", "gaps before any valid status")
            return False
        try:
            gaps = wire.decode_gaps(payload)
        except wire.WireError as err:
            self._problem(agent, "gaps_malformed", str(err))
            return False
        with self._lock:
            if self._hold(agent, "gaps", payload, self.clock()):
                return True
            for g in gaps:
                cid = g.channel if g.channel.startswith(f"{agent}/") else f"{agent}/{g.channel}"
                offset_ns, _ = self._offset_for(agent, g.t_last_ns, g.boot_ns)
                t0, t1 = self.gap_edges.place_gap(
                    (cid, g.boot_ns), g.t_first_ns, g.t_last_ns, g.reason, offset_ns, g.samples
                )
                t1 = max(t0, t1)  # a one-sample gap between blocks placed with different offsets
                if not (0 <= t0 <= t1 <= MAX_INT):
                    self._problem(agent, "gaps_malformed", "extent out of range after offset")
                    continue
                self.store.put_gap(cid, t0, t1, g.reason)
                self._requeue_overlapping(t0, t1)
                if g.reason == "probe_down":
                    self.health.problem(
                        f"agent:{agent}", "agent_probe_down", f"{cid} had no data: probe down"
                    )
                    continue
                self.counts["agent_dropped_samples"] += g.samples
                self.health.problem(
                    f"agent:{agent}",
                    "agent_dropped",
                    f"{g.samples} samples of {cid} dropped by the agent ({g.reason})",
                )
            return True

    def accept_channels(self, agent: str, payload: bytes) -> None:
        """An agent's channel list: ids are prefixed with the agent id. Only from an agent seen
        with a valid status (unknown ids must not cost ring buffers and store rows)."""
        if not self._is_agent(agent):
            self._problem(agent, "channels_unknown_agent", "channels before any valid status")
            return
        try:
            items = wire.decode_json(payload)
            if not isinstance(items, list):
                raise ValueError("a channel list must be a JSON array")
            chans = [Channel.from_json(obj) for obj in items]
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            self._problem(agent, "channels_malformed", f"{type(err).__name__}: {err}")
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
        except wire.WireError as err:
            self._problem(agent, "blocks_malformed", str(err))
            return False
        with self._lock:
            if self._hold(agent, "block", payload, self.clock()):
                return True
            self._apply_blocks(agent, messages)
            return True

    def forget_blocks(self, agent: str, payload: bytes) -> None:
        """Unmark a message's blocks as seen (their samples were never committed), so that the
        broker's redelivery of it is applied rather than skipped as a repeat."""
        with contextlib.suppress(wire.WireError), self._lock:
            for msg in wire.decode_blocks(payload):
                self._seen_blocks.pop((agent, msg.boot_ns, msg.seq), None)

    def _apply_blocks(self, agent: str, messages: list[wire.BlockMessage]) -> None:
        """Place one message's blocks (one per channel of one flush; under the lock). What is
        per message, not per block, is done once: the store's buffer is taken once for all of
        them, and the clock offset is estimated once per stamp shared by the channels (issue
        16: 10^4 blocks a second at 1 000 agents). The store gets the samples before the
        timeline does, so a result made due by the timeline finds them at its flush."""
        placed: list[tuple[str, wire.BlockMessage, Block, int]] = []
        seen: list[tuple[str, int, int]] = []
        offsets: dict[tuple[int, int], tuple[int, int]] = {}
        prefix = f"{agent}/"
        for msg in messages:
            cid = msg.channel if msg.channel.startswith(prefix) else prefix + msg.channel
            key = (agent, msg.boot_ns, msg.seq)
            if key in self._seen_blocks:
                self.counts["blocks_repeated"] += 1
                continue
            if cid not in self.timeline.channels:
                self.counts["blocks_unknown_channel"] += 1
                continue
            self._seen_blocks[key] = None
            seen.append(key)
            if len(self._seen_blocks) > SEEN_BLOCKS:
                self._seen_blocks.popitem(last=False)
            t_last = int(msg.t_ns[-1])
            stamp_key = (msg.boot_ns, t_last)
            found = offsets.get(stamp_key)
            if found is None:
                found = offsets[stamp_key] = self._offset_for(agent, t_last, msg.boot_ns)
            offset_ns, unc_ns = found
            if int(msg.t_ns.min()) + offset_ns < 0 or int(msg.t_ns.max()) + offset_ns > MAX_INT:
                self._problem(agent, "blocks_rejected", "sample times out of range after offset")
                continue
            self._track_stamp_uncertainty(cid, unc_ns)
            placed.append(
                (cid, msg, Block(cid, msg.t_ns + np.int64(offset_ns), msg.value), offset_ns)
            )
        self.store.append_many((b for _, _, b, _ in placed), seen)
        for cid, msg, block, offset_ns in placed:
            self.timeline.append(block)
            self._move_gap_ends(cid, msg, offset_ns)
            for listener in self.block_listeners:
                listener(block)
            self.counts["blocks_accepted"] += 1
            self.counts["samples_accepted"] += len(block)

    def _move_gap_ends(self, cid: str, msg: wire.BlockMessage, offset_ns: int) -> None:
        """Note the offset this block was placed with; a gap reported before it, that it
        directly follows, gets its end placed with that same offset (powerd.gapedges)."""
        t_first, t_last = int(msg.t_ns[0]), int(msg.t_ns[-1])
        key = (cid, msg.boot_ns)
        for t0, t1, reason in self.gap_edges.note_block(
            key, t_first, t_last, int(msg.t_ns.size), offset_ns
        ):
            self.store.put_gap(cid, t0, max(t0, t1), reason)
            self._requeue_overlapping(t0, max(t0, t1))

    def _track_stamp_uncertainty(self, cid: str, offset_uncertainty_ns: int) -> None:
        """An agent channel's stamps are as uncertain as the agent's clock offset: keep the
        channel's ``stamp_uncertainty_s`` at the uncertainty its latest block was moved with."""
        ch = self.timeline.channels[cid]
        unc_s = offset_uncertainty_ns / 1e9
        if abs(ch.stamp_uncertainty_s - unc_s) <= 0.1 * max(ch.stamp_uncertainty_s, unc_s):
            return
        # dataclasses.replace, not a JSON round trip: 20x cheaper, the same channel (issue 16)
        updated = dataclasses.replace(ch, stamp_uncertainty_s=unc_s)
        self.timeline.add_channel(updated, replace=True)
        self.store.put_channel(updated, defer=True)  # committed with the block, at the flush

    def clock_request(self, agent: str) -> bytes:
        """A request to publish to the agent now; t1 is taken here."""
        with self._lock:
            self._next_clock_id += 1
            req_id = self._next_clock_id
            t1 = self.clock()
            self._clock_sent[(agent, req_id)] = t1
            oldest = t1 - int(CLOCK_PENDING_S * 1e9)
            while self._clock_sent and (
                len(self._clock_sent) > CLOCK_PENDING
                or next(iter(self._clock_sent.values())) < oldest
            ):
                self._clock_sent.popitem(last=False)
            self._check_held(agent)  # requests go out periodically: so does this check
            return wire.clock_request(req_id, t1)

    def accept_clock_reply(self, agent: str, payload: bytes, t4_ns: int | None = None) -> bool:
        """One exchange, added to the estimate of the clock epoch the agent stamped it in; an
        epoch never seen before (the agent restarted or its clock stepped) becomes current."""
        t4 = self.clock() if t4_ns is None else t4_ns
        try:
            req_id, t1, t2, t3, boot = wire.parse_clock_reply_boot(payload)
        except wire.WireError as err:
            self._problem(agent, "clock_malformed", str(err))
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

    def _boots_of(self, kind: str, payload: Any) -> set[int | None]:
        """The clock epochs a message's stamps belong to (None: the agent's current one)."""
        try:
            if kind == "block":
                return set(wire.block_boots(payload))
            if kind == "gaps":
                return {g.boot_ns for g in wire.decode_gaps(payload)}
            obj = wire.decode_json(payload) if isinstance(payload, bytes | str) else payload
            boot = obj.get("boot_ns") if isinstance(obj, dict) else None
            return {boot if isinstance(boot, int) and not isinstance(boot, bool) else None}
        except ValueError:
            return {None}

    def _offset_known(self, agent: str) -> bool:
        est = self.offsets.get(agent)
        return est is not None and len(est.exchanges) >= MIN_EXCHANGES

    def _hold(self, agent: str, kind: str, payload: Any, received_ns: int) -> bool:
        """Keep an agent's stamped data until its clock offset is known (True if held or
        refused): applying it earlier would misplace it by the whole offset, seconds on an
        unsynchronised host. Held messages are committed to ``self.held`` before this returns
        (the caller may acknowledge them); what the bounds refuse is counted and reported."""
        assert self.held is not None
        if agent == self._releasing:
            return False
        boots = self._boots_of(kind, payload)
        if all(self._ready(agent, b) for b in boots):
            # order is kept within an epoch: what is held for other, unmeasured epochs only
            # (left by the last release) does not hold this back
            _, left, unready = self._unready.get(agent, (None, 0, set()))
            if self.held.held(agent) <= left and not boots & unready:
                return False
        if isinstance(payload, bytes):
            data = payload
        else:
            data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        cap = None
        if agent not in self.agents and agent not in self.known_agents:
            cap = UNKNOWN_HELD_PER_AGENT
            unknown = sum(self.held.count[a] for a in self.held.agents() if not self._is_agent(a))
            if unknown >= UNKNOWN_HELD_TOTAL:
                self._problem(
                    agent,
                    "held_dropped",
                    f"{kind} from an agent never seen with a valid status dropped: "
                    f"{UNKNOWN_HELD_TOTAL} such messages held already",
                )
                return True
        refusal = self.held.refusal(agent, len(data), cap)
        if refusal is not None:
            why = f"{kind} dropped before its clock offset was known: {refusal}"
            self._problem(agent, "held_dropped", why)
            return True
        self.held.put(agent, kind, data, received_ns)
        self.counts["held"] += 1
        return True

    def _release(self, agent: str) -> None:
        """Apply an agent's held messages in arrival order once their epoch's offset is known;
        forget them only after the store committed what they became. Messages of an epoch still
        unknown are held again (after the others), and the same situation is not re-examined."""
        assert self.held is not None
        n = self.held.held(agent)
        if not n or not (self._offset_known(agent) or self._measured(agent)):
            return
        status = self.agents.get(agent) or {}
        epochs = status.get("epochs")
        seen = (
            tuple(b for b, _ in self._measured(agent)),
            tuple(sorted(epochs)) if isinstance(epochs, dict) else (),
        )
        last = self._unready.get(agent)
        if last is not None and last[0] == seen and last[1] >= n:
            return
        unready: set[int | None] = set()
        left = 0
        while n > 0 and (rows := self.held.rows(agent, min(256, n))):  # bounded batches
            n -= len(rows)
            self._releasing = agent
            try:
                for _, kind, received_ns, payload in rows:
                    boots = self._boots_of(kind, payload)
                    if not all(self._ready(agent, b) for b in boots):
                        self.held.put(agent, kind, payload, received_ns)
                        unready |= boots
                        left += 1
                        continue
                    try:
                        if kind == "block":
                            self.accept_block(agent, payload)
                        elif kind == "gaps":
                            self.accept_gaps(agent, payload)
                        else:
                            outcome = self.submit_marker(agent, payload, received_ns)
                            if outcome.error is not None:
                                self._problem(agent, "held_marker_rejected", outcome.error)
                    except Exception as err:  # one bad held message must not block the rest
                        self._problem(agent, "held_apply_failed", f"{type(err).__name__}: {err}")
                self.store.flush()
            finally:
                self._releasing = None
            self.held.delete(agent, rows)
        if left:
            self._unready[agent] = (seen, left, unready)
        else:
            self._unready.pop(agent, None)
        self._check_held(agent)

    def check_held(self) -> None:
        """``_check_held`` for every agent with held messages (housekeeping calls this: an agent
        that went away, or never announced itself, gets no clock requests to trigger it)."""
        assert self.held is not None
        with self._lock:
            for agent in {*self.held.agents(), *self._unplaceable}:
                self._check_held(agent)

    def _check_held(self, agent: str) -> None:
        """Nothing held for ever without a word: a held message whose clock epoch still cannot
        be placed ``held_place_bound_s`` after it arrived is counted once (``held_unplaceable``,
        a problem), a marker's run is flagged ``held_unplaceable`` (its result is recomputed
        if it has one), and ``agent:<id>:held`` is down (``/healthz`` degraded, ``/metrics``)
        while any such message is held. It stays held: a later status reporting its epoch's
        anchor, or exchanges of that epoch, still place it (and the component comes back up)."""
        assert self.held is not None
        component = f"agent:{agent}:held"
        reported = self._unplaceable.get(agent)
        if not self.held.held(agent):
            if reported is not None:
                del self._unplaceable[agent]
                self.health.up(component)
            return
        cutoff = self.clock() - int(self.held_place_bound_s * 1e9)
        stale, epochs, runs = 0, set(), set()
        reported = reported if reported is not None else set()
        still: set[tuple[str, int, int]] = set()
        rows = self.held.older(agent, cutoff, HELD_SCAN)
        for _, kind, received_ns, payload in rows:
            boots = self._boots_of(kind, payload)
            if all(self._ready(agent, b) for b in boots):
                continue  # placeable: the next release applies it
            stale += 1
            epochs |= boots
            run = self._held_run(kind, payload)
            if run is not None:
                runs.add(run)
            key = (kind, received_ns, hash(payload))
            still.add(key)
            if key in reported:
                continue
            reported.add(key)
            self._problem(
                agent,
                "held_unplaceable",
                f"{kind} held {self.held_place_bound_s:.0f} s and still not placeable: the "
                f"offset of clock epoch(s) {sorted(b or 0 for b in boots)} is unknown and the "
                "agent reports no anchor linking it to a measured epoch",
            )
            if run is not None:
                self._flag_run(run, f"a marker from agent {agent} could not be placed")
        if not stale:
            self._unplaceable.pop(agent, None)
            self.health.up(component)
            return
        # forget the keys of messages placed meanwhile (a full scan saw every stale one)
        self._unplaceable[agent] = still if len(rows) < HELD_SCAN else reported
        # the reason names epochs and runs, not the count (a new reason is logged again)
        self.health.down(
            component,
            f"held messages not placeable after {self.held_place_bound_s:.0f} s: offset of clock "
            f"epoch(s) {sorted(b or 0 for b in epochs)[:8]} unknown; runs {sorted(runs)[:8]}",
        )

    @staticmethod
    def _held_run(kind: str, payload: bytes) -> str | None:
        """The run a held marker belongs to (None for other kinds, or if unreadable)."""
        if kind != "marker":
            return None
        try:
            obj = wire.decode_json(payload)
        except ValueError:
            return None
        run = obj.get("run") if isinstance(obj, dict) else None
        return run if isinstance(run, str) else None

    def _flag_run(self, run: str, detail: str) -> None:
        """Flag every phase of ``run`` ``held_unplaceable`` (a result it has is recomputed)."""
        self.store.put_run_flag(run, "held_unplaceable", detail)
        stamped = self.store.markers(run)
        if stamped and run not in self._pending and self.store.result(run) is not None:
            t = [m.t_ns for m in stamped]
            self._pending[run] = (min(t), max(t))
            self._pending_since[run] = self.clock()
            self._pending_devices[run] = None
            self.counts["results_requeued"] += 1

    # results ----------------------------------------------------------------------------------

    def _requeue_overlapping(self, t_begin_ns: int, t_end_ns: int) -> None:
        """A gap reported after a result was computed (an agent's drop report behind its
        backlog): every run it overlaps is computed again, so its figures carry the flag."""
        now = self.clock()
        for run, begin, end in self.store.results_overlapping(t_begin_ns, t_end_ns):
            if run not in self._pending:
                self._pending[run] = (begin, end)
                self._pending_since[run] = now
                self._pending_devices[run] = None
                self.counts["results_requeued"] += 1

    def _phase_devices(self, phase: Phase) -> str | tuple[str, ...]:
        """The devices a closed phase covers, as ``powerd.runs.phase_devices`` will decide when
        its result is computed: those its begin named, else its source's, else ``local``."""
        if phase.device is not None:
            return phase.device
        known = self.store.channels_by_device()
        return (
            phase.source
            if phase.source in known or phase.source in self.known_agents
            else (LOCAL_DEVICE)
        )

    def _scope_pending(self, run: str, devices: str | tuple[str, ...], fresh: bool) -> None:
        """Add a closed phase's devices to its pending run's coverage scope."""
        new = frozenset((devices,) if isinstance(devices, str) else devices)
        if fresh:
            self._pending_devices[run] = new
            return
        old = self._pending_devices.get(run, frozenset())
        self._pending_devices[run] = None if old is None else old | new

    def _scope_channels(self, devices: frozenset[str]) -> list[str]:
        """The channel ids of ``devices`` (the store's cached index by device)."""
        by_device = self.store.channels_by_device()
        return [c for d in devices for c in by_device.get(d, ())]

    def has_pending(self) -> bool:
        """Whether some closed phase still waits for its result (or a run with a result waits
        to be recomputed for samples that arrived after it, ``powerd.latedata``)."""
        return bool(self._pending) or (self.late is not None and self.late.waiting())

    def _requeue_late(self, now: int) -> None:
        """Runs whose result misses samples committed after it was computed (``powerd.latedata``)
        are computed again now: counted (``results_recomputed_late_data``), logged once per
        run, and the run's ``revised_after_late_data`` count goes up (a run flag the result
        carries, so ``powerd report`` and ``powerd audit`` recompute the same result)."""
        if self.late is None:
            return
        for run, indexed, devices in self.late.take_due(now):
            if run in self._pending:
                continue  # computed anyway, from everything committed by then
            span = indexed
            if span is None:
                stamped = self.store.markers(run)
                if not stamped:
                    continue
                span = (min(m.t_ns for m in stamped), max(m.t_ns for m in stamped))
            self._pending[run] = span
            # due at once: the late samples are committed
            self._pending_since[run] = now - int(self.result_grace_s * 1e9)
            self._pending_devices[run] = devices
            if self.store.result_json(run) is None:
                continue  # never stored (its computation failed): computed again, no revision
            revised = self.store.run_flags(run).get(LATE_DATA_FLAG, "0")
            n = (int(revised) if revised.isdigit() else 0) + 1
            self.store.put_run_flag(run, LATE_DATA_FLAG, str(n))
            self.counts["results_recomputed_late_data"] += 1
            self.health.problem(
                f"run:{run}",
                "results_recomputed_late_data",
                f"run {run}: samples arrived after its result was computed; recomputing and "
                f"resealing it (revision {n} for late data)",
            )

    def due_results(self) -> list[dict[str, Any]]:
        """Compute the runs whose closed phases are now covered by data (or waited long enough).

        Which runs are due is decided under the daemon's lock; their results are computed after
        it is released (the store has its own lock), so ingestion on the event loop is not held
        up while a fleet's results are computed, several a second (issue 16). With a
        ``result_worker`` they are computed in that process and only stored, sealed and
        published here; a run it cannot compute is computed here (counted)."""
        now = self.clock()
        due: list[str] = []
        spans: dict[str, tuple[int, int]] = {}
        devices_of: dict[str, frozenset[str] | None] = {}
        if self.late is not None:  # outside the lock: it may scan the store's markers
            self.late.check_older(now)
        with self._lock:
            self._requeue_late(now)
            latest: tuple[I64, int] | None = None  # every channel's: read at most once per call
            for run, (t_begin, t_end) in list(self._pending.items()):
                waited = now - self._pending_since[run] >= self.result_grace_s * 1e9
                if not waited:
                    devices = self._pending_devices.get(run)
                    scope: list[str] | None = None
                    if devices is not None:
                        scope = self._scope_channels(devices)
                        seen = self.timeline.latest_times(scope)
                        run_latest = (np.sort(seen[0]), seen[1])
                    else:
                        latest = self._latest_sorted() if latest is None else latest
                        run_latest = latest
                    if not self._covered(t_begin, t_end, run_latest, scope):
                        continue
                if self.run_busy is not None and self.run_busy(run):
                    continue  # its counter reads are under way (bounded by their timeouts)
                del self._pending[run], self._pending_since[run]
                devices_of[run] = self._pending_devices.pop(run, None)
                self._stored_in_run.pop((t_begin, t_end), None)
                due.append(run)
                spans[run] = (t_begin, t_end)
            if not due:
                return []
        # the samples that made them due, before any is computed: every block the timeline
        # showed was buffered in the store under the lock; committed outside it, so ingestion
        # does not wait for this commit (issue 16)
        self.store.flush()
        self._index_computing(due, spans, devices_of)
        out: list[dict[str, Any]] = []
        left = list(due)
        if self.result_worker is not None:
            try:
                for answer in self.result_worker.compute([Job(r, now) for r in due]):
                    left.remove(answer.run)
                    if answer.fallback:
                        with self._lock:
                            self._problem(
                                "local",
                                "result_worker_fallback",
                                f"run {answer.run}: computed in the daemon, the result worker "
                                f"died on it {DEATHS_PER_JOB} times",
                            )
                        self._compute_here(answer.run, now, out)
                    else:
                        self._seal_answer(answer, now, out)
            except WorkerClosed:  # the daemon stops: what was not answered stays pending
                with self._lock:
                    for run in left:
                        self._pending.setdefault(run, spans[run])
                        self._pending_since.setdefault(run, now)
                        self._pending_devices.setdefault(run, None)
                return out
            except OSError as err:  # no worker starts: the daemon computes, counted
                with self._lock:
                    self._problem(
                        "local",
                        "result_worker_failed",
                        f"{err}; {len(left)} runs computed in the daemon",
                    )
        for run in left:
            self._compute_here(run, now, out)
        return out

    def _index_computing(
        self,
        due: list[str],
        spans: dict[str, tuple[int, int]],
        devices_of: dict[str, frozenset[str] | None],
    ) -> None:
        """Runs about to be computed go into the late-data index (``powerd.latedata``): samples
        of theirs committed from now on may be missing from their results. After the flush
        that made them due (flushed again here, a no-op unless something came in since), so
        that flush's own samples, which the results do include, do not count as late."""
        if self.late is None:
            return
        self.store.flush()
        for run in due:
            self.late.computing(run, spans[run], devices_of[run])

    def _compute_here(self, run: str, now: int, out: list[dict[str, Any]]) -> None:
        """Compute, store, seal and publish one due run in this process."""
        with self.store.samples_memo():  # each window read once for figures and manifest
            try:
                result = compute_run(self.store, run, self.idle_power_w, self.primary)
            except Exception as err:
                with self._lock:
                    self._problem("local", "result_failed", f"run {run}: {err}")
                return
            self.store.put_result(result, now)
            try:
                seal_manifest(
                    self.store,
                    result,
                    now,
                    self.audit_context,
                    self.offsets_json(result_agents(result)),
                    self.idle_power_w,
                    self.primary,
                )
            except Exception as err:  # the result stands, its audit trail is missing
                with self._lock:
                    self._problem("local", "manifest_failed", f"run {run}: {err}")
        self._publish(run, result, out)

    def _seal_answer(self, answer: Answer, now: int, out: list[dict[str, Any]]) -> None:
        """Store, seal and publish a result the worker computed (``powerd.result_worker``): the
        manifest gets this daemon's clock state of the result's agents, as in-process."""
        run, result = answer.run, answer.result
        if result is None:
            with self._lock:
                self._problem("local", "result_failed", f"run {run}: {answer.error}")
            return
        self.store.put_result(result, now)
        try:
            if answer.manifest is None:
                raise ValueError(answer.manifest_error)
            agents = self.offsets_json(result_agents(result))
            self.store.put_manifest(run, now, with_clock_sync(answer.manifest, agents))
        except Exception as err:  # the result stands, its audit trail is missing
            with self._lock:
                self._problem("local", "manifest_failed", f"run {run}: {err}")
        self._publish(run, result, out)

    def _publish(self, run: str, result: dict[str, Any], out: list[dict[str, Any]]) -> None:
        if self.late is not None:
            self.late.sealed(result)
        with self._lock:
            self.counts["results"] += 1
        out.append(result)
        # published as each is sealed, not after the whole batch (a fleet's batch is many);
        # a failing listener must not keep the rest of the batch, already taken off the
        # pending list, from being computed
        for listener in self.result_listeners:
            try:
                listener(result)
            except Exception as err:
                with self._lock:
                    self._problem("local", "result_listener_failed", f"run {run}: {err}")

    def _latest_sorted(self) -> tuple[I64, int]:
        """Every channel's latest sample time, sorted, and how many channels have none yet:
        read once per ``due_results`` call, so each pending run's coverage check costs two
        binary searches, not a pass over every channel of every agent (issue 16: thousands of
        channels, hundreds of pending runs)."""
        times, empty = self.timeline.latest_times()
        return np.sort(times), empty

    def _covered(
        self,
        t_begin_ns: int,
        t_end_ns: int,
        latest: tuple[I64, int],
        scope: list[str] | None = None,
    ) -> bool:
        """Every channel that was sampling during the run has a sample at or after its end
        (channels silent since before the run, e.g. an agent long gone, are not waited for).
        ``latest``: ``_latest_sorted()``, or the same over ``scope`` (the channels of the run's
        devices, when known); a live channel (latest >= begin) short of the end is one whose
        latest time lies in [begin, end)."""
        times, empty = latest
        live_from = int(np.searchsorted(times, t_begin_ns, "left"))
        if live_from == times.size:
            return False
        if int(np.searchsorted(times, t_end_ns, "left")) > live_from:
            return False
        if empty == 0:
            # Every channel has had a sample since the start, and every stored block went to
            # the timeline too, so a channel with stored data in the run has its latest sample
            # at or after the run's begin: checked above. The store is asked only while some
            # channel has none (after a restart), where it does tell more.
            return True
        # After a restart the timeline starts empty: a channel with stored samples in the run
        # (e.g. an agent whose backlog is still on its way) must reach the end too. Looked up
        # once per pending window, not at every poll.
        key = (t_begin_ns, t_end_ns)
        if key not in self._stored_in_run:
            self._stored_in_run[key] = self.store.channels_with_data(t_begin_ns, t_end_ns)
        wanted = None if scope is None else set(scope)
        for cid in self._stored_in_run[key]:
            if wanted is not None and cid not in wanted:
                continue
            last = self.timeline.latest(cid) if cid in self.timeline.channels else (t_end_ns, 0)
            if last is None or last[0] < t_end_ns:
                return False
        return True

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

    def offsets_json(self, agents: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Each agent's clock offset now (those of ``agents`` only, when given: a result's
        manifest holds the agents its phases cover, not the whole fleet; issue 16)."""
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            if agents is None:
                chosen = list(self.offsets.items())
            else:
                chosen = [(a, self.offsets[a]) for a in sorted(set(agents)) if a in self.offsets]
            for agent, est in chosen:
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
