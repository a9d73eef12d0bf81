"""Per-packet cost of receiving one agent blocks message in paho, MQTT 3.1.1 against v5 (issue 16).

At 1 000 agents the daemon's event-loop thread spends 18.5 % of its time in paho's PUBLISH
handling (BENCHMARKS.md §12): under MQTT v5 every incoming PUBLISH gets a ``Properties`` object
built and parsed (``paho.mqtt._packet.decode_publish``), and its debug log line formats it. This
times, for each protocol, what paho does per received QoS 1 PUBLISH in the daemon's setting
(manual acks): ``Client._handle_publish`` (decode, ``MQTTMessage``, the on_message callback,
here a no-op) and the ``ack`` that follows once the message is committed (its PUBACK is queued
on a socketpair, as on a connection). The packet is a real agent blocks message (8 channels x 5
samples, ``powerd.agent.wire``) under its real topic, as mosquitto forwards it (v5: an empty
property list). CPU time of this process, best of several repeats.

    .venv/bin/python bench/mqtt_decode.py [--packets 20000]
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from powerd.agent import wire  # noqa: E402

PROTOCOLS = {"3.1.1": mqtt.MQTTv311, "5": mqtt.MQTTv5}


def blocks_payload() -> bytes:
    t = 1_800_000_000_000_000_000 + np.arange(5, dtype=np.int64) * 100_000_000
    parts = [wire.encode_block(1, i + 1, f"sim:c{i}", t, np.full(5, 100.0 + i)) for i in range(8)]
    return b"".join(parts)


def publish_body(topic: bytes, mid: int, payload: bytes, v5: bool) -> bytes:
    """A PUBLISH packet after its fixed header: topic, packet id, (v5) properties, payload."""
    props = b"\x00" if v5 else b""
    return struct.pack("!H", len(topic)) + topic + struct.pack("!H", mid) + props + payload


def per_packet_us(protocol: int, packets: int, repeats: int) -> float:
    """Best CPU µs per packet of receive + manual ack through paho's own code paths."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench", protocol=protocol)
    client.manual_ack_set(True)
    received = [0]

    def on_message(_c: Any, _u: Any, _m: mqtt.MQTTMessage) -> None:
        received[0] += 1

    client.on_message = on_message
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours  # PUBACKs are written here; the other end is drained
    theirs.setblocking(False)
    topic = wire.blocks_topic("fleet-0001").encode()
    body = publish_body(topic, 1, blocks_payload(), protocol == mqtt.MQTTv5)
    header = 0x30 | (1 << 1)  # PUBLISH, QoS 1
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        for i in range(packets):
            client._in_packet = {"command": header, "packet": body}
            client._handle_publish()
            client.ack(1, 1)
            if i % 256 == 255:
                try:
                    while theirs.recv(1 << 16):
                        pass
                except BlockingIOError:
                    pass
        best = min(best, (time.process_time() - t0) / packets * 1e6)
    ours.close()
    theirs.close()
    assert received[0] == packets * repeats, "every packet must reach on_message"
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--packets", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mqtt_decode.json")
    args = p.parse_args()
    rows = {n: per_packet_us(proto, args.packets, args.repeats) for n, proto in PROTOCOLS.items()}
    print("| MQTT | µs CPU per received blocks PUBLISH (decode + on_message + PUBACK) |")
    print("|---|---|")
    for name, us in rows.items():
        print(f"| {name} | {us:.1f} |")
    print(f"v5 / 3.1.1: {rows['5'] / rows['3.1.1']:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "mqtt_decode", "us_per_packet": rows}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
