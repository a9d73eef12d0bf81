"""The HTTP sidecar API (aiohttp) over a Daemon: markers in; results, live power and health out.

Routes (described exactly in ``powerd/openapi.json``, served at ``GET /v1/openapi.json``):

- ``POST /v1/markers?source=S``: one contract-1 marker as JSON; 202 applied (or held, when S is
  an agent whose clock offset is not known yet), 200 a repeat of (source, seq), 400 a body that is
  not JSON or a bad source id, 422 a marker that is invalid or does not fit the phases (an end
  without a begin, …), 413 a body over ``MAX_BODY_BYTES``.
- ``GET /v1/runs?limit=N&before=CURSOR``: run summaries newest first, a page at a time
  (``next`` is the cursor of the following page, null on the last).
- ``GET /v1/runs/{run}``: the stored contract-2 result; 404 with the reason when there is none.
- ``GET /v1/compare?runs=RUN[:PHASE],...&by=phase|device&unit=U&format=json|csv|html``: stored
  runs side by side with significance calls (``powerd.compare``); 400 malformed, 404 a run
  without a result or a phase it lacks.
- ``GET /v1/channels``: latest power per channel.
- ``GET /healthz``: ``{"status": "ok"|"degraded"}`` to anyone (for probes and load balancers);
  with the token (or when the server has none, which it may only on loopback) also what is down
  and why, counts and agent clock offsets.
- ``GET /metrics``: Prometheus text, names from ``powerd.metrics``.

Every error is ``{"error": "<reason>"}``, unknown routes included, so a harness can show the reason.
With a token every route except ``/healthz`` needs ``Authorization: Bearer <token>`` (compared in
constant time, never logged, never echoed). Binding to anything but loopback without a token is
refused here too, not only by the config check.

Hostile clients are bounded (``HttpLimits``, ``[http]`` in the config): a connection that has not
sent a complete request head within ``header_timeout_s`` (or sits idle that long between
requests) is closed, so slow-header clients cannot hold file descriptors; a body must arrive within
``body_timeout_s`` (408); beyond ``max_connections`` open connections a new one gets a 503 and is
closed at once. Every malformed body is a 4xx (deep JSON, invalid UTF-8, huge numbers, non-object
JSON), never a 500.

The server runs inside the daemon's asyncio loop (``start_api``) or, for the synchronous
``powerd measure``, on its own loop in a thread (``ApiThread``). Calls into the Daemon that touch
the store run in a worker thread so a slow disk never stalls the loop (MQTT shares it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from powerd import __version__
from powerd.agent.wire import NAME_RE, SOURCE_RE
from powerd.config import LOOPBACK
from powerd.daemon import Daemon, MarkerOutcome
from powerd.errors import PowerdError
from powerd.exporter import CONTENT_TYPE as METRICS_CONTENT_TYPE
from powerd.exporter import registry_for, render
from powerd.live import PUBLIC_PATHS, add_routes, json_text
from powerd.phases import Phase, StampedMarker

MAX_BODY_BYTES = 64 * 1024
DEFAULT_SOURCE = "http"
OPENAPI_PATH = Path(__file__).with_name("openapi.json")
UNAUTHENTICATED = frozenset({"/healthz", *PUBLIC_PATHS})  # the live page holds no data
SHUTDOWN_TIMEOUT_S = 5.0
START_TIMEOUT_S = 10.0

DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 256
# how long an unread body is still drained after an early answer (413, 408) before closing
LINGER_S = 1.0


@dataclass(frozen=True)
class HttpLimits:
    """Bounds on what a client may hold: time to send a request head (and idle keep-alive), time
    to send a body, and open connections in all."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS


DAEMON_KEY = web.AppKey("daemon", Daemon)
LIMITS_KEY = web.AppKey("limits", HttpLimits)
TOKEN_KEY: web.AppKey[bytes | None] = web.AppKey("token")
OPENAPI_KEY: web.AppKey[bytes] = web.AppKey("openapi")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- JSON helpers ------------------------------------------------------------------------------


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = json_text(data)  # non-finite floats as null (powerd.live)
    return web.Response(text=body, status=status, content_type="application/json", headers=headers)


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json({"error": reason}, status, headers)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _stamped_json(sm: StampedMarker) -> dict[str, Any]:
    m = sm.marker
    return {
        "source": sm.source,
        "run": m.run,
        "phase": m.phase,
        "event": m.event,
        "seq": m.seq,
        "trial": m.trial,
        "t_ns": sm.t_ns,
        "received_ns": sm.received_ns,
        "timing": sm.timing.to_json(),
    }


