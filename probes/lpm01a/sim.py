"""A simulated X-NUCLEO-LPM01A for ``powerd sim lpm01a``: the shield's commands, replies and data
streams at the configured rate, its current drawn from a ``sim`` waveform so the truth is known.

The simulated target draws ``waveform.power_w(t)`` from the configured supply voltage, so the shield
measures ``I = P / V``. Sample k of an acquisition is the current at ``t_start + k / rate`` on the
host clock (``output energy``: the exact energy of the waveform over the k-th period). Data are
produced in chunks per tick from the host clock, so 100 kS/s really flows through the pty:
binary words ``(m, e)`` with ``I = m × 16^-e`` (largest e that keeps m ≤ 4095), or ASCII tokens
``DDDD±EE``, with a timestamp every ``timestamp_every`` seconds of acquisition (a ``F0 F3`` frame,
or a ``TimeStamp:`` line) starting at 0, the end-of-acquisition frame on ``stop``, and an
overcurrent (``F0 F5``, then the end) when the current exceeds ``limit_a`` or at
``overcurrent_at`` seconds.

Replies follow the shield: ``\\r\\nPowerShield > ack <command>[ value]\\r\\n\\r\\n``; refusals are
``PowerShield > error: <command>`` then ``PowerShield > Error detail: <why>``. Assumptions where no
source shows the firmware's exact words (README, "Simulator"): the refusal texts, that
configuration needs ``htc`` first and is refused during an acquisition, that ``format ascii_dec``
above 5 kHz is refused at ``start`` for an endless acquisition (ST's table limits it to 1 s at 10
kHz), and the ASCII overcurrent line. A pause of the host's ticks longer than ``POWER_LOSS_S``
(the cable was pulled: a USB-powered shield loses power) resets the shield to standalone idle.

Options (``--option k=v``): ``version`` (firmware, default 1.0.7), ``timestamp_every`` (s, default
1), ``overcurrent_at`` (s after start), ``limit_a`` (A, default 0.059), ``tick`` (s, default
0.005).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from powerd.block import F64, I64
from powerd.errors import SpecError
from powerd.probes.lpm01a.config import RATES_HZ
from powerd.probes.sim.waveform import Waveform

POWER_LOSS_S = 1.0
FLOOR_A = 1e-9
OPTIONS = {"version", "timestamp_every", "overcurrent_at", "limit_a", "tick"}
ASCII_ENDLESS_MAX_HZ = 5_000
ENERGY_MAX_HZ = 10_000
_NUM_RE = re.compile(r"^([0-9]*\.?[0-9]+)([munk]|[+-][0-9]{1,2})?$")
_SUFFIX = {"m": 1e-3, "u": 1e-6, "n": 1e-9, "k": 1e3}


def parse_number(text: str) -> float | None:
    """The firmware's numbers: ``3300m``, ``100u``, ``2-3`` (= 2e-3), ``100k``, ``10``."""
    m = _NUM_RE.match(text.strip().lower())
    if m is None:
        return None
    value = float(m.group(1))
    suffix = m.group(2)
    if suffix is None:
        return value
    if suffix in _SUFFIX:
        return value * _SUFFIX[suffix]
    return value * 10.0 ** int(suffix)


def encode_binary(amps: F64) -> bytes:
    """Currents → big-endian words ``(e << 12) | m`` with ``amps ≈ m × 16^-e``, m ≤ 4095."""
    a = np.maximum(amps, FLOOR_A)  # the shield reads at least its noise floor, never 0
    with np.errstate(divide="ignore"):
        e = np.floor(np.log(4095.0 / np.where(a > 0, a, 1e-30)) / math.log(16.0))
    e = np.clip(e, 1, 14).astype(np.int64)
    m = np.rint(a * 16.0**e).astype(np.int64)
    over = m > 4095
    if bool(over.any()):
        e = np.where(over, np.maximum(e - 1, 1), e)
        m = np.minimum(np.rint(a * 16.0**e), 4095).astype(np.int64)
    words = ((e << 12) | m).astype(">u2")
    return words.tobytes()


def ascii_token(value: float) -> str:
    """``640.9e-6`` → ``6409-07``: four significant digits and a signed two-digit exponent."""
    if not value > 0:
        return "0000+00"
    e = math.floor(math.log10(value)) - 3
    mant = round(value / 10.0**e)
    if mant >= 10000:
        mant, e = round(mant / 10), e + 1
    return f"{mant:04d}{'-' if e < 0 else '+'}{abs(e):02d}"


