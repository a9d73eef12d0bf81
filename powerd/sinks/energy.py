"""Running energy per channel since the daemon started: the ``powerd_energy_joules_total`` counter.

Each block is joined to the channel's previous sample and split into sample intervals, the same
way ``powerd.integrate`` integrates a window: the trapezoid rule for power channels, the unwrapped
difference (wraps undone, resets bridged by ``unwrap_counter``) for energy counters. Summing the
intervals of a window therefore gives what ``integrate`` gives for a window bounded by samples.
The intervals are kept (``Increments``), so a sink can down-sample them without integrating again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from powerd.block import F64, I64, Block
from powerd.channel import Channel
from powerd.integrate import unwrap_counter

NS_PER_S = 1e9


@dataclass(frozen=True)
class Increments:
    """A block's samples as intervals, each ending at ``t_ns[i]``.

    ``dt_ns[i]``/``energy_j[i]``: the interval's length and energy (0 for the first sample a
    power channel ever sends, which has no interval but whose power is known); ``total_j[i]``: the
    channel's cumulative energy at ``t_ns[i]``; ``power_w[i]``: power at ``t_ns[i]`` (the sample
    of a power channel, the interval's mean rate for a counter)."""

    t_ns: I64
    dt_ns: I64
    energy_j: F64
    total_j: F64
    power_w: F64

    def __len__(self) -> int:
        return int(self.t_ns.size)


class EnergyIntegrator:
    """Per-channel running energy; ``feed`` is called by one thread, ``totals_j`` by any."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, float]] = {}
        self._total_j: dict[str, float] = {}
        self._lock = threading.Lock()

    def feed(self, ch: Channel, block: Block) -> Increments | None:
        """The block's increments, or None when it holds no new finite sample. Samples not after
        the channel's last one (a repeat, a late block) are skipped, as the timeline does."""
        block = block.finite()
        t, v = block.t_ns, block.value
        last = self._last.get(ch.id)
        if last is not None and t.size and t[0] <= last[0]:
            keep = t > last[0]
            t, v = t[keep], v[keep]
        if t.size == 0:
            return None
        total0 = self._total_j.get(ch.id, 0.0)
        if last is None:
            t_all, v_all = t, v
        else:
            t_all = np.concatenate([np.array([last[0]], np.int64), t])
            v_all = np.concatenate([np.array([last[1]], np.float64), v])
        dt_ns = np.diff(t_all)
        dt_s = dt_ns.astype(np.float64) / NS_PER_S
        if ch.kind == "power":
            energy = (v_all[:-1] + v_all[1:]) * 0.5 * dt_s
            power = v_all[1:]
            if last is None:  # the first sample: no interval, but a power reading
                dt_ns = np.concatenate([np.zeros(1, np.int64), dt_ns])
                energy = np.concatenate([np.zeros(1), energy])
                power = v_all
        else:
            energy = np.diff(unwrap_counter(t_all, v_all, ch.wrap_j).cumulative_j)
            power = energy / dt_s
            if last is None:
                t = t[1:]
        total = total0 + np.cumsum(energy)
        with self._lock:
            self._last[ch.id] = (int(t_all[-1]), float(v_all[-1]))
            if total.size:
                self._total_j[ch.id] = float(total[-1])
            else:
                self._total_j.setdefault(ch.id, total0)
        if t.size == 0:
            return None
        return Increments(t, dt_ns, energy, total, power)

    def totals_j(self) -> dict[str, float]:
        """Cumulative energy per channel in J, up to each channel's last sample."""
        with self._lock:
            return dict(self._total_j)
