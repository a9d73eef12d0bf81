"""Soak: the whole system for a long time with faults injected at random, checked against truth.

Real processes on loopback, as deployed (tests/faults.py): Debian's mosquitto with persistence
(the shipped mosquitto/powerd.conf when present), ``powerd run`` sampling a simulated Yokogawa
WT310 (``powerd sim wt310``) on a pseudo-terminal, and ``powerd-agent`` sampling a ``sim`` ramp
at 200 Hz. A harness thread keeps running phases
(begin, a few seconds, end with a count), alternately through the agent's local HTTP relay (its
clock offset applies; the phase covers the agent's channel) and published directly on the broker
with ``powerd.client`` over MQTT (source ``soak-harness``; the phase covers the daemon's meter;
the client keeps each marker until the daemon confirms it stored it). Meanwhile, at random
(seeded) times, one of these faults: the broker SIGKILLed and restarted, the daemon SIGKILLed and
restarted on its state dir, the agent SIGKILLed and restarted on its spool (by default with its
clock stepped to -1, 0 or +1 s by libfaketime, as after an NTP correction or on another boot), the
meter simulator killed (the cable pulled) and restarted (replugged); every kind once per round, in
a random order. The daemon's RSS and /healthz are sampled every few seconds.

At the end the daemon is stopped and its SQLite store read (read-only):

- samples: the sim source emits every grid point k × 5 ms, so every agent sample that should be
  there is known; a missing run of them is a *gap*, counted as ``flagged`` (a gap record in the
  store covers it), ``producer down`` (it lies within a fault of the process that samples it:
  the agent for the agent channel, the meter or the daemon for the meter channels; unavoidable
  but should be flagged) or ``lost`` (nothing explains it). The meter's updates (every 0.1 s) are
  counted the same way from the spacing of stored updates. Duplicates: a grid point stored twice
  (or a sample moved onto another one by a wrong clock offset).
- markers: every marker the harness handed over (the agent answered 2xx, or the MQTT client
  published it) must be in the store; stored twice is a duplicate.
- results: every phase whose two markers were handed over must have a result, within its stated
  uncertainty of the waveform's exact energy over the result's window (``truth_energy_j``; for
  the agent, on the clock it really had then). Each edge must lie where the harness sent it
  (agent relay: within the HTTP round trip); the agent's estimated clock offset is compared with
  the true one.

``--quick`` runs 3 minutes with a fault every ~30 s; the default an hour with one every ~90 s;
``--seconds`` and ``--fault-every`` override. Writes bench/results/soak.json (quick:
bench/results/quick/soak.json). Not pinned to one core: broker, daemon, agent and simulator are
separate processes.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib
import numpy as np

sys.path.insert(0, str(benchlib.ROOT))

from powerd.client import PowerdClient, PowerdClientError
from tests.faults import (
    FAKETIME_LIB,
    AgentProc,
    DaemonProc,
    MeterSimProc,
    Proc,
    expected_grid,
    make_broker,
    sim_spec,
    truth_energy_j,
)

NAME = "soak"
AGENT_ID = "soak-edge"
# a slow ramp: a phase placed a second off has a visibly different true energy (a fast
# periodic waveform would hide it). Its period is no multiple of the 5 ms sample step, so its
# drop falls anywhere between two samples, as a real load's would: with 7.3 s it fell exactly
# on a sample every time, the trapezoid's worst case in every phase holding one (a phase-locked
# load, which the accuracy benchmark covers on its own rows)
AGENT_SIM = "sim:ramp,low=3,high=9,period=7.3013,rate=200"
AGENT_CHANNEL = f"{AGENT_ID}/sim:ramp"
METER_WAVEFORM = "square,high=40,low=10,period=4,duty=0.5"
METER_RATE_S = 0.1
HARNESS_SOURCE = "soak-harness"
FAULT_KINDS = ("broker", "daemon", "agent", "meter")
RESTART_SLACK_NS = 3_000_000_000  # a restarted producer's first sample may come this late
SETTLE_S = 20.0
MISPLACED_MS = 100.0  # a phase edge this far from when the harness sent it is misplaced
CLOCK_STEPS_S = (-1.0, 0.0, 1.0)  # the agent's clock offset after a restart (multiples of 5 ms)


def now_ns() -> int:
    return time.time_ns()


# --- the marker harness ---------------------------------------------------------------------------


@dataclass
class PhaseLog:
    run: str
    route: str  # "agent" (HTTP relay) or "mqtt" (direct publish)
    begin_ok: bool = False
    end_ok: bool = False
    count: int = 0
    t_begin_ns: int = 0
    t_end_ns: int = 0
    errors: list[str] = field(default_factory=list)


class MarkerHarness(threading.Thread):
    """Runs phases back to back until stopped, never leaving one open."""

    def __init__(self, agent: AgentProc, broker_port: int, rng: random.Random) -> None:
        super().__init__(name="markers", daemon=True)
        self.agent = agent
        self.rng = rng
        self.stop_flag = threading.Event()
        self.phases: list[PhaseLog] = []
        self.errors: list[str] = []
        # one client for every direct-MQTT phase (its run is set per phase): it keeps each
        # marker until the daemon confirms it stored it, sending it again meanwhile
        self.mqtt = PowerdClient(
            run="soak",
            source=HARNESS_SOURCE,
            transport="mqtt",
            mqtt_port=broker_port,
            confirm_timeout_s=120.0,
        )

    def _via_agent(self, marker: dict[str, Any], log: PhaseLog) -> int | None:
        """POST to the agent's relay, retrying while it is down (bounded); the harness's clock
        just before the accepted attempt (the agent stamps the marker on receipt), else None."""
        deadline = time.monotonic() + 60.0
        last = "no attempt"
        while time.monotonic() < deadline:
            t_ns = now_ns()
            try:
                self.agent.post_marker(marker)
                return t_ns
            except (OSError, AssertionError) as err:
                last = str(err)[:200]
            time.sleep(0.2)
        log.errors.append(f"agent relay: {last}")
        return None

    def _via_mqtt(self, marker: dict[str, Any], log: PhaseLog) -> int | None:
        """Hand the marker to the client (bounded retries while the broker is unreachable at
        connect); once handed over the client sends it until the daemon confirms it. Its t_ns."""
        t_ns = now_ns()
        self.mqtt.run = log.run
        deadline = time.monotonic() + 60.0
        last = "no attempt"
        while time.monotonic() < deadline:
            try:
                self.mqtt.mark(
                    marker["event"], marker["phase"], count=marker.get("count"), t_ns=t_ns
                )
                return t_ns
            except PowerdClientError as err:
                last = str(err)[:200]
                # a refusal of an earlier marker surfaces here: never let a retry hide it
                self.errors.append(f"{log.run}: {last}")
                if any(run == log.run for run, _ in self.mqtt.unconfirmed):
                    return t_ns  # published, not yet acknowledged: it is sent again until stored
            time.sleep(0.2)
        log.errors.append(f"mqtt: {last}")
        return None

    def _send(self, marker: dict[str, Any], log: PhaseLog) -> int | None:
        if log.route == "agent":
            return self._via_agent(marker, log)
        return self._via_mqtt(marker, log)

    def _phase(self, log: PhaseLog) -> None:
        base = {"v": 1, "run": log.run, "phase": "work"}
        t_begin = self._send(base | {"event": "begin", "seq": 1}, log)
        log.begin_ok = t_begin is not None
        log.t_begin_ns = t_begin or 0
        if log.begin_ok:
            time.sleep(self.rng.uniform(1.0, 4.0))
            log.count = self.rng.randint(1, 1000)
            t_end = self._send(base | {"event": "end", "seq": 2, "count": log.count}, log)
            log.end_ok = t_end is not None
            log.t_end_ns = t_end or 0

    def run(self) -> None:
        i = 0
        while not self.stop_flag.is_set():
            route = "agent" if i % 2 == 0 else "mqtt"
            log = PhaseLog(run=f"soak-{route}-{i:05d}", route=route)
            self.phases.append(log)
            try:
                self._phase(log)
            except Exception as err:  # the harness must outlive anything; the log says what
                log.errors.append(f"harness: {err!r}"[:300])
            time.sleep(self.rng.uniform(0.1, 0.5))
            i += 1

    def close(self) -> None:
        self.stop_flag.set()
        self.join(90)
        try:
            self.mqtt.close()  # waits for the daemon's last confirmations
        except PowerdClientError as err:
            self.errors.append(str(err))


# --- daemon RSS and health ------------------------------------------------------------------------


class Monitor(threading.Thread):
    """Samples the daemon's RSS (/proc/<pid>/status) and /healthz status every ``every_s``."""

    def __init__(self, daemon: DaemonProc, agent: AgentProc, every_s: float, t0_ns: int) -> None:
        super().__init__(name="monitor", daemon=True)
        self.daemon_proc, self.agent, self.every_s, self.t0_ns = daemon, agent, every_s, t0_ns
        self.samples: list[dict[str, Any]] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.wait(self.every_s):
            health = self.daemon_proc.health()
            self.samples.append(
                {
                    "t_s": round((now_ns() - self.t0_ns) / 1e9, 1),
                    "daemon_pid": self.daemon_proc.pid,
                    "daemon_rss_kib": self.daemon_proc.rss_kib(),
                    "agent_rss_kib": self.agent.rss_kib(),
                    "health": None if health is None else health.get("status"),
                    "down": None if health is None else health.get("down"),
                }
            )


