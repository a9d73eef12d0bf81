"""furiosa: the probe against fake ``furiosa_smi`` / ``furiosa_smi_py`` modules and a fake
``furiosa-smi`` CLI, one case folder per device, binding and tool version.

A case is ``testdata/<case>/`` with ``case.json`` and the fake's data: ``binding.json`` (devices
for the fake modules) and/or the CLI's output file::

    {"description": ..., "module": "furiosa_smi" | "furiosa_smi_py" | null,   # fake on PYTHONPATH
     "cli": "json:<file>" | "old:<file>" | null,    # fake CLI mode (old: refuses --format)
     "args": "<spec>", "reads": N, "sleep_s": S,
     "available": {"ok": .., "broken": .., "reason_contains": ".."}, "unavailable": "text",
     "cli_args": "info --format json",              # the arguments the CLI was run with
     "channels": {"<id>": {<field>: value, "description_contains": ".."}},
     "power_w": {"<id>": [W, ...]},                 # the samples, in order
     "power_w_all": {"<id>": W},                    # every sample equals this
     "problems": ["substring", ...]}

ONE loop runs each case in a subprocess (``../amdsmi/drive.py``) with the selected fake module
first on PYTHONPATH and the fake CLI first on PATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from powerd.probes.furiosa.parse import cli_power, parse_info_json
from tests.probes.clitool import opened_as_expected

HERE = Path(__file__).parent
TESTDATA = HERE / "testdata"
CASES = sorted(p for p in TESTDATA.iterdir() if (p / "case.json").is_file())
ROOT = HERE.parents[2]
DRIVE = HERE.parent / "amdsmi" / "drive.py"
FAKES = {"furiosa_smi": HERE / "fake_new", "furiosa_smi_py": HERE / "fake_old"}

FAKE_CLI = """#!{python}
import os, sys, time
state = os.environ["FAKE_FURIOSA_CLI"]
with open(os.path.join(state, "args.log"), "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
mode = open(os.path.join(state, "mode")).read().strip()
kind, _, path = mode.partition(":")
if kind == "hang":
    time.sleep(600)
if kind == "old" and "--format" in sys.argv:
    sys.stderr.write("error: unexpected argument '--format' found\\n")
    sys.exit(2)
sys.stdout.write(open(path).read())
"""


def run(
    case: Path, want: dict[str, Any], tmp: Path, argv: list[str]
) -> subprocess.CompletedProcess[str]:
    bin_dir, state = tmp / "bin", tmp / "cli"
    bin_dir.mkdir(exist_ok=True)
    state.mkdir(exist_ok=True)
    path = os.environ.get("PYTHONPATH", "")
    pythonpath = [str(ROOT)] + ([path] if path else [])
    if want.get("module"):
        pythonpath.insert(0, str(FAKES[want["module"]]))
    env_path = os.environ.get("PATH", "")
    if want.get("cli"):
        exe = bin_dir / "furiosa-smi"
        exe.write_text(FAKE_CLI.format(python=sys.executable))
        exe.chmod(0o755)
        kind, _, name = want["cli"].partition(":")
        (state / "mode").write_text(f"{kind}:{case / name}" if name else kind)
        env_path = f"{bin_dir}{os.pathsep}{env_path}"
    env = {
        **os.environ,
        "PATH": env_path,
        "PYTHONPATH": os.pathsep.join(pythonpath),
        "FAKE_FURIOSA": str(case / "binding.json"),
        "FAKE_FURIOSA_CLI": str(state),
        "POWERD_STATE_DIR": str(tmp / "state"),
    }
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_case(case: Path, tmp_path: Path) -> None:
    want = json.loads((case / "case.json").read_text())
    argv = [sys.executable, str(DRIVE), "furiosa", want["args"], str(want["reads"]),
            str(want["sleep_s"])]  # fmt: skip
    r = run(case, want, tmp_path, argv)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    if not opened_as_expected(got, want):
        return  # the expected open error (checked)
    values = {c: [v for _, v in s] for c, s in got["samples"].items()}
    for cid, seq in want.get("power_w", {}).items():
        assert values.get(cid) == seq, (cid, values.get(cid))
    for cid, w in want.get("power_w_all", {}).items():
        assert values.get(cid) and set(values[cid]) == {w}, (cid, values.get(cid))
    for text in want["problems"]:
        assert any(text in p for p in got["problems"]), (text, got["problems"])
    assert 0.0 not in [v for s in values.values() for v in s]
    if "cli_args" in want:
        runs = set((tmp_path / "cli" / "args.log").read_text().splitlines())
        assert want["cli_args"] in runs, runs


def test_cli_power_forms() -> None:
    assert cli_power("53.00 W").value_w == 53.0
    assert cli_power(38.4).value_w == 38.4
    assert cli_power("38400 mW").value_w == pytest.approx(38.4)
    for bad in ("N/A", "", None, "-3 W", float("nan"), True):
        assert cli_power(bad).value_w is None
    with pytest.raises(ValueError, match="not JSON"):
        parse_info_json(b'[{"dev_name": "npu0", "power": "5')
    with pytest.raises(ValueError, match="list of devices"):
        parse_info_json(b'"npu0"')


def test_a_cli_that_hangs_after_open_gives_problems_not_a_hang(tmp_path: Path) -> None:
    case = TESTDATA / "rngd-cli-2026.1-info-format-json"
    want = {"module": None, "cli": "json:info.json"}
    script = (
        "import json, os, pathlib, time\n"
        "from powerd.probes.furiosa import family\n"
        "p = family.open('interval=0.2,timeout=0.5')\n"
        "state = pathlib.Path(os.environ['FAKE_FURIOSA_CLI'])\n"
        "(state / 'mode').write_text('hang')\n"
        "probs, t0 = [], time.monotonic()\n"
        "while time.monotonic() - t0 < 15 and not any('no answer' in x for x in probs):\n"
        "    p.read(time.time_ns()); probs += p.problems(); time.sleep(0.05)\n"
        "t1 = time.monotonic(); p.close()\n"
        "print(json.dumps({'problems': probs, 'close_s': time.monotonic() - t1}))\n"
    )
    r = run(case, want, tmp_path, [sys.executable, "-c", script])
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert any("furiosa: " in p and "no answer within 0.5 s (killed)" in p for p in got["problems"])


def test_measure_with_the_fake_binding(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "powerd", "measure", "--probe", "furiosa:interval=0.1",
            "--run", "f1", "--quiet", "--out", str(out), "--", "sleep", "1"]  # fmt: skip
    bindings = {"devices": [
        {"name": "npu0", "uuid": "U0", "index": 0, "arch": "rngd", "power": 38.5},
        {"name": "npu1", "uuid": "U1", "index": 1, "arch": "rngd", "power": 53.0},
    ]}  # fmt: skip
    own = tmp_path / "case"
    own.mkdir()
    (own / "binding.json").write_text(json.dumps(bindings))
    r = run(own, {"module": "furiosa_smi_py"}, tmp_path, argv)
    assert r.returncode == 0, r.stderr
    (phase,) = json.loads((out / "f1.json").read_text())["phases"]
    assert (
        phase["channels"]["furiosa:npu0"]["primary"]
        and phase["channels"]["furiosa:npu1"]["primary"]
    )
    assert phase["energy_j"] / phase["duration_s"] == pytest.approx(38.5 + 53.0, rel=1e-6)
