"""Every panel query of both dashboards, run against a real VictoriaMetrics and a real Prometheus.

A known run goes in the way it would in a fleet: ``powerd run`` with a ``sim`` probe of its own
(5 W) and an edge agent's ``sim`` probe (7 W) over MQTT (mosquitto), markers posted to its HTTP
API (phase ``infer``, 300 inferences, model ``resnet50``, a known idle power of 10 W for the net
energy; no ``t_ns``, so the phase is flagged ``receive_time``). One phase, computed once: a
recomputed phase is written again at the same timestamp, and VictoriaMetrics (without
deduplication) then holds both values (see the README's notes). The daemon's ``[influx]`` sink
writes to VictoriaMetrics; Prometheus scrapes ``/metrics``; VictoriaMetrics also scrapes
``/metrics`` for the exporter-only clock offsets (and only those, so no series arrives twice), as
the README's fleet setup does.

Then, for each store, every template variable query is resolved (``label_values``) and every panel
target is run with its variables substituted as Grafana would: a graph's as a range query over
the last two minutes (its latest values checked), a table's or stat's as an instant query. The
expected values come from the run's result JSON (``GET /v1/runs/RUN``) and the known power.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.agent.agentproc import agent_argv
from tests.grafana.promql import ALL, label_values, query_range, substitute
from tests.servers import (
    free_port,
    mosquitto,
    prom_query,
    prometheus,
    victoria_metrics,
    wait_for,
    wait_port,
)

ROOT = Path(__file__).resolve().parents[2]
# The dashboards a `powerd run` fills; the efficiency dashboard's queries are run by
# test_efficiency_queries.py (its series come from `[[efficiency]]` entries, not from a run).
BOARDS = {
    p.stem: json.loads(p.read_text(encoding="utf-8"))
    for p in sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
    if p.stem != "powerd-efficiency"
}
HOST = "grafana-e2e-host"
AGENT = "edge1"
RUN = "grafana-e2e"
MODEL = "resnet50"
COUNT = 300
DAEMON_W, AGENT_W = 5.0, 7.0
DAEMON_PROBE = f"sim:constant,w={DAEMON_W:g}"
AGENT_PROBE = f"sim:constant,w={AGENT_W:g}"
IDLE_W, INFER_S = 10.0, 3.0
WAIT_S = 60.0
STOP_TIMEOUT_S = 15.0
# What Grafana would put in for its interval variables at a short time range; the test stores
# scrape and write every second.
INTERVALS = {"__interval": "10s", "__rate_interval": "4s", "__range": "10m"}
RANGE_S, STEP_S = 120.0, 5.0  # the graphs' range queries: the last two minutes
REL = 1e-9  # phase figures travel as float64 text: they must come back exact (to rounding)


@dataclass
class Stores:
    vm: str
    prom: str
    daemon: str
    result: dict[str, Any]
    channels: list[str]  # the daemon's own channel id, then the agent's


def _http(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")
    except OSError:
        return 0, None


@contextmanager
def process(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


def _mark(daemon: str, seq: int, phase: str, event: str, **extra: Any) -> None:
    body = {"v": 1, "run": RUN, "phase": phase, "event": event, "seq": seq, **extra}
    status, reply = _http(f"{daemon}/v1/markers?source=grafana-test", body)
    assert status == 202, (status, reply)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    tmp = tmp_path_factory.mktemp("grafana-e2e")
    http_port = free_port()
    scrape = tmp / "vm-scrape.yml"
    scrape.write_text(
        "scrape_configs:\n"
        "  - job_name: powerd-exporter-only\n"
        "    scrape_interval: 1s\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{http_port}']\n"
        "    metric_relabel_configs:\n"
        "      - source_labels: [__name__]\n"
        "        regex: 'powerd_agent_clock_.*'\n"
        "        action: keep\n"
    )
    with ExitStack() as stack:
        broker = stack.enter_context(mosquitto(tmp))
        vm = stack.enter_context(
            victoria_metrics(tmp, f"-promscrape.config={scrape}", "-promscrape.config.strictParse")
        )
        prom = stack.enter_context(prometheus(tmp, [f"127.0.0.1:{http_port}"]))
        config = tmp / "powerd.toml"
        config.write_text(
            f'[daemon]\nstate_dir = "{tmp / "state"}"\nprobes = ["{DAEMON_PROBE}"]\n'
            f"idle_power_w = {IDLE_W}\nresult_grace_s = 0.5\nclock_interval_s = 0.5\n"
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
            f"[http]\nport = {http_port}\n"
            f'[sinks]\nhost = "{HOST}"\nmeta_labels = ["model"]\n'
            f'[influx]\nurl = "{vm.url}"\ndownsample_s = 1.0\nflush_interval_s = 0.5\n'
            "health_interval_s = 1.0\n"
        )
        stack.enter_context(
            process([sys.executable, "-m", "powerd", "run", "--config", str(config)], tmp / "d.log")
        )
        wait_port(http_port, WAIT_S)
        daemon = f"http://127.0.0.1:{http_port}"
        stack.enter_context(
            process(
                agent_argv(AGENT, AGENT_PROBE, broker.port, tmp / "spool", None),
                tmp / "agent.log",
            )
        )  # fmt: skip

        def channels() -> dict[str, Any]:
            status, reply = _http(f"{daemon}/v1/channels")
            return reply["channels"] if status == 200 else {}

        wait_for(lambda: len(channels()) == 2, WAIT_S, "the daemon's and the agent's channel")
        ids = sorted(channels(), key=lambda c: c.startswith(f"{AGENT}/"))
        assert ids[1].startswith(f"{AGENT}/") and "/" not in ids[0], ids
        _mark(daemon, 0, "infer", "begin", meta={"model": MODEL})
        time.sleep(INFER_S)
        _mark(daemon, 1, "infer", "end", count=COUNT)

        def result() -> dict[str, Any] | None:
            status, reply = _http(f"{daemon}/v1/runs/{RUN}")
            return reply if status == 200 and reply["phases"] else None

        res = wait_for(result, WAIT_S, "the run's result")
        assert [p["phase"] for p in res["phases"]] == ["infer"]
        assert res["phases"][0]["net_energy_j"] is not None

        # Both stores have the run and enough history for rate() and increase() windows.
        for base in (vm.url, prom.url):
            for q in (
                f'powerd_phase_joules_per_unit{{run="{RUN}"}}',
                f'powerd_agent_clock_offset_seconds{{agent="{AGENT}"}}',
                # 13 of the last 15 s (one sample a second): the 10 s windows are covered.
                f'count_over_time(powerd_energy_joules_total{{host="{HOST}"}}[15s]) >= 13',
                f'count_over_time(powerd_probe_reads_total{{host="{HOST}"}}[10s]) >= 3',
            ):
                wait_for(partial(prom_query, base, q), WAIT_S, f"{q} in {base}")
        yield Stores(vm.url, prom.url, daemon, res, ids)


# --- expected values ---------------------------------------------------------------------------


def _phase(res: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in res["phases"] if p["phase"] == name)


Series = dict[tuple[tuple[str, str], ...], float]
Check = Callable[[Series], None]


def key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if v != ""))


def exactly(expected: Series, rel: float = REL) -> Check:
    def check(got: Series) -> None:
        assert set(got) == set(expected), f"series {sorted(got)} != {sorted(expected)}"
        for k, v in expected.items():
            assert math.isclose(got[k], v, rel_tol=rel, abs_tol=1e-9), (k, got[k], v)

    return check


def phase_figure(
    res: dict[str, Any], field: str, labels: tuple[str, ...], model: str | None = None
) -> Series:
    """The phases' ``field`` by ``labels`` (only the phases of ``model`` if given)."""
    out: Series = {}
    for p in res["phases"]:
        if p[field] is None or (model is not None and p["meta"].get("model") != model):
            continue
        all_labels = {
            "run": RUN,
            "phase": p["phase"],
            "trial": str(p["trial"]),
            "unit": p["unit"],
            "model": str(p["meta"].get("model", "")),
            "host": HOST,
        }
        out[key(**{k: all_labels[k] for k in labels})] = float(p[field])
    return out


