"""Per-channel ring buffers of recent samples, bounded in memory (16 bytes a sample).

The timeline holds what the live daemon needs to answer "what is the power now" and to integrate
recent windows without a store round-trip. Older samples fall off the ring; the store keeps them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from powerd.block import F64, I64, Block
from powerd.channel import Channel


class Ring:
    """Fixed-capacity ring of (t_ns, value) samples in time order; appends whole blocks."""

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError("ring capacity must be at least 2")
        self.capacity = capacity
        self._t = np.empty(capacity, np.int64)
        self._v = np.empty(capacity, np.float64)
        self._start = 0
        self._size = 0
        self.dropped_out_of_order = 0

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        return int(self._t.nbytes + self._v.nbytes)

    def last_t_ns(self) -> int | None:
        last = self.latest()
        return None if last is None else last[0]

    def append(self, t_ns: I64, value: F64) -> None:
        """Append samples later than the last one held; earlier ones are counted and dropped."""
        last = self.last_t_ns()
        if last is not None and t_ns.size and t_ns[0] <= last:
            keep = t_ns > last
            self.dropped_out_of_order += int(t_ns.size - np.count_nonzero(keep))
            t_ns, value = t_ns[keep], value[keep]
        n = int(t_ns.size)
        if n == 0:
            return
        if n >= self.capacity:
            self._t[:] = t_ns[-self.capacity :]
            self._v[:] = value[-self.capacity :]
            self._start, self._size = 0, self.capacity
            return
        end = (self._start + self._size) % self.capacity
        first = min(n, self.capacity - end)
        self._t[end : end + first] = t_ns[:first]
        self._v[end : end + first] = value[:first]
        if first < n:
            self._t[: n - first] = t_ns[first:]
            self._v[: n - first] = value[first:]
        overflow = max(0, self._size + n - self.capacity)
        self._start = (self._start + overflow) % self.capacity
        self._size = min(self.capacity, self._size + n)

    def _segments(self) -> list[tuple[I64, F64]]:
        """The held samples as at most two time-ordered views (the ring's two halves)."""
        first_end = min(self._start + self._size, self.capacity)
        segs = [(self._t[self._start : first_end], self._v[self._start : first_end])]
        rest = self._size - (first_end - self._start)
        if rest:
            segs.append((self._t[:rest], self._v[:rest]))
        return segs

    def arrays(self) -> tuple[I64, F64]:
        """Copies of the held samples in time order."""
        return self.window(np.iinfo(np.int64).min, np.iinfo(np.int64).max)

    def arrays_tail(self, n: int) -> tuple[I64, F64]:
        """Copies of the last ``n`` samples (fewer if fewer are held)."""
        k = min(n, self._size)
        idx = (self._start + self._size - k + np.arange(k)) % self.capacity
        return self._t[idx], self._v[idx]

    def latest(self) -> tuple[int, float] | None:
        if self._size == 0:
            return None
        i = (self._start + self._size - 1) % self.capacity
        return int(self._t[i]), float(self._v[i])

    def window(self, t_begin_ns: int, t_end_ns: int) -> tuple[I64, F64]:
        """Samples in [t_begin, t_end] plus one on each side when held (for edge interpolation)."""
        t_parts, v_parts = [], []
        for t, v in self._segments():
            lo = max(0, int(np.searchsorted(t, t_begin_ns, "right")) - 1)
            hi = min(t.size, int(np.searchsorted(t, t_end_ns, "left")) + 1)
            t_parts.append(t[lo:hi])
            v_parts.append(v[lo:hi])
        t_all, v_all = np.concatenate(t_parts), np.concatenate(v_parts)
        lo = max(0, int(np.searchsorted(t_all, t_begin_ns, "right")) - 1)
        hi = min(t_all.size, int(np.searchsorted(t_all, t_end_ns, "left")) + 1)
        return t_all[lo:hi].copy(), v_all[lo:hi].copy()


class Timeline:
    """Channels and their rings; the in-memory meeting point of probes and windows.

    Thread-safe: the sampler appends from its thread while the daemon reads windows from its own.
    """

    def __init__(self, capacity_per_channel: int = 1 << 20) -> None:
        self.capacity_per_channel = capacity_per_channel
        self.channels: dict[str, Channel] = {}
        self.rings: dict[str, Ring] = {}
        self._lock = threading.Lock()
        # each channel's latest sample time, kept at append: a daemon with thousands of agents
        # reads them all at every check of its pending results (``latest_times``; issue 16)
        self._last_t_ns: dict[str, int] = {}

    def add_channel(self, channel: Channel, replace: bool = False) -> None:
        """Register a channel; metadata may change only with ``replace`` (an agent re-announces)."""
        with self._lock:
            known = self.channels.get(channel.id)
            if known is not None and known != channel and not replace:
                raise ValueError(f"channel {channel.id} registered twice with different metadata")
            self.channels[channel.id] = channel
            self.rings.setdefault(channel.id, Ring(self.capacity_per_channel))

    def append(self, block: Block) -> None:
        if block.channel not in self.rings:
            raise KeyError(f"unknown channel {block.channel}")
        clean = block.finite()
        with self._lock:
            ring = self.rings[block.channel]
            ring.append(clean.t_ns, clean.value)
            last = ring.last_t_ns()
            if last is not None:
                self._last_t_ns[block.channel] = last

    def window(self, channel: str, t_begin_ns: int, t_end_ns: int) -> tuple[I64, F64]:
        with self._lock:
            return self.rings[channel].window(t_begin_ns, t_end_ns)

    def latest_times(self, among: Sequence[str] | None = None) -> tuple[I64, int]:
        """Every channel's latest sample time (unordered), and how many channels have none;
        ``among``: only those channels' (ids not in the timeline count as having none)."""
        with self._lock:
            if among is not None:
                last = self._last_t_ns
                found = [t for c in among if (t := last.get(c)) is not None]
                return np.array(found, np.int64), len(among) - len(found)
            n = len(self._last_t_ns)
            times = np.fromiter(self._last_t_ns.values(), np.int64, n)
            return times, len(self.rings) - n

    def latest(self, channel: str) -> tuple[int, float] | None:
        with self._lock:
            return self.rings[channel].latest()

    def tail(self, channel: str, n: int) -> tuple[I64, F64]:
        with self._lock:
            return self.rings[channel].arrays_tail(n)