# --- faults ---------------------------------------------------------------------------------------


def inject(kind: str, parts: dict[str, Any], down_s: float) -> dict[str, Any]:
    """SIGKILL one part, wait ``down_s``, start it again and wait until it serves."""
    entry: dict[str, Any] = {"kind": kind, "down_s": round(down_s, 2), "kill_ns": now_ns()}
    try:
        if kind == "broker":
            parts["broker"].stop(kill=True)
            time.sleep(down_s)
            entry["restart_ns"] = now_ns()
            parts["broker"].start()  # waits for the port
        else:
            proc: Proc = parts[kind]
            proc.kill()
            time.sleep(down_s)
            entry["restart_ns"] = now_ns()
            proc.start()
            if kind == "daemon":
                parts["daemon"].wait_healthy(30.0)
            elif kind == "agent":
                parts["agent"].wait_http(30.0)
        entry["ready_ns"] = now_ns()
        entry["note"] = "restarted"
    except Exception as err:  # a part that does not come back is a finding, not a crash
        entry["ready_ns"] = now_ns()
        entry["note"] = f"did not come back: {err}"[:300]
    return entry


# --- analysis -------------------------------------------------------------------------------------


def read_blocks(db: sqlite3.Connection, channel: str, t0: int, t1: int) -> np.ndarray:
    rows = db.execute(
        "SELECT t FROM blocks WHERE channel=? AND t_last_ns>=? AND t_first_ns<=?",
        (channel, t0, t1),
    ).fetchall()
    if not rows:
        return np.zeros(0, dtype=np.int64)
    t = np.concatenate([np.frombuffer(r[0], dtype="<i8") for r in rows])
    return np.sort(t[(t >= t0) & (t <= t1)])


