"""Helpers shared by tests that need an external program, or run ``powerd`` as a user does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest


def require_tool(name: str) -> str:
    """Path of executable ``name``; fail in CI (where it is installed), else skip the test."""
    path = shutil.which(name)
    if path is None:
        message = f"{name!r} is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must install it")
        pytest.skip(message)
    return path


def run_powerd(
    *args: str,
    state: Path | None = None,
    env: Mapping[str, str | None] | None = None,
    base_env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout_s: float = 120,
    prefix: Sequence[str] = (),
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m powerd ARGS`` in a subprocess, its output captured as text, whatever its exit
    status (the test checks it). The environment is ``base_env`` (this one's by default) with
    ``env`` applied (a ``None`` value removes that variable) and ``POWERD_STATE_DIR`` set to
    ``state`` when given; ``prefix`` goes before the interpreter (e.g. ``faketime``)."""
    full = dict(os.environ if base_env is None else base_env)
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    if state is not None:
        full["POWERD_STATE_DIR"] = str(state)
    return subprocess.run(
        [*prefix, sys.executable, "-m", "powerd", *args],
        env=full, cwd=cwd, input=stdin, text=True, capture_output=True, check=False,
        timeout=timeout_s,
    )  # fmt: skip
