"""What is wrong right now, and how often things went wrong: the one source of ``/healthz``.

A measurement tool must never fail quietly: someone signs its numbers. So every part that can fail
reports here instead of printing on its own:

- ``down(component, reason)`` / ``up(component)``: a component (MQTT ingestion, a probe, the store,
  an agent's spool) stopped or came back. While any is down the whole process is *degraded*, and
  ``/healthz``, ``/metrics`` and the daemon's retained status say so with the reason. Each
  transition is logged once; repeating ``down`` with the same reason logs nothing.
- ``problem(source, kind, message)``: one bad input or failed operation (a malformed message, a
  dropped block). Every one is counted per kind; the log gets at most one line per (source, kind)
  per ``LOG_EVERY_S``, so a flood of bad messages cannot flood the log, and the first line still
  shows what happened.

Pure bookkeeping behind one lock: no I/O but the log callback, safe from any thread.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LOG_EVERY_S = 60.0
MAX_LOG_KEYS = 4096


def _stderr(text: str) -> None:
    print(f"powerd: {text}", file=sys.stderr, flush=True)


@dataclass
class Health:
    """Components that are down (with why), and problem counts with rate-limited logging."""

    log: Callable[[str], None] = _stderr
    clock_s: Callable[[], float] = time.monotonic
    _down: dict[str, str] = field(default_factory=dict)
    _since_s: dict[str, float] = field(default_factory=dict)
    problems: Counter[str] = field(default_factory=Counter)
    _last_logged_s: dict[tuple[str, str], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def down(self, component: str, reason: str) -> None:
        """``component`` is not working; logged once per change of reason."""
        with self._lock:
            if self._down.get(component) == reason:
                return
            self._down[component] = reason
            self._since_s.setdefault(component, self.clock_s())
        self.log(f"{component} is down: {reason}")

    def up(self, component: str) -> None:
        """``component`` works again (nothing happens if it was not down)."""
        with self._lock:
            if self._down.pop(component, None) is None:
                return
            since = self._since_s.pop(component, self.clock_s())
        self.log(f"{component} is back after {self.clock_s() - since:.1f} s")

    def is_down(self, component: str) -> bool:
        with self._lock:
            return component in self._down

    def problem(self, source: str, kind: str, message: str) -> None:
        """Count one problem of ``kind``; log it unless (source, kind) was logged recently."""
        now = self.clock_s()
        key = (source, kind)
        with self._lock:
            self.problems[kind] += 1
            last = self._last_logged_s.get(key)
            if last is not None and now - last < LOG_EVERY_S:
                return
            if len(self._last_logged_s) >= MAX_LOG_KEYS:
                self._last_logged_s.clear()
            self._last_logged_s[key] = now
            count = self.problems[kind]
        self.log(f"{kind} from {source}: {message} ({count} of this kind so far; repeats counted)")

    @property
    def degraded(self) -> bool:
        with self._lock:
            return bool(self._down)

    def down_reasons(self) -> dict[str, str]:
        with self._lock:
            return dict(self._down)

    def snapshot(self) -> dict[str, Any]:
        """``{"status": "ok"|"degraded", "down": {component: reason}, "problems": {kind: n}}``."""
        with self._lock:
            return {
                "status": "degraded" if self._down else "ok",
                "down": dict(self._down),
                "problems": dict(self.problems),
            }
