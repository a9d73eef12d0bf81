"""The daemon core's bounds on what agents can make it hold or do, and what overflows: no MQTT,
the Daemon fed directly (the MQTT path is in test_daemon_ingest.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from powerd.agent import wire
from powerd.channel import Channel
from powerd.clockplan import BACKOFF_MAX_S, ClockPlan
from powerd.daemon import MIN_EXCHANGES, UNKNOWN_HELD_PER_AGENT, UNKNOWN_HELD_TOTAL, Daemon
from powerd.store import Store
from powerd.timeline import Timeline

NOW_NS = 1_800_000_000_000_000_000


class FakeClock:
    def __init__(self, t_ns: int = NOW_NS) -> None:
        self.t_ns = t_ns

    def __call__(self) -> int:
        return self.t_ns


def make_daemon(tmp: Path, clock: FakeClock) -> Daemon:
    return Daemon(Store(tmp / "powerd.db"), Timeline(), clock)


def status(agent: str, state: str = "online") -> bytes:
    return wire.status(agent, state, NOW_NS, "test")


def channels(agent: str) -> bytes:
    ch = Channel(f"{agent}/sim:c", "power", "meter", 0.01)
    return json.dumps([ch.to_json()]).encode()


def block(seq: int, t0_ns: int, n: int = 10, boot_ns: int = 7) -> bytes:
    t = t0_ns + np.arange(n, dtype=np.int64) * 10_000_000
    return wire.encode_block(boot_ns, seq, "sim:c", t, np.full(n, 5.0))


def sync(daemon: Daemon, agent: str, clock: FakeClock, agent_ahead_ns: int = 0) -> None:
    """Enough clock exchanges for the offset to be known (round trip 1 ms)."""
    for _ in range(MIN_EXCHANGES):
        req = json.loads(daemon.clock_request(agent))
        t2 = clock.t_ns + 500_000 + agent_ahead_ns
        clock.t_ns += 1_000_000
        reply = wire.clock_reply(json.dumps(req).encode(), t2, t2)
        assert daemon.accept_clock_reply(agent, reply)


def test_status_must_be_a_valid_object_naming_its_agent(tmp_path: Path) -> None:
    clock = FakeClock()
    d = make_daemon(tmp_path, clock)
    bad = [b"[1]", b"null", b"[" * 5000, status("other"), b'{"v": 1, "agent": "a", "state": 3}']
    assert not any(d.accept_status("a", p) for p in bad)
    assert d.agents == {} and "a" not in d.known_agents
    assert d.health.problems["status_malformed"] == len(bad)
    d.accept_channels("a", channels("a"))  # unknown agent: its channels cost nothing
    assert d.timeline.channels == {} and d.health.problems["channels_unknown_agent"] == 1
    assert d.accept_status("a", status("a"))
    d.accept_channels("a", channels("a"))
    assert "a/sim:c" in d.timeline.channels


def test_blocks_of_unknown_agents_are_bounded_and_counted(tmp_path: Path) -> None:
    clock = FakeClock()
    d = make_daemon(tmp_path, clock)
    assert d.held is not None
    per_agent = UNKNOWN_HELD_PER_AGENT + 10
    for i in range(8):
        for seq in range(per_agent):
            d.accept_block(f"ghost-{i}", block(seq, NOW_NS))
    assert d.held.total() == UNKNOWN_HELD_TOTAL
    assert max(d.held.count.values()) <= UNKNOWN_HELD_PER_AGENT
    assert d.health.problems["held_dropped"] == 8 * per_agent - UNKNOWN_HELD_TOTAL


def test_held_data_is_durable_and_applied_once_the_offset_is_known(tmp_path: Path) -> None:
    """Blocks and a marker held before the offset is known survive a daemon that is gone
    (they were acknowledged), and land at the right place after the next daemon syncs."""
    clock = FakeClock()
    d = make_daemon(tmp_path, clock)
    d.accept_status("edge", status("edge"))
    d.accept_channels("edge", channels("edge"))
    ahead_ns = 2_000_000_000  # the agent's clock is 2 s ahead
    for seq in range(5):
        assert d.accept_block("edge", block(seq, NOW_NS + ahead_ns + seq * 100_000_000))
    begin = {
        "v": 1,
        "run": "r",
        "phase": "p",
        "event": "begin",
        "seq": 1,
        "t_ns": NOW_NS + ahead_ns,
    }
    assert d.submit_marker("edge", json.dumps(begin).encode()).held
    assert d.held is not None and d.held.held("edge") == 6
    d.store.close()
    d.held.close()
    # a new daemon on the same state: the agent is known from its stored channels
    clock2 = FakeClock(NOW_NS + 1_000_000_000)
    d2 = make_daemon(tmp_path, clock2)
    assert "edge" in d2.known_agents and d2.held is not None and d2.held.held("edge") == 6
    d2.accept_status("edge", status("edge"))
    sync(d2, "edge", clock2, ahead_ns)
    assert d2.held.held("edge") == 0
    (sm,) = d2.store.markers("r")
    assert abs(sm.t_ns - NOW_NS) < 2_000_000
    t, _ = d2.store.samples("edge/sim:c", NOW_NS - 10**9, NOW_NS + 10**9)
    assert t.size == 50 and abs(int(t[0]) - NOW_NS) < 2_000_000


def test_an_offset_that_overflows_int64_rejects_the_marker_and_the_block(tmp_path: Path) -> None:
    clock = FakeClock()
    d = make_daemon(tmp_path, clock)
    d.accept_status("edge", status("edge"))
    d.accept_channels("edge", channels("edge"))
    sync(d, "edge", clock, agent_ahead_ns=-NOW_NS + 1000)  # agent clock near 0: offset ~ +1.8e18
    near_max = wire.MAX_INT - 1000
    m = {"v": 1, "run": "r", "phase": "p", "event": "begin", "seq": 1, "t_ns": near_max}
    outcome = d.submit_marker("edge", json.dumps(m).encode())
    assert outcome.error is not None and "outside 0..2**63-1" in outcome.error
    d.accept_block("edge", block(1, near_max - 10**9))
    assert d.health.problems["blocks_rejected"] == 1
    assert d.store.markers() == [] and d.counts["samples_accepted"] == 0


def test_clock_requests_to_2000_silent_agents_back_off_and_respect_the_global_rate() -> None:
    now = [0.0]
    plan = ClockPlan(1.0, 200.0, clock_s=lambda: now[0], rng=random.Random(1))
    for i in range(2000):
        plan.online(f"fake-{i}")
    plan.online("real")
    sent_per_s: list[int] = []
    real_sent = 0
    step_s = 0.01
    for second in range(900):
        count = 0
        for _ in range(int(1 / step_s)):
            now[0] += step_s
            due = plan.take()
            count += len(due)
            if "real" in due:
                plan.answered("real")
                real_sent += second >= 600
        sent_per_s.append(count)
    assert max(sent_per_s) <= 200 * 1 + 200 * 0.1 + 1
    late = sum(sent_per_s[600:]) / 300
    assert late <= 2000 / BACKOFF_MAX_S * 1.5 + 2, late  # ~7/s: silent ids cost ~nothing
    assert 240 <= real_sent <= 360  # the answering agent keeps its 1 s interval (±10 % jitter)


def test_a_large_hold_is_released_in_batches_and_in_order(tmp_path: Path) -> None:
    clock = FakeClock()
    d = make_daemon(tmp_path, clock)
    d.accept_status("edge", status("edge"))
    d.accept_channels("edge", channels("edge"))
    for seq in range(600):  # more than one release batch
        assert d.accept_block("edge", block(seq, NOW_NS + seq * 100_000_000))
    assert d.held is not None and d.held.held("edge") == 600
    sync(d, "edge", clock)
    assert d.held.held("edge") == 0 and d.held.total() == 0
    t, _ = d.store.samples("edge/sim:c", NOW_NS, NOW_NS + 600 * 100_000_000)
    assert t.size == 6000 and bool((np.diff(t) > 0).all())
    assert d.counts["blocks_accepted"] == 600


def test_a_closed_phase_without_its_result_is_computed_by_the_next_daemon(tmp_path: Path) -> None:
    clock = FakeClock()
    d = make_daemon(tmp_path, clock)
    for seq, event in ((1, "begin"), (2, "end")):
        m = {"v": 1, "run": "r", "phase": "p", "event": event, "seq": seq}
        assert d.submit_marker("harness", m, NOW_NS + seq * 10**9).applied
    d.store.close()  # killed before the result was due
    clock2 = FakeClock(NOW_NS + 3 * 10**9)
    d2 = make_daemon(tmp_path, clock2)
    assert d2.has_pending()
    clock2.t_ns += int(d2.result_grace_s * 1e9)
    (result,) = d2.due_results()
    assert result["run"] == "r" and len(result["phases"]) == 1
    d2.store.close()
    d3 = make_daemon(tmp_path, FakeClock(NOW_NS + 10 * 10**9))
    assert not d3.has_pending()  # its result is stored now: nothing due


def test_agents_warming_up_are_asked_before_measured_ones_within_the_rate() -> None:
    """An agent that answered but is not measured yet (its data held meanwhile) is asked again
    at once, ahead of the agents already measured, and the global rate still holds."""
    now = [0.0]
    plan = ClockPlan(1.0, 100.0, clock_s=lambda: now[0], rng=random.Random(2))
    answers: dict[str, int] = {}
    for i in range(300):  # a busy fleet: every agent wants a request every second
        plan.online(f"old-{i}")
    for _ in range(2000):  # 20 s: every old agent measured
        now[0] += 0.01
        for agent in plan.take():
            plan.answered(agent)
            answers[agent] = answers.get(agent, 0) + 1
    assert min(answers.values()) >= 3
    plan.online("new")
    measured_at = None
    sent = 0
    for step in range(500):
        now[0] += 0.01
        due = plan.take()
        sent += len(due)
        if "new" in due:
            plan.answered("new")
            answers["new"] = answers.get("new", 0) + 1
            if answers["new"] == 3:
                measured_at = step * 0.01
    assert sent <= 100 * 5 + 100 * 0.1 + 1  # the global rate
    # without the warm-up queue each of its 3 requests waits its turn behind 300 agents (~3 s
    # at 100/s): ~9 s; with it, the first waits its turn, the next two go out at once
    assert measured_at is not None and measured_at < 4.5, measured_at
