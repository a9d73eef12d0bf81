"""``powerd measure --live``: the live view on loopback while CMD runs, as a real subprocess. The
CMD itself opens the page and reads the stream (its URL is in POWERD_URL): the measured
command's own phase shows as open, and its samples arrive as min/max columns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, os, urllib.request
url = os.environ["POWERD_URL"]
assert b"powerd live" in urllib.request.urlopen(url + "/live", timeout=10).read()
seen = {}
with urllib.request.urlopen(url + "/v1/live?width=50&range_s=5&interval_s=0.05", timeout=10) as r:
    event = ""
    for raw in r:
        line = raw.decode().strip()
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            seen[event] = json.loads(line[6:])
            if {"columns", "phases"} <= set(seen):
                break
cols = seen["columns"]["channels"]["sim:constant"]
assert set(cols["max"]) == {5.0}, cols
phase = seen["phases"]["phases"][0]
assert phase["run"] == os.environ["POWERD_RUN"] and phase["t_end_ns"] is None, phase
print("LIVE-OK")
"""


def test_measure_live_serves_the_page_while_cmd_runs(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "powerd", "--state-dir", str(tmp_path / "state"), "measure",
        "--probe", "sim:constant,w=5,rate=200", "--run", "live-m", "--live", "--quiet",
        "--out", str(tmp_path / "out"), "--", sys.executable, "-c", CHILD,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LIVE-OK" in done.stdout
    assert "powerd: live view: http://127.0.0.1:" in done.stderr