def read_gaps(db: sqlite3.Connection, channel: str) -> list[tuple[int, int | None, str]]:
    has = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='gaps'").fetchone()
    if not has:
        return []
    rows = db.execute(
        "SELECT t_begin_ns, t_end_ns, reason FROM gaps WHERE channel=?", (channel,)
    ).fetchall()
    return [(int(a), None if b is None else int(b), str(r)) for a, b, r in rows]


def overlaps(a0: int, a1: int, b0: int, b1: int | None) -> bool:
    return a0 <= (b1 if b1 is not None else a1) and b0 <= a1


def classify(
    holes: list[tuple[int, int, int]],
    flagged: list[tuple[int, int | None, str]],
    down: list[tuple[int, int]],
) -> dict[str, Any]:
    """Sort holes (t_first_missing, t_last_missing, n) into flagged / producer down / lost."""
    out: dict[str, Any] = {
        "flagged": 0,
        "producer_down": 0,
        "lost": 0,
        "holes": len(holes),
        "lost_holes": [],
    }
    for a, b, n in holes:
        if any(overlaps(a, b, g0, g1) for g0, g1, _ in flagged):
            out["flagged"] += n
        elif any(overlaps(a, b, d0, d1) for d0, d1 in down):
            out["producer_down"] += n
        else:
            out["lost"] += n
            out["lost_holes"].append({"t_ns": a, "duration_s": round((b - a) / 1e9, 3), "n": n})
    out["lost_holes"] = out["lost_holes"][:20]
    return out


