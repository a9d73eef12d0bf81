"""The short text table printed after a measurement or a report.

Every figure with an uncertainty is rounded where its uncertainty says (``report.numbers``): two
significant digits of the 95 % uncertainty, the value to the same decimal place. The uncertainty
columns are headed ``±U95_<unit>`` (an absolute 95 % interval, not a percentage).
"""

from __future__ import annotations

from typing import Any

from powerd.i18n import N_, _, ljust, width
from powerd.report.crosscheck_view import text_lines as cross_check_lines
from powerd.report.numbers import sig_text, unc_text, value_text

# column names: msgids of the catalogue (translated when the table is printed)
HEAD = (
    N_("phase"),
    N_("trial"),
    N_("duration_s"),
    N_("energy_j"),
    N_("±U95_j"),
    N_("mean_w"),
    N_("j_per_unit"),
    N_("±U95_j/unit"),
    N_("net_j"),
    N_("±U95_net_j"),
    N_("flags"),
)


def _row(p: dict[str, Any]) -> tuple[str, ...]:
    unc = p["uncertainty_j"]
    dur = p["duration_s"]
    mean_unc = unc / dur if unc is not None and dur else None
    per_unc = p.get("j_per_unit_uncertainty")
    net_unc = p.get("net_uncertainty_j")
    per = "-"
    if p["j_per_unit"] is not None:
        per = f"{value_text(p['j_per_unit'], per_unc)}/{p['unit']}"
    return (
        p["phase"],
        str(p["trial"]),
        sig_text(dur, 5),
        value_text(p["energy_j"], unc),
        unc_text(unc),
        value_text(p["mean_power_w"], mean_unc),
        per,
        unc_text(per_unc) if p["j_per_unit"] is not None else "-",
        value_text(p["net_energy_j"], net_unc),
        unc_text(net_unc) if p["net_energy_j"] is not None else "-",
        ",".join(p["flags"]) or "-",
    )


def csv_notes(result: dict[str, Any], generated_by: str) -> list[str]:
    """The ``#`` lines at the top of ``<run>.csv``: what the columns are, and each phase's figures
    rounded exactly as the table prints them (the same ``_row`` cells), so a person opening the
    CSV reads the same numbers as the table and the HTML. English always (the CSV is data)."""
    run = result["run"]
    lines = [
        f"# {generated_by}: samples of run {run}; columns channel, t_ns (UTC ns since the "
        "Unix epoch), value (W for a power channel, J for an energy counter), unit",
        "# figures of the run (contract 2, result v1: the JSON report beside this file) as the "
        "table prints them: "
        "value ± U95, the absolute 95 % uncertainty in the figure's unit, rounded to two "
        "significant digits of U95 and the value to the same decimal place",
    ]
    for p in result["phases"]:
        c = _row(p)
        per = "-" if p["j_per_unit"] is None else f"{c[6].partition('/')[0]} ± {c[7]} J/{p['unit']}"
        energy = "-" if p["energy_j"] is None else f"{c[3]} ± {c[4]} J"
        net = "-" if p["net_energy_j"] is None else f"{c[8]} ± {c[9]} J"
        mean = "-" if p["mean_power_w"] is None else f"{c[5]} W"
        devices = ",".join(p.get("devices") or []) or "-"
        lines.append(
            f"# phase {c[0]} trial {c[1]}: duration {c[2]} s, energy {energy}, mean power {mean}, "
            f"{per}, net energy {net}, devices {devices}, flags {c[10]}"
        )
    lines.append(
        '# lines starting with "#" are these notes; the data start at the header line below '
        '(pandas: read_csv(path, comment="#"))'
    )
    return lines


def format_table(result: dict[str, Any]) -> str:
    """One row per phase: duration, energy ± U95, mean power, J per unit ± U95, net energy ± U95
    and flags."""
    rows = [tuple(_(h) for h in HEAD), *(_row(p) for p in result["phases"])]
    widths = [max(width(r[i]) for r in rows) for i in range(len(HEAD))]
    lines = [_("run {run}").format(run=result["run"])]
    lines += ["  ".join(ljust(c, w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines += [_mlperf_line(p) for p in result["phases"] if p.get("mlperf")]
    lines += cross_check_lines(result)
    return "\n".join(lines)


def _mlperf_line(p: dict[str, Any]) -> str:
    """MLPerf's figures of a LoadGen phase (``mlperf`` in contract 2) beside powerd's."""
    m = p["mlperf"]
    q = m.get("query_count")
    powerd_j = (
        f"{value_text(m.get('powerd_energy_j'), m.get('powerd_uncertainty_j'))}"
        f" ±{unc_text(m.get('powerd_uncertainty_j'))} J"
    )
    head = _(
        "mlperf {phase} ({scenario}, {window_s} s, {queries} queries): "
        "avg {avg_w} W over {samples} samples"
    ).format(
        phase=p["phase"],
        scenario=m.get("scenario"),
        window_s=m.get("window_s"),
        queries=q,
        avg_w=sig_text(m.get("avg_power_w"), 5),
        samples=m.get("sample_count"),
    )
    if m.get("metric") == "mJ/query":
        unc = m.get("powerd_mj_per_query_uncertainty")
        text = _(
            "{head}, {mj} mJ/query (MLPerf's method) | powerd {powerd_mj} ±{powerd_unc} "
            "mJ/query, {powerd_j}"
        ).format(
            head=head,
            mj=sig_text(m.get("energy_mj_per_query"), 5),
            powerd_mj=value_text(m.get("powerd_mj_per_query"), unc),
            powerd_unc=unc_text(unc),
            powerd_j=powerd_j,
        )
    else:
        text = _("{head} (MLPerf's metric) | powerd {powerd_j}").format(
            head=head, powerd_j=powerd_j
        )
    flags = m.get("flags") or []
    return text + (f" [{','.join(flags)}]" if flags else "")
