"""A serial instrument owned by one thread: open, run the meter's session, reconnect with backoff.

Meters stream at their own pace (a WT310 every update, an LPM01A at up to 100 kS/s), so a serial
probe cannot be read from the sampler's loop. ``SerialReader`` runs the meter's ``session`` in a
thread; the session talks to the port and hands samples to ``emit`` in numpy blocks; ``drain()``
gives the sampler everything gathered since the last call. When the port fails (cable pulled:
the device path vanishes, reads raise), the reader records the gap, closes the port and reopens it
with exponential backoff, then runs the session again. Samples gathered before the failure are
kept; nothing is invented for the gap, so the integrator sees it and flags the phase.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import serial

from powerd.block import F64, I64, Block

Clock = Callable[[], int]
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 2.0


class Emit:
    """Collects samples per channel from the session thread; thread-safe, drained by the sampler."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._t: dict[str, list[I64]] = {}
        self._v: dict[str, list[F64]] = {}
        self._problems: list[str] = []

    def samples(self, channel: str, t_ns: I64, value: F64) -> None:
        """Hand over samples of one channel (SI units, UTC ns on the host clock)."""
        if t_ns.size == 0:
            return
        with self._lock:
            self._t.setdefault(channel, []).append(t_ns)
            self._v.setdefault(channel, []).append(value)

    def sample(self, channel: str, t_ns: int, value: float) -> None:
        """One sample (for slow meters that answer one query at a time)."""
        self.samples(channel, np.array([t_ns], np.int64), np.array([value], np.float64))

    def problem(self, text: str) -> None:
        with self._lock:
            self._problems.append(text)

    def drain(self) -> tuple[list[Block], list[str]]:
        with self._lock:
            t, v, problems = self._t, self._v, self._problems
            self._t, self._v, self._problems = {}, {}, []
        blocks = [Block(c, np.concatenate(t[c]), np.concatenate(v[c])) for c in t]
        return blocks, problems


Session = Callable[[serial.Serial, Emit, Clock, threading.Event], None]


@dataclass
class Gap:
    """A time the instrument was unreachable, on the host's UTC clock."""

    start_ns: int
    end_ns: int | None = None


@dataclass
class SerialReader:
    """Runs ``session`` on the port at ``url`` in a thread until ``stop()``, reconnecting."""

    url: str
    session: Session
    clock: Clock
    name: str
    open_kwargs: dict[str, object] = field(default_factory=dict)
    emit: Emit = field(default_factory=Emit)
    gaps: list[Gap] = field(default_factory=list)
    connects: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"serial-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def drain(self) -> tuple[list[Block], list[str]]:
        return self.emit.drain()

    def _run(self) -> None:
        backoff_s = BACKOFF_FIRST_S
        while not self._stop.is_set():
            try:
                port = serial.serial_for_url(self.url, **self.open_kwargs)  # type: ignore[arg-type]
            except (serial.SerialException, OSError) as err:
                self._note_down(f"{self.name}: cannot open {self.url}: {err}")
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
                continue
            backoff_s = BACKOFF_FIRST_S
            self._note_up()
            try:
                self.session(port, self.emit, self.clock, self._stop)
            except (serial.SerialException, OSError) as err:
                self._note_down(f"{self.name}: lost {self.url}: {err}")
            except Exception as err:
                self._note_down(f"{self.name}: session failed: {type(err).__name__}: {err}")
                self._stop.wait(backoff_s)
            finally:
                port.close()

    def _note_down(self, text: str) -> None:
        if not self.gaps or self.gaps[-1].end_ns is not None:
            self.gaps.append(Gap(self.clock()))
            self.emit.problem(text)

    def _note_up(self) -> None:
        self.connects += 1
        if self.gaps and self.gaps[-1].end_ns is None:
            gap = self.gaps[-1]
            gap.end_ns = self.clock()
            down_s = (gap.end_ns - gap.start_ns) / 1e9
            self.emit.problem(f"{self.name}: reconnected to {self.url} after {down_s:.3f} s")
