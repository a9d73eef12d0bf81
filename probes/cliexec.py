"""Run a vendor tool once and return what it printed, bounded in time, for one-shot CLI probes.

For tools without a loop mode (or as a fallback), a probe calls ``run_tool`` at each poll. The
call is stamped by the caller's clock before and after, so a reading can be placed at the
midpoint with half the span as its stamp uncertainty. A tool that hangs is killed at ``timeout_s``
and reported, never waited on forever; a missing tool is reported as missing, not broken.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from powerd.errors import SpecError

DEFAULT_TIMEOUT_S = 5.0


class ToolError(Exception):
    """The tool could not be run, timed out or failed; the message says which and why."""


@dataclass(frozen=True)
class ToolOutput:
    stdout: bytes
    t_before_ns: int
    t_after_ns: int

    @property
    def t_mid_ns(self) -> int:
        return (self.t_before_ns + self.t_after_ns) // 2

    @property
    def half_span_ns(self) -> int:
        return (self.t_after_ns - self.t_before_ns + 1) // 2


def find_tool(name: str, extra_paths: Sequence[str] = ()) -> str | None:
    """The executable ``name`` on PATH, else the first of ``extra_paths`` that is executable."""
    found = shutil.which(name)
    if found:
        return found
    return next((p for p in extra_paths if os.access(p, os.X_OK)), None)


def run_tool(
    argv: Sequence[str], clock: Callable[[], int], timeout_s: float = DEFAULT_TIMEOUT_S
) -> ToolOutput:
    """Run ``argv`` once; ToolError on a missing tool, a timeout or a non-zero exit."""
    before = clock()
    try:
        proc = subprocess.run(list(argv), capture_output=True, timeout=timeout_s, check=False)
    except FileNotFoundError:
        raise ToolError(f"{argv[0]}: not found") from None
    except PermissionError:
        raise ToolError(f"{argv[0]}: not executable (permission denied)") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"{' '.join(argv)}: no answer within {timeout_s:g} s (killed)") from None
    after = clock()
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        tail = err[-1] if err else "no message"
        raise ToolError(f"{' '.join(argv)}: exit {proc.returncode}: {tail[:200]}")
    return ToolOutput(proc.stdout, before, after)


def timeout_arg(kv: dict[str, str], default_s: float) -> float:
    """The ``timeout=SECONDS`` of a probe spec (a tool that hangs is killed after it)."""
    try:
        return float(kv.get("timeout", default_s))
    except ValueError:
        raise SpecError(f"timeout={kv['timeout']!r}: expected seconds") from None