def _phase_json(p: Phase) -> dict[str, Any]:
    return {
        "run": p.run,
        "phase": p.phase,
        "trial": p.trial,
        "t_begin_ns": p.t_begin_ns,
        "t_end_ns": p.t_end_ns,
        "duration_s": (p.t_end_ns - p.t_begin_ns) / 1e9,
        "count": p.count,
        "unit": p.unit,
        "meta": p.meta,
    }


# --- authentication and errors -----------------------------------------------------------------


def _authorized(request: web.Request, token: bytes) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token)


@web.middleware
async def _auth_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer check first, then every aiohttp HTTP error turned into ``{"error": ...}``."""
    token = request.app[TOKEN_KEY]
    if (
        token is not None
        and request.path not in UNAUTHENTICATED
        and not _authorized(request, token)
    ):
        return _error(
            401,
            "missing or wrong bearer token: send the header Authorization: Bearer <token>",
            {"WWW-Authenticate": 'Bearer realm="powerd"'},
        )
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _error(exc.status, f"{exc.reason}: {request.method} {request.path}", headers)


# --- routes ------------------------------------------------------------------------------------


async def post_marker(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    source = request.query.get("source", DEFAULT_SOURCE)
    if not SOURCE_RE.match(source):
        return _error(400, f"source {source!r} must be 1-128 characters of A-Za-z0-9_.:-")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
    timeout_s = request.app[LIMITS_KEY].body_timeout_s
    try:
        body = await asyncio.wait_for(request.read(), timeout_s)
    except TimeoutError:
        resp = _error(408, f"request body not received within {timeout_s:g} s")
        resp.force_close()  # and the connection is closed after LINGER_S more
        return resp
    received_ns = daemon.clock()
    try:
        obj = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as err:
        return _error(400, f"body is not UTF-8 JSON: {err}")
    except RecursionError:
        return _error(400, "body is not UTF-8 JSON: nested too deeply")
    # A JSON value that is not an object goes in as the raw body: the daemon rejects and counts it.
    payload: bytes | dict[str, Any] = obj if isinstance(obj, dict) else body
    outcome: MarkerOutcome = await asyncio.to_thread(
        daemon.submit_marker, source, payload, received_ns
    )
    if outcome.error is not None:
        return _error(422, outcome.error)
    data = {
        "applied": outcome.applied,
        "repeat": outcome.repeat,
        "held": outcome.held,
        "marker": None if outcome.stamped is None else _stamped_json(outcome.stamped),
        "phase": None if outcome.phase is None else _phase_json(outcome.phase),
    }
    return _json(data, 200 if outcome.repeat else 202)


RUNS_PAGE_DEFAULT = 50
RUNS_PAGE_MAX = 1000


def _runs_cursor(text: str) -> tuple[int, str] | None:
    """``<first_t_ns>:<run>`` as given in a page's ``next``; None if malformed."""
    t_text, sep, run = text.partition(":")
    if not sep or not t_text.lstrip("-").isdigit() or not NAME_RE.match(run):
        return None
    return int(t_text), run


async def get_runs(request: web.Request) -> web.Response:
    from powerd.runs import list_runs

    limit_text = request.query.get("limit", str(RUNS_PAGE_DEFAULT))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= RUNS_PAGE_MAX:
        return _error(400, f"limit must be an integer from 1 to {RUNS_PAGE_MAX}")
    limit = int(limit_text)
    before = None
    if "before" in request.query:
        before = _runs_cursor(request.query["before"])
        if before is None:
            return _error(400, "before must be a cursor from a page's next (<t_ns>:<run>)")
    store = request.app[DAEMON_KEY].store
    rows = await asyncio.to_thread(list_runs, store, limit + 1, before)
    page, more = rows[:limit], len(rows) > limit
    nxt = f"{page[-1]['t_first_ns']}:{page[-1]['run']}" if more else None
    return _json({"runs": page, "next": nxt})


