"""``powerd verify PROTOCOL.toml -- CMD``: measure CMD under a protocol and judge each claim.

Sequence (one run, one store, the same machinery as ``powerd measure``): the probes sample from
the start; then the idle baseline (phase ``idle``, ``[idle] seconds``, CMD not running); then the
warm-up (phase ``warmup``: CMD in a loop for ``[warmup] seconds``, or until the stability
criterion holds, at most ``max_s``); then N trials (phase ``trial``, trial 1..N, CMD once each,
``[trials] pause_s`` between them so heat left by one trial can settle). The result (contract 2)
gets an added top-level ``verification`` object; the terminal shows a verdict table, the HTML
report a Verification section. See powerd/verify/verdict.py for the verdict rules.

CMD's unit count per trial, first found of: an integer CMD wrote to the file named by
``$POWERD_COUNT_FILE``; the summed counts of the phases named ``count_phase`` that CMD marked
itself through ``powerd.client`` inside the trial; ``--count`` or ``count`` in the protocol.
CMD also gets ``POWERD_URL``/``POWERD_RUN`` (to mark sub-phases, as under ``powerd measure``)
and ``POWERD_TRIAL`` (0 during warm-up).

Exit code: 0 every claim supported, 1 some claim not supported, 3 inconclusive (none refuted, not
all supported), 2 powerd's own errors (bad protocol, no probe, ...).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from powerd.agent.wire import NAME_RE, Marker
from powerd.api import ApiThread, make_app
from powerd.commands.measure import (
    RUN_ENV,
    SOURCE,
    URL_ENV,
    Progress,
    _local_daemon,
    _refuse_existing_run,
    _report_probe_health,
    _sampling,
    _validate,
    _wait_first_samples,
    _wait_trailing_samples,
)
from powerd.daemon import Daemon
from powerd.errors import PowerdError, SpecError
from powerd.i18n import add_lang_option, set_lang
from powerd.i18n import resolve as resolve_lang
from powerd.phases import replay
from powerd.probes.base import TemperatureProbe
from powerd.report.files import (
    ReportWriteError,
    check_out_dir,
    reports_line,
    write_reports,
)
from powerd.report.table import format_table
from powerd.runs import compute_run
from powerd.store import Store
from powerd.timebase import TimeAnchor
from powerd.timeline import Timeline
from powerd.verify.protocol import Protocol, load_protocol
from powerd.verify.render import verification_table
from powerd.verify.stability import (
    NO_TEMPERATURE,
    NO_WARMUP,
    NOT_SETTLED,
    NOT_SETTLED_CAPPED,
    TEMP_NOT_SETTLED,
    WARMUP_TOO_SHORT,
    StabilityCheck,
    TemperatureLog,
    check_power,
)
from powerd.verify.verdict import EXIT_CODES, claim_verdict, overall

COUNT_ENV = "POWERD_COUNT_FILE"
TEMP_POLL_S = 0.2  # device temperatures are read at most this often during the verification
TEMP_READS_PER_WINDOW = 10  # ... and at least this many times per stability window
TRIAL_ENV = "POWERD_TRIAL"
TRIAL_PHASE = "trial"
WARMUP_PHASE = "warmup"
POLL_S = 0.001
COUNT_SLACK_NS = 50_000_000  # CMD's clock reads vs the anchor's: same host, a few ms at most
VERIFICATION_VERSION = 1

EPILOG = """\
Protocol file (TOML; every key but claims is optional):

  preset = "tiny"            # or "mlperf"; fills in and enforces the anchors below
  probes = ["sim:constant,w=20"]   # or --probe (repeatable), which replaces this list
  unit = "inference"         # what count counts
  count = 100                # units per trial (or CMD writes $POWERD_COUNT_FILE)
  count_phase = "infer"      # or: sum the counts of CMD's own phases of this name in a trial
  max_energy_uncertainty_pct = 1.0  # flag meter_uncertainty_high above it (mlperf: 1)
  claims = ["j_per_unit <= 0.35", "mean_power_w <= 25 net", "units_per_j >= 3"]

  [idle]                     # baseline before warm-up and trials: seconds, or a known power_w
  seconds = 30
  [warmup]                   # CMD in a loop: seconds, or until_stable (at most max_s)
  seconds = 0
  until_stable = true
  max_s = 600
  [stability]                # means of 5 sub-windows of window_s within +-power_pct % of their
  window_s = 60              # mean (temperature within +-temperature_c where a probe reports
  power_pct = 2              # one); required = false: not reaching it is not a flag
  temperature_c = 1
  [trials]
  n = 3
  pause_s = 10               # between trials, for heat to settle
  min_duration_s = 0         # shorter trials: too_short, not used (mlperf 60, tiny 10)
  min_samples = 0            # fewer samples on a primary channel: too_short
  aggregate = "all"          # every trial must support the claim; "median": the median (tiny)

