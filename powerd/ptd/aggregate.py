"""1 s means from any rate: the face's samples, computed from the probe's own blocks.

A 100 kHz meter and a 10 Hz telemetry counter both become one sample per interval (1 s unless
Go asks otherwise): the mean of the native samples whose stamps fall in ``[k·T, (k+1)·T)`` UTC,
with their count, stamped at the interval's end. An energy counter is differenced first (each
pair of consecutive readings gives the mean power between them, stamped at the later one; a wrap
is undone with the channel's ``wrap_j``, a reset is dropped and counted). All of it is numpy over
whole blocks: one Python step per interval, never per sample.

An interval is complete when a sample of a later interval arrives; an interval with no sample is
counted as missing (and reported by the face), never emitted as 0. A probe that says which
readings it lost (``read_dropped``: a meter's NAN and overrange readings) has them counted per
interval, with what an overrange reading was at least, so the face can tell a mean of the whole
interval from a mean of what was left of it; an interval whose every reading was lost is emitted
(no mean, ``n`` 0) rather than counted missing, so its overrange reaches the ranging log.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from powerd.block import F64, I64, Block
from powerd.channel import Channel

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class Interval:
    """One face sample: means over ``[t_end_ns - interval, t_end_ns)``; None = not measured."""

    t_end_ns: int
    watts: float  # NaN when every reading of the interval was lost (n == 0)
    n: int
    volts: float | None = None
    amps: float | None = None
    pf: float | None = None
    expected: float | None = None  # readings the interval holds at the channel's nominal rate
    dropped: int = 0  # readings the probe lost in it (NAN or overrange)
    overrange: int = 0  # of which overrange
    volts_floor: float | None = None  # an overrange reading was at least this (V)
    amps_floor: float | None = None  # ... and this (A)


def bin_sums(t_ns: I64, v: F64, interval_ns: int) -> tuple[I64, F64, I64]:
    """Per interval index present in ``t_ns`` (time-ordered): its index, sum of ``v`` and count
    (non-finite values left out)."""
    ks, sums, counts, _ = bin_stats(t_ns, v, interval_ns)
    return ks, sums, counts


def bin_stats(t_ns: I64, v: F64, interval_ns: int) -> tuple[I64, F64, I64, F64]:
    """``bin_sums`` plus each interval's largest value."""
    ok = np.isfinite(v)
    t_ns, v = t_ns[ok], v[ok]
    if t_ns.size == 0:
        e = np.empty(0, np.float64)
        return np.empty(0, np.int64), e, np.empty(0, np.int64), e
    k = t_ns // interval_ns
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    sums = np.add.reduceat(v, starts)
    maxes = np.maximum.reduceat(v, starts)
    counts = np.diff(np.r_[starts, k.size]).astype(np.int64)
    return k[starts], sums.astype(np.float64), counts, maxes.astype(np.float64)


