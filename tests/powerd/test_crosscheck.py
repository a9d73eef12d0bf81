"""Cross-checks between sources (issue 14 item 6): ratio, difference within √(U1² + U2²),
``sources_disagree``, and ``unknown`` when a channel states no accuracy.

The channels are the sim probe's (its samples, exactly as the daemon stores them), so each
channel's energy and uncertainty are known: a constant with accuracy ``acc`` has E = w × T and
U = acc × E (no noise, discretisation or timing term), which puts each bias clearly within or
beyond the combined uncertainty.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from powerd.block import F64, I64
from powerd.channel import Accuracy, Channel
from powerd.crosscheck import accuracy_known
from powerd.phases import Phase, Timing
from powerd.probes.sim import SimProbe
from powerd.probes.sim.waveform import parse_spec
from powerd.report.html import render_html
from powerd.report.table import format_table
from powerd.results import run_result

T0 = 1_800_000_000_000_000_000
RATE_HZ = 1000
STEP_NS = 1_000_000_000 // RATE_HZ


def sims(*specs: str) -> tuple[dict[str, Channel], dict[str, SimProbe]]:
    probes = [SimProbe(parse_spec(f"{s},rate={RATE_HZ}")) for s in specs]
    return {p.channel.id: p.channel for p in probes}, {p.channel.id: p for p in probes}


def source(probes: dict[str, SimProbe]):  # type: ignore[no-untyped-def]
    k = np.arange(T0 // STEP_NS - 10, T0 // STEP_NS + 3_000, dtype=np.int64)

    def samples(c: str, a: int, b: int) -> tuple[I64, F64]:
        blk = probes[c].samples(k)
        return blk.t_ns, blk.value

    return samples


def phase(seconds: float = 2.0) -> Phase:
    tm = Timing("marker", 0, 0)
    return Phase("r", "run", 0, T0, T0 + int(seconds * 1e9), 10, "inference", {}, tm, tm)


def one_phase(*specs: str) -> dict:  # type: ignore[type-arg]
    chans, probes = sims(*specs)
    return dict(run_result("r", [phase()], chans, source(probes))["phases"][0])


def test_a_bias_beyond_the_combined_uncertainty_disagrees() -> None:
    """Meter 10 W ± 1 %, telemetry reading 5 % high ± 1 %: U = √(0.2² + 0.21²) = 0.29 J over
    2 s, |E1 − E2| = 1 J."""
    p = one_phase(
        "constant,w=10,id=m,acc=0.01,measures=dut",
        "constant,w=10.5,id=t,class=telemetry,acc=0.01,measures=dut",
    )
    (x,) = p["cross_checks"]
    assert (x["a"], x["b"], x["measures"], x["device"]) == ("sim:m", "sim:t", "dut", "local")
    assert x["ratio"] == pytest.approx(10 / 10.5)
    assert x["difference_j"] == pytest.approx(-1.0)
    assert x["uncertainty_j"] == pytest.approx(np.hypot(0.2, 0.21))
    assert x["agree"] is False and x["status"] == "disagree" and x["difference_u"] < -1
    assert "sources_disagree" in p["flags"]
    for c in ("sim:m", "sim:t"):
        assert "sources_disagree" in p["channels"][c]["flags"]
    assert p["channels"]["sim:m"]["primary"] and p["energy_j"] == pytest.approx(20.0)
    api = json.loads((Path(__file__).parents[2] / "powerd" / "openapi.json").read_text())
    jsonschema.validate(
        p["cross_checks"], api["components"]["schemas"]["PhaseResult"]["properties"]["cross_checks"]
    )


def test_a_bias_within_the_combined_uncertainty_agrees() -> None:
    p = one_phase(
        "constant,w=10,id=m,acc=0.01,measures=dut",
        "constant,w=10.1,id=t,class=telemetry,acc=0.01,measures=dut",
    )
    (x,) = p["cross_checks"]
    assert x["agree"] is True and x["status"] == "agree"
    assert abs(x["difference_j"]) == pytest.approx(0.2)
    assert abs(x["difference_u"]) < 1 and x["reason"] == ""
    assert "sources_disagree" not in p["flags"]
    assert all("sources_disagree" not in c["flags"] for c in p["channels"].values())


def test_meter_and_telemetry_counter_the_fixed_5_pct_limit_and_the_uncertainty_differ() -> None:
    """A telemetry energy counter stating ± 10 % reads 8 % above a ± 0.5 % meter: within their
    combined U (no sources_disagree) though beyond the old fixed 5 % (counter_power_mismatch,
    kept); two ± 0.1 % views 3 % apart disagree though under 5 %."""
    p = one_phase(
        "constant,w=10,id=m,acc=0.005,measures=gpu0",
        "constant,w=10.8,id=e,kind=energy,class=telemetry,acc=0.1,measures=gpu0",
    )
    (x,) = p["cross_checks"]
    assert (x["a"], x["b"]) == ("sim:m", "sim:e") and x["agree"] is True
    assert p["channels"]["sim:e"]["counter_to_power_ratio"] == pytest.approx(1.08)
    assert x["ratio"] == pytest.approx(1 / 1.08)
    assert "counter_power_mismatch" in p["flags"] and "sources_disagree" not in p["flags"]

    p = one_phase(
        "constant,w=10,id=p,acc=0.001,measures=dut",
        "constant,w=10.3,id=e,kind=energy,acc=0.001,measures=dut",
    )
    (x,) = p["cross_checks"]
    # same class: the counter is the reference, so ratio is counter_to_power_ratio
    assert (x["a"], x["b"]) == ("sim:e", "sim:p")
    assert x["ratio"] == pytest.approx(p["channels"]["sim:e"]["counter_to_power_ratio"])
    assert x["agree"] is False
    assert "sources_disagree" in p["flags"] and "counter_power_mismatch" not in p["flags"]


def test_unknown_accuracy_is_unknown_never_agree_or_disagree() -> None:
    """Telemetry stating no accuracy, 50 % off: reported (ratio, difference) but not judged."""
    p = one_phase(
        "constant,w=10,id=m,acc=0.01,measures=dut",
        "constant,w=15,id=t,class=telemetry,measures=dut",
    )
    (x,) = p["cross_checks"]
    assert x["ratio"] == pytest.approx(10 / 15) and x["difference_j"] == pytest.approx(-10.0)
    assert x["agree"] is None and x["status"] == "unknown"
    assert x["uncertainty_j"] is None and x["difference_u"] is None
    assert "sim:t" in x["reason"] and "sim:m" not in x["reason"]
    assert "sources_disagree" not in p["flags"]
    # a counter's resolution alone is no accuracy statement
    assert not accuracy_known(Accuracy(resolution_j=1e-6))
    assert accuracy_known(Accuracy(offset_w=0.1)) and not accuracy_known(Accuracy(range_frac=0.1))


def test_only_the_same_thing_of_the_same_device_is_compared() -> None:
    """Different things are not alternatives; a channel without ``measures`` is never paired."""
    p = one_phase(
        "constant,w=10,id=m,acc=0.01,measures=dut",
        "constant,w=30,id=g,class=telemetry,acc=0.01,measures=gpu0",
        "constant,w=30,id=n,class=telemetry,acc=0.01",
    )
    assert p["cross_checks"] == [] and "sources_disagree" not in p["flags"]


def test_a_disagreement_the_figure_does_not_use_flags_only_its_channels() -> None:
    """The meter on the DUT is the phase's figure; two telemetry views of gpu0 (neither primary)
    disagree: their channels are flagged, the phase is not (its figure is not in question)."""
    p = one_phase(
        "constant,w=10,id=m,acc=0.01,measures=dut",
        "constant,w=5,id=g,class=telemetry,acc=0.01,measures=gpu0",
        "constant,w=6,id=ge,kind=energy,class=telemetry,acc=0.01,measures=gpu0",
    )
    (x,) = p["cross_checks"]
    assert (x["a"], x["b"], x["agree"]) == ("sim:ge", "sim:g", False)
    assert "sources_disagree" in p["channels"]["sim:g"]["flags"]
    assert "sources_disagree" not in p["channels"]["sim:m"]["flags"]
    assert "sources_disagree" not in p["flags"]


def test_terminal_table_and_html_report_show_each_pair() -> None:
    chans, probes = sims(
        "constant,w=10,id=m,acc=0.01,measures=dut",
        "constant,w=10.5,id=t,class=telemetry,acc=0.01,measures=dut",
        "constant,w=7,id=u,class=telemetry,measures=dut",
    )
    res = run_result("r", [phase()], chans, source(probes))
    lines = format_table(res).splitlines()
    assert (
        "cross-check run [local/dut]: sim:m ÷ sim:t = 0.95238, a − b = -1.00 ± 0.29 J: DISAGREE"
        in lines
    )
    unknown = [ln for ln in lines if "sim:u" in ln]
    assert unknown == [
        "cross-check run [local/dut]: sim:m ÷ sim:u = 1.4286, a − b = 6 J (U unknown): "
        "unknown (accuracy not stated: sim:u)"
    ]
    page = render_html(res, {})
    assert 'id="cross-checks"' in page and "DISAGREE" in page and "sim:u" in page
    # a run without pairs shows neither
    alone = run_result("r", [phase()], {"sim:m": chans["sim:m"]}, source(probes))
    assert alone["phases"][0]["cross_checks"] == []
    assert "cross-check" not in format_table(alone) and "cross-checks" not in render_html(alone, {})


VERIFY_PROTOCOL = """
claims = ["mean_power_w <= 25"]
probes = ["sim:constant,w=20,id=m,acc=0.01,measures=dut",
          "sim:constant,w={tel_w},id=t,class=telemetry,acc=0.01,measures=dut"]