Presets: mlperf = trials >= 60 s and relative energy U95 <= 1 %; tiny = trials >= 10 s, n >= 5,
median of the trials.

Verdict per claim: supported (the whole 95 % interval of the figure is on the claim's side), not
supported (the whole interval on the wrong side), inconclusive (it straddles the claim, or a flag
-- not_stable, calibration_due, incomplete, meter_uncertainty_high, ... -- or fewer usable trials
than planned make the interval untrustworthy). The margin is figure - claim, also in units of U.

Exit code: 0 all claims supported, 1 a claim not supported, 3 inconclusive, 2 error.

Example:
  powerd verify proto.toml --run v1 --out reports -- python3 infer.py --batch 8
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "verify",
        help="measure a command under a protocol and judge claims (supported / not / inconclusive)",
        description="Run CMD under the protocol in PROTOCOL.toml (idle baseline, warm-up until\n"
        "stable, N trials) and give each claim a verdict from its 95 % interval; write\n"
        "<run>.json (with a `verification` object), <run>.csv and <run>.html into --out.\n"
        "Options may also follow PROTOCOL.toml; CMD comes after --.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("protocol", type=Path, metavar="PROTOCOL.toml", help="the protocol file")
    _add_options(p)
    p.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS]", help="the workload to run"
    )


def _add_options(p: argparse.ArgumentParser) -> None:
    """The options, on the subcommand and on the parser of what follows PROTOCOL.toml."""
    p.add_argument(
        "--probe",
        action="append",
        default=[],
        metavar="SPEC",
        help="a power source (repeat for several); replaces the protocol's probes",
    )
    p.add_argument("--run", default=None, metavar="ID", help="run id (default: verify-<UTC time>)")
    p.add_argument(
        "--count", type=int, default=None, metavar="N", help="units per trial (overrides count)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="directory for the report files (default: current directory)",
    )
    p.add_argument(
        "--primary",
        action="append",
        default=[],
        metavar="CHANNEL",
        help="channel(s) whose sum is the headline figure (default: chosen per rules)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_lang_option(p)


def _split_cmd(args: argparse.Namespace) -> None:
    """Options written after PROTOCOL.toml land in CMD's remainder: parse them from there.

    ``argparse.REMAINDER`` takes everything after the first positional, so ``verify p.toml --run
    r -- CMD`` gives cmd ``[--run, r, --, CMD]``; the part before ``--`` is parsed here as this
    command's options (and the global --state-dir/--sysfs-root)."""
    cmd = list(args.cmd)
    if "--" not in cmd:
        if cmd and cmd[0].startswith("-"):
            raise SpecError("put the command after --, e.g. -- python3 infer.py")
        return
    cut = cmd.index("--")
    pre, args.cmd = cmd[:cut], cmd[cut + 1 :]
    if not pre:
        return
    parser = argparse.ArgumentParser(prog="powerd verify", add_help=False, exit_on_error=False)
    _add_options(parser)
    parser.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS)
    parser.add_argument("--sysfs-root", type=Path, default=argparse.SUPPRESS)
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    try:
        extra, unknown = parser.parse_known_args(pre)
    except argparse.ArgumentError as err:
        raise SpecError(f"verify: {err}") from None
    if unknown:
        raise SpecError(f"verify: unrecognized arguments before --: {' '.join(unknown)}")
    for key, value in vars(extra).items():
        before = getattr(args, key, None)
        merged = (
            [*before, *value] if isinstance(value, list) and isinstance(before, list) else value
        )
        setattr(args, key, merged)
    if getattr(args, "sysfs_root", None) is not None:
        from powerd.probes.sysfs import ENV

        os.environ[ENV] = str(args.sysfs_root)


