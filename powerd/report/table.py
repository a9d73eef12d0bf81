"""The short text table printed after a measurement or a report."""

from __future__ import annotations

from typing import Any


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return f"{x:.{digits}g}" if abs(x) < 1e5 else f"{x:.4e}"


def format_table(result: dict[str, Any]) -> str:
    """One row per phase: duration, energy ± 95 % uncertainty, mean power, J per unit, flags."""
    head = (
        "phase",
        "trial",
        "duration_s",
        "energy_j",
        "±95%_j",
        "mean_w",
        "j_per_unit",
        "net_j",
        "flags",
    )
    rows = [head]
    for p in result["phases"]:
        per = f"{_fmt(p['j_per_unit'])}/{p['unit']}" if p["j_per_unit"] is not None else "-"
        rows.append(
            (
                p["phase"],
                str(p["trial"]),
                _fmt(p["duration_s"], 5),
                _fmt(p["energy_j"], 6),
                _fmt(p["uncertainty_j"], 2),
                _fmt(p["mean_power_w"]),
                per,
                _fmt(p["net_energy_j"], 6),
                ",".join(p["flags"]) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"run {result['run']}"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)
