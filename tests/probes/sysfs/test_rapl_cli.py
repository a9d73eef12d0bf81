"""``powerd`` end to end on captured RAPL trees: a counter wrapping mid-window, and the root-only
``energy_uj`` trap (CVE-2020-8694) made real.

Root ignores file modes, so the permission tests drop the DAC capabilities with
``setpriv --bounding-set=-dac_override,-dac_read_search``: a 0400 file owned by ``nobody`` is
then unreadable for real. As a normal user a mode-000 file is unreadable already.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tools import require_tool, run_powerd

TESTDATA = Path(__file__).parent / "testdata"
XEON = TESTDATA / "xeon-6338-2pkg-linux-6.1"


def powerd(
    state: Path, *args: str, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return run_powerd(*args, state=state, env={"POWERD_SYSFS_ROOT": None}, prefix=prefix)


# --- a counter that wraps mid-window, driven as a known function of time


class Counter:
    """Writes ``energy_uj`` = P·(t − t_ref) mod range every ``step_s`` (atomically, by rename)."""

    def __init__(self, path: Path, power_w: float, range_uj: int, step_s: float = 0.002) -> None:
        self.path, self.power_w, self.range_uj, self.step_s = path, power_w, range_uj, step_s
        self.t_ref_ns = time.time_ns()
        self.stop = threading.Event()
        self.write()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def write(self) -> None:
        energy_uj = round(self.power_w * (time.time_ns() - self.t_ref_ns) / 1e3)
        tmp = self.path.with_name("energy_uj.tmp")
        tmp.write_text(f"{energy_uj % self.range_uj}\n")
        os.replace(tmp, self.path)

    def run(self) -> None:
        while not self.stop.wait(self.step_s):
            self.write()


@pytest.fixture
def wrapping_tree(tmp_path: Path) -> Iterator[tuple[Path, Counter]]:
    root = tmp_path / "tree"
    zone = root / "sys/class/powercap/intel-rapl:0"
    zone.mkdir(parents=True)
    (root / "proc").mkdir()
    (root / "proc/cpuinfo").write_text((XEON / "proc/cpuinfo").read_text())
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("10000000\n")  # 10 J: wraps every 0.25 s at 40 W
    counter = Counter(zone / "energy_uj", power_w=40.0, range_uj=10_000_000)
    counter.thread.start()
    try:
        yield root, counter
    finally:
        counter.stop.set()
        counter.thread.join()


def test_measure_integrates_a_counter_that_wraps_mid_window(
    tmp_path: Path, wrapping_tree: tuple[Path, Counter]
) -> None:
    root, counter = wrapping_tree
    out = tmp_path / "out"
    r = powerd(
        tmp_path / "state",
        "--sysfs-root",
        str(root),
        "measure",
        "--probe",
        "rapl:interval=0.02",
        "--run",
        "wrap",
        "--quiet",
        "--out",
        str(out),
        "--",
        "sleep",
        "1.5",
    )
    assert r.returncode == 0, r.stderr
    (phase,) = json.loads((out / "wrap.json").read_text())["phases"]
    ch = phase["channels"]["rapl:package-0"]
    truth_j = counter.power_w * (phase["t_end_ns"] - phase["t_begin_ns"]) / 1e9
    assert truth_j > 5 * counter.range_uj / 1e6  # the counter wrapped several times in the window
    assert ch["method"] == "counter" and ch["flags"] == [] and ch["coverage"] == 1.0
    assert abs(ch["energy_j"] - truth_j) <= ch["uncertainty_j"], (ch, truth_j)
    assert abs(phase["energy_j"] - truth_j) <= phase["uncertainty_j"]
    assert phase["flags"] == []


# --- the permission trap


@pytest.fixture
def locked_tree(tmp_path: Path) -> tuple[Path, tuple[str, ...]]:
    """The Xeon tree with every energy_uj unreadable to the powerd we start, and its prefix."""
    root = tmp_path / "tree"
    shutil.copytree(XEON, root, ignore=shutil.ignore_patterns("case.json"))
    files = sorted(root.glob("sys/class/powercap/*/energy_uj"))
    assert files
    if os.geteuid() == 0:
        setpriv = require_tool("setpriv")
        for f in files:
            os.chown(f, 65534, -1)  # nobody
            f.chmod(0o400)
        return root, (setpriv, "--bounding-set=-dac_override,-dac_read_search")
    for f in files:
        f.chmod(0)
    return root, ()


REMEDY_PARTS = ("CVE-2020-8694", "run powerd as root", "udev", "chmod g+r", "SupplementaryGroups")


def test_rapl_alone_without_permission_exits_nonzero_with_the_remedy_in_one_line(
    tmp_path: Path, locked_tree: tuple[Path, tuple[str, ...]]
) -> None:
    root, prefix = locked_tree
    r = powerd(
        tmp_path / "state",
        "--sysfs-root",
        str(root),
        "measure",
        "--probe",
        "rapl",
        "--run",
        "r1",
        "--out",
        str(tmp_path / "out"),
        "--",
        "true",
        prefix=prefix,
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("powerd: error: ") and "permission denied" in lines[0]
    for part in REMEDY_PARTS:
        assert part in lines[0], part
    assert not (tmp_path / "out" / "r1.json").exists()


def test_rapl_without_permission_beside_sim_warns_and_measures_with_sim(
    tmp_path: Path, locked_tree: tuple[Path, tuple[str, ...]]
) -> None:
    root, prefix = locked_tree
    out = tmp_path / "out"
    r = powerd(
        tmp_path / "state",
        "--sysfs-root",
        str(root),
        "measure",
        "--probe",
        "rapl",
        "--probe",
        "sim:constant,w=5",
        "--run",
        "r2",
        "--quiet",
        "--out",
        str(out),
        "--",
        "sleep",
        "0.5",
        prefix=prefix,
    )
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if "warning" in ln and "rapl" in ln]
    assert len(warnings) == 1, r.stderr
    for part in REMEDY_PARTS:
        assert part in warnings[0], part
    (phase,) = json.loads((out / "r2.json").read_text())["phases"]
    assert list(phase["channels"]) == ["sim:constant"]
    assert abs(phase["energy_j"] - 5 * phase["duration_s"]) <= phase["uncertainty_j"]


def test_probes_lists_rapl_as_not_usable_with_the_remedy(
    tmp_path: Path, locked_tree: tuple[Path, tuple[str, ...]]
) -> None:
    root, prefix = locked_tree
    r = powerd(tmp_path / "state", "--sysfs-root", str(root), "probes", prefix=prefix)
    assert r.returncode == 0, r.stderr
    (row,) = [ln for ln in r.stdout.splitlines() if ln.startswith("rapl ")]
    assert row.split()[1] == "broken"
    assert "permission denied" in row
    for part in REMEDY_PARTS:
        assert part in row, part
