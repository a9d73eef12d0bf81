"""``powerd measure`` waits for its command on a pidfd (issue 16): the end edge's bracket still
holds the exit and its stamp is not early, the exit status comes through, and the fallback poll
loop agrees."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from powerd.commands import measure
from powerd.timebase import TimeAnchor

# The child stamps the anchor's clock source (monotonic; mapped to UTC by the same anchor) as its
# very last act, so the exit lies after that stamp and the bracket's upper side must follow it.
CHILD = "import time, sys; print(time.monotonic_ns(), flush=True); sys.exit({code})"


def run_and_wait(code: int, fallback: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if fallback:
        monkeypatch.setattr(measure, "_open_pidfd", lambda _pid: None)
    anchor = TimeAnchor()
    ticks: list[int] = []
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(code=code)], stdout=subprocess.PIPE, text=True
    )
    lo, hi, rc = measure._wait_exit(proc, anchor, ticks.append)
    assert proc.stdout is not None
    last_ns = anchor.utc_ns(int(proc.stdout.read().split()[0]))
    assert rc == code
    assert lo <= hi
    assert last_ns <= hi, "the bracket ends before the child's last act"
    assert all(t <= hi for t in ticks)
    if not fallback:  # stamped at the waking read, which follows the exit
        assert (lo + hi) // 2 >= last_ns, "the end edge is stamped before the child's last act"


@pytest.mark.parametrize("fallback", [False, True], ids=["pidfd", "poll"])
@pytest.mark.parametrize("code", [0, 3])
def test_the_end_bracket_holds_the_exit(
    code: int, fallback: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_and_wait(code, fallback, monkeypatch)


def test_a_killed_command_is_reported_by_its_signal() -> None:
    anchor = TimeAnchor()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    _, _, rc = measure._wait_exit(proc, anchor, lambda _now: None)
    assert rc == -signal.SIGKILL
