"""The HTTP API on a real loopback server: every route, the token, malformed input, the OpenAPI doc.

Each JSON answer is validated against the schema openapi.json gives for its route and status
(``Api.call``), so these tests also prove the description accurate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from powerd.api import MAX_BODY_BYTES, ApiThread, make_app, start_api
from powerd.clocksync import Exchange, OffsetEstimator
from powerd.config import HttpSettings
from powerd.daemon import Daemon
from powerd.errors import PowerdError
from tests.api.helpers import CHANNEL, DOC, POWER_W, Api, add_constant_channel

TOKEN = "s3cret-token-0123456789"
S = 1_000_000_000


def marker(event: str, seq: int, t_ns: int | None = None, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"v": 1, "run": "r1", "phase": "decode", "event": event, "seq": seq}
    if t_ns is not None:
        obj["t_ns"] = t_ns
    return obj | extra


def test_openapi_document_is_valid_and_describes_exactly_the_served_routes(
    api: Api, daemon: Daemon
) -> None:
    validate(DOC)
    served = {
        (r.resource.canonical, r.method.lower())
        for r in make_app(daemon, None).router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    documented = {(p, m) for p, item in DOC["paths"].items() for m in item}
    assert served == documented
    assert api.call("GET", "/v1/openapi.json").json() == DOC


def test_markers_open_and_close_a_phase_whose_result_is_served(api: Api, daemon: Daemon) -> None:
    t0 = time.time_ns()
    add_constant_channel(daemon, t0, 2.0)
    begin = api.call("POST", "/v1/markers", marker("begin", 1, t0 + S // 2))
    assert begin.status == 202
    assert begin.json()["applied"] and begin.json()["phase"] is None
    assert begin.json()["marker"]["source"] == "http"
    assert begin.json()["marker"]["t_ns"] == t0 + S // 2

    again = api.call("POST", "/v1/markers", marker("begin", 1, t0 + S // 2))
    assert again.status == 200 and again.json()["repeat"] and not again.json()["applied"]

    pending = api.call("GET", "/v1/runs/r1")
    assert pending.status == 404 and "no result yet" in pending.json()["error"]

    end = api.call(
        "POST", "/v1/markers?source=harness-1", marker("end", 1, t0 + 3 * S // 2, count=10)
    )
    assert end.status == 202
    closed = end.json()["phase"]
    assert closed["phase"] == "decode" and closed["duration_s"] == pytest.approx(1.0)
    assert closed["count"] == 10

    (result,) = daemon.due_results()
    got = api.call("GET", "/v1/runs/r1")
    assert got.status == 200 and got.json() == json.loads(json.dumps(result))
    (phase,) = got.json()["phases"]
    assert phase["energy_j"] == pytest.approx(POWER_W * 1.0, rel=1e-6)
    assert phase["j_per_unit"] == pytest.approx(POWER_W / 10, rel=1e-6)

    # From an agent whose clock offset is not known yet, a marker is held, not misplaced.
    daemon.agents["edge-01"] = {}
    held = api.call("POST", "/v1/markers?source=edge-01", marker("begin", 2, t0, run="r2"))
    assert held.status == 202 and held.json()["held"] and not held.json()["applied"]
    assert held.json()["marker"] is None and daemon.store.markers("r2") == []

    unknown = api.call("GET", "/v1/runs/nope")
    assert unknown.status == 404 and "no run 'nope'" in unknown.json()["error"]
    bad = api.call("GET", "/v1/runs/bad%20id")
    assert bad.status == 400 and "run id" in bad.json()["error"]


BAD_MARKERS: list[tuple[str, bytes, str, int, str]] = [
    ("not JSON", b"{v: 1", "", 400, "not UTF-8 JSON"),
    ("not UTF-8", b'{"v": 1, "run": "\xff"}', "", 400, "not UTF-8 JSON"),
    ("empty body", b"", "", 400, "not UTF-8 JSON"),
    ("NaN literal", b'{"v": 1, "meta": {"x": NaN}}', "", 400, "NaN is not valid JSON"),
    ("bad source", json.dumps(marker("begin", 1)).encode(), "?source=a/b", 400, "source"),
    ("an array", b"[1, 2]", "", 422, "must be a JSON object"),
    ("unknown key", json.dumps(marker("begin", 1, colour=1)).encode(), "", 422, "unknown key"),
    (
        "device on end",
        b'{"v": 1, "run": "r", "phase": "p", "event": "end", "device": "x"}',
        "",
        422,
        "device",
    ),
    ("wrong version", json.dumps(marker("begin", 1, v=2)).encode(), "", 422, "v must be 1"),
    ("count on begin", json.dumps(marker("begin", 1, count=3)).encode(), "", 422, "count"),
    ("end without begin", json.dumps(marker("end", 1)).encode(), "", 422, "without a begin"),
    ("too large", b'{"v": 1, "x": "' + b"a" * MAX_BODY_BYTES + b'"}', "", 413, "larger than"),
]


def test_malformed_markers_get_4xx_with_the_reason_and_change_nothing(
    api: Api, daemon: Daemon
) -> None:
    for name, body, query, status, reason in BAD_MARKERS:
        got = api.call("POST", "/v1/markers" + query, body)
        assert got.status == status, (name, got.body)
        assert reason in got.json()["error"], (name, got.json())
        assert daemon.store.markers() == [], name
        assert daemon.counts["markers_applied"] == 0, name
    assert daemon.tracker.open == {}


def test_channels_health_and_metrics_report_the_daemon_state(api: Api, daemon: Daemon) -> None:
    t0 = time.time_ns()
    add_constant_channel(daemon, t0, 1.0)
    offset = OffsetEstimator()
    assert offset.add(Exchange(t0, t0 - 2 * S + 1000, t0 - 2 * S + 2000, t0 + 3000))
    daemon.offsets["edge-01"] = offset
    assert api.call("POST", "/v1/markers", marker("begin", 7)).status == 202
    assert api.call("POST", "/v1/markers", marker("end", 7)).status == 422

    channels = api.call("GET", "/v1/channels").json()["channels"]
    assert channels[CHANNEL]["power_w"] == POWER_W and channels[CHANNEL]["kind"] == "power"

    health = api.call("GET", "/healthz").json()
    assert health["counts"]["markers_applied"] == 1
    assert health["counts"]["markers_rejected"] == 1
    assert health["rejected_by_source"] == {"http": 1}
    assert health["offsets"]["edge-01"]["offset_ns"] == pytest.approx(2 * S, abs=10_000)

    reply = api.call("GET", "/metrics")
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(reply.body.decode())
        for s in fam.samples
    }
    power = {
        dict(labels)["channel"]: v
        for (n, labels), v in samples.items()
        if n == "powerd_power_watts"
    }
    assert power[CHANNEL] == POWER_W
    assert samples[("powerd_markers_total", (("outcome", "applied"),))] == 1
    assert samples[("powerd_markers_total", (("outcome", "rejected"),))] == 1
    assert samples[("powerd_markers_total", (("outcome", "repeated"),))] == 0
    assert samples[("powerd_blocks_total", (("outcome", "accepted"),))] == 0
    assert samples[("powerd_samples_total", ())] == 0
    assert samples[("powerd_results_total", ())] == 0
    offset_s = samples[("powerd_agent_clock_offset_seconds", (("agent", "edge-01"),))]
    assert offset_s == pytest.approx(2.0, abs=1e-5)
    unc_s = samples[("powerd_agent_clock_uncertainty_seconds", (("agent", "edge-01"),))]
    assert 0 < unc_s < 1e-5


ROUTES = [
    ("GET", "/v1/channels", None),
    ("GET", "/v1/runs/r1", None),
    ("GET", "/metrics", None),
    ("GET", "/v1/openapi.json", None),
    ("POST", "/v1/markers", marker("begin", 1)),
]


def test_a_token_guards_every_route_but_healthz(
    serve: Callable[..., Api], daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api = serve(TOKEN)
    for method, path, body in ROUTES:
        for token in ("", "wrong-token-0123456789", TOKEN[:-1]):
            got = api.call(method, path, body, token=token or "-", documented=True)
            assert got.status == 401, (method, path, token)
            assert got.headers["WWW-Authenticate"].startswith("Bearer")
            assert "bearer token" in got.json()["error"]
            assert TOKEN not in got.body.decode()
        assert daemon.store.markers() == []
    no_header = Api(api.url).call("GET", "/v1/channels")
    assert no_header.status == 401
    assert Api(api.url).call("GET", "/healthz").status == 200
    for method, path, body in ROUTES:
        assert api.call(method, path, body).status in (200, 202, 404), (method, path)
    assert len(daemon.store.markers()) == 1
    assert TOKEN not in caplog.text


def test_binding_beyond_loopback_requires_a_token(daemon: Daemon) -> None:
    with pytest.raises(PowerdError, match="without a bearer token"):
        ApiThread(make_app(daemon, None), "0.0.0.0", 0)
    with pytest.raises(PowerdError, match="token_file"):
        HttpSettings(bind="0.0.0.0").token()
    assert HttpSettings(bind="127.0.0.1").token() is None


def test_unknown_routes_and_methods_answer_json_errors(api: Api) -> None:
    missing = api.call("GET", "/v2/nothing", documented=False)
    assert missing.status == 404 and "/v2/nothing" in missing.json()["error"]
    wrong = api.call("DELETE", "/v1/markers", documented=False)
    assert wrong.status == 405 and "POST" in wrong.headers["Allow"]


def test_start_api_serves_from_a_running_event_loop(daemon: Daemon) -> None:
    async def scenario() -> tuple[int, dict[str, Any]]:
        runner, url = await start_api(make_app(daemon, TOKEN), "127.0.0.1", 0)
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                session.post(
                    f"{url}/v1/markers?source=async",
                    json=marker("begin", 3),
                    headers={"Authorization": f"Bearer {TOKEN}"},
                ) as resp,
            ):
                return resp.status, await resp.json()
        finally:
            await runner.cleanup()

    status, body = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert status == 202 and body["marker"]["source"] == "async"
    assert [sm.source for sm in daemon.store.markers()] == ["async"]
