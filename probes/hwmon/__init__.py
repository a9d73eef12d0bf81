"""The ``hwmon`` probe: power and energy sensors under ``/sys/class/hwmon/hwmon*``.

Finds every chip (``name``) and its power (µW), energy (µJ) and voltage × current (mV × mA)
channels, reads them on a poll, and converts to W and J in ``units.py``. Which attribute becomes
which channel, with which id and ``measures``, is decided in ``chips.py`` (pure); this module is
the transport: directory listings and small attribute reads at open, then ``poll.SysfsProbe``.

Spec: ``hwmon[:interval=SECONDS,chips=NAME+NAME,class=meter|telemetry|estimate]``.
``interval`` defaults to half the fastest sensor refresh period the chips publish
(``update_interval``, ``power*_average_interval``), clamped to 0.02–0.5 s, else 0.1 s. ``chips``
keeps only the named chips (chip name or id, ``+``-separated). ``class`` overrides the source
class, e.g. ``class=meter`` for an INA226 logger wired to a device under test.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from powerd.channel import Channel, SourceClass
from powerd.errors import ProbeUnavailable, SpecError
from powerd.probes import sysfs
from powerd.probes.base import Availability, parse_kv
from powerd.probes.hwmon.chips import ATTR_RE, ChipListing, SensorPlan, chip_ids, plan_chip
from powerd.probes.hwmon.poll import Source, SysfsProbe, interval_arg
from powerd.probes.hwmon.units import (
    microjoules_to_j,
    microwatts_to_w,
    milliseconds_to_s,
    parse_int,
    rail_power_w,
)

HWMON = "/sys/class/hwmon"
DEFAULT_INTERVAL_S = 0.1
MIN_AUTO_INTERVAL_S = 0.02
MAX_AUTO_INTERVAL_S = 0.5
CLASSES: tuple[SourceClass, ...] = ("meter", "telemetry", "estimate")


def _text(p: Path) -> str | None:
    try:
        return sysfs.read_text(p)
    except OSError:
        return None


def _int(p: Path) -> int | None:
    t = _text(p)
    if t is None:
        return None
    try:
        return parse_int(t)
    except ValueError:
        return None


def _seconds(p: Path) -> float | None:
    t = _text(p)
    if t is None:
        return None
    try:
        return milliseconds_to_s(t)
    except ValueError:
        return None


def _device_name(d: Path) -> str:
    try:
        return os.path.basename(os.readlink(d / "device"))
    except OSError:
        pass
    real = d.resolve()
    return real.parent.parent.name if real.parent.name == "hwmon" else ""


def attribute_dir(d: Path) -> Path | None:
    """Where a hwmon device keeps ``name`` and its attributes (old drivers: under device/)."""
    if (d / "name").is_file():
        return d
    if (d / "device" / "name").is_file():
        return d / "device"
    return None


def list_chip(d: Path, hwmon: str) -> ChipListing | None:
    """The listing of one hwmon directory, or None when it has no chip name."""
    adir = attribute_dir(d)
    if adir is None:
        return None
    name = _text(adir / "name")
    if not name:
        return None
    try:
        attrs = frozenset(os.listdir(adir))
    except OSError:
        return None
    labels: dict[str, str] = {}
    disabled: set[str] = set()
    avg_interval: dict[int, float] = {}
    for a in attrs:
        m = ATTR_RE.match(a)
        if m is None:
            continue
        key = f"{m.group(1)}{m.group(2)}"
        if m.group(3) == "label":
            label = _text(adir / a)
            if label:
                labels[key] = label
        elif m.group(3) == "enable" and _int(adir / a) == 0:
            disabled.add(key)
    for a in attrs:
        if a.startswith("power") and a.endswith("_average_interval"):
            idx = a[len("power") : -len("_average_interval")]
            s = _seconds(adir / a)
            if (idx.isascii() and idx.isdigit()) and s is not None:
                avg_interval[int(idx)] = s
    shunt: dict[int, int] = {}
    bus: dict[int, int] = {}
    if name.startswith("ina"):
        if (r := _int(adir / "shunt_resistor")) is not None:
            shunt[0] = r
        for n in (1, 2, 3):
            if (r := _int(adir / f"shunt{n}_resistor")) is not None:
                shunt[n] = r
            if (v := _int(adir / f"in{n}_input")) is not None:
                bus[n] = v
    return ChipListing(
        hwmon=hwmon,
        name=name,
        device=_device_name(d),
        attrs=attrs,
        labels=labels,
        disabled=frozenset(disabled),
        update_interval_s=_seconds(adir / "update_interval"),
        average_interval_s=avg_interval,
        shunt_uohm=shunt,
        bus_mv=bus,
    )


def scan() -> tuple[list[ChipListing], dict[str, Path]]:
    """Every chip under /sys/class/hwmon, and the attribute directory of each (by hwmonN)."""
    base = sysfs.path(HWMON)
    try:
        entries = sorted(
            (e for e in os.listdir(base) if e.startswith("hwmon")),
            key=lambda e: (len(e), e),
        )
    except OSError:
        return [], {}
    chips: list[ChipListing] = []
    dirs: dict[str, Path] = {}
    for e in entries:
        chip = list_chip(base / e, e)
        adir = attribute_dir(base / e)
        if chip is not None and adir is not None:
            chips.append(chip)
            dirs[e] = adir
    return chips, dirs


def _power_w(texts: Sequence[str]) -> float:
    return microwatts_to_w(texts[0])


def _energy_j(texts: Sequence[str]) -> float:
    return microjoules_to_j(texts[0])


def _rail_w(texts: Sequence[str]) -> float:
    return rail_power_w(texts[0], texts[1])


def source_for(plan: SensorPlan, adir: Path, interval_s: float) -> Source:
    """A poll source for one planned channel; shared with the jetson probe (JetPack ≥ 5)."""
    period = plan.period_s
    is_power = plan.quantity != "energy"
    channel = Channel(
        id=plan.channel_id,
        kind="power" if is_power else "energy",
        source_class=plan.source_class,
        nominal_period_s=max(interval_s, period or 0.0),
        accuracy=plan.accuracy,
        measures=plan.measures,
        description=plan.description,
        stamp_uncertainty_s=period or 0.0,
    )
    convert = {"power_input": _power_w, "power_average": _power_w, "energy": _energy_j}.get(
        plan.quantity, _rail_w
    )
    hold = period if (is_power and period) else 0.0
    return Source(channel, tuple(adir / f for f in plan.files), convert, hold)


def auto_interval(plans: Sequence[SensorPlan]) -> float:
    """Half the fastest published refresh period (clamped), else the default."""
    periods = [p.period_s for p in plans if p.period_s]
    if not periods:
        return DEFAULT_INTERVAL_S
    return min(MAX_AUTO_INTERVAL_S, max(MIN_AUTO_INTERVAL_S, min(periods) / 2))


def plan_all(
    chips: list[ChipListing], only: set[str] | None, sclass: SourceClass | None
) -> list[SensorPlan]:
    ids = chip_ids(chips)
    plans: list[SensorPlan] = []
    for chip in chips:
        cid = ids[chip.hwmon]
        if only is not None and chip.name not in only and cid not in only:
            continue
        plans.extend(plan_chip(chip, cid, sclass))
    return plans


class HwmonFamily:
    name = "hwmon"
    summary = "power/energy sensors under /sys/class/hwmon (amdgpu, INA2xx, INA3221, …)"

    def available(self) -> Availability:
        chips, _ = scan()
        plans = plan_all(chips, None, None)
        if not plans:
            seen = ", ".join(sorted({c.name for c in chips})) or "none"
            return Availability(
                False,
                f"no power, energy or voltage×current sensors under {sysfs.path(HWMON)} "
                f"(chips: {seen})",
            )
        names = ", ".join(sorted({p.chip.name for p in plans}))
        return Availability(True, f"{len(plans)} channel(s) on {names}")

    def open(self, args: str) -> SysfsProbe:
        kv = parse_kv(args, {"interval", "chips", "class"})
        sclass: SourceClass | None = None
        if "class" in kv:
            value = kv["class"]
            if value not in CLASSES:
                raise SpecError(f"class={value!r}: use one of {', '.join(CLASSES)}")
            sclass = value
        only = set(kv["chips"].split("+")) if "chips" in kv else None
        chips, dirs = scan()
        plans = plan_all(chips, only, sclass)
        if not plans:
            what = f" on chips {kv['chips']}" if only else ""
            raise ProbeUnavailable(
                f"probe 'hwmon' is not usable here: no power sensors{what} under "
                f"{sysfs.path(HWMON)}"
            )
        interval_s = interval_arg(kv.get("interval"), auto_interval(plans), 0.001, 60.0)
        sources = [source_for(p, dirs[p.chip.hwmon], interval_s) for p in plans]
        return SysfsProbe(sources, interval_s)


family = HwmonFamily()
