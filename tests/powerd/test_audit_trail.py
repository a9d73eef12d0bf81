"""Calibration flags, the manifest sealed with each result, and ``powerd audit`` (issue 14,
items 3 and 4): an untouched run passes; one byte changed in a sample or a marker in the SQLite
file fails, naming what differs; late data fails until the run is re-sealed."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from powerd import audit, calibration, config
from powerd.agent.wire import Marker
from powerd.block import Block
from powerd.channel import Accuracy, Channel, Instrument
from powerd.cli import main
from powerd.errors import PowerdError
from powerd.phases import stamp
from powerd.runs import compute_run
from powerd.store import Store

T0 = 1_800_000_000_000_000_000  # 2027-01-15 08:00 UTC
MS = 1_000_000
S = 1_000_000_000
IDN = Instrument("YOKOGAWA", "WT310E", "C2TEST0042", "F1.05", "*IDN?")
METER = Channel(
    "wt300:bench:p1",
    "power",
    "meter",
    1e-3,
    Accuracy(reading_frac=0.001),
    instrument=IDN,
)
CONFIG_TOML = """
[daemon]
probes = ["wt300:/dev/ttyUSB0"]

[mqtt]
host = "broker.example"
password_file = "/etc/powerd/mqtt-password"

[influx]
url = "http://lab:s3cret@127.0.0.1:8428"
org = "lab"
bucket = "powerd"

[calibration."wt300:bench"]
date = 2026-02-01
due = 2027-02-01
certificate = "CAL-PREFIX"

