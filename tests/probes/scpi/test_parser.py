"""SCPI reply parsing: per-model fixtures, garbage from hypothesis, error and status replies.

Each ``testdata/<model>-<firmware>[-sim]/case.json`` lists polls (the raw replies of one poll and
the power they must give, or the reason they must be rejected); a regression is a new folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerd.probes.scpi.parser import (
    Reading,
    Reject,
    number_step,
    parse_error,
    parse_reading,
    parse_ready,
)
from powerd.probes.scpi.profiles import PROFILES

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p for p in TESTDATA.iterdir() if p.is_dir())


def _polls() -> list[tuple[str, dict[str, Any], int]]:
    out = []
    for case in CASES:
        spec = json.loads((case / "case.json").read_text())
        for k, poll in enumerate(spec["polls"]):
            out.append((case.name, {**poll, "profile": spec["profile"]}, k))
    return out


POLLS = _polls()


@pytest.mark.parametrize(("case", "poll", "k"), POLLS, ids=[f"{c}#{k}" for c, _, k in POLLS])
def test_fixture(case: str, poll: dict[str, Any], k: int) -> None:
    profile = PROFILES[poll["profile"]]
    mode = profile.modes[poll["mode"]]
    got = parse_reading([r.encode("latin-1") for r in poll["replies"]], profile, mode)
    if "reject" in poll:
        assert isinstance(got, Reject), got
        assert poll["reject"] in got.reason
    else:
        assert isinstance(got, Reading), got
        assert got.power_w == pytest.approx(poll["power_w"], rel=1e-9)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(PROFILES)),
    st.lists(st.binary(max_size=120), min_size=1, max_size=3),
)
def test_garbage_never_raises_and_never_gives_a_non_finite_power(
    name: str, replies: list[bytes]
) -> None:
    profile = PROFILES[name]
    for mode in profile.modes.values():
        got = parse_reading(replies[: len(mode.queries)] * len(mode.queries), profile, mode)
        got2 = parse_reading(replies, profile, mode, strict=False)
        for g in (got, got2):
            assert isinstance(g, Reading | Reject)
            if isinstance(g, Reading):
                assert math.isfinite(g.power_w)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='+-0123456789.,;E eUIP:"', max_size=60))
def test_number_like_garbage_never_raises(text: str) -> None:
    for profile in PROFILES.values():
        for mode in profile.modes.values():
            parse_reading([text.encode()] * len(mode.queries), profile, mode)
    parse_error(text.encode())
    parse_ready(text.encode(), 2)


def test_error_replies_of_each_dialect() -> None:
    assert parse_error(b'-113,"Undefined header"') == (-113, "Undefined header")
    assert parse_error(b"-113  Undefined header") == (-113, "Undefined header")
    assert parse_error(b'+0,"No error"') == (0, "No error")
    assert parse_error(b"32") == (32, "command error")
    assert parse_error(b"\xff\xfe") is None


def test_ready_register() -> None:
    assert parse_ready(b"3", 2) is True
    assert parse_ready(b"1", 2) is False
    assert parse_ready(b"x", 2) is None


def test_number_step_reads_the_last_digit() -> None:
    assert number_step("4.998") == pytest.approx(1e-3)
    assert number_step("+5.000000E+00") == pytest.approx(1e-6)
    assert number_step("+500.00E-3") == pytest.approx(1e-5)
    assert number_step("12") == 1.0


def test_doubled_sign_is_not_an_event_register() -> None:
    assert parse_error(b"++0") is None
