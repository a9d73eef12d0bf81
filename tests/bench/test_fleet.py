"""A small fleet through real mosquitto to the daemon: nothing lost (issue 16).

bench/fleet.py's load generator (the agent wire protocol, one MQTT connection per simulated agent)
drives 20 agents at 8 channels x 10 Hz, each with phases, against the daemon core with its MQTT
link and housekeeping (tests/servers.py). Every block and marker must be confirmed end to end,
every phase must get its result, and the store must hold exactly the samples sent. No timing is
asserted: the waits are bounded, the figures are bench/fleet.py's.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.servers import mosquitto, running_daemon, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import fleet

AGENTS = 20


def test_twenty_agents_lose_nothing(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as broker, running_daemon(tmp_path, broker) as daemon:
        tally = fleet.Tally()
        spec = fleet.FleetSpec(AGENTS, broker.port, phase_every_s=2.0, phase_s=0.6, prefix="t")
        asyncio.run(fleet.run_fleet(spec, duration_s=5.0, drain_s=30.0, tally=tally))
        assert tally.connect_errors == 0
        assert tally.blocks_sent > AGENTS * fleet.CHANNELS
        assert tally.blocks_unconfirmed == {}, "blocks the daemon never confirmed"
        assert tally.markers_sent >= 2 * AGENTS
        assert tally.markers_unconfirmed == set(), "markers the daemon never confirmed"
        missing = set(tally.end_sent_s) - set(tally.results_s)
        assert tally.end_sent_s and not missing, f"phases without a result: {sorted(missing)}"
        daemon.store.flush()
        wait_for(
            lambda: daemon.store.sample_count() == tally.samples_sent,
            10,
            f"{tally.samples_sent} samples in the store",
        )
        agents = {a for a in daemon.agents if a.startswith("t-")}
        assert len(agents) == AGENTS
