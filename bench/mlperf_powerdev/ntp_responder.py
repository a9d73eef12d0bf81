"""A tiny NTP responder on 127.0.0.1:123 answering with the local clock.

Why: power-dev's server.py and client.py insist on querying an NTP server (UDP 123, port not
configurable) and refuse to run without an answer. When director and SUT are the same host, the
honest reference is the host's own clock: this responder answers every mode-3 query with the
local CLOCK_REALTIME, so the offset power-dev measures is ~0 and it never calls ntpdate.
Binding port 123 needs root (or CAP_NET_BIND_SERVICE). By-hand harness only, not part of powerd.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time

NTP_EPOCH_OFFSET_S = 2208988800  # seconds from 1900-01-01 to 1970-01-01
NTP_PACKET_LEN_B = 48


def to_ntp_ts(unix_s: float) -> tuple[int, int]:
    """Split a Unix time in seconds into NTP's (seconds, 2^-32 fraction) pair."""
    ntp_s = unix_s + NTP_EPOCH_OFFSET_S
    whole_s = int(ntp_s)
    frac = int((ntp_s - whole_s) * (1 << 32)) & 0xFFFFFFFF
    return whole_s & 0xFFFFFFFF, frac


def reply(query: bytes, recv_unix_s: float) -> bytes | None:
    """Build a stratum-1 server reply (mode 4) to a client query, or None for anything else."""
    if len(query) < NTP_PACKET_LEN_B:
        return None
    first = query[0]
    version = (first >> 3) & 0x7
    mode = first & 0x7
    if mode != 3:
        return None
    li_vn_mode = (0 << 6) | (version << 3) | 4
    originate = query[40:48]  # the client's transmit timestamp, echoed verbatim
    ref_s, ref_f = to_ntp_ts(recv_unix_s)
    rx_s, rx_f = to_ntp_ts(recv_unix_s)
    head = struct.pack(
        "!BBbbII4s",
        li_vn_mode,
        1,  # stratum 1: a primary reference (the local clock)
        4,  # poll interval exponent
        -20,  # precision ~1 us
        0,  # root delay
        0,  # root dispersion
        b"LOCL",
    )
    tx_s, tx_f = to_ntp_ts(time.time())
    return (
        head
        + struct.pack("!II", ref_s, ref_f)
        + originate
        + struct.pack("!IIII", rx_s, rx_f, tx_s, tx_f)
    )


def serve(host: str, port: int) -> None:
    """Answer NTP queries until killed; print one line per query so the run log shows them."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    print(f"ntp_responder: listening on {host}:{port}", flush=True)
    answered = 0
    while True:
        data, addr = sock.recvfrom(512)
        recv_unix_s = time.time()
        out = reply(data, recv_unix_s)
        if out is None:
            print(f"ntp_responder: ignored {len(data)} B from {addr}", flush=True)
            continue
        sock.sendto(out, addr)
        answered += 1
        print(f"ntp_responder: answered query {answered} from {addr[0]}:{addr[1]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse --host/--port and serve."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=123)
    args = ap.parse_args(argv)
    try:
        serve(args.host, args.port)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
