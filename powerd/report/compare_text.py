"""A comparison (``powerd.compare``) as a terminal table, a long-format CSV and report files.

The terminal table has one row per item (each figure ``value ±U95`` rounded where its
uncertainty says, ``report.numbers``) and one row per pair and figure with the difference b − a,
its U95, the ratio b/a and the call. The CSV is tidy (one value per row) so a spreadsheet or
pandas reads it without parsing: ``kind,a,b,figure,unit,value,u95,ratio,call,reason,shown`` where
``kind`` is ``item`` (a = the item's label, value ± u95 its figure) or ``pair`` (a and b the two
labels, value = b − a, u95 = the difference's U95), and ``shown`` is ``value ± u95`` rounded as
the table prints it (two significant digits of the U95), so a person reading the CSV sees the
table's figure; ``value`` and ``u95`` stay unrounded for computation. No ``#`` notes above the
header here: a label may contain ``#`` (``RUN:PHASE#TRIAL``), which ``comment="#"`` would cut.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from powerd.compare import FIGURES
from powerd.i18n import N_, _, ljust, tr_reason, width
from powerd.report.files import ReportWriteError, check_out_dir
from powerd.report.numbers import pm_text, sig_text

TABLE_FIGURES = (
    "j_per_unit",
    "units_per_j",
    "mean_power_w",
    "units_per_s",
    "idle_power_w",
    "net_energy_j",
    "net_j_per_unit",
)
_UNIT = {k: u for k, _, u, _ in FIGURES}
# what --by selects, shown translated in the titles
BY = (N_("phase"), N_("device"))


def figure_unit(key: str, unit: str | None) -> str:
    """The figure's unit with the item's count unit in it (``J/token``)."""
    return _UNIT[key].replace("unit", unit or "unit")


def _pm(fig: dict[str, Any]) -> str:
    if fig["value"] is None:
        return "-"
    if fig["u95"] is None:
        return f"{sig_text(fig['value'], 5)} ± ?"
    return pm_text(fig["value"], fig["u95"])


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(width(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(ljust(c, w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def format_compare(doc: dict[str, Any]) -> str:
    """Items, then pairs with their calls, then the rule."""
    head = (_("item"), _("unit"), _("count"), *(f"{k} ±U95" for k in TABLE_FIGURES), _("flags"))
    rows: list[tuple[str, ...]] = [head]
    for it in doc["items"]:
        rows.append(
            (
                it["label"],
                str(it.get("unit") or "-"),
                sig_text(it.get("count")),
                *(_pm(it["figures"][k]) for k in TABLE_FIGURES),
                ",".join(it["flags"]) or "-",
            )
        )
    title = _("compare by {by}: {n} items").format(by=_(doc["by"]), n=len(doc["items"]))
    lines = [title, *_columns(rows), ""]
    prow: list[tuple[str, ...]] = [("a", "b", _("figure"), "b-a ±U95", "b/a", _("call"))]
    units = {i: it.get("unit") for i, it in enumerate(doc["items"])}
    for pair in doc["pairs"]:
        for key in TABLE_FIGURES:
            f = pair["figures"][key]
            diff = "-" if f["diff"] is None else _pm({"value": f["diff"], "u95": f["u95_diff"]})
            call = _(f["call"]) + (f" ({tr_reason(f['reason'])})" if f.get("reason") else "")
            unit = figure_unit(key, units[pair["a"]])
            prow.append(
                (
                    pair["a_label"],
                    pair["b_label"],
                    f"{key} [{unit}]",
                    diff,
                    sig_text(f["ratio"], 4),
                    call,
                )
            )
        if pair["flags"]:
            flags = ",".join(pair["flags"])
            prow.append((pair["a_label"], pair["b_label"], _("flags"), flags, "", _("(see items)")))
        if pair["shared_channels"]:
            prow.append(
                (
                    pair["a_label"],
                    pair["b_label"],
                    _("shared channels"),
                    ",".join(pair["shared_channels"]),
                    "",
                    _("(calls conservative)"),
                )
            )
    lines += _columns(prow)
    lines.append(_("rule: {rule}").format(rule=tr_reason(doc["rule"])))
    return "\n".join(lines)


CSV_HEAD = ("kind", "a", "b", "figure", "unit", "value", "u95", "ratio", "call", "reason", "shown")


def _num(x: Any) -> str:
    return "" if x is None else repr(float(x))


def compare_csv(doc: dict[str, Any]) -> str:
    """The comparison in long format (see the module docstring)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEAD)
    for it in doc["items"]:
        for key, *_rest in FIGURES:
            f = it["figures"][key]
            unit = figure_unit(key, it.get("unit"))
            row = ("item", it["label"], "", key, unit, _num(f["value"]), _num(f["u95"]))
            w.writerow((*row, "", "", "", _pm(f)))
    units = [it.get("unit") for it in doc["items"]]
    for pair in doc["pairs"]:
        for key, *_rest in FIGURES:
            f = pair["figures"][key]
            w.writerow(
                (
                    "pair",
                    pair["a_label"],
                    pair["b_label"],
                    key,
                    figure_unit(key, units[pair["a"]]),
                    _num(f["diff"]),
                    _num(f["u95_diff"]),
                    _num(f["ratio"]),
                    f["call"],
                    f.get("reason") or "",
                    "-" if f["diff"] is None else _pm({"value": f["diff"], "u95": f["u95_diff"]}),
                )
            )
    return buf.getvalue()


def write_compare(doc: dict[str, Any], out_dir: Path, generated_by: str) -> list[Path]:
    """``compare.json``, ``compare.csv`` and ``compare.html`` in ``out_dir``."""
    from powerd.report.compare_html import render_compare_html

    check_out_dir(out_dir)
    files = {
        out_dir / "compare.json": json.dumps(doc, indent=1) + "\n",
        out_dir / "compare.csv": compare_csv(doc),
        out_dir / "compare.html": render_compare_html(doc, generated_by),
    }
    try:
        for path, text in files.items():
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
    except OSError as err:
        raise ReportWriteError(f"cannot write {err.filename or out_dir}: {err.strerror}") from None
    return list(files)
