"""The INA2xx logger probe: a serial session (transport) feeding the ``$PWR`` parser and the
device clock, and the probe object the sampler polls.

The session owns the port in the ``SerialReader`` thread: it reads whatever bytes arrived, stamps
the read with the host clock, parses complete lines, maps device time to host time and hands the
samples (with their device time) to the emitter. Rejected lines, lost lines and device resets are
counted and reported at most once a second as one summary problem, so a noisy cable cannot flood
the log. The parser, the device clock and the counters live in ``InaState``, which outlives a
reconnect: a logger that kept running while its cable was out keeps its time anchor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import serial

from powerd.block import F64, I64
from powerd.channel import Channel, Instrument
from powerd.probes.ina2xx.protocol import Counts, LineParser, Parsed
from powerd.probes.ina2xx.timing import ClockStats, DeviceClock
from powerd.probes.serialport import Clock, Emit, SerialProbe

READ_TIMEOUT_S = 0.05
REPORT_EVERY_NS = 1_000_000_000


@dataclass
class InaConfig:
    """What the session needs from the spec."""

    url: str
    channel: str
    baud: int
    power_from_vi: bool
    window_ns: int
    period_ns: int


@dataclass
class InaState:
    """Parser, device clock and counters of one logger; survives reconnects."""

    cfg: InaConfig
    parser: LineParser = field(default_factory=LineParser)
    clock: DeviceClock = field(init=False)
    counts: Counts = field(default_factory=Counts)
    lines: int = 0
    banners: list[dict[str, str]] = field(default_factory=list)
    instrument: Instrument | None = None  # from the banner (banner_instrument)
    _identity: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reported: Counts = field(default_factory=Counts)
    _reported_clock: ClockStats = field(default_factory=ClockStats)
    _next_report_ns: int = 0
    _window_warned: bool = False

    def __post_init__(self) -> None:
        self.clock = DeviceClock(self.cfg.window_ns)

    def handle(self, data: bytes, arrival_ns: int, emit: Emit) -> None:
        """Everything that happens to one read's bytes: parse, stamp, emit, report."""
        parsed = self.parser.feed(data)
        with self._lock:
            self.counts.add(parsed.counts)
            self.lines += len(parsed)
        for info in parsed.info:
            self._banner(info, emit)
        for text in parsed.errors:
            emit.problem(f"{self.cfg.channel}: logger reports an error: {text}")
        if len(parsed):
            value = self._power(parsed)
            with self._lock:
                out = self.clock.feed(parsed.seq, parsed.t_us, value, arrival_ns)
            self._emit(out.t_ns, out.value, out.source_t_ns, emit)
        self._report(arrival_ns, emit)

    def flush(self, emit: Emit) -> None:
        """Emit lines held for the clock's warm-up (the probe is closing)."""
        with self._lock:
            out = self.clock.flush()
        self._emit(out.t_ns, out.value, out.source_t_ns, emit)

    def stats(self) -> tuple[int, Counts, ClockStats]:
        """Lines parsed, lines rejected by kind, and the clock's counts (a snapshot)."""
        with self._lock:
            c = Counts()
            c.add(self.counts)
            s = ClockStats(**vars(self.clock.stats))
            return self.lines, c, s

    def _power(self, parsed: Parsed) -> F64:
        if self.cfg.power_from_vi:
            return parsed.bus_v * parsed.current_a
        return parsed.power_w

    def _emit(self, t: I64, v: F64, src: I64, emit: Emit) -> None:
        emit.samples(self.cfg.channel, t, v, src)

    def _banner(self, info: dict[str, str], emit: Emit) -> None:
        self.banners.append(info)
        del self.banners[:-8]
        ident = {k: v for k, v in info.items() if k in IDENTITY_KEYS}
        if ident:  # the keys may come in several sentences: later values replace earlier ones
            self._identity.update(ident)
            self.instrument = banner_instrument(self._identity)
        win = info.get("win_us")
        period = info.get("period_us")
        if self._window_warned:
            return
        for name, text, want_ns in (
            ("win_us", win, self.cfg.window_ns),
            ("period_us", period, self.cfg.period_ns),
        ):
            if text is None or not (text.isascii() and text.isdigit()):
                continue
            if abs(int(text) * 1000 - want_ns) > want_ns // 10:
                self._window_warned = True
                emit.problem(
                    f"{self.cfg.channel}: the logger's banner says {name}={text} but the spec "
                    f"assumes {want_ns // 1000} us: pass rate=... and window_us=... to match "
                    "(samples are placed and gaps judged with the spec's values)"
                )

    def _report(self, now_ns: int, emit: Emit) -> None:
        if now_ns < self._next_report_ns:
            return
        self._next_report_ns = now_ns + REPORT_EVERY_NS
        with self._lock:
            new = Counts(
                self.counts.bad_checksum - self._reported.bad_checksum,
                self.counts.garbled - self._reported.garbled,
                self.counts.partial - self._reported.partial,
            )
            cs, rs = self.clock.stats, self._reported_clock
            lost = cs.lost - rs.lost
            resets = cs.resets - rs.resets
            dup = cs.duplicates - rs.duplicates
            self._reported = Counts()
            self._reported.add(self.counts)
            self._reported_clock = ClockStats(**vars(cs))
        parts = []
        if new.rejected:
            parts.append(f"{new.rejected} lines rejected ({new.describe()})")
        if lost:
            parts.append(f"{lost} seq numbers missing (rejected or never received: gaps, not data)")
        if dup:
            parts.append(f"{dup} repeated lines dropped")
        if resets:
            parts.append(f"{resets} logger reset(s): device clock restarted, re-anchored")
        if parts:
            emit.problem(f"{self.cfg.channel}: " + "; ".join(parts))


