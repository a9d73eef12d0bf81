"""One configurable root for every sysfs and procfs read, so tests run on captured trees.

The root is ``$POWERD_SYSFS_ROOT`` (default ``/``); ``powerd --sysfs-root DIR`` sets it. Paths are
given as on a live system (``/sys/class/powercap``) and resolved under the root.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "POWERD_SYSFS_ROOT"


def root() -> Path:
    return Path(os.environ.get(ENV) or "/")


def path(live_path: str) -> Path:
    """Where ``live_path`` (an absolute path on a live system) is under the configured root."""
    return root() / live_path.lstrip("/")


def read_text(p: Path) -> str:
    """A sysfs attribute's text without the trailing newline."""
    return p.read_text(encoding="utf-8", errors="replace").strip()


def read_int(p: Path) -> int:
    """A sysfs attribute holding one integer; ValueError names the file and what it held."""
    text = read_text(p)
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{p}: expected an integer, found {text[:40]!r}") from None
