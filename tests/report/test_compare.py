"""``powerd compare``: constructed runs from the sim source, side by side; the significance calls
on known pairs; missing uncertainty is "unknown"; the CLI's table, JSON and CSV; the HTML page
in headless Chromium with its charts and no console message."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from powerd.agent.wire import parse_marker
from powerd.cli import main
from powerd.compare import (
    NOT_SIGNIFICANT,
    SIGNIFICANT,
    UNKNOWN,
    CompareError,
    CompareNotFound,
    Selection,
    build_comparison,
    parse_selection,
)
from powerd.phases import stamp
from powerd.probes.registry import open_probe
from powerd.report.compare_html import render_compare_html
from powerd.report.numbers import pm_text
from powerd.runs import compute_run
from powerd.store import Store
from tests.report.chromium import chromium

T0 = 1_800_000_000 * 10**9
S = 10**9
RATE = "rate=100,acc=0.01"


def add_sim(store: Store, spec: str, t0_s: float, dur_s: float, device: str | None = None) -> str:
    """The sim probe's exact grid samples over [t0, t0 + dur) into the store (its channel
    assigned to ``device``); the channel's id."""
    probe = open_probe(f"sim:{spec},{RATE}")
    ch = probe.channels()[0]
    store.put_channel(ch if device is None else replace(ch, device=device))
    step = probe.spec.step_ns
    k0 = (T0 + int(t0_s * S)) // step
    k1 = (T0 + int((t0_s + dur_s) * S)) // step
    store.append(probe.samples(np.arange(k0, k1, dtype=np.int64)))
    store.flush()
    return ch.id


def mark_phase(
    store: Store,
    run: str,
    phase: str,
    t0_s: float,
    dur_s: float,
    begin: dict[str, Any] | None = None,
    **end: Any,
) -> None:
    for i, (event, t_s) in enumerate((("begin", t0_s), ("end", t0_s + dur_s))):
        obj = {"v": 1, "run": run, "phase": phase, "event": event, "t_ns": T0 + int(t_s * S)}
        obj |= {"seq": i} | (end if event == "end" else begin or {})
        store.put_marker(stamp(f"h-{run}-{phase}-{t0_s}", parse_marker(obj), T0 + int(t_s * S)))


def sim_run(
    store: Store, run: str, watts: float, at_s: float, count: int, dur_s: float = 10.0
) -> dict[str, Any]:
    """A run with one phase ``run`` on a constant source (channel ``sim:meter``), stored result."""
    add_sim(store, f"constant,w={watts},id=meter", at_s - 1, dur_s + 2)
    mark_phase(store, run, "run", at_s, dur_s, count=count, unit="token")
    result = compute_run(store, run)
    store.put_result(result, T0)
    return result


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store(tmp_path / "powerd.db") as s:
        yield s


def fig(doc: dict[str, Any], pair: int, key: str) -> dict[str, Any]:
    f: dict[str, Any] = doc["pairs"][pair]["figures"][key]
    return f


def test_20_w_against_25_w_is_significant_and_the_figures_are_the_truth(store: Store) -> None:
    a = sim_run(store, "gpu", 20.0, 0, 1000)
    b = sim_run(store, "npu", 25.0, 20, 1000)
    doc = build_comparison([(Selection("gpu", None), a), (Selection("npu", None), b)])
    ia, ib = doc["items"]
    assert (ia["label"], ib["label"]) == ("gpu:run", "npu:run")
    # truth: 20 W × 10 s / 1000 tokens = 0.2 J/token; 25 W: 0.25 J/token; 100 tokens/s
    for item, watts in ((ia, 20.0), (ib, 25.0)):
        f = item["figures"]
        jpu, u = f["j_per_unit"]["value"], f["j_per_unit"]["u95"]
        assert abs(jpu - watts * 10 / 1000) <= u and 0 < u < 0.01 * jpu * 1.5
        assert f["units_per_j"]["value"] == pytest.approx(1000 / (watts * 10), rel=1e-3)
        assert f["units_per_j"]["u95"] == pytest.approx(f["units_per_j"]["value"] * u / jpu)
        assert abs(f["mean_power_w"]["value"] - watts) <= f["mean_power_w"]["u95"]
        assert f["units_per_s"]["value"] == pytest.approx(100.0)
        assert f["units_per_s"]["u95"] == 0.0  # marker times exact here
        assert f["idle_power_w"]["value"] is None  # no idle phase, no --idle-power
        assert f["net_j_per_unit"]["value"] is None
    pair = doc["pairs"][0]
    assert pair["shared_channels"] == ["sim:meter"]  # same meter: calls are conservative
    for key in ("j_per_unit", "units_per_j", "mean_power_w", "energy_j"):
        assert fig(doc, 0, key)["call"] == SIGNIFICANT, key
    jpu = fig(doc, 0, "j_per_unit")
    assert jpu["diff"] == pytest.approx(0.05, rel=1e-3) and jpu["ratio"] == pytest.approx(1.25)
    assert jpu["u95_diff"] == pytest.approx(
        math.hypot(ia["figures"]["j_per_unit"]["u95"], ib["figures"]["j_per_unit"]["u95"])
    )
    assert fig(doc, 0, "units_per_s")["call"] == NOT_SIGNIFICANT  # same throughput
    assert fig(doc, 0, "idle_power_w")["call"] == UNKNOWN
    assert fig(doc, 0, "idle_power_w")["reason"] == "missing value"


