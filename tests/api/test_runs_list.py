"""GET /v1/runs: run summaries newest first, a page at a time, validated against openapi.json."""

from __future__ import annotations

import time
from typing import Any

from powerd.daemon import Daemon
from tests.api.helpers import Api, add_constant_channel

S = 1_000_000_000


def marker(run: str, event: str, t_ns: int, **extra: Any) -> dict[str, Any]:
    return {"v": 1, "run": run, "phase": "run", "event": event, "t_ns": t_ns} | extra


def test_runs_are_listed_newest_first_in_pages(api: Api, daemon: Daemon) -> None:
    t0 = time.time_ns()
    add_constant_channel(daemon, t0, 6.0)
    names = ["b-oldest", "a-middle", "c-newest"]  # not alphabetical
    for i, run in enumerate(names):
        begin = t0 + i * S + S // 4
        assert api.call("POST", "/v1/markers", marker(run, "begin", begin)).status == 202
        end = marker(run, "end", begin + S // 2, count=5)
        assert api.call("POST", "/v1/markers", end).status == 202
    daemon.due_results()

    page = api.call("GET", "/v1/runs?limit=2").json()
    assert [r["run"] for r in page["runs"]] == ["c-newest", "a-middle"]
    newest = page["runs"][0]
    assert newest["has_result"] and newest["phases"] == ["run"]
    assert newest["j_per_unit"] == newest["energy_j"] / 5
    assert newest["j_per_unit_uncertainty"] == newest["uncertainty_j"] / 5
    rest = api.call("GET", f"/v1/runs?limit=2&before={page['next']}").json()
    assert [r["run"] for r in rest["runs"]] == ["b-oldest"] and rest["next"] is None
    everything = api.call("GET", "/v1/runs").json()
    assert [r["run"] for r in everything["runs"]] == names[::-1]

    for bad in ("limit=0", "limit=x", "limit=1001", "before=nope", "before=12:bad%20id"):
        reply = api.call("GET", f"/v1/runs?{bad}")
        assert reply.status == 400 and reply.json()["error"], bad


def test_recent_run_ids_are_by_time(daemon: Daemon, api: Api) -> None:
    from powerd.runs import recent_run_ids

    t0 = time.time_ns()
    for i, run in enumerate(["z", "y", "x"]):
        api.call("POST", "/v1/markers", marker(run, "begin", t0 + i * S))
    assert recent_run_ids(daemon.store, 2) == ["y", "x"]
    assert recent_run_ids(daemon.store) == ["z", "y", "x"]
