"""Counts of work from a serving engine's Prometheus counters (vLLM, TGI, Triton, ...).

A *counter spec* names one counter of a Prometheus text endpoint and a label selection::

    prom:http://host:8000/metrics#vllm:generation_tokens_total{model_name="llama"}

The part after ``#`` is a sample name as it appears in the exposition (``..._total`` for a
counter, ``..._sum`` / ``..._count`` for a histogram such as TGI's
``tgi_request_generated_tokens``) or a counter's family name (then its ``_total`` sample is
meant), followed by optional ``label="value"`` matchers (exact equality). Every series whose
labels match is summed. The exposition is parsed with prometheus_client's parser, never by hand.

Read time: a read is bracketed by the clock before the request is sent and after the response
is in; it is stamped at the midpoint with half the bracket as its uncertainty (the engine took its
values somewhere inside the bracket).

Resets: an engine restart sets its counters back to 0. A reset is detected when the summed value
falls, when ``process_start_time_seconds`` changes, or when a matched series' ``_created``
stamp changes. ``CounterTrack`` accumulates increases across reads, so the count across a reset
is the increase before it (up to the last read before the restart) plus the value after it
(counted from 0); what happened between the last read before the reset and the restart itself
is unknown: ``lost_bound`` bounds it by the mean rate seen so far times that gap, and the count
is flagged ``counter_reset``.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from powerd.errors import PowerdError

PREFIX = "prom:"
DEFAULT_TIMEOUT_S = 2.0
MAX_BYTES = 16 << 20  # an exposition larger than this is refused (a wrong URL, not metrics)
START_TIME_METRIC = "process_start_time_seconds"
_METRIC_RE = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*$")
_LABEL_RE = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


class CounterError(PowerdError):
    """A counter could not be read: endpoint unreachable, bad reply, no matching series."""


@dataclass(frozen=True)
class CounterSpec:
    """One counter: endpoint URL, sample name, label matchers (all must be equal)."""

    url: str
    metric: str
    labels: tuple[tuple[str, str], ...] = ()
    text: str = ""

    @classmethod
    def parse(cls, spec: str) -> CounterSpec:
        """``prom:<url>#<metric>{label="v",...}``; CounterError says what is wrong."""
        if not spec.startswith(PREFIX):
            raise CounterError(f"counter {spec!r}: must start with {PREFIX!r}")
        url, sep, selector = spec[len(PREFIX) :].partition("#")
        if not sep or not url.startswith(("http://", "https://")):
            raise CounterError(
                f'counter {spec!r}: expected prom:http(s)://host:port/metrics#metric{{label="v"}}'
            )
        metric, brace, rest = selector.partition("{")
        metric = metric.strip()
        if not _METRIC_RE.match(metric):
            raise CounterError(f"counter {spec!r}: bad metric name {metric!r}")
        labels: list[tuple[str, str]] = []
        if brace:
            if not rest.endswith("}"):
                raise CounterError(f"counter {spec!r}: label selection must end with }}")
            body = rest[:-1]
            pos = 0
            while pos < len(body.rstrip()):
                m = _LABEL_RE.match(body, pos)
                if m is None:
                    raise CounterError(
                        f'counter {spec!r}: bad label matcher at {body[pos:]!r} (use name="v")'
                    )
                value = m.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                labels.append((m.group(1), value))
                pos = m.end()
        return cls(url, metric, tuple(sorted(labels)), spec)

    @property
    def selector(self) -> str:
        """The metric and its matchers, as written after ``#``."""
        if not self.labels:
            return self.metric
        inner = ",".join(f'{k}="{v}"' for k, v in self.labels)
        return f"{self.metric}{{{inner}}}"


@dataclass(frozen=True)
class Reading:
    """One read: the summed value, stamped at the bracket's midpoint (daemon clock, ns) with
    half the bracket as uncertainty; the engine's start time and the matched series' ``_created``
    stamps (None where the engine exports none), to detect restarts."""

    value: float
    t_ns: int
    uncertainty_ns: int
    series: int
    start_time_s: float | None
    created: tuple[float, ...] = ()


def _matches(labels: dict[str, str], wanted: tuple[tuple[str, str], ...]) -> bool:
    return all(labels.get(k) == v for k, v in wanted)


