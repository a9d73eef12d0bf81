"""Pure rules for Jetson INA3221 rails: which are totals, which are parts, what each measures.

Shared by the ``jetson`` probe (sysfs), the ``tegrastats`` fallback and the ``hwmon`` probe
(which sees the same INA3221 chips on JetPack ≥ 5), so the three give one rail the same
``measures`` and never add up one rail twice when run together.

Totals and parts (NVIDIA module data sheets and L4T device trees, as collected by
energymon's JetsonPowerRails.md and jetson-stats):

- ``VDD_IN`` / ``POM_5V_IN`` is the module's input: the total. Every other module rail
  (``VDD_CPU_GPU_CV``, ``VDD_SOC``, ``POM_5V_GPU``, …) is a part of it.
- Jetson Thor (JetPack 7): ``VIN`` (an INA238 on the carrier; jetson-stats reports it as the
  total system input) is the total; ``VDD_GPU``, ``VDD_CPU_SOC_MSS`` and ``VIN_SYS_5V0`` are
  parts of it.
- ``VDD_MUX`` (TX1/TX2 developer kits) is the carrier board's input, in parallel with the
  module's; the carrier rails (``VDD_5V_IO_SYS``, ``VDD_3V3_SYS``, …) are its parts.
- AGX Xavier and AGX Orin have no input rail: their rails are disjoint supplies, whose sum is
  less than the module's power (the notes call it an approximation; it is a lower bound).

The rule powerd applies, because its primary rule (``powerd/results.py``) sums every channel of
the best source class with data, one per ``measures``, and has no "part of" relation: a total
is ``telemetry``; a part whose total is present is demoted to ``estimate`` (reported per channel,
never summed with its total, counted only if no telemetry has data, selectable with
``--primary``); a part without its total stays ``telemetry``. Each rail measures
``jetson-rail:<label>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from powerd.channel import SourceClass

MODULE_TOTALS = frozenset({"VDD_IN", "POM_5V_IN", "VIN"})
CARRIER_TOTALS = frozenset({"VDD_MUX"})
CARRIER_RAILS = frozenset(
    {
        "VDD_5V_IO_SYS",
        "VDD_5V0_IO_SYS",
        "VDD_3V3_SYS",
        "VDD_3V3_IO",
        "VDD_3V3_IO_SLP",
        "VDD_1V8_IO",
        "VDD_M2_IN",
        "VDD_3V3_SYS_M2",
    }
)


@dataclass(frozen=True)
class RailRole:
    """How one rail enters the totals: its source class, what it measures, and why."""

    source_class: SourceClass
    measures: str
    note: str


def skip_rail(label: str) -> bool:
    """Not a supply: ``NC`` (not connected) channels and the INA3221 "sum of shunt voltages"."""
    tokens = re.split(r"[^A-Za-z0-9]+", label.strip())
    return "NC" in tokens or label.strip().lower().startswith("sum of")


def rail_measures(label: str) -> str:
    return f"jetson-rail:{label}"


def rail_roles(labels: Iterable[str]) -> dict[str, RailRole]:
    """The role of every rail in ``labels`` (one board's rails, as one probe sees them)."""
    names = list(labels)
    module_total = next((n for n in names if n in MODULE_TOTALS), None)
    carrier_total = next((n for n in names if n in CARRIER_TOTALS), None)
    roles: dict[str, RailRole] = {}
    for n in names:
        if n in MODULE_TOTALS:
            roles[n] = RailRole("telemetry", rail_measures(n), "module input: the total")
        elif n in CARRIER_TOTALS:
            roles[n] = RailRole("telemetry", rail_measures(n), "carrier board input")
        else:
            total = carrier_total if n in CARRIER_RAILS else module_total
            if total is not None:
                roles[n] = RailRole(
                    "estimate", rail_measures(n), f"part of {total}, never summed with it"
                )
            else:
                roles[n] = RailRole("telemetry", rail_measures(n), "no input rail on this board")
    return roles
