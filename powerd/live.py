"""The live view's server side (issue 17): min/max columns pushed as Server-Sent Events.

The bench page (``GET /live``, ``powerd/static/live.html``) shows every channel's power as it
arrives. The browser never gets the full-rate stream: it says how wide its plot is (``width``,
pixel columns) and how much time it shows (``range_s``), and the server sends, per channel, the
minimum and maximum of each column's samples, so a spike narrower than a column still shows at its
full height. Columns sit on a fixed grid (multiples of ``range_s / width`` since the epoch) so a
frame carries only the columns that changed since the last one: the last column sent is re-sent
while it fills, the ones before it never again. The cost per frame is the new samples, not the
window.

``GET /v1/live`` is the event stream (``text/event-stream``):

- ``hello``: the channels, the column width ``col_ns`` and the server's clock;
- ``columns``: ``{"channels": {cid: {"t_ns": [...], "min": [...], "max": [...]}}, "now_ns": N}``
  (``t_ns`` is each column's start; a column already held by the client is replaced);
- ``phases``: the phases seen by this powerd since it started, open ones with ``t_end_ns`` null;
- ``results``: the latest results, each phase's energy, uncertainty and flags;
- ``health``: ``/healthz``'s details, probe health and the agents' clock offsets.

``GET /v1/samples?channel=C&t_begin_ns=A&t_end_ns=B&width=W`` is the zoom: the raw samples of the
range when there are at most ``RAW_PER_COLUMN * W`` of them, else min/max columns of it. It reads
the daemon's in-memory timeline and falls back to the store for older data.

Both need the API's bearer token like every data route; the page itself (``/live`` and its
static files, no data) does not, so a browser can open it and send the token, taken from the
URL's fragment (``#token=...``, never sent to a server), in an ``Authorization`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from powerd.block import F64, I64
from powerd.phases import StampedMarker

STATIC_DIR = Path(__file__).with_name("static")
LIVE_PAGE = STATIC_DIR / "live.html"
# files the page may load, served without the token (they hold no data): name -> (file, type)
STATIC_FILES = {
    "live.js": ("live.js", "application/javascript"),
    "uPlot.iife.min.js": ("uplot/uPlot.iife.min.js", "application/javascript"),
    "uPlot.min.css": ("uplot/uPlot.min.css", "text/css"),
    "uPlot.LICENSE": ("uplot/LICENSE", "text/plain"),
}
PUBLIC_PATHS = frozenset({"/live", *(f"/static/{name}" for name in STATIC_FILES)})

WIDTH_MAX = 8192
RANGE_S_MIN, RANGE_S_MAX = 0.1, 24 * 3600.0
INTERVAL_S_MIN, INTERVAL_S_MAX = 0.05, 10.0
DEFAULT_INTERVAL_S = 0.25
HEALTH_EVERY_S = 1.0
# /v1/samples returns raw samples up to this many per pixel column, else min/max columns
RAW_PER_COLUMN = 4
# the most samples one /v1/samples answer reads (from the store: 16 bytes each in memory)
MAX_RANGE_SAMPLES = 4_000_000
PHASES_KEPT = 500
RESULTS_KEPT = 10


def minmax_columns(t_ns: I64, value: F64, col_ns: int, t_from_ns: int) -> tuple[I64, F64, F64]:
    """Min and max of the samples in each ``col_ns``-wide column on the grid of multiples of
    ``col_ns``, for samples at or after ``t_from_ns`` (sorted by time; non-finite dropped).
    Returns (column start ns, min, max), only columns that hold a sample. Vectorised: one pass."""
    keep = (t_ns >= t_from_ns) & np.isfinite(value)
    t, v = t_ns[keep], value[keep]
    if t.size == 0:
        empty_f = np.empty(0, np.float64)
        return np.empty(0, np.int64), empty_f, empty_f.copy()
    col = t // col_ns
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    return (
        col[starts] * col_ns,
        np.minimum.reduceat(v, starts),
        np.maximum.reduceat(v, starts),
    )


def _floats(a: F64) -> list[float | None]:
    return [x if math.isfinite(x) else None for x in a.tolist()]


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of a contract-2 result: per phase its figures, uncertainty, flags."""
    keys = (
        "phase",
        "trial",
        "t_begin_ns",
        "t_end_ns",
        "energy_j",
        "uncertainty_j",
        "mean_power_w",
        "net_energy_j",
        "net_uncertainty_j",
        "flags",
    )
    return {
        "run": result.get("run"),
        "phases": [{k: p.get(k) for k in keys} for p in result.get("phases", [])],
    }


