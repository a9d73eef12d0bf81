"""USBTMC as a pyserial port: ``wt300tmc:///dev/usbtmc0``, so the shared SerialReader runs it.

Linux's ``usbtmc`` driver exposes an instrument as a character device: one ``write`` sends one
whole USBTMC message, one ``read`` returns one whole reply (blocking up to the driver's timeout,
set here from the port timeout with ``USBTMC_IOCTL_SET_TIMEOUT``). This module is a pyserial URL
handler (pyserial looks up ``protocol_<scheme>`` in ``serial.protocol_handler_packages``; the
probe registers ``powerd.probes.wt300``), so the reader thread, reconnect with backoff and gap
records of ``powerd.probes.serialport`` apply to USBTMC meters unchanged.

When the path is not a usbtmc device (the driver's CLEAR ioctl fails) the port treats it as a
stand-in, such as a simulator's pseudo-terminal, and keeps the message semantics: a read returns at
most one reply, up to its line feed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import struct
import time

from serial.serialutil import PortNotOpenError, SerialBase, SerialException

SCHEME = "wt300tmc://"
USBTMC_IOCTL_CLEAR = 0x5B02  # _IO('[', 2)
USBTMC_IOCTL_SET_TIMEOUT = 0x40045B0A  # _IOW('[', 10, __u32), ms
USBTMC_MIN_TIMEOUT_MS = 100
READ_CHUNK = 65536


def url_for(path: str) -> str:
    return SCHEME + path


class Serial(SerialBase):
    """A usbtmc character device (or a pseudo-terminal standing in for one)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._fd: int | None = None
        self._buf = bytearray()
        self.is_driver = False
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    @property
    def path(self) -> str:
        port = self.port or ""
        return port[len(SCHEME) :] if port.lower().startswith(SCHEME) else port

    def open(self) -> None:
        if self.port is None:
            raise SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise SerialException("Port is already open.")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY)
        except OSError as err:
            raise SerialException(err.errno, f"could not open {self.path}: {err}") from None
        self._fd = fd
        try:
            fcntl.ioctl(fd, USBTMC_IOCTL_CLEAR)
            self.is_driver = True
        except OSError:
            self.is_driver = False
        self.is_open = True
        self._reconfigure_port()

    def _reconfigure_port(self, force_update: bool = False) -> None:
        if self._fd is None or not self.is_driver:
            return
        timeout_s = 60.0 if self.timeout is None else self.timeout
        ms = max(USBTMC_MIN_TIMEOUT_MS, round(timeout_s * 1000))
        with contextlib.suppress(OSError):
            fcntl.ioctl(self._fd, USBTMC_IOCTL_SET_TIMEOUT, struct.pack("I", ms))

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
        self._buf.clear()
        self.is_open = False

    def _require_fd(self) -> int:
        if self._fd is None:
            raise PortNotOpenError()
        return self._fd

    @property
    def in_waiting(self) -> int:
        return len(self._buf)

    def _take(self, size: int) -> bytes:
        end = min(size, len(self._buf))
        nl = self._buf.find(b"\n")
        if nl >= 0:
            end = min(end, nl + 1)
        out = bytes(self._buf[:end])
        del self._buf[:end]
        return out

    def read(self, size: int = 1, /) -> bytes:
        """Up to ``size`` bytes of one reply; empty if none arrives within the timeout."""
        fd = self._require_fd()
        if self._buf:
            return self._take(size)
        if self.is_driver:
            try:
                chunk = os.read(fd, READ_CHUNK)
            except OSError as err:
                if err.errno == errno.ETIMEDOUT:
                    return b""
                raise SerialException(err.errno, f"read failed: {err}") from None
            if not chunk:
                raise SerialException("device reports end of file (disconnected?)")
            self._buf += chunk
            return self._take(size)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while b"\n" not in self._buf and len(self._buf) < size:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                break
            try:
                chunk = os.read(fd, READ_CHUNK)
            except OSError as err:
                raise SerialException(err.errno, f"read failed: {err}") from None
            if not chunk:
                raise SerialException("device reports end of file (disconnected?)")
            self._buf += chunk
        return self._take(size)

    def write(self, b: object, /) -> int:
        """One call is one USBTMC message: never split."""
        fd = self._require_fd()
        data = bytes(b)  # type: ignore[call-overload]
        try:
            n = os.write(fd, data)
        except OSError as err:
            raise SerialException(err.errno, f"write failed: {err}") from None
        if n != len(data):
            raise SerialException(f"short write: {n} of {len(data)} bytes")
        return n

    def reset_input_buffer(self) -> None:
        """Drop unread replies; on a usbtmc device also clear the instrument's buffers (this
        aborts a pending ``:COMM:WAIT``)."""
        fd = self._require_fd()
        self._buf.clear()
        if self.is_driver:
            with contextlib.suppress(OSError):
                fcntl.ioctl(fd, USBTMC_IOCTL_CLEAR)
            return
        while select.select([fd], [], [], 0)[0]:
            try:
                if not os.read(fd, READ_CHUNK):
                    return
            except OSError:
                return

    def reset_output_buffer(self) -> None:
        return None
