"""The verification shown to people: a terminal table and the HTML report's section.

Both read only the ``verification`` object of a result (contract 2, added key), so a stored
result renders the same later. A claim's figure, its interval [lo, hi] (95 %) and its margin
(figure − claim) are rounded where the interval says (``report.numbers``: two significant digits
of its half-width, as every figure a person reads), so the figure reads as in the results table;
the margin is also given in units of U (the half-width on the side facing the claim). Other
numbers (seconds, an interval with no width) have 4 significant digits.
"""

from __future__ import annotations

from html import escape
from typing import Any

from powerd.i18n import N_, _, ljust, tr_reason, width
from powerd.report.numbers import decimals_for, sig_text, value_text

# the protocol's ``aggregate`` values, shown translated
AGGREGATES = (N_("all"), N_("median"))
TABLE_HEAD = (
    N_("claim"),
    N_("figure"),
    N_("95% interval"),
    N_("margin"),
    N_("margin/U"),
    N_("trials"),
    N_("verdict"),
)
HTML_HEAD = (
    N_("claim"),
    N_("figure"),
    N_("95 % interval"),
    N_("margin"),
    N_("margin / U"),
    N_("trials used"),
    N_("verdict"),
    N_("reason"),
)


def _g(x: Any) -> str:
    return "-" if x is None else sig_text(float(x), 4)


def _span(lo: Any, hi: Any) -> str:
    return f"[{_g(lo)}, {'inf' if hi is None and lo is not None else _g(hi)}]"


def _half(c: dict[str, Any]) -> float | None:
    """The claim's interval half-width (one-sided: figure − lo), the U its numbers round to."""
    lo, hi, fig = c.get("lo"), c.get("hi"), c.get("figure_value")
    if lo is not None and hi is not None:
        return (float(hi) - float(lo)) / 2
    if lo is not None and fig is not None:
        return float(fig) - float(lo)
    return None


def _claim_numbers(c: dict[str, Any]) -> tuple[str, str, str]:
    """Figure, ``[lo, hi]`` and margin rounded where the interval's half-width says."""
    u = _half(c)
    if u is None or decimals_for(u) is None:
        return _g(c.get("figure_value")), _span(c.get("lo"), c.get("hi")), _g(c.get("margin"))
    lo, hi = c.get("lo"), c.get("hi")
    span = f"[{value_text(lo, u)}, {'inf' if hi is None else value_text(hi, u)}]"
    return value_text(c.get("figure_value"), u), span, value_text(c.get("margin"), u)


def _mu(x: Any) -> str:
    return "-" if x is None else f"{float(x):+.2f}"


