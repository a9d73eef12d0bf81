"""A clock reply queued seconds behind a fleet's ingestion still matches its request (issue 16):
requests are forgotten after ``CLOCK_PENDING_S``, not after the last 256 sent."""

from __future__ import annotations

import json
from pathlib import Path

from powerd.agent import wire
from powerd.daemon import CLOCK_PENDING_S, Daemon
from powerd.store import Store
from powerd.timeline import Timeline
from tests.powerd.test_fleet_scope import NOW_NS, FakeClock, S


def test_a_late_reply_behind_a_thousand_requests_matches_and_a_stale_one_does_not(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    d = Daemon(Store(tmp_path / "powerd.db"), Timeline(), clock)
    agents = [f"edge-{i:04d}" for i in range(1000)]
    for a in agents:
        assert d.accept_status(a, wire.status(a, "online", NOW_NS, "test"))
    first = {a: d.clock_request(a) for a in agents}  # 1000 in flight, 200/s for 5 s
    clock.t_ns += 5 * S
    t2 = clock.t_ns - 2 * S
    reply = wire.clock_reply(first[agents[0]], t2, t2)
    assert d.accept_clock_reply(agents[0], reply)
    assert d.counts["clock_unmatched"] == 0
    clock.t_ns += int(CLOCK_PENDING_S * S)
    d.clock_request(agents[1])  # sending evicts what is older than CLOCK_PENDING_S
    late = wire.clock_reply(first[agents[2]], t2, t2)
    assert not d.accept_clock_reply(agents[2], late)
    assert d.counts["clock_unmatched"] == 1
    assert json.loads(d.clock_request(agents[3]))["id"] > 1000
