"""ascend: the ``npu-smi info -t power`` parser on captured-shape outputs (a 310's rated power is
never a reading; GB2312 text is decoded), and the probe against a fake ``npu-smi``.

Each ``testdata/<case>/`` holds ``stdout.bin`` (the bytes ``npu-smi info -t power -i <id>``
printed) and ``expected.json``: the reading in W and its label, the rating, or the problem.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from powerd.errors import ProbeUnavailable
from powerd.probes.ascend import family
from powerd.probes.ascend.parse import parse_list, parse_power
from tests.probes.clistream import faketool
from tests.probes.clitool import assert_tool_missing, collect, install_fake, measure_phase

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p for p in TESTDATA.iterdir() if p.is_dir())
BOARD = "atlas800t-a2-910b3-npu-smi23-power-dissipation"
RATED = "atlas200-310-npu-smi21-rated-power-only"


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_cases(case: Path) -> None:
    info = parse_power((case / "stdout.bin").read_bytes())
    want = json.loads((case / "expected.json").read_text())
    assert info.reading_w == want["reading_w"]
    assert info.label == want["label"]
    assert info.rating_w == want["rating_w"]
    if want["problem"] is None:
        assert info.problem is None
    else:
        assert info.problem is not None and want["problem"] in info.problem


def listing(*ids: int) -> str:
    """``npu-smi info -l`` (reconstructed from the tool's ``\\t%-30s : %s`` format)."""
    out = f"\t{'Total Count':<30} : {len(ids)}\n"
    for i in ids:
        out += (
            f"\n\t{'NPU ID':<30} : {i}\n\t{'Product Name':<30} : IT21PMDB01\n"
            f"\t{'Serial Number':<30} : 033VNY10N300000{i}\n\t{'Chip Count':<30} : 1\n"
        )
    return out


def test_parse_list() -> None:
    assert parse_list(listing(0, 1, 5).encode()) == [(0, 1), (1, 1), (5, 1)]
    with pytest.raises(ValueError, match="no 'NPU ID'"):
        parse_list(b"Error: driver not loaded\n")


def power_rule(npu: int, case: str, **extra: Any) -> dict[str, Any]:
    raw = (TESTDATA / case / "stdout.bin").read_bytes()
    encoding = "gb2312" if b"\xb8" in raw else "utf-8"
    return {
        "match": ["power", "-i", str(npu)],
        "frames": [raw.decode(encoding)],
        "encoding": encoding,
        **extra,
    }


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    rules = [
        {"match": ["-l"], "frames": [listing(0, 1, 2)]},
        power_rule(0, BOARD),
        power_rule(1, "atlas300t-910-chip0-npu-smi22-realtime-power"),
        power_rule(2, RATED),
    ]
    return install_fake(tmp_path, monkeypatch, "npu-smi", rules)


def test_a_rated_power_is_never_a_channel(fake: Path) -> None:
    assert family.available().ok
    probe = family.open("interval=0.1")
    try:
        chans = {c.id: c for c in probe.channels()}
        assert sorted(chans) == ["ascend:0", "ascend:1"]  # not the 310 (ascend:2)
        assert chans["ascend:0"].measures == "ascend-board:0"
        assert chans["ascend:1"].measures == "ascend-chip:1"
        values, problems = collect(probe, lambda v, p: len(v.get("ascend:1", [])) >= 3)
    finally:
        probe.close()
    assert set(values["ascend:0"]) == {93.6}
    assert set(values["ascend:1"]) == {71.2}
    assert "ascend:2" not in values
    (note,) = problems
    assert note.startswith("ascend:2: only a rated power (8 W") and "external meter" in note
    assert sum(1 for s in faketool.starts(fake) if s == "info -t power -i 2") == 1  # at open only


def test_a_310_alone_makes_the_probe_unavailable(fake: Path) -> None:
    with pytest.raises(ProbeUnavailable, match=r"ascend:2: only a rated power .* no power sensor"):
        family.open("ids=2")


def test_na_gb2312_and_a_hang_are_problems(fake: Path) -> None:
    probe = family.open("ids=0,interval=0.1,timeout=0.5")
    try:
        faketool.set_rules(fake, [power_rule(0, "atlas800t-a2-910b3-npu-smi23-power-na")])
        collect(
            probe, lambda v, p: any("ascend:0: Power Dissipation(W) reads 'NA'" in x for x in p)
        )
        faketool.set_rules(fake, [power_rule(0, "zh-cn-locale-gb2312-message")])
        collect(probe, lambda v, p: any("该设备不支持查询此项信息" in x for x in p))
        faketool.set_rules(fake, [power_rule(0, BOARD, hang_after=-1)])
        values, _ = collect(probe, lambda v, p: any("no answer within 0.5 s" in x for x in p))
    finally:
        probe.close()
    assert set(values.get("ascend:0", [])) <= {93.6}  # never 0 W


def test_chip_option(fake: Path) -> None:
    faketool.set_rules(
        fake, [power_rule(1, "atlas300t-910-chip0-npu-smi22-realtime-power", match=["-c", "0"])]
    )
    probe = family.open("ids=1,chip=0")
    probe.close()
    (chan,) = probe.channels()
    assert (chan.id, chan.measures) == ("ascend:1:0", "ascend-chip:1:0")
    assert faketool.starts(fake)[-1] == "info -t power -i 1 -c 0"


def test_missing_tool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = ["/usr/local/bin/npu-smi", "/usr/local/sbin/npu-smi"]
    assert_tool_missing(family, monkeypatch, tmp_path, real)


def test_measure_with_the_fake_npu_smi(fake: Path, tmp_path: Path) -> None:
    phase = measure_phase(tmp_path, "ascend:interval=0.1")
    watts = {c: v["mean_power_w"] for c, v in phase["channels"].items()}
    assert watts == pytest.approx({"ascend:0": 93.6, "ascend:1": 71.2})  # no 8 W rating
