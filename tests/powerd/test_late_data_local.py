"""A local meter's reader catching up after its run's result was computed (powerd.latedata):
the daemon recomputes and reseals the run, also after a restart, and in-order data after the
run changes nothing. The daemon core in-process on a real store, its clock stepped by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from powerd.audit import audit
from powerd.block import Block
from powerd.channel import LOCAL_DEVICE, Channel
from powerd.daemon import Daemon
from powerd.exporter import registry_for, render
from powerd.latedata import LateData
from powerd.store import Store
from powerd.timeline import Timeline

T0 = 1_800_000_000_000_000_000
S = 1_000_000_000
METER = Channel(id="m:1", kind="power", source_class="meter", nominal_period_s=0.01)


def commit(d: Daemon, t0_s: float, t1_s: float, w: float = 100.0, ch: Channel = METER) -> None:
    """What the sampler does with a reader's samples: timeline, store, flush."""
    t = T0 + np.arange(int(t0_s * 100), int(t1_s * 100), dtype=np.int64) * (S // 100)
    block = Block.of(ch.id, t, np.full(t.size, w))
    d.timeline.append(block)
    d.store.append(block)
    d.store.flush()


def marker(event: str, t_s: float, run: str = "r") -> bytes:
    m = {"v": 1, "run": run, "phase": "p", "event": event, "t_ns": T0 + int(t_s * S)}
    return json.dumps(m | ({"count": 1} if event == "end" else {})).encode()


def daemon(path: Path, now: list[int]) -> Daemon:
    st = Store(path)
    st.put_channel(METER)
    return Daemon(st, Timeline(), lambda: now[0], result_grace_s=1.0)


def test_a_local_reader_catching_up_recomputes_the_run_also_after_a_restart(
    tmp_path: Path,
) -> None:
    now = [T0 + 10 * S]
    d = daemon(tmp_path / "powerd.db", now)
    commit(d, 0, 5)
    assert d.submit_marker("h", marker("begin", 1), T0 + 1 * S).applied
    assert d.submit_marker("h", marker("end", 8), T0 + 8 * S).applied
    (first,) = d.due_results()  # waited result_grace_s: computed with 4 of 7 s
    assert first["phases"][0]["channels"][METER.id]["coverage"] < 0.7
    assert "revised_after_late_data" not in first
    commit(d, 5, 6.5)  # the reader catches up, in part
    assert d.has_pending()
    assert d.due_results() == []  # batched: not at once
    now[0] += 2 * S
    (second,) = d.due_results()
    assert second["revised_after_late_data"] == 1
    assert d.counts["results_recomputed_late_data"] == 1
    assert audit(d.store, "r").ok
    d.store.close()
    assert d.held is not None
    d.held.close()

    d = daemon(tmp_path / "powerd.db", now)  # restarted: the index is loaded from the store
    assert not d.has_pending()
    # another device's data inside the run's span (an agent's backlog): not the run's data
    other = Channel(id="edge/sim:x", kind="power", source_class="meter", nominal_period_s=0.01)
    d.store.put_channel(other)
    d.store.append(Block.of(other.id, np.array([T0 + 3 * S], np.int64), np.array([5.0])))
    d.store.flush()
    assert not d.has_pending()
    commit(d, 6.5, 9)
    now[0] += 2 * S
    (third,) = d.due_results()
    (phase,) = third["phases"]
    assert third["revised_after_late_data"] == 2
    assert phase["channels"][METER.id]["coverage"] == 1.0
    assert abs(phase["energy_j"] - 700.0) <= phase["uncertainty_j"]
    assert "revised_after_late_data" not in phase["flags"]
    report = audit(d.store, "r")
    assert report.ok, report.differences
    commit(d, 9, 12)  # in order, after the run: nothing to recompute
    now[0] += 10 * S
    assert d.due_results() == [] and not d.has_pending()
    assert d.counts["results_recomputed_late_data"] == 1  # this process's count
    assert d.health.snapshot()["problems"]["results_recomputed_late_data"] == 1
    metrics = render(registry_for(d)).decode()
    assert 'powerd_results_recomputed_total{reason="late_data"} 1.0' in metrics
    assert 'powerd_problems_total{kind="results_recomputed_late_data"} 1.0' in metrics
    assert 'powerd_gap_edges_total{action="snapped"} 0.0' in metrics


def test_late_data_older_than_the_index_is_looked_up_in_the_store(tmp_path: Path) -> None:
    """The index keeps phases that ended within ``keep_s`` of the newest (memory); a commit
    older than that asks the store which results it overlaps, and still recomputes them."""
    now = [T0 + 10 * S]
    d = daemon(tmp_path / "powerd.db", now)
    assert d.late is not None
    d.late.keep_ns, d.late.prune_every = 10 * S, 1
    commit(d, 0, 5)
    assert d.submit_marker("h", marker("begin", 1), T0 + 1 * S).applied
    assert d.submit_marker("h", marker("end", 8), T0 + 8 * S).applied
    (first,) = d.due_results()
    other = Channel(id="m:2", kind="power", source_class="meter", nominal_period_s=0.01)
    d.store.put_channel(other)
    d.timeline.add_channel(other)
    commit(d, 29, 32, ch=other)  # a later run on another meter, computed once covered
    assert d.submit_marker("h", marker("begin", 30, "q"), T0 + 30 * S).applied
    assert d.submit_marker("h", marker("end", 31, "q"), T0 + 31 * S).applied
    (later,) = d.due_results()
    assert later["run"] == "q" and d.late.indexed() == 1  # run r's phase left the index
    assert not d.has_pending()
    commit(d, 5, 9)  # run r's missing data, older than the index
    assert d.has_pending() and d.late.slow_checks == 0  # asked of the store off the flush
    assert d.due_results() == []  # asked now; batched like any
    assert d.late.slow_checks == 1
    now[0] += 2 * S
    (second,) = d.due_results()
    assert second["run"] == "r" and second["revised_after_late_data"] == 1
    assert first["phases"][0]["channels"][METER.id]["coverage"] < 0.7
    assert second["phases"][0]["channels"][METER.id]["coverage"] == 1.0
    report = audit(d.store, "r")
    assert report.ok, report.differences
    assert audit(d.store, "q").ok


def test_on_start_the_newest_results_are_indexed_and_older_ones_asked_of_the_store(
    tmp_path: Path,
) -> None:
    now = [T0 + 100 * S]
    d = daemon(tmp_path / "powerd.db", now)
    commit(d, 0, 40)
    for i, run in enumerate(("a", "b", "c")):
        assert d.submit_marker("h", marker("begin", 10 * i + 1, run), T0).applied
        assert d.submit_marker("h", marker("end", 10 * i + 5, run), T0).applied
    assert len(d.due_results()) == 3
    late = LateData(lambda ids: dict.fromkeys(ids, LOCAL_DEVICE), d.store, max_entries=2)
    assert late.load(d.store) == 2  # b and c; a is older than the index
    assert late.on_commit({METER.id: (T0 + 2 * S, T0 + 3 * S)}, 0) == []  # inside a: not indexed
    assert late.waiting()
    assert late.check_older(0) == ["a"]
    assert late.on_commit({METER.id: (T0 + 22 * S, T0 + 23 * S)}, 0) == ["c"]
