"""rbln: the pure parser on captured-shape outputs, and the probe against a fake ``rbln-smi``.

Each ``testdata/<case>/`` holds ``stdout.json`` (what ``rbln-smi --json`` printed) and
``expected.json``: watts per card channel (``null``: no reading, with a problem), the channel's
``measures``, problem substrings, or the parse ``error``. A regression is a new folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from powerd.errors import ProbeUnavailable
from powerd.probes.rbln import CardReadings, card_channel, family
from powerd.probes.rbln.parse import card_power_w, group_cards, parse_status
from tests.probes.clistream import faketool
from tests.probes.clitool import Until, Values, assert_tool_missing, install_fake, measure_phase
from tests.probes.clitool import collect as collect_any

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p for p in TESTDATA.iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_cases(case: Path) -> None:
    raw = (case / "stdout.json").read_bytes()
    want = json.loads((case / "expected.json").read_text())
    if "error" in want:
        with pytest.raises(ValueError, match=want["error"]):
            parse_status(raw)
        return
    cards = group_cards(parse_status(raw))
    chans = {c.id: c for c in (card_channel(card, 1.0) for card in cards)}
    assert sorted(chans) == sorted(want["channels"])
    values, problems = CardReadings(cards)(raw)
    for cid, exp in want["channels"].items():
        assert chans[cid].measures == exp["measures"]
        assert chans[cid].source_class == "telemetry"
        if exp["w"] is None:
            assert cid not in values  # never 0 W
        else:
            assert values[cid] == pytest.approx(exp["w"], rel=1e-9)
    for p in want["problems"]:
        assert any(p in q for q in problems), (p, problems)
    if not want["problems"]:
        assert problems == []
    if "total_w" in want:
        assert sum(values.values()) == pytest.approx(want["total_w"])


def test_card_power_units() -> None:
    assert card_power_w("18109794uW") == (18.109794, None)
    assert card_power_w("250mW") == (0.25, None)
    assert card_power_w("43.9W") == (43.9, None)
    for bad in ("N/A", "", "12 kW", None, 3.5):
        w, why = card_power_w(bad)
        assert w is None and why


# --- the probe against a fake rbln-smi


def rules_for(case: str, **extra: Any) -> list[dict[str, Any]]:
    text = (TESTDATA / case / "stdout.json").read_text()
    return [{"match": ["--json"], "frames": [text], **extra}]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    rules = rules_for("atom-max-rbln-ca25-2cards-4dies-kmd3.0.0")
    return install_fake(tmp_path, monkeypatch, "rbln-smi", rules)


def collect(probe: Any, until: Until) -> tuple[Values, list[str]]:
    """Read until ``until`` holds, each ``read`` within 0.5 s (it never waits for the tool)."""
    return collect_any(probe, until, read_budget_s=0.5)


def test_polls_the_tool_and_counts_an_atom_max_card_once(fake: Path) -> None:
    assert family.available().ok
    probe = family.open("interval=0.1")
    try:
        assert [c.id for c in probe.channels()] == ["rbln:rbln0", "rbln:rbln4"]
        values, problems = collect(probe, lambda v, p: len(v.get("rbln:rbln4", [])) >= 3)
    finally:
        probe.close()
    assert problems == []
    assert set(values["rbln:rbln0"]) == {41.2}
    assert set(values["rbln:rbln4"]) == {42.85}
    assert all(s == "--json" for s in faketool.starts(fake))
    assert len(faketool.starts(fake)) >= 4  # one discovery run, then one per interval


def test_a_hanging_tool_is_a_reported_gap_not_a_hang(fake: Path) -> None:
    probe = family.open("interval=0.1,timeout=0.5")
    try:
        faketool.set_rules(
            fake, rules_for("atom-max-rbln-ca25-2cards-4dies-kmd3.0.0", hang_after=-1)
        )
        _, problems = collect(probe, lambda v, p: any("no answer within 0.5 s" in x for x in p))
        faketool.set_rules(fake, rules_for("atom-plus-rbln-ca22-8cards-kmd3.0.0-sdk2-npu-int"))
        values, problems = collect(
            probe,
            lambda v, p: (
                any("answering again" in x for x in p) and any("appeared after" in x for x in p)
            ),
        )
    finally:
        probe.close()
    # another host's cards (other serials) are not this probe's channels: reported, not mixed in
    assert any("card sid:0000000022440970 (rbln0) appeared after" in p for p in problems)
    assert set(values.get("rbln:rbln0", [])) <= {41.2}


def test_garbage_and_truncated_output_are_problems_not_zero(fake: Path) -> None:
    probe = family.open("interval=0.1")
    try:
        faketool.set_rules(fake, rules_for("truncated-json"))
        values, _ = collect(probe, lambda v, p: any("unreadable output" in x for x in p))
        faketool.set_rules(fake, rules_for("atom-max-rbln-ca25-reversed-card-power-na"))
        na, problems = collect(probe, lambda v, p: len(v.get("rbln:rbln0", [])) >= 2)
    finally:
        probe.close()
    assert 0.0 not in {w for ws in values.values() for w in ws}
    assert "rbln:rbln4" not in na  # all its dies N/A: no reading, never 0 W
    assert {p for p in problems if p.startswith("rbln:rbln4")} == {
        "rbln:rbln4: card_power is 'N/A'"
    }  # one problem per poll, not two


def test_unusable_output_at_open(fake: Path) -> None:
    faketool.set_rules(fake, rules_for("garbage-not-json"))
    with pytest.raises(ProbeUnavailable, match="not JSON"):
        family.open("")
    faketool.set_rules(fake, [{"match": ["--json"], "frames": ["boom\n"], "exit": 1}])
    with pytest.raises(ProbeUnavailable, match="exit 1"):
        family.open("")


def test_missing_tool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = [f"{d}/{t}" for d in ("/usr/bin", "/usr/local/bin") for t in ("rbln-smi", "rbln-stat")]
    assert_tool_missing(family, monkeypatch, tmp_path, real)


def test_older_rbln_stat_is_used_when_rbln_smi_is_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = rules_for("atom-rbln-ca12-2cards-sdk1.x-npu-string")
    exe = install_fake(tmp_path, monkeypatch, "rbln-stat", rules)
    probe = family.open("")
    probe.close()
    assert [c.id for c in probe.channels()] == ["rbln:rbln0", "rbln:rbln1"]
    assert faketool.starts(exe) == ["--json"]


def test_measure_with_the_fake_rbln_smi(fake: Path, tmp_path: Path) -> None:
    phase = measure_phase(tmp_path, "rbln:interval=0.1")
    chans = phase["channels"]
    assert set(chans) == {"rbln:rbln0", "rbln:rbln4"}
    assert chans["rbln:rbln0"]["mean_power_w"] == pytest.approx(41.2)
    assert chans["rbln:rbln4"]["mean_power_w"] == pytest.approx(42.85)
    assert phase["mean_power_w"] == pytest.approx(84.05, rel=1e-3)  # not 4 × per card
