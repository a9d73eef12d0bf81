"""clistream: the loop-mode line stream and the one-shot poller against fake tools (scripts put
on PATH by ``faketool``): started once, stamped on arrival, restarted with backoff, a silent tool
killed, a hanging call bounded, and the pure helpers. No timing assertions beyond "eventually".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from powerd.probes.clistream import Arrived, LineStream, Polled, Series, ToolPoller, utc_of
from tests.probes.clistream import faketool

DEADLINE_S = 20.0


def wait_for(cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    pytest.fail("condition not reached")


def loop_tool(tmp_path: Path, **extra: object) -> Path:
    return faketool.install(
        tmp_path / "bin",
        "looptool",
        [{"loop": {"arg": "-l"}, "frames": ["a 1\n", "b 2\n", "c 3\n"], **extra}],
    )


def test_a_loop_tool_runs_once_and_its_lines_are_stamped_on_arrival(tmp_path: Path) -> None:
    exe = loop_tool(tmp_path)
    stream = LineStream([str(exe), "-l", "0.02"], "loop")
    before = time.monotonic_ns()
    stream.start()
    got: list[Arrived] = []
    try:
        wait_for(lambda: len(got.__iadd__(stream.drain())) >= 6)
    finally:
        stream.stop()
    after = time.monotonic_ns()
    assert [a.text for a in got[:4]] == ["a 1\n", "b 2\n", "c 3\n", "a 1\n"]
    stamps = [a.mono_ns for a in got]
    assert stamps == sorted(stamps) and before <= stamps[0] and stamps[-1] <= after
    assert faketool.starts(exe) == ["-l 0.02"]
    assert stream.problems.drain() == []


def test_an_exit_is_restarted_with_backoff_and_the_gap_reported(tmp_path: Path) -> None:
    exe = loop_tool(tmp_path, die_after=2)
    stream = LineStream([str(exe), "-l", "0.02"], "loop")
    stream.start()
    problems: list[str] = []
    try:
        wait_for(lambda: any("restarted" in p for p in problems.__iadd__(stream.problems.drain())))
    finally:
        stream.stop()
    assert problems[0] == "loop: exited with status 3; restarting in 0.5 s"
    assert problems[1].startswith("loop: restarted; no samples for ")
    assert faketool.starts(exe) == ["-l 0.02", "-l 0.02"]


def test_a_silent_tool_is_killed_and_restarted(tmp_path: Path) -> None:
    exe = loop_tool(tmp_path, hang_after=2)
    stream = LineStream([str(exe), "-l", "0.02"], "loop", stall_s=0.3)
    stream.start()
    problems: list[str] = []

    def restarted() -> bool:
        stream.drain()  # the stall check runs when the probe drains
        problems.extend(stream.problems.drain())
        return any("restarted" in p for p in problems)

    try:
        wait_for(restarted)
    finally:
        stream.stop()
    assert problems[0].startswith("loop: no output for ") and problems[0].endswith("killing it")
    assert problems[1] == "loop: stalled, killed; restarting in 0.5 s"
    assert len(faketool.starts(exe)) == 2


def test_a_tool_that_cannot_start_is_a_problem(tmp_path: Path) -> None:
    stream = LineStream([str(tmp_path / "nope"), "-l", "1"], "nope")
    stream.start()
    try:
        wait_for(lambda: bool(stream.problems))
    finally:
        stream.stop()
    assert stream.problems.popleft().startswith("nope: cannot start ")


def test_unread_lines_are_bounded_and_the_loss_reported(tmp_path: Path) -> None:
    exe = loop_tool(tmp_path)
    stream = LineStream([str(exe), "-l", "0.005"], "loop", max_lines=5)
    stream.start()
    try:
        wait_for(lambda: faketool.starts(exe) != [] and len(stream.lines) == 5)
        time.sleep(0.1)
        assert len(stream.drain()) == 5
    finally:
        stream.stop()
    assert any("lines dropped" in p for p in stream.problems.drain())


def test_poller_runs_the_tool_every_interval(tmp_path: Path) -> None:
    exe = faketool.install(tmp_path / "bin", "oneshot", [{"frames": ["42\n"]}])
    poller = ToolPoller([str(exe)], "oneshot", 0.05)
    poller.start()
    got: list[Polled] = []
    try:
        wait_for(lambda: len(got.__iadd__(poller.drain())) >= 3)
    finally:
        poller.stop()
    assert all(p.stdout == b"42\n" and p.half_span_ns > 0 for p in got)
    assert [p.mono_ns for p in got] == sorted(p.mono_ns for p in got)
    assert poller.problems.drain() == []


def test_a_hanging_or_failing_call_is_a_problem_then_a_reported_gap(tmp_path: Path) -> None:
    exe = faketool.install(tmp_path / "bin", "oneshot", [{"frames": ["x\n"], "hang_after": -1}])
    poller = ToolPoller([str(exe)], "oneshot", 0.05, timeout_s=0.3)
    poller.start()
    problems: list[str] = []
    try:
        wait_for(lambda: bool(problems.__iadd__(poller.problems.drain())))
        faketool.set_rules(exe, [{"frames": ["x\n"], "exit": 4}])
        wait_for(lambda: any("exit 4" in p for p in problems.__iadd__(poller.problems.drain())))
        faketool.set_rules(exe, [{"frames": ["x\n"]}])
        wait_for(lambda: any("again" in p for p in problems.__iadd__(poller.problems.drain())))
    finally:
        t0 = time.monotonic()
        poller.stop()
        assert time.monotonic() - t0 < 3.0
    assert "no answer within 0.3 s (killed); retrying in 0.5 s" in problems[0]
    assert problems[-1].startswith("oneshot: answering again; no samples for ")


def test_utc_of_and_series() -> None:
    assert utc_of(900, 10_000, 1_000) == 9_900
    s = Series()
    assert s.add("a:1", 10, 1.0) and s.add("a:1", 20, 2.0)
    assert not s.add("a:1", 20, 3.0)  # not after the previous stamp
    (b,) = s.blocks()
    assert b.channel == "a:1" and b.t_ns.tolist() == [10, 20] and b.value.dtype == np.float64
    assert not s.add("a:1", 15, 1.0)  # across reads too
    assert s.add("a:1", 30, 1.0)
    assert [x.t_ns.tolist() for x in s.blocks()] == [[30]]
    assert s.blocks() == []
