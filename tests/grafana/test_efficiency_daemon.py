"""The efficiency dashboard on what a real daemon writes: ``powerd run`` with ``[[efficiency]]``.

``powerd run`` with a ``sim`` probe of known power (the device ``local``) and an ``[[efficiency]]``
entry reading a serving-engine stand-in's vLLM counter (tests/powerd/engine.py: prometheus-client
on a loopback port, tokens at a known rate; its selector, with the model label, is the series'
``counter`` label). The daemon's ``[influx]`` sink writes to a real VictoriaMetrics; a real
Prometheus scrapes its ``/metrics``. Every panel query of the efficiency dashboard then runs on
both stores with every device, unit and counter selected (and with the one counter selected),
and must return exactly the daemon's series with the known power and rate: what the dashboard
reads is what powerd writes, names and labels included. The figures' accuracy against the
truth is powerd.efficiency's tests' business; the tolerances here only catch a wrong series.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.grafana.promql import ALL, label_values, query_range, substitute
from tests.grafana.test_queries import process
from tests.powerd.engine import MODEL, Engine
from tests.servers import free_port, prom_query, prometheus, victoria_metrics, wait_for, wait_port

ROOT = Path(__file__).resolve().parents[2]
BOARD: dict[str, Any] = json.loads(
    (ROOT / "grafana" / "dashboards" / "powerd-efficiency.json").read_text(encoding="utf-8")
)
BOARD_VARS = {v["name"]: v for v in BOARD["templating"]["list"]}
HOST = "efficiency-e2e-host"
DEVICE = "local"
WATTS = 50.0
RATE_TOK_S = 200.0
COUNTER = f'vllm:generation_tokens_total{{model_name="{MODEL}"}}'
WAIT_S = 60.0
INTERVALS = {"__interval": "10s", "__rate_interval": "4s", "__range": "10m"}
RANGE_S, STEP_S = 60.0, 2.0
# per figure: (expected, relative tolerance); the rate is counted in whole tokens per 1 s interval
TRUTH = {
    "power_watts": (WATTS, 1e-6),
    "units_per_second": (RATE_TOK_S, 0.1),
    "joules_per_unit": (WATTS / RATE_TOK_S, 0.1),
    "units_per_joule": (RATE_TOK_S / WATTS, 0.1),
}


@dataclass
class Stores:
    vm: str
    prom: str


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    tmp = tmp_path_factory.mktemp("grafana-efficiency-e2e")
    http_port = free_port()
    with ExitStack() as stack:
        engine = Engine(RATE_TOK_S)
        stack.callback(engine.stop)
        vm = stack.enter_context(victoria_metrics(tmp))
        prom = stack.enter_context(prometheus(tmp, [f"127.0.0.1:{http_port}"]))
        config = tmp / "powerd.toml"
        config.write_text(
            f'[daemon]\nstate_dir = "{tmp / "state"}"\nprobes = ["sim:constant,w={WATTS:g}"]\n'
            f"[http]\nport = {http_port}\n"
            f'[sinks]\nhost = "{HOST}"\n'
            f'[influx]\nurl = "{vm.url}"\ndownsample_s = 1.0\nflush_interval_s = 0.5\n'
            f'[[efficiency]]\ndevice = "{DEVICE}"\ninterval_s = 1.0\npoll_s = 0.25\n'
            f"counters = [{{source = 'prom:{engine.url}#{COUNTER}', unit = \"token\"}}]\n"
        )
        stack.enter_context(
            process([sys.executable, "-m", "powerd", "run", "--config", str(config)], tmp / "d.log")
        )
        wait_port(http_port, WAIT_S)
        for base in (vm.url, prom.url):
            for q in (
                f'count_over_time(powerd_efficiency_joules_per_unit{{device="{DEVICE}"}}[9s]) >= 3',
                f'count_over_time(powerd_efficiency_power_watts{{device="{DEVICE}"}}[10s]) >= 3',
            ):
                wait_for(partial(prom_query, base, q), WAIT_S, f"{q} in {base}")
        yield Stores(vm.url, prom.url)


def check(got: dict[str, Any], field: str, labels: dict[str, str], where: Any) -> None:
    """``got`` is the one series ``labels`` (the sink's ``host`` in VictoriaMetrics too) with the
    figure's known value."""
    if where[0] == "victoriametrics":
        labels = {**labels, "host": HOST}
    assert set(got) == {tuple(sorted(labels.items()))}, (where, sorted(got))
    value = next(iter(got.values()))
    expected, rel = TRUTH[field]
    assert math.isclose(value, expected, rel_tol=rel), (where, value, expected)


def labelled(labels: dict[str, str], store: str) -> tuple[tuple[str, str], ...]:
    if store == "victoriametrics":
        labels = {**labels, "host": HOST}
    return tuple(sorted(labels.items()))


def series(result: list[dict[str, Any]], instant: bool) -> dict[Any, float]:
    out = {}
    for s in result:
        labels = {k: v for k, v in s["metric"].items() if k != "__name__"}
        value = s["value"] if instant else s["values"][-1]
        out[tuple(sorted(labels.items()))] = float(value[1])
    return out


# (panel title, refId) -> the figure it shows and whether its rows are per counter
PANELS = {
    ("Units per joule", "A"): ("units_per_joule", True),
    ("Joules per unit", "A"): ("joules_per_unit", True),
    ("Power", "A"): ("power_watts", False),
    ("Units per second", "A"): ("units_per_second", True),
    ("Fleet ranked by units per joule", "A"): ("units_per_joule", True),
    ("Fleet ranking", "A"): ("units_per_joule", True),
    ("Fleet ranking", "B"): ("joules_per_unit", True),
    ("Fleet ranking", "D"): ("units_per_second", True),
    ("Fleet ranking", "E"): ("power_watts", True),
}


@pytest.mark.slow
@pytest.mark.parametrize("store", ["victoriametrics", "prometheus"])
@pytest.mark.parametrize("counter", ["all", "selected"])
def test_dashboard_reads_what_the_daemon_writes(stores: Stores, store: str, counter: str) -> None:
    base = stores.vm if store == "victoriametrics" else stores.prom
    values: dict[str, Any] = {"device": ALL, "unit": ALL, "counter": ALL, **INTERVALS}
    for name, expected in (("device", [DEVICE]), ("unit", ["token"]), ("counter", [COUNTER])):
        query = substitute(BOARD_VARS[name]["query"], values, BOARD_VARS)
        assert label_values(base, query) == expected, (store, name, query)
    if counter == "selected":
        values["counter"] = [COUNTER]
    per_counter = {"device": DEVICE, "counter": COUNTER, "unit": "token"}
    now = time.time()
    seen = set()
    for panel in BOARD["panels"]:
        for t in panel.get("targets", []):
            where = (store, panel["title"], t["refId"])
            v = {**values, "device": [DEVICE]} if panel.get("repeat") else values
            expr = substitute(t["expr"], v, BOARD_VARS)
            if t["instant"]:
                got = series(prom_query(base, expr, now), True)
            else:
                got = series(query_range(base, expr, now - RANGE_S, now, STEP_S), False)
            figure = PANELS.get((panel["title"], t["refId"]))
            if figure is not None:
                field, by_counter = figure
                check(got, field, per_counter if by_counter else {"device": DEVICE}, where)
            elif panel["title"] == "Fleet ranking" and t["refId"] == "C":  # ± U95 of J/unit
                assert set(got) == {labelled(per_counter, store)}, where
                assert 0 < next(iter(got.values())) < TRUTH["joules_per_unit"][0] / 2, got
            elif panel["title"] in ("Idle fraction", "Fleet ranking"):  # the engine never idles
                labels = per_counter if panel["title"] == "Fleet ranking" else {"device": DEVICE}
                assert set(got) == {labelled(labels, store)}, where
                assert next(iter(got.values())) == pytest.approx(0.0, abs=0.1), (where, got)
            else:  # the repeated J/unit panel: J/unit, and J/unit ∓ U95 around it
                assert panel.get("repeat") == "device", where
                assert set(got) == {labelled({"counter": COUNTER, "unit": "token"}, store)}, got
                jpu = next(iter(got.values()))
                assert math.isclose(jpu, WATTS / RATE_TOK_S, rel_tol=0.2), (where, jpu)
            seen.add((panel["title"], t["refId"]))
    expected_refs = {
        (p["title"], t["refId"]) for p in BOARD["panels"] for t in p.get("targets", [])
    }
    assert seen == expected_refs
