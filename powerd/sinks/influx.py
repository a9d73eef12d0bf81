"""The InfluxDB sink: line protocol through ``influxdb-client`` to InfluxDB 2/3 or VictoriaMetrics.

What is written (names and labels from ``powerd.metrics``; VictoriaMetrics names a series
``<measurement>_<field>``):

- ``powerd_power watts`` and ``powerd_energy joules_total`` per channel: with ``downsample_s > 0``
  one point per channel per interval, stamped at the interval's end (``k × downsample_s`` UTC,
  so the stamps are the same on every daemon): the mean power of the sample intervals ending in it
  (energy ÷ time) and the channel's cumulative energy at its last sample; with ``downsample_s = 0``
  every sample (a counter channel: its rate over each interval) and the energy at each block's end.
- ``powerd_phase`` per phase of each result, stamped at the phase's end: the primary figures, and
  one ``flag`` point per quality flag. A recomputed result writes only phases whose figures
  changed, 1 ms later per revision, so the newest figures are the latest point in every store
  (VictoriaMetrics keeps milliseconds).
- ``powerd_probe`` per local probe every ``health_interval_s``: reads, errors and problems.

Delivery: the hub's thread formats points and appends batches (``batch_size`` lines, at least every
``flush_interval_s``) to a ``DiskBuffer``; a sender thread writes the oldest batch, deletes it only
once the store answered 2xx, and while the store is unreachable retries with backoff, so the
backlog goes out in order and nothing is sent twice unless a write's answer is lost after the store
took it (a timeout). Every point has a fixed timestamp, so such a resend overwrites in InfluxDB; in
VictoriaMetrics it is a duplicate sample unless it runs with ``-dedup.minScrapeInterval=1ms``.
A batch the store refuses as malformed (400) is dropped and counted, never retried forever.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from powerd.channel import Channel
from powerd.errors import PowerdError
from powerd.metrics import (
    EFFICIENCY_COUNTER_FIGURES,
    EFFICIENCY_DEVICE_FIGURES,
    EFFICIENCY_POWER_WATTS,
    ENERGY_JOULES_TOTAL,
    INFLUX,
    PHASE_FIGURES,
    PHASE_FLAG,
    POWER_WATTS,
    PROBE_FIGURES,
    LabelConfig,
    SinkStats,
    channel_labels,
    flag_labels,
    phase_labels,
)
from powerd.runner import ProbeHealth
from powerd.sinks.buffer import DiskBuffer
from powerd.sinks.energy import Increments
from powerd.sinks.settings import InfluxSettings

BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0
SEND_AHEAD = 16
CLOSE_DRAIN_MAX_S = 5.0
WRITTEN_PHASES_MAX = 4096

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)


def _log(text: str) -> None:
    print(f"powerd: {text}", file=sys.stderr, flush=True)


# --- line protocol ------------------------------------------------------------------------------


def series_prefix(measurement: str, tags: dict[str, str]) -> str:
    """``measurement,k=v,...`` with escaping as influxdb-client's Point does it; tags sorted by
    key (InfluxDB's preferred order) and empty values left out (line protocol has none: an absent
    label is "" in PromQL)."""
    parts = [measurement.translate(_ESCAPE_MEASUREMENT)]
    for key in sorted(tags):
        if tags[key] != "":
            parts.append(f"{key.translate(_ESCAPE_KEY)}={tags[key].translate(_ESCAPE_KEY)}")
    return ",".join(parts)


def line(prefix: str, fields: dict[str, float], t_ns: int) -> str | None:
    """One line of float fields at ``t_ns``; non-finite values are left out (None if none is
    left: line protocol cannot carry NaN or infinity)."""
    body = ",".join(
        f"{k.translate(_ESCAPE_KEY)}={float(v)!r}" for k, v in fields.items() if math.isfinite(v)
    )
    return f"{prefix} {body} {int(t_ns)}" if body else None


def values_in(line: str) -> int:
    """Field values in one of our lines: what VictoriaMetrics stores as separate samples (our
    field sets hold no spaces, so the field set is the second-last space-separated part)."""
    return line.rsplit(" ", 2)[1].count(",") + 1


# --- down-sampling ----------------------------------------------------------------------------


@dataclass
class _Bucket:
    index: int
    energy_j: float = 0.0
    dt_ns: int = 0
    power_sum_w: float = 0.0
    samples: int = 0
    total_j: float = 0.0


@dataclass(frozen=True)
class Downsampled:
    """One interval of one channel: mean power (None without an interval inside) and energy."""

    t_ns: int
    mean_power_w: float | None
    total_j: float


class Downsampler:
    """Folds a channel's increments into fixed intervals ``[k·step, (k+1)·step)`` of UTC, by the
    time each sample interval ends; an interval is emitted once a later one starts (or at close),
    so it is emitted exactly once."""

    def __init__(self, step_ns: int) -> None:
        self.step_ns = step_ns
        self._open: _Bucket | None = None

    def add(self, inc: Increments) -> list[Downsampled]:
        idx = inc.t_ns // self.step_ns
        starts = np.flatnonzero(np.concatenate([[True], idx[1:] != idx[:-1]]))
        ends = np.concatenate([starts[1:], [idx.size]]) - 1
        e_sum = np.add.reduceat(inc.energy_j, starts)
        dt_sum = np.add.reduceat(inc.dt_ns, starts)
        p_sum = np.add.reduceat(inc.power_w, starts)
        out: list[Downsampled] = []
        for i, s in enumerate(starts.tolist()):
            k = int(idx[s])
            b = self._open
            if b is None or b.index != k:
                if b is not None:
                    out.append(self._emit(b))
                b = self._open = _Bucket(k)
            b.energy_j += float(e_sum[i])
            b.dt_ns += int(dt_sum[i])
            b.power_sum_w += float(p_sum[i])
            b.samples += int(ends[i] - s + 1)
            b.total_j = float(inc.total_j[ends[i]])
        return out

    def close(self) -> list[Downsampled]:
        b, self._open = self._open, None
        return [] if b is None else [self._emit(b)]

    def _emit(self, b: _Bucket) -> Downsampled:
        if b.dt_ns > 0:
            mean: float | None = b.energy_j / (b.dt_ns / 1e9)
        else:  # only the first sample a channel ever sent: its reading
            mean = b.power_sum_w / b.samples if b.samples else None
        return Downsampled((b.index + 1) * self.step_ns, mean, b.total_j)


# --- writing ----------------------------------------------------------------------------------


class Writer(Protocol):
    """Sends one batch of line protocol; raises ``WriteError``."""

    def write(self, payload: bytes) -> None: ...

    def close(self) -> None: ...


class WriteError(Exception):
    """A write failed; ``permanent`` if the store refused the data itself (retrying is futile)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class InfluxWriter:
    """``influxdb-client``'s synchronous v2 write API (``POST /api/v2/write``, precision ns);
    asynchrony comes from the sink's own sender thread, retries from its disk buffer."""

    def __init__(self, settings: InfluxSettings) -> None:
        try:
            from influxdb_client.client.influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS
        except ImportError:
            raise PowerdError(
                "[influx] needs the influxdb-client package: pip install 'powerd[influx]'"
            ) from None
        self.settings = settings
        self.client = InfluxDBClient(
            url=settings.url,
            token=settings.token() or "",  # "" sends no Authorization header
            org=settings.org,
            timeout=int(settings.timeout_s * 1000),
        )
        self.api = self.client.write_api(write_options=SYNCHRONOUS)

    def write(self, payload: bytes) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self.api.write(
                bucket=self.settings.bucket,
                org=self.settings.org,
                record=payload,
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]  # a str constant
            )
        except ApiException as err:
            status = int(err.status or 0)
            reason = (str(err.body or err.reason or "")).strip()[:300]
            raise WriteError(f"HTTP {status}: {reason}", permanent=status in (400, 413)) from None
        except Exception as err:  # connection refused, reset, timeout (urllib3, OSError)
            raise WriteError(f"{type(err).__name__}: {err}") from None

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]