def flags(res: dict[str, Any], labels: tuple[str, ...]) -> Series:
    out: Series = {}
    for p in res["phases"]:
        for f in p["flags"]:
            all_labels = {"host": HOST, "run": RUN, "phase": p["phase"],
                          "trial": str(p["trial"]), "flag": f}  # fmt: skip
            out[key(**{k: all_labels[k] for k in labels})] = 1.0
    return out


def power(channels: list[str], labels: tuple[str, ...]) -> Series:
    rows = [
        ({"host": HOST, "agent": "", "channel": channels[0]}, DAEMON_W),
        ({"host": HOST, "agent": AGENT, "channel": channels[1]}, AGENT_W),
    ]
    return {key(**{k: r[k] for k in labels}): w for r, w in rows}


def positive_for_probe(value_ok: Callable[[float], bool]) -> Check:
    def check(got: Series) -> None:
        assert got, "no series"
        probes = {dict(k).get("probe") for k in got}
        assert probes == {DAEMON_PROBE}, probes
        assert all(dict(k).get("host") == HOST for k in got)
        assert all(value_ok(v) for v in got.values()), got

    return check


def clock(value_ok: Callable[[float], bool]) -> Check:
    def check(got: Series) -> None:
        assert set(got) == {key(agent=AGENT)}, got
        assert all(value_ok(v) for v in got.values()), got

    return check


