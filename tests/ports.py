"""Loopback ports for test servers, chosen outside the kernel's ephemeral range.

A port from ``bind(0)`` is an ephemeral port. When a server on it is stopped and a client keeps
reconnecting (the daemon to a killed broker), Linux may give the client's own socket that very
port as its source: a TCP simultaneous open connects the client to itself, it reads back its own
CONNECT ("Unrecognised command 16"), and the restarted server cannot bind its port. Ports below
(or above) the ephemeral range are never handed to a client socket, so that cannot happen.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000
_given: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(x) for x in _RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def _candidates() -> range:
    low, high = _ephemeral_range()
    if low - _LOWEST >= 1000:
        return range(_LOWEST, low)
    return range(high + 1, 65536)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nothing is bound to now, outside the ephemeral range, not handed out before
    in this test session (two fixtures of one test never get the same port)."""
    candidates = _candidates()
    rng = random.Random()
    for _ in range(1000):
        port = rng.choice(candidates)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {candidates.start}..{candidates.stop - 1}")
