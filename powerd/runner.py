"""The sampler: polls each open probe at its own interval and feeds timeline and store.

One thread serves all probes (they are cheap, non-blocking reads here); each probe keeps its own
deadline. A probe that raises is counted and retried at its next deadline, never stopping
the others.
The store is flushed about once a second, so a crash loses at most that much buffered data.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from powerd.block import Block
from powerd.channel import Channel
from powerd.timebase import TimeAnchor
from powerd.timeline import Timeline
from probes.base import Probe

FLUSH_INTERVAL_S = 1.0
ANCHOR_CHECK_S = 1.0


@dataclass
class ProbeHealth:
    """What a probe did so far: reads, samples, and its last error."""

    reads: int = 0
    samples: int = 0
    errors: int = 0
    last_error: str = ""
    problems: int = 0
    recent_problems: deque[str] = field(default_factory=lambda: deque(maxlen=5))


class BlockSink(Protocol):
    """Where sampled blocks go: the daemon's Store, or the agent's publisher."""

    def put_channel(self, ch: Channel) -> None: ...

    def append(self, block: Block) -> None: ...

    def flush(self) -> int: ...

    def put_clock_step(self, mono_ns: int, utc_ns: int, step_ns: int) -> None: ...


@dataclass
class Sampler:
    probes: list[Probe]
    timeline: Timeline | None
    store: BlockSink
    anchor: TimeAnchor
    flush_interval_s: float = FLUSH_INTERVAL_S
    health: list[ProbeHealth] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        for probe in self.probes:
            for ch in probe.channels():
                if self.timeline is not None:
                    self.timeline.add_channel(ch)
                self.store.put_channel(ch)
        self.health = [ProbeHealth() for _ in self.probes]
        for probe in self.probes:
            start = getattr(probe, "start", None)
            if callable(start):
                start(self.anchor.utc_ns)
        self._thread = threading.Thread(target=self._run, name="powerd-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.store.flush()

    def poll_once(self, i: int) -> None:
        probe, health = self.probes[i], self.health[i]
        try:
            blocks = probe.read(self.anchor.utc_ns())
        except Exception as err:
            health.errors += 1
            health.last_error = f"{type(err).__name__}: {err}"
            return
        health.reads += 1
        for problem in probe.problems():
            health.problems += 1
            health.recent_problems.append(problem)
        for block in blocks:
            health.samples += len(block)
            if self.timeline is not None:
                self.timeline.append(block)
            self.store.append(block)

    def _run(self) -> None:
        mono = time.monotonic
        now = mono()
        due = [now] * len(self.probes)
        next_flush = now + self.flush_interval_s
        next_anchor = now + ANCHOR_CHECK_S
        while not self._stop.is_set():
            now = mono()
            for i, probe in enumerate(self.probes):
                if now >= due[i]:
                    self.poll_once(i)
                    due[i] = max(due[i] + probe.poll_interval_s, now)
            if now >= next_anchor:
                step = self.anchor.check()
                if step is not None:
                    self.store.put_clock_step(step.mono_ns, step.utc_ns, step.step_ns)
                next_anchor = now + ANCHOR_CHECK_S
            if now >= next_flush:
                self.store.flush()
                next_flush = now + self.flush_interval_s
            wait = min([*due, next_flush, next_anchor]) - mono()
            if wait > 0:
                self._stop.wait(wait)
        for i in range(len(self.probes)):
            self.poll_once(i)
