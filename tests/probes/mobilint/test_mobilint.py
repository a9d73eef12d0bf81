"""mobilint: the pure parsers and card rules on captured-shape outputs, and the probe against a
fake ``mobilint-cli`` in its loop mode (one stream per chip) and in poll mode.

Each ``testdata/<case>/`` holds ``stdout.txt`` (``mobilint-cli status -q``, or the legacy
``mobilint-cli status`` table) and ``expected.json``: per channel the watts (``null``: no reading,
with a problem), source class and ``measures``; the card total (the sum of the ``telemetry``
channels, what powerd counts); or the parse ``error``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from powerd.errors import ProbeUnavailable
from powerd.probes.mobilint import channel_id, family, rail_channel, values_of
from powerd.probes.mobilint.parse import parse_status, rail_roles
from tests.probes.clistream import faketool
from tests.probes.clitool import assert_tool_missing, collect, install_fake, measure_phase

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p for p in TESTDATA.iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_cases(case: Path) -> None:
    text = (case / "stdout.txt").read_text()
    want = json.loads((case / "expected.json").read_text())
    if "error" in want:
        with pytest.raises(ValueError, match=want["error"]):
            parse_status(text)
        return
    roles = rail_roles(parse_status(text))
    chans = {c.id: c for c in (rail_channel(r, 0.5) for r in roles)}
    assert sorted(chans) == sorted(want["channels"])
    plan = {(r.chip, r.rail): channel_id(r) for r in roles}
    values, problems = values_of(parse_status(text), plan)
    for cid, exp in want["channels"].items():
        assert chans[cid].source_class == exp["source_class"], cid
        assert chans[cid].measures == exp["measures"], cid
        if exp["w"] is None:
            assert cid not in values  # never 0 W
        else:
            assert values[cid] == pytest.approx(exp["w"])
    assert sorted(problems) == sorted(want["problems"])
    measures = [c.measures for c in chans.values()]
    assert len(measures) == len(set(measures))  # no two views of one thing
    if "card_total_w" in want:
        tele = [values[c] for c, ch in chans.items() if ch.source_class == "telemetry"]
        assert sum(tele) == pytest.approx(want["card_total_w"])


# --- the probe against a fake mobilint-cli

HDR = (
    "Timestamp                     : 2026-05-12 09:41:{s:02d}\nConnected NPUs                : 1\n"
)


def chip_record(case: str, chip: int, second: int, scale: float = 1.0) -> str:
    """One loop output for ``chip``: the case's block for that chip, values times ``scale``."""
    text = (TESTDATA / case / "stdout.txt").read_text()
    block = text.split(f"/dev/aries{chip}\n", 1)[1].split("\n/dev/", 1)[0]
    if scale != 1.0:
        lines = []
        for line in block.splitlines():
            if line.rstrip().endswith(" W"):
                k, v = line.rsplit(":", 1)
                lines.append(f"{k}: {float(v.split()[0]) * scale:.2f} W")
            else:
                lines.append(line)
        block = "\n".join(lines) + "\n"
    return HDR.format(s=second) + f"/dev/aries{chip}\n" + block.rstrip("\n") + "\n"


def loop_rules(case: str, chips: int, **extra: Any) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {
            "match": ["-i", str(i), "-m"],
            "loop": {"arg": "-m", "scale": 0.001},
            "frames": [chip_record(case, i, 1), chip_record(case, i, 2, 2.0)],
            **extra,
        }
        for i in range(chips)
    ]
    once = (TESTDATA / case / "stdout.txt").read_text()
    return [*rules, {"match": ["status", "-q"], "frames": [once]}]


MLA400 = "mla400-4chips-utility1.12.0-status-q"


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return install_fake(tmp_path, monkeypatch, "mobilint-cli", loop_rules(MLA400, 4))


