"""ipmi: the DCMI parser on captured outputs, and the probe against a fake ``ipmitool``.

Each ``testdata/<case>/`` holds ``stdout.txt`` (what ``ipmitool dcmi power reading`` printed)
and ``case.json`` (``power_w`` for a trusted reading, or ``problem_contains``; optional parsed
fields). ONE loop runs every case through the pure parser and through the probe with a fake
``ipmitool`` (a script first on PATH) printing it. A regression is a new folder.

The fake reads its behaviour from a state directory at every call (``mode``: a file to print,
``hang`` or ``fail``), so a test can change it while the probe runs, and logs its arguments.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import powerd.probes.ipmi as ipmi_module
from powerd.errors import ProbeUnavailable
from powerd.probes.ipmi import IpmiProbe, family
from powerd.probes.ipmi.parse import judge, parse_reading
from tests.ports import free_port
from tests.probes.clistream import faketool
from tests.probes.clitool import Values, measure_phase
from tests.probes.clitool import collect as collect_any

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p for p in TESTDATA.iterdir() if (p / "case.json").is_file())

FAKE = """#!{python}
import os, sys, time
state = os.environ["FAKE_IPMITOOL_STATE"]
with open(os.path.join(state, "args.log"), "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if "-f" in sys.argv:
    open(sys.argv[sys.argv.index("-f") + 1]).read()  # ipmitool reads the password file
mode = open(os.path.join(state, "mode")).read().strip()
if mode == "hang":
    time.sleep(600)
elif mode == "fail":
    sys.stderr.write("Could not open device at /dev/ipmi0 or /dev/ipmi/0 or /dev/ipmidev/0\\n")
    sys.exit(1)
else:
    sys.stdout.write(open(mode).read())
"""


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ipmitool first on PATH; returns its state directory (write ``mode`` there)."""
    bin_dir = tmp_path / "bin"
    faketool.install_script(bin_dir, "ipmitool", FAKE)
    state = tmp_path / "state"
    state.mkdir()
    faketool.on_path(monkeypatch, bin_dir)
    monkeypatch.setenv("FAKE_IPMITOOL_STATE", str(state))
    return state


def set_mode(state: Path, mode: str | Path) -> None:
    (state / "mode").write_text(str(mode))


def collect(
    probe: IpmiProbe, until: Callable[[list[float], list[str]], bool]
) -> tuple[list[float], list[str]]:
    """Read every 50 ms until ``until`` holds; the values of the probe's one channel."""

    def flat(values: Values) -> list[float]:
        return [w for ws in values.values() for w in ws]

    values, problems = collect_any(probe, lambda v, p: until(flat(v), p), poll_s=0.05)
    return flat(values), problems


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_case(case: Path, fake: Path) -> None:
    want = json.loads((case / "case.json").read_text())
    text = (case / "stdout.txt").read_text()
    verdict = judge(text)
    reading = parse_reading(text)
    for key in ("min_w", "max_w", "avg_w", "period_s", "state"):
        if key in want:
            assert getattr(reading, key) == want[key], key
    set_mode(fake, case / "stdout.txt")
    if "power_w" in want:
        assert verdict.power_w == want["power_w"] and verdict.problem is None
        probe = family.open("interval=1")
        try:
            values, problems = collect(probe, lambda v, p: len(v) >= 2)
        finally:
            probe.close()
        assert problems == []
        assert values[:2] == [want["power_w"]] * 2
    else:
        assert verdict.power_w is None
        assert want["problem_contains"] in (verdict.problem or "")
        with pytest.raises(ProbeUnavailable, match=want["problem_contains"]):
            family.open("interval=1")


def test_a_bmc_that_turns_bad_while_running_gives_problems_never_zero(fake: Path) -> None:
    good = TESTDATA / "generic-ipmitool-1.8.19-ctime-stamp" / "stdout.txt"
    set_mode(fake, good)
    probe = family.open("interval=1,timeout=1")
    seen: list[float] = []
    try:
        for mode, done in (
            (good, lambda v, p: len(v) >= 1),
            (TESTDATA / "supermicro-x11-zero-watts" / "stdout.txt", "0 W while"),
            (TESTDATA / "openbmc-deactivated" / "stdout.txt", "deactivated"),
            ("hang", "no answer within 1 s"),
            (good, lambda v, p: len(v) >= 1),
        ):
            set_mode(fake, mode)
            until = done if callable(done) else lambda v, p, t=done: any(t in x for x in p)
            values, _ = collect(probe, until)
            seen += values
    finally:
        probe.close()
    assert seen and set(seen) == {346.0}  # never a 0 W or a deactivated 235 W sample


def test_lanplus_reads_the_password_from_a_file_only(fake: Path, tmp_path: Path) -> None:
    secret = "s3cr3t-pw"
    pw = tmp_path / "bmc.pw"
    pw.write_text(secret + "\n")
    pw.chmod(0o600)
    set_mode(fake, TESTDATA / "gigabyte-g431-mm0-ot-ipmitool-1.8.19" / "stdout.txt")
    probe = family.open(f"host=10.0.0.9,user=admin,password_file={pw},cipher=17,name=node7")
    try:
        (ch,) = probe.channels()
        assert ch.id == "ipmi:node7" and ch.measures == "bmc:10.0.0.9"
        values, _ = collect(probe, lambda v, p: len(v) >= 1)
    finally:
        probe.close()
    assert values[0] == 195.0
    args = (fake / "args.log").read_text().splitlines()[0]
    assert args == f"-I lanplus -H 10.0.0.9 -U admin -f {pw} -C 17 dcmi power reading"
    assert secret not in (fake / "args.log").read_text()


def test_errors_at_open_are_unavailable_with_the_tool_message(fake: Path) -> None:
    set_mode(fake, "fail")
    with pytest.raises(ProbeUnavailable, match=r"exit 1: Could not open device at /dev/ipmi0"):
        family.open("")
    set_mode(fake, "hang")
    with pytest.raises(ProbeUnavailable, match=r"no answer within 0\.5 s"):
        family.open("timeout=0.5")
    with pytest.raises(Exception, match="need host=BMC"):
        family.open("user=admin")


def test_missing_ipmitool_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # an empty PATH and no fallback paths: what a host without ipmitool looks like, on any host
    # (setup installs ipmitool, so the real fallback paths would always find it)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(ipmi_module, "FALLBACK_PATHS", ())
    avail = family.available()
    assert not avail.ok and not avail.broken and "ipmitool not found" in avail.reason


def test_measure_with_the_fake_ipmitool(fake: Path, tmp_path: Path) -> None:
    set_mode(fake, TESTDATA / "generic-ipmitool-1.8.19-ctime-stamp" / "stdout.txt")
    phase = measure_phase(tmp_path, "ipmi:interval=1", run="i1", seconds=3)
    assert phase["channels"]["ipmi:local"]["primary"] is True
    assert phase["energy_j"] / phase["duration_s"] == pytest.approx(346.0, rel=1e-6)


def _free_udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


def test_real_ipmitool_over_lanplus_against_a_simulated_bmc(tmp_path: Path) -> None:
    """Debian's ipmitool against pyghmi's RMCP+ BMC (``dcmi_bmc.py``) on 127.0.0.1."""
    exe = shutil.which("ipmitool")
    if exe is None or importlib.util.find_spec("pyghmi") is None:
        pytest.skip("needs ipmitool (apt) and pyghmi (pip) for the real-tool test")
    state, pw, bad = tmp_path / "watts", tmp_path / "bmc.pw", tmp_path / "wrong.pw"
    state.write_text("287\n")
    pw.write_text("s3cret\n")
    bad.write_text("wrong\n")
    port = _free_udp_port()
    bmc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "dcmi_bmc.py"), str(port), "admin",
         "s3cret", str(state)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    spec = f"host=127.0.0.1,port={port},user=admin,password_file={pw},timeout=10"
    try:
        probe = None
        deadline = time.monotonic() + 20
        while probe is None:  # the simulator takes a moment to listen
            try:
                probe = family.open(spec)
            except ProbeUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        try:
            values, problems = collect(probe, lambda v, p: len(v) >= 2)
            state.write_text("287 deactivated\n")
            collect(probe, lambda v, p: any("deactivated" in x for x in p))
        finally:
            probe.close()
        assert set(values) == {287.0} and problems == []
        with pytest.raises(ProbeUnavailable, match="Unable to establish IPMI v2 / RMCP\\+ session"):
            family.open(spec.replace(str(pw), str(bad)))
    finally:
        bmc.terminate()
        bmc.wait(10)
