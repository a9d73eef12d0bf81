"""The HTML report: self-contained, escaped, honest about missing figures, readable in a browser."""

from __future__ import annotations

import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from powerd.live import STATIC_DIR
from powerd.report.html import MAX_POINTS, decimate, fmt, fmt_pm, render_html
from tests.report.chromium import chromium

T0 = 1_700_000_000 * 10**9
S = 10**9

VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "embed", "source"}
SVG_SELF_CLOSING_OK = {"line", "rect", "polyline", "path", "circle"}


class _Structure(HTMLParser):
    """Checks that every element opened is closed, in order; collects text per table id."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in VOID and tag not in SVG_SELF_CLOSING_OK:
            self.errors.append(f"self-closed <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()


def assert_well_formed(page: str) -> _Structure:
    assert page.startswith("<!DOCTYPE html>")
    parser = _Structure()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    for tag in ("html", "head", "title", "body", "svg", "table"):
        assert tag in parser.tags
    return parser


def channel_entry(energy: float | None, primary: bool = True, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "energy_j": energy,
        "mean_power_w": None if energy is None else energy / 10,
        "peak_power_w": None if energy is None else energy / 5,
        "samples": 1000,
        "coverage": 1.0,
        "uncertainty_j": None if energy is None else 0.5,
        "source_class": "meter",
        "method": "trapezoid",
        "flags": [],
        "primary": primary,
    }
    entry.update(extra)
    return entry


def phase_entry(
    name: str, begin_s: float, end_s: float, energy: float | None, unc: float | None, **extra: Any
) -> dict[str, Any]:
    duration = end_s - begin_s
    entry: dict[str, Any] = {
        "phase": name,
        "trial": 0,
        "t_begin_ns": T0 + int(begin_s * S),
        "t_end_ns": T0 + int(end_s * S),
        "duration_s": duration,
        "count": 100,
        "unit": "inference",
        "energy_j": energy,
        "mean_power_w": None if energy is None else energy / duration,
        "peak_power_w": None if energy is None else 80.0,
        "uncertainty_j": unc,
        "j_per_unit": None if energy is None else energy / 100,
        "units_per_j": None if energy is None else 100 / energy,
        "idle_power_w": None,
        "net_energy_j": None,
        "flags": [],
        "timing": {"source": "marker", "offset_ns": 0, "uncertainty_ns": 500_000},
        "channels": {"sim:square": channel_entry(energy)},
        "meta": {},
    }
    entry.update(extra)
    return entry


def realistic_result() -> dict[str, Any]:
    idle = phase_entry("idle", 0.0, 10.0, 200.0, 0.5, count=None, unit=None)
    run = phase_entry(
        "run",
        12.0,
        40.0,
        1234.5678,
        1.2,
        idle_power_w=20.0,
        net_energy_j=674.5678,
        flags=["incomplete"],
        channels={
            "sim:square": channel_entry(1234.5678, flags=["incomplete"]),
            "sim:gpu": channel_entry(900.0, primary=False, source_class="telemetry"),
        },
        meta={"model": "resnet50"},
    )
    return {"v": 1, "run": "r1", "phases": [idle, run], "trials": []}


def square_traces() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    t_s = np.arange(0.0, 45.0, 0.001)
    run = (t_s >= 12.0) & (t_s < 40.0)
    square = np.where(run & (np.floor(t_s * 2) % 2 == 0), 80.0, 20.0)
    noise = np.random.default_rng(1).normal(0.0, 0.4, t_s.size)
    t_ns = T0 + np.round(t_s * S).astype(np.int64)
    gpu_t = np.arange(0.0, 45.0, 0.1)
    gpu = np.where((gpu_t >= 12.0) & (gpu_t < 40.0), 45.0, 8.0) + np.sin(gpu_t)
    return {
        "sim:square": (t_ns, square + noise),
        "sim:gpu": (T0 + np.round(gpu_t * S).astype(np.int64), gpu),
    }


def polylines(page: str) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for m in re.finditer(r'<polyline[^>]*data-channel="([^"]*)"[^>]*points="([^"]*)"', page):
        pts = [tuple(float(v) for v in pair.split(",")) for pair in m.group(2).split()]
        out[m.group(1)] = [(x, y) for x, y in pts]
    return out


def test_page_is_self_contained() -> None:
    full = render_html(realistic_result(), square_traces())
    assert_well_formed(full)
    # the scripts: the vendored uPlot exactly as shipped (its banner names its home page) and
    # the page's own code, both allowed only by hash; no script loads anything
    lib = (STATIC_DIR / "uplot" / "uPlot.iife.min.js").read_text(encoding="utf-8")
    assert full.count(lib) == 1
    page = full.replace(lib, "")
    csp = re.search(r'Content-Security-Policy" content="([^"]*)"', page)
    assert csp is not None and "default-src 'none'" in csp.group(1)
    script_src = re.search(r"script-src ([^;]*)", csp.group(1))
    assert script_src is not None and script_src.group(1).count("'sha256-") == 2
    assert "unsafe" not in script_src.group(1)
    assert "connect-src" not in csp.group(1)  # default-src 'none': no fetch, no XHR
    lowered = page.lower()
    for forbidden in ("http://", "https://", "src=", "<script src", "url(http", "@import", "//"):
        if forbidden == "//":
            assert re.search(r"""["'(]\s*//""", page) is None
        else:
            assert forbidden not in lowered
    assert "<style>" in page
    assert '<table id="results">' in page
    assert '<table id="channels">' in page
    assert "95 %" in page


