"""``powerd run``'s result worker (``powerd.result_worker``, issue 16) with real parts: the
daemon a subprocess with a sim probe and mosquitto, its worker process SIGKILLed while runs are
in flight. Every result arrives, once; the restart is on ``/healthz`` and ``/metrics``; the
stored results equal an in-process computation on the same store; ``powerd audit`` passes; the
daemon stops cleanly on SIGTERM and takes its worker with it."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from powerd.cli import main
from powerd.runs import compute_run
from powerd.store import Store
from tests.fault.test_daemon_ingest import DaemonProc, check_truth, marker, send_marker
from tests.servers import Mosquitto, free_port, mosquitto, wait_for


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with mosquitto(tmp_path, production=True) as b:
        yield b


def children(pid: int) -> set[int]:
    """The processes ``pid`` started (every thread's children, from /proc)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with open(task / "children") as f:
            out |= {int(c) for c in f.read().split()}
    return out


def worker_pid(daemon: DaemonProc) -> int:
    assert daemon.proc is not None
    (pid,) = wait_for(lambda: children(daemon.proc.pid), 10, "the result worker")  # type: ignore[union-attr]
    return pid


def close_phase(port: int, run: str) -> None:
    t = time.time_ns()
    send_marker(port, marker(run, "p", "begin", 1, t - 400_000_000))
    send_marker(port, marker(run, "p", "end", 2, t, count=2))


def test_worker_sigkilled_mid_run_results_arrive_once_counted_and_equal_in_process(
    tmp_path: Path, broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = DaemonProc(tmp_path, broker.port, free_port())
    daemon.start()
    try:
        first = worker_pid(daemon)
        close_phase(broker.port, "before")
        check_truth(wait_for(lambda: daemon.result("before"), 15, "a result"), 1)
        os.kill(first, signal.SIGSTOP)  # the next batch is sent to a stopped worker...
        runs = ["k1", "k2", "k3"]
        for run in runs:
            close_phase(broker.port, run)
        wait_for(lambda: daemon.health()["counts"].get("markers_applied") == 8, 10, "markers")
        time.sleep(daemon.result_grace_s + 1.0)  # due by now at the latest, and sent
        assert all(daemon.result(run) is None for run in runs)  # ...in flight
        os.kill(first, signal.SIGKILL)
        for run in runs:
            check_truth(wait_for(lambda r=run: daemon.result(r), 20, f"result {run}"), 1)
        health = daemon.health()
        assert health["counts"]["result_worker_restarts"] == 1, health
        assert health["problems"]["result_worker_restarts"] == 1
        assert health["counts"]["results"] == 4 and health["status"] == "ok"
        with urllib.request.urlopen(f"{daemon.url}/metrics", timeout=5) as reply:
            metrics = reply.read().decode()
        assert 'powerd_problems_total{kind="result_worker_restarts"} 1.0' in metrics
        second = worker_pid(daemon)
        assert second != first
        assert daemon.proc is not None
        daemon.proc.terminate()  # SIGTERM: a clean stop, the worker with it
        assert daemon.proc.wait(20) == 0
        daemon.proc = None
        assert not Path(f"/proc/{second}").exists()
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log()
    state = tmp_path / "state"
    with Store(state / "powerd.db") as store:
        for run in ["before", *runs]:
            assert len(store.manifests(run)) == 1  # stored once
            assert store.result(run) == compute_run(store, run)  # as computed in-process
    for run in ["before", *runs]:
        assert main(["--state-dir", str(state), "audit", run]) == 0, capsys.readouterr().out


def test_the_worker_goes_with_a_sigkilled_daemon_and_a_new_daemon_computes_what_was_due(
    tmp_path: Path, broker: Mosquitto
) -> None:
    daemon = DaemonProc(tmp_path, broker.port, free_port())
    daemon.start()
    try:
        worker = worker_pid(daemon)
        os.kill(worker, signal.SIGSTOP)  # the result is sent to it, never answered
        close_phase(broker.port, "orphan")
        wait_for(lambda: daemon.health()["counts"].get("markers_applied") == 2, 10, "markers")
        time.sleep(daemon.result_grace_s + 1.0)
        assert daemon.result("orphan") is None
        daemon.kill()
        os.kill(worker, signal.SIGCONT)  # it finds the daemon's end of its socket closed
        wait_for(lambda: not Path(f"/proc/{worker}").exists(), 10, "the orphaned worker gone")
        daemon.start()
        check_truth(wait_for(lambda: daemon.result("orphan"), 15, "the result after restart"), 1)
    finally:
        daemon.stop()