class Aggregator:
    """Bins the primary channel's samples into intervals and emits each completed one."""

    def __init__(
        self,
        channel: Channel,
        emit: Callable[[Interval], None],
        interval_ns: int = NS_PER_S,
    ) -> None:
        self.channel = channel
        self.emit = emit
        self.interval_ns = interval_ns
        self.missing = 0  # intervals without a single sample
        self.late = 0  # samples older than the interval being filled (dropped)
        self.resets = 0  # counter decreases that are no wrap (dropped)
        self.complete_until_ns = 0  # every interval ending at or before this was emitted
        self._open: list[Any] | None = None  # [k, sum, n]
        self._elec: dict[int, list[float]] = {}  # k -> sums and counts of V, A, PF
        self._drop: dict[int, list[float]] = {}  # k -> lost, overrange, max V / A floors
        self.dropped = 0  # readings the probe lost (all intervals)
        self.drop_only = 0  # intervals whose every reading was lost (emitted without a mean)
        self._last_e: tuple[int, float] | None = None
        self._lock = threading.Lock()

    def set_interval(self, interval_ns: int) -> None:
        """A new interval length (Go's first field): binning restarts at the next data."""
        with self._lock:
            if interval_ns != self.interval_ns:
                self.interval_ns = interval_ns
                self._open = None
                self._elec.clear()
                self._drop.clear()

    def _rates(self, t_ns: I64, e_j: F64) -> tuple[I64, F64]:
        """Mean power between consecutive counter readings, stamped at the later one."""
        ok = np.isfinite(e_j)
        t_ns, e_j = t_ns[ok], e_j[ok]
        if self._last_e is not None:
            t_ns = np.r_[np.int64(self._last_e[0]), t_ns]
            e_j = np.r_[self._last_e[1], e_j]
        if t_ns.size == 0:
            return t_ns, e_j
        self._last_e = (int(t_ns[-1]), float(e_j[-1]))
        de = np.diff(e_j)
        dt = np.diff(t_ns)
        wrap = self.channel.wrap_j
        if wrap is not None:
            de = np.where(de < 0, de + wrap, de)
        good = (de >= 0) & (dt > 0)
        self.resets += int(np.count_nonzero(de < 0))
        return t_ns[1:][good], de[good] / (dt[good] / 1e9)

    def feed(self, block: Block) -> None:
        """Samples of the primary channel (W, or J for a counter)."""
        with self._lock:
            t, v = block.t_ns, block.value
            if self.channel.kind == "energy":
                t, v = self._rates(t, v)
            ks, sums, counts = bin_sums(t, v, self.interval_ns)
            for k, s, c in zip(ks.tolist(), sums.tolist(), counts.tolist(), strict=True):
                self._add(k, s, c)

    def _add(self, k: int, s: float, c: int) -> None:
        if self._open is None:
            self._open = [k, s, c]
        elif k == self._open[0]:
            self._open[1] += s
            self._open[2] += c
        elif k > self._open[0]:
            k_open = self._open[0]
            self._close()
            # intervals in between: every reading lost (emitted without a mean) or none at all
            lost_only = sorted(x for x in self._drop if k_open < x < k)
            for x in lost_only:
                self.drop_only += 1
                self._open = [x, 0.0, 0]
                self._close()
            self.missing += k - k_open - 1 - len(lost_only)
            self._open = [k, s, c]
        else:
            self.late += c

    def _close(self) -> None:
        assert self._open is not None
        k, s, c = self._open
        elec = self._elec.pop(k, None)
        drop = self._drop.pop(k, None)
        for old in [x for x in self._elec if x < k]:
            del self._elec[old]
        for old in [x for x in self._drop if x < k]:
            del self._drop[old]
        mean = [None, None, None] if elec is None else _means(elec)
        end_ns = (k + 1) * self.interval_ns
        self.complete_until_ns = end_ns
        period_s = self.channel.nominal_period_s
        expected = self.interval_ns / 1e9 / period_s if period_s > 0 else None
        lost, over, v_floor, a_floor = drop if drop is not None else (0, 0, math.nan, math.nan)
        if over and elec is not None:
            # an overrange interval's mean is unknown and its load peaks above the range: the
            # largest reading the meter did give in it (a later, larger range) counts as well
            v_floor = max(v_floor, elec[6]) if math.isfinite(v_floor) else v_floor
            a_floor = max(a_floor, elec[7]) if math.isfinite(a_floor) else a_floor
        self.emit(
            Interval(
                end_ns,
                s / c if c else math.nan,
                c,
                mean[0],
                mean[1],
                mean[2],
                expected,
                int(lost),
                int(over),
                None if math.isnan(v_floor) else v_floor,
                None if math.isnan(a_floor) else a_floor,
            )
        )

    def feed_dropped(
        self, t_ns: I64, overrange: NDArray[np.bool_], v_floor: F64, a_floor: F64
    ) -> None:
        """The primary channel's lost readings (``DroppedBlock``), binned like its power: per
        interval the count, the overrange count and the largest V / A floors."""
        with self._lock:
            if t_ns.size == 0:
                return
            self.dropped += int(t_ns.size)
            k = t_ns // self.interval_ns
            for kk in np.unique(k).tolist():
                if self._open is not None and kk < self._open[0]:
                    continue  # its interval is out already (cannot happen in TapProbe's order)
                sel = k == kk
                acc = self._drop.setdefault(kk, [0, 0, math.nan, math.nan])
                acc[0] += int(np.count_nonzero(sel))
                acc[1] += int(np.count_nonzero(overrange[sel]))
                for j, floor in ((2, v_floor[sel]), (3, a_floor[sel])):
                    ok = floor[np.isfinite(floor)]
                    if ok.size:
                        acc[j] = (
                            float(ok.max()) if math.isnan(acc[j]) else max(acc[j], float(ok.max()))
                        )

    def feed_electrical(self, t_ns: I64, volts: F64, amps: F64, pf: F64) -> None:
        """Volts, amps and power factor of the primary channel, binned like its power."""
        with self._lock:
            for j, values in enumerate((volts, amps, pf)):
                ks, sums, counts, maxes = bin_stats(t_ns, values, self.interval_ns)
                rows = zip(ks.tolist(), sums.tolist(), counts.tolist(), maxes.tolist(), strict=True)
                for k, s, c, m in rows:
                    if self._open is not None and k < self._open[0]:
                        continue
                    # sums of V, A, PF; their counts; their largest values
                    acc = self._elec.setdefault(k, [0.0] * 6 + [-math.inf] * 3)
                    acc[j] += s
                    acc[3 + j] += c
                    acc[6 + j] = max(acc[6 + j], m)


