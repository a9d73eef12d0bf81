"""Pure decoders for what an X-NUCLEO-LPM01A (PowerShield) sends: bytes in, SI readings out.

Three kinds of bytes come from the shield (firmware help text, MLPerf Tiny's
``power_manager_lpm.py``, Zephyr's ``scripts/pm/stm32l562e_dk/PowerShield.py``):

- **reply lines** ``\\r\\nPowerShield > ack <command> [value]\\r\\n\\r\\n``; a refusal is
  ``PowerShield > error ...`` and then ``PowerShield > Error detail: <why>``; the end of an
  acquisition is announced by ``PowerShield > Acquisition completed``.
- **ASCII data** (``format ascii_dec``): one token per line ``DDDD±EE`` meaning DDDD × 10^±EE,
  amperes (``output current``) or joules per sample period (``output energy``), e.g.
  ``6409-07`` = 640.9 µA; ``TimeStamp: 001s 000ms, buff 00%`` lines are interleaved.
- **binary data** (``format bin_hexa``): 2-byte big-endian words ``v``, amperes =
  ``(v & 0xFFF) × 16^-(v >> 12)`` (``52A0`` = 0x2A0 × 16⁻⁵ = 640.9 µA, the firmware's own
  example); the exponent nibble 0xF is reserved for metadata frames ``F0 <type> ... FF FF``:
  F1 error text, F2 information text, F3 timestamp (4-byte big-endian ms, 1-byte buffer load in
  %), F4 end of acquisition, F5 overcurrent, F6 target power down, F7 voltage (2-byte mV). A frame
  can have an odd length, so the word alignment follows the frame's end.

Values leave this module in SI, converted here and nowhere else: watts (current × the configured
voltage, ``multiplier``) or joules. Every value also gets its **slot**: its index on the
acquisition's sample grid (slot k is at k / rate after the start), counted here and re-anchored
on the shield's timestamps, so lost bytes shift no later sample in time.

Nothing here raises on garbage. The protocol has no checksum, so what can be checked is checked:
an ASCII token must be ``DDDD±EE``; a binary word must decode to a current the shield can
report, 0.1 nA to 0.1 A (UM2243: static mode reads from 1 nA, the dynamic range ends at 50 mA
with protection from 59 mA; exponent 0 would mean amperes, so words 0x0000-0x0FFF are refused);
a frame must have its ``FF FF`` terminator, and a timestamp must fit the steady cadence of the
ones before. A byte lost from the binary stream shifts the word alignment: ``BinaryDecoder``
holds words until the alignment is confirmed past them, and drops and counts the unconfirmed
ones when a shift shows. Undecodable words, lines and frames are counted as ``bad`` and missing
slots as ``lost``: never integrated. A flipped bit that still decodes to a plausible value
cannot be told from data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from powerd.block import F64, I64

PROMPT = b"PowerShield >"
MAX_PLAUSIBLE_A = 0.1
MIN_PLAUSIBLE_A = 1e-10
MAX_TEXT = 256
MAX_LINE = 512
MAX_PRESYNC = 1 << 20
LOOKAHEAD_WORDS = 24
LOOKBACK_WORDS = 24
MAX_HOLD_S = 2.5
_SCALE = 16.0 ** -np.arange(16, dtype=np.float64)
_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\r\n\t\x00"
_TOKEN_RE = re.compile(rb"(\d{4})([+-])(\d{2})")
_TS_RE = re.compile(rb"TimeStamp:\D?\s*(\d+)\s*s\s*(\d+)\s*ms,?\s*buff\s*(\d+)\s*%")
_DAMAGED_DATA_RE = re.compile(rb"[0-9+\-]{3,15}")

EventKind = str  # "timestamp" | "error" | "detail" | "info" | "ack" | "end" | "overcurrent" |
#                  "power_down" | "voltage" | "text"


@dataclass(frozen=True)
class Event:
    """Something other than a sample, at grid slot ``slot`` of the stream."""

    slot: int
    kind: EventKind
    text: str = ""
    device_ms: int = -1
    load_pct: int = -1


@dataclass
class Decoded:
    """What one chunk of bytes held: samples on their grid slots, events, and what was lost."""

    slot: I64
    value: F64
    events: list[Event] = field(default_factory=list)
    bad: int = 0
    lost: int = 0
    ahead: int = 0
    ended: bool = False
    rest: bytes = b""

    def __len__(self) -> int:
        return int(self.slot.size)


def _empty() -> Decoded:
    return Decoded(np.empty(0, np.int64), np.empty(0, np.float64))


# --- reply lines ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One text line from the shield, classified."""

    kind: str  # ack | error | detail | completed | timestamp | data | text | empty
    text: str


