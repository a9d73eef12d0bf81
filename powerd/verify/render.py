"""The verification shown to people: a terminal table and the HTML report's section.

Both read only the ``verification`` object of a result (contract 2, added key), so a stored
result renders the same later. Figures are shown with 4 significant digits, the interval as
[lo, hi] (95 %), the margin as figure − claim and in units of U (the interval's half-width on the
side facing the claim).
"""

from __future__ import annotations

from html import escape
from typing import Any

from powerd.report.numbers import sig_text


def _g(x: Any) -> str:
    return "-" if x is None else sig_text(float(x), 4)


def _span(lo: Any, hi: Any) -> str:
    return f"[{_g(lo)}, {'inf' if hi is None and lo is not None else _g(hi)}]"


def _mu(x: Any) -> str:
    return "-" if x is None else f"{float(x):+.2f}"


def verification_table(v: dict[str, Any]) -> str:
    """Stability, then one row per claim: figure, 95 % interval, margin, margin/U, verdict."""
    st = v.get("stability") or {}
    if st.get("reached"):
        stab = f"stability: reached after {_g(st.get('time_to_stable_s') or st.get('warmup_s'))} s"
    else:
        flag = " (flag not_stable)" if st.get("required") else " (not required)"
        stab = f"stability: not reached{flag}: {st.get('reason', '')}"
    temp = (st.get("temperature") or {}).get("reason")
    head = ("claim", "figure", "95% interval", "margin", "margin/U", "trials", "verdict")
    rows = [head]
    for c in v.get("claims") or []:
        rows.append(
            (
                str(c["claim"]),
                _g(c.get("figure_value")),
                _span(c.get("lo"), c.get("hi")),
                _g(c.get("margin")),
                _mu(c.get("margin_u")),
                f"{c.get('usable_trials')}/{c.get('planned_trials')} {c.get('aggregate')}",
                str(c["verdict"]).upper(),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["verification", stab]
    if temp:
        lines.append(f"temperature: not checked: {temp}")
    lines += ["  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for c in v.get("claims") or []:
        lines.append(f"  {c['claim']}: {c['verdict']}: {c.get('reason', '')}")
    lines.append(f"overall: {str(v.get('verdict', '')).upper()} (exit {v.get('exit_code')})")
    return "\n".join(lines)


_CLASS = {"supported": "ok", "not supported": "bad", "inconclusive": "warn"}


def verification_html(v: Any) -> str:
    """The HTML report's Verification section ("" when the result has none)."""
    if not isinstance(v, dict):
        return ""
    e = escape
    st: dict[str, Any] = v["stability"] if isinstance(v.get("stability"), dict) else {}
    if st.get("reached"):
        stab = f"reached after {e(_g(st.get('time_to_stable_s') or st.get('warmup_s')))} s"
    else:
        stab = "not reached" + (" — flag not_stable" if st.get("required") else "")
        stab = e(f"{stab}: {st.get('reason', '')}")
    temp = (st.get("temperature") or {}) if isinstance(st.get("temperature"), dict) else {}
    rows = []
    for c in v.get("claims") or []:
        if not isinstance(c, dict):
            continue
        verdict = str(c.get("verdict", ""))
        rows.append(
            f'<tr><td>{e(str(c.get("claim")))}</td><td class="n">{e(_g(c.get("figure_value")))}'
            f'</td><td class="n">{e(_span(c.get("lo"), c.get("hi")))}</td>'
            f'<td class="n">{e(_g(c.get("margin")))}</td>'
            f'<td class="n">{e(_mu(c.get("margin_u")))}</td>'
            f'<td class="n">{e(str(c.get("usable_trials")))}/{e(str(c.get("planned_trials")))}'
            f" ({e(str(c.get('aggregate')))})</td>"
            f'<td class="verdict {_CLASS.get(verdict, "")}"><b>{e(verdict)}</b></td>'
            f"<td>{e(str(c.get('reason', '')))}</td></tr>"
        )
    head = (
        "<tr><th>claim</th><th>figure</th><th>95 % interval</th><th>margin</th>"
        "<th>margin / U</th><th>trials used</th><th>verdict</th><th>reason</th></tr>"
    )
    proto: dict[str, Any] = v["protocol"] if isinstance(v.get("protocol"), dict) else {}
    overall = e(str(v.get("verdict", "")))
    return (
        '<h2>Verification</h2><section id="verification">'
        f"<p>Overall: <b>{overall}</b> (exit code {e(str(v.get('exit_code')))}). "
        f"Protocol {e(str(proto.get('path', '')))}, SHA-256 "
        f"<code>{e(str(proto.get('sha256', '')))}</code>.</p>"
        f"<p>Stability: {stab}. Temperature: "
        f"{e(str(temp.get('reason', 'checked')))}.</p>"
        f'<table id="claims"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
        "<p>Supported: the whole 95 % interval of the figure is on the claim's side; not "
        "supported: wholly on the wrong side; inconclusive: it straddles the claim, or a flag "
        "(not_stable, calibration_due, too few usable trials, …) means the interval may not "
        "hold. Margin = figure − claim; margin / U in units of the interval's half-width.</p>"
        "</section>"
    )
