"""Confirmed spool rows are deleted with the next write's transaction (issue 16: the agent's
CPU), never lost or resent while the agent runs, and deleted at the latest after
``ACK_DEFER_S``, at close, or at once near the size bound. Real SQLite files, no mocks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from powerd.agent import spool as spool_mod
from powerd.agent import wire
from powerd.agent.spool import Spool
from powerd.runner import _next_tick

AGENT = "edge-acks"
TOPIC = wire.blocks_topic(AGENT)


def block_msg(seq: int, n: int = 50) -> bytes:
    t = seq * 10**9 + np.arange(n, dtype=np.int64) * 1_000_000
    return wire.encode_block(7, seq, "sim:x", t, np.full(n, float(seq)))


def rows_on_disk(path: Path) -> list[int]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [int(r[0]) for r in con.execute("SELECT id FROM outbox ORDER BY id")]
    finally:
        con.close()


def seqs(spool: Spool) -> list[int]:
    return [wire.decode_block(m.payload).seq for m in spool.peek(100)]


def test_confirmed_rows_go_with_the_next_write_and_are_never_seen_again(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, 64 << 20, agent=AGENT, log=lambda _: None)
    spool.put_many([(TOPIC, block_msg(s), 1, False) for s in (1, 2, 3)])
    first = spool.peek(2)
    spool.ack_many(first)
    # deferred: still on disk, but neither counted nor offered again
    assert len(rows_on_disk(path)) == 3
    assert len(spool) == 1 and seqs(spool) == [3]
    spool.put_many([(TOPIC, block_msg(4), 1, False)])
    assert rows_on_disk(path) == [m.id for m in spool.peek(10)]
    assert seqs(spool) == [3, 4] and len(spool) == 2
    spool.close()
    # nothing confirmed comes back after a restart; nothing unconfirmed is missing
    spool = Spool(path, 64 << 20, agent=AGENT, log=lambda _: None)
    assert seqs(spool) == [3, 4]
    spool.close()


def test_confirmed_rows_are_deleted_by_tidy_when_no_write_comes(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, 64 << 20, agent=AGENT, log=lambda _: None)
    spool.put_many([(TOPIC, block_msg(s), 1, False) for s in (1, 2)])
    spool.ack_many(spool.peek(1))
    spool.tidy()  # too recent: left for a write
    assert len(rows_on_disk(path)) == 2
    spool._acked_since_s -= spool_mod.ACK_DEFER_S  # as if ACK_DEFER_S went by
    spool.tidy()
    assert len(rows_on_disk(path)) == 1 and seqs(spool) == [2]
    spool.ack_many(spool.peek(1))
    spool.close()  # close deletes what is left
    assert rows_on_disk(path) == []


def test_confirmed_rows_are_deleted_at_once_near_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, 64 << 20, agent=AGENT, log=lambda _: None)
    spool.put_many([(TOPIC, block_msg(s), 1, False) for s in (1, 2)])
    spool.max_bytes = int(spool.disk_bytes() / spool_mod.BOUND_CLEAR)  # at 80 % of the bound
    spool.ack_many(spool.peek(1))
    assert len(rows_on_disk(path)) == 1 and seqs(spool) == [2]
    spool.close()


def test_a_periodic_task_run_early_keeps_its_cadence() -> None:
    assert _next_tick(10.0, 0.5, 9.95) == 10.5  # run 50 ms early: next deadline unchanged
    assert _next_tick(10.0, 0.5, 10.02) == 10.5
    assert _next_tick(10.0, 0.5, 11.0) == 11.5  # fell behind: one interval from now