def test_nearly_equal_runs_within_their_uncertainty_are_not_significant(store: Store) -> None:
    a = sim_run(store, "a", 20.0, 0, 1000)
    b = sim_run(store, "b", 20.1, 20, 1000)  # 0.5 % apart, each ±1 %
    doc = build_comparison([(Selection("a", None), a), (Selection("b", None), b)])
    for key in ("j_per_unit", "units_per_j", "mean_power_w", "energy_j"):
        f = fig(doc, 0, key)
        assert f["call"] == NOT_SIGNIFICANT, key
        assert 0 < abs(f["diff"]) < f["u95_diff"]


def test_idle_and_net_figures_per_phase_and_per_device(store: Store) -> None:
    # edge-01 draws 10 W idle then 30 W busy; edge-02 4 W then 12 W; one run, both devices named
    for dev, busy, idle in (("edge-01", 30.0, 10.0), ("edge-02", 12.0, 4.0)):
        add_sim(store, f"constant,w={idle},id={dev}", -1, 7, device=dev)
        add_sim(store, f"constant,w={busy},id={dev}", 6, 12, device=dev)
    devices = ["edge-01", "edge-02"]
    mark_phase(store, "r", "idle", 0, 5, {"device": devices})
    mark_phase(store, "r", "run", 7, 10, {"device": devices}, count=500, unit="query")
    result = compute_run(store, "r")
    run = next(p for p in result["phases"] if p["phase"] == "run")
    assert run["idle_power_w"] == pytest.approx(14.0, rel=1e-3)
    whole = build_comparison([(Selection("r", "idle"), result), (Selection("r", "run"), result)])
    item = whole["items"][1]["figures"]
    assert item["idle_power_w"]["value"] == pytest.approx(14.0, rel=1e-3)
    assert item["idle_power_w"]["u95"] > 0
    assert abs(item["net_energy_j"]["value"] - 280.0) <= item["net_energy_j"]["u95"]
    assert abs(item["net_j_per_unit"]["value"] - 280.0 / 500) <= item["net_j_per_unit"]["u95"]

    doc = build_comparison([(Selection("r", "run"), result)], by="device")
    e1, e2 = doc["items"]
    assert (e1["label"], e2["label"]) == ("r:run@edge-01", "r:run@edge-02")
    for item, busy, idle in ((e1, 30.0, 10.0), (e2, 12.0, 4.0)):
        f = item["figures"]
        assert abs(f["mean_power_w"]["value"] - busy) <= f["mean_power_w"]["u95"]
        assert abs(f["idle_power_w"]["value"] - idle) <= f["idle_power_w"]["u95"]
        net = (busy - idle) * 10
        assert abs(f["net_energy_j"]["value"] - net) <= f["net_energy_j"]["u95"]
        assert f["j_per_unit"]["value"] == pytest.approx(busy * 10 / 500, rel=1e-3)
    assert doc["pairs"][0]["shared_channels"] == []
    for key in ("j_per_unit", "mean_power_w", "idle_power_w", "net_j_per_unit"):
        assert fig(doc, 0, key)["call"] == SIGNIFICANT, key
    assert fig(doc, 0, "units_per_s")["call"] == NOT_SIGNIFICANT


