"""The parts of the HTML report a signed lab report needs: print CSS for A4, the verdicts' place,
the run's sealed manifest (software, config, clock sync, instruments, calibration, digests) and a
signature block.

Kept apart from ``html.py`` so the page's figures and its audit parts can change independently.
Every string from the manifest or the result is HTML-escaped; nothing refers outside the page.
"""

from __future__ import annotations

from html import escape
from typing import Any

from powerd.i18n import N_, _, tr_reason

PRINT_CSS = """
.manifest td.h, .manifest code { font-family: ui-monospace, "DejaVu Sans Mono", monospace;
  font-size: 11px; word-break: break-all; }
table.kv th { width: 22%; }
table.sign { border-collapse: separate; border-spacing: 14px 0; border: none; background: none; }
table.sign th { background: none; border: none; }
table.sign td, table.sign tbody tr:nth-child(even) td { height: 38px; background: none; }
table.sign td.line { border-bottom: 1px solid #333; }
table.sign col.who { width: 14%; }
table.sign col.sig { width: 34%; }
.verdicts .none, .manifest .none { color: #888; font-style: italic; }
@page { size: A4 portrait; margin: 14mm 12mm 16mm 12mm; }
@media print {
  :root { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
  body { background: #fff; font-size: 9.5pt; }
  main { max-width: none; margin: 0; padding: 0; }
  h1 { font-size: 15pt; }
  h2 { font-size: 12pt; margin-top: 10pt; break-after: avoid; page-break-after: avoid; }
  figure { border: none; padding: 0; break-inside: avoid; page-break-inside: avoid; }
  svg.chart { max-height: 95mm; }
  table { font-size: 8pt; }
  thead { display: table-header-group; }
  tr, .signatures, table.kv { break-inside: avoid; page-break-inside: avoid; }
  tbody tr:nth-child(even) td { background: none; }
  .flag { background: none; color: #000; border: 1px solid #000; }
  .signatures { break-before: auto; }
  footer { font-size: 8pt; }
}
"""

SIGNATURE_ROLES = (N_("Measured by"), N_("Reviewed by"), N_("Approved by"))


SIGNATURE_COLUMNS = (N_("name"), N_("role"), N_("date"), N_("signature"))


def _e(value: Any) -> str:
    return escape("—" if value is None or value == "" else str(value), quote=True)


def verdicts_section(result: dict[str, Any]) -> str:
    """Where the claims' verdicts go (``powerd verify``, issue 14 item 1): a table of the
    result's ``verdicts`` if it has any, else a line saying no claim was verified."""
    verdicts = [v for v in result.get("verdicts") or [] if isinstance(v, dict)]
    if not verdicts:
        body = f'<p class="none">{_e(_("No claim was verified in this run."))}</p>'
    else:
        rows = "".join(
            f"<tr><td>{_e(v.get('claim'))}</td><td><b>{_e(_tr_word(v.get('verdict')))}</b></td>"
            f"<td>{_e(v.get('margin'))}</td><td>{_e(tr_reason(v.get('reason')))}</td></tr>"
            for v in verdicts
        )
        body = (
            f"<table><thead>{_head(N_('claim'), N_('verdict'), N_('margin'), N_('reason'))}"
            f"</thead><tbody>{rows}</tbody></table>"
        )
    return f'<section class="verdicts" id="verdicts"><h2>{_e(_("Verdicts"))}</h2>{body}</section>'


def _head(*names: str) -> str:
    """A table's header row, each column name from the catalogue."""
    return "<tr>" + "".join(f"<th>{_e(_(n))}</th>" for n in names) + "</tr>"


def _tr_word(word: Any) -> Any:
    """A verdict word in the active language (other values unchanged)."""
    return _(word) if isinstance(word, str) and word else word


def _instrument(inst: Any) -> str:
    if not isinstance(inst, dict):
        return "—"
    parts = [inst.get("maker"), inst.get("model")]
    text = " ".join(str(p) for p in parts if p)
    if inst.get("serial"):
        text += _(", s/n {serial}").format(serial=inst["serial"])
    if inst.get("firmware"):
        text += _(", fw {firmware}").format(firmware=inst["firmware"])
    return _e(text)


def _calibration(cal: Any) -> str:
    if not isinstance(cal, dict):
        return _e(_("none given"))
    lab = f" ({cal['lab']})" if cal.get("lab") else ""
    return _e(
        _("{certificate}{lab}: {date} to {due}").format(
            certificate=cal.get("certificate"), lab=lab, date=cal.get("date"), due=cal.get("due")
        )
    )


