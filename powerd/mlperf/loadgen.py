"""Read a LoadGen ``mlperf_log_detail.txt`` into one phase: its window, scenario and unit count.

MLCommons LoadGen writes ``:::MLLOG {json}`` lines. After every test it logs ``power_begin`` and
``power_end`` (UTC ``MM-DD-YYYY HH:MM:SS.fff``; LoadGen truncates to the millisecond), whatever
the settings: they are written in performance and accuracy mode alike, no power switch is needed
(``IssueQueries`` in loadgen.cc). power-dev's checker and the inference submission checker average
the power samples strictly inside that window; this module gives powerd the same window as a phase,
so both figures can be set side by side (``powerd.mlperf.figures``).

The unit count follows the scenario, as the submission checker reads it: SingleStream and
MultiStream are scored per query (``result_query_count`` queries, mJ/query), Offline, Server and
Interactive per sample (``result_query_count`` × ``effective_samples_per_query`` samples).

A log that is missing, ambiguous (several under DIR), partial (a key absent, e.g. LoadGen still
running or killed) or garbled (a line that is not JSON) is an error naming the file and the line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from powerd.agent.wire import META_MAX_STR, Marker
from powerd.errors import PowerdError

DETAIL_NAME = "mlperf_log_detail.txt"
MLLOG_PREFIX = ":::MLLOG"
STAMP_RE = re.compile(r"^\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2}\.\d{3}$")
STAMP_FORMAT = "%m-%d-%Y %H:%M:%S.%f"
# LoadGen truncates its stamps to the millisecond: the true instant lies in [stamp, stamp + 1 ms).
STAMP_RESOLUTION_NS = 1_000_000
PER_QUERY_SCENARIOS = ("SingleStream", "MultiStream")
PER_SAMPLE_SCENARIOS = ("Offline", "Server", "Interactive")
REQUIRED_KEYS = (
    "effective_scenario",
    "effective_samples_per_query",
    "power_begin",
    "power_end",
    "result_query_count",
)
# Marker meta keys (contract 1 ``meta``: flat labels) that carry the log's figures to the result.
META_PREFIX = "loadgen_"


class LoadgenLogError(PowerdError):
    """A LoadGen log that cannot give a phase; the message names the file (and line)."""


@dataclass(frozen=True)
class LoadgenRun:
    """What one LoadGen test logged that powerd needs: the power window and the unit count."""

    path: Path
    scenario: str
    test_mode: str
    power_begin: str
    power_end: str
    power_begin_ns: int
    power_end_ns: int
    query_count: int
    samples_per_query: int
    validity: str

    @property
    def per_query(self) -> bool:
        """True where MLPerf scores energy per query (SingleStream, MultiStream)."""
        return self.scenario in PER_QUERY_SCENARIOS

    @property
    def count(self) -> int:
        """Units of work in the window: queries (per-query scenarios) or samples."""
        return self.query_count if self.per_query else self.query_count * self.samples_per_query

    @property
    def unit(self) -> str:
        return "query" if self.per_query else "sample"

    @property
    def window_s(self) -> float:
        """power_end − power_begin as logged: the duration MLPerf multiplies by."""
        return (self.power_end_ns - self.power_begin_ns) / 1e9

    def meta(self) -> dict[str, Any]:
        """The log's figures as contract-1 marker ``meta`` labels (see ``from_meta``)."""
        path = str(self.path)
        if len(path) > META_MAX_STR:
            path = "…" + path[-(META_MAX_STR - 1) :]
        return {
            f"{META_PREFIX}scenario": self.scenario,
            f"{META_PREFIX}test_mode": self.test_mode,
            f"{META_PREFIX}power_begin": self.power_begin,
            f"{META_PREFIX}power_end": self.power_end,
            f"{META_PREFIX}query_count": self.query_count,
            f"{META_PREFIX}samples_per_query": self.samples_per_query,
            f"{META_PREFIX}validity": self.validity,
            f"{META_PREFIX}log": path,
        }

    def markers(
        self, run: str, phase: str, trial: int = 0, device: tuple[str, ...] | None = None
    ) -> tuple[Marker, Marker]:
        """Begin and end markers of the phase. Each edge is stamped at the middle of the
        millisecond LoadGen truncated to (see ``edge_uncertainty_ns``); the count goes on the
        end, the log's figures in ``meta`` on the begin (a phase's meta merges both)."""
        half = STAMP_RESOLUTION_NS // 2
        begin = Marker(
            run,
            phase,
            "begin",
            None,
            self.power_begin_ns + half,
            trial=trial,
            meta=self.meta(),
            device=device,
        )
        end = Marker(
            run,
            phase,
            "end",
            None,
            self.power_end_ns + half,
            count=self.count,
            unit=self.unit,
            trial=trial,
        )
        return begin, end


def edge_uncertainty_ns() -> int:
    """Half the stamp resolution: the 95 % (indeed 100 %) half-width of each edge time."""
    return STAMP_RESOLUTION_NS // 2


def stamp_ns(text: str) -> int:
    """UTC nanoseconds of a LoadGen power stamp ``MM-DD-YYYY HH:MM:SS.fff``; ValueError if not."""
    if not STAMP_RE.match(text):
        raise ValueError(f"{text!r} is not MM-DD-YYYY HH:MM:SS.fff")
    dt = datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=UTC)
    whole_s = int(dt.replace(microsecond=0).timestamp())
    return whole_s * 1_000_000_000 + dt.microsecond * 1000


