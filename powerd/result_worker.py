"""Results computed in a separate process that reads the store (issue 16, fleet capacity).

Why: ``powerd run`` ingests MQTT, feeds its sinks and computed every due result in one Python
interpreter. At a few hundred agents the result computation (store reads, integration, the
manifest's hashes) queued behind ingestion under the GIL: ~5 ms of wall time per result for
1.2 ms of CPU, results falling seconds behind (BENCHMARKS.md §12). Here a worker process opens
the same SQLite store read-only (WAL: it reads while the daemon commits) and computes each due
run's result (contract 2) and its manifest (``powerd.audit``) on its own interpreter.

Who does what. The daemon still decides which runs are due, flushes the samples that made them
due before asking, and does every write: it stores the result, completes the manifest with its
agents' clock state (which only the daemon knows: ``with_clock_sync``) and seals it, and
publishes. The worker only reads. So writes stay in one process and a result is stored exactly
once, whatever happens to the worker.

Faults, none silent. If the worker dies (killed, crashed, out of memory) the daemon sees the
end of its socket or its exit, counts ``result_worker_restarts`` (``/healthz`` ``counts`` and
``problems``, ``/metrics`` ``powerd_problems_total{kind=...}``), starts a new one and sends it
again the runs it had not answered; none is lost and none is stored twice (only answers are
stored). A run in flight at two deaths in a row is computed in the daemon itself (counted
``result_worker_fallback``), so one run that kills the worker cannot stall every other. A run
whose computation raises comes back as an error (counted ``result_failed`` by the daemon).

Protocol: a socket pair between the two processes carrying pickled messages
(``multiprocessing.connection.Connection``; both ends are ours). First ``Hello``; then per batch
``(changed_channel_ids, [Job, ...])`` answered by one ``Answer`` per job, in order; ``None``
asks the worker to exit. The worker ignores SIGINT and SIGTERM (a terminal's Ctrl-C or
systemd's stop reach the whole process group: the daemon stops it, so a stop is not a death)
and exits when the daemon's end of the socket closes (the daemon stopped or died; not
``PR_SET_PDEATHSIG``, which fires when the daemon's *thread* that started it ends).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from powerd.audit import AuditContext, build_manifest
from powerd.runs import compute_run
from powerd.store import Store

# How often a waiting daemon checks that the worker still lives (its socket's end shows a death
# at once; this catches a worker that hangs on to it, e.g. stopped).
POLL_S = 0.5
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 2.0
# A run in flight at this many worker deaths in a row is computed in the daemon instead.
DEATHS_PER_JOB = 2
# After a worker that did not start, the next try (meanwhile results are computed in-process).
RETRY_S = 30.0


@dataclass(frozen=True)
class Hello:
    """What the worker needs besides the store: the daemon's result parameters."""

    store_path: str
    idle_power_w: float | None
    primary: tuple[str, ...]
    audit_context: AuditContext | None


@dataclass(frozen=True)
class Job:
    """One due run; ``sealed_ns`` is the daemon's time it became due (the result's stored time
    and its manifest's seal)."""

    run: str
    sealed_ns: int


@dataclass(frozen=True)
class Answer:
    """A job's outcome: the result and its manifest (``clock_sync`` not yet filled in), or why
    not. ``fallback``: the worker could not compute it (died on it); the daemon must."""

    run: str
    result: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    error: str | None = None
    manifest_error: str | None = None
    fallback: bool = False


def with_clock_sync(manifest: dict[str, Any], clock_sync: dict[str, Any]) -> dict[str, Any]:
    """The manifest the worker built (``build_manifest`` with no clock state) completed with
    the daemon's ``clock_sync`` of the result's agents (``Daemon.offsets_json(result_agents)``),
    as ``seal_manifest`` in the daemon would have built it: the daemon's state when given, else
    what ``build_manifest`` carried from the last revision (an offline context), else none."""
    if not clock_sync:
        return manifest
    return {**manifest, "clock_sync": clock_sync}


def compute(store: Store, hello: Hello, job: Job) -> Answer:
    """One run's result and manifest from the store, as ``Daemon.due_results`` computes them
    in-process (each sample window read once for both)."""
    with store.samples_memo():
        try:
            result = compute_run(store, job.run, hello.idle_power_w, hello.primary)
        except Exception as err:
            return Answer(job.run, error=f"{type(err).__name__}: {err}")
        try:
            params = {"idle_power_w": hello.idle_power_w, "primary": list(hello.primary)}
            manifest = build_manifest(
                store, result, job.sealed_ns, hello.audit_context, None, params
            )
        except Exception as err:  # the result stands, its audit trail is missing
            return Answer(job.run, result, manifest_error=f"{type(err).__name__}: {err}")
    return Answer(job.run, result, manifest)


