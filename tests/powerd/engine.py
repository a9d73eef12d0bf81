"""A serving-engine stand-in for the counter tests: prometheus-client, its own registry, a real
HTTP server on a loopback port, exposing vLLM's and TGI's metric names.

Tokens are generated at a known rate: the counters are a known function of time (``tokens``),
evaluated when a scrape collects them, so a test knows exactly how many tokens were generated
between any two instants. vLLM (``vllm:generation_tokens_total``, ``vllm:prompt_tokens_total``,
``vllm:request_success_total``, labelled ``model_name``; a second model counts at another rate so
label selection matters) and TGI (``tgi_request_generated_tokens``: a histogram of generated
tokens per request, whose ``_sum`` is the tokens and ``_count`` the requests;
``tgi_request_count``). ``restart`` models an engine restart (counters from 0, a new
``process_start_time_seconds``); ``pause`` stops generation; ``stop`` takes the endpoint down.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tests.servers import free_port

MODEL = "llama-3-8b"
OTHER_MODEL = "other"
OTHER_FACTOR = 3.0  # the other model's rate, as a multiple
TOKENS_PER_REQUEST = 50
PROMPT_PER_GENERATED = 0.5


class Engine(Collector):
    """Counts ``rate_tok_s`` generated tokens per second of wall clock (time.time_ns)."""

    def __init__(self, rate_tok_s: float) -> None:
        self.rate_tok_s = rate_tok_s
        self._lock = threading.Lock()
        # generation segments: (t_start_ns, t_stop_ns or None) since the last restart
        self._segments: list[tuple[int, int | None]] = [(time.time_ns(), None)]
        self._start_s = time.time()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self._server, self._thread = start_http_server(
            self.port, addr="127.0.0.1", registry=self.registry
        )
        self.scrapes = 0

    # the known truth --------------------------------------------------------------------------

    def _generating_s(self, t_ns: int) -> float:
        total = 0
        for a, b in self._segments:
            end = t_ns if b is None else min(b, t_ns)
            total += max(0, end - a)
        return total / 1e9

    def tokens(self, t_ns: int, factor: float = 1.0) -> int:
        """Generated tokens (since the last restart) at ``t_ns``: whole tokens, as engines count."""
        with self._lock:
            return math.floor(self.rate_tok_s * factor * self._generating_s(t_ns))

    def restart(self) -> int:
        """The engine restarts: counters from 0, a new start time. Returns the restart time."""
        with self._lock:
            t = time.time_ns()
            self._segments = [(t, None)]
            self._start_s = max(time.time(), self._start_s + 1.0)
            return t

    def pause(self) -> None:
        with self._lock:
            a, b = self._segments[-1]
            if b is None:
                self._segments[-1] = (a, time.time_ns())

    def resume(self) -> None:
        with self._lock:
            self._segments.append((time.time_ns(), None))

    def stop(self) -> None:
        """The endpoint goes down (connection refused from now on)."""
        self._server.shutdown()
        self._server.server_close()

    # the exposition ---------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        now = time.time_ns()
        self.scrapes += 1
        gen = self.tokens(now)
        other = self.tokens(now, OTHER_FACTOR)
        created = self._start_s
        g = CounterMetricFamily(
            "vllm:generation_tokens",
            "Number of generation tokens processed.",
            labels=["model_name"],
        )
        g.add_metric([MODEL], gen, created=created)
        g.add_metric([OTHER_MODEL], other, created=created)
        yield g
        p = CounterMetricFamily(
            "vllm:prompt_tokens", "Number of prefill tokens processed.", labels=["model_name"]
        )
        p.add_metric([MODEL], math.floor(gen * PROMPT_PER_GENERATED), created=created)
        p.add_metric([OTHER_MODEL], math.floor(other * PROMPT_PER_GENERATED), created=created)
        yield p
        r = CounterMetricFamily(
            "vllm:request_success",
            "Count of successfully processed requests.",
            labels=["finished_reason", "model_name"],
        )
        r.add_metric(["length", MODEL], gen // TOKENS_PER_REQUEST, created=created)
        r.add_metric(["stop", MODEL], 0, created=created)
        r.add_metric(["length", OTHER_MODEL], other // TOKENS_PER_REQUEST, created=created)
        yield r
        requests = gen // TOKENS_PER_REQUEST
        h = HistogramMetricFamily(
            "tgi_request_generated_tokens", "Generated tokens per request", labels=[]
        )
        h.add_metric(
            [],
            [("10.0", 0), ("100.0", requests), ("+Inf", requests)],
            sum_value=gen,
        )
        yield h
        c = CounterMetricFamily("tgi_request_count", "Total number of requests", labels=[])
        c.add_metric([], requests)
        yield c
        yield GaugeMetricFamily(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            value=self._start_s,
        )
