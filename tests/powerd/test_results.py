"""Contract 2 results: shape, primary channels, idle baseline, trials, counter/power ratio."""

from __future__ import annotations

from typing import Any

import jsonschema
import numpy as np
import pytest

from powerd.block import F64, I64
from powerd.channel import Channel
from powerd.phases import Phase, Timing
from powerd.results import run_result

T0 = 1_800_000_000_000_000_000
MS = 1_000_000
NUM = {"type": "number"}
NUM_OR_NULL = {"type": ["number", "null"]}

CHANNEL_SCHEMA = {
    "type": "object",
    "required": [
        "energy_j",
        "mean_power_w",
        "peak_power_w",
        "samples",
        "coverage",
        "uncertainty_j",
        "source_class",
        "method",
    ],
    "properties": {
        "energy_j": NUM_OR_NULL,
        "mean_power_w": NUM_OR_NULL,
        "peak_power_w": NUM_OR_NULL,
        "samples": {"type": "integer"},
        "coverage": NUM,
        "uncertainty_j": NUM_OR_NULL,
        "source_class": {"enum": ["meter", "telemetry", "estimate"]},
        "method": {"enum": ["trapezoid", "counter"]},
    },
}
RESULT_SCHEMA = {
    "type": "object",
    "required": ["v", "run", "phases"],
    "properties": {
        "v": {"const": 1},
        "run": {"type": "string"},
        "phases": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "phase",
                    "trial",
                    "t_begin_ns",
                    "t_end_ns",
                    "duration_s",
                    "count",
                    "unit",
                    "energy_j",
                    "mean_power_w",
                    "peak_power_w",
                    "uncertainty_j",
                    "j_per_unit",
                    "units_per_j",
                    "idle_power_w",
                    "net_energy_j",
                    "flags",
                    "timing",
                    "channels",
                ],
                "properties": {
                    "phase": {"type": "string"},
                    "trial": {"type": "integer"},
                    "t_begin_ns": {"type": "integer"},
                    "t_end_ns": {"type": "integer"},
                    "duration_s": NUM,
                    "count": {"type": ["integer", "null"]},
                    "unit": {"type": "string"},
                    "energy_j": NUM_OR_NULL,
                    "mean_power_w": NUM_OR_NULL,
                    "peak_power_w": NUM_OR_NULL,
                    "uncertainty_j": NUM_OR_NULL,
                    "j_per_unit": NUM_OR_NULL,
                    "units_per_j": NUM_OR_NULL,
                    "idle_power_w": NUM_OR_NULL,
                    "net_energy_j": NUM_OR_NULL,
                    "flags": {"type": "array", "items": {"type": "string"}},
                    "timing": {
                        "type": "object",
                        "required": ["source", "offset_ns", "uncertainty_ns"],
                        "properties": {
                            "source": {"enum": ["marker", "receive-time"]},
                            "offset_ns": {"type": "integer"},
                            "uncertainty_ns": {"type": "integer"},
                        },
                    },
                    "channels": {"type": "object", "additionalProperties": CHANNEL_SCHEMA},
                },
            },
        },
    },
}


def ch(cid: str, cls: str = "meter", kind: str = "power", measures: str = "") -> Channel:
    return Channel(id=cid, kind=kind, source_class=cls, nominal_period_s=1e-3, measures=measures)  # type: ignore[arg-type]


def const_source(
    levels: dict[str, float],
    kinds: dict[str, str] | None = None,
    only_after: dict[str, int] | None = None,
):  # type: ignore[no-untyped-def]
    t_all = T0 + np.arange(20_001, dtype=np.int64) * MS
    kinds = kinds or {}
    only_after = only_after or {}

    def samples(c: str, a: int, b: int) -> tuple[I64, F64]:
        t = t_all[t_all >= only_after.get(c, 0)]
        if kinds.get(c) == "energy":
            return t, levels[c] * (t - T0) / 1e9
        return t, np.full(t.size, levels[c])

    return samples


def phase(
    name: str, a_ms: int, b_ms: int, count: int | None = 100, trial: int = 0, src: str = "marker"
) -> Phase:
    tm = Timing(src, 0, 0)  # type: ignore[arg-type]
    return Phase("r", name, trial, T0 + a_ms * MS, T0 + b_ms * MS, count, "inference", {}, tm, tm)


def test_result_matches_contract_2_schema() -> None:
    chans = {"m:1": ch("m:1")}
    res = run_result("r", [phase("run", 100, 1100)], chans, const_source({"m:1": 5.0}))
    jsonschema.validate(res, RESULT_SCHEMA)
    p = res["phases"][0]
    assert p["energy_j"] == pytest.approx(5.0)
    assert p["j_per_unit"] == pytest.approx(0.05) and p["units_per_j"] == pytest.approx(20.0)
    assert p["duration_s"] == pytest.approx(1.0)


