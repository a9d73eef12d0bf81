"""The agent's clock, with an identity: which *clock epoch* every stamp belongs to.

The daemon moves an agent's stamps onto its own clock by an offset measured with clock exchanges.
That offset belongs to one epoch of the agent's clock: a restarted process re-anchors on a wall
clock that may have stepped meanwhile, and so does a running one when ``TimeAnchor.check`` sees a
step. Mixing exchanges of two epochs misplaces data by the whole step, so every stamp the agent
sends (blocks, clock replies, relayed markers) carries the epoch id ``boot_ns``: the UTC ns at which
the epoch started, new at every process start and at every detected step. The daemon keeps one
offset estimate per (agent, boot_ns) and holds an epoch's data until that estimate is known.

``stamp()`` returns (boot_ns, utc_ns) read under one lock, so a reply or marker never pairs an
epoch id with a stamp of the next epoch while the sampler thread re-anchors.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from powerd.timebase import ClockStep, TimeAnchor


@dataclass
class EpochAnchor(TimeAnchor):
    """A TimeAnchor whose re-anchoring on a wall-clock step starts a new epoch id."""

    boot_ns: int = 0
    epoch: int = 0
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.boot_ns = self.mono() + self.offset_ns

    def utc_ns(self, mono_ns: int | None = None) -> int:
        with self._lock:
            return super().utc_ns(mono_ns)

    def stamp(self) -> tuple[int, int]:
        """(epoch id, UTC ns now) of one epoch."""
        with self._lock:
            return self.boot_ns, super().utc_ns()

    def check(self) -> ClockStep | None:
        """Re-anchor on a step (as TimeAnchor) and start a new epoch id with it."""
        with self._lock:
            step = super().check()
            if step is not None:
                new = step.utc_ns
                self.boot_ns = new if new != self.boot_ns else new + 1
                self.epoch += 1
            return step
