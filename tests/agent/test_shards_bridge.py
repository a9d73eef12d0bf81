"""Two shards joined by mosquitto's own bridge (issue 16 item 3), all on loopback.

Each rack has its broker, its agents (bench/fleet.py's simulated agents, the wire protocol) and
its own daemon; each rack broker bridges ``powerd/v1/results/#`` and ``powerd/v1/status/#`` out to
a central broker, as README "Running a fleet" shows. A client of the central broker alone must see
every result and every agent's status of both racks, and no samples (blocks stay in their rack),
while each daemon has only its own rack's agents.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from tests.servers import mosquitto, running_daemon, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import fleet

AGENTS_PER_RACK = 3


def bridge_conf(name: str, central_port: int) -> str:
    """The rack broker's bridge section, as in the README."""
    return (
        f"connection {name}-to-central\n"
        f"address 127.0.0.1:{central_port}\n"
        f"remote_clientid powerd-bridge-{name}\n"
        "cleansession false\n"
        "topic powerd/v1/results/# out 1\n"
        "topic powerd/v1/status/# out 1\n"
    )


class Central:
    """Everything that arrives at the central broker under powerd/v1/#."""

    def __init__(self, port: int) -> None:
        self.topics: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="central-reader")
        self.client.on_message = self.on_message
        self.client.on_connect = lambda c, *_: c.subscribe("powerd/v1/#", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.topics[msg.topic] = msg.payload

    def seen(self, kind: str) -> dict[str, bytes]:
        with self.lock:
            return {t: p for t, p in self.topics.items() if t.startswith(f"powerd/v1/{kind}/")}

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_two_racks_bridge_results_and_status_to_one_central_broker(tmp_path: Path) -> None:
    (tmp_path / "central").mkdir()
    with mosquitto(tmp_path / "central") as central_broker:
        central = Central(central_broker.port)
        try:
            tallies = {}
            for rack in ("rack1", "rack2"):
                (tmp_path / rack).mkdir()
            with (
                mosquitto(tmp_path / "rack1", bridge_conf("rack1", central_broker.port)) as b1,
                mosquitto(tmp_path / "rack2", bridge_conf("rack2", central_broker.port)) as b2,
                running_daemon(tmp_path / "rack1", b1) as d1,
                running_daemon(tmp_path / "rack2", b2) as d2,
            ):

                async def both() -> None:
                    runs = []
                    for rack, broker in (("rack1", b1), ("rack2", b2)):
                        tallies[rack] = fleet.Tally()
                        spec = fleet.FleetSpec(AGENTS_PER_RACK, broker.port, 2.0, 0.5, prefix=rack)
                        runs.append(fleet.run_fleet(spec, 4.0, 30.0, tallies[rack]))
                    await asyncio.gather(*runs)

                asyncio.run(both())
                for rack, daemon in (("rack1", d1), ("rack2", d2)):
                    tally = tallies[rack]
                    assert tally.blocks_unconfirmed == {} and tally.markers_unconfirmed == set()
                    assert {a.split("-")[0] for a in daemon.agents} == {rack}
                expected = {r for t in tallies.values() for r in t.results_s}
                assert expected and all(
                    r in tallies["rack1"].end_sent_s or r in tallies["rack2"].end_sent_s
                    for r in expected
                )
                wait_for(
                    lambda: {t.rsplit("/", 1)[1] for t in central.seen("results")} >= expected,
                    15,
                    "every rack's results at the central broker",
                )
                statuses = central.seen("status")
                assert len(statuses) == 2 * AGENTS_PER_RACK
                for topic, payload in statuses.items():
                    assert json.loads(payload)["agent"] == topic.rsplit("/", 1)[1]
                assert central.seen("blocks") == {}, "samples stay in their rack"
        finally:
            central.stop()
