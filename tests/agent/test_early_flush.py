"""The agent flushes the samples that close a phase right after relaying its end marker, once
every channel sampling lately has one at or after the end, instead of up to a publish interval
later: the daemon computes the result as soon as they arrive (issue 16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from powerd.agent import wire
from powerd.agent.agent import EARLY_FLUSH_WINDOW_NS, Agent, AgentConfig, Outbox
from powerd.agent.epoch import EpochAnchor
from powerd.agent.mqttconf import MqttSettings
from powerd.agent.spool import Spool
from powerd.block import Block
from powerd.channel import Channel

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
