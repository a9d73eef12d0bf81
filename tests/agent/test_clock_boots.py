"""Clock truth across agent restarts and clock steps: one offset estimate per (agent, clock epoch).

Pure tests drive the Daemon with hand-made exchanges; the end-to-end test restarts a real agent
subprocess (SIGKILL) under libfaketime with its clock stepped by +1 s and checks that the daemon
places its data and markers within the stated uncertainty of the truth."""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from powerd.agent import wire
from powerd.agent.epoch import EpochAnchor
from powerd.daemon import MIN_EXCHANGES, Daemon
from powerd.store import Store
from powerd.timeline import Timeline
from tests.agent import handdaemon
from tests.agent.agentproc import agent_thread, inprocess_agent, running_agent
from tests.agent.handdaemon import CHANNEL, SEC, Clock, start_daemon
from tests.agent.test_mqtt_e2e import post, truth_j
from tests.agent.test_spool_faults import spooled_blocks
from tests.servers import Mosquitto, mosquitto, running_daemon, wait_for

AGENT = "edge-b"
BOOT_A = 1_000_000_000_000
BOOT_B = 2_000_000_000_000
# exchange(d, boot, ahead_ns, rtt_ns): one with an agent whose clock reads ahead_ns ahead
exchange = functools.partial(handdaemon.exchange, agent=AGENT)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    store = Store(tmp_path / "d.db")
    yield start_daemon(store, AGENT)  # the agent known, no epoch yet
    store.close()


def status(boot: int) -> bytes:
    return wire.status(AGENT, "online", 0, "t", boot_ns=boot, epoch=0)


def block(boot: int, seq: int, t0_ns: int) -> bytes:
    t = t0_ns + np.arange(10, dtype=np.int64) * 10_000_000
    return wire.encode_block(boot, seq, CHANNEL.id, t, np.full(10, 5.0))


def stored_t(d: Daemon) -> np.ndarray:
    d.store.flush()
    t, _ = d.store.samples(f"{AGENT}/{CHANNEL.id}", 0, 2**62)
    return t


def test_a_new_boot_never_uses_the_previous_boots_exchanges(daemon: Daemon) -> None:
    d = daemon
    d.accept_status(AGENT, status(BOOT_A))
    for _ in range(5):
        exchange(d, BOOT_A, ahead_ns=3 * SEC, rtt_ns=200_000)  # boot A: 3 s ahead, tight
    d.accept_block(AGENT, block(BOOT_A, 1, 100 * SEC))
    assert stored_t(d)[0] == 97 * SEC  # placed with boot A's offset

    # restart with the clock stepped by +1 s: 4 s ahead now, exchanges far less precise
    d.accept_status(AGENT, status(BOOT_B))
    assert len(d.offsets[AGENT].exchanges) == 0, "the old boot's exchanges were kept"
    d.accept_block(AGENT, block(BOOT_B, 1, 110 * SEC))
    assert stored_t(d).size == 10, "data of the new boot applied before its offset is known"
    for i in range(MIN_EXCHANGES):
        exchange(d, BOOT_B, ahead_ns=4 * SEC, rtt_ns=2_000_000)
        if i < MIN_EXCHANGES - 1:
            assert stored_t(d).size == 10
    t = stored_t(d)
    assert t.size == 20 and t[10] == 106 * SEC  # boot B's offset, not boot A's
    off = d.offsets_json()[AGENT]
    assert off["exchanges"] == MIN_EXCHANGES
    assert off["uncertainty_ns"] >= 1_000_000  # the exchanges used: B's (rtt 2 ms), not A's
    ch = d.timeline.channels[f"{AGENT}/{CHANNEL.id}"]
    assert ch.stamp_uncertainty_s == pytest.approx(1e-3, rel=0.05)

    # the previous boot's backlog arriving late is still placed with that boot's offset
    d.accept_block(AGENT, block(BOOT_A, 2, 101 * SEC))
    assert sorted(stored_t(d).tolist())[10] == 98 * SEC
    # a block resent (same boot, same seq) after the restart is a duplicate
    d.accept_block(AGENT, block(BOOT_A, 1, 100 * SEC))
    assert stored_t(d).size == 30 and d.counts["blocks_repeated"] == 1