def grid_accounting(
    db: sqlite3.Connection, t0: int, t1: int, down: list[tuple[int, int]]
) -> dict[str, Any]:
    """The agent's sim channel: every grid point in [t0, t1] stored exactly once?"""
    step = sim_spec(AGENT_SIM).step_ns
    want = expected_grid(AGENT_SIM, t0, t1)
    t = read_blocks(db, AGENT_CHANNEL, t0 - step, t1 + step)
    # agent times are moved by a clock offset of microseconds: the nearest grid point is exact
    k = np.round(t / step).astype(np.int64)
    k = k[(k >= want[0]) & (k <= want[-1])]
    uniq = np.unique(k)
    missing = np.setdiff1d(want, uniq, assume_unique=True)
    holes: list[tuple[int, int, int]] = []
    if missing.size:
        breaks = np.flatnonzero(np.diff(missing) != 1)
        starts = np.concatenate([[0], breaks + 1])
        ends = np.concatenate([breaks, [missing.size - 1]])
        holes = [
            (int(missing[s] * step), int(missing[e] * step), int(e - s + 1))
            for s, e in zip(starts, ends, strict=True)
        ]
    return {
        "channel": AGENT_CHANNEL,
        "expected": int(want.size),
        "stored": int(uniq.size),
        "missing": int(missing.size),
        "duplicates": int(k.size - uniq.size),
        **classify(holes, read_gaps(db, AGENT_CHANNEL), down),
    }


