"""The /metrics collector over a Daemon and its sink hub, in process: contract names and labels,
energy counters from blocks, phase figures bounded to the recent runs, probe health."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from powerd.block import Block
from powerd.channel import Channel
from powerd.daemon import Daemon
from powerd.exporter import registry_for, render
from powerd.metrics import CHANNEL_LABELS, LabelConfig
from powerd.runner import ProbeHealth
from powerd.sinks.hub import SinkHub
from powerd.store import Store
from powerd.timeline import Timeline
from tests.servers import wait_for

S = 1_000_000_000


def phase(name: str, trial: int, energy: float, flags: list[str]) -> dict[str, object]:
    return {
        "phase": name,
        "trial": trial,
        "unit": "token",
        "energy_j": energy,
        "net_energy_j": None,
        "j_per_unit": energy / 10,
        "mean_power_w": energy / 2,
        "uncertainty_j": 0.01,
        "duration_s": 2.0,
        "flags": flags,
        "meta": {"model": "llama", "prompt": "unbounded text"},
    }


def test_the_exporter_follows_the_contract_and_stays_bounded(tmp_path: Path) -> None:
    with Store(tmp_path / "p.db") as store:
        daemon = Daemon(store, Timeline(), time.time_ns)
        ch = Channel("edge-2/nvml:0", "power", "telemetry", 0.01)
        daemon.timeline.add_channel(ch)
        health = ProbeHealth(reads=7, errors=1, problems=2)
        hub = SinkHub(daemon, LabelConfig("rack9", ("model",)), recent_runs=2)
        hub.attach(lambda: [("nvml", health)])
        hub.start()
        t = 10 * S + np.arange(201, dtype=np.int64) * (S // 100)  # 2 s at 100 Hz, 50 W
        block = Block(ch.id, t, np.full(t.size, 50.0))
        daemon.timeline.append(block)
        daemon.block_listeners[0](block)
        for run in ("r1", "r2", "r3"):
            hub.on_result({"run": run, "phases": [phase("decode", 0, 100.0, ["incomplete"])]})
        wait_for(lambda: len(hub.recent_results()) == 2 and hub.energy_totals_j(), 5, "the hub")
        text = render(registry_for(daemon)).decode()
        hub.stop()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    chan = dict.fromkeys(CHANNEL_LABELS, "")
    chan.update(channel=ch.id, agent="edge-2", probe="nvml", source_class="telemetry", host="rack9")
    key = tuple(sorted(chan.items()))
    assert samples[("powerd_power_watts", key)] == 50.0
    assert samples[("powerd_energy_joules_total", key)] == pytest.approx(100.0)
    runs = {dict(k)["run"] for n, k in samples if n == "powerd_phase_energy_joules"}
    assert runs == {"r2", "r3"}  # the last recent_runs only
    labels = dict(next(k for n, k in samples if n == "powerd_phase_joules_per_unit"))
    assert labels == {
        "run": labels["run"],
        "phase": "decode",
        "trial": "0",
        "unit": "token",
        "host": "rack9",
        "model": "llama",
    }
    assert not any(n == "powerd_phase_net_energy_joules" for n, _ in samples)  # None: absent
    flag = ("powerd_phase_flag", (("flag", "incomplete"), ("host", "rack9"), ("phase", "decode"),
                                  ("run", "r3"), ("trial", "0")))  # fmt: skip
    assert samples[flag] == 1.0
    probe = (("host", "rack9"), ("probe", "nvml"))
    assert samples[("powerd_probe_reads_total", probe)] == 7
    assert samples[("powerd_probe_errors_total", probe)] == 1
    assert samples[("powerd_probe_problems_total", probe)] == 2
    assert "prompt" not in text and "unbounded" not in text