def test_strings_from_the_result_are_escaped() -> None:
    result = realistic_result()
    result["run"] = "r<b>&1"
    result["phases"][1]["phase"] = "x<b>&y"
    result["phases"][1]["flags"] = ["<i>odd</i>"]
    result["phases"][1]["meta"] = {"k<": "v&\"'"}
    traces = {"ch<b>&": square_traces()["sim:gpu"]}
    result["phases"][1]["channels"] = {"ch<b>&": channel_entry(1.0)}
    page = render_html(result, traces, units={"ch<b>&": "J<"}, generated_by="me<b>")
    assert_well_formed(page)
    assert "<b>" not in page and "<i>" not in page
    assert "r&lt;b&gt;&amp;1" in page
    assert "x&lt;b&gt;&amp;y" in page
    assert "ch&lt;b&gt;&amp;" in page
    assert "&lt;i&gt;odd&lt;/i&gt;" in page
    assert "v&amp;&quot;&#x27;" in page
    assert "me&lt;b&gt;" in page
    assert "<title>powerd report — run r&lt;b&gt;&amp;1</title>" in page


def test_null_figures_render_as_a_dash_not_zero() -> None:
    result = realistic_result()
    nothing = phase_entry("broken", 41.0, 42.0, None, None, flags=["no_data"])
    nothing["channels"] = {"sim:square": channel_entry(None, coverage=None)}
    result["phases"] = [nothing]
    page = render_html(result, {})
    row = re.search(r'<tr class="phase-row">(.*?)</tr>', page)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    energy, mean, peak, per_unit, idle, net = cells[4:10]
    for cell in (energy, mean, peak, per_unit, idle, net):
        assert cell == "—"
    channels = re.search(r'<table id="channels">.*?<tbody>(.*?)</tbody>', page)
    assert channels is not None
    ch_cells = re.findall(r"<td[^>]*>(.*?)</td>", channels.group(1))
    assert ch_cells[6:10] == ["—", "—", "—", "—"]
    assert fmt(None) == "—" and fmt(float("nan")) == "—"
    assert fmt_pm(None, 1.0) == "—"
    assert fmt(0.0) == "0"


def test_number_formatting() -> None:
    assert fmt(1234.5678) == "1,235"
    assert fmt(12.345678) == "12.35"
    assert fmt(0.000123456) == "1.235e-04"
    assert fmt(100) == "100"
    assert fmt_pm(1234.5678, 1.2) == "1,234.6 ± 1.2"
    assert fmt_pm(200.0, 0.5) == "200.00 ± 0.50"
    assert fmt_pm(3.0, None) == "3 ± —"


def test_flags_are_highlighted_only_when_present() -> None:
    page = render_html(realistic_result(), {})
    rows = re.findall(r'<tr class="phase-row">(.*?)</tr>', page)
    assert len(rows) == 2
    assert 'class="flags"' in rows[0] and "warn" not in rows[0]
    assert 'class="flags warn"><span class="flag">incomplete</span>' in rows[1]


