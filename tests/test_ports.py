"""The test servers' ports stay out of the range the kernel hands to client sockets."""

from __future__ import annotations

import socket

from tests.ports import _ephemeral_range, free_port


def test_ports_are_outside_the_ephemeral_range_and_never_repeat() -> None:
    low, high = _ephemeral_range()
    ports = [free_port() for _ in range(50)] + [free_port(socket.SOCK_DGRAM) for _ in range(5)]
    assert all(not low <= p <= high for p in ports)
    assert len(set(ports)) == len(ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))  # really free