def worker_main(fd: int) -> int:
    """The worker process: answer jobs until the daemon's end closes or says stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        hello = conn.recv()
        assert isinstance(hello, Hello)
        store = Store(Path(hello.store_path), readonly=True)
        conn.send("ready")
        while True:
            msg = conn.recv()
            if msg is None:
                break
            changed, jobs = msg
            store.reload_channels(changed)
            for job in jobs:
                conn.send(compute(store, hello, job))
    except (EOFError, OSError):
        pass  # the daemon is gone or closed its end: nothing left to answer
    return 0


class WorkerClosed(Exception):
    """The worker was closed (the daemon stops) while a batch was being computed."""


class ResultWorker:
    """The daemon's handle on its worker process: start, compute batches, restart on death.

    ``on_restart(reason)`` is called once per death noticed (the daemon counts and logs it);
    ``compute`` is called from one thread at a time (the daemon's housekeeping)."""

    def __init__(
        self,
        store: Store,
        idle_power_w: float | None,
        primary: tuple[str, ...],
        audit_context: AuditContext | None,
        on_restart: Callable[[str], None],
    ) -> None:
        self.store = store
        self.hello = Hello(str(store.path), idle_power_w, tuple(primary), audit_context)
        self.on_restart = on_restart
        self.restarts = 0
        self.jobs_sent = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._serial = 0  # the store's channel serial the worker has caught up with
        self._lock = threading.Lock()
        self._closed = False
        self._retry_at = 0.0  # monotonic s: no new start before (one failed)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        """Start the worker (the store must exist: the daemon opened it) and wait until it has
        opened the store."""
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self._closed:
            raise WorkerClosed("result worker closed")
        wait_s = self._retry_at - time.monotonic()
        if wait_s > 0:
            raise OSError(f"the result worker did not start; next try in {wait_s:.0f} s")
        ours, theirs = socket.socketpair()
        # the child imports this very powerd, wherever it was imported from
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            self._serial = self.store.channel_changes(0)[0]
            self._retry_at = time.monotonic() + RETRY_S  # until it answers
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "powerd.result_worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        try:
            self._conn.send(self.hello)
            if not self._conn.poll(START_TIMEOUT_S):
                raise OSError(f"no answer within {START_TIMEOUT_S:.0f} s")
            ready = self._conn.recv()
            if ready != "ready":
                raise OSError(f"unexpected first message {ready!r}")
            self._retry_at = 0.0
        except (EOFError, OSError) as err:
            self._kill()
            self._retry_at = time.monotonic() + RETRY_S
            raise OSError(f"the result worker did not start: {err}") from None

    def _kill(self) -> str:
        """Make sure the current worker is gone; returns how it ended."""
        proc, self._proc = self._proc, None
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()
        if proc is None:
            return "not running"
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
        return f"killed by signal {-code}" if code < 0 else f"exited with status {code}"

    def _restart(self, in_flight: int) -> None:
        how = self._kill()
        self.restarts += 1
        self.on_restart(f"result worker {how}; restarted, {in_flight} runs in flight sent again")
        self._start()

    def alive(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    def check(self) -> bool:
        """Restart the worker if it died while idle (counted); False if a batch is under way
        (that batch notices a death itself). Never blocks on a running batch. Raises OSError
        if a new worker does not start."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._closed or time.monotonic() < self._retry_at:
                return True  # a failed start is tried again after RETRY_S
            if self._proc is None:
                self._start()  # stopped on purpose (a batch abandoned): no death
            elif not self.alive():
                self._restart(0)
            return True
        finally:
            self._lock.release()

    def compute(self, jobs: list[Job]) -> Iterator[Answer]:
        """Each job's answer as it arrives, in order. A worker that dies is restarted (counted)
        and sent again the jobs it had not answered; a job at ``DEATHS_PER_JOB`` deaths in a
        row comes back with ``fallback`` set. Raises ``WorkerClosed`` once ``close`` was
        called, OSError if no worker starts (the jobs not answered yet are the caller's)."""
        with self._lock:
            todo = list(jobs)
            deaths = 0
            try:
                while todo:
                    if self._closed:
                        raise WorkerClosed("result worker closed")
                    if deaths >= DEATHS_PER_JOB:
                        deaths = 0
                        yield Answer(todo.pop(0).run, fallback=True)
                        continue
                    if self._proc is None:
                        self._start()
                    try:
                        if not self.alive() or self._conn is None:
                            raise EOFError("the worker exited")
                        self._serial, changed = self.store.channel_changes(self._serial)
                        self._conn.send((changed, todo))
                        self.jobs_sent += len(todo)
                        while todo:
                            answer = self._receive()
                            if answer.run != todo[0].run:
                                raise OSError(f"answer for {answer.run!r}, not {todo[0].run!r}")
                            todo.pop(0)
                            deaths = 0
                            yield answer
                    except (EOFError, OSError):
                        if self._closed:
                            raise WorkerClosed("result worker closed") from None
                        deaths += 1
                        self._restart(len(todo))
            finally:
                if todo and not self._closed:
                    self._kill()  # its answers left unread would answer the next batch

    def _receive(self) -> Answer:
        conn = self._conn
        while True:
            if conn is None or self._closed:
                raise EOFError("closed")
            if conn.poll(POLL_S):
                answer = conn.recv()
                if not isinstance(answer, Answer):
                    raise OSError(f"unexpected message {type(answer).__name__}")
                return answer
            if not self.alive():
                raise EOFError("the worker exited")

    def close(self) -> None:
        """Stop the worker (the daemon stops): a batch under way ends with ``WorkerClosed``."""
        self._closed = True
        conn, proc = self._conn, self._proc
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(None)
        if proc is not None:
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with self._lock:
            self._kill()


if __name__ == "__main__":
    # run as the imported module, not as __main__: the messages' classes must pickle under
    # their module's name on both sides
    from powerd.result_worker import worker_main as _worker_main

    sys.exit(_worker_main(int(sys.argv[1])))
