"""Health: components down with their reason, problems counted, each logged once (rate-limited)."""

from __future__ import annotations

from powerd.health import LOG_EVERY_S, Health


def make() -> tuple[Health, list[str], list[float]]:
    lines: list[str] = []
    now = [0.0]
    return Health(log=lines.append, clock_s=lambda: now[0]), lines, now


def test_a_down_component_degrades_until_it_is_up_and_each_transition_logs_once() -> None:
    h, lines, now = make()
    assert h.snapshot() == {"status": "ok", "down": {}, "problems": {}}
    h.down("mqtt", "broker refused the connection")
    h.down("mqtt", "broker refused the connection")
    assert h.degraded and h.is_down("mqtt")
    assert h.snapshot()["down"] == {"mqtt": "broker refused the connection"}
    assert len(lines) == 1 and "mqtt is down: broker refused" in lines[0]
    h.down("mqtt", "subscribe failed")
    assert len(lines) == 2
    now[0] = 12.5
    h.up("mqtt")
    h.up("mqtt")
    assert not h.degraded and h.snapshot()["status"] == "ok"
    assert len(lines) == 3 and "back after 12.5 s" in lines[2]


def test_problems_are_all_counted_but_logged_once_per_source_and_kind_per_interval() -> None:
    h, lines, now = make()
    for _ in range(1000):
        h.problem("edge-01", "status_malformed", "not JSON")
    h.problem("edge-02", "status_malformed", "not JSON")
    h.problem("edge-01", "blocks_malformed", "bad magic")
    assert h.snapshot()["problems"] == {"status_malformed": 1001, "blocks_malformed": 1}
    assert len(lines) == 3
    now[0] = LOG_EVERY_S + 1
    h.problem("edge-01", "status_malformed", "not JSON")
    assert len(lines) == 4 and "1002 of this kind" in lines[3]
    assert not h.degraded
