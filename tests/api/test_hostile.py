"""Hostile HTTP clients: every malformed body is a 4xx (never a 500) and the daemon keeps serving;
slow-header and slow-body clients are cut off after the configured timeouts; connections beyond
the cap get a 503 at once; /healthz tells a caller without the token only ok/degraded.

A real aiohttp server (``ApiThread``) over a real Daemon and store, on loopback, with short
timeouts and a small connection cap set through ``HttpLimits`` (``[http]`` in the config)."""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from powerd.api import ApiThread, HttpLimits, make_app
from powerd.daemon import Daemon
from powerd.store import Store
from powerd.timeline import Timeline
from tests.api.helpers import Api

TOKEN = "a-long-enough-token-0123456789"
LIMITS = HttpLimits(header_timeout_s=1.0, body_timeout_s=1.0, max_connections=6)
SOCKET_TIMEOUT_S = 10.0


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with Store(tmp_path / "powerd.db") as store:
        yield Daemon(store, Timeline(), time.time_ns, result_grace_s=0.0)


@pytest.fixture
def server(daemon: Daemon) -> Iterator[ApiThread]:
    thread = ApiThread(make_app(daemon, None, LIMITS), "127.0.0.1", 0)
    yield thread
    thread.stop()


def _valid(**extra: object) -> dict[str, object]:
    return {"v": 1, "run": "r1", "phase": "p", "event": "begin", "seq": 1} | extra


HOSTILE: list[bytes] = [
    b"",
    b"[" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    json.dumps(_valid(meta={"k": "v"})).replace('"v"}', "[" * 5000 + "]" * 5000 + "}").encode(),
    b"\xff\xfe\xfd",
    b'{"v": 1, "run": "\xc3\x28"}',
    b"1" * 5000,
    b"1e999999",
    b"-1e999999",
    b"NaN",
    b"Infinity",
    b"[1, 2, 3]",
    b"null",
    b'"a string"',
    b"true",
    b"{",
    b"{}",
    b'{"v": 1}',
    json.dumps(_valid(t_ns=2**64)).encode(),
    json.dumps(_valid(t_ns=-1)).encode(),
    json.dumps(_valid(t_ns=int("9" * 4000))).encode(),
    json.dumps(_valid(t_ns=1e30)).encode(),
    json.dumps(_valid(seq=2**70)).encode(),
    json.dumps(_valid(event="end", count=-5)).encode(),
    json.dumps(_valid(meta={f"k{i}": "x" for i in range(10_000)})).encode()[:60_000],
    json.dumps(_valid(meta={"k": "x" * 50_000})).encode(),
    json.dumps(_valid(run="x" * 10_000)).encode(),
    json.dumps(_valid(t_ns=1_700_000_000)).encode(),  # seconds
    json.dumps(_valid(t_ns=1_700_000_000_000)).encode(),  # milliseconds
    b"\x00" * 1000,
    b"--boundary\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--boundary--",
]


