"""Agents' messages held until their clock offset is known: durable, and bounded.

A block or marker stamped on an agent's clock cannot be placed before the daemon knows that clock's
offset (applying it earlier would misplace it by the whole offset). The daemon acknowledges a QoS 1
message to the broker only once it is durable, so a held message is written here (committed)
before it is acknowledged, and deleted only after it was applied and the main store committed it:
a daemon killed at any moment loses nothing an agent has already deleted from its spool.

Why a table and not a delayed acknowledgement: the broker sends at most ``max_inflight_messages``
unacknowledged QoS 1 messages per client (mosquitto's default is 20), so holding acks for an agent
whose clock is still unknown would stall every other source's markers and blocks behind it.

Its own SQLite file beside the store (``<store>-held.db``): small, short-lived rows, never part of
a result. Bounded per agent and in total (count and bytes); what the bounds refuse is counted by
the caller. Only counts live in memory; payloads stay on disk until released.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from pathlib import Path

from powerd.errors import PowerdError

SCHEMA = """
CREATE TABLE IF NOT EXISTS held(
    id INTEGER PRIMARY KEY, agent TEXT NOT NULL, kind TEXT NOT NULL,
    received_ns INTEGER NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS held_by_agent ON held(agent, id);
"""
PER_AGENT_MAX = 4096
PER_AGENT_MAX_BYTES = 64 << 20
TOTAL_MAX = 65536
TOTAL_MAX_BYTES = 512 << 20
# A held message not placeable this long after it arrived is reported (``Daemon._check_held``;
# ``[daemon] held_place_bound_s``).
HELD_PLACE_BOUND_S = 60.0

HeldRow = tuple[int, str, int, bytes]  # id, kind ("block"|"marker"), received_ns, payload


class HeldStore:
    """Held messages per agent, in arrival order; thread-safe (one connection behind a lock)."""

    def __init__(
        self,
        path: Path,
        per_agent_max: int = PER_AGENT_MAX,
        per_agent_max_bytes: int = PER_AGENT_MAX_BYTES,
        total_max: int = TOTAL_MAX,
        total_max_bytes: int = TOTAL_MAX_BYTES,
    ) -> None:
        self.path = path
        self.per_agent_max = per_agent_max
        self.per_agent_max_bytes = per_agent_max_bytes
        self.total_max = total_max
        self.total_max_bytes = total_max_bytes
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            rows = self._db.execute(
                "SELECT agent, COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM held GROUP BY agent"
            ).fetchall()
        except (sqlite3.DatabaseError, OSError) as err:
            raise PowerdError(f"cannot open held-message store {path}: {err}") from None
        self.count: Counter[str] = Counter({a: int(n) for a, n, _ in rows})
        self.nbytes: Counter[str] = Counter({a: int(b) for a, _, b in rows})

    def agents(self) -> list[str]:
        """Agents with held messages (e.g. left by a daemon that was killed)."""
        with self._lock:
            return [a for a, n in self.count.items() if n > 0]

    def held(self, agent: str) -> int:
        with self._lock:
            return self.count[agent]

    def total(self) -> int:
        with self._lock:
            return sum(self.count.values())

    def refusal(self, agent: str, size: int, cap: int | None = None) -> str | None:
        """Why one more message of ``size`` bytes for ``agent`` would pass a bound, or None.

        ``cap`` lowers the per-agent count bound (e.g. for agents never seen with a status)."""
        with self._lock:
            n_max = self.per_agent_max if cap is None else min(cap, self.per_agent_max)
            if self.count[agent] >= n_max:
                return f"{self.count[agent]} messages already held for this agent (max {n_max})"
            if self.nbytes[agent] + size > self.per_agent_max_bytes:
                return f"held bytes for this agent would exceed {self.per_agent_max_bytes}"
            if sum(self.count.values()) >= self.total_max:
                return f"{self.total_max} messages held in total"
            if sum(self.nbytes.values()) + size > self.total_max_bytes:
                return f"held bytes in total would exceed {self.total_max_bytes}"
            return None

    def put(self, agent: str, kind: str, payload: bytes, received_ns: int) -> None:
        """Store one message, committed on return (the caller may then acknowledge it)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO held(agent, kind, received_ns, payload) VALUES(?, ?, ?, ?)",
                (agent, kind, received_ns, payload),
            )
            self.count[agent] += 1
            self.nbytes[agent] += len(payload)

    def rows(self, agent: str, limit: int = 256) -> list[HeldRow]:
        """The agent's oldest ``limit`` held messages, in arrival order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, received_ns, payload FROM held WHERE agent=? ORDER BY id LIMIT ?",
                (agent, limit),
            ).fetchall()
        return [(int(i), str(k), int(r), bytes(p)) for i, k, r, p in rows]

    def older(self, agent: str, before_ns: int, limit: int = 1024) -> list[HeldRow]:
        """The agent's oldest ``limit`` held messages received before ``before_ns``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, received_ns, payload FROM held WHERE agent=? AND received_ns<? "
                "ORDER BY id LIMIT ?",
                (agent, before_ns, limit),
            ).fetchall()
        return [(int(i), str(k), int(r), bytes(p)) for i, k, r, p in rows]

    def delete(self, agent: str, rows: list[HeldRow]) -> None:
        """Forget released messages (after the main store committed what they became)."""
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM held WHERE id=?", [(r[0],) for r in rows])
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self.count[agent] = max(0, self.count[agent] - len(rows))
            self.nbytes[agent] = max(0, self.nbytes[agent] - sum(len(r[3]) for r in rows))
            if self.count[agent] == 0:
                del self.count[agent]
                self.nbytes.pop(agent, None)

    def close(self) -> None:
        with self._lock:
            self._db.close()