def verification_table(v: dict[str, Any]) -> str:
    """Stability, then one row per claim: figure, 95 % interval, margin, margin/U, verdict."""
    st = v.get("stability") or {}
    if st.get("reached"):
        stab = _("stability: reached after {s} s").format(
            s=_g(st.get("time_to_stable_s") or st.get("warmup_s"))
        )
    else:
        flag = _(" (flag not_stable)") if st.get("required") else _(" (not required)")
        stab = _("stability: not reached{flag}: {reason}").format(
            flag=flag, reason=tr_reason(st.get("reason", ""))
        )
    temp = (st.get("temperature") or {}).get("reason")
    head = tuple(_(h) for h in TABLE_HEAD)
    rows = [head]
    for c in v.get("claims") or []:
        fig, span, margin = _claim_numbers(c)
        rows.append(
            (
                str(c["claim"]),
                fig,
                span,
                margin,
                _mu(c.get("margin_u")),
                f"{c.get('usable_trials')}/{c.get('planned_trials')} {_(str(c.get('aggregate')))}",
                _(str(c["verdict"])).upper(),
            )
        )
    widths = [max(width(r[i]) for r in rows) for i in range(len(head))]
    lines = [_("verification"), stab]
    if temp:
        lines.append(_("temperature: not checked: {reason}").format(reason=tr_reason(temp)))
    checked = st.get("temperature") or {}
    if checked.get("checked"):
        devs = [
            x["max_deviation_c"]
            for x in (checked.get("sensors") or {}).values()
            if x.get("max_deviation_c") is not None
        ]
        lines.append(
            _("temperature: largest deviation {dev} °C over {window_s} s (bound +-{c} °C)").format(
                dev=_g(max(devs)) if devs else "-",
                window_s=_g(checked.get("window_s")),
                c=_g(checked.get("bound_c")),
            )
        )
    lines += ["  ".join(ljust(x, w) for x, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for c in v.get("claims") or []:
        lines.append(f"  {c['claim']}: {_(str(c['verdict']))}: {tr_reason(c.get('reason', ''))}")
    lines.append(
        _("overall: {verdict} (exit {code})").format(
            verdict=_(str(v.get("verdict", ""))).upper(), code=v.get("exit_code")
        )
    )
    return "\n".join(lines)


_CLASS = {"supported": "ok", "not supported": "bad", "inconclusive": "warn"}


def verification_html(v: Any) -> str:
    """The HTML report's Verification section ("" when the result has none)."""
    if not isinstance(v, dict):
        return ""
    e = escape
    st: dict[str, Any] = v["stability"] if isinstance(v.get("stability"), dict) else {}
    if st.get("reached"):
        stab = e(
            _("reached after {s} s").format(s=_g(st.get("time_to_stable_s") or st.get("warmup_s")))
        )
    else:
        stab = _("not reached") + (_(" — flag not_stable") if st.get("required") else "")
        stab = e(f"{stab}: {tr_reason(st.get('reason', ''))}")
    temp = (st.get("temperature") or {}) if isinstance(st.get("temperature"), dict) else {}
    rows = []
    for c in v.get("claims") or []:
        if not isinstance(c, dict):
            continue
        verdict = str(c.get("verdict", ""))
        fig, span, margin = _claim_numbers(c)
        rows.append(
            f'<tr><td>{e(str(c.get("claim")))}</td><td class="n">{e(fig)}'
            f'</td><td class="n">{e(span)}</td>'
            f'<td class="n">{e(margin)}</td>'
            f'<td class="n">{e(_mu(c.get("margin_u")))}</td>'
            f'<td class="n">{e(str(c.get("usable_trials")))}/{e(str(c.get("planned_trials")))}'
            f" ({e(_(str(c.get('aggregate'))))})</td>"
            f'<td class="verdict {_CLASS.get(verdict, "")}"><b>{e(_(verdict))}</b></td>'
            f"<td>{e(tr_reason(c.get('reason', '')))}</td></tr>"
        )
    head = "".join(f"<th>{e(_(h))}</th>" for h in HTML_HEAD)
    proto: dict[str, Any] = v["protocol"] if isinstance(v.get("protocol"), dict) else {}
    overall = e(_(str(v.get("verdict", ""))))
    temp_text = tr_reason(temp["reason"]) if temp.get("reason") else _("checked")
    return (
        f'<h2>{e(_("Verification"))}</h2><section id="verification">'
        "<p>"
        + _("Overall: {verdict} (exit code {code}).").format(
            verdict=f"<b>{overall}</b>", code=e(str(v.get("exit_code")))
        )
        + " "
        + _("Protocol {path}, SHA-256 {sha}.").format(
            path=e(str(proto.get("path", ""))),
            sha=f"<code>{e(str(proto.get('sha256', '')))}</code>",
        )
        + "</p><p>"
        + _("Stability: {text}. Temperature: {temp}.").format(text=stab, temp=e(temp_text))
        + "</p>"
        f'<table id="claims"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        "<p>"
        + e(
            _(
                "Supported: the whole 95 % interval of the figure is on the claim's side; not "
                "supported: wholly on the wrong side; inconclusive: it straddles the claim, or a "
                "flag (not_stable, calibration_due, too few usable trials, …) means the interval "
                "may not hold. Margin = figure − claim; margin / U in units of the interval's "
                "half-width."
            )
        )
        + "</p></section>"
    )