def select(text: str, spec: CounterSpec) -> tuple[float, int, float | None, tuple[float, ...]]:
    """(sum, matched series, process start time, _created stamps) of ``spec`` in an exposition."""
    total = 0.0
    n = 0
    start: float | None = None
    created: list[float] = []
    total_name = spec.metric if spec.metric.endswith("_total") else f"{spec.metric}_total"
    base = spec.metric.removesuffix("_total").removesuffix("_sum").removesuffix("_count")
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, TypeError, IndexError) as err:
        raise CounterError(f"{spec.url}: not a Prometheus text exposition: {err}") from None
    for fam in families:
        for s in fam.samples:
            if s.name == START_TIME_METRIC:
                start = float(s.value)
            elif s.name in (spec.metric, total_name) and (
                s.name == spec.metric or fam.type == "counter"
            ):
                if _matches(s.labels, spec.labels):
                    total += float(s.value)
                    n += 1
            elif s.name == f"{base}_created" and _matches(s.labels, spec.labels):
                created.append(float(s.value))
    return total, n, start, tuple(sorted(created))


def fetch(url: str, timeout_s: float) -> str:
    """The body of ``url`` as text; CounterError on any failure (message says which)."""
    req = urllib.request.Request(url, headers={"Accept": "text/plain;version=0.0.4"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as reply:
            body: bytes = reply.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as err:
        raise CounterError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise CounterError(f"{url}: unreachable: {reason}") from None
    if len(body) > MAX_BYTES:
        raise CounterError(f"{url}: reply larger than {MAX_BYTES} bytes")
    return body.decode("utf-8", errors="replace")


def read_counter(
    spec: CounterSpec,
    clock_ns: Callable[[], int] = time.time_ns,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    text: str | None = None,
) -> Reading:
    """Read ``spec`` now. ``text`` (tests, or several counters of one endpoint) skips the fetch
    and must come with its own bracket; normally the request is bracketed here."""
    t0 = clock_ns()
    body = fetch(spec.url, timeout_s) if text is None else text
    t1 = clock_ns()
    value, n, start, created = select(body, spec)
    if n == 0:
        raise CounterError(f"{spec.url}: no series matches {spec.selector}")
    return Reading(value, (t0 + t1) // 2, (t1 - t0 + 1) // 2, n, start, created)


def read_endpoint(
    specs: list[CounterSpec], clock_ns: Callable[[], int], timeout_s: float
) -> dict[CounterSpec, Reading | CounterError]:
    """All ``specs`` of ONE endpoint from one fetch (one bracket for all of them)."""
    urls = {s.url for s in specs}
    assert len(urls) == 1, urls
    t0 = clock_ns()
    try:
        body = fetch(specs[0].url, timeout_s)
    except CounterError as err:
        return dict.fromkeys(specs, err)
    t1 = clock_ns()
    out: dict[CounterSpec, Reading | CounterError] = {}
    for spec in specs:
        try:
            value, n, start, created = select(body, spec)
            if n == 0:
                raise CounterError(f"{spec.url}: no series matches {spec.selector}")
            out[spec] = Reading(value, (t0 + t1) // 2, (t1 - t0 + 1) // 2, n, start, created)
        except CounterError as err:
            out[spec] = err
    return out


def is_reset(before: Reading, after: Reading) -> bool:
    """Whether the engine's counter restarted between two reads."""
    if after.value < before.value:
        return True
    if (
        before.start_time_s is not None
        and after.start_time_s is not None
        and after.start_time_s != before.start_time_s
    ):
        return True
    return bool(before.created and after.created and before.created != after.created)


@dataclass
class CounterTrack:
    """The increase of one counter since a first read, across resets.

    ``feed`` each read in time order. ``increase`` is the count so far; ``resets`` how many
    restarts were seen; ``lost_bound`` bounds the units the reads could not see (between the last
    read before a restart and the restart): the mean rate seen so far times that gap."""

    first: Reading
    last: Reading
    increase: float = 0.0
    resets: int = 0
    lost_bound: float = 0.0
    idle_ns: int = 0  # time between consecutive reads with no increase

    @classmethod
    def start(cls, reading: Reading) -> CounterTrack:
        return cls(reading, reading)

    def feed(self, reading: Reading) -> float:
        """Add one read; returns the increase since the previous read."""
        prev = self.last
        if is_reset(prev, reading):
            self.resets += 1
            step = reading.value  # a restarted counter counts from 0
            span_s = max(prev.t_ns - self.first.t_ns, 1) / 1e9
            rate = self.increase / span_s if self.increase > 0 else 0.0
            gap_s = max(reading.t_ns - prev.t_ns, 0) / 1e9
            self.lost_bound += rate * gap_s
        else:
            step = reading.value - prev.value
        if step == 0:
            self.idle_ns += max(reading.t_ns - prev.t_ns, 0)
        self.increase += step
        self.last = reading
        return step

    @property
    def duration_ns(self) -> int:
        return self.last.t_ns - self.first.t_ns

    @property
    def rate_per_s(self) -> float | None:
        """Mean rate between the first and the last read (None before a second read)."""
        d = self.duration_ns
        return None if d <= 0 else self.increase / (d / 1e9)