def timestamp_frame(ms: int, load_pct: int = 0) -> bytes:
    return b"\xf0\xf3" + int(ms).to_bytes(4, "big") + bytes([load_pct]) + b"\xff\xff"


def timestamp_line(ms: int, load_pct: int = 0) -> bytes:
    return f"TimeStamp: {ms // 1000:03d}s {ms % 1000:03d}ms, buff {load_pct:02d}%\r\n".encode()


@dataclass
class ShieldConfig:
    volt_mv: int = 3300
    freq_hz: int = 100
    acqtime_s: float = 10.0  # 0 = infinite
    acqmode: str = "dyn"
    funcmode: str = "optim"
    output: str = "current"
    fmt: str = "ascii_dec"
    trigsrc: str = "sw"
    pwr: str = "auto"


@dataclass
class PowerShieldSim:
    """The simulated shield (a ``MeterModel``); counters say what it sent, for tests and benches."""

    waveform: Waveform
    version: str = "1.0.7"
    timestamp_every_s: float = 1.0
    overcurrent_at_s: float | None = None
    limit_a: float = 0.059
    tick_s: float = 0.005
    cfg: ShieldConfig = field(default_factory=ShieldConfig)
    controlled: bool = False
    acquiring: bool = False
    samples_sent: int = 0
    timestamps_sent: int = 0
    acquisitions: int = 0
    power_cycles: int = 0
    commands: list[str] = field(default_factory=list)
    _inbuf: bytes = b""
    _t_start_ns: int = 0
    _next_k: int = 0
    _next_ts_ms: int = 0
    _last_seen_ns: int = 0

    # --- MeterModel ----------------------------------------------------------------------------

    def on_input(self, data: bytes, now_ns: int) -> bytes:
        self._alive(now_ns)
        self._inbuf += data
        out = []
        while b"\n" in self._inbuf or b"\r" in self._inbuf:
            cut = min(i for i in (self._inbuf.find(b"\n"), self._inbuf.find(b"\r")) if i >= 0)
            line, self._inbuf = self._inbuf[:cut], self._inbuf[cut + 1 :]
            text = line.decode("ascii", "replace").strip()
            if text:
                self.commands.append(text)
                del self.commands[:-64]
                out.append(self._command(text, now_ns))
        if len(self._inbuf) > 256:
            self._inbuf = b""
            out.append(self._error("?", "command line too long"))
        return b"".join(out)

    def stream(self, now_ns: int) -> bytes:
        self._alive(now_ns)
        if not self.acquiring:
            return b""
        return self._generate(now_ns)

    # --- state -------------------------------------------------------------------------------

    def _alive(self, now_ns: int) -> None:
        """A pause of the host's calls longer than a pulled cable lasts: the shield lost power."""
        if self._last_seen_ns and now_ns - self._last_seen_ns > POWER_LOSS_S * 1e9:
            self.power_cycles += 1
            self._reset()
        self._last_seen_ns = now_ns

    def _reset(self) -> None:
        self.cfg = ShieldConfig()
        self.controlled = False
        self.acquiring = False
        self._inbuf = b""

    @property
    def period_ns(self) -> int:
        return 1_000_000_000 // self.cfg.freq_hz

    # --- commands ----------------------------------------------------------------------------

    @staticmethod
    def _ack(line: str, value: str = "") -> bytes:
        return f"\r\nPowerShield > ack {line}{' ' + value if value else ''}\r\n\r\n".encode()

    @staticmethod
    def _error(line: str, detail: str) -> bytes:
        return (
            f"\r\nPowerShield > error: {line}\r\n\r\nPowerShield > Error detail: {detail}\r\n\r\n"
        ).encode()

    def _command(self, line: str, now_ns: int) -> bytes:
        words = line.split()
        name, args = words[0].lower(), words[1:]
        arg = args[0].lower() if args else ""
        if name == "stop":
            if not self.acquiring:
                return self._error(line, "no acquisition in progress")
            return self._end(now_ns, overcurrent=False)
        if self.acquiring and name not in ("pwr", "targrst", "status", "echo"):
            return self._error(line, "acquisition in progress: send stop first")
        if name == "echo":
            return f"\r\nPowerShield > echo {' '.join(args)}\r\n".encode()
        if name in ("help", "powershield", "version", "status", "htc", "range"):
            return self._query(name, line)
        if name == "psrst":
            self._reset()
            return b""
        if not self.controlled:
            return self._error(line, "host control needed: send htc first")
        if name == "hrc":
            self.controlled = False
            return self._ack(line)
        if name == "start":
            return self._start(line, now_ns)
        return self._setting(name, arg, args, line)

    def _query(self, name: str, line: str) -> bytes:
        if name == "htc":
            self.controlled = True
            return self._ack(line)
        value = {
            "version": self.version,
            "status": "ok",
            "powershield": "PowerShield present 00000000-00000000-0000000",
            "range": "1-09 200-03",
            "help": "htc hrc version status volt freq acqtime acqmode funcmode output format "
            "trigsrc pwr start stop",
        }[name]
        return self._ack(line, value)

    def _setting(self, name: str, arg: str, args: list[str], line: str) -> bytes:
        c = self.cfg
        if name == "volt":
            if arg == "get":
                return self._ack(line, f"{c.volt_mv:04d}-03")
            v = parse_number(arg)
            if v is None or not 1.8 - 1e-9 <= v <= 3.3 + 1e-9:
                return self._error(line, "voltage out of range [1800m; 3300m]")
            c.volt_mv = round(v * 1000)
            return self._ack(line)
        if name == "freq":
            f = parse_number(arg)
            if f is None or f not in RATES_HZ:
                return self._error(line, "frequency not in list")
            c.freq_hz = int(f)
            return self._ack(line)
        if name == "acqtime":
            if arg in ("0", "inf"):
                c.acqtime_s = 0.0
                return self._ack(line)
            t = parse_number(arg)
            if t is None or not 100e-6 <= t <= 100:
                return self._error(line, "acquisition time out of range [100u; 100]")
            c.acqtime_s = t
            return self._ack(line)
        choices = {
            "acqmode": ("acqmode", ("dyn", "stat")),
            "funcmode": ("funcmode", ("optim", "high")),
            "output": ("output", ("current", "energy")),
            "format": ("fmt", ("ascii_dec", "bin_hexa")),
            "trigsrc": ("trigsrc", ("sw", "d7")),
        }
        if name in choices:
            attr, allowed = choices[name]
            if arg not in allowed:
                return self._error(line, f"argument not in list {{{', '.join(allowed)}}}")
            setattr(c, attr, arg)
            return self._ack(line)
        if name == "pwr":
            if arg == "get":
                return self._ack(line, "on" if c.pwr == "on" or self.acquiring else "off")
            if arg not in ("on", "off", "auto"):
                return self._error(line, "argument not in list {auto, on, off}")
            c.pwr = arg
            return self._ack(line)
        if name == "temp":
            return self._ack(line, "28.0" if arg != "degf" else "82.4")
        if name in ("lcd", "trigdelay", "currthres", "pwrend", "targrst", "eventsrc"):
            return self._ack(line)
        if name in ("calib", "autotest"):
            return self._ack(line, "ok")
        return self._error(line, "command not found")

    def _start(self, line: str, now_ns: int) -> bytes:
        c = self.cfg
        if c.output == "energy" and c.freq_hz > ENERGY_MAX_HZ:
            return self._error(line, "energy output limited to 10k")
        if c.fmt == "ascii_dec" and c.freq_hz > ASCII_ENDLESS_MAX_HZ and c.acqtime_s == 0:
            return self._error(line, "ascii_dec above 5k needs a limited acqtime; use bin_hexa")
        if c.pwr == "off":
            return self._error(line, "target power is off")
        self.acquiring = True
        self.acquisitions += 1
        self._t_start_ns = now_ns
        self._next_k = 0
        self._next_ts_ms = 0
        return self._ack(line)

    # --- data ----------------------------------------------------------------------------------

    def _due(self, now_ns: int) -> int:
        """Samples due by ``now``: current samples at their instant, energy at their period end."""
        elapsed = now_ns - self._t_start_ns
        if elapsed < 0:
            return 0
        n = elapsed // self.period_ns + (0 if self.cfg.output == "energy" else 1)
        if self.cfg.acqtime_s:
            n = min(n, round(self.cfg.acqtime_s * self.cfg.freq_hz))
        return int(n)

    def _values(self, k: I64) -> F64:
        t = self._t_start_ns + k * np.int64(self.period_ns)
        if self.cfg.output == "energy":
            wf = self.waveform
            base = self._t_start_ns - self._t_start_ns % wf.period_ns
            edges = np.append(t, t[-1] + self.period_ns) - base
            cum = wf.cumulative_j(edges)
            return np.diff(cum)
        return self.waveform.power_w(t) / (self.cfg.volt_mv / 1000.0)

    def _overcurrent_slot(self, k: I64, v: F64) -> int | None:
        """The first slot at which the protection trips, if any in ``k``."""
        cut: int | None = None
        if self.overcurrent_at_s is not None:
            at = math.ceil(self.overcurrent_at_s * self.cfg.freq_hz)
            if k[0] <= at <= k[-1]:
                cut = at
        if self.cfg.acqmode == "dyn":
            volts = self.cfg.volt_mv / 1e3
            amps = v if self.cfg.output != "energy" else v * self.cfg.freq_hz / volts
            over = np.flatnonzero(amps > self.limit_a)
            if over.size:
                first = int(k[over[0]])
                cut = first if cut is None else min(cut, first)
        return cut

    def _generate(self, now_ns: int) -> bytes:
        due = self._due(now_ns)
        if due <= self._next_k:
            return self._maybe_finish(now_ns)
        k = np.arange(self._next_k, due, dtype=np.int64)
        v = self._values(k)
        cut = self._overcurrent_slot(k, v)
        if cut is not None:
            keep = int(cut - k[0])
            return self._encode(k[:keep], v[:keep]) + self._end(now_ns, overcurrent=True)
        out = self._encode(k, v)
        return out + self._maybe_finish(now_ns)

    def _maybe_finish(self, now_ns: int) -> bytes:
        c = self.cfg
        if self.acquiring and c.acqtime_s and self._next_k >= round(c.acqtime_s * c.freq_hz):
            return self._end(now_ns, overcurrent=False, flush=False)
        return b""

    def _encode(self, k: I64, v: F64) -> bytes:
        """Samples ``k`` with a timestamp before each slot that starts a timestamp period (the
        one at slot 0 opens the acquisition even if no sample follows)."""
        rate = self.cfg.freq_hz
        every_ms = max(1, round(self.timestamp_every_s * 1000))
        binary = self.cfg.fmt == "bin_hexa"
        parts: list[bytes] = []
        if k.size == 0:
            if self._next_ts_ms == 0:
                parts.append(timestamp_frame(0) if binary else timestamp_line(0))
                self.timestamps_sent += 1
                self._next_ts_ms = every_ms
            return b"".join(parts)
        i = 0
        while i < k.size:
            ts_slot = -(-self._next_ts_ms * rate // 1000)
            if ts_slot <= k[i]:
                ms = self._next_ts_ms
                parts.append(timestamp_frame(ms) if binary else timestamp_line(ms))
                self.timestamps_sent += 1
                self._next_ts_ms += every_ms
                continue
            j = min(k.size, i + int(ts_slot - k[i]))
            chunk = v[i:j]
            if binary:
                parts.append(encode_binary(chunk))
            else:
                parts.append("".join(ascii_token(x) + "\r\n" for x in chunk.tolist()).encode())
            i = j
        self.samples_sent += int(k.size)
        self._next_k = int(k[-1]) + 1
        return b"".join(parts)

    def _end(self, now_ns: int, overcurrent: bool, flush: bool = True) -> bytes:
        """The acquisition ends: what was due is sent, then the end frame and the text."""
        out = b""
        if flush and not overcurrent:
            due = self._due(now_ns)
            if due > self._next_k:
                k = np.arange(self._next_k, due, dtype=np.int64)
                out += self._encode(k, self._values(k))
        self.acquiring = False
        binary = self.cfg.fmt == "bin_hexa"
        if overcurrent:
            out += (
                b"\xf0\xf5\xff\xff"
                if binary
                else b"PowerShield > overcurrent detected: target power switched off\r\n"
            )
        if binary:
            out += b"\xf0\xf4\xff\xff"
        return out + b"\r\nPowerShield > Acquisition completed\r\n\r\n"


def make(model: str, waveform: Waveform, options: dict[str, str]) -> PowerShieldSim:
    """The ``powerd sim lpm01a`` factory."""
    unknown = set(options) - OPTIONS
    if unknown:
        raise SpecError(
            f"lpm01a sim: unknown option {sorted(unknown)[0]!r}; "
            f"known: {', '.join(sorted(OPTIONS))}"
        )

    def num(key: str, default: float | None) -> float | None:
        if key not in options:
            return default
        try:
            value = float(options[key])
        except ValueError:
            raise SpecError(f"lpm01a sim: {key}={options[key]!r} is not a number") from None
        if not value > 0 or not math.isfinite(value):
            raise SpecError(f"lpm01a sim: {key} must be a positive number")
        return value

    return PowerShieldSim(
        waveform=waveform,
        version=options.get("version", "1.0.7"),
        timestamp_every_s=num("timestamp_every", 1.0) or 1.0,
        overcurrent_at_s=num("overcurrent_at", None),
        limit_a=num("limit_a", 0.059) or 0.059,
        tick_s=num("tick", 0.005) or 0.005,
    )


__all__ = ["PowerShieldSim", "ascii_token", "encode_binary", "make"]
