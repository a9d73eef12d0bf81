"""The report's interactive traces (issue 17): uPlot with embedded min/max levels, offline.

The HTML report stays one self-contained file. Besides its static SVG chart (kept for print, for
mail readers that block scripts, and as the fallback), it carries the vendored uPlot library
(``powerd/static/uplot``, MIT, licence text embedded beside it) and, per channel, a pyramid of
min/max levels: level 0 has ``BASE_COLUMNS`` columns over the whole run, each next level
``LEVEL_FACTOR`` times narrower columns, down to the raw samples when they fit the budget. Zooming
(drag across the chart; double-click or "whole run" to go back) picks the finest level that gives
at most ``COLUMNS_PER_PIXEL`` columns per pixel in the visible range, so a spike is never lost at
any zoom and the raw samples show when the range is short enough. ``MAX_EMBED_POINTS`` bounds the
levels' points over all channels, so a 10-minute 100 kHz run does not make a 100 MB page.

Scripts run only by hash: the page's Content-Security-Policy lists the SHA-256 of each inline
script (library and page code), still forbids every fetch, and the data are a JSON data block.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from functools import cache
from html import escape
from typing import Any

import numpy as np
import numpy.typing as npt

from powerd.live import STATIC_DIR, minmax_columns

BASE_COLUMNS = 1000
LEVEL_FACTOR = 8
COLUMNS_PER_PIXEL = 2
MAX_EMBED_POINTS = 400_000
UPLOT_VERSION = "1.6.32"  # columns plus raw samples, all channels together


@cache
def _vendored() -> tuple[str, str, str]:
    """uPlot's minified script, its stylesheet and its licence text."""
    d = STATIC_DIR / "uplot"
    return (
        (d / "uPlot.iife.min.js").read_text(encoding="utf-8"),
        (d / "uPlot.min.css").read_text(encoding="utf-8"),
        (d / "LICENSE").read_text(encoding="utf-8"),
    )


def _nums(a: npt.NDArray[Any], fmt: str) -> str:
    return "[" + ",".join(np.char.mod(fmt, a).tolist()) + "]" if a.size else "[]"