def spacing_accounting(
    db: sqlite3.Connection, channel: str, t0: int, t1: int, down: list[tuple[int, int]]
) -> dict[str, Any]:
    """A meter channel (updates every METER_RATE_S, host-stamped): missing updates from spacing."""
    period = int(METER_RATE_S * 1e9)
    t = read_blocks(db, channel, t0, t1)
    expected = int((t1 - t0) // period)
    if t.size == 0:
        holes = [(t0, t1, expected)]
        dups = 0
    else:
        edges = np.concatenate([[t0], t, [t1]])
        d = np.diff(edges)
        holes = [
            (int(edges[i]), int(edges[i + 1]), int(np.rint(d[i] / period)) - 1)
            for i in np.flatnonzero(d > 1.5 * period)
        ]
        dups = int(np.count_nonzero(np.diff(t) < period // 2))
    missing = sum(n for _, _, n in holes)
    return {
        "channel": channel,
        "expected": expected,
        "stored": int(t.size),
        "missing": missing,
        "duplicates": dups,
        **classify(holes, read_gaps(db, channel), down),
    }


def marker_accounting(db: sqlite3.Connection, phases: list[PhaseLog]) -> dict[str, Any]:
    rows = db.execute("SELECT source, run, marker FROM markers").fetchall()
    stored: dict[tuple[str, str, str], int] = {}
    for source, run, text in rows:
        event = str(json.loads(text).get("event"))
        key = (str(source), str(run), event)
        stored[key] = stored.get(key, 0) + 1
    sent = lost = dups = not_handed = 0
    lost_list = []
    for p in phases:
        source = AGENT_ID if p.route == "agent" else HARNESS_SOURCE
        for event, ok in (("begin", p.begin_ok), ("end", p.end_ok)):
            if event == "end" and not p.begin_ok:
                continue
            if not ok:
                not_handed += 1
                continue
            sent += 1
            n = stored.get((source, p.run, event), 0)
            if n == 0:
                lost += 1
                lost_list.append(f"{p.run}/{event}")
            dups += max(0, n - 1)
    return {
        "sent": sent,
        "applied": sent - lost,
        "lost": lost,
        "duplicates": dups,
        "not_handed_over": not_handed,
        "lost_markers": lost_list[:30],
    }


def agent_truth_j(t_begin_ns: int, t_end_ns: int, offsets: list[tuple[int, float]]) -> float:
    """The agent sim's energy over [begin, end] of true (daemon) time: the agent's clock ran
    ``offset`` ahead from each restart on (libfaketime), so each piece is shifted by its own."""
    total = 0.0
    for i, (from_ns, off_s) in enumerate(offsets):
        to_ns = offsets[i + 1][0] if i + 1 < len(offsets) else t_end_ns
        a, b = max(t_begin_ns, from_ns), min(t_end_ns, to_ns)
        if a < b:
            off_ns = round(off_s * 1e9)
            total += truth_energy_j(AGENT_SIM, a + off_ns, b + off_ns)
    return total


def offset_at(t_ns: int, offsets: list[tuple[int, float]]) -> float:
    return next((off for from_ns, off in reversed(offsets) if from_ns <= t_ns), 0.0)


def result_accounting(
    db: sqlite3.Connection, phases: list[PhaseLog], offsets: list[tuple[int, float]]
) -> dict[str, Any]:
    results = {
        str(run): json.loads(text) for run, text in db.execute("SELECT run, json FROM results")
    }
    meter_wf = sim_spec(METER_WAVEFORM).waveform
    rows = []
    missing = []
    for p in phases:
        if not (p.begin_ok and p.end_ok):
            continue
        res = results.get(p.run)
        if res is None:
            missing.append(p.run)
            continue
        for ph in res.get("phases", []):
            tb, te = int(ph["t_begin_ns"]), int(ph["t_end_ns"])
            clock_err_ms = None
            if p.route == "agent":
                truth = agent_truth_j(tb, te, offsets)
                # daemon time = agent time + offset_ns, so offset_ns should be -(true offset);
                # the phase's timing carries its end marker's offset (a phase across an agent
                # restart has another at its begin)
                est = ph.get("timing", {}).get("offset_ns")
                if est is not None:
                    true_ns = round(offset_at(te, offsets) * 1e9)
                    clock_err_ms = (int(est) + true_ns) / 1e6
            else:
                truth = float(meter_wf.energy_j(tb, te))
            # the harness's clock at each edge (agent relay: just before the accepted POST)
            edge_err_ms = max(abs(tb - p.t_begin_ns), abs(te - p.t_end_ns)) / 1e6
            energy, unc = ph.get("energy_j"), ph.get("uncertainty_j")
            err = None if energy is None else float(energy) - truth
            rows.append(
                {
                    "run": p.run,
                    "route": p.route,
                    "truth_j": truth,
                    "energy_j": energy,
                    "uncertainty_j": unc,
                    "error_j": err,
                    "within": err is not None and unc is not None and abs(err) <= float(unc),
                    "flags": ph.get("flags", []),
                    "edge_error_ms": edge_err_ms,
                    "clock_error_ms": clock_err_ms,
                }
            )
    judged = [r for r in rows if r["error_j"] is not None]
    within = [r for r in judged if r["within"]]
    outside_unflagged = [r for r in judged if not r["within"] and not r["flags"]]
    worst = max(
        judged,
        key=lambda r: abs(r["error_j"]) / max(r["uncertainty_j"] or 1e-12, 1e-12),
        default=None,
    )
    return {
        "phases_complete": len(rows) + len(missing),
        "results": len(rows),
        "missing_results": len(missing),
        "missing_runs": missing[:30],
        "no_figure": len(rows) - len(judged),
        "flagged": sum(1 for r in rows if r["flags"]),
        "within_uncertainty": len(within),
        "fraction_within": (len(within) / len(judged)) if judged else None,
        "outside_and_unflagged": len(outside_unflagged),
        "worst": worst,
        "flags_seen": sorted({f for r in rows for f in r["flags"]}),
        "max_edge_error_ms": max((r["edge_error_ms"] for r in rows), default=None),
        "misplaced_edges": sum(1 for r in rows if r["edge_error_ms"] > MISPLACED_MS),
        "max_clock_error_ms": max(
            (abs(r["clock_error_ms"]) for r in rows if r["clock_error_ms"] is not None),
            default=None,
        ),
        "outside": [r for r in judged if not r["within"]][:30],
    }


def down_intervals(faults: list[dict[str, Any]], kinds: tuple[str, ...]) -> list[tuple[int, int]]:
    return [(f["kill_ns"], f["ready_ns"] + RESTART_SLACK_NS) for f in faults if f["kind"] in kinds]


def rss_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    rss = [(s["t_s"], s["daemon_rss_kib"]) for s in samples if s["daemon_rss_kib"]]
    if not rss:
        return {}
    values = [v for _, v in rss]
    return {
        "first_mib": round(values[0] / 1024, 1),
        "max_mib": round(max(values) / 1024, 1),
        "last_mib": round(values[-1] / 1024, 1),
        "samples": len(values),
        "degraded_samples": sum(1 for s in samples if s["health"] == "degraded"),
        "unreachable_samples": sum(1 for s in samples if s["health"] is None),
    }


# --- the run --------------------------------------------------------------------------------------


def soak(
    seconds: float, fault_every_s: float, seed: int, work: Path, clock_steps: bool
) -> dict[str, Any]:
    rng = random.Random(seed)
    offsets: list[tuple[int, float]] = [(0, 0.0)]  # (from true ns, agent clock offset s)
    broker = make_broker(work / "broker", persistence=True)
    meter = MeterSimProc("meter", work, waveform=METER_WAVEFORM)
    broker.start()
    meter.start()
    daemon = DaemonProc(
        "daemon",
        work,
        mqtt_port=broker.port,
        probes=(f"wt300:{meter.link},rate={METER_RATE_S},vrange=15,irange=5",),
    )
    agent = AgentProc("agent", work, agent_id=AGENT_ID, mqtt_port=broker.port, probes=(AGENT_SIM,))
    parts: dict[str, Any] = {"broker": broker, "daemon": daemon, "agent": agent, "meter": meter}
    faults: list[dict[str, Any]] = []
    harness: MarkerHarness | None = None
    monitor: Monitor | None = None
    t0_wall = now_ns()
    try:
        daemon.start()
        daemon.wait_healthy(30.0)
        agent.start()
        agent.wait_http(30.0)
        time.sleep(2.0)  # first clock exchanges and samples
        t_start = now_ns()
        monitor = Monitor(daemon, agent, 2.0 if seconds <= 600 else 5.0, t_start)
        monitor.start()
        harness = MarkerHarness(agent, broker.port, random.Random(seed + 1))
        harness.start()
        end = time.monotonic() + seconds
        quiet_s = min(10.0, seconds / 4)  # no fault this close to the end: let parts recover
        next_fault = time.monotonic() + min(10.0, fault_every_s) * rng.uniform(0.5, 1.5)
        pending: list[str] = []
        while True:
            now = time.monotonic()
            if next_fault >= end - quiet_s or now >= end:
                time.sleep(max(0.0, end - time.monotonic()))
                break
            time.sleep(max(0.0, next_fault - now))
            if not pending:  # every kind once per round, in a random order
                pending = rng.sample(FAULT_KINDS, len(FAULT_KINDS))
            kind = pending.pop()
            new_off = offsets[-1][1]
            if kind == "agent" and clock_steps:
                new_off = rng.choice([o for o in CLOCK_STEPS_S if o != new_off])
                agent.fake_offset_s = new_off or None
            entry = inject(kind, parts, rng.uniform(1.0, 5.0))
            if kind == "agent" and clock_steps:
                entry["agent_clock_offset_s"] = new_off
                offsets.append((entry["restart_ns"], new_off))
            entry["t_s"] = round((entry["kill_ns"] - t_start) / 1e9, 1)
            print(
                f"soak: {entry['t_s']:7.1f} s  {kind:<6} down {entry['down_s']} s: {entry['note']}",
                flush=True,
            )
            faults.append(entry)
            next_fault = time.monotonic() + fault_every_s * rng.uniform(0.5, 1.5)
        t_stop = now_ns()
        harness.close()
        # let spooled samples and markers arrive and results be computed
        settle_end = time.monotonic() + SETTLE_S
        wanted = [p.run for p in harness.phases if p.begin_ok and p.end_ok]
        while time.monotonic() < settle_end:
            try:
                if all(daemon.run_result(r) for r in wanted[-3:]):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        time.sleep(3.0)
        monitor.stop_flag.set()
        monitor.join(10)
        alive = {
            name: (p.alive() if isinstance(p, Proc) else p.proc is not None)
            for name, p in parts.items()
        }
    finally:
        if harness is not None and harness.is_alive():
            harness.close()
        if monitor is not None:
            monitor.stop_flag.set()
        for p in (agent, daemon, meter):
            p.stop()
        broker.stop(kill=True)
    db = sqlite3.connect(f"file:{daemon.db}?mode=ro", uri=True)
    try:
        t0, t1 = t_start, t_stop
        samples = [
            grid_accounting(db, t0, t1, down_intervals(faults, ("agent",))),
            *[
                spacing_accounting(db, ch, t0, t1, down_intervals(faults, ("meter", "daemon")))
                for ch in ("wt300:meter:p1", "wt300:meter:e1")
            ],
        ]
        markers = marker_accounting(db, harness.phases)
        results = result_accounting(db, harness.phases, offsets)
    finally:
        db.close()
    for s in samples:
        for hole in s["lost_holes"]:
            hole["t_s"] = round((hole["t_ns"] - t_start) / 1e9, 3)
    for f in faults:
        for key in ("kill_ns", "restart_ns", "ready_ns"):
            if key in f:
                f[key.replace("_ns", "_s")] = round((f.pop(key) - t_start) / 1e9, 2)
    return {
        "seconds": round((t_stop - t_start) / 1e9, 1),
        "t_start_ns": t_start,  # every *_s figure is relative to this (UTC ns)
        "fault_every_s": fault_every_s,
        "seed": seed,
        "clock_steps": clock_steps,
        "setup_s": round((t_start - t0_wall) / 1e9, 1),
        "alive_at_end": alive,
        "samples": samples,
        "markers": markers,
        "results": results,
        "rss": rss_summary(monitor.samples if monitor else []),
        "monitor": monitor.samples if monitor else [],
        "faults": faults,
        "phases": len(harness.phases),
        "phase_log": [
            {
                "run": p.run,
                "begin_ok": p.begin_ok,
                "end_ok": p.end_ok,
                "t_begin_s": round((p.t_begin_ns - t_start) / 1e9, 3) if p.begin_ok else None,
                "t_end_s": round((p.t_end_ns - t_start) / 1e9, 3) if p.end_ok else None,
            }
            for p in harness.phases
        ],
        "harness_errors": ([e for p in harness.phases for e in p.errors] + harness.errors)[:30],
    }


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g} ms"


def markdown(r: dict[str, Any]) -> str:
    s_rows = [
        [
            f"`{s['channel']}`",
            s["expected"],
            s["stored"],
            s["missing"],
            s["flagged"],
            s["producer_down"],
            s["lost"],
            s["duplicates"],
        ]
        for s in r["samples"]
    ]
    m, res, rss = r["markers"], r["results"], r["rss"]
    worst = res["worst"]
    worst_txt = (
        "-"
        if worst is None
        else f"{worst['error_j']:+.3g} J (±{worst['uncertainty_j']:.3g} J stated, "
        f"{worst['route']}, flags {worst['flags'] or 'none'})"
    )
    frac = res["fraction_within"]
    counts: dict[str, int] = {}
    for f in r["faults"]:
        counts[f["kind"]] = counts.get(f["kind"], 0) + 1
    lines = [
        benchlib.md_table(
            [
                "samples",
                "expected",
                "stored",
                "missing",
                "flagged",
                "producer down",
                "lost",
                "duplicates",
            ],
            s_rows,
        ),
        "",
        benchlib.md_table(
            ["figure", "value"],
            [
                [
                    "run",
                    f"{r['seconds']:.0f} s, seed {r['seed']}, {len(r['faults'])} faults "
                    f"({', '.join(f'{k} {n}' for k, n in sorted(counts.items())) or 'none'})",
                ],
                ["phases run", r["phases"]],
                [
                    "markers sent / applied / lost / duplicated",
                    f"{m['sent']} / {m['applied']} / {m['lost']} / {m['duplicates']}"
                    + (
                        f" ({m['not_handed_over']} never handed over)"
                        if m["not_handed_over"]
                        else ""
                    ),
                ],
                ["results / missing", f"{res['results']} / {res['missing_results']}"],
                [
                    "results within uncertainty of truth",
                    "-" if frac is None else f"{res['within_uncertainty']} ({100 * frac:.1f} %)",
                ],
                ["outside and not flagged", res["outside_and_unflagged"]],
                ["worst error", worst_txt],
                ["flags seen", ", ".join(res["flags_seen"]) or "none"],
                [
                    f"phase edges > {MISPLACED_MS:g} ms from the harness's clock (worst)",
                    f"{res['misplaced_edges']} ({fmt_ms(res['max_edge_error_ms'])})",
                ],
                ["worst agent clock-offset error", fmt_ms(res["max_clock_error_ms"])],
                [
                    "daemon RSS first / max / last",
                    f"{rss.get('first_mib', '-')} / {rss.get('max_mib', '-')} / "
                    f"{rss.get('last_mib', '-')} MiB",
                ],
                [
                    "/healthz degraded / unreachable (of samples)",
                    f"{rss.get('degraded_samples', '-')} / {rss.get('unreachable_samples', '-')} "
                    f"of {rss.get('samples', '-')}",
                ],
            ],
            "ll",
        ),
        "",
        benchlib.md_table(
            ["t (s)", "fault", "down (s)", "back after (s)", "outcome"],
            [
                [
                    f"{f['t_s']:.1f}",
                    f["kind"],
                    f["down_s"],
                    f"{f['ready_s'] - f['t_s']:.1f}",
                    f["note"]
                    + (
                        f"; agent clock now {f['agent_clock_offset_s']:+g} s"
                        if "agent_clock_offset_s" in f
                        else ""
                    ),
                ]
                for f in r["faults"]
            ],
            "rlrrl",
        ),
    ]
    return "\n".join(lines)


def rss_plot(r: dict[str, Any], quick: bool) -> str | None:
    """Daemon (and agent) RSS over time with a line at each fault; None without matplotlib."""
    plt = benchlib.pyplot()
    points = [m for m in r["monitor"] if m["daemon_rss_kib"]]
    if plt is None or not points:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.plot(
        [m["t_s"] for m in points], [m["daemon_rss_kib"] / 1024 for m in points], label="daemon"
    )
    agent = [m for m in r["monitor"] if m["agent_rss_kib"]]
    ax.plot([m["t_s"] for m in agent], [m["agent_rss_kib"] / 1024 for m in agent], label="agent")
    colours = {"broker": "tab:red", "daemon": "tab:purple", "agent": "tab:green", "meter": "k"}
    for kind, colour in colours.items():
        for i, f in enumerate(x for x in r["faults"] if x["kind"] == kind):
            ax.axvline(
                f["t_s"], color=colour, lw=0.8, ls=":", label=f"{kind} killed" if i == 0 else None
            )
    ax.set(xlabel="time (s)", ylabel="RSS (MiB)", title="RSS through the faults")
    ax.legend(fontsize=7, ncol=3)
    return str(benchlib.save_plot(fig, NAME, quick))


def verdict(r: dict[str, Any]) -> str:
    lost = sum(s["lost"] for s in r["samples"])
    unflagged = sum(s["producer_down"] for s in r["samples"])
    dups = sum(s["duplicates"] for s in r["samples"]) + r["markers"]["duplicates"]
    res = r["results"]
    frac = res["fraction_within"]
    return (
        f"{len(r['faults'])} faults in {r['seconds']:.0f} s: {lost} samples lost, {unflagged} "
        f"missing while a producer was down without a gap flag, {r['markers']['lost']} of "
        f"{r['markers']['sent']} markers lost, {dups} duplicates, {res['missing_results']} "
        f"results missing, "
        + ("no results" if frac is None else f"{100 * frac:.0f} % of results within uncertainty")
        + f", daemon RSS max {r['rss'].get('max_mib', '?')} MiB"
    )


def main() -> int:
    p = benchlib.parser(__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=None, help="run length (quick 180, else 3600)")
    p.add_argument(
        "--fault-every",
        type=float,
        default=None,
        metavar="S",
        help="mean seconds between faults (quick 30, else 90)",
    )
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, store)")
    p.add_argument(
        "--no-clock-steps",
        action="store_true",
        help="restart the agent on the same clock (default: each restart steps its clock by "
        "±1 s with libfaketime)",
    )
    args = p.parse_args()
    seconds = args.seconds or (180.0 if args.quick else 3600.0)
    every = args.fault_every or (30.0 if args.quick else 90.0)
    data = benchlib.envelope(NAME, args.quick, {"note": "not pinned: separate processes"})
    data["uptime_before"] = benchlib.uptime()
    work = Path(tempfile.mkdtemp(prefix="powerd-soak-"))
    try:
        clock_steps = not args.no_clock_steps
        if clock_steps and not FAKETIME_LIB.exists():
            print(f"soak: {FAKETIME_LIB} missing (Debian package faketime): no clock steps")
            clock_steps = False
        r = soak(seconds, every, args.seed, work, clock_steps)
    finally:
        if args.keep:
            print(f"soak: work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    data["uptime_after"] = benchlib.uptime()
    data["result"] = r
    data["goal"] = (
        "through random broker/daemon/agent SIGKILLs and meter unplugs: 0 samples lost "
        "(each gap flagged), 0 markers lost, 0 duplicates, every result within its uncertainty, "
        "daemon RSS flat"
    )
    data["verdict"] = verdict(r)
    data["markdown"] = markdown(r)
    plot = rss_plot(r, args.quick)
    if plot is not None:
        data["plot"] = plot
    path = benchlib.write_result(NAME, args.quick, args.out, data)
    print(data["markdown"])
    print(f"\nsoak: {data['verdict']}\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