def test_missing_uncertainty_or_different_units_is_unknown(store: Store) -> None:
    a = sim_run(store, "a", 20.0, 0, 1000)
    b = sim_run(store, "b", 25.0, 20, 1000)
    old = json.loads(json.dumps(b))  # a result whose energy has no stated uncertainty
    del old["phases"][0]["j_per_unit_uncertainty"]
    old["phases"][0]["uncertainty_j"] = None
    doc = build_comparison([(Selection("a", None), a), (Selection("b", None), old)])
    for key in ("j_per_unit", "units_per_j", "mean_power_w", "energy_j"):
        f = fig(doc, 0, key)
        assert (f["call"], f["reason"]) == (UNKNOWN, "missing uncertainty"), key
        assert f["diff"] is not None and f["u95_diff"] is None
    queries = json.loads(json.dumps(b))
    queries["phases"][0]["unit"] = "query"
    doc = build_comparison([(Selection("a", None), a), (Selection("b", None), queries)])
    assert fig(doc, 0, "j_per_unit")["call"] == UNKNOWN
    assert fig(doc, 0, "j_per_unit")["reason"] == "different units (token vs query)"
    assert fig(doc, 0, "mean_power_w")["call"] == SIGNIFICANT  # W is W


def test_the_rule_at_its_edge() -> None:
    """|b − a| equal to √(Ua² + Ub²) is not significant; just beyond it is."""

    def result(e: float, u: float) -> dict[str, Any]:
        return {
            "phases": [
                {
                    "phase": "run",
                    "trial": 0,
                    "duration_s": 1.0,
                    "count": 1,
                    "unit": "token",
                    "energy_j": e,
                    "uncertainty_j": u,
                    "j_per_unit": e,
                    "j_per_unit_uncertainty": u,
                    "flags": [],
                    "channels": {},
                }
            ]
        }

    for b, call in ((15.0, NOT_SIGNIFICANT), (15.0 + 1e-9, SIGNIFICANT), (5.0, NOT_SIGNIFICANT)):
        doc = build_comparison(
            [(Selection("x", None), result(10.0, 3.0)), (Selection("y", None), result(b, 4.0))]
        )
        assert fig(doc, 0, "j_per_unit")["call"] == call, b


def test_selections_and_errors(store: Store) -> None:
    sim_run(store, "a:1", 20.0, 0, 100)  # a run id with a colon
    assert parse_selection("a:1", lambda r: r == "a:1") == Selection("a:1", None)
    assert parse_selection("a:1:run", lambda r: r == "a:1") == Selection("a:1", "run")
    assert parse_selection("x:decode", lambda r: False) == Selection("x", "decode")
    with pytest.raises(CompareError):
        parse_selection(":", lambda r: False)
    result = store.result("a:1")
    assert result is not None
    with pytest.raises(CompareNotFound, match="its phases: run"):
        build_comparison([(Selection("a:1", "nope"), result), (Selection("a:1", None), result)])
    with pytest.raises(CompareError, match="at least two"):
        build_comparison([(Selection("a:1", None), result)])


