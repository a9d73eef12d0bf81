"""Pure rules for the two sysfs layouts of the Jetson INA3221 rails. No I/O here.

JetPack ≥ 5 (mainline ``ina3221`` hwmon driver, under ``/sys/bus/i2c/devices/<bus>-<addr>/hwmon/
hwmonN/``; Documentation/hwmon/ina3221.rst): ``in[123]_label`` names the rail, ``in[123]_input`` is
the bus voltage in mV, ``curr[123]_input`` the current in mA, ``in[123]_enable`` 0 for a disabled
channel. ``in[456]_input`` are shunt voltages (in µV, not mV), ``in7`` (labelled "sum of shunt
voltages") and ``curr4`` are sums: none of them is a rail, so only channels 1–3 are read.

JetPack ≤ 4 (NVIDIA's ``ina3221x`` iio driver, under ``…/<bus>-<addr>/iio:deviceN/``):
``rail_name_N`` names rail N (0–2), ``in_voltageN_input`` is its bus voltage in mV,
``in_currentN_input`` its current in mA and ``in_powerN_input`` its power in mW. (jetson-stats
reads the voltage from ``in_current…`` and the current from ``in_voltage…``; their power is right
only because the product commutes. Here each file means what its name says.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from powerd.probes.hwmon.chips import ChipListing, clean
from powerd.probes.hwmon.units import milliwatts_to_w, parse_int
from powerd.probes.jetson.rails import skip_rail

RAIL_NAME_RE = re.compile(r"^rail_name_(\d+)$")
HWMON_CHANNELS = (1, 2, 3)

Layout = Literal["hwmon", "iio"]


@dataclass(frozen=True)
class RailFiles:
    """Where one rail's readings are: ``files`` inside ``device``'s hwmon or iio directory."""

    label: str
    device: str
    layout: Layout
    index: int
    files: tuple[str, ...]
    power_file: bool


@dataclass(frozen=True)
class IioRail:
    """One JetPack ≤ 4 rail reading in SI units."""

    voltage_v: float
    current_a: float
    power_w: float


def hwmon_rails(chip: ChipListing, device: str) -> list[RailFiles]:
    """The rails of one ina3221 hwmon directory (channels 1–3, labelled, enabled, not NC)."""
    out: list[RailFiles] = []
    for n in HWMON_CHANNELS:
        label = chip.labels.get(f"in{n}")
        if not label or skip_rail(label) or f"in{n}" in chip.disabled:
            continue
        files = (f"in{n}_input", f"curr{n}_input")
        if all(f in chip.attrs for f in files):
            out.append(RailFiles(label, device, "hwmon", n, files, False))
    return out


def iio_files(n: int) -> dict[str, str]:
    """The iio attribute of each quantity of rail ``n``."""
    return {
        "voltage_mv": f"in_voltage{n}_input",
        "current_ma": f"in_current{n}_input",
        "power_mw": f"in_power{n}_input",
    }


def iio_rails(device: str, attrs: frozenset[str], names: Mapping[int, str]) -> list[RailFiles]:
    """The rails of one ina3221x iio directory: power from ``in_powerN_input`` when present."""
    out: list[RailFiles] = []
    for n in sorted(names):
        label = names[n]
        if not label or skip_rail(label):
            continue
        f = iio_files(n)
        if f["power_mw"] in attrs:
            out.append(RailFiles(label, device, "iio", n, (f["power_mw"],), True))
        elif f["voltage_mv"] in attrs and f["current_ma"] in attrs:
            files = (f["voltage_mv"], f["current_ma"])
            out.append(RailFiles(label, device, "iio", n, files, False))
    return out


def parse_iio_rail(voltage_mv: str, current_ma: str, power_mw: str | None) -> IioRail:
    """A JetPack ≤ 4 rail from its three files' text; power from the chip's own register."""
    v = parse_int(voltage_mv) / 1e3
    i = parse_int(current_ma) / 1e3
    p = milliwatts_to_w(power_mw) if power_mw is not None else v * i
    return IioRail(voltage_v=v, current_a=i, power_w=p)


def rail_ids(rails: list[RailFiles]) -> list[str]:
    """``jetson:<label>``; the device is added only to labels that occur twice."""
    counts: dict[str, int] = {}
    for r in rails:
        counts[r.label] = counts.get(r.label, 0) + 1
    return [
        f"jetson:{clean(r.label)}"
        if counts[r.label] == 1
        else f"jetson:{clean(r.label)}.{r.device}"
        for r in rails
    ]
