"""A claim's figure, interval and margin read like the results table: rounded where the interval
says (two significant digits of its half-width), in the terminal, the HTML and the reason."""

from __future__ import annotations

from typing import Any

from powerd.report.table import format_table
from powerd.verify.protocol import parse_claim
from powerd.verify.render import verification_html, verification_table
from powerd.verify.verdict import claim_verdict


def trial(i: int, e: float) -> dict[str, Any]:
    return {
        "phase": "trial",
        "trial": i,
        "energy_j": e,
        "uncertainty_j": 0.011,
        "duration_s": 10.501,
        "mean_power_w": e / 10.501,
        "count": 100,
        "unit": "inference",
        "j_per_unit": e / 100,
        "j_per_unit_uncertainty": 0.00011,
        "net_energy_j": None,
        "net_uncertainty_j": None,
        "flags": [],
    }


def test_claim_numbers_are_rounded_by_their_interval() -> None:
    trials = [trial(i, e) for i, e in enumerate((210.012, 210.016, 210.019, 210.025), 1)]
    c = claim_verdict(parse_claim("j_per_unit <= 0.35"), trials, 4, "all")
    # under "all" the trial shown is the one closest to the claim: trial 4
    assert c["verdict"] == "not supported" and c["figure_value"] == 2.10025
    text = verification_table({"claims": [c], "verdict": c["verdict"], "exit_code": 1})
    row = next(line.split() for line in text.splitlines() if line.startswith("j_per_unit"))
    # figure ± 0.00011: five decimals, as the results table prints this trial's J/unit
    assert row[3:7] == ["2.10025", "[2.10014,", "2.10036]", "1.75025"]
    table = format_table({"run": "v", "phases": trials[3:]})
    assert "2.10025/inference" in table and "0.00011" in table
    assert "[2.10014, 2.10036]" in c["reason"]  # the stored reason too, not "[2.1, 2.1]"
    html = verification_html({"claims": [c], "verdict": c["verdict"], "exit_code": 1})
    assert ">2.10025<" in html and ">[2.10014, 2.10036]<" in html


def test_one_sided_and_zero_width_intervals_keep_readable_numbers() -> None:
    c = {
        "claim": "energy_j >= 1",
        "figure_value": 5.00123,
        "lo": 4.99,
        "hi": None,
        "margin": 4.00123,
        "margin_u": 360.0,
        "verdict": "supported",
        "usable_trials": 1,
        "planned_trials": 1,
        "aggregate": "all",
    }
    row = verification_table({"claims": [c]}).splitlines()[-3].split()
    assert row[3:7] == ["5.001", "[4.990,", "inf]", "4.001"]  # half-width 0.011 (one-sided)
    c.update(lo=5.00123, hi=5.00123)  # no width: four significant digits
    row = verification_table({"claims": [c]}).splitlines()[-3].split()
    assert row[3:7] == ["5.001", "[5.001,", "5.001]", "4.001"]
