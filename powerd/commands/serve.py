"""``powerd run``: the long-running daemon — local probes, MQTT, the HTTP API, one store.

Everything meets in one ``Daemon``: the sampler thread feeds local probes into the timeline and
store, MQTT brings markers and agents' blocks, the HTTP API takes markers and serves results and
``/metrics``. A sink hub (``powerd.sinks``) gets every block and result on its own thread, keeps
the exporter's energy counters and feeds the optional InfluxDB / VictoriaMetrics sink.
Due results are computed in a worker process reading the store (``powerd.result_worker``,
``[daemon] result_worker``); this process decides what is due, stores, seals and publishes.
SIGTERM or SIGINT stops it cleanly (the store is flushed; nothing committed is lost on a kill).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import functools
import signal
import sys
import time
from pathlib import Path

from powerd.config import DaemonConfig, check, load
from powerd.daemon import Daemon
from powerd.efficiency import EfficiencyMonitor
from powerd.errors import PowerdError
from powerd.phasecount import PhaseCounter
from powerd.phases import StampedMarker
from powerd.probes.base import Probe
from powerd.result_worker import ResultWorker
from powerd.runner import Opener, Sampler, open_probes
from powerd.sinks.hub import Sink, SinkHub, TeeSink
from powerd.store import Store
from powerd.timebase import TimeAnchor
from powerd.timeline import Timeline

FLUSH_S = 1.0
PRUNE_S = 600.0
RESULT_POLL_S = 1.0
PENDING_POLL_S = 0.02
# The daemon's timeline serves only each channel's latest samples (coverage of pending results,
# /v1/channels, /metrics); results are computed from the store. The default ring (2^20 samples,
# 16 MiB per channel once filled) would grow a fleet daemon by 16 B per sample up to 128 GiB at
# 8 000 channels (issue 16, per-agent state); this keeps it at 1 KiB per channel.
DAEMON_RING_SAMPLES = 64


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run the daemon (MQTT markers and agents, HTTP API, local probes)",
        description=__doc__,
        epilog="The configuration file is TOML; see powerd/config.py or the README "
        "('Running the daemon and agents') for every key.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", type=Path, metavar="FILE", help="TOML config")
    which.add_argument(
        "--check-config",
        type=Path,
        metavar="FILE",
        help="check FILE (and the files and directories it names) and exit: 0 ok, 2 not",
    )


def _log(text: str) -> None:
    print(f"powerd: {text}", file=sys.stderr, flush=True)


def _open_probes(
    specs: tuple[str, ...],
) -> tuple[list[tuple[str, Probe]], list[tuple[str, Opener, str]]]:
    """The probes that opened (with their specs) and those the sampler will retry."""
    return open_probes(specs, _log)


def probe_status(daemon: Daemon, component: str, reason: str | None) -> None:
    """The sampler's probe up/down transitions on the daemon's health (/healthz, /metrics)."""
    if reason is None:
        daemon.health.up(component)
    else:
        daemon.health.down(component, reason)


def _sinks(cfg: DaemonConfig, state_dir: Path) -> list[Sink]:
    if cfg.influx is None:
        return []
    from powerd.sinks.influx import InfluxSink

    buffer_dir = cfg.influx.buffer_dir or state_dir / "influx-buffer"
    return [InfluxSink(cfg.influx, cfg.sinks.labels, buffer_dir)]


async def housekeeping(daemon: Daemon, store: Store) -> None:
    """Compute results as they fall due, flush agents' samples, prune old ones.

    A closing phase wakes this loop at once; while results are pending it checks every 20 ms
    whether the data covers them (agents' data arrives every publish interval, 0.5 s by default,
    so a faster check gains nothing and costs a thread hop per check: with a fleet some result
    is always pending; issue 16)."""
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def wake() -> None:
        loop.call_soon_threadsafe(woken.set)

    daemon.pending_listeners.append(wake)
    next_flush = time.monotonic() + FLUSH_S
    next_prune = time.monotonic() + PRUNE_S
    while True:
        timeout = PENDING_POLL_S if daemon.has_pending() else RESULT_POLL_S
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
        # comes as the wake-up does, and this loop then ran on after SIGTERM (issue 16)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await woken.wait()
        woken.clear()
        if daemon.result_worker is not None and not daemon.result_worker.alive():
            await asyncio.to_thread(check_worker, daemon, daemon.result_worker)
        if daemon.has_pending():
            await asyncio.to_thread(daemon.due_results)
        if time.monotonic() >= next_flush:
            await asyncio.to_thread(store.flush)
            await asyncio.to_thread(daemon.check_held)  # nothing held for ever unseen
            next_flush = time.monotonic() + FLUSH_S
        if time.monotonic() >= next_prune:
            await asyncio.to_thread(store.prune, daemon.clock())
            next_prune = time.monotonic() + PRUNE_S


def check_worker(daemon: Daemon, worker: ResultWorker) -> None:
    """A result worker that died while idle is restarted now (counted by its ``on_restart``),
    not only when the next result falls due; one that cannot start is counted and the next
    batch is computed in the daemon (``Daemon.due_results``)."""
    try:
        worker.check()
    except OSError as err:
        with daemon._lock:
            daemon._problem("local", "result_worker_failed", str(err))


def start_result_worker(daemon: Daemon, store: Store) -> ResultWorker:
    """Due results computed in a worker process reading the store (``powerd.result_worker``;
    ``[daemon] result_worker``): the daemon's interpreter keeps ingesting meanwhile. One that
    does not start is counted (``result_worker_failed``) and retried by ``housekeeping``;
    until then results are computed in the daemon."""

    def restarted(reason: str) -> None:
        with daemon._lock:
            daemon._problem("local", "result_worker_restarts", reason)

    worker = ResultWorker(
        store, daemon.idle_power_w, daemon.primary, daemon.audit_context, restarted
    )
    daemon.result_worker = worker
    check_worker(daemon, worker)
    return worker


def read_at_ends(daemon: Daemon, sampler: Sampler) -> None:
    """On every end marker the daemon applies, its own probes read at once (``Sampler.poll_now``)
    as an agent's do on a relayed end: a local channel then has a reading at or after the phase's
    end without waiting up to a poll interval, so the result is not held back by it."""

    def on_marker(sm: StampedMarker) -> None:
        if sm.marker.event == "end":
            sampler.poll_now()

    daemon.marker_listeners.append(on_marker)
    daemon.local_reads_asked = lambda: sampler.reads_asked


def start_counters(
    cfg: DaemonConfig, daemon: Daemon, store: Store, hub: SinkHub
) -> tuple[PhaseCounter, EfficiencyMonitor | None]:
    """Serving-engine counters: read at phase edges (``powerd.phasecount``: a begin marker's
    ``count_from`` or ``[daemon] count_from``) and, for ``[[efficiency]]`` entries, every
    interval (``powerd.efficiency``)."""
    counts = PhaseCounter(daemon.clock, daemon.health, store.put_phase_counts, cfg.count_from)
    daemon.marker_listeners.append(counts.on_marker)
    daemon.run_busy = counts.busy
    counts.start()
    efficiency = None
    if cfg.efficiency:
        efficiency = EfficiencyMonitor(daemon, cfg.efficiency, hub.on_efficiency)
        daemon.efficiency = efficiency.figures
        efficiency.start()
    return counts, efficiency


async def serve(cfg: DaemonConfig, state_dir: Path, config_path: Path | None = None) -> None:
    from powerd.api import HttpLimits, make_app, start_api
    from powerd.audit import AuditContext
    from powerd.calibration import annotator

    token = cfg.http.token()
    store = Store(state_dir / "powerd.db", cfg.retention)
    store.annotate_channel = annotator(cfg.calibration)
    anchor = TimeAnchor()
    timeline = Timeline(capacity_per_channel=DAEMON_RING_SAMPLES)
    daemon = Daemon(
        store,
        timeline,
        anchor.utc_ns,
        cfg.idle_power_w,
        cfg.primary,
        cfg.result_grace_s,
        max_marker_skew_s=cfg.max_marker_skew_s,
        max_phase_s=cfg.max_phase_s,
        held_place_bound_s=cfg.held_place_bound_s,
        audit_context=AuditContext.from_config_file("run", config_path, cfg.probes),
    )
    worker = start_result_worker(daemon, store) if cfg.result_worker else None
    opened, pending = _open_probes(cfg.probes)
    hub = SinkHub(daemon, cfg.sinks.labels, _sinks(cfg, state_dir), cfg.sinks.recent_runs)
    sampler = Sampler(
        [p for _, p in opened],
        timeline,
        TeeSink(store, hub.on_block),
        anchor,
        names=[spec for spec, _ in opened],
        pending=pending,
        on_status=functools.partial(probe_status, daemon),
        put_gap=store.put_gap,
        put_accuracy=store.put_accuracy,
        log=_log,
    )
    hub.attach(sampler.probe_health)
    read_at_ends(daemon, sampler)
    hub.start()
    sampler.start()
    counts, efficiency = start_counters(cfg, daemon, store, hub)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # `kill -USR1 <pid>`: every thread's stack on stderr (a daemon slow to stop, stuck)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    limits = HttpLimits(
        cfg.http.header_timeout_s, cfg.http.body_timeout_s, cfg.http.max_connections
    )
    runner, url = await start_api(make_app(daemon, token, limits), cfg.http.bind, cfg.http.port)
    _log(f"store {store.path}; HTTP API {url}")
    tasks = [asyncio.create_task(housekeeping(daemon, store))]
    if cfg.mqtt is not None:
        from powerd.mqtt_link import run_mqtt

        mqtt = run_mqtt(
            daemon,
            cfg.mqtt,
            cfg.clock_interval_s,
            stop,
            daemon_id=cfg.id,
            clock_rate_max_hz=cfg.clock_rate_max_hz,
        )
        tasks.append(asyncio.create_task(mqtt))
    try:
        await stop.wait()
    finally:
        _log("stopping")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if worker is not None:
            await asyncio.to_thread(worker.close)
        await runner.cleanup()
        sampler.stop()
        counts.stop()
        if efficiency is not None:
            efficiency.stop()
        await asyncio.to_thread(hub.stop)
        store.close()
        if daemon.held is not None:
            daemon.held.close()


def run_command(args: argparse.Namespace) -> int:
    from powerd.paths import default_state_dir

    if args.check_config is not None:
        check(args.check_config, args.state_dir or default_state_dir())
        print(f"config {args.check_config}: ok")
        return 0
    cfg = load(args.config)
    state_dir = cfg.state_dir or args.state_dir or default_state_dir()
    try:
        asyncio.run(serve(cfg, state_dir, args.config))
    except OSError as err:
        raise PowerdError(f"cannot serve: {err}") from None
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    return 0
