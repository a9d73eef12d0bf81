"""Results computed in a worker process reading the store (``powerd.result_worker``, issue 16):
the same results and manifests as computed in the daemon's own process, channel metadata the
daemon changes seen by the worker, and a worker SIGKILLed mid-batch restarted, counted and its
runs computed again — none lost, none stored twice, ``powerd audit`` passing on each."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from powerd import audit, result_worker
from powerd.block import Block
from powerd.channel import Accuracy, Channel, Instrument
from powerd.cli import main
from powerd.clocksync import Exchange, OffsetEstimator
from powerd.daemon import Daemon
from powerd.result_worker import ResultWorker
from powerd.runs import compute_run
from powerd.store import Store
from powerd.timeline import Timeline
from tests.servers import wait_for

MS = 1_000_000
S = 1_000_000_000
AGENT = "edge-01"
METER = Channel(
    "wt300:bench:p1",
    "power",
    "meter",
    1e-3,
    Accuracy(reading_frac=0.001),
    instrument=Instrument("YOKOGAWA", "WT310E", "C2", "F1", "*IDN?"),
    device=AGENT,
)


def agent_channel(i: int) -> Channel:
    return Channel(
        f"{AGENT}/nvml:gpu{i}", "power", "telemetry", 1e-3, Accuracy(offset_w=2.0), device=AGENT
    )


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon (driven directly, no MQTT) whose results are computed by a worker process, an
    agent's clock offset known and a meter and two agent channels sampling at 1 kHz."""
    store = Store(tmp_path / "state" / "powerd.db")
    ctx = audit.AuditContext("run", {"daemon": {"result_grace_s": 0.0}}, "ab" * 32, ["wt300:x"])
    d = Daemon(
        store, Timeline(), time.time_ns, idle_power_w=3.0, result_grace_s=0.0, audit_context=ctx
    )
    t0 = time.time_ns()
    est = d.offsets[AGENT] = OffsetEstimator()
    est.add(Exchange(t0 - S, t0 - S + 3 * S + MS, t0 - S + 3 * S + MS, t0 - S + 2 * MS))
    for ch in (METER, agent_channel(0), agent_channel(1)):
        d.timeline.add_channel(ch)
        store.put_channel(ch)
    worker = ResultWorker(
        store,
        d.idle_power_w,
        d.primary,
        ctx,
        lambda why: d._problem("local", "result_worker_restarts", why),
    )
    worker.start()
    d.result_worker = worker
    try:
        yield d
    finally:
        worker.close()
        store.close()


def feed(d: Daemon, t0: int, seconds: float) -> None:
    """Samples of every channel from ``t0`` on: a meter at 5 W + ripple, GPUs at 40 and 60 W."""
    t = t0 + np.arange(int(seconds * 1000) + 1, dtype=np.int64) * MS
    rng = np.random.default_rng(t0 % 1000)
    for ch, w in ((METER, 5.0), (agent_channel(0), 40.0), (agent_channel(1), 60.0)):
        blk = Block.of(ch.id, t, w + rng.normal(0, 0.2, t.size))
        d.timeline.append(blk)
        d.store.append(blk)
    d.store.flush()


def close_runs(d: Daemon, t0: int, runs: list[str]) -> None:
    """One phase per run, 100 ms each, within the fed window, on the agent's device."""
    for k, run in enumerate(runs):
        for ev, seq, at_ms in (("begin", 1, 50 + 150 * k), ("end", 2, 150 + 150 * k)):
            m = {"v": 1, "run": run, "phase": "p", "event": ev, "seq": seq, "t_ns": t0 + at_ms * MS}
            extra = {"device": AGENT} if ev == "begin" else {"count": 3}
            assert d.submit_marker("harness", json.dumps(m | extra)).error is None