async def get_run(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    run = request.match_info["run"]
    if not NAME_RE.match(run):
        return _error(400, f"run id {run!r} must be 1-128 characters of A-Za-z0-9_.:-")
    result = await asyncio.to_thread(daemon.run_result, run)
    if result is not None:
        return _json(result)
    known = await asyncio.to_thread(daemon.store.markers, run)
    if known:
        reason = (
            f"run {run!r} has no result yet: a phase is still open, or its result waits for "
            "the samples that cover its end"
        )
    else:
        reason = f"no run {run!r}: no marker of it has reached this powerd"
    return _error(404, reason)


COMPARE_FORMATS = ("json", "csv", "html")


def _comparison(daemon: Daemon, texts: list[str], by: str, unit: str | None) -> dict[str, Any]:
    """The comparison of stored results (``powerd compare`` over the API)."""
    from powerd.compare import CompareNotFound, build_comparison, parse_selection

    def is_run(run: str) -> bool:
        return bool(NAME_RE.match(run)) and daemon.run_result(run) is not None

    selected = []
    for text in texts:
        sel = parse_selection(text, is_run)
        if not NAME_RE.match(sel.run):
            raise PowerdError(f"run id {sel.run!r} must be 1-128 characters of A-Za-z0-9_.:-")
        result = daemon.run_result(sel.run)
        if result is None:
            raise CompareNotFound(f"run {sel.run!r} has no result in this powerd")
        selected.append((sel, result))
    return build_comparison(selected, by, unit)


async def get_compare(request: web.Request) -> web.Response:
    from powerd.compare import CompareNotFound

    texts = [t for t in request.query.get("runs", "").split(",") if t.strip()]
    by = request.query.get("by", "phase")
    fmt = request.query.get("format", "json")
    unit = request.query.get("unit")
    if unit is not None and not NAME_RE.match(unit):
        return _error(400, "unit must be a name such as token or request")
    if len(texts) < 1:
        return _error(400, "runs must list RUN or RUN:PHASE, comma-separated")
    if by not in ("phase", "device"):
        return _error(400, "by must be phase or device")
    if fmt not in COMPARE_FORMATS:
        return _error(400, f"format must be one of {', '.join(COMPARE_FORMATS)}")
    try:
        doc = await asyncio.to_thread(_comparison, request.app[DAEMON_KEY], texts, by, unit)
    except CompareNotFound as err:
        return _error(404, str(err))
    except PowerdError as err:
        return _error(400, str(err))
    if fmt == "csv":
        from powerd.report.compare_text import compare_csv

        return web.Response(text=compare_csv(doc), content_type="text/csv", charset="utf-8")
    if fmt == "html":
        from powerd.report.compare_html import render_compare_html

        page = render_compare_html(doc, f"powerd {__version__}")
        return web.Response(text=page, content_type="text/html", charset="utf-8")
    return _json(doc)


async def get_channels(request: web.Request) -> web.Response:
    return _json({"channels": request.app[DAEMON_KEY].channels_latest()})


async def get_health(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    snap = daemon.health.snapshot()
    token = request.app[TOKEN_KEY]
    if token is not None and not _authorized(request, token):
        return _json({"status": snap["status"]})  # the details may name hosts, ids and paths
    return _json(
        {
            "status": snap["status"],
            "down": snap["down"],
            "problems": snap["problems"],
            "version": __version__,
            "counts": {**dict(daemon.counts), **daemon.gap_edges.counts},
            "rejected_by_source": dict(daemon.rejected_by_source),
            "offsets": daemon.offsets_json(),
        }
    )


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_KEY], content_type="application/json")


def make_app(
    daemon: Daemon, token: str | None, limits: HttpLimits | None = None
) -> web.Application:
    """The API over ``daemon``; with ``token`` every route but /healthz needs it as a bearer
    (and /healthz gives only its status without it). ``limits``: see ``HttpLimits``."""
    limits = limits or HttpLimits()
    if token is not None and not token:
        raise PowerdError("the API token is empty")
    app = web.Application(middlewares=[_auth_and_errors], client_max_size=MAX_BODY_BYTES)
    app[DAEMON_KEY] = daemon
    app[LIMITS_KEY] = limits
    app[TOKEN_KEY] = None if token is None else token.encode("utf-8")
    app[OPENAPI_KEY] = OPENAPI_PATH.read_bytes()
    registry = registry_for(daemon)

    async def get_metrics(_request: web.Request) -> web.Response:
        body = await asyncio.to_thread(render, registry)
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    app.router.add_post("/v1/markers", post_marker)
    app.router.add_get("/v1/runs", get_runs)
    app.router.add_get("/v1/runs/{run}", get_run)
    app.router.add_get("/v1/compare", get_compare)
    app.router.add_get("/v1/channels", get_channels)
    app.router.add_get("/v1/openapi.json", get_openapi)
    app.router.add_get("/healthz", get_health)
    app.router.add_get("/metrics", get_metrics)
    add_routes(app, daemon)  # the live view (powerd.live): /live, /v1/live, /v1/samples
    return app


