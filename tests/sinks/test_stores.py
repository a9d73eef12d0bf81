"""``powerd run`` writing to a real VictoriaMetrics and scraped by a real Prometheus (Debian
packages, loopback ports): a known run reads back as its result JSON, and a VictoriaMetrics outage
(30 s, mid-run) loses no point and doubles none."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from powerd.metrics import PHASE_FIGURES, PHASE_FLAG
from tests.servers import (
    VictoriaMetrics,
    mosquitto,
    prometheus,
    victoria_metrics,
    wait_for,
)
from tests.sinks.helpers import PowerdRun, powerd_agent, powerd_run

S = 1_000_000_000
BUCKET_MS = 1000
# VictoriaMetrics keeps about 12 significant digits (its decimal compression); Prometheus float64
VM_REL = 1e-11
PROM_REL = 1e-12
AGENT_SQUARE = "sim:square,high=9,low=3,period=0.2,duty=0.5,id=sq,rate=200"


def config(vm: VictoriaMetrics, tmp: Path, extra: str = "") -> str:
    return f"""
[daemon]
state_dir = "{tmp / "state"}"
probes = ["sim:constant,w=5,id=dut"]
result_grace_s = 1.0
clock_interval_s = 0.2
{extra}
[sinks]
host = "testhost"
meta_labels = ["model", "batch"]
recent_runs = 5

