"""The pure decoders: documented examples, fixture cases, lost and garbled bytes, and garbage.

Fixture cases live in ``testdata/<model>_<source>_<case>/`` (``input.bin``, ``case.json``,
``expected.json``); a regression is a new folder, decoded whole and in every split.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powerd.probes.lpm01a.parse import (
    MAX_PLAUSIBLE_A,
    AsciiDecoder,
    BinaryDecoder,
    Slots,
    classify_line,
    parse_timestamp_line,
)
from powerd.probes.lpm01a.sim import ascii_token, encode_binary, timestamp_frame

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p for p in TESTDATA.iterdir() if p.is_dir())


@dataclass
class Total:
    """Everything several feeds produced, joined."""

    slots: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    events: list[tuple[int, str, int, int]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    bad: int = 0
    lost: int = 0
    ended: bool = False
    rest: bytes = b""


def run(dec: AsciiDecoder | BinaryDecoder, chunks: list[bytes]) -> Total:
    tot = Total()
    for chunk in chunks:
        out = dec.feed(chunk)
        tot.slots += out.slot.tolist()
        tot.values += out.value.tolist()
        tot.events += [(e.slot, e.kind, e.device_ms, e.load_pct) for e in out.events]
        tot.texts += [e.text for e in out.events]
        tot.bad += out.bad
        tot.lost += out.lost
        tot.ended |= out.ended
        tot.rest += out.rest
    return tot


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def decoder(meta: dict[str, Any]) -> AsciiDecoder | BinaryDecoder:
    if meta["format"] == "bin":
        return BinaryDecoder(meta["rate_hz"], meta["multiplier"], meta["max_value"])
    return AsciiDecoder(meta["rate_hz"], meta["multiplier"], meta["max_value"])


# --- documented examples -------------------------------------------------------------------


def test_the_firmware_examples_decode_to_640_9_microamps() -> None:
    """The help text: ``52A0 <=> (2A0)16 x 16^-5 = 640.9uA`` and ``6409-07 <=> 640.9uA``."""
    b = BinaryDecoder(1000, 1.0)
    b.force_sync()
    out = b.feed(b"\x52\xa0\x52\xa0\xf0\xf4\xff\xff")
    assert out.value.tolist() == pytest.approx([640.9e-6] * 2, rel=2e-4)
    assert out.ended
    a = AsciiDecoder(1000, 1.0, 1.0)
    assert a.feed(b"6409-07\r\n").value.tolist() == pytest.approx([640.9e-6], rel=1e-12)


def test_values_are_converted_once_to_watts_with_the_supply_voltage() -> None:
    b = BinaryDecoder(1000, 3.3)
    b.force_sync()
    assert b.feed(b"\x52\xa0\xf0\xf4\xff\xff").value[0] == pytest.approx(640.9e-6 * 3.3, 2e-4)


@pytest.mark.parametrize(
    ("line", "kind", "text"),
    [
        (b"PowerShield > ack htc\r", "ack", "htc"),
        (b"PowerShield > ack volt get 3292-03", "ack", "volt get 3292-03"),
        (b"PowerShield > error: freq 7k", "error", "freq 7k"),
        (b"PowerShield > error freq 7k", "error", "freq 7k"),
        (b"PowerShield > Error detail: argument out of range", "detail", "argument out of range"),
        (b"PowerShield > Acquisition completed", "completed", "Acquisition completed"),
        (b"PowerShiald > ack start", "ack", "start"),  # a damaged prompt
        (b"6409-07", "data", "6409-07"),
        (b"TimeStamp: 001s 250ms, buff 07%", "timestamp", "TimeStamp: 001s 250ms, buff 07%"),
        (b"\r", "empty", ""),
        (b"hello", "text", "hello"),
    ],
)
def test_reply_lines_are_classified(line: bytes, kind: str, text: str) -> None:
    r = classify_line(line)
    assert (r.kind, r.text) == (kind, text)


def test_timestamp_lines_as_mlperf_tiny_reads_them() -> None:
    assert parse_timestamp_line(b"TimeStamp: 001s 250ms, buff 07%") == (1250, 7)
    assert parse_timestamp_line(b"TimeStamp:>012s 000ms, buff 99%") == (12000, 99)
    assert parse_timestamp_line(b"TimeStamp: garbled") is None


def test_slots_calibrate_on_the_first_timestamp_then_detect_loss() -> None:
    s = Slots(1000)
    s.next = 500
    assert s.timestamp(7_000) == (0, 0, True)  # any epoch: calibrates
    s.next = 1000
    assert s.timestamp(7_500) == (0, 0, True)  # 500 slots in 500 ms; the cadence is 500 ms
    s.next = 1200
    assert s.timestamp(8_000) == (300, 0, True)  # 1500 expected: 300 lost
    assert s.next == 1500
    s.next = 2600
    assert s.timestamp(8_500) == (0, 599, True)  # more than the clock allows: reported, kept
    assert s.timestamp(8_777)[2] is False  # off the cadence: a damaged frame, refused
    assert s.timestamp(8_500 + 256 * 500)[2] is False  # a flipped high bit, refused
    assert s.timestamp(9_500)[2] is True  # two intervals later: fine


# --- fixture cases ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fixture_case_whole_and_in_every_split(case: Path) -> None:
    data = (case / "input.bin").read_bytes()
    meta = json.loads((case / "case.json").read_text())
    want = json.loads((case / "expected.json").read_text())
    rng = random.Random(case.name)
    splits = [[], *[[k] for k in range(len(data))], *[rng.sample(range(len(data)), 5)] * 20]
    for cuts in splits:
        got = run(decoder(meta), split(data, cuts))
        assert got.slots == want["slots"], cuts
        assert got.values == pytest.approx(want["values"], rel=1e-12), cuts
        assert [list(e) for e in got.events if e[1] != "text"] == want["events"], cuts
        assert (got.bad, got.lost, got.ended) == (want["bad"], want["lost"], want["ended"]), cuts
        assert got.rest.decode() == want["rest"], cuts


# --- lost, garbled and shifted bytes ---------------------------------------------------------


def stream(amps: np.ndarray, every: int, rate_hz: int = 1000) -> tuple[bytes, list[int]]:
    """A binary acquisition: a timestamp every ``every`` samples, the end frame; and the byte
    offset of each sample, for the tests that damage it."""
    parts: list[bytes] = []
    offsets: list[int] = []
    size = 0
    for i in range(0, amps.size, every):
        f = timestamp_frame(i * 1000 // rate_hz)
        parts.append(f)
        size += len(f)
        chunk = encode_binary(amps[i : i + every])
        offsets += range(size, size + len(chunk), 2)
        parts.append(chunk)
        size += len(chunk)
    parts.append(b"\xf0\xf4\xff\xff")
    return b"".join(parts), offsets


def truth(amps: np.ndarray) -> np.ndarray:
    """What the stream carries: the currents after the 12-bit encoding."""
    d = BinaryDecoder(1000, 1.0, max_a=1.0)
    d.force_sync()
    return d.feed(encode_binary(amps) + b"\xf0\xf4\xff\xff").value


def check_only_true_values(got: Total, want: np.ndarray) -> None:
    slots = np.asarray(got.slots, np.int64)
    assert bool((np.diff(slots) > 0).all())
    assert slots.size == 0 or int(slots[-1]) < want.size
    assert np.asarray(got.values) == pytest.approx(want[slots], rel=1e-12)


currents = st.lists(
    st.floats(min_value=-7.0, max_value=np.log10(0.05)), min_size=50, max_size=600
).map(lambda xs: 10.0 ** np.asarray(xs))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    amps=currents,
    every=st.integers(min_value=10, max_value=200),
    drops=st.lists(st.integers(min_value=0), min_size=1, max_size=3),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
def test_dropped_bytes_never_yield_a_wrong_value(
    amps: np.ndarray, every: int, drops: list[int], cuts: list[int]
) -> None:
    data, _ = stream(amps, every)
    # at most one lost byte per two timestamp periods (two losses within a few bytes can restore
    # the alignment around one plausible wrong word: no decoder can see that); the opening
    # timestamp and the end frame stay whole
    period = 9 + 2 * every
    body = bytearray(data[9:-4])
    blocks = max(1, len(body) // (2 * period))
    where: dict[int, int] = {}
    for x in drops:
        where.setdefault(x % blocks, (x % blocks) * 2 * period + x % min(period, len(body)))
    for d in sorted(where.values(), reverse=True):
        del body[d]
    damaged = data[:9] + bytes(body) + data[-4:]
    dec = BinaryDecoder(1000, 1.0)
    got = run(dec, split(damaged, cuts))
    check_only_true_values(got, truth(amps))
    assert got.ended and dec.held == 0
    assert got.bad + got.lost >= 1 or len(got.slots) < amps.size


@settings(max_examples=100, deadline=None)
@given(amps=currents, every=st.integers(min_value=10, max_value=200), seed=st.integers(0, 99))
def test_a_corrupted_word_is_dropped_and_costs_at_most_its_interval(
    amps: np.ndarray, every: int, seed: int
) -> None:
    data, offsets = stream(amps, every)
    p = random.Random(seed).choice(offsets)
    damaged = data[:p] + b"\x1f\xff" + data[p + 2 :]  # implausible: 4095 / 16 A
    got = run(BinaryDecoder(1000, 1.0), [damaged])
    check_only_true_values(got, truth(amps))
    assert got.bad >= 1 and got.lost >= 1
    # at most one timestamp interval is given up (once the shield's timestamps are known to sit
    # exactly on the grid, an interval with any damage is dropped whole)
    assert len(got.slots) >= amps.size - max(every, 2 * 24) - 1


def test_a_steady_signal_shifted_by_a_lost_byte_is_caught_at_the_next_timestamp() -> None:
    """Word 0x4754 (28.6 mA) shifted by one byte reads 0x5447 (1.04 mA): plausible, so only the
    next timestamp frame, found one byte off, shows the shift; nothing after the loss is used."""
    amps = np.full(300, 0x754 / 16.0**4)
    data, offsets = stream(amps, 100)
    p = offsets[150]
    got = run(BinaryDecoder(1000, 1.0), [data[:p] + data[p + 1 :]])
    check_only_true_values(got, truth(amps))
    # confirmed up to the timestamp at slot 100; everything after it was held and is dropped;
    # the timestamp at slot 200, found one byte off, restores the alignment and the count
    assert got.slots == [*range(100), *range(200, 300)]
    assert got.lost == 100 and got.bad >= 1


def test_even_byte_loss_is_re_anchored_by_the_next_timestamp() -> None:
    amps = 10.0 ** np.linspace(-6, -2, 300)
    data, offsets = stream(amps, 100)
    p = offsets[130]
    got = run(BinaryDecoder(1000, 1.0), [data[:p] + data[p + 20 :]])  # 10 samples gone
    # the loss leaves no trace until the timestamp at slot 200: the 60 samples before it sit 10
    # slots early (10 ms at 1 kHz), the count then jumps and later samples are right again
    assert got.lost == 10
    slots = np.asarray(got.slots)
    assert slots.tolist() == [*range(190), *range(200, 300)]
    assert np.asarray(got.values)[slots >= 200] == pytest.approx(truth(amps)[200:], rel=1e-12)


def test_words_wait_for_confirmation_then_flush_hands_them_out() -> None:
    amps = np.full(50, 0x754 / 16.0**4)  # shifted words 0x5447 are plausible too
    dec = BinaryDecoder(1000, 1.0)
    out = dec.feed(timestamp_frame(0) + encode_binary(amps))
    assert len(out) == 0 and dec.held == 49  # nothing confirms a steady signal yet (the
    # last word waits in the carry: a frame could start in its low byte)
    assert len(dec.flush()) == 50 and dec.held == 0


def test_text_before_the_first_timestamp_is_not_data() -> None:
    dec = BinaryDecoder(1000, 1.0)
    got = run(
        dec,
        [
            b"\r\nPowerShield > hello\r\n" + timestamp_frame(0),
            encode_binary(np.full(5, 1e-3)) + b"\xf0\xf4\xff\xff",
        ],
    )
    assert len(got.slots) == 5 and got.slots[0] == 0
    assert any("hello" in t for t in got.texts)


def test_force_sync_decodes_a_stream_without_an_opening_timestamp() -> None:
    dec = BinaryDecoder(1000, 1.0)
    assert len(dec.feed(b"\r\n" + encode_binary(np.full(3, 1e-3)))) == 0
    dec.force_sync()
    assert len(dec.feed(b"\xf0\xf4\xff\xff")) == 3


def test_ascii_stream_with_tokens_timestamps_and_the_end() -> None:
    toks = [ascii_token(x) for x in (1e-3, 2.5e-6, 3.3e-2)]
    data = (
        "\r\n".join(
            [
                "TimeStamp: 000s 000ms, buff 00%",
                *toks,
                "PowerShield > Acquisition completed",
                "PowerShield > ack hrc",
            ]
        )
        + "\r\n"
    ).encode()
    got = run(AsciiDecoder(1000, 1.0, 1.0), [data[:11], data[11:]])
    assert got.values == pytest.approx([1e-3, 2.5e-6, 3.3e-2], rel=1e-3)
    assert got.ended and b"ack hrc" in got.rest


# --- garbage ---------------------------------------------------------------------------------


def check_sane(got: Total, max_value: float) -> None:
    slots = np.asarray(got.slots, np.int64)
    values = np.asarray(got.values, np.float64)
    assert bool((np.diff(slots) > 0).all())
    assert bool(np.isfinite(values).all())
    assert bool(((values >= 0) & (values <= max_value)).all())


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=2000),
    cuts=st.lists(st.integers(min_value=0), max_size=8),
    synced=st.booleans(),
)
def test_binary_garbage_never_raises(data: bytes, cuts: list[int], synced: bool) -> None:
    dec = BinaryDecoder(100_000, 3.3)
    if synced:
        dec.force_sync()
    got = run(dec, split(data, cuts))
    got.slots += dec.flush().slot.tolist()
    check_sane(got, MAX_PLAUSIBLE_A * 3.3)


ascii_bytes = st.lists(
    st.sampled_from(
        [
            b"6409-07",
            b"\r\n",
            b"\n",
            b"TimeStamp: 001s 000ms, buff 00%",
            b"PowerShield > ",
            b"ack ",
            b"error",
            b"Error detail: x",
            b"Acquisition completed",
            b"9",
            b"-",
            b"+",
            b"\x00",
            b"\xff",
            b"overcurrent",
            b"12345",
            b"TimeStamp: 999s 999ms, buff 99%",
        ]
    )
    | st.binary(max_size=12),
    max_size=80,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=ascii_bytes, cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_ascii_garbage_never_raises(data: bytes, cuts: list[int]) -> None:
    got = run(AsciiDecoder(1000, 3.3, 0.33), split(data, cuts))
    check_sane(got, 0.33 * 3.3)
