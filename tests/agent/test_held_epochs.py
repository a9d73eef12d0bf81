"""Held agent messages are placed or reported, never held for ever in silence (task H24).

The defect: on a VM whose wall clock ran 0.5 % faster than its monotonic clock, every check of
TimeAnchor saw a "step" (tests/powerd/test_clock_drift.py), agents started a new clock epoch every
1-2 s, and a marker stamped before the first clock exchange stayed held for ever (its epoch dropped
out of the daemon's estimates and of the agent's reported anchors) with /healthz "ok". These tests
drive the Daemon with injected exchanges (linking through any measured epoch, the report after
``held_place_bound_s``), the agent's reported epochs, and a real agent on a drifting clock."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from powerd.agent import wire
from powerd.agent.epoch import EpochAnchor
from powerd.daemon import EPOCHS_KEPT, MIN_EXCHANGES, Daemon
from powerd.store import Store
from tests.agent import handdaemon
from tests.agent.handdaemon import SEC, clock_of, start_daemon

AGENT = "edge-drift"
MS = 1_000_000


# --- the daemon --------------------------------------------------------------------------------


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    store = Store(tmp_path / "d.db")
    yield start_daemon(store, AGENT, held_place_bound_s=30.0)
    store.close()


# exchange(d, boot, ahead_ns): one with a 200 us round trip, the daemon's clock 100 ms on after it
exchange = functools.partial(handdaemon.exchange, agent=AGENT)


def status(boot: int, epochs: dict[int, int]) -> bytes:
    anchors = {str(b): a for b, a in epochs.items()}
    return wire.status(AGENT, "online", 0, "t", boot_ns=boot, epoch=0, epochs=anchors)


def marker(run: str, event: str, t_ns: int, boot: int) -> str:
    body = {"v": 1, "run": run, "phase": "p", "event": event, "seq": 1 if event == "begin" else 2}
    return json.dumps(body | {"t_ns": t_ns, "boot_ns": boot})


def churn(d: Daemon, first: int, n: int, reported: int) -> dict[int, int]:
    """The agent starts ``n`` epochs after ``first`` (each anchored 5 ms later), each with fewer
    exchanges than an estimate needs; its status reports the latest ``reported`` anchors."""
    anchors = {first + i * SEC: i * 5 * MS for i in range(n + 1)}
    boots = sorted(anchors)
    for boot in boots[1:]:
        shown = {b: anchors[b] for b in boots[: boots.index(boot) + 1][-reported:]}
        d.accept_status(AGENT, status(boot, shown))
        for _ in range(MIN_EXCHANGES - 1):
            exchange(d, boot, ahead_ns=anchors[boot])
    return anchors


def test_a_marker_whose_epoch_is_lost_is_reported_and_its_run_flagged(daemon: Daemon) -> None:
    """The reproduction: a marker posted before the first exchange (epoch E0), then an epoch every
    second, none measured, the agent reporting only its latest anchors. Before the fix it stayed
    held with /healthz ok; now, after the bound, it is counted, /healthz is degraded and its run
    is flagged. A status that reports E0's anchor again places it and clears the component."""
    d = daemon
    e0 = 100 * SEC
    d.accept_status(AGENT, status(e0, {e0: 0}))
    assert d.submit_marker(AGENT, marker("rb", "begin", 60 * SEC, e0)).held
    anchors = churn(d, e0, 2 * EPOCHS_KEPT, reported=4)
    assert d.held is not None and d.held.held(AGENT) == 1
    assert "held_unplaceable" not in d.health.snapshot()["problems"]  # within the bound: waits
    clock_of(d).now_ns += 31 * SEC
    d.clock_request(AGENT)
    snap = d.health.snapshot()
    assert snap["status"] == "degraded" and snap["problems"]["held_unplaceable"] == 1
    assert "rb" in snap["down"][f"agent:{AGENT}:held"]
    assert d.store.run_flags("rb") == {
        "held_unplaceable": f"a marker from agent {AGENT} could not be placed"
    }
    d.clock_request(AGENT)  # counted once, not at every check
    assert d.health.snapshot()["problems"]["held_unplaceable"] == 1

    # the current epoch gets measured and the agent reports E0's anchor again: placed
    now = max(anchors)
    for _ in range(MIN_EXCHANGES):
        exchange(d, now, ahead_ns=anchors[now])
    d.accept_status(AGENT, status(now, {e0: 0, now: anchors[now]}))
    exchange(d, now, ahead_ns=anchors[now])
    (stored,) = d.store.markers("rb")
    assert stored.t_ns == 60 * SEC  # E0's offset: the current one plus the anchors' difference
    assert d.held.held(AGENT) == 0
    assert d.health.snapshot()["status"] == "ok"


