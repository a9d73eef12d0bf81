"""The Prometheus collector that reads the metrics (names in ``powerd.metrics``) off a running
Daemon at scrape time, and the registry the ``/metrics`` route renders."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from powerd.channel import Channel
from powerd.daemon import Daemon
from powerd.metrics import (
    AGENT_CLOCK_OFFSET_SECONDS,
    AGENT_CLOCK_UNCERTAINTY_SECONDS,
    BLOCKS_TOTAL,
    CHANNEL_LABELS,
    COMPONENT_UP,
    DEGRADED,
    EFFICIENCY_COUNTER_FIGURES,
    EFFICIENCY_COUNTER_LABELS,
    EFFICIENCY_DEVICE_FIGURES,
    EFFICIENCY_DEVICE_LABELS,
    EFFICIENCY_HELP,
    ENERGY_JOULES_TOTAL,
    FLAG_LABELS,
    GAP_EDGES_TOTAL,
    MARKERS_TOTAL,
    PHASE_FIGURES,
    PHASE_FLAG,
    PHASE_HELP,
    PHASE_LABELS,
    POWER_WATTS,
    PROBE_FIGURES,
    PROBE_HELP,
    PROBE_LABELS,
    PROBE_UP,
    PROBLEMS_TOTAL,
    READS_ASKED_TOTAL,
    RESULTS_RECOMPUTED_TOTAL,
    RESULTS_TOTAL,
    SAMPLES_TOTAL,
    SINK_BLOCKS_DROPPED_TOTAL,
    SINK_BUFFER_BYTES,
    SINK_SAMPLES_TOTAL,
    LabelConfig,
    LiveSource,
    channel_labels,
    flag_labels,
    phase_labels,
)

# The text format every Prometheus (2.x and 3.x) and VictoriaMetrics scrapes.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


NS_PER_S = 1e9


# outcome label -> Daemon.counts key; every outcome is exported (0 until it happens) so that
# rate() over a series works from the first scrape.
MARKER_OUTCOMES = {
    "applied": "markers_applied",
    "rejected": "markers_rejected",
    "repeated": "markers_repeated",
}


# reason label -> Daemon.counts key of a result computed again after it was stored
RECOMPUTE_REASONS = {
    "late_data": "results_recomputed_late_data",
    "late_gap_or_flag": "results_requeued",
}
# action label -> GapEdges.counts key
GAP_EDGE_ACTIONS = {
    "snapped": "gap_edges_snapped",
    "end_moved": "gap_ends_moved",
}


BLOCK_OUTCOMES = {
    "accepted": "blocks_accepted",
    "repeated": "blocks_repeated",
    "malformed": "blocks_malformed",
    "unknown_channel": "blocks_unknown_channel",
}


def _count(value: Any) -> int:
    """A count an agent's status reports (anything else: 0; statuses come from the network)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


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
        if d.efficiency is not None:
            yield from self._efficiency(d.efficiency())

    @staticmethod
    def _efficiency(figures: list[dict[str, Any]]) -> Iterator[Metric]:
        """The last closed interval's efficiency per device and counter (powerd.efficiency);
        a figure the interval could not give is absent, never 0."""
        for name, key in EFFICIENCY_DEVICE_FIGURES.items():
            fam = GaugeMetricFamily(name, EFFICIENCY_HELP[name], labels=EFFICIENCY_DEVICE_LABELS)
            for dev in figures:
                if dev.get(key) is not None:
                    fam.add_metric([str(dev["device"])], float(dev[key]))
            yield fam
        for name, key in EFFICIENCY_COUNTER_FIGURES.items():
            fam = GaugeMetricFamily(name, EFFICIENCY_HELP[name], labels=EFFICIENCY_COUNTER_LABELS)
            for dev in figures:
                for c in dev.get("counters") or ():
                    if c.get(key) is not None:
                        labels = [str(dev["device"]), str(c["counter"]), str(c["unit"])]
                        fam.add_metric(labels, float(c[key]))
            yield fam

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
        recomputed = CounterMetricFamily(
            _strip_total(RESULTS_RECOMPUTED_TOTAL),
            "Stored results computed again, by reason: samples committed after the result "
            "(late_data), a gap reported or the run flagged after it (late_gap_or_flag)",
            labels=["reason"],
        )
        for reason, key in RECOMPUTE_REASONS.items():
            recomputed.add_metric([reason], counts.get(key, 0))
        yield recomputed
        edges = CounterMetricFamily(
            _strip_total(GAP_EDGES_TOTAL),
            "Agent gap edges placed with a neighbouring block's clock offset (snapped), and "
            "gap ends moved to a block that arrived after the report (end_moved)",
            labels=["action"],
        )
        gap_counts = dict(d.gap_edges.counts)
        for action, key in GAP_EDGE_ACTIONS.items():
            edges.add_metric([action], gap_counts.get(key, 0))
        yield edges
        asked = CounterMetricFamily(
            _strip_total(READS_ASKED_TOTAL),
            "Probe reads taken out of cadence at end markers: by the agents (summed over their "
            "latest statuses; a restarted agent counts from 0 again) and by the daemon (local)",
            labels=["source"],
        )
        asked.add_metric(
            ["agents"], sum(_count(s.get("reads_asked")) for s in list(d.agents.values()))
        )
        asked.add_metric(["local"], d.local_reads_asked() if d.local_reads_asked else 0)
        yield asked

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
