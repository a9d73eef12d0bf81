"""A serial instrument owned by one thread: open, run the meter's session, reconnect with backoff.

Meters stream at their own pace (a WT310 every update, an LPM01A at up to 100 kS/s), so a serial
probe cannot be read from the sampler's loop. ``SerialReader`` runs the meter's ``session`` in a
thread; the session talks to the port and hands samples to ``emit`` in numpy blocks; ``drain()``
gives the sampler everything gathered since the last call. When the port fails (cable pulled:
the device path vanishes, reads raise), the reader records the gap, closes the port and tries to
reopen it every ``REOPEN_POLL_S`` (a short fixed interval, at most the sample period, so sampling
resumes within one sample period of the device answering again; an open attempt on a missing path
is one failed syscall, so the cost is negligible), then runs the session again. A session that
fails on an open port (the device answers garbage) is retried with capped exponential backoff.
Samples gathered before the failure are kept; nothing is invented for the gap, so the integrator
sees it and flags the phase.
"""

from __future__ import annotations

import glob
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from powerd.block import F64, I64, Block
from powerd.channel import Channel, Instrument
from powerd.probes.base import Availability

if TYPE_CHECKING:
    import serial

Clock = Callable[[], int]
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 2.0
REOPEN_POLL_S = 0.02


class Emit:
    """Collects samples per channel from the session thread; thread-safe, drained by the sampler.

    A meter with its own clock hands over its sample times as ``source_t_ns`` beside the host
    stamps; they stay with the samples in the Blocks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[str, list[tuple[I64, F64, I64 | None]]] = {}
        self._problems: list[str] = []

    def samples(self, channel: str, t_ns: I64, value: F64, source_t_ns: I64 | None = None) -> None:
        """Hand over samples of one channel (SI units, UTC ns on the host clock)."""
        if t_ns.size == 0:
            return
        with self._lock:
            self._parts.setdefault(channel, []).append((t_ns, value, source_t_ns))

    def sample(self, channel: str, t_ns: int, value: float) -> None:
        """One sample (for slow meters that answer one query at a time)."""
        self.samples(channel, np.array([t_ns], np.int64), np.array([value], np.float64))

    def problem(self, text: str) -> None:
        with self._lock:
            self._problems.append(text)

    def drain(self) -> tuple[list[Block], list[str]]:
        with self._lock:
            parts, problems = self._parts, self._problems
            self._parts, self._problems = {}, []
        blocks = []
        for channel, chunks in parts.items():
            sources = [s for _, _, s in chunks if s is not None]
            blocks.append(
                Block(
                    channel,
                    np.concatenate([t for t, _, _ in chunks]),
                    np.concatenate([v for _, v, _ in chunks]),
                    np.concatenate(sources) if len(sources) == len(chunks) else None,
                )
            )
        return blocks, problems


Session = Callable[["serial.Serial", Emit, Clock, threading.Event], None]


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
    reopen_poll_s: float = REOPEN_POLL_S
    down_reason: str = ""
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
        import serial  # pyserial is the `serial` extra: imported only when a meter is used

        backoff_s = BACKOFF_FIRST_S
        while not self._stop.is_set():
            try:
                port = serial.serial_for_url(self.url, **self.open_kwargs)  # type: ignore[arg-type]
            except (serial.SerialException, OSError) as err:
                self._note_down(f"{self.name}: cannot open {self.url}: {err}")
                self._stop.wait(self.reopen_poll_s)  # unplugged: poll fast, not back off
                continue
            self._note_up()
            try:
                self.session(port, self.emit, self.clock, self._stop)
                backoff_s = BACKOFF_FIRST_S
            except (serial.SerialException, OSError) as err:
                self._note_down(f"{self.name}: lost {self.url}: {err}")
                backoff_s = BACKOFF_FIRST_S
                self._stop.wait(self.reopen_poll_s)
            except Exception as err:
                # the port opened but the session failed (a device answering garbage): back off
                self._note_down(f"{self.name}: session failed: {type(err).__name__}: {err}")
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
            finally:
                port.close()

    def outages(self) -> list[tuple[int, int | None, str]]:
        """Every time the instrument was unreachable so far: (start_ns, end_ns or None, why)."""
        return [(g.start_ns, g.end_ns, self.down_reason) for g in list(self.gaps)]

    def _note_down(self, text: str) -> None:
        self.down_reason = text
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


class SerialProbe:
    """What every serial meter probe shares: channels, a SerialReader that the sampler starts
    (``start(clock)``), and draining its samples and problems at each poll."""

    poll_interval_s: float = 0.25
    close_timeout_s: float = 5.0

    def __init__(
        self,
        channels: list[Channel],
        name: str,
        url: str,
        session: Session,
        open_kwargs: dict[str, object],
        notes: tuple[str, ...] = (),
    ) -> None:
        self._channels = list(channels)
        self.name, self.url, self.session, self.open_kwargs = name, url, session, open_kwargs
        self.reader: SerialReader | None = None
        self._problems: list[str] = list(notes)

    def channels(self) -> list[Channel]:
        return list(self._channels)

    def start(self, clock: Clock) -> None:
        if self.reader is None:
            self.reader = SerialReader(self.url, self.session, clock, self.name, self.open_kwargs)
            self.reader.start()

    def read(self, now_utc_ns: int) -> list[Block]:
        if self.reader is None:
            return []
        blocks, problems = self.reader.drain()
        self._problems.extend(problems)
        return blocks

    def problems(self) -> list[str]:
        out, self._problems = self._problems, []
        return out

    def instrument(self) -> Instrument | None:
        """The instrument's identity once its session learnt it (None: not known); the sampler
        puts it on the channels when it appears or changes (a different meter re-plugged)."""
        return None

    def link_outages(self) -> list[tuple[int, int | None, str]]:
        """The reader's outages (start_ns, end_ns or None while down, why), for the sampler's
        health and exact gaps."""
        return [] if self.reader is None else self.reader.outages()

    def close(self) -> None:
        """Stop the reader thread (its last samples stay readable) and release the port."""
        if self.reader is not None:
            self.reader.stop(self.close_timeout_s)


PORT_GLOBS = ("/dev/ttyUSB*", "/dev/ttyACM*", "/dev/serial/by-id/*")


def candidate_ports(globs: tuple[str, ...] = PORT_GLOBS) -> list[str]:
    """Serial device paths present now."""
    return sorted({p for pattern in globs for p in glob.glob(pattern)})


def serial_availability(ports: Callable[[], list[str]], none_seen: str) -> Availability:
    """A serial meter family's ``available()``: broken without pyserial; else available, naming
    the serial ports ``ports()`` finds now, or saying ``none_seen`` (how to give the path) when
    there is none (the meter may be plugged in later). One copy for ina2xx, lpm01a and scpi."""
    try:
        import serial  # noqa: F401
    except ImportError:
        return Availability(False, "pyserial is missing: pip install 'powerd[serial]'", True)
    found = ports()
    if found:
        return Availability(True, "serial ports: " + ", ".join(found))
    return Availability(True, none_seen)
