"""What the late-data check (powerd.latedata) costs each store commit of a fleet.

A fleet daemon flushes the store many times a second, each flush committing blocks of up to
thousands of channels; every flush now also asks the index of computed runs whether any commit
falls inside one (or is the first sample after its end). This times ``LateData.on_commit`` alone
for one flush of C channels (agents x 8) against an index holding R runs per device (all ended
before the commit: in-order data, the normal case), and one flush where every channel's commit
lies inside a run (a backlog after a restart: the worst case per commit); then the share of the
listener in real ``Store.flush`` calls.

    .venv/bin/python bench/late_data_cost.py --agents 100 1000 --runs 10 1000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from powerd.block import Block
from powerd.latedata import LateData
from powerd.store import Store

S = 10**9
CHANNELS_PER_AGENT = 8


def one(agents: int, runs: int, repeat: int) -> dict[str, float]:
    # every run kept (the daemon's index stops at LATE_INDEX_MAX entries): the lookup's cost
    # at that size is what is measured
    late = LateData(lambda ids: {c: c.split("/", 1)[0] for c in ids}, max_entries=agents * runs)
    for a in range(agents):
        for r in range(runs):
            t0 = r * 10 * S
            late.sealed(
                {
                    "run": f"run-{a}-{r}",
                    "phases": [
                        {"t_begin_ns": t0, "t_end_ns": t0 + 5 * S, "devices": [f"agent{a}"]}
                    ],
                }
            )
    chans = [f"agent{a}/ch{c}" for a in range(agents) for c in range(CHANNELS_PER_AGENT)]
    t = runs * 10 * S
    late.on_commit({c: (t - S, t) for c in chans}, 0)  # each channel's state known
    best_in_order = float("inf")
    for i in range(repeat):
        t0 = t + i * S
        spans = {c: (t0 + 1, t0 + S) for c in chans}
        start = time.perf_counter()
        found = late.on_commit(spans, 0)
        best_in_order = min(best_in_order, time.perf_counter() - start)
        assert not found
    spans = {c: (S, 2 * S) for c in chans}  # inside every agent's first run
    start = time.perf_counter()
    found = late.on_commit(spans, 0)
    inside_s = time.perf_counter() - start
    assert len(found) == agents
    return {
        "channels": len(chans),
        "indexed_phases": late.indexed(),
        "in_order_us_per_commit": best_in_order * 1e6,
        "in_order_us_per_channel": best_in_order * 1e6 / len(chans),
        "late_us_per_commit": inside_s * 1e6,
    }


def flush_share(agents: int, repeat: int) -> tuple[float, float]:
    """The store's flush of one commit of every channel (10 samples each) with the daemon's
    late-data listener, and the listener's own share of it, timed inside the flush (timing
    flushes with and without it side by side mostly measures SQLite's WAL checkpoints):
    (median us per flush, median us in the listener)."""
    chans = [f"agent{a}/ch{c}" for a in range(agents) for c in range(CHANNELS_PER_AGENT)]
    late = LateData(lambda ids: {c: c.split("/", 1)[0] for c in ids})
    inside: list[float] = []
    whole: list[float] = []

    def listener(spans: dict[str, tuple[int, int]]) -> None:
        start = time.perf_counter()
        late.on_commit(spans, 0)
        inside.append(time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as tmp:
        st = Store(Path(tmp) / "powerd.db")
        st.commit_listeners = [listener]
        v = np.ones(10)
        for i in range(repeat):
            t = (i + 1) * S + np.arange(10, dtype=np.int64) * (S // 10)
            for c in chans:
                st.append(Block(c, t, v))
            start = time.perf_counter()
            st.flush()
            whole.append(time.perf_counter() - start)
        st.close()
    return float(np.median(whole)) * 1e6, float(np.median(inside)) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--agents", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--runs", type=int, nargs="+", default=[10, 1000])
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    for agents in args.agents:
        for runs in args.runs:
            got = one(agents, runs, args.repeat)
            print(
                f"agents {agents:5d} runs/device {runs:5d}: {got['channels']:6d} channels, "
                f"{got['indexed_phases']:8d} runs indexed; in-order commit "
                f"{got['in_order_us_per_commit']:9.1f} us ({got['in_order_us_per_channel']:.2f} "
                f"us/channel); all-late commit {got['late_us_per_commit']:9.1f} us"
            )
        flush_us, listener_us = flush_share(agents, args.repeat)
        print(
            f"agents {agents:5d}: Store.flush of {agents * CHANNELS_PER_AGENT} channels x 10 "
            f"samples {flush_us:9.1f} us (median), of which the late-data listener "
            f"{listener_us:8.1f} us ({100 * listener_us / flush_us:.1f} %)"
        )


if __name__ == "__main__":
    main()
