"""Block: a batch of samples of one channel as two numpy arrays (int64 ns, float64 SI value).

Everything on the hot path handles Blocks, never one Python object per sample. A Block may carry
the source's own timestamps (``source_t_ns``) beside the host's read stamps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Block:
    """Samples of ``channel``: ``t_ns`` strictly increasing UTC ns, ``value`` in W or J."""

    channel: str
    t_ns: I64
    value: F64
    source_t_ns: I64 | None = None

    def __post_init__(self) -> None:
        if self.t_ns.dtype != np.int64 or self.value.dtype != np.float64:
            raise TypeError("Block needs int64 t_ns and float64 value arrays")
        if self.t_ns.shape != self.value.shape or self.t_ns.ndim != 1:
            raise ValueError("Block arrays must be 1-D and of equal length")
        if self.source_t_ns is not None and self.source_t_ns.shape != self.t_ns.shape:
            raise ValueError("source_t_ns must match t_ns in length")

    @classmethod
    def of(cls, channel: str, t_ns: npt.ArrayLike, value: npt.ArrayLike) -> Block:
        """Build a Block, converting inputs to the canonical dtypes."""
        return cls(
            channel,
            np.ascontiguousarray(t_ns, dtype=np.int64),
            np.ascontiguousarray(value, dtype=np.float64),
        )

    def __len__(self) -> int:
        return int(self.t_ns.shape[0])

    @property
    def t_first_ns(self) -> int:
        return int(self.t_ns[0])

    @property
    def t_last_ns(self) -> int:
        return int(self.t_ns[-1])

    def finite(self) -> Block:
        """Drop samples whose value is not finite (a source's "N/A" parsed to NaN is never 0)."""
        ok = np.isfinite(self.value)
        if bool(ok.all()):
            return self
        src = None if self.source_t_ns is None else self.source_t_ns[ok]
        return Block(self.channel, self.t_ns[ok], self.value[ok], src)


def concat(t_parts: list[I64], v_parts: list[F64]) -> tuple[I64, F64]:
    """Join sample arrays in time order, dropping samples not after the previous one."""
    if not t_parts:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    t = np.concatenate(t_parts)
    v = np.concatenate(v_parts)
    if t.size > 1 and not bool((np.diff(t) > 0).all()):
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        keep = np.ones(t.size, bool)
        keep[1:] = np.diff(t) > 0
        t, v = t[keep], v[keep]
    return t, v
