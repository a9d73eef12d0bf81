"""Every query of the efficiency dashboard, run against real VictoriaMetrics and Prometheus.

The series are the daemon's continuous-efficiency figures (``[[efficiency]]``, names in
powerd/metrics.py), fed synthetically with known values for two devices: ``npu0`` serving a model
whose tokens and requests are counted, ``gpu0`` the same model's tokens. They go in the way each
store receives them from powerd:

- **VictoriaMetrics**: InfluxDB line protocol to ``/write``, measurement ``powerd_efficiency``,
  the figures as fields and ``device``, ``counter``, ``unit`` and ``host`` as tags (what the
  ``[influx]`` sink writes), which VictoriaMetrics names ``powerd_efficiency_<field>``. Three
  minutes of history, one point every 10 s (the default interval); all but the last 30 s with
  other values, so a panel showing a stale point fails.
- **Prometheus**: it scrapes a real ``/metrics`` endpoint (prometheus_client on a loopback port,
  its own registry) exposing the same gauges without ``host``, as powerd's exporter does; the
  gauges first hold the stale values, then the expected ones once Prometheus has scraped the
  stale ones.

Then, per store, the variable queries are resolved (``label_values``, as Grafana's Prometheus
datasource does), and every panel target runs with its variables substituted as Grafana would:
graphs as range queries (their latest values checked), the bar gauge and table as instant queries
(the bar gauge's order checked too). The panel repeated per device runs once per device. No
Grafana server can run here: what Grafana draws from these answers is not tested (the schema
checks in test_dashboards.py cover the JSON).
"""

from __future__ import annotations

import json
import math
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from powerd import metrics
from tests.grafana.promql import ALL, label_values, query_range, substitute
from tests.servers import free_port, prom_query, prometheus, victoria_metrics, wait_for

ROOT = Path(__file__).resolve().parents[2]
BOARD: dict[str, Any] = json.loads(
    (ROOT / "grafana" / "dashboards" / "powerd-efficiency.json").read_text(encoding="utf-8")
)
BOARD_VARS = {v["name"]: v for v in BOARD["templating"]["list"]}
# Counter labels are the engines' selectors (powerd.promcount): quotes, braces and `=` in them
# must survive Grafana's escaping of a selected value.
TOKENS = 'vllm:generation_tokens_total{model_name="llama-3-8b"}'
REQUESTS = 'vllm:request_success_total{model_name="llama-3-8b"}'
HOST = "efficiency-host"  # the sink tags every line with its host; the panels must not split on it
# device -> (power W, idle fraction, {(counter, unit): units per second})
FLEET: dict[str, tuple[float, float, dict[tuple[str, str], float]]] = {
    "npu0": (100.0, 0.1, {(TOKENS, "token"): 500.0, (REQUESTS, "request"): 2.0}),
    "gpu0": (300.0, 0.25, {(TOKENS, "token"): 900.0}),
}
REL_U = 0.02  # J/unit's 95 % uncertainty, relative
STALE = 3.0  # the stale history's figures are these times the expected ones
HISTORY_S, STEP_S, FRESH_S = 180, 10, 30
WAIT_S = 60.0
INTERVALS = {"__interval": "10s", "__rate_interval": "4s", "__range": "10m"}
RANGE_S, QUERY_STEP_S = 120.0, 5.0
REL = 1e-9

Series = dict[tuple[tuple[str, str], ...], float]


def key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def figures(scale: float = 1.0) -> tuple[Series, Series]:
    """(per-device series, per-counter series): the fields of each line the sink would write."""
    per_device: Series = {}
    per_counter: Series = {}
    for device, (watts, idle, counters) in FLEET.items():
        per_device[key(device=device, field="power_watts")] = watts * scale
        per_device[key(device=device, field="idle_fraction")] = idle * scale
        for (counter, unit), ups in counters.items():
            jpu = watts * scale / ups
            labels = {"device": device, "counter": counter, "unit": unit}
            per_counter[key(**labels, field="units_per_second")] = ups
            per_counter[key(**labels, field="joules_per_unit")] = jpu
            per_counter[key(**labels, field="joules_per_unit_uncertainty")] = jpu * REL_U
            per_counter[key(**labels, field="units_per_joule")] = 1.0 / jpu
    return per_device, per_counter