[influx]
url = "{vm.url}"
org = "lab"
bucket = "powerd"
downsample_s = 1.0
flush_interval_s = 0.2
health_interval_s = 1.0
buffer_dir = "{tmp / "buffer"}"
"""


def phase_key(labels: dict[str, str]) -> tuple[str, str]:
    return labels["phase"], labels["trial"]


def by_phase(series: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    return {phase_key(s["metric"]): float(s["value"][1]) for s in series}


def check_figures(query: Any, result: dict[str, Any], rel: float) -> None:
    """Every primary figure of every phase, as the store returns it, equals the result JSON."""
    run = result["run"]
    for name, key in PHASE_FIGURES.items():
        got = by_phase(query(f'{name}{{run="{run}"}}'))
        want = {
            (p["phase"], str(p["trial"])): p[key] for p in result["phases"] if p[key] is not None
        }
        assert got.keys() == want.keys(), name
        for k, value in want.items():
            assert got[k] == pytest.approx(value, rel=rel), (name, k)


def wait_result(d: PowerdRun, run: str, phases: int) -> dict[str, Any]:
    def ready() -> Any:
        got = d.get(f"/v1/runs/{run}")
        return got if got is not None and len(got["phases"]) == phases else None

    return dict(wait_for(ready, 20, f"the result of {run}"))


def series_stamps(vm: VictoriaMetrics, match: str) -> dict[str, list[int]]:
    return {str(s["metric"]): list(s["timestamps"]) for s in vm.export(match)}


def test_victoriametrics_keeps_a_sample_written_twice(tmp_path: Path) -> None:
    """Why counting samples proves "none twice": without -dedup.minScrapeInterval (as in these
    tests) a repeated write is stored twice, it does not overwrite."""
    with victoria_metrics(tmp_path) as vm:
        client = InfluxDBClient(url=vm.url, token="", org="lab")
        write = client.write_api(write_options=SYNCHRONOUS)
        t = time.time_ns()
        for _ in range(2):
            write.write(bucket="b", record=f"dup_check,k=v x=1.0 {t}")
        client.close()  # type: ignore[no-untyped-call]
        got = wait_for(lambda: vm.export('{__name__="dup_check_x"}'), 10, "the samples")
        assert len(got[0]["timestamps"]) == 2


def test_a_known_run_reads_back_as_its_result_from_victoriametrics_and_prometheus(
    tmp_path: Path,
) -> None:
    with (
        victoria_metrics(tmp_path) as vm,
        mosquitto(tmp_path) as broker,
        powerd_run(tmp_path, config(vm, tmp_path, f"[mqtt]\nport = {broker.port}\n")) as d,
        powerd_agent(tmp_path, "edge-1", AGENT_SQUARE, broker.port),
        prometheus(tmp_path, [f"127.0.0.1:{d.port}"]) as prom,
    ):
        wait_for(
            lambda: {"sim:dut", "edge-1/sim:sq"} <= set(d.get("/v1/channels")["channels"]),
            20,
            "the daemon's and the agent's channels",
        )
        meta = {"model": "resnet50", "batch": 8, "secret": "s3"}
        seq = iter(range(1, 100))
        for trial in (0, 1):
            d.post_marker(
                {"run": "known", "phase": "infer", "event": "begin", "seq": next(seq),
                 "trial": trial, "t_ns": time.time_ns(), "meta": meta,
                 "device": ["local", "edge-1"]}
            )  # fmt: skip
            time.sleep(1.5)
            d.post_marker(
                {"run": "known", "phase": "infer", "event": "end", "seq": next(seq),
                 "trial": trial, "t_ns": time.time_ns(), "count": 300 + trial, "unit": "image"}
            )  # fmt: skip
        # receive-time markers: a phase with a quality flag
        d.post_marker({"run": "known", "phase": "cool", "event": "begin", "seq": next(seq),
                       "device": ["local", "edge-1"]})  # fmt: skip
        time.sleep(1.0)
        d.post_marker({"run": "known", "phase": "cool", "event": "end", "seq": next(seq)})
        result = wait_result(d, "known", 3)
        assert {(p["phase"], p["trial"]) for p in result["phases"]} == {
            ("infer", 0),
            ("infer", 1),
            ("cool", 0),
        }
        cool = next(p for p in result["phases"] if p["phase"] == "cool")
        assert "receive_time" in cool["flags"]
        for p in result["phases"]:
            assert set(p["channels"]) == {"sim:dut", "edge-1/sim:sq"}
            assert p["energy_j"] > 0

        # VictoriaMetrics: the figures, labels (allowed meta only), flags
        wait_for(
            lambda: len(vm.query('powerd_phase_energy_joules{run="known"}')) == 3,
            15,
            "the phase figures in VictoriaMetrics",
        )
        check_figures(vm.query, result, VM_REL)
        labels = [s["metric"] for s in vm.query('powerd_phase_energy_joules{phase="infer"}')]
        assert all(x["model"] == "resnet50" and x["batch"] == "8" for x in labels)
        assert all(x["unit"] == "image" and x["host"] == "testhost" for x in labels)
        assert not any("secret" in x for x in labels)
        flags = vm.query(f'{PHASE_FLAG}{{run="known",phase="cool"}}')
        assert {s["metric"]["flag"]: s["value"][1] for s in flags} == {
            f: "1" for f in cool["flags"]
        }

        # VictoriaMetrics: 1 s means and the energy counter, the daemon's and the agent's channel
        dut = vm.export('{__name__=~"powerd_(power_watts|energy_joules_total)",channel="sim:dut"}')
        series = {s["metric"]["__name__"]: s for s in dut}
        assert series["powerd_power_watts"]["metric"]["probe"] == "sim"
        assert "agent" not in series["powerd_power_watts"]["metric"]
        assert series["powerd_power_watts"]["values"][1:] == pytest.approx(
            [5.0] * (len(series["powerd_power_watts"]["values"]) - 1), rel=1e-9
        )
        energy = series["powerd_energy_joules_total"]
        steps = [b - a for a, b in itertools.pairwise(energy["values"][1:])]
        assert steps == pytest.approx([5.0] * len(steps), rel=1e-9)  # 5 W x each whole second
        assert all(t % BUCKET_MS == 0 for t in energy["timestamps"])
        sq = vm.export('{__name__="powerd_power_watts",agent="edge-1"}')
        assert sq[0]["metric"]["channel"] == "edge-1/sim:sq"
        assert sq[0]["values"][1:-1] == pytest.approx([6.0] * (len(sq[0]["values"]) - 2), rel=0.02)
        reads = vm.query('powerd_probe_reads_total{probe="sim:constant,w=5,id=dut"}')
        assert float(reads[0]["value"][1]) > 0

        # Prometheus scraping /metrics: the same figures, full float64
        wait_for(
            lambda: len(prom.query('powerd_phase_energy_joules{run="known"}')) == 3,
            30,
            "Prometheus to scrape the phase figures",
        )
        assert prom.query("up")[0]["value"][1] == "1"
        check_figures(prom.query, result, PROM_REL)
        flags = prom.query(f'{PHASE_FLAG}{{run="known",phase="cool"}}')
        assert {s["metric"]["flag"] for s in flags} == set(cool["flags"])
        # the energy counter as scraped: 5 J per s (scrape stamps vs sample times: a few %)
        window = 'powerd_energy_joules_total{channel="sim:dut"}[30s]'
        samples = wait_for(
            lambda: [s for s in prom.query(window) if len(s["values"]) >= 5],
            20,
            "five scrapes of the energy counter",
        )[0]["values"]
        (t0, e0), (t1, e1) = samples[0], samples[-1]
        assert (float(e1) - float(e0)) / (t1 - t0) == pytest.approx(5.0, rel=0.05)
        agent_energy = prom.query('powerd_energy_joules_total{agent="edge-1"}')
        assert agent_energy[0]["metric"]["channel"] == "edge-1/sim:sq"
        assert prom.query('powerd_probe_reads_total{host="testhost"}')


def test_a_victoriametrics_outage_loses_no_point_and_writes_none_twice(tmp_path: Path) -> None:
    outage_s = 30.0  # as the issue checks it: half a minute of store downtime mid-run
    with victoria_metrics(tmp_path) as vm, powerd_run(tmp_path, config(vm, tmp_path)) as d:
        wait_for(lambda: vm.export('{__name__="powerd_power_watts"}'), 15, "the first points")
        d.post_marker({"run": "gap", "phase": "load", "event": "begin", "seq": 1,
                       "t_ns": time.time_ns(), "meta": {"model": "m1"}})  # fmt: skip
        time.sleep(1.0)
        vm.stop()
        time.sleep(1.0)
        d.post_marker({"run": "gap", "phase": "load", "event": "end", "seq": 2,
                       "t_ns": time.time_ns(), "count": 40})  # fmt: skip
        result = wait_result(d, "gap", 1)  # computed while the store is down
        buffered = wait_for(
            lambda: d.metrics().get(("powerd_sink_buffer_bytes", (("sink", "influx"),))),
            10,
            "points buffered on disk",
        )
        assert buffered > 0
        time.sleep(outage_s - 2.0)
        vm.start()
        wait_for(
            lambda: d.metrics()[("powerd_sink_buffer_bytes", (("sink", "influx"),))] == 0,
            20,
            "the backlog to be replayed",
        )
        time.sleep(2.0)
        written = d.written_samples()  # stops the daemon, which writes its last points
        log = d.log.read_text()
        assert "unreachable" in log and "is back" in log

        # every sample the sink wrote is there exactly once ...
        def stored_count() -> int:
            return sum(len(t) for t in series_stamps(vm, '{__name__=~"powerd_.*"}').values())

        wait_for(lambda: stored_count() >= written, 10, f"{written} samples in VictoriaMetrics")
        stored = series_stamps(vm, '{__name__=~"powerd_.*"}')
        assert sum(len(t) for t in stored.values()) == written
        for name, stamps in stored.items():
            assert len(stamps) == len(set(stamps)), name
        # ... and the 1 s series have no hole across the outage
        for match in ('{__name__="powerd_power_watts"}', '{__name__="powerd_energy_joules_total"}'):
            [stamps] = series_stamps(vm, match).values()
            assert len(stamps) >= 8
            steps = {b - a for a, b in itertools.pairwise(stamps)}
            assert steps == {BUCKET_MS}, match
        check_figures(vm.query, result, VM_REL)
        [phase] = vm.query('powerd_phase_energy_joules{run="gap"}')
        assert phase["metric"]["model"] == "m1"