def in_process(d: Daemon, run: str, sealed_ns: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the daemon computes and seals for ``run`` without a worker, on the same store."""
    with d.store.samples_memo():
        result = compute_run(d.store, run, d.idle_power_w, d.primary)
        params = {"idle_power_w": d.idle_power_w, "primary": list(d.primary)}
        clock = d.offsets_json(audit.result_agents(result))
        manifest = audit.build_manifest(d.store, result, sealed_ns, d.audit_context, clock, params)
    return result, manifest


def sealed(store: Store, run: str) -> tuple[dict[str, Any], int]:
    (m,) = store.manifests(run)  # exactly one revision: stored once
    return {k: v for k, v in m.items() if k != "revision"}, int(m["sealed_ns"])


def test_worker_results_and_manifests_equal_the_in_process_ones(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = time.time_ns()
    feed(daemon, t0, 1.0)
    runs = ["w1", "w2", "w3"]
    close_runs(daemon, t0, runs)
    out = daemon.due_results()
    assert [r["run"] for r in out] == runs
    assert daemon.result_worker is not None and daemon.result_worker.jobs_sent == 3
    for result in out:
        manifest, sealed_ns = sealed(daemon.store, result["run"])
        want_result, want_manifest = in_process(daemon, result["run"], sealed_ns)
        assert result == want_result
        assert daemon.store.result(result["run"]) == json.loads(json.dumps(want_result))
        assert manifest["clock_sync"][AGENT]["offset_ns"] == -3 * S  # the daemon's state
        assert manifest == json.loads(json.dumps(want_manifest))
        assert result["phases"][0]["energy_j"] is not None
    daemon.store.flush()
    state = daemon.store.path.parent
    for run in runs:
        assert main(["--state-dir", str(state), "audit", run]) == 0, capsys.readouterr().out


def test_channel_metadata_changed_by_the_daemon_reaches_the_worker(daemon: Daemon) -> None:
    t0 = time.time_ns()
    feed(daemon, t0, 1.0)
    close_runs(daemon, t0, ["c1"])
    (first,) = daemon.due_results()  # the worker has read and cached the channels
    # the meter's accuracy changes (a new certificate), a new GPU appears
    daemon.store.put_channel(replace(METER, accuracy=Accuracy(reading_frac=0.05)))
    daemon.store.put_channel(agent_channel(2))
    t1 = time.time_ns()
    feed(daemon, t1, 1.0)
    new = agent_channel(2)
    blk = Block.of(new.id, t1 + np.arange(1001, dtype=np.int64) * MS, np.full(1001, 80.0))
    daemon.timeline.add_channel(new)
    daemon.timeline.append(blk)
    daemon.store.append(blk)
    daemon.store.flush()
    close_runs(daemon, t1, ["c2"])
    (second,) = daemon.due_results()
    want, _ = in_process(daemon, "c2", 0)
    assert second == want
    meter_unc = [r["phases"][0]["channels"][METER.id]["uncertainty_j"] for r in (first, second)]
    assert meter_unc[1] > 3 * meter_unc[0]  # the new accuracy was used
    assert new.id in second["phases"][0]["channels"]


def stop_and_kill_mid_batch(d: Daemon, runs: list[str]) -> list[dict[str, Any]]:
    """Stop the worker, let a batch be sent to it, SIGKILL it: the batch's runs were in flight."""
    worker = d.result_worker
    assert worker is not None and worker.pid is not None
    pid = worker.pid
    os.kill(pid, signal.SIGSTOP)
    out: list[dict[str, Any]] = []
    batch = threading.Thread(target=lambda: out.extend(d.due_results()))
    batch.start()
    wait_for(lambda: worker.jobs_sent >= len(runs), 10, "the batch sent to the stopped worker")
    assert not out  # nothing answered: all in flight
    os.kill(pid, signal.SIGKILL)
    batch.join(60)
    assert not batch.is_alive()
    assert worker.pid != pid and worker.alive()
    return out


def test_a_worker_killed_mid_batch_is_restarted_counted_and_nothing_lost_or_doubled(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = time.time_ns()
    feed(daemon, t0, 1.0)
    runs = ["k1", "k2", "k3", "k4"]
    close_runs(daemon, t0, runs)
    out = stop_and_kill_mid_batch(daemon, runs)
    assert [r["run"] for r in out] == runs
    assert daemon.counts["result_worker_restarts"] == 1
    assert daemon.health.snapshot()["problems"]["result_worker_restarts"] == 1
    assert daemon.result_worker is not None and daemon.result_worker.jobs_sent == 2 * len(runs)
    assert daemon.counts["results"] == len(runs)
    for result in out:
        _, sealed_ns = sealed(daemon.store, result["run"])  # one revision each
        assert result == in_process(daemon, result["run"], sealed_ns)[0]
    daemon.store.flush()
    for run in runs:
        assert main(["--state-dir", str(daemon.store.path.parent), "audit", run]) == 0
    capsys.readouterr()


def test_a_run_in_flight_at_repeated_deaths_is_computed_in_the_daemon(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(result_worker, "DEATHS_PER_JOB", 1)
    t0 = time.time_ns()
    feed(daemon, t0, 1.0)
    close_runs(daemon, t0, ["f1", "f2"])
    out = stop_and_kill_mid_batch(daemon, ["f1", "f2"])
    assert [r["run"] for r in out] == ["f1", "f2"]
    assert daemon.counts["result_worker_fallback"] == 1  # f1: in the daemon; f2: a new worker
    assert daemon.counts["result_worker_restarts"] == 1
    for run in ("f1", "f2"):
        sealed(daemon.store, run)


def test_a_worker_dead_while_idle_is_restarted_by_check(daemon: Daemon) -> None:
    worker = daemon.result_worker
    assert worker is not None and worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    wait_for(lambda: not worker.alive(), 10, "the worker gone")
    assert worker.check()
    assert worker.alive() and daemon.counts["result_worker_restarts"] == 1
    t0 = time.time_ns()
    feed(daemon, t0, 0.5)
    close_runs(daemon, t0, ["i1"])
    assert [r["run"] for r in daemon.due_results()] == ["i1"]


def test_a_readonly_store_refuses_writes_and_sees_the_writers_commits(tmp_path: Path) -> None:
    path = tmp_path / "powerd.db"
    with Store(path) as writer:
        writer.put_channel(METER)
        reader = Store(path, readonly=True)
        assert set(reader.channels()) == {METER.id}
        writer.put_channel(agent_channel(0))
        serial, changed = writer.channel_changes(0)
        assert serial == 2 and changed == [agent_channel(0).id, METER.id]
        assert writer.channel_changes(1) == (2, [agent_channel(0).id])
        assert set(reader.channels()) == {METER.id}  # cached until told
        reader.reload_channels(writer.channel_changes(1)[1])
        assert set(reader.channels()) == {METER.id, agent_channel(0).id}
        assert reader.channels_by_device()[AGENT] == (METER.id, agent_channel(0).id)
        with pytest.raises(Exception, match="readonly"):
            reader.put_channel(agent_channel(1))
        reader.close()
