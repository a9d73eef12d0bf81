"""Device time to host time for a streaming logger: pure arithmetic, no clocks, no I/O.

A logger stamps each line with its own 32-bit microsecond clock ``t_us`` and a 32-bit sequence
number ``seq``. The host only knows when a *chunk* of bytes arrived, which is late by a variable
transport delay (USB frames, OS scheduling, buffering after a reconnect). Stamping samples with
the arrival time would put that jitter into the time grid; stamping them with device time keeps the
grid exact but needs the offset between the two clocks.

``DeviceClock`` does that:

- **Unwrap** ``t_us`` (it wraps every 2³² µs ≈ 71.6 min) into a monotonic device time in ns, using
  the modular difference to the previous line.
- **Sequence**: the modular ``seq`` step says how many lines were lost in between (counted; the
  missing lines are simply absent, never invented). A repeated ``seq`` is dropped.
- **Reset**: ``seq`` or ``t_us`` going backwards (not a wrap) starts a new *epoch*: the logger
  rebooted, its clock restarted; the offset is learnt again.
- **Anchor**: ``offset = host − device`` is estimated as the *lower envelope* of
  ``arrival_ns − device_ns``: a line can arrive late but never before it was measured, so the
  smallest difference is the best estimate (the last line of each chunk gives it). The estimate
  may creep up by at most ``MAX_SKEW`` (200 ppm) of elapsed device time per line, which follows a
  device crystal slower than the host's; a faster crystal shows as lower differences and is
  followed at once. The first lines of an epoch are held for ``WARMUP_NS`` so the envelope is
  known before anything is stamped.
- **Stamp**: a line's ``t_us`` is the *end* of its averaging window; the sample is placed at the
  window's midpoint, ``device_ns + offset − window/2``. Stamps are kept strictly increasing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from powerd.block import F64, I64

U32 = 1 << 32
HALF_U32 = 1 << 31
MAX_SKEW = 200e-6
WARMUP_NS = 250_000_000
WARMUP_LINES = 256


@dataclass
class Stamped:
    """Lines ready to emit: host UTC ns, device ns (since the logger booted), and their values."""

    t_ns: I64
    source_t_ns: I64
    value: F64

    def __len__(self) -> int:
        return int(self.t_ns.size)


@dataclass
class ClockStats:
    """What the clock saw: lines lost by seq gaps, repeats dropped, device resets, wraps."""

    lost: int = 0
    duplicates: int = 0
    resets: int = 0
    wraps: int = 0
    stalled: int = 0  # t_us did not advance while seq did


@dataclass
class _Out:
    t: list[int] = field(default_factory=list)
    s: list[int] = field(default_factory=list)
    v: list[float] = field(default_factory=list)

    def stamped(self) -> Stamped:
        return Stamped(
            np.array(self.t, np.int64), np.array(self.s, np.int64), np.array(self.v, np.float64)
        )


@dataclass
class DeviceClock:
    """Maps (seq, t_us) lines to host UTC ns. ``window_ns`` is the averaging window of a line."""

    window_ns: int
    stats: ClockStats = field(default_factory=ClockStats)
    last_seq: int | None = None
    last_t_us: int = 0
    device_ns: int = 0
    offset_ns: int | None = None  # host − device, ns (integers: UTC ns do not fit a float)
    last_stamp_ns: int = 0
    _prev_dev_ns: int = 0
    _pending: list[tuple[int, int, float]] = field(default_factory=list)  # (dev, arrival, value)

    def feed(self, seq: I64, t_us: I64, value: F64, arrival_ns: int) -> Stamped:
        """Lines of one read (all arrived by ``arrival_ns``); returns those that can be stamped
        now (lines of a new epoch are held until its warm-up is over)."""
        out = _Out()
        for k in range(seq.size):
            s, t = int(seq[k]), int(t_us[k])
            if self.last_seq is None:
                self._new_epoch(s, t, out)
            else:
                dseq = (s - self.last_seq) % U32
                dt_us = (t - self.last_t_us) % U32
                if dseq == 0:
                    self.stats.duplicates += 1
                    continue
                if dseq >= HALF_U32 or dt_us >= HALF_U32:
                    self.stats.resets += 1
                    self._new_epoch(s, t, out)
                elif dt_us == 0:
                    self.stats.stalled += 1
                    continue
                else:
                    if t < self.last_t_us:
                        self.stats.wraps += 1
                    self.stats.lost += dseq - 1
                    self.device_ns += dt_us * 1000
                    self.last_seq, self.last_t_us = s, t
            self._place(self.device_ns, arrival_ns, float(value[k]), out)
        return out.stamped()

    def flush(self) -> Stamped:
        """Stamp the lines still held for warm-up with the envelope known so far."""
        out = _Out()
        self._end_warmup(out)
        return out.stamped()

    def _new_epoch(self, s: int, t: int, out: _Out) -> None:
        self._end_warmup(out)
        self.last_seq, self.last_t_us = s, t
        self.device_ns = t * 1000
        self.offset_ns = None

    def _end_warmup(self, out: _Out) -> None:
        if not self._pending:
            return
        self.offset_ns = min(h - d for d, h, _ in self._pending)
        for d, _, v in self._pending:
            self._emit(d, v, out)
        self._pending.clear()

    def _place(self, dev: int, arrival_ns: int, value: float, out: _Out) -> None:
        if self.offset_ns is None:
            self._pending.append((dev, arrival_ns, value))
            first_arrival = self._pending[0][1]
            if arrival_ns - first_arrival >= WARMUP_NS or len(self._pending) >= WARMUP_LINES:
                self._end_warmup(out)
            return
        diff = arrival_ns - dev
        if diff < self.offset_ns:
            self.offset_ns = diff
        else:
            creep = int(MAX_SKEW * max(dev - self._prev_dev_ns, 0))
            self.offset_ns = min(diff, self.offset_ns + creep)
        self._emit(dev, value, out)

    def _emit(self, dev: int, value: float, out: _Out) -> None:
        assert self.offset_ns is not None
        self._prev_dev_ns = dev
        stamp = dev + self.offset_ns - self.window_ns // 2
        if stamp <= self.last_stamp_ns:
            stamp = self.last_stamp_ns + 1
        self.last_stamp_ns = stamp
        out.t.append(stamp)
        out.s.append(dev)
        out.v.append(value)
