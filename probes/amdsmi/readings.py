"""Pure conversions of what the ``amdsmi`` binding returns: dicts in, W and J out.

``amdsmi_get_power_info(h)`` returns a dict whose keys changed across ROCm versions:

- ``current_socket_power``: instantaneous socket power, MI300 and later (Linux bare metal);
- ``average_socket_power``: averaged socket power, MI200 and earlier and Navi;
- ``socket_power``: filled since ROCm 7.0 whatever the GPU ("agnostic of the GPU version");
- ``power``: named in older notes (not seen in the 6.x/7.x sources checked; kept as a last resort).

Values are W on Linux bare metal (``amdsmi.h``: "Socket power in W {@linux_bm}, uW {@host}": the
µW unit is only the virtualization host build, which this probe does not support), or the
string ``"N/A"`` (the binding maps a field equal to 0xFFFF to it). The first key with a number
is chosen at open and kept, so a channel never switches between instantaneous and averaged.

``amdsmi_get_energy_count(h)`` returns ``energy_accumulator`` (called ``power`` before ROCm
6.2.1), ``counter_resolution`` (µJ per tick, ≈15.3) and ``timestamp`` (ns, the GPU's clock):
energy in J = accumulator × resolution × 1e-6, a 64-bit counter (no wrap in practice).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

POWER_KEYS = ("current_socket_power", "average_socket_power", "socket_power", "power")
ACCUMULATOR_KEYS = ("energy_accumulator", "power")  # "power" before ROCm 6.2.1
NA_INTS = frozenset({0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF})
UJ = 1e-6
INSTANT_KEYS = frozenset({"current_socket_power"})


def _number(x: object) -> float | None:
    """A finite, non-negative number that is not an N/A sentinel, else None."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    if isinstance(x, int) and x in NA_INTS:
        return None
    value = float(x)
    return value if math.isfinite(value) and value >= 0 else None


@dataclass(frozen=True)
class PowerPick:
    key: str | None
    power_w: float | None
    reason: str = ""


def choose_power_key(info: Mapping[str, object]) -> PowerPick:
    """The first power key with a number, in ``POWER_KEYS`` order; None with why if none."""
    for key in POWER_KEYS:
        value = _number(info.get(key))
        if value is not None:
            return PowerPick(key, value)
    present = {k: info[k] for k in POWER_KEYS if k in info}
    if present:
        shown = ", ".join(f"{k}={v!r}" for k, v in present.items())
        return PowerPick(None, None, f"no power reading ({shown})")
    return PowerPick(None, None, f"no power key in power info (keys: {', '.join(sorted(info))})")


def power_w(info: Mapping[str, object], key: str) -> float | None:
    """The chosen key's value in W, or None (N/A, missing or garbage: never 0)."""
    return _number(info.get(key))


@dataclass(frozen=True)
class EnergyReading:
    energy_j: float | None
    resolution_j: float
    timestamp_ns: int | None
    reason: str = ""


def energy(count: Mapping[str, object]) -> EnergyReading:
    """Accumulator × resolution in J, with the GPU timestamp; None with why on garbage."""
    acc_key = next((k for k in ACCUMULATOR_KEYS if k in count), None)
    if acc_key is None:
        return EnergyReading(None, 0.0, None, f"no accumulator (keys: {', '.join(sorted(count))})")
    acc = count[acc_key]
    res = _number(count.get("counter_resolution"))
    if isinstance(acc, bool) or not isinstance(acc, int) or acc < 0:
        return EnergyReading(None, 0.0, None, f"{acc_key} is not a counter: {acc!r:.40}")
    if res is None or res <= 0:
        reason = f"counter_resolution is {count.get('counter_resolution')!r:.40}"
        return EnergyReading(None, 0.0, None, reason)
    stamp = count.get("timestamp")
    stamp_ns = stamp if isinstance(stamp, int) and not isinstance(stamp, bool) else None
    return EnergyReading(acc * res * UJ, res * UJ, stamp_ns)