# a recomputed phase's points move this much later per revision (VictoriaMetrics stores ms)
REVISION_STEP_NS = 1_000_000


class InfluxSink:
    """Formats the hub's data as line protocol and delivers it in order through a disk buffer."""

    name = "influx"

    def __init__(
        self,
        settings: InfluxSettings,
        labels: LabelConfig,
        buffer_dir: Path,
        writer: Writer | None = None,
    ) -> None:
        self.settings = settings
        self.labels = labels
        self.writer = writer if writer is not None else InfluxWriter(settings)
        self.buffer = DiskBuffer(
            buffer_dir / "influx.sqlite", int(settings.buffer_max_mb * 1024 * 1024)
        )
        self.step_ns = round(settings.downsample_s * 1e9)
        self._prefixes: dict[str, tuple[str, str]] = {}
        self._downsamplers: dict[str, Downsampler] = {}
        self._pending: list[str] = []
        self._last_spill_ns: int | None = None
        self._next_health_ns = 0
        self._written_phases: OrderedDict[tuple[str, str, int], tuple[list[str], int]] = (
            OrderedDict()
        )
        self.written = 0
        self.rejected = 0
        self._down = False
        self._failures = 0
        self._retry_now = threading.Event()
        self._stats_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._sender = threading.Thread(target=self._send_loop, name="powerd-influx", daemon=True)
        self._sender.start()
        backlog = f"; {len(self.buffer)} batches buffered from before" if len(self.buffer) else ""
        _log(f"influx: writing to {settings.url} (bucket {settings.bucket}){backlog}")

    # formatting (hub thread) --------------------------------------------------------------------

    def _prefix(self, ch: Channel) -> tuple[str, str]:
        got = self._prefixes.get(ch.id)
        if got is None:
            tags = channel_labels(ch, self.labels.host)
            power, energy = INFLUX[POWER_WATTS], INFLUX[ENERGY_JOULES_TOTAL]
            got = (
                f"{series_prefix(power.measurement, tags)} {power.field}=",
                f"{series_prefix(energy.measurement, tags)} {energy.field}=",
            )
            self._prefixes[ch.id] = got
        return got

    def on_samples(self, ch: Channel, inc: Increments) -> None:
        power_p, energy_p = self._prefix(ch)
        if self.step_ns <= 0:
            self._pending.extend(
                f"{power_p}{w!r} {t}"
                for t, w in zip(inc.t_ns.tolist(), inc.power_w.tolist(), strict=True)
                if math.isfinite(w)
            )
            self._pending.append(f"{energy_p}{float(inc.total_j[-1])!r} {int(inc.t_ns[-1])}")
            return
        ds = self._downsamplers.get(ch.id)
        if ds is None:
            ds = self._downsamplers[ch.id] = Downsampler(self.step_ns)
        self._add_downsampled(ds.add(inc), power_p, energy_p)

    def _add_downsampled(self, points: Iterable[Downsampled], power_p: str, energy_p: str) -> None:
        for p in points:
            if p.mean_power_w is not None and math.isfinite(p.mean_power_w):
                self._pending.append(f"{power_p}{p.mean_power_w!r} {p.t_ns}")
            self._pending.append(f"{energy_p}{p.total_j!r} {p.t_ns}")

    def on_result(self, result: dict[str, Any]) -> None:
        run = str(result["run"])
        for entry in result["phases"]:
            key = (run, str(entry["phase"]), int(entry["trial"]))
            t_end = int(entry["t_end_ns"])
            first = self._phase_lines(run, entry, t_end)
            prior = self._written_phases.get(key)
            if prior is not None and prior[0] == first:
                continue  # a recomputation that changed nothing: not written twice
            # A changed recomputation is stamped 1 ms later per revision: InfluxDB would overwrite
            # a point at the same time, but VictoriaMetrics keeps the larger of two values at one
            # timestamp, so the newest figures must be the latest point to be the ones shown.
            revision = 0 if prior is None else prior[1] + 1
            self._written_phases[key] = (first, revision)
            self._written_phases.move_to_end(key)
            while len(self._written_phases) > WRITTEN_PHASES_MAX:
                self._written_phases.popitem(last=False)
            self._pending.extend(
                first
                if revision == 0
                else self._phase_lines(run, entry, t_end + revision * REVISION_STEP_NS)
            )
        self._spill()  # results are few and wanted soon: no waiting for the interval

    def on_efficiency(self, fig: dict[str, Any]) -> None:
        """One closed interval of ``powerd.efficiency``: measurement ``powerd_efficiency``, the
        device's fields tagged device (and host), each counter's tagged device, counter, unit;
        a figure the interval could not give is left out, never written as 0."""
        t_ns = int(fig["t_ns"])
        device = str(fig["device"])
        measurement = INFLUX[EFFICIENCY_POWER_WATTS].measurement
        dev_fields = {
            INFLUX[name].field: float(fig[key])
            for name, key in EFFICIENCY_DEVICE_FIGURES.items()
            if fig.get(key) is not None
        }
        tags = {"device": device, "host": self.labels.host}
        lines = [line(series_prefix(measurement, tags), dev_fields, t_ns)]
        for c in fig.get("counters") or ():
            fields = {
                INFLUX[name].field: float(c[key])
                for name, key in EFFICIENCY_COUNTER_FIGURES.items()
                if c.get(key) is not None
            }
            ctags = {**tags, "counter": str(c["counter"]), "unit": str(c["unit"])}
            lines.append(line(series_prefix(measurement, ctags), fields, t_ns))
        self._pending.extend(x for x in lines if x is not None)
        self._spill()

    def _phase_lines(self, run: str, entry: dict[str, Any], t_ns: int) -> list[str]:
        """The figure point and one point per flag of one phase, stamped ``t_ns``."""
        measurement = INFLUX[PHASE_FLAG].measurement
        fields = {
            INFLUX[name].field: float(entry[key])
            for name, key in PHASE_FIGURES.items()
            if entry.get(key) is not None
        }
        lines = [
            line(series_prefix(measurement, phase_labels(run, entry, self.labels)), fields, t_ns)
        ]
        for flag in dict.fromkeys(entry.get("flags") or ()):
            tags = flag_labels(run, entry, str(flag), self.labels.host)
            lines.append(
                line(series_prefix(measurement, tags), {INFLUX[PHASE_FLAG].field: 1.0}, t_ns)
            )
        return [x for x in lines if x is not None]

    def tick(self, now_ns: int, health: list[tuple[str, ProbeHealth]]) -> None:
        if health and now_ns >= self._next_health_ns:
            step = round(self.settings.health_interval_s * 1e9)
            t = now_ns - now_ns % step
            self._next_health_ns = t + step
            measurement = INFLUX[next(iter(PROBE_FIGURES))].measurement
            for spec, h in health:
                prefix = series_prefix(measurement, {"probe": spec, "host": self.labels.host})
                fields = {INFLUX[n].field: float(getattr(h, a)) for n, a in PROBE_FIGURES.items()}
                got = line(prefix, fields, t)
                if got is not None:
                    self._pending.append(got)
        if self._last_spill_ns is None:
            self._last_spill_ns = now_ns
        if (
            len(self._pending) >= self.settings.batch_size
            or now_ns - self._last_spill_ns >= self.settings.flush_interval_s * 1e9
        ):
            self._spill()
            self._last_spill_ns = now_ns

    def _spill(self) -> None:
        """Move pending lines into the disk buffer as batches of at most ``batch_size``."""
        size = self.settings.batch_size
        pending, self._pending = self._pending, []
        for i in range(0, len(pending), size):
            chunk = pending[i : i + size]
            self.buffer.put("\n".join(chunk).encode(), sum(map(values_in, chunk)))
        if pending:
            self._wake.set()

    def close(self) -> None:
        """Emit the open intervals, buffer everything, give the sender a few seconds to deliver;
        what is still buffered then waits on disk for the next start."""
        for cid, ds in self._downsamplers.items():
            power_p, energy_p = self._prefixes[cid]
            self._add_downsampled(ds.close(), power_p, energy_p)
        self._spill()
        # one more prompt attempt, then as long as the store keeps taking batches
        failures = self._failures
        self._retry_now.set()
        deadline = time.monotonic() + CLOSE_DRAIN_MAX_S
        while len(self.buffer) and time.monotonic() < deadline and self._failures == failures:
            self._closed.wait(0.02)
        self._closed.set()
        self._wake.set()
        self._retry_now.set()
        self._sender.join(self.settings.timeout_s + 1.0)
        left = len(self.buffer)
        _log(
            f"influx: {self.written} samples written, {self.buffer.dropped_points} dropped, "
            f"{self.rejected} rejected (a sample: one field value of a line)"
            + (f"; {left} batches stay buffered in {self.buffer.path}" if left else "")
        )
        self.writer.close()
        self.buffer.close()

    # delivery (sender thread) -----------------------------------------------------------------

    def _send_loop(self) -> None:
        while not self._closed.is_set():
            try:
                self._send_some()
            except Exception as err:  # e.g. the disk buffer failing: keep the thread alive
                _log(f"influx: sender: {type(err).__name__}: {err}")
                self._closed.wait(BACKOFF_MAX_S)

    def _send_some(self) -> None:
        backoff_s = BACKOFF_FIRST_S
        while not self._closed.is_set():
            batches = self.buffer.peek(SEND_AHEAD)
            if not batches:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            for batch in batches:
                if self._closed.is_set():
                    return
                try:
                    self.writer.write(batch.payload)
                except WriteError as err:
                    if err.permanent:
                        _log(f"influx: {self.settings.url} refused {batch.points} samples: {err}")
                        with self._stats_lock:  # counted first: an empty buffer means counted
                            self.rejected += batch.points
                        self.buffer.ack(batch)
                        continue
                    self._failures += 1
                    if not self._down:
                        _log(
                            f"influx: {self.settings.url} unreachable ({err}); buffering on disk "
                            f"(at most {self.settings.buffer_max_mb:g} MB), retrying"
                        )
                        self._down = True
                    self._retry_now.wait(backoff_s)
                    self._retry_now.clear()
                    backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
                    break
                with self._stats_lock:
                    self.written += batch.points
                self.buffer.ack(batch)
                backoff_s = BACKOFF_FIRST_S
                if self._down:
                    self._down = False
                    _log(f"influx: {self.settings.url} is back; replaying the buffer in order")

    def stats(self) -> SinkStats:
        with self._stats_lock:
            written, rejected = self.written, self.rejected
        return SinkStats(
            self.name, written, self.buffer.dropped_points, rejected, self.buffer.nbytes
        )
