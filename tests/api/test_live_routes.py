"""The live view's routes (issue 17) without a browser: min/max columns that keep a spike, the
event stream's frames and token rule, and the zoom route's raw-or-columns answer."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from powerd.block import Block
from powerd.channel import Accuracy, Channel
from powerd.daemon import Daemon
from powerd.live import minmax_columns
from tests.api.helpers import Api

CH = "bench:spiky"
PERIOD_NS = 1_000_000  # 1 kHz
S = 1_000_000_000


def spiky(daemon: Daemon, t0_ns: int, n: int, spike_at: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples at 1 kHz from ``t0_ns`` of 5 W with one 100 W sample, in timeline and store."""
    ch = Channel(CH, "power", "meter", PERIOD_NS / 1e9, Accuracy(reading_frac=0.001))
    if CH not in daemon.timeline.channels:
        daemon.timeline.add_channel(ch)
        daemon.store.put_channel(ch)
    t = t0_ns + np.arange(n, dtype=np.int64) * PERIOD_NS
    v = np.full(n, 5.0)
    v[spike_at] = 100.0
    daemon.timeline.append(Block.of(CH, t, v))
    daemon.store.append(Block.of(CH, t, v))
    daemon.store.flush()
    return t, v


def test_minmax_columns_keep_a_one_sample_spike_on_a_fixed_grid() -> None:
    t = np.arange(1000, dtype=np.int64) * PERIOD_NS + 7 * S  # 1 s of 1 kHz
    v = np.full(1000, 5.0)
    v[333] = 100.0
    v[500] = np.nan
    ct, lo, hi = minmax_columns(t, v, 100 * PERIOD_NS, 7 * S)
    assert ct.tolist() == [7 * S + k * 100 * PERIOD_NS for k in range(10)]  # grid multiples
    assert hi.tolist() == [5.0, 5.0, 5.0, 100.0] + [5.0] * 6
    assert lo.tolist() == [5.0] * 10  # NaN dropped, not propagated
    # from a later point on: only the columns from there
    ct2, _, hi2 = minmax_columns(t, v, 100 * PERIOD_NS, 7 * S + 300 * PERIOD_NS)
    assert ct2[0] == 7 * S + 300 * PERIOD_NS and hi2[0] == 100.0 and ct2.size == 7
    empty = minmax_columns(t[:0], v[:0], 10, 0)
    assert all(a.size == 0 for a in empty)


def _events(url: str, token: str | None, want: int) -> list[tuple[str, Any]]:
    """The first ``want`` events of an SSE stream (bounded by the socket timeout)."""
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    out: list[tuple[str, Any]] = []
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        event = ""
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event, json.loads(line[6:])))
                if len(out) >= want:
                    break
    return out


def test_stream_sends_columns_phases_results_and_health(
    serve: Callable[..., Api], daemon: Daemon
) -> None:
    api = serve()
    now = time.time_ns()
    t0 = now - 2 * S
    spiky(daemon, t0, 1500, spike_at=700)
    daemon.submit_marker("http", {"v": 1, "run": "r", "phase": "p", "event": "begin"})
    events = _events(f"{api.url}/v1/live?width=100&range_s=10&interval_s=0.05", None, 5)
    kinds = [e for e, _ in events]
    assert kinds[:2] == ["hello", "columns"] and "phases" in kinds and "health" in kinds
    hello = dict(events)["hello"]
    assert hello["col_ns"] == 100_000_000 and CH in hello["channels"]
    cols = dict(events)["columns"]["channels"][CH]
    assert all(t % hello["col_ns"] == 0 for t in cols["t_ns"])
    assert max(cols["max"]) == 100.0 and min(cols["min"]) == 5.0
    # 1.5 s of samples in 0.1 s columns: 15 or 16 columns, never 1500 samples
    assert len(cols["t_ns"]) <= 16
    phases = dict(events)["phases"]["phases"]
    assert phases[0]["run"] == "r" and phases[0]["t_end_ns"] is None
    health = dict(events)["health"]
    assert health["status"] in {"ok", "degraded"}
    assert {"down", "problems", "probes", "offsets", "latest"} <= set(health)
    assert health["latest"][CH]["power_w"] == 5.0


def test_stream_then_sends_only_new_columns(serve: Callable[..., Api], daemon: Daemon) -> None:
    api = serve()
    t0 = time.time_ns() - 2 * S
    spiky(daemon, t0, 1000, spike_at=10)
    url = f"{api.url}/v1/live?width=100&range_s=10&interval_s=0.05"
    req = urllib.request.Request(url)
    frames: list[dict[str, Any]] = []
    with urllib.request.urlopen(req, timeout=10) as resp:
        event = ""
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "columns":
                frames.append(json.loads(line[6:])["channels"].get(CH, {}))
                if len(frames) == 1:  # more samples after the first frame
                    spiky(daemon, t0 + 1000 * PERIOD_NS, 500, spike_at=499)
                elif frames[-1]:
                    break
    first, later = frames[0], frames[-1]
    # the later frame starts at the first one's last column (re-sent as it filled), no earlier
    assert later["t_ns"][0] == first["t_ns"][-1]
    assert later["max"][-1] == 100.0


