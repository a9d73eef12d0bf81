"""Pure parsing of Redfish resources: JSON bytes in, readings in W and J out.

Three places carry a chassis' power, all read by the probe:

- legacy ``Chassis/{id}/Power``: ``PowerControl[].PowerConsumedWatts`` (W);
- ``Chassis/{id}/EnvironmentMetrics``: ``PowerWatts.Reading`` (W), ``EnergyJoules.Reading`` (J),
  ``EnergykWh.Reading`` / ``.LifetimeReading`` (kWh; ``LifetimeReading`` cannot be reset by
  ``ResetMetrics``, so it is preferred);
- ``Chassis/{id}/Sensors/{id}``: ``Reading`` with ``ReadingType`` ``Power`` (W),
  ``EnergyJoules`` (J), ``EnergykWh`` (kWh) or ``EnergyWh`` (Wh), plus ``Accuracy`` (percent of
  reading), ``SensingInterval`` (ISO 8601 duration), ``ReadingUnits`` (must agree with the
  ``ReadingType``: a sensor in another unit is not read) and what it measures
  (``PhysicalContext``, ``PhysicalSubContext``, ``Oem.ParentalContext``, ``Name``), from which
  ``sensor_role`` decides whether it is the chassis' total, a supply input or a part.

Units are converted here and nowhere else (kWh × 3.6e6, Wh × 3600). A ``null`` or missing
reading is None with a reason, never 0. JSON numbers keep how many decimals they were sent with
(``Num.places``): an energy counter sent in whole kWh has a 3.6 MJ step, which decides whether
it can be trusted over a phase (see the probe).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

J_PER_KWH = 3.6e6
J_PER_WH = 3600.0
ENERGY_TYPES = {"EnergyJoules": 1.0, "EnergyWh": J_PER_WH, "EnergykWh": J_PER_KWH}
UNITS = {"Power": "W", "EnergyJoules": "J", "EnergyWh": "W.h", "EnergykWh": "kW.h"}  # UCUM
# A name saying "the whole thing" (a word, not inside "Subsystem"); matched on the Name.
TOTAL_WORDS = re.compile(
    r"(?<![a-z])(total|system|sys[_ ]?power|chassis|node|server|platform)(?![a-z])", re.IGNORECASE
)
PART_WORDS = re.compile(
    r"(?<![a-z])(cpu|gpu|accel|mem|dimm|dram|fan|drive|disk|storage|nic|pcie|asic|vcore|soc)",
    re.IGNORECASE,
)
SUPPLY_CONTEXTS = frozenset({"PowerSupply", "Rectifier"})  # their inputs add up to the input
BOARD_CONTEXTS = frozenset({"SystemBoard", "PowerSubsystem", "VoltageRegulator"})


class Num(float):
    """A JSON number that remembers its decimal places (``12.50`` → 2, ``12`` → 0)."""

    places: int

    def __new__(cls, text: str) -> Num:
        obj = super().__new__(cls, float(text))
        mantissa, _, exp = text.lower().partition("e")
        frac = mantissa.partition(".")[2]
        obj.places = len(frac) - (int(exp) if exp else 0)
        return obj


def loads(body: bytes) -> Any:
    """JSON with ``Num`` floats; ValueError (with a short excerpt) if it is not JSON."""
    try:
        return json.loads(body.decode("utf-8", "replace"), parse_float=Num)
    except json.JSONDecodeError as err:
        excerpt = body[:80].decode("utf-8", "replace").strip()
        raise ValueError(f"not JSON ({err.msg} at {err.pos}; starts {excerpt!r})") from None


def places_of(x: object) -> int:
    """Decimal places a number was sent with (0 for an int)."""
    return x.places if isinstance(x, Num) else 0


@dataclass(frozen=True)
class Value:
    """A reading in SI units (W or J), or None with the reason."""

    si: float | None
    reason: str = ""
    step_si: float = 0.0  # the quantum the number was sent with, in the same unit


def number(x: object, scale: float = 1.0, what: str = "Reading") -> Value:
    """A finite, non-negative JSON number times ``scale``; anything else is None + reason."""
    if x is None:
        return Value(None, f"{what} is null (no reading)")
    if isinstance(x, bool) or not isinstance(x, int | float):
        return Value(None, f"{what} is not a number: {x!r:.40}")
    if not math.isfinite(float(x)) or float(x) < 0:
        return Value(None, f"{what} is {float(x)!r}: not a reading")
    return Value(float(x) * scale, "", scale * 10.0 ** -places_of(x))


def members(doc: Any) -> list[str]:
    """``Members[].@odata.id`` of a collection."""
    out: list[str] = []
    for m in doc.get("Members", []) if isinstance(doc, dict) else []:
        if isinstance(m, dict) and isinstance(m.get("@odata.id"), str):
            out.append(m["@odata.id"])
    return out


def link(doc: Any, key: str) -> str | None:
    """``doc[key]["@odata.id"]`` if present."""
    sub = doc.get(key) if isinstance(doc, dict) else None
    uri = sub.get("@odata.id") if isinstance(sub, dict) else None
    return uri if isinstance(uri, str) else None


def contained_by(chassis: Any) -> str | None:
    """The chassis this one sits in (``Links.ContainedBy``), if any."""
    links = chassis.get("Links") if isinstance(chassis, dict) else None
    if not isinstance(links, dict):
        return None
    up = links.get("ContainedBy")
    if isinstance(up, list) and up:  # Intel's BMC sends a list of one link
        links = {"ContainedBy": up[0]}
    return link(links, "ContainedBy")


@dataclass(frozen=True)
class ControlReading:
    index: int
    name: str
    value: Value


def power_controls(doc: Any) -> list[ControlReading]:
    """``PowerControl[i].PowerConsumedWatts`` of a legacy ``Power`` resource, in W."""
    out: list[ControlReading] = []
    controls = doc.get("PowerControl") if isinstance(doc, dict) else None
    for i, pc in enumerate(controls if isinstance(controls, list) else []):
        if not isinstance(pc, dict):
            continue
        name = str(pc.get("Name") or pc.get("MemberId") or i)
        watts = number(pc.get("PowerConsumedWatts"), what="PowerConsumedWatts")
        out.append(ControlReading(i, name, watts))
    return out


@dataclass(frozen=True)
class EnvReadings:
    power: Value | None  # None: the resource has no PowerWatts at all
    energy: Value | None
    energy_field: str = ""
    power_source_uri: str | None = None
    energy_source_uri: str | None = None


def environment(doc: Any) -> EnvReadings:
    """``PowerWatts`` and the finest energy field of an ``EnvironmentMetrics`` resource."""
    if not isinstance(doc, dict):
        return EnvReadings(None, None)
    power: Value | None = None
    power_uri: str | None = None
    pw = doc.get("PowerWatts")
    if isinstance(pw, dict):
        power = number(pw.get("Reading"), what="PowerWatts.Reading")
        power_uri = pw.get("DataSourceUri") if isinstance(pw.get("DataSourceUri"), str) else None
    energy: Value | None = None
    field = ""
    energy_uri: str | None = None
    ej, ekwh = doc.get("EnergyJoules"), doc.get("EnergykWh")
    if isinstance(ej, dict) and ej.get("Reading") is not None:
        energy, field = number(ej["Reading"], what="EnergyJoules.Reading"), "EnergyJoules.Reading"
        energy_uri = ej.get("DataSourceUri") if isinstance(ej.get("DataSourceUri"), str) else None
    elif isinstance(ekwh, dict):
        key = "LifetimeReading" if ekwh.get("LifetimeReading") is not None else "Reading"
        field = f"EnergykWh.{key}"
        energy = number(ekwh.get(key), J_PER_KWH, what=field)
        uri = ekwh.get("DataSourceUri")
        energy_uri = uri if isinstance(uri, str) else None
    elif isinstance(ej, dict):
        energy, field = number(None, what="EnergyJoules.Reading"), "EnergyJoules.Reading"
    return EnvReadings(power, energy, field, power_uri, energy_uri)


@dataclass(frozen=True)
class SensorReading:
    """One Sensor resource: its id, kind (power/energy/None), value and metadata."""

    sensor_id: str
    name: str
    reading_type: str
    kind: str | None  # "power", "energy" or None for a sensor of another quantity
    value: Value
    physical_context: str | None
    accuracy_frac: float | None
    sensing_interval_s: float | None
    sub_context: str | None = None  # PhysicalSubContext: Input, Output, ...
    parent_context: str | None = None  # Oem.ParentalContext (HPE Cray): what it sits in


_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def duration_s(text: object) -> float | None:
    """ISO 8601 duration (``PT0.25S``, ``PT1M``) in seconds, or None."""
    if not isinstance(text, str):
        return None
    m = _DURATION.match(text.strip())
    if not m or not any(m.groupdict().values()):
        return None
    parts = {k: float(v) for k, v in m.groupdict().items() if v}
    return (
        parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60
    ) + parts.get("s", 0)


def sensor(doc: Any) -> SensorReading:
    """A Sensor resource's reading in W or J by its ``ReadingType``."""
    d = doc if isinstance(doc, dict) else {}
    rtype = str(d.get("ReadingType") or "")
    if rtype == "Power":
        kind: str | None = "power"
        value = number(d.get("Reading"))
    elif rtype in ENERGY_TYPES:
        kind = "energy"
        value = number(d.get("Reading"), ENERGY_TYPES[rtype])
    else:
        kind, value = None, Value(None, f"ReadingType {rtype or 'missing'}: not power or energy")
    units = d.get("ReadingUnits")
    if kind is not None and units is not None and units != UNITS[rtype]:
        value = Value(None, f"ReadingUnits {units!r} disagrees with ReadingType {rtype}: not read")
    acc = d.get("Accuracy")
    accuracy = float(acc) / 100 if isinstance(acc, int | float) and acc >= 0 else None
    ctx = d.get("PhysicalContext")
    sub = d.get("PhysicalSubContext")
    oem = d.get("Oem")
    parent = oem.get("ParentalContext") if isinstance(oem, dict) else None
    return SensorReading(
        sensor_id=str(d.get("Id") or ""),
        name=str(d.get("Name") or ""),
        reading_type=rtype,
        kind=kind,
        value=value,
        physical_context=ctx if isinstance(ctx, str) else None,
        accuracy_frac=accuracy,
        sensing_interval_s=duration_s(d.get("SensingInterval")),
        sub_context=sub if isinstance(sub, str) else None,
        parent_context=parent if isinstance(parent, str) else None,
    )