[stability]
required = false
[trials]
n = 1
"""


@pytest.mark.parametrize(
    ("tel_w", "code", "verdict"), [(22.0, 3, "inconclusive"), (20.1, 0, "supported")]
)
def test_verify_caps_a_claim_at_inconclusive_when_sources_disagree(
    tmp_path: Path, tel_w: float, code: int, verdict: str
) -> None:
    """End to end (CLI subprocess, sim probes, store, API): the meter's 20 W supports
    ``mean_power_w <= 25`` by far; telemetry 10 % above it (beyond U) makes it inconclusive,
    telemetry 0.5 % above it (within U) leaves it supported."""
    (tmp_path / "p.toml").write_text(VERIFY_PROTOCOL.format(tel_w=tel_w))
    env = {**os.environ, "POWERD_STATE_DIR": str(tmp_path / "st")}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "powerd",
            "verify",
            str(tmp_path / "p.toml"),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
            "--run",
            "x",
            "--",
            sys.executable,
            "-c",
            "import time; time.sleep(0.3)",
        ],
        env=env,
        text=True,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert r.returncode == code, r.stdout + r.stderr
    res = json.loads((tmp_path / "out" / "x.json").read_text())
    (trial,) = [p for p in res["phases"] if p["phase"] == "trial"]
    (x,) = trial["cross_checks"]
    assert x["agree"] is (code == 0)
    assert ("sources_disagree" in trial["flags"]) is (code != 0)
    (claim,) = res["verification"]["claims"]
    assert claim["verdict"] == verdict
    if code:
        assert "sources_disagree" in claim["reason"] and "would be supported" in claim["reason"]