# --- feeding the stores ------------------------------------------------------------------------


def _tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def line_protocol(t_ns: int, scale: float) -> list[str]:
    """The lines of one interval: one per device (power, idle), one per device and counter."""
    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for series in figures(scale):
        for k, v in series.items():
            labels = dict(k)
            field = labels.pop("field")
            groups.setdefault(key(**labels), []).append(f"{field}={v!r}")
    out = []
    for labels, fields in groups.items():
        tags = "".join(f",{k}={_tag(v)}" for k, v in (*labels, ("host", HOST)))
        out.append(f"powerd_efficiency{tags} {','.join(fields)} {t_ns}")
    return out


def write_history(vm_url: str, now_s: float) -> None:
    lines = []
    for age_s in range(HISTORY_S, -1, -STEP_S):
        scale = 1.0 if age_s < FRESH_S else STALE
        lines += line_protocol(int((now_s - age_s) * 1e9), scale)
    req = urllib.request.Request(f"{vm_url}/write", "\n".join(lines).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as reply:
        assert reply.status == 204, reply.status


class Exposition:
    """The efficiency gauges on a real ``/metrics`` endpoint (its own registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.gauges: dict[str, Gauge] = {}
        for name in (metrics.EFFICIENCY_POWER_WATTS, metrics.EFFICIENCY_IDLE_FRACTION):
            self.gauges[name] = Gauge(name, name, ["device"], registry=self.registry)
        for name in (
            metrics.EFFICIENCY_UNITS_PER_SECOND,
            metrics.EFFICIENCY_JOULES_PER_UNIT,
            metrics.EFFICIENCY_JOULES_PER_UNIT_UNCERTAINTY,
            metrics.EFFICIENCY_UNITS_PER_JOULE,
        ):
            labels = ["device", "counter", "unit"]
            self.gauges[name] = Gauge(name, name, labels, registry=self.registry)

    def set(self, scale: float) -> None:
        for series in figures(scale):
            for k, v in series.items():
                labels = dict(k)
                name = f"powerd_efficiency_{labels.pop('field')}"
                self.gauges[name].labels(**labels).set(v)


@contextmanager
def exposition() -> Iterator[tuple[Exposition, int]]:
    expo, port = Exposition(), free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=expo.registry)
    try:
        yield expo, port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@dataclass
class Stores:
    vm: str
    prom: str


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    tmp = tmp_path_factory.mktemp("grafana-efficiency")
    upj = metrics.EFFICIENCY_UNITS_PER_JOULE
    probe = f'{upj}{{device="npu0", unit="token"}}'
    with ExitStack() as stack:
        vm = stack.enter_context(victoria_metrics(tmp))
        expo, port = stack.enter_context(exposition())
        expo.set(STALE)
        prom = stack.enter_context(prometheus(tmp, [f"127.0.0.1:{port}"]))
        write_history(vm.url, time.time())
        fresh = 1.0 / (FLEET["npu0"][0] / FLEET["npu0"][2][(TOKENS, "token")])

        def shows(base: str, value: float) -> bool:
            got = prom_query(base, probe)
            return bool(got) and math.isclose(float(got[0]["value"][1]), value, rel_tol=REL)

        wait_for(partial(shows, vm.url, fresh), WAIT_S, f"{probe} in VictoriaMetrics")
        wait_for(partial(shows, prom.url, fresh / STALE), WAIT_S, "the stale values scraped")
        expo.set(1.0)
        wait_for(partial(shows, prom.url, fresh), WAIT_S, f"{probe} in Prometheus")
        yield Stores(vm.url, prom.url)


# --- expectations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The units and counters selected in Grafana (None: All); every device."""

    units: tuple[str, ...] | None = None
    counters: tuple[str, ...] | None = None

    def variables(self) -> dict[str, Any]:
        unit = list(self.units) if self.units else ALL
        counter = list(self.counters) if self.counters else ALL
        return {"device": ALL, "unit": unit, "counter": counter, **INTERVALS}

    def keeps(self, labels: dict[str, str]) -> bool:
        return (self.units is None or labels["unit"] in self.units) and (
            self.counters is None or labels["counter"] in self.counters
        )


ALL_SELECTED = Selection()
SELECTIONS = {
    "all": ALL_SELECTED,
    "tokens": Selection(units=("token",)),
    "one-counter": Selection(counters=(REQUESTS,)),
    "two-counters": Selection(counters=(TOKENS, REQUESTS)),
}


def chosen(units: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Grafana's variables: every device and counter; the given units (default All)."""
    return Selection(units=units).variables()


def field_series(field: str, labels: tuple[str, ...], sel: Selection) -> Series:
    per_device, per_counter = figures()
    out: Series = {}
    for k, v in per_counter.items():
        d = dict(k)
        if d["field"] == field and sel.keeps(d):
            out[key(**{n: d[n] for n in labels})] = v
    for k, v in per_device.items():
        d = dict(k)
        if d["field"] == field:
            out[key(**{n: d[n] for n in labels})] = v
    return out


def per_row(field: str, sel: Selection) -> Series:
    """A per-device figure on every (device, counter, unit) row of the ranking."""
    rows = field_series("units_per_joule", ("device", "counter", "unit"), sel)
    device_figure = {
        dict(k)["device"]: v for k, v in field_series(field, ("device",), ALL_SELECTED).items()
    }
    return {k: device_figure[dict(k)["device"]] for k in rows}


def expectations(units: Selection) -> dict[tuple[str, str], Series]:
    """(panel title, refId) -> the expected series (all devices)."""
    counter_labels = ("device", "counter", "unit")
    return {
        ("Units per joule", "A"): field_series("units_per_joule", counter_labels, units),
        ("Joules per unit", "A"): field_series("joules_per_unit", counter_labels, units),
        ("Power", "A"): field_series("power_watts", ("device",), ALL_SELECTED),
        ("Units per second", "A"): field_series("units_per_second", counter_labels, units),
        ("Idle fraction", "A"): field_series("idle_fraction", ("device",), ALL_SELECTED),
        ("Fleet ranked by units per joule", "A"): field_series(
            "units_per_joule", counter_labels, units
        ),
        ("Fleet ranking", "A"): field_series("units_per_joule", counter_labels, units),
        ("Fleet ranking", "B"): field_series("joules_per_unit", counter_labels, units),
        ("Fleet ranking", "C"): field_series("joules_per_unit_uncertainty", counter_labels, units),
        ("Fleet ranking", "D"): field_series("units_per_second", counter_labels, units),
        ("Fleet ranking", "E"): per_row("power_watts", units),
        ("Fleet ranking", "F"): per_row("idle_fraction", units),
    }


def band(device: str, units: Selection) -> dict[str, Series]:
    """The repeated J/unit panel of ``device``: refId -> series by (counter, unit)."""
    jpu = field_series("joules_per_unit", ("device", "counter", "unit"), units)
    mine = {key(counter=dict(k)["counter"], unit=dict(k)["unit"]): v
            for k, v in jpu.items() if dict(k)["device"] == device}  # fmt: skip
    return {
        "A": mine,
        "B": {k: v * (1 - REL_U) for k, v in mine.items()},
        "C": {k: v * (1 + REL_U) for k, v in mine.items()},
    }


def run_target(base: str, t: dict[str, Any], values: dict[str, Any], now: float) -> Any:
    expr = substitute(t["expr"], values, BOARD_VARS)
    if t["instant"]:
        return expr, prom_query(base, expr, now)
    return expr, query_range(base, expr, now - RANGE_S, now, QUERY_STEP_S)


def as_series(result: list[dict[str, Any]], instant: bool) -> Series:
    out: Series = {}
    for s in result:
        labels = {k: v for k, v in s["metric"].items() if k != "__name__"}
        value = s["value"] if instant else s["values"][-1]
        out[key(**labels)] = float(value[1])
    return out


def with_host(expected: Series, store: str) -> Series:
    """The sink's lines carry ``host`` (kept by the panels: devices of several daemons may share
    a name); the exporter's gauges, scraped by Prometheus, do not."""
    if store != "victoriametrics":
        return expected
    return {key(**dict(k), host=HOST): v for k, v in expected.items()}


def assert_series(got: Series, expected: Series, where: Any) -> None:
    assert set(got) == set(expected), f"{where}: series {sorted(got)} != {sorted(expected)}"
    for k, v in expected.items():
        assert math.isclose(got[k], v, rel_tol=REL), (where, k, got[k], v)


# --- the tests ---------------------------------------------------------------------------------

STORES = ["victoriametrics", "prometheus"]


def base_of(stores: Stores, store: str) -> str:
    return stores.vm if store == "victoriametrics" else stores.prom


@pytest.mark.slow
@pytest.mark.parametrize("store", STORES)
def test_variable_queries_list_devices_units_and_counters(stores: Stores, store: str) -> None:
    base = base_of(stores, store)

    def resolve(name: str, values: dict[str, Any]) -> list[str]:
        return label_values(base, substitute(BOARD_VARS[name]["query"], values, BOARD_VARS))

    assert resolve("device", chosen()) == ["gpu0", "npu0"]
    assert resolve("unit", chosen()) == ["request", "token"]
    assert resolve("unit", {**chosen(), "device": ["gpu0"]}) == ["token"]
    assert resolve("counter", chosen()) == sorted([REQUESTS, TOKENS])
    assert resolve("counter", chosen(("token",))) == [TOKENS]


@pytest.mark.slow
@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("selection", list(SELECTIONS))
def test_every_panel_query_returns_the_known_figures(
    stores: Stores, store: str, selection: str
) -> None:
    base = base_of(stores, store)
    units = SELECTIONS[selection]
    checks = expectations(units)
    values = units.variables()
    now = time.time()
    seen: set[tuple[str, str]] = set()
    for panel in BOARD["panels"]:
        for t in panel.get("targets", []):
            where = (panel["title"], t["refId"])
            if panel.get("repeat") == "device":
                # Grafana repeats the panel once per selected device, each with that one value.
                for device in FLEET:
                    expr, result = run_target(base, t, {**values, "device": [device]}, now)
                    expected = with_host(band(device, units)[t["refId"]], store)
                    assert_series(as_series(result, t["instant"]), expected, (store, expr))
            else:
                expr, result = run_target(base, t, values, now)
                expected = with_host(checks[where], store)
                assert_series(as_series(result, t["instant"]), expected, (store, expr))
            seen.add(where)
    repeated = {(p["title"], t["refId"]) for p in BOARD["panels"] if p.get("repeat")
                for t in p["targets"]}  # fmt: skip
    assert seen == set(checks) | repeated, seen ^ (set(checks) | repeated)


@pytest.mark.slow
@pytest.mark.parametrize("store", STORES)
def test_fleet_ranking_is_most_efficient_first(stores: Stores, store: str) -> None:
    base = base_of(stores, store)
    panel = next(p for p in BOARD["panels"] if p["title"] == "Fleet ranked by units per joule")
    _, result = run_target(base, panel["targets"][0], chosen(), time.time())
    order = [(s["metric"]["device"], s["metric"]["counter"]) for s in result]
    assert order == [("npu0", TOKENS), ("gpu0", TOKENS), ("npu0", REQUESTS)]
