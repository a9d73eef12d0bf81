"""The ``rapl`` probe: CPU package and DRAM energy counters from Linux powercap (RAPL).

Reads ``/sys/class/powercap/intel-rapl:*/energy_uj`` (µJ, cumulative, wrapping at
``max_energy_range_uj``) for every zone, keyed on the zone's ``name`` (``package-0``,
``package-0.dram``, ``psys``), never on its index. Values are the raw counter in J with
``wrap_j`` set from the range, so the integrator unwraps. Which zones may be summed is decided in
``zones.py`` (subzones and psys overlap the packages); the transport is here.

Spec: ``rapl[:interval=SECONDS,mmio=yes|no]``. ``interval`` (default 0.1 s, at most 10 s) must be
well below half the counter's wrap time: AMD's counter (15.3 µJ × 2³²) wraps after 65.5 kJ, about
4 minutes at 280 W, so even 10 s leaves a wide margin; Intel's package counter wraps after 262 kJ.

Since the CVE-2020-8694 fix, ``energy_uj`` is readable only by root. Then ``available()`` says so
and how to grant access (:data:`REMEDY`), in one line; it never raises.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from powerd.channel import Channel
from powerd.errors import ProbeUnavailable
from powerd.probes import sysfs
from powerd.probes.base import Availability, parse_kv
from powerd.probes.hwmon.poll import Source, SysfsProbe, bool_arg, describe_oserror, interval_arg
from powerd.probes.hwmon.units import microjoules_to_j, parse_int
from powerd.probes.rapl.zones import (
    COUNTER_UPDATE_S,
    Zone,
    ZonePlan,
    parent_dirname,
    plan_zones,
    split_dirname,
    vendor_of,
)

POWERCAP = "/sys/class/powercap"
DEFAULT_INTERVAL_S = 0.1
MAX_INTERVAL_S = 10.0

REMEDY = (
    "energy_uj is readable only by root since the CVE-2020-8694 (PLATYPUS) fix. "
    "Either run powerd as root, or let a group read it: `groupadd --system powerd`, write "
    "/etc/udev/rules.d/60-powerd-rapl.rules containing "
    '`SUBSYSTEM=="powercap", KERNEL=="intel-rapl*:*", ACTION=="add", '
    'RUN+="/bin/chgrp powerd /sys%p/energy_uj", RUN+="/bin/chmod g+r /sys%p/energy_uj"`, '
    "apply it now with `udevadm trigger --subsystem-match=powercap --action=add`, and run powerd "
    "in that group (SupplementaryGroups=powerd in its systemd unit); "
    "see probes/rapl/README.md for the trade-off and alternatives"
)


def _zone_dirs() -> list[str]:
    base = sysfs.path(POWERCAP)
    try:
        entries = os.listdir(base)
    except OSError:
        return []
    found = [(split_dirname(d), d) for d in entries]
    keyed = [(k[0], k[1], -1 if k[2] is None else k[2], d) for k, d in found if k is not None]
    return [d for *_, d in sorted(keyed)]


def zone_path(dirname: str) -> Path:
    return sysfs.path(f"{POWERCAP}/{dirname}")


def find_zones() -> tuple[list[Zone], list[str]]:
    """The zones under the powercap class, and problems with zones that had to be left out."""
    dirs = _zone_dirs()
    names: dict[str, str] = {}
    problems: list[str] = []
    for d in dirs:
        try:
            names[d] = sysfs.read_text(zone_path(d) / "name")
        except OSError as err:
            problems.append(
                f"rapl: zone {d} skipped: {describe_oserror(zone_path(d) / 'name', err)}"
            )
    zones: list[Zone] = []
    for d in dirs:
        if d not in names:
            continue
        parent = parent_dirname(d)
        if parent is not None and parent not in names:
            problems.append(f"rapl: zone {d} skipped: its parent zone {parent} is unreadable")
            continue
        try:
            range_uj: int | None = parse_int(sysfs.read_text(zone_path(d) / "max_energy_range_uj"))
        except (OSError, ValueError):
            range_uj = None  # unknown range: a drop is then treated as a reset
        zones.append(Zone(d, names[d], None if parent is None else names[parent], range_uj))
    return zones, problems


def _denied(zone: Zone) -> bool:
    try:
        sysfs.read_text(zone_path(zone.dirname) / "energy_uj")
    except PermissionError:
        return True
    except OSError:
        return False
    return False


def _vendor() -> str:
    try:
        return vendor_of(sysfs.read_text(sysfs.path("/proc/cpuinfo")))
    except OSError:
        return ""


def _denied_reason(zone: Zone) -> str:
    path = zone_path(zone.dirname) / "energy_uj"
    return f"cannot read {path}: permission denied; {REMEDY}"


def _channel(plan: ZonePlan, interval_s: float) -> Channel:
    return Channel(
        id=plan.channel_id,
        kind="energy",
        source_class=plan.source_class,
        nominal_period_s=interval_s,
        accuracy=plan.accuracy,
        measures=plan.measures,
        description=plan.description,
        wrap_j=plan.wrap_j,
        stamp_uncertainty_s=COUNTER_UPDATE_S,
    )


def _energy_j(texts: Sequence[str]) -> float:
    return microjoules_to_j(texts[0])


class RaplFamily:
    name = "rapl"
    summary = "CPU package/DRAM energy counters (Linux powercap RAPL, Intel and AMD)"

    def available(self) -> Availability:
        zones, _ = find_zones()
        if not zones:
            return Availability(
                False,
                f"no RAPL zones under {sysfs.path(POWERCAP)} (no RAPL on this CPU, a VM, or the "
                "intel_rapl_msr module is not loaded: `modprobe intel_rapl_msr`)",
            )
        readable = [z for z in zones if not _denied(z)]
        if not readable:
            return Availability(False, _denied_reason(zones[0]), broken=True)
        names = ", ".join(sorted({z.name for z in readable if z.parent_name is None}))
        return Availability(True, f"{len(readable)} zone(s): {names}")

    def open(self, args: str) -> SysfsProbe:
        kv = parse_kv(args, {"interval", "mmio"})
        interval_s = interval_arg(kv.get("interval"), DEFAULT_INTERVAL_S, 0.001, MAX_INTERVAL_S)
        mmio = bool_arg("mmio", kv.get("mmio"), False)
        zones, problems = find_zones()
        plans, _notes = plan_zones(zones, _vendor(), mmio)
        sources: list[Source] = []
        denied: list[ZonePlan] = []
        for plan in plans:
            if _denied(plan.zone):
                denied.append(plan)
                continue
            path = zone_path(plan.zone.dirname) / "energy_uj"
            sources.append(Source(_channel(plan, interval_s), (path,), _energy_j))
        if not sources:
            if denied:
                raise ProbeUnavailable(
                    f"probe 'rapl' is not usable here: {_denied_reason(denied[0].zone)}"
                )
            raise ProbeUnavailable(
                f"probe 'rapl' is not usable here: no RAPL zones under {sysfs.path(POWERCAP)}"
            )
        for plan in denied:
            problems.append(f"{plan.channel_id}: left out, {_denied_reason(plan.zone)}")
        return SysfsProbe(sources, interval_s, problems, permission_hint="see `powerd probes`")


family = RaplFamily()