class TrialMarks:
    """Stamps this command's edges (with their trial index) and applies them via the daemon."""

    def __init__(self, daemon: Daemon, run: str, devices: tuple[str, ...] | None) -> None:
        self.daemon, self.run, self.devices = daemon, run, devices
        self.refused = 0

    def mark(
        self,
        phase: str,
        event: str,
        lo_ns: int,
        hi_ns: int,
        trial: int = 0,
        count: int | None = None,
        unit: str = "inference",
    ) -> None:
        device = self.devices if event == "begin" else None
        marker = Marker(
            self.run,
            phase,
            event,  # type: ignore[arg-type]
            None,
            (lo_ns + hi_ns) // 2,
            count,
            unit,
            trial,
            device=device,
        )
        outcome = self.daemon.submit_marker(
            SOURCE, marker.to_json(), received_ns=hi_ns, uncertainty_ns=(hi_ns - lo_ns + 1) // 2
        )
        if outcome.error is not None:
            self.refused += 1
            print(
                f"powerd: warning: {event} of phase {phase!r} trial {trial} not applied: "
                f"{outcome.error}",
                file=sys.stderr,
            )


class Session:
    """One verification: probes sampling, the daemon taking markers, CMD run as the plan says."""

    def __init__(
        self,
        proto: Protocol,
        cmd: list[str],
        marks: TrialMarks,
        anchor: TimeAnchor,
        timeline: Timeline,
        progress: Progress,
        env: dict[str, str],
        count: int | None,
        count_dir: Path,
        store: Store,
        thermometers: Sequence[TemperatureProbe] = (),
    ) -> None:
        self.proto, self.cmd, self.marks, self.anchor = proto, cmd, marks, anchor
        self.timeline, self.progress, self.env = timeline, progress, env
        self.count, self.count_dir, self.store = count, count_dir, store
        self.failed_trials: list[int] = []
        self.checks: list[StabilityCheck] = []
        self.thermometers = list(thermometers)
        self.temps = TemperatureLog()
        self._temp_next_ns = 0
        self._temp_warned: set[str] = set()

    def poll_temperature(self) -> None:
        """Read every probe's temperatures every ``TEMP_POLL_S`` or tenth of the stability window
        if shorter (while CMD runs and at each check). A failed read is counted and said once
        per probe on stderr."""
        now = self.anchor.utc_ns()
        if not self.thermometers or now < self._temp_next_ns:
            return
        poll_s = min(TEMP_POLL_S, self.proto.file.stability.window_s / TEMP_READS_PER_WINDOW)
        self._temp_next_ns = now + int(poll_s * 1e9)
        for probe in self.thermometers:
            try:
                values = probe.temperatures_c(now)
            except Exception as err:  # a probe's own failure: counted, said once, never fatal
                name = type(probe).__name__
                self.temps.failed(name)
                if name not in self._temp_warned:
                    self._temp_warned.add(name)
                    print(f"powerd: warning: temperature read failed: {err}", file=sys.stderr)
                continue
            self.temps.add(self.anchor.utc_ns(), values)

    def run_cmd(
        self, trial: int, phase: str, on_begin: Callable[[int, int], None] | None = None
    ) -> tuple[int, int, int, int, int, int | None]:
        """CMD once: (exit code, begin lo/hi ns, end lo/hi ns, count it wrote or None);
        ``on_begin(lo, hi)`` is called as soon as CMD has started (to mark the begin then)."""
        count_file = self.count_dir / f"count-{phase}-{trial}"
        count_file.unlink(missing_ok=True)
        env = {**self.env, TRIAL_ENV: str(trial), COUNT_ENV: str(count_file)}
        lo = self.anchor.utc_ns()
        try:
            proc = subprocess.Popen(self.cmd, env=env)
        except OSError as err:
            raise PowerdError(f"cannot run {self.cmd[0]!r}: {err.strerror or err}") from None
        hi = self.anchor.utc_ns()
        try:
            if on_begin is not None:
                on_begin(lo, hi)
            before = self.anchor.utc_ns()
            while True:
                rc = proc.poll()
                after = self.anchor.utc_ns()
                if rc is not None:
                    break
                before = after
                self.progress.tick(phase, lo, after)
                self.poll_temperature()
                time.sleep(POLL_S)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        return (rc if rc >= 0 else 128 - rc), lo, hi, before, after, _read_count(count_file)

    def idle(self) -> None:
        seconds = self.proto.file.idle.seconds
        if seconds <= 0:
            return
        lo = self.anchor.utc_ns()
        self.marks.mark("idle", "begin", lo, lo)
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))
            self.progress.tick("idle", lo, self.anchor.utc_ns())
        hi = self.anchor.utc_ns()
        self.marks.mark("idle", "end", hi, hi)

    def check(self) -> StabilityCheck:
        self.poll_temperature()
        st = self.proto.file.stability
        now = self.anchor.utc_ns()
        until = min(
            (x[0] for c in self.timeline.channels if (x := self.timeline.latest(c)) is not None),
            default=now,
        )
        power = check_power(
            dict(self.timeline.channels),
            self.timeline.window,
            min(now, until),
            st.window_s,
            st.power_pct,
        )
        # temperature over the window ending now: its readings are taken by this process
        temperature = self.temps.check(now, st.window_s, st.temperature_c)
        found = StabilityCheck(power, temperature)
        self.checks.append(found)
        return found

    def warmup(self) -> dict[str, Any]:
        """Run CMD in a loop as the warm-up says; the stability record for the verification."""
        wu, st = self.proto.file.warmup, self.proto.file.stability
        planned = wu.seconds > 0 or wu.until_stable
        record: dict[str, Any] = {
            "required": st.required,
            "window_s": st.window_s,
            "power_pct": st.power_pct,
            "temperature": {"checked": False, "reason": NO_TEMPERATURE},
            "reached": False,
            "warmup_s": 0.0,
            "time_to_stable_s": None,
            "last_check": None,
        }
        if not planned:
            record["reason"] = NO_WARMUP
            return record
        start_mono = time.monotonic()
        begin: tuple[int, int] | None = None
        end: tuple[int, int] = (0, 0)
        reached = False
        while True:
            first = begin is None

            def mark_begin(lo: int, hi: int) -> None:
                self.marks.mark(WARMUP_PHASE, "begin", lo, hi)

            rc, lo, hi, before, after, _ = self.run_cmd(
                0, WARMUP_PHASE, mark_begin if first else None
            )
            begin = begin or (lo, hi)
            end = (before, after)
            if rc != 0:
                print(f"powerd: warning: warm-up run of CMD exited {rc}", file=sys.stderr)
            elapsed = time.monotonic() - start_mono
            if wu.until_stable and elapsed >= max(st.window_s, wu.seconds):
                found = self.check()
                if found.stable:
                    reached = True
                    record["time_to_stable_s"] = elapsed
                    break
            if not wu.until_stable and elapsed >= wu.seconds:
                break
            if wu.until_stable and elapsed >= wu.max_s:
                break
        self.marks.mark(WARMUP_PHASE, "end", *end)
        if not wu.until_stable:
            if elapsed >= st.window_s:
                reached = self.check().stable
            else:
                record["reason"] = WARMUP_TOO_SHORT.format(elapsed_s=f"{elapsed:.3g}")
        record["warmup_s"] = elapsed
        record["reached"] = reached
        last = self.checks[-1] if self.checks else None
        record["last_check"] = last.to_json() if last else None
        record["temperature"] = self._temperature_record(last)
        if not reached and "reason" not in record:
            if last is not None and last.power.stable and not last.stable:
                record["reason"] = TEMP_NOT_SETTLED.format(
                    c=f"{st.temperature_c:g}", window_s=f"{st.window_s:g}"
                )
            else:
                record["reason"] = (NOT_SETTLED_CAPPED if wu.until_stable else NOT_SETTLED).format(
                    pct=f"{st.power_pct:g}", window_s=f"{st.window_s:g}", max_s=f"{wu.max_s:g}"
                )
        return record

    def _temperature_record(self, last: StabilityCheck | None) -> dict[str, Any]:
        """The stability record's ``temperature``: checked (its sensors, bound and verdict at the
        last check) when a probe reported one, else not checked with the reason."""
        failures = dict(self.temps.failures)
        if last is None or last.temperature is None:
            out: dict[str, Any] = {"checked": False, "reason": NO_TEMPERATURE}
        else:
            out = {"checked": True, **last.temperature.to_json()}
        if failures:
            out["read_failures"] = failures
        return out

    def trials(self) -> None:
        tr, f = self.proto.file.trials, self.proto.file
        for k in range(1, tr.n + 1):
            if k > 1 and tr.pause_s > 0:
                time.sleep(tr.pause_s)

            def mark_begin(lo: int, hi: int, k: int = k) -> None:
                self.marks.mark(TRIAL_PHASE, "begin", lo, hi, trial=k)

            rc, lo_k, _, before, after, written = self.run_cmd(k, TRIAL_PHASE, mark_begin)
            count = written if written is not None else self.marked_count(lo_k, after)
            self.marks.mark(TRIAL_PHASE, "end", before, after, trial=k, count=count, unit=f.unit)
            if rc != 0:
                self.failed_trials.append(k)
                print(f"powerd: warning: trial {k}: CMD exited {rc}", file=sys.stderr)
            self.progress.done()

    def marked_count(self, t_begin_ns: int, t_end_ns: int) -> int | None:
        """Sum of the counts of CMD's own ``count_phase`` phases inside a trial (``count``
        when the protocol names no such phase; None when CMD marked none with a count)."""
        name = self.proto.file.count_phase
        if name is None:
            return self.count
        phases, _ = replay(self.store.markers(self.marks.run))
        slack = COUNT_SLACK_NS
        counts = [
            p.count
            for p in phases
            if p.phase == name
            and p.source != SOURCE
            and p.count is not None
            and p.t_begin_ns >= t_begin_ns - slack
            and p.t_end_ns <= t_end_ns + slack
        ]
        if not counts:
            print(
                f"powerd: warning: no phase {name!r} with a count inside the trial; "
                f"using count {self.count}",
                file=sys.stderr,
            )
            return self.count
        return sum(counts)


