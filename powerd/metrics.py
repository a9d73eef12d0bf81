"""Metric names and their labels; the collector that exports them is powerd.exporter.

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
from dataclasses import dataclass
from typing import Any, Protocol

from powerd.channel import Channel
from powerd.errors import PowerdError
from powerd.runner import ProbeHealth

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
# exporter only, beyond the contract: results computed again after they were stored, by why
# (samples committed after the result: powerd.latedata; a gap reported or a run flagged after it)
RESULTS_RECOMPUTED_TOTAL = "powerd_results_recomputed_total"
# exporter only: gap edges placed with a neighbouring block's clock offset (powerd.gapedges)
GAP_EDGES_TOTAL = "powerd_gap_edges_total"
# exporter only: probe reads out of cadence on end markers (``Sampler.poll_now``), by where:
# the agents' (summed from their statuses) and the daemon's own probes'
READS_ASKED_TOTAL = "powerd_reads_asked_total"
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
# continuous efficiency (powerd.efficiency; the Grafana efficiency dashboard reads these)
EFFICIENCY_UNITS_PER_SECOND = "powerd_efficiency_units_per_second"
EFFICIENCY_POWER_WATTS = "powerd_efficiency_power_watts"
EFFICIENCY_JOULES_PER_UNIT = "powerd_efficiency_joules_per_unit"
EFFICIENCY_JOULES_PER_UNIT_UNCERTAINTY = "powerd_efficiency_joules_per_unit_uncertainty"
EFFICIENCY_UNITS_PER_JOULE = "powerd_efficiency_units_per_joule"
EFFICIENCY_IDLE_FRACTION = "powerd_efficiency_idle_fraction"
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
    EFFICIENCY_UNITS_PER_SECOND: InfluxName("powerd_efficiency", "units_per_second"),
    EFFICIENCY_POWER_WATTS: InfluxName("powerd_efficiency", "power_watts"),
    EFFICIENCY_JOULES_PER_UNIT: InfluxName("powerd_efficiency", "joules_per_unit"),
    EFFICIENCY_JOULES_PER_UNIT_UNCERTAINTY: InfluxName(
        "powerd_efficiency", "joules_per_unit_uncertainty"
    ),
    EFFICIENCY_UNITS_PER_JOULE: InfluxName("powerd_efficiency", "units_per_joule"),
    EFFICIENCY_IDLE_FRACTION: InfluxName("powerd_efficiency", "idle_fraction"),
}

# Efficiency figures per counter: metric name -> key of a counter entry of
# ``EfficiencyMonitor.figures()`` (labels device, counter, unit).
EFFICIENCY_COUNTER_FIGURES: dict[str, str] = {
    EFFICIENCY_UNITS_PER_SECOND: "units_per_s",
    EFFICIENCY_JOULES_PER_UNIT: "j_per_unit",
    EFFICIENCY_JOULES_PER_UNIT_UNCERTAINTY: "j_per_unit_uncertainty",
    EFFICIENCY_UNITS_PER_JOULE: "units_per_j",
}
# Efficiency figures per device: metric name -> key of a device entry (label device).
EFFICIENCY_DEVICE_FIGURES: dict[str, str] = {
    EFFICIENCY_POWER_WATTS: "power_w",
    EFFICIENCY_IDLE_FRACTION: "idle_fraction",
}
EFFICIENCY_HELP: dict[str, str] = {
    EFFICIENCY_UNITS_PER_SECOND: "Work rate of a serving engine counter over the last interval",
    EFFICIENCY_POWER_WATTS: "Mean power of a device's primary channels over the last interval, W",
    EFFICIENCY_JOULES_PER_UNIT: "Energy per unit of work over the last interval, J",
    EFFICIENCY_JOULES_PER_UNIT_UNCERTAINTY: "95 % uncertainty of joules_per_unit, J",
    EFFICIENCY_UNITS_PER_JOULE: "Units of work per joule over the last interval",
    EFFICIENCY_IDLE_FRACTION: "Fraction of the last interval with no work counted (0-1)",
}
EFFICIENCY_COUNTER_LABELS = ("device", "counter", "unit")
EFFICIENCY_DEVICE_LABELS = ("device",)

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