def test_cli_prints_table_json_csv_and_writes_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Store(tmp_path / "state" / "powerd.db") as store:
        sim_run(store, "gpu", 20.0, 0, 1000)
        sim_run(store, "npu", 25.0, 20, 1000)
    state = ["--state-dir", str(tmp_path / "state")]
    out = tmp_path / "cmp"
    assert main(["compare", "gpu", "npu:run", "--out", str(out), *state]) == 0
    text = capsys.readouterr().out
    assert "gpu:run" in text and "npu:run" in text
    assert re.search(r"j_per_unit \[J/token\]\s+0\.0500\d* ± 0\.00\d+\s+1\.25\s+significant", text)
    assert sorted(p.name for p in out.iterdir()) == ["compare.csv", "compare.html", "compare.json"]

    assert main(["compare", "gpu", "npu", "--json", *state]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == json.loads((out / "compare.json").read_text())
    assert fig(doc, 0, "j_per_unit")["call"] == SIGNIFICANT

    assert main(["compare", "gpu", "npu", "--csv", *state]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    pair = next(r for r in rows if r["kind"] == "pair" and r["figure"] == "j_per_unit")
    assert (pair["a"], pair["b"], pair["unit"], pair["call"]) == (
        "gpu:run",
        "npu:run",
        "J/token",
        "significant",
    )
    assert float(pair["value"]) == pytest.approx(0.05, rel=1e-3)
    item = next(r for r in rows if r["kind"] == "item" and r["figure"] == "mean_power_w")
    assert float(item["value"]) == pytest.approx(20.0, rel=1e-3) and float(item["u95"]) > 0
    # `shown`: the figure as the table prints it (rounded to its U95), value and u95 unrounded
    assert pair["shown"] == pm_text(float(pair["value"]), float(pair["u95"]))
    assert re.search(rf"j_per_unit \[J/token\]\s+{re.escape(pair['shown'])}\s", text)
    assert item["shown"] == pm_text(float(item["value"]), float(item["u95"]))

    assert main(["compare", "gpu", "npu", "--unit", "request", "--json", *state]) == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert [(it["count"], it["flags"]) for it in items] == [(None, ["no_count"])] * 2

    assert main(["compare", "gpu", "nope", *state]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


# --- the page in a real browser ----------------------------------------------------------------


def _chromium(args: list[str], user_data: Path) -> subprocess.CompletedProcess[str]:
    """Headless Chromium logging its console to stderr (what ``console_messages`` reads)."""
    return chromium(args, user_data, extra=("--enable-logging=stderr", "--v=0"))


def console_messages(stderr: str) -> list[str]:
    """Chromium's console lines (errors, CSP refusals, uncaught exceptions) from its log."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line]


def test_console_check_sees_a_script_error(tmp_path: Path) -> None:
    """The detector used below is not blind: a page whose script throws is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><script>throw new Error('boom')</script>")
    dom = _chromium(["--dump-dom", page.as_uri()], tmp_path / "profile-bad")
    assert any("boom" in m for m in console_messages(dom.stderr)), dom.stderr[-2000:]


def test_page_renders_in_headless_chromium_with_its_charts(store: Store, tmp_path: Path) -> None:
    a = sim_run(store, "gpu", 20.0, 0, 1000)
    b = sim_run(store, "npu", 25.0, 20, 1000)
    c = json.loads(json.dumps(b))
    c["run"] = "old"
    del c["phases"][0]["j_per_unit_uncertainty"]  # no uncertainty: drawn without error bar
    c["phases"][0]["uncertainty_j"] = None
    doc = build_comparison(
        [(Selection("gpu", None), a), (Selection("npu", None), b), (Selection("old", None), c)]
    )
    page = tmp_path / "compare.html"
    page.write_text(render_compare_html(doc), encoding="utf-8")
    dom = _chromium(["--dump-dom", page.as_uri()], tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(dom.stderr) == []
    html = dom.stdout
    for key in ("j_per_unit", "units_per_j"):
        chart = re.search(rf'<svg[^>]*id="chart-{key}".*?</svg>', html, re.S)
        assert chart is not None, key
        bars = re.findall(r'<rect class="bar" data-item="([^"]+)" data-value="([^"]+)"', chart[0])
        assert [x for x, _ in bars] == ["gpu:run", "npu:run", "old:run"]
        values = [float(v) for _, v in bars]
        assert values == [it["figures"][key]["value"] for it in doc["items"]]
        errs = re.findall(r'<g class="err" data-item="([^"]+)"', chart[0])
        assert errs == ["gpu:run", "npu:run"]  # none for the item without an uncertainty
        heights = [float(h) for h in re.findall(r'class="bar"[^>]*height="([^"]+)"', chart[0])]
        ratio = heights[1] / heights[0]
        assert ratio == pytest.approx(values[1] / values[0], rel=0.02)  # drawn to scale
    scatter = re.search(r'<svg[^>]*id="chart-scatter".*?</svg>', html, re.S)
    assert scatter is not None
    assert len(re.findall(r'<g class="pt"', scatter[0])) == 3
    assert len(re.findall(r'class="err-y"', scatter[0])) == 2
    pairs = re.search(r'<table id="pairs">.*?</table>', html, re.S)
    assert pairs is not None
    jpu_calls = re.findall(
        r'<tr class="pair-row" data-figure="j_per_unit">.*?<td class="call [a-z]+">([^<(]+)',
        pairs[0],
        re.S,
    )
    assert [c.strip() for c in jpu_calls] == [SIGNIFICANT, UNKNOWN, UNKNOWN]


def test_each_trial_is_an_item_and_a_pair_carries_its_items_flags(store: Store) -> None:
    add_sim(store, "constant,w=20,id=meter", -1, 7)
    add_sim(store, "constant,w=30,id=meter", 6, 5)  # samples stop at 11 s
    mark_phase(store, "r", "decode", 0, 5, {"trial": 1}, trial=1, count=50, unit="token")
    mark_phase(store, "r", "decode", 7, 6, {"trial": 2}, trial=2, count=60, unit="token")
    result = compute_run(store, "r")
    doc = build_comparison([(Selection("r", "decode"), result)])
    one, two = doc["items"]
    assert (one["label"], two["label"]) == ("r:decode#1", "r:decode#2")
    assert one["flags"] == [] and two["flags"]  # trial 2 outlives its samples
    pair = doc["pairs"][0]
    assert pair["flags"] == sorted(two["flags"])
    assert one["figures"]["j_per_unit"]["value"] == pytest.approx(2.0, rel=1e-3)
    assert fig(doc, 0, "units_per_s")["call"] == NOT_SIGNIFICANT  # 10 vs 10 tokens/s


def test_page_is_well_formed_and_escapes_what_it_shows() -> None:
    from tests.report.test_html import assert_well_formed, phase_entry

    hostile = phase_entry("<script>x</script>", 0.0, 10.0, 500.0, 1.0, flags=['"><b>'])
    plain = phase_entry("run", 0.0, 10.0, 400.0, None)  # no uncertainty: "± ?", no error bar
    doc = build_comparison(
        [
            (Selection("a&b", None), {"phases": [hostile]}),
            (Selection("c", None), {"phases": [plain]}),
        ]
    )
    page = render_compare_html(doc)
    assert_well_formed(page)
    assert "<script" not in page and "<b>" not in page
    assert "a&amp;b:&lt;script&gt;x&lt;/script&gt;" in page
    assert page.count('<g class="err"') == 2  # j_per_unit and units_per_j of the first only
    assert "± ?" in page


def with_engine_counts(result: dict[str, Any], tokens: int, requests: int) -> dict[str, Any]:
    """The result as it reads when a serving engine's counters gave the phase's counts
    (contract 2 ``counts`` and ``count_source``, as powerd.phasecount writes them): tokens ± 12,
    requests ± 2."""
    out = json.loads(json.dumps(result))
    p = out["phases"][0]
    p["counts"] = [
        {"source": "prom:tok", "unit": "token", "count": tokens, "count_uncertainty": 12.0},
        {"source": "prom:req", "unit": "request", "count": requests, "count_uncertainty": 2.0},
    ]
    p["count"], p["unit"], p["count_source"] = tokens, "token", "prom:tok"
    return out


def test_an_engine_counters_uncertainty_and_another_unit(store: Store) -> None:
    a = with_engine_counts(sim_run(store, "a", 20.0, 0, 1000), 1000, 50)
    b = with_engine_counts(sim_run(store, "b", 20.0, 20, 1000), 1000, 40)
    sel = [(Selection("a", None), a), (Selection("b", None), b)]
    doc = build_comparison(sel)
    ia = doc["items"][0]
    assert (ia["count"], ia["count_u95"], ia["count_source"]) == (1000, 12.0, "prom:tok")
    e, ue = a["phases"][0]["energy_j"], a["phases"][0]["uncertainty_j"]
    jpu = ia["figures"]["j_per_unit"]
    assert jpu["value"] == pytest.approx(e / 1000)
    assert jpu["u95"] == pytest.approx(e / 1000 * math.hypot(ue / e, 12 / 1000))
    assert ia["figures"]["units_per_s"]["u95"] == pytest.approx(100 * 12 / 1000)
    assert fig(doc, 0, "j_per_unit")["call"] == NOT_SIGNIFICANT  # same source, same tokens

    per_request = build_comparison(sel, unit="request")
    ra, rb = per_request["items"]
    assert (ra["unit"], ra["count"], rb["count"]) == ("request", 50, 40)
    assert ra["figures"]["j_per_unit"]["value"] == pytest.approx(e / 50)
    assert fig(per_request, 0, "j_per_unit")["call"] == SIGNIFICANT  # 4.0 vs 5.0 J/request
    assert fig(per_request, 0, "mean_power_w")["call"] == NOT_SIGNIFICANT

    marker_count = sim_run(store, "m", 20.0, 40, 1000)  # counted in tokens only, by a marker
    mixed = build_comparison(
        [(Selection("a", None), a), (Selection("m", None), marker_count)], unit="request"
    )
    im = mixed["items"][1]
    assert im["count"] is None and "no_count" in im["flags"] and im["count_source"] == "none"
    assert fig(mixed, 0, "j_per_unit")["call"] == UNKNOWN
    assert fig(mixed, 0, "j_per_unit")["reason"] == "missing value"
    assert mixed["items"][0]["figures"]["j_per_unit"]["value"] == pytest.approx(e / 50)


def test_an_engine_count_without_its_uncertainty_is_unknown(store: Store) -> None:
    a = with_engine_counts(sim_run(store, "a", 20.0, 0, 1000), 1000, 50)
    b = with_engine_counts(sim_run(store, "b", 25.0, 20, 1000), 1000, 50)
    b["phases"][0]["counts"][0]["count_uncertainty"] = None
    doc = build_comparison([(Selection("a", None), a), (Selection("b", None), b)])
    assert doc["items"][1]["count_u95"] is None
    for key in ("j_per_unit", "units_per_j", "units_per_s"):
        assert (fig(doc, 0, key)["call"], fig(doc, 0, key)["reason"]) == (
            UNKNOWN,
            "missing uncertainty",
        ), key
    assert fig(doc, 0, "mean_power_w")["call"] == SIGNIFICANT  # the energy's figures stand
