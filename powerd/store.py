"""The embedded store: SQLite in WAL mode holding channels, sample blocks, markers and results.

Crash safety comes from SQLite itself: WAL with ``synchronous=NORMAL`` keeps every committed
transaction across a killed process (only a power loss may drop the last few commits). Samples are
buffered per channel and written as one row per channel at each ``flush()``, so a row holds many
samples as raw little-endian int64/float64 arrays. Retention is bounded by age and by total size.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from powerd.agent.wire import parse_marker
from powerd.block import F64, I64, Block, concat
from powerd.channel import Accuracy, Channel
from powerd.errors import PowerdError
from powerd.phases import StampedMarker, Timing

SCHEMA_VERSION = 3
ENCODING = "le-i8-f8"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS channels(id TEXT PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks(
    id INTEGER PRIMARY KEY, channel TEXT NOT NULL, t_first_ns INTEGER NOT NULL,
    t_last_ns INTEGER NOT NULL, n INTEGER NOT NULL, encoding TEXT NOT NULL,
    t BLOB NOT NULL, v BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_by_first ON blocks(channel, t_first_ns);
CREATE INDEX IF NOT EXISTS blocks_by_last ON blocks(channel, t_last_ns);
CREATE TABLE IF NOT EXISTS markers(
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, seq INTEGER, run TEXT NOT NULL,
    t_ns INTEGER NOT NULL, received_ns INTEGER NOT NULL, marker TEXT NOT NULL,
    timing TEXT NOT NULL, UNIQUE(source, run, seq));
CREATE INDEX IF NOT EXISTS markers_by_run ON markers(run);
CREATE TABLE IF NOT EXISTS results(run TEXT PRIMARY KEY, computed_ns INTEGER NOT NULL,
    json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clock_steps(mono_ns INTEGER NOT NULL, utc_ns INTEGER NOT NULL,
    step_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS gaps(channel TEXT NOT NULL, t_begin_ns INTEGER NOT NULL,
    t_end_ns INTEGER, reason TEXT NOT NULL, PRIMARY KEY(channel, t_begin_ns, reason));
CREATE TABLE IF NOT EXISTS seen_blocks(id INTEGER PRIMARY KEY, agent TEXT NOT NULL,
    boot_ns INTEGER NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS accuracy_history(channel TEXT NOT NULL, t_ns INTEGER NOT NULL,
    json TEXT NOT NULL, PRIMARY KEY(channel, t_ns));
CREATE TABLE IF NOT EXISTS manifests(run TEXT NOT NULL, revision INTEGER NOT NULL,
    sealed_ns INTEGER NOT NULL, json TEXT NOT NULL, PRIMARY KEY(run, revision));
CREATE TABLE IF NOT EXISTS phase_counts(run TEXT NOT NULL, phase TEXT NOT NULL,
    trial INTEGER NOT NULL, json TEXT NOT NULL, PRIMARY KEY(run, phase, trial));
CREATE TABLE IF NOT EXISTS run_flags(run TEXT NOT NULL, flag TEXT NOT NULL,
    detail TEXT NOT NULL, PRIMARY KEY(run, flag));
"""
SEEN_BLOCKS_KEPT = 1 << 16


@dataclass(frozen=True)
class Retention:
    """How much sample data to keep: by age, and by total stored sample bytes."""

    max_age_s: float = 30 * 86400.0
    max_bytes: int = 4 << 30


CHANNEL_UPSERT = (
    "INSERT INTO channels VALUES(?, ?) ON CONFLICT(id) DO UPDATE SET json=excluded.json"
)
MARKER_INSERT = (
    "INSERT OR IGNORE INTO markers(source, seq, run, t_ns, received_ns, marker, timing) "
    "VALUES(?, ?, ?, ?, ?, ?, ?)"
)


