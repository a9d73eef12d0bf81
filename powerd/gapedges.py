"""Where an agent's gap report lands on the daemon's clock: consistently with its neighbours.

An agent block is moved onto our clock with the agent's offset as estimated when it ARRIVES; a
gap report (samples the agent dropped, or a probe down) may arrive seconds later, when the
estimate has moved (under load by several ms within one run). Placed with its own estimate, a
gap then starts ms after the last stored sample before it, or ends ms before the first one after
it: an unflagged sliver of hole, or a flagged gap overlapping stored samples. So each edge of a
gap is placed with the offset its adjacent block was placed with (the block whose last stamp
precedes the gap's first, the block whose first stamp follows the gap's last), and a gap whose
following block arrives only later gets its end moved when that block is placed.

Successive drops of one backlog (reported one after another, neither with a placed block next to
it) are chained: a gap whose neighbour is an earlier gap takes that gap's edge offset, so the two
meet exactly instead of leaving a sub-ms unflagged sliver (or an overlap) between them.

Bounded: BLOCKS_PER_KEY placements, OPEN_GAPS_PER_KEY open gaps and GAPS_PER_KEY gaps per
(channel, clock epoch), BLOCKS_TOTAL placements and KEYS such keys in all (the least recently
placed key's oldest forgotten first, ~100 bytes each); a gap whose neighbour was forgotten (or
placed before a daemon restart: this is memory only) is placed with the current estimate.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field

BLOCKS_PER_KEY = 4096
BLOCKS_TOTAL = 1 << 18
OPEN_GAPS_PER_KEY = 256
GAPS_PER_KEY = 256
# (channel, epoch) keys: a fleet daemon has 8 per agent, and at 4096 one of 1 000 agents
# evicted a key (and every placement it held) at every block (issue 16)
KEYS = 1 << 15
# A neighbour with one sample (no spacing known) counts as adjacent within this distance.
ADJACENT_SINGLE_NS = 1_000_000_000

Key = tuple[str, int | None]


def _adjacent(distance_ns: int, step_ns: int) -> bool:
    """Whether a block ``distance_ns`` from a gap's edge is that edge's neighbour: within two of
    its own sample periods (a drop removes whole samples, so a true neighbour is one period off)."""
    if distance_ns <= 0:
        return False
    return distance_ns <= (2 * step_ns if step_ns > 0 else ADJACENT_SINGLE_NS)


@dataclass
class _Placed:
    # blocks placed, sorted by first stamp (agent clock): (t_first, t_last, step, offset)
    blocks: list[tuple[int, int, int, int]] = field(default_factory=list)
    # gaps whose end was placed without a following block: (t_last agent, t0 placed, reason)
    open_gaps: list[tuple[int, int, str]] = field(default_factory=list)
    # gaps placed, sorted by first stamp (agent clock): [t_first, t_last, step, offset0, offset1]
    gaps: list[list[int]] = field(default_factory=list)

    def note_gap(self, g_first: int, g_last: int, step: int, off0: int, off1: int) -> None:
        bisect.insort(self.gaps, [g_first, g_last, step, off0, off1])
        if len(self.gaps) > GAPS_PER_KEY:
            del self.gaps[0]

    def gap_before(self, g_first: int, step: int) -> list[int] | None:
        """The placed gap that ends right before ``g_first`` (its neighbour), if any."""
        i = bisect.bisect_left(self.gaps, [g_first])
        if i == 0:
            return None
        gap = self.gaps[i - 1]
        return gap if _adjacent(g_first - gap[1], max(step, gap[2])) else None

    def gap_after(self, g_last: int, step: int) -> list[int] | None:
        """The placed gap that starts right after ``g_last`` (its neighbour), if any."""
        i = bisect.bisect_right(self.gaps, [g_last, 2**63])
        if i == len(self.gaps):
            return None
        gap = self.gaps[i]
        return gap if _adjacent(gap[0] - g_last, max(step, gap[2])) else None


@dataclass
class GapEdges:
    """The offsets each channel's recent blocks were placed with, to place gaps' edges."""

    _keys: OrderedDict[Key, _Placed] = field(default_factory=OrderedDict)
    _total: int = 0  # placements remembered, over every key
    # gap edges placed with a neighbour's offset, and gap ends moved to a later neighbour's
    counts: dict[str, int] = field(
        default_factory=lambda: {"gap_edges_snapped": 0, "gap_ends_moved": 0}
    )

    def _get(self, key: Key) -> _Placed:
        placed = self._keys.get(key)
        if placed is None:
            placed = self._keys[key] = _Placed()
            while len(self._keys) > KEYS:
                self._total -= len(self._keys.popitem(last=False)[1].blocks)
        else:
            self._keys.move_to_end(key)
        return placed

    def placed(self, channel: str) -> list[tuple[int, int, int]]:
        """The remembered blocks of ``channel`` (every epoch) as (first, last, offset) on OUR
        clock, in order: where seams between blocks placed with different estimates lie."""
        out = [
            (b[0] + b[3], b[1] + b[3], b[3])
            for (cid, _), placed in self._keys.items()
            if cid == channel
            for b in placed.blocks
        ]
        return sorted(out)

    def note_block(
        self, key: Key, t_first_ns: int, t_last_ns: int, n: int, offset_ns: int
    ) -> list[tuple[int, int, str]]:
        """A block of ``key`` placed with ``offset_ns``. Returns the gaps (t0, new t1, reason)
        whose end must move: open gaps this block directly follows."""
        placed = self._get(key)
        step_ns = (t_last_ns - t_first_ns) // (n - 1) if n > 1 else 0
        bisect.insort(placed.blocks, (t_first_ns, t_last_ns, step_ns, offset_ns))
        self._total += 1
        if len(placed.blocks) > BLOCKS_PER_KEY:
            del placed.blocks[0]
            self._total -= 1
        while self._total > BLOCKS_TOTAL:
            oldest = next(iter(self._keys.values()))
            if oldest.blocks:
                del oldest.blocks[0]
                self._total -= 1
            if not oldest.blocks and oldest is not placed:
                self._keys.popitem(last=False)
        moved: list[tuple[int, int, str]] = []
        keep: list[tuple[int, int, str]] = []
        for g_last, t0, reason in placed.open_gaps:
            if _adjacent(t_first_ns - g_last, step_ns):
                moved.append((t0, g_last + offset_ns, reason))
                for gap in placed.gaps:
                    if gap[1] == g_last:
                        gap[4] = offset_ns
            else:
                keep.append((g_last, t0, reason))
        if moved:
            placed.open_gaps = keep
            self.counts["gap_ends_moved"] += len(moved)
        return moved

    def place_gap(
        self,
        key: Key,
        g_first_ns: int,
        g_last_ns: int,
        reason: str,
        offset_ns: int,
        samples: int = 0,
    ) -> tuple[int, int]:
        """(t0, t1) on our clock for a gap [g_first, g_last] of ``samples`` samples on the
        agent's clock: each edge with its adjacent placed block's offset, else with an adjacent
        placed gap's, else with ``offset_ns`` (the estimate now); a gap with no following block
        yet is remembered, for that block to move its end."""
        placed = self._get(key)
        blocks = placed.blocks
        step_ns = (g_last_ns - g_first_ns) // (samples - 1) if samples > 1 else 0
        off0 = off1 = offset_ns
        i = bisect.bisect_left(blocks, (g_first_ns,))
        before = blocks[i - 1] if i > 0 else None
        if before is not None and _adjacent(g_first_ns - before[1], before[2]):
            off0 = before[3]
            self.counts["gap_edges_snapped"] += 1
        elif (gap := placed.gap_before(g_first_ns, step_ns)) is not None:
            off0 = gap[4]
            self.counts["gap_edges_snapped"] += 1
        j = bisect.bisect_right(blocks, (g_last_ns, 2**63))
        follows = j < len(blocks) and _adjacent(blocks[j][0] - g_last_ns, blocks[j][2])
        if follows:
            off1 = blocks[j][3]
            self.counts["gap_edges_snapped"] += 1
        elif (gap := placed.gap_after(g_last_ns, step_ns)) is not None:
            off1 = gap[3]
            self.counts["gap_edges_snapped"] += 1
        t0, t1 = g_first_ns + off0, g_last_ns + off1
        if not follows:
            placed.open_gaps.append((g_last_ns, t0, reason))
            if len(placed.open_gaps) > OPEN_GAPS_PER_KEY:
                del placed.open_gaps[0]
        placed.note_gap(g_first_ns, g_last_ns, step_ns, off0, off1)
        return t0, t1
