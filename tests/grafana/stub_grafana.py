"""A stand-in for Grafana's HTTP API: just the endpoints ``powerd grafana push`` calls.

No Grafana server can run here, so the push tests talk to this small loopback server instead. It
implements, after Grafana's HTTP API documentation:

- authentication: ``Authorization: Bearer <token>`` or basic auth, else 401 ``{"message": ...}``;
- ``GET /api/frontend/settings`` (grafana-client's health check) with ``buildInfo``;
- ``GET /api/folders`` and ``POST /api/folders`` (title -> uid);
- ``POST /api/dashboards/db``: stores the dashboard by uid; without ``overwrite`` a second dashboard
  of the same uid is a 412 "version-mismatch", as in Grafana; answers id, uid, url, status, version;
- ``GET /api/annotations?tags=..`` (all tags must match) and ``POST /api/annotations``.

It records every request (method, path, headers, JSON body) for the tests to inspect. What it does
not prove: that a real Grafana accepts the dashboards' JSON (the schema test covers the model; no
rendering, no datasource lookups, no permissions or folder nesting) or that Grafana's answers keep
this shape in later versions.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class StubState:
    token: str | None = None
    basic: tuple[str, str] | None = None
    requests: list[Request] = field(default_factory=list)
    folders: dict[str, str] = field(default_factory=dict)  # uid -> title
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> saved payload
    versions: dict[str, int] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def authorized(self, header: str) -> bool:
        if self.token is not None and header == f"Bearer {self.token}":
            return True
        if self.basic is not None:
            expected = base64.b64encode(":".join(self.basic).encode()).decode()
            return header == f"Basic {expected}"
        return False

    def calls(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet tests

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        with state.lock:
            state.requests.append(
                Request(method, url.path, parse_qs(url.query), dict(self.headers.items()), body)
            )
            if not state.authorized(self.headers.get("Authorization", "")):
                self._reply(401, {"message": "Unauthorized"})
                return
            status, answer = self._route(state, method, url.path, parse_qs(url.query), body)
        self._reply(status, answer)

    @staticmethod
    def _route(
        state: StubState, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        if (method, path) == ("GET", "/api/frontend/settings"):
            return 200, {"buildInfo": {"version": "11.6.0-stub", "commit": "stub"}}
        if (method, path) == ("GET", "/api/folders"):
            folders = enumerate(state.folders.items(), 1)
            return 200, [{"id": i, "uid": u, "title": t} for i, (u, t) in folders]
        if (method, path) == ("POST", "/api/folders"):
            uid = body.get("uid") or f"folder{len(state.folders) + 1}"
            state.folders[uid] = body["title"]
            return 200, {"uid": uid, "title": body["title"], "id": len(state.folders)}
        if (method, path) == ("POST", "/api/dashboards/db"):
            board = body.get("dashboard") or {}
            uid = board.get("uid")
            if not uid or not board.get("title"):
                return 400, {"message": "Dashboard title cannot be empty"}
            folder = body.get("folderUid")
            if folder and folder not in state.folders:
                return 400, {"message": "folder not found"}
            if uid in state.dashboards and not body.get("overwrite"):
                return 412, {
                    "message": "The dashboard has been changed by someone else",
                    "status": "version-mismatch",
                }
            state.versions[uid] = state.versions.get(uid, 0) + 1
            state.dashboards[uid] = body
            return 200, {
                "id": list(state.dashboards).index(uid) + 1,
                "uid": uid,
                "url": f"/d/{uid}/{uid}",
                "status": "success",
                "version": state.versions[uid],
                "slug": uid,
            }
        if (method, path) == ("GET", "/api/annotations"):
            tags = set(query.get("tags", []))
            found = [a for a in state.annotations if tags <= set(a.get("tags", []))]
            return 200, found
        if (method, path) == ("POST", "/api/annotations"):
            ann = {**body, "id": len(state.annotations) + 1}
            state.annotations.append(ann)
            return 200, {"message": "Annotation added", "id": ann["id"]}
        return 404, {"message": "Not found"}

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: StubState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@dataclass
class StubGrafana:
    url: str
    state: StubState


@contextmanager
def stub_grafana(
    token: str | None = None, basic: tuple[str, str] | None = None
) -> Iterator[StubGrafana]:
    """The stand-in on a free loopback port, serving on a thread until the block ends."""
    state = StubState(token=token, basic=basic)
    server = _Server(state)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield StubGrafana(f"http://127.0.0.1:{server.server_address[1]}", state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
