"""Pure conversions for FuriosaAI NPUs: binding values and ``furiosa-smi`` JSON in, W out.

The binding's ``power_consumption()`` is a float in W (``furiosa_smi`` 2026.4 reads the card's
hwmon ``power<N>_average`` labelled ``RMS_TOTAL`` in µW and divides by 1e6; checked by running
the real wheel on a fake sysfs tree). ``furiosa-smi info --format json`` prints a list of
objects with ``dev_name`` (``npu0``), ``device_uuid``, ``device_sn``, ``arch``, ``pci_bdf``,
``firmware``, ``temperature`` and ``power``; ``power`` is printed like the table (``"53.00 W"``)
and may be a plain number or ``"N/A"``: all are accepted, and anything that is not a finite,
non-negative number of watts is None with a reason, never 0.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

_WATTS = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(m?W)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Watts:
    value_w: float | None
    reason: str = ""


def binding_power(x: object) -> Watts:
    """``power_consumption()``'s result: a float in W."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return Watts(None, f"power_consumption() returned {x!r:.40}, not a number")
    value = float(x)
    if not math.isfinite(value) or value < 0:
        return Watts(None, f"power_consumption() returned {value!r}: not a reading")
    return Watts(value)


def cli_power(x: object) -> Watts:
    """The JSON ``power`` field: ``"53.00 W"``, ``53.0``, ``"N/A"``."""
    if isinstance(x, int | float) and not isinstance(x, bool):
        return binding_power(x)
    if not isinstance(x, str):
        return Watts(None, f"power is {x!r:.40}")
    m = _WATTS.match(x)
    if not m:
        return Watts(None, f"power is {x!r:.40}, not watts")
    value = float(m.group(1))
    if (m.group(2) or "W").lower() == "mw":
        value /= 1000.0
    return Watts(value)


@dataclass(frozen=True)
class CliDevice:
    name: str
    uuid: str
    arch: str
    power: Watts


def parse_info_json(stdout: bytes) -> list[CliDevice]:
    """Devices of ``furiosa-smi info --format json``; ValueError if it is not that JSON."""
    text = stdout.decode("utf-8", "replace")
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError as err:
        excerpt = text.strip()[:80]
        raise ValueError(f"not JSON ({err.msg} at {err.pos}; starts {excerpt!r})") from None
    if isinstance(doc, dict):  # tolerate {"devices": [...]}
        doc = doc.get("devices", doc.get("info"))
    if not isinstance(doc, list):
        raise ValueError(f"expected a list of devices, got {type(doc).__name__}")
    out: list[CliDevice] = []
    for i, d in enumerate(doc):
        if not isinstance(d, dict):
            raise ValueError(f"device {i} is {type(d).__name__}, not an object")
        name = str(d.get("dev_name") or d.get("device") or f"npu{i}")
        uuid = str(d.get("device_uuid") or d.get("uuid") or "")
        out.append(CliDevice(name, uuid, str(d.get("arch") or "?"), cli_power(d.get("power"))))
    return out