def _calibration_cell(channel: dict[str, Any]) -> str:
    inst = channel.get("instrument")
    if isinstance(inst, dict) and inst.get("source") == "simulated":
        return _e(_("not required (simulated source)"))
    if channel.get("source_class") != "meter":
        return _e(_("— (not a meter)"))
    return _calibration(channel.get("calibration"))


def manifest_section(manifest: dict[str, Any] | None, digest: str | None) -> str:
    """The sealed manifest of the run (``powerd.audit``), or a line saying there is none."""
    if manifest is None:
        return (
            f'<section class="manifest" id="manifest"><h2>{_e(_("Audit manifest"))}</h2>'
            f'<p class="none">{_e(_("No manifest is sealed for this run."))}</p></section>'
        )
    clock = manifest.get("clock_sync") or {}
    clock_text = "; ".join(
        _("{agent}: offset {offset_ns} ns ± {uncertainty_ns} ns").format(
            agent=a, offset_ns=c.get("offset_ns"), uncertainty_ns=c.get("uncertainty_ns")
        )
        for a, c in sorted(clock.items())
        if isinstance(c, dict)
    ) or _("no agents")
    markers = manifest.get("markers") or {}
    kv = [
        (N_("manifest sha256"), f"<code>{_e(digest)}</code>"),
        (N_("revision"), _e(manifest.get("revision"))),
        (N_("sealed (UTC)"), _e(manifest.get("sealed_utc"))),
        (N_("software"), _e(f"powerd {manifest.get('powerd_version')}")),
        (N_("host"), _e(manifest.get("host"))),
        (N_("sealed by"), _e(manifest.get("command"))),
        (N_("probes"), _e(", ".join(manifest.get("probes") or []) or None)),
        (N_("config sha256"), f"<code>{_e(manifest.get('config_sha256'))}</code>"),
        (N_("config file sha256"), f"<code>{_e(manifest.get('config_file_sha256'))}</code>"),
        (N_("clock sync"), _e(clock_text)),
        (
            N_("markers"),
            _e(_("{count} rows, sha256 {sha256}")).format(
                count=_e(markers.get("count")), sha256=f"<code>{_e(markers.get('sha256'))}</code>"
            ),
        ),
        (N_("result sha256"), f"<code>{_e(manifest.get('result_sha256'))}</code>"),
    ]
    kv_rows = "".join(f"<tr><th>{_e(_(k))}</th><td>{v}</td></tr>" for k, v in kv)
    ch_rows = "".join(
        f"<tr><td>{_e(cid)}</td><td>{_instrument(c.get('instrument'))}</td>"
        f"<td>{_calibration_cell(c)}"
        f'</td><td class="n">{_e(c.get("samples"))}</td>'
        f'<td class="h">{_e(c.get("samples_sha256"))}</td></tr>'
        for cid, c in sorted((manifest.get("channels") or {}).items())
        if isinstance(c, dict)
    )
    return (
        f'<section class="manifest" id="manifest"><h2>{_e(_("Audit manifest"))}</h2>'
        f'<table class="kv"><tbody>{kv_rows}</tbody></table>'
        f"<h2>{_e(_('Instruments and raw data'))}</h2>"
        "<table><thead>"
        + _head(
            N_("channel"), N_("instrument"), N_("calibration"), N_("samples"), N_("samples sha256")
        )
        + f"</thead><tbody>{ch_rows}</tbody></table>"
        '<p class="meta">'
        + _e(_("Check with {command}: it re-hashes the store and recomputes every figure.")).format(
            command=f"<code>powerd audit {_e(manifest.get('run'))}</code>"
        )
        + "</p></section>"
    )


def signature_block() -> str:
    """Name, role, date and signature lines for the people who sign the report."""
    rows = "".join(
        f'<tr><th>{_e(_(role))}</th><td class="line"></td><td class="line"></td>'
        '<td class="line"></td><td class="line"></td></tr>'
        for role in SIGNATURE_ROLES
    )
    return (
        f'<section class="signatures" id="signatures"><h2>{_e(_("Signatures"))}</h2>'
        '<table class="sign"><colgroup><col class="who"><col><col><col><col class="sig">'
        "</colgroup><thead><tr><th></th>"
        + "".join(f"<th>{_e(_(h))}</th>" for h in SIGNATURE_COLUMNS)
        + f"</tr></thead><tbody>{rows}</tbody></table></section>"
    )
