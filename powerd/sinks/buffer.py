"""A sink's on-disk buffer: an ordered FIFO of write batches in SQLite, bounded in bytes.

Modelled on the agent's outbox (``powerd.agent.spool``): every batch is written here first and
deleted only once the store acknowledged it, so a store that is down (or a daemon restart) loses
nothing and the backlog is replayed in order. At the bound the oldest batches go first; that loss is
counted in samples (``points`` of a batch: its field values), for
``powerd_sink_samples_total{outcome="dropped"}``.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches(id INTEGER PRIMARY KEY, points INTEGER NOT NULL,
    payload BLOB NOT NULL);
"""


@dataclass(frozen=True)
class Batch:
    id: int
    points: int
    payload: bytes


class DiskBuffer:
    """FIFO of batches; thread-safe (the hub thread appends, the sender thread peeks and acks)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.max_bytes = path, max_bytes
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        row = self._db.execute(
            "SELECT COALESCE(SUM(LENGTH(payload)), 0), COUNT(*) FROM batches"
        ).fetchone()
        self._bytes, self._count = int(row[0]), int(row[1])
        self.dropped_points = 0

    def put(self, payload: bytes, points: int) -> int:
        """Append one batch; drop the oldest beyond the bound. Returns the points dropped."""
        dropped = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT INTO batches(points, payload) VALUES(?, ?)", (points, payload))
            self._bytes += len(payload)
            self._count += 1
            while self._bytes > self.max_bytes and self._count > 1:
                old = self._db.execute(
                    "SELECT id, points, LENGTH(payload) FROM batches ORDER BY id LIMIT 1"
                ).fetchone()
                self._db.execute("DELETE FROM batches WHERE id=?", (old[0],))
                self._bytes -= old[2]
                self._count -= 1
                dropped += old[1]
            self._db.execute("COMMIT")
            self.dropped_points += dropped
        return dropped

    def peek(self, limit: int) -> list[Batch]:
        """The oldest batches, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, points, payload FROM batches ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [Batch(i, n, bytes(p)) for i, n, p in rows]

    def ack(self, batch: Batch) -> None:
        """Delete a batch the store acknowledged (or refused for good)."""
        with self._lock:
            if self._db.execute("DELETE FROM batches WHERE id=?", (batch.id,)).rowcount:
                self._bytes -= len(batch.payload)
                self._count -= 1

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        with self._lock:
            self._db.close()
