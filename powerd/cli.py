"""The ``powerd`` command line: measure, report, runs, probes.

Errors a user can act on print one line (``powerd: error: ...``) and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from powerd import __version__
from powerd.commands.runs import cmd_runs
from powerd.errors import PowerdError
from powerd.i18n import add_lang_option, set_lang
from powerd.i18n import resolve as resolve_lang
from powerd.paths import default_state_dir, open_state_store

EXIT_USAGE = 2
MODULE_COMMANDS = {
    "run": "powerd.commands.serve",
    "mark": "powerd.commands.mark",
    "sim": "powerd.commands.sim",
    "grafana": "powerd.commands.grafana",
    "verify": "powerd.commands.verify",
    "audit": "powerd.commands.audit",
    "compare": "powerd.commands.compare",
}


def _sim_help() -> str:
    from powerd.probes.sim import waveform

    doc = waveform.__doc__ or ""
    return doc[doc.index("Spec") :].strip()


MEASURE_EPILOG = """\
Probe specs are NAME[:ARGS]; `powerd probes` lists the probes this host has.

The simulated source `sim` needs no hardware; its waveforms are pure functions of UTC time with
phase 0 at the Unix epoch, so the true energy of any window can be computed from the result's
t_begin_ns and t_end_ns.

{sim}

Examples:
  powerd measure --probe sim:constant,w=5 --run r1 --count 100 --out reports -- sleep 2
  powerd measure --probe sim:square,high=10,low=2,period=0.1,duty=0.5 --idle 1 \\
      --run demo --count 1000 --unit token --out reports -- python3 infer.py

While CMD runs, powerd serves its HTTP API on 127.0.0.1 and passes POWERD_URL and POWERD_RUN
in CMD's environment, so the workload can mark its own phases (powerd/client.py, `powerd mark`).

