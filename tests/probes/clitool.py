"""Shared scaffolding for the probe families' end-to-end tests (a fake vendor tool or service, the
probe read until a condition holds, one ``powerd measure`` run, a missing tool, a ``drive.py``
case's open checks).

Why one module: each family (ascend, gaudi, hyperaccel, ipmi, mobilint, rbln, redfish, tegrastats;
amdsmi and furiosa for ``opened_as_expected``) had its own copy of these, and a fix to one (a
deadline, an ordering check) did not reach the others. What each test asserts stays in the test;
the checks made on every block read (times strictly rising, one block after the other, ``read``
never waiting) are options of ``collect``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from powerd.probes.base import ProbeFamily
from tests.probes.clistream import faketool

DEADLINE_S = 20.0  # how long a condition may take to hold before the test fails
Values = dict[str, list[float]]
Until = Callable[[Values, list[str]], bool]


class Readable(Protocol):
    """What ``collect`` needs of a probe: its blocks since a time, and its problems since asked."""

    def read(self, now_ns: int) -> Iterable[Any]: ...

    def problems(self) -> list[str]: ...


def install_fake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, rules: list[faketool.Rule]
) -> Path:
    """The fake ``name`` (``faketool``) in ``tmp_path/bin``, first on PATH; returns its path."""
    bin_dir = tmp_path / "bin"
    exe = faketool.install(bin_dir, name, rules)
    faketool.on_path(monkeypatch, bin_dir)
    return exe


def collect(
    probe: Readable,
    until: Until,
    *,
    ordered: bool = False,
    continuing: bool = False,
    read_budget_s: float | None = None,
    poll_s: float = 0.02,
) -> tuple[Values, list[str]]:
    """Read every ``poll_s`` until ``until(values, problems)`` holds; fail after ``DEADLINE_S``.

    ``ordered``: within each block the times strictly rise. ``continuing``: each block of a
    channel starts after its previous block ended (no sample given twice). ``read_budget_s``: one
    ``read`` returns within that long (a polled probe never waits for its tool)."""
    values: Values = {}
    problems: list[str] = []
    last_t_ns: dict[str, int] = {}
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        for b in probe.read(time.time_ns()):
            if ordered:
                assert (b.t_ns[1:] > b.t_ns[:-1]).all()
            if continuing:
                assert b.t_first_ns > last_t_ns.get(b.channel, 0)
                last_t_ns[b.channel] = b.t_last_ns
            values.setdefault(b.channel, []).extend(b.value.tolist())
        if read_budget_s is not None:
            assert time.monotonic() - t0 < read_budget_s  # read never waits for the tool
        problems.extend(probe.problems())
        if until(values, problems):
            return values, problems
        time.sleep(poll_s)
    pytest.fail(f"condition not reached: {values}, {problems}")


def measure_phase(
    tmp_path: Path,
    probe: str,
    *options: str,
    run: str = "t1",
    seconds: int = 1,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``powerd measure --probe <probe> <options> -- sleep <seconds>`` in a fresh state dir; asserts
    it succeeds and returns the one phase of its result JSON."""
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "powerd", "measure", "--probe", probe, *options,
         "--run", run, "--quiet", "--out", str(out), "--", "sleep", str(seconds)],
        env={**os.environ, "POWERD_STATE_DIR": str(tmp_path / "state"), **(env or {})},
        text=True, capture_output=True, check=False, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (phase,) = json.loads((out / f"{run}.json").read_text())["phases"]
    assert isinstance(phase, dict)
    return phase


def assert_tool_missing(
    family: ProbeFamily, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, real: Sequence[str]
) -> None:
    """With PATH only ``tmp_path``, the family is missing (not broken, "not found"); skipped where
    one of the ``real`` paths holds the vendor's tool (the probe would find it there)."""
    faketool.only_on_path(monkeypatch, tmp_path)
    found = [p for p in real if os.access(p, os.X_OK)]
    if found:
        pytest.skip(f"this host has the real tool: {found[0]}")
    avail = family.available()
    assert not avail.ok and not avail.broken and "not found" in avail.reason


def opened_as_expected(got: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """Check ``drive.py``'s output (``tests/probes/amdsmi/drive.py``: ``available``, ``error``,
    ``channels``) against a case's ``case.json``: availability (ok, broken, reason substring),
    then either the expected open error (returns False: nothing more to check) or no error and
    exactly the expected channels, each with its fields (``description_contains``: a substring;
    ``accuracy``: each term approximately; any other field: equal). True when it opened."""
    avail, exp = got["available"], want["available"]
    assert avail["ok"] == exp["ok"] and avail["broken"] == exp.get("broken", False), avail
    assert exp.get("reason_contains", "") in avail["reason"], avail
    if "unavailable" in want:
        assert got["error"] is not None and want["unavailable"] in got["error"], got["error"]
        return False
    assert got["error"] is None, got["error"]
    chans = {c["id"]: c for c in got["channels"]}
    assert sorted(chans) == sorted(want["channels"])
    for cid, fields in want["channels"].items():
        for key, value in fields.items():
            if key == "description_contains":
                assert value in chans[cid]["description"], chans[cid]["description"]
            elif key == "accuracy":
                for k, v in value.items():
                    assert chans[cid]["accuracy"][k] == pytest.approx(v), (cid, k)
            else:
                assert chans[cid][key] == value, (cid, key)
    return True
