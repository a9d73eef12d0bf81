"""Pure rules turning one hwmon chip's attribute listing into channel plans. No I/O here.

Per Documentation/hwmon/sysfs-interface.rst: ``power*_input`` (instantaneous) and
``power*_average`` are µW, ``energy*_input`` is a cumulative µJ counter, ``in*_input`` mV and
``curr*_input`` mA; ``*_label`` names a channel, ``name`` the chip, ``update_interval`` and
``power*_average_interval`` are ms.

Channels:

- each ``powerN_input`` and ``powerN_average`` → a power channel; ``energyN_input`` → an energy
  counter (no wrap range is published: a drop counts as a reset);
- an ``inN_input`` × ``currM_input`` pair → a rail power channel, paired by equal labels, or by
  index where that is known to be right (INA3221: 1–3 only; ``in4``–``in7`` are shunt voltages
  in µV and ``curr4`` the sum of the currents); no rail is made where the chip reports that
  power itself (INA2xx ``power1``), nor for disabled (``inN_enable`` = 0) or ``NC`` channels.

Ids are ``hwmon:<chip>.<label or attribute>`` (``hwmon:amdgpu.PPT``, ``hwmon:ina226.power1``),
with the chip's device (``1-0040``, ``0000:03:00.0``) added only when two chips share a name:
hwmonN renumbers across boots, the chip name, device and label do not. When a chip has both
``powerN_input`` and ``powerN_average`` the average gets ``.avg``; otherwise either one is just
``<label>``, so ``hwmon:amdgpu.PPT`` is one id whichever of the two the kernel exposes.

``measures`` is ``hwmon:<chip>:<label or index>``: the instantaneous power, the average and the
energy counter of one labelled (or, unlabelled, one-indexed) sensor are alternatives. INA3221
rails follow the Jetson rail rules (``probes/jetson/rails.py``) so that the hwmon and jetson
probes agree; a few known chips with parts of a total (``amd_energy`` cores within the socket,
``xe`` ``pkg`` within ``card``) demote the parts to ``estimate``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from powerd.channel import Accuracy, SourceClass

ATTR_RE = re.compile(r"^(power|energy|in|curr)(\d+)_(input|average|label|enable)$")
ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")

# Chips whose in/curr channels pair by index only over these indices.
INDEX_PAIRS: dict[str, frozenset[int]] = {"ina3221": frozenset({1, 2, 3})}
# Parts of a total on one chip: (chip, part label pattern, total label pattern).
PARTS: tuple[tuple[str, str, str], ...] = (
    ("amd_energy", r"^Ecore", r"^Esocket"),
    ("xe", r"^pkg$", r"^card$"),
)
# Datasheet maximum gain error + 1 % shunt-resistor tolerance (95 % working bound), and the
# datasheet maximum shunt offset voltage (V) where we can turn it into watts.
READING_FRAC: dict[str, float] = {
    "ina219": 0.015,
    "ina220": 0.015,
    "ina226": 0.011,
    "ina230": 0.015,
    "ina231": 0.015,
    "ina3221": 0.015,
}
SHUNT_OFFSET_V: dict[str, float] = {"ina226": 10e-6, "ina3221": 80e-6}
UNKNOWN_READING_FRAC = 0.10

Quantity = Literal["power_input", "power_average", "energy", "rail"]
WHAT: dict[str, str] = {
    "power_input": "instantaneous power",
    "power_average": "average power",
    "energy": "energy counter",
    "rail": "rail power (bus voltage × current)",
}


@dataclass(frozen=True)
class ChipListing:
    """What the transport found in one hwmon directory (only names and small attributes)."""

    hwmon: str
    name: str
    device: str
    attrs: frozenset[str]
    labels: Mapping[str, str] = field(default_factory=dict)
    disabled: frozenset[str] = frozenset()
    update_interval_s: float | None = None
    average_interval_s: Mapping[int, float] = field(default_factory=dict)
    shunt_uohm: Mapping[int, int] = field(default_factory=dict)
    bus_mv: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SensorPlan:
    """One channel to make: its files (names inside the chip directory) and how to read them."""

    chip: ChipListing
    channel_id: str
    quantity: Quantity
    files: tuple[str, ...]
    measures: str
    source_class: SourceClass
    label: str
    period_s: float | None
    accuracy: Accuracy
    description: str


def clean(text: str) -> str:
    """Text made safe for a channel id (``sum of shunt voltages`` → ``sum_of_shunt_voltages``)."""
    return ID_UNSAFE.sub("_", text.strip()) or "_"


def _indices(attrs: frozenset[str], kind: str, item: str) -> list[int]:
    out = []
    for a in attrs:
        m = ATTR_RE.match(a)
        if m and m.group(1) == kind and m.group(3) == item:
            out.append(int(m.group(2)))
    return sorted(out)


def chip_ids(chips: list[ChipListing]) -> dict[str, str]:
    """hwmon dir → the chip's id part: its name, plus the device where two chips share a name."""
    counts: dict[str, int] = {}
    for c in chips:
        counts[c.name] = counts.get(c.name, 0) + 1
    out: dict[str, str] = {}
    for c in chips:
        base = clean(c.name)
        out[c.hwmon] = base if counts[c.name] == 1 else f"{base}.{clean(c.device or c.hwmon)}"
    return out