def _mutations(seed: int, n: int) -> list[bytes]:
    """Seeded random bodies: random bytes and byte-level mutations of a valid marker."""
    rng = random.Random(seed)
    base = bytearray(json.dumps(_valid(t_ns=time.time_ns(), meta={"model": "m"})).encode())
    out = [bytes(rng.randbytes(rng.randrange(1, 300))) for _ in range(n // 2)]
    for _ in range(n - len(out)):
        body = bytearray(base)
        for _ in range(rng.randrange(1, 6)):
            i = rng.randrange(len(body))
            body[i] = rng.randrange(256)
        out.append(bytes(body))
    return out


def test_every_hostile_body_is_a_4xx_and_the_daemon_keeps_serving(
    server: ApiThread, daemon: Daemon
) -> None:
    api = Api(server.url)
    content_types = ["application/json", "text/plain", "multipart/form-data; boundary=boundary"]
    bodies = [(b, True) for b in HOSTILE] + [(b, False) for b in _mutations(11, 120)]
    for i, (body, malformed) in enumerate(bodies):
        ctype = content_types[i % len(content_types)]
        got = api.call("POST", f"/v1/markers?source=fuzz{i}", body, headers={"Content-Type": ctype})
        # a mutation may still be a valid marker (a changed digit of t_ns): never a 5xx
        floor = 400 if malformed else 200
        assert floor <= got.status < 500, (got.status, body[:80], got.body)
    for path in ("/v1/runs/%ff%fe", "/v1/runs/" + "x" * 3000, "/v1/markers?source=%00"):
        got = api.call("GET" if "runs" in path else "POST", path, b"{}", documented=False)
        assert 400 <= got.status < 500, (path, got.status)
    health = api.call("GET", "/healthz")
    assert health.status == 200 and health.json()["status"] == "ok"
    ok = api.call("POST", "/v1/markers", _valid(run="after", t_ns=time.time_ns()))
    assert ok.status == 202 and ok.json()["applied"]
    assert [m.source for m in daemon.store.markers("after")] == ["http"]
    assert daemon.counts["markers_rejected"] > 0


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT_S)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (bounded by the socket timeout)."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def test_slow_header_clients_are_cut_off_and_connections_beyond_the_cap_refused(
    server: ApiThread,
) -> None:
    slow = [_connect(server.url) for _ in range(LIMITS.max_connections)]
    try:
        for sock in slow:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # half a header
        time.sleep(0.2)  # the server has accepted them all
        over = [_connect(server.url) for _ in range(3)]
        for sock in over:  # beyond the cap: a 503 at once and closed, not held
            answer = _read_all(sock)
            sock.close()
            assert answer.startswith(b"HTTP/1.1 503"), answer[:100]
            assert b"too many open connections" in answer
        # the slow clients are closed by the server after the header timeout, unanswered
        for sock in slow:
            assert _read_all(sock) == b""
    finally:
        for sock in slow:
            sock.close()
    # and the server serves a normal request again
    got = Api(server.url).call("GET", "/healthz")
    assert got.status == 200 and got.json()["status"] == "ok"


def test_a_few_slow_clients_do_not_block_a_normal_request(server: ApiThread) -> None:
    slow = [_connect(server.url) for _ in range(LIMITS.max_connections - 2)]
    try:
        for sock in slow:
            sock.sendall(b"POST /v1/markers HTTP/1.1\r\nHost: x\r\n")
        got = Api(server.url).call("POST", "/v1/markers", _valid(t_ns=time.time_ns()))
        assert got.status == 202
    finally:
        for sock in slow:
            sock.close()


def test_a_slow_body_is_a_408_after_the_body_timeout(server: ApiThread, daemon: Daemon) -> None:
    sock = _connect(server.url)
    try:
        sock.sendall(
            b"POST /v1/markers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 200\r\n\r\n{"v": 1, '
        )
        answer = _read_all(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"not received within" in answer
    assert daemon.store.markers() == []


def test_healthz_without_the_token_reveals_only_the_status(daemon: Daemon) -> None:
    daemon.health.down("probe:wt300:/dev/ttyUSB7", "cannot open: no such device")
    with ApiThread(make_app(daemon, TOKEN, LIMITS), "127.0.0.1", 0) as thread:
        anonymous = Api(thread.url).call("GET", "/healthz")
        wrong = Api(thread.url, "wrong-token-0123456789xyz").call("GET", "/healthz")
        allowed = Api(thread.url, TOKEN).call("GET", "/healthz")
    assert anonymous.status == wrong.status == allowed.status == 200
    assert anonymous.json() == wrong.json() == {"status": "degraded"}
    assert b"ttyUSB7" not in anonymous.body
    details = allowed.json()
    assert details["status"] == "degraded"
    assert details["down"] == {"probe:wt300:/dev/ttyUSB7": "cannot open: no such device"}
    assert "counts" in details and "offsets" in details
