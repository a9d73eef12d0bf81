"""``powerd audit RUN``: re-hash a run's stored data, recompute its figures, compare with the
sealed manifest and the stored result (``powerd.audit``). Exit 0 only when nothing differs."""

from __future__ import annotations

import argparse
import json

from powerd.errors import PowerdError

EXIT_DIFFERS = 1

EPILOG = """\
What is checked (the latest manifest revision unless --revision): the SHA-256 of the run's
markers and of every channel's raw samples and metadata as stored, the stored result against the
sealed one, and every figure recomputed from the store against the stored result.

Exit codes: 0 nothing differs; 1 something differs (each difference is one line); 2 no store,
no such run, or another error.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "audit",
        help="check a run's stored data and figures against its sealed manifest",
        description="Re-hash a run's markers and raw samples in the store, recompute every "
        "figure, and say whether anything differs from the manifest sealed with its result.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run id")
    p.add_argument(
        "--revision", type=int, default=None, metavar="N", help="check manifest revision N"
    )
    p.add_argument("--json", action="store_true", help="print the findings as JSON")


def run_command(args: argparse.Namespace) -> int:
    from powerd.audit import audit, manifest_digest
    from powerd.paths import default_state_dir, open_state_store

    path = (args.state_dir or default_state_dir()) / "powerd.db"
    if not path.exists():
        raise PowerdError(f"no store at {path}; pass --state-dir")
    with open_state_store(args.state_dir) as store:
        if not store.marker_rows(args.run):
            raise PowerdError(f"no run {args.run!r} in {path}")
        report = audit(store, args.run, args.revision)
    m = report.manifest
    if args.json:
        print(
            json.dumps(
                {
                    "run": report.run,
                    "revision": report.revision,
                    "ok": report.ok,
                    "manifest_sha256": None if m is None else manifest_digest(m),
                    "checked": report.checked,
                    "notes": report.notes,
                    "differences": report.differences,
                },
                indent=1,
            )
        )
    else:
        if m is not None:
            print(
                f"run {report.run}: manifest revision {report.revision} sealed "
                f"{m['sealed_utc']} by powerd {m['powerd_version']} ({m['command']}) on "
                f"{m['host']}; manifest sha256 {manifest_digest(m)}"
            )
        for line in report.checked:
            print(f"  checked {line}")
        for line in report.notes:
            print(f"  note: {line}")
        if report.ok:
            print("OK: nothing differs from the sealed manifest and the stored result")
        else:
            print(f"DIFFERS: {len(report.differences)} finding(s)")
            for line in report.differences:
                print(f"  - {line}")
    return 0 if report.ok else EXIT_DIFFERS
