"""A LoadGen detail log that is missing, ambiguous, partial or garbled is an error naming the file
and line, and nothing is applied. The damaged logs are cut from a real one LoadGen wrote."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from powerd.mlperf.loadgen import LoadgenLogError, read_loadgen, stamp_ns

SUT = Path(__file__).with_name("loadgen_sut.py")


@pytest.fixture(scope="module")
def real_log(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    d = tmp_path_factory.mktemp("lg")
    r = subprocess.run(
        [sys.executable, str(SUT), "SingleStream", str(d), "--min-duration-ms", "50"],
        check=False,
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return (d / "mlperf_log_detail.txt").read_text().splitlines(keepends=True)


def write(d: Path, lines: list[str]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / "mlperf_log_detail.txt"
    p.write_text("".join(lines))
    return p


def line_of(lines: list[str], key: str) -> int:
    return next(i for i, s in enumerate(lines) if f'"key": "{key}"' in s)


def test_real_log_parses(real_log: list[str], tmp_path: Path) -> None:
    write(tmp_path / "a", real_log)
    lg = read_loadgen(tmp_path)
    assert lg.scenario == "SingleStream" and lg.unit == "query" and lg.count > 0
    assert lg.power_begin_ns < lg.power_end_ns
    assert lg.test_mode == "PerformanceOnly"


def test_garbled_line_is_named(real_log: list[str], tmp_path: Path) -> None:
    i = line_of(real_log, "power_end")
    cut = [*real_log[:i], real_log[i][:40]]  # LoadGen killed while writing
    p = write(tmp_path, cut)
    with pytest.raises(
        LoadgenLogError, match=rf"{re.escape(str(p))}:{i + 1}: garbled :::MLLOG line"
    ):
        read_loadgen(tmp_path)


def test_partial_log_names_the_missing_keys(real_log: list[str], tmp_path: Path) -> None:
    cut = real_log[: line_of(real_log, "power_end")]
    write(tmp_path, cut)
    with pytest.raises(
        LoadgenLogError, match="partial LoadGen log, missing power_end, result_query_count"
    ):
        read_loadgen(tmp_path)


def test_other_defects(real_log: list[str], tmp_path: Path) -> None:
    with pytest.raises(LoadgenLogError, match=r"no mlperf_log_detail\.txt under"):
        read_loadgen(tmp_path)
    with pytest.raises(LoadgenLogError, match="no such file or directory"):
        read_loadgen(tmp_path / "nowhere")
    write(tmp_path / "a", real_log)
    write(tmp_path / "b", real_log)
    with pytest.raises(LoadgenLogError, match=r"2 mlperf_log_detail\.txt files under"):
        read_loadgen(tmp_path)
    # one file names one test
    assert read_loadgen(tmp_path / "a").path == tmp_path / "a" / "mlperf_log_detail.txt"
    i = line_of(real_log, "power_begin")
    swapped = list(real_log)
    swapped[i] = real_log[i].replace('"power_begin"', '"power_end"')
    swapped[i + 1] = real_log[i + 1].replace('"power_end"', '"power_begin"')
    p = write(tmp_path / "c", swapped)
    with pytest.raises(
        LoadgenLogError, match=rf"{re.escape(str(p))}:{i + 1}: power_end .* is not after"
    ):
        read_loadgen(p)
    bad_stamp = list(real_log)
    bad_stamp[i] = '{"x": 1}\n'
    p = write(tmp_path / "d", bad_stamp)
    with pytest.raises(LoadgenLogError, match=rf"{re.escape(str(p))}:{i + 1}: not a :::MLLOG line"):
        read_loadgen(p)
    with pytest.raises(ValueError):
        stamp_ns("2026-12-03 13:54:52.167")
    assert stamp_ns("01-01-1970 00:00:01.250") == 1_250_000_000


def test_cli_error_applies_nothing(real_log: list[str], tmp_path: Path) -> None:
    write(tmp_path / "lg", real_log[: line_of(real_log, "power_end")])
    env = {**os.environ, "POWERD_STATE_DIR": str(tmp_path / "st")}
    r = subprocess.run(
        [sys.executable, "-m", "powerd", "markers", "loadgen", str(tmp_path / "lg"), "--run", "x"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr.startswith("powerd: error: ") and "partial LoadGen log" in r.stderr
    assert r.stderr.count("\n") == 1
    assert not (tmp_path / "st" / "powerd.db").exists()
