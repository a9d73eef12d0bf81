"""Pure parsers of Huawei ``npu-smi`` output: device list and ``info -t power`` readings in W.

``npu-smi`` prints ``\\t%-30s : value`` lines (npu-smi source). ``npu-smi info -t power -i <id>
[-c <chip>]`` prints one of three labels, chosen by the device's type:

- ``Power Dissipation(W)``: the board's power (the MCU of the card): a reading;
- ``NPU Real-time Power(W)``: an NPU chip's power: a reading;
- ``Rated Power Dissipation(W)``: printed instead on an Ascend 310: the chip's rated power, a
  constant from its specification. It is NOT a measurement and is never reported as one.

Values are W with one decimal (``93.6``); ``NA`` is no reading, never 0 W. Under a Chinese locale
the tool's messages are GB2312, so bytes that are not UTF-8 are decoded as GB2312.

``npu-smi info -l`` lists the devices: ``NPU ID : <id>`` and ``Chip Count : <n>`` per device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KV_RE = re.compile(r"^\s*(.+?)\s*:\s*(.*?)\s*$")
NUMBER_RE = re.compile(r"^-?[0-9]+(?:\.[0-9]+)?$")
READING_LABELS = ("Power Dissipation(W)", "NPU Real-time Power(W)")
RATING_LABEL = "Rated Power Dissipation(W)"


@dataclass(frozen=True)
class PowerInfo:
    """One ``-t power`` output: the reading in W and its label, a rating, or why neither."""

    reading_w: float | None = None
    label: str | None = None
    rating_w: float | None = None
    problem: str | None = None


def decode(raw: bytes) -> str:
    """UTF-8, else GB2312 (npu-smi under a zh_CN locale), never failing."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("gb2312", "replace")


def _pairs(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        m = KV_RE.match(line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def parse_power(raw: bytes) -> PowerInfo:
    """The power of one ``npu-smi info -t power`` output (see the module docstring)."""
    text = decode(raw)
    pairs = dict(_pairs(text))
    for label in READING_LABELS:
        if label in pairs:
            value = pairs[label]
            if NUMBER_RE.match(value) and float(value) >= 0:
                return PowerInfo(reading_w=float(value), label=label)
            return PowerInfo(label=label, problem=f"{label} reads {value!r}")
    if RATING_LABEL in pairs:
        value = pairs[RATING_LABEL]
        rating = float(value) if NUMBER_RE.match(value) else None
        shown = f"{rating:g} W" if rating is not None else repr(value)
        return PowerInfo(
            rating_w=rating,
            problem=f"only a rated power ({shown}, a specification, not a measurement): "
            "this device has no power sensor; measure it with an external meter",
        )
    first = text.strip().splitlines()[:1]
    return PowerInfo(problem=f"no power line in the output ({first[0][:100]!r})" if first else
                     "empty output")  # fmt: skip


def parse_list(raw: bytes) -> list[tuple[int, int]]:
    """``npu-smi info -l``: (NPU ID, Chip Count) per device; ValueError if none is listed."""
    devices: list[tuple[int, int]] = []
    for key, value in _pairs(decode(raw)):
        if key == "NPU ID" and (value.isascii() and value.isdigit()):
            devices.append((int(value), 1))
        elif key == "Chip Count" and (value.isascii() and value.isdigit()) and devices:
            devices[-1] = (devices[-1][0], int(value))
    if not devices:
        raise ValueError("no 'NPU ID' in the output of npu-smi info -l")
    return devices
