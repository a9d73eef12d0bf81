"""Headless Chromium for the report pages' browser tests (one command line, two test files)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.tools import require_tool

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1600",
)


def chromium(
    args: Sequence[str], user_data: Path, extra: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium (skipped where it is missing, failed in CI) with a profile of its own
    in ``user_data``, ``extra`` flags, then ``args`` (e.g. ``--dump-dom URL``); bounded."""
    cmd = [require_tool("chromium"), *FLAGS, *extra, f"--user-data-dir={user_data}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
