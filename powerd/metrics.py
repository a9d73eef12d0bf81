"""Prometheus metric names and the collector that reads them off a running Daemon.

This is the one module that names metrics (the design's rule: sinks and dashboards share names), so
Grafana panels, the /metrics route and later sinks cannot drift apart. Names follow Prometheus
conventions: base units in the name (``_watts``, ``_seconds``), counters end in ``_total``.

Values are read from the Daemon at scrape time by a custom collector instead of being pushed into
global metric objects: the daemon's counters stay the single source of truth, nothing is registered
in prometheus_client's process-wide default registry (tests and ``powerd measure`` may create
several daemons in one process), and a scrape costs one pass over the daemon's state.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from powerd.daemon import Daemon

# The text format every Prometheus (2.x and 3.x) and VictoriaMetrics scrapes.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

POWER_WATTS = "powerd_power_watts"
MARKERS_TOTAL = "powerd_markers_total"
BLOCKS_TOTAL = "powerd_blocks_total"
SAMPLES_TOTAL = "powerd_samples_total"
RESULTS_TOTAL = "powerd_results_total"
AGENT_CLOCK_OFFSET_SECONDS = "powerd_agent_clock_offset_seconds"
AGENT_CLOCK_UNCERTAINTY_SECONDS = "powerd_agent_clock_uncertainty_seconds"

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

NS_PER_S = 1e9


def _strip_total(name: str) -> str:
    """CounterMetricFamily appends ``_total`` itself; names above carry it for grep-ability."""
    return name.removesuffix("_total")


class DaemonCollector(Collector):
    """Reads power, counters and agent clock offsets from a Daemon at each scrape."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        d = self.daemon
        power = GaugeMetricFamily(
            POWER_WATTS,
            "Latest power per channel in W (a counter channel: its rate over the last two samples)",
            labels=["channel"],
        )
        # No explicit sample timestamps: Prometheus discourages them (they defeat staleness).
        for channel, latest in sorted(d.channels_latest().items()):
            power.add_metric([channel], float(latest["power_w"]))
        yield power

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


def registry_for(daemon: Daemon) -> CollectorRegistry:
    """A private registry holding only the daemon's collector (not the process default)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(daemon))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of ``registry``."""
    return generate_latest(registry)
