"""Generate powerd's Grafana dashboards (``grafana/dashboards/*.json``) from one place.

Run ``python grafana/build.py`` after changing a panel; ``--check`` exits 1 when the checked-in JSON
differs from what this script builds (the tests run the same comparison). Metric names are looked
up in ``powerd/metrics.py``, the one module that names metrics for the exporter and the sinks: a
name that module does not define stops the build, so a panel cannot query a series nobody writes.

Every query is PromQL and runs unchanged on Prometheus and on VictoriaMetrics (which the Influx sink
writes to; it names a series ``<measurement>_<field>``, the same names as the exporter). The
datasource is the dashboard variable ``${datasource}`` of type prometheus. Aggregations name the
labels they keep (``sum by (host, agent, channel)``), so the scraper's ``job``/``instance`` labels
and the stores' differences in extra labels never split a series.

Phase results are gauges that appear once a phase is over (the exporter) or as one point per
result (VictoriaMetrics), so their queries read ``last_over_time(...[$__range])`` (tables, stats)
or ``[$__interval]`` (graphs): a result shows for the whole window it falls in, in both stores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DASHBOARD_DIR = HERE / "dashboards"
FLEET_UID = "powerd-fleet"
RUN_UID = "powerd-run"
EFFICIENCY_UID = "powerd-efficiency"
SCHEMA_VERSION = 41  # Grafana 11.6's dashboard schema version (grafana-foundation-sdk 11.6.0)
DS = {"type": "prometheus", "uid": "${datasource}"}
# Tags of the phase annotations ``powerd grafana push --results`` writes into Grafana.
ANNOTATION_TAG = "powerd"
RUN_TAG_PREFIX = "run:"
PHASE_TAG_PREFIX = "phase:"

Json = dict[str, Any]


def _defined_metric_names() -> set[str]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from powerd import metrics

    return {v for k, v in vars(metrics).items() if k.isupper() and isinstance(v, str)}


_DEFINED: set[str] | None = None


def m(name: str) -> str:
    """``name``, once powerd/metrics.py is known to define it."""
    global _DEFINED  # noqa: PLW0603 - read the module once
    if _DEFINED is None:
        _DEFINED = _defined_metric_names()
    if name not in _DEFINED:
        raise SystemExit(f"build: powerd/metrics.py does not define the metric {name!r}")
    return name


# --- panel parts -------------------------------------------------------------------------------


def target(
    ref: str, expr: str, legend: str = "", instant: bool = False, table: bool = False
) -> Json:
    t: Json = {
        "datasource": DS,
        "refId": ref,
        "expr": expr,
        "editorMode": "code",
        "range": not instant,
        "instant": instant,
    }
    if legend:
        t["legendFormat"] = legend
    if table:
        t["format"] = "table"
    return t


def grid(x: int, y: int, w: int, h: int) -> Json:
    return {"x": x, "y": y, "w": w, "h": h}


def thresholds(*steps: tuple[float | None, str]) -> Json:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


def row(pid: int, title: str, y: int) -> Json:
    return {
        "type": "row",
        "id": pid,
        "title": title,
        "collapsed": False,
        "gridPos": grid(0, y, 24, 1),
        "panels": [],
    }


def timeseries(
    pid: int,
    title: str,
    description: str,
    pos: Json,
    targets: list[Json],
    unit: str,
    draw: str = "line",
    interval: str | None = None,
) -> Json:
    custom: Json = {
        "drawStyle": draw,
        "lineWidth": 1,
        "fillOpacity": 60 if draw == "bars" else 10,
        "showPoints": "always" if draw == "points" else "auto",
        "pointSize": 6,
        "spanNulls": False,
    }
    panel: Json = {
        "type": "timeseries",
        "id": pid,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": pos,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "color": {"mode": "palette-classic"},
                "custom": custom,
            },
            "overrides": [],
        },
        "options": {
            "legend": {
                "showLegend": True,
                "displayMode": "table",
                "placement": "right",
                "calcs": ["lastNotNull", "mean"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }
    if interval is not None:
        panel["interval"] = interval
    return panel


def table(
    pid: int,
    title: str,
    description: str,
    pos: Json,
    targets: list[Json],
    columns: dict[str, tuple[str, str]],
    hidden: tuple[str, ...] = ("Time", "__name__", "job", "instance", "host", "run"),
    order: tuple[str, ...] = (),
    sort_by: tuple[str, bool] | None = None,
) -> Json:
    """A table of instant queries joined on their labels; ``columns``: field -> (name, unit);
    ``sort_by``: (column name, descending) the table opens sorted by."""
    overrides = [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [{"id": "unit", "value": unit}],
        }
        for name, unit in columns.values()
    ]
    options: Json = {
        "showHeader": True,
        "frameIndex": 0,
        "cellHeight": "sm",
        "footer": {"show": False, "reducer": ["sum"]},
    }
    if sort_by is not None:
        options["sortBy"] = [{"displayName": sort_by[0], "desc": sort_by[1]}]
    return {
        "type": "table",
        "id": pid,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": pos,
        "targets": targets,
        "transformations": [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": dict.fromkeys(hidden, True),
                    "renameByName": {field: name for field, (name, _) in columns.items()},
                    "indexByName": {name: i for i, name in enumerate(order)},
                },
            },
        ],
        "fieldConfig": {
            "defaults": {"custom": {"align": "auto", "inspect": False}},
            "overrides": overrides,
        },
        "options": options,
    }


def stat(pid: int, title: str, description: str, pos: Json, targets: list[Json], unit: str) -> Json:
    return {
        "type": "stat",
        "id": pid,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": pos,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "decimals": 4,
                "color": {"mode": "thresholds"},
                "thresholds": thresholds((None, "blue")),
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "auto",
            "textMode": "value_and_name",
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "wideLayout": True,
            "showPercentChange": False,
            "percentChangeColorMode": "standard",
        },
    }


# --- variables ---------------------------------------------------------------------------------


def datasource_variable() -> Json:
    return {
        "type": "datasource",
        "name": "datasource",
        "label": "Data source",
        "description": "A Prometheus or VictoriaMetrics data source holding powerd's metrics",
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "hide": 0,
    }


def query_variable(
    name: str, label: str, query: str, multi: bool = True, description: str = ""
) -> Json:
    v: Json = {
        "type": "query",
        "name": name,
        "label": label,
        "description": description,
        "datasource": DS,
        "query": query,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "hide": 0,
    }
    if multi:
        # `.*` also matches the empty agent label of the daemon's own probes.
        v["allValue"] = ".*"
    return v


def dashboard(uid: str, title: str, description: str, variables: list[Json], panels: list[Json],
              annotations: list[Json], time_from: str, links: list[Json]) -> Json:  # fmt: skip
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["powerd", "energy"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {"refresh_intervals": ["10s", "30s", "1m", "5m", "15m", "1h"]},
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "links": links,
        "annotations": {"list": [builtin_annotation(), *annotations]},
        "templating": {"list": variables},
        "panels": panels,
    }


def builtin_annotation() -> Json:
    """The "Annotations & Alerts" entry Grafana puts in every dashboard."""
    return {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }


def link(title: str, uid: str, tooltip: str) -> Json:
    return {
        "title": title,
        "type": "link",
        "url": f"/d/{uid}",
        "icon": "dashboard",
        "tooltip": tooltip,
        "tags": [],
        "asDropdown": False,
        "targetBlank": False,
        "includeVars": True,
        "keepTime": True,
    }


# --- selectors -------------------------------------------------------------------------------

AGENT_SEL = 'host=~"$host", agent=~"$agent"'
CHANNEL_SEL = f'{AGENT_SEL}, channel=~"$channel"'
PHASE_FLEET_SEL = 'host=~"$host", model=~"$model"'
RUN_SEL = 'host=~"$host", run="$run"'


def fleet() -> Json:
    power, energy = m("powerd_power_watts"), m("powerd_energy_joules_total")
    jpu, phase_e = m("powerd_phase_joules_per_unit"), m("powerd_phase_energy_joules")
    flag = m("powerd_phase_flag")
    reads, errors = m("powerd_probe_reads_total"), m("powerd_probe_errors_total")
    problems = m("powerd_probe_problems_total")
    offset = m("powerd_agent_clock_offset_seconds")
    offset_u = m("powerd_agent_clock_uncertainty_seconds")
    variables = [
        datasource_variable(),
        query_variable(
            "host", "Host", f"label_values({power}, host)", description="powerd daemon host"
        ),
        query_variable(
            "agent",
            "Agent",
            f'label_values({power}{{host=~"$host"}}, agent)',
            description="edge agent id (empty: the daemon's own probes)",
        ),
        query_variable(
            "channel",
            "Channel",
            f"label_values({power}{{{AGENT_SEL}}}, channel)",
        ),
        query_variable(
            "model",
            "Model",
            f'label_values({jpu}{{host=~"$host"}}, model)',
            description="the phases' `model` meta label",
        ),
    ]
    by_channel = "sum by (host, agent, channel)"
    panels = [
        row(1, "Power and energy", 0),
        timeseries(
            2,
            "Power per device",
            "Latest power of each channel (a counter channel: its rate between readings).",
            grid(0, 1, 24, 9),
            [
                target(
                    "A",
                    f"{by_channel} ({power}{{{CHANNEL_SEL}}})",
                    "{{host}} {{agent}} {{channel}}",
                )
            ],
            "watt",
        ),
        timeseries(
            3,
            "Energy per device",
            "Energy each channel used in each interval: the increase of its cumulative energy "
            "counter (integrated by powerd, not by the store).",
            grid(0, 10, 12, 9),
            [
                target(
                    "A",
                    f"{by_channel} (increase({energy}{{{CHANNEL_SEL}}}[$__interval]))",
                    "{{host}} {{agent}} {{channel}}",
                )
            ],
            "joule",
            draw="bars",
            interval="1m",
        ),
        timeseries(
            4,
            "J per unit per model",
            "Joules per unit of work (inference, token, ...) of the measured phases, averaged "
            "per model, phase and unit over the phases whose results fall in each interval.",
            grid(12, 10, 12, 9),
            [
                target(
                    "A",
                    f"avg by (model, phase, unit) "
                    f"(last_over_time({jpu}{{{PHASE_FLEET_SEL}}}[$__interval]))",
                    "{{model}} {{phase}} J/{{unit}}",
                )
            ],
            "joule",
            draw="points",
            interval="1m",
        ),
        timeseries(
            5,
            "Phase energy per model",
            "Energy of the measured phases (primary channels), averaged per model and phase over "
            "the results in each interval.",
            grid(0, 19, 12, 9),
            [
                target(
                    "A",
                    f"avg by (model, phase) "
                    f"(last_over_time({phase_e}{{{PHASE_FLEET_SEL}}}[$__interval]))",
                    "{{model}} {{phase}}",
                )
            ],
            "joule",
            draw="points",
            interval="1m",
        ),
        table(
            6,
            "Flagged phases",
            "Phases whose result carries a quality flag (no_data, gaps, receive_time, "
            "counter_power_mismatch, ...) in the time range.",
            grid(12, 19, 12, 9),
            [
                target(
                    "A",
                    "max by (host, run, phase, trial, flag) "
                    f'(last_over_time({flag}{{host=~"$host"}}[$__range]))',
                    instant=True,
                    table=True,
                )
            ],
            {"Value": ("Flag set", "none")},
            hidden=("Time", "__name__", "job", "instance"),
            order=("host", "run", "phase", "trial", "flag"),
        ),
        row(7, "Probe health and agent clocks", 28),
        timeseries(
            8,
            "Probe reads",
            "Successful reads per second of each probe.",
            grid(0, 29, 8, 8),
            [
                target(
                    "A",
                    f'sum by (host, probe) (rate({reads}{{host=~"$host"}}[$__rate_interval]))',
                    "{{host}} {{probe}}",
                )
            ],
            "suffix: reads/s",
        ),
        timeseries(
            9,
            "Probe errors and problems",
            "Failed reads (errors) and reported problems (a device gone, garbled data) of each "
            "probe, per interval.",
            grid(8, 29, 8, 8),
            [
                target(
                    "A",
                    f'sum by (host, probe) (increase({errors}{{host=~"$host"}}[$__interval]))',
                    "{{host}} {{probe}} errors",
                ),
                target(
                    "B",
                    f'sum by (host, probe) (increase({problems}{{host=~"$host"}}[$__interval]))',
                    "{{host}} {{probe}} problems",
                ),
            ],
            "short",
            draw="bars",
            interval="1m",
        ),
        timeseries(
            10,
            "Agent clock offsets",
            "Estimated offset of each agent's clock (daemon time minus agent time) and its "
            "uncertainty. Exported at /metrics only: with VictoriaMetrics, let it scrape them.",
            grid(16, 29, 8, 8),
            [
                target("A", f'max by (agent) ({offset}{{agent=~"$agent"}})', "{{agent}} offset"),
                target(
                    "B",
                    f'max by (agent) ({offset_u}{{agent=~"$agent"}})',
                    "{{agent}} uncertainty",
                ),
            ],
            "s",
        ),
    ]
    return dashboard(
        FLEET_UID,
        "powerd fleet",
        "Power, energy and joules per unit across powerd daemons and agents; quality flags, "
        "probe health and agent clocks.",
        variables,
        panels,
        [],
        "now-6h",
        [
            link("powerd run", RUN_UID, "One run: power trace, phases and results"),
            link("powerd efficiency", EFFICIENCY_UID, "Continuous J per unit of served models"),
        ],
    )


def run() -> Json:
    power = m("powerd_power_watts")
    names = {
        "A": (m("powerd_phase_energy_joules"), "Energy", "joule"),
        "B": (m("powerd_phase_uncertainty_joules"), "± U95", "joule"),
        "C": (m("powerd_phase_joules_per_unit"), "J per unit", "joule"),
        "D": (m("powerd_phase_mean_power_watts"), "Mean power", "watt"),
        "E": (m("powerd_phase_duration_seconds"), "Duration", "s"),
        "F": (m("powerd_phase_net_energy_joules"), "Net energy", "joule"),
    }
    flag = m("powerd_phase_flag")
    variables = [
        datasource_variable(),
        query_variable(
            "host", "Host", f"label_values({power}, host)", description="powerd daemon host"
        ),
        query_variable(
            "run",
            "Run",
            f'label_values({names["A"][0]}{{host=~"$host"}}, run)',
            multi=False,
            description="run id",
        ),
        query_variable(
            "agent",
            "Agent",
            f'label_values({power}{{host=~"$host"}}, agent)',
            description="edge agent id (empty: the daemon's own probes)",
        ),
        query_variable(
            "channel",
            "Channel",
            f"label_values({power}{{{AGENT_SEL}}}, channel)",
        ),
    ]
    keep = "sum by (run, phase, trial, unit, model)"
    result_targets = [
        target(ref, f"{keep} (last_over_time({name}{{{RUN_SEL}}}[$__range]))", "", True, True)
        for ref, (name, _, _) in names.items()
    ]
    columns = {f"Value #{ref}": (title, unit) for ref, (_, title, unit) in names.items()}
    phases = {
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": False,
        "iconColor": "rgba(255, 152, 48, 1)",
        "name": "Phases",
        "target": {
            "type": "tags",
            "tags": [ANNOTATION_TAG, f"{RUN_TAG_PREFIX}$run"],
            "matchAny": False,
            "limit": 500,
        },
    }
    panels = [
        stat(
            1,
            "J per unit",
            "Joules per unit of work of each phase with a count.",
            grid(0, 0, 12, 4),
            [
                target(
                    "A",
                    f"{keep} (last_over_time({names['C'][0]}{{{RUN_SEL}}}[$__range]))",
                    "{{phase}} (trial {{trial}}) J/{{unit}}",
                    instant=True,
                )
            ],
            "joule",
        ),
        stat(
            2,
            "Energy",
            "Energy of each phase (primary channels).",
            grid(12, 0, 12, 4),
            [
                target(
                    "A",
                    f"{keep} (last_over_time({names['A'][0]}{{{RUN_SEL}}}[$__range]))",
                    "{{phase}} (trial {{trial}})",
                    instant=True,
                )
            ],
            "joule",
        ),
        timeseries(
            3,
            "Power trace",
            "Power of each channel; the phases of the run are annotations (pushed with "
            "`powerd grafana push --results RUN.json`). Set the time range to the run.",
            grid(0, 4, 24, 10),
            [
                target(
                    "A",
                    f"sum by (agent, channel) ({power}{{{CHANNEL_SEL}}})",
                    "{{agent}} {{channel}}",
                )
            ],
            "watt",
        ),
        table(
            4,
            "Results",
            "Per phase and trial: energy ± its 95 % uncertainty, joules per unit, mean power, "
            "duration and net energy (above idle), as in the run's result JSON.",
            grid(0, 14, 24, 8),
            result_targets,
            columns,
            order=("phase", "trial", "unit", "model"),
        ),
        table(
            5,
            "Quality flags",
            "Flags of the run's phases (no_data, gaps, receive_time, counter_power_mismatch, ...).",
            grid(0, 22, 24, 6),
            [
                target(
                    "A",
                    f"max by (phase, trial, flag) (last_over_time({flag}{{{RUN_SEL}}}[$__range]))",
                    instant=True,
                    table=True,
                )
            ],
            {"Value": ("Flag set", "none")},
            order=("phase", "trial", "flag"),
        ),
    ]
    return dashboard(
        RUN_UID,
        "powerd run",
        "One run: the power trace with its phases, and the results table.",
        variables,
        panels,
        [phases],
        "now-1h",
        [link("powerd fleet", FLEET_UID, "All hosts, agents and models")],
    )


# --- continuous efficiency (issue 15) ------------------------------------------------------------

DEVICE_SEL = 'device=~"$device"'
# A counter label is the engine's selector, e.g. `vllm:generation_tokens_total{model_name="x"}`.
# Grafana's Prometheus datasource regex-escapes a multi-value selection but leaves `"` alone (its
# classic escaping; `'` is what it escapes for a plain value): inside a single-quoted PromQL
# string the quotes of the selector need no escape.
EFFICIENCY_SEL = f"{DEVICE_SEL}, unit=~\"$unit\", counter=~'$counter'"
# `host`: the Influx sink tags every line with its daemon's host, and several daemons may each
# have a device "local"; series without a host label (the exporter's) aggregate with host="".
# `avg`, not `sum`: a figure stored twice (scraped and written) is not doubled.
BY_COUNTER = "avg by (host, device, counter, unit)"
BY_DEVICE = "avg by (host, device)"
BY_DEVICE_COUNTER = "avg by (host, counter, unit)"  # one device: the repeated panel


def bargauge(
    pid: int, title: str, description: str, pos: Json, targets: list[Json], unit: str
) -> Json:
    """Horizontal bars, one per series, in the order the query returns them."""
    return {
        "type": "bargauge",
        "id": pid,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": pos,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "decimals": 3,
                "min": 0,
                "color": {"mode": "continuous-RdYlGr"},
                "thresholds": thresholds((None, "green")),
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
            "displayMode": "gradient",
            "valueMode": "color",
            "namePlacement": "auto",
            "showUnfilled": True,
            "sizing": "auto",
            "minVizWidth": 8,
            "minVizHeight": 16,
            "maxVizHeight": 300,
            "legend": {
                "showLegend": False,
                "displayMode": "list",
                "placement": "bottom",
                "calcs": [],
            },
        },
    }


def by_ref(ref: str, *properties: tuple[str, Any]) -> Json:
    """A field override for the series of query ``ref``."""
    return {
        "matcher": {"id": "byFrameRefID", "options": ref},
        "properties": [{"id": pid, "value": value} for pid, value in properties],
    }


def efficiency() -> Json:
    """Continuous efficiency per device and per model (counter): the daemon's ``[[efficiency]]``
    figures, one point per interval (units/s, W, J/unit ± U95, units/J, idle fraction)."""
    ups = m("powerd_efficiency_units_per_second")
    power = m("powerd_efficiency_power_watts")
    jpu = m("powerd_efficiency_joules_per_unit")
    jpu_u = m("powerd_efficiency_joules_per_unit_uncertainty")
    upj = m("powerd_efficiency_units_per_joule")
    idle = m("powerd_efficiency_idle_fraction")
    variables = [
        datasource_variable(),
        query_variable(
            "device",
            "Device",
            f"label_values({power}, device)",
            description="a device of the daemons' [[efficiency]] entries",
        ),
        query_variable(
            "unit",
            "Unit",
            f"label_values({upj}{{{DEVICE_SEL}}}, unit)",
            description="unit of work counted (token, request, ...)",
        ),
        query_variable(
            "counter",
            "Model (counter)",
            f'label_values({upj}{{{DEVICE_SEL}, unit=~"$unit"}}, counter)',
            description="the serving engine's counter (per model) the work is read from",
        ),
    ]
    legend = "{{host}} {{device}} {{counter}}"

    def latest(name: str, sel: str = EFFICIENCY_SEL, by: str = BY_COUNTER) -> str:
        return f"{by} (last_over_time({name}{{{sel}}}[$__range]))"

    def per_row(device_figure: str) -> str:
        # A per-device figure on each (device, counter, unit) row of the ranking, so the table's
        # merge joins it on the same labels as the per-counter figures.
        return (
            f"{latest(device_figure, DEVICE_SEL, BY_DEVICE)} + on (host, device) group_right () "
            f"(0 * {latest(upj)})"
        )

    band = timeseries(
        7,
        "J per unit ± U95: $device",
        "Joules per unit of work in each interval with its 95 % uncertainty (dashed: the "
        "bounds J/unit − U95 and J/unit + U95), one panel per device.",
        grid(0, 18, 24, 8),
        [
            target("A", f"{BY_DEVICE_COUNTER} ({jpu}{{{EFFICIENCY_SEL}}})", "{{host}} {{counter}}"),
            target(
                "B",
                f"{BY_DEVICE_COUNTER} ({jpu}{{{EFFICIENCY_SEL}}}) "
                f"- {BY_DEVICE_COUNTER} ({jpu_u}{{{EFFICIENCY_SEL}}})",
                "{{host}} {{counter}} − U95",
            ),
            target(
                "C",
                f"{BY_DEVICE_COUNTER} ({jpu}{{{EFFICIENCY_SEL}}}) "
                f"+ {BY_DEVICE_COUNTER} ({jpu_u}{{{EFFICIENCY_SEL}}})",
                "{{host}} {{counter}} + U95",
            ),
        ],
        "joule",
    )
    band["repeat"] = "device"
    band["repeatDirection"] = "h"
    band["maxPerRow"] = 3
    bound = (
        ("custom.lineStyle", {"fill": "dash", "dash": [6, 4]}),
        ("custom.fillOpacity", 0),
        ("custom.hideFrom", {"legend": True, "tooltip": False, "viz": False}),
    )
    band["fieldConfig"]["overrides"] = [by_ref("B", *bound), by_ref("C", *bound)]

    idle_panel = timeseries(
        11,
        "Idle fraction",
        "Fraction of each interval in which the device did no counted work.",
        grid(0, 38, 24, 7),
        [target("A", f"{BY_DEVICE} ({idle}{{{DEVICE_SEL}}})", "{{host}} {{device}}")],
        "percentunit",
    )
    idle_panel["fieldConfig"]["defaults"]["min"] = 0
    idle_panel["fieldConfig"]["defaults"]["max"] = 1

    ranking = {
        "A": (upj, "Units per J", "short"),
        "B": (jpu, "J per unit", "joule"),
        "C": (jpu_u, "± U95", "joule"),
        "D": (ups, "Units per s", "short"),
        "E": (power, "Power", "watt"),
        "F": (idle, "Idle fraction", "percentunit"),
    }
    ranking_targets = [
        target(
            ref,
            per_row(name) if name in (power, idle) else latest(name),
            instant=True,
            table=True,
        )
        for ref, (name, _, _) in ranking.items()
    ]
    panels = [
        row(1, "Efficiency per device and model", 0),
        timeseries(
            2,
            "Units per joule",
            "Work per joule (tokens/J, requests/J, ...) in each interval, per device and model.",
            grid(0, 1, 12, 8),
            [target("A", f"{BY_COUNTER} ({upj}{{{EFFICIENCY_SEL}}})", legend + " {{unit}}/J")],
            "short",
        ),
        timeseries(
            3,
            "Joules per unit",
            "Energy per unit of work (J/token, J/request, ...) in each interval.",
            grid(12, 1, 12, 8),
            [target("A", f"{BY_COUNTER} ({jpu}{{{EFFICIENCY_SEL}}})", legend + " J/{{unit}}")],
            "joule",
        ),
        timeseries(
            4,
            "Power",
            "Mean power of each device's primary channels in each interval.",
            grid(0, 9, 12, 8),
            [target("A", f"{BY_DEVICE} ({power}{{{DEVICE_SEL}}})", "{{host}} {{device}}")],
            "watt",
        ),
        timeseries(
            5,
            "Units per second",
            "Work rate (tokens/s, requests/s, ...) read from the serving engine's counters.",
            grid(12, 9, 12, 8),
            [target("A", f"{BY_COUNTER} ({ups}{{{EFFICIENCY_SEL}}})", legend + " {{unit}}/s")],
            "short",
        ),
        row(6, "J per unit with its 95 % uncertainty, per device", 17),
        band,
        row(8, "Fleet", 26),
        bargauge(
            9,
            "Fleet ranked by units per joule",
            "Latest units per joule of each device and model in the time range, most efficient "
            "first. Compare like with like: the same unit (and model).",
            grid(0, 27, 10, 11),
            [target("A", f"sort_desc({latest(upj)})", legend + " ({{unit}})", instant=True)],
            "short",
        ),
        table(
            10,
            "Fleet ranking",
            "Latest interval of each device and model in the time range: units per joule, "
            "J per unit ± its 95 % uncertainty, work rate, the device's power and idle fraction; "
            "sorted by units per joule.",
            grid(10, 27, 14, 11),
            ranking_targets,
            {f"Value #{ref}": (title, unit) for ref, (_, title, unit) in ranking.items()},
            hidden=("Time", "__name__", "job", "instance"),
            order=("host", "device", "counter", "unit"),
            sort_by=("Units per J", True),
        ),
        idle_panel,
    ]
    return dashboard(
        EFFICIENCY_UID,
        "powerd efficiency",
        "Continuous efficiency of served models: units (tokens, requests) per joule, joules per "
        "unit with its uncertainty, power, work rate and idle fraction per device and model; the "
        "fleet ranked by efficiency.",
        variables,
        panels,
        [],
        "now-3h",
        [link("powerd fleet", FLEET_UID, "All hosts, agents and models")],
    )


DASHBOARDS = {
    "powerd-fleet.json": fleet,
    "powerd-run.json": run,
    "powerd-efficiency.json": efficiency,
}


def render(board: Json) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = DASHBOARD_DIR / name, render(build())
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print("out of date (run python grafana/build.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
