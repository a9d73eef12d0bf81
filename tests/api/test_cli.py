"""``powerd measure`` with a workload that marks its own phases, and ``powerd mark``, end to end.

Both run as a user runs them: ``python -m powerd`` in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from powerd.daemon import Daemon
from tests.api.helpers import Api, Broker, component
from tests.tools import run_powerd

WORKLOAD = """
import os, time
from powerd.client import PowerdClient
print("url", os.environ["POWERD_URL"], "run", os.environ["POWERD_RUN"])
client = PowerdClient()
with client.phase("prefill", meta={"model": "tiny"}):
    time.sleep(0.3)
with client.phase("decode", unit="token") as ph:
    time.sleep(0.5)
    ph.count = 64
client.mark("begin", "elsewhere")
PowerdClient(run="other-run").mark("begin", "x")
"""


def powerd(
    *args: str, env: dict[str, str] | None = None, state: Path | None = None
) -> subprocess.CompletedProcess[str]:
    unset: dict[str, str | None] = {"POWERD_URL": None, "POWERD_RUN": None, "POWERD_TOKEN": None}
    return run_powerd(*args, state=state, env={**unset, **(env or {})})  # only those given


def test_measure_lets_the_workload_mark_its_phases(tmp_path: Path) -> None:
    out = tmp_path / "D"
    r = powerd(
        "measure",
        "--probe",
        "sim:constant,w=5",
        "--run",
        "wl",
        "--quiet",
        "--out",
        str(out),
        "--",
        sys.executable,
        "-c",
        WORKLOAD,
        state=tmp_path / "st",
    )
    assert r.returncode == 0, r.stderr
    assert "url http://127.0.0.1:" in r.stdout and "run wl" in r.stdout
    result = json.loads((out / "wl.json").read_text())
    component("Result").validate(result)
    phases = {p["phase"]: p for p in result["phases"]}
    assert set(phases) == {"run", "prefill", "decode"}, "an open phase is not a result"
    run, prefill, decode = phases["run"], phases["prefill"], phases["decode"]
    assert decode["count"] == 64 and decode["unit"] == "token"
    assert prefill["meta"] == {"model": "tiny"}
    for p in (prefill, decode):
        assert run["t_begin_ns"] < p["t_begin_ns"] < p["t_end_ns"] < run["t_end_ns"]
        assert p["timing"]["source"] == "marker"
        assert p["energy_j"] == pytest.approx(5.0 * p["duration_s"], rel=1e-9)
    assert run["timing"]["uncertainty_ns"] > 0, "measure's bracketed edges keep their uncertainty"
    assert prefill["energy_j"] + decode["energy_j"] <= run["energy_j"]
    # The marker for another run id was accepted and stored, outside this run's report.
    runs = powerd("runs", "--json", state=tmp_path / "st")
    assert sorted(r["run"] for r in json.loads(runs.stdout)) == ["other-run", "wl"]


def test_powerd_mark_sends_markers_over_http(
    serve: Callable[..., Api], daemon: Daemon, tmp_path: Path
) -> None:
    api = serve()
    begin = powerd(
        "mark", "begin", "decode", "--run", "cli", "--url", api.url, "--meta", "model=tiny"
    )
    assert begin.returncode == 0, begin.stderr
    assert "applied begin of phase 'decode'" in begin.stdout
    env = {"POWERD_URL": api.url, "POWERD_RUN": "cli"}
    end = powerd(
        "mark", "end", "decode", "--count", "5", "--unit", "token", "--meta", "batch=8", env=env
    )
    assert end.returncode == 0, end.stderr
    assert "phase closed after" in end.stdout
    stored = daemon.store.markers("cli")
    assert [sm.marker.event for sm in stored] == ["begin", "end"]
    assert stored[0].marker.meta == {"model": "tiny"}
    assert (stored[1].marker.count, stored[1].marker.meta) == (5, {"batch": 8})
    assert stored[0].source != stored[1].source, "each invocation is its own source"

    guarded = serve("t0ken-0123456789abcdef")
    token_file = tmp_path / "token"
    token_file.write_text("t0ken-0123456789abcdef\n")
    ok = powerd(
        "mark", "begin", "x", "--run", "cli", "--url", guarded.url, "--token-file", str(token_file)
    )
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["end", "never", "--run", "cli"], "HTTP 422"),
        (["begin", "p", "--run", "cli", "--meta", "novalue"], "--meta 'novalue'"),
        (["begin", "p", "--run", "cli", "--count", "3"], "--count goes with"),
        (["begin", "p", "--url", "-"], "no run id"),
        (["begin", "p", "--run", "cli", "--url", "ftp://x"], "must start with http"),
        (["begin", "p", "--run", "cli", "--token-file", "/nonexistent"], "cannot read the token"),
    ],
)
def test_powerd_mark_errors_are_one_line(api: Api, args: list[str], message: str) -> None:
    url = [] if "--url" in args else ["--url", api.url]
    r = powerd("mark", *args, *url)
    assert r.returncode == 2
    assert r.stderr.startswith("powerd: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr


def test_powerd_mark_needs_a_url_or_broker() -> None:
    r = powerd("mark", "begin", "p", "--run", "cli")
    assert r.returncode == 2 and "no powerd URL" in r.stderr and "POWERD_URL" in r.stderr


def test_powerd_mark_over_mqtt_fails_when_no_daemon_confirms(broker: Broker) -> None:
    # tests/fault/test_marker_confirm.py has the confirmed case, with a daemon
    where = f"{broker.host}:{broker.port}"
    r = powerd("mark", "begin", "p", "--run", "cli", "--mqtt", where, "--confirm-timeout", "0.5")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "did not confirm 1 marker(s)" in r.stderr and "is powerd running" in r.stderr
    bad = powerd("mark", "begin", "p", "--run", "cli", "--mqtt", "host:port")
    assert bad.returncode == 2 and "port must be a number" in bad.stderr
