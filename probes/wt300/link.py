"""Commands and replies over an open port, with the host time each reply began to arrive.

RS-232 (9600 8N1 by default, no handshake): commands go out terminated by LF, replies come back
terminated by CR+LF (LF is enough here). The port is read in short slices so a stop request or a
dead cable is noticed quickly. USBTMC (``protocol_wt300tmc``): one write is one message and one
read returns one reply, so a reply is waited for in a single read (a usbtmc device should not
have its bulk-in read aborted every few ms).

A reply that does not start within its timeout is ``None``; one that starts but does not finish
comes back with ``complete=False``. Either way the caller flushes before the next command, so a
late or broken reply is never mistaken for the answer to the next query.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

SLICE_S = 0.02
STANDIN_SLICE_S = 0.25


class Port(Protocol):
    """What the link needs of a pyserial port (``serial.Serial`` or the USBTMC handler)."""

    @property
    def timeout(self) -> float | None: ...

    @timeout.setter
    def timeout(self, value: float | None) -> None: ...

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1, /) -> bytes: ...

    def write(self, b: bytes, /) -> int | None: ...

    def reset_input_buffer(self) -> None: ...


@dataclass(frozen=True)
class Reply:
    """Bytes of one reply (with its terminator when ``complete``) and when they began to arrive."""

    t_ns: int
    data: bytes
    complete: bool


class Link:
    """Query/reply on ``port``; ``message_mode`` for USBTMC's whole-message reads."""

    def __init__(
        self,
        port: Port,
        clock: Callable[[], int],
        stop: threading.Event,
        message_mode: bool,
    ) -> None:
        self.port = port
        self.clock = clock
        self.stop = stop
        self.message_mode = message_mode
        self.driver = bool(getattr(port, "is_driver", False))
        self._pending = bytearray()
        self.bytes_out = 0
        self.bytes_in = 0
        if not message_mode:
            port.timeout = SLICE_S

    def send(self, *commands: str) -> None:
        """Each command is one line (one USBTMC message)."""
        for cmd in commands:
            data = (cmd + "\n").encode("ascii")
            self.port.write(data)
            self.bytes_out += len(data)

    def flush(self) -> None:
        """Forget anything unread (after a timeout or a bad reply)."""
        self._pending.clear()
        self.port.reset_input_buffer()

    def _read_some(self, left_s: float) -> bytes:
        if self.message_mode:
            slice_s = left_s if self.driver else min(left_s, STANDIN_SLICE_S)
            self.port.timeout = max(0.001, slice_s)
            return self.port.read(65536)
        return self.port.read(max(1, self.port.in_waiting))

    def read_reply(self, first_s: float, rest_s: float) -> Reply | None:
        """The next reply line: None if nothing arrives within ``first_s`` (or on stop)."""
        buf = self._pending
        t_first: int | None = self.clock() if buf else None
        deadline = time.monotonic() + (rest_s if buf else first_s)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.stop.is_set():
                break
            chunk = self._read_some(left)
            if chunk:
                if t_first is None:
                    t_first = self.clock()
                    deadline = time.monotonic() + rest_s
                buf += chunk
                self.bytes_in += len(chunk)
        if t_first is None:
            return None
        nl = buf.find(b"\n")
        if nl < 0:
            data = bytes(buf)
            buf.clear()
            return Reply(t_first, data, False)
        data = bytes(buf[: nl + 1])
        del buf[: nl + 1]
        return Reply(t_first, data, True)

    def query(self, cmd: str, first_s: float, rest_s: float = 0.5) -> Reply | None:
        self.send(cmd)
        return self.read_reply(first_s, rest_s)
