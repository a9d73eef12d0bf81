"""Contract 1: every rule of marker validation, with the reason a harness author would need."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerd.agent.wire import (
    WireError,
    decode_block,
    decode_marker,
    encode_block,
    error_message,
    markers_topic,
    parse_marker,
)
from powerd.errors import MarkerError

GOOD: dict[str, Any] = {
    "v": 1,
    "run": "r-1.a:b_c",
    "phase": "inference",
    "event": "end",
    "t_ns": 1_800_000_000_000_000_000,
    "seq": 7,
    "count": 1000,
    "unit": "token",
    "trial": 2,
    "meta": {"model": "llama", "batch": 8},
}


def test_full_marker_round_trips() -> None:
    m = parse_marker(GOOD)
    assert (m.run, m.phase, m.event, m.seq, m.count, m.unit, m.trial) == (
        "r-1.a:b_c",
        "inference",
        "end",
        7,
        1000,
        "token",
        2,
    )
    assert parse_marker(m.to_json()) == m
    assert decode_marker(json.dumps(GOOD).encode()) == m


def test_minimal_marker_defaults() -> None:
    m = parse_marker({"v": 1, "run": "r", "phase": "p", "event": "begin", "seq": 0})
    assert m.t_ns is None and m.count is None and m.unit == "inference" and m.trial == 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": 2}, "v must be 1"),
        ({"v": True}, "v must be 1"),
        ({"run": ""}, "run must be"),
        ({"run": "a" * 129}, "run must be"),
        ({"run": "has space"}, "run must be"),
        ({"phase": 3}, "phase must be"),
        ({"event": "start"}, "event must be"),
        ({"seq": -1}, "seq must be"),
        ({"seq": 1.5}, "seq must be an integer"),
        ({"seq": None}, "seq must be an integer"),
        ({"t_ns": "now"}, "t_ns must be an integer"),
        ({"count": -3}, "count must be"),
        ({"count": True}, "count must be an integer"),
        ({"trial": -1}, "trial must be"),
        ({"unit": ""}, "unit must be"),
        ({"meta": [1]}, "meta must be a JSON object"),
        ({"meta": {"k": {"nested": 1}}}, "meta['k'] must be"),
        ({"cout": 5}, "unknown key(s) cout"),
    ],
)
def test_invalid_markers_are_rejected_with_a_reason(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(MarkerError, match=None) as info:
        parse_marker(GOOD | change)
    assert reason in str(info.value)


def test_seq_is_optional_and_count_and_device_belong_on_their_edge() -> None:
    no_seq = {k: v for k, v in GOOD.items() if k != "seq"}
    assert parse_marker(no_seq).seq is None
    assert "seq" not in parse_marker(no_seq).to_json()
    begin = {k: v for k, v in GOOD.items() if k != "count"} | {"event": "begin"}
    assert parse_marker(begin | {"device": "edge-01"}).device == ("edge-01",)
    two = parse_marker(begin | {"device": ["edge-01", "local", "edge-01"]})
    assert two.device == ("edge-01", "local")
    assert two.to_json()["device"] == ["edge-01", "local"]
    for bad in ([], "", ["a b"], [1], {"x": 1}):
        with pytest.raises(MarkerError, match="device"):
            parse_marker(begin | {"device": bad})
    with pytest.raises(MarkerError, match="device belongs on the begin"):
        parse_marker(GOOD | {"device": "edge-01"})
    with pytest.raises(MarkerError, match="count belongs on the end marker"):
        parse_marker(GOOD | {"event": "begin"})


def test_non_json_and_non_object() -> None:
    with pytest.raises(MarkerError, match="not UTF-8 JSON"):
        decode_marker(b"\xff{")
    with pytest.raises(MarkerError, match="not UTF-8 JSON"):
        decode_marker("{'single': 'quotes'}")
    with pytest.raises(MarkerError, match="must be a JSON object"):
        decode_marker("[1, 2]")


def test_error_message_and_topics() -> None:
    body = error_message("bad", b"x" * 2000)
    assert body["error"] == "bad" and len(body["message"]) == 512
    assert markers_topic("edge-01") == "powerd/v1/markers/edge-01"


# --- blocks -------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 2**40), min_size=1, max_size=200),
    st.integers(0, 2**62),
    st.integers(0, 2**32 - 1),
)
def test_block_round_trip(steps: list[int], t0: int, seq: int) -> None:
    t = (t0 + np.cumsum(np.array(steps, np.int64))).astype(np.int64)
    v = np.linspace(-5, 5, t.size)
    msg = decode_block(encode_block(7, seq, "edge/sim:x", t, v))
    assert (msg.boot_ns, msg.seq, msg.channel) == (7, seq, "edge/sim:x")
    assert np.array_equal(msg.t_ns, t) and np.array_equal(msg.value, v)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_blocks_raise_wire_error_only(data: bytes) -> None:
    with contextlib.suppress(WireError):
        decode_block(data)


def test_truncated_block_is_rejected() -> None:
    t = np.arange(10, dtype=np.int64)
    payload = encode_block(1, 1, "a:b", t, t.astype(np.float64))
    with pytest.raises(WireError):
        decode_block(payload[:-3])


def test_non_finite_numbers_are_not_json() -> None:
    with pytest.raises(MarkerError, match="NaN is not valid JSON"):
        decode_marker(
            '{"v": 1, "run": "r", "phase": "p", "event": "begin", "seq": 1, "meta": {"x": NaN}}'
        )
    with pytest.raises(MarkerError, match="finite"):
        parse_marker(GOOD | {"meta": {"x": float("inf")}})