The command's exit code is powerd's exit code; powerd's own errors exit 2.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="powerd",
        description="Measure the energy of a workload, phase by phase, with an honest "
        "95 % uncertainty: joules per inference (or token, query, sample). "
        "Global options (--state-dir, --sysfs-root) go before or after COMMAND.",
        epilog="`powerd COMMAND --help` describes each command and its options.",
    )
    parser.add_argument("--version", action="version", version=f"powerd {__version__}")
    _add_global_options(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    m = sub.add_parser(
        "measure",
        help="run a command and measure its energy",
        description="Sample the probes, mark phase `run` around CMD, write <run>.json, "
        "<run>.csv and <run>.html into --out, print a table, and exit with CMD's exit code.",
        epilog=MEASURE_EPILOG.format(sim=_sim_help()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m.add_argument(
        "--probe",
        action="append",
        required=True,
        metavar="SPEC",
        help="a power source, e.g. sim:constant,w=5 (repeat for several)",
    )
    m.add_argument(
        "--run", required=True, metavar="ID", help="run id: 1-128 characters of A-Za-z0-9_.:-"
    )
    m.add_argument(
        "--count",
        type=int,
        default=None,
        metavar="N",
        help="units of work CMD completes (gives J per unit)",
    )
    m.add_argument(
        "--unit",
        default="inference",
        help="what --count counts: inference (default), token, query, sample",
    )
    m.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="directory for the report files, created if missing and checked writable before "
        "CMD starts (default: current directory)",
    )
    m.add_argument(
        "--idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first measure an `idle` phase this long; results then give net energy",
    )
    m.add_argument(
        "--idle-power",
        type=float,
        default=None,
        metavar="W",
        help="known idle power instead of measuring it",
    )
    m.add_argument(
        "--primary",
        action="append",
        default=[],
        metavar="CHANNEL",
        help="channel(s) whose sum is the headline figure (default: chosen per rules)",
    )
    m.add_argument(
        "--calibration",
        type=Path,
        default=None,
        metavar="FILE",
        help="TOML with [calibration.\"<match>\"] tables (e.g. the daemon's config): the meters' "
        "certificates (without: meter channels are flagged uncalibrated)",
    )
    m.add_argument("--quiet", action="store_true", help="no progress line while CMD runs")
    add_lang_option(m)
    m.add_argument(
        "--live",
        action="store_true",
        help="print the URL of a live view (loopback only) of the power and phases while CMD runs",
    )
    m.add_argument(
        "--loadgen-log",
        type=Path,
        default=None,
        metavar="DIR",
        help="once CMD exits, apply the phase of the MLPerf LoadGen log CMD wrote under DIR "
        "(as `powerd markers loadgen`): MLPerf's figures beside powerd's",
    )
    m.add_argument(
        "--loadgen-phase",
        default="loadgen",
        metavar="NAME",
        help="name of that phase (default: loadgen)",
    )
    m.add_argument(
        "cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS]", help="the workload to run"
    )

    r = sub.add_parser(
        "report",
        help="recompute a run from the store and write its report files",
        description="Recompute RUN from the embedded store alone (markers and samples) and "
        "write <run>.json, <run>.csv and <run>.html.",
    )
    r.add_argument("run", metavar="RUN", help="run id, as given to --run or in the markers")
    add_lang_option(r)
    r.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="directory for the report files, created if missing (default: current directory)",
    )
    r.add_argument(
        "--idle-power",
        type=float,
        default=None,
        metavar="W",
        help="known idle power for net energy, instead of the run's own idle phase",
    )
    r.add_argument(
        "--primary",
        action="append",
        default=[],
        metavar="CHANNEL",
        help="channel(s) whose sum is the headline figure (repeat for several; "
        "default: chosen per rules)",
    )

    mk = sub.add_parser(
        "markers",
        help="apply phase markers (contract-1 JSON lines) to the store",
        description="Work with phase markers in the embedded store.",
    )
    mk_sub = mk.add_subparsers(dest="action", metavar="ACTION", required=True)
    ap = mk_sub.add_parser(
        "apply",
        help="apply markers from a file of JSON lines (or stdin) to the store",
        description="Apply phase markers from a file of JSON lines (one contract-1 marker per "
        "line) or stdin to the store, all or nothing: if any line is invalid or does not fit the "
        "phases (an end without a begin, a zero-length phase), none is applied and each bad line "
        "is named. Markers without t_ns are stamped with the time of this command.",
    )
    ap.add_argument("file", nargs="?", default="-", metavar="FILE", help="JSON lines; - is stdin")
    ap.add_argument(
        "--source",
        default="cli",
        metavar="S",
        help="sender id of these markers (default: cli)",
    )
    _add_loadgen_parser(mk_sub)
    for module_name in MODULE_COMMANDS.values():
        importlib.import_module(module_name).add_parser(sub)
    rs = sub.add_parser(
        "runs",
        help="list the runs in the store",
        description="List the runs held in the embedded store, oldest first (newest last): "
        "start time (UTC), phases, energy of the headline phase, J per unit and flags, from "
        "each run's latest stored result (runs without one are listed with '-').",
    )
    rs.add_argument(
        "--json", action="store_true", help="print a JSON list of the same rows instead"
    )
    rs.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="only the N most recent runs (default: all)",
    )
    sub.add_parser(
        "probes",
        help="list the probes this host has, and why others are missing",
        description="List every registered probe: available here, missing (and why, with "
        "what to install), or present but broken.",
    )
    _add_global_options_below(sub)
    return parser


