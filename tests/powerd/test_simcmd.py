"""``powerd sim --link PATH``: only our own link is ever created, replaced or removed.

Real subprocesses: a file, a directory or someone else's symlink at PATH is refused (exit 2, one
line, nothing touched); a stale link of ours is replaced; the link is gone after SIGTERM/SIGINT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

DEADLINE_S = 20.0


def sim(link: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "powerd", "sim", "wt310", "--link", str(link), *extra]


def run(link: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sim(link, *extra), capture_output=True, text=True, timeout=60, check=False
    )


def wait_for(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def refused(r: subprocess.CompletedProcess[str], text: str) -> None:
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert text in r.stderr, r.stderr


def test_a_regular_file_a_directory_or_a_foreign_symlink_is_never_replaced(
    tmp_path: Path,
) -> None:
    file_ = tmp_path / "meter"
    file_.write_text("keep me\n")
    refused(run(file_, "--duration", "0.2"), "is a regular file, not a link made by powerd sim")
    assert file_.read_text() == "keep me\n"

    folder = tmp_path / "folder"
    (folder / "inside").mkdir(parents=True)
    refused(run(folder, "--duration", "0.2"), "is a directory")
    assert (folder / "inside").is_dir()

    theirs = tmp_path / "theirs"
    theirs.symlink_to(file_)
    refused(run(theirs, "--duration", "0.2"), f"a symlink to {file_}")
    assert os.readlink(theirs) == str(file_)

    swap = tmp_path / "dev.new"  # the name used to swap the link in atomically
    swap.write_text("also mine\n")
    refused(run(tmp_path / "dev", "--duration", "0.2"), "dev.new is a regular file")
    assert swap.read_text() == "also mine\n" and not (tmp_path / "dev").exists()


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    refused(run(tmp_path / "no" / "such" / "dev"), "does not exist")
    assert not (tmp_path / "no").exists()


def test_a_stale_link_of_ours_is_replaced_and_removed_at_the_end(tmp_path: Path) -> None:
    link = tmp_path / "dev"
    link.symlink_to("/dev/pts/987654")  # a pty that no longer exists (left by a SIGKILL)
    r = run(link, "--duration", "0.3")
    assert r.returncode == 0, r.stderr
    assert f"wt310 at {link}" in r.stderr
    assert not os.path.lexists(link)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_link_is_removed_on_a_signal_and_a_live_one_is_not_taken(
    tmp_path: Path, sig: signal.Signals
) -> None:
    link = tmp_path / "dev"
    proc = subprocess.Popen(sim(link), stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: os.path.lexists(link), "the link")
        target = os.readlink(link)
        refused(run(link, "--duration", "0.2"), "live link")  # a second simulator on it
        assert os.readlink(link) == target
        proc.send_signal(sig)
        assert proc.wait(DEADLINE_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not os.path.lexists(link)