def test_a_block_resent_after_a_daemon_restart_is_still_a_repeat(tmp_path: Path) -> None:
    # the agent keeps a block until the daemon confirms it; a daemon killed between its commit
    # and the confirmation gets the block again after its restart, and must not store it twice
    def start(store: Store) -> Daemon:
        d = Daemon(store, Timeline(), Clock())
        d.accept_status(AGENT, status(BOOT_A))
        d.accept_channels(AGENT, json.dumps([CHANNEL.to_json()]).encode())
        for _ in range(MIN_EXCHANGES):
            exchange(d, BOOT_A, ahead_ns=0, rtt_ns=200_000)
        return d

    first = start(Store(tmp_path / "d.db"))
    assert first.accept_block(AGENT, block(BOOT_A, 7, 100 * SEC))
    assert stored_t(first).size == 10
    first.store._db.close()  # killed: no clean close
    again = start(Store(tmp_path / "d.db"))
    assert again.accept_block(AGENT, block(BOOT_A, 7, 100 * SEC))
    assert stored_t(again).size == 10 and again.counts["blocks_repeated"] == 1
    assert again.accept_block(AGENT, block(BOOT_A, 8, 101 * SEC))
    assert stored_t(again).size == 20
    again.store.close()


def test_a_clock_step_seen_in_the_replies_starts_a_new_estimate(daemon: Daemon) -> None:
    """No status in between: the first reply of an unseen epoch resets, relayed markers too."""
    d = daemon
    d.accept_status(AGENT, status(BOOT_A))
    for _ in range(4):
        exchange(d, BOOT_A, ahead_ns=SEC, rtt_ns=100_000)
    exchange(d, BOOT_B, ahead_ns=2 * SEC, rtt_ns=100_000)
    assert len(d.offsets[AGENT].exchanges) == 1
    begin = {"v": 1, "run": "r", "phase": "p", "event": "begin", "seq": 1}
    out = d.submit_marker(AGENT, json.dumps(begin | {"t_ns": 60 * SEC, "boot_ns": BOOT_B}))
    assert out.held
    # a marker of the old epoch (arriving after, so kept in order) gets the old epoch's offset
    old = begin | {"run": "old", "t_ns": 60 * SEC, "boot_ns": BOOT_A}
    d.submit_marker(AGENT, json.dumps(old))
    exchange(d, BOOT_B, ahead_ns=2 * SEC, rtt_ns=100_000)
    exchange(d, BOOT_B, ahead_ns=2 * SEC, rtt_ns=100_000)
    stored = {m.marker.run: m for m in d.store.markers()}
    assert stored["r"].t_ns == 58 * SEC and stored["r"].timing.offset_ns == -2 * SEC
    assert stored["old"].t_ns == 59 * SEC and stored["old"].timing.offset_ns == -SEC


def test_an_epoch_never_measured_is_placed_through_the_reported_anchors(daemon: Daemon) -> None:
    """Boot A ran while the broker was down (no exchange ever); boot B's status reports both
    anchors (B's clock stepped +1 s), so A's backlog gets B's offset plus their difference."""
    d = daemon
    anchors = {str(BOOT_A): 7 * SEC, str(BOOT_B): 8 * SEC}
    d.accept_status(AGENT, wire.status(AGENT, "online", 0, "t", boot_ns=BOOT_B, epochs=anchors))
    d.accept_block(AGENT, block(BOOT_A, 1, 100 * SEC))
    assert stored_t(d).size == 0
    for _ in range(MIN_EXCHANGES):
        exchange(d, BOOT_B, ahead_ns=4 * SEC, rtt_ns=200_000)
    t = stored_t(d)
    assert t.size == 10 and t[0] == 97 * SEC  # -4 s + (8 s - 7 s)
    # without the anchors it would still be held, not placed with B's offset
    d.accept_status(AGENT, wire.status(AGENT, "online", 0, "t", boot_ns=BOOT_B))
    d.accept_block(AGENT, block(BOOT_A + 1, 1, 100 * SEC))
    exchange(d, BOOT_B, ahead_ns=4 * SEC, rtt_ns=200_000)
    assert stored_t(d).size == 10