def test_an_epoch_is_placed_through_any_measured_epoch(daemon: Daemon) -> None:
    """Epochs change faster than each gets its exchanges: the current one is never measured, an
    older one was; what is held for unmeasured epochs is placed through that one's offset."""
    d = daemon
    e0 = 100 * SEC
    d.accept_status(AGENT, status(e0, {e0: 0}))
    for _ in range(MIN_EXCHANGES):
        exchange(d, e0, ahead_ns=0)
    e1, e2 = e0 + SEC, e0 + 2 * SEC
    d.accept_status(AGENT, status(e1, {e0: 0, e1: 7 * MS}))
    assert d.submit_marker(AGENT, marker("r", "begin", 60 * SEC, e1)).applied
    d.accept_status(AGENT, status(e2, {e0: 0, e1: 7 * MS, e2: 9 * MS}))
    exchange(d, e2, ahead_ns=9 * MS)  # one exchange: E2 not measured
    assert d.submit_marker(AGENT, marker("r", "end", 61 * SEC, e2)).applied
    begin, end = d.store.markers("r")
    assert begin.t_ns == 60 * SEC - 7 * MS and end.t_ns == 61 * SEC - 9 * MS


def test_epochs_held_data_waits_for_are_not_forgotten(daemon: Daemon) -> None:
    """More than EPOCHS_KEPT epochs: the estimate of one that held data still needs is kept."""
    d = daemon
    e0 = 100 * SEC
    d.accept_status(AGENT, status(e0, {e0: 0}))
    exchange(d, e0, ahead_ns=0)  # one exchange only: E0 not measured yet
    assert d.submit_marker(AGENT, marker("r", "begin", 60 * SEC, e0)).held
    e1 = e0 + SEC
    d.accept_status(AGENT, status(e1, {e1: 0}))
    for _ in range(MIN_EXCHANGES):
        exchange(d, e1, ahead_ns=0)  # a release: E0 is what the held marker waits for
    churn(d, e1, 2 * EPOCHS_KEPT, reported=2)
    assert (AGENT, e0) in d._epochs
    assert len([k for k in d._epochs if k[0] == AGENT]) <= EPOCHS_KEPT + 2


def test_a_flagged_run_is_recomputed_with_the_flag(daemon: Daemon) -> None:
    """A run with a result, one of whose markers (a later trial) is never placed: the result is
    queued again and every phase of it carries ``held_unplaceable``."""
    from powerd.runs import compute_run

    d = daemon
    e0, lost = 100 * SEC, 90 * SEC
    d.accept_status(AGENT, status(e0, {e0: 0}))
    for _ in range(MIN_EXCHANGES):
        exchange(d, e0, ahead_ns=0)
    assert d.submit_marker(AGENT, marker("rf", "begin", 60 * SEC, e0)).applied
    assert d.submit_marker(AGENT, marker("rf", "end", 61 * SEC, e0)).phase is not None
    d.store.put_result(compute_run(d.store, "rf"), d.clock())
    d._pending.clear()
    assert "held_unplaceable" not in d.store.result("rf")["phases"][0]["flags"]  # type: ignore[index]
    late = {"v": 1, "run": "rf", "phase": "p", "event": "begin", "seq": 3, "trial": 2}
    assert d.submit_marker(AGENT, json.dumps(late | {"t_ns": 62 * SEC, "boot_ns": lost})).held
    clock_of(d).now_ns += 31 * SEC
    d.clock_request(AGENT)
    assert "rf" in d._pending
    (phase,) = compute_run(d.store, "rf")["phases"]
    assert "held_unplaceable" in phase["flags"]


def test_the_agent_reports_old_epochs_its_unconfirmed_data_needs(tmp_path: Path) -> None:
    """Beyond its latest EPOCHS_REPORTED anchors, the agent's status keeps those of epochs that
    sent data not confirmed yet (a relayed marker, a block): the daemon may need them to link."""
    from powerd.agent.agent import EPOCHS_REPORTED, Agent, AgentConfig
    from powerd.agent.epoch import host_boot_id
    from powerd.agent.mqttconf import MqttSettings

    host = host_boot_id()
    if host is None:
        pytest.skip("no host boot id on this system")
    cfg = AgentConfig(
        id="edge-epochs",
        probes=("sim:constant,rate=10",),
        mqtt=MqttSettings(port=1),
        spool_dir=tmp_path / "spool",
        http_port=None,
    )
    agent = Agent(cfg)
    try:
        old = [1_000 * SEC + i for i in range(3 * EPOCHS_REPORTED)]
        for i, boot in enumerate(old):
            agent.spool.put_meta(f"epoch:{boot}", i)
            agent.spool.put_meta(f"epoch_host:{boot}", host)
        assert str(old[0]) not in agent.epochs() and str(old[1]) not in agent.epochs()
        agent._block_message[(old[0], 7)] = 1
        sent = [(wire.markers_topic(cfg.id), json.dumps({"boot_ns": old[1]}).encode(), 1, False)]
        agent.spool.put_many(sent)
        (m,) = [m for m in agent.spool.peek(10) if m.topic == wire.markers_topic(cfg.id)]
        agent._unconfirmed[("r", 1)] = [m]
        epochs = agent.epochs()
        assert epochs[str(old[0])] == 0 and epochs[str(old[1])] == 1
        assert str(old[2]) not in epochs
        assert str(agent.anchor.boot_ns) in epochs  # the current one, always
    finally:
        agent.spool.close()


