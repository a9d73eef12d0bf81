"""The systemd units verify with systemd-analyze (where it exists) and are hardened."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
NAMES = ["powerd.service", "powerd-agent.service"]


def installed_copy(name: str, tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's console scripts (verify checks they run)."""
    text = (UNITS / name).read_text()
    bin_dir = Path(sys.executable).parent
    unit = tmp_path / name
    unit.write_text(text.replace("/usr/bin/powerd", f"{bin_dir}/powerd"))
    return unit


def analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed here")
    return exe


@pytest.mark.parametrize("name", NAMES)
def test_unit_verifies(name: str, tmp_path: Path) -> None:
    unit = installed_copy(name, tmp_path)
    r = subprocess.run(
        [analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr


@pytest.mark.parametrize("name", NAMES)
def test_unit_is_hardened(name: str, tmp_path: Path) -> None:
    text = (UNITS / name).read_text()
    for directive in (
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=",
        "CapabilityBoundingSet=",
        "EnvironmentFile=-/etc/default/",
    ):
        assert directive in text, directive
    assert "dialout" in text and "powerd-energy" in text
    unit = installed_copy(name, tmp_path)
    r = subprocess.run(
        [analyze(), "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m is not None, r.stdout[-500:]
    assert float(m.group(1)) < 5.0, r.stdout[-800:]


def test_env_files_name_the_configs() -> None:
    assert "POWERD_CONFIG=" in (UNITS / "powerd.env").read_text()
    assert "POWERD_AGENT_CONFIG=" in (UNITS / "powerd-agent.env").read_text()
    assert "g powerd-energy" in (UNITS / "powerd.sysusers").read_text()
