"""``powerd measure -- CMD``: sample the probes, mark phases around CMD, report, exit as CMD did.

Edge times are bracketed: the begin of ``run`` lies between the clock reads just before and after
``Popen`` (which returns once the child has exec'd), the end between the last check that saw CMD
running and the check that saw it exit. Each edge is stamped at its bracket's midpoint with half the
bracket as its uncertainty, which then enters the timing term of the energy uncertainty.

The end is watched without busy polling: the main thread blocks in ``poll(2)`` on a pidfd of CMD
(Linux >= 5.3), which the kernel makes readable the moment CMD exits, so the waking read is
microseconds after the exit. The wait times out every ``EXIT_BRACKET_S`` only to keep the bracket's
lower side exact (a clock read that saw CMD still running), so the command costs
``1 / EXIT_BRACKET_S`` wakeups a second instead of a thousand (issue 16 item 4). The exit lies in
(last read that saw CMD running, waking read]; as the waking read follows the exit at once, the
edge is stamped at the waking read with that whole width as its uncertainty (a bracket centred
there, which contains the exact one): a midpoint stamp would be early by half the width on every
run. Where pidfds are missing the old ``Popen.poll`` loop with ``EXIT_POLL_S`` is used.

The workload can mark its own phases (prefill, decode, …) inside ``run``: measure serves the HTTP
API on a free loopback port while CMD runs and passes ``POWERD_URL`` and ``POWERD_RUN`` in CMD's
environment, which ``powerd.client.PowerdClient()`` picks up. Measure's own ``idle``/``run`` markers
and the workload's go through one ``Daemon`` (one validation, one phase state machine, one store),
so the report holds every phase of the run. A marker the workload sends for another run id is
accepted and stored (the run id is the workload's choice) but is not part of this run's report;
``powerd report OTHER`` computes it. The API stops when CMD exits.
"""

from __future__ import annotations

import argparse
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType

from powerd.agent.wire import NAME_RE, Marker
from powerd.api import ApiThread, make_app
from powerd.audit import AuditContext, seal
from powerd.calibration import annotator
from powerd.config import load as load_config
from powerd.daemon import Daemon
from powerd.errors import PowerdError, ProbeUnavailable, SpecError
from powerd.integrate import ChannelEnergy, Window, integrate
from powerd.probes.base import Probe
from powerd.probes.registry import open_probe
from powerd.report.files import (
    ReportWriteError,
    check_out_dir,
    reports_line,
    write_reports,
)
from powerd.report.numbers import sig_text
from powerd.report.table import format_table
from powerd.results import choose_primary
from powerd.runner import Sampler
from powerd.runs import compute_run
from powerd.store import Store
from powerd.timebase import TimeAnchor
from powerd.timeline import Timeline

SOURCE = "powerd-measure"
URL_ENV = "POWERD_URL"
RUN_ENV = "POWERD_RUN"
EXIT_POLL_S = 0.001
EXIT_BRACKET_S = 0.01
PROGRESS_TTY_S = 0.5
PROGRESS_PIPE_S = 30.0
TRAIL_TIMEOUT_S = 2.0
EXIT_REPORT_FAILED = 2
STALE_PERIODS = 20
STALE_MIN_S = 2.0


