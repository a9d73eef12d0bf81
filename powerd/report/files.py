"""Write a run's report files: ``<run>.json``, ``<run>.csv`` and ``<run>.html``.

An output directory is checked before anything is measured (``check_out_dir``: it can be created,
is a directory and takes a new file), so a bad ``--out`` never costs a run; a write that still
fails raises ``ReportWriteError`` (one line, no traceback) and the caller says how to write the
report again from the store.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from powerd import __version__
from powerd.block import F64, I64
from powerd.errors import PowerdError
from powerd.i18n import _
from powerd.integrate import power_trace
from powerd.report.html import render_html
from powerd.report.table import csv_notes
from powerd.store import Store

CSV_CHUNK = 1 << 16


class ReportWriteError(PowerdError):
    """The report files could not be written (the result itself is safe in the store)."""


def _why(err: OSError) -> str:
    return err.strerror or str(err)


def check_out_dir(out_dir: Path) -> None:
    """Make sure ``out_dir`` exists (creating it), is a directory and takes a new file; raises
    ``ReportWriteError`` with one line saying what is wrong."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportWriteError(f"--out {out_dir}: exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReportWriteError(f"--out {out_dir}: cannot create it: {_why(err)}") from None
    try:
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".powerd-check-"):
            pass
    except OSError as err:
        raise ReportWriteError(f"--out {out_dir}: cannot write in it: {_why(err)}") from None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def run_samples(store: Store, result: dict[str, Any]) -> dict[str, tuple[I64, F64]]:
    """Each channel's samples over the run's span (with the neighbours used at its edges)."""
    phases = result["phases"]
    if not phases:
        return {}
    t0 = min(p["t_begin_ns"] for p in phases)
    t1 = max(p["t_end_ns"] for p in phases)
    chans = sorted({c for p in phases for c in p["channels"]})
    return {c: store.samples(c, t0, t1) for c in chans}


def write_csv(
    path: Path,
    samples: dict[str, tuple[I64, F64]],
    units: dict[str, str],
    notes: list[str] | None = None,
) -> None:
    """Long format ``channel,t_ns,value,unit``; values are W for power and J for counters.
    ``notes`` (lines starting with ``#``) go above the header: the run's figures as the table
    rounds them (``report.table.csv_notes``)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        fh.writelines(f"{line}\n" for line in notes or [])
        fh.write("channel,t_ns,value,unit\n")
        for channel, (t, v) in samples.items():
            prefix, suffix = f"{channel},", f",{units.get(channel, '')}"
            for s in range(0, t.size, CSV_CHUNK):
                chunk = zip(
                    t[s : s + CSV_CHUNK].tolist(), v[s : s + CSV_CHUNK].tolist(), strict=True
                )
                fh.writelines(f"{prefix}{a},{b!r}{suffix}\n" for a, b in chunk)
    os.replace(tmp, path)


def write_reports(store: Store, result: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the three report files for ``result`` into ``out_dir``; returns their paths.
    Raises ``ReportWriteError`` (one line) when the directory or a file cannot be written."""
    check_out_dir(out_dir)
    try:
        return _write_all(store, result, out_dir)
    except OSError as err:
        where = err.filename or out_dir
        raise ReportWriteError(f"cannot write {where}: {_why(err)}") from None


def _write_all(store: Store, result: dict[str, Any], out_dir: Path) -> list[Path]:
    run = result["run"]
    channels = store.channels()
    samples = run_samples(store, result)
    units = {c: channels[c].unit for c in samples if c in channels}
    paths = [out_dir / f"{run}.json", out_dir / f"{run}.csv", out_dir / f"{run}.html"]
    _atomic_write(paths[0], json.dumps(result, indent=1) + "\n")
    write_csv(paths[1], samples, units, csv_notes(result, f"powerd {__version__}"))
    traces = {c: power_trace(t, v, channels[c]) for c, (t, v) in samples.items() if c in channels}
    counter = _("W, rate of the J counter")
    legend = {c: "W" if u == "W" else counter for c, u in units.items()}
    sealed = store.manifests(run)
    html = render_html(
        result, traces, legend, f"powerd {__version__}", sealed[-1] if sealed else None
    )
    _atomic_write(paths[2], html)
    return paths


def reports_line(paths: list[Path]) -> str:
    """The line printed after the table: where the report files are."""
    return _("reports: {paths}").format(paths=" ".join(str(p) for p in paths))