class LiveFeed:
    """What the page needs beyond the timeline, gathered from the daemon's listeners: the
    phases (from applied markers) and the latest results. The listeners run on the daemon's
    threads and only append under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (run, phase, trial) -> [run, phase, trial, t_begin_ns, t_end_ns | None]
        self._phases: dict[tuple[str, str, int], list[Any]] = {}
        self._results: deque[dict[str, Any]] = deque(maxlen=RESULTS_KEPT)
        self.version = 0  # bumped on every change, so a stream sends only what changed

    def on_marker(self, sm: StampedMarker) -> None:
        m = sm.marker
        key = (m.run, m.phase, m.trial)
        with self._lock:
            if m.event == "begin":
                self._phases[key] = [m.run, m.phase, m.trial, sm.t_ns, None]
                while len(self._phases) > PHASES_KEPT:
                    del self._phases[next(iter(self._phases))]
            elif key in self._phases:
                self._phases[key][4] = sm.t_ns
            else:  # an end whose begin came before this feed started
                return
            self.version += 1

    def on_result(self, result: dict[str, Any]) -> None:
        with self._lock:
            self._results.appendleft(_summary(result))
            self.version += 1

    def phases(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = list(self._phases.values())
        names = ("run", "phase", "trial", "t_begin_ns", "t_end_ns")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def results(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._results)


def attach(daemon: Any) -> LiveFeed:
    """A LiveFeed fed by ``daemon``'s marker and result listeners, seeded with its open phases."""
    feed = LiveFeed()
    for sm in list(daemon.tracker.open.values()):
        feed.on_marker(sm)
    daemon.marker_listeners.append(feed.on_marker)
    daemon.result_listeners.append(feed.on_result)
    return feed


