"""An agent's probe that is down shows on the daemon's /healthz (through the agent's status) and
its outage, once over, is flagged ``probe_down`` with its exact extent (through the gaps topic)."""

from __future__ import annotations

import json
from pathlib import Path

from powerd.agent import wire
from powerd.agent.agent import Agent, AgentConfig
from powerd.agent.mqttconf import MqttSettings
from powerd.probes.serialsim import PtySimulator
from powerd.probes.wt300.sim import make
from tests.fault.test_ingest_bounds import NOW_NS, FakeClock, channels, make_daemon, sync
from tests.probes.wt300.helpers import WF, wait_for

SPEC = "rate=0.1,vrange=15,irange=5"
POWER = "wt300:wt310:p1"


def test_an_agent_reports_its_probe_down_and_the_outage_after_it_comes_back(
    tmp_path: Path,
) -> None:
    link = tmp_path / "wt310"
    spec = f"wt300:{link},{SPEC}"
    cfg = AgentConfig("edge-7", ("sim:constant,w=2", spec), MqttSettings(), tmp_path / "spool")
    agent = Agent(cfg)
    agent.sampler.retry_first_s = agent.sampler.retry_max_s = 0.05
    agent.sampler.start()
    sim = PtySimulator(make("wt310", WF, {"rate": "0.1"}), link)
    try:
        down = json.loads(agent.status("online"))["probes_down"]
        assert "cannot open" in down[f"probe:{spec}"]
        sim.start()
        wait_for(lambda: not json.loads(agent.status("online"))["probes_down"])
        health = dict(agent.sampler.probe_health())
        wait_for(lambda: health[spec].samples >= 3)
        sim.unplug()
        wait_for(lambda: json.loads(agent.status("online"))["probes_down"])
        sim.replug()
        wait_for(lambda: not json.loads(agent.status("online"))["probes_down"])
        wait_for(lambda: health[spec].samples >= 8)
    finally:
        agent.sampler.stop()
        sim.stop()
    gaps = [
        g
        for m in agent.spool.peek(10_000)
        if m.topic == "powerd/v1/gaps/edge-7"
        for g in wire.decode_gaps(m.payload)
    ]
    agent.spool.close()
    outages = [g for g in gaps if g.channel == POWER and g.reason == "probe_down"]
    assert outages and all(g.t_first_ns < g.t_last_ns for g in outages)


def test_the_daemon_shows_an_agent_probe_down_and_records_its_gap(tmp_path: Path) -> None:
    clock = FakeClock()
    d = make_daemon(tmp_path, clock)
    spec = "probe:wt300:/dev/ttyUSB0"
    down = wire.status("edge", "online", NOW_NS, "test", probes_down={spec: "cannot open"})
    assert d.accept_status("edge", down)
    d.accept_channels("edge", channels("edge"))
    assert d.health.snapshot()["down"] == {f"agent:edge:{spec}": "cannot open"}
    sync(d, "edge", clock)
    gap = wire.DroppedBlock("sim:c", 0, NOW_NS - 5_000, NOW_NS - 1_000, 0, "probe_down")
    assert d.accept_gaps("edge", wire.encode_gaps([gap]))
    (recorded,) = d.store.gaps("edge/sim:c", NOW_NS - 10_000, NOW_NS)
    assert recorded[2] == "probe_down" and recorded[1] - recorded[0] == 4_000
    assert d.accept_status("edge", wire.status("edge", "online", NOW_NS, "test", probes_down={}))
    assert not d.health.degraded
    bad = {"v": 1, "gaps": [{**gap.to_json(), "reason": "anything"}]}
    assert not d.accept_gaps("edge", json.dumps(bad).encode())
