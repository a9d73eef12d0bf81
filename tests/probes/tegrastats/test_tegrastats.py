"""tegrastats: the pure line parser on captured lines, and the probe end to end against a fake
``tegrastats`` (a script written into tmp and put first on PATH) that prints captured lines at
the requested interval and can die.

Captures are ``testdata/<device>-<jetpack/l4t>.txt`` with ``.json`` beside them giving, per line,
the leading timestamp and each rail's instantaneous power in W. A new format is a new pair.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from powerd.errors import ProbeUnavailable
from powerd.probes.tegrastats import TegrastatsProbe, family
from powerd.probes.tegrastats.parse import parse_line
from tests.probes.clistream import faketool
from tests.probes.clitool import Until, Values, assert_tool_missing, measure_phase
from tests.probes.clitool import collect as collect_any

TESTDATA = Path(__file__).parent / "testdata"
CAPTURES = sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("capture", CAPTURES, ids=[p.stem for p in CAPTURES])
def test_parser_on_captured_lines(capture: Path) -> None:
    lines = capture.read_text().splitlines()
    want = json.loads(capture.with_suffix(".json").read_text())["lines"]
    assert len(lines) == len(want)
    for line, exp in zip(lines, want, strict=True):
        got = parse_line(line)
        assert {k: r.power_w for k, r in got.rails.items()} == pytest.approx(exp["power_w"])
        assert list(got.rails) == list(exp["power_w"])  # line order
        stamp = exp["local_time"]
        assert got.local_time == (None if stamp is None else dt.datetime.fromisoformat(stamp))


def test_parser_keeps_the_values_after_the_first_and_never_takes_memory_for_a_rail() -> None:
    got = parse_line(
        "RAM 2149/3964MB SWAP 0/1982MB IRAM 0/252kB(lfb 252kB) A_B 7/8 X 9mW/10mW/11mW"
    )
    assert list(got.rails) == ["A_B", "X"]
    assert got.rails["A_B"].power_w == 0.007 and got.rails["A_B"].others_w == (0.008,)
    assert got.rails["X"].others_w == (0.010, 0.011)


# --- the probe against a fake tegrastats

FAKE = """#!{python}
import os, sys, time
args = sys.argv[1:]
interval_s = int(args[args.index("--interval") + 1]) / 1000 if "--interval" in args else 1.0
with open(os.environ["FAKE_TEGRASTATS_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
lines = open(os.environ["FAKE_TEGRASTATS_LINES"]).read().splitlines()
die_after = int(os.environ.get("FAKE_TEGRASTATS_DIE_AFTER", "0"))
marker = os.environ["FAKE_TEGRASTATS_LOG"] + ".died"
dying = die_after > 0 and not os.path.exists(marker)
n = 0
while True:
    print(lines[n % len(lines)], flush=True)
    n += 1
    if dying and n >= die_after:
        open(marker, "w").close()
        sys.exit(3)
    time.sleep(interval_s)
"""

ORIN_NX = [
    "VDD_IN 5000mW/5000mW VDD_CPU_GPU_CV 1000mW/1000mW VDD_SOC 1500mW/1500mW",
    "VDD_IN 5100mW/5050mW VDD_CPU_GPU_CV 1100mW/1050mW VDD_SOC 1500mW/1500mW",
    "VDD_IN 5200mW/5100mW VDD_CPU_GPU_CV 1200mW/1100mW VDD_SOC 1500mW/1500mW",
]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake tegrastats first on PATH; returns its log (one line of arguments per start)."""
    bin_dir = tmp_path / "bin"
    faketool.install_script(bin_dir, "tegrastats", FAKE)
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(ORIN_NX) + "\n")
    log = tmp_path / "starts.log"
    faketool.on_path(monkeypatch, bin_dir)
    monkeypatch.setenv("FAKE_TEGRASTATS_LINES", str(lines))
    monkeypatch.setenv("FAKE_TEGRASTATS_LOG", str(log))
    return log


def collect(probe: TegrastatsProbe, until: Until) -> tuple[Values, list[str]]:
    """Read every 20 ms until ``until(values, problems)`` holds (or fail after a deadline); times
    rise within each block and each block follows its channel's last (every line once)."""
    return collect_any(probe, until, ordered=True, continuing=True)


def test_streams_one_process_and_gives_each_line_once(fake: Path) -> None:
    assert family.available().ok
    probe = family.open("interval=0.05")
    try:
        chans = {c.id: c for c in probe.channels()}
        assert sorted(chans) == [
            "tegrastats:VDD_CPU_GPU_CV",
            "tegrastats:VDD_IN",
            "tegrastats:VDD_SOC",
        ]
        assert chans["tegrastats:VDD_IN"].source_class == "telemetry"
        assert chans["tegrastats:VDD_SOC"].source_class == "estimate"
        assert chans["tegrastats:VDD_IN"].measures == "jetson-rail:VDD_IN"
        values, problems = collect(probe, lambda v, p: len(v.get("tegrastats:VDD_IN", [])) >= 7)
        assert problems == []
        got = values["tegrastats:VDD_IN"]
        assert got[:7] == [5.0, 5.1, 5.2, 5.0, 5.1, 5.2, 5.0]  # every line once, in order
        assert values["tegrastats:VDD_CPU_GPU_CV"][:3] == [1.0, 1.1, 1.2]
    finally:
        probe.close()
    assert fake.read_text().splitlines() == ["--interval 50"]  # started once, never per sample


def test_restarts_a_dying_tegrastats_and_reports_the_gap(
    fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_TEGRASTATS_DIE_AFTER", "4")
    probe = family.open("interval=0.05")
    try:
        values, problems = collect(
            probe,
            lambda v, p: (
                any("restarted" in x for x in p) and len(v.get("tegrastats:VDD_IN", [])) >= 8
            ),
        )
    finally:
        probe.close()
    assert any("exited with status 3; restarting in 0.5 s" in p for p in problems), problems
    (gap,) = [p for p in problems if "restarted" in p]
    assert "no samples for" in gap
    assert values["tegrastats:VDD_IN"][:5] == [5.0, 5.1, 5.2, 5.0, 5.0]
    assert fake.read_text().splitlines() == ["--interval 50", "--interval 50"]


def test_output_without_rails_makes_it_unavailable_not_a_hang(
    fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = tmp_path / "norails.txt"
    lines.write_text("RAM 1738/3956MB (lfb 172x4MB) CPU [7%@1224] EMC_FREQ 0% GR3D_FREQ 0%\n")
    monkeypatch.setenv("FAKE_TEGRASTATS_LINES", str(lines))
    with pytest.raises(ProbeUnavailable, match=r"no power rails from .*tegrastats --interval 50"):
        family.open("interval=0.05,timeout=1")


def test_missing_tegrastats_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert_tool_missing(family, monkeypatch, tmp_path, ["/usr/bin/tegrastats"])


def test_measure_with_the_fake_tegrastats(fake: Path, tmp_path: Path) -> None:
    phase = measure_phase(tmp_path, "tegrastats:interval=0.05")
    chans = phase["channels"]
    assert chans["tegrastats:VDD_IN"]["primary"] is True
    assert chans["tegrastats:VDD_SOC"]["primary"] is False  # a part of VDD_IN, never added
    assert 4.9 <= phase["energy_j"] / phase["duration_s"] <= 5.3  # lines cycle 5.0, 5.1, 5.2 W


def test_a_negative_rail_is_kept_as_read_and_flagged(
    fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jetson Thor prints ``VDD_GPU -392mW/-392mW`` at idle: a reading, and a problem to see."""
    thor = TESTDATA / "thor-jetpack7-l4t38-negative-rail.txt"
    monkeypatch.setenv("FAKE_TEGRASTATS_LINES", str(thor))
    probe = family.open("interval=0.05")
    try:
        chans = {c.id: c for c in probe.channels()}
        assert chans["tegrastats:VIN"].source_class == "telemetry"  # Thor's input: the total
        assert chans["tegrastats:VDD_GPU"].source_class == "estimate"  # a part of VIN
        values, problems = collect(probe, lambda v, p: len(v.get("tegrastats:VDD_GPU", [])) >= 3)
    finally:
        probe.close()
    assert values["tegrastats:VDD_GPU"][:3] == [-0.392, 1.208, -0.392]
    negative = [p for p in problems if "negative" in p]
    assert negative and all(p.startswith("tegrastats:VDD_GPU: rail VDD_GPU") for p in negative)
    assert "sensor or wiring problem" in negative[0] and "-392 mW" in negative[0]
    gpu = values["tegrastats:VDD_GPU"]
    turns = sum(1 for i, w in enumerate(gpu) if w < 0 and (i == 0 or gpu[i - 1] >= 0))
    assert len(negative) == turns  # once each time the rail turns negative, not once per line


def test_a_negative_rail_flags_its_channel_and_the_phase_it_carries(
    fake: Path, tmp_path: Path
) -> None:
    """Thor's negative VDD_GPU through `powerd measure`: integrated as read, and the result says
    so (`negative_power` on the channel, and on the phase when that channel is the headline)."""
    thor = TESTDATA / "thor-jetpack7-l4t38-negative-rail.txt"
    phase = measure_phase(
        tmp_path,
        "tegrastats:interval=0.05",
        "--primary",
        "tegrastats:VDD_GPU",
        env={"FAKE_TEGRASTATS_LINES": str(thor)},
    )
    gpu, vin = phase["channels"]["tegrastats:VDD_GPU"], phase["channels"]["tegrastats:VIN"]
    assert "negative_power" in gpu["flags"] and "negative_power" not in vin["flags"]
    assert "negative_power" in phase["flags"]
    # lines alternate -0.392 W and 1.208 W: 0.408 W as read; clamped at 0 it would be 0.604 W
    assert 0.3 < gpu["mean_power_w"] < 0.5