def _finite(obj: Any) -> Any:
    """Non-finite floats as null: ``NaN``/``Infinity`` are not JSON and break strict parsers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def json_text(data: Any) -> str:
    """Compact strict JSON of ``data``, non-finite floats as null (shared with powerd.api)."""
    return json.dumps(_finite(data), allow_nan=False, separators=(",", ":"))


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json_text(data)}\n\n".encode()


def _number(query: Any, name: str, default: float, lo: float, hi: float) -> float:
    text = query.get(name)
    if text is None:
        return default
    try:
        x = float(text)
    except ValueError:
        raise web.HTTPBadRequest(reason=f"{name} must be a number") from None
    if not (math.isfinite(x) and lo <= x <= hi):
        raise web.HTTPBadRequest(reason=f"{name} must be from {lo:g} to {hi:g}")
    return x


def _health(daemon: Any) -> dict[str, Any]:
    snap = daemon.health.snapshot()
    probes = []
    live = daemon.live_metrics
    if live is not None:
        for name, h in live.probe_health():
            probes.append(
                {
                    "probe": name,
                    "up": h.up,
                    "down_reason": h.down_reason,
                    "samples": h.samples,
                    "errors": h.errors,
                    "last_error": h.last_error,
                }
            )
    return {
        "status": snap["status"],
        "down": snap["down"],
        "problems": snap["problems"],
        "probes": probes,
        "offsets": daemon.offsets_json(),
        "latest": daemon.channels_latest(),
    }


class LiveStats:
    """Per-app state of the streams: counts (streams open, bytes sent) and the shutdown signal
    that ends every open stream at once, so a daemon stops promptly under an open page."""

    def __init__(self) -> None:
        self.closing = asyncio.Event()
        self.failures = 0
        self.streams_open = 0
        self.streams_total = 0
        self.bytes_sent = 0
        self.frames_sent = 0


def _columns(
    timeline: Any, sent_from: dict[str, int], horizon_ns: int, now_ns: int, col_ns: int
) -> dict[str, Any]:
    """One frame's columns: per channel, from the last column sent (or the window's start) to
    now; ``sent_from`` is advanced. Runs in a worker thread (one hop per frame, not per channel)."""
    frame: dict[str, Any] = {}
    for cid in list(timeline.channels):
        start = sent_from.get(cid, horizon_ns)
        t, v = timeline.window(cid, start, now_ns)
        ct, vmin, vmax = minmax_columns(t, v, col_ns, start)
        if ct.size == 0:
            continue
        sent_from[cid] = int(ct[-1])
        frame[cid] = {"t_ns": ct.tolist(), "min": _floats(vmin), "max": _floats(vmax)}
    return frame


async def stream(
    request: web.Request, daemon: Any, feed: LiveFeed, stats: LiveStats
) -> web.StreamResponse:
    """``GET /v1/live``: the event stream described in the module docstring."""
    width = int(_number(request.query, "width", 1000, 10, WIDTH_MAX))
    range_s = _number(request.query, "range_s", 60.0, RANGE_S_MIN, RANGE_S_MAX)
    interval_s = _number(
        request.query, "interval_s", DEFAULT_INTERVAL_S, INTERVAL_S_MIN, INTERVAL_S_MAX
    )
    col_ns = max(1, math.ceil(range_s * 1e9 / width))
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await resp.prepare(request)
    stats.streams_open += 1
    stats.streams_total += 1
    timeline = daemon.timeline
    sent_from: dict[str, int] = {}  # per channel: start of the last column sent
    feed_version = -1
    next_health = 0.0
    loop = asyncio.get_running_loop()

    async def send(event: str, data: Any) -> None:
        body = _sse(event, data)
        await resp.write(body)
        stats.bytes_sent += len(body)
        stats.frames_sent += 1

    try:
        now_ns = daemon.clock()
        channels = {
            cid: {"kind": ch.kind, "unit": ch.unit, "device": ch.device_id}
            for cid, ch in list(timeline.channels.items())
        }
        await send(
            "hello",
            {
                "channels": channels,
                "col_ns": col_ns,
                "width": width,
                "range_s": range_s,
                "now_ns": now_ns,
            },
        )
        while True:
            now_ns = daemon.clock()
            horizon_ns = (now_ns - int(range_s * 1e9)) // col_ns * col_ns
            frame = await asyncio.to_thread(
                _columns, timeline, sent_from, horizon_ns, now_ns, col_ns
            )
            if frame:
                await send("columns", {"channels": frame, "now_ns": now_ns})
            if feed.version != feed_version:
                feed_version = feed.version
                await send("phases", {"phases": feed.phases()})
                await send("results", {"results": feed.results()})
            if loop.time() >= next_health:
                next_health = loop.time() + HEALTH_EVERY_S
                await send("health", _health(daemon))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stats.closing.wait(), interval_s)
            if stats.closing.is_set():
                break
    except ConnectionResetError:
        pass  # the page went away: nothing to tell it
    except Exception as err:  # a bug, not the client: counted and on /healthz; the page reconnects
        stats.failures += 1
        daemon.health.problem("http", "live_stream_failed", f"{type(err).__name__}: {err}")
    finally:
        stats.streams_open -= 1
    return resp


async def samples(request: web.Request, daemon: Any) -> web.Response:
    """``GET /v1/samples``: raw samples of a range, or min/max columns when there are too many."""
    cid = request.query.get("channel", "")
    if cid not in daemon.timeline.channels:
        raise web.HTTPNotFound(reason=f"no channel {cid!r}")
    try:
        t0 = int(request.query["t_begin_ns"])
        t1 = int(request.query["t_end_ns"])
    except (KeyError, ValueError):
        raise web.HTTPBadRequest(reason="t_begin_ns and t_end_ns must be integers (ns)") from None
    if t1 <= t0:
        raise web.HTTPBadRequest(reason="t_end_ns must be after t_begin_ns")
    width = int(_number(request.query, "width", 1000, 10, WIDTH_MAX))
    period_s = daemon.timeline.channels[cid].nominal_period_s
    expected = (t1 - t0) / 1e9 / period_s
    if expected > MAX_RANGE_SAMPLES:
        longest_s = MAX_RANGE_SAMPLES * period_s
        raise web.HTTPUnprocessableEntity(
            reason=f"the range holds about {expected:.3g} samples of {cid}; ask for at most "
            f"{longest_s:.4g} s at a time (the page's overview covers longer ranges)"
        )
    t, v = await asyncio.to_thread(_range, daemon, cid, t0, t1)
    body: dict[str, Any] = {"channel": cid, "t_begin_ns": t0, "t_end_ns": t1}
    if t.size <= RAW_PER_COLUMN * width:
        body |= {"raw": True, "t_ns": t.tolist(), "value": _floats(v)}
    else:
        col_ns = max(1, math.ceil((t1 - t0) / width))
        ct, vmin, vmax = minmax_columns(t, v, col_ns, t0)
        body |= {
            "raw": False,
            "col_ns": col_ns,
            "t_ns": ct.tolist(),
            "min": _floats(vmin),
            "max": _floats(vmax),
        }
    return web.json_response(body, dumps=lambda o: json.dumps(o, separators=(",", ":")))


def _range(daemon: Any, cid: str, t0: int, t1: int) -> tuple[I64, F64]:
    """Samples of ``cid`` in [t0, t1]: the in-memory ring when it reaches back to t0, else the
    store (which has everything flushed)."""
    t, v = daemon.timeline.window(cid, t0, t1)
    if t.size == 0 or t[0] > t0:
        st, sv = daemon.store.samples(cid, t0, t1)
        if st.size >= t.size:
            t, v = st, sv
    sel = (t >= t0) & (t <= t1)
    return t[sel], v[sel]


async def page(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(LIVE_PAGE, headers={"Cache-Control": "no-store"})


async def static(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound(reason=f"no static file {name!r}")
    path, ctype = STATIC_FILES[name]
    return web.FileResponse(STATIC_DIR / path, headers={"Content-Type": ctype})


def add_routes(app: web.Application, daemon: Any) -> LiveStats:
    """The live page, its files, the event stream and the zoom route on ``app``."""
    feed = attach(daemon)
    stats = LiveStats()

    async def get_live(request: web.Request) -> web.StreamResponse:
        return await stream(request, daemon, feed, stats)

    async def get_samples(request: web.Request) -> web.Response:
        return await samples(request, daemon)

    app.router.add_get("/live", page)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/v1/live", get_live)
    app.router.add_get("/v1/samples", get_samples)

    async def on_shutdown(_app: web.Application) -> None:
        stats.closing.set()

    app.on_shutdown.append(on_shutdown)
    return stats
