"""MLPerf's power figures for a phase that came from a LoadGen log, beside powerd's own.

The MLPerf checkers (power-dev ``compliance/check.py`` and the inference submission checker)
compute average power as the plain mean of the analyser's samples whose timestamps lie strictly
inside LoadGen's ``(power_begin, power_end)``, skipping samples of 0 W or less, and SingleStream /
MultiStream energy as ``avg_W × (power_end − power_begin)_s × 1000 / result_query_count`` mJ per
query. Here the same rule is applied to the samples powerd stored for the phase's primary
channels, at their full rate (not PTDaemon's 1 Hz): each primary channel's mean over its own
samples, summed over the primary channels (an energy counter contributes its rate between
consecutive readings, stamped at their midpoint). powerd's integrated energy of the same phase,
its 95 % uncertainty and the per-query figures derived from them sit in the same object, so a
reader sees both methods on one window. The two differ by design: the MLPerf mean weights every
sample alike and ignores the window's edges; powerd integrates over time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from powerd.channel import Channel
from powerd.integrate import power_trace
from powerd.mlperf.loadgen import PER_QUERY_SCENARIOS, from_meta, stamp_ns
from powerd.results import SampleSource

SAMPLES_NOTE = (
    "primary channels' stored samples strictly inside (power_begin, power_end), W > 0, at full "
    "rate; mean per channel, summed over channels"
)


def _channel_mean_w(
    ch: Channel, samples: SampleSource, begin_ns: int, end_ns: int
) -> tuple[float | None, int]:
    """MLPerf-style mean of one channel strictly inside (begin, end), W > 0; and its count."""
    pad_ns = 0 if ch.kind == "power" else int(2 * ch.nominal_period_s * 1e9)
    t, v = samples(ch.id, begin_ns - pad_ns, end_ns + pad_ns)
    t, w = power_trace(t, v, ch)
    keep = (t > begin_ns) & (t < end_ns) & (w > 0)
    n = int(np.count_nonzero(keep))
    return (float(np.mean(w[keep])) if n else None), n


def _per_query_mj(energy_j: float | None, queries: int) -> float | None:
    return energy_j * 1000.0 / queries if energy_j is not None and queries > 0 else None


def mlperf_figures(
    entry: dict[str, Any], channels: dict[str, Channel], samples: SampleSource
) -> dict[str, Any] | None:
    """The ``mlperf`` object of one contract-2 phase entry, or None if the phase has no LoadGen
    meta. Flags (``no_samples_in_window``, ``no_primary_channel``) say why a figure is null."""
    lg = from_meta(entry.get("meta") or {})
    if lg is None:
        return None
    begin_ns = stamp_ns(str(lg["power_begin"]))
    end_ns = stamp_ns(str(lg["power_end"]))
    window_s = (end_ns - begin_ns) / 1e9
    queries = int(lg.get("query_count") or 0)
    per_query = lg.get("scenario") in PER_QUERY_SCENARIOS
    primary = sorted(c for c, e in entry.get("channels", {}).items() if e.get("primary"))
    flags: list[str] = []
    means: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for c in primary:
        if c in channels:
            means[c], counts[c] = _channel_mean_w(channels[c], samples, begin_ns, end_ns)
    if not primary:
        flags.append("no_primary_channel")
    avg_w: float | None = None
    if means and all(m is not None for m in means.values()):
        avg_w = sum(m for m in means.values() if m is not None)
    elif primary:
        flags.append("no_samples_in_window")
    mlperf_energy_j = avg_w * window_s if avg_w is not None else None
    energy_j, unc_j = entry.get("energy_j"), entry.get("uncertainty_j")
    return {
        "scenario": lg.get("scenario"),
        "test_mode": lg.get("test_mode"),
        "validity": lg.get("validity"),
        "power_begin": lg["power_begin"],
        "power_end": lg["power_end"],
        "window_s": window_s,
        "avg_power_w": avg_w,
        "sample_count": sum(counts.values()),
        "sample_counts": counts,
        "samples": SAMPLES_NOTE,
        "query_count": queries,
        "samples_per_query": lg.get("samples_per_query"),
        "energy_mj_per_query": _per_query_mj(mlperf_energy_j, queries),
        "metric": "mJ/query" if per_query else "W",
        "metric_value": _per_query_mj(mlperf_energy_j, queries) if per_query else avg_w,
        "powerd_energy_j": energy_j,
        "powerd_uncertainty_j": unc_j,
        "powerd_mj_per_query": _per_query_mj(energy_j, queries),
        "powerd_mj_per_query_uncertainty": _per_query_mj(unc_j, queries),
        "powerd_mean_power_w": entry.get("mean_power_w"),
        "flags": flags,
    }
