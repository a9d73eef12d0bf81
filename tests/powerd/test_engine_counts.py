"""``powerd run`` (a real subprocess, the sim source at a known 5 W) counting a serving engine's
work from its Prometheus counters (the stand-in in tests/powerd/engine.py, real HTTP on loopback):
J per token per phase and per interval against the analytic truth within the stated uncertainty,
a restart inside a phase, and an endpoint down: flagged, on /healthz, never a silent 0."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.powerd.engine import MODEL, TOKENS_PER_REQUEST, Engine
from tests.servers import victoria_metrics, wait_for
from tests.sinks.helpers import PowerdRun, powerd_run

RATE = 1500.0  # tokens/s
POWER_W = 5.0
S = 1_000_000_000


@pytest.fixture
def engine() -> Iterator[Engine]:
    e = Engine(RATE)
    yield e
    with contextlib.suppress(OSError):  # the test may have stopped it
        e.stop()


def gen_spec(e: Engine) -> str:
    return f'prom:{e.url}#vllm:generation_tokens_total{{model_name="{MODEL}"}}'


def req_spec(e: Engine) -> str:
    return f'prom:{e.url}#vllm:request_success_total{{model_name="{MODEL}"}}'


def tgi_spec(e: Engine) -> str:
    return f"prom:{e.url}#tgi_request_generated_tokens_sum"


def config(tmp: Path, e: Engine, vm_url: str | None = None) -> str:
    eff = f"""
[[efficiency]]
device = "local"
counters = [{{source = '{gen_spec(e)}', unit = "token"}},
            {{source = '{req_spec(e)}', unit = "request"}}]
interval_s = 1.0
poll_s = 0.25
"""
    return f"""
[daemon]
state_dir = "{tmp / "state"}"
probes = ["sim:constant,w={POWER_W},id=dut"]
result_grace_s = 1.0
count_from = ['{tgi_spec(e)}']
{eff}
{influx(tmp, vm_url) if vm_url else ""}
"""


def influx(tmp: Path, url: str) -> str:
    return f"""
