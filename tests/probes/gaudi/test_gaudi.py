"""gaudi: the ``hl-smi`` CSV line parser on captured-shape lines, and the probe against a fake
``hl-smi`` in its loop mode (``-l``), started once and read as a stream.

Each ``testdata/<case>/`` holds ``stdout.txt`` (lines of ``hl-smi -Q index,uuid,name,power.draw,
power.max -f csv,noheader``) and ``expected.json``: per line the index, uuid, watts (``null``: no
reading, with the reason), the limit, or the error it ``raises``; ``null`` for a blank line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from powerd.errors import ProbeUnavailable
from powerd.probes.gaudi import family
from powerd.probes.gaudi.parse import parse_line
from tests.probes.clistream import faketool
from tests.probes.clitool import assert_tool_missing, collect, install_fake, measure_phase

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p for p in TESTDATA.iterdir() if p.is_dir())
GAUDI3 = "gaudi3-hl-325l-8cards-driver1.22.1"


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_cases(case: Path) -> None:
    lines = (case / "stdout.txt").read_text().splitlines()
    want = json.loads((case / "expected.json").read_text())["lines"]
    assert len(lines) == len(want)
    for line, exp in zip(lines, want, strict=True):
        if exp is not None and "raises" in exp:
            with pytest.raises(ValueError, match=exp["raises"]):
                parse_line(line)
            continue
        row = parse_line(line)
        if exp is None:
            assert row is None
            continue
        assert row is not None
        assert (row.index, row.uuid, row.power_w, row.limit_w) == (
            exp["index"], exp["uuid"], exp["w"], exp["limit"]
        )  # fmt: skip
        assert row.power_error == exp.get("error")


def loop_rules(case: str, **extra: Any) -> list[dict[str, Any]]:
    text = (TESTDATA / case / "stdout.txt").read_text()
    doubled = "".join(
        line.replace(" W, ", "0 W, ", 1) + "\n" for line in text.splitlines()
    )  # the second snapshot: every draw × 10
    return [
        {"match": ["-l"], "loop": {"arg": "-l"}, "frames": [text, doubled], **extra},
        {"match": ["-Q"], "frames": [text]},
    ]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return install_fake(tmp_path, monkeypatch, "hl-smi", loop_rules(GAUDI3))


def test_streams_one_process_for_all_devices(fake: Path) -> None:
    assert family.available().ok
    probe = family.open("interval=0.05")
    try:
        chans = {c.id: c for c in probe.channels()}
        assert sorted(chans) == [f"gaudi:{i}" for i in range(8)]
        assert chans["gaudi:0"].measures == "gaudi-card:01P4-HL3090A0-18-U4V201-11-03-02"
        values, problems = collect(probe, lambda v, p: len(v.get("gaudi:7", [])) >= 4, ordered=True)
    finally:
        probe.close()
    assert problems == []
    assert values["gaudi:0"][:4] == [231.0, 2310.0, 231.0, 2310.0]  # draw, never the 850 W limit
    starts = faketool.starts(fake)
    q = "-Q index,uuid,name,power.draw,power.max -f csv,noheader"
    assert starts == [q, f"{q} -l 0.05"]  # one listing, then one stream


def test_a_dying_hl_smi_is_restarted_and_the_gap_reported(fake: Path) -> None:
    faketool.set_rules(fake, loop_rules(GAUDI3, die_after=2))
    probe = family.open("interval=0.05")
    try:
        _, problems = collect(probe, lambda v, p: any("restarted" in x for x in p), ordered=True)
        assert any("gaudi: exited with status 3; restarting in 0.5 s" in p for p in problems)
    finally:
        probe.close()


def test_na_and_garbage_lines_are_problems_not_zero(fake: Path) -> None:
    text = (TESTDATA / "gaudi3-power-draw-na" / "stdout.txt").read_text()
    junk = (TESTDATA / "garbage-and-truncated-lines" / "stdout.txt").read_text()
    faketool.set_rules(
        fake,
        [
            {"match": ["-l"], "loop": {"arg": "-l"}, "frames": [text + junk]},
            {"match": ["-Q"], "frames": [text]},
        ],
    )
    probe = family.open("interval=0.05")
    try:
        values, _ = collect(
            probe,
            lambda v, p: (
                any("gaudi:0: power.draw is N/A" in x for x in p)
                and any("unreadable line" in x for x in p)
                and len(v.get("gaudi:1", [])) >= 2
            ),
            ordered=True,
        )
    finally:
        probe.close()
    assert "gaudi:0" not in values
    assert set(values["gaudi:1"]) == {228.0}


def test_listing_failure_is_unavailable(fake: Path) -> None:
    faketool.set_rules(fake, [{"frames": ["hl-smi: driver not loaded\n"], "exit": 1}])
    with pytest.raises(ProbeUnavailable, match="exit 1"):
        family.open("")


def test_missing_tool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = ["/usr/bin/hl-smi", "/opt/habanalabs/bin/hl-smi"]
    assert_tool_missing(family, monkeypatch, tmp_path, real)


def test_measure_with_the_fake_hl_smi(fake: Path, tmp_path: Path) -> None:
    text = (TESTDATA / GAUDI3 / "stdout.txt").read_text()
    faketool.set_rules(
        fake, [{"match": ["-l"], "loop": {"arg": "-l"}, "frames": [text]}, {"frames": [text]}]
    )
    phase = measure_phase(tmp_path, "gaudi:interval=0.05")
    watts = {c: v["mean_power_w"] for c, v in phase["channels"].items()}
    assert watts == pytest.approx(
        {f"gaudi:{i}": w for i, w in enumerate([231, 228, 236, 229, 412, 405, 398, 401])}
    )
    assert phase["mean_power_w"] == pytest.approx(2540.0, rel=1e-3)
