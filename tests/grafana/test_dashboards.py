"""The dashboards and provisioning: generated, valid for Grafana 11.6, using the contract's names.

The schema check validates each dashboard against the JSON Schema of Grafana 11.6's dashboard
model, derived from the exactly pinned grafana-foundation-sdk (``schemagen``; vendored under
``schema/``), each panel against its plugin's options and field config, each query against the
Prometheus query model. Mutations show the check rejects what Grafana 11.6 does not know.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from powerd import metrics
from tests.grafana import schemagen

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
SCHEMA: dict[str, Any] = json.loads(schemagen.SCHEMA_PATH.read_text(encoding="utf-8"))
BOARDS = {
    p.stem: json.loads(p.read_text(encoding="utf-8"))
    for p in sorted((GRAFANA / "dashboards").glob("*.json"))
}


def load_build() -> Any:
    spec = importlib.util.spec_from_file_location("grafana_build", GRAFANA / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def validator(ref: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**SCHEMA, "$ref": f"#/$defs/{ref}"})


def schema_errors(board: dict[str, Any]) -> list[str]:
    """Every violation: the dashboard model, each panel's plugin, each Prometheus query."""
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in validator("dashboard.Dashboard").iter_errors(board)
    ]
    for panel in board.get("panels", []):
        if panel.get("type") == "row":
            continue
        ref = f"panel.{panel.get('type')}"
        if ref not in SCHEMA["$defs"]:
            errors.append(f"panel {panel.get('title')!r}: no schema for type {panel.get('type')!r}")
            continue
        for e in validator(ref).iter_errors(panel):
            errors.append(f"panel {panel.get('title')!r} {list(e.absolute_path)}: {e.message}")
        for t in panel.get("targets", []):
            for e in validator("prometheus.Dataquery").iter_errors(t):
                errors.append(f"panel {panel.get('title')!r} target: {e.message}")
        errors += override_errors(panel)
    return errors


def override_errors(panel: dict[str, Any]) -> list[str]:
    """The schema leaves override values open (``DynamicConfigValue.value``); check those of a
    graph's ``custom.*`` properties against the graph field config they override."""
    graph = SCHEMA["$defs"]["common.GraphFieldConfig"]["properties"]
    errors = []
    for override in panel.get("fieldConfig", {}).get("overrides", []):
        for prop in override["properties"]:
            name = prop["id"].removeprefix("custom.")
            if panel["type"] != "timeseries" or not prop["id"].startswith("custom."):
                continue
            if name not in graph:
                errors.append(f"panel {panel['title']!r}: no graph field option {prop['id']!r}")
                continue
            check = jsonschema.Draft202012Validator({"$defs": SCHEMA["$defs"], **graph[name]})
            for e in check.iter_errors(prop["value"]):
                errors.append(f"panel {panel['title']!r} override {prop['id']}: {e.message}")
    return errors


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def test_all_dashboards_exist() -> None:
    names = {"powerd-fleet", "powerd-run", "powerd-efficiency"}
    assert set(BOARDS) == names
    assert {b["uid"] for b in BOARDS.values()} == names


def test_checked_in_json_is_what_build_generates() -> None:
    build = load_build()
    for name, make in build.DASHBOARDS.items():
        text = (GRAFANA / "dashboards" / name).read_text(encoding="utf-8")
        assert text == build.render(make()), f"{name} is stale: run python grafana/build.py"