[influx]
url = "{url}"
org = "lab"
bucket = "powerd"
flush_interval_s = 0.2
buffer_dir = "{tmp / "buffer"}"
"""


def mark(d: PowerdRun, run: str, phase: str, event: str, **extra: Any) -> int:
    t = time.time_ns()
    reply = d.post_marker({"run": run, "phase": phase, "event": event, "t_ns": t, **extra})
    assert reply.get("applied", True), reply
    return t


def result(d: PowerdRun, run: str, phases: int) -> dict[str, Any]:
    def ready() -> Any:
        got = d.get(f"/v1/runs/{run}")
        return got if got is not None and len(got["phases"]) == phases else None

    return dict(wait_for(ready, 30, f"the result of {run}"))


def within(value: float, truth: float, uncertainty: float) -> bool:
    """Within the uncertainty (and float rounding: the sim source's energy is exact)."""
    return abs(value - truth) <= uncertainty + 1e-9 * abs(truth)


def check_count(
    entry: dict[str, Any], count: dict[str, Any], truth_count: float, tight: bool = True
) -> None:
    """The count and J per unit against the truth within their stated 95 % uncertainty."""
    duration_s = (entry["t_end_ns"] - entry["t_begin_ns"]) / S
    truth_j = POWER_W * duration_s
    assert within(entry["energy_j"], truth_j, entry["uncertainty_j"]), entry
    assert count["count_uncertainty"] > 0
    assert within(count["count"], truth_count, count["count_uncertainty"]), (count, truth_count)
    assert within(count["j_per_unit"], truth_j / truth_count, count["j_per_unit_uncertainty"])
    assert within(count["units_per_j"], truth_count / truth_j, count["units_per_j_uncertainty"])
    if tight:  # the uncertainty is stated, not inflated: far below the figure itself here
        assert count["j_per_unit_uncertainty"] < 0.05 * count["j_per_unit"]


def test_j_per_token_per_phase_and_per_interval_match_the_truth(
    tmp_path: Path, engine: Engine
) -> None:
    with (
        victoria_metrics(tmp_path) as vm,
        powerd_run(tmp_path, config(tmp_path, engine, vm.url)) as d,
    ):
        time.sleep(1.0)  # the sim source runs
        tb = mark(d, "r1", "gen", "begin", count_from=[gen_spec(engine), req_spec(engine)])
        time.sleep(2.0)
        te = mark(d, "r1", "gen", "end")
        tb2 = mark(d, "r1", "tgi", "begin")  # [daemon] count_from applies
        time.sleep(1.5)
        te2 = mark(d, "r1", "tgi", "end")
        res = result(d, "r1", 2)
        gen, tgi = (next(p for p in res["phases"] if p["phase"] == n) for n in ("gen", "tgi"))

        tokens = engine.tokens(te) - engine.tokens(tb)
        assert [c["unit"] for c in gen["counts"]] == ["token", "request"]
        check_count(gen, gen["counts"][0], tokens)
        requests = engine.tokens(te) // TOKENS_PER_REQUEST - engine.tokens(tb) // TOKENS_PER_REQUEST
        assert within(gen["counts"][1]["count"], requests, gen["counts"][1]["count_uncertainty"])
        # no marker count: the first count is the headline
        assert gen["count"] == gen["counts"][0]["count"] and gen["unit"] == "token"
        assert gen["j_per_unit"] == gen["counts"][0]["j_per_unit"]
        assert gen["count_source"] == gen_spec(engine)
        assert not gen["flags"], gen["flags"]

        assert [c["metric"] for c in tgi["counts"]] == ["tgi_request_generated_tokens_sum"]
        check_count(tgi, tgi["counts"][0], engine.tokens(te2) - engine.tokens(tb2))

        # continuous efficiency, read off /metrics as Prometheus would
        m = d.metrics()

        def fig(name: str, unit: str | None = None) -> float:
            labels: tuple[tuple[str, str], ...] = (("device", "local"),)
            if unit is not None:
                counter = gen_spec(engine).split("#", 1)[1] if unit == "token" else None
                counter = counter or req_spec(engine).split("#", 1)[1]
                labels = (("counter", counter), ("device", "local"), ("unit", unit))
            return m[(name, labels)]

        j_tok = fig("powerd_efficiency_joules_per_unit", "token")
        u_tok = fig("powerd_efficiency_joules_per_unit_uncertainty", "token")
        assert within(j_tok, POWER_W / RATE, u_tok), (j_tok, u_tok)
        assert u_tok < 0.1 * j_tok
        assert fig("powerd_efficiency_units_per_second", "token") == pytest.approx(RATE, rel=0.05)
        assert fig("powerd_efficiency_units_per_joule", "token") == pytest.approx(
            RATE / POWER_W, rel=0.05
        )
        j_req = fig("powerd_efficiency_joules_per_unit", "request")
        assert j_req == pytest.approx(POWER_W * TOKENS_PER_REQUEST / RATE, rel=0.2)
        assert fig("powerd_efficiency_power_watts") == pytest.approx(POWER_W, rel=0.01)
        assert fig("powerd_efficiency_idle_fraction") == 0.0

        # the same figures reach VictoriaMetrics (InfluxDB line protocol, measurement
        # powerd_efficiency) under the same names
        def vm_series(name: str) -> list[dict[str, Any]]:
            return vm.query(f'{name}{{device="local",unit="token"}}')

        got = wait_for(lambda: vm_series("powerd_efficiency_joules_per_unit"), 20, "the VM series")
        assert got[0]["metric"]["counter"] == gen_spec(engine).split("#", 1)[1]
        vm_u = float(vm_series("powerd_efficiency_joules_per_unit_uncertainty")[0]["value"][1])
        assert within(float(got[0]["value"][1]), POWER_W / RATE, vm_u)
        for name in ("powerd_efficiency_units_per_second", "powerd_efficiency_units_per_joule"):
            assert vm_series(name), name
        power = vm.query('powerd_efficiency_power_watts{device="local"}')
        assert float(power[0]["value"][1]) == pytest.approx(POWER_W, rel=0.01)
        assert vm.query('powerd_efficiency_idle_fraction{device="local"}')

        # a paused engine: the idle fraction of a whole interval is 1, J/token absent
        engine.pause()
        time.sleep(2.5)
        m = d.metrics()
        assert fig("powerd_efficiency_idle_fraction") == pytest.approx(1.0)
        assert ("powerd_efficiency_joules_per_unit", ()) not in m
        assert not [k for k in m if k[0] == "powerd_efficiency_joules_per_unit"]


def test_a_restart_mid_phase_and_an_endpoint_down_are_flagged_never_zero(
    tmp_path: Path, engine: Engine
) -> None:
    with powerd_run(tmp_path, config(tmp_path, engine)) as d:
        time.sleep(1.0)
        tb = mark(d, "r2", "p", "begin", count_from=gen_spec(engine))
        before_begin = engine.tokens(tb)
        time.sleep(1.5)
        t_restart = time.time_ns()
        before_restart = engine.tokens(t_restart)
        engine.restart()
        time.sleep(1.5)
        te = mark(d, "r2", "p", "end")
        res = result(d, "r2", 1)
        entry = res["phases"][0]
        count = entry["counts"][0]
        assert "counter_reset" in count["flags"] and "counter_reset" in entry["flags"]
        assert count["resets"] == 1
        truth = before_restart - before_begin + engine.tokens(te)
        # what the restart hid (last poll before it to the restart) is in the uncertainty:
        # up to one poll interval of tokens, so not tight
        check_count(entry, count, truth, tight=False)
        assert count["count_uncertainty"] <= RATE * 1.5

        # the endpoint goes down inside a phase: no count (null, flagged), and /healthz says so
        mark(d, "r3", "p", "begin", count_from=gen_spec(engine))
        time.sleep(0.5)
        engine.stop()
        time.sleep(1.5)  # one efficiency interval passes without the counters
        mark(d, "r3", "p", "end")
        entry = result(d, "r3", 1)["phases"][0]
        count = entry["counts"][0]
        assert count["count"] is None and count["j_per_unit"] is None
        assert "count_unavailable" in count["flags"] and "count_unavailable" in entry["flags"]
        assert "unreachable" in count["error"]
        assert entry["count"] is None and entry["j_per_unit"] is None
        health = d.get("/healthz")
        assert health["status"] == "degraded"
        assert f"counter:{engine.url}" in health["down"]
        m = d.metrics()
        assert not [k for k in m if k[0].startswith("powerd_efficiency_joules_per_unit")]
        assert m[("powerd_problems_total", (("kind", "counter_unreachable"),))] >= 1
        assert m[("powerd_component_up", (("component", f"counter:{engine.url}"),))] == 0
