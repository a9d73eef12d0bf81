"""The command state machine in-process: the replies power-dev parses, the DC variant, and the
cases a session should never hit but a face must answer (Stop twice, Go while measuring, a
bad range, an unknown command, a store that refuses a marker)."""

from __future__ import annotations

import io
from pathlib import Path

from powerd.channel import Accuracy, Channel
from powerd.ptd.aggregate import NS_PER_S, Aggregator, Interval
from powerd.ptd.meter import Ranging
from powerd.ptd.protocol import Face
from powerd.ptd.samplelog import SampleLog
from powerd.ptd.stamp import StampedOut

CH = Channel("m:p1", "power", "meter", 0.001, Accuracy(reading_frac=0.005))


class _Rec:
    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.refuse = refuse
        self.settled = 0

    def begin(self, mark: str, t_ns: int) -> str | None:
        self.calls.append(("begin", mark, t_ns))
        return "refused for the test" if self.refuse else None

    def end(self, mark: str, t_ns: int) -> str | None:
        self.calls.append(("end", mark, t_ns))
        return None

    def settle(self) -> None:
        self.settled += 1


def _face(tmp: Path, dc: bool = False, refuse: bool = False) -> tuple[Face, io.StringIO, _Rec]:
    buf = io.StringIO()
    now = [10 * NS_PER_S]
    agg = Aggregator(CH, lambda _iv: None)
    agg.complete_until_ns = 10**20  # nothing to wait for at Stop
    rec = _Rec(refuse)
    face = Face(
        out=StampedOut(buf),
        log=SampleLog(tmp / "ptd.log"),
        channel=CH,
        ranging=Ranging(object()),
        agg=agg,
        recorder=rec,
        identify="powerd-ptd,instrument=sim,channel=m:p1,version=0.1.0-powerd",
        dc=dc,
        nominal_volts_v=120.0,
        clock=lambda: now[0],
    )
    return face, buf, rec


def test_measurement_window_cursor_and_stats(tmp_path: Path) -> None:
    face, buf, rec = _face(tmp_path)
    assert face.handle("Watts") == ["Watts,-1,-1,-1,0,0,0"]
    assert face.handle("Uncertainty") == ["Uncertainty,-1,-1,-1,0,0,0,0"]
    assert face.handle("RL") == ["Last 0 samples"]
    face.on_interval(Interval(10 * NS_PER_S, 7.0, 5))  # before Go: echoed, not measured
    assert face.handle("Go,1000,0,s_ranging")[0].startswith("Starting untimed measurement")
    face.on_interval(Interval(11 * NS_PER_S, 7.0, 5))  # starts 10.0 s = Go: in
    face.on_interval(Interval(12 * NS_PER_S, 0.0, 5))  # 0 W: logged, uncertainty unknown
    assert face.handle("RL") == [
        "Last 2 samples",
        "Time,01-01-1970 00:00:11.000,Watts,7,Volts,120,Amps,0.05833333,PF,-1",
        "Time,01-01-1970 00:00:12.000,Watts,0,Volts,120,Amps,0,PF,-1",
    ]
    assert face.handle("RL") == ["Last 0 samples"]
    face.on_interval(Interval(13 * NS_PER_S, 9.0, 5))
    assert face.handle("DC-RL")[0] == "Last 1 samples"
    assert face.handle("Watts") == ["Watts,5.333333,0,9,3,0,3"]
    assert face.handle("Uncertainty") == ["Uncertainty,0.005,0.005,0.005,2,0,2,0"]
    assert face.handle("Stop") == ["Stopping untimed measurement"]
    face.after_reply()
    assert rec.settled == 1
    assert face.handle("Stop") == ["Error: no measurement to stop"]
    log = (tmp_path / "ptd.log").read_text().splitlines()
    assert len(log) == 3 and all(x.endswith(",Mark,s_ranging") for x in log)
    assert all(len(x.split(",")) == 12 for x in log)
    assert [c[:2] for c in rec.calls] == [("begin", "s_ranging"), ("end", "s_ranging")]
    text = buf.getvalue()
    assert "Go with mark 's_ranging'" in text and "Completed test" in text
    assert "WARNING" not in text  # 0.5 % is within PTDaemon's 1 % limit


def test_dc_face_and_odd_commands(tmp_path: Path) -> None:
    face, buf, rec = _face(tmp_path, dc=True, refuse=True)
    assert face.handle("RL,*,*") == ["Error: Unknown command"]
    assert face.handle("Bogus") == ["Error: Unknown command"]
    assert face.handle("SR,V,abc") == ["Error: range 'abc' is not a number or Auto"]
    assert face.handle("SR,V,nan") == ["Error: range 'nan' is not a number or Auto"]
    assert face.handle("SR,A,-1") == ["Range A changed"]  # power-dev's -1: a no-op here
    assert face.handle("Go,0,0,x")[0].startswith("Error:")
    assert face.handle("Go,1000,1,a_ranging") == [
        "Starting untimed measurement, maximum 500000 samples at 1000ms with 1 rampup samples"
    ]
    face.on_interval(Interval(11 * NS_PER_S, 7.0, 5))  # the ramp-up sample: left out
    face.on_interval(Interval(12 * NS_PER_S, 8.0, 5))
    assert face.handle("RL")[0] == "Last 1 samples"
    assert face.handle("Go,1000,0,a_testing")[0].startswith("Starting")  # ends a_ranging first
    assert [c[:2] for c in rec.calls] == [
        ("begin", "a_ranging"),
        ("end", "a_ranging"),
        ("begin", "a_testing"),
    ]
    text = buf.getvalue()
    assert "WARNING: powerd store: phase 'a_ranging' not begun: refused for the test" in text
    assert "Go while measuring: stopping mark 'a_ranging' first" in text
    for line in text.splitlines():
        assert line[:23].count(":") == 2 and line[23:25] == ": ", line  # all stamped


def test_a_second_missing_readings_is_not_valid_and_overrange_raises_amps(tmp_path: Path) -> None:
    """A second that lost readings (NAN/overrange) or holds too few is logged and returned with
    Watts -1 and no uncertainty, a timestamped WARNING says why, the Watts/Uncertainty figures
    leave it out (and say so), and an overrange second logs Amps of at least its floor."""
    face, buf, _ = _face(tmp_path)
    assert face.handle("Go,1000,0,x_ranging")[0].startswith("Starting untimed measurement")
    whole = Interval(11 * NS_PER_S, 20.0, 10, 12.0, 1.6, 1.0, expected=10.0)
    lost = Interval(12 * NS_PER_S, 13.75, 6, 12.0, 1.1, 1.0, 10.0, 4, 2, None, 2.8)
    short = Interval(13 * NS_PER_S, 20.0, 8, 12.0, 1.6, 1.0, expected=10.0)
    none = Interval(14 * NS_PER_S, float("nan"), 0, 12.0, None, None, 10.0, 10, 5, None, 2.8)
    for iv in (whole, lost, short, none):
        face.on_interval(iv)
    assert face.handle("RL") == [
        "Last 4 samples",
        "Time,01-01-1970 00:00:11.000,Watts,20,Volts,12,Amps,1.6,PF,1",
        "Time,01-01-1970 00:00:12.000,Watts,-1,Volts,12,Amps,2.8,PF,1",
        "Time,01-01-1970 00:00:13.000,Watts,-1,Volts,12,Amps,1.6,PF,1",
        "Time,01-01-1970 00:00:14.000,Watts,-1,Volts,12,Amps,2.8,PF,-1",
    ]
    assert face.handle("Watts") == ["Watts,20,20,20,1,0,1"]
    assert face.handle("Uncertainty") == ["Uncertainty,0.005,0.005,0.005,1,0,1,0"]
    assert face.invalid == 3 and face.overrange == 2
    text = [x.split(": ", 1)[1] for x in buf.getvalue().splitlines()]
    warned = [x for x in text if x.startswith("WARNING: sample ")]
    assert len(warned) == 3
    assert "2 reading(s) overrange" in warned[0] and "2 reading(s) with no data" in warned[0]
    assert "8 of the 10 readings" in warned[1]
    assert any(x.startswith("WARNING: Watts: 3 of 4 samples") for x in text)
    assert any(x.startswith("WARNING: Uncertainty: 3 of 4 samples") for x in text)
    # no uncertainty is claimed for an invalid second, nor PTDaemon's limit warning
    echoed = [x for x in text if x.startswith("Time,") and ",Watts,-1," in x]
    assert len(echoed) == 3 and all(",Uncertainty,-1," in x for x in echoed)
    assert not any("above 1.00% limit" in x for x in text)
    log = (tmp_path / "ptd.log").read_text().splitlines()
    assert len(log) == 4 and all(len(x.split(",")) == 12 and "nan" not in x for x in log)