class Store:
    """One SQLite file; safe to share between threads (one connection behind a lock)."""

    def __init__(
        self, path: Path, retention: Retention | None = None, readonly: bool = False
    ) -> None:
        """``readonly``: a reader beside the process that writes (the daemon's result worker,
        ``powerd.result_worker``): WAL lets it read while the writer commits; it never creates,
        migrates or writes, and refuses a store of another schema."""
        self.path = path
        self.retention = retention or Retention()
        try:
            if readonly:
                uri = f"{path.resolve().as_uri()}?mode=ro"
                self._db = sqlite3.connect(
                    uri, uri=True, check_same_thread=False, isolation_level=None
                )
                self._db.execute("PRAGMA busy_timeout=5000")
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("PRAGMA busy_timeout=5000")
                self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as err:
            raise PowerdError(f"cannot open store {path}: {err}") from None
        self._lock = threading.RLock()
        # Guards only the buffers of samples and seen blocks below, never held across a database
        # call: the daemon's event loop appends while another thread commits the previous
        # batch (it used to wait for that commit on ``_lock``; issue 16, fleet profile).
        self._buf_lock = threading.Lock()
        self._pending: dict[str, tuple[list[I64], list[F64]]] = {}
        self._pending_seen: list[tuple[str, int, int]] = []
        self._pending_markers: list[tuple[Any, ...]] = []  # put_marker(defer=True)
        self._pending_channels: dict[str, Channel] = {}  # put_channel(defer=True)
        self._flushes = 0
        # channels() parsed once per change, not per result (a fleet daemon computes results
        # for runs of thousands of channels, several a second; issue 16)
        self._channels_cache: dict[str, Channel] | None = None
        self._devices_cache: dict[str, tuple[str, ...]] | None = None
        # which channels changed, in order (``channel_changes``: a reader in another process,
        # the result worker, refreshes those alone instead of re-parsing thousands)
        self._channel_serial = 0
        self._channel_changed: OrderedDict[str, int] = OrderedDict()
        # this thread's reads of samples while one result is computed (``samples_memo``)
        self._memo = threading.local()
        # applied to every channel put (the daemon's calibration certificates, powerd.calibration)
        self.annotate_channel: Callable[[Channel], Channel] | None = None
        # told each flush's committed samples, per channel (first, last) time, in commit order
        # (under the store's lock: they must be quick and never flush; powerd.latedata)
        self.commit_listeners: list[Callable[[dict[str, tuple[int, int]]], None]] = []
        version = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if readonly:
            if version is None or int(version[0]) != SCHEMA_VERSION:
                found = "none" if version is None else version[0]
                raise PowerdError(
                    f"store {path} has schema {found}, this powerd reads {SCHEMA_VERSION}"
                )
        elif version is None:
            self._db.execute("INSERT INTO meta VALUES('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(version[0]) == 1:
            self._migrate_1_to_2()
            self._migrate_2_to_3()
        elif int(version[0]) == 2:
            self._migrate_2_to_3()
        elif int(version[0]) != SCHEMA_VERSION:
            raise PowerdError(
                f"store {path} has schema {version[0]}, this powerd reads {SCHEMA_VERSION}"
            )

    def _migrate_1_to_2(self) -> None:
        """Schema 1 numbered markers per source for ever (UNIQUE(source, seq)); schema 2 counts
        them per (source, run) and lets seq be absent. The table is rebuilt, ids kept in order."""
        with self._tx() as db:
            db.execute("ALTER TABLE markers RENAME TO markers_v1")
            db.execute("DROP INDEX IF EXISTS markers_by_run")
            for stmt in SCHEMA.split(";"):
                if "markers" in stmt and stmt.strip():
                    db.execute(stmt)
            db.execute("INSERT INTO markers SELECT * FROM markers_v1")
            db.execute("DROP TABLE markers_v1")
            db.execute("UPDATE meta SET value='2' WHERE key='schema'")

    def _migrate_2_to_3(self) -> None:
        """Schema 3 adds ``accuracy_history`` (a meter's range moves; a store written before it
        has none, so its channels' accuracy is the one declared at open, as computed then) and
        ``manifests`` (the audit trail, ``powerd.audit``); ``CREATE IF NOT EXISTS`` above made
        both, so only the version moves. An older powerd refuses the new schema."""
        with self._tx() as db:
            db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        with self._lock:
            self.flush()
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # channels ---------------------------------------------------------------------------------

    def put_channel(self, ch: Channel, defer: bool = False) -> None:
        """Store (or replace) a channel's metadata. ``defer``: written by the next ``flush()``
        (every reader in this process sees it at once; the result worker is told of it only
        once written, ``channel_changes``), and serialised there, off the caller's thread: for
        updates as frequent as blocks, e.g. an agent channel's ``stamp_uncertainty_s``
        following its clock offset (issue 16: 0.2 ms each, on the event loop, at once)."""
        if self.annotate_channel is not None:
            ch = self.annotate_channel(ch)
        with self._lock:
            cache, self._channels_cache = self._channels_cache, None
            if defer:
                with self._buf_lock:
                    self._pending_channels[ch.id] = ch
                stored = ch  # immutable: as channels() would read it back
            else:
                text = json.dumps(ch.to_json(), sort_keys=True)
                with self._buf_lock:
                    self._pending_channels.pop(ch.id, None)  # this one is newer
                with self._tx() as db:
                    db.execute(CHANNEL_UPSERT, (ch.id, text))
                stored = Channel.from_json(json.loads(text))  # as channels() would read it back
            self._channel_serial += 1
            self._channel_changed[ch.id] = self._channel_serial
            self._channel_changed.move_to_end(ch.id)
            if cache is not None:
                old = cache.get(ch.id)
                cache[ch.id] = stored
                self._channels_cache = cache
                if old is None or old.device_id != ch.device_id:
                    self._devices_cache = None
            else:
                self._devices_cache = None

    def _write_deferred_channels(self) -> None:
        """Commit the channels ``put_channel(defer=True)`` buffered (under ``_lock``); if that
        fails they stay buffered for a later flush, unless replaced since."""
        with self._buf_lock:
            deferred, self._pending_channels = self._pending_channels, {}
        if not deferred:
            return
        rows = [(cid, json.dumps(c.to_json(), sort_keys=True)) for cid, c in deferred.items()]
        try:
            with self._tx() as db:
                db.executemany(CHANNEL_UPSERT, rows)
        except BaseException:
            with self._buf_lock:
                self._pending_channels = {**deferred, **self._pending_channels}
            raise

    def channels(self) -> dict[str, Channel]:
        """Every channel ever put, by id (a new dict each call; the channels are immutable)."""
        with self._lock:
            if self._channels_cache is None:
                rows = self._db.execute("SELECT id, json FROM channels ORDER BY id").fetchall()
                cache = {cid: Channel.from_json(json.loads(text)) for cid, text in rows}
                with self._buf_lock:  # put with defer, not committed yet: newer than the rows
                    cache.update(self._pending_channels)
                self._channels_cache = cache
            return dict(self._channels_cache)

    def channel_changes(self, since: int) -> tuple[int, list[str]]:
        """(serial now, ids of the channels put since serial ``since``, newest first): what a
        reader of this store in another process must re-read (``reload_channels``). Channels
        put with ``defer`` are committed first, so that reader finds what it is told of."""
        with self._lock:
            self._write_deferred_channels()
            changed = []
            for cid, serial in reversed(self._channel_changed.items()):
                if serial <= since:
                    break
                changed.append(cid)
            return self._channel_serial, changed

    def reload_channels(self, ids: Iterable[str]) -> None:
        """Re-read these channels' rows into the cache ``channels()`` keeps: another process
        (the daemon) put them since this one last read them."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return
        with self._lock:
            cache = self._channels_cache
            if cache is None:
                return  # nothing cached yet: the next channels() reads every row
            for cid in wanted:
                row = self._db.execute("SELECT json FROM channels WHERE id=?", (cid,)).fetchone()
                old = cache.get(cid)
                if row is None:
                    cache.pop(cid, None)
                    self._devices_cache = None
                    continue
                cache[cid] = new = Channel.from_json(json.loads(row[0]))  # as put_channel does
                if old is None or old.device_id != new.device_id:
                    self._devices_cache = None

    def channels_by_device(self) -> dict[str, tuple[str, ...]]:
        """Channel ids by device id (``Channel.device_id``), kept with ``channels()``'s cache:
        a result asks which channels its devices have, among a fleet's thousands. Kept, it is
        returned without the lock (it is replaced, never changed), so a closing phase on the
        event loop does not wait for a commit under way on another thread (issue 16)."""
        devices = self._devices_cache
        if devices is not None and self._channels_cache is not None:
            return devices
        with self._lock:
            if self._devices_cache is None or self._channels_cache is None:
                by: dict[str, list[str]] = {}
                for cid, ch in self.channels().items():
                    by.setdefault(ch.device_id, []).append(cid)
                self._devices_cache = {d: tuple(ids) for d, ids in by.items()}
            return self._devices_cache

    def put_accuracy(self, channel: str, t_ns: int, accuracy: Accuracy) -> None:
        """Record that ``channel``'s accuracy is ``accuracy`` from ``t_ns`` on (a meter's range
        moved); a second record at the same instant replaces the first."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO accuracy_history VALUES(?, ?, ?) "
                "ON CONFLICT(channel, t_ns) DO UPDATE SET json=excluded.json",
                (channel, t_ns, json.dumps(asdict(accuracy), sort_keys=True)),
            )

    def accuracy_history(
        self, channel: str, t_begin_ns: int, t_end_ns: int
    ) -> list[tuple[int, Accuracy]]:
        """The accuracy records that apply within [t_begin_ns, t_end_ns]: the last one at or
        before ``t_begin_ns`` (in effect at the start), then those inside, oldest first. Empty
        when none was recorded before ``t_end_ns`` (the channel's declared accuracy applies)."""
        with self._lock:
            before = self._db.execute(
                "SELECT t_ns, json FROM accuracy_history WHERE channel=? AND t_ns<=? "
                "ORDER BY t_ns DESC LIMIT 1",
                (channel, t_begin_ns),
            ).fetchall()
            inside = self._db.execute(
                "SELECT t_ns, json FROM accuracy_history WHERE channel=? AND t_ns>? AND t_ns<=? "
                "ORDER BY t_ns",
                (channel, t_begin_ns, t_end_ns),
            ).fetchall()
        return [(t, Accuracy(**json.loads(text))) for t, text in [*before, *inside]]

    # samples ----------------------------------------------------------------------------------

    def append(self, block: Block) -> None:
        """Buffer a block; it is written at the next flush()."""
        if len(block) == 0:
            return
        with self._buf_lock:
            ts, vs = self._pending.setdefault(block.channel, ([], []))
            ts.append(block.t_ns)
            vs.append(block.value)

    def append_many(self, blocks: Iterable[Block], seen: Iterable[tuple[str, int, int]]) -> None:
        """``append`` of several blocks and ``note_block`` of their keys under one buffer lock
        (an agent's message carries one block per channel; issue 16)."""
        with self._buf_lock:
            for block in blocks:
                if len(block):
                    ts, vs = self._pending.setdefault(block.channel, ([], []))
                    ts.append(block.t_ns)
                    vs.append(block.value)
            self._pending_seen.extend(seen)

    def note_block(self, agent: str, boot_ns: int, seq: int) -> None:
        """Remember an agent's block (boot, seq) as applied, in the same transaction as its
        samples: a restarted daemon then still recognises a resent block as a repeat."""
        with self._buf_lock:
            self._pending_seen.append((agent, boot_ns, seq))

    def seen_blocks(self, limit: int = SEEN_BLOCKS_KEPT) -> list[tuple[str, int, int]]:
        """The latest ``limit`` applied agent blocks, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT agent, boot_ns, seq FROM seen_blocks ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [(str(a), int(b), int(q)) for a, b, q in reversed(rows)]

    def flush(self) -> int:
        """Write buffered samples, one row per channel, in one transaction; returns the count.
        Everything buffered before the call is committed when it returns (flushes are
        serialised on ``_lock``, which appends do not take). If the write fails, what it took
        is put back in the buffer (ahead of what came since) for the next flush, and the error
        raised: nothing the daemon applied is dropped from the buffer (issue 16: the MQTT link
        handles the next messages while a flush is under way, so it cannot tell which of them
        a failed flush held)."""
        with self._lock:
            with self._buf_lock:
                pending, self._pending = self._pending, {}
                seen, self._pending_seen = self._pending_seen, []
                markers = bool(self._pending_markers)
            try:
                return self._write(pending, seen, markers)
            except BaseException:
                with self._buf_lock:
                    for channel, (ts, vs) in self._pending.items():
                        old = pending.setdefault(channel, ([], []))
                        old[0].extend(ts)
                        old[1].extend(vs)
                    self._pending = pending
                    self._pending_seen[:0] = seen
                raise

    def _write(
        self,
        pending: dict[str, tuple[list[I64], list[F64]]],
        seen: list[tuple[str, int, int]],
        markers: bool,
    ) -> int:
        """``flush``'s transaction (under ``_lock``)."""
        self._write_deferred_channels()
        if not pending and not markers:
            return 0
        rows = []
        for channel, (ts, vs) in pending.items():
            t, v = concat(ts, vs)
            if t.size:
                rows.append(
                    (
                        channel,
                        int(t[0]),
                        int(t[-1]),
                        int(t.size),
                        ENCODING,
                        t.astype("<i8").tobytes(),
                        v.astype("<f8").tobytes(),
                    )
                )
        with self._deferred_markers() as deferred, self._tx() as db:
            db.executemany(MARKER_INSERT, deferred)
            db.executemany(
                "INSERT INTO blocks(channel, t_first_ns, t_last_ns, n, encoding, t, v) "
                "VALUES(?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            if seen:
                db.executemany("INSERT INTO seen_blocks(agent, boot_ns, seq) VALUES(?, ?, ?)", seen)
                self._flushes += 1
                if self._flushes % 256 == 0:
                    db.execute(
                        "DELETE FROM seen_blocks WHERE id <= (SELECT MAX(id) FROM seen_blocks) - ?",
                        (SEEN_BLOCKS_KEPT,),
                    )
        self._committed(rows)
        return sum(r[3] for r in rows)

    def _committed(self, rows: list[tuple[Any, ...]]) -> None:
        """Tell ``commit_listeners`` what one flush committed (its rows: channel, first, last)."""
        if rows and self.commit_listeners:
            spans = {str(r[0]): (int(r[1]), int(r[2])) for r in rows}
            for listener in self.commit_listeners:
                listener(spans)

    @staticmethod
    def _decode(t: bytes, v: bytes) -> tuple[I64, F64]:
        return (
            np.frombuffer(t, "<i8").astype(np.int64),
            np.frombuffer(v, "<f8").astype(np.float64),
        )

    @contextmanager
    def samples_memo(self) -> Iterator[None]:
        """Within it, this thread's ``samples`` reads are kept and a repeated read returns the
        same (read-only) arrays: a result reads each channel's window three times (its figure,
        the peak of the summed primaries, the manifest's hash), 3 SQLite queries and a decode
        each; issue 16's fleet daemon computes several results a second. The figures and the
        manifest's hashes then rest on the very same samples."""
        self._memo.cache = {}
        try:
            yield
        finally:
            self._memo.cache = None

    def samples(self, channel: str, t_begin_ns: int, t_end_ns: int) -> tuple[I64, F64]:
        """Samples in [t_begin, t_end] plus the nearest one on each side (for the edges)."""
        memo: dict[tuple[str, int, int], tuple[I64, F64]] | None = getattr(
            self._memo, "cache", None
        )
        key = (channel, t_begin_ns, t_end_ns)
        if memo is not None and key in memo:
            return memo[key]
        t, v = self._read_samples(channel, t_begin_ns, t_end_ns)
        if memo is not None:
            t.flags.writeable = v.flags.writeable = False
            memo[key] = (t, v)
        return t, v

    def _read_samples(self, channel: str, t_begin_ns: int, t_end_ns: int) -> tuple[I64, F64]:
        q = "SELECT t, v FROM blocks WHERE channel=? AND "
        with self._lock:
            rows = self._db.execute(
                q + "t_last_ns < ? ORDER BY t_last_ns DESC LIMIT 1", (channel, t_begin_ns)
            ).fetchall()
            rows += self._db.execute(
                q + "t_last_ns >= ? AND t_first_ns <= ? ORDER BY t_first_ns",
                (channel, t_begin_ns, t_end_ns),
            ).fetchall()
            rows += self._db.execute(
                q + "t_first_ns > ? ORDER BY t_first_ns LIMIT 1", (channel, t_end_ns)
            ).fetchall()
        parts = [self._decode(t, v) for t, v in rows]
        t, v = concat([p[0] for p in parts], [p[1] for p in parts])
        lo = max(0, int(np.searchsorted(t, t_begin_ns, "right")) - 1)
        hi = min(t.size, int(np.searchsorted(t, t_end_ns, "left")) + 1)
        return t[lo:hi], v[lo:hi]

    def channels_with_data(
        self, t_begin_ns: int, t_end_ns: int, among: Iterable[str] | None = None
    ) -> list[str]:
        """Channels with a stored block overlapping [begin, end]. ``among``: only these are
        asked, each by the (channel, t_last_ns) index; without it the whole table is scanned,
        which a fleet's store (thousands of channels, a row per channel per second) makes
        too slow to do for every result (issue 16)."""
        with self._lock:
            if among is not None:
                q = (
                    "SELECT 1 FROM blocks WHERE channel=? AND t_last_ns >= ? AND t_first_ns <= ?"
                    " LIMIT 1"
                )
                return sorted(
                    c
                    for c in set(among)
                    if self._db.execute(q, (c, t_begin_ns, t_end_ns)).fetchone() is not None
                )
            rows = self._db.execute(
                "SELECT DISTINCT channel FROM blocks WHERE t_last_ns >= ? AND t_first_ns <= ?",
                (t_begin_ns, t_end_ns),
            ).fetchall()
        return sorted(r[0] for r in rows)

    def sample_count(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(SUM(n), 0) FROM blocks").fetchone()
        return int(row[0])

    # markers ----------------------------------------------------------------------------------

    def put_marker(self, sm: StampedMarker, defer: bool = False) -> bool:
        """Store a marker; False if (source, run, seq) is already stored (a repeat).

        ``defer``: buffered and committed by the next ``flush()`` with the samples (True is
        returned; a repeat is then ignored at the flush): for a caller that acknowledges the
        marker only after that flush, as the MQTT link does (one transaction per marker was
        a tenth of a fleet daemon's event loop; issue 16). A marker stored at once first
        writes those deferred before it, so stored markers stay in arrival order."""
        row = (
            sm.source,
            sm.marker.seq,
            sm.marker.run,
            sm.t_ns,
            sm.received_ns,
            json.dumps(sm.marker.to_json(), sort_keys=True),
            json.dumps(sm.timing.to_json()),
        )
        if defer:
            with self._buf_lock:
                self._pending_markers.append(row)
            return True
        with self._deferred_markers() as deferred, self._tx() as db:
            db.executemany(MARKER_INSERT, deferred)
            cur = db.execute(MARKER_INSERT, row)
            return cur.rowcount == 1

    @contextmanager
    def _deferred_markers(self) -> Iterator[list[tuple[Any, ...]]]:
        """The markers ``put_marker(defer=True)`` buffered, taken for one transaction; put back
        (ahead of any buffered since) if it fails, so a later flush still writes them: the
        daemon already applied them, and a resend would be taken for a repeat."""
        with self._buf_lock:
            rows, self._pending_markers = self._pending_markers, []
        try:
            yield rows
        except BaseException:
            with self._buf_lock:
                self._pending_markers[:0] = rows
            raise

    def markers(self, run: str | None = None) -> list[StampedMarker]:
        """Stored markers in arrival order, of one run or all."""
        sql = "SELECT source, t_ns, received_ns, marker, timing FROM markers"
        args: tuple[Any, ...] = ()
        if run is not None:
            sql += " WHERE run=?"
            args = (run,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [
            StampedMarker(src, parse_marker(json.loads(m)), t, Timing(**json.loads(tm)), rx)
            for src, t, rx, m, tm in rows
        ]

    def runs(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT run FROM markers ORDER BY run").fetchall()
        return [r[0] for r in rows]

    def results_overlapping(self, t_begin_ns: int, t_end_ns: int) -> list[tuple[str, int, int]]:
        """Runs with a stored result whose markers span overlaps [begin, end]: ``(run,
        first_t_ns, last_t_ns)`` (what a late gap report or late data may change)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT m.run, MIN(m.t_ns), MAX(m.t_ns) FROM markers m "
                "JOIN results r ON r.run = m.run GROUP BY m.run "
                "HAVING MIN(m.t_ns) <= ? AND MAX(m.t_ns) >= ?",
                (t_end_ns, t_begin_ns),
            ).fetchall()
        return [(str(r), int(a), int(b)) for r, a, b in rows]

    def run_index(
        self, limit: int | None = None, before: tuple[int, str] | None = None
    ) -> list[tuple[str, int, int, int, str | None]]:
        """Runs newest first by their first marker's time: ``(run, first_t_ns, last_t_ns,
        markers, stored result JSON or None)``; ``before`` = (first_t_ns, run) of the previous
        page's last row, ``limit`` the page size (None: all)."""
        sql = (
            "SELECT m.run, MIN(m.t_ns) AS t0, MAX(m.t_ns), COUNT(*), r.json FROM markers m "
            "LEFT JOIN results r ON r.run = m.run GROUP BY m.run"
        )
        args: list[Any] = []
        if before is not None:
            sql += " HAVING t0 < ? OR (t0 = ? AND m.run < ?)"
            args += [before[0], before[0], before[1]]
        sql += " ORDER BY t0 DESC, m.run DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    # results and clock steps ------------------------------------------------------------------

    def put_result(self, result: dict[str, Any], computed_ns: int) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO results VALUES(?, ?, ?) ON CONFLICT(run) DO UPDATE SET "
                "computed_ns=excluded.computed_ns, json=excluded.json",
                (result["run"], computed_ns, json.dumps(result)),
            )

    def result(self, run: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT json FROM results WHERE run=?", (run,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put_phase_counts(
        self, run: str, phase: str, trial: int, counts: list[dict[str, Any]]
    ) -> None:
        """The counts read from serving-engine counters for one phase (powerd.phasecount); kept
        apart from the result so that a recomputation (``powerd report``, a restart) keeps them."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO phase_counts VALUES(?, ?, ?, ?) ON CONFLICT(run, phase, trial) "
                "DO UPDATE SET json=excluded.json",
                (run, phase, trial, json.dumps(counts)),
            )

    def phase_counts(self, run: str) -> dict[tuple[str, int], list[dict[str, Any]]]:
        """``put_phase_counts``' entries of ``run`` by (phase, trial)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT phase, trial, json FROM phase_counts WHERE run=?", (run,)
            ).fetchall()
        return {(r[0], int(r[1])): list(json.loads(r[2])) for r in rows}

    def put_clock_step(self, mono_ns: int, utc_ns: int, step_ns: int) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO clock_steps VALUES(?, ?, ?)", (mono_ns, utc_ns, step_ns))

    def put_run_flag(self, run: str, flag: str, detail: str) -> None:
        """A flag on every phase of ``run``'s results, whatever its time (e.g. a marker of it the
        daemon could never place: ``held_unplaceable``); the latest detail is kept."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO run_flags VALUES(?, ?, ?) ON CONFLICT(run, flag) "
                "DO UPDATE SET detail=excluded.detail",
                (run, flag, detail),
            )

    def run_flags(self, run: str) -> dict[str, str]:
        """{flag: detail} recorded for ``run`` (``put_run_flag``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT flag, detail FROM run_flags WHERE run=? ORDER BY flag", (run,)
            ).fetchall()
        return {str(f): str(d) for f, d in rows}

    def clock_steps(self, t_begin_ns: int, t_end_ns: int) -> list[int]:
        """UTC times of recorded wall-clock steps within a window."""
        with self._lock:
            rows = self._db.execute(
                "SELECT utc_ns FROM clock_steps WHERE utc_ns BETWEEN ? AND ?",
                (t_begin_ns, t_end_ns),
            ).fetchall()
        return [r[0] for r in rows]

    # audit trail ------------------------------------------------------------------------------

    def channel_json(self, channel: str) -> str | None:
        """A channel's metadata exactly as stored (the text the audit hashes)."""
        with self._lock:
            row = self._db.execute("SELECT json FROM channels WHERE id=?", (channel,)).fetchone()
        return None if row is None else str(row[0])

    def marker_rows(self, run: str) -> list[tuple[Any, ...]]:
        """A run's marker rows as stored, in arrival order: (source, seq, run, t_ns,
        received_ns, marker, timing), the columns the audit hashes."""
        with self._lock:
            rows = self._db.execute(
                "SELECT source, seq, run, t_ns, received_ns, marker, timing FROM markers "
                "WHERE run=? ORDER BY id",
                (run,),
            ).fetchall()
        return [tuple(r) for r in rows]

    def result_json(self, run: str) -> str | None:
        """A run's stored result exactly as stored."""
        with self._lock:
            row = self._db.execute("SELECT json FROM results WHERE run=?", (run,)).fetchone()
        return None if row is None else str(row[0])

    def put_manifest(self, run: str, sealed_ns: int, manifest: dict[str, Any]) -> int:
        """Store a run's manifest as its next revision (1, 2, …); returns the revision."""
        with self._tx() as db:
            row = db.execute(
                "SELECT COALESCE(MAX(revision), 0) FROM manifests WHERE run=?", (run,)
            ).fetchone()
            revision = int(row[0]) + 1
            manifest = {**manifest, "revision": revision}
            db.execute(
                "INSERT INTO manifests VALUES(?, ?, ?, ?)",
                (run, revision, sealed_ns, json.dumps(manifest, sort_keys=True)),
            )
        return revision

    def manifests(self, run: str) -> list[dict[str, Any]]:
        """A run's manifests, oldest revision first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT json FROM manifests WHERE run=? ORDER BY revision", (run,)
            ).fetchall()
        return [dict(json.loads(r[0])) for r in rows]

    # gaps -------------------------------------------------------------------------------------

    def put_gap(self, channel: str, t_begin_ns: int, t_end_ns: int | None, reason: str) -> None:
        """Record (or extend) a known gap of ``channel``: data that could not be kept, and why.

        Keyed by (channel, begin, reason), so a gap still open (``t_end_ns`` None) is closed by
        putting it again with its end. Results flag every gap that overlaps a phase."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO gaps VALUES(?, ?, ?, ?) ON CONFLICT(channel, t_begin_ns, reason) "
                "DO UPDATE SET t_end_ns=excluded.t_end_ns",
                (channel, t_begin_ns, t_end_ns, reason),
            )

    def gaps(
        self, channel: str, t_begin_ns: int, t_end_ns: int
    ) -> list[tuple[int, int | None, str]]:
        """Known gaps of ``channel`` overlapping [begin, end], oldest first.

        A gap left open (its producer never said it was over: a daemon killed while a probe
        was down, an agent gone by its last will) ends where the channel's data resumes, the
        first stored block after its begin; with no data since, it is still open (None)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT t_begin_ns, t_end_ns, reason FROM gaps WHERE channel=? AND t_begin_ns<=? "
                "AND (t_end_ns IS NULL OR t_end_ns>=?) ORDER BY t_begin_ns",
                (channel, t_end_ns, t_begin_ns),
            ).fetchall()
            out: list[tuple[int, int | None, str]] = []
            for a, b, r in rows:
                end = b if b is not None else self._resumed_ns(channel, int(a))
                if end is None or end >= t_begin_ns:
                    out.append((int(a), None if end is None else int(end), str(r)))
        return out

    def last_sample_ns(self, channel: str) -> int | None:
        """The time of the channel's newest stored sample (None: nothing stored)."""
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(t_last_ns) FROM blocks WHERE channel=?", (channel,)
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _resumed_ns(self, channel: str, after_ns: int) -> int | None:
        row = self._db.execute(
            "SELECT MIN(t_first_ns) FROM blocks WHERE channel=? AND t_first_ns>?",
            (channel, after_ns),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def gap_channels(self, t_begin_ns: int, t_end_ns: int) -> list[str]:
        """Channels with a recorded gap overlapping [begin, end]."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT channel FROM gaps WHERE t_begin_ns<=? "
                "AND (t_end_ns IS NULL OR t_end_ns>=?) ORDER BY channel",
                (t_end_ns, t_begin_ns),
            ).fetchall()
        return [str(c) for (c,) in rows if self.gaps(str(c), t_begin_ns, t_end_ns)]

    # retention --------------------------------------------------------------------------------

    def prune(self, now_ns: int) -> int:
        """Drop sample blocks older than the age limit, then the oldest beyond the size limit.

        Markers and results are small and kept, so any stored run's figures stay readable.
        Returns the number of blocks removed.
        """
        cutoff = now_ns - int(self.retention.max_age_s * 1e9)
        with self._tx() as db:
            removed = db.execute("DELETE FROM blocks WHERE t_last_ns < ?", (cutoff,)).rowcount
            db.execute("DELETE FROM gaps WHERE t_end_ns < ?", (cutoff,))
            total = int(db.execute("SELECT COALESCE(SUM(n), 0) FROM blocks").fetchone()[0]) * 16
            excess = total - self.retention.max_bytes
            if excess > 0:
                doomed: list[int] = []
                for block_id, n in db.execute("SELECT id, n FROM blocks ORDER BY t_last_ns"):
                    if excess <= 0:
                        break
                    doomed.append(block_id)
                    excess -= n * 16
                db.executemany("DELETE FROM blocks WHERE id=?", [(i,) for i in doomed])
                removed += len(doomed)
        return removed

    def integrity_ok(self) -> bool:
        with self._lock:
            return bool(self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")