# --- running it --------------------------------------------------------------------------------


def check_bind(host: str, app: web.Application) -> None:
    """Refuse to serve an API without a token anywhere but loopback."""
    if app[TOKEN_KEY] is None and host not in LOOPBACK:
        raise PowerdError(
            f"refusing to serve the HTTP API on {host} without a bearer token: "
            "bind to 127.0.0.1 or set [http] token_file"
        )


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Refuse(asyncio.Protocol):
    """A connection over the cap: one 503 answer, then closed, whatever the client sends."""

    BODY = json.dumps({"error": "too many open connections; retry later"}).encode()
    HEAD = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    ).encode()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.HEAD + self.BODY)
        transport.close()


class _CappedSite(web.TCPSite):
    """A TCP site that refuses (503, closed) connections beyond ``max_connections``."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, limits: HttpLimits) -> None:
        super().__init__(runner, host, port)
        self._limits = limits
        self.refused = 0

    async def start(self) -> None:
        self._runner._reg_site(self)
        server = self._runner.server
        assert server is not None
        cap = self._limits.max_connections
        daemon = self._runner.app[DAEMON_KEY] if isinstance(self._runner, web.AppRunner) else None

        def factory() -> asyncio.Protocol:
            if len(server.connections) < cap:
                return server()
            self.refused += 1
            if daemon is not None:
                daemon.health.problem(
                    "http", "http_connections_refused", f"more than {cap} open connections"
                )
            return _Refuse()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            factory, self._host, self._port, backlog=self._backlog, reuse_address=True
        )


async def start_api(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on the running loop (port 0: a free one); stop with ``runner.cleanup()``.

    The app's ``HttpLimits`` bound header and idle time (aiohttp's keep-alive timer runs from
    the connection's start until a complete request head arrived) and open connections."""
    check_bind(host, app)
    limits = app[LIMITS_KEY]
    runner = web.AppRunner(
        app,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        keepalive_timeout=limits.header_timeout_s,
        lingering_time=LINGER_S,
    )
    await runner.setup()
    try:
        await _CappedSite(runner, host, port, limits).start()
    except OSError as err:
        await runner.cleanup()
        raise PowerdError(
            f"cannot serve the HTTP API on {host}:{port}: {err.strerror or err}"
        ) from None
    bound_port = int(runner.addresses[0][1])
    return runner, _url(host, bound_port)


class ApiThread:
    """The API on its own event loop in a daemon thread, for synchronous code.

    ``ApiThread(app)`` returns once the server listens (or raises why it could not); ``.url`` is
    its base URL; ``.stop()`` (or leaving a ``with`` block) shuts it down, waiting a bounded time.
    """

    def __init__(
        self,
        app: web.Application,
        host: str = "127.0.0.1",
        port: int = 0,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        check_bind(host, app)
        self.url = ""
        self._app, self._host, self._port = app, host, port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._main, name="powerd-api", daemon=True)
        self._thread.start()
        if not self._ready.wait(start_timeout_s):
            self.stop()
            raise PowerdError(f"the HTTP API did not start within {start_timeout_s:g} s")
        if self._errors:
            self._thread.join(start_timeout_s)
            raise self._errors[0]

    def _main(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            try:
                runner, self.url = loop.run_until_complete(
                    start_api(self._app, self._host, self._port)
                )
            except BaseException as err:
                self._errors.append(err)
                return
            finally:
                self._ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    def stop(self, timeout_s: float = SHUTDOWN_TIMEOUT_S + 5.0) -> None:
        """Stop serving; idempotent."""
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)

    def __enter__(self) -> ApiThread:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
