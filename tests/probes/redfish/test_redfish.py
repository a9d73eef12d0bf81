"""redfish: every mockup case through the probe against a local Redfish server, plus auth, TLS,
faults, a real mockup server (``sushy-static``) and ``powerd measure`` end to end.

A case is ``testdata/<case>/mockup/`` (a DMTF-layout mockup: ``<path>/index.json`` answers
``/redfish/v1/<path>``) and ``case.json``::

    {"description": "...", "args": "chassis=1U",           # optional, added to url/name/interval
     "channels": {"<id>": {"kind": ..., "source_class": ..., "measures": ...,
                           "accuracy": {...}, "description_contains": "..."}},   # ids exact
     "first": {"<id>": value},                # the first sample of each channel (W or J)
     "open_problems": ["..."],                # substrings of problems reported after open
     "steps": [{"write": {"<mockup path>": {json}}, "expect": {"<id>": value},
                "problems": ["..."]}]}        # rewrite resources, wait for values/problems
    or {"description": "...", "unavailable": "regex"}

ONE loop runs them all; a regression is a new folder.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from powerd.errors import ProbeUnavailable
from powerd.probes.redfish import RedfishProbe, family
from powerd.probes.redfish.parse import sensor, sensor_role
from tests.ports import free_port
from tests.probes.clitool import Until, Values, measure_phase
from tests.probes.clitool import collect as collect_any
from tests.probes.redfish.mockserver import MockRedfish
from tests.tools import require_tool

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p for p in TESTDATA.iterdir() if (p / "case.json").is_file())
FAST = "name=bmc,interval=0.5,timeout=2"


def collect(probe: RedfishProbe, until: Until) -> tuple[Values, list[str]]:
    """Read every 50 ms until ``until`` holds; times rise within each block."""
    return collect_any(probe, until, ordered=True, poll_s=0.05)


@pytest.fixture
def mockup(tmp_path: Path) -> Iterator[Callable[..., MockRedfish]]:
    servers: list[MockRedfish] = []

    def start(case: Path, **kw: Any) -> MockRedfish:
        root = tmp_path / f"mockup{len(servers)}"
        shutil.copytree(case / "mockup", root)
        servers.append(MockRedfish(root, **kw))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_case(case: Path, mockup: Callable[..., MockRedfish]) -> None:
    want = json.loads((case / "case.json").read_text())
    server = mockup(case)
    spec = f"url={server.url},{FAST}" + (f",{want['args']}" if want.get("args") else "")
    if "unavailable" in want:
        with pytest.raises(ProbeUnavailable, match=want["unavailable"]):
            family.open(spec)
        return
    probe = family.open(spec)
    try:
        chans = {c.id: c for c in probe.channels()}
        assert sorted(chans) == sorted(want["channels"])
        for cid, fields in want["channels"].items():
            for key, value in fields.items():
                if key == "description_contains":
                    assert value in chans[cid].description, chans[cid].description
                elif key == "accuracy":
                    for k, v in value.items():
                        assert getattr(chans[cid].accuracy, k) == pytest.approx(v), (cid, k)
                else:
                    assert getattr(chans[cid], key) == value, (cid, key)
        first = want["first"]
        values, problems = collect(probe, lambda v, p: all(c in v for c in first))
        assert {c: v[0] for c, v in values.items()} == pytest.approx(first)
        for text in want.get("open_problems", []):
            assert any(text in p for p in problems), (text, problems)
        for step in want["steps"]:
            for rel, doc in step.get("write", {}).items():
                (server.root / rel / "index.json").write_text(json.dumps(doc))
            expect = step.get("expect", {})
            texts = step.get("problems", [])
            values, problems = collect(
                probe,
                lambda v, p, e=expect, t=texts: (
                    all(c in v and v[c][-1] == pytest.approx(x) for c, x in e.items())
                    and all(any(s in q for q in p) for s in t)
                ),
            )
            assert 0.0 not in [x for v in values.values() for x in v]
    finally:
        probe.close()


RACKMOUNT = TESTDATA / "dmtf-public-rackmount1-2025"
IDRAC = TESTDATA / "idrac9-legacy-power-only"


def test_basic_auth_from_a_password_file(
    mockup: Callable[..., MockRedfish], tmp_path: Path
) -> None:
    pw = tmp_path / "bmc.pw"
    pw.write_text("calvin\n")
    server = mockup(IDRAC, user="root", password="calvin")
    probe = family.open(f"url={server.url},{FAST},user=root,password_file={pw}")
    try:
        values, _ = collect(probe, lambda v, p: bool(v))
    finally:
        probe.close()
    assert values == {"redfish:bmc:System.Embedded.1:power": [212.0]}
    pw.write_text("wrong\n")
    with pytest.raises(ProbeUnavailable, match=r"HTTP 401 .*check user and password_file") as err:
        family.open(f"url={server.url},{FAST},user=root,password_file={pw}")
    assert "wrong" not in str(err.value) and "calvin" not in str(err.value)


def test_a_hanging_or_garbled_resource_is_a_problem_for_its_channels_only(
    mockup: Callable[..., MockRedfish],
) -> None:
    server = mockup(RACKMOUNT)
    probe = family.open(f"url={server.url},{FAST},timeout=0.5")
    try:
        collect(probe, lambda v, p: "redfish:bmc:1U:power" in v)
        server.faults["/redfish/v1/Chassis/1U/Power"] = "hang"
        server.faults["/redfish/v1/Chassis/1U/Sensors/CPU1Power"] = "garbage"
        server.faults["/redfish/v1/Chassis/1U/Sensors/PS1Energy"] = 503
        values, problems = collect(
            probe,
            lambda v, p: (
                len(v.get("redfish:bmc:1U:env-power", [])) >= 3
                and any("no answer in 0.5 s" in x for x in p)
                and any("not JSON" in x for x in p)
                and any("HTTP 503" in x for x in p)
            ),
        )
    finally:
        probe.close()
    assert any(
        x.startswith("redfish:bmc:1U:power: GET /redfish/v1/Chassis/1U/Power") for x in problems
    )
    assert set(values["redfish:bmc:1U:env-power"]) == {374.0}  # the others keep coming


def test_tls_with_a_ca_file_or_explicitly_insecure(
    mockup: Callable[..., MockRedfish], tmp_path: Path
) -> None:
    openssl = require_tool("openssl")
    cert, key = tmp_path / "bmc.pem", tmp_path / "bmc.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    server = mockup(IDRAC, tls=(cert, key))
    assert server.url.startswith("https://")
    with pytest.raises(ProbeUnavailable, match=r"TLS certificate not trusted .*ca=PEM_FILE"):
        family.open(f"url={server.url},{FAST}")
    for extra, note in ((f"ca={cert}", False), ("insecure=1", True)):
        probe = family.open(f"url={server.url},{FAST},{extra}")
        try:
            (ch,) = probe.channels()
            assert ("TLS not verified" in ch.description) is note
            values, _ = collect(probe, lambda v, p: bool(v))
        finally:
            probe.close()
        assert values == {"redfish:bmc:System.Embedded.1:power": [212.0]}


def test_against_the_sushy_static_mockup_server(tmp_path: Path) -> None:
    if importlib.util.find_spec("sushy_tools") is None:
        pytest.skip("sushy-tools (OpenStack's Redfish mockup server) is not installed")
    root = tmp_path / "mockup"
    shutil.copytree(RACKMOUNT / "mockup", root)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from sushy_tools.static.main import main; "
         "sys.exit(main())", "-i", "127.0.0.1", "-p", str(port), "-m", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        probe = family.open(f"url=http://127.0.0.1:{port},{FAST},chassis=1U")
        try:
            values, _ = collect(probe, lambda v, p: len(v) == 6)
        finally:
            probe.close()
    finally:
        proc.terminate()
        proc.wait(10)
    assert values["redfish:bmc:1U:power"][0] == 344.0
    assert values["redfish:bmc:1U:env-power"][0] == 374.0


def test_spec_mistakes_are_one_line_errors() -> None:
    for args, text in (
        ("", "give host=BMC"),
        ("host=a,url=http://b", "not both"),
        ("url=ftp://x", "must be http"),
        ("host=a,password_file=/x", "needs user"),
        ("host=a,insecure=yes", "0 or 1"),
        ("host=a,interval=0.1", "within"),
    ):
        with pytest.raises(Exception, match=text):
            family.open(args)


def test_measure_against_the_mockup(mockup: Callable[..., MockRedfish], tmp_path: Path) -> None:
    server = mockup(IDRAC)
    phase = measure_phase(tmp_path, f"redfish:url={server.url},{FAST}", run="r1")
    assert phase["channels"]["redfish:bmc:System.Embedded.1:power"]["primary"] is True
    assert phase["energy_j"] / phase["duration_s"] == pytest.approx(212.0, rel=1e-6)


EX235A_SENSORS = TESTDATA / "crayhpe-ex235a-node-input" / "mockup" / "Chassis" / "Node0" / "Sensors"


@pytest.mark.parametrize(
    ("doc", "role"),
    [
        (EX235A_SENSORS / "ChassisVoltageRegulator0InputEnergy", "total"),  # named "Node"
        (EX235A_SENSORS / "CPU00SynthesizedEnergy", "part"),  # no context, inside a CPU
        (EX235A_SENSORS / "ChassisVoltageRegulator0OutputPower", "part"),  # a regulator output
        (EX235A_SENSORS / "ChassisVoltageRegulator2InputPower", "part"),  # "PDB INRUSH CPU"
        ({"ReadingType": "Power", "Reading": 1, "PhysicalContext": "Rectifier",
          "PhysicalSubContext": "Input"}, "supply"),
        ({"ReadingType": "Power", "Reading": 1, "PhysicalContext": "PowerSupply",
          "PhysicalSubContext": "Output"}, "part"),
        ({"ReadingType": "Power", "Reading": 1, "Name": "CPU1 Power"}, "part"),
        ({"ReadingType": "Power", "Reading": 1, "Name": "Power Consumption Monitor"}, "unknown"),
        ({"ReadingType": "Power", "Reading": 1, "Name": "Subsystem Power"}, "unknown"),
    ],
)  # fmt: skip
def test_a_sensor_role_comes_from_what_it_declares(doc: Path | dict[str, Any], role: str) -> None:
    if isinstance(doc, Path):
        doc = json.loads((doc / "index.json").read_text())
    assert sensor_role(sensor(doc))[0] == role


def test_a_sensor_in_units_that_disagree_with_its_type_is_not_read() -> None:
    s = sensor({"ReadingType": "Power", "Reading": 7, "ReadingUnits": "J"})
    assert s.kind == "power" and s.value.si is None and "ReadingUnits 'J'" in s.value.reason
    ok = sensor({"ReadingType": "EnergykWh", "Reading": 2, "ReadingUnits": "kW.h"})
    assert ok.value.si == 7.2e6
