"""Pure converters from the text of one sysfs attribute to an SI value (the probes' parsers).

Every sysfs power probe (hwmon, rapl, jetson) converts here and nowhere else, so each source unit
(µW, µJ, mW, mV × mA) is turned into W or J at exactly one place. A converter raises ValueError
for text that is not a reading ("N/A", empty, garbage): the caller makes that the channel's
problem, never a 0 W sample.
"""

from __future__ import annotations

import math

NOT_AVAILABLE = {"N/A", "NA", "NAN", "-", "UNKNOWN"}


def parse_int(text: str) -> int:
    """One decimal integer, as the kernel prints it; ValueError says what was found instead."""
    t = text.strip()
    if not t:
        raise ValueError("empty reading")
    if t.upper() in NOT_AVAILABLE:
        raise ValueError(f"reading not available ({t!r})")
    try:
        return int(t, 10)
    except ValueError:
        raise ValueError(f"expected an integer, found {t[:40]!r}") from None


def _finite(x: float, what: str) -> float:
    if not math.isfinite(x):
        raise ValueError(f"{what} is not finite")
    return x


def microwatts_to_w(text: str) -> float:
    """hwmon ``power*_input`` / ``power*_average``: µW → W."""
    return _finite(parse_int(text) / 1e6, "power")


def milliwatts_to_w(text: str) -> float:
    """Jetson iio ``in_power*_input``: mW → W."""
    return _finite(parse_int(text) / 1e3, "power")


def microjoules_to_j(text: str) -> float:
    """A cumulative µJ counter (hwmon ``energy*_input``, powercap ``energy_uj``) → J.

    A counter is never negative; a negative value is a driver error, not a reading.
    """
    uj = parse_int(text)
    if uj < 0:
        raise ValueError(f"negative energy counter {uj} µJ")
    return uj / 1e6


def rail_power_w(millivolts: str, milliamps: str) -> float:
    """A rail's power from its bus voltage (mV) and current (mA): mV × mA = µW → W."""
    return _finite(parse_int(millivolts) * parse_int(milliamps) / 1e6, "power")


def milliseconds_to_s(text: str) -> float:
    """``update_interval`` / ``power*_average_interval``: ms → s; must be > 0 to be a period."""
    ms = parse_int(text)
    if ms <= 0:
        raise ValueError(f"interval {ms} ms is not a period")
    return ms / 1e3