def _read_count(path: Path) -> int | None:
    """The count a workload wrote to $POWERD_COUNT_FILE, if any (a bad one is warned, unused)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as err:
        print(f"powerd: warning: cannot read {path}: {err.strerror}", file=sys.stderr)
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        print(f"powerd: warning: ${COUNT_ENV} holds {text[:40]!r}, not a count", file=sys.stderr)
        return None
    return value


def annotate_trials(
    result: dict[str, Any], proto: Protocol, stability: dict[str, Any], failed: list[int]
) -> list[dict[str, Any]]:
    """Add the protocol's flags to the trial phases of ``result``; return those phases."""
    tr = proto.file.trials
    max_pct = proto.file.max_energy_uncertainty_pct
    trials = [p for p in result["phases"] if p["phase"] == TRIAL_PHASE]
    for p in trials:
        flags: list[str] = p["flags"]
        primary = [c for c in p["channels"].values() if c.get("primary")]
        samples = min((c["samples"] for c in primary), default=0)
        short = p["duration_s"] < tr.min_duration_s or samples < tr.min_samples
        if short and "too_short" not in flags:
            flags.append("too_short")
        if p["trial"] in failed:
            flags.append("cmd_failed")
        if stability["required"] and not stability["reached"]:
            flags.append("not_stable")
        e, u = p.get("energy_j"), p.get("uncertainty_j")
        if max_pct is not None and e and u is not None and u / abs(e) * 100 > max_pct:
            flags.append("meter_uncertainty_high")
    return trials