# --- end to end: a real daemon and broker, an agent whose wall clock drifts 0.5 % ----------------


def test_an_agent_on_a_drifting_clock_keeps_one_epoch_and_its_first_marker_is_placed(
    tmp_path: Path,
) -> None:
    """The colleague's VM in one process: the agent's wall clock runs 0.5 % fast (injected), a
    marker is relayed before the first clock exchange. Before the fix the agent started an epoch
    every 1-2 s and the marker stayed held; now: one epoch, the run's result, no clock_step, and
    /healthz ok with nothing held."""
    import time

    from tests.agent.agentproc import agent_thread, inprocess_agent
    from tests.servers import mosquitto, running_daemon, wait_for

    m0 = time.monotonic_ns()
    anchor = EpochAnchor(wall=lambda: time.time_ns() + (time.monotonic_ns() - m0) // 200)
    with mosquitto(tmp_path) as broker, running_daemon(tmp_path, broker) as daemon:
        agent_id = "edge-drifting"
        agent = inprocess_agent(tmp_path, agent_id, broker.port, anchor)
        before = time.time_ns()
        agent.relay_marker({"v": 1, "run": "rb", "phase": "p", "event": "begin"})
        after = time.time_ns()
        with agent_thread(agent):
            wait_for(
                lambda: (o := daemon.offsets.get(agent_id)) and len(o.exchanges) >= 5,
                what="clock exchanges",
            )
            time.sleep(3.0)  # several anchor checks: 15 ms of drift, three times the threshold
            agent.relay_marker({"v": 1, "run": "rb", "phase": "p", "event": "end", "count": 1})
            result = wait_for(lambda: daemon.run_result("rb"), what="the run's result")
        assert anchor.epoch == 0 and anchor.steps == []
        assert abs(anchor.wall_disagreement_ns()) >= 10 * MS  # the drift was there
        assert daemon.counts["agent_clock_epochs"] == 0
        assert daemon.held is not None and daemon.held.held(agent_id) == 0
        snap = daemon.health.snapshot()
        assert snap["status"] == "ok" and "held_unplaceable" not in snap["problems"]
    (phase,) = result["phases"]
    assert "clock_step" not in phase["flags"] and "held_unplaceable" not in phase["flags"]
    unc = phase["timing"]["uncertainty_ns"]
    assert before - unc - 10 * MS <= phase["t_begin_ns"] <= after + unc + 10 * MS


def test_housekeeping_reports_what_an_agent_that_went_away_left_held(daemon: Daemon) -> None:
    """No clock request reaches an agent that is gone: ``check_held`` (housekeeping) still
    reports its unplaceable messages."""
    d = daemon
    e0 = 100 * SEC
    d.accept_status(AGENT, status(e0, {e0: 0}))
    assert d.submit_marker(AGENT, marker("gone", "begin", 60 * SEC, e0)).held
    d.accept_status(AGENT, wire.status(AGENT, "offline", 0, "t", boot_ns=e0))
    clock_of(d).now_ns += 31 * SEC
    d.check_held()
    snap = d.health.snapshot()
    assert snap["problems"]["held_unplaceable"] == 1 and snap["status"] == "degraded"
    assert "held_unplaceable" in d.store.run_flags("gone")


def test_an_unplaceable_marker_on_the_wire_shows_on_healthz_and_metrics(tmp_path: Path) -> None:
    """End to end: a real agent, and a marker under its id stamped in an epoch it never reports
    (mosquitto_pub): after the bound, /healthz is degraded with ``agent:<id>:held`` down and
    /metrics says so; the agent's own data is placed all along."""
    from powerd.exporter import registry_for, render
    from tests.agent.agentproc import running_agent
    from tests.agent.test_mqtt_e2e import pub
    from tests.servers import mosquitto, running_daemon, wait_for

    agent_id = "edge-lost"
    with mosquitto(tmp_path) as broker, running_daemon(tmp_path, broker) as daemon:
        daemon.held_place_bound_s = 1.0
        with running_agent(tmp_path, broker, agent_id):
            wait_for(
                lambda: (o := daemon.offsets.get(agent_id)) and len(o.exchanges) >= 3,
                what="the agent's clock exchanges",
            )
            body = {"v": 1, "run": "ghost", "phase": "p", "event": "begin", "seq": 1}
            body |= {"t_ns": 1_800_000_000 * SEC, "boot_ns": 123_456_789}
            pub(broker.port, wire.markers_topic(agent_id), json.dumps(body))
            component = f"agent:{agent_id}:held"
            snap = wait_for(
                lambda: (s := daemon.health.snapshot())["down"].get(component) and s,
                what="the unplaceable marker reported",
            )
            metrics = render(registry_for(daemon)).decode()
            assert daemon.counts["blocks_accepted"] > 0  # the agent's own data is placed
    assert snap["status"] == "degraded" and "ghost" in snap["down"][component]
    assert snap["problems"]["held_unplaceable"] == 1
    assert 'powerd_problems_total{kind="held_unplaceable"} 1.0' in metrics
    assert f'component="{component}"' in metrics
