"""The ``jetson`` probe: the on-module INA3221 power rails of NVIDIA Jetson boards, from sysfs.

Scans ``/sys/bus/i2c/devices/*/name`` for ``ina3221`` (JetPack ≥ 5, hwmon layout) or
``ina3221x`` (JetPack ≤ 4, iio layout), reads each rail's power (layouts in ``layout.py``), and
marks the module input rail (``VDD_IN`` / ``POM_5V_IN``) as the total and the other rails as its
parts (``rails.py``), so a phase's figure never adds a part to the total.

Spec: ``jetson[:interval=SECONDS]`` (default: half the chip's ``update_interval`` where
published, clamped to 0.02–0.5 s, else 0.1 s).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from powerd.channel import Accuracy, Channel
from powerd.errors import ProbeUnavailable
from powerd.probes import sysfs
from powerd.probes.base import Availability, parse_kv
from powerd.probes.hwmon import list_chip
from powerd.probes.hwmon.chips import READING_FRAC, ChipListing, ina_accuracy
from powerd.probes.hwmon.poll import Source, SysfsProbe, interval_arg
from powerd.probes.hwmon.units import milliwatts_to_w, rail_power_w
from powerd.probes.jetson.layout import RAIL_NAME_RE, RailFiles, hwmon_rails, iio_rails, rail_ids
from powerd.probes.jetson.rails import rail_roles

I2C_DEVICES = "/sys/bus/i2c/devices"
DEFAULT_INTERVAL_S = 0.1
MIN_AUTO_INTERVAL_S = 0.02
MAX_AUTO_INTERVAL_S = 0.5


@dataclass
class Found:
    """Rails found on this host, with the directory of each and what is known of its chip."""

    rails: list[RailFiles] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)
    chips: list[ChipListing | None] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)


def _listdir(p: Path) -> list[str]:
    try:
        return sorted(os.listdir(p))
    except OSError:
        return []


def scan() -> Found:
    """Every INA3221 rail under /sys/bus/i2c/devices, in device and channel order."""
    found = Found()
    base = sysfs.path(I2C_DEVICES)
    for dev in _listdir(base):
        try:
            name = sysfs.read_text(base / dev / "name")
        except OSError:
            continue
        if "ina3221" not in name:
            continue
        found.devices.append(dev)
        for h in _listdir(base / dev / "hwmon"):
            d = base / dev / "hwmon" / h
            chip = list_chip(d, f"{dev}/{h}")
            if chip is None:
                continue
            for rail in hwmon_rails(chip, dev):
                found.rails.append(rail)
                found.dirs.append(d)
                found.chips.append(chip)
        for entry in _listdir(base / dev):
            if not entry.startswith("iio:device"):
                continue
            d = base / dev / entry
            attrs = frozenset(_listdir(d))
            names: dict[int, str] = {}
            for a in attrs:
                m = RAIL_NAME_RE.match(a)
                if m is None:
                    continue
                try:
                    names[int(m.group(1))] = sysfs.read_text(d / a)
                except OSError:
                    continue
            for rail in iio_rails(dev, attrs, names):
                found.rails.append(rail)
                found.dirs.append(d)
                found.chips.append(None)
    return found


def _hwmon_rail_w(texts: Sequence[str]) -> float:
    return rail_power_w(texts[0], texts[1])


def _iio_power_w(texts: Sequence[str]) -> float:
    return milliwatts_to_w(texts[0])


def _sources(found: Found, interval_s: float | None) -> tuple[list[Source], float]:
    roles = rail_roles([r.label for r in found.rails])
    ids = rail_ids(found.rails)
    periods = [c.update_interval_s for c in found.chips if c is not None and c.update_interval_s]
    if interval_s is None:
        interval_s = DEFAULT_INTERVAL_S
        if periods:
            interval_s = min(MAX_AUTO_INTERVAL_S, max(MIN_AUTO_INTERVAL_S, min(periods) / 2))
    sources: list[Source] = []
    for rail, d, chip, cid in zip(found.rails, found.dirs, found.chips, ids, strict=True):
        role = roles[rail.label]
        period = chip.update_interval_s if chip is not None else None
        if chip is not None:
            accuracy = ina_accuracy(chip, rail.index)
        else:
            accuracy = Accuracy(reading_frac=READING_FRAC["ina3221"])
        where = f"{rail.device} {'in' if rail.layout == 'hwmon' else 'rail '}{rail.index}"
        channel = Channel(
            id=cid,
            kind="power",
            source_class=role.source_class,
            nominal_period_s=max(interval_s, period or 0.0),
            accuracy=accuracy,
            measures=role.measures,
            description=f"INA3221 rail {rail.label} ({where}; {role.note})",
            stamp_uncertainty_s=period or 0.0,
        )
        convert = _iio_power_w if rail.power_file else _hwmon_rail_w
        paths = tuple(d / f for f in rail.files)
        sources.append(Source(channel, paths, convert, period or 0.0))
    return sources, interval_s


class JetsonFamily:
    name = "jetson"
    summary = "NVIDIA Jetson on-module INA3221 power rails (sysfs, JetPack 4 to 6)"

    def available(self) -> Availability:
        found = scan()
        if not found.rails:
            if found.devices:
                return Availability(
                    False,
                    f"INA3221 at {', '.join(found.devices)} but no readable rails "
                    "(run as root, or check the driver is bound)",
                    broken=True,
                )
            return Availability(
                False,
                f"no INA3221 under {sysfs.path(I2C_DEVICES)} (not a Jetson, or a module "
                "without an on-module power monitor such as the Nano 2GB)",
            )
        labels = ", ".join(r.label for r in found.rails)
        return Availability(True, f"INA3221 rails: {labels}")

    def open(self, args: str) -> SysfsProbe:
        kv = parse_kv(args, {"interval"})
        interval = None
        if "interval" in kv:
            interval = interval_arg(kv["interval"], DEFAULT_INTERVAL_S, 0.001, 60.0)
        found = scan()
        if not found.rails:
            raise ProbeUnavailable(f"probe 'jetson' is not usable here: {self.available().reason}")
        sources, interval_s = _sources(found, interval)
        return SysfsProbe(sources, interval_s)


family = JetsonFamily()
