"""Meter simulators on pseudo-terminals: a meter's real command set, framing and rate, with faults.

A ``MeterModel`` is the meter's behaviour (bytes in → reply bytes, plus what it streams on its own,
computed from a ``sim`` waveform so the true energy is known). ``PtySimulator`` serves it on a
pseudo-terminal reachable at a stable path (a symlink, like a udev name), and injects the faults a
bench sees: garbled bytes, dropped bytes, truncated replies, queries never answered, and unplug
(the path vanishes and the port dies under the reader) followed by replug (a new pty at the same
path). Ptys ignore baud and parity, so the simulators test framing, timing and faults.
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class MeterModel(Protocol):
    """What a simulated meter does. Times are UTC ns on the host clock."""

    tick_s: float

    def on_input(self, data: bytes, now_ns: int) -> bytes:
        """Consume bytes the host wrote; return the reply bytes (possibly empty)."""
        ...

    def stream(self, now_ns: int) -> bytes:
        """Bytes the meter sends unasked by now (a data stream); empty for query-only meters."""
        ...


@dataclass
class Faults:
    """Fault probabilities: per reply or stream chunk for ``garble``/``drop``/``partial``, per reply
    for ``no_reply``. ``seed`` makes a run repeatable."""

    garble: float = 0.0
    drop: float = 0.0
    partial: float = 0.0
    no_reply: float = 0.0
    seed: int = 0

    def apply(self, rng: random.Random, data: bytes, is_reply: bool) -> bytes:
        if not data:
            return data
        if is_reply and rng.random() < self.no_reply:
            return b""
        out = bytearray(data)
        if rng.random() < self.garble:
            i = rng.randrange(len(out))
            out[i] ^= 1 << rng.randrange(8)
        if rng.random() < self.drop and len(out) > 1:
            del out[rng.randrange(len(out))]
        if rng.random() < self.partial and len(out) > 1:
            del out[rng.randrange(1, len(out)) :]
        return bytes(out)


@dataclass
class PtySimulator:
    """Serves ``model`` at ``link`` until ``stop()``; ``unplug()``/``replug()`` on demand."""

    model: MeterModel
    link: Path
    faults: Faults = field(default_factory=Faults)
    clock: Callable[[], int] = time.time_ns
    bytes_in: int = 0
    bytes_out: int = 0
    bytes_overflowed: int = 0
    _master: int | None = None
    _slave: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> PtySimulator:
        self._plug()
        self._thread = threading.Thread(target=self._run, name="pty-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.unplug()

    def __enter__(self) -> PtySimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def unplug(self) -> None:
        """The cable is pulled: the path disappears and the open port dies under its reader.

        The link is removed only while it still points at our pty: whatever replaced it is left.
        """
        with self._lock:
            tty_path = os.ttyname(self._slave) if self._slave is not None else None
            for fd in (self._master, self._slave):
                if fd is not None:
                    os.close(fd)
            self._master = self._slave = None
            try:
                ours = tty_path is not None and os.readlink(self.link) == tty_path
            except OSError:
                ours = False  # gone, or not a symlink: nothing of ours to remove
            if ours:
                self.link.unlink(missing_ok=True)

    def replug(self) -> None:
        """The cable is back: a new port appears at the same path."""
        with self._lock:
            if self._master is None:
                self._plug_locked()

    def _plug(self) -> None:
        with self._lock:
            self._plug_locked()

    def _plug_locked(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(slave))
        os.replace(tmp, self.link)

    def _now(self) -> int:
        return self.clock()

    def _write(self, fd: int, data: bytes) -> None:
        """Write what the host will take; a host that stops reading overflows the buffer and
        loses the rest, as a USB serial device does."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                _, writable, _ = select.select([], [fd], [], 0.05)
                if not writable:
                    self.bytes_overflowed += len(view)
                    return
                continue
            view = view[n:]
            self.bytes_out += n

    def _run(self) -> None:
        rng = random.Random(self.faults.seed)
        while not self._stop.is_set():
            with self._lock:
                master = self._master
            if master is None:
                self._stop.wait(0.01)
                continue
            try:
                ready, _, _ = select.select([master], [], [], self.model.tick_s)
                if ready:
                    data = os.read(master, 65536)
                    self.bytes_in += len(data)
                    reply = self.model.on_input(data, self._now())
                    self._write(master, self.faults.apply(rng, reply, True))
                out = self.model.stream(self._now())
                if out:
                    self._write(master, self.faults.apply(rng, out, False))
            except OSError:
                self._stop.wait(0.01)  # unplugged under us, or the reader went away
