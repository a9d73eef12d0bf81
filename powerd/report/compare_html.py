"""Self-contained HTML page of a comparison (``powerd.compare``): charts and tables.

Like the run report (``report.html``): one HTML5 document, inline CSS and hand-written inline SVG,
no JavaScript and nothing fetched (a Content-Security-Policy forbids it), every string escaped.
Charts: J per unit and units per J as bars with 95 % error bars (one ``rect.bar`` and, where the
uncertainty is known, one ``g.err`` per item, ``data-item`` naming it), and efficiency (units/J)
against throughput (units/s) as points with error bars both ways (``g.pt``). A missing figure
draws no bar and says so; a missing uncertainty draws no error bar and is marked "± ?".
"""

from __future__ import annotations

from typing import Any

from powerd.i18n import N_, _, lang, tr_reason
from powerd.report.compare_text import TABLE_FIGURES, figure_unit
from powerd.report.html import (
    _CSS,
    _PALETTE,
    DASH,
    _e,
    _flags_cell,
    _ticks,
    _x_grid,
    _y_grid,
    fmt,
    fmt_pm,
)

_W, _H = 1160, 340
_ML, _MR, _MT, _MB = 84, 16, 24, 56
_PW, _PH = _W - _ML - _MR, _H - _MT - _MB

_EXTRA_CSS = """
svg.chart .bar { fill-opacity: 0.75; }
svg.chart .err line { stroke: #111; stroke-width: 1.5; }
svg.chart .pt circle { stroke: #111; stroke-width: 1; }
td.sig, tbody tr:nth-child(even) td.sig { background: #e3f2e1; font-weight: 600; }
td.nsig { color: #555; }
td.unk, tbody tr:nth-child(even) td.unk { background: #fff1cc; }
div.wide { overflow-x: auto; }
"""
_HEADS = {
    "j_per_unit": N_("J per unit"),
    "units_per_j": N_("units per J"),
    "mean_power_w": N_("mean W"),
    "units_per_s": N_("units per s"),
    "idle_power_w": N_("idle W"),
    "net_energy_j": N_("net J"),
    "net_j_per_unit": N_("net J per unit"),
}


def _y_scale(lo: float, hi: float) -> tuple[list[float], int, float, float]:
    if hi - lo <= 0:
        hi = lo + (abs(lo) or 1.0)
    ticks, dec = _ticks(lo, hi, 6)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else (hi - lo)
    lo2 = min(lo, ticks[0]) if ticks else lo
    hi2 = max(hi, ticks[-1]) if ticks else hi
    if ticks and ticks[-1] < hi:
        hi2 = ticks[-1] + step
        ticks.append(hi2)
    return ticks, dec, lo2, hi2


def _unit_of(doc: dict[str, Any], key: str) -> str:
    units = {it.get("unit") for it in doc["items"]}
    return figure_unit(key, units.pop() if len(units) == 1 else None)


def bar_chart(doc: dict[str, Any], key: str, title: str) -> str:
    """Bars of ``key`` per item with their 95 % error bars."""
    items = doc["items"]
    figs = [it["figures"][key] for it in items]
    tops = [f["value"] + (f["u95"] or 0.0) for f in figs if f["value"] is not None]
    bottoms = [f["value"] - (f["u95"] or 0.0) for f in figs if f["value"] is not None]
    y_lo = min(0.0, *bottoms) if bottoms else 0.0
    y_hi = max(0.0, *tops) * 1.05 if tops else 1.0
    ticks, dec, y_lo, y_hi = _y_scale(y_lo, y_hi if y_hi > y_lo else y_lo + 1.0)

    def sy(v: float) -> float:
        return _MT + _PH - (v - y_lo) / (y_hi - y_lo) * _PH

    slot = _PW / max(1, len(items))
    bar_w = min(80.0, slot * 0.6)
    parts = [
        f'<svg class="chart" id="chart-{_e(key)}" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="{_e(title)}">'
    ]
    parts += _y_grid(ticks, dec, sy, _ML, _PW)
    for i, (it, f) in enumerate(zip(items, figs, strict=True)):
        cx = _ML + slot * (i + 0.5)
        label = _e(it["label"])
        parts.append(f'<text x="{cx:.1f}" y="{_MT + _PH + 16}" text-anchor="middle">{label}</text>')
        if f["value"] is None:
            parts.append(
                f'<text class="empty" x="{cx:.1f}" y="{_MT + _PH - 8}" '
                f'text-anchor="middle" data-item="{label}">{_e(_("no figure"))}</text>'
            )
            continue
        y0, y1 = sy(0.0), sy(f["value"])
        colour = _PALETTE[i % len(_PALETTE)]
        parts.append(
            f'<rect class="bar" data-item="{label}" data-value="{f["value"]!r}" '
            f'x="{cx - bar_w / 2:.1f}" y="{min(y0, y1):.1f}" width="{bar_w:.1f}" '
            f'height="{max(abs(y1 - y0), 0.5):.1f}" fill="{colour}">'
            f"<title>{label}: {fmt_pm(f['value'], f['u95'])}</title></rect>"
        )
        if f["u95"] is None:
            parts.append(f'<text x="{cx:.1f}" y="{y1 - 6:.1f}" text-anchor="middle">± ?</text>')
            continue
        ya, yb = sy(f["value"] - f["u95"]), sy(f["value"] + f["u95"])
        cap = bar_w / 4
        parts.append(
            f'<g class="err" data-item="{label}" data-u95="{f["u95"]!r}">'
            f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{ya:.1f}" y2="{yb:.1f}"/>'
            f'<line x1="{cx - cap:.1f}" x2="{cx + cap:.1f}" y1="{ya:.1f}" y2="{ya:.1f}"/>'
            f'<line x1="{cx - cap:.1f}" x2="{cx + cap:.1f}" y1="{yb:.1f}" y2="{yb:.1f}"/></g>'
        )
    parts += [
        f'<line class="axis" x1="{_ML}" x2="{_ML + _PW}" y1="{sy(max(y_lo, 0.0)):.1f}" '
        f'y2="{sy(max(y_lo, 0.0)):.1f}"/>',
        f'<line class="axis" x1="{_ML}" x2="{_ML}" y1="{_MT}" y2="{_MT + _PH}"/>',
        f'<text transform="translate(18 {_MT + _PH / 2}) rotate(-90)" text-anchor="middle">'
        f"{_e(title)} ({_e(_unit_of(doc, key))})</text>",
        "</svg>",
    ]
    return "".join(parts)


