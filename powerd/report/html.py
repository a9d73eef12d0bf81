"""Self-contained HTML report of one run: a power-vs-time chart and the contract-2 result tables.

The page is meant to be archived next to ``<run>.json`` and opened years later, offline, from a
file, a CI artifact or an e-mail: so it is a single HTML5 document with inline CSS and inline SVG
and no reference to anything outside itself (a Content-Security-Policy forbids it). Its only
scripts, allowed by hash, are the embedded uPlot and the zoomable traces of
``powerd.report.zoom``; without scripts (print, mail readers) the SVG chart shows instead.
Traces of millions of samples are reduced with numpy to a min/max envelope of at most
``MAX_POINTS`` points per channel, so a one-sample spike stays visible. Every string that comes
from the result or the traces is HTML-escaped; a missing figure (null) is shown as "—", never 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from typing import Any

import numpy as np
import numpy.typing as npt

from powerd.audit import manifest_digest
from powerd.i18n import N_, _, lang
from powerd.report.audit_html import (
    PRINT_CSS,
    manifest_section,
    signature_block,
    verdicts_section,
)
from powerd.report.crosscheck_view import html_section as cross_checks_html
from powerd.report.numbers import decimals_for, value_text

MAX_POINTS = 2000
DASH = "—"
MINUS = "\u2212"

_PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
    "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
)  # fmt: skip
_PHASE_FILLS = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7")
_IDLE_FILL = "#9e9e9e"

_W, _H = 1160, 440
_ML, _MR, _MT, _MB = 72, 16, 30, 52
_PW, _PH = _W - _ML - _MR, _H - _MT - _MB

_CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #f7f7f5; color: #1d1d1f;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Liberation Sans", "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 16px 10px 24px; }
h1 { font-size: 22px; margin: 4px 0 2px; }
h2 { font-size: 17px; margin: 22px 0 6px; }
.sub { color: #555; margin: 0 0 12px; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 4px; padding: 6px; }
svg.chart { display: block; width: 100%; height: auto; font-size: 12px; }
svg.chart text { fill: #333; }
svg.chart .grid { stroke: #e4e4e4; stroke-width: 1; }
svg.chart .axis { stroke: #444; stroke-width: 1; }
svg.chart .plabel { font-weight: 600; fill: #222; }
svg.chart .empty { font-size: 16px; fill: #888; }
ul.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 6px 4px 2px;
  padding: 0; font-size: 13px; }
ul.legend svg { vertical-align: middle; margin-right: 5px; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 12.5px;
  border: 1px solid #ddd; }
th, td { border-bottom: 1px solid #e6e6e6; padding: 4px 6px; text-align: left;
  vertical-align: top; }
th { background: #eef0f3; font-weight: 600; white-space: nowrap; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fafafa; }
td.warn, tbody tr:nth-child(even) td.warn { background: #fff1cc; }
.flag { display: inline-block; background: #b85c00; color: #fff; border-radius: 3px;
  padding: 0 5px; margin: 1px 2px 1px 0; font-size: 11.5px; font-weight: 600; }
.meta { color: #666; font-size: 11.5px; }
.none { color: #888; font-style: italic; }
footer { margin-top: 22px; color: #555; font-size: 12.5px; border-top: 1px solid #ddd;
  padding-top: 8px; }
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return float(x) if math.isfinite(x) else None


def fmt(x: Any, sig: int = 4) -> str:
    """A number for people: ``sig`` significant digits, "—" for null or non-numbers."""
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else MINUS + "∞"
    v = _finite(x)
    if v is None:
        return DASH if x is None or isinstance(x, int | float) else _e(x)
    if isinstance(x, int) and not isinstance(x, bool) and abs(x) < 10**15:
        return f"{x:,}"
    a = abs(v)
    if a == 0:
        return "0"
    if 1e-3 <= a < 1e4:
        return f"{v:,.{sig}g}"
    if 1e4 <= a < 1e12:
        return f"{v:,.0f}"
    return f"{v:.{sig - 1}e}"


def fmt_pm(value: Any, unc: Any) -> str:
    """``value ± unc`` with the value rounded to the uncertainty's second significant digit
    (``report.numbers``: the same rule as the terminal table)."""
    v, u = _finite(value), _finite(unc)
    if v is None:
        return DASH
    if u is None:
        return f"{fmt(v)} ± {DASH}"
    decimals = decimals_for(u)
    if decimals is None or abs(v) >= 1e12:
        return f"{fmt(v)} ± {fmt(u, 2)}"
    return f"{v:,.{decimals}f} ± {u:,.{decimals}f}"


def decimate(
    t_ns: npt.NDArray[Any], power_w: npt.NDArray[Any], max_points: int = MAX_POINTS
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """At most ``max_points`` samples: each bucket's min and max, in time order.

    Non-finite values are dropped first; the input is sorted by time if it is not already.
    """
    t = np.asarray(t_ns, dtype=np.int64).ravel()
    p = np.asarray(power_w, dtype=np.float64).ravel()
    n = min(t.size, p.size)
    t, p = t[:n], p[:n]
    keep = np.isfinite(p)
    if not keep.all():
        t, p = t[keep], p[keep]
    if t.size > 1 and np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        t, p = t[order], p[order]
    n = t.size
    buckets = max(1, max_points // 2)
    if n <= max_points:
        return t, p
    k = -(-n // buckets)
    full = n // k
    body = p[: full * k].reshape(full, k)
    offsets = np.arange(full, dtype=np.int64) * k
    lo = body.argmin(axis=1) + offsets
    hi = body.argmax(axis=1) + offsets
    pairs = [np.stack([lo, hi], axis=1)]
    if full * k < n:
        tail = p[full * k :]
        pairs.append(
            np.array([[tail.argmin() + full * k, tail.argmax() + full * k]], dtype=np.int64)
        )
    idx = np.sort(np.concatenate(pairs), axis=1).ravel()
    idx = idx[np.concatenate(([True], idx[1:] != idx[:-1]))]
    return t[idx], p[idx]


def _nice_step(span: float, target: int) -> float:
    raw = span / max(1, target)
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= m * mag * (1 + 1e-9):
            return m * mag
    return 10.0 * mag


def _ticks(lo: float, hi: float, target: int) -> tuple[list[float], int]:
    step = _nice_step(hi - lo, target)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    while decimals < 12 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    return [i * step for i in range(first, last + 1)], decimals


def _tick_label(v: float, decimals: int) -> str:
    s = f"{v:,.{decimals}f}"
    return "0" if s.lstrip("-").strip("0.,") == "" else s.replace("-", MINUS)


def _y_grid(
    ticks: list[float], dec: int, sy: Callable[[float], float], left: int, width: int
) -> list[str]:
    """Horizontal grid lines with their labels left of the plot, one per y tick (SVG).

    Shared by the run report's chart and the comparison charts (``compare_html``), which differ
    only in their plot box (``left``/``width`` in SVG units)."""
    out = []
    for v in ticks:
        y = sy(v)
        out.append(
            f'<line class="grid" x1="{left}" x2="{left + width}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{left - 7}" y="{y + 4:.1f}" text-anchor="end">{_tick_label(v, dec)}</text>'
        )
    return out


def _x_grid(
    ticks: list[float], dec: int, sx: Callable[[float], float], top: int, height: int
) -> list[str]:
    """Vertical grid lines with their labels under the plot, one per x tick (SVG)."""
    out = []
    for v in ticks:
        x = sx(v)
        out.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + height}"/>'
            f'<text x="{x:.1f}" y="{top + height + 17}" text-anchor="middle">'
            f"{_tick_label(v, dec)}</text>"
        )
    return out


def _phase_spans(phases: list[dict[str, Any]]) -> list[tuple[int, int, dict[str, Any]]]:
    out = []
    for p in phases:
        b, e = p.get("t_begin_ns"), p.get("t_end_ns")
        if isinstance(b, int) and isinstance(e, int) and not isinstance(b, bool):
            out.append((b, max(b, e), p))
    return out


def _chart(
    phases: list[dict[str, Any]],
    traces: dict[str, tuple[npt.NDArray[Any], npt.NDArray[Any]]],
    units: dict[str, str],
) -> str:
    spans = _phase_spans(phases)
    reduced = {c: decimate(t, p) for c, (t, p) in sorted(traces.items())}
    with_data = {c: tp for c, tp in reduced.items() if tp[0].size}
    starts = [b for b, _, _ in spans] + [int(t[0]) for t, _ in with_data.values()]
    ends = [e for _, e, _ in spans] + [int(t[-1]) for t, _ in with_data.values()]
    origin = min(b for b, _, _ in spans) if spans else (min(starts) if starts else 0)
    x_lo = (min(starts) - origin) / 1e9 if starts else 0.0
    x_hi = (max(ends) - origin) / 1e9 if ends else 1.0
    if x_hi - x_lo <= 0:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    p_all = [p for _, p in with_data.values()]
    y_min = min(0.0, *(float(p.min()) for p in p_all)) if p_all else 0.0
    y_max = max(0.0, *(float(p.max()) for p in p_all)) if p_all else 1.0
    y_lo, y_hi = y_min, y_max + 0.05 * (y_max - y_min)
    if y_hi - y_lo <= 0:
        y_hi = y_lo + 1.0
    y_step = _nice_step(y_hi - y_lo, 6)
    y_lo, y_hi = math.floor(y_lo / y_step) * y_step, math.ceil(y_hi / y_step) * y_step
    y_ticks, y_dec = _ticks(y_lo, y_hi, 6)
    x_ticks, x_dec = _ticks(x_lo, x_hi, 10)

    def sx(s: float) -> float:
        return _ML + (s - x_lo) / (x_hi - x_lo) * _PW

    def sy(w: float) -> float:
        return _MT + _PH - (w - y_lo) / (y_hi - y_lo) * _PH

    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="{_e(_("Power versus time per channel"))}">',
        "<defs>",
    ]
    for i, (b, e, _p) in enumerate(spans):
        x0, x1 = sx((b - origin) / 1e9), sx((e - origin) / 1e9)
        parts.append(
            f'<clipPath id="ph{i}"><rect x="{x0:.1f}" y="{_MT}" '
            f'width="{max(x1 - x0, 0.0):.1f}" height="{_PH}"/></clipPath>'
        )
    parts.append("</defs>")
    parts += _y_grid(y_ticks, y_dec, sy, _ML, _PW)
    parts += _x_grid(x_ticks, x_dec, sx, _MT, _PH)
    names = sorted({str(p.get("phase")) for _, _, p in spans} - {"idle"})
    for i, (b, e, p) in enumerate(spans):
        x0, x1 = sx((b - origin) / 1e9), sx((e - origin) / 1e9)
        name = str(p.get("phase"))
        fill = _IDLE_FILL if name == "idle" else _PHASE_FILLS[names.index(name) % len(_PHASE_FILLS)]
        label = name if not p.get("trial") else f"{name} #{p['trial']}"
        parts.append(
            f'<g class="phase"><rect x="{x0:.1f}" y="{_MT}" width="{max(x1 - x0, 1.0):.1f}" '
            f'height="{_PH}" fill="{fill}" fill-opacity="0.16" stroke="{fill}" '
            f'stroke-opacity="0.55"><title>{_e(label)}: {fmt(p.get("duration_s"))} s</title></rect>'
            f'<text class="plabel" x="{x0 + 5:.1f}" y="{_MT + 16}" clip-path="url(#ph{i})">'
            f"{_e(label)}</text></g>"
        )
    colours = {c: _PALETTE[i % len(_PALETTE)] for i, c in enumerate(reduced)}
    for c, (t, w) in with_data.items():
        xs = _ML + ((t - origin).astype(np.float64) / 1e9 - x_lo) / (x_hi - x_lo) * _PW
        ys = _MT + _PH - (w - y_lo) / (y_hi - y_lo) * _PH
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), ys.tolist(), strict=True))
        parts.append(
            f'<polyline class="trace" data-channel="{_e(c)}" fill="none" '
            f'stroke="{colours[c]}" stroke-width="1.3" stroke-linejoin="round" '
            f'points="{points}"><title>{_e(c)}</title></polyline>'
        )
    if not with_data:
        parts.append(
            f'<text class="empty" x="{_ML + _PW / 2}" y="{_MT + _PH / 2}" '
            f'text-anchor="middle">{_e(_("no samples"))}</text>'
        )
    start = datetime.fromtimestamp(origin / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts += [
        f'<line class="axis" x1="{_ML}" x2="{_ML + _PW}" y1="{_MT + _PH}" y2="{_MT + _PH}"/>',
        f'<line class="axis" x1="{_ML}" x2="{_ML}" y1="{_MT}" y2="{_MT + _PH}"/>',
        f'<text x="{_ML + _PW / 2}" y="{_H - 10}" text-anchor="middle">'
        f"{_e(_('time (s) from {start}').format(start=start))}</text>",
        f'<text transform="translate(16 {_MT + _PH / 2}) rotate(-90)" '
        f'text-anchor="middle">{_e(_("power (W)"))}</text>',
        "</svg>",
    ]
    legend = ['<ul class="legend">']
    for c, colour in colours.items():
        note = f" [{_e(units[c])}]" if c in units else ""
        empty = f' <span class="none">({_e(_("no samples"))})</span>' if c not in with_data else ""
        legend.append(
            f'<li><svg width="22" height="10" aria-hidden="true"><line x1="1" y1="5" x2="21" '
            f'y2="5" stroke="{colour}" stroke-width="3"/></svg>{_e(c)}{note}{empty}</li>'
        )
    legend.append("</ul>")
    return "".join(parts) + ("".join(legend) if colours else "")


def _flags_cell(flags: Any) -> str:
    items = list(flags) if isinstance(flags, list | tuple) else []
    if not items:
        return '<td class="flags"></td>'
    chips = "".join(f'<span class="flag">{_e(f)}</span>' for f in items)
    return f'<td class="flags warn">{chips}</td>'


def _num_td(x: Any, sig: int = 4) -> str:
    return f'<td class="n">{fmt(x, sig)}</td>'


def _mean_td(entry: dict[str, Any]) -> str:
    """Mean power rounded to its own uncertainty (the energy's over the duration)."""
    mean, unc, dur = (
        _finite(entry.get(k)) for k in ("mean_power_w", "uncertainty_j", "duration_s")
    )
    if mean is None or unc is None or not dur:
        return _num_td(entry.get("mean_power_w"))
    return f'<td class="n">{value_text(mean, unc / dur, ",")}</td>'


def _meta(meta: Any) -> str:
    if not isinstance(meta, dict) or not meta:
        return ""
    items = ", ".join(f"{_e(k)}={_e(v)}" for k, v in meta.items())
    return f'<div class="meta">{items}</div>'


def _timing(timing: Any) -> str:
    if not isinstance(timing, dict):
        return DASH
    source = _e(timing.get("source")) if timing.get("source") is not None else DASH
    unc = _finite(timing.get("uncertainty_ns"))
    ms = fmt(unc / 1e6, 3) if unc is not None else DASH
    return f"{source} ± {ms} ms"


def _head_row(names: tuple[str, ...]) -> str:
    """A table's header row, each column name from the catalogue."""
    return "<tr>" + "".join(f"<th>{_e(_(n))}</th>" for n in names) + "</tr>"


def _results_table(phases: list[dict[str, Any]]) -> str:
    head = _head_row(
        (
            N_("phase"),
            N_("trial"),
            N_("duration s"),
            N_("count"),
            N_("energy J ± U95"),
            N_("mean W"),
            N_("peak W"),
            N_("J per unit ± U95"),
            N_("idle W"),
            N_("net energy J ± U95"),
            N_("flags"),
            N_("timing ± ms"),
        )
    )
    rows = []
    for p in phases:
        unit = p.get("unit")
        has_count = p.get("count") is not None and unit not in (None, "")
        count = fmt(p.get("count")) + (f" {_e(unit)}" if has_count else "")
        rows.append(
            f'<tr class="phase-row"><td>{_e(p.get("phase"))}{_meta(p.get("meta"))}</td>'
            f"{_num_td(p.get('trial'))}{_num_td(p.get('duration_s'))}"
            f'<td class="n">{count}</td>'
            f'<td class="n energy">{fmt_pm(p.get("energy_j"), p.get("uncertainty_j"))}</td>'
            f"{_mean_td(p)}{_num_td(p.get('peak_power_w'))}"
            f'<td class="n">{fmt_pm(p.get("j_per_unit"), p.get("j_per_unit_uncertainty"))}</td>'
            f"{_num_td(p.get('idle_power_w'))}"
            f'<td class="n">{fmt_pm(p.get("net_energy_j"), p.get("net_uncertainty_j"))}</td>'
            f"{_flags_cell(p.get('flags'))}"
            f"<td>{_timing(p.get('timing'))}</td></tr>"
        )
    if not rows:
        rows.append(f'<tr><td colspan="12" class="none">{_e(_("no phases in this run"))}</td></tr>')
    return f'<table id="results"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _mlperf_table(phases: list[dict[str, Any]]) -> str:
    """MLPerf's figures (mean of the samples strictly inside LoadGen's window) beside powerd's
    integrated ones, for each phase that came from a LoadGen log; "" when there is none."""
    rows = []
    for p in phases:
        m = p.get("mlperf")
        if not isinstance(m, dict):
            continue
        mj = m.get("powerd_mj_per_query")
        rows.append(
            f"<tr><td>{_e(p.get('phase'))}</td><td>{_e(m.get('scenario'))}</td>"
            f"<td>{_e(m.get('power_begin'))} – {_e(m.get('power_end'))}</td>"
            f"{_num_td(m.get('window_s'))}{_num_td(m.get('query_count'))}"
            f"{_num_td(m.get('sample_count'))}{_num_td(m.get('avg_power_w'), 5)}"
            f"{_num_td(m.get('energy_mj_per_query'), 5)}"
            f'<td class="n">{fmt_pm(mj, m.get("powerd_mj_per_query_uncertainty"))}</td>'
            f'<td class="n">{fmt_pm(m.get("powerd_energy_j"), m.get("powerd_uncertainty_j"))}</td>'
            f"{_flags_cell(m.get('flags'))}</tr>"
        )
    if not rows:
        return ""
    head = _head_row(
        (
            N_("phase"),
            N_("scenario"),
            N_("LoadGen window (UTC)"),
            N_("window s"),
            N_("queries"),
            N_("samples"),
            N_("MLPerf avg W"),
            N_("MLPerf mJ/query"),
            N_("powerd mJ/query ± U95"),
            N_("powerd energy J ± U95"),
            N_("flags"),
        )
    )
    note = (
        '<p class="sub">'
        + _e(
            _(
                "MLPerf's method: the plain mean of the primary channels' samples strictly inside "
                "LoadGen's (power_begin, power_end), W > 0, times the window, per query. powerd's: "
                "the integral over the same window with its 95 % uncertainty."
            )
        )
        + "</p>"
    )
    return (
        f'<h2>{_e(_("MLPerf"))}</h2><table id="mlperf"><thead>{head}</thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{note}"
    )


def _channels_table(phases: list[dict[str, Any]]) -> str:
    head = _head_row(
        (
            N_("phase"),
            N_("channel"),
            N_("primary"),
            N_("method"),
            N_("source class"),
            N_("samples"),
            N_("coverage %"),
            N_("energy J ± U95"),
            N_("mean W"),
            N_("peak W"),
            N_("flags"),
        )
    )
    rows = []
    for p in phases:
        channels = p.get("channels")
        if not isinstance(channels, dict):
            continue
        label = _e(p.get("phase")) + (f" #{_e(p['trial'])}" if p.get("trial") else "")
        for c, ch in channels.items():
            if not isinstance(ch, dict):
                continue
            cov = _finite(ch.get("coverage"))
            primary = ch.get("primary")
            primary_s = DASH if primary is None else _e(_("yes") if primary else _("no"))
            rows.append(
                f"<tr><td>{label}</td><td>{_e(c)}</td><td>{primary_s}</td>"
                f"<td>{_e(ch.get('method', DASH))}</td><td>{_e(ch.get('source_class', DASH))}</td>"
                f"{_num_td(ch.get('samples'))}"
                f'<td class="n">{DASH if cov is None else f"{cov * 100:.1f}"}</td>'
                f'<td class="n">{fmt_pm(ch.get("energy_j"), ch.get("uncertainty_j"))}</td>'
                f"{_num_td(ch.get('mean_power_w'))}{_num_td(ch.get('peak_power_w'))}"
                f"{_flags_cell(ch.get('flags'))}</tr>"
            )
    if not rows:
        rows.append(f'<tr><td colspan="11" class="none">{_e(_("no channels"))}</td></tr>')
    return f'<table id="channels"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


_TRIAL_FIGURES = (
    ("energy_j", N_("energy J")),
    ("mean_power_w", N_("mean power W")),
    ("j_per_unit", N_("J per unit")),
    ("net_energy_j", N_("net energy J")),
)


def _trials_table(trials: list[Any]) -> str:
    head = _head_row(
        (
            N_("phase"),
            N_("trials"),
            N_("figure"),
            N_("median"),
            N_("min"),
            N_("max"),
            N_("spread %"),
        )
    )
    rows = []
    for tr in trials:
        if not isinstance(tr, dict):
            continue
        figs = [(k, n) for k, n in _TRIAL_FIGURES if isinstance(tr.get(k), dict)]
        lead = f"<td>{_e(tr.get('phase'))}</td>{_num_td(tr.get('trials'))}"
        if not figs:
            rows.append(f'<tr>{lead}<td colspan="5" class="none">{_e(_("no figures"))}</td></tr>')
        for key, name in figs:
            s = tr[key]
            spread = _finite(s.get("rel_spread"))
            spread_s = fmt(s.get("rel_spread")) if spread is None else fmt(spread * 100, 3)
            rows.append(
                f"<tr>{lead}<td>{_e(_(name))}</td>{_num_td(s.get('median'))}{_num_td(s.get('min'))}"
                f'{_num_td(s.get("max"))}<td class="n">{spread_s}</td></tr>'
            )
    return f'<table id="trials"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _zoom(
    phases: list[dict[str, Any]],
    traces: dict[str, tuple[npt.NDArray[Any], npt.NDArray[Any]]],
    units: dict[str, str],
) -> tuple[str, str, list[str]]:
    """The interactive uPlot chart (``powerd.report.zoom``) on the SVG chart's time origin and
    phase colours; the SVG stays for print and script-less readers."""
    from powerd.report.zoom import zoom_section

    spans = _phase_spans(phases)
    starts = [b for b, _, _ in spans] or [int(t[0]) for t, _ in traces.values() if len(t)]
    origin = min(starts) if starts else 0
    names = sorted({str(p.get("phase")) for _, _, p in spans} - {"idle"})
    shaded = []
    for b, e, p in spans:
        name = str(p.get("phase"))
        fill = _IDLE_FILL if name == "idle" else _PHASE_FILLS[names.index(name) % len(_PHASE_FILLS)]
        shaded.append((b, e, name if not p.get("trial") else f"{name} #{p['trial']}", fill))
    start = datetime.fromtimestamp(origin / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return zoom_section(traces, shaded, units, origin, start)


def render_html(
    result: dict[str, Any],
    traces: dict[str, tuple[npt.NDArray[Any], npt.NDArray[Any]]],
    units: dict[str, str] | None = None,
    generated_by: str = "powerd",
    manifest: dict[str, Any] | None = None,
) -> str:
    """The report page of a contract-2 ``result`` with ``traces`` (channel → (UTC ns, W)).

    ``units`` optionally names each channel's native unit (e.g. "J" for an energy counter whose
    trace is its derived power); it is noted in the chart's legend.
    """
    phases = [p for p in result.get("phases") or [] if isinstance(p, dict)]
    trials = [t for t in result.get("trials") or [] if isinstance(t, dict)]
    n_ch = len(traces)
    phases_text = (_("{n} phase") if len(phases) == 1 else _("{n} phases")).format(n=len(phases))
    channels_text = (_("{n} channel") if n_ch == 1 else _("{n} channels")).format(n=n_ch)
    summary = _e(
        _("{phases}, {channels}; contract 2 (result v{v})").format(
            phases=phases_text, channels=channels_text, v=result.get("v", DASH)
        )
    )
    trials_html = f"<h2>{_e(_('Trials'))}</h2>{_trials_table(trials)}" if trials else ""
    from powerd.verify.render import verification_html  # added section (powerd verify)

    verify_html = verification_html(result.get("verification"))
    digest = None if manifest is None else manifest_digest(manifest)
    audit_html = verdicts_section(result) + manifest_section(manifest, digest) + signature_block()
    zoom_html, zoom_css, script_hashes = _zoom(phases, traces, units or {})
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{lang()}"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'; "
        f'script-src {" ".join(script_hashes)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(_('powerd report — run {run}').format(run=result.get('run', DASH)))}"
        f"</title><style>{_CSS}{PRINT_CSS}{zoom_css}</style></head>"
        f"<body><main><h1>{_e(_('Run {run}').format(run=result.get('run', DASH)))}</h1>"
        f'<p class="sub">{summary}</p>'
        f'<h2>{_e(_("Power"))}</h2><figure id="svgchart">{_chart(phases, traces, units or {})}'
        f"</figure>{zoom_html}"
        f"<h2>{_e(_('Results'))}</h2>{_results_table(phases)}"
        f"{_mlperf_table(phases)}"
        f"<h2>{_e(_('Channels'))}</h2>{_channels_table(phases)}"
        f"{cross_checks_html(result)}"
        f"{trials_html}{verify_html}"
        f"{audit_html}"
        "<footer>"
        + _e(
            _(
                "Uncertainties (± U95) are absolute 95 % intervals, in the unit of their figure; "
                "each figure is rounded to its uncertainty's second significant digit. Times are "
                "UTC. Generated by {generator}."
            ).format(generator=generated_by)
        )
        + "</footer>"
        "</main></body></html>\n"
    )
