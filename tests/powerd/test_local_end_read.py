"""The daemon's own probes read at once on an end marker it applies (as an agent's do on a
relayed one), so a local channel does not hold a result back by up to a poll interval."""

from __future__ import annotations

import time
from pathlib import Path

from powerd.commands.serve import read_at_ends
from powerd.daemon import Daemon
from powerd.exporter import registry_for, render
from powerd.runner import Sampler
from powerd.store import Store
from powerd.timebase import TimeAnchor
from powerd.timeline import Timeline
from tests.agent.test_early_flush import SlowProbe, wait_for


def test_an_applied_end_marker_asks_the_local_sampler_for_a_reading(tmp_path: Path) -> None:
    anchor = TimeAnchor()
    store = Store(tmp_path / "powerd.db")
    timeline = Timeline()
    daemon = Daemon(store, timeline, anchor.utc_ns)
    probe = SlowProbe()
    sampler = Sampler([probe], timeline, store, anchor, flush_interval_s=3600.0)
    read_at_ends(daemon, sampler)
    sampler.start()
    try:
        assert wait_for(lambda: len(probe.reads_ns) == 1)  # the first poll, at start
        begin = {"v": 1, "run": "r", "phase": "p", "event": "begin"}
        assert daemon.submit_marker("cli", begin).applied
        time.sleep(0.05)
        assert sampler.reads_asked == 0 and len(probe.reads_ns) == 1
        end = daemon.submit_marker("cli", {"v": 1, "run": "r", "phase": "p", "event": "end"})
        assert end.applied and end.stamped is not None
        assert wait_for(lambda: sampler.reads_asked == 1)
        assert len(probe.reads_ns) == 2 and probe.reads_ns[1] >= end.stamped.t_ns
        metrics = render(registry_for(daemon)).decode()
        assert 'powerd_reads_asked_total{source="local"} 1.0' in metrics
    finally:
        sampler.stop()
        store.close()
