"""deepx: the runtime has no power sensor; ``powerd probes`` says so and names external meters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from powerd.errors import ProbeUnavailable
from powerd.probes.deepx import family
from powerd.probes.registry import open_probe
from tests.probes.clistream import faketool


def test_never_available_and_points_to_an_external_meter() -> None:
    avail = family.available()
    assert not avail.ok and not avail.broken
    assert "no power sensor" in avail.reason
    for meter in ("wt300", "ina2xx"):
        assert meter in avail.reason
    with pytest.raises(ProbeUnavailable, match="no power sensor"):
        open_probe("deepx")
    with pytest.raises(ProbeUnavailable, match="external meter"):
        family.open("")


def test_with_the_runtime_installed_it_still_says_no_sensor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = "NPU0, DX_M1_4K @ 1000MHz, 850mV, 43'C\n"
    exe = faketool.install(tmp_path / "bin", "dxrt-cli", [{"frames": [status]}])
    faketool.on_path(monkeypatch, tmp_path / "bin")
    avail = family.available()
    assert not avail.ok and f"dxrt-cli found at {exe}" in avail.reason
    assert "no power sensor" in avail.reason
    assert faketool.starts(exe) == []  # nothing to ask it


def test_powerd_probes_lists_it_with_the_reason() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "powerd", "probes"],
        env=dict(os.environ), text=True, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    (row,) = [line for line in r.stdout.splitlines() if line.startswith("deepx ")]
    assert " missing " in row
    assert "no power sensor" in row and "wt300" in row
