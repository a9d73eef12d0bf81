"""A ``Daemon`` driven by hand: a clock the test sets, one agent known with one channel, and clock
exchanges made up with a given offset and round trip (no broker, no agent process).

Shared by test_clock_boots.py and test_held_epochs.py (each had its own copy): what a test checks
of the daemon's offsets, held data and markers stays in the test.
"""

from __future__ import annotations

import json
from typing import Any

from powerd.agent import wire
from powerd.channel import Channel
from powerd.daemon import Daemon
from powerd.store import Store
from powerd.timeline import Timeline

SEC = 1_000_000_000
CHANNEL = Channel("sim:x", "power", "meter", 0.01)


class Clock:
    """The daemon's wall clock: ``now_ns``, set and advanced by the test (starts at 50 s)."""

    def __init__(self) -> None:
        self.now_ns = 50 * SEC

    def __call__(self) -> int:
        return self.now_ns


def start_daemon(store: Store, agent: str, **options: Any) -> Daemon:
    """A daemon on ``Clock()`` that knows ``agent`` (online, no clock epoch yet) and its
    ``CHANNEL``; ``options`` go to ``Daemon``."""
    d = Daemon(store, Timeline(), Clock(), **options)
    assert d.accept_status(agent, wire.status(agent, "online", 0, "t"))
    d.accept_channels(agent, json.dumps([CHANNEL.to_json()]).encode())
    return d


def clock_of(d: Daemon) -> Clock:
    assert isinstance(d.clock, Clock)
    return d.clock


def exchange(
    d: Daemon, boot: int | None, ahead_ns: int, rtt_ns: int = 200_000, *, agent: str
) -> None:
    """One exchange with ``agent`` whose clock (epoch ``boot``) reads ``ahead_ns`` ahead of the
    daemon's, the reply back after ``rtt_ns``; the daemon's clock then moves on 100 ms."""
    clock = clock_of(d)
    req = d.clock_request(agent)
    t1 = json.loads(req)["t1_ns"]
    t2 = t1 + rtt_ns // 2 + ahead_ns
    reply = wire.clock_reply(req, t2, t2, boot)
    clock.now_ns = t1 + rtt_ns
    assert d.accept_clock_reply(agent, reply, t1 + rtt_ns)
    clock.now_ns += SEC // 10