def _add_loadgen_parser(
    mk_sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    lg = mk_sub.add_parser(
        "loadgen",
        help="apply one phase from an MLPerf LoadGen log (mlperf_log_detail.txt)",
        description="Read the one mlperf_log_detail.txt at or under DIR (searched recursively, "
        "as MLPerf's power-dev client does) and apply one phase from LoadGen's power_begin to "
        "power_end, with its unit count (queries for SingleStream/MultiStream, samples "
        "otherwise). The run's result then carries MLPerf's own figures beside powerd's "
        "(`mlperf` in each such phase). A missing, partial or garbled log is an error naming "
        "the file and line; nothing is applied then.",
    )
    lg.add_argument("dir", metavar="DIR", help="LoadGen's log directory (or the file itself)")
    lg.add_argument("--run", required=True, metavar="RUN", help="run id of the phase")
    lg.add_argument(
        "--phase", default="loadgen", metavar="NAME", help="phase name (default: loadgen)"
    )
    lg.add_argument("--trial", type=int, default=0, metavar="N", help="trial number (default 0)")
    lg.add_argument(
        "--device",
        action="append",
        default=None,
        metavar="ID",
        help="device(s) the phase covers (default: the source's own device, else local)",
    )
    lg.add_argument("--source", default="loadgen", metavar="S", help="sender id (default: loadgen)")
    lg.add_argument(
        "--clock-offset-s",
        type=float,
        default=0.0,
        metavar="S",
        help="add S seconds to LoadGen's stamps (its host's clock is behind powerd's by S)",
    )


def _add_global_options_below(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, command in sub.choices.items():
        _add_global_options(command, name)
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_global_options_below(action)


def _add_global_options(parser: argparse.ArgumentParser, command: str | None) -> None:
    """``--state-dir`` and ``--sysfs-root``, on the top-level parser and again on each command,
    so they may come before or after the command's name. On a command the default is SUPPRESS:
    the value given before the command then stays unless the option is repeated after it."""
    default = None if command is None else argparse.SUPPRESS
    taken = {o for a in parser._actions for o in a.option_strings}
    if "--state-dir" not in taken:
        parser.add_argument(
            "--state-dir",
            type=Path,
            default=default,
            metavar="DIR",
            help="where the embedded store (powerd.db) lives (default: $POWERD_STATE_DIR, "
            "else $XDG_STATE_HOME/powerd, else ~/.local/state/powerd)",
        )
    if "--sysfs-root" not in taken:
        parser.add_argument(
            "--sysfs-root",
            type=Path,
            default=default,
            metavar="DIR",
            help="read sysfs/procfs under DIR instead of / (for captured trees; "
            "also $POWERD_SYSFS_ROOT)",
        )


def cmd_report(args: argparse.Namespace) -> int:
    from powerd.audit import AuditContext, seal
    from powerd.report.files import check_out_dir, reports_line, write_reports
    from powerd.report.table import format_table
    from powerd.runs import compute_run

    path = (args.state_dir or default_state_dir()) / "powerd.db"
    if not path.exists():
        raise PowerdError(f"no store at {path}; measure something first or pass --state-dir")
    check_out_dir(args.out)
    with open_state_store(args.state_dir) as store:
        result = compute_run(store, args.run, args.idle_power, tuple(args.primary))
        seal(
            store,
            result,
            time.time_ns(),
            AuditContext("report"),
            None,
            args.idle_power,
            args.primary,
        )
        paths = write_reports(store, result, args.out)
    print(format_table(result))
    print(reports_line(paths))
    return 0


def cmd_markers(args: argparse.Namespace) -> int:
    from powerd.agent.wire import SOURCE_RE
    from powerd.commands.marker_import import apply_lines

    if not SOURCE_RE.match(args.source):
        raise PowerdError(f"--source {args.source!r}: use 1-128 characters of A-Za-z0-9_.:-")
    if args.action == "loadgen":
        from powerd.commands.loadgen import cmd_markers_loadgen

        return cmd_markers_loadgen(args)
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PowerdError(f"cannot read markers from {args.file}: {err}") from None
    with open_state_store(args.state_dir) as store:
        rep = apply_lines(store, args.source, text.splitlines(), time.time_ns())
    print(
        f"applied {rep.applied} marker(s), {rep.repeats} repeat(s) ignored, "
        f"{rep.phases_closed} phase(s) closed"
    )
    return 0


def cmd_probes(_args: argparse.Namespace) -> int:
    from powerd.probes.registry import families, missing_extra, unloadable_families

    rows = [("probe", "status", "details")]
    for name, fam in families().items():
        try:
            avail = fam.available()
        except Exception as err:
            extra = missing_extra(err)
            rows.append(
                (name, "missing", extra)
                if extra
                else (name, "broken", f"{type(err).__name__}: {err}")
            )
            continue
        status = "available" if avail.ok else ("broken" if avail.broken else "missing")
        rows.append((name, status, f"{fam.summary}; {avail.reason}"))
    for name, (problem, missing) in unloadable_families().items():
        rows.append(
            (name, "missing", problem) if missing else (name, "broken", f"cannot load: {problem}")
        )
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    for r in rows:
        print(f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sysfs_root is not None:
        from powerd.probes.sysfs import ENV

        os.environ[ENV] = str(args.sysfs_root)
    try:
        if hasattr(args, "lang"):  # a command that prints or writes a report
            set_lang(resolve_lang(args.lang))
        if args.command == "measure":
            from powerd.commands.measure import cmd_measure

            return cmd_measure(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "markers":
            return cmd_markers(args)
        if args.command in MODULE_COMMANDS:
            module = importlib.import_module(MODULE_COMMANDS[args.command])
            return int(module.run_command(args))
        if args.command == "runs":
            return cmd_runs(args)
        return cmd_probes(args)
    except PowerdError as err:
        print(f"powerd: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("powerd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
