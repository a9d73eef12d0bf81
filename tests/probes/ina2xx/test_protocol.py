"""The ``$PWR`` parser: captured fixtures, hypothesis garbage, single-bit corruption, chunking.

Fixtures live in ``testdata/<case>/`` (named by chip and logger firmware): ``capture.bin`` is the
byte stream, ``expected.json`` the lines and rejections it must give. A regression is a new folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerd.probes.ina2xx.protocol import (
    LineParser,
    checksum,
    format_line,
    parse_bytes,
    pwr_line,
)

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p for p in TESTDATA.iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fixture(case: Path) -> None:
    expected = json.loads((case / "expected.json").read_text())
    parsed = parse_bytes((case / "capture.bin").read_bytes())
    assert len(parsed) == expected["lines"]
    for key in ("bad_checksum", "garbled", "partial"):
        assert getattr(parsed.counts, key) == expected[key], key
    assert len(parsed.info) == expected["info"]
    assert len(parsed.errors) == expected.get("errors", 0)
    if "first" in expected:
        f = expected["first"]
        assert int(parsed.seq[0]) == f["seq"] and int(parsed.t_us[0]) == f["t_us"]
        assert parsed.bus_v[0] == pytest.approx(f["bus_v"])
        assert parsed.current_a[0] == pytest.approx(f["current_a"])
        assert parsed.power_w[0] == pytest.approx(f["power_w"])
    if "power_w_sum" in expected:
        assert float(parsed.power_w.sum()) == pytest.approx(expected["power_w_sum"], rel=1e-9)


def test_checksum_is_nmea_xor() -> None:
    # NMEA's classic example sentence and its checksum.
    body = b"GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,"
    assert checksum(body) == 0x76
    assert (
        format_line("PWR,0,0,0,0,0")
        == b"$PWR,0,0,0,0,0*" + f"{checksum(b'PWR,0,0,0,0,0'):02X}".encode() + b"\r\n"
    )


def test_units_are_converted_once() -> None:
    parsed = parse_bytes(pwr_line(7, 123, 5001.25, -2500, 1234567))
    assert parsed.bus_v[0] == pytest.approx(5.00125)
    assert parsed.current_a[0] == pytest.approx(-0.0025)
    assert parsed.power_w[0] == pytest.approx(1.234567)
    assert int(parsed.seq[0]) == 7 and int(parsed.t_us[0]) == 123


def test_lowercase_checksum_and_bare_newline_are_accepted() -> None:
    line = format_line("PWR,1,2,3,4,5").replace(b"\r\n", b"\n")
    lower = line[:-3] + line[-3:-1].lower() + b"\n"
    assert len(parse_bytes(line)) == 1 and len(parse_bytes(lower)) == 1


def test_two_lines_run_together_keep_the_second() -> None:
    a, b = pwr_line(1, 1000, 5000, 1000, 5000), pwr_line(2, 2000, 5000, 1000, 5000)
    parsed = parse_bytes(a[:20] + b)
    assert len(parsed) == 1 and int(parsed.seq[0]) == 2
    assert parsed.counts.partial == 1


def test_out_of_range_and_non_numeric_fields_are_garbled() -> None:
    bad = [
        format_line("PWR,4294967296,0,1,1,1"),
        format_line("PWR,1,2,nan,1,1"),
        format_line("PWR,1,2,1e3,1,1"),
        format_line("PWR,1,2,3,4"),
        format_line("PWR,-1,2,3,4,5"),
        format_line("XYZ,1,2,3,4,5"),
        format_line("PWRI,novalue"),
    ]
    parsed = parse_bytes(b"".join(bad))
    assert len(parsed) == 0 and parsed.counts.garbled == len(bad)


def test_info_and_error_lines() -> None:
    data = format_line("PWRI,fw=x-1,period_us=1000,win_us=1000") + format_line("PWRE,i2c nack")
    parsed = parse_bytes(data)
    assert parsed.info == [{"fw": "x-1", "period_us": "1000", "win_us": "1000"}]
    assert parsed.errors == ["i2c nack"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_garbage_never_raises(data: bytes) -> None:
    parsed = parse_bytes(data)
    assert parsed.seq.size == parsed.power_w.size
    assert bool(np.isfinite(parsed.power_w).all())
    LineParser().feed(data)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**32 - 1),
            st.integers(0, 36000),
            st.integers(-800_000, 800_000),
            st.integers(-30_000_000, 30_000_000),
        ),
        min_size=1,
        max_size=20,
    ),
    st.data(),
)
def test_any_single_bit_flip_is_rejected(
    fields: list[tuple[int, int, int, int]], data: st.DataObject
) -> None:
    lines = [(k, *x) for k, x in enumerate(fields)]
    stream = bytearray(b"".join(pwr_line(*x) for x in lines))
    pos = data.draw(st.integers(0, len(stream) - 1))
    bit = data.draw(st.integers(0, 7))
    stream[pos] ^= 1 << bit
    parsed = parse_bytes(bytes(stream))
    good = {x[:2] for x in lines}
    got = set(zip(parsed.seq.tolist(), parsed.t_us.tolist(), strict=True))
    # The corrupted line is dropped (or, if the flip hit a newline, its neighbour too);
    # nothing that comes out differs from what was sent.
    assert got <= good
    assert len(parsed) >= len(lines) - 2
    values = {(x[0], x[1]): x[4] / 1e6 for x in lines}
    for s, t, p in zip(
        parsed.seq.tolist(), parsed.t_us.tolist(), parsed.power_w.tolist(), strict=True
    ):
        assert p == pytest.approx(values[(s, t)])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 200), min_size=1, max_size=30))
def test_chunking_does_not_change_the_result(cuts: list[int]) -> None:
    stream = b"".join(pwr_line(k, 1000 * k, 5000, 1000 * k, 5000 * k) for k in range(40))
    whole = parse_bytes(stream)
    parser = LineParser()
    seqs: list[int] = []
    pos = 0
    for c in cuts:
        seqs += parser.feed(stream[pos : pos + c]).seq.tolist()
        pos += c
    seqs += parser.feed(stream[pos:]).seq.tolist()
    assert seqs == whole.seq.tolist()


def test_the_readme_example_line_is_valid() -> None:
    readme = (Path(__file__).parents[3] / "probes" / "ina2xx" / "README.md").read_text()
    example = next(x for x in readme.splitlines() if x.startswith("$PWR,41,"))
    parsed = parse_bytes(example.encode() + b"\r\n")
    assert len(parsed) == 1 and parsed.counts.rejected == 0
    assert parsed.power_w[0] == pytest.approx(1.0) and parsed.bus_v[0] == pytest.approx(5.00125)
