"""One number per figure: derived figures carry their uncertainty, every output rounds a figure
where its uncertainty says, and the progress line integrates the way the final table does."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from powerd.block import F64, I64, Block
from powerd.channel import Accuracy, Channel
from powerd.commands.measure import Progress
from powerd.integrate import Window, integrate
from powerd.phases import Phase, Timing
from powerd.report.html import fmt_pm, render_html
from powerd.report.numbers import decimals_for, pm_text, unc_text, value_text
from powerd.report.table import format_table
from powerd.results import run_result
from powerd.timeline import Timeline

T0 = 1_800_000_000_000_000_000
MS = 1_000_000
TM = Timing("marker", 0, 0)


def phase(name: str, a_ms: int, b_ms: int, count: int | None = 100) -> Phase:
    return Phase("r", name, 0, T0 + a_ms * MS, T0 + b_ms * MS, count, "inference", {}, TM, TM)


def meter(acc_frac: float = 0.01) -> dict[str, Channel]:
    return {"m:1": Channel("m:1", "power", "meter", 1e-3, Accuracy(reading_frac=acc_frac))}


def idle_then_busy(c: str, a: int, b: int) -> tuple[I64, F64]:
    t = T0 + np.arange(20_001, dtype=np.int64) * MS
    return t, np.where(t < T0 + 2000 * MS, 3.0, 10.0)


def test_net_and_per_unit_uncertainty_follow_the_stated_model() -> None:
    phases = [phase("idle", 0, 1500, None), phase("run", 3000, 5000)]
    res = run_result("r", phases, meter(), idle_then_busy)
    idle, run = res["phases"]
    assert idle["net_uncertainty_j"] is None and idle["j_per_unit_uncertainty"] is None
    idle_unc_w = idle["uncertainty_j"] / idle["duration_s"]
    assert idle_unc_w > 0
    expected = math.hypot(run["uncertainty_j"], idle_unc_w * run["duration_s"])
    assert run["net_uncertainty_j"] == pytest.approx(expected, rel=1e-12)
    assert run["net_uncertainty_j"] > run["uncertainty_j"]
    assert run["j_per_unit_uncertainty"] == pytest.approx(run["uncertainty_j"] / 100, rel=1e-12)
    # a configured idle power is taken as exact: the net figure keeps the gross uncertainty
    cfg = run_result("r", phases, meter(), idle_then_busy, idle_power_w=1.0)["phases"][1]
    assert cfg["net_uncertainty_j"] == pytest.approx(cfg["uncertainty_j"], rel=1e-12)
    # no count, no per-unit figure and no uncertainty for it
    bare = run_result("r", [phase("run", 3000, 5000, None)], meter(), idle_then_busy)
    assert bare["phases"][0]["j_per_unit_uncertainty"] is None


def test_values_are_rounded_to_two_significant_digits_of_their_uncertainty() -> None:
    assert pm_text(10.00857, 0.003412) == "10.0086 ± 0.0034"
    assert pm_text(1234.5678, 1.2) == "1234.6 ± 1.2"
    assert pm_text(18.0012, 0.0996) == "18.00 ± 0.10", "rounding up carries into a new digit"
    assert pm_text(0.1000543, 2.8e-05) == "0.100054 ± 0.000028"
    assert pm_text(None, 1.0) == "-" and value_text(5.0, None) == "5"
    assert decimals_for(0.0) is None and unc_text(None) == "-"
    assert fmt_pm(12345.678, 12.3) == "12,346 ± 12"


def test_table_and_html_show_each_figure_with_its_uncertainty() -> None:
    phases = [phase("idle", 0, 1500, None), phase("run", 3000, 5000)]
    res = run_result("r", phases, meter(), idle_then_busy)
    run = res["phases"][1]
    table = format_table(res)
    head = table.splitlines()[1].split()
    assert "±U95_j" in head and "±U95_net_j" in head and "±U95_j/unit" in head
    assert not any("%" in h for h in head), "an uncertainty header must not read as a percent"
    row = dict(zip(head, table.splitlines()[3].split(), strict=True))
    assert row["energy_j"] == value_text(run["energy_j"], run["uncertainty_j"])
    assert row["±U95_j"] == unc_text(run["uncertainty_j"])
    assert row["net_j"] == value_text(run["net_energy_j"], run["net_uncertainty_j"])
    assert row["±U95_net_j"] == unc_text(run["net_uncertainty_j"])
    per, per_unc = run["j_per_unit"], run["j_per_unit_uncertainty"]
    assert row["j_per_unit"] == f"{value_text(per, per_unc)}/inference"
    page = render_html(res, {})
    assert fmt_pm(run["net_energy_j"], run["net_uncertainty_j"]) in page
    assert fmt_pm(per, per_unc) in page
    mean_unc = run["uncertainty_j"] / run["duration_s"]
    assert f'<td class="n">{value_text(run["mean_power_w"], mean_unc, ",")}</td>' in page
    assert row["mean_w"] == value_text(run["mean_power_w"], mean_unc)
    assert "contract 2 (result v1)" in page and "result format" not in page


def test_progress_uses_the_tables_method(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slice by slice, the progress figure equals one integration over the same span."""
    ch = Channel("m:1", "power", "meter", 1e-3)
    timeline = Timeline()
    timeline.add_channel(ch)
    t = T0 + np.arange(3001, dtype=np.int64) * MS
    p = 5.0 + 3.0 * np.sin(np.arange(t.size) / 37.0)
    begin = T0 + 100 * MS + 123
    prog = Progress(timeline, "r", quiet=False)
    written: list[str] = []
    monkeypatch.setattr(sys.stderr, "write", written.append)
    prog.next_s = 0.0
    prog.tick("run", begin, begin)
    assert "(running)" in written[-1] and " - J" in written[-1], "no 0 before any data"
    ticks = 0
    for lo, hi in ((0, 700), (700, 1400), (1400, 2100), (2100, 3001)):
        timeline.append(Block.of("m:1", t[lo:hi], p[lo:hi]))
        prog.next_s = 0.0  # due now
        prog.tick("run", begin, int(t[hi - 1]) + 5 * MS)
        ticks += 1
        assert "(running)" in written[-1]
    assert ticks == 4 and prog.upto_ns == t[-1], "each tick integrated up to the data it had"
    energy_j, mean_w = prog.figures()
    whole = integrate(t, p, Window(begin, int(t[-1])), ch)
    assert energy_j == pytest.approx(whole.energy_j, rel=1e-9)
    assert mean_w == pytest.approx(whole.mean_power_w, rel=1e-9)
    prog.tick("run", begin, int(t[-1]) + 5 * MS, force=True)
    assert "ended after" in written[-1] and " J" not in written[-1], "no second final figure"


def test_progress_is_not_held_back_by_a_silent_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    timeline = Timeline()
    for cid in ("m:live", "m:dead"):
        timeline.add_channel(Channel(cid, "power", "meter", 1e-3))
    t = T0 + np.arange(5001, dtype=np.int64) * MS
    timeline.append(Block.of("m:live", t, np.full(t.size, 4.0)))
    timeline.append(Block.of("m:dead", t[:10], np.full(10, 1.0)))  # then nothing for 5 s
    prog = Progress(timeline, "r", quiet=False)
    monkeypatch.setattr(sys.stderr, "write", lambda _text: None)
    prog.next_s = 0.0
    prog.tick("run", T0, int(t[-1]))
    assert prog.upto_ns == t[-1]
    energy_j, _ = prog.figures()
    w = Window(T0, int(t[-1]))
    chans = timeline.channels.items()
    whole = [integrate(*timeline.window(c, T0, w.t_end_ns), w, ch) for c, ch in chans]
    assert energy_j == pytest.approx(sum(f.energy_j or 0.0 for f in whole), rel=1e-9)
