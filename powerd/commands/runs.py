"""``powerd runs``: list the runs held in the embedded store."""

from __future__ import annotations

import argparse
from typing import Any

from powerd.errors import PowerdError
from powerd.paths import default_state_dir, open_state_store


def cmd_runs(args: argparse.Namespace) -> int:
    """The runs table (oldest first, newest last) or, with --json, the same rows as JSON."""
    import json

    from powerd.runs import list_runs

    if args.limit is not None and args.limit < 1:
        raise PowerdError("--limit must be >= 1")
    path = (args.state_dir or default_state_dir()) / "powerd.db"
    if not path.exists():
        if args.json:
            print("[]")
        else:
            print(f"no store at {path} (measure something first, or pass --state-dir)")
        return 0
    with open_state_store(args.state_dir) as store:
        rows = list(reversed(list_runs(store, args.limit)))
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        print(f"no runs in {path}")
    else:
        print(runs_table(rows))
    return 0


def runs_table(rows: list[dict[str, Any]]) -> str:
    """The text table of ``powerd runs`` for summaries given oldest first."""
    from powerd.report.numbers import unc_text, value_text

    head = ("started (UTC)", "run", "phases", "energy_j", "±U95_j", "j_per_unit ± U95", "flags")
    lines: list[tuple[str, ...]] = [head]
    for r in rows:
        per = "-"
        if r["j_per_unit"] is not None:
            per = (
                f"{value_text(r['j_per_unit'], r['j_per_unit_uncertainty'])}"
                f" ± {unc_text(r['j_per_unit_uncertainty'])}/{r['unit']}"
            )
        lines.append(
            (
                r["started"].replace("+00:00", "Z"),
                r["run"],
                ",".join(r["phases"]) or ("-" if r["has_result"] else "(no result)"),
                value_text(r["energy_j"], r["uncertainty_j"]),
                unc_text(r["uncertainty_j"]),
                per,
                ",".join(r["flags"]) or "-",
            )
        )
    widths = [max(len(x[i]) for x in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)).rstrip() for x in lines
    )
