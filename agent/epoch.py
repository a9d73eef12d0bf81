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

Data of an epoch whose offset the daemon never measured (the agent ran while the broker was down,
then restarted) can still be placed: within one boot of the host, every epoch stamps
``monotonic + anchor_ns`` on the same monotonic clock, so epoch e's offset is the current one plus
``anchor_now - anchor_e``. The agent keeps each epoch's anchor (with the host's boot id) in its
spool and reports them in its status as ``epochs``; ``epoch_link`` does that arithmetic.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from powerd.timebase import ClockStep, TimeAnchor


@dataclass
class EpochAnchor(TimeAnchor):
    """A TimeAnchor whose re-anchoring on a wall-clock step starts a new epoch id.

    It does not follow drift (``follow_drift`` False, see powerd.timebase): within one epoch every
    stamp is ``monotonic + anchor_ns`` exactly, so the daemon's exchanges measure the epoch's
    offset and its drift, and ``epoch_link`` stays exact; a slow wall-clock divergence is neither
    a step nor a new epoch."""

    follow_drift: bool = False
    boot_ns: int = 0
    epoch: int = 0
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.boot_ns = self.mono() + self.offset_ns

    def utc_ns(self, mono_ns: int | None = None) -> int:
        with self._lock:
            return super().utc_ns(mono_ns)

    def info(self) -> tuple[int, int]:
        """(epoch id, anchor_ns): stamps of this epoch are ``monotonic + anchor_ns``."""
        with self._lock:
            return self.boot_ns, self.offset_ns

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


def host_boot_id(path: Path = Path("/proc/sys/kernel/random/boot_id")) -> int | None:
    """The host's boot as an integer (epochs of one host boot share one monotonic clock)."""
    try:
        return int(path.read_text().strip().replace("-", ""), 16) % (1 << 63)
    except (OSError, ValueError):
        return None


def epoch_link(epochs: Any, boot_now: int | None, boot_ns: int) -> int | None:
    """What to add to the offset of epoch ``boot_now`` to get that of epoch ``boot_ns``, from an
    agent's reported ``epochs`` ({boot_ns: anchor_ns} of one host boot); None if not both known."""
    if not isinstance(epochs, dict) or boot_now is None:
        return None
    a_now, a_then = epochs.get(str(boot_now)), epochs.get(str(boot_ns))
    if not all(isinstance(a, int) and not isinstance(a, bool) for a in (a_now, a_then)):
        return None
    assert isinstance(a_now, int) and isinstance(a_then, int)
    return a_now - a_then
