"""hyperaccel: the ``hyperdex-smi`` table parser on captured-shape outputs, and the probe against
a fake ``hyperdex-smi`` (no loop mode: polled on a thread).

Each ``testdata/<case>/`` holds ``stdout.txt`` and ``expected.json``: watts per device channel
(``null``: no reading, with a problem), ``measures``, problem substrings, or the parse ``error``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from powerd.errors import ProbeUnavailable
from powerd.probes.hyperaccel import family, lpu_channel, readings
from powerd.probes.hyperaccel.parse import parse_table
from tests.probes.clistream import faketool
from tests.probes.clitool import assert_tool_missing, collect, install_fake, measure_phase

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p for p in TESTDATA.iterdir() if p.is_dir())
FOUR = "u55c-4lpu-hyperdex1.5.2-xrt2022.2"


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_cases(case: Path) -> None:
    raw = (case / "stdout.txt").read_bytes()
    want = json.loads((case / "expected.json").read_text())
    if "error" in want:
        with pytest.raises(ValueError, match=want["error"]):
            parse_table(raw.decode())
        return
    chans = {c.id: c for c in (lpu_channel(x, 1.0) for x in parse_table(raw.decode()))}
    assert sorted(chans) == sorted(want["channels"])
    values, problems = readings(raw)
    for cid, exp in want["channels"].items():
        assert chans[cid].measures == exp["measures"]
        if exp["w"] is None:
            assert cid not in values  # never 0 W
        else:
            assert values[cid] == exp["w"]
    assert problems == want["problems"]
    if "total_w" in want:
        assert sum(values.values()) == want["total_w"]  # the 225 W caps are never counted


def rules(case: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"frames": [(TESTDATA / case / "stdout.txt").read_text()], **extra}]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return install_fake(tmp_path, monkeypatch, "hyperdex-smi", rules(FOUR))


def test_polls_every_device(fake: Path) -> None:
    assert family.available().ok
    probe = family.open("interval=0.1")
    try:
        assert [c.id for c in probe.channels()] == [f"hyperaccel:{i}" for i in range(4)]
        values, problems = collect(probe, lambda v, p: len(v.get("hyperaccel:3", [])) >= 3)
    finally:
        probe.close()
    assert problems == []
    assert set(values["hyperaccel:0"]) == {37.0}
    assert len(faketool.starts(fake)) >= 4


def test_na_and_a_hang_are_problems(fake: Path) -> None:
    probe = family.open("interval=0.1,timeout=0.5")
    try:
        faketool.set_rules(fake, rules("u55c-2lpu-hyperdex1.5.2-pwr-na"))
        collect(probe, lambda v, p: any("hyperaccel:1: Pwr:Usage reads 'N/A'" in x for x in p))
        faketool.set_rules(fake, rules(FOUR, hang_after=-1))
        collect(probe, lambda v, p: any("no answer within 0.5 s" in x for x in p))
    finally:
        probe.close()


def test_no_devices_is_unavailable(fake: Path) -> None:
    faketool.set_rules(fake, rules("no-devices-xrt-not-loaded"))
    with pytest.raises(ProbeUnavailable, match="no device rows"):
        family.open("")


def test_missing_tool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert_tool_missing(family, monkeypatch, tmp_path, ["/opt/hyperdex/hrt/bin/hyperdex-smi"])


def test_measure_with_the_fake_hyperdex_smi(fake: Path, tmp_path: Path) -> None:
    phase = measure_phase(tmp_path, "hyperaccel:interval=0.1")
    watts = {c: v["mean_power_w"] for c, v in phase["channels"].items()}
    assert watts == pytest.approx({"hyperaccel:0": 37, "hyperaccel:1": 17,
                                   "hyperaccel:2": 16, "hyperaccel:3": 18})  # fmt: skip
    assert phase["mean_power_w"] == pytest.approx(88.0, rel=1e-3)
