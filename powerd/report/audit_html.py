"""The parts of the HTML report a signed lab report needs: print CSS for A4, the verdicts' place,
the run's sealed manifest (software, config, clock sync, instruments, calibration, digests) and a
signature block.

Kept apart from ``html.py`` so the page's figures and its audit parts can change independently.
Every string from the manifest or the result is HTML-escaped; nothing refers outside the page.
"""

from __future__ import annotations

from html import escape
from typing import Any

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

SIGNATURE_ROLES = ("Measured by", "Reviewed by", "Approved by")


def _e(value: Any) -> str:
    return escape("—" if value is None or value == "" else str(value), quote=True)


def verdicts_section(result: dict[str, Any]) -> str:
    """Where the claims' verdicts go (``powerd verify``, issue 14 item 1): a table of the
    result's ``verdicts`` if it has any, else a line saying no claim was verified."""
    verdicts = [v for v in result.get("verdicts") or [] if isinstance(v, dict)]
    if not verdicts:
        body = '<p class="none">No claim was verified in this run.</p>'
    else:
        rows = "".join(
            f"<tr><td>{_e(v.get('claim'))}</td><td><b>{_e(v.get('verdict'))}</b></td>"
            f"<td>{_e(v.get('margin'))}</td><td>{_e(v.get('reason'))}</td></tr>"
            for v in verdicts
        )
        body = (
            "<table><thead><tr><th>claim</th><th>verdict</th><th>margin</th><th>reason</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )
    return f'<section class="verdicts" id="verdicts"><h2>Verdicts</h2>{body}</section>'


def _instrument(inst: Any) -> str:
    if not isinstance(inst, dict):
        return "—"
    parts = [inst.get("maker"), inst.get("model")]
    text = " ".join(str(p) for p in parts if p)
    if inst.get("serial"):
        text += f", s/n {inst['serial']}"
    if inst.get("firmware"):
        text += f", fw {inst['firmware']}"
    return _e(text)


def _calibration(cal: Any) -> str:
    if not isinstance(cal, dict):
        return "none given"
    lab = f" ({cal['lab']})" if cal.get("lab") else ""
    return _e(f"{cal.get('certificate')}{lab}: {cal.get('date')} to {cal.get('due')}")


def _calibration_cell(channel: dict[str, Any]) -> str:
    inst = channel.get("instrument")
    if isinstance(inst, dict) and inst.get("source") == "simulated":
        return "not required (simulated source)"
    if channel.get("source_class") != "meter":
        return "— (not a meter)"
    return _calibration(channel.get("calibration"))


def manifest_section(manifest: dict[str, Any] | None, digest: str | None) -> str:
    """The sealed manifest of the run (``powerd.audit``), or a line saying there is none."""
    if manifest is None:
        return (
            '<section class="manifest" id="manifest"><h2>Audit manifest</h2>'
            '<p class="none">No manifest is sealed for this run.</p></section>'
        )
    clock = manifest.get("clock_sync") or {}
    clock_text = (
        "; ".join(
            f"{a}: offset {c.get('offset_ns')} ns ± {c.get('uncertainty_ns')} ns"
            for a, c in sorted(clock.items())
            if isinstance(c, dict)
        )
        or "no agents"
    )
    markers = manifest.get("markers") or {}
    kv = [
        ("manifest sha256", f"<code>{_e(digest)}</code>"),
        ("revision", _e(manifest.get("revision"))),
        ("sealed (UTC)", _e(manifest.get("sealed_utc"))),
        ("software", _e(f"powerd {manifest.get('powerd_version')}")),
        ("host", _e(manifest.get("host"))),
        ("sealed by", _e(manifest.get("command"))),
        ("probes", _e(", ".join(manifest.get("probes") or []) or None)),
        ("config sha256", f"<code>{_e(manifest.get('config_sha256'))}</code>"),
        ("config file sha256", f"<code>{_e(manifest.get('config_file_sha256'))}</code>"),
        ("clock sync", _e(clock_text)),
        (
            "markers",
            f"{_e(markers.get('count'))} rows, sha256 <code>{_e(markers.get('sha256'))}</code>",
        ),
        ("result sha256", f"<code>{_e(manifest.get('result_sha256'))}</code>"),
    ]
    kv_rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in kv)
    ch_rows = "".join(
        f"<tr><td>{_e(cid)}</td><td>{_instrument(c.get('instrument'))}</td>"
        f"<td>{_calibration_cell(c)}"
        f'</td><td class="n">{_e(c.get("samples"))}</td>'
        f'<td class="h">{_e(c.get("samples_sha256"))}</td></tr>'
        for cid, c in sorted((manifest.get("channels") or {}).items())
        if isinstance(c, dict)
    )
    return (
        '<section class="manifest" id="manifest"><h2>Audit manifest</h2>'
        f'<table class="kv"><tbody>{kv_rows}</tbody></table>'
        "<h2>Instruments and raw data</h2>"
        "<table><thead><tr><th>channel</th><th>instrument</th><th>calibration</th>"
        "<th>samples</th><th>samples sha256</th></tr></thead>"
        f"<tbody>{ch_rows}</tbody></table>"
        '<p class="meta">Check with <code>powerd audit '
        f"{_e(manifest.get('run'))}</code>: it re-hashes the store and recomputes every figure."
        "</p></section>"
    )


def signature_block() -> str:
    """Name, role, date and signature lines for the people who sign the report."""
    rows = "".join(
        f'<tr><th>{role}</th><td class="line"></td><td class="line"></td>'
        '<td class="line"></td><td class="line"></td></tr>'
        for role in SIGNATURE_ROLES
    )
    return (
        '<section class="signatures" id="signatures"><h2>Signatures</h2>'
        '<table class="sign"><colgroup><col class="who"><col><col><col><col class="sig">'
        "</colgroup><thead><tr><th></th><th>name</th><th>role</th><th>date</th>"
        f"<th>signature</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )
