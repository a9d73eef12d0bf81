"""1 Hz from any rate, end to end: a 10 Hz telemetry energy counter (differenced, like NVML's
mJ counter) and a 20 kHz meter both give exact 1 s means with their sample counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ptd.ptdproc import GO, Client, running_ptd, wait_log_lines


@pytest.mark.parametrize(
    ("spec", "watts", "per_second"),
    [
        ("sim:constant,w=20,kind=energy,class=telemetry,rate=10,acc=0.05", 20.0, 10),
        ("sim:square,high=30,low=10,period=0.001,rate=20000", 20.0, 20000),
    ],
    ids=["counter-10Hz", "power-20kHz"],
)
def test_one_second_means_from_any_rate(
    tmp_path: Path, spec: str, watts: float, per_second: int
) -> None:
    with running_ptd(tmp_path, spec, tmp_path / "state") as ptd:
        c = Client(ptd.port)
        assert c.cmd("Go,1000,0,r_ranging") == GO
        wait_log_lines(ptd, "r_ranging", 2)
        assert c.cmd("Stop") == "Stopping untimed measurement"
        rows = [x.split(",") for x in c.read_last("RL")]
        c.close()
        assert ptd.terminate() == 0
        echoed = [x for x in ptd.out_lines() if ",Mark,r_ranging," in x]
    assert len(rows) >= 2
    assert all(float(f[3]) == pytest.approx(watts, rel=1e-9) for f in rows)
    # every measured second holds all of its native samples (the counter's first one too:
    # the previous second's last reading is its predecessor)
    assert [x.rsplit(",Samples,", 1)[1] for x in echoed] == [str(per_second)] * len(echoed)
