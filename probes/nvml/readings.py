"""Pure NVML logic: raw readings (mW, mJ, field values) to SI, and the energy counter's timing.

Nothing here calls NVML or reads a clock, so all of it is tested on plain numbers. The transport
hands over what NVML returned: integers in NVML's units and field-value records that carry their
own ``nvmlReturn``; times are monotonic ns taken around each call.

Why the timing logic: NVML's energy counter (``nvmlDeviceGetTotalEnergyConsumption``) changes only
every ~100 ms. A changed value read at time t became true at an update some time since the previous
read, up to a whole poll interval earlier; stamping it at t would shift every window's edges by up
to that much (±25 ms at a 50 ms poll: ~1 % of a 3 s window). The counter updates on a regular grid,
so ``UpdateTracker`` keeps the interval in which the latest update must lie, carries it one period
forward, and intersects it with each new read bracket. The estimate never leaves the read bracket,
so it is never worse than the bracket's midpoint, and usually within a millisecond or two.
"""

from __future__ import annotations

import itertools
import statistics
from typing import NamedTuple

# nvmlReturn_t codes from nvml.h, repeated so this module needs no pynvml.
NVML_SUCCESS = 0
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
ERROR_NAMES = {
    1: "NVML_ERROR_UNINITIALIZED",
    2: "NVML_ERROR_INVALID_ARGUMENT",
    NVML_ERROR_NOT_SUPPORTED: "NVML_ERROR_NOT_SUPPORTED",
    NVML_ERROR_NO_PERMISSION: "NVML_ERROR_NO_PERMISSION",
    9: "NVML_ERROR_DRIVER_NOT_LOADED",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML_ERROR_LIBRARY_NOT_FOUND",
    NVML_ERROR_FUNCTION_NOT_FOUND: "NVML_ERROR_FUNCTION_NOT_FOUND",
    NVML_ERROR_GPU_IS_LOST: "NVML_ERROR_GPU_IS_LOST",
    18: "NVML_ERROR_LIB_RM_VERSION_MISMATCH",
    999: "NVML_ERROR_UNKNOWN",
}

# Field ids (nvml.h): board power in mW, instantaneous on every architecture.
FI_DEV_POWER_INSTANT = 186
# nvmlValueType_t
VALUE_TYPE_DOUBLE = 0
VALUE_TYPE_UNSIGNED_INT = 1
VALUE_TYPE_UNSIGNED_LONG = 2
VALUE_TYPE_UNSIGNED_LONG_LONG = 3
VALUE_TYPE_SIGNED_LONG_LONG = 4
VALUE_TYPE_SIGNED_INT = 5
VALUE_TYPE_UNSIGNED_SHORT = 6
# NVML_VALUE_NOT_AVAILABLE_uint: the driver's "N/A", which is never 0 W.
UINT_NOT_AVAILABLE = 0xFFFFFFFF
ULONGLONG_NOT_AVAILABLE = 0xFFFFFFFFFFFFFFFF

# nvmlDeviceArchitecture_t
ARCH_NAMES = {
    2: "Kepler",
    3: "Maxwell",
    4: "Pascal",
    5: "Volta",
    6: "Turing",
    7: "Ampere",
    8: "Ada",
    9: "Hopper",
    10: "Blackwell",
}
ARCH_VOLTA = 5
ARCH_AMPERE = 7
ARCH_UNKNOWN = 0xFFFFFFFF


def error_name(code: int) -> str:
    """``NVML_ERROR_GPU_IS_LOST`` for 15; unknown codes by number."""
    return ERROR_NAMES.get(code, f"nvmlReturn {code}")


def energy_j(counter_mj: int) -> float | None:
    """The energy counter in J from NVML's mJ; None for the driver's N/A value."""
    if counter_mj < 0 or counter_mj == ULONGLONG_NOT_AVAILABLE:
        return None
    return counter_mj / 1000.0


def power_w(power_mw: int) -> float | None:
    """Power in W from NVML's mW; None for the driver's N/A value (never 0 W)."""
    if power_mw < 0 or power_mw == UINT_NOT_AVAILABLE:
        return None
    return power_mw / 1000.0


class RawField(NamedTuple):
    """One ``nvmlFieldValue_t`` as NVML returned it, its union already read per ``value_type``.

    (A NamedTuple: built for every GPU at every read, it must be cheap.)
    """

    field_id: int
    scope_id: int
    nvml_return: int
    value_type: int
    value: int | float
    timestamp_us: int


class FieldPower(NamedTuple):
    """A power field in SI, or why there is none: ``power_w`` None means no value, never 0 W."""

    power_w: float | None
    nvml_return: int
    source_t_ns: int
    reason: str = ""