def test_decimation_bounds_points_and_keeps_a_spike() -> None:
    n = 1_000_000
    t = T0 + np.arange(n, dtype=np.int64) * 1_000_000
    p = 10.0 + np.sin(np.arange(n) / 5000.0)
    p[654_321] = 500.0
    t_d, p_d = decimate(t, p)
    assert t_d.size <= MAX_POINTS
    assert t_d.size >= MAX_POINTS * 0.9
    assert p_d.max() == 500.0
    assert p_d.min() == pytest.approx(p.min())
    assert np.all(np.diff(t_d) > 0)
    assert t_d[np.argmax(p_d)] == t[654_321]

    page = render_html({"v": 1, "run": "big", "phases": []}, {"m:1": (t, p)})
    lines = polylines(page)
    assert list(lines) == ["m:1"]
    ys = [y for _, y in lines["m:1"]]
    assert len(ys) <= MAX_POINTS
    baseline = float(np.median(ys))
    top = min(ys)  # SVG y grows downwards
    assert baseline - top > 0.8 * (max(ys) - top)
    assert baseline - top > 250


def test_decimation_drops_non_finite_and_sorts() -> None:
    t = np.array([3, 1, 2, 4], dtype=np.int64)
    p = np.array([3.0, 1.0, np.nan, 4.0])
    t_d, p_d = decimate(t, p)
    assert t_d.tolist() == [1, 3, 4]
    assert p_d.tolist() == [1.0, 3.0, 4.0]


def test_one_polyline_per_channel_with_distinct_colours_and_a_legend() -> None:
    page = render_html(realistic_result(), square_traces())
    lines = polylines(page)
    assert sorted(lines) == ["sim:gpu", "sim:square"]
    colours = re.findall(r'<polyline[^>]*stroke="(#[0-9a-f]{6})"', page)
    assert len(set(colours)) == 2
    assert '<ul class="legend">' in page and page.count("<li>") == 2
    assert page.count('<g class="phase">') == 2
    assert ">run</text>" in page and ">idle</text>" in page


def test_trial_shown_on_phase_label_and_trials_table() -> None:
    result = realistic_result()
    second = phase_entry("run", 41.0, 44.0, 1240.0, 1.0, trial=1)
    result["phases"].append(second)
    result["trials"] = [
        {
            "phase": "run",
            "trials": 2,
            "energy_j": {"median": 1237.28, "min": 1234.57, "max": 1240.0, "rel_spread": 0.0044},
        }
    ]
    page = render_html(result, square_traces())
    assert_well_formed(page)
    assert ">run #1</text>" in page
    trials = re.search(r'<table id="trials">.*?</table>', page)
    assert trials is not None
    assert "1,237" in trials.group(0) and "0.44" in trials.group(0)


def test_empty_traces_and_no_phases_still_render() -> None:
    for traces in ({}, {"a:1": (np.array([], np.int64), np.array([], np.float64))}):
        page = render_html({"v": 1, "run": "empty", "phases": [], "trials": []}, traces)
        assert_well_formed(page)
        assert "<h1>Run empty</h1>" in page
        assert "no samples" in page
        assert "no phases in this run" in page
        assert '<table id="trials">' not in page
    single = {"a:1": (np.array([T0], np.int64), np.array([5.0]))}
    page = render_html({"v": 1, "run": "one", "phases": []}, single)
    assert_well_formed(page)
    assert len(polylines(page)["a:1"]) == 1


def _chromium(args: list[str], user_data: Path) -> subprocess.CompletedProcess[str]:
    return chromium(args, user_data, extra=("--hide-scrollbars",))


def test_page_in_a_real_browser(tmp_path: Path) -> None:
    pil_image = pytest.importorskip("PIL.Image")
    page = tmp_path / "r1.html"
    page.write_text(render_html(realistic_result(), square_traces()), encoding="utf-8")
    url = page.as_uri()

    png = tmp_path / "r1.png"
    shot = _chromium([f"--screenshot={png}", url], tmp_path / "profile-shot")
    assert png.exists(), shot.stderr[-2000:]
    with pil_image.open(png) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (1280, 1600)
        colours = rgb.getcolors(maxcolors=1 << 24)
    assert colours is not None
    assert len(colours) > 20
    background_count = max(count for count, _ in colours)
    total = 1280 * 1600
    assert total - background_count > 0.15 * total

    dom = _chromium(["--dump-dom", url], tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    results = re.search(r'<table id="results">.*?</table>', dom.stdout, re.S)
    assert results is not None
    rows = re.findall(r'<tr class="phase-row">(.*?)</tr>', results.group(0), re.S)
    assert len(rows) == 2
    assert rows[0].startswith("<td>idle")
    assert rows[1].startswith("<td>run")
    assert "200.00 ± 0.50" in rows[0]
    assert "1,234.6 ± 1.2" in rows[1]
    assert "incomplete" in rows[1]
    assert dom.stdout.count("<polyline") == 2