def scatter_chart(doc: dict[str, Any]) -> str:
    """Efficiency (units/J) against throughput (units/s), with 95 % error bars both ways."""
    pts = []
    for i, it in enumerate(doc["items"]):
        fx, fy = it["figures"]["units_per_s"], it["figures"]["units_per_j"]
        if fx["value"] is not None and fy["value"] is not None:
            pts.append((i, it, fx, fy))
    xs = [
        v
        for _, _, fx, _ in pts
        for v in (fx["value"] - (fx["u95"] or 0), fx["value"] + (fx["u95"] or 0))
    ]
    ys = [
        v
        for _, _, _, fy in pts
        for v in (fy["value"] - (fy["u95"] or 0), fy["value"] + (fy["u95"] or 0))
    ]
    x_ticks, x_dec, x_lo, x_hi = _y_scale(
        min(0.0, *xs) if xs else 0.0, max(xs) * 1.05 if xs else 1.0
    )
    y_ticks, y_dec, y_lo, y_hi = _y_scale(
        min(0.0, *ys) if ys else 0.0, max(ys) * 1.05 if ys else 1.0
    )

    def sx(v: float) -> float:
        return _ML + (v - x_lo) / (x_hi - x_lo) * _PW

    def sy(v: float) -> float:
        return _MT + _PH - (v - y_lo) / (y_hi - y_lo) * _PH

    parts = [
        f'<svg class="chart" id="chart-scatter" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="{_e(_("Efficiency against throughput"))}">'
    ]
    parts += _y_grid(y_ticks, y_dec, sy, _ML, _PW)
    parts += _x_grid(x_ticks, x_dec, sx, _MT, _PH)
    placed: list[tuple[float, float]] = []
    for i, it, fx, fy in pts:
        label = _e(it["label"])
        cx, cy = sx(fx["value"]), sy(fy["value"])
        # points at (nearly) the same place get their labels stacked, not overprinted
        stack = sum(1 for px, py in placed if abs(px - cx) < 60 and abs(py - cy) < 12)
        placed.append((cx, cy))
        colour = _PALETTE[i % len(_PALETTE)]
        err = []
        if fx["u95"] is not None:
            err.append(
                f'<line class="err-x" x1="{sx(fx["value"] - fx["u95"]):.1f}" '
                f'x2="{sx(fx["value"] + fx["u95"]):.1f}" y1="{cy:.1f}" y2="{cy:.1f}" '
                f'stroke="#111" stroke-width="1.5"/>'
            )
        if fy["u95"] is not None:
            err.append(
                f'<line class="err-y" x1="{cx:.1f}" x2="{cx:.1f}" '
                f'y1="{sy(fy["value"] - fy["u95"]):.1f}" y2="{sy(fy["value"] + fy["u95"]):.1f}" '
                f'stroke="#111" stroke-width="1.5"/>'
            )
        parts.append(
            f'<g class="pt" data-item="{label}">{"".join(err)}'
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="{colour}">'
            f"<title>{label}: "
            + _e(
                _("{per_j} per J at {per_s} per s").format(
                    per_j=fmt_pm(fy["value"], fy["u95"]), per_s=fmt_pm(fx["value"], fx["u95"])
                )
            )
            + "</title></circle>"
            f'<text x="{cx + 9:.1f}" y="{cy - 8 + 14 * stack:.1f}">{label}</text></g>'
        )
    if not pts:
        parts.append(
            f'<text class="empty" x="{_ML + _PW / 2}" y="{_MT + _PH / 2}" '
            f'text-anchor="middle">'
            f"{_e(_('no item has both figures (a count is needed)'))}</text>"
        )
    parts += [
        f'<line class="axis" x1="{_ML}" x2="{_ML + _PW}" y1="{_MT + _PH}" y2="{_MT + _PH}"/>',
        f'<line class="axis" x1="{_ML}" x2="{_ML}" y1="{_MT}" y2="{_MT + _PH}"/>',
        f'<text x="{_ML + _PW / 2}" y="{_H - 10}" text-anchor="middle">'
        f"{_e(_('throughput'))} ({_e(_unit_of(doc, 'units_per_s'))})</text>",
        f'<text transform="translate(18 {_MT + _PH / 2}) rotate(-90)" text-anchor="middle">'
        f"{_e(_('efficiency'))} ({_e(_unit_of(doc, 'units_per_j'))})</text>",
        "</svg>",
    ]
    return "".join(parts)


