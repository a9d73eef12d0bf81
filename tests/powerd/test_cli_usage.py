"""The command line a person expects: options in either place, help for every argument, output
problems that never cost a run, `powerd runs` as a table, probes that say what to install."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from powerd.cli import build_parser
from powerd.probes.registry import missing_extra
from tests.tools import run_powerd

CONST = "sim:constant,w=5"


def powerd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_powerd(*args, stdin=stdin)


def measure(state: Path, run: str, out: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    return powerd(
        "measure", "--probe", CONST, "--run", run, "--count", "10", "--quiet",
        "--out", str(out), "--state-dir", str(state), "--", *cmd,
    )  # fmt: skip


def _parsers(parser: argparse.ArgumentParser, name: str = "powerd"):  # type: ignore[no-untyped-def]
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_argument_of_every_command_has_help_and_no_doubled_percent() -> None:
    seen = []
    for name, parser in _parsers(build_parser()):
        seen.append(name)
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
        text = parser.format_help()
        assert "%%" not in text, name
        assert "--state-dir" in text, f"{name} does not take the global --state-dir"
    assert {"powerd report", "powerd runs", "powerd markers apply", "powerd mark"} <= set(seen)
    assert "95 % uncertainty" in " ".join(powerd("--help").stdout.split())


def test_global_options_before_or_after_the_command(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert measure(a, "r1", tmp_path / "out", "true").returncode == 0
    for args in (
        ("--state-dir", str(a), "runs", "--json"),
        ("runs", "--json", "--state-dir", str(a)),
        ("--state-dir", str(b), "runs", "--json", "--state-dir", str(a)),  # the later one wins
    ):
        r = powerd(*args)
        assert r.returncode == 0, r.stderr
        assert [x["run"] for x in json.loads(r.stdout)] == ["r1"], args
    assert json.loads(powerd("runs", "--json", "--state-dir", str(b)).stdout) == []


def test_markers_apply_takes_source_before_the_file(tmp_path: Path) -> None:
    lines = tmp_path / "m.jsonl"
    lines.write_text(
        '{"v":1,"run":"mk","phase":"p","event":"begin","t_ns":1000000000}\n'
        '{"v":1,"run":"mk","phase":"p","event":"end","t_ns":2000000000}\n'
    )
    st = str(tmp_path / "st")
    r = powerd("markers", "apply", "--source", "bench-1", str(lines), "--state-dir", st)
    assert r.returncode == 0, r.stderr
    assert "applied 2 marker(s)" in r.stdout


def test_mark_errors_name_the_options() -> None:
    clean = {k: v for k, v in os.environ.items() if k not in ("POWERD_URL", "POWERD_RUN")}
    r = subprocess.run(
        [sys.executable, "-m", "powerd", "mark", "begin", "p", "--run", "r"],
        env=clean, text=True, capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "--url" in r.stderr and "url=" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run(
        [sys.executable, "-m", "powerd", "mark", "begin", "p"],
        env=clean, text=True, capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "--run" in r.stderr and "run=" not in r.stderr


@pytest.mark.parametrize("bad", ["/proc/powerd-x", "a-file"])
def test_bad_out_is_one_line_before_the_command_starts(tmp_path: Path, bad: str) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    out = Path(bad) if bad.startswith("/") else tmp_path / bad
    started = tmp_path / "started"
    r = measure(tmp_path / "st", "r1", out, "touch", str(started))
    assert r.returncode == 2
    assert r.stderr.startswith("powerd: error: --out ") and len(r.stderr.splitlines()) == 1
    assert "Traceback" not in r.stderr
    assert not started.exists(), "CMD must not run when --out is unusable"
    # the run id is still free
    assert measure(tmp_path / "st", "r1", tmp_path / "ok", "true").returncode == 0


def test_report_write_failure_after_the_run_keeps_the_result(tmp_path: Path) -> None:
    out, st = tmp_path / "out", tmp_path / "st"
    # the workload replaces the checked output directory by a file: writing then fails
    r = measure(st, "r1", out, "sh", "-c", f"rmdir {out} && touch {out}")
    assert r.returncode == 2
    (line,) = r.stderr.splitlines()
    assert f"powerd --state-dir {st} report r1 --out DIR" in line and "Traceback" not in line
    assert "run r1" in r.stdout, "the table is still printed"
    again = powerd("report", "r1", "--out", str(tmp_path / "again"), "--state-dir", str(st))
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "again" / "r1.json").read_text())["run"] == "r1"
    bad = powerd("report", "r1", "--out", "/proc/powerd-x", "--state-dir", str(st))
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
    assert "Traceback" not in bad.stderr and "--out /proc/powerd-x" in bad.stderr


def test_runs_is_a_table_by_time_with_json(tmp_path: Path) -> None:
    st = tmp_path / "st"
    for run in ("zz-first", "aa-second"):  # alphabetical order is the opposite of time order
        assert measure(st, run, tmp_path / "out", "true").returncode == 0
    r = powerd("runs", "--state-dir", str(st))
    assert r.returncode == 0, r.stderr
    head, first, second = r.stdout.splitlines()
    assert head.split()[:3] == ["started", "(UTC)", "run"] and "j_per_unit" in head
    assert first.split()[1] == "zz-first" and second.split()[1] == "aa-second", "newest last"
    assert "/inference" in first and "run" in first.split()[2]
    rows = json.loads(powerd("runs", "--json", "--state-dir", str(st)).stdout)
    assert [x["run"] for x in rows] == ["zz-first", "aa-second"]
    assert rows[0]["t_first_ns"] < rows[1]["t_first_ns"]
    assert rows[0]["j_per_unit"] == pytest.approx(rows[0]["energy_j"] / 10)
    assert rows[0]["j_per_unit_uncertainty"] == pytest.approx(rows[0]["uncertainty_j"] / 10)
    last = json.loads(powerd("runs", "--json", "--limit", "1", "--state-dir", str(st)).stdout)
    assert [x["run"] for x in last] == ["aa-second"]


def test_a_missing_extra_says_what_to_install() -> None:
    assert missing_extra(ModuleNotFoundError("x", name="serial")) == (
        "pyserial is not installed: pip install 'powerd[serial]'"
    )
    assert missing_extra(ModuleNotFoundError("x", name="pynvml")) is not None
    assert missing_extra(ModuleNotFoundError("x", name="numpy")) is None
    assert missing_extra(ValueError("serial")) is None
    # a Python without pyserial: every serial meter says so, none is "broken"
    code = (
        "import sys; sys.modules['serial'] = None; sys.modules['serial_asyncio_fast'] = None\n"
        "from powerd.cli import main; main(['probes'])\n"
        "main(['measure', '--probe', 'scpi:/dev/ttyUSB0', '--run', 'x', '--', 'true'])"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], check=False, text=True, capture_output=True, timeout=60
    )
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[1:]}
    for name in ("wt300", "lpm01a", "ina2xx", "scpi"):
        assert " missing " in rows[name] and "pip install 'powerd[serial]'" in rows[name], name
    assert "broken" not in r.stdout
    assert "probe 'scpi' is not usable here: pyserial is not installed" in r.stderr


def test_an_unusable_state_dir_is_one_line_before_the_command_starts(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    started = tmp_path / "started"
    for state in ("/proc/powerd-x", str(tmp_path / "a-file")):
        r = measure(Path(state), "r1", tmp_path / "out", "touch", str(started))
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
        assert state in r.stderr and "Traceback" not in r.stderr
        assert not started.exists()
        m = powerd("markers", "apply", "--state-dir", state, stdin="{}")
        assert m.returncode == 2 and len(m.stderr.splitlines()) == 1, m.stderr