def verification(
    proto: Protocol, stability: dict[str, Any], trials: list[dict[str, Any]]
) -> dict[str, Any]:
    """The ``verification`` object added to the result (documented in docs/verify.md)."""
    f = proto.file
    unit = trials[0]["unit"] if trials else f.unit
    claims = [claim_verdict(c, trials, f.trials.n, f.trials.aggregate, unit) for c in proto.claims]
    verdict = overall(claims)
    raw = proto.path.read_bytes()
    return {
        "v": VERIFICATION_VERSION,
        "protocol": {
            "path": str(proto.path),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "settings": msgspec.to_builtins(f),
        },
        "stability": stability,
        "trials_planned": f.trials.n,
        "aggregate": f.trials.aggregate,
        "claims": claims,
        "verdict": verdict,
        "exit_code": EXIT_CODES[verdict],
    }


def _plan(args: argparse.Namespace, proto: Protocol) -> argparse.Namespace:
    """The measure-style arguments (probes, run, count) this verification runs with."""
    f = proto.file
    run = args.run or time.strftime("verify-%Y%m%dT%H%M%SZ", time.gmtime())
    specs = list(args.probe) or list(f.probes)
    if not specs:
        raise SpecError("no probe: give --probe SPEC or probes = [...] in the protocol")
    count = args.count if args.count is not None else f.count
    if not NAME_RE.match(f.unit):
        raise SpecError(f"protocol unit {f.unit!r}: use a name such as inference, token, query")
    return argparse.Namespace(
        cmd=args.cmd, run=run, unit=f.unit, count=count, idle=f.idle.seconds, probe=specs
    )