def _validate(args: argparse.Namespace) -> list[Probe]:
    """Check every argument and open the probes before anything touches the store."""
    if not args.cmd or args.cmd == ["--"]:
        raise SpecError("no command to measure: put it after --, e.g. -- sleep 2")
    if args.cmd[0] == "--":
        args.cmd = args.cmd[1:]
    if shutil.which(args.cmd[0]) is None:
        raise SpecError(f"cannot run {args.cmd[0]!r}: not found or not executable")
    if not NAME_RE.match(args.run):
        raise SpecError(f"--run {args.run!r}: use 1-128 characters of A-Za-z0-9_.:-")
    if not NAME_RE.match(args.unit):
        raise SpecError(f"--unit {args.unit!r}: use a name such as inference, token, query")
    if args.count is not None and args.count < 0:
        raise SpecError("--count must be >= 0")
    if args.idle < 0:
        raise SpecError("--idle must be >= 0 seconds")
    if getattr(args, "loadgen_log", None) is not None and not NAME_RE.match(args.loadgen_phase):
        raise SpecError(
            f"--loadgen-phase {args.loadgen_phase!r}: use 1-128 characters of A-Za-z0-9_.:-"
        )
    probes: list[Probe] = []
    unavailable: list[str] = []
    for spec in args.probe:
        try:
            probes.append(open_probe(spec))
        except ProbeUnavailable as err:
            unavailable.append(str(err))
    if not probes:
        raise ProbeUnavailable("nothing can be measured: " + "; ".join(unavailable))
    for reason in unavailable:
        print(f"powerd: warning: {reason} (measuring with the other probes)", file=sys.stderr)
    ids = [ch.id for p in probes for ch in p.channels()]
    dupes = sorted({c for c in ids if ids.count(c) > 1})
    if dupes:
        raise SpecError(
            f"two probes give channel {dupes[0]}; give one an id=... to tell them apart"
        )
    return probes


class Marks:
    """Stamps this command's own edges and applies them through the daemon.

    The daemon is the same one that takes the workload's markers over HTTP, so both meet in one
    phase state machine. A marker the daemon refuses (e.g. the workload already ended phase ``run``
    itself) is reported as a warning: the rest of the run is still worth its report.
    """

    def __init__(self, daemon: Daemon, run: str, devices: tuple[str, ...] | None = None) -> None:
        self.daemon, self.run, self.devices = daemon, run, devices

    def mark(
        self,
        phase: str,
        event: str,
        lo_ns: int,
        hi_ns: int,
        count: int | None = None,
        unit: str = "inference",
    ) -> None:
        t_ns = (lo_ns + hi_ns) // 2
        device = self.devices if event == "begin" else None
        marker = Marker(self.run, phase, event, None, t_ns, count, unit, device=device)  # type: ignore[arg-type]
        outcome = self.daemon.submit_marker(
            SOURCE, marker.to_json(), received_ns=hi_ns, uncertainty_ns=(hi_ns - lo_ns + 1) // 2
        )
        if outcome.error is not None:
            print(
                f"powerd: warning: {event} of phase {phase!r} not applied: {outcome.error}",
                file=sys.stderr,
            )