def expectations(res: dict[str, Any], ch: list[str]) -> dict[tuple[str, str, str], Check]:
    """(dashboard uid, panel title, refId) -> the check of its instant query's result."""
    infer = _phase(res, "infer")
    run_keep = ("run", "phase", "trial", "unit", "model")
    figures = {"A": "energy_j", "B": "uncertainty_j", "C": "j_per_unit", "D": "mean_power_w",
               "E": "duration_s", "F": "net_energy_j"}  # fmt: skip
    interval_s = 10.0
    out: dict[tuple[str, str, str], Check] = {
        ("powerd-fleet", "Power per device", "A"): exactly(
            power(ch, ("host", "agent", "channel")), 1e-6
        ),
        # increase() over a 10 s window of a constant-power channel's energy counter
        ("powerd-fleet", "Energy per device", "A"): exactly(
            {k: v * interval_s for k, v in power(ch, ("host", "agent", "channel")).items()}, 0.15
        ),
        ("powerd-fleet", "J per unit per model", "A"): exactly(
            {key(model=MODEL, phase="infer", unit=infer["unit"]): infer["j_per_unit"]}
        ),
        ("powerd-fleet", "Phase energy per model", "A"): exactly(
            phase_figure(res, "energy_j", ("model", "phase"), MODEL)
        ),
        ("powerd-fleet", "Flagged phases", "A"): exactly(
            flags(res, ("host", "run", "phase", "trial", "flag"))
        ),
        ("powerd-fleet", "Probe reads", "A"): positive_for_probe(lambda v: v > 0),
        ("powerd-fleet", "Probe errors and problems", "A"): positive_for_probe(lambda v: v == 0),
        ("powerd-fleet", "Probe errors and problems", "B"): positive_for_probe(lambda v: v == 0),
        ("powerd-fleet", "Agent clock offsets", "A"): clock(lambda v: abs(v) < 0.05),
        ("powerd-fleet", "Agent clock offsets", "B"): clock(lambda v: 0 <= v < 0.05),
        ("powerd-run", "J per unit", "A"): exactly(phase_figure(res, "j_per_unit", run_keep)),
        ("powerd-run", "Energy", "A"): exactly(phase_figure(res, "energy_j", run_keep)),
        ("powerd-run", "Power trace", "A"): exactly(power(ch, ("agent", "channel")), 1e-6),
        ("powerd-run", "Quality flags", "A"): exactly(flags(res, ("phase", "trial", "flag"))),
    }
    for ref, field in figures.items():
        out[("powerd-run", "Results", ref)] = exactly(phase_figure(res, field, run_keep))
    return out


def variables_for(board: dict[str, Any]) -> dict[str, Any]:
    chosen = {"host": [HOST], "agent": ALL, "channel": ALL, "model": [MODEL], "run": RUN}
    names = {v["name"] for v in board["templating"]["list"]}
    return {**{k: v for k, v in chosen.items() if k in names}, **INTERVALS}


def last_values(result: list[dict[str, Any]]) -> Series:
    """The latest value of each series of a range query (a graph legend's "last")."""
    return as_series([{"metric": s["metric"], "value": s["values"][-1]} for s in result])


def as_series(result: list[dict[str, Any]]) -> Series:
    out: Series = {}
    for s in result:
        labels = {k: v for k, v in s["metric"].items() if k != "__name__"}
        out[key(**labels)] = float(s["value"][1])
    return out


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("store", ["victoriametrics", "prometheus"])
def test_variable_queries_list_the_run(stores: Stores, store: str) -> None:
    base = stores.vm if store == "victoriametrics" else stores.prom
    expected = {
        "host": [HOST],
        "agent": [AGENT],  # the daemon's own channels have agent="" (no label): "All" matches it
        "channel": sorted(stores.channels),
        "model": [MODEL],
        "run": [RUN],
    }
    for board in BOARDS.values():
        board_vars = {v["name"]: v for v in board["templating"]["list"]}
        values = variables_for(board)
        for name, spec in board_vars.items():
            if spec["type"] != "query":
                continue
            query = substitute(spec["query"], values, board_vars)
            assert label_values(base, query) == expected[name], (board["uid"], name, query)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["victoriametrics", "prometheus"])
def test_every_panel_query_returns_the_run(stores: Stores, store: str) -> None:
    base = stores.vm if store == "victoriametrics" else stores.prom
    checks = expectations(stores.result, stores.channels)
    seen = set()
    now = time.time()
    for board in BOARDS.values():
        board_vars = {v["name"]: v for v in board["templating"]["list"]}
        values = variables_for(board)
        for panel in board["panels"]:
            for t in panel.get("targets", []):
                where = (board["uid"], panel["title"], t["refId"])
                expr = substitute(t["expr"], values, board_vars)
                if t["instant"]:  # tables and stats: one value per series, at the end
                    got = as_series(prom_query(base, expr, now))
                else:  # graphs: a range query, as Grafana runs it; the latest values
                    got = last_values(query_range(base, expr, now - RANGE_S, now, STEP_S))
                try:
                    checks[where](got)
                except AssertionError as err:
                    raise AssertionError(f"{store} {where}: {expr}\n{err}") from None
                seen.add(where)
    assert seen == set(checks), set(checks) ^ seen