def test_token_rule_page_public_data_not(serve: Callable[..., Api], daemon: Daemon) -> None:
    api = serve(token="s3cret")
    for path in ("/live", "/static/live.js", "/static/uPlot.iife.min.js"):
        assert api.call("GET", path, token="").status == 200
    assert api.call("GET", "/static/uPlot.LICENSE", token="").body.startswith(b"The MIT License")
    assert api.call("GET", "/v1/live", token="").status == 401
    assert api.call("GET", "/v1/samples?channel=x&t_begin_ns=0&t_end_ns=1", token="").status == 401
    # nothing outside the listed files, traversal included
    assert api.call("GET", "/static/../api.py", token="s3cret", documented=False).status == 404
    assert api.call("GET", "/static/powerd.db", token="s3cret").status == 404
    spiky(daemon, time.time_ns() - S, 200, spike_at=5)
    assert _events(f"{api.url}/v1/live?width=50&range_s=5", "s3cret", 1)[0][0] == "hello"
    with pytest.raises(urllib.error.HTTPError) as err:
        _events(f"{api.url}/v1/live", "wrong", 1)
    assert err.value.code == 401


def test_samples_raw_when_few_columns_when_many(api: Api, daemon: Daemon) -> None:
    t0 = 1_700_000_000 * S
    t, _ = spiky(daemon, t0, 5000, spike_at=2345)
    # 100 ms around the spike at width 100: 101 samples <= 4 per column: every sample
    a, b = int(t[2300]), int(t[2400])
    raw = api.call("GET", f"/v1/samples?channel={CH}&t_begin_ns={a}&t_end_ns={b}&width=100")
    body = raw.json()
    assert body["raw"] is True and body["t_ns"] == t[2300:2401].tolist()
    assert body["value"][45] == 100.0 and body["value"].count(100.0) == 1
    # the whole 5 s at width 100: columns of 50 ms, the spike's column keeps 100 W
    whole = api.call(
        "GET", f"/v1/samples?channel={CH}&t_begin_ns={t0}&t_end_ns={int(t[-1])}&width=100"
    ).json()
    assert whole["raw"] is False and len(whole["t_ns"]) <= 101
    assert max(whole["max"]) == 100.0 and min(whole["min"]) == 5.0
    # older than the in-memory ring holds: read from the store
    daemon.timeline.rings[CH] = type(daemon.timeline.rings[CH])(16)
    old = api.call("GET", f"/v1/samples?channel={CH}&t_begin_ns={a}&t_end_ns={b}&width=100")
    assert old.json()["t_ns"] == t[2300:2401].tolist()


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("channel=nope&t_begin_ns=0&t_end_ns=1", 404),
        (f"channel={CH}&t_begin_ns=x&t_end_ns=1", 400),
        (f"channel={CH}&t_begin_ns=5&t_end_ns=1", 400),
        (f"channel={CH}&t_begin_ns=0&t_end_ns=1&width=0", 400),
        (f"channel={CH}&t_begin_ns=0&t_end_ns=1&width=nan", 400),
        # an hour at 1 kHz is 3.6 M samples (served); three hours is not read at once
        (f"channel={CH}&t_begin_ns=0&t_end_ns={3 * 3600 * S}", 422),
    ],
)
def test_samples_bad_queries_say_why(api: Api, daemon: Daemon, query: str, status: int) -> None:
    spiky(daemon, 1_700_000_000 * S, 10, spike_at=1)
    reply = api.call("GET", f"/v1/samples?{query}")
    assert reply.status == status and reply.json()["error"]


def test_live_bad_width_is_400(api: Api) -> None:
    assert api.call("GET", "/v1/live?width=100000").status == 400


def test_a_failing_stream_is_counted_on_healthz(
    serve: Callable[..., Api], daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = serve()

    def broken() -> dict[str, Any]:
        raise RuntimeError("offsets unavailable")

    monkeypatch.setattr(daemon, "offsets_json", broken)
    events = _events(f"{api.url}/v1/live?width=50&range_s=5&interval_s=0.05", None, 10)
    assert "health" not in [e for e, _ in events]  # the stream ended where it failed
    monkeypatch.undo()
    health = api.call("GET", "/healthz").json()
    assert health["problems"]["live_stream_failed"] == 1