class Progress:
    """A progress line on stderr: refreshed in place on a terminal, now and then on a pipe.

    It uses the final table's method: each channel is integrated on its own (the same trapezoid or
    counter difference as the result), accumulated slice by slice over the new samples only, so the
    cost per tick stays flat however long CMD runs (older samples may leave the timeline's ring
    meanwhile); the primary channels are then chosen by the result's rule from those cumulative
    figures. A slice ends at the latest time every channel has a sample for, so no slice holds a
    value beyond the last sample (that edge would never be corrected): the figure covers the phase
    up to that time and its mean power is over that span. Before any slice is complete the line
    shows "-" rather than 0. The line says "running" while CMD runs; when CMD has ended it says so
    and shows no figure: the final figures are the table's, computed from the store.
    """

    def __init__(self, timeline: Timeline, run: str, quiet: bool) -> None:
        self.timeline, self.run = timeline, run
        self.tty = sys.stderr.isatty()
        self.quiet = quiet
        self.every_s = PROGRESS_TTY_S if self.tty else PROGRESS_PIPE_S
        self.next_s = time.monotonic() + self.every_s
        self.phase_begin_ns = 0
        self.upto_ns = 0
        self.per_channel_j: dict[str, float] = {}
        self.last: dict[str, ChannelEnergy] = {}

    def _data_until_ns(self, now_ns: int) -> int:
        """The latest time every live channel has data for; a channel silent for longer than
        ``STALE_PERIODS`` periods (at least ``STALE_MIN_S``) does not hold the line back."""
        ends: list[int] = []
        for c, ch in self.timeline.channels.items():
            latest = self.timeline.latest(c)
            if latest is None:
                return self.upto_ns
            stale_ns = int(max(STALE_MIN_S, STALE_PERIODS * ch.nominal_period_s) * 1e9)
            if latest[0] >= now_ns - stale_ns:
                ends.append(latest[0])
        return min(now_ns, *ends) if ends else self.upto_ns

    def _advance(self, t_begin_ns: int, now_ns: int) -> None:
        if t_begin_ns != self.phase_begin_ns:
            self.phase_begin_ns, self.upto_ns = t_begin_ns, t_begin_ns
            self.per_channel_j, self.last = {}, {}
        until_ns = self._data_until_ns(now_ns)
        if until_ns <= self.upto_ns:
            return
        w = Window(self.upto_ns, until_ns)
        for c, ch in self.timeline.channels.items():
            fig = integrate(*self.timeline.window(c, w.t_begin_ns, until_ns), w, ch)
            if fig.energy_j is not None:
                self.per_channel_j[c] = self.per_channel_j.get(c, 0.0) + fig.energy_j
                self.last[c] = fig
        self.upto_ns = until_ns

    def figures(self) -> tuple[float | None, float | None]:
        """Energy so far (J) and mean power over the integrated span (W); None before data."""
        span_s = (self.upto_ns - self.phase_begin_ns) / 1e9
        if span_s <= 0 or not self.per_channel_j:
            return None, None
        cumulative = {c: replace(self.last[c], energy_j=e) for c, e in self.per_channel_j.items()}
        primary = choose_primary(cumulative, self.timeline.channels)
        energy_j = sum(self.per_channel_j[c] for c in primary)
        return energy_j, energy_j / span_s

    def tick(self, phase: str, t_begin_ns: int, now_ns: int, force: bool = False) -> None:
        if self.quiet or (not force and time.monotonic() < self.next_s):
            return
        self.next_s = time.monotonic() + self.every_s
        elapsed_s = (now_ns - t_begin_ns) / 1e9
        if force:
            # the final figures are the table's; a last "so far" figure would be a second number
            text = f"powerd: {self.run} {phase} ended after {elapsed_s:.1f} s; computing the result"
        else:
            self._advance(t_begin_ns, now_ns)
            energy_j, mean_w = self.figures()
            text = (
                f"powerd: {self.run} {phase} (running) {elapsed_s:7.1f} s  "
                f"so far {sig_text(energy_j):>9} J  mean {sig_text(mean_w):>9} W"
            )
        sys.stderr.write(("\r" + text + "\x1b[K") if self.tty else (text + "\n"))
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty and not self.quiet:
            sys.stderr.write("\n")


def _wait_first_samples(timeline: Timeline, probes: list[Probe]) -> None:
    """Wait until every channel has a sample, so the first edge has data on both sides."""
    horizon = max((p.poll_interval_s for p in probes), default=0.0) * 4 + 1.0
    deadline = time.monotonic() + horizon
    while time.monotonic() < deadline:
        if all(timeline.latest(c) is not None for c in timeline.channels):
            return
        time.sleep(0.005)


def _wait_trailing_samples(timeline: Timeline, probes: list[Probe], t_end_ns: int) -> None:
    """Wait for a sample at or after the last edge on every channel (bounded)."""
    period = max((ch.nominal_period_s for ch in timeline.channels.values()), default=0.0)
    poll = max((p.poll_interval_s for p in probes), default=0.0)
    deadline = time.monotonic() + TRAIL_TIMEOUT_S + 3 * max(period, poll)
    while time.monotonic() < deadline:
        latest = [timeline.latest(c) for c in timeline.channels]
        if all(x is not None and x[0] >= t_end_ns for x in latest):
            return
        time.sleep(0.005)


