"""Fake vendor command-line tools for the CLI probes' tests: small scripts put first on PATH.

``install(bin_dir, name, rules)`` writes an executable ``bin_dir/name`` (a Python script) and its
rules ``bin_dir/name.json``. At each start the script logs its arguments (one line per start in
``bin_dir/name.log``), re-reads the rules and takes the first one whose ``match`` strings all
appear among its arguments. A rule says what to print:

- ``frames``: texts printed in turn; once (exit 0) unless ``loop`` is set;
- ``loop``: ``{"arg": "-l", "scale": 1.0}``: print the frames over and over, one frame per
  interval read from the argument after ``arg`` (times ``scale`` to make seconds), flushing
  each, as a tool's loop mode does;
- ``encoding``: how the text is encoded (``"gb2312"`` for npu-smi); ``exit``: the exit status;
- ``die_after``: in loop mode, exit with status 3 after that many frames, the first time only;
- ``hang_after``: stop printing (but stay alive) after that many frames; ``-1`` hangs at once.

The rules can be rewritten while a probe runs (``set_rules``): the next start uses them. No mock
of powerd code: the probe runs the script as it would run the vendor's binary.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = """#!{python}
import json, os, sys, time
here = os.path.abspath(__file__)
args = sys.argv[1:]
with open(here + ".log", "a") as log:
    log.write(" ".join(args) + "\\n")
rules = json.load(open(here + ".json"))
rule = next((r for r in rules if all(m in args for m in r.get("match", []))), None)
if rule is None:
    sys.stderr.write("fake: no rule for " + " ".join(args) + "\\n")
    sys.exit(2)
frames = rule.get("frames", [""])
enc = rule.get("encoding", "utf-8")
out = sys.stdout.buffer
def emit(text):
    out.write(text.encode(enc))
    out.flush()
hang_after = rule.get("hang_after")
if hang_after == -1:
    time.sleep(3600)
loop = rule.get("loop")
if loop is None:
    for f in frames:
        emit(f)
    sys.exit(rule.get("exit", 0))
interval = float(args[args.index(loop["arg"]) + 1]) * loop.get("scale", 1.0)
marker = here + ".died"
die_after = rule.get("die_after", 0)
dying = die_after > 0 and not os.path.exists(marker)
n = 0
while True:
    emit(frames[n % len(frames)])
    n += 1
    if dying and n >= die_after:
        open(marker, "w").close()
        sys.exit(3)
    if hang_after is not None and n >= hang_after:
        time.sleep(3600)
    time.sleep(interval)
"""

Rule = dict[str, Any]


def install(bin_dir: Path, name: str, rules: list[Rule]) -> Path:
    """Write the fake ``name`` into ``bin_dir`` with these rules; returns its path."""
    exe = install_script(bin_dir, name, SCRIPT)
    set_rules(exe, rules)
    return exe


def install_script(bin_dir: Path, name: str, script: str) -> Path:
    """Write ``script`` (Python source starting ``#!{python}``, run by this interpreter) as the
    executable ``bin_dir/name``; returns its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / name
    exe.write_text(script.format(python=sys.executable))
    exe.chmod(0o755)
    return exe


def set_rules(exe: Path, rules: list[Rule]) -> None:
    tmp = exe.with_name(exe.name + ".json.tmp")
    tmp.write_text(json.dumps(rules))
    tmp.replace(exe.with_name(exe.name + ".json"))


def starts(exe: Path) -> list[str]:
    """The arguments of every start so far, one string per start."""
    log = exe.with_name(exe.name + ".log")
    return log.read_text().splitlines() if log.exists() else []


def on_path(monkeypatch: pytest.MonkeyPatch, bin_dir: Path) -> None:
    """Put ``bin_dir`` first on PATH (for this test and the processes it starts)."""
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def only_on_path(monkeypatch: pytest.MonkeyPatch, bin_dir: Path) -> None:
    """PATH is ``bin_dir`` alone: the vendor tools a test did not install are missing."""
    monkeypatch.setenv("PATH", str(bin_dir))
