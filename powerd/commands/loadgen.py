"""``powerd markers loadgen DIR``: one phase from a LoadGen log, applied to the store.

The phase runs from LoadGen's ``power_begin`` to ``power_end`` (each edge at the middle of the
millisecond LoadGen truncated to, ± 0.5 ms), with the scenario's unit count on its end and the
log's figures in the begin marker's ``meta``, from which results compute the ``mlperf`` object
(``powerd.mlperf.figures``). It goes through the same all-or-nothing import as
``powerd markers apply``, so applying the same log again is a harmless repeat.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from powerd.agent.wire import NAME_RE
from powerd.commands.marker_import import apply_lines
from powerd.daemon import Daemon
from powerd.errors import PowerdError
from powerd.mlperf.loadgen import LoadgenRun, edge_uncertainty_ns, read_loadgen
from powerd.paths import open_state_store

SOURCE = "loadgen"


def marker_lines(
    lg: LoadgenRun, run: str, phase: str, trial: int = 0, device: tuple[str, ...] | None = None
) -> list[str]:
    """The phase's begin and end as contract-1 JSON lines."""
    for name, value in (("--run", run), ("--phase", phase)):
        if not NAME_RE.match(value):
            raise PowerdError(f"{name} {value!r}: use 1-128 characters of A-Za-z0-9_.:-")
    return [json.dumps(m.to_json()) for m in lg.markers(run, phase, trial, device)]


def describe(lg: LoadgenRun) -> str:
    """One line saying what the log gave."""
    return (
        f"LoadGen {lg.scenario} {lg.test_mode or '?'} ({lg.validity or 'validity not logged'}): "
        f"{lg.power_begin} .. {lg.power_end} UTC ({lg.window_s:.3f} s), "
        f"{lg.count} {lg.unit}(s) from {lg.path}"
    )


def cmd_markers_loadgen(args: argparse.Namespace) -> int:
    lg = read_loadgen(Path(args.dir))
    device = tuple(args.device) if args.device else None
    lines = marker_lines(lg, args.run, args.phase, args.trial, device)
    with open_state_store(args.state_dir) as store:
        rep = apply_lines(
            store,
            args.source,
            lines,
            time.time_ns(),
            offset_ns=round(args.clock_offset_s * 1e9),
            uncertainty_ns=edge_uncertainty_ns(),
        )
    print(describe(lg))
    print(
        f"phase {args.phase!r} of run {args.run!r}: applied {rep.applied} marker(s), "
        f"{rep.repeats} repeat(s) ignored; `powerd report {args.run}` gives the figures"
    )
    return 0


def apply_after_measure(
    daemon: Daemon,
    where: Path,
    run: str,
    phase: str,
    devices: tuple[str, ...] | None,
    started_ns: int,
    ended_ns: int,
) -> LoadgenRun:
    """For ``powerd measure --loadgen-log``: read the log CMD wrote and apply its phase through
    the measuring daemon. The window must lie inside CMD's run (to LoadGen's 1 ms resolution):
    a log from an earlier run left in DIR is refused, never applied to this one."""
    lg = read_loadgen(where)
    slack_ns = 2 * edge_uncertainty_ns()
    if lg.power_begin_ns < started_ns - slack_ns or lg.power_end_ns > ended_ns + slack_ns:
        raise PowerdError(
            f"{lg.path}: LoadGen's window {lg.power_begin} .. {lg.power_end} UTC is not inside "
            "the command's run; a log left from an earlier run? (not applied)"
        )
    for line in marker_lines(lg, run, phase, 0, devices):
        outcome = daemon.submit_marker(
            SOURCE, line, received_ns=ended_ns, uncertainty_ns=edge_uncertainty_ns()
        )
        if outcome.error is not None:
            raise PowerdError(f"LoadGen phase {phase!r} not applied: {outcome.error}")
    return lg
