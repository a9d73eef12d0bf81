"""Instrument identity end to end: a WT310, a Rigol DP832 (SCPI), an LPM01A and an INA226
logger simulator on
pseudo-terminals, ``powerd measure`` in a subprocess; each meter channel of the result carries
the model, serial and firmware its simulator reports, is flagged ``uncalibrated`` (no config
gives a certificate), and ``powerd audit`` passes on the untouched run."""

from __future__ import annotations

import json
from pathlib import Path

from powerd.probes.ina2xx.sim import make as make_ina
from powerd.probes.lpm01a.sim import make as make_lpm
from powerd.probes.scpi.sim import make as make_scpi
from powerd.probes.serialsim import PtySimulator
from powerd.probes.sim.waveform import parse_spec
from powerd.probes.wt300.sim import make as make_wt300
from tests.probes.ina2xx.runmeasure import measure, powerd
from tests.probes.wt300.helpers import WF


def test_identities_reach_the_result_and_the_run_audits_clean(tmp_path: Path) -> None:
    small = parse_spec("constant,w=0.05").waveform  # 15 mA at 3.3 V
    sims = [
        PtySimulator(make_wt300("wt310", WF, {"rate": "0.1"}), tmp_path / "wt310").start(),
        PtySimulator(make_scpi("rigol-dp800", WF, {}), tmp_path / "rigol").start(),
        PtySimulator(make_lpm("lpm01a", small, {}), tmp_path / "lpm").start(),
        PtySimulator(make_ina("ina2xx", WF, {"banner_s": "0.5"}), tmp_path / "ina").start(),
    ]
    try:
        m = measure(
            tmp_path,
            f"wt300:{tmp_path / 'wt310'},rate=0.1,vrange=15,irange=5",
            "ids",
            ["sleep", "2"],
            extra_probes=[
                f"scpi:{tmp_path / 'rigol'},profile=rigol-dp800",
                f"lpm01a:{tmp_path / 'lpm'}",
                f"ina2xx:{tmp_path / 'ina'},rate=1000",
            ],
        )
    finally:
        for s in sims:
            s.stop()
    assert m.rc == 0, m.stderr
    p = m.phase("run")
    got = {
        cid: (ch["instrument"] or {}).get("model")
        for cid, ch in p["channels"].items()
        if ch["source_class"] == "meter"
    }
    wt = p["channels"]["wt300:wt310:p1"]["instrument"]
    assert wt["maker"] == "YOKOGAWA" and wt["model"] == "WT310" and wt["serial"] == "C2SIM0001"
    assert wt["firmware"] and wt["source"] == "*IDN?"
    rigol = p["channels"]["scpi:rigol-dp800:1"]["instrument"]
    assert (rigol["maker"], rigol["model"], rigol["serial"], rigol["firmware"]) == (
        "RIGOL TECHNOLOGIES",
        "DP832",
        "DP8C000000000",
        "00.01.16",
    )
    (lpm_id,) = [c for c in got if c.startswith("lpm01a:")]
    lpm = p["channels"][lpm_id]["instrument"]
    assert lpm["model"] == "X-NUCLEO-LPM01A" and lpm["firmware"] == "1.0.7" and lpm["serial"]
    ina = p["channels"]["ina2xx:0"]["instrument"]
    assert ina == {
        "maker": "Texas Instruments",
        "model": "INA226 (die 0x2260)",
        "serial": "SIM-INA-0001",
        "firmware": "powerd-sim-1",
        "source": "$PWRI",
    }
    for cid, ch in p["channels"].items():
        assert ch["calibration"] is None and "uncalibrated" in ch["flags"], cid
    assert "uncalibrated" in p["flags"]
    r = powerd(tmp_path / "state", "audit", "ids")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK: nothing differs" in r.stdout


def test_measure_takes_certificates_by_serial_and_by_channel_id(tmp_path: Path) -> None:
    cal = tmp_path / "cal.toml"
    cal.write_text(
        '[calibration."serial:C2SIM0001"]\n'  # the WT310 simulator's *IDN? serial: run out
        'date = 2024-01-10\ndue = 2025-01-10\ncertificate = "CAL-WT-1"\n'
        '[calibration."scpi:rigol-dp800"]\n'  # by channel id prefix: valid
        'date = 2026-01-10\ndue = 2099-01-10\ncertificate = "CAL-DP-7"\nlab = "KTL"\n'
    )
    sims = [
        PtySimulator(make_wt300("wt310", WF, {"rate": "0.1"}), tmp_path / "wt310").start(),
        PtySimulator(make_scpi("rigol-dp800", WF, {}), tmp_path / "rigol").start(),
    ]
    out = tmp_path / "out"
    try:
        r = powerd(
            tmp_path / "state",
            "measure",
            "--probe",
            f"wt300:{tmp_path / 'wt310'},rate=0.1,vrange=15,irange=5",
            "--probe",
            f"scpi:{tmp_path / 'rigol'},profile=rigol-dp800",
            "--calibration",
            str(cal),
            "--run",
            "cal",
            "--out",
            str(out),
            "--quiet",
            "--",
            "sleep",
            "2",
        )
    finally:
        for s in sims:
            s.stop()
    assert r.returncode == 0, r.stderr
    (p,) = json.loads((out / "cal.json").read_text())["phases"]
    wt = p["channels"]["wt300:wt310:p1"]
    assert wt["calibration"]["certificate"] == "CAL-WT-1" and "calibration_due" in wt["flags"]
    dp = p["channels"]["scpi:rigol-dp800:1"]
    assert dp["calibration"] == {
        "date": "2026-01-10",
        "due": "2099-01-10",
        "certificate": "CAL-DP-7",
        "lab": "KTL",
    }
    assert dp["flags"] == []
    assert "calibration_due" in p["flags"] and "uncalibrated" not in p["flags"]
    audit = powerd(tmp_path / "state", "audit", "cal")
    assert audit.returncode == 0, audit.stdout
