"""The WT300 parser: fixture cases per model/firmware, and garbage that must never escape or lie."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerd.probes.wt300 import parser
from powerd.probes.wt300.parser import BadFrame, Frame, Item, Layout

CASES = sorted(p for p in (Path(__file__).parent / "testdata").iterdir() if p.is_dir())
OTHER_PARSERS: dict[str, Callable[[bytes], object]] = {
    "idn": parser.parse_idn,
    "error": parser.parse_error,
    "int": parser.parse_int,
    "range": parser.parse_range,
    "rate": parser.parse_rate,
    "integ": parser.parse_integ_state,
    "cf": parser.parse_crest_factor,
    "bool": parser.parse_bool,
}
DUP = Layout((Item("P", 1), Item("WH", 1)), (2, 2))
GOOD_DUP = b"4.0000E+01,4.0000E+01,1.46678E-03,1.46678E-03\r\n"


def _layout(spec: list[list[Any]]) -> Layout:
    return Layout(tuple(Item(f, int(e)) for f, e, _ in spec), tuple(int(n) for *_, n in spec))


def _plain(result: object) -> object:
    if isinstance(result, parser.Identity):
        return [result.maker, result.model, result.serial, result.firmware]
    if isinstance(result, tuple):
        return list(result)
    return result


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fixture_case(case: Path) -> None:
    spec = json.loads((case / "case.json").read_text())
    layout = _layout(spec["layout"])
    for frame in spec["frames"]:
        got = parser.parse_values(frame["reply"].encode("latin-1"), layout)
        if "bad" in frame:
            assert isinstance(got, BadFrame), frame["reply"]
            assert frame["bad"] in got.reason
            continue
        assert isinstance(got, Frame), (frame["reply"], got)
        values = {it.command_arg: v for it, v in got.values.items()}
        assert set(values) == set(frame["expect"])
        for key, want in frame["expect"].items():
            if isinstance(want, str):
                assert values[key].marker == want and math.isnan(values[key].si)
            else:
                assert values[key].marker is None
                assert values[key].si == pytest.approx(want, rel=1e-12, abs=1e-15)
    for other in spec.get("others", []):
        got_other = OTHER_PARSERS[other["kind"]](other["reply"].encode("latin-1"))
        assert _plain(got_other) == other["expect"], other


def test_wh_is_converted_to_joules_with_its_step() -> None:
    got = parser.parse_values(
        b"1.0000E+01,1.23456E+00\n", Layout((Item("P", 1), Item("WH", 1)), (1, 1))
    )
    assert isinstance(got, Frame)
    wh = got.values[Item("WH", 1)]
    assert wh.si == pytest.approx(1.23456 * 3600)
    assert wh.lsd_si == pytest.approx(1e-5 * 3600)


ALL_PARSERS: list[Callable[[bytes], object]] = [
    *OTHER_PARSERS.values(),
    lambda b: parser.parse_values(b, DUP),
    lambda b: parser.parse_values(b, Layout((Item("P", 1),), (1,))),
]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_no_garbage_escapes_any_parser(data: bytes) -> None:
    for parse in ALL_PARSERS:
        parse(data)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='0123456789.,+-EeNAIF \r\n:;"', max_size=80))
def test_no_number_like_garbage_escapes(text: str) -> None:
    data = text.encode()
    for parse in ALL_PARSERS:
        parse(data)
    got = parser.parse_values(data, DUP)
    if isinstance(got, Frame):
        assert all(math.isnan(v.si) == (v.marker is not None) for v in got.values.values())


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    """A good duplicated frame with one bit flipped, one byte dropped, or its tail cut."""
    out = bytearray(GOOD_DUP)
    kind = draw(st.sampled_from(["flip", "drop", "cut"]))
    i = draw(st.integers(0, len(out) - 1))
    if kind == "flip":
        out[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "drop":
        del out[i]
    else:
        del out[max(1, i) :]
    return bytes(out)


@settings(max_examples=500, deadline=None)
@given(corrupted())
def test_a_corrupted_frame_is_rejected_or_unchanged(data: bytes) -> None:
    """With every item read twice, one fault per frame can never produce a wrong number."""
    good = parser.parse_values(GOOD_DUP, DUP)
    got = parser.parse_values(data, DUP)
    assert isinstance(good, Frame)
    if isinstance(got, Frame):
        assert {k: v.si for k, v in got.values.items()} == {k: v.si for k, v in good.values.items()}
