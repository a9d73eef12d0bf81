"""The stability criterion and the protocol's trial flags (pure, on analytic sim waveforms)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from powerd.block import F64, I64
from powerd.channel import Channel
from powerd.commands.verify import annotate_trials
from powerd.probes.sim.waveform import parse_spec
from powerd.verify.protocol import load_protocol
from powerd.verify.stability import PARTS, check_power

T0 = 1_700_000_000_000_000_000
CH = {"sim:x": Channel("sim:x", "power", "meter", 0.001)}


def source(spec: str) -> Any:
    wave = parse_spec(spec).waveform
    t = np.arange(T0, T0 + 3_000_000_000, 1_000_000, dtype=np.int64)
    p = wave.power_w(t)

    def samples(_c: str, a: int, b: int) -> tuple[I64, F64]:
        i, j = np.searchsorted(t, a, "left") - 1, np.searchsorted(t, b, "right") + 1
        i = max(i, 0)
        return t[i:j], p[i:j]

    return samples


def test_constant_power_is_stable_and_a_ramp_is_not() -> None:
    end = T0 + 2_000_000_000
    ok = check_power(CH, source("constant,w=20"), end, 1.0, 1.0)
    assert ok.stable and ok.max_dev_pct is not None and ok.max_dev_pct < 1e-6
    assert len(ok.part_means_w) == PARTS and ok.mean_w is not None
    assert abs(ok.mean_w - 20.0) < 1e-9
    # a ±5 % square ripple much faster than the sub-windows averages out: stable
    fast = check_power(CH, source("square,high=21,low=19,period=0.01"), end, 1.0, 1.0)
    assert fast.stable
    ramp = check_power(CH, source("ramp,low=10,high=50,period=4"), end, 1.0, 2.0)
    assert not ramp.stable and ramp.max_dev_pct is not None and ramp.max_dev_pct > 2.0
    # a window with no data is never taken as stable
    empty = check_power(CH, source("constant,w=20"), T0 + 9_000_000_000, 1.0, 50.0)
    assert not empty.stable and empty.mean_w is None


def phase(trial: int, duration_s: float, samples: int, e: float, u: float) -> dict[str, Any]:
    return {
        "phase": "trial",
        "trial": trial,
        "duration_s": duration_s,
        "energy_j": e,
        "uncertainty_j": u,
        "flags": [],
        "channels": {
            "sim:x": {"primary": True, "samples": samples},
            "sim:y": {"primary": False, "samples": 0},
        },
    }


def test_protocol_flags_on_trials(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        'claims = ["energy_j <= 1"]\nmax_energy_uncertainty_pct = 1\n'
        "[trials]\nn = 4\nmin_duration_s = 1\nmin_samples = 100\n"
    )
    proto = load_protocol(path)
    result = {
        "phases": [
            {"phase": "idle", "trial": 0, "flags": []},
            phase(1, 2.0, 2000, 40.0, 0.1),  # fine
            phase(2, 0.5, 500, 10.0, 0.01),  # too short in time
            phase(3, 2.0, 50, 40.0, 0.1),  # too few samples
            phase(4, 2.0, 2000, 40.0, 1.0),  # 2.5 % energy uncertainty, and CMD failed
        ]
    }
    stab = {"required": True, "reached": True}
    trials = annotate_trials(result, proto, stab, failed=[4])
    assert [p["flags"] for p in trials] == [
        [],
        ["too_short"],
        ["too_short"],
        ["cmd_failed", "meter_uncertainty_high"],
    ]
    assert result["phases"][0]["flags"] == []
    trials = annotate_trials(
        {"phases": [phase(1, 2.0, 2000, 40.0, 0.1)]},
        proto,
        {"required": True, "reached": False},
        failed=[],
    )
    assert trials[0]["flags"] == ["not_stable"]
    trials = annotate_trials(
        {"phases": [phase(1, 2.0, 2000, 40.0, 0.1)]},
        proto,
        {"required": False, "reached": False},
        failed=[],
    )
    assert trials[0]["flags"] == []
