"""The fake libnvidia-ml.so.1, built once per session with gcc (see fakenvml.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.probes.nvml.fakenvml import build_fake
from tests.tools import require_tool


@pytest.fixture(scope="session")
def fake_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory holding the built fake; put it on LD_LIBRARY_PATH of a new process."""
    gcc = require_tool("gcc")
    return build_fake(tmp_path_factory.mktemp("fake-nvml"), gcc)
