"""A Redfish mockup server for tests, on 127.0.0.1: serves a DMTF-layout mockup directory.

``GET /redfish/v1/<path>`` answers ``<root>/<path>/index.json`` (the layout of DMTF's
Redfish-Mockup-Server and of ``sushy-static``), with optional basic auth and TLS. A test can
make one path misbehave while it runs (``faults[path] = "hang" | "garbage" | <HTTP status>``);
a hanging request is released when the server stops, so nothing outlives the test.
"""

from __future__ import annotations

import base64
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HANG_MAX_S = 30.0


class MockRedfish:
    def __init__(
        self,
        root: Path,
        user: str | None = None,
        password: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.root = root
        self.faults: dict[str, str | int] = {}
        self.requests: list[str] = []
        self._release = threading.Event()
        expected = (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if user is not None
            else None
        )
        mock = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0].rstrip("/")
                mock.requests.append(path)
                if expected is not None and self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="redfish"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                fault = mock.faults.get(path)
                if fault == "hang":
                    mock._release.wait(HANG_MAX_S)
                    return
                if isinstance(fault, int):
                    self.send_error(fault)
                    return
                rel = path.removeprefix("/redfish/v1").strip("/")
                f = mock.root / rel / "index.json"
                if not path.startswith("/redfish/v1") or not f.is_file():
                    self.send_error(404)
                    return
                body = b"<html>502 Bad Gateway</html" if fault == "garbage" else f.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
