"""The report's zoomable traces (issue 17): embedded min/max levels that keep a one-sample spike
at every zoom, a bounded page size, and the page in headless chromium (offline, from a file):
no console errors, the overview's column keeps the spike, a drag zooms to the raw samples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from powerd.report.html import render_html
from powerd.report.zoom import BASE_COLUMNS, MAX_EMBED_POINTS, levels_json
from tests.servers import wait_for
from tests.tools import require_tool

T0 = 1_700_000_000 * 10**9
PERIOD_NS = 100_000  # 10 kHz
N = 300_000  # 30 s
SPIKE_AT = 123_457
SPIKE_W, BASE_W = 250.0, 3.0


def spiky() -> tuple[np.ndarray, np.ndarray]:
    t = T0 + np.arange(N, dtype=np.int64) * PERIOD_NS
    v = np.full(N, BASE_W)
    v[SPIKE_AT] = SPIKE_W
    return t, v


def result() -> dict[str, Any]:
    return {
        "v": 1,
        "run": "zoom-run",
        "phases": [
            {
                "phase": "load",
                "trial": 0,
                "t_begin_ns": T0 + 5 * 10**9,
                "t_end_ns": T0 + 25 * 10**9,
                "duration_s": 20.0,
                "channels": {},
                "flags": [],
            }
        ],
    }


def test_levels_keep_the_spike_at_every_level_and_fit_the_budget() -> None:
    t, v = spiky()
    levels = json.loads(levels_json(t, v, T0, 100_000))
    assert len(levels[0]["t"]) <= BASE_COLUMNS + 1
    assert all(max(L["hi"]) == SPIKE_W and min(L["lo"]) == BASE_W for L in levels)
    assert sum(len(L["t"]) for L in levels) <= 100_000
    assert not any(L.get("raw") for L in levels)  # 300k samples do not fit 100k points
    cols = [L["col_s"] for L in levels]
    assert cols == sorted(cols, reverse=True) and len(cols) >= 2
    # a short trace: the raw samples as the finest level, exactly
    small = json.loads(levels_json(t[:5000], v[:5000], T0, 100_000))
    assert small[-1]["raw"] and len(small[-1]["v"]) == 5000
    assert json.loads(levels_json(t[:0], v[:0], T0, 10)) == []


def test_page_size_is_bounded_for_a_long_fast_trace() -> None:
    t = T0 + np.arange(2_000_000, dtype=np.int64) * 10_000  # 20 s at 100 kHz
    v = np.sin(np.arange(t.size) / 50.0) + 5.0
    page = render_html(result(), {"lpm:dut": (t, v)})
    assert len(page) < 40 * MAX_EMBED_POINTS  # columns, not 2 M samples


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    exe = require_tool("chromium")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def test_report_zooms_to_the_spike_in_a_browser(browser: Any, tmp_path: Path) -> None:
    t, v = spiky()
    html = tmp_path / "zoom-run.html"
    html.write_text(render_html(result(), {"meter:dut": (t, v)}), encoding="utf-8")
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html.as_uri())

    def report(expr: str) -> Any:
        return page.evaluate(f"(() => {{ const Z = window.powerdReport; return {expr}; }})()")

    wait_for(lambda: report("Z && Z.range !== null"), 20, "the interactive chart")
    assert page.is_hidden("#svgchart") and page.is_visible("#zoomchart")
    # the overview: one column per ~pixel, and the spike's column at full height
    overview = report("Z.charts['meter:dut'].data")
    assert len(overview[0]) <= 2 * BASE_COLUMNS
    assert max(x for x in overview[2] if x is not None) == SPIKE_W
    # drag across the spike, as a person would, twice: down to the finest level
    spike_s = (SPIKE_AT * PERIOD_NS - 5 * 10**9) / 1e9  # the x axis starts at the first phase
    for half_width_s in (0.5, 0.02):
        box = report(
            f"""(() => {{ const u = Z.charts['meter:dut'], r = u.over.getBoundingClientRect();
                return {{ x0: r.left + u.valToPos({spike_s - half_width_s}, 'x'),
                          x1: r.left + u.valToPos({spike_s + half_width_s}, 'x'),
                          y: r.top + r.height / 2 }}; }})()"""
        )
        page.mouse.move(box["x0"], box["y"])
        page.mouse.down()
        page.mouse.move(box["x1"], box["y"], steps=5)
        page.mouse.up()
    level = report("Z.level['meter:dut']")
    assert level["index"] > 0 and level["raw"]  # finest: every sample of the range
    shown = report("Z.charts['meter:dut'].data")
    assert SPIKE_W in shown[2] and BASE_W in shown[1]
    lo, hi = report("Z.range")
    assert hi - lo < 0.1
    # Shift+wheel pans by a fifth of the range, keeping its width
    page.keyboard.down("Shift")
    page.mouse.wheel(0, 100)
    page.keyboard.up("Shift")
    wait_for(lambda: report("Z.range")[0] > lo, 10, "panned right")
    lo2, hi2 = report("Z.range")
    assert abs((hi2 - lo2) - (hi - lo)) < 1e-9 * max(1.0, hi)
    # the wheel zooms out around the pointer
    page.mouse.wheel(0, 100)
    wait_for(lambda: report("Z.range[1] - Z.range[0]") > hi2 - lo2, 10, "zoomed out")
    page.dblclick("#zoomchart .u-over")
    wait_for(lambda: report("Z.range[1] - Z.range[0]") > 29, 10, "back to the whole run")
    assert errors == []
    assert all(u.startswith("file:") or u.startswith("data:") for u in requests)
    page.close()


def test_zoom_controls_follow_the_report_language() -> None:
    from powerd import i18n

    t, v = spiky()
    with i18n.language("ko"):
        page = render_html(result(), {"meter:dut": (t[:1000], v[:1000])})
    assert '<button type="button">전체 실행</button>' in page
    data = page.split('id="powerd-traces">', 1)[1].split("</script>", 1)[0]
    text = json.loads(data)["text"]
    assert text["whole"] == "전체 실행" and "{span}" in text["raw"] and "s 표시" in text["raw"]
    assert text["time"].endswith("부터의 시간 (s)")
