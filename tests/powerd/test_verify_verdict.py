"""Verdict rules of ``powerd verify`` (pure): intervals per figure, the inconclusive band, caps,
aggregation over trials, and one-line errors for bad protocol files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from powerd.errors import PowerdError
from powerd.verify.protocol import load_protocol, parse_claim
from powerd.verify.verdict import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    claim_verdict,
    figure_interval,
    overall,
)


def entry(
    e: float = 100.0,
    u: float = 2.0,
    t: float = 10.0,
    count: int | None = 50,
    trial: int = 1,
    flags: tuple[str, ...] = (),
    net: float | None = None,
    net_u: float | None = None,
) -> dict[str, Any]:
    return {
        "trial": trial,
        "energy_j": e,
        "uncertainty_j": u,
        "duration_s": t,
        "count": count,
        "net_energy_j": net,
        "net_uncertainty_j": net_u,
        "flags": list(flags),
        "unit": "inference",
    }


def verdict_of(
    text: str, *trials: dict[str, Any], n: int | None = None, aggregate: str = "all"
) -> dict[str, Any]:
    return claim_verdict(parse_claim(text), list(trials), n or len(trials), aggregate)


def test_each_figure_maps_the_energy_interval_exactly() -> None:
    p = entry()
    iv = figure_interval(p, "energy_j", "gross")
    assert (iv.value, iv.lo, iv.hi) == (100.0, 98.0, 102.0)
    iv = figure_interval(p, "mean_power_w", "gross")
    assert (iv.value, iv.lo, iv.hi) == pytest.approx((10.0, 9.8, 10.2))
    iv = figure_interval(p, "j_per_unit", "gross")
    assert (iv.value, iv.lo, iv.hi) == pytest.approx((2.0, 1.96, 2.04))
    iv = figure_interval(p, "units_per_j", "gross")
    assert (iv.value, iv.lo, iv.hi) == pytest.approx((0.5, 50 / 102, 50 / 98))
    iv = figure_interval(entry(net=60.0, net_u=3.0), "mean_power_w", "net")
    assert (iv.value, iv.lo, iv.hi) == pytest.approx((6.0, 5.7, 6.3))
    assert figure_interval(entry(), "energy_j", "net").reason.startswith("no idle")
    assert "count" in figure_interval(entry(count=None), "j_per_unit", "gross").reason
    iv = figure_interval(entry(e=1.0, u=2.0), "units_per_j", "gross")
    assert iv.hi == math.inf and iv.lo == pytest.approx(50 / 3)


@pytest.mark.parametrize("op", ["<=", ">="])
def test_inconclusive_band_is_exactly_the_interval(op: str) -> None:
    """Claims on a grid around the figure: inconclusive iff the claim is inside [E-U, E+U]."""
    for k in range(-40, 41):
        x = 100.0 + k / 8  # exact in binary; U = 2, the interval is [98, 102]
        v = verdict_of(f"energy_j {op} {x!r}", entry())
        # a closed interval: a claim at its far edge can still hold, at its near edge must
        if op == "<=":
            want = SUPPORTED if x >= 102.0 else NOT_SUPPORTED if x < 98.0 else INCONCLUSIVE
        else:
            want = SUPPORTED if x <= 98.0 else NOT_SUPPORTED if x > 102.0 else INCONCLUSIVE
        assert v["verdict"] == want, (op, x)
        if want == INCONCLUSIVE:
            assert abs(v["margin_u"]) <= 1.0
        else:
            assert abs(v["margin_u"]) >= 1.0
        assert v["margin"] == pytest.approx(100.0 - x)


def test_all_trials_rule_and_the_deciding_trial() -> None:
    a, b = entry(e=100.0, trial=1), entry(e=104.0, trial=2)
    assert verdict_of("energy_j <= 110", a, b)["verdict"] == SUPPORTED
    v = verdict_of("energy_j <= 101", a, b)  # trial 1 straddles, trial 2 is wholly above
    assert v["verdict"] == NOT_SUPPORTED and v["shown_trial"] == 2
    v = verdict_of("energy_j <= 103", a, b)  # 1 supports, 2 straddles
    assert v["verdict"] == INCONCLUSIVE and v["shown_trial"] == 2


def test_median_rule_uses_median_bounds() -> None:
    trials = [entry(e=e, trial=i) for i, e in enumerate([90.0, 100.0, 200.0, 101.0, 99.0], 1)]
    v = verdict_of("energy_j <= 103", *trials, aggregate="median")
    # one outlier trial (200 J) does not sink the median: median 100, bounds [98, 102]
    assert v["verdict"] == SUPPORTED and v["figure_value"] == 100.0
    assert (v["lo"], v["hi"]) == (98.0, 102.0)
    assert verdict_of("energy_j <= 103", *trials, aggregate="all")["verdict"] == NOT_SUPPORTED


def test_flags_cap_at_inconclusive_and_short_trials_are_not_used() -> None:
    v = verdict_of("energy_j <= 200", entry(flags=("not_stable",)))
    assert v["verdict"] == INCONCLUSIVE and "not_stable" in v["reason"]
    v = verdict_of("energy_j <= 50", entry(flags=("calibration_due",)))
    assert v["verdict"] == INCONCLUSIVE and "would be not supported" in v["reason"]
    v = verdict_of("energy_j <= 200", entry(trial=1), entry(trial=2, flags=("too_short",)))
    assert v["verdict"] == INCONCLUSIVE and v["usable_trials"] == 1
    assert "only 1 of 2" in v["reason"]
    v = verdict_of("energy_j <= 200", entry(flags=("too_short",)))
    assert v["verdict"] == INCONCLUSIVE and v["reason"].startswith("no usable trial")
    v = verdict_of("energy_j <= 200", entry(flags=("receive_time",)))
    assert v["verdict"] == SUPPORTED  # timing is inside U: not a cap
    assert "noted (not affecting the verdict): receive_time" in v["reason"]
    assert verdict_of("j_per_unit <= 9", entry(count=None))["verdict"] == INCONCLUSIVE


def test_overall_verdict() -> None:
    s, n, i = ({"verdict": x} for x in (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE))
    assert overall([s, s]) == SUPPORTED
    assert overall([s, i]) == INCONCLUSIVE
    assert overall([i, n, s]) == NOT_SUPPORTED


C = 'claims = ["energy_j <= 1"]\n'
BAD = {
    'claims = ["j_per_unit < 3"]': "claims[0]: expected a claim such as",
    'claims = ["watts <= 3"]': "claims[0]: expected a claim such as",
    "claims = []": "claims: expected",
    'unit = "x"': "claims: required",
    C + "foo = 1": "foo: unknown key; allowed: claims",
    C + "[trials]\nn = 0": "[trials] n: expected an integer of at least 1",
    C + '[trials]\nn = "3"': '[trials] n: expected an integer of at least 1, got "3"',
    C + '[trials]\naggregate = "mean"': "[trials] aggregate: expected",
    C + 'preset = "fast"': "preset: expected",
    C + 'preset = "tiny"\n[trials]\nmin_duration_s = 1': (
        "[trials] min_duration_s: preset tiny needs at least 10, got 1"
    ),
    C + 'preset = "tiny"\n[trials]\nn = 3': "[trials] n: preset tiny needs at least 5",
    C + 'preset = "mlperf"\nmax_energy_uncertainty_pct = 5': (
        "max_energy_uncertainty_pct: preset mlperf needs at most 1"
    ),
    'claims = ["energy_j <= 1 net"]': "is net of idle: set [idle] seconds > 0 or power_w",
    C + "[warmup]\nuntil_stable = true\nmax_s = 1": (
        "[warmup] max_s: 1 s is shorter than [stability] window_s"
    ),
    "claims = [": "is not valid TOML",
}


@pytest.mark.parametrize("text", list(BAD))
def test_bad_protocol_is_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text + "\n")
    with pytest.raises(PowerdError) as err:
        load_protocol(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("protocol ")
    assert BAD[text] in msg


def test_presets_fill_in_their_anchors(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('preset = "tiny"\nclaims = ["mean_power_w <= 25 net"]\n[idle]\nseconds = 1\n')
    p = load_protocol(path)
    assert (p.file.trials.n, p.file.trials.min_duration_s, p.file.trials.aggregate) == (
        5,
        10.0,
        "median",
    )
    assert p.claims[0].basis == "net" and p.claims[0].value == 25.0
    path.write_text('preset = "mlperf"\nclaims = ["units_per_j >= 3"]\n')
    p = load_protocol(path)
    assert p.file.trials.min_duration_s == 60.0 and p.file.max_energy_uncertainty_pct == 1.0
    assert p.file.trials.aggregate == "all"