def make_session(
    state: InaState,
) -> Callable[[serial.Serial, Emit, Clock, threading.Event], None]:
    """The reader-thread body: read bytes as they come, hand them to ``state``."""

    def session(port: serial.Serial, emit: Emit, clock: Clock, stop: threading.Event) -> None:
        port.timeout = READ_TIMEOUT_S
        state.parser.reset()
        while not stop.is_set():
            data = port.read(max(1, port.in_waiting))
            if data:
                state.handle(data, clock(), emit)

    return session


# INA2xx register 0xFE (manufacturer id): ASCII "TI"
MAKERS = {0x5449: "Texas Instruments"}
IDENTITY_KEYS = ("chip", "die_id", "mfr_id", "serial", "fw")


def banner_instrument(info: dict[str, str]) -> Instrument | None:
    """The logger's identity from its ``$PWRI`` banner: ``chip`` and ``die_id`` (INA2xx register
    0xFF, hex) as the model, ``mfr_id`` (register 0xFE, hex) as the maker, the board's ``serial``
    and the firmware ``fw``; None when the banner says none of them."""
    if not any(info.get(k) for k in IDENTITY_KEYS):
        return None
    mfr = info.get("mfr_id", "")
    try:
        maker = MAKERS.get(int(mfr, 16), f"manufacturer 0x{mfr}") if mfr else ""
    except ValueError:
        maker = f"manufacturer {mfr}"
    model = info.get("chip", "")
    if info.get("die_id"):
        model = f"{model} (die 0x{info['die_id']})".strip()
    return Instrument(maker, model, info.get("serial", ""), info.get("fw", ""), "$PWRI")


class InaProbe(SerialProbe):
    """An INA2xx logger on a serial port; streams, so the sampler only drains it."""

    poll_interval_s = 0.05

    def __init__(self, cfg: InaConfig, channel: Channel) -> None:
        self.cfg = cfg
        self.channel = channel
        self.state = InaState(cfg)
        super().__init__(
            [channel],
            channel.id,
            cfg.url,
            make_session(self.state),
            {"baudrate": cfg.baud, "timeout": READ_TIMEOUT_S},
        )

    def instrument(self) -> Instrument | None:
        """What the logger's banner says it is (None before a banner arrived)."""
        return self.state.instrument
