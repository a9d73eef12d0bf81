"""The sink hub: blocks and results in from the daemon, energy totals and sink feeds out.

The daemon's threads (sampler, MQTT, housekeeping) only put blocks and results on a bounded
queue; one worker thread, ten times a second, integrates energy per channel
(``EnergyIntegrator``), remembers the recent results and probe health for ``/metrics`` and feeds
every sink. So a slow or unreachable store never delays sampling, and a full queue skips blocks
for the sinks only (counted; the daemon's own store has them all).
"""

from __future__ import annotations

import queue
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from powerd.block import Block, concat
from powerd.channel import Channel
from powerd.daemon import Daemon
from powerd.metrics import LabelConfig, SinkStats
from powerd.runner import ProbeHealth
from powerd.sinks.energy import EnergyIntegrator, Increments
from powerd.store import Store

QUEUE_MAX = 1 << 16
TICK_S = 0.1
STOP_TIMEOUT_S = 15.0

HealthSource = Callable[[], list[tuple[str, ProbeHealth]]]


def _log(text: str) -> None:
    print(f"powerd: {text}", file=sys.stderr, flush=True)


class Sink(Protocol):
    """A destination for the hub's data; every method runs on the hub's worker thread."""

    name: str

    def on_samples(self, ch: Channel, inc: Increments) -> None: ...

    def on_result(self, result: dict[str, Any]) -> None: ...

    def tick(self, now_ns: int, health: list[tuple[str, ProbeHealth]]) -> None: ...

    def close(self) -> None: ...

    def stats(self) -> SinkStats: ...


class TeeSink:
    """The sampler's BlockSink: the store, plus the hub for every sampled block.

    The first block of each channel in this process closes the daemon's own downtime: when the
    store holds older samples of the channel (a restart, a kill), the time between the newest
    of them and this block is recorded as a ``daemon_down`` gap, since nothing sampled it."""

    def __init__(self, store: Store, on_block: Callable[[Block], None]) -> None:
        self.store, self.on_block = store, on_block
        self._seen: set[str] = set()

    def put_channel(self, ch: Channel) -> None:
        self.store.put_channel(ch)

    def append(self, block: Block) -> None:
        if block.channel not in self._seen and len(block):
            self._seen.add(block.channel)
            last_ns = self.store.last_sample_ns(block.channel)
            if last_ns is not None and last_ns < int(block.t_ns[0]):
                self.store.put_gap(block.channel, last_ns, int(block.t_ns[0]), "daemon_down")
        self.store.append(block)
        self.on_block(block)

    def flush(self) -> int:
        return self.store.flush()

    def put_clock_step(self, mono_ns: int, utc_ns: int, step_ns: int) -> None:
        self.store.put_clock_step(mono_ns, utc_ns, step_ns)