def find_detail_log(where: Path) -> Path:
    """The one ``mlperf_log_detail.txt`` at or under ``where`` (a file, or a directory searched
    recursively, as power-dev's client does); an error if there is none or more than one."""
    where = where.absolute()
    if where.is_file():
        return where
    if not where.is_dir():
        raise LoadgenLogError(f"{where}: no such file or directory")
    found = sorted(where.rglob(DETAIL_NAME))
    if not found:
        raise LoadgenLogError(
            f"no {DETAIL_NAME} under {where}: did LoadGen run with its log outdir there?"
        )
    if len(found) > 1:
        listed = ", ".join(str(p) for p in found[:5])
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise LoadgenLogError(
            f"{len(found)} {DETAIL_NAME} files under {where} ({listed}{more}); "
            "name the directory (or file) of the one test to apply"
        )
    return found[0]


def _parse_lines(path: Path, text: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Each key's value and line number; an error for a garbled line or a key logged twice with
    two values (two tests in one file: which window would be meant?)."""
    values: dict[str, Any] = {}
    where: dict[str, int] = {}
    mllog = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith(MLLOG_PREFIX):
            if "POWER_BEGIN" in stripped or "POWER_END" in stripped:
                raise LoadgenLogError(
                    f"{path}:{lineno}: old LoadGen log format (no :::MLLOG); "
                    "use a LoadGen built with the JSON log format"
                )
            raise LoadgenLogError(f"{path}:{lineno}: not a :::MLLOG line: {stripped[:80]!r}")
        mllog += 1
        try:
            obj = json.loads(stripped[len(MLLOG_PREFIX) :])
        except json.JSONDecodeError as err:
            raise LoadgenLogError(
                f"{path}:{lineno}: garbled :::MLLOG line (JSON: {err.msg} at column "
                f"{err.colno + len(MLLOG_PREFIX)}); a truncated last line means LoadGen did "
                "not finish writing"
            ) from None
        if not isinstance(obj, dict) or not isinstance(obj.get("key"), str) or "value" not in obj:
            raise LoadgenLogError(f"{path}:{lineno}: :::MLLOG line without a key and a value")
        key = obj["key"]
        if key in REQUIRED_KEYS and key in values and values[key] != obj["value"]:
            raise LoadgenLogError(
                f"{path}:{lineno}: {key} logged again with another value (first at line "
                f"{where[key]}); one file must hold one test"
            )
        if key not in values:
            values[key], where[key] = obj["value"], lineno
    if mllog == 0:
        raise LoadgenLogError(f"{path}: no :::MLLOG line; not a LoadGen detail log")
    return values, where


def _int_value(path: Path, values: dict[str, Any], where: dict[str, int], key: str) -> int:
    v = values[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise LoadgenLogError(f"{path}:{where[key]}: {key} must be an integer >= 0, got {v!r}")
    return v


def parse_detail_log(path: Path) -> LoadgenRun:
    """Parse one LoadGen detail log; LoadgenLogError (with file and line) for any defect."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise LoadgenLogError(f"cannot read {path}: {err}") from None
    values, where = _parse_lines(path, text)
    missing = [k for k in REQUIRED_KEYS if k not in values]
    if missing and values.get("effective_test_mode") == "AccuracyOnly":
        raise LoadgenLogError(
            f"{path}: an AccuracyOnly log (line {where['effective_test_mode']}) has no "
            f"{', '.join(missing)}; MLPerf Power measures the PerformanceOnly run"
        )
    if missing:
        raise LoadgenLogError(
            f"{path}: partial LoadGen log, missing {', '.join(missing)} "
            f"({len(text.splitlines())} lines read; LoadGen still running, or killed?)"
        )
    scenario = values["effective_scenario"]
    if scenario not in PER_QUERY_SCENARIOS + PER_SAMPLE_SCENARIOS:
        raise LoadgenLogError(
            f"{path}:{where['effective_scenario']}: unknown scenario {scenario!r}"
        )
    stamps: list[int] = []
    for key in ("power_begin", "power_end"):
        try:
            stamps.append(stamp_ns(str(values[key])))
        except ValueError as err:
            raise LoadgenLogError(f"{path}:{where[key]}: {key} {err}") from None
    if stamps[1] <= stamps[0]:
        raise LoadgenLogError(
            f"{path}:{where['power_end']}: power_end {values['power_end']} is not after "
            f"power_begin {values['power_begin']}"
        )
    return LoadgenRun(
        path=path,
        scenario=scenario,
        test_mode=str(values.get("effective_test_mode", "")),
        power_begin=str(values["power_begin"]),
        power_end=str(values["power_end"]),
        power_begin_ns=stamps[0],
        power_end_ns=stamps[1],
        query_count=_int_value(path, values, where, "result_query_count"),
        samples_per_query=_int_value(path, values, where, "effective_samples_per_query"),
        validity=str(values.get("result_validity", "")),
    )


def read_loadgen(where: Path) -> LoadgenRun:
    """Find and parse the detail log at or under ``where``."""
    return parse_detail_log(find_detail_log(where))


def from_meta(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The LoadGen figures a phase carries in its meta (without the prefix), or None."""
    if f"{META_PREFIX}power_begin" not in meta:
        return None
    return {k[len(META_PREFIX) :]: v for k, v in meta.items() if k.startswith(META_PREFIX)}
