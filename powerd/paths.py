"""Where powerd keeps its state: a leaf module, so commands need not import ``powerd.cli``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from powerd.errors import PowerdError


def default_state_dir() -> Path:
    """``$POWERD_STATE_DIR``, else ``$XDG_STATE_HOME/powerd``, else ``~/.local/state/powerd``."""
    if os.environ.get("POWERD_STATE_DIR"):
        return Path(os.environ["POWERD_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "powerd"


def open_state_store(state_dir: Path | None) -> Any:
    """The embedded store of ``state_dir``, else of ``default_state_dir()``."""
    return open_store(state_dir or default_state_dir())


def open_store(state_dir: Path) -> Any:
    """The store in ``state_dir`` (created if missing); a directory or database that cannot be
    used is one line (PowerdError) naming it, never a traceback."""
    import sqlite3

    from powerd.store import Store

    if state_dir.exists() and not state_dir.is_dir():
        raise PowerdError(f"--state-dir {state_dir}: exists and is not a directory")
    try:
        return Store(state_dir / "powerd.db")
    except (OSError, sqlite3.Error) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise PowerdError(
            f"cannot use the store in {state_dir}: {why} (pass --state-dir DIR: a writable "
            "directory)"
        ) from None
