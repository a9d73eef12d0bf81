"""Pure parser of ``ipmitool dcmi power reading`` output: text in, a verdict and watts out.

ipmitool (``lib/ipmi_dcmi.c``, ``ipmi_dcmi_pwr_rd``) prints, with varying padding::

    Instantaneous power reading:                   235 Watts
    Minimum during sampling period:                188 Watts
    Maximum during sampling period:                410 Watts
    Average power reading over sample period:      240 Watts
    IPMI timestamp:                           Tue Jul 16 14:57:49 2024
    Sampling period:                          00000001 Seconds.
    Power reading state is:                   activated

The sampling period is the BMC's value in ms divided by 1000 (so 500 ms prints ``00000000``).
Newer ipmitool prints the timestamp without a newline, which glues "Sampling period" to the
timestamp line; the fields are therefore found by pattern in the whole text, never by line.
"Power reading state" is bit 6 of the DCMI response's state byte: ``deactivated`` means the BMC
has no power measurement, and its numbers mean nothing.

``judge`` turns a parsed reading into a sample or a reason not to trust it: deactivated, 0 W
(BMCs that advertise DCMI but never fill it in), or output that is not a DCMI reading at all.
Watts are the one unit, and integer W as the BMC sends them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WATTS = {
    "instant_w": r"Instantaneous power reading:\s*(-?\d+)\s*Watts",
    "min_w": r"Minimum during sampling period:\s*(-?\d+)\s*Watts",
    "max_w": r"Maximum during sampling period:\s*(-?\d+)\s*Watts",
    "avg_w": r"Average power reading over sample period:\s*(-?\d+)\s*Watts",
}
_PERIOD = re.compile(r"Sampling period:\s*(\d+)\s*Seconds")
_PERIOD_TEXT = re.compile(r"Sampling period:\s*([^\n]*?)\s*(?:\n|$)")
_STATE = re.compile(r"Power reading state is:\s*(activated|deactivated)")
_STAMP = re.compile(r"IPMI timestamp:\s*(.*?)\s*(?:Sampling period:|\n|$)")

ACTIVATE_HINT = (
    "the BMC reports 'Power reading state is: deactivated', i.e. it has no power measurement "
    "(DCMI state bit 6 clear), so its watts mean nothing. This is set by the BMC firmware, not "
    "by a command: update the BMC firmware or enable power monitoring in its web interface, "
    "check that the PSUs support PMBus readings, or read the PSU input sensors with "
    "`ipmitool sdr type 'Power Supply'` / `ipmitool sensor | grep -i watts`, or use the "
    "redfish probe"
)
ZERO_HINT = (
    "the BMC reports 0 W while the server is running: it advertises DCMI power readings but "
    "does not fill them in (seen on some ASUS, Supermicro and Quanta BMCs), so this reading is "
    "not trusted and no sample is recorded. Read the PSU input power with "
    "`ipmitool sdr type 'Power Supply'` or `ipmitool sensor | grep -i watts`, or use the "
    "redfish probe"
)


@dataclass(frozen=True)
class DcmiReading:
    """The fields of one ``dcmi power reading``; None where the output lacked them."""

    instant_w: int | None
    min_w: int | None
    max_w: int | None
    avg_w: int | None
    period_s: int | None
    period_text: str | None
    state: str | None
    timestamp: str | None


@dataclass(frozen=True)
class Verdict:
    """Either ``power_w`` (a trusted sample) or ``problem`` (why there is none)."""

    power_w: float | None
    problem: str | None
    reading: DcmiReading | None = None


def parse_reading(text: str) -> DcmiReading:
    """Every field that is present; never raises."""
    found: dict[str, int | None] = {}
    for key, pattern in _WATTS.items():
        m = re.search(pattern, text)
        found[key] = int(m.group(1)) if m else None
    period = _PERIOD.search(text)
    period_text = _PERIOD_TEXT.search(text)
    state = _STATE.search(text)
    stamp = _STAMP.search(text)
    return DcmiReading(
        instant_w=found["instant_w"],
        min_w=found["min_w"],
        max_w=found["max_w"],
        avg_w=found["avg_w"],
        period_s=int(period.group(1)) if period else None,
        period_text=period_text.group(1).strip() if period_text else None,
        state=state.group(1) if state else None,
        timestamp=stamp.group(1).strip() if stamp and stamp.group(1).strip() else None,
    )


def judge(text: str) -> Verdict:
    """A trusted instantaneous reading in W, or the reason there is none."""
    r = parse_reading(text)
    if r.instant_w is None or r.state is None:
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        seen = f"{first[:160]!r}" if first else "no output"
        return Verdict(None, f"not a DCMI power reading ({seen})", r)
    if r.state == "deactivated":
        return Verdict(None, ACTIVATE_HINT, r)
    if r.instant_w < 0:
        return Verdict(None, f"negative power reading ({r.instant_w} W): not trusted", r)
    if r.instant_w == 0:
        return Verdict(None, ZERO_HINT, r)
    return Verdict(float(r.instant_w), None, r)
