"""The conversation with one PowerShield on one open port (the transport), run by ``SerialReader``.

On every (re)connection: stop an acquisition the shield may still be running, take control
(``htc``), read ``version`` and ``status``, send the configuration (``volt``, ``freq``, ``acqtime
0``, ``acqmode dyn``, ``funcmode``, ``output``, ``format``, ``trigsrc sw``, ``pwr on``), each
checked for its ``ack`` (an ``error`` reply, with its ``Error detail``, stops the session with a
message naming the command; silence is a timeout, never a hang), then ``start``. While the
acquisition runs, every read is handed to the pure decoder, its samples are placed on the host
timeline by ``SampleClock`` and emitted in numpy blocks with the shield's time beside them. On
stop: ``stop``, wait for the end of acquisition, ``hrc`` (the target stays powered).

An acquisition that ends by itself is restarted; one ended by overcurrent is not (the shield has
cut the target's power; the problem says so). Counts of undecodable and lost data are reported at
most once a second.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import serial

from powerd.block import F64, I64
from powerd.channel import Instrument
from powerd.probes.lpm01a.clock import SampleClock
from powerd.probes.lpm01a.config import VOLT_REPLY_TIMEOUT_S, LpmConfig, setup_commands
from powerd.probes.lpm01a.parse import (
    MAX_PLAUSIBLE_A,
    AsciiDecoder,
    BinaryDecoder,
    Decoded,
    Event,
    classify_line,
)
from powerd.probes.serialport import Clock, Emit

READ_TIMEOUT_S = 0.05
QUIET_WAIT_S = 0.1
STOP_TIMEOUT_S = 3.0
RELEASE_TIMEOUT_S = 1.0
SYNC_TIMEOUT_S = 1.5
RESTART_DELAY_S = 0.5
REPORT_EVERY_NS = 1_000_000_000
BUFFER_WARN_PCT = 75
DETAIL_WAIT_S = 0.5


class CommandError(Exception):
    """The shield answered a command with ``error``."""


class ReplyTimeout(Exception):
    """The shield did not answer (or stopped streaming) in time."""


@dataclass
class Counts:
    """What went wrong with the data, cumulative over the probe's life."""

    bad: int = 0
    lost: int = 0
    ahead: int = 0
    out_of_order: int = 0
    interpolated_j: float = 0.0

    def copy(self) -> Counts:
        return Counts(**vars(self))


class _Lines:
    """Text lines from the port, with the bytes after the last line kept for the data stream."""

    def __init__(self, port: serial.Serial) -> None:
        self.port = port
        self.buf = b""

    def readline(self, deadline: float) -> bytes | None:
        while b"\n" not in self.buf:
            if time.monotonic() > deadline:
                return None
            self.buf += self.port.read(max(1, self.port.in_waiting))
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def take(self) -> bytes:
        rest, self.buf = self.buf, b""
        return rest


