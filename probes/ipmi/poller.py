"""Call a slow fetch (a tool run, an HTTP request) at a fixed cadence on a thread of its own.

The sampler polls every probe from ONE thread, so a BMC that takes seconds to answer must not
be waited on there. A ``Poller`` runs ``fetch()`` every ``interval_s`` on a daemon thread and
keeps what it returned with the monotonic midpoint of the call; the probe's ``read`` drains the
results and maps the stamps onto UTC. A call that overruns its slot pushes the next one to the
following slot (no backlog, no burst). An exception from ``fetch`` is kept as a problem, and the
same problem repeated is reported once per ``REPEAT_EVERY_S`` with a count, so a BMC that is
down for an hour leaves a handful of lines, not thousands.

Used by the ``ipmi`` and ``redfish`` probes and the ``furiosa`` CLI fallback.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

REPEAT_EVERY_S = 60.0
STOP_WAIT_S = 2.0
MAX_KEPT = 10_000


@dataclass(frozen=True)
class Polled(Generic[T]):
    """One successful fetch: its result and when it was made (monotonic ns)."""

    mono_ns: int
    half_span_ns: int
    value: T


class Poller(Generic[T]):
    """Runs ``fetch`` every ``interval_s`` until ``stop``; see the module docstring."""

    def __init__(
        self,
        name: str,
        fetch: Callable[[], T],
        interval_s: float,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.name = name
        self._fetch = fetch
        self.interval_s = interval_s
        self._clock = clock
        self._results: collections.deque[Polled[T]] = collections.deque(maxlen=MAX_KEPT)
        self._problems: collections.deque[str] = collections.deque(maxlen=1000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"powerd-{name}", daemon=True)
        self._report_lock = threading.Lock()  # report() is called from both threads
        self._last_problem: str | None = None
        self._last_problem_mono = 0.0
        self._repeats = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_WAIT_S)

    def drain(self) -> list[Polled[T]]:
        out: list[Polled[T]] = []
        while self._results:
            out.append(self._results.popleft())
        return out

    def problems(self) -> list[str]:
        out: list[str] = []
        while self._problems:
            out.append(self._problems.popleft())
        return out

    def report(self, message: str) -> None:
        """Keep ``message`` as a problem, collapsing repeats (also for the fetch's own notes)."""
        now = time.monotonic()
        with self._report_lock:
            if message == self._last_problem and now - self._last_problem_mono < REPEAT_EVERY_S:
                self._repeats += 1
                return
            if self._repeats and self._last_problem is not None:
                self._problems.append(f"{self._last_problem} (repeated {self._repeats} more times)")
            self._problems.append(message)
            self._last_problem, self._last_problem_mono, self._repeats = message, now, 0

    def _run(self) -> None:
        next_s = time.monotonic()
        while not self._stop.is_set():
            before = self._clock()
            try:
                value = self._fetch()
            except Exception as err:  # any failure of one fetch is a problem, never a crash
                self.report(f"{self.name}: {err}")
            else:
                after = self._clock()
                half = (after - before + 1) // 2
                self._results.append(Polled((before + after) // 2, half, value))
            next_s += self.interval_s
            now = time.monotonic()
            if next_s < now:  # overran: skip to the next slot, never burst to catch up
                next_s += ((now - next_s) // self.interval_s + 1) * self.interval_s
            if self._stop.wait(max(0.0, next_s - now)):
                return