def field_power(field: RawField) -> FieldPower:
    """Power in W from a power field (mW), checking the field's own ``nvmlReturn``.

    ``nvmlDeviceGetFieldValues`` can succeed as a whole while one field fails, so each field's
    return is checked here; a failed or N/A field gives no value and says why.
    """
    t_ns = field.timestamp_us * 1000
    if field.nvml_return != NVML_SUCCESS:
        reason = f"field {field.field_id}: {error_name(field.nvml_return)}"
        return FieldPower(None, field.nvml_return, t_ns, reason)
    if field.value_type == VALUE_TYPE_DOUBLE:
        mw = float(field.value)
        value = mw / 1000.0 if mw >= 0 else None
    elif field.value_type in (VALUE_TYPE_UNSIGNED_INT, VALUE_TYPE_UNSIGNED_SHORT):
        value = power_w(int(field.value))
    else:
        raw = int(field.value)
        value = None if raw < 0 or raw == ULONGLONG_NOT_AVAILABLE else raw / 1000.0
    if value is None:
        return FieldPower(None, field.nvml_return, t_ns, f"field {field.field_id}: N/A")
    return FieldPower(value, field.nvml_return, t_ns)


def is_ga100(name: str) -> bool:
    """A100 and A30 are GA100, where ``nvmlDeviceGetPowerUsage`` is still instantaneous."""
    words = name.replace("-", " ").upper().split()
    return any(w in ("A100", "A30") for w in words)


def power_usage_averaged(arch: int | None, name: str) -> bool | None:
    """Whether ``nvmlDeviceGetPowerUsage`` is a 1 s average on this GPU (None: cannot tell).

    NVIDIA: "On Ampere (except GA100) or newer GPUs, the API returns power averaged over 1 sec
    interval. On GA100 and older architectures, instantaneous power is returned."
    """
    if arch is None or arch == ARCH_UNKNOWN:
        return None
    return arch >= ARCH_AMPERE and not is_ga100(name)


def learn_period_ns(change_brackets: list[tuple[int, int]]) -> int | None:
    """The counter's update period from consecutive observed changes, or None (fewer than 3).

    Each change is bracketed by (last read with the old value, first read with the new one).
    The typical interval is the median between bracket midpoints (robust to a missed update);
    it is then refined over the longest baseline, first to last change, in whole periods.
    """
    if len(change_brackets) < 3:
        return None
    mids = [(lo + hi) // 2 for lo, hi in change_brackets]
    intervals = [b - a for a, b in itertools.pairwise(mids) if b > a]
    if not intervals:
        return None
    typical = statistics.median(intervals)
    if typical <= 0:
        return None
    span = mids[-1] - mids[0]
    n = max(1, round(span / typical))
    return max(1, round(span / n))


class UpdateTracker:
    """When did a counter that updates every ``period_ns`` change? From the read brackets.

    ``observe(after_ns, before_ns)`` is told that the counter changed after a read at ``after_ns``
    (old value) and by a read at ``before_ns`` (new value); it returns the estimated update time.
    It keeps the interval where the last update must lie, carries it forward by whole periods
    (widened by ``slack_ns`` per period, for an imperfectly known period), and intersects it with
    the new bracket. If they do not overlap (the grid moved), it restarts from the bracket. When the
    interval is narrow at two times many periods apart, the period is re-measured between them.
    """

    REFINE_MIN_PERIODS = 20

    def __init__(self, period_ns: int, slack_ns: int | None = None) -> None:
        if period_ns <= 0:
            raise ValueError("period_ns must be > 0")
        self.period_ns = period_ns
        self.slack_ns = slack_ns if slack_ns is not None else max(period_ns // 500, 50_000)
        self.tight_ns = max(period_ns // 25, 1_000_000)
        self.resyncs = 0
        self._lo: int | None = None
        self._hi = 0
        self._k = 0
        self._anchor: tuple[int, int] | None = None

    @property
    def width_ns(self) -> int | None:
        """Width of the interval holding the last update (None before the first change)."""
        return None if self._lo is None else self._hi - self._lo

    def observe(self, after_ns: int, before_ns: int) -> int:
        """Estimated time of the update seen between reads at ``after_ns`` and ``before_ns``."""
        if before_ns <= after_ns:
            raise ValueError("a change must be bracketed by an earlier and a later read")
        lo, hi = after_ns, before_ns
        if self._lo is not None:
            mid_prev = (self._lo + self._hi) // 2
            n = max(1, round(((after_ns + before_ns) // 2 - mid_prev) / self.period_ns))
            grow = n * self.slack_ns
            p_lo = self._lo + n * self.period_ns - grow
            p_hi = self._hi + n * self.period_ns + grow
            lo, hi = max(p_lo, after_ns), min(p_hi, before_ns)
            if lo > hi:
                lo, hi = after_ns, before_ns
                self.resyncs += 1
                self._anchor = None
            self._k += n
        self._lo, self._hi = lo, hi
        mid = (lo + hi) // 2
        if hi - lo <= self.tight_ns:
            self._refine(mid)
        return max(mid, after_ns + 1)

    def _refine(self, mid_ns: int) -> None:
        if self._anchor is None:
            self._anchor = (self._k, mid_ns)
            return
        k0, mid0 = self._anchor
        if self._k - k0 >= self.REFINE_MIN_PERIODS:
            period = round((mid_ns - mid0) / (self._k - k0))
            if abs(period - self.period_ns) <= self.period_ns // 20:
                self.period_ns = period
            self._anchor = (self._k, mid_ns)
