"""Samples that reach the daemon after their run's result was computed (powerd.latedata): the
result is recomputed with them, resealed and republished, counted, and ``powerd audit`` passes.

Real parts: mosquitto, a ``powerd-agent`` subprocess, the daemon core with its MQTT link and
housekeeping (tests/servers.py). The agent's data is held back by the trick of
tests/agent/test_spool_faults.py: the daemon's retained presence says offline, so the agent
spools; the phase's result is computed after a short ``result_grace_s`` without that data."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from powerd.cli import main
from powerd.commands.serve import start_result_worker
from powerd.exporter import registry_for, render
from powerd.latedata import LateData
from tests.agent.agentproc import agent_process, write_config
from tests.agent.test_mqtt_e2e import post, truth_j
from tests.agent.test_spool_faults import daemon_presence
from tests.servers import Mosquitto, mosquitto, running_daemon, wait_for

RUN = "late"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with mosquitto(tmp_path) as b:
        yield b


def marker(event: str, **extra: object) -> bytes:
    return json.dumps({"v": 1, "run": RUN, "phase": "p", "event": event, **extra}).encode()


@pytest.mark.parametrize("worker", [False, True], ids=["in-daemon", "result-worker"])
def test_data_after_the_result_recomputes_reseals_and_counts(
    tmp_path: Path, broker: Mosquitto, capsys: pytest.CaptureFixture[str], worker: bool
) -> None:
    """With results computed in the daemon, and in the worker process ``powerd run`` uses."""
    agent_id = "edge-late"
    cid = f"{agent_id}/sim:square"
    published: list[dict[str, object]] = []
    with running_daemon(tmp_path, broker) as daemon, contextlib.ExitStack() as stack:
        daemon.result_grace_s = 0.5  # the result is computed while the agent's data is held
        if worker:
            stack.callback(start_result_worker(daemon, daemon.store).close)
        daemon.result_listeners.append(published.append)
        conf = write_config(tmp_path / "a.toml", agent_id, broker.port, tmp_path / "spool")
        with agent_process(conf, tmp_path / "agent.log") as (_, url):
            wait_for(
                lambda: (o := daemon.offsets.get(agent_id)) and len(o.exchanges) >= 5,
                what="clock exchanges",
            )
            wait_for(lambda: cid in daemon.timeline.channels, what="the agent's channel")
            begin = daemon.submit_marker("bench", marker("begin", device=agent_id))
            assert begin.applied, begin.error
            time.sleep(0.5)
            with daemon_presence(broker.port) as (topic, client):
                client.publish(topic, json.dumps({"state": "offline"}), qos=1, retain=True)
                time.sleep(1.5)  # the agent spools ~1 s of the phase
                assert daemon.submit_marker("bench", marker("end", count=1)).applied
                first = wait_for(lambda: daemon.run_result(RUN), what="the first result")
                assert daemon.counts["results_recomputed_late_data"] == 0
                client.publish(topic, json.dumps({"state": "online"}), qos=1, retain=True)

            def revised() -> dict[str, object] | None:
                got = daemon.run_result(RUN)
                return got if got and got.get("revised_after_late_data") else None

            wait_for(revised, what="the result recomputed with the late samples")
            # an end marker through the agent reads its probes at once (reads_asked): the
            # agent's status says so and the daemon's /metrics sums it
            post(url, {"v": 1, "run": "asked", "phase": "p", "event": "begin"})
            post(url, {"v": 1, "run": "asked", "phase": "p", "event": "end"})
            wait_for(
                lambda: (daemon.agents.get(agent_id) or {}).get("reads_asked", 0) >= 1,
                what="reads_asked in the agent's status",
            )
            asked = wait_for(lambda: daemon.run_result("asked"), what="the normal run's result")
            time.sleep(1.5)  # more in-order data after it: no recomputation (batch_s is 1 s)
            wait_for(lambda: not daemon.has_pending(), what="nothing left to compute")
            # read together, once nothing is left to (re)compute: the backlog may have come in
            # more than one batch, each a recomputation
            second = daemon.run_result(RUN)
            assert second is not None
            recomputed = daemon.counts["results_recomputed_late_data"]
            health = daemon.health.snapshot()
            metrics = render(registry_for(daemon)).decode()
            asked_now = daemon.run_result("asked")
            assert daemon.counts["result_worker_fallback"] == 0
            assert daemon.counts["result_failed"] == daemon.counts["result_worker_failed"] == 0
    (p1,) = first["phases"]
    (p2,) = second["phases"]
    ch1 = p1["channels"][cid]
    ch2 = p2["channels"][cid]
    print("coverage first", ch1["coverage"], "after late data", ch2["coverage"])
    assert ch1["coverage"] < 0.8, "the first result was not computed without the held data"
    assert ch2["coverage"] == 1.0
    assert abs(p2["energy_j"] - truth_j(p2)) <= p2["uncertainty_j"]
    assert second["revised_after_late_data"] >= 1
    assert "revised_after_late_data" not in p2["flags"]
    assert "revised_after_late_data" not in first
    assert recomputed == second["revised_after_late_data"]
    assert health["problems"]["results_recomputed_late_data"] >= 1
    assert any(r.get("revised_after_late_data") for r in published), "not republished"
    assert 'powerd_reads_asked_total{source="agents"} 1.0' in metrics
    assert asked_now == asked and "revised_after_late_data" not in asked
    n = second["revised_after_late_data"]
    assert f'powerd_results_recomputed_total{{reason="late_data"}} {n}.0' in metrics
    code = main(["--state-dir", str(tmp_path / "daemon"), "audit", RUN])
    out = capsys.readouterr().out
    assert code == 0, out
    code = main(["--state-dir", str(tmp_path / "daemon"), "audit", RUN, "--revision", "1"])
    assert code != 0, "the first seal should not match the store with the late samples"


def test_in_order_data_finds_nothing_and_late_data_finds_its_run() -> None:
    """The index alone: data after a phase's end is not late, data inside it or the first sample
    after its end of a channel that had data in it is; another device's data is not."""
    late = LateData(lambda ids: {c: c.split("/", 1)[0] for c in ids})
    assert late.on_commit({"a/x": (50, 210)}, 0) == []  # committed before the result
    late.sealed({"run": "r", "phases": [{"t_begin_ns": 100, "t_end_ns": 200, "devices": ["a"]}]})
    assert late.on_commit({"a/x": (211, 300)}, 0) == []  # in order, after the end
    assert late.on_commit({"b/x": (150, 160)}, 0) == []  # another device
    assert late.on_commit({"a/x": (150, 160)}, 5) == ["r"]  # inside the phase
    assert late.on_commit({"a/x": (150, 160)}, 6) == []  # already waiting
    assert late.take_due(5 + late.batch_ns - 1) == []  # batched
    assert late.take_due(5 + late.batch_ns) == [("r", (100, 200), frozenset({"a"}))]
    assert not late.waiting()
    # a channel that had data in the phase and whose first sample after its end arrives late
    fresh = LateData(lambda ids: {c: c.split("/", 1)[0] for c in ids})
    fresh.sealed({"run": "s", "phases": [{"t_begin_ns": 100, "t_end_ns": 200, "devices": ["a"]}]})
    assert fresh.on_commit({"a/y": (90, 150)}, 0) == ["s"]
    fresh.take_due(10**12)
    assert fresh.on_commit({"a/y": (260, 300)}, 10**12) == ["s"]


def test_the_index_is_bounded_and_older_commits_are_not_matched_in_it() -> None:
    late = LateData(lambda ids: {c: c.split("/", 1)[0] for c in ids}, max_entries=10)
    late.prune_every = 1
    for r in range(30):
        late.sealed(
            {
                "run": f"r{r}",
                "phases": [{"t_begin_ns": r * 10, "t_end_ns": r * 10 + 5, "devices": ["a"]}],
            }
        )
    assert late.indexed() <= 10
    # r0 left the index: without a store, a commit inside it is not matched (the daemon's
    # LateData has the store and asks it: tests/powerd/test_late_data_local.py)
    assert late.on_commit({"a/x": (1, 2)}, 0) == []
    assert late.on_commit({"a/x": (291, 292)}, 0) == ["r29"]