def test_epoch_anchor_starts_a_new_epoch_on_a_step() -> None:
    wall = [10 * SEC]
    mono = [SEC]
    anchor = EpochAnchor(mono=lambda: mono[0], wall=lambda: wall[0])
    boot0, t0 = anchor.stamp()
    assert t0 == 10 * SEC and boot0 == 10 * SEC
    mono[0] += SEC
    wall[0] += SEC
    assert anchor.check() is None and anchor.stamp()[0] == boot0
    wall[0] += SEC  # the wall clock steps by +1 s
    step = anchor.check()
    assert step is not None and step.step_ns == SEC
    boot1, t1 = anchor.stamp()
    assert boot1 != boot0 and anchor.epoch == 1 and t1 == 12 * SEC


# --- end to end: a real agent SIGKILLed and restarted with its clock stepped ------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with mosquitto(tmp_path) as b:
        yield b


def test_agent_restarted_with_a_stepped_clock_is_placed_within_its_uncertainty(
    tmp_path: Path, broker: Mosquitto
) -> None:
    agent_id = "edge-step"
    with running_daemon(tmp_path, broker) as daemon:
        with running_agent(tmp_path, broker, agent_id, kill=True) as url:
            wait_for(
                lambda: (o := daemon.offsets.get(agent_id)) and len(o.exchanges) >= 5,
                what="clock exchanges of the first boot",
            )
            first = dict(daemon.agents[agent_id])
            post(url, {"v": 1, "run": "before", "phase": "p", "event": "begin"})
        # SIGKILLed; restarted with its wall clock stepped by +1 s
        with running_agent(tmp_path, broker, agent_id, fake_offset_s=1.0, kill=True) as url:
            wait_for(
                lambda: daemon.agents[agent_id].get("boot_ns") not in (None, first["boot_ns"]),
                what="the new boot's status",
            )
            wait_for(
                lambda: len(daemon.offsets[agent_id].exchanges) >= 5,
                what="clock exchanges of the new boot",
            )
            before = time.time_ns()
            post(url, {"v": 1, "run": "after", "phase": "p", "event": "begin"})
            after = time.time_ns()
            time.sleep(1.0)
            post(url, {"v": 1, "run": "after", "phase": "p", "event": "end", "count": 1})
            result = wait_for(lambda: daemon.run_result("after"), what="result after restart")
    (phase,) = result["phases"]
    timing = phase["timing"]
    # the +1 s step is in the offset: the marker lands where it was sent, within its uncertainty
    # (the new boot's uncertainty: small next to the step, however loaded the machine is)
    unc = timing["uncertainty_ns"]
    assert unc < 200_000_000
    assert abs(timing["offset_ns"] + 1_000_000_000) <= unc + 10_000_000
    assert before - unc <= phase["t_begin_ns"] <= after + unc
    assert abs(phase["energy_j"] - truth_j(phase)) <= phase["uncertainty_j"]
    ch = phase["channels"][f"{agent_id}/sim:square"]
    assert ch["coverage"] == 1.0


