"""The agent's outbox: an on-disk FIFO of MQTT messages, bounded in size, kept across restarts.

Every block and marker is written here first and deleted only once the broker has acknowledged it
(QoS 1), so a broker restart, a network cut or an agent restart loses nothing and the daemon
receives the backlog in order (duplicates from a resend are dropped there by (boot, seq)).

The disk may fail (full, read-only remount, I/O error): then sampling goes on and messages wait in
a bounded memory queue, published from there while the broker is up, moved to disk when it works
again (retried every ``RETRY_S``). ``state`` says "ok", "full" (disk full, or the size bound
reached) or "error"; each transition is logged once. What cannot be kept is dropped oldest block
first (markers and gap reports are never dropped), counted, and reported to the daemon with its
exact extent on ``powerd/v1/gaps/<agent>`` (a message queued here like any other), so the daemon
flags the gap ``agent_dropped`` in every result it touches.

A confirmed message is hidden from ``peek`` at once and deleted from disk with the next write's
transaction (within ``ACK_DEFER_S``, at once near the size bound): one SQLite transaction per
flush instead of two. Deleting late loses nothing; a crash in between only sends it again.

The size bound counts what the spool occupies on disk: the database's used pages plus its WAL
and shared-memory files (the WAL is checkpointed and truncated after acknowledgements).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from powerd.agent import wire
from powerd.errors import PowerdError

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox(id INTEGER PRIMARY KEY, topic TEXT NOT NULL,
    payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
MEMORY_MAX_BYTES = 32 << 20
RETRY_S = 2.0
ROW_OVERHEAD_BYTES = 64
BOUND_CLEAR = 0.8
# confirmed rows are deleted with the next write (see Spool._defer_delete), unless this many
# wait or the oldest waited this long
ACK_DEFER_ROWS = 512
ACK_DEFER_S = 2.0


@dataclass(frozen=True)
class Message:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


Item = tuple[str, bytes, int, bool]


def _log(text: str) -> None:
    print(f"powerd-agent: {text}", file=sys.stderr, flush=True)


def _is_block(topic: str) -> bool:
    return f"{wire.TOPIC_ROOT}/blocks/" in topic


def _full(err: BaseException) -> bool:
    text = str(err).lower()
    return "full" in text or getattr(err, "errno", None) == 28


class Spool:
    """Disk FIFO with a memory fallback; never raises on a write failure once open."""

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        agent: str = "agent",
        memory_max_bytes: int = MEMORY_MAX_BYTES,
        log: Callable[[str], None] = _log,
    ) -> None:
        self.path, self.max_bytes, self.agent = path, max_bytes, agent
        self.memory_max_bytes, self._log = memory_max_bytes, log
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._mem: deque[Message] = deque()
        self._mem_bytes = 0
        self._mem_id = 0
        self._acked: set[int] = set()
        self._acked_since_s = 0.0
        # sent and waiting for the daemon's confirmation: id -> (monotonic time sent, resent
        # on a timer too, not only on reconnect)
        self._awaiting: dict[int, tuple[float, bool]] = {}
        self._counters: dict[str, int] = {}
        self._meta: dict[str, int] = {}
        self._retry_at_s = 0.0
        self._since_s = 0.0
        self._used_bytes = 0
        self._page_bytes = 4096
        # ids are never reused (SQLite would reuse a deleted maximum): an acknowledgement for
        # a message dropped at the bound must never delete a newer one that took its id
        self._next_id = 1
        self._drop_logged = False
        self._at_bound = False  # "full" because of spool_max_mb (cleared below BOUND_CLEAR)
        self.state = "ok"
        self.error = ""
        self.dropped = 0  # blocks messages dropped (kept for compatibility)
        self.dropped_blocks = 0
        self.dropped_samples = 0
        self.write_failures = 0
        self.changes = 0  # bumped at every state change or drop: the agent republishes status
        self._check_dir()
        try:
            self._connect()
        except sqlite3.Error as err:
            if not _full(err):
                raise PowerdError(f"spool {path}: {err}") from None
            self._fail("full", err)

    # opening -----------------------------------------------------------------------------------

    def _check_dir(self) -> None:
        d = self.path.parent
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise PowerdError(
                f"spool directory {d} cannot be created: {err.strerror}; "
                "set spool_dir (--spool-dir) to a writable directory"
            ) from None
        if not os.access(d, os.W_OK | os.X_OK) or (
            self.path.exists() and not os.access(self.path, os.W_OK)
        ):
            raise PowerdError(
                f"spool directory {d} is not writable (read-only or no permission); "
                "set spool_dir (--spool-dir) to a writable directory"
            )

    def _connect(self) -> None:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=5)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA journal_size_limit={max(1 << 16, self.max_bytes // 8)}")
            db.executescript(SCHEMA)
            for key, value in self._counters.items():
                db.execute(
                    "INSERT INTO meta VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET "
                    "value=MAX(value, excluded.value)",
                    (key, value),
                )
        except sqlite3.Error:
            db.close()
            raise
        top = db.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()[0]
        self._next_id = max(self._next_id, int(top) + 1)
        self._db = db
        self._page_bytes = int(db.execute("PRAGMA page_size").fetchone()[0])
        self._measure()

    # size --------------------------------------------------------------------------------------

    def _file_bytes(self, suffix: str) -> int:
        try:
            return os.stat(f"{self.path}{suffix}").st_size
        except OSError:
            return 0

    def _measure(self) -> int:
        """Bytes the spool occupies: used database pages, plus the WAL and shm files."""
        assert self._db is not None
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        page = self._page_bytes  # read once per connection (_connect)
        self._used_bytes = (
            int(pages - free) * int(page) + self._file_bytes("-wal") + self._file_bytes("-shm")
        )
        return self._used_bytes

    def disk_bytes(self) -> int:
        with self._lock:
            return self._used_bytes

    def _checkpoint(self, force: bool = False) -> None:
        assert self._db is not None
        if force or self._file_bytes("-wal") > min(self.max_bytes // 8, 1 << 20):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # failures and drops ------------------------------------------------------------------------

    def _fail(self, state: str, err: BaseException) -> None:
        self.write_failures += 1
        self._retry_at_s = time.monotonic() + RETRY_S
        if self.state == state:
            return
        if self.state == "ok":
            self._since_s = time.monotonic()
        self.state, self.error = state, f"{type(err).__name__}: {err}"
        self.changes += 1
        self._log(
            f"spool_{state}: {self.path}: {self.error}; sampling continues into memory "
            f"(up to {self.memory_max_bytes >> 20} MB), disk retried every {RETRY_S:.0f} s"
        )

    def _recovered(self) -> None:
        if self.state == "ok":
            return
        self._log(
            f"spool {self.path} writable again after {time.monotonic() - self._since_s:.1f} s; "
            f"{self.dropped_blocks} blocks ({self.dropped_samples} samples) dropped so far"
        )
        self.state, self.error = "ok", ""
        self.changes += 1

    def _dropped(self, payloads: Sequence[bytes | None], why: str) -> Item | None:
        """Count dropped block messages; the gaps message that reports their exact extent.
        ``None`` between payloads marks a message kept (sent, awaiting confirmation): the
        extents on either side of it are reported apart, never one over what was kept."""
        extents: dict[tuple[str, int, int], list[int]] = {}
        run = 0
        for payload in payloads:
            if payload is None:
                run += 1
                continue
            self.dropped += 1
            try:
                blocks = wire.decode_blocks(payload)
            except wire.WireError:
                continue
            for b in blocks:
                self.dropped_blocks += 1
                self.dropped_samples += int(b.t_ns.size)
                key = (b.channel, b.boot_ns, run)
                e = extents.setdefault(key, [b.t_ns[0], b.t_ns[-1], 0])
                e[0], e[1] = min(e[0], int(b.t_ns[0])), max(e[1], int(b.t_ns[-1]))
                e[2] += int(b.t_ns.size)
        if not extents:
            return None
        if not self._drop_logged:
            self._drop_logged = True
            self._log(
                f"spool: dropping the oldest blocks ({why}); every drop is counted in the "
                "status and reported to the daemon with its extent (logged once)"
            )
        self.changes += 1
        gaps = [
            wire.DroppedBlock(ch, boot, int(t0), int(t1), n)
            for (ch, boot, _), (t0, t1, n) in extents.items()
        ]
        return (wire.gaps_topic(self.agent), wire.encode_gaps(gaps), 1, False)

    # writing -----------------------------------------------------------------------------------

    def put_many(self, items: list[Item]) -> None:
        """Append messages in order: to disk when it works (with what waited in memory first),
        else to memory; drop the oldest blocks beyond the bound, reporting them."""
        if not items:
            return
        with self._lock:
            if self._disk_due():
                counts = (self.dropped, self.dropped_blocks, self.dropped_samples)
                try:
                    self._write(items)
                    return
                except (sqlite3.Error, OSError) as err:
                    self._rollback()  # nothing was dropped after all
                    self.dropped, self.dropped_blocks, self.dropped_samples = counts
                    self._fail("full" if _full(err) else "error", err)
            self._to_memory(items)

    def _disk_due(self) -> bool:
        if self._db is None or self._mem:
            if time.monotonic() < self._retry_at_s:
                return False
            if self._db is None:
                try:
                    self._connect()
                except (sqlite3.Error, OSError) as err:
                    self._fail("full" if _full(err) else "error", err)
                    return False
        return True

    def _rollback(self) -> None:
        if self._db is not None and self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _write(self, items: list[Item]) -> None:
        assert self._db is not None
        db = self._db
        moved = [(m.topic, m.payload, m.qos, m.retain) for m in self._mem]
        rows = moved + items
        incoming = sum(len(p) + ROW_OVERHEAD_BYTES for _, p, _, _ in rows)
        db.execute("BEGIN IMMEDIATE")
        dropped: list[bytes | None] = []
        predicted = self._used_bytes + incoming + 4 * self._page_bytes
        last_id = -1
        while predicted > self.max_bytes:  # oldest blocks first, a few rows at a time
            chunk = db.execute(
                "SELECT id, topic, payload FROM outbox WHERE id>? ORDER BY id LIMIT 16", (last_id,)
            ).fetchall()
            if not chunk:
                break
            for rid, topic, payload in chunk:
                last_id = rid
                if predicted <= self.max_bytes:
                    break
                if rid in self._acked:  # delivered already (forgotten from _acked after COMMIT)
                    db.execute("DELETE FROM outbox WHERE id=?", (rid,))
                    predicted -= len(payload) + ROW_OVERHEAD_BYTES
                    continue
                if not _is_block(topic):
                    continue  # markers and gap reports are never dropped
                if rid in self._awaiting:  # sent: most likely stored, kept until confirmed
                    if dropped and dropped[-1] is not None:
                        dropped.append(None)
                    continue
                db.execute("DELETE FROM outbox WHERE id=?", (rid,))
                predicted -= len(payload) + ROW_OVERHEAD_BYTES
                dropped.append(bytes(payload))
        if predicted > self.max_bytes:
            while predicted > self.max_bytes and rows:
                i = next((k for k, r in enumerate(rows) if _is_block(r[0])), None)
                if i is None:
                    break
                predicted -= len(rows[i][1]) + ROW_OVERHEAD_BYTES
                dropped.append(rows.pop(i)[1])
        report = self._dropped(dropped, "spool_max_mb reached") if dropped else None
        if report is not None:
            rows.append(report)
        deleted = bool(self._acked)
        if deleted:  # confirmed rows left for this transaction (see _defer_delete)
            db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in self._acked])
        first = self._next_id
        self._next_id += len(rows)
        db.executemany(
            "INSERT INTO outbox(id, topic, payload, qos, retain) VALUES(?, ?, ?, ?, ?)",
            [(first + k, t, p, q, int(r)) for k, (t, p, q, r) in enumerate(rows)],
        )
        db.execute("COMMIT")
        if deleted:
            self._acked = set()
        self._mem.clear()
        self._mem_bytes = 0
        self._checkpoint()
        self._measure()
        if dropped:
            if not self._at_bound:
                self._at_bound = True
                self.state, self.error = "full", f"spool_max_mb ({self.max_bytes} bytes) reached"
                self._since_s = time.monotonic()
                self._log(f"spool_full: {self.path}: {self.error}; dropping the oldest blocks")
                self.changes += 1
        elif not self._at_bound or self._used_bytes < BOUND_CLEAR * self.max_bytes:
            self._at_bound = False
            self._recovered()

    def _to_memory(self, items: list[Item]) -> None:
        for topic, payload, qos, retain in items:
            self._mem_id -= 1
            self._mem.append(Message(self._mem_id, topic, payload, qos, retain))
            self._mem_bytes += len(payload)
        dropped: list[bytes] = []
        while self._mem_bytes > self.memory_max_bytes:
            victim = next(
                (m for m in self._mem if _is_block(m.topic) and m.id not in self._awaiting), None
            )
            if victim is None:
                break
            self._mem.remove(victim)
            self._mem_bytes -= len(victim.payload)
            dropped.append(victim.payload)
        report = self._dropped(dropped, "memory queue full") if dropped else None
        if report is not None:
            self._mem_id -= 1
            self._mem.append(Message(self._mem_id, *report))
            self._mem_bytes += len(report[1])

    # reading and acknowledging -----------------------------------------------------------------

    def peek(self, limit: int) -> list[Message]:
        """The oldest messages, in order: those on disk, then those waiting in memory."""
        with self._lock:
            out: list[Message] = []
            if self._db is not None:
                try:
                    rows = self._db.execute(
                        "SELECT id, topic, payload, qos, retain FROM outbox ORDER BY id LIMIT ?",
                        (limit + len(self._acked) + len(self._awaiting),),
                    ).fetchall()
                    out = [
                        Message(i, t, bytes(p), q, bool(r))
                        for i, t, p, q, r in rows
                        if i not in self._acked and i not in self._awaiting
                    ][:limit]
                except sqlite3.Error as err:
                    self._fail("error", err)
            mem = [m for m in self._mem if m.id not in self._awaiting]
            out += mem[: max(0, limit - len(out))]
            return out

    def peek_to_send(self, limit: int, held: Callable[[Message], bool | None]) -> list[Message]:
        """``peek``, and in the same breath (no drop at the bound can come between) mark those
        for which ``held`` says True (timed) or False (untimed) as awaiting confirmation."""
        with self._lock:
            out = self.peek(limit)
            now = time.monotonic()
            for m in out:
                timed = held(m)
                if timed is not None:
                    self._awaiting[m.id] = (now, timed)
            return out

    def release_unconfirmed(self, older_than_s: float | None = None) -> int:
        """Make unconfirmed messages visible to ``peek`` again: all of them (None, after a
        reconnect), or the timed ones sent at least ``older_than_s`` ago. How many."""
        now = time.monotonic()
        with self._lock:
            due = [
                i
                for i, (sent, timed) in self._awaiting.items()
                if older_than_s is None or (timed and now - sent >= older_than_s)
            ]
            for i in due:
                del self._awaiting[i]
            return len(due)

    def ack_many(self, messages: list[Message]) -> None:
        """Forget messages the broker acknowledged (a failed delete is retried, never resent)."""
        with self._lock:
            for m in messages:
                self._awaiting.pop(m.id, None)
            gone = {m.id for m in messages if m.id < 0}
            if gone:
                kept = [m for m in self._mem if m.id not in gone]
                self._mem_bytes -= sum(len(m.payload) for m in self._mem if m.id in gone)
                self._mem = deque(kept)
            disk = self._acked | {m.id for m in messages if m.id > 0}
            if not disk or self._db is None:
                self._acked = disk
                return
            if self._defer_delete(disk):
                return
            self._delete_acked(disk)

    def _defer_delete(self, disk: set[int]) -> bool:
        """Leave confirmed rows for the next write's transaction (one SQLite transaction per
        flush instead of two) while the spool is far from its bound and they are few and
        recent. Nothing is lost by waiting: a confirmed row still on disk is only hidden from
        ``peek``; after a crash it is sent again and the daemon drops it as a duplicate."""
        if not self._acked:
            self._acked_since_s = time.monotonic()
        self._acked = disk
        return (
            len(disk) < ACK_DEFER_ROWS
            and not self._at_bound
            and self._used_bytes < BOUND_CLEAR * self.max_bytes
            and time.monotonic() - self._acked_since_s < ACK_DEFER_S
        )

    def tidy(self) -> None:
        """Delete confirmed rows left for a write that did not come within ``ACK_DEFER_S``
        (nothing sampled): called from the agent's housekeeping."""
        with self._lock:
            if (
                self._acked
                and self._db is not None
                and time.monotonic() - self._acked_since_s >= ACK_DEFER_S
            ):
                self._delete_acked(self._acked)

    def _delete_acked(self, disk: set[int]) -> None:
        """Delete confirmed rows now (a failed delete is retried, never resent)."""
        assert self._db is not None
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in disk])
            self._db.execute("COMMIT")
            self._acked = set()
            self._checkpoint()
            self._measure()
            if self._at_bound and self._used_bytes < BOUND_CLEAR * self.max_bytes:
                self._at_bound = False
                self._recovered()
        except (sqlite3.Error, OSError) as err:
            self._rollback()
            self._acked = disk
            self._fail("full" if _full(err) else "error", err)

    def __len__(self) -> int:
        with self._lock:
            n = len(self._mem) - len(self._acked)
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    n += int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            return n

    def put_meta(self, key: str, value: int) -> None:
        """Keep a small integer across restarts (best effort: a failing disk is already
        reported, and the value is still served from memory)."""
        with self._lock:
            self._meta[key] = value
            if self._db is None:
                return
            try:
                self._db.execute(
                    "INSERT INTO meta VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET "
                    "value=excluded.value",
                    (key, value),
                )
            except sqlite3.Error as err:
                self._rollback()
                self._fail("full" if _full(err) else "error", err)

    def meta(self, prefix: str) -> dict[str, int]:
        """The kept integers whose key starts with ``prefix``."""
        with self._lock:
            out = {k: v for k, v in self._meta.items() if k.startswith(prefix)}
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    rows = self._db.execute(
                        "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?",
                        (len(prefix), prefix),
                    ).fetchall()
                    out |= {str(k): int(v) for k, v in rows}
            return out

    def next_counter(self, key: str) -> int:
        """A persistent counter (marker sequence numbers that survive restarts); kept in memory
        (and written back later) while the disk fails."""
        with self._lock:
            if self._db is not None:
                try:
                    self._db.execute(
                        "INSERT INTO meta VALUES(?, 1) ON CONFLICT(key) DO UPDATE SET "
                        "value=MAX(value+1, ?)",
                        (key, self._counters.get(key, 0) + 1),
                    )
                    row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,))
                    self._counters[key] = int(row.fetchone()[0])
                    return self._counters[key]
                except sqlite3.Error as err:
                    self._rollback()
                    self._fail("full" if _full(err) else "error", err)
            base = self._counters.get(key) or time.time_ns() // 1000
            self._counters[key] = base + 1
            return self._counters[key]

    def snapshot(self) -> dict[str, Any]:
        """The spool's state for the agent's status topic."""
        with self._lock:
            return {
                "state": self.state,
                "error": self.error,
                "dropped_blocks": self.dropped_blocks,
                "dropped_samples": self.dropped_samples,
                "write_failures": self.write_failures,
                "memory_queued": len(self._mem),
                "memory_bytes": self._mem_bytes,
                "disk_bytes": self._used_bytes,
                "unconfirmed": len(self._awaiting),
                "max_bytes": self.max_bytes,
            }

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                try:
                    if self._mem:
                        self._write([])
                    if self._acked:
                        self._delete_acked(self._acked)
                    self._checkpoint(force=True)
                except (sqlite3.Error, OSError):
                    self._rollback()
                self._db.close()
                self._db = None
