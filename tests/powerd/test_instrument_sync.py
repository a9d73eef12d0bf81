"""The sampler puts a probe's channels again when the probe learns its instrument's identity
after opening (``*IDN?`` in a reader thread), with a calibration certificate matched by serial."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from powerd import calibration
from powerd.block import Block
from powerd.channel import Channel, Instrument
from powerd.runner import Sampler
from powerd.store import Store
from powerd.timebase import TimeAnchor
from powerd.timeline import Timeline

IDN = Instrument("HIOKI", "PW3335", "123456789", "V1.00", "*IDN?")


class LateIdentityProbe:
    """Answers ``instrument()`` only after its third read, like a meter identified by its
    session thread."""

    poll_interval_s = 0.01

    def __init__(self) -> None:
        self.channel = Channel("scpi:hioki", "power", "meter", 0.01)
        self.reads = 0

    def channels(self) -> list[Channel]:
        return [self.channel]

    def read(self, now_utc_ns: int) -> list[Block]:
        self.reads += 1
        return [Block.of(self.channel.id, [now_utc_ns], [1.0])]

    def instrument(self) -> Instrument | None:
        return IDN if self.reads >= 3 else None

    def problems(self) -> list[str]:
        return []

    def close(self) -> None:
        return None


def test_identity_learnt_after_open_reaches_store_and_timeline(tmp_path: Path) -> None:
    table = {
        "serial:123456789": calibration.CalibrationEntry(
            date=dt.date(2026, 1, 1),
            due=dt.date(2027, 1, 1),
            certificate="C-9",
        )
    }
    probe = LateIdentityProbe()
    timeline = Timeline(1 << 10)
    with Store(tmp_path / "s.db") as store:
        store.annotate_channel = calibration.annotator(table)
        sampler = Sampler([probe], timeline, store, TimeAnchor())
        sampler.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and store.channels()["scpi:hioki"].instrument is None:
            time.sleep(0.01)
        sampler.stop()
        stored = store.channels()["scpi:hioki"]
    assert stored.instrument == IDN
    assert stored.calibration is not None and stored.calibration.certificate == "C-9"
    assert timeline.channels["scpi:hioki"].instrument == IDN