@dataclass
class LpmState:
    """One shield's session state; it outlives reconnects (counters, energy total, time order)."""

    cfg: LpmConfig
    counts: Counts = field(default_factory=Counts)
    version: str = ""
    instrument: Instrument | None = None
    messages: list[str] = field(default_factory=list)
    acquisitions: int = 0
    overcurrent: bool = False
    samples: int = 0
    last_device_ms: int = -1
    buffer_load_pct: int = -1
    grid_exact: bool = False  # the shield's timestamps land exactly on the sample grid
    clock: SampleClock = field(init=False)
    _energy_total_j: float = 0.0
    _last_slot: int = -1
    _last_energy_j: float = 0.0
    _first_chunk: bool = True
    _reported: Counts = field(default_factory=Counts)
    _next_report_ns: int = 0
    _buffer_warned: bool = False

    def __post_init__(self) -> None:
        self.clock = SampleClock(self.cfg.period_ns)

    @property
    def channel(self) -> str:
        return self.cfg.channel_id

    # --- the session -----------------------------------------------------------------------

    def session(self, port: serial.Serial, emit: Emit, clock: Clock, stop: threading.Event) -> None:
        port.timeout = READ_TIMEOUT_S
        lines = _Lines(port)
        self._quiesce(port, emit)
        self._command(lines, "htc")
        self.version = self._command(lines, "version")
        status = self._command(lines, "status")
        if status and "ok" not in status.lower():
            emit.problem(f"{self.channel}: PowerShield status: {status}")
        self.instrument = self._identify(lines)
        for cmd in setup_commands(self.cfg):
            timeout = VOLT_REPLY_TIMEOUT_S if cmd.startswith("volt") else None
            self._command(lines, cmd, timeout)
        try:
            while not stop.is_set():
                self._command(lines, "start")
                outcome = self._acquire(port, lines, emit, clock, stop)
                if outcome == "stopped":
                    break
                if outcome == "overcurrent":
                    self._idle_until(port, stop)
                    break
                emit.problem(
                    f"{self.channel}: the PowerShield ended the acquisition by itself; "
                    "starting a new one (the time between is a gap)"
                )
                stop.wait(RESTART_DELAY_S)
        finally:
            self._report(emit, force=True)
        if stop.is_set():
            self._release(lines, emit)

    def _quiesce(self, port: serial.Serial, emit: Emit) -> None:
        """A shield still acquiring (the host went away, the shield did not) streams at once:
        stop it and discard everything up to its end, so the replies that follow are clean."""
        deadline = time.monotonic() + QUIET_WAIT_S
        seen = b""
        while time.monotonic() < deadline and not seen:
            seen = port.read(max(1, port.in_waiting))
        if not seen:
            return
        port.write(b"stop\r\n")
        deadline = time.monotonic() + STOP_TIMEOUT_S
        tail = b""
        while time.monotonic() < deadline:
            tail = (tail + port.read(max(1, port.in_waiting)))[-256:]
            if b"Acquisition completed" in tail:
                break
        emit.problem(f"{self.channel}: the PowerShield was acquiring when connected; stopped it")
        time.sleep(0.05)
        port.reset_input_buffer()

    def _command(self, lines: _Lines, cmd: str, timeout_s: float | None = None) -> str:
        """Send ``cmd``; return what its ack carries after the command; raise on error/silence."""
        timeout = timeout_s or self.cfg.reply_timeout_s
        lines.port.write(cmd.encode("ascii") + b"\r\n")
        deadline = time.monotonic() + timeout
        name = cmd.split(maxsplit=1)[0]
        while True:
            line = lines.readline(deadline)
            if line is None:
                raise ReplyTimeout(
                    f"{self.channel}: no reply to {cmd!r} within {timeout:g} s from "
                    f"{self.cfg.url} (check that it is a PowerShield, that nothing else holds the "
                    f"port and the baud rate {self.cfg.baud})"
                )
            r = classify_line(line)
            if r.kind == "ack":
                if r.text == cmd or r.text.startswith(cmd + " "):
                    return r.text[len(cmd) :].strip()
                if r.text.split()[:1] == [name]:
                    return r.text[len(name) :].strip()
                continue
            if r.kind == "error":
                detail = ""
                until = time.monotonic() + DETAIL_WAIT_S
                while (more := lines.readline(until)) is not None:
                    m = classify_line(more)
                    if m.kind == "detail":
                        detail = m.text
                        break
                    if m.kind != "empty":
                        break
                why = detail or r.text or "no detail given"
                raise CommandError(f"{self.channel}: the PowerShield refused {cmd!r}: {why}")

    def _identify(self, lines: _Lines) -> Instrument:
        """Firmware from ``version``; the board's id from ``powershield`` (``PowerShield present
        <id>``) where the firmware gives one: a shield that refuses it still measures."""
        serial_id = ""
        try:
            reply = self._command(lines, "powershield")
        except (CommandError, ReplyTimeout):
            reply = ""
        words = reply.split()
        if len(words) >= 3 and words[1].lower() == "present":
            serial_id = words[2]
        return Instrument(
            "STMicroelectronics", "X-NUCLEO-LPM01A", serial_id, self.version, "version"
        )

    def _release(self, lines: _Lines, emit: Emit) -> None:
        try:
            self._command(lines, "hrc", RELEASE_TIMEOUT_S)
        except (CommandError, ReplyTimeout) as err:
            emit.problem(f"{err} (releasing control)")

    def _idle_until(self, port: serial.Serial, stop: threading.Event) -> None:
        """Keep the port open (an unplug still shows) but start nothing until stopped."""
        while not stop.is_set():
            port.read(max(1, port.in_waiting))

    # --- one acquisition -------------------------------------------------------------------

    def _decoder(self) -> AsciiDecoder | BinaryDecoder:
        cfg = self.cfg
        if cfg.output == "energy":
            max_j = 2 * MAX_PLAUSIBLE_A * cfg.voltage_v / cfg.rate_hz
            return AsciiDecoder(cfg.rate_hz, 1.0, max_j)
        if cfg.binary:
            return BinaryDecoder(cfg.rate_hz, cfg.voltage_v, exact_grid=self.grid_exact)
        return AsciiDecoder(cfg.rate_hz, cfg.voltage_v, MAX_PLAUSIBLE_A)

    def _acquire(
        self,
        port: serial.Serial,
        lines: _Lines,
        emit: Emit,
        clock: Clock,
        stop: threading.Event,
    ) -> str:
        """Stream until stopped or ended; returns "stopped", "ended" or "overcurrent"."""
        decoder = self._decoder()
        self.acquisitions += 1
        self.clock.restart()
        self._first_chunk = True
        self._last_slot = -1
        self.overcurrent = False
        try:
            return self._stream(decoder, port, lines, emit, clock, stop)
        except (serial.SerialException, OSError):
            # the cable is out: what was received is kept (the gap starts after it)
            self._deliver(decoder.flush(), emit)
            raise

    def _stream(
        self,
        decoder: AsciiDecoder | BinaryDecoder,
        port: serial.Serial,
        lines: _Lines,
        emit: Emit,
        clock: Clock,
        stop: threading.Event,
    ) -> str:
        no_data_s = max(2.0, 5.0 / self.cfg.rate_hz)
        sync_deadline = time.monotonic() + SYNC_TIMEOUT_S
        last_data = time.monotonic()
        pending = lines.take()
        if pending:
            self._chunk(decoder, pending, clock(), emit)
        while not decoder.ended:
            if stop.is_set():
                self._stop_acquisition(port, decoder, clock, emit)
                return "stopped"
            data = port.read(max(1, port.in_waiting))
            now_ns = clock()
            if data:
                waiting = port.in_waiting
                if waiting:
                    data += port.read(waiting)
                last_data = time.monotonic()
                self._chunk(decoder, data, now_ns, emit)
            elif time.monotonic() - last_data > no_data_s:
                raise ReplyTimeout(
                    f"{self.channel}: no data for {no_data_s:g} s during the acquisition; "
                    "reconnecting"
                )
            binary_unsynced = isinstance(decoder, BinaryDecoder) and not decoder.synced
            if binary_unsynced and time.monotonic() > sync_deadline:
                assert isinstance(decoder, BinaryDecoder)
                decoder.force_sync()
                emit.problem(
                    f"{self.channel}: no timestamp frame opened the binary stream; "
                    "decoding from the first byte after 'ack start'"
                )
        return "overcurrent" if self.overcurrent else "ended"

    def _stop_acquisition(
        self, port: serial.Serial, decoder: AsciiDecoder | BinaryDecoder, clock: Clock, emit: Emit
    ) -> None:
        """``stop``, then keep decoding until the end of acquisition (no sample is lost)."""
        port.write(b"stop\r\n")
        deadline = time.monotonic() + STOP_TIMEOUT_S
        text = b""
        while time.monotonic() < deadline:
            data = port.read(max(1, port.in_waiting))
            if not data:
                continue
            if decoder.ended:
                text += data
            else:
                dec = self._chunk(decoder, data, clock(), emit)
                text += dec.rest
            if decoder.ended and (
                b"Acquisition completed" in text or isinstance(decoder, AsciiDecoder)
            ):
                return
        if not decoder.ended:
            emit.problem(
                f"{self.channel}: no end of acquisition within {STOP_TIMEOUT_S:g} s of stop"
            )

    def _chunk(
        self, decoder: AsciiDecoder | BinaryDecoder, data: bytes, read_ns: int, emit: Emit
    ) -> Decoded:
        dec = decoder.feed(data)
        self.grid_exact = self.grid_exact or decoder.slots.exact
        if decoder.slots.next > 0:
            self.clock.observe(decoder.slots.next - 1 + self._slot_shift, read_ns)
        self._deliver(dec, emit)
        self._report(emit, now_ns=read_ns)
        return dec

    def _deliver(self, dec: Decoded, emit: Emit) -> None:
        c = self.counts
        c.bad += dec.bad
        c.lost += dec.lost
        c.ahead += dec.ahead
        for ev in dec.events:
            self._event(ev, emit)
        if len(dec):
            if self.cfg.output == "energy":
                self._emit_energy(dec, emit)
            else:
                self._emit_power(dec, emit)

    @property
    def _slot_shift(self) -> int:
        """Energy samples belong to the end of their period; current samples to their instant."""
        return 1 if self.cfg.output == "energy" else 0

    def _emit_power(self, dec: Decoded, emit: Emit) -> None:
        t, skip = self.clock.stamp(dec.slot)
        self.counts.out_of_order += skip
        src = dec.slot[skip:] * np.int64(self.cfg.period_ns)
        self._out(t[skip:], dec.value[skip:], src, emit)

    def _emit_energy(self, dec: Decoded, emit: Emit) -> None:
        """Per-period energies → a cumulative counter (J) at each period's end. Slots lost in
        between get the mean of their neighbours (what the trapezoid rule does for power) and
        the amount is counted, so the counter never silently drops energy."""
        e = dec.value
        ends = dec.slot + 1
        prev_last_t = self.clock.last_t_ns
        t, skip = self.clock.stamp(ends)
        missing = np.diff(dec.slot, prepend=np.int64(self._last_slot)) - 1
        e_prev = np.concatenate(([self._last_energy_j if self._last_slot >= 0 else e[0]], e[:-1]))
        est = np.where(missing > 0, missing * (e_prev + e) / 2.0, 0.0)
        before = self._energy_total_j
        cum = before + np.cumsum(e + est)
        self._energy_total_j = float(cum[-1])
        self._last_slot = int(dec.slot[-1])
        self._last_energy_j = float(e[-1])
        self.counts.interpolated_j += float(est.sum())
        self.counts.out_of_order += skip
        src = ends * np.int64(self.cfg.period_ns)
        t, cum, src = t[skip:], cum[skip:], src[skip:]
        if self._first_chunk and t.size:
            t_zero = int(t[0]) - int(ends[skip]) * self.cfg.period_ns
            if prev_last_t is None or t_zero > prev_last_t:
                t = np.concatenate((np.array([t_zero], np.int64), t))
                cum = np.concatenate((np.array([before]), cum))
                src = np.concatenate((np.zeros(1, np.int64), src))
        self._first_chunk = False
        self._out(t, cum, src, emit)

    def _out(self, t: I64, v: F64, src: I64, emit: Emit) -> None:
        self.samples += int(t.size)
        emit.samples(self.channel, t, v, src)

    def _event(self, ev: Event, emit: Emit) -> None:
        ch = self.channel
        if ev.kind == "timestamp":
            self.last_device_ms, self.buffer_load_pct = ev.device_ms, ev.load_pct
            if ev.load_pct >= BUFFER_WARN_PCT and not self._buffer_warned:
                self._buffer_warned = True
                emit.problem(
                    f"{ch}: the PowerShield's transmit buffer is {ev.load_pct} % full: the host "
                    "is not reading fast enough and data will be lost"
                )
            elif ev.load_pct < BUFFER_WARN_PCT // 2:
                self._buffer_warned = False
        elif ev.kind == "error":
            emit.problem(f"{ch}: the PowerShield reports an error: {ev.text}")
        elif ev.kind == "overcurrent":
            self.overcurrent = True
            emit.problem(
                f"{ch}: overcurrent: the PowerShield cut the target's power (its dynamic mode "
                "protects from about 59 mA, UM2243); not restarting until powerd is restarted"
            )
        elif ev.kind == "power_down":
            emit.problem(f"{ch}: the PowerShield reports the target powered down")
        elif ev.kind in ("info", "text", "ack", "detail", "voltage") and ev.text:
            self.messages.append(ev.text)
            del self.messages[:-16]

    def _report(self, emit: Emit, now_ns: int = 0, force: bool = False) -> None:
        if not force and now_ns < self._next_report_ns:
            return
        self._next_report_ns = now_ns + REPORT_EVERY_NS
        c, r = self.counts, self._reported
        parts = []
        if c.bad > r.bad:
            parts.append(f"{c.bad - r.bad} undecodable words/lines/frames dropped")
        if c.lost > r.lost:
            how = (
                "their energy interpolated from the neighbours"
                if self.cfg.output == "energy"
                else "later samples kept on the grid, nothing interpolated as data"
            )
            parts.append(f"{c.lost - r.lost} samples lost ({how})")
        if c.ahead > r.ahead:
            parts.append(f"{c.ahead - r.ahead} more samples than the shield's clock allows")
        if c.out_of_order > r.out_of_order:
            parts.append(f"{c.out_of_order - r.out_of_order} samples out of time order dropped")
        self._reported = c.copy()
        if parts:
            emit.problem(f"{self.channel}: " + "; ".join(parts))