def _idle(marks: Marks, anchor: TimeAnchor, seconds: float, progress: Progress) -> None:
    lo = anchor.utc_ns()
    marks.mark("idle", "begin", lo, lo)
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))
        progress.tick("idle", lo, anchor.utc_ns())
    hi = anchor.utc_ns()
    marks.mark("idle", "end", hi, hi)


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid``, or None where the kernel or Python has none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _wait_exit(
    proc: subprocess.Popen[bytes], anchor: TimeAnchor, tick: Callable[[int], None]
) -> tuple[int, int, int]:
    """Wait for CMD to exit; return the end edge's bracket (lo, hi) and the exit status.

    Polling (no pidfd): lo is the last read that saw CMD running, hi the first read after its exit.
    On a pidfd, whose wakeup follows the exit at once: hi - lo is twice the width of that exact
    bracket and its middle is the waking read (see the module docstring)."""
    before = anchor.utc_ns()
    pidfd = _open_pidfd(proc.pid)
    if pidfd is None:
        while True:
            rc = proc.poll()
            after = anchor.utc_ns()
            if rc is not None:
                return before, after, rc
            before = after
            tick(after)
            time.sleep(EXIT_POLL_S)
    try:
        waiter = select.poll()
        waiter.register(pidfd, select.POLLIN)
        timeout_ms = max(1, round(EXIT_BRACKET_S * 1000))
        while True:
            # PEP 475 retries a poll a signal interrupts; a ready pidfd means CMD exited
            ready = waiter.poll(timeout_ms)
            after = anchor.utc_ns()
            if ready:
                break
            before = after
            tick(after)
        rc = proc.wait()
        return before, 2 * after - before, rc
    finally:
        os.close(pidfd)


