"""The TCP side: 127.0.0.1:PORT, one connection at a time, CRLF lines, until told to stop.

Sockets poll with a short timeout so a SIGTERM/SIGINT (which only sets ``stop``) ends the loop
within a fraction of a second; the listening socket is closed on the way out, so the port is free
when the process exits (power-dev checks it before the next launch).
"""

from __future__ import annotations

import socket
import threading

from powerd.ptd.protocol import Face
from powerd.ptd.stamp import StampedOut

POLL_S = 0.2
MAX_LINE = 4096


def listen(port: int) -> socket.socket:
    """The listening socket on 127.0.0.1:port (SO_REUSEADDR, so a restart finds it free)."""
    srv = socket.create_server(("127.0.0.1", port), backlog=1)
    srv.settimeout(POLL_S)
    return srv


def serve(srv: socket.socket, face: Face, out: StampedOut, stop: threading.Event) -> None:
    """Accept connections one after another until ``stop`` is set."""
    while not stop.is_set():
        try:
            conn, peer = srv.accept()
        except TimeoutError:
            continue
        out.line(f"Connection from {peer[0]}:{peer[1]}")
        with conn:
            conn.settimeout(POLL_S)
            _session(conn, face, out, stop)
        out.line("Connection closed")


def _session(conn: socket.socket, face: Face, out: StampedOut, stop: threading.Event) -> None:
    buf = b""
    while not stop.is_set():
        try:
            data = conn.recv(4096)
        except TimeoutError:
            continue
        except OSError as err:
            out.line(f"connection lost: {err}")
            return
        if not data:
            return
        buf += data
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if not line.strip():
                continue
            reply = face.handle(line)
            try:
                conn.sendall(("\r\n".join(reply) + "\r\n").encode("utf-8"))
            except OSError as err:
                out.line(f"connection lost while replying: {err}")
                return
            face.after_reply()
        if len(buf) > MAX_LINE:
            out.line(f"a command longer than {MAX_LINE} bytes: connection dropped")
            return