def _text(b: bytes) -> str:
    return b.decode("ascii", "replace").strip()


def classify_line(line: bytes) -> Reply:
    """Classify one line (without its line end). ``text`` drops the prompt and the keyword."""
    s = line.strip(b"\r\n\x00 \t")
    if s.startswith(PROMPT):
        s = s[len(PROMPT) :].strip()
    elif b" > " in s[:24]:  # a prompt with a damaged byte
        s = s.partition(b" > ")[2].strip()
    if not s:
        return Reply("empty", "")
    low = s.lower()
    if low.startswith(b"ack"):
        return Reply("ack", _text(s[3:]))
    if low.startswith(b"error detail"):
        return Reply("detail", _text(s.partition(b":")[2]))
    if low.startswith((b"error", b"err ")):
        return Reply("error", _text(s.split(None, 1)[1] if b" " in s else b"").lstrip(": "))
    if b"acquisition completed" in low:
        return Reply("completed", _text(s))
    if s.startswith(b"TimeStamp"):
        return Reply("timestamp", _text(s))
    if _TOKEN_RE.fullmatch(s):
        return Reply("data", _text(s))
    return Reply("text", _text(s))


def parse_timestamp_line(line: bytes) -> tuple[int, int] | None:
    """``TimeStamp: 001s 250ms, buff 07%`` → (1250 ms, 7 %); None if it does not parse."""
    m = _TS_RE.search(line)
    if m is None:
        return None
    return int(m.group(1)) * 1000 + int(m.group(2)), int(m.group(3))


# --- the sample grid ----------------------------------------------------------------------


