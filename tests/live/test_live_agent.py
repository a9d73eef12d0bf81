"""The live stream with a real agent (issue 17): Debian's mosquitto, the daemon core with its MQTT
link, ``powerd-agent`` in a subprocess under libfaketime 3 s off. Its channel's columns and its
clock offset (what the page's health table shows) arrive on ``/v1/live``; bounded waits only."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from powerd.api import ApiThread, make_app
from tests.agent.test_mqtt_e2e import running_agent
from tests.servers import mosquitto, running_daemon

AGENT = "live-agent-1"
WAIT_S = 30.0


def test_agent_channel_and_clock_offset_reach_the_live_stream(tmp_path: Path) -> None:
    with (
        mosquitto(tmp_path) as broker,
        running_daemon(tmp_path, broker) as daemon,
        running_agent(tmp_path, broker, AGENT, fake_offset_s=3.0),
        ApiThread(make_app(daemon, None)) as api,
    ):
        url = f"{api.url}/v1/live?width=100&range_s=10&interval_s=0.1"
        columns: dict[str, Any] = {}
        offsets: dict[str, Any] = {}
        seen_max: set[float] = set()  # over every frame: one frame may hold only the low half

        def done() -> bool:
            return bool(columns and offsets and 9.0 in seen_max)

        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and not done():
            # the agent's channel may appear after the stream started: read again until it does
            with urllib.request.urlopen(url, timeout=10) as resp:
                event, stop_at = "", time.monotonic() + 3
                for raw in resp:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                        if event == "columns":
                            mine = {
                                c: v for c, v in data["channels"].items() if c.startswith(AGENT)
                            }
                            columns |= mine
                            for v in mine.values():
                                seen_max.update(x for x in v["max"] if x is not None)
                        elif event == "health" and AGENT in data["offsets"]:
                            offsets = data["offsets"][AGENT]
                    if done() or time.monotonic() > stop_at:
                        break
        assert columns, "no column of the agent's channel arrived"
        assert len(columns) == 1
        assert seen_max <= {9.0, 3.0} and 9.0 in seen_max  # the square wave, high and low
        # faketime puts the agent 3 s ahead: the offset (added to its clock to get the daemon's)
        # is about -3 s, with its uncertainty
        assert abs(offsets["offset_ns"] / 1e9 + 3.0) < 0.5
        assert offsets["uncertainty_ns"] > 0