def test_vendored_schema_is_the_pinned_sdks() -> None:
    try:
        installed = schemagen.installed_version()
    except Exception:
        if os.environ.get("CI"):
            raise
        pytest.skip("grafana-foundation-sdk is not installed (pip install -e '.[dev]')")
    assert installed == schemagen.PINNED_VERSION
    assert schemagen.generate() == SCHEMA, "regenerate: python -m tests.grafana.schemagen"
    assert "Grafana 11.6" in SCHEMA["$comment"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dashboard_is_valid_for_grafana_11_6(name: str) -> None:
    board = BOARDS[name]
    assert schema_errors(board) == []
    assert board["schemaVersion"] == 41


def _mutations() -> list[tuple[str, Any]]:
    def unknown_panel_key(b: dict[str, Any]) -> None:
        panels(b)[0]["legendMode"] = "table"

    def bad_enum(b: dict[str, Any]) -> None:
        next(p for p in panels(b) if p["type"] == "timeseries")["options"]["legend"][
            "displayMode"
        ] = "sideways"

    def no_schema_version(b: dict[str, Any]) -> None:
        del b["schemaVersion"]

    def wrong_type(b: dict[str, Any]) -> None:
        panels(b)[0]["gridPos"]["w"] = "12"

    def unknown_query_key(b: dict[str, Any]) -> None:
        panels(b)[0]["targets"][0]["query"] = "up"

    def unknown_variable_key(b: dict[str, Any]) -> None:
        b["templating"]["list"][1]["definition"] = "label_values(up, job)"

    def unknown_panel_type_option(b: dict[str, Any]) -> None:
        next(p for p in panels(b) if p["type"] == "table")["options"]["legendMode"] = 1

    def bad_override_value(b: dict[str, Any]) -> None:
        panels(b)[0]["fieldConfig"]["overrides"] = [
            {
                "matcher": {"id": "byFrameRefID", "options": "A"},
                "properties": [{"id": "custom.lineStyle", "value": {"fill": "wavy"}}],
            }
        ]

    def unknown_override_option(b: dict[str, Any]) -> None:
        panels(b)[0]["fieldConfig"]["overrides"] = [
            {
                "matcher": {"id": "byFrameRefID", "options": "A"},
                "properties": [{"id": "custom.lineDash", "value": [6, 4]}],
            }
        ]

    return [
        (f.__name__, f)
        for f in (
            unknown_panel_key,
            bad_enum,
            no_schema_version,
            wrong_type,
            unknown_query_key,
            unknown_variable_key,
            unknown_panel_type_option,
            bad_override_value,
            unknown_override_option,
        )
    ]


@pytest.mark.parametrize(("what", "mutate"), _mutations())
def test_schema_check_rejects_what_grafana_11_6_does_not_know(what: str, mutate: Any) -> None:
    board = copy.deepcopy(BOARDS["powerd-fleet"])
    mutate(board)
    assert schema_errors(board), f"{what} passed the schema check"


def test_every_query_uses_the_datasource_variable() -> None:
    for board in BOARDS.values():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        ds = variables["datasource"]
        assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
        for v in variables.values():
            if v["type"] == "query":
                assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for p in panels(board):
            assert p["datasource"]["uid"] == "${datasource}"
            for t in p["targets"]:
                assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_template_variables() -> None:
    fleet = {v["name"] for v in BOARDS["powerd-fleet"]["templating"]["list"]}
    run = {v["name"] for v in BOARDS["powerd-run"]["templating"]["list"]}
    eff = {v["name"] for v in BOARDS["powerd-efficiency"]["templating"]["list"]}
    assert fleet == {"datasource", "host", "agent", "channel", "model"}
    assert run == {"datasource", "host", "run", "agent", "channel"}
    assert eff == {"datasource", "device", "unit", "counter"}
    for board in BOARDS.values():
        used = {
            name
            for p in panels(board)
            for t in p["targets"]
            for name in re.findall(r"\$\{?(\w+)", t["expr"])
        }
        declared = {v["name"] for v in board["templating"]["list"]}
        assert used - {"__interval", "__rate_interval", "__range"} <= declared


def test_queries_name_only_metrics_that_powerd_metrics_defines() -> None:
    defined = {v for k, v in vars(metrics).items() if k.isupper() and isinstance(v, str)}
    seen = set()
    for board in BOARDS.values():
        exprs = [t["expr"] for p in panels(board) for t in p["targets"]]
        exprs += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
        for expr in exprs:
            seen |= set(re.findall(r"\bpowerd_\w+", expr))
    assert seen and seen <= defined, seen - defined
    # The fleet and run dashboards together read every series of the contract.
    contract = {metrics.POWER_WATTS, metrics.ENERGY_JOULES_TOTAL, metrics.PHASE_FLAG}
    contract |= set(metrics.PHASE_FIGURES) | set(metrics.PROBE_FIGURES)
    contract |= {metrics.AGENT_CLOCK_OFFSET_SECONDS, metrics.AGENT_CLOCK_UNCERTAINTY_SECONDS}
    assert contract <= seen, contract - seen
    # The efficiency dashboard reads every continuous-efficiency series.
    efficiency = {
        metrics.EFFICIENCY_UNITS_PER_SECOND,
        metrics.EFFICIENCY_POWER_WATTS,
        metrics.EFFICIENCY_JOULES_PER_UNIT,
        metrics.EFFICIENCY_JOULES_PER_UNIT_UNCERTAINTY,
        metrics.EFFICIENCY_UNITS_PER_JOULE,
        metrics.EFFICIENCY_IDLE_FRACTION,
    }
    board = BOARDS["powerd-efficiency"]
    eff_seen = {
        n
        for p in panels(board)
        for t in p["targets"]
        for n in re.findall(r"\bpowerd_\w+", t["expr"])
    }
    assert eff_seen == efficiency, eff_seen ^ efficiency


def test_units() -> None:
    units = {
        (b["uid"], p["title"]): p["fieldConfig"]["defaults"].get("unit")
        for b in BOARDS.values()
        for p in panels(b)
    }
    assert units[("powerd-fleet", "Power per device")] == "watt"
    assert units[("powerd-fleet", "Energy per device")] == "joule"
    assert units[("powerd-fleet", "J per unit per model")] == "joule"
    assert units[("powerd-fleet", "Agent clock offsets")] == "s"
    assert units[("powerd-run", "Power trace")] == "watt"
    assert units[("powerd-run", "J per unit")] == "joule"
    assert units[("powerd-efficiency", "Joules per unit")] == "joule"
    assert units[("powerd-efficiency", "J per unit ± U95: $device")] == "joule"
    assert units[("powerd-efficiency", "Power")] == "watt"
    assert units[("powerd-efficiency", "Idle fraction")] == "percentunit"
    results = next(p for p in panels(BOARDS["powerd-run"]) if p["title"] == "Results")
    by_column = {
        o["matcher"]["options"]: o["properties"][0]["value"]
        for o in results["fieldConfig"]["overrides"]
    }
    assert by_column == {
        "Energy": "joule",
        "± U95": "joule",
        "J per unit": "joule",
        "Mean power": "watt",
        "Duration": "s",
        "Net energy": "joule",
    }


def test_layout_ids_and_grid() -> None:
    for board in BOARDS.values():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        cells: set[tuple[int, int]] = set()
        for p in board["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24
            xs, ys = range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])
            mine = {(x, y) for x in xs for y in ys}
            assert not cells & mine, f"{p['title']} overlaps another panel"
            cells |= mine


