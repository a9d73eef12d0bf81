"""A fleet daemon's results wait only for their own devices' data, and their manifests hold only
those agents' clock state (issue 16): the Daemon fed directly, no MQTT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from powerd.agent import wire
from powerd.channel import Channel
from powerd.daemon import MIN_EXCHANGES, Daemon
from powerd.store import Store
from powerd.timeline import Timeline

NOW_NS = 1_800_000_000_000_000_000
S = 10**9


class FakeClock:
    def __init__(self, t_ns: int = NOW_NS) -> None:
        self.t_ns = t_ns

    def __call__(self) -> int:
        return self.t_ns


def join(d: Daemon, agent: str, clock: FakeClock) -> None:
    """Status, one channel, and enough clock exchanges for its offset to be known."""
    assert d.accept_status(agent, wire.status(agent, "online", NOW_NS, "test"))
    ch = Channel(f"{agent}/sim:c", "power", "meter", 0.01)
    d.accept_channels(agent, json.dumps([ch.to_json()]).encode())
    for _ in range(MIN_EXCHANGES):
        req = json.loads(d.clock_request(agent))
        t2 = clock.t_ns + 500_000
        clock.t_ns += 1_000_000
        assert d.accept_clock_reply(agent, wire.clock_reply(json.dumps(req).encode(), t2, t2))


def send(d: Daemon, agent: str, seq: int, t0_ns: int, t1_ns: int) -> None:
    """One block of 5 W samples every 10 ms from ``t0_ns`` to ``t1_ns`` inclusive."""
    t = np.arange(t0_ns, t1_ns + 1, 10_000_000, dtype=np.int64)
    assert d.accept_block(agent, wire.encode_block(7, seq, "sim:c", t, np.full(t.size, 5.0)))


def phase(d: Daemon, run: str, device: str, t0_ns: int, t1_ns: int) -> None:
    for seq, ev, t in ((1, "begin", t0_ns), (2, "end", t1_ns)):
        m = {"v": 1, "run": run, "phase": "p", "event": ev, "seq": seq, "t_ns": t}
        if ev == "begin":
            m["device"] = device
        assert d.submit_marker("harness", m, t).applied


def test_a_result_waits_for_its_own_devices_only(tmp_path: Path) -> None:
    clock = FakeClock()
    d = Daemon(Store(tmp_path / "powerd.db"), Timeline(), clock, result_grace_s=60.0)
    for agent in ("a", "b"):
        join(d, agent, clock)
    t0 = clock.t_ns
    send(d, "a", 1, t0, t0 + 3 * S)  # a is past both phases' end
    send(d, "b", 1, t0, t0 + S)  # b is live but behind (latest in [begin, end))
    phase(d, "run-a", "a", t0 + S // 2, t0 + 2 * S)
    phase(d, "run-b", "b", t0 + S // 2, t0 + 2 * S)
    clock.t_ns = t0 + 3 * S  # far inside the grace: nothing is due by waiting
    (result,) = d.due_results()  # a's result does not wait for b
    assert result["run"] == "run-a" and result["phases"][0]["devices"] == ["a"]
    assert set(result["phases"][0]["channels"]) == {"a/sim:c"}
    assert d.has_pending() and d.due_results() == []  # b's still waits for b
    send(d, "b", 2, t0 + S + 10_000_000, t0 + 2 * S)  # b reaches its end
    (result,) = d.due_results()
    assert result["run"] == "run-b"
    assert not d.has_pending()
    # each manifest holds the clock state of the agent its run covers, not the fleet's
    for run, agent in (("run-a", "a"), ("run-b", "b")):
        (manifest,) = d.store.manifests(run)
        assert set(manifest["clock_sync"]) == {agent}, manifest["clock_sync"]
    d.store.close()


def test_a_run_queued_without_its_devices_still_waits_for_every_live_channel(
    tmp_path: Path,
) -> None:
    """After a restart a pending run's devices are not known: the fleet-wide rule applies."""
    clock = FakeClock()
    d = Daemon(Store(tmp_path / "powerd.db"), Timeline(), clock, result_grace_s=60.0)
    for agent in ("a", "b"):
        join(d, agent, clock)
    t0 = clock.t_ns
    send(d, "a", 1, t0, t0 + 3 * S)
    send(d, "b", 1, t0, t0 + S)
    phase(d, "run-a", "a", t0 + S // 2, t0 + 2 * S)
    d._pending_devices["run-a"] = None  # as recover_due and a late gap's requeue leave it
    clock.t_ns = t0 + 3 * S
    assert d.due_results() == []
    send(d, "b", 2, t0 + S + 10_000_000, t0 + 2 * S)
    (result,) = d.due_results()
    assert result["run"] == "run-a"
    d.store.close()


def test_a_result_reads_each_window_once_and_later_reads_see_new_data(tmp_path: Path) -> None:
    from powerd.block import Block

    store = Store(tmp_path / "powerd.db")
    store.put_channel(Channel("sim:c", "power", "meter", 0.01))
    t = NOW_NS + np.arange(100, dtype=np.int64) * 10_000_000
    store.append(Block.of("sim:c", t, np.full(t.size, 5.0)))
    store.flush()
    window = (NOW_NS, NOW_NS + 2 * S)
    with store.samples_memo():
        first = store.samples("sim:c", *window)
        assert store.samples("sim:c", *window)[0] is first[0]  # kept, not read again
        assert not first[0].flags.writeable and not first[1].flags.writeable
        store.append(Block.of("sim:c", t + S, np.full(t.size, 7.0)))
        store.flush()
        assert store.samples("sim:c", *window)[0].size == first[0].size
    again = store.samples("sim:c", *window)  # outside: read afresh
    assert again[0] is not first[0] and again[0].size > first[0].size
    assert again[0].flags.writeable
    store.close()


def test_each_result_is_published_as_it_is_sealed_and_a_failing_listener_stops_nothing(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    d = Daemon(Store(tmp_path / "powerd.db"), Timeline(), clock, result_grace_s=60.0)
    for agent in ("a", "b"):
        join(d, agent, clock)
    t0 = clock.t_ns
    for agent in ("a", "b"):
        send(d, agent, 1, t0, t0 + 3 * S)
        phase(d, f"run-{agent}", agent, t0 + S // 2, t0 + 2 * S)
    seen: list[tuple[str, int]] = []

    def listener(result: dict[str, object]) -> None:
        seen.append((str(result["run"]), len(d.store.manifests(str(result["run"])))))
        if len(seen) == 1:
            raise RuntimeError("sink down")

    d.result_listeners.append(listener)
    clock.t_ns = t0 + 3 * S
    assert {r["run"] for r in d.due_results()} == {"run-a", "run-b"}
    assert sorted(seen) == [("run-a", 1), ("run-b", 1)]  # each sealed before it is published
    assert d.counts["result_listener_failed"] == 1
    assert d.health.problems["result_listener_failed"] == 1
    d.store.close()
