"""Helpers shared by tests that need an external program."""

from __future__ import annotations

import os
import shutil

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