def _run_cmd(
    cmd: list[str],
    marks: Marks,
    anchor: TimeAnchor,
    progress: Progress,
    count: int | None,
    unit: str,
    env: dict[str, str],
) -> int:
    """Run CMD between bracketed begin/end marks; return its exit code (128+N if killed by N)."""
    interrupts = 0

    def on_sigint(_sig: int, _frame: FrameType | None) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            proc.kill()

    lo = anchor.utc_ns()
    try:
        proc = subprocess.Popen(cmd, env=env)
    except OSError as err:
        raise PowerdError(f"cannot run {cmd[0]!r}: {err.strerror or err}") from None
    hi = anchor.utc_ns()
    marks.mark("run", "begin", lo, hi)
    t_begin = (lo + hi) // 2
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        end_lo, end_hi, rc = _wait_exit(
            proc, anchor, lambda now_ns: progress.tick("run", t_begin, now_ns)
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    marks.mark("run", "end", end_lo, end_hi, count=count, unit=unit)
    progress.tick("run", t_begin, (end_lo + end_hi) // 2, force=True)
    progress.done()
    return rc if rc >= 0 else 128 - rc


def _local_daemon(
    probes: list[Probe], store: Store
) -> tuple[TimeAnchor, Timeline, Sampler, Daemon, tuple[str, ...]]:
    """The in-process sampler and daemon of one command run (``measure``, ``verify``).

    Returns the time anchor, the sampler's timeline, the (not yet started) sampler, the daemon
    that takes this run's markers, and the device ids of the probes' channels."""
    anchor = TimeAnchor()
    timeline = Timeline()
    sampler = Sampler(
        probes,
        timeline,
        store,
        anchor,
        put_gap=store.put_gap,
        put_accuracy=store.put_accuracy,
    )
    # Daemon() registers every channel the store has ever seen on its timeline (what the
    # long-running daemon wants after a restart); the command's waits and progress must see only
    # its own probes, so the daemon loads into a scratch timeline and then reads the sampler's.
    daemon = Daemon(store, Timeline(capacity_per_channel=2), anchor.utc_ns)
    daemon.timeline = timeline
    # the command's own phases cover every probe it samples, assigned to a device or not
    devices = tuple(sorted({ch.device_id for p in probes for ch in p.channels()}))
    return anchor, timeline, sampler, daemon, devices


def _report_probe_health(sampler: Sampler, probes: list[Probe]) -> None:
    """After a run: each probe's failed reads and reported problems, one line each on stderr
    (nothing silent: a figure resting on a probe that failed says so beside it)."""
    for h, p in zip(sampler.health, probes, strict=True):
        names = ",".join(c.id for c in p.channels())
        if h.errors:
            print(
                f"powerd: warning: {names}: {h.errors} failed reads, last: {h.last_error}",
                file=sys.stderr,
            )
        if h.problems:
            recent = "; ".join(h.recent_problems)
            print(
                f"powerd: note: {names}: {h.problems} problem(s) reported; latest: {recent}",
                file=sys.stderr,
            )


def _refuse_existing_run(store: Store, run: str, hint: str = "") -> None:
    """SpecError if ``store`` already holds markers of ``run``: a command never adds to a run."""
    if store.markers(run):
        msg = f"run {run!r} already exists in {store.path}; choose another --run"
        raise SpecError(f"{msg} {hint}" if hint else msg)


@contextmanager
def _sampling(sampler: Sampler, probes: list[Probe]) -> Iterator[None]:
    """Samples flow while the block runs; then the sampler stops and every probe is closed,
    whatever happened in the block (``measure``, ``verify``)."""
    sampler.start()
    try:
        yield
    finally:
        sampler.stop()
        for p in probes:
            p.close()


def cmd_measure(args: argparse.Namespace) -> int:
    from powerd.paths import default_state_dir, open_store

    check_out_dir(args.out)  # before any probe opens or CMD starts: a bad --out costs no run
    calibration_file = getattr(args, "calibration", None)
    certificates = load_config(calibration_file).calibration if calibration_file else {}
    probes = _validate(args)
    state_dir: Path = args.state_dir or default_state_dir()
    with open_store(state_dir) as store:
        store.annotate_channel = annotator(certificates)
        _refuse_existing_run(store, args.run, f"(or read it with `powerd report {args.run}`)")
        anchor, timeline, sampler, daemon, devices = _local_daemon(probes, store)
        marks = Marks(daemon, args.run, devices or None)
        progress = Progress(timeline, args.run, args.quiet)
        with _sampling(sampler, probes):
            with ApiThread(make_app(daemon, None), "127.0.0.1", 0) as api:
                if getattr(args, "live", False):  # the app's /live page (powerd.live)
                    print(f"powerd: live view: {api.url}/live", file=sys.stderr, flush=True)
                env = {**os.environ, URL_ENV: api.url, RUN_ENV: args.run}
                _wait_first_samples(timeline, probes)
                if args.idle > 0:
                    _idle(marks, anchor, args.idle, progress)
                started_ns = anchor.utc_ns()
                rc = _run_cmd(args.cmd, marks, anchor, progress, args.count, args.unit, env)
                ended_ns = anchor.utc_ns()
            _wait_trailing_samples(timeline, probes, anchor.utc_ns())
            if getattr(args, "loadgen_log", None) is not None:
                rc = _apply_loadgen(args, daemon, devices or None, started_ns, ended_ns, rc)
        _report_probe_health(sampler, probes)
        result = compute_run(store, args.run, args.idle_power, tuple(args.primary))
        context = AuditContext.from_config_file("measure", calibration_file, args.probe)
        seal(store, result, anchor.utc_ns(), context, None, args.idle_power, args.primary)
        print(format_table(result))
        try:
            paths = write_reports(store, result, args.out)
        except ReportWriteError as err:
            print(f"powerd: error: {err}; {rewrite_hint(args)}", file=sys.stderr)
            return EXIT_REPORT_FAILED
    print(reports_line(paths))
    return rc


def _apply_loadgen(
    args: argparse.Namespace,
    daemon: Daemon,
    devices: tuple[str, ...] | None,
    started_ns: int,
    ended_ns: int,
    rc: int,
) -> int:
    """Apply the LoadGen phase; on failure say why and make a zero exit code 2 (the report
    is still written: the run itself was measured)."""
    from powerd.commands.loadgen import apply_after_measure, describe

    try:
        lg = apply_after_measure(
            daemon, args.loadgen_log, args.run, args.loadgen_phase, devices, started_ns, ended_ns
        )
    except PowerdError as err:
        print(f"powerd: error: --loadgen-log: {err}", file=sys.stderr)
        return rc or EXIT_REPORT_FAILED
    print(f"powerd: {describe(lg)}", file=sys.stderr)
    return rc


def rewrite_hint(args: argparse.Namespace) -> str:
    """How to write a stored run's report again, as one command."""
    state = f" --state-dir {shlex.quote(str(args.state_dir))}" if args.state_dir else ""
    return (
        f"the result is in the store; write it again with "
        f"`powerd{state} report {args.run} --out DIR`"
    )
