"""Cross-checks between sources (contract 2, per phase ``cross_checks``) for people: one line per
pair under the terminal table, a small section of the HTML report. Nothing when a run has none.

Each pair reads ``a ÷ b = ratio, a − b = difference ± U95``, then the status: ``agree`` (the
difference within the combined 95 % uncertainty), ``DISAGREE`` (beyond it: ``sources_disagree``)
or ``unknown`` (a channel states no accuracy), with the reason.
"""

from __future__ import annotations

from html import escape
from typing import Any

from powerd.i18n import N_, _, tr_reason
from powerd.report.numbers import pm_text, sig_text

STATUS_TEXT = {"agree": N_("agree"), "disagree": N_("DISAGREE"), "unknown": N_("unknown")}


HEAD = (
    N_("phase"),
    N_("device"),
    N_("measures"),
    "a",  # the pair's symbols, as in the formulas: never translated
    "b",
    N_("ratio a ÷ b"),
    N_("a − b ± U95"),
    N_("status"),
)


def _pairs(result: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(phase, cross-check) of every phase with checks, in the result's order."""
    out = []
    for p in result.get("phases") or []:
        if not isinstance(p, dict):
            continue
        for x in p.get("cross_checks") or []:
            if isinstance(x, dict):
                out.append((p, x))
    return out


def _label(p: dict[str, Any]) -> str:
    return f"{p.get('phase')}" + (f" #{p['trial']}" if p.get("trial") else "")


def _difference(x: dict[str, Any], sep: str = "") -> str:
    if x.get("uncertainty_j") is None:
        return _("{difference} J (U unknown)").format(
            difference=sig_text(x.get("difference_j"), 4, sep)
        )
    return f"{pm_text(x.get('difference_j'), x.get('uncertainty_j'), sep)} J"


def _status(x: dict[str, Any]) -> str:
    status = str(x.get("status"))
    text = _(STATUS_TEXT[status]) if status in STATUS_TEXT else status
    return f"{text} ({tr_reason(x['reason'])})" if x.get("reason") else text


def text_lines(result: dict[str, Any]) -> list[str]:
    """Lines for the terminal: ``cross-check <phase>: a ÷ b = r, a − b = d ± U J: status``."""
    return [
        _(
            "cross-check {phase} [{device}/{measures}]: {a} ÷ {b} = {ratio}, "
            "a − b = {diff}: {status}"
        ).format(
            phase=_label(p),
            device=x.get("device"),
            measures=x.get("measures"),
            a=x.get("a"),
            b=x.get("b"),
            ratio=sig_text(x.get("ratio"), 5),
            diff=_difference(x),
            status=_status(x),
        )
        for p, x in _pairs(result)
    ]


def html_section(result: dict[str, Any]) -> str:
    """``<h2>Cross-checks</h2>`` and a table, or "" when no phase has a pair."""
    rows = []
    for p, x in _pairs(result):
        status = str(x.get("status"))
        cls = "" if status == "agree" else ' class="flags warn"'
        rows.append(
            f"<tr><td>{escape(_label(p))}</td><td>{escape(str(x.get('device')))}</td>"
            f"<td>{escape(str(x.get('measures')))}</td><td>{escape(str(x.get('a')))}</td>"
            f"<td>{escape(str(x.get('b')))}</td>"
            f'<td class="n">{sig_text(x.get("ratio"), 5, ",")}</td>'
            f'<td class="n">{escape(_difference(x, ","))}</td>'
            f"<td{cls}>{escape(_status(x))}</td></tr>"
        )
    if not rows:
        return ""
    head = "".join(f"<th>{escape(_(h) if h not in 'ab' else h)}</th>" for h in HEAD)
    head = f"<tr>{head}</tr>"
    note = (
        '<p class="sub">'
        + escape(
            _(
                "Channels measuring the same thing from different sources: they agree when "
                "|a − b| is within {bound} (95 %); beyond it the phase is flagged {flag} (when "
                "a carries its figure). A channel that states no accuracy cannot be judged: "
                "{unknown}."
            )
        ).format(
            bound="√(U<sub>a</sub>² + U<sub>b</sub>²)",
            flag="<code>sources_disagree</code>",
            unknown="<code>unknown</code>",
        )
        + "</p>"
    )
    return (
        f'<h2>{escape(_("Cross-checks"))}</h2><table id="cross-checks"><thead>{head}</thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{note}"
    )
