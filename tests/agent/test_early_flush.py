"""The agent flushes the samples that close a phase right after relaying its end marker, once
every channel sampling lately has one at or after the end, instead of up to a publish interval
later: the daemon computes the result as soon as they arrive (issue 16)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from powerd.agent import wire
from powerd.agent.agent import EARLY_FLUSH_WINDOW_NS, Agent, AgentConfig, Outbox
from powerd.agent.epoch import EpochAnchor
from powerd.agent.mqttconf import MqttSettings
from powerd.agent.spool import Spool
from powerd.block import Block
from powerd.channel import Channel
from powerd.runner import Sampler

T0 = 1_800_000_000_000_000_000
MS = 1_000_000


def outbox(tmp_path: Path) -> tuple[Outbox, Spool]:
    spool = Spool(tmp_path / "spool.db", 1 << 20, "edge-01")
    box = Outbox("edge-01", spool, EpochAnchor())
    for cid in ("sim:a", "sim:b"):
        box.put_channel(Channel(cid, "power", "meter", 0.1))
    return box, spool


def put(box: Outbox, channel: str, t_ms: int) -> None:
    t = np.array([T0 + t_ms * MS], np.int64)
    box.append(Block(channel, t, np.array([5.0])))


def blocks_sent(spool: Spool) -> list[tuple[str, int]]:
    """(channel, last sample ms) of every block spooled, in order."""
    out = []
    for msg in spool.peek(100):
        if msg.topic == wire.blocks_topic("edge-01"):
            for b in wire.decode_blocks(msg.payload):
                out.append((b.channel, int((int(b.t_ns[-1]) - T0) // MS)))
    return out


def test_the_samples_past_a_relayed_end_go_out_once_every_channel_has_one(
    tmp_path: Path,
) -> None:
    box, spool = outbox(tmp_path)
    put(box, "sim:a", 0)
    put(box, "sim:b", 0)
    box.flush()  # the regular flush: both channels sample
    put(box, "sim:a", 100)
    box.flush_after_ns = T0 + 150 * MS  # an end marker relayed at 150 ms
    put(box, "sim:b", 100)
    put(box, "sim:a", 200)  # a is past the end, b not yet: nothing goes out
    assert blocks_sent(spool) == [("sim:a", 0), ("sim:b", 0)]
    put(box, "sim:b", 200)  # b too: flushed at once, without waiting for the interval
    assert blocks_sent(spool)[2:] == [("sim:a", 200), ("sim:b", 200)]
    assert box.early_flushes == 1 and box.flush_after_ns is None
    put(box, "sim:a", 300)  # disarmed: back to the regular flush
    put(box, "sim:b", 300)
    assert len(blocks_sent(spool)) == 4
    spool.close()


def test_a_channel_gone_quiet_gives_the_early_flush_up_and_counts_it(tmp_path: Path) -> None:
    box, spool = outbox(tmp_path)
    put(box, "sim:a", 0)
    put(box, "sim:b", 0)
    box.flush()
    box.flush_after_ns = T0 + 50 * MS
    put(box, "sim:a", 100)  # b never samples again
    assert box.flush_after_ns is not None and len(blocks_sent(spool)) == 2
    put(box, "sim:a", 50 + EARLY_FLUSH_WINDOW_NS // MS + 100)
    assert box.early_flushes == 0 and box.early_flushes_missed == 1
    assert box.flush_after_ns is None and len(blocks_sent(spool)) == 2  # nothing lost: buffered
    assert box.flush() == 2
    spool.close()


def test_relaying_an_end_marker_arms_the_flush_and_a_begin_does_not(tmp_path: Path) -> None:
    cfg = AgentConfig("edge-01", ("sim:constant,w=2",), MqttSettings(), tmp_path / "spool")
    agent = Agent(cfg)
    agent.relay_marker({"v": 1, "run": "r", "phase": "p", "event": "begin"})
    assert agent.outbox.flush_after_ns is None
    out = agent.relay_marker({"v": 1, "run": "r", "phase": "p", "event": "end", "t_ns": T0})
    assert agent.outbox.flush_after_ns == out["t_ns"] == T0
    agent.spool.close()


class SlowProbe:
    """A polled meter read once an hour: each reading is stamped when it is taken."""

    poll_interval_s = 3600.0

    def __init__(self) -> None:
        self.channel = Channel("slow:0", "power", "meter", 3600.0)
        self.reads_ns: list[int] = []

    def channels(self) -> list[Channel]:
        return [self.channel]

    def read(self, now_utc_ns: int) -> list[Block]:
        self.reads_ns.append(now_utc_ns)
        return [Block.of(self.channel.id, [now_utc_ns], [7.0])]

    def problems(self) -> list[str]:
        return []

    def close(self) -> None:
        return None


def wait_for(cond: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)
    return cond()


def test_an_end_marker_makes_the_sampler_read_its_probes_now_and_flush(tmp_path: Path) -> None:
    """The phase end is covered at once by a real reading taken after it (by the sampling
    thread, the probe's only reader), not at the next poll an hour later."""
    spool = Spool(tmp_path / "spool.db", 1 << 20, "edge-01")
    anchor = EpochAnchor()
    box = Outbox("edge-01", spool, anchor)
    probe = SlowProbe()
    sampler = Sampler([probe], None, box, anchor, flush_interval_s=3600.0)
    sampler.start()
    try:
        assert wait_for(lambda: len(probe.reads_ns) == 1)  # the first poll, at start
        _, end_ns = anchor.stamp()
        box.flush_after_ns = end_ns  # as Agent.relay_marker does, then:
        sampler.poll_now()
        assert wait_for(lambda: box.early_flushes == 1)
        assert len(probe.reads_ns) == 2 and probe.reads_ns[1] >= end_ns
        assert sampler.reads_asked == 1
        sent = [
            b
            for msg in spool.peek(100)
            if msg.topic == wire.blocks_topic("edge-01")
            for b in wire.decode_blocks(msg.payload)
        ]
        # both readings went out (nothing made up, nothing lost), the last one past the end
        assert [int(t) for b in sent for t in b.t_ns] == probe.reads_ns
        assert [float(v) for b in sent for v in b.value] == [7.0, 7.0]
    finally:
        sampler.stop()
        spool.close()


def test_relaying_an_end_marker_asks_the_agents_sampler_for_a_reading(tmp_path: Path) -> None:
    cfg = AgentConfig("edge-01", ("sim:constant,w=2",), MqttSettings(), tmp_path / "spool")
    agent = Agent(cfg)
    agent.sampler.start()
    try:
        agent.relay_marker({"v": 1, "run": "r", "phase": "p", "event": "begin"})
        assert agent.sampler.reads_asked == 0
        agent.relay_marker({"v": 1, "run": "r", "phase": "p", "event": "end"})
        assert wait_for(lambda: agent.sampler.reads_asked == 1)
    finally:
        agent.sampler.stop()
        agent.spool.close()