class Slots:
    """Counts grid slots and re-anchors them on the shield's millisecond timestamps.

    The first timestamp fixes the relation between the shield's clock and the slot count (so its
    epoch does not matter); a later one that finds fewer slots than its time allows means samples
    were lost: the count jumps ahead and the jump is reported as lost. More slots than its time
    allows (bytes inserted, or a clock the spec does not describe) is reported, never undone: a
    slot is never reused. One millisecond plus one slot of tolerance absorbs the timestamp's
    resolution. Timestamps come at a steady cadence (learned from the first two), so one whose
    time is off that cadence (a damaged frame) is refused rather than believed; a cadence that
    really changed is re-learned after two refusals in a row.
    """

    MAX_SKIPPED = 60

    def __init__(self, rate_hz: int) -> None:
        self.rate_hz = rate_hz
        self.next = 0
        self._origin_ms: int | None = None
        self._last_ms = -1
        self._interval_ms: int | None = None
        self._refused = 0
        self.exact = False  # timestamps land exactly on the grid (learned by the decoder)

    def _on_cadence(self, d: int) -> bool:
        if d <= 0:
            return False
        if self._interval_ms is None:
            return d <= 60_000
        k = max(1, round(d / self._interval_ms))
        return k <= self.MAX_SKIPPED and abs(d - k * self._interval_ms) <= 1

    def expected(self, ms: int) -> int | None:
        """The slot a timestamp at ``ms`` says comes next; None before the first one or when
        ``ms`` is off the cadence (no side effects)."""
        if self._origin_ms is None or not self._on_cadence(ms - self._last_ms):
            return None
        return ((ms - self._origin_ms) * self.rate_hz) // 1000

    def timestamp(self, ms: int) -> tuple[int, int, bool]:
        """Account for a timestamp at the current position: (lost, ahead, accepted)."""
        if self._origin_ms is None:
            self._origin_ms = ms - (self.next * 1000) // self.rate_hz
            self._last_ms = ms
            return 0, 0, True
        d = ms - self._last_ms
        if not self._on_cadence(d):
            self._refused += 1
            if self._refused < 3 or d <= 0:
                return 0, 0, False
        if self._interval_ms is None or self._refused:
            self._interval_ms = d
        self._refused = 0
        self._last_ms = ms
        rel = ms - self._origin_ms
        tol = 0 if self.exact else self.rate_hz // 1000 + 1
        lo = (rel * self.rate_hz) // 1000
        if self.next < lo - tol:
            lost = lo - self.next
            self.next = lo
            return lost, 0, True
        hi = -(-(rel + 1) * self.rate_hz // 1000)
        if self.next > hi + tol:
            return 0, self.next - hi, True
        return 0, 0, True


# --- ASCII data -----------------------------------------------------------------------------


def decode_ascii_tokens(tokens: list[bytes]) -> tuple[F64, np.ndarray]:
    """``DDDD±EE`` tokens (7 bytes each) → values and a validity mask, vectorised."""
    if not tokens:
        return np.empty(0, np.float64), np.empty(0, bool)
    a = np.frombuffer(b"".join(tokens), np.uint8).reshape(-1, 7).astype(np.int64) - 48
    d = a[:, [0, 1, 2, 3, 5, 6]]
    ok = ((d >= 0) & (d <= 9)).all(axis=1)
    sign_ok = (a[:, 4] == ord("-") - 48) | (a[:, 4] == ord("+") - 48)
    ok &= sign_ok
    mant = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    expo = d[:, 4] * 10 + d[:, 5]
    expo = np.where(a[:, 4] == ord("-") - 48, -expo, expo)
    with np.errstate(over="ignore"):
        value = mant.astype(np.float64) * np.power(10.0, np.where(ok, expo, 0).astype(np.float64))
    return value, ok


class AsciiDecoder:
    """Decodes the ``ascii_dec`` stream line by line; samples are decoded in bulk per chunk.

    ``max_value`` bounds a plausible token as sent (A, or J per period); ``multiplier`` then
    converts it (× volts for current → W, 1 for energy)."""

    def __init__(self, rate_hz: int, multiplier: float, max_value: float) -> None:
        self.slots = Slots(rate_hz)
        self.multiplier = multiplier
        self.max_value = max_value
        self._carry = b""
        self.ended = False

    def flush(self) -> Decoded:
        """The stream broke off: an unfinished line is dropped (nothing is held)."""
        self._carry = b""
        return _empty()

    def feed(self, chunk: bytes) -> Decoded:
        if self.ended:
            return Decoded(np.empty(0, np.int64), np.empty(0, np.float64), rest=chunk)
        data = self._carry + chunk
        lines = data.split(b"\n")
        self._carry = lines.pop()
        out = _empty()
        if len(self._carry) > MAX_LINE:
            out.bad += 1
            self._carry = b""
        tokens: list[bytes] = []
        tok_slot: list[int] = []
        nxt = self.slots.next
        for i, raw in enumerate(lines):
            s = raw.strip(b"\r\x00 \t")
            if len(s) == 7 and (s[4] == 45 or s[4] == 43):
                tokens.append(s)
                tok_slot.append(nxt)
                nxt += 1
                continue
            if not s:
                continue
            parts = s.split()
            if len(parts) == 1 and len(s) % 7 == 0:  # line ends lost between tokens
                parts = [s[k : k + 7] for k in range(0, len(s), 7)]
            if len(parts) > 1 and all(len(p) == 7 and _TOKEN_RE.fullmatch(p) for p in parts):
                for p in parts:
                    tokens.append(p)
                    tok_slot.append(nxt)
                    nxt += 1
                continue
            self.slots.next = nxt
            self._line(s, out)
            nxt = self.slots.next
            if out.ended:
                self.ended = True
                out.rest = b"\n".join([*lines[i + 1 :], self._carry])
                self._carry = b""
                break
        self.slots.next = nxt
        value, ok = decode_ascii_tokens(tokens)
        ok &= value <= self.max_value
        n_bad = int(ok.size - np.count_nonzero(ok))
        out.bad += n_bad
        out.lost += n_bad
        out.slot = np.asarray(tok_slot, np.int64)[ok]
        out.value = value[ok] * self.multiplier
        return out

    def _line(self, s: bytes, out: Decoded) -> None:
        """A line that is not a single data token."""
        r = classify_line(s)
        slot = self.slots.next
        if r.kind == "timestamp":
            ts = parse_timestamp_line(s)
            if ts is None:
                out.bad += 1
                return
            lost, ahead, accepted = self.slots.timestamp(ts[0])
            out.lost += lost
            out.ahead += ahead
            out.bad += not accepted
            out.events.append(Event(self.slots.next, "timestamp", r.text, ts[0], ts[1]))
        elif r.kind == "completed":
            out.events.append(Event(slot, "end", r.text))
            out.ended = True
        elif b"overcurrent" in s.lower():
            out.events.append(Event(slot, "overcurrent", r.text))
        elif r.kind in ("ack", "error", "detail"):
            out.events.append(Event(slot, r.kind, r.text))
        elif s.startswith(PROMPT):
            out.events.append(Event(slot, "info", r.text))
        elif _DAMAGED_DATA_RE.fullmatch(s):
            out.bad += 1  # a data line that lost or gained bytes: its slot is lost
            out.lost += 1
            self.slots.next += 1
        elif r.kind == "data":  # pragma: no cover - 7-byte tokens are taken before
            out.bad += 1
        else:
            out.bad += 1


# --- binary data ----------------------------------------------------------------------------

NEED_MORE = 0
VALID = 1
INVALID = -1
FRAME_KINDS = {
    0xF1: "error",
    0xF2: "info",
    0xF3: "timestamp",
    0xF4: "end",
    0xF5: "overcurrent",
    0xF6: "power_down",
    0xF7: "voltage",
}


@dataclass(frozen=True)
class Frame:
    status: int
    end: int = 0
    kind: str = ""
    text: str = ""
    device_ms: int = -1
    load_pct: int = -1


_NEED = Frame(NEED_MORE)
_BAD = Frame(INVALID)


def parse_frame(data: bytes, p: int) -> Frame:
    """The metadata frame starting at ``data[p] == 0xF0``: valid, invalid, or cut short."""
    n = len(data)
    if p + 2 > n:
        return _NEED
    kind = FRAME_KINDS.get(data[p + 1])
    if kind is None:
        return _BAD
    if kind in ("error", "info"):
        k = data.find(b"\xff\xff", p + 2, p + 4 + MAX_TEXT)
        body = data[p + 2 : k if k >= 0 else min(n, p + 2 + MAX_TEXT)]
        if body.translate(None, _PRINTABLE):
            return _BAD
        if k < 0:
            return _NEED if n < p + 4 + MAX_TEXT else _BAD
        return Frame(VALID, k + 2, kind, _text(body.replace(b"\x00", b"")))
    size = {"timestamp": 9, "voltage": 6}.get(kind, 4)
    if p + size > n:
        return _NEED
    if data[p + size - 2 : p + size] != b"\xff\xff":
        return _BAD
    if kind == "timestamp":
        ms = int.from_bytes(data[p + 2 : p + 6], "big") & 0x7FFF_FFFF
        return Frame(VALID, p + 9, kind, device_ms=ms, load_pct=data[p + 6])
    if kind == "voltage":
        return Frame(VALID, p + 6, kind, text=f"{int.from_bytes(data[p + 2 : p + 4], 'big')} mV")
    return Frame(VALID, p + 4, kind)


def word_amps(hi: int, lo: int) -> float:
    """One binary word in amperes (the scalar twin of the vectorised decode)."""
    return float((((hi & 0x0F) << 8) | lo) * _SCALE[hi >> 4])


class BinaryDecoder:
    """Decodes the ``bin_hexa`` stream chunk by chunk with numpy; a frame may span chunks.

    Until the first timestamp frame the bytes are the tail of the ``ack start`` reply (the shield
    opens a binary acquisition with a timestamp, which Zephyr's reader also waits for), so
    decoding starts there; ``force_sync`` starts it at the first byte instead, for a shield that
    does not send one.

    Alignment is checked, not assumed. A word is released only once the alignment is confirmed
    past it: by a valid frame after it, or by an implausible word in the *other* alignment after
    it (a byte lost at d makes the other alignment valid from d on, so an implausible word there
    means the loss, if any, is later). For a noisy or varying signal that is a few words later;
    for a perfectly steady one whose shifted words also look plausible it is the next timestamp
    frame, whose position then betrays the shift. When a shift is found, every word not yet
    confirmed is dropped and counted as lost, and the slot count restarts from the last
    confirmed word and the byte distance to it (plus the lost byte), so later samples keep their
    true slots. Two lost bytes between two confirmations restore the alignment and can leave a run
    of plausible wrong words no check sees; once the shield's timestamps are known to land exactly
    on the slot count (``exact_grid``, learned from three in a row), the timestamp after such a
    loss finds one slot missing and the held words are dropped (see ``_confirm``). A shield that
    never sent frames would get a held word released after ``max_hold_s`` anyway, protected by
    plausibility alone.
    """

    def __init__(
        self,
        rate_hz: int,
        multiplier: float,
        max_a: float = MAX_PLAUSIBLE_A,
        max_hold_s: float = MAX_HOLD_S,
        exact_grid: bool = False,
    ) -> None:
        self.slots = Slots(rate_hz)
        self.slots.exact = exact_grid
        self.multiplier = multiplier
        self.max_a = max_a
        self.max_hold_words = max(64, int(rate_hz * max_hold_s))
        self.synced = False
        self.ended = False
        self._carry = b""
        self._rx = 0  # stream offset of the first byte of the next ``_decode`` call's data
        self._anchor_rx = 0  # a confirmed word boundary: stream offset ...
        self._anchor_slot = 0  # ... and the slot of the word that starts there
        self._prev_lo: int | None = None
        self._held_slots: list[I64] = []
        self._held_rx: list[I64] = []
        self._held_values: list[F64] = []
        self._held = 0
        self._out_slots: list[I64] = []
        self._out_values: list[F64] = []
        self._exact_run = 0
        self._anomaly = False  # something was wrong since the last confirmation

    @property
    def held(self) -> int:
        """Words decoded but not yet confirmed (not yet handed out)."""
        return self._held

    def force_sync(self) -> None:
        if not self.synced:
            self.synced = True
            self._carry = self._carry.lstrip(b"\r\n")

    def flush(self) -> Decoded:
        """The stream broke off (port lost): hand out the held words, which no later byte can
        now confirm or refute; the bytes of an unfinished word or frame are dropped."""
        out = _empty()
        if self.synced and not self.ended:
            carry, self._carry = self._carry, b""
            out = self._decode(carry, final=True)
        if self.slots.exact and self._anomaly:
            out.lost += self._drop_held()
        self._release(self._held)
        self._carry = b""
        return self._collect(out)

    def feed(self, chunk: bytes) -> Decoded:
        if self.ended:
            return Decoded(np.empty(0, np.int64), np.empty(0, np.float64), rest=chunk)
        data = self._carry + chunk
        self._carry = b""
        pre = b""
        if not self.synced:
            i = _find_sync(data)
            if i < 0:
                if len(data) <= MAX_PRESYNC:
                    self._carry = data
                    return _empty()
                self.synced = True
            else:
                pre, data = data[:i], data[i:]
                self.synced = True
        out = self._decode(data)
        if pre.strip(b"\r\n\x00 "):
            out.events.insert(0, Event(0, "text", _text(pre)))
        return out

    def _ok(self, hi: int, lo: int) -> bool:
        return 0x10 <= hi < 0xF0 and MIN_PLAUSIBLE_A <= word_amps(hi, lo) <= self.max_a

    def _bad_words(self, hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, F64]:
        amps = (((hi & 0x0F).astype(np.uint16) << 8) | lo) * _SCALE[hi >> 4]
        bad = (hi >= 0xF0) | (hi < 0x10) | (amps > self.max_a) | (amps < MIN_PLAUSIBLE_A)
        return bad, amps

    # --- held words --------------------------------------------------------------------------

    def _release(self, count: int) -> None:
        """Hand out the oldest ``count`` held words; the next held word becomes the anchor."""
        if count <= 0:
            return
        if count >= self._held:
            last_slot = int(self._held_slots[-1][-1])
            last_rx = int(self._held_rx[-1][-1])
            self._out_slots += self._held_slots
            self._out_values += self._held_values
            self._held_slots, self._held_rx, self._held_values = [], [], []
            self._held = 0
            self._anchor_rx, self._anchor_slot = last_rx + 2, last_slot + 1
            return
        slots = np.concatenate(self._held_slots)
        rx = np.concatenate(self._held_rx)
        values = np.concatenate(self._held_values)
        self._out_slots.append(slots[:count])
        self._out_values.append(values[:count])
        self._held_slots, self._held_rx, self._held_values = (
            [slots[count:]],
            [rx[count:]],
            [values[count:]],
        )
        self._held -= count
        self._anchor_rx, self._anchor_slot = int(rx[count]), int(slots[count])

    def _drop_held(self) -> int:
        """Forget the held words (their slots stay used); returns how many."""
        n = self._held
        self._held_slots, self._held_rx, self._held_values = [], [], []
        self._held = 0
        return n

    def _anchor_at(self, rx: int) -> None:
        """Everything before stream offset ``rx`` is settled; the next word there gets the next
        slot (after a frame, which may have re-anchored the count)."""
        self._release(self._held)
        self._anchor_rx, self._anchor_slot = rx, self.slots.next

    def _shifted(self, resume_rx: int) -> int:
        """A byte was lost since the anchor: drop the held words, resume at ``resume_rx`` with
        the slot of the word that started one byte later; returns the slots lost."""
        slot = self._anchor_slot + (resume_rx + 1 - self._anchor_rx) // 2
        lost = max(0, slot - self._anchor_slot)
        self._held_slots, self._held_rx, self._held_values = [], [], []
        self._held = 0
        self.slots.next = max(slot, self._anchor_slot)
        self._anchor_rx, self._anchor_slot = resume_rx, self.slots.next
        self._prev_lo = None
        return lost

    def _hold_run(self, hi: np.ndarray, lo: np.ndarray, amps: F64, rx0: int) -> None:
        """Good words in a row from stream offset ``rx0``: hold them, then release up to the
        last implausible word of the other alignment (B-word i sits between A-words i − 1 and
        i)."""
        k = int(hi.size)
        start = self.slots.next
        self.slots.next = start + k
        steps = np.arange(k, dtype=np.int64)
        self._held_slots.append(steps + start)
        self._held_rx.append(steps * 2 + rx0)
        self._held_values.append(amps * self.multiplier)
        before = self._held
        self._held += k
        if self._prev_lo is not None:
            b_hi = np.concatenate((np.array([self._prev_lo], np.uint8), lo[:-1]))
            b_lo, first = hi, 0
        else:
            b_hi, b_lo, first = lo[:-1], hi[1:], 1
        self._prev_lo = int(lo[-1])
        if b_hi.size and not self.slots.exact:  # evidence against one lost byte, not two
            bad_b, _ = self._bad_words(b_hi, b_lo)
            idx = np.flatnonzero(bad_b)
            if idx.size:
                self._release(before + int(idx[-1]) + first)
        if self._held > self.max_hold_words:
            self._release(self._held - LOOKBACK_WORDS)

    def _collect(self, out: Decoded) -> Decoded:
        if self._out_slots:
            out.slot = np.concatenate(self._out_slots)
            out.value = np.concatenate(self._out_values)
            self._out_slots, self._out_values = [], []
        return out

    # --- the stream --------------------------------------------------------------------------

    def _decode(self, data: bytes, final: bool = False) -> Decoded:
        arr = np.frombuffer(data, np.uint8)
        n = len(data)
        base = self._rx
        pos = 0
        out = _empty()
        while pos + 1 < n:
            nw = (n - pos) // 2
            hi = arr[pos : pos + 2 * nw : 2]
            lo = arr[pos + 1 : pos + 2 * nw : 2]
            bad, amps = self._bad_words(hi, lo)
            idx = np.flatnonzero(bad)
            if idx.size == 0:
                # all good; the last word stays in the carry, so that a frame starting in its
                # low byte (one byte early) is still seen next time
                keep = nw if final else nw - 1
                if keep:
                    self._hold_run(hi[:keep], lo[:keep], amps[:keep], base + pos)
                    pos += 2 * keep
                break
            j = int(idx[0])
            p = pos + 2 * j
            if j and data[p - 1] == 0xF0:
                fr = parse_frame(data, p - 1)
                if fr.status == NEED_MORE:  # a frame one byte early, perhaps: wait for it
                    if j > 1:
                        self._hold_run(hi[: j - 1], lo[: j - 1], amps[: j - 1], base + pos)
                    pos = p - 2
                    break
                if fr.status == VALID:  # a frame one byte early: a byte was lost since the
                    out.lost += self._shifted(base + p - 1)  # last confirmed word
                    out.bad += 1
                    self._anomaly = True
                    pos = p - 1
                    continue
            if j:
                self._hold_run(hi[:j], lo[:j], amps[:j], base + pos)
            if data[p] == 0xF0:
                fr = parse_frame(data, p)
                if fr.status == NEED_MORE:
                    pos = p
                    break
                if fr.status == VALID:
                    self._confirm(fr, out)  # a frame where expected: aligned up to here
                    self._frame(fr, out)
                    self._prev_lo = None
                    pos = fr.end
                    self._anchor_at(base + pos)
                    if fr.kind == "end":
                        out.ended = self.ended = True
                        out.rest = data[pos:]
                        pos = n
                        break
                    continue
            if p + 1 < n and data[p + 1] == 0xF0:
                fr = parse_frame(data, p + 1)
                if fr.status == NEED_MORE:
                    pos = p
                    break
                if fr.status == VALID:  # a frame one byte late: the word before it is half
                    out.lost += self._shifted(base + p + 1)  # a sample
                    out.bad += 1
                    self._anomaly = True
                    pos = p + 1
                    continue
            end = _debris_end(data, p)
            if end == NEED_MORE:
                pos = p
                break
            if end > 0:  # a damaged frame: skip to its FF FF; frames are not samples
                out.bad += 1
                self._anomaly = True
                self._prev_lo = None
                pos = end
                continue
            decision = self._resolve(data, p)
            if decision is None:
                pos = p  # wait for the bytes that tell a corrupted word from a lost byte
                break
            out.bad += 1
            self._anomaly = True
            self._prev_lo = None
            if decision == "shifted":
                out.lost += self._shifted(base + p + 1)
                pos = p + 1
            elif 0x10 <= data[p] < 0xF0:  # a sample with an impossible value: its slot is lost
                out.lost += 1
                self.slots.next += 1
                pos = p + 2
            else:  # frame debris (F0-FF, or 00 bytes of a timestamp) more likely than a sample:
                pos = p + 2  # no slot (an undercount is bounded by the next timestamp)
        self._rx = base + pos
        if not self.ended:
            self._carry = data[pos:]
        else:
            self._release(self._held)
        return self._collect(out)

    def _confirm(self, fr: Frame, out: Decoded) -> None:
        """A valid frame at a word boundary: the words held before it are aligned.

        Once three timestamps in a row landed exactly on the slot count, the shield is known to
        place them on the grid. From then on words are held from one frame to the next and
        dropped instead of released if anything went wrong in between, or if the timestamp finds
        exactly one slot missing: the signature of two single lost bytes, which restore the
        alignment around words no check sees. A larger shortfall with nothing else wrong is a
        block of whole words lost (a buffer overflow while the host was busy): the words around
        it are true, only the ones after the loss sat early on the grid until this timestamp
        re-anchors the count, so they are kept."""
        doubt = self._anomaly
        if fr.kind == "timestamp":
            want = self.slots.expected(fr.device_ms)
            if want is not None:
                short = want - self.slots.next
                if short == 0:
                    self._exact_run += 1
                elif not doubt:  # off the grid with nothing lost: the shield is not exact
                    self._exact_run = 0
                doubt = doubt or short == 1
                if self._exact_run >= 3:
                    self.slots.exact = True
        if self.slots.exact and doubt:
            out.lost += self._drop_held()
        self._release(self._held)
        self._anomaly = False

    def _frame(self, fr: Frame, out: Decoded) -> None:
        if fr.kind == "timestamp":
            lost, ahead, accepted = self.slots.timestamp(fr.device_ms)
            out.lost += lost
            out.ahead += ahead
            out.bad += not accepted
        out.events.append(Event(self.slots.next, fr.kind, fr.text, fr.device_ms, fr.load_pct))

    def _scan(self, data: bytes, q: int) -> tuple[int, int, str]:
        """Bad words among the next ``LOOKAHEAD_WORDS`` words from ``q``, valid frames skipped:
        (bad, words, how it stopped: "full", "end" at an end frame, or "short" of bytes)."""
        n = len(data)
        bad = words = 0
        while words < LOOKAHEAD_WORDS:
            if q + 1 >= n:
                return bad, words, "short"
            if data[q] == 0xF0:
                fr = parse_frame(data, q)
                if fr.status == NEED_MORE:
                    return bad, words, "short"
                if fr.status == VALID:
                    if fr.kind == "end":
                        return bad, words, "end"
                    q = fr.end
                    continue
            if not self._ok(data[q], data[q + 1]):
                bad += 1
            words += 1
            q += 2
        return bad, words, "full"

    def _resolve(self, data: bytes, p: int) -> str | None:
        """A bad word at ``p``: "corrupt" (one word), "shifted" (a byte was lost: the other
        alignment is clean ahead while this one is not), or None when more bytes are needed."""
        bad_a, _, how_a = self._scan(data, p)
        bad_b, words_b, how_b = self._scan(data, p + 1)
        if how_b == "end" and bad_b == 0:  # the other alignment reaches the end frame cleanly
            return "shifted"
        if how_a == "end":  # this alignment reaches the end frame: it holds
            return "corrupt"
        if how_a == "short" or how_b == "short":
            return None
        return "shifted" if bad_b == 0 and words_b >= 2 and bad_a >= 2 else "corrupt"


_DEBRIS_SPAN = 10
_FIXED_SIZE = {0xF3: 9, 0xF4: 4, 0xF5: 4, 0xF6: 4, 0xF7: 6}


def _debris_end(data: bytes, p: int) -> int:
    """Where a damaged frame at ``p`` ends (after its ``FF FF``), ``NEED_MORE``, or ``INVALID``
    (not one). ``FF FF`` never occurs in sample data (a word's high byte is never 0xFF), so an
    ``F0`` followed within a frame's length by ``FF FF`` (and no other ``F0``) is a frame that
    lost or changed bytes, and a fixed-size frame's type byte with ``FF FF`` exactly where that
    frame would end is one that lost its ``F0``. Text frames are not guessed at."""
    hi = data[p]
    if hi == 0xF0:
        k = data.find(b"\xff\xff", p + 1, p + _DEBRIS_SPAN)
        if k < 0:
            return NEED_MORE if len(data) < p + _DEBRIS_SPAN else INVALID
        return k + 2 if 0xF0 not in data[p + 1 : k] else INVALID
    size = _FIXED_SIZE.get(hi)
    if size is None:
        return INVALID
    end = p + size - 1
    if len(data) < end:
        return NEED_MORE
    return end if data[end - 2 : end] == b"\xff\xff" else INVALID


def _find_sync(data: bytes) -> int:
    """Offset of the first complete timestamp frame (``F0 F3 t t t t load FF FF``), or -1."""
    i = data.find(b"\xf0\xf3")
    while i >= 0:
        if i + 9 <= len(data) and data[i + 7 : i + 9] == b"\xff\xff":
            return i
        i = data.find(b"\xf0\xf3", i + 1)
    return -1
