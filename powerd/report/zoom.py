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

from powerd.i18n import _
from powerd.live import STATIC_DIR, minmax_columns

BASE_COLUMNS = 1000
LEVEL_FACTOR = 8
COLUMNS_PER_PIXEL = 2
MAX_EMBED_POINTS = 400_000
UPLOT_VERSION = "1.6.32"  # columns plus raw samples, all channels together


@cache
def _vendored() -> tuple[str, str, str, str]:
    """uPlot's minified script, its stylesheet, its licence text, and the page code."""
    d = STATIC_DIR / "uplot"
    return (
        (d / "uPlot.iife.min.js").read_text(encoding="utf-8"),
        (d / "uPlot.min.css").read_text(encoding="utf-8"),
        (d / "LICENSE").read_text(encoding="utf-8"),
        (STATIC_DIR / "report-zoom.js").read_text(encoding="utf-8"),
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
            out.append(f'{{"raw":true,"t":{_nums(rel / 1e9, "%.10g")},"v":{_nums(p, "%.6g")}}}')
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
@media print { #zoomchart, #zoomchart.on { display: none; }
  #svgchart { display: block !important; } }
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
    lib, lib_css, licence, app_js = _vendored()
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
    whole = _("whole run")
    help_text = _(
        "drag across a trace to zoom, the wheel zooms, Shift+wheel pans, double-click for the "
        "whole run; bands are the min and max of each pixel column"
    )
    meta = {
        "text": {
            "whole": whole,
            "raw": _("{span} s shown, every sample"),
            "columns": _("{span} s shown, min and max per pixel column"),
            "time": _("time (s) from {start}").format(start=start_text),
        },
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
    app = app_js.replace("__PER_PX__", str(COLUMNS_PER_PIXEL)).replace("</script", "<\\/script")
    lib_script = lib.replace("</script", "<\\/script")
    html = (
        f'<div id="zoomchart"><div class="zbar"><button type="button">{escape(whole)}</button>'
        f'<span class="zinfo"></span><span>{escape(help_text)}</span></div></div>'
        f'<script type="application/json" id="powerd-traces">{data}</script>'
        f"<script>{lib_script}</script><script>{app}</script>"
        f"<!-- uPlot {UPLOT_VERSION} is embedded under its licence:\n"
        f"{escape(licence).replace('--', '- -')}-->"
    )
    return html, lib_css + _CSS, [_sha256(lib_script), _sha256(app)]