Role = Literal["total", "supply", "part", "unknown"]


def sensor_role(s: SensorReading) -> tuple[Role, str]:
    """What a sensor measures, and why: ``total`` (the whole chassis), ``supply`` (a PSU's input;
    their sum is the input), ``part`` (a CPU, a regulator output, ...) or ``unknown`` (nothing
    says; the probe takes it for the total only when nothing else measures the chassis).

    Decided by what the sensor declares, never by what it lacks: ``PhysicalContext`` Chassis is
    the total; something that sits in a part (``Oem.ParentalContext`` other than Chassis, a part
    context) is a part; a board, power-subsystem or regulator *input* named like the whole thing
    ("Sys Power", "Node") is the total (HPE Cray's node input is a VoltageRegulator Input named
    "Node"); a sensor without context is a part when its name or id names one (CPU, GPU, ...).
    """
    ctx, sub, parent = s.physical_context, s.sub_context, s.parent_context
    named_total = bool(TOTAL_WORDS.search(s.name or s.sensor_id))
    if ctx == "Chassis":
        return "total", "PhysicalContext Chassis: the whole chassis"
    if parent not in (None, "Chassis"):
        return "part", f"inside a {parent}"
    if ctx in SUPPLY_CONTEXTS:
        if sub == "Output":
            return "part", f"{ctx} output (the input is what the chassis draws)"
        return "supply", f"{ctx} input: the supplies' sum is the chassis input"
    if ctx in BOARD_CONTEXTS:
        where = f"PhysicalContext {ctx}" + (f" {sub}" if sub else "")
        if named_total and sub != "Output":
            return "total", f"{where} named {s.name!r}: the chassis input"
        return "part", where
    if ctx is not None:
        return "part", f"PhysicalContext {ctx}"
    if PART_WORDS.search(f"{s.name} {s.sensor_id}"):
        return "part", f"no PhysicalContext; its name {s.name!r} names a part"
    if named_total:
        return "total", f"no PhysicalContext; named {s.name!r}"
    return "unknown", "no PhysicalContext and a name that says nothing"
