"""The ``$PWR`` line protocol of INA2xx serial loggers: a pure parser from bytes to readings in SI.

A logger (a microcontroller reading an INA226/INA219 over I²C) prints one ASCII line per
conversion, NMEA style::

    $PWR,<seq>,<t_us>,<bus_mV>,<cur_uA>,<pwr_uW>*<XOR>\\r\\n

plus ``$PWRI,key=value,...*<XOR>`` info lines (the banner) and ``$PWRE,<text>*<XOR>`` error lines.
``<XOR>`` is two hex digits, the XOR of every byte between ``$`` and ``*``. README.md is the
normative description for firmware authors.

This module never raises on input: a line that is not exactly well formed (bad checksum, a line cut
short, two lines run together, a field that is not a number, an over-long line) is counted by kind
and dropped, so it can never be integrated. Units are converted here and nowhere else
(mV → V, µA → A, µW → W, µs stays an integer of µs for exact wrap arithmetic).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from powerd.block import F64

I64 = npt.NDArray[np.int64]

MAX_LINE_BYTES = 120
U32 = 1 << 32
NUMBER_RE = re.compile(rb"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
UINT_RE = re.compile(rb"^\d{1,10}$")
HEX2_RE = re.compile(rb"^[0-9A-Fa-f]{2}$")
KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def checksum(body: bytes) -> int:
    """NMEA checksum: XOR of every byte of ``body`` (the text between ``$`` and ``*``)."""
    acc = 0
    for b in body:
        acc ^= b
    return acc


def format_line(body: str) -> bytes:
    """``body`` (e.g. ``PWR,1,1000,5000,200000,1000000``) framed as ``$body*XX\\r\\n``."""
    raw = body.encode("ascii")
    return b"$" + raw + b"*" + f"{checksum(raw):02X}".encode() + b"\r\n"


def pwr_line(seq: int, t_us: int, bus_mv: float, cur_ua: float, pwr_uw: float) -> bytes:
    """One data line as a logger prints it (integers where the value is whole)."""
    return format_line(f"PWR,{seq % U32},{t_us % U32},{_num(bus_mv)},{_num(cur_ua)},{_num(pwr_uw)}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


@dataclass
class Counts:
    """Lines that were not integrated, by reason (cumulative or per parse call)."""

    bad_checksum: int = 0
    garbled: int = 0  # not a known sentence, wrong field count, non-numeric field, too long
    partial: int = 0  # cut short: no ``*XX``, or a fragment before a new ``$``
    noise: int = 0  # bytes outside any ``$`` sentence (boot chatter, line noise)

    def add(self, other: Counts) -> None:
        self.bad_checksum += other.bad_checksum
        self.garbled += other.garbled
        self.partial += other.partial
        self.noise += other.noise

    @property
    def rejected(self) -> int:
        return self.bad_checksum + self.garbled + self.partial

    def describe(self) -> str:
        parts = [
            f"{n} {name.replace('_', ' ')}"
            for name, n in (
                ("bad_checksum", self.bad_checksum),
                ("garbled", self.garbled),
                ("partial", self.partial),
            )
            if n
        ]
        return ", ".join(parts)


@dataclass
class Parsed:
    """Everything found in a chunk of bytes: data lines as arrays, info and error lines."""

    seq: I64
    t_us: I64
    bus_v: F64
    current_a: F64
    power_w: F64
    info: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)

    def __len__(self) -> int:
        return int(self.seq.size)


class LineParser:
    """Feeds bytes in, gives complete sentences out; keeps an unterminated tail between calls.

    Stateful only for the tail (a line split across two reads); everything else is a function of
    the bytes. ``feed`` never raises.
    """

    def __init__(self) -> None:
        self._tail = b""

    def reset(self) -> None:
        """Forget a half-received line (the port was reopened: its rest will never come)."""
        if self._tail:
            self._tail = b""

    def feed(self, data: bytes) -> Parsed:
        buf = self._tail + data
        lines = buf.split(b"\n")
        self._tail = lines.pop()
        counts = Counts()
        if len(self._tail) > MAX_LINE_BYTES:
            # No newline for far too long: the tail cannot become a valid line any more.
            counts.garbled += 1
            self._tail = b""
        return parse_lines(lines, counts)


def parse_bytes(data: bytes) -> Parsed:
    """Parse a complete capture (a trailing unterminated line counts as partial)."""
    lines = data.split(b"\n")
    tail = lines.pop()
    counts = Counts()
    if tail.strip():
        counts.partial += 1
    return parse_lines(lines, counts)


def parse_lines(lines: list[bytes], counts: Counts | None = None) -> Parsed:
    """Parse newline-split lines (without the ``\\n``)."""
    counts = counts if counts is not None else Counts()
    seq: list[int] = []
    t_us: list[int] = []
    bus: list[float] = []
    cur: list[float] = []
    pwr: list[float] = []
    info: list[dict[str, str]] = []
    errors: list[str] = []
    for raw in lines:
        line = raw.rstrip(b"\r")
        start = line.rfind(b"$")
        if start < 0:
            if line.strip():
                counts.noise += 1
            continue
        if start > 0:
            # Text before the last '$': a sentence cut short (its newline lost) or noise.
            if b"$" in line[:start]:
                counts.partial += 1
            else:
                counts.noise += 1
            line = line[start:]
        if len(line) > MAX_LINE_BYTES:
            counts.garbled += 1
            continue
        star = line.rfind(b"*")
        if star < 0 or len(line) - star != 3:
            counts.partial += 1
            continue
        body, ck = line[1:star], line[star + 1 :]
        if not HEX2_RE.match(ck):
            counts.garbled += 1
            continue
        if checksum(body) != int(ck, 16):
            counts.bad_checksum += 1
            continue
        fields = body.split(b",")
        kind = fields[0]
        if kind == b"PWR":
            values = _pwr_fields(fields)
            if values is None:
                counts.garbled += 1
                continue
            s, t, v, i, p = values
            seq.append(s)
            t_us.append(t)
            bus.append(v)
            cur.append(i)
            pwr.append(p)
        elif kind == b"PWRI":
            kv = _info_fields(fields)
            if kv is None:
                counts.garbled += 1
                continue
            info.append(kv)
        elif kind == b"PWRE":
            errors.append(b",".join(fields[1:]).decode("ascii", "replace")[:200])
        else:
            counts.garbled += 1
    return Parsed(
        np.array(seq, np.int64),
        np.array(t_us, np.int64),
        np.array(bus, np.float64) / 1e3,
        np.array(cur, np.float64) / 1e6,
        np.array(pwr, np.float64) / 1e6,
        info,
        errors,
        counts,
    )


def _pwr_fields(fields: list[bytes]) -> tuple[int, int, float, float, float] | None:
    if len(fields) != 6:
        return None
    seq_b, t_b, v_b, i_b, p_b = fields[1:]
    if not (UINT_RE.match(seq_b) and UINT_RE.match(t_b)):
        return None
    if not all(NUMBER_RE.match(x) for x in (v_b, i_b, p_b)):
        return None
    seq, t = int(seq_b), int(t_b)
    if seq >= U32 or t >= U32:
        return None
    return seq, t, float(v_b), float(i_b), float(p_b)


def _info_fields(fields: list[bytes]) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for item in fields[1:]:
        key, eq, value = item.decode("ascii", "replace").partition("=")
        if not eq or not KEY_RE.match(key):
            return None
        out[key] = value
    return out
