"""The agent's outbox announces its channels again when one changes (an instrument's identity
learnt after its probe opened), so the daemon stores which instrument measured; an unchanged
channel put again is not re-sent."""

from __future__ import annotations

import json
from pathlib import Path

from powerd.agent.agent import Outbox
from powerd.agent.epoch import EpochAnchor
from powerd.agent.spool import Spool
from powerd.channel import Channel, Instrument


def test_a_changed_channel_is_announced_again_and_an_unchanged_one_is_not(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 1 << 20, "edge-01")
    outbox = Outbox("edge-01", spool, EpochAnchor())
    ch = Channel("ina2xx:0", "power", "meter", 1e-3)
    outbox.put_channel(ch)
    outbox.put_channel(ch)
    assert len(spool.peek(10)) == 1
    ident = Instrument("Texas Instruments", "INA226", "SIM-1", "fw-1", "$PWRI")
    outbox.put_channel(Channel("ina2xx:0", "power", "meter", 1e-3, instrument=ident))
    msgs = spool.peek(10)
    assert len(msgs) == 2 and msgs[-1].retain
    (sent,) = json.loads(msgs[-1].payload)
    assert Channel.from_json(sent).instrument == ident
