"""A gap report is placed consistently with the blocks around it, even when the agent's clock
estimate moved between the blocks' arrival and the report's (powerd.gapedges): the flagged gap
starts one sample period after the last stored sample and ends one before the next."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from powerd import gapedges
from powerd.agent import wire
from powerd.daemon import MIN_EXCHANGES, Daemon
from tests.fault.test_ingest_bounds import NOW_NS, FakeClock, block, channels, make_daemon, status

AGENT = "edge"
CID = f"{AGENT}/sim:c"
STEP_NS = 10_000_000  # block() spaces samples 10 ms apart
BOOT = 7


def exchanges(d: Daemon, clock: FakeClock, agent_ahead_ns: int, rtt_ns: int) -> None:
    """Clock exchanges with the agent ``agent_ahead_ns`` ahead, each with round trip ``rtt_ns``
    (a smaller one than before wins the estimate: the offset moves by the change in ahead)."""
    for _ in range(MIN_EXCHANGES):
        req = json.loads(d.clock_request(AGENT))
        t2 = clock.t_ns + rtt_ns // 2 + agent_ahead_ns
        clock.t_ns += rtt_ns
        assert d.accept_clock_reply(AGENT, wire.clock_reply(json.dumps(req).encode(), t2, t2))


def ready(tmp_path: Path) -> tuple[Daemon, FakeClock]:
    clock = FakeClock()
    d = make_daemon(tmp_path, clock)
    assert d.accept_status(AGENT, status(AGENT))
    d.accept_channels(AGENT, channels(AGENT))
    exchanges(d, clock, 0, 4_000_000)
    return d, clock


def dropped(first_ns: int, n: int) -> bytes:
    last = first_ns + (n - 1) * STEP_NS
    return wire.encode_gaps([wire.DroppedBlock("sim:c", BOOT, first_ns, last, n)])


def check_tiled(d: Daemon) -> tuple[int, int]:
    d.store.flush()
    t, _ = d.store.samples(CID, 0, 2**62)
    ((g0, g1, reason),) = d.store.gaps(CID, 0, 2**62)
    assert reason == "agent_dropped"
    before, after = t[t < g0], t[t > g1]
    assert not np.any((t >= g0) & (t <= g1)), "the flagged gap holds stored samples"
    # exactly one period from each neighbour: no unflagged sliver, no overlap
    assert g0 - int(before[-1]) == STEP_NS, (g0 - int(before[-1]), "start")
    assert int(after[0]) - g1 == STEP_NS, (int(after[0]) - g1, "end")
    return g0, g1


def test_a_gap_reported_after_the_estimate_moved_meets_the_blocks_around_it(
    tmp_path: Path,
) -> None:
    d, clock = ready(tmp_path)
    t0 = NOW_NS - 10**9
    assert d.accept_block(AGENT, block(1, t0, boot_ns=BOOT))  # 10 samples, placed now
    exchanges(d, clock, 3_000_000, 1_000_000)  # the estimate moves by 3 ms (load, drift)
    assert d.accept_block(AGENT, block(3, t0 + 15 * STEP_NS, boot_ns=BOOT))
    assert d.accept_gaps(AGENT, dropped(t0 + 10 * STEP_NS, 5))
    check_tiled(d)


def test_a_gap_whose_next_block_arrives_later_gets_its_end_moved(tmp_path: Path) -> None:
    d, clock = ready(tmp_path)
    t0 = NOW_NS - 10**9
    assert d.accept_block(AGENT, block(1, t0, boot_ns=BOOT))
    exchanges(d, clock, 3_000_000, 1_000_000)
    assert d.accept_gaps(AGENT, dropped(t0 + 10 * STEP_NS, 5))
    exchanges(d, clock, -2_000_000, 500_000)  # and moves again before the next block arrives
    assert d.accept_block(AGENT, block(3, t0 + 15 * STEP_NS, boot_ns=BOOT))
    check_tiled(d)
    assert d.gap_edges.counts["gap_ends_moved"] == 1


def test_a_gap_far_from_any_block_is_placed_with_the_estimate_now(tmp_path: Path) -> None:
    d, clock = ready(tmp_path)
    t0 = NOW_NS - 10**9
    assert d.accept_block(AGENT, block(1, t0, boot_ns=BOOT))
    exchanges(d, clock, 3_000_000, 1_000_000)
    first = t0 + 100 * STEP_NS  # a second after the block: not its neighbour
    assert d.accept_gaps(AGENT, dropped(first, 5))
    ((g0, g1, _),) = d.store.gaps(CID, 0, 2**62)
    offset = d._offset_for(AGENT, first + 4 * STEP_NS, BOOT)[0]
    assert (g0, g1) == (first + offset, first + 4 * STEP_NS + offset)
    assert d.gap_edges.counts["gap_edges_snapped"] == 0


def test_placements_are_bounded_in_all_and_a_forgotten_neighbour_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gapedges, "BLOCKS_TOTAL", 10)
    edges = gapedges.GapEdges()
    for k in range(4):  # 4 channels × 5 blocks of 10 samples, 100 ms each, offset k
        for i in range(5):
            first = i * 100 * STEP_NS
            edges.note_block((f"c{k}", BOOT), first, first + 9 * STEP_NS, 10, k)
    assert edges._total == 10 == sum(len(p.blocks) for p in edges._keys.values())
    assert [key for key, _ in edges._keys.items()] == [("c2", BOOT), ("c3", BOOT)]
    # c3's last block is remembered: a gap after it starts with its offset (3), not the
    # estimate now (1000); c0's were forgotten: the estimate now
    after = 4 * 100 * STEP_NS + 10 * STEP_NS
    assert edges.place_gap(("c3", BOOT), after, after, "agent_dropped", 1000)[0] == after + 3
    assert edges.place_gap(("c0", BOOT), after, after, "agent_dropped", 1000)[0] == after + 1000


def test_successive_drops_of_one_backlog_meet_each_other_and_their_blocks(tmp_path: Path) -> None:
    """Two drops reported one after another, the block between them never sent (dropped by the
    second), the estimate moving between the reports: the gaps meet exactly (no sliver, no
    overlap) and together tile the hole between the stored blocks."""
    d, clock = ready(tmp_path)
    t0 = NOW_NS - 10**9
    assert d.accept_block(AGENT, block(1, t0, boot_ns=BOOT))  # samples 0..9
    exchanges(d, clock, 3_000_000, 1_000_000)
    assert d.accept_gaps(AGENT, dropped(t0 + 10 * STEP_NS, 5))  # 10..14: no block after it yet
    exchanges(d, clock, -2_000_000, 500_000)
    assert d.accept_gaps(AGENT, dropped(t0 + 15 * STEP_NS, 5))  # 15..19: the block after the first
    exchanges(d, clock, 1_000_000, 250_000)
    assert d.accept_block(AGENT, block(3, t0 + 20 * STEP_NS, boot_ns=BOOT))  # 20..29
    d.store.flush()
    t, _ = d.store.samples(CID, 0, 2**62)
    (a0, a1, _), (b0, b1, _) = d.store.gaps(CID, 0, 2**62)
    assert not np.any((t >= a0) & (t <= b1)), "a flagged gap holds stored samples"
    assert a0 - int(t[t < a0][-1]) == STEP_NS
    assert b0 - a1 == STEP_NS, "the two gaps do not meet"
    assert int(t[t > b1][0]) - b1 == STEP_NS
