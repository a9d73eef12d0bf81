"""Metric names, their labels, and the Prometheus collector that reads them off a running Daemon.

This is the one module that names metrics (the design's rule: sinks and dashboards share names),
so the ``/metrics`` route, the InfluxDB sink (``powerd.sinks.influx``) and the Grafana dashboards
cannot drift apart. Names follow Prometheus conventions: base units in the name (``_watts``,
``_joules``, ``_seconds``), counters end in ``_total``. InfluxDB line protocol splits a name into
measurement and field; VictoriaMetrics joins them back as ``<measurement>_<field>``, so ``INFLUX``
below maps every name to the split that yields the same series name in VictoriaMetrics.

Labels are bounded: per-sample series (power, energy) carry only channel identity; run ids label
only the phase series, which the exporter keeps for the last ``recent_runs`` runs; user ``meta``
keys become labels only when the config allows them (``[sinks] meta_labels``).

Values are read from the Daemon (and its sink hub, ``Daemon.live_metrics``) at scrape time by a
custom collector instead of being pushed into global metric objects: the daemon's counters stay the
single source of truth, nothing is registered in prometheus_client's process-wide default registry
(tests and ``powerd measure`` may create several daemons in one process), and a scrape costs one
pass over the daemon's state.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from powerd.channel import Channel
from powerd.daemon import Daemon
from powerd.errors import PowerdError
from powerd.runner import ProbeHealth

# The text format every Prometheus (2.x and 3.x) and VictoriaMetrics scrapes.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# --- names (the issue-7 contract) -----------------------------------------------------------

POWER_WATTS = "powerd_power_watts"
ENERGY_JOULES_TOTAL = "powerd_energy_joules_total"
PHASE_ENERGY_JOULES = "powerd_phase_energy_joules"
PHASE_NET_ENERGY_JOULES = "powerd_phase_net_energy_joules"
PHASE_JOULES_PER_UNIT = "powerd_phase_joules_per_unit"
PHASE_MEAN_POWER_WATTS = "powerd_phase_mean_power_watts"
PHASE_UNCERTAINTY_JOULES = "powerd_phase_uncertainty_joules"
PHASE_DURATION_SECONDS = "powerd_phase_duration_seconds"
PHASE_FLAG = "powerd_phase_flag"
PROBE_READS_TOTAL = "powerd_probe_reads_total"
PROBE_ERRORS_TOTAL = "powerd_probe_errors_total"
PROBE_PROBLEMS_TOTAL = "powerd_probe_problems_total"

# exporter only
MARKERS_TOTAL = "powerd_markers_total"
BLOCKS_TOTAL = "powerd_blocks_total"
SAMPLES_TOTAL = "powerd_samples_total"
RESULTS_TOTAL = "powerd_results_total"
AGENT_CLOCK_OFFSET_SECONDS = "powerd_agent_clock_offset_seconds"
AGENT_CLOCK_UNCERTAINTY_SECONDS = "powerd_agent_clock_uncertainty_seconds"
# exporter only, beyond the contract: the sinks' own health (is the store keeping up?)
SINK_SAMPLES_TOTAL = "powerd_sink_samples_total"
SINK_BUFFER_BYTES = "powerd_sink_buffer_bytes"
SINK_BLOCKS_DROPPED_TOTAL = "powerd_sink_blocks_dropped_total"
# exporter only: what is down right now and every problem counted (powerd.health)
DEGRADED = "powerd_degraded"
COMPONENT_UP = "powerd_component_up"
PROBLEMS_TOTAL = "powerd_problems_total"
# exporter only: 1 while a local probe samples, 0 while it is retried or its link is down
PROBE_UP = "powerd_probe_up"


@dataclass(frozen=True)
class InfluxName:
    """Where a metric goes in InfluxDB line protocol; VictoriaMetrics names the series
    ``<measurement>_<field>``, which is the Prometheus name."""

    measurement: str
    field: str

    @property
    def series(self) -> str:
        return f"{self.measurement}_{self.field}"


INFLUX: dict[str, InfluxName] = {
    POWER_WATTS: InfluxName("powerd_power", "watts"),
    ENERGY_JOULES_TOTAL: InfluxName("powerd_energy", "joules_total"),
    PHASE_ENERGY_JOULES: InfluxName("powerd_phase", "energy_joules"),
    PHASE_NET_ENERGY_JOULES: InfluxName("powerd_phase", "net_energy_joules"),
    PHASE_JOULES_PER_UNIT: InfluxName("powerd_phase", "joules_per_unit"),
    PHASE_MEAN_POWER_WATTS: InfluxName("powerd_phase", "mean_power_watts"),
    PHASE_UNCERTAINTY_JOULES: InfluxName("powerd_phase", "uncertainty_joules"),
    PHASE_DURATION_SECONDS: InfluxName("powerd_phase", "duration_seconds"),
    PHASE_FLAG: InfluxName("powerd_phase", "flag"),
    PROBE_READS_TOTAL: InfluxName("powerd_probe", "reads_total"),
    PROBE_ERRORS_TOTAL: InfluxName("powerd_probe", "errors_total"),
    PROBE_PROBLEMS_TOTAL: InfluxName("powerd_probe", "problems_total"),
}

# Phase figures: metric name -> key of a contract-2 phase entry (its primary figures).
PHASE_FIGURES: dict[str, str] = {
    PHASE_ENERGY_JOULES: "energy_j",
    PHASE_NET_ENERGY_JOULES: "net_energy_j",
    PHASE_JOULES_PER_UNIT: "j_per_unit",
    PHASE_MEAN_POWER_WATTS: "mean_power_w",
    PHASE_UNCERTAINTY_JOULES: "uncertainty_j",
    PHASE_DURATION_SECONDS: "duration_s",
}
PHASE_HELP: dict[str, str] = {
    PHASE_ENERGY_JOULES: "Energy of a phase of a recent run (primary channels), in J",
    PHASE_NET_ENERGY_JOULES: "Energy of a phase above idle power, in J",
    PHASE_JOULES_PER_UNIT: "Energy per unit (e.g. per inference) of a phase, in J",
    PHASE_MEAN_POWER_WATTS: "Mean power of a phase, in W",
    PHASE_UNCERTAINTY_JOULES: "95 % uncertainty of a phase's energy, in J",
    PHASE_DURATION_SECONDS: "Duration of a phase, in s",
}
# Probe health: metric name -> ProbeHealth attribute.
PROBE_FIGURES: dict[str, str] = {
    PROBE_READS_TOTAL: "reads",
    PROBE_ERRORS_TOTAL: "errors",
    PROBE_PROBLEMS_TOTAL: "problems",
}
PROBE_HELP: dict[str, str] = {
    PROBE_READS_TOTAL: "Successful reads of a local probe",
    PROBE_ERRORS_TOTAL: "Failed reads of a local probe (the whole probe raised)",
    PROBE_PROBLEMS_TOTAL: "Channel-level problems a local probe reported",
}

# --- labels ----------------------------------------------------------------------------------

CHANNEL_LABELS = ("channel", "agent", "probe", "source_class", "host")
PHASE_LABELS = ("run", "phase", "trial", "unit", "host")
FLAG_LABELS = ("run", "phase", "trial", "flag", "host")
PROBE_LABELS = ("probe", "host")
DEFAULT_META_LABELS = ("model",)
LABEL_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_LABELS = frozenset({*CHANNEL_LABELS, *PHASE_LABELS, *FLAG_LABELS, "db", "job"})


@dataclass(frozen=True)
class LabelConfig:
    """The labels this daemon adds: its host name and the phase ``meta`` keys allowed as labels."""

    host: str
    meta_labels: tuple[str, ...] = DEFAULT_META_LABELS

    def __post_init__(self) -> None:
        for key in self.meta_labels:
            if not LABEL_NAME_RE.match(key) or key.startswith("__") or key in RESERVED_LABELS:
                raise PowerdError(
                    f"[sinks] meta_labels: {key!r} cannot be a label (use [A-Za-z_][A-Za-z0-9_]*, "
                    f"not one of {', '.join(sorted(RESERVED_LABELS))})"
                )
        if len(set(self.meta_labels)) != len(self.meta_labels):
            raise PowerdError("[sinks] meta_labels lists a key twice")

    @classmethod
    def default(cls) -> LabelConfig:
        return cls(socket.gethostname())


def channel_labels(ch: Channel, host: str) -> dict[str, str]:
    """Labels of a per-channel series: ``channel`` is the full id ``[<agent>/]<probe>:<instance>``,
    ``agent`` its agent ("" for the daemon's own probes), ``probe`` the probe family."""
    agent, _, local = ch.id.rpartition("/")
    return {
        "channel": ch.id,
        "agent": agent,
        "probe": local.partition(":")[0],
        "source_class": ch.source_class,
        "host": host,
    }


def meta_value(value: Any) -> str:
    """A meta value as a label value: JSON spelling for booleans, "" for null."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def phase_labels(run: str, entry: dict[str, Any], labels: LabelConfig) -> dict[str, str]:
    """Labels of a phase series: run, phase, trial, unit, host and the allowed meta keys (""
    when the phase lacks one, so every series of a family has the same label names)."""
    meta = entry.get("meta") or {}
    out = {
        "run": run,
        "phase": str(entry["phase"]),
        "trial": str(entry["trial"]),
        "unit": str(entry.get("unit") or ""),
        "host": labels.host,
    }
    for key in labels.meta_labels:
        out[key] = meta_value(meta.get(key))
    return out


def flag_labels(run: str, entry: dict[str, Any], flag: str, host: str) -> dict[str, str]:
    return {
        "run": run,
        "phase": str(entry["phase"]),
        "trial": str(entry["trial"]),
        "flag": flag,
        "host": host,
    }


# --- live figures a scrape reads -------------------------------------------------------------


@dataclass(frozen=True)
class SinkStats:
    """A sink's counts of samples (field values: what VictoriaMetrics stores one by one) written
    to the store, dropped (buffer full), rejected (the store refused the data itself), and the
    bytes waiting in its disk buffer."""

    sink: str
    written: int
    dropped: int
    rejected: int
    buffer_bytes: int


class LiveSource(Protocol):
    """What the exporter reads beyond the Daemon: the sink hub (``powerd.sinks.hub.SinkHub``)."""

    @property
    def labels(self) -> LabelConfig: ...

    def energy_totals_j(self) -> dict[str, float]: ...

    def recent_results(self) -> list[dict[str, Any]]: ...

    def probe_health(self) -> list[tuple[str, ProbeHealth]]: ...

    def sink_stats(self) -> list[SinkStats]: ...

    def blocks_dropped(self) -> int: ...


# --- the Prometheus collector ----------------------------------------------------------------

NS_PER_S = 1e9

# outcome label -> Daemon.counts key; every outcome is exported (0 until it happens) so that
# rate() over a series works from the first scrape.
MARKER_OUTCOMES = {
    "applied": "markers_applied",
    "rejected": "markers_rejected",
    "repeated": "markers_repeated",
}
BLOCK_OUTCOMES = {
    "accepted": "blocks_accepted",
    "repeated": "blocks_repeated",
    "malformed": "blocks_malformed",
    "unknown_channel": "blocks_unknown_channel",
}


def _strip_total(name: str) -> str:
    """CounterMetricFamily appends ``_total`` itself; names above carry it for grep-ability."""
    return name.removesuffix("_total")


def _values(labels: dict[str, str], names: tuple[str, ...]) -> list[str]:
    return [labels[n] for n in names]


class DaemonCollector(Collector):
    """Reads power, energy, recent phase figures, probe and sink health and the daemon's counters
    at each scrape. ``live`` defaults to ``daemon.live_metrics`` (set by ``powerd run``); without
    it only what the Daemon itself knows is exported."""

    def __init__(self, daemon: Daemon, live: LiveSource | None = None) -> None:
        self.daemon = daemon
        self.live = live

    def collect(self) -> Iterator[Metric]:
        d = self.daemon
        live = self.live or d.live_metrics
        labels = live.labels if live is not None else LabelConfig.default()
        channels = dict(d.timeline.channels)

        power = GaugeMetricFamily(
            POWER_WATTS,
            "Latest power per channel in W (a counter channel: its rate over the last two samples)",
            labels=CHANNEL_LABELS,
        )
        # No explicit sample timestamps: Prometheus discourages them (they defeat staleness).
        for cid, latest in sorted(d.channels_latest().items()):
            if cid in channels:
                power.add_metric(
                    _values(channel_labels(channels[cid], labels.host), CHANNEL_LABELS),
                    float(latest["power_w"]),
                )
        yield power
        if live is not None:
            yield from self._live(live, labels, channels)
        yield from self._counts()

    def _live(
        self, live: LiveSource, labels: LabelConfig, channels: dict[str, Channel]
    ) -> Iterator[Metric]:
        energy = CounterMetricFamily(
            _strip_total(ENERGY_JOULES_TOTAL),
            "Energy per channel since the daemon started, in J (powerd's integrator: trapezoid "
            "for power, the unwrapped difference for counters)",
            labels=CHANNEL_LABELS,
        )
        for cid, joules in sorted(live.energy_totals_j().items()):
            if cid in channels:
                energy.add_metric(
                    _values(channel_labels(channels[cid], labels.host), CHANNEL_LABELS), joules
                )
        yield energy

        phase_names = (*PHASE_LABELS, *labels.meta_labels)
        figures = {
            name: GaugeMetricFamily(name, PHASE_HELP[name], labels=phase_names)
            for name in PHASE_FIGURES
        }
        flags = GaugeMetricFamily(
            PHASE_FLAG, "1 for each quality flag of a phase of a recent run", labels=FLAG_LABELS
        )
        for result in live.recent_results():
            run = str(result["run"])
            for entry in result["phases"]:
                values = _values(phase_labels(run, entry, labels), phase_names)
                for name, key in PHASE_FIGURES.items():
                    if entry.get(key) is not None:
                        figures[name].add_metric(values, float(entry[key]))
                for flag in dict.fromkeys(entry.get("flags") or ()):
                    flags.add_metric(
                        _values(flag_labels(run, entry, str(flag), labels.host), FLAG_LABELS), 1.0
                    )
        yield from figures.values()
        yield flags

        health = list(live.probe_health())
        for name, attr in PROBE_FIGURES.items():
            family = CounterMetricFamily(_strip_total(name), PROBE_HELP[name], labels=PROBE_LABELS)
            for spec, h in health:
                family.add_metric([spec, labels.host], getattr(h, attr))
            yield family
        up = GaugeMetricFamily(
            PROBE_UP,
            "1 while a local probe is open and sampling; 0 while it has not opened yet (retried "
            "with backoff), its reads keep failing, or its link is down (a serial unplug)",
            labels=PROBE_LABELS,
        )
        for spec, h in health:
            up.add_metric([spec, labels.host], 1.0 if h.up else 0.0)
        yield up

        points = CounterMetricFamily(
            _strip_total(SINK_SAMPLES_TOTAL),
            "Samples (field values) a sink handled, by outcome: written to the store, dropped "
            "because its disk buffer was full, rejected by the store as invalid",
            labels=["sink", "outcome"],
        )
        buffered = GaugeMetricFamily(
            SINK_BUFFER_BYTES, "Bytes waiting in a sink's disk buffer", labels=["sink"]
        )
        for s in live.sink_stats():
            points.add_metric([s.sink, "written"], s.written)
            points.add_metric([s.sink, "dropped"], s.dropped)
            points.add_metric([s.sink, "rejected"], s.rejected)
            buffered.add_metric([s.sink], s.buffer_bytes)
        yield points
        yield buffered
        yield CounterMetricFamily(
            _strip_total(SINK_BLOCKS_DROPPED_TOTAL),
            "Sample blocks the sinks skipped because their queue was full (the store keeps them)",
            value=live.blocks_dropped(),
        )

    def _counts(self) -> Iterator[Metric]:
        d = self.daemon
        counts = dict(d.counts)
        markers = CounterMetricFamily(
            _strip_total(MARKERS_TOTAL),
            "Phase markers received, by outcome (applied, rejected as invalid, repeated seq)",
            labels=["outcome"],
        )
        for outcome, key in MARKER_OUTCOMES.items():
            markers.add_metric([outcome], counts.get(key, 0))
        yield markers

        blocks = CounterMetricFamily(
            _strip_total(BLOCKS_TOTAL),
            "Sample blocks received from agents, by outcome",
            labels=["outcome"],
        )
        for outcome, key in BLOCK_OUTCOMES.items():
            blocks.add_metric([outcome], counts.get(key, 0))
        yield blocks

        yield CounterMetricFamily(
            _strip_total(SAMPLES_TOTAL),
            "Samples accepted from agents (in accepted blocks)",
            value=counts.get("samples_accepted", 0),
        )
        yield CounterMetricFamily(
            _strip_total(RESULTS_TOTAL),
            "Run results computed (contract 2), recomputations included",
            value=counts.get("results", 0),
        )

        offset = GaugeMetricFamily(
            AGENT_CLOCK_OFFSET_SECONDS,
            "Estimated offset of the agent's clock: daemon time minus agent time, in s",
            labels=["agent"],
        )
        uncertainty = GaugeMetricFamily(
            AGENT_CLOCK_UNCERTAINTY_SECONDS,
            "Uncertainty of the agent clock offset (half the best round trip), in s",
            labels=["agent"],
        )
        for agent, est in sorted(d.offsets_json().items()):
            offset.add_metric([agent], est["offset_ns"] / NS_PER_S)
            uncertainty.add_metric([agent], est["uncertainty_ns"] / NS_PER_S)
        yield offset
        yield uncertainty
        yield from self._health()

    def _health(self) -> Iterator[Metric]:
        snap = self.daemon.health.snapshot()
        yield GaugeMetricFamily(
            DEGRADED,
            "1 while some component is down (the reasons are on /healthz), else 0",
            value=1.0 if snap["down"] else 0.0,
        )
        up = GaugeMetricFamily(
            COMPONENT_UP,
            "0 for each component that is down now (MQTT ingestion, a probe, the store, ...)",
            labels=["component"],
        )
        for component in sorted(snap["down"]):
            up.add_metric([component], 0.0)
        yield up
        problems = CounterMetricFamily(
            _strip_total(PROBLEMS_TOTAL),
            "Problems counted by kind: malformed input, dropped data, failed writes, ...",
            labels=["kind"],
        )
        for kind, n in sorted(snap["problems"].items()):
            problems.add_metric([kind], n)
        yield problems


def registry_for(daemon: Daemon, live: LiveSource | None = None) -> CollectorRegistry:
    """A private registry holding only the daemon's collector (not the process default)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(daemon, live))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of ``registry``."""
    return generate_latest(registry)
