"""Samples committed after a run's result was computed: find the runs they change, cheaply.

Why: an agent reconnecting after ``result_grace_s``, a held backlog released late or a local
reader catching up commits samples inside a phase whose result is already stored, sealed and
published. Left alone, the figure no longer matches the store and ``powerd audit`` fails until
someone runs ``powerd report``: for a signed figure, a silent failure. The daemon recomputes such
a run (``Daemon._requeue_late``), reseals and republishes it, and the result says so
(``revised_after_late_data``, a count, present once it is at least 1).

How it stays cheap with a fleet committing blocks continuously: an index per device of the runs
whose results exist, ``(t_end_ns, t_begin_ns, run)`` sorted by end, where the span is the run's
(first phase begin to last phase end: what its manifest seals each channel's samples over, so a
late sample between two phases counts too) and the devices are those its phases cover. Each store
commit (``Store.commit_listeners``: one call per flush, one ``(t_first_ns, t_last_ns)`` per
channel) looks up, per channel, only the runs of the channel's device that end at or after the
earliest new sample: in-order data, the normal case, finds none in O(1) (its runs were computed
once the data passed their end). A commit is late for a run when

- it overlaps the run's span: a sample inside it arrived late, or
- it holds the channel's first sample after the span's end while the channel had data inside
  it: the nearest sample after the end, which the figures and the sealed sample hashes rest on,
  arrived late.

A run found late is recomputed ``batch_s`` after it was first found (a backlog arrives in many
commits), and at most once per ``min_interval_s``. Runs being computed are indexed from the moment
they are taken off the pending list (their span and devices, when known), so data committed
between that and the stored result is not missed either.

The index keeps the runs that ended within ``keep_s`` (2 days) of the newest one, at most
``max_entries`` (200 000, ~0.3 kB each): a fleet seals several results a second. A commit older
than the index (a backlog held for days) asks the store which results it overlaps
(``Store.results_overlapping``, a scan of its markers: at most once per ``slow_interval_s``, 10 s,
over everything that old committed meanwhile), each checked against its result's devices.

After a restart the runs with results are indexed by their marker span for every device
(``ANY``: one query, no result parsed); the first commit that hits such a run looks its result up
and indexes it by its phases' devices, so another device's data in its span does not count.

Not covered (documented, not silent): a late sample entirely before a run that becomes the new
nearest sample before its begin, with nothing late inside it (the agent sends its backlog oldest
first, so the samples inside the run come after it and are caught); after a restart, the first
late sample after a run's end of a channel not yet committed in this process (its previous sample
time is not known, so only samples inside a run count for it).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from powerd.channel import LOCAL_DEVICE
from powerd.store import Store

# the run flag (``Store.put_run_flag``) counting a run's recomputations for late data; the
# result's ``revised_after_late_data`` (powerd.runs.compute_run), not a phase flag
LATE_DATA_FLAG = "revised_after_late_data"
# device key of phases whose devices are not known (runs indexed after a restart, or queued
# without their devices): checked against every channel's commits
ANY = ""
LATE_BATCH_S = 1.0
LATE_MIN_INTERVAL_S = 5.0
# runs that ended this long before the newest indexed end leave the index, and the oldest
# beyond LATE_INDEX_MAX entries (memory: a fleet seals several results a second, ~0.3 kB an
# entry); a commit older than the index asks the store instead
LATE_INDEX_KEEP_S = 2 * 86400.0
LATE_INDEX_MAX = 200_000
LATE_SLOW_INTERVAL_S = 10.0  # the store asked about commits older than the index at most so often
PRUNE_EVERY = 1024  # index updates between prunes
MAX_INT = (1 << 63) - 1

Entry = tuple[int, int, str]  # (t_end_ns, t_begin_ns, run)


def _end(entry: Entry) -> int:
    return entry[0]


class LateData:
    """The index of computed phases per device and the runs found late (thread-safe)."""

    def __init__(
        self,
        devices_of: Callable[[Iterable[str]], dict[str, str | None]],
        store: Store | None = None,
        batch_s: float = LATE_BATCH_S,
        min_interval_s: float = LATE_MIN_INTERVAL_S,
        keep_s: float = LATE_INDEX_KEEP_S,
        max_entries: int = LATE_INDEX_MAX,
        slow_interval_s: float = LATE_SLOW_INTERVAL_S,
    ) -> None:
        """``devices_of``: channel ids' devices, asked once per commit (None: an unknown
        channel, whose device is taken from its id, ``agent/...``, else ``local``).
        ``store``: where a run indexed for every device (``ANY``) is looked up when a commit
        hits it (and indexed by its phases' devices from then on, so another device's data in
        its span does not count), and the runs a commit older than the index (``keep_s``)
        overlaps. Without it such runs count for every device and old commits are not checked."""
        self._devices_of = devices_of
        self._store = store
        self.batch_ns = int(batch_s * 1e9)
        self.min_interval_ns = int(min_interval_s * 1e9)
        self.keep_ns = int(keep_s * 1e9)
        self._newest_end_ns = 0
        self._horizon_ns: int | None = None  # phases ending before it were dropped
        self._puts = 0
        self.prune_every = PRUNE_EVERY
        # commits older than the index, per device (first, last), for check_older
        self._old: dict[str, tuple[int, int]] = {}
        self.slow_ns = int(slow_interval_s * 1e9)
        self._last_slow_ns: int | None = None
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._by_device: dict[str, list[Entry]] = {}
        # per device the longest phase indexed: a lookup stops at ends beyond t_last + this
        self._longest_ns: dict[str, int] = {}
        self._of_run: dict[str, list[tuple[str, Entry]]] = {}
        self._last_ns: dict[str, int] = {}  # each channel's latest committed sample time
        self._found: dict[str, int] = {}  # run -> when first found late (clock ns)
        self._recomputed: dict[str, int] = {}  # run -> when last taken for recomputation
        self.checks = 0  # (channel, commit) pairs looked up
        self.slow_checks = 0  # commits older than the index, asked of the store
        self.hits = 0  # (channel, commit, run) found late

    # the index ----------------------------------------------------------------------------

    def load(self, store: Store) -> int:
        """Index the runs the store already has results for, by their marker span, for every
        device (their devices are in their result JSON, not parsed here: one query on start),
        the newest within ``keep_s`` and ``max_entries``. Returns how many."""
        rows = sorted(store.results_overlapping(0, MAX_INT), key=lambda r: r[2], reverse=True)
        if not rows:
            return 0
        cutoff = rows[0][2] - self.keep_ns
        kept = [r for r in rows[: self.max_entries] if r[2] >= cutoff]
        with self._lock:
            for run, t0, t1 in kept:
                self._put(run, [(ANY, (t1, t0, run))])
            if len(kept) < len(rows):  # the older ones are asked of the store (check_older)
                self._horizon_ns = rows[len(kept)][2] + 1
        return len(kept)

    def computing(self, run: str, span: tuple[int, int], devices: Iterable[str] | None) -> None:
        """``run`` is being computed over ``span`` (its closed phases' first begin, last end):
        data committed from now on may be missing from it."""
        t0, t1 = span
        keys = [ANY] if devices is None else sorted(set(devices)) or [ANY]
        with self._lock:
            self._put(run, [(d, (t1, t0, run)) for d in keys])

    def sealed(self, result: dict[str, Any]) -> None:
        """``result`` is stored: index its span (first phase begin to last phase end, what
        its manifest seals every channel's samples over) under each device its phases cover
        (``ANY`` if one names none): one entry per device, not per phase."""
        run = str(result["run"])
        phases = result.get("phases") or []
        if not phases:
            return
        entry = (
            max(int(p["t_end_ns"]) for p in phases),
            min(int(p["t_begin_ns"]) for p in phases),
            run,
        )
        devices = {str(d) for p in phases for d in p.get("devices") or ()}
        if not devices or not all(p.get("devices") for p in phases):
            devices.add(ANY)
        with self._lock:
            self._put(run, [(d, entry) for d in sorted(devices)])

    def _put(self, run: str, entries: list[tuple[str, Entry]]) -> None:
        for device, entry in self._of_run.pop(run, []):
            lst = self._by_device.get(device)
            if lst is not None:
                i = bisect.bisect_left(lst, entry[0], key=_end)
                while i < len(lst) and lst[i][0] == entry[0]:
                    if lst[i] == entry:
                        del lst[i]
                        break
                    i += 1
                if not lst:
                    del self._by_device[device]
        mine = list(dict.fromkeys(entries))
        for device, entry in mine:
            bisect.insort(self._by_device.setdefault(device, []), entry, key=_end)
            longest = self._longest_ns.get(device, 0)
            self._longest_ns[device] = max(longest, entry[0] - entry[1])
            self._newest_end_ns = max(self._newest_end_ns, entry[0])
        if mine:
            self._of_run[run] = mine
        self._puts += 1
        if self._puts % self.prune_every == 0:
            self._prune()

    def _prune(self) -> None:
        """Drop the runs that ended ``keep_s`` before the newest indexed end, and the oldest
        beyond ``max_entries`` (down to 90 % of it)."""
        cutoff = self._newest_end_ns - self.keep_ns
        total = sum(len(lst) for lst in self._by_device.values())
        if total > self.max_entries:
            ends = np.fromiter((e[0] for lst in self._by_device.values() for e in lst), np.int64)
            k = total - int(0.9 * self.max_entries)
            cutoff = max(cutoff, int(np.partition(ends, k)[k]))
        if cutoff <= (self._horizon_ns if self._horizon_ns is not None else 0):
            return
        for device in list(self._by_device):
            lst = self._by_device[device]
            i = bisect.bisect_left(lst, cutoff, key=_end)
            for entry in lst[:i]:
                left = [x for x in self._of_run.get(entry[2], ()) if x != (device, entry)]
                if left:
                    self._of_run[entry[2]] = left
                else:
                    self._of_run.pop(entry[2], None)
            del lst[:i]
            if not lst:
                del self._by_device[device]
        self._horizon_ns = cutoff

    def indexed(self) -> int:
        """Entries in the index, one per (run, device) (for tests and benchmarks)."""
        with self._lock:
            return sum(len(v) for v in self._by_device.values())

    # commits ------------------------------------------------------------------------------

    def on_commit(self, spans: dict[str, tuple[int, int]], now_ns: int) -> list[str]:
        """One store commit: per channel its first and last new sample time. Returns the runs
        newly found late (each also remembered for ``take_due``)."""
        known = self._devices_of(spans)
        hits: list[tuple[str, str, bool]] = []  # (run, device, through ANY)
        with self._lock:
            horizon = self._horizon_ns
            for cid, (t_first, t_last) in spans.items():
                prev = self._last_ns.get(cid)
                self._last_ns[cid] = t_last if prev is None else max(prev, t_last)
                lo = t_first if prev is None else min(t_first, prev + 1)
                device = known.get(cid) or (cid.split("/", 1)[0] if "/" in cid else LOCAL_DEVICE)
                if horizon is not None and t_first < horizon:  # asked later: check_older
                    a, b = self._old.get(device, (t_first, t_last))
                    self._old[device] = (min(a, t_first), max(b, min(t_last, horizon)))
                for key in (device, ANY):
                    lst = self._by_device.get(key)
                    if not lst or lst[-1][0] < lo:
                        continue  # every phase of the device ended before: in-order data
                    self.checks += 1
                    stop = t_last + self._longest_ns[key]  # later ends begin after t_last
                    for i in range(bisect.bisect_left(lst, lo, key=_end), len(lst)):
                        t_end, t_begin, run = lst[i]
                        if t_end > stop:
                            break
                        inside = t_end >= t_first and t_begin <= t_last
                        # the first sample after the end, of a channel with data in the phase
                        after = prev is not None and prev < t_end < t_first and prev >= t_begin
                        if not (inside or after):
                            continue
                        if run not in self._found:
                            hits.append((run, device, key == ANY))
        return self._note(hits, now_ns)

    def _note(self, hits: list[tuple[str, str, bool]], now_ns: int) -> list[str]:
        """Remember the runs hit (those hit through ``ANY`` only if their result covers the
        committing device); returns those newly found."""
        if not hits:
            return []
        covers = self._resolve({run for run, _, any_device in hits if any_device})
        found: list[str] = []
        with self._lock:
            for run, device, any_device in hits:
                devices = covers.get(run) if any_device else None
                if devices is not None and device not in devices:
                    continue  # another device's data in the run's span
                self.hits += 1
                if run not in self._found:
                    self._found[run] = now_ns
                    found.append(run)
        return found

    def check_older(self, now_ns: int) -> list[str]:
        """Commits older than the index (a backlog held for longer than it keeps, rare): the
        runs with results whose marker span they overlap, asked of the store (a scan of its
        markers: at most once per ``slow_interval_s``, over what came in meanwhile, merged per
        device; not on the committing thread, which holds the store), each checked against its
        result's devices. Only overlaps count here (not a first sample after a run's end).
        Returns the runs newly found."""
        with self._lock:
            if not self._old or self._store is None:
                self._old.clear()
                return []
            if self._last_slow_ns is not None and now_ns - self._last_slow_ns < self.slow_ns:
                return []
            self._last_slow_ns = now_ns
            old, self._old = self._old, {}
        hits: list[tuple[str, str, bool]] = []
        for device, (t0, t1) in old.items():
            self.slow_checks += 1
            hits += [(r, device, True) for r, _, _ in self._store.results_overlapping(t0, t1)]
        return self._note(hits, now_ns)

    def _resolve(self, runs: set[str]) -> dict[str, frozenset[str] | None]:
        """The devices of runs indexed for every device, from their stored results (None: no
        result, or phases naming no device: every device counts); such a run is indexed by
        its phases from then on. Outside the lock: the store has its own."""
        out: dict[str, frozenset[str] | None] = {}
        horizon = self._horizon_ns
        for run in runs:
            result = None if self._store is None else self._store.result(run)
            if result is None:
                out[run] = None
                continue
            phases = result.get("phases") or []
            devices = frozenset(str(d) for p in phases for d in p.get("devices") or ())
            out[run] = devices or None
            recent = horizon is None or any(p["t_end_ns"] >= horizon for p in phases)
            if devices and all(p.get("devices") for p in phases) and recent:
                self.sealed(result)
        return out

    def waiting(self) -> bool:
        """Whether some run found late waits for its recomputation (or an old commit for
        ``check_older``)."""
        with self._lock:
            return bool(self._found) or bool(self._old)

    def take_due(
        self, now_ns: int
    ) -> list[tuple[str, tuple[int, int] | None, frozenset[str] | None]]:
        """The runs found late whose batch time passed and that were not recomputed within
        ``min_interval_s``, with their indexed span and devices (None: unknown or every
        device); they are forgotten until found again."""
        out: list[tuple[str, tuple[int, int] | None, frozenset[str] | None]] = []
        with self._lock:
            for run, since in list(self._found.items()):
                if now_ns - since < self.batch_ns:
                    continue
                last = self._recomputed.get(run)
                if last is not None and now_ns - last < self.min_interval_ns:
                    continue
                del self._found[run]
                self._recomputed[run] = now_ns
                entries = self._of_run.get(run) or []
                span = (
                    (min(e[1] for _, e in entries), max(e[0] for _, e in entries))
                    if entries
                    else None
                )
                devices = frozenset(d for d, _ in entries)
                out.append((run, span, None if not devices or ANY in devices else devices))
            if len(self._recomputed) > 4 * len(self._of_run) + 1024:  # bounded
                cutoff = now_ns - self.min_interval_ns
                self._recomputed = {r: t for r, t in self._recomputed.items() if t >= cutoff}
        return out