def _rails(chip: ChipListing, power_keys: set[str]) -> list[tuple[int, int, str]]:
    """(in index, curr index, key) of the voltage × current pairs to read."""
    from powerd.probes.jetson.rails import (
        skip_rail,  # here: powerd.probes.jetson imports this package
    )

    ins = set(_indices(chip.attrs, "in", "input"))
    allowed = INDEX_PAIRS.get(chip.name)
    in_by_label = {chip.labels[f"in{n}"]: n for n in ins if f"in{n}" in chip.labels}
    pairs: list[tuple[int, int, str]] = []
    for n in _indices(chip.attrs, "curr", "input"):
        if allowed is not None and n not in allowed:
            continue
        curr_label = chip.labels.get(f"curr{n}")
        if curr_label is not None:
            m = in_by_label.get(curr_label)
            if m is None:
                continue
        elif n in ins:
            m = n
        else:
            continue
        label = chip.labels.get(f"in{m}") or curr_label or ""
        if f"in{m}" in chip.disabled or (label and skip_rail(label)):
            continue
        key = label or str(n)
        if key in power_keys:
            continue  # the chip reports this rail's power itself
        pairs.append((m, n, key))
    return pairs


def ina_accuracy(chip: ChipListing, in_index: int | None) -> Accuracy:
    """Working 95 % bound for a chip's channel; with the shunt offset in W where it is known."""
    frac = READING_FRAC.get(chip.name, UNKNOWN_READING_FRAC)
    offset_w = 0.0
    v_off = SHUNT_OFFSET_V.get(chip.name)
    if v_off is not None and in_index is not None:
        shunt_key = in_index if chip.name == "ina3221" else 0
        r_uohm = chip.shunt_uohm.get(shunt_key)
        bus_mv = chip.bus_mv.get(in_index)
        if r_uohm and bus_mv:
            offset_w = v_off / (r_uohm / 1e6) * (bus_mv / 1e3)
    return Accuracy(reading_frac=frac, offset_w=offset_w)


def _part_demotions(chip: ChipListing, labels: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, part_re, total_re in PARTS:
        if chip.name != name:
            continue
        total = next((lb for lb in labels if re.search(total_re, lb)), None)
        if total is None:
            continue
        for lb in labels:
            if re.search(part_re, lb):
                out[lb] = total
    return out


def plan_chip(
    chip: ChipListing, chip_id: str, source_class: SourceClass | None
) -> list[SensorPlan]:
    """Channels of one chip. ``source_class`` overrides the default (``telemetry``)."""
    from powerd.probes.jetson.rails import (  # here: powerd.probes.jetson imports us
        rail_roles,
        skip_rail,
    )

    labels = chip.labels
    p_in = _indices(chip.attrs, "power", "input")
    p_avg = _indices(chip.attrs, "power", "average")
    energy = _indices(chip.attrs, "energy", "input")
    power_keys = {labels.get(f"power{n}") or str(n) for n in (*p_in, *p_avg)}
    rails = _rails(chip, power_keys)
    is_ina3221 = chip.name == "ina3221"
    roles = rail_roles([k for *_, k in rails]) if is_ina3221 else {}
    demoted = _part_demotions(chip, [labels[k] for k in sorted(labels)])
    default_class: SourceClass = source_class or "telemetry"
    plans: list[SensorPlan] = []
    taken: set[str] = set()

    def add(
        name: str,
        quantity: Quantity,
        files: tuple[str, ...],
        key: str,
        label: str,
        period_s: float | None,
        in_index: int | None,
    ) -> None:
        cid = f"hwmon:{chip_id}.{clean(name)}"
        k = 2
        while cid in taken:
            cid = f"hwmon:{chip_id}.{clean(name)}-{k}"
            k += 1
        taken.add(cid)
        sclass = default_class
        measures = f"hwmon:{chip_id}:{clean(key)}"
        note = ""
        if quantity == "rail" and is_ina3221 and key in roles:
            role = roles[key]
            measures, note = role.measures, role.note
            sclass = source_class or role.source_class
        elif label in demoted:
            sclass = source_class or "estimate"
            note = f"part of {demoted[label]}, never summed with it"
        desc = f"{chip.name} {WHAT[quantity]}" + (f" {label!r}" if label else "")
        plans.append(
            SensorPlan(
                chip=chip,
                channel_id=cid,
                quantity=quantity,
                files=files,
                measures=measures,
                source_class=sclass,
                label=label,
                period_s=period_s,
                accuracy=ina_accuracy(chip, in_index),
                description=desc + (f" ({note})" if note else ""),
            )
        )

    bus_index = 1 if chip.name.startswith("ina2") else None
    for n in sorted(set(p_in) | set(p_avg)):
        label = labels.get(f"power{n}")
        if label and skip_rail(label):
            continue
        base = label or f"power{n}"
        key = label or str(n)
        if n in p_in:
            add(
                base,
                "power_input",
                (f"power{n}_input",),
                key,
                label or "",
                chip.update_interval_s,
                bus_index,
            )
        if n in p_avg:
            name = f"{base}.avg" if n in p_in else base
            period = chip.average_interval_s.get(n, chip.update_interval_s)
            add(name, "power_average", (f"power{n}_average",), key, label or "", period, bus_index)
    power_names = {p.channel_id for p in plans}
    for n in energy:
        label = labels.get(f"energy{n}")
        base = label or f"energy{n}"
        if f"hwmon:{chip_id}.{clean(base)}" in power_names:
            base = f"{base}.energy"
        add(
            base,
            "energy",
            (f"energy{n}_input",),
            label or str(n),
            label or "",
            chip.update_interval_s,
            None,
        )
    for m, n, key in rails:
        label = chip.labels.get(f"in{m}") or chip.labels.get(f"curr{n}") or ""
        add(
            label or f"in{m}xcurr{n}",
            "rail",
            (f"in{m}_input", f"curr{n}_input"),
            key,
            label,
            chip.update_interval_s,
            m,
        )
    return plans
