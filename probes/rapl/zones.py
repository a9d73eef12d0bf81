"""Pure rules for RAPL powercap zones: which zone becomes which channel, and what it measures.

Input is what the transport found under ``/sys/class/powercap`` (zone directory names, their
``name`` and ``max_energy_range_uj``); output is one :class:`ZonePlan` per channel. No I/O here.

What each zone covers (Intel SDM vol. 3 §14.10; kernel powercap docs; observations collected in
powercap/powercap#3), and the channel it becomes:

- ``package-N`` (top level): the whole socket, cores and uncore → telemetry, measures
  ``rapl:package-N``.
- ``core`` / ``uncore`` under ``package-N``: parts of that package → *estimate*.
- ``dram`` under ``package-N``: the socket's DIMMs, **not** included in package-N although the
  zone sits under it → telemetry, measures ``rapl:package-N.dram``.
- ``psys`` (top level, Skylake and later client parts): the platform, overlapping the packages
  and DRAM → *estimate*.
- ``intel-rapl-mmio:N``: the same package counter read through MMIO on some Intel client parts →
  skipped; ``mmio=yes`` adds it as an alternative (same ``measures`` as the MSR zone).

powerd's primary rule (``powerd/results.py``) sums the channels of the best source class that
have data, one per ``measures``. It has no notion of "part of": a core zone with its own
``measures`` would be summed with its package, and sharing the package's ``measures`` would let
the (smaller, hence less uncertain) core zone win the de-duplication. So zones that lie inside or
across others are given source class ``estimate``: reported per channel, counted only when no
telemetry has data, and selectable with ``--primary``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from powerd.channel import Accuracy, SourceClass

ZONE_RE = re.compile(r"^(intel-rapl(?:-mmio)?):(\d+)(?::(\d+))?$")
COUNTER_BITS = 32
COUNTER_UPDATE_S = 0.001  # Intel SDM: the energy status counters update about every 1 ms

# Working 95 % bounds; neither vendor publishes an accuracy for RAPL (see README.md).
READING_FRAC = {"GenuineIntel": 0.05, "AuthenticAMD": 0.10, "HygonGenuine": 0.10}
UNKNOWN_VENDOR_FRAC = 0.10

Role = Literal["package", "dram", "part", "platform", "mmio", "other"]


@dataclass(frozen=True)
class Zone:
    """One powercap zone as found: ``intel-rapl:0:2`` named ``dram`` under ``package-0``."""

    dirname: str
    name: str
    parent_name: str | None
    max_energy_range_uj: int | None

    @property
    def mmio(self) -> bool:
        return self.dirname.startswith("intel-rapl-mmio")


@dataclass(frozen=True)
class ZonePlan:
    """How one zone becomes a channel."""

    zone: Zone
    channel_id: str
    measures: str
    source_class: SourceClass
    role: Role
    wrap_j: float | None
    accuracy: Accuracy
    description: str


def split_dirname(dirname: str) -> tuple[str, int, int | None] | None:
    """``intel-rapl:0:2`` → ``("intel-rapl", 0, 2)``; None for anything that is not a zone."""
    m = ZONE_RE.match(dirname)
    if not m:
        return None
    sub = m.group(3)
    return m.group(1), int(m.group(2)), None if sub is None else int(sub)


def parent_dirname(dirname: str) -> str | None:
    """The parent zone's directory of a subzone (``intel-rapl:0:2`` → ``intel-rapl:0``)."""
    parts = split_dirname(dirname)
    if parts is None or parts[2] is None:
        return None
    return f"{parts[0]}:{parts[1]}"


def _clean(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name.strip()) or "zone"


def _role(zone: Zone) -> Role:
    if zone.mmio:
        return "mmio"
    if zone.parent_name is None:
        if zone.name.startswith("package"):
            return "package"
        if zone.name == "psys":
            return "platform"
        return "other"
    if zone.name == "dram":
        return "dram"
    return "part"


def _accuracy(zone: Zone, vendor: str) -> Accuracy:
    frac = READING_FRAC.get(vendor, UNKNOWN_VENDOR_FRAC)
    resolution_j = 0.0
    if zone.max_energy_range_uj:
        resolution_j = zone.max_energy_range_uj / (1 << COUNTER_BITS) / 1e6
    return Accuracy(reading_frac=frac, resolution_j=resolution_j)


def plan_zones(
    zones: list[Zone], vendor: str, include_mmio: bool
) -> tuple[list[ZonePlan], list[str]]:
    """Channels for ``zones`` (see the module docstring), and notes on zones left out."""
    plans: list[ZonePlan] = []
    notes: list[str] = []
    msr_measures: dict[str, str] = {}
    for zone in zones:
        if zone.mmio:
            continue
        base = _clean(zone.name)
        local = base if zone.parent_name is None else f"{_clean(zone.parent_name)}.{base}"
        msr_measures.setdefault(local, f"rapl:{local}")
    seen: set[str] = set()
    for zone in zones:
        role = _role(zone)
        base = _clean(zone.name)
        local = base if zone.parent_name is None else f"{_clean(zone.parent_name)}.{base}"
        if role == "mmio":
            if not include_mmio:
                notes.append(
                    f"{zone.dirname} ({zone.name}) skipped: the MMIO interface repeats the "
                    "MSR zone's counter (add mmio=yes to record it as an alternative)"
                )
                continue
            cid = f"rapl:mmio.{local}"
            measures = msr_measures.get(local, f"rapl:{local}")
            sclass: SourceClass = "telemetry"
            desc = f"RAPL {zone.name} through MMIO ({zone.dirname}); same counter as the MSR zone"
        else:
            cid = f"rapl:{local}"
            measures = msr_measures[local]
            sclass = "telemetry" if role in ("package", "dram", "other") else "estimate"
            desc = {
                "package": f"RAPL {zone.name}: the whole socket ({zone.dirname})",
                "dram": f"RAPL DRAM of {zone.parent_name}, not included in the package "
                f"({zone.dirname})",
                "part": f"RAPL {zone.name}: part of {zone.parent_name}, never summed with it "
                f"({zone.dirname})",
                "platform": f"RAPL psys: the platform, overlapping packages and DRAM "
                f"({zone.dirname})",
                "other": f"RAPL zone {zone.name} ({zone.dirname})",
            }[role]
        if cid in seen:
            cid = f"{cid}-{zone.dirname.rsplit(':', 1)[-1]}"
        seen.add(cid)
        wrap_j = None if not zone.max_energy_range_uj else zone.max_energy_range_uj / 1e6
        plans.append(
            ZonePlan(
                zone=zone,
                channel_id=cid,
                measures=measures,
                source_class=sclass,
                role=role,
                wrap_j=wrap_j,
                accuracy=_accuracy(zone, vendor),
                description=desc,
            )
        )
    return plans, notes


def vendor_of(cpuinfo: str) -> str:
    """``vendor_id`` from /proc/cpuinfo text (``GenuineIntel``, ``AuthenticAMD``), or ""."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "vendor_id":
            return value.strip()
    return ""