def test_provisioning_files() -> None:
    prov = GRAFANA / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "powerd.yaml").read_text())
    assert ds["apiVersion"] == 1
    sources = {d["name"]: d for d in ds["datasources"]}
    assert len(sources) == 2
    assert {d["type"] for d in sources.values()} == {"prometheus"}  # what ${datasource} lists
    assert {d["uid"] for d in sources.values()} == {"powerd-victoriametrics", "powerd-prometheus"}
    assert sum(bool(d.get("isDefault")) for d in sources.values()) == 1
    for d in sources.values():
        assert d["access"] == "proxy" and d["url"].startswith("http")
    dash = yaml.safe_load((prov / "dashboards" / "powerd.yaml").read_text())
    assert dash["apiVersion"] == 1
    (provider,) = dash["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == "powerd"
    assert provider["options"]["path"]


def test_efficiency_band_and_ranking() -> None:
    """The J/unit panel repeats per device and draws its 95 % bounds dashed, out of the legend;
    the ranking table opens sorted by units per joule, most efficient first."""
    by_title = {p["title"]: p for p in panels(BOARDS["powerd-efficiency"])}
    band = by_title["J per unit ± U95: $device"]
    assert band["repeat"] == "device"
    refs = {t["refId"]: t["expr"] for t in band["targets"]}
    assert set(refs) == {"A", "B", "C"}
    assert refs["B"] == refs["A"] + " - " + refs["C"].split(" + ", 1)[1]
    assert refs["C"] == refs["A"] + " + " + refs["B"].split(" - ", 1)[1]
    assert {o["matcher"]["options"] for o in band["fieldConfig"]["overrides"]} == {"B", "C"}
    ranking = by_title["Fleet ranking"]
    assert ranking["options"]["sortBy"] == [{"displayName": "Units per J", "desc": True}]
    names = ranking["transformations"][1]["options"]["renameByName"]
    assert names["Value #A"] == "Units per J"
    assert by_title["Fleet ranked by units per joule"]["targets"][0]["expr"].startswith(
        "sort_desc("
    )
