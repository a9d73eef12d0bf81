"""The pure side of the nvml probe: unit conversion, field values, the 1 s-average rule, learning
the counter's period, stamping its updates, and the spec. No library, no clock.

Field-value cases live in ``testdata/<case>/field.json`` (raw record and expected reading); a
regression case is a new folder, not new code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from powerd.errors import SpecError
from powerd.probes.nvml import NvmlSpec, parse_spec
from powerd.probes.nvml.readings import (
    ARCH_AMPERE,
    ARCH_UNKNOWN,
    ARCH_VOLTA,
    RawField,
    UpdateTracker,
    energy_j,
    field_power,
    learn_period_ns,
    power_usage_averaged,
    power_w,
)

TESTDATA = Path(__file__).with_name("testdata")
CASES = sorted(p.name for p in TESTDATA.iterdir() if (p / "field.json").exists())
T0 = 1_795_000_000_000_000_000


@pytest.mark.parametrize("case", CASES)
def test_field_cases(case: str) -> None:
    data = json.loads((TESTDATA / case / "field.json").read_text())
    got = field_power(RawField(**data["raw"]))
    want = data["expected"]
    assert got.power_w == (pytest.approx(want["power_w"]) if want["power_w"] is not None else None)
    assert (got.nvml_return, got.source_t_ns, got.reason) == (
        want["nvml_return"],
        want["source_t_ns"],
        want["reason"],
    )


def test_units_and_not_available_is_never_zero() -> None:
    assert energy_j(123_456) == 123.456 and energy_j(0) == 0.0
    assert power_w(250_000) == 250.0
    assert power_w(0xFFFFFFFF) is None
    assert energy_j(0xFFFFFFFFFFFFFFFF) is None


@pytest.mark.parametrize(
    ("arch", "name", "averaged"),
    [
        (ARCH_VOLTA, "Tesla V100-SXM2-16GB", False),
        (ARCH_AMPERE, "NVIDIA A100-SXM4-40GB", False),  # GA100: instantaneous
        (ARCH_AMPERE, "NVIDIA A30", False),  # GA100 too
        (ARCH_AMPERE, "NVIDIA RTX A3000 Laptop GPU", True),
        (ARCH_AMPERE, "NVIDIA A10", True),
        (9, "NVIDIA H100 80GB HBM3", True),
        (None, "whatever", None),
        (ARCH_UNKNOWN, "whatever", None),
    ],
)
def test_power_usage_is_a_one_second_average_on_ampere_and_later_except_ga100(
    arch: int | None, name: str, averaged: bool | None
) -> None:
    assert power_usage_averaged(arch, name) is averaged


def test_learned_period_is_robust_to_a_missed_update() -> None:
    period = 100_000_000
    ups = [T0 + k * period for k in (0, 1, 2, 4, 5, 6)]  # the read loop stalled over update 3
    brackets = [(u - 400_000, u + 600_000) for u in ups]
    assert learn_period_ns(brackets) == period
    assert learn_period_ns(brackets[:2]) is None


def simulate(
    tracker: UpdateTracker,
    true_period_ns: int,
    phase_ns: int,
    poll_ns: int,
    n_reads: int,
    jitter_ns: int = 0,
    seed: int = 1,
) -> tuple[list[tuple[int, int, int, int]], int]:
    """Reads at a poll interval; returns (after, before, stamp, true update) per seen change."""
    rng = np.random.default_rng(seed)
    reads = T0 + np.cumsum(poll_ns + rng.integers(0, jitter_ns + 1, n_reads))
    seen = []
    prev_r = int(reads[0])
    prev_k = (prev_r - phase_ns) // true_period_ns
    for r in reads[1:].tolist():
        k = (r - phase_ns) // true_period_ns
        if k != prev_k:
            stamp = tracker.observe(prev_r, r)
            seen.append((prev_r, r, stamp, phase_ns + k * true_period_ns))
        prev_r, prev_k = r, k
    return seen, tracker.resyncs


def test_tracker_pins_updates_far_inside_the_read_bracket() -> None:
    true_period = 100_000_000
    tracker = UpdateTracker(100_200_000)  # learned 0.2 % long
    seen, _ = simulate(tracker, true_period, 37_000_000, 48_000_000, 2000, jitter_ns=300_000)
    errors = np.array([stamp - truth for _, _, stamp, truth in seen])
    assert all(after < stamp <= before for after, before, stamp, _ in seen)
    # The bracket is 48 ms wide; two reads per period slide 4 ms over the update grid.
    assert float(np.abs(errors[50:]).max()) < 4_000_000
    assert tracker.period_ns == pytest.approx(true_period, abs=50_000)


def test_tracker_follows_a_grid_that_jumps_and_never_leaves_the_bracket() -> None:
    tracker = UpdateTracker(100_000_000)
    simulate(tracker, 100_000_000, 10_000_000, 48_000_000, 300)
    seen, resyncs = simulate(tracker, 100_000_000, 60_000_000, 48_000_000, 300, seed=2)
    assert resyncs >= 1
    assert all(after < stamp <= before for after, before, stamp, _ in seen)
    errors = np.array([stamp - truth for _, _, stamp, truth in seen])
    assert float(np.abs(errors[-50:]).max()) < 4_000_000


def test_tracker_rejects_an_empty_bracket() -> None:
    with pytest.raises(ValueError, match="bracketed"):
        UpdateTracker(100).observe(5, 5)


@pytest.mark.parametrize(
    ("args", "spec"),
    [
        ("", NvmlSpec()),
        ("0,2", NvmlSpec((0, 2))),
        ("GPU-8a3c,learn=0.5", NvmlSpec(("GPU-8a3c",), 0.5)),
        ("learn=0", NvmlSpec((), 0.0)),
    ],
)
def test_spec(args: str, spec: NvmlSpec) -> None:
    assert parse_spec(args) == spec


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("gpus=0", "unknown key 'gpus'"),
        ("learn=x", "learn='x' is not a number"),
        ("learn=99", "learn must be within"),
        ("zero", "'zero' is not a GPU index or UUID"),
        ("MIG-1234", "select its parent GPU"),
        ("1,1", "selected twice"),
    ],
)
def test_bad_specs_say_what_is_wrong(args: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(args)