def levels_json(t_ns: npt.NDArray[Any], v: npt.NDArray[Any], origin_ns: int, budget: int) -> str:
    """One channel's levels as JSON (times in s from ``origin_ns``), using at most ``budget``
    points: ``[{"col_s": c, "t": [...], "lo": [...], "hi": [...]}, ..., {"raw": true, "t",
    "v"}]``, coarsest first. Non-finite samples are dropped."""
    t = np.asarray(t_ns, np.int64)
    p = np.asarray(v, np.float64)
    keep = np.isfinite(p)
    t, p = t[keep], p[keep]
    if t.size > 1 and np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        t, p = t[order], p[order]
    rel = t - origin_ns
    out: list[str] = []
    used = 0
    if t.size:
        span_ns = max(1, int(rel[-1] - rel[0]))
        col_ns = max(1, math.ceil(span_ns / BASE_COLUMNS))
        while True:  # coarsest first, each LEVEL_FACTOR finer, while columns beat samples
            ct, lo, hi = minmax_columns(rel, p, col_ns, int(rel[0]) // col_ns * col_ns)
            if 2 * ct.size > t.size or used + ct.size > budget:
                break  # nearly a sample a column (raw is better), or no room left
            out.append(
                f'{{"col_s":{col_ns / 1e9!r},"t":{_nums(ct / 1e9, "%.10g")},'
                f'"lo":{_nums(lo, "%.6g")},"hi":{_nums(hi, "%.6g")}}}'
            )
            used += int(ct.size)
            if col_ns == 1:
                break
            col_ns = max(1, col_ns // LEVEL_FACTOR)
        if used + t.size <= budget:
            out.append(
                f'{{"raw":true,"t":{_nums(rel / 1e9, "%.10g")},"v":{_nums(p, "%.6g")}}}'
            )
    return "[" + ",".join(out) + "]"


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


_CSS = """
#zoomchart { display: none; }
#zoomchart.on { display: block; background: #fff; border: 1px solid #ddd; border-radius: 4px;
  padding: 6px; }
#zoomchart .zbar { display: flex; gap: 12px; align-items: center; margin: 2px 4px 6px;
  font-size: 12.5px; color: #555; }
#zoomchart .zch { margin: 2px 0 8px; }
#zoomchart .zch h3 { font-size: 12.5px; margin: 2px 4px; font-weight: 600; }
@media print { #zoomchart, #zoomchart.on { display: none; } #svgchart { display: block !important; } }
"""

# The page code: builds a chart per channel from the data block, zoom picks a level.
_APP = r"""
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("powerd-traces").textContent);
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
  const box = document.getElementById("zoomchart"), info = box.querySelector(".zinfo");
  const Z = (window.powerdReport = { charts: {}, level: {}, range: null });
  const lower = (a, x) => { let lo = 0, hi = a.length; while (lo < hi) { const m = (lo + hi) >> 1; if (a[m] < x) lo = m + 1; else hi = m; } return lo; };
  function pick(levels, x0, x1, px) {
    for (let i = levels.length - 1; i >= 0; i--) {       // finest first
      const L = levels[i], n = lower(L.t, x1) - lower(L.t, x0);
      if (n <= px * __PER_PX__ || i === 0) return i;
    }
    return 0;
  }
  function view(cid, x0, x1) {
    const u = Z.charts[cid], levels = D.channels[cid];
    const i = pick(levels, x0, x1, u.bbox.width / devicePixelRatio), L = levels[i];
    const a = Math.max(0, lower(L.t, x0) - 1), b = Math.min(L.t.length, lower(L.t, x1) + 1);
    const lo = L.raw ? L.v : L.lo, hi = L.raw ? L.v : L.hi;
    Z.level[cid] = { index: i, raw: !!L.raw, points: b - a };
    u.setData([L.t.slice(a, b), lo.slice(a, b), hi.slice(a, b)], false);
    u.setScale("x", { min: x0, max: x1 });
  }
  let syncing = false;
  function zoom(x0, x1) {
    if (syncing) return;
    syncing = true;
    Z.range = [x0, x1];
    for (const cid of Object.keys(Z.charts)) view(cid, x0, x1);
    syncing = false;
    const full = x0 <= D.x0 && x1 >= D.x1;
    const lv = Object.values(Z.level);
    info.textContent = full ? "whole run" : (x1 - x0).toPrecision(3) + " s shown" + (lv.some((l) => l.raw) ? ", every sample" : ", min/max per column");
  }
  Z.zoom = zoom;
  const shade = { hooks: { drawAxes: [(u) => {
    const c = u.ctx, { left, top, width, height } = u.bbox;
    c.save();
    for (const p of D.phases) {
      if (p.e < u.scales.x.min || p.b > u.scales.x.max) continue;
      const x0 = Math.max(left, u.valToPos(p.b, "x", true)), x1 = Math.min(left + width, u.valToPos(p.e, "x", true));
      c.fillStyle = p.fill + "29"; c.fillRect(x0, top, Math.max(1, x1 - x0), height);
      c.fillStyle = "#222"; c.font = 11 * devicePixelRatio + "px sans-serif"; c.fillText(p.label, x0 + 3, top + 12 * devicePixelRatio);
    }
    c.restore();
  }] } };
  box.classList.add("on"); // shown first: the charts take its width
  document.getElementById("svgchart").style.display = "none";
  Object.keys(D.channels).forEach((cid, k) => {
    const el = document.createElement("div"); el.className = "zch";
    const h = document.createElement("h3"); h.textContent = cid + (D.units[cid] ? " [" + D.units[cid] + "]" : ""); el.appendChild(h);
    box.appendChild(el);
    const color = COLORS[k % COLORS.length], L = D.channels[cid][0] || { t: [D.x0, D.x1], lo: [null, null], hi: [null, null] };
    Z.charts[cid] = new uPlot({
      width: Math.max(300, box.clientWidth - 12), height: 180, plugins: [shade],
      scales: { x: { time: false } },
      cursor: { drag: { x: true, y: false, setScale: true }, bind: { dblclick: () => () => { zoom(D.x0, D.x1); return null; } } },
      legend: { show: false },
      series: [{ label: "s" }, { stroke: color, width: 1 }, { stroke: color, width: 1 }],
      bands: [{ series: [2, 1], fill: color + "55" }],
      axes: [{ label: "time (s) from " + D.start }, { label: "W" }],
      hooks: { setScale: [(u, key) => { if (key === "x" && !syncing) zoom(u.scales.x.min, u.scales.x.max); }] },
    }, [L.t || [], L.lo || L.v || [], L.hi || L.v || []], el);
  });
  box.querySelector("button").onclick = () => zoom(D.x0, D.x1);
  zoom(D.x0, D.x1);
})();
"""


def zoom_section(
    traces: dict[str, tuple[npt.NDArray[Any], npt.NDArray[Any]]],
    phases: list[tuple[int, int, str, str]],
    units: dict[str, str],
    origin_ns: int,
    start_text: str,
) -> tuple[str, str, list[str]]:
    """The interactive chart's HTML (figure, data, scripts), its CSS and the script hashes for
    the page's Content-Security-Policy. ``phases``: (begin ns, end ns, label, fill colour)."""
    lib, lib_css, licence = _vendored()
    channels = sorted(traces)
    budget = MAX_EMBED_POINTS // max(1, len(channels))
    parts = []
    ends: list[float] = []
    for c in channels:
        t, v = traces[c]
        parts.append(f"{json.dumps(c)}:{levels_json(t, v, origin_ns, budget)}")
        t_arr = np.asarray(t, np.int64)
        if t_arr.size:
            ends += [(int(t_arr.min()) - origin_ns) / 1e9, (int(t_arr.max()) - origin_ns) / 1e9]
    ends += [(b - origin_ns) / 1e9 for b, _, _, _ in phases]
    ends += [(e - origin_ns) / 1e9 for _, e, _, _ in phases]
    x0, x1 = (min(ends), max(ends)) if ends else (0.0, 1.0)
    meta = {
        "x0": x0,
        "x1": x1 if x1 > x0 else x0 + 1.0,
        "start": start_text,
        "units": units,
        "phases": [
            {"b": (b - origin_ns) / 1e9, "e": (e - origin_ns) / 1e9, "label": lab, "fill": fill}
            for b, e, lab, fill in phases
        ],
    }
    data = json.dumps(meta)[:-1] + ',"channels":{' + ",".join(parts) + "}}"
    # no markup in the data block: a channel or phase name cannot end it or inject tags
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    app = _APP.replace("__PER_PX__", str(COLUMNS_PER_PIXEL))
    lib_script = lib.replace("</script", "<\\/script")
    html = (
        '<div id="zoomchart"><div class="zbar"><button type="button">whole run</button>'
        '<span class="zinfo"></span><span>drag across a trace to zoom; double-click for the '
        "whole run; bands are the min and max of each pixel column</span></div></div>"
        f'<script type="application/json" id="powerd-traces">{data}</script>'
        f"<script>{lib_script}</script><script>{app}</script>"
        f"<!-- uPlot {UPLOT_VERSION} is embedded under its licence:\n"
        f"{escape(licence).replace('--', '- -')}-->"
    )
    return html, lib_css + _CSS, [_sha256(lib_script), _sha256(app)]