def _means(acc: list[float]) -> list[float | None]:
    return [acc[j] / acc[3 + j] if acc[3 + j] else None for j in range(3)]


class TapProbe:
    """The opened probe, with its primary channel's blocks (and V/A/PF where the probe has
    ``read_electrical``) copied to the aggregator in the sampler's own read: one thread reads
    the meter, nothing is read twice. Everything else is the probe's own."""

    def __init__(
        self,
        probe: Any,
        primary: str,
        agg: Aggregator,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        self._probe, self._primary, self._agg = probe, primary, agg
        self.electrical_errors = 0
        self.last_electrical_error = ""
        self.problem_count = 0
        self._on_problem = on_problem
        self._problems_seen: set[str] = set()

    def problems(self) -> list[str]:
        """The probe's problems, passed on to the sampler; each distinct one is also shown
        once (``on_problem``) as it happens, and all are counted."""
        got: list[str] = list(self._probe.problems())
        self.problem_count += len(got)
        for p in got:
            if p not in self._problems_seen and self._on_problem is not None:
                if len(self._problems_seen) < 1000:
                    self._problems_seen.add(p)
                self._on_problem(p)
        return got

    def channels(self) -> list[Channel]:
        return list(self._probe.channels())

    def _read_primary(self, method: str) -> Any:
        """The primary channel's entry of the probe's side read ``method`` (``read_electrical``:
        V/A/PF, ``read_dropped``: lost power), or None where the probe has no such read.

        A failing side read is counted and shown by the face; power still flows."""
        read = getattr(self._probe, method, None)
        if not callable(read):
            return None
        try:
            return read().get(self._primary)
        except Exception as err:
            self.electrical_errors += 1
            self.last_electrical_error = f"{type(err).__name__}: {err}"
            return None

    def read(self, now_utc_ns: int) -> list[Block]:
        blocks: list[Block] = self._probe.read(now_utc_ns)
        # V/A/PF first: an interval closes when power of a later one arrives, and takes the
        # electrical means it has by then
        lost = self._read_primary("read_dropped")
        if lost is not None and len(lost.t_ns):
            self._agg.feed_dropped(
                np.asarray(lost.t_ns, np.int64),
                np.asarray(lost.overrange, np.bool_),
                np.asarray(lost.volts_floor, np.float64),
                np.asarray(lost.amps_floor, np.float64),
            )
        el = self._read_primary("read_electrical")
        if el is not None and len(el.t_ns):
            self._agg.feed_electrical(
                np.asarray(el.t_ns, np.int64),
                np.asarray(el.volts, np.float64),
                np.asarray(el.amps, np.float64),
                np.asarray(el.pf, np.float64),
            )
        for b in blocks:
            if b.channel == self._primary and len(b):
                self._agg.feed(b)
        return blocks

    def __getattr__(self, name: str) -> Any:
        return getattr(self._probe, name)
