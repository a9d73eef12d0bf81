"""Every captured sysfs tree in testdata/ run through its probe: one loop, one folder per case.

A case folder holds a tree (``sys/…``, ``proc/…``: only the files the probe reads, real names,
plausible values) and ``case.json``::

    {"description": "...",
     "probe": "rapl", "args": "interval=0.1",            # the spec is probe[:args]
     "available": {"ok": true, "broken": false, "reason_contains": "..."},   # optional
     "unavailable": "text",       # optional: opening must fail with ProbeUnavailable saying this
     "channels": {"rapl:package-0": {"kind": "energy", "measures": "...", "wrap_j": 262143.3,
                                     "accuracy": {"reading_frac": 0.05},
                                     "description_contains": "..."}},   # ids exact, fields given
     "reads": [{"now_ns": 1, "write": {"sys/…/energy_uj": "123"}, "remove": ["sys/…"],
                "expect": {"rapl:package-0": 0.000123},      # exactly the channels with a sample
                "problems": ["rapl:package-1: cannot read"]}], # in order, each a substring
     "energy_j": {"rapl:package-0": 20.5}}    # optional: integrated from the first to last read

or ``{"description": ..., "runs": [<run>, ...]}`` to run several probes/specs on one tree (each
on a fresh copy). Adding a regression is adding a folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from powerd.block import Block
from powerd.channel import Channel
from powerd.errors import ProbeUnavailable
from powerd.integrate import Window, integrate
from powerd.probes import sysfs
from powerd.probes.registry import families, open_probe

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p for p in TESTDATA.iterdir() if (p / "case.json").is_file())
REL = 1e-9


def runs_of(case_dir: Path) -> list[dict[str, Any]]:
    spec = json.loads((case_dir / "case.json").read_text())
    return list(spec["runs"]) if "runs" in spec else [spec]


def copy_tree(case_dir: Path, dest: Path) -> Path:
    shutil.copytree(case_dir, dest, symlinks=True, ignore=shutil.ignore_patterns("case.json"))
    return dest


def apply(root: Path, read: dict[str, Any]) -> None:
    for rel in read.get("remove", []):
        p = root / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    for rel, text in read.get("write", {}).items():
        (root / rel).write_text(text + "\n" if text else "")


def check_channel(ch: Channel, want: dict[str, Any]) -> None:
    for key, value in want.items():
        if key == "description_contains":
            assert value in ch.description, (ch.id, ch.description)
        elif key == "accuracy":
            for k, v in value.items():
                assert getattr(ch.accuracy, k) == pytest.approx(v, rel=REL), (ch.id, k)
        elif isinstance(value, float):
            assert getattr(ch, key) == pytest.approx(value, rel=REL), (ch.id, key)
        else:
            assert getattr(ch, key) == value, (ch.id, key)


def check_problems(got: list[str], want: list[str]) -> None:
    assert len(got) == len(want), got
    for g, w in zip(got, want, strict=True):
        assert w in g, (w, got)


def run_case(run: dict[str, Any], root: Path) -> None:
    fam = families()[run["probe"]]
    spec = run["probe"] + (f":{run['args']}" if run.get("args") else "")
    if "available" in run:
        avail = fam.available()
        want = run["available"]
        assert avail.ok == want["ok"], avail
        assert avail.broken == want.get("broken", False), avail
        assert want.get("reason_contains", "") in avail.reason, avail
        assert "\n" not in avail.reason
    if "unavailable" in run:
        with pytest.raises(ProbeUnavailable, match=run["unavailable"]):
            open_probe(spec)
        return
    probe = open_probe(spec)
    try:
        chans = {c.id: c for c in probe.channels()}
        if "channels" in run:
            assert sorted(chans) == sorted(run["channels"])
            for cid, want in run["channels"].items():
                check_channel(chans[cid], want)
        samples: dict[str, list[Block]] = {c: [] for c in chans}
        for read in run["reads"]:
            apply(root, read)
            blocks = probe.read(read["now_ns"])
            got: dict[str, float] = {}
            for b in blocks:
                assert len(b) == 1 and b.t_first_ns == read["now_ns"], b
                assert b.channel not in got
                got[b.channel] = float(b.value[0])
                samples[b.channel].append(b)
            assert sorted(got) == sorted(read["expect"]), (read["now_ns"], got)
            for cid, value in read["expect"].items():
                assert got[cid] == pytest.approx(value, rel=REL, abs=1e-12), cid
            check_problems(probe.problems(), read.get("problems", []))
        if "energy_j" in run:
            t0, t1 = run["reads"][0]["now_ns"], run["reads"][-1]["now_ns"]
            for cid, want_j in run["energy_j"].items():
                t = np.concatenate([b.t_ns for b in samples[cid]])
                v = np.concatenate([b.value for b in samples[cid]])
                fig = integrate(t, v, Window(t0, t1), chans[cid])
                assert fig.energy_j == pytest.approx(want_j, rel=1e-9), cid
    finally:
        probe.close()


@pytest.mark.parametrize("case_dir", CASES, ids=[p.name for p in CASES])
def test_case(case_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, run in enumerate(runs_of(case_dir)):
        root = copy_tree(case_dir, tmp_path / f"run{k}")
        monkeypatch.setenv(sysfs.ENV, str(root))
        run_case(run, root)


def test_every_case_folder_has_a_description() -> None:
    assert CASES
    for case_dir in CASES:
        assert json.loads((case_dir / "case.json").read_text()).get("description"), case_dir
