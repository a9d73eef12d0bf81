"""``powerd compare RUN[:PHASE] ...``: runs (or devices) side by side with significance calls.

Each run's figures come from its latest stored result (what the daemon published, or what
``powerd report`` / ``measure`` sealed), else are computed from the store as ``powerd report``
would (``--recompute`` always computes). See ``powerd.compare`` for the figures and the rule.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from powerd import __version__
from powerd.compare import RULE, Selection, build_comparison, parse_selection
from powerd.errors import PowerdError
from powerd.i18n import add_lang_option
from powerd.paths import default_state_dir, open_state_store
from powerd.store import Store

HELP_WIDTH = 78


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "compare",
        help="compare runs, phases or devices side by side, with significance",
        description=textwrap.fill(
            "A side-by-side table of the selected phases (RUN alone: its headline phase `run`, "
            "else its longest non-idle phase; every trial of a repeated PHASE is its own item): "
            "J/unit, units/J, mean W, units/s, idle and net figures, each ± its 95 % "
            "uncertainty, and for every pair whether each figure differs significantly.",
            HELP_WIDTH,
        ),
        epilog=textwrap.fill(f"Rule: {RULE}", HELP_WIDTH)
        + "\n\nExamples:\n  powerd compare r-gpu r-npu\n"
        "  powerd compare r1:decode r2:decode --out cmp\n  powerd compare r1 --by device --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN[:PHASE]", help="runs or phases to compare")
    p.add_argument(
        "--by",
        choices=("phase", "device"),
        default="phase",
        help="device: one item per device of each selected phase (default: phase)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write compare.json, compare.csv and compare.html into DIR",
    )
    p.add_argument(
        "--unit",
        default=None,
        metavar="UNIT",
        help="per-unit figures against the count in UNIT (e.g. request, when a phase was counted "
        "in tokens and requests from a serving engine; default: each phase's own count)",
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the JSON document instead")
    fmt.add_argument("--csv", action="store_true", help="print the long-format CSV instead")
    p.add_argument(
        "--recompute",
        action="store_true",
        help="compute every run from its markers and samples, ignoring stored results",
    )
    add_lang_option(p)


def load_result(store: Store, run: str, recompute: bool) -> dict[str, Any]:
    """The run's stored result, else (or with ``recompute``) one computed from the store."""
    from powerd.runs import compute_run

    stored = None if recompute else store.result(run)
    return stored if stored is not None else compute_run(store, run)


def select(store: Store, texts: list[str], recompute: bool) -> list[tuple[Selection, Any]]:
    """Each ``RUN[:PHASE]`` with its run's result."""

    def is_run(run: str) -> bool:
        return store.result(run) is not None or bool(store.markers(run))

    cache: dict[str, dict[str, Any]] = {}
    out = []
    for text in texts:
        sel = parse_selection(text, is_run)
        if sel.run not in cache:
            cache[sel.run] = load_result(store, sel.run, recompute)
        out.append((sel, cache[sel.run]))
    return out


def run_command(args: argparse.Namespace) -> int:
    path = (args.state_dir or default_state_dir()) / "powerd.db"
    if not path.exists():
        raise PowerdError(f"no store at {path}; measure something first or pass --state-dir")
    with open_state_store(args.state_dir) as store:
        doc = build_comparison(select(store, args.runs, args.recompute), args.by, args.unit)
    from powerd.report.compare_text import compare_csv, format_compare, write_compare
    from powerd.report.files import reports_line

    paths = write_compare(doc, args.out, f"powerd {__version__}") if args.out else []
    if args.json:
        json.dump(doc, sys.stdout, indent=1)
        print()
    elif args.csv:
        sys.stdout.write(compare_csv(doc))
    else:
        print(format_compare(doc))
    if paths:
        print(reports_line(paths), file=sys.stderr)
    return 0
