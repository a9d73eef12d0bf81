"""GET /v1/compare: stored runs side by side over the API, validated against openapi.json."""

from __future__ import annotations

import csv
import io

from powerd.daemon import Daemon
from tests.api.helpers import Api
from tests.report.test_compare import sim_run


def test_compare_route_gives_json_csv_and_html_with_the_calls(api: Api, daemon: Daemon) -> None:
    sim_run(daemon.store, "gpu", 20.0, 0, 1000)
    sim_run(daemon.store, "npu", 25.0, 20, 1000)
    sim_run(daemon.store, "npu2", 20.1, 40, 1000)
    doc = api.call("GET", "/v1/compare?runs=gpu,npu:run,npu2").json()
    assert [it["label"] for it in doc["items"]] == ["gpu:run", "npu:run", "npu2:run"]
    calls = {(p["a_label"], p["b_label"]): p["figures"]["j_per_unit"]["call"] for p in doc["pairs"]}
    assert calls == {
        ("gpu:run", "npu:run"): "significant",
        ("gpu:run", "npu2:run"): "not significant",
        ("npu:run", "npu2:run"): "significant",
    }
    reply = api.call("GET", "/v1/compare?runs=gpu,npu&format=csv")
    assert reply.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(reply.body.decode())))
    assert {r["call"] for r in rows if r["kind"] == "pair" and r["figure"] == "j_per_unit"} == {
        "significant"
    }
    page = api.call("GET", "/v1/compare?runs=gpu,npu&format=html")
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.body.count(b'<rect class="bar"') == 4  # two charts, two bars each

    by_device = api.call("GET", "/v1/compare?runs=gpu,npu&by=device").json()
    assert [it["label"] for it in by_device["items"]] == ["gpu:run@local", "npu:run@local"]
    per_request = api.call("GET", "/v1/compare?runs=gpu,npu&unit=request").json()
    assert per_request["unit"] == "request"
    assert all("no_count" in it["flags"] for it in per_request["items"])


def test_compare_route_errors(api: Api, daemon: Daemon) -> None:
    sim_run(daemon.store, "gpu", 20.0, 0, 1000)
    for query, status, words in (
        ("", 400, "runs must list"),
        ("runs=gpu", 400, "at least two"),
        ("runs=gpu,gpu&by=chip", 400, "by must be"),
        ("runs=gpu,gpu&format=xml", 400, "format must be"),
        ("runs=gpu,nope", 404, "no result"),
        ("runs=gpu,gpu:decode", 404, "no phase 'decode'"),
        ("runs=gpu,bad%20id", 400, "must be 1-128"),
        ("runs=gpu,gpu&unit=a%20b", 400, "unit must be"),
    ):
        reply = api.call("GET", f"/v1/compare?{query}")
        assert reply.status == status, (query, reply.body)
        assert words in reply.json()["error"], (query, reply.json())