class SinkHub:
    """Fans the daemon's data out to ``sinks`` on one worker thread; the exporter's LiveSource."""

    def __init__(
        self,
        daemon: Daemon,
        labels: LabelConfig,
        sinks: list[Sink] | None = None,
        recent_runs: int = 10,
        queue_max: int = QUEUE_MAX,
    ) -> None:
        self.daemon = daemon
        self._labels = labels
        self.sinks = list(sinks or [])
        self.recent_runs = recent_runs
        self.energy = EnergyIntegrator()
        self.queue_max = queue_max
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._queued_blocks = 0
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._health: HealthSource = list
        self._blocks_dropped = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # wiring -------------------------------------------------------------------------------------

    def attach(self, health: HealthSource | None = None) -> None:
        """Listen to the daemon (agent blocks, results) and serve its /metrics live figures.
        The daemon's own probes reach ``on_block`` through a ``TeeSink`` given to the Sampler."""
        if health is not None:
            self._health = health
        self.daemon.block_listeners.append(self.on_block)
        self.daemon.result_listeners.append(self.on_result)
        self.daemon.live_metrics = self

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="powerd-sinks", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Process what is queued, then close the sinks (each flushes what it holds)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # listeners: called on the daemon's threads, must only enqueue --------------------------------

    def on_block(self, block: Block) -> None:
        with self._lock:
            if self._queued_blocks >= self.queue_max:
                self._blocks_dropped += 1
                return
            self._queued_blocks += 1
        self._queue.put(("block", block))

    def on_result(self, result: dict[str, Any]) -> None:
        # never skipped (the queue bounds blocks only): results are rare, small, and the point
        self._queue.put(("result", result))

    def on_efficiency(self, figures: dict[str, Any]) -> None:
        """One closed interval of ``powerd.efficiency`` for the sinks that take it."""
        self._queue.put(("efficiency", figures))

    # the worker ----------------------------------------------------------------------------------

    def _run(self) -> None:
        """Every ``TICK_S``: take all that is queued, a channel's blocks joined into one (so the
        per-block cost is paid ~10 times a second per channel, not per sampler read), then tick."""
        while True:
            stopping = self._stopping.wait(TICK_S)
            self._drain()
            self._tick()
            if stopping:
                break
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as err:
                _log(f"sinks: closing {sink.name}: {type(err).__name__}: {err}")

    def _drain(self) -> None:
        by_channel: dict[str, list[Block]] = {}
        results: list[dict[str, Any]] = []
        efficiency: list[dict[str, Any]] = []
        while True:
            try:
                kind, item = self._queue.get_nowait()
            except queue.Empty:
                break
            if kind == "block":
                by_channel.setdefault(item.channel, []).append(item)
            elif kind == "efficiency":
                efficiency.append(item)
            else:
                results.append(item)
        with self._lock:
            self._queued_blocks -= sum(len(b) for b in by_channel.values())
        for cid, blocks in by_channel.items():
            t, v = concat([b.t_ns for b in blocks], [b.value for b in blocks])
            self._guarded("block", self._block, Block(cid, t, v))
        for result in results:
            self._guarded("result", self._result, result)
        for fig in efficiency:
            for sink in self.sinks:
                take = getattr(sink, "on_efficiency", None)
                if take is not None:
                    self._guarded("efficiency", take, fig)

    @staticmethod
    def _guarded(what: str, fn: Callable[[Any], None], item: Any) -> None:
        try:
            fn(item)
        except Exception as err:  # a bug in one sink must not stop the others or the daemon
            _log(f"sinks: {what}: {type(err).__name__}: {err}")

    def _block(self, block: Block) -> None:
        ch = self.daemon.timeline.channels.get(block.channel)
        if ch is None:
            return
        inc = self.energy.feed(ch, block)
        if inc is None:
            return
        for sink in self.sinks:
            sink.on_samples(ch, inc)

    def _result(self, result: dict[str, Any]) -> None:
        with self._lock:
            self._recent.pop(result["run"], None)
            self._recent[result["run"]] = result
            while len(self._recent) > self.recent_runs:
                self._recent.popitem(last=False)
        for sink in self.sinks:
            sink.on_result(result)

    def _tick(self) -> None:
        now = self.daemon.clock()
        health = self._health()
        for sink in self.sinks:
            try:
                sink.tick(now, health)
            except Exception as err:
                _log(f"sinks: {sink.name}: {type(err).__name__}: {err}")

    # LiveSource (read by the /metrics collector on the API's thread) --------------------------

    @property
    def labels(self) -> LabelConfig:
        return self._labels

    def energy_totals_j(self) -> dict[str, float]:
        return self.energy.totals_j()

    def recent_results(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._recent.values())

    def probe_health(self) -> list[tuple[str, ProbeHealth]]:
        return self._health()

    def sink_stats(self) -> list[SinkStats]:
        return [sink.stats() for sink in self.sinks]

    def blocks_dropped(self) -> int:
        with self._lock:
            return self._blocks_dropped