def _pm_cell(fig: dict[str, Any]) -> str:
    if fig["value"] is not None and fig["u95"] is None:
        return f'<td class="n unk">{fmt(fig["value"])} ± ?</td>'
    return f'<td class="n">{fmt_pm(fig["value"], fig["u95"])}</td>'


def _items_table(doc: dict[str, Any]) -> str:
    head = "".join(f'<th title="{_e(k)}">{_e(_(_HEADS[k]))} ± U95</th>' for k in TABLE_FIGURES)
    rows = []
    for it in doc["items"]:
        cells = "".join(_pm_cell(it["figures"][k]) for k in TABLE_FIGURES)
        rows.append(
            f'<tr class="item-row"><td>{_e(it["label"])}</td><td>{_e(it.get("unit") or DASH)}</td>'
            f'<td class="n">{fmt(it.get("count"))}</td>'
            f'<td class="n">{fmt(it.get("duration_s"))}</td>{cells}'
            f"{_flags_cell(it.get('flags'))}</tr>"
        )
    return (
        '<div class="wide"><table id="items"><thead><tr>'
        f"<th>{_e(_('item'))}</th><th>{_e(_('unit'))}</th><th>{_e(_('count'))}</th>"
        f"<th>{_e(_('duration s'))}</th>{head}<th>{_e(_('flags'))}</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


_CALL_CLASS = {"significant": "sig", "not significant": "nsig", "unknown": "unk"}


def _pairs_table(doc: dict[str, Any]) -> str:
    rows = []
    for pair in doc["pairs"]:
        unit = doc["items"][pair["a"]].get("unit")
        shared = ", ".join(pair["shared_channels"])
        for key in TABLE_FIGURES:
            f = pair["figures"][key]
            why = f" ({_e(tr_reason(f['reason']))})" if f.get("reason") else ""
            rows.append(
                f'<tr class="pair-row" data-figure="{_e(key)}"><td>{_e(pair["a_label"])}</td>'
                f"<td>{_e(pair['b_label'])}</td><td>{_e(key)} [{_e(figure_unit(key, unit))}]</td>"
                f'<td class="n">{fmt_pm(f["diff"], f["u95_diff"])}</td>'
                f'<td class="n">{fmt(f["ratio"])}</td>'
                f'<td class="call {_CALL_CLASS[f["call"]]}">{_e(_(f["call"]))}{why}</td>'
                f"<td>{_e(shared) or DASH}</td>{_flags_cell(pair.get('flags'))}</tr>"
            )
    return (
        '<table id="pairs"><thead><tr><th>a</th><th>b</th>'
        f"<th>{_e(_('figure'))}</th><th>b − a ± U95</th><th>b / a</th><th>{_e(_('call'))}</th>"
        f"<th>{_e(_('shared channels'))}</th><th>{_e(_('flags'))}</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def render_compare_html(doc: dict[str, Any], generated_by: str = "powerd") -> str:
    """The page of a comparison document."""
    n = len(doc["items"])
    title = _e(_("powerd comparison — {n} items by {by}").format(n=n, by=_(doc["by"])))
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{lang()}"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_CSS}{_EXTRA_CSS}</style></head>"
        f'<body><main><h1>{title}</h1><p class="sub">'
        f"{', '.join(_e(it['label']) for it in doc['items'])}</p>"
        f"<h2>{_e(_('J per unit'))}</h2>"
        f"<figure>{bar_chart(doc, 'j_per_unit', _('J per unit'))}</figure>"
        f"<h2>{_e(_('Units per J'))}</h2>"
        f"<figure>{bar_chart(doc, 'units_per_j', _('units per J'))}</figure>"
        f"<h2>{_e(_('Efficiency against throughput'))}</h2><figure>{scatter_chart(doc)}</figure>"
        f"<h2>{_e(_('Items'))}</h2>{_items_table(doc)}"
        f"<h2>{_e(_('Pairs'))}</h2>{_pairs_table(doc)}"
        f'<p class="sub" id="rule">'
        f"{_e(_('Rule: {rule}').format(rule=tr_reason(doc['rule'])))}</p>"
        "<footer>"
        + _e(
            _(
                "Uncertainties (± U95) are absolute 95 % intervals, in the unit of their figure; "
                "error bars span value ± U95. Generated by {generator}."
            ).format(generator=generated_by)
        )
        + "</footer>"
        "</main></body></html>\n"
    )
