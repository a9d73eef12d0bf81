"""Pure parsing of WT300-series replies: bytes in, readings in SI units out, never an exception.

Everything the meter says passes through here, and units are converted here only (``WH`` in Wh →
J; P in W, U in V, I in A, ranges in V and A, the update interval in s). A reply that is not what
was asked for comes back as ``BadFrame`` with the reason, so the session counts it and nothing of
it is integrated.

The meter's ASCII numbers are ``<NR3>`` (``1.2345E+01``). Error data come as ``NAN`` (no data:
range switching, item not set) and ``INF``/``-INF`` (overrange, overflow); in FLOAT format, and
from some firmware in ASCII, as 9.91E+37 (NAN) and 9.9E+37 (INF). All of them become NaN with a
marker, never a number.

RS-232 has no checksum, so a flipped digit can still look like a number: an item requested twice
in a row (``copies`` 2) must read the same twice, or the frame is rejected.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?")
MARKERS = {"NAN": "no data", "INF": "overrange", "+INF": "overrange", "-INF": "overrange"}
NAN_SENTINEL = 9.91e37
INF_SENTINEL = 9.9e37
WH_TO_J = 3600.0
UNIT_SCALE = {"P": 1.0, "U": 1.0, "I": 1.0, "WH": WH_TO_J, "TIME": 1.0}
HEADER_RE = re.compile(r"^:?[A-Za-z][A-Za-z0-9:]*\s+")
MAX_REPLY_CHARS = 4096


@dataclass(frozen=True)
class Item:
    """One numeric item: a function (``P``, ``WH``, ``U``, ``I``) of an input element."""

    function: str
    element: int

    @property
    def command_arg(self) -> str:
        return f"{self.function},{self.element}"


@dataclass(frozen=True)
class Layout:
    """The items set with ``:NUM:NORM:ITEMk``: logical item i ``copies[i]`` times in a row."""

    items: tuple[Item, ...]
    copies: tuple[int, ...]

    @property
    def wire_items(self) -> tuple[Item, ...]:
        return tuple(it for it, n in zip(self.items, self.copies, strict=True) for _ in range(n))


@dataclass(frozen=True)
class Value:
    """One item's reading in SI units; ``marker`` set (and ``si`` NaN) for the error data."""

    si: float
    marker: str | None
    lsd_si: float


@dataclass(frozen=True)
class Frame:
    """A good ``:NUM:NORM:VAL?`` reply: one value per logical item of the layout."""

    values: dict[Item, Value]


@dataclass(frozen=True)
class BadFrame:
    """A reply that cannot be trusted, and why."""

    reason: str


@dataclass(frozen=True)
class Identity:
    maker: str
    model: str
    serial: str
    firmware: str


def to_text(data: bytes) -> str | None:
    """Printable ASCII without the terminator, or None if it holds anything else."""
    body = data.rstrip(b"\r\n")
    if len(body) > MAX_REPLY_CHARS or any(b < 0x20 or b > 0x7E for b in body):
        return None
    return body.decode("ascii").strip()


def strip_header(text: str) -> str:
    """``:INPUT:VOLTAGE:RANGE 150.0E+00`` → ``150.0E+00`` (in case headers are on)."""
    return HEADER_RE.sub("", text, count=1)


def parse_number(field: str) -> Value | None:
    """One ASCII field in the meter's own unit, or None if it is not a number or a marker."""
    f = field.strip().upper()
    if f in MARKERS:
        return Value(math.nan, MARKERS[f], 0.0)
    if not NUMBER_RE.fullmatch(f):
        return None
    v = float(f)
    if abs(v) >= INF_SENTINEL * (1 - 1e-6):
        nearer_nan = abs(abs(v) - NAN_SENTINEL) < abs(abs(v) - INF_SENTINEL)
        return Value(math.nan, "no data" if nearer_nan else "overrange", 0.0)
    mantissa, _, exp = f.partition("E")
    decimals = len(mantissa.partition(".")[2])
    try:
        lsd = 10.0 ** (int(exp or "0") - decimals)
    except OverflowError:  # e.g. "0E309": no meter sends that; garbage, not a number
        return None
    return Value(v, None, lsd)


def _scaled(v: Value, function: str) -> Value:
    k = UNIT_SCALE.get(function, 1.0)
    return Value(v.si * k, v.marker, v.lsd_si * k)


