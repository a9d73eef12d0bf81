"""Pure parsing of SCPI replies into readings in SI units: no I/O, never raises on input.

A reply is one line of ASCII. It is split by the profile's separator, each field must look like
the instrument's documented number format (a field with a byte dropped or a stray character does
not), sentinel values ("no data", "over range") are rejected rather than read as numbers, and the
fields of one acquisition are cross-checked (P against V·I) so a corrupted digit that still looks
like a number is caught where the instrument gives the redundancy. Every rejection carries a
reason that names the reply. Values are already SI (V, A, W) on these instruments; this module is
the one place that would convert them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from powerd.probes.scpi.profiles import Check, Mode, Profile

MAX_REPLY_CHARS = 200
HEADER_RE = re.compile(r"^[A-Z][A-Z0-9_:]*\s+")
ESR_RE = re.compile(r"^\+?\d+$")
ERROR_RE = re.compile(r"^\s*([+-]?\d+)\s*[, ]\s*\"?([^\"]*)\"?\s*$")
REL_SLACK = 0.002


@dataclass(frozen=True)
class Field:
    """One number of a reply with its last-digit step (resolution) read from its text."""

    value: float
    step: float


@dataclass(frozen=True)
class Reading:
    """Power in W from one poll, with what it was computed from."""

    power_w: float
    volts: float | None = None
    amps: float | None = None


@dataclass(frozen=True)
class Reject:
    """A reply that is not integrated, and why (shown to the user, counted)."""

    reason: str


def _decode(raw: bytes) -> str | None:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    if any(not (c.isprintable() or c in "\r\n\t") for c in text):
        return None
    return text.strip()


def number_step(text: str) -> float:
    """The value of one unit in the last digit of a number's text (e.g. "2.035" → 0.001)."""
    mantissa, _, exp = text.upper().partition("E")
    mantissa = mantissa.lstrip("+-")
    decimals = len(mantissa.partition(".")[2])
    exponent = int(exp) if exp else 0
    return float(10.0 ** (exponent - decimals))


def parse_fields(
    raw: bytes, profile: Profile, count: int, strict: bool = True
) -> list[Field] | Reject:
    """Split one reply into ``count`` numbers in the profile's format."""
    text = _decode(raw)
    shown = raw[:60]
    if text is None:
        return Reject(f"reply {shown!r} has non-printable bytes")
    if not text:
        return Reject("empty reply")
    if len(text) > MAX_REPLY_CHARS:
        return Reject(f"reply {shown!r}... is too long")
    parts = text.split(profile.separator)
    for alt in profile.alt_separators:
        if len(parts) != count and alt in text:
            parts = text.split(alt)
    if len(parts) != count:
        return Reject(f"reply {text[:60]!r} has {len(parts)} fields, expected {count}")
    pattern = re.compile(
        profile.number_re if strict else r"^[+-]?(\d+\.?\d*|\.\d+)([Ee][+-]?\d+)?$"
    )
    out: list[Field] = []
    for part in parts:
        token = HEADER_RE.sub("", part.strip())  # a header left on ("U +5.0000E+0")
        if not pattern.match(token):
            return Reject(
                f"field {token[:30]!r} of reply {text[:60]!r} is not a number as expected"
            )
        value = float(token)
        if not math.isfinite(value):
            return Reject(f"field {token!r} is not finite")
        if profile.sentinel_abs is not None and abs(value) >= profile.sentinel_abs * 0.999:
            return Reject(f"field {token!r} means no data or over range (not a reading)")
        out.append(Field(value, number_step(token)))
    return out


def combine(fields: dict[str, Field], check: Check, same_acquisition: bool) -> Reading | Reject:
    """Power from named fields; cross-check P against V·I where one acquisition gave all three."""
    v, i, p = fields.get("v"), fields.get("i"), fields.get("p")
    if p is None:
        if v is None or i is None:
            return Reject("the mode gives neither power nor both voltage and current")
        return Reading(v.value * i.value, v.value, i.value)
    if v is not None and i is not None and same_acquisition and check != "none":
        vi = v.value * i.value
        tol = p.step + abs(i.value) * v.step + abs(v.value) * i.step + REL_SLACK * abs(vi)
        if check == "vi" and abs(p.value - vi) > tol:
            return Reject(f"P={p.value:g} W disagrees with V×I={vi:g} W: a corrupted digit")
        if check == "bound" and abs(p.value) > abs(vi) + tol:
            return Reject(f"|P|={abs(p.value):g} W exceeds V×I={abs(vi):g} W: a corrupted digit")
    return Reading(p.value, v.value if v else None, i.value if i else None)


def parse_reading(
    replies: list[bytes], profile: Profile, mode: Mode, strict: bool = True
) -> Reading | Reject:
    """A whole poll: one reply per query of ``mode``, fields named by ``mode.fields``."""
    if len(replies) != len(mode.queries):
        return Reject(f"{len(replies)} replies for {len(mode.queries)} queries")
    counts = _fields_per_query(mode)
    named: dict[str, Field] = {}
    names = iter(mode.fields)
    for raw, n in zip(replies, counts, strict=True):
        got = parse_fields(raw, profile, n, strict)
        if isinstance(got, Reject):
            return got
        for f in got:
            named[next(names)] = f
    return combine(named, mode.check, mode.same_acquisition)


def _fields_per_query(mode: Mode) -> list[int]:
    """Fields per reply: a single query carries them all, several queries one each."""
    if len(mode.queries) == 1:
        return [len(mode.fields)]
    return [1] * len(mode.queries)


def parse_idn(raw: bytes) -> str | None:
    """The ``*IDN?`` text, or None if it is not printable ASCII."""
    text = _decode(raw)
    return text if text else None


def parse_error(raw: bytes) -> tuple[int, str] | None:
    """``SYST:ERR?`` (``-113,"Undefined header"``, ``-113  Undefined header``) or ``*ESR?``
    (an event register value): (code, text), None if not understood."""
    text = _decode(raw)
    if not text:
        return None
    m = ERROR_RE.match(text)
    if m:
        return int(m.group(1)), m.group(2).strip()
    if ESR_RE.match(text):
        return int(text), describe_esr(int(text))
    return None


def describe_esr(value: int) -> str:
    """IEEE 488.2 standard event status register bits that mean an error."""
    bits = {32: "command error", 16: "execution error", 8: "device error", 4: "query error"}
    names = [name for bit, name in bits.items() if value & bit]
    return ", ".join(names) if names else "no error bits"


def parse_ready(raw: bytes, mask: int) -> bool | None:
    """A status register query (``:DSR?``): True if any ``mask`` bit is set; None if unreadable."""
    text = _decode(raw)
    if not text or not ESR_RE.match(text) or len(text) > 6:
        return None
    return bool(int(text) & mask)
