"""The agent's outbox: an on-disk FIFO of MQTT messages, bounded in size, kept across restarts.

Every block and marker is written here first and deleted only once the broker has acknowledged it
(QoS 1), so a broker restart, a network cut or an agent restart loses nothing and the daemon
receives the backlog in order (duplicates from a resend are dropped there by sequence number).
When the bound is reached the oldest messages go first, and that loss is counted and reported.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox(id INTEGER PRIMARY KEY, topic TEXT NOT NULL,
    payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Message:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Spool:
    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.max_bytes = path, max_bytes
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._bytes = int(
            self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()[0]
        )
        self.dropped = 0

    def put_many(self, items: list[tuple[str, bytes, int, bool]]) -> None:
        """Append messages in one transaction; drop the oldest beyond the size bound."""
        if not items:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO outbox(topic, payload, qos, retain) VALUES(?, ?, ?, ?)",
                [(t, p, q, int(r)) for t, p, q, r in items],
            )
            self._bytes += sum(len(p) for _, p, _, _ in items)
            while self._bytes > self.max_bytes:
                row = self._db.execute(
                    "SELECT id, LENGTH(payload) FROM outbox ORDER BY id LIMIT 1"
                ).fetchone()
                if row is None:
                    break
                self._db.execute("DELETE FROM outbox WHERE id=?", (row[0],))
                self._bytes -= row[1]
                self.dropped += 1
            self._db.execute("COMMIT")

    def peek(self, limit: int) -> list[Message]:
        """The oldest messages, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain FROM outbox ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [Message(i, t, bytes(p), q, bool(r)) for i, t, p, q, r in rows]

    def ack_many(self, messages: list[Message]) -> None:
        """Delete messages the broker acknowledged, in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for m in messages:
                if self._db.execute("DELETE FROM outbox WHERE id=?", (m.id,)).rowcount:
                    self._bytes -= len(m.payload)
            self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def next_counter(self, key: str) -> int:
        """A persistent counter (e.g. marker sequence numbers that survive restarts)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO meta VALUES(?, 1) ON CONFLICT(key) DO UPDATE SET value=value+1", (key,)
            )
            return int(self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