[calibration."serial:C2TEST0042"]
date = 2026-03-01
due = 2026-12-31
certificate = "CAL-2026-0142"
lab = "KTL"
"""


def table(text: str = CONFIG_TOML) -> calibration.CalibrationTable:
    return config.parse(tomllib.loads(text), "test: ").calibration


def make_run(
    store: Store,
    run: str = "r1",
    ch: Channel = METER,
    n: int = 1000,
    device: tuple[str, ...] | None = None,
) -> None:
    """One phase ``p`` of ``n`` ms over a 5 W constant, at 1 kHz, 10 units (of ``device``)."""
    store.put_channel(ch)
    t = T0 + np.arange(n + 1, dtype=np.int64) * MS
    store.append(Block.of(ch.id, t, np.full(t.size, 5.0)))
    store.flush()
    begin = Marker(run, "p", "begin", 1, t_ns=T0 + 10 * MS, device=device)
    store.put_marker(stamp("h", begin, T0))
    end = Marker(run, "p", "end", 2, t_ns=T0 + (n - 10) * MS, count=10)
    store.put_marker(stamp("h", end, T0))


# calibration --------------------------------------------------------------------------------


def test_config_calibration_table_and_its_checks() -> None:
    cal = table()
    assert cal["serial:C2TEST0042"].due == dt.date(2026, 12, 31)
    bad = CONFIG_TOML.replace("due = 2026-12-31", "due = 2026-01-01")
    with pytest.raises(PowerdError, match=r'\[calibration."serial:C2TEST0042"\] due 2026-01-01'):
        table(bad)
    with pytest.raises(PowerdError, match="certificate"):
        table('[calibration."x:1"]\ndate = 2026-01-01\ndue = 2027-01-01\n')


def test_serial_match_beats_the_id_prefix_and_the_longest_prefix_wins() -> None:
    cal = table()
    assert calibration.find(cal, METER) is cal["serial:C2TEST0042"]
    other = Channel("wt300:bench:p2", "power", "meter", 1e-3)  # no identity: by its id
    assert calibration.find(cal, other) is cal["wt300:bench"]
    assert calibration.find(cal, Channel("wt300:benchx:p1", "power", "meter", 1e-3)) is None


@pytest.mark.parametrize(
    ("cal_text", "channel_flags"),
    [
        ("", ["uncalibrated"]),  # a meter with no certificate
        ('due = 2027-06-30\ndate = 2026-06-30\ncertificate = "C1"', []),  # valid on T0
        ('due = 2027-01-14\ndate = 2026-01-14\ncertificate = "C2"', ["calibration_due"]),
        ('due = 2027-01-15\ndate = 2026-01-15\ncertificate = "C3"', []),  # due day still valid
    ],
)
def test_result_flags_uncalibrated_and_calibration_due_by_date(
    tmp_path: Path, cal_text: str, channel_flags: list[str]
) -> None:
    text = f'[calibration."wt300:bench"]\n{cal_text}\n' if cal_text else ""
    with Store(tmp_path / "s.db") as st:
        st.annotate_channel = calibration.annotator(table(text))
        make_run(st, ch=Channel("wt300:bench:p1", "power", "meter", 1e-3, instrument=IDN))
        res = compute_run(st, "r1")
    (p,) = res["phases"]
    ch = p["channels"]["wt300:bench:p1"]
    assert ch["flags"] == channel_flags
    assert [f for f in p["flags"] if f in ("uncalibrated", "calibration_due")] == channel_flags
    assert ch["instrument"] == {
        "maker": "YOKOGAWA",
        "model": "WT310E",
        "serial": "C2TEST0042",
        "firmware": "F1.05",
        "source": "*IDN?",
    }
    assert (ch["calibration"] is None) == (not cal_text)
    if cal_text:
        assert ch["calibration"]["certificate"] in ("C1", "C2", "C3")


def test_telemetry_and_the_simulated_source_are_not_flagged(tmp_path: Path) -> None:
    sim = Instrument("powerd", "sim", "", "", calibration.SIMULATED)
    assert calibration.flags(Channel("sim:x", "power", "meter", 1e-3, instrument=sim), T0) == []
    assert calibration.flags(Channel("nvml:0", "power", "telemetry", 0.1), T0) == []


def test_old_channel_json_without_identity_still_reads() -> None:
    old = {"id": "a:1", "kind": "power", "source_class": "meter", "nominal_period_s": 1.0}
    ch = Channel.from_json(old)
    assert ch.instrument is None and "instrument" not in ch.to_json()
    assert Channel.from_json(METER.to_json()) == METER


# manifest -----------------------------------------------------------------------------------


def stored_samples_sha(db: Path, channel: str, t0: int, t1: int) -> str:
    """The documented canonical form, computed here independently from the SQLite rows: the
    samples in [t0, t1] plus the nearest one on each side, 16 bytes each."""
    con = sqlite3.connect(db)
    rows = con.execute("SELECT t, v FROM blocks WHERE channel=? ORDER BY t_first_ns", (channel,))
    pairs = [
        (int(a), float(b))
        for t, v in rows
        for a, b in zip(np.frombuffer(t, "<i8"), np.frombuffer(v, "<f8"), strict=True)
    ]
    con.close()
    lo = max(i for i, (t, _) in enumerate(pairs) if t <= t0)
    hi = min(i for i, (t, _) in enumerate(pairs) if t >= t1)
    out = b"".join(
        t.to_bytes(8, "little", signed=True) + np.float64(v).tobytes()
        for t, v in pairs[lo : hi + 1]
    )
    return hashlib.sha256(out).hexdigest()


def stored_markers_sha(db: Path, run: str) -> str:
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT source, seq, run, t_ns, received_ns, marker, timing FROM markers WHERE run=? "
        "ORDER BY id",
        (run,),
    ).fetchall()
    con.close()
    text = "".join(
        json.dumps(list(r), separators=(",", ":"), ensure_ascii=False) + "\n" for r in rows
    )
    return hashlib.sha256(text.encode()).hexdigest()


def test_manifest_records_software_config_clock_instruments_and_hashes(tmp_path: Path) -> None:
    cfg_path = tmp_path / "powerd.toml"
    cfg_path.write_text(CONFIG_TOML)
    ctx = audit.AuditContext.from_config_file("run", cfg_path, ["wt300:/dev/ttyUSB0"])
    clock = {"edge-01": {"offset_ns": -3_500_000_000, "uncertainty_ns": 120_000}}
    # the clock state of agents the run does not cover is left out (a choice, not a contract:
    # a fleet daemon knows a thousand agents; issue 16)
    other = {"edge-07": {"offset_ns": 1, "uncertainty_ns": 1}}
    db = tmp_path / "powerd.db"
    with Store(db) as st:
        st.annotate_channel = calibration.annotator(table())
        make_run(st, ch=replace(METER, device="edge-01"), device=("edge-01",))
        res = compute_run(st, "r1", 1.5)
        assert res["phases"][0]["devices"] == ["edge-01"]
        sync = clock | other
        assert audit.seal(st, res, T0 + 5 * 10**9, ctx, sync, 1.5, ["wt300:bench:p1"]) == 1
        (m,) = st.manifests("r1")
    assert m["revision"] == 1 and m["form"] == "powerd-audit-1" and m["powerd_version"]
    assert m["host"] and m["command"] == "run" and m["probes"] == ["wt300:/dev/ttyUSB0"]
    assert m["clock_sync"] == clock
    assert m["parameters"] == {"idle_power_w": 1.5, "primary": ["wt300:bench:p1"]}
    # secrets removed: the URL's password; a path to a password file is kept
    assert m["config"]["influx"]["url"] == "http://127.0.0.1:8428"
    assert m["config"]["mqtt"]["password_file"] == "/etc/powerd/mqtt-password"
    assert "s3cret" not in json.dumps(m)
    assert m["config_sha256"] == hashlib.sha256(audit.canonical_json(m["config"])).hexdigest()
    assert m["config_file_sha256"] == hashlib.sha256(CONFIG_TOML.encode()).hexdigest()
    ch = m["channels"]["wt300:bench:p1"]
    assert ch["instrument"]["serial"] == "C2TEST0042"
    assert ch["calibration"]["certificate"] == "CAL-2026-0142"
    span = (m["span"]["t_begin_ns"], m["span"]["t_end_ns"])
    assert span == (T0 + 10 * MS, T0 + 990 * MS)
    assert ch["samples"] == 981 and ch["t_first_ns"] == span[0] and ch["t_last_ns"] == span[1]
    assert ch["samples_sha256"] == stored_samples_sha(db, "wt300:bench:p1", *span)
    assert m["markers"] == {"count": 2, "sha256": stored_markers_sha(db, "r1")}
    assert m["result_sha256"] == hashlib.sha256(audit.canonical_json(res)).hexdigest()


def test_redaction_of_secret_keys() -> None:
    got = audit.redact({"a": {"password": "x", "api_token": "y", "token_file": "/p", "n": 1}})
    assert got == {
        "a": {"password": "<redacted>", "api_token": "<redacted>", "token_file": "/p", "n": 1}
    }


# powerd audit -------------------------------------------------------------------------------


def sealed_store(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    with Store(state / "powerd.db") as st:
        make_run(st)
        audit.seal(st, compute_run(st, "r1"), T0 + 5 * 10**9, audit.AuditContext("test"))
    return state


def run_audit(state: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["--state-dir", str(state), "audit", "r1", *extra])
    return code, capsys.readouterr().out


def test_audit_passes_on_an_untouched_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = sealed_store(tmp_path)
    code, out = run_audit(state, capsys)
    assert code == 0, out
    assert "OK: nothing differs" in out and "revision 1" in out
    code, out = run_audit(state, capsys, "--json")
    assert code == 0 and json.loads(out)["ok"] is True


def test_one_byte_changed_in_a_sample_fails_naming_the_channel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = sealed_store(tmp_path)
    con = sqlite3.connect(state / "powerd.db")
    (rowid, v) = con.execute("SELECT id, v FROM blocks").fetchone()
    raw = bytearray(v)
    raw[500 * 8 + 7] ^= 0x01  # sample 500's sign/exponent byte: 5 W becomes another value
    con.execute("UPDATE blocks SET v=? WHERE id=?", (bytes(raw), rowid))
    con.commit()
    con.close()
    code, out = run_audit(state, capsys)
    assert code == 1, out
    assert "DIFFERS" in out
    assert "wt300:bench:p1: raw samples differ from the sealed: same 981 samples" in out
    assert "energy_j: stored" in out  # the figure recomputed from the changed data differs


def test_one_byte_changed_in_a_marker_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = sealed_store(tmp_path)
    con = sqlite3.connect(state / "powerd.db")
    (rowid, text) = con.execute(
        "SELECT id, marker FROM markers WHERE marker LIKE '%end%'"
    ).fetchone()
    assert '"count": 10' in text
    con.execute(
        "UPDATE markers SET marker=? WHERE id=?",
        (text.replace('"count": 10', '"count": 19'), rowid),
    )
    con.commit()
    con.close()
    code, out = run_audit(state, capsys)
    assert code == 1, out
    assert "markers: 2 stored rows hash to" in out
    assert "phases[0] (p trial 0).count: stored 10, recomputed 19" in out


def test_an_edited_stored_result_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = sealed_store(tmp_path)
    con = sqlite3.connect(state / "powerd.db")
    text = con.execute("SELECT json FROM results").fetchone()[0]
    res = json.loads(text)
    res["phases"][0]["energy_j"] *= 0.9
    con.execute("UPDATE results SET json=?", (json.dumps(res),))
    con.commit()
    con.close()
    code, out = run_audit(state, capsys)
    assert code == 1 and "not the one sealed" in out and ".energy_j: stored" in out


def test_late_data_fails_until_the_run_is_resealed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = sealed_store(tmp_path)
    with Store(state / "powerd.db") as st:  # an agent's backlog lands inside the run
        t = T0 + (500 + np.arange(3, dtype=np.int64)) * MS + MS // 2
        st.append(Block.of(METER.id, t, np.full(3, 50.0)))
    code, out = run_audit(state, capsys)
    assert code == 1 and "3 samples more than sealed" in out, out
    assert main(["--state-dir", str(state), "report", "r1", "--out", str(tmp_path / "o")]) == 0
    capsys.readouterr()
    code, out = run_audit(state, capsys)
    assert code == 0 and "revision 2" in out, out
    code, out = run_audit(state, capsys, "--revision", "1")  # the old seal, kept for the record
    assert code == 1 and "samples more than sealed" in out


def test_a_run_without_manifest_is_not_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    with Store(state / "powerd.db") as st:
        make_run(st)
        st.put_result(compute_run(st, "r1"), T0)
    code, out = run_audit(state, capsys)
    assert code == 1 and "no manifest" in out


def test_a_schema_2_store_migrates_to_3(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with Store(db) as st:
        make_run(st)
    con = sqlite3.connect(db)
    con.execute("DROP TABLE manifests")
    con.execute("UPDATE meta SET value='2' WHERE key='schema'")
    con.commit()
    con.close()
    with Store(db) as st:
        assert st.manifests("r1") == [] and len(st.markers("r1")) == 2
    assert sqlite3.connect(db).execute("SELECT value FROM meta").fetchone()[0] == "3"


def test_html_report_prints_on_a4_with_the_manifest_and_signature_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = sealed_store(tmp_path)
    out = tmp_path / "out"
    assert main(["--state-dir", str(state), "report", "r1", "--out", str(out)]) == 0
    page = (out / "r1.html").read_text()
    assert "@media print" in page and "size: A4" in page
    with Store(state / "powerd.db") as st:
        latest = st.manifests("r1")[-1]
    assert latest["revision"] == 2  # report re-sealed; the page shows the seal it was made with
    assert f"<code>{audit.manifest_digest(latest)}</code>" in page
    assert 'id="manifest"' in page and "C2TEST0042" in page and "uncalibrated" in page
    assert latest["channels"]["wt300:bench:p1"]["samples_sha256"] in page
    assert 'id="verdicts"' in page and "No claim was verified" in page
    sign = page[page.index('id="signatures"') :]
    for role in ("Measured by", "Reviewed by", "Approved by"):
        assert role in sign
    assert all(h in sign for h in ("name", "role", "date", "signature"))


def test_the_daemon_seals_each_result_with_its_config_and_agents_clock_sync(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    from powerd.clocksync import Exchange, OffsetEstimator
    from powerd.daemon import Daemon
    from powerd.timeline import Timeline

    cfg_path = tmp_path / "powerd.toml"
    cfg_path.write_text(CONFIG_TOML)
    ctx = audit.AuditContext.from_config_file("run", cfg_path, ["wt300:/dev/ttyUSB0"])
    state = tmp_path / "state"
    store = Store(state / "powerd.db")
    store.annotate_channel = calibration.annotator(table())
    daemon = Daemon(store, Timeline(), time.time_ns, result_grace_s=0.0, audit_context=ctx)
    t0 = time.time_ns()
    daemon.offsets["edge-02"] = OffsetEstimator()  # an agent seen, its offset not known yet
    est = daemon.offsets["edge-01"] = OffsetEstimator()  # agent clock 3 s ahead, 2 ms round trip
    est.add(Exchange(t0 - S, t0 - S + 3 * S + MS, t0 - S + 3 * S + MS, t0 - S + 2 * MS))
    far = daemon.offsets["edge-03"] = OffsetEstimator()  # known, but the run does not cover it
    far.add(Exchange(t0 - S, t0 - S + MS, t0 - S + MS, t0 - S + 2 * MS))
    ch = Channel("wt300:bench:p1", "power", "meter", 1e-3, instrument=IDN, device="edge-01")
    daemon.timeline.add_channel(ch)
    store.put_channel(ch)
    t = t0 + np.arange(1001, dtype=np.int64) * MS
    blk = Block.of(ch.id, t, np.full(t.size, 5.0))
    daemon.timeline.append(blk)
    store.append(blk)
    store.flush()
    begin_extra = {"device": "edge-01"}
    for ev, seq, dt_ms, extra in (("begin", 1, 100, begin_extra), ("end", 2, 900, {"count": 4})):
        m = {"v": 1, "run": "d1", "phase": "p", "event": ev, "seq": seq, "t_ns": t0 + dt_ms * MS}
        assert daemon.submit_marker("harness", json.dumps(m | extra)).error is None
    (result,) = daemon.due_results()
    (m,) = store.manifests("d1")
    store.close()
    assert m["command"] == "run" and m["probes"] == ["wt300:/dev/ttyUSB0"]
    assert m["config"]["calibration"]["serial:C2TEST0042"]["certificate"] == "CAL-2026-0142"
    assert m["channels"]["wt300:bench:p1"]["calibration"]["certificate"] == "CAL-2026-0142"
    # edge-02's offset is not known: not claimed; edge-03's is, but the run does not cover it
    assert set(m["clock_sync"]) == {"edge-01"}
    sync = m["clock_sync"]["edge-01"]
    assert sync["offset_ns"] == -3 * S and sync["uncertainty_ns"] == MS
    assert result["phases"][0]["channels"]["wt300:bench:p1"]["calibration"]["due"] == "2026-12-31"
    code = main(["--state-dir", str(state), "audit", "d1"])
    assert code == 0, capsys.readouterr().out
    # an offline recompute re-seals, keeping what only the daemon knew (and saying so)
    assert main(["--state-dir", str(state), "report", "d1", "--out", str(tmp_path / "o")]) == 0
    with Store(state / "powerd.db") as st:
        first, second = st.manifests("d1")
    assert second["revision"] == 2 and second["command"] == "report"
    assert second["carried_from_revision"] == 1 and second["config"] == first["config"]
    assert second["clock_sync"] == first["clock_sync"]
    assert main(["--state-dir", str(state), "audit", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def edit_channel_json(state: Path, **changes: object) -> None:
    con = sqlite3.connect(state / "powerd.db")
    meta = json.loads(con.execute("SELECT json FROM channels").fetchone()[0])
    for key, value in changes.items():
        if isinstance(value, dict):
            meta[key] = {**meta[key], **value}
        else:
            meta[key] = value
    con.execute("UPDATE channels SET json=?", (json.dumps(meta, sort_keys=True),))
    con.commit()
    con.close()


def test_changed_channel_accuracy_fails_and_a_live_stamp_update_is_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = sealed_store(tmp_path)
    edit_channel_json(state, stamp_uncertainty_s=0.004)  # what the daemon does for agents
    code, out = run_audit(state, capsys)
    assert code == 0 and "note: wt300:bench:p1: stamp_uncertainty_s changed" in out, out
    edit_channel_json(state, accuracy={"reading_frac": 0.0001})
    code, out = run_audit(state, capsys)
    assert code == 1, out
    assert "channel metadata in the store differs from the sealed: accuracy" in out


def test_a_manifest_that_cannot_be_sealed_is_counted_and_the_result_stands(
    tmp_path: Path,
) -> None:
    import time

    from powerd.daemon import Daemon
    from powerd.timeline import Timeline

    store = Store(tmp_path / "powerd.db")
    broken = audit.AuditContext("run", {"not json": object()})  # cannot be hashed
    daemon = Daemon(store, Timeline(), time.time_ns, result_grace_s=0.0, audit_context=broken)
    t0 = time.time_ns()
    daemon.timeline.add_channel(METER)
    store.put_channel(METER)
    blk = Block.of(METER.id, t0 + np.arange(101, dtype=np.int64) * MS, np.full(101, 5.0))
    daemon.timeline.append(blk)
    store.append(blk)
    store.flush()
    for ev, seq, at_ms in (("begin", 1, 10), ("end", 2, 90)):
        m = {"v": 1, "run": "x1", "phase": "p", "event": ev, "seq": seq, "t_ns": t0 + at_ms * MS}
        assert daemon.submit_marker("harness", json.dumps(m)).error is None
    (result,) = daemon.due_results()
    assert store.result("x1") == json.loads(json.dumps(result)) and store.manifests("x1") == []
    assert daemon.counts["manifest_failed"] == 1
    assert "manifest_failed" in json.dumps(daemon.health.snapshot())
    store.close()