def test_backlog_of_an_unmeasured_boot_lands_at_its_true_time_after_a_stepped_restart(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """The agent samples with the broker down from its start (its offset is never measured), is
    SIGKILLed, restarted with its clock stepped by +1 s, and then the broker comes back."""
    agent_id = "edge-unmeasured"
    spool_dir = tmp_path / "spool"
    cid = f"{agent_id}/sim:square"
    with running_daemon(tmp_path, broker) as daemon:
        broker.stop(kill=True)
        t_start = time.time_ns()
        with running_agent(tmp_path, broker, agent_id, kill=True, spool_dir=spool_dir):
            db = spool_dir / "spool.db"

            def backlog_so_far() -> int:
                try:
                    return len(spooled_blocks(db))
                except sqlite3.OperationalError:  # the agent is still creating its spool
                    return 0

            wait_for(lambda: backlog_so_far() >= 5, what="a backlog")
        backlog = spooled_blocks(spool_dir / "spool.db")
        with running_agent(
            tmp_path, broker, agent_id, fake_offset_s=1.0, kill=True, spool_dir=spool_dir
        ):
            time.sleep(0.3)
            broker.start()
            # the backlog is placed with the first estimate of the new boot, as uncertain as
            # its first exchanges (milliseconds on a loaded host): that is its tolerance
            stated_ns = [2_000_000]

            def estimated() -> bool:
                o = daemon.offsets_json().get(agent_id)
                if o is not None:
                    stated_ns.append(int(o["uncertainty_ns"]))
                return o is not None and o["exchanges"] >= 5

            wait_for(estimated, what="the new boot's exchanges")
            tol_ns = max(stated_ns)

            def stored() -> int:
                daemon.store.flush()
                t, _ = daemon.store.samples(cid, t_start - 3 * SEC, t_start + 60 * SEC)
                lo, hi = int(backlog[0].t_ns[0]), int(backlog[-1].t_ns[-1])
                return int(np.count_nonzero((t >= lo - tol_ns) & (t <= hi + tol_ns)))

            n = sum(int(b.t_ns.size) for b in backlog)
            wait_for(lambda: stored() >= n, what="the backlog at its true time")
            daemon.store.flush()
            t, _ = daemon.store.samples(cid, t_start - 3 * SEC, t_start + 60 * SEC)
    # nothing stored a second early (where the new boot's offset would have put it)
    assert tol_ns < 100_000_000, tol_ns
    assert not np.any(t < int(backlog[0].t_ns[0]) - tol_ns)
    assert np.unique(t).size == t.size


def test_block_boots_reads_the_epochs_from_the_headers() -> None:
    a = wire.encode_block(5, 1, "x", np.arange(3, dtype=np.int64), np.ones(3))
    b = wire.encode_block(9, 2, "yy", np.array([0, 2**40], dtype=np.int64), np.ones(2))
    c = wire.encode_block(5, 3, "z", np.array([7], dtype=np.int64), np.ones(1))
    assert wire.block_boots(a + b + c) == {5, 9}
    with pytest.raises(wire.WireError):
        wire.block_boots(a[:10])


def test_a_wall_clock_step_while_running_starts_a_new_epoch(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """The agent (in-process, its wall clock injected) sees its clock step by +1 s mid-run: a new
    epoch, a new estimate, and a phase after the step lands where it happened."""
    shift_ns = [0]
    anchor = EpochAnchor(wall=lambda: time.time_ns() + shift_ns[0])
    agent_id = "edge-inproc"
    with running_daemon(tmp_path, broker) as daemon:
        agent = inprocess_agent(tmp_path, agent_id, broker.port, anchor)
        with agent_thread(agent):
            wait_for(
                lambda: (o := daemon.offsets.get(agent_id)) and len(o.exchanges) >= 5,
                what="exchanges before the step",
            )
            boot0 = daemon.agents[agent_id]["boot_ns"]
            shift_ns[0] = SEC  # the wall clock steps
            wait_for(lambda: anchor.epoch == 1, what="the agent to see the step")
            wait_for(
                lambda: (
                    daemon.agents[agent_id].get("boot_ns") not in (None, boot0)
                    and len(daemon.offsets[agent_id].exchanges) >= 5
                ),
                what="the new epoch's exchanges",
            )
            before = time.time_ns()
            agent.relay_marker({"v": 1, "run": "stepped", "phase": "p", "event": "begin"})
            after = time.time_ns()
            time.sleep(1.0)
            agent.relay_marker({"v": 1, "run": "stepped", "phase": "p", "event": "end", "count": 1})
            result = wait_for(lambda: daemon.run_result("stepped"), what="result")
    (phase,) = result["phases"]
    unc = phase["timing"]["uncertainty_ns"]
    assert unc < 200_000_000
    assert abs(phase["timing"]["offset_ns"] + SEC) <= unc + 10_000_000
    assert before - unc <= phase["t_begin_ns"] <= after + unc
    assert abs(phase["energy_j"] - truth_j(phase)) <= phase["uncertainty_j"]