def test_loop_mode_runs_once_per_chip_and_reads_the_card_total(fake: Path) -> None:
    assert family.available().ok
    probe = family.open("interval=0.05")
    try:
        chans = {c.id: c for c in probe.channels()}
        assert chans["mobilint:aries0"].source_class == "telemetry"
        assert chans["mobilint:aries0:GOLDFINGER"].source_class == "estimate"
        assert "mobilint:aries1" not in chans  # the card total is read on its first chip only
        values, problems = collect(
            probe,
            lambda v, p: all(len(v.get(f"mobilint:aries{i}:NPU", [])) >= 3 for i in range(4)),
            ordered=True,
        )
    finally:
        probe.close()
    assert problems == []
    assert values["mobilint:aries0"][:3] == pytest.approx([52.40, 104.80, 52.40])
    assert values["mobilint:aries3:NPU"][:2] == pytest.approx([4.52, 9.04])
    starts = faketool.starts(fake)
    assert starts[0] == "status -q"
    assert sorted(starts[1:]) == [f"status -q -i {i} -m 50" for i in range(4)]  # once each


def test_a_dying_loop_is_restarted_with_the_gap_reported(fake: Path) -> None:
    faketool.set_rules(fake, loop_rules(MLA400, 1, die_after=3))
    probe = family.open("interval=0.05")
    try:
        values, problems = collect(
            probe,
            lambda v, p: (
                any("restarted" in x for x in p) and len(v.get("mobilint:aries0", [])) >= 5
            ),
            ordered=True,
        )
    finally:
        probe.close()
    assert any("mobilint:aries0: exited with status 3; restarting in 0.5 s" in p for p in problems)
    assert 0.0 not in values["mobilint:aries0"]


def test_poll_mode(fake: Path) -> None:
    probe = family.open("interval=0.05,mode=poll")
    try:
        values, problems = collect(
            probe, lambda v, p: len(v.get("mobilint:aries0", [])) >= 3, ordered=True
        )
    finally:
        probe.close()
    assert problems == []
    assert set(values["mobilint:aries0"]) == {52.40}
    assert all(s == "status -q" for s in faketool.starts(fake))


def test_legacy_table_when_query_is_not_understood(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = (TESTDATA / "mla100-legacy-table-utility1.12.0" / "stdout.txt").read_text()
    rules: list[dict[str, Any]] = [
        {"match": ["-q"], "frames": ["mobilint-cli: unknown option -q\n"], "exit": 2},
        {"match": ["-i", "0", "-m"], "loop": {"arg": "-m", "scale": 0.001}, "frames": [table]},
        {"match": ["status"], "frames": [table]},
    ]
    exe = install_fake(tmp_path, monkeypatch, "mobilint-cli", rules)
    probe = family.open("interval=0.05")
    try:
        values, _ = collect(
            probe, lambda v, p: len(v.get("mobilint:aries0", [])) >= 2, ordered=True
        )
    finally:
        probe.close()
    assert set(values["mobilint:aries0"]) == {7.92}
    assert faketool.starts(exe)[:2] == ["status -q", "status"]
    assert faketool.starts(exe)[2] == "status -i 0 -m 50"


def test_no_rails_is_unavailable(fake: Path) -> None:
    faketool.set_rules(fake, [{"match": ["status"], "frames": ["Connected NPUs : 0\n"]}])
    with pytest.raises(ProbeUnavailable, match="no NPU power rails"):
        family.open("")


def test_missing_tool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert_tool_missing(family, monkeypatch, tmp_path, ["/usr/bin/mobilint-cli"])


def test_measure_with_the_fake_mobilint_cli(fake: Path, tmp_path: Path) -> None:
    faketool.set_rules(
        fake,
        [
            {
                "match": ["-i", str(i), "-m"],
                "loop": {"arg": "-m", "scale": 0.001},
                "frames": [chip_record(MLA400, i, 1)],
            }
            for i in range(4)
        ]
        + [{"match": ["status", "-q"], "frames": [(TESTDATA / MLA400 / "stdout.txt").read_text()]}],
    )
    phase = measure_phase(tmp_path, "mobilint:interval=0.05")
    chans = phase["channels"]
    assert chans["mobilint:aries0"]["mean_power_w"] == pytest.approx(52.40)
    assert chans["mobilint:aries0"]["primary"] is True
    assert chans["mobilint:aries0:GOLDFINGER"]["primary"] is False  # a part of the total
    assert chans["mobilint:aries2:NPU"]["primary"] is False
    assert phase["mean_power_w"] == pytest.approx(52.40, rel=1e-3)