def test_meter_is_primary_over_telemetry_and_never_summed_with_it() -> None:
    chans = {"m:1": ch("m:1"), "nvml:0": ch("nvml:0", "telemetry")}
    res = run_result(
        "r", [phase("run", 0, 1000)], chans, const_source({"m:1": 50.0, "nvml:0": 30.0})
    )
    p = res["phases"][0]
    assert p["energy_j"] == pytest.approx(50.0)
    assert p["channels"]["m:1"]["primary"] and not p["channels"]["nvml:0"]["primary"]


def test_telemetry_when_no_meter_has_data_for_the_phase() -> None:
    chans = {"m:1": ch("m:1"), "nvml:0": ch("nvml:0", "telemetry")}
    src = const_source({"m:1": 50.0, "nvml:0": 30.0}, only_after={"m:1": T0 + 15_000 * MS})
    res = run_result("r", [phase("run", 0, 1000)], chans, src)
    assert res["phases"][0]["energy_j"] == pytest.approx(30.0)


def test_two_views_of_one_thing_count_once_distinct_things_sum() -> None:
    chans = {
        "nvml:0": ch("nvml:0", "telemetry", "power", "gpu0"),
        "nvml:0e": ch("nvml:0e", "telemetry", "energy", "gpu0"),
        "nvml:1": ch("nvml:1", "telemetry", "power", "gpu1"),
    }
    src = const_source(
        {"nvml:0": 100.0, "nvml:0e": 110.0, "nvml:1": 40.0}, kinds={"nvml:0e": "energy"}
    )
    res = run_result("r", [phase("run", 0, 2000)], chans, src)
    p = res["phases"][0]
    assert p["energy_j"] == pytest.approx((110.0 + 40.0) * 2)  # counter preferred for gpu0
    assert p["peak_power_w"] == pytest.approx(150.0)
    assert p["channels"]["nvml:0e"]["counter_to_power_ratio"] == pytest.approx(1.1)
    assert "counter_power_mismatch" in p["flags"]


def test_explicit_primary_overrides_the_rule() -> None:
    chans = {"m:1": ch("m:1"), "nvml:0": ch("nvml:0", "telemetry")}
    res = run_result(
        "r",
        [phase("run", 0, 1000)],
        chans,
        const_source({"m:1": 50.0, "nvml:0": 30.0}),
        primary_channels=["nvml:0"],
    )
    assert res["phases"][0]["energy_j"] == pytest.approx(30.0)


def test_idle_phase_gives_net_energy() -> None:
    levels = {"m:1": 0.0}
    t_all = T0 + np.arange(20_001, dtype=np.int64) * MS

    def samples(c: str, a: int, b: int) -> tuple[I64, F64]:
        return t_all, np.where(t_all < T0 + 2000 * MS, 3.0, 10.0) + levels[c]

    phases = [phase("idle", 0, 1500, None), phase("run", 3000, 5000)]
    res = run_result("r", phases, {"m:1": ch("m:1")}, samples)
    idle, run = res["phases"]
    assert idle["idle_power_w"] is None and idle["net_energy_j"] is None
    assert run["idle_power_w"] == pytest.approx(3.0)
    assert run["net_energy_j"] == pytest.approx(20.0 - 6.0)
    cfg = run_result("r", phases, {"m:1": ch("m:1")}, samples, idle_power_w=1.0)
    assert cfg["phases"][1]["net_energy_j"] == pytest.approx(18.0)


def test_trials_give_median_and_spread() -> None:
    t_all = T0 + np.arange(20_001, dtype=np.int64) * MS

    def samples(c: str, a: int, b: int) -> tuple[I64, F64]:
        return t_all, 1.0 + (t_all - T0) // (1000 * MS)  # 1 W, 2 W, 3 W ... per second

    phases = [phase("inf", 1000 * k, 1000 * k + 1000, 10, trial=k) for k in range(3)]
    res = run_result("r", phases, {"m:1": ch("m:1")}, samples)
    (summary,) = res["trials"]
    assert summary["trials"] == 3
    energies = sorted(p["energy_j"] for p in res["phases"])
    assert summary["energy_j"]["median"] == pytest.approx(energies[1])
    assert summary["energy_j"]["max"] - summary["energy_j"]["min"] == pytest.approx(
        energies[2] - energies[0]
    )


def test_no_data_is_null_and_flagged_never_zero() -> None:
    res = run_result(
        "r",
        [phase("run", 0, 1000, 10, src="receive-time")],
        {"m:1": ch("m:1")},
        const_source({"m:1": 1.0}, only_after={"m:1": T0 + 10**13}),
    )
    p: dict[str, Any] = res["phases"][0]
    assert p["energy_j"] is None and p["j_per_unit"] is None
    assert "no_data" in p["flags"] and "receive_time" in p["flags"]
    jsonschema.validate(res, RESULT_SCHEMA)