def parse_values(data: bytes, layout: Layout) -> Frame | BadFrame:
    """Decode a ``:NUM:NORM:VAL?`` reply against the layout it was configured with."""
    if not data.endswith(b"\n"):
        return BadFrame("reply without terminator (partial or dropped bytes)")
    text = to_text(data)
    if text is None:
        return BadFrame("reply holds non-ASCII or control bytes (garbled)")
    fields = strip_header(text).split(",")
    wire = layout.wire_items
    if len(fields) != len(wire):
        return BadFrame(f"{len(fields)} fields, expected {len(wire)} (garbled or dropped bytes)")
    values: dict[Item, Value] = {}
    at = 0
    for item, n in zip(layout.items, layout.copies, strict=True):
        group = [f.strip() for f in fields[at : at + n]]
        at += n
        if any(g != group[0] for g in group[1:]):
            return BadFrame(f"the copies of {item.command_arg} differ: {group} (garbled)")
        v = parse_number(group[0])
        if v is None:
            return BadFrame(f"{item.command_arg}={group[0][:20]!r} is not a number (garbled)")
        values[item] = _scaled(v, item.function)
    return Frame(values)


def parse_idn(data: bytes) -> Identity | None:
    """``YOKOGAWA,WT310,C2XX00000,F1.03`` → Identity, or None if it is not an ID string."""
    text = to_text(data)
    if text is None:
        return None
    parts = [p.strip() for p in strip_header(text).split(",")]
    if len(parts) < 2 or not parts[1]:
        return None
    parts += [""] * (4 - len(parts))
    return Identity(parts[0], parts[1], parts[2], parts[3])


def parse_int(data: bytes, maximum: int = 65535) -> int | None:
    """A register value such as the EESR (``0`` to ``maximum``)."""
    text = to_text(data)
    if text is None:
        return None
    text = strip_header(text)
    if not re.fullmatch(r"\+?\d{1,6}", text):
        return None
    v = int(text)
    return v if v <= maximum else None


def parse_error(data: bytes) -> tuple[int, str] | None:
    """``:STAT:ERR?`` → (code, message): ``0,"No error"``, ``-113,"Undefined header"``."""
    text = to_text(data)
    if text is None:
        return None
    m = re.fullmatch(r'([+-]?\d{1,4})\s*(?:,\s*"?([^"]*)"?)?', strip_header(text))
    if m is None:
        return None
    return int(m.group(1)), (m.group(2) or "").strip()


def parse_range(data: bytes) -> tuple[float, bool] | None:
    """A range setting in V or A, and whether auto range moved it during integration (the meter
    marks that with a hyphen)."""
    text = to_text(data)
    if text is None:
        return None
    text = strip_header(text)
    moved = text.startswith("-")
    text = text.lstrip("-").rstrip("VvAa")
    v = parse_number(text)
    if v is None or v.marker is not None or not v.si > 0:
        return None
    return v.si, moved


def parse_rate(data: bytes) -> float | None:
    """``:RATE?`` → the update interval in s (``100.0E-03``, ``100MS``, ``1S``); None for AUTO."""
    text = to_text(data)
    if text is None:
        return None
    text = strip_header(text).upper()
    scale = 1.0
    if text.endswith("MS"):
        text, scale = text[:-2], 1e-3
    elif text.endswith("S"):
        text = text[:-1]
    v = parse_number(text)
    if v is None or v.marker is not None or not v.si > 0:
        return None
    return v.si * scale


def parse_bool(data: bytes) -> bool | None:
    text = to_text(data)
    if text is None:
        return None
    return {"1": True, "ON": True, "0": False, "OFF": False}.get(strip_header(text).upper())


def parse_crest_factor(data: bytes) -> int | None:
    """``:INP:CFAC?`` → 3 or 6 (``6A`` behaves as 6 for ranges and accuracy)."""
    text = to_text(data)
    if text is None:
        return None
    return {"3": 3, "6": 6, "A6": 6, "6A": 6}.get(strip_header(text).upper())


INTEG_STATES = {
    "RES": "reset",
    "RESET": "reset",
    "STAR": "start",
    "START": "start",
    "STOP": "stop",
    "TIM": "timeup",
    "TIMEUP": "timeup",
    "ERR": "error",
    "ERROR": "error",
}


def parse_integ_state(data: bytes) -> str | None:
    """``:INTEG:STAT?`` → reset, start, stop, timeup or error."""
    text = to_text(data)
    if text is None:
        return None
    return INTEG_STATES.get(strip_header(text).upper())