def run_command(args: argparse.Namespace) -> int:
    from powerd.paths import default_state_dir, open_store

    _split_cmd(args)
    set_lang(resolve_lang(args.lang))  # --lang may also follow PROTOCOL.toml
    proto = load_protocol(args.protocol)
    plan = _plan(args, proto)
    check_out_dir(args.out)
    probes = _validate(plan)
    state_dir: Path = args.state_dir or default_state_dir()
    with open_store(state_dir) as store, tempfile.TemporaryDirectory(prefix="powerd-v-") as tmp:
        _refuse_existing_run(store, plan.run)
        anchor, timeline, sampler, daemon, devices = _local_daemon(probes, store)
        marks = TrialMarks(daemon, plan.run, devices or None)
        progress = Progress(timeline, plan.run, args.quiet)
        with _sampling(sampler, probes):
            with ApiThread(make_app(daemon, None), "127.0.0.1", 0) as api:
                env = {**os.environ, URL_ENV: api.url, RUN_ENV: plan.run}
                session = Session(
                    proto,
                    plan.cmd,
                    marks,
                    anchor,
                    timeline,
                    progress,
                    env,
                    plan.count,
                    Path(tmp),
                    store,
                    [p for p in probes if isinstance(p, TemperatureProbe)],
                )
                _wait_first_samples(timeline, probes)
                session.idle()
                stability = session.warmup()
                session.trials()
            _wait_trailing_samples(timeline, probes, anchor.utc_ns())
        _report_probe_health(sampler, probes)
        result = compute_run(store, plan.run, proto.file.idle.power_w, tuple(args.primary))
        trials = annotate_trials(result, proto, stability, session.failed_trials)
        result["verification"] = verification(proto, stability, trials)
        store.put_result(result, anchor.utc_ns())
        print(format_table(result))
        print(verification_table(result["verification"]))
        try:
            paths = write_reports(store, result, args.out)
        except ReportWriteError as err:
            print(f"powerd: error: {err}", file=sys.stderr)
            return 2
    print(reports_line(paths))
    return int(result["verification"]["exit_code"])
