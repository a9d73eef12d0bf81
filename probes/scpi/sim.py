"""Simulated SCPI instruments: each profile's real command set, reply format, rate and quirks.

One module serves every profile named in ``probes/simulators.py``. Commands are matched the SCPI
way: each mnemonic in its long form or its short form (the capitals), case-insensitive, optional
nodes in brackets; anything else is an *undefined header*: error -113 is queued and **nothing is
sent back**, exactly what a real instrument does (this is how ``MEAS:POW?`` on a Siglent — whose
mnemonic is ``POWEr``, short ``POWE`` — gives a timeout). A bad parameter queues -224, again
without a reply. The error queue is read with the model's error query.

Readings come from the waveform on the host clock, as each instrument makes them:

- supplies (Rigol, Siglent) and the PW3335 refresh a held reading every ``update`` seconds, the
  mean power of the interval that just ended (phase-locked to UTC);
- the N67xx acquires on demand: ``MEAS`` averages 1024 points × 20.48 µs from the moment the
  command arrives and answers when done (``FETC`` returns the last acquisition);
- the PA1000 refreshes every 0.5 s, sets the new-data bit of ``:DSR?`` (cleared when read), and
  pauses about a second for autozero every minute (``azero=0`` disables it).

Voltage is the supply's setpoint (``volts``), current is power over voltage, all rounded to the
digits the instrument prints. Options: ``volts`` (default 5), ``update`` (s, held readings),
``azero`` (s between PA1000 autozeros, default 60), ``delay`` (s before a reply, default 0.003).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from powerd.errors import SpecError
from powerd.probes.serialsim import MeterModel
from powerd.probes.sim.waveform import Waveform

Handler = Callable[[str, int], str | None]
OPTIONS = {"volts", "update", "azero", "delay"}
STALE_REPLY_NS = 500_000_000
STALE_INPUT_NS = 1_000_000_000


class ParamError(Exception):
    """A parameter the instrument rejects (SCPI -224 illegal parameter value)."""


def header_regex(pattern: str) -> re.Pattern[str]:
    """A regex accepting ``pattern``'s SCPI header in long or short form, e.g.
    ``:MEASure:POWEr?`` accepts ``MEAS:POWE?`` and ``measure:power?`` but not ``MEAS:POW?``."""
    if pattern.startswith("*"):
        return re.compile("^" + re.escape(pattern) + "$", re.IGNORECASE)
    query = pattern.endswith("?")
    body = pattern.rstrip("?")
    out = [":?"]
    first = True
    for optional, node in re.findall(r"\[:?([A-Za-z]+)\]|:?([A-Za-z]+)", body):
        word = optional or node
        short_m = re.match(r"[A-Z]+", word)
        short = short_m.group(0) if short_m else word.upper()
        alt = word.upper() if short == word.upper() else f"(?:{word.upper()}|{short})"
        sep = "" if first else ":"
        out.append(f"(?:{sep}{alt})?" if optional else f"{sep}{alt}")
        first = False
    out.append(r"\?" if query else "")
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE)


@dataclass
class Values:
    """One reading of the instrument: V, A, W."""

    volts: float
    amps: float
    watts: float


class ScpiInstrument:
    """Common SCPI machinery: input framing, header matching, error queue, delayed replies."""

    tick_s = 0.002
    reply_terminator = "\n"
    one_command_per_message = False
    no_error = '0,"No error"'

    def __init__(self, waveform: Waveform, options: dict[str, str]) -> None:
        self.waveform = waveform
        self.volts = _float(options, "volts", 5.0)
        self.delay_ns = round(_float(options, "delay", 0.003) * 1e9)
        self.errors: list[tuple[int, str]] = []
        self.esr = 0
        self.commands: list[tuple[re.Pattern[str], Handler]] = []
        self._inbuf = b""
        self._last_input_ns = 0
        self._out: list[tuple[int, bytes]] = []
        self.received: list[str] = []
        self.add("*IDN?", lambda _p, _t: self.idn)
        self.add("*CLS", self._cls)
        self.add("*ESR?", self._esr_query)

    idn = "SIM,0,0,0"

    def add(self, pattern: str, handler: Handler) -> None:
        self.commands.append((header_regex(pattern), handler))

    def push_error(self, code: int, text: str) -> None:
        self.errors.append((code, text))
        del self.errors[:-16]
        self.esr |= 32 if -199 <= code <= -100 else 16

    def _cls(self, _p: str, _t: int) -> None:
        self.errors.clear()
        self.esr = 0

    def _esr_query(self, _p: str, _t: int) -> str:
        value, self.esr = self.esr, 0
        return str(value)

    def pop_error(self) -> str:
        if not self.errors:
            return self.no_error
        code, text = self.errors.pop(0)
        return self.format_error(code, text)

    def format_error(self, code: int, text: str) -> str:
        return f'{code},"{text}"'

    # --- the MeterModel protocol ---

    def on_input(self, data: bytes, now_ns: int) -> bytes:
        if now_ns - self._last_input_ns > STALE_INPUT_NS:
            self._inbuf = b""  # a half command from before the link went down
        self._last_input_ns = now_ns
        self._inbuf += data
        *messages, self._inbuf = self._inbuf.split(b"\n")
        for raw in messages:
            self._message(raw.rstrip(b"\r"), now_ns)
        return self.stream(now_ns)

    def stream(self, now_ns: int) -> bytes:
        out = b""
        keep: list[tuple[int, bytes]] = []
        for due, data in self._out:
            if due > now_ns:
                keep.append((due, data))
            elif now_ns - due < STALE_REPLY_NS:
                out += data
        self._out = keep
        return out

    def _message(self, raw: bytes, now_ns: int) -> None:
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            self.push_error(-101, "Invalid character")
            return
        if not text:
            return
        self.received.append(text)
        del self.received[:-64]
        units = [text] if self.one_command_per_message else text.split(";")
        if self.one_command_per_message and ";" in text:
            self.push_error(-100, "Command error")
            return
        replies: list[str] = []
        for unit in units:
            header, _, param = unit.strip().partition(" ")
            handler = self._find(header)
            if handler is None:
                self.push_error(-113, "Undefined header")
                continue
            try:
                reply = handler(param.strip(), now_ns)
            except ParamError:
                self.push_error(-224, "Illegal parameter value")
                continue
            if reply is not None:
                replies.append(reply)
        if replies:
            delay = self.reply_delay_ns(text)
            line = (";".join(replies) + self.reply_terminator).encode("ascii")
            self._out.append((now_ns + delay, line))

    def _find(self, header: str) -> Handler | None:
        for regex, handler in self.commands:
            if regex.match(header):
                return handler
        return None

    def reply_delay_ns(self, text: str) -> int:
        return self.delay_ns

    # --- readings ---

    def mean_power(self, t_begin_ns: int, t_end_ns: int) -> float:
        return self.waveform.energy_j(t_begin_ns, t_end_ns) / ((t_end_ns - t_begin_ns) / 1e9)

    def values(self, power_w: float) -> Values:
        return Values(self.volts, power_w / self.volts if self.volts else 0.0, power_w)


class HeldReadings(ScpiInstrument):
    """An instrument that refreshes a held reading every ``update_ns`` (phase-locked to UTC)."""

    default_update_s = 1 / 3

    def __init__(self, waveform: Waveform, options: dict[str, str]) -> None:
        super().__init__(waveform, options)
        self.update_ns = round(_float(options, "update", self.default_update_s) * 1e9)

    def held(self, now_ns: int) -> Values:
        t_k = now_ns // self.update_ns * self.update_ns
        return self.values(self.mean_power(t_k - self.update_ns, t_k))


def _channel(param: str, prefix: str, count: int) -> int:
    """``CH2`` (Rigol, Siglent) or ``(@2)`` (Keysight) → 2; anything else is a ParamError."""
    p = param.strip().upper()
    m = re.fullmatch(r"CH([1-9])", p) if prefix == "CH" else re.fullmatch(r"\(@([1-9])\)", p)
    if not m or int(m.group(1)) > count:
        raise ParamError(param)
    return int(m.group(1))


class RigolDP800(HeldReadings):
    """Rigol DP832: ``:MEASure:POWEr? CHn``, ``:MEASure:ALL? CHn`` (V,I,P), decimal replies."""

    idn = "RIGOL TECHNOLOGIES,DP832,DP8C000000000,00.01.16"

    def __init__(self, waveform: Waveform, options: dict[str, str]) -> None:
        super().__init__(waveform, options)
        self.add(":MEASure:POWEr?", lambda p, t: self._fmt(p, t, "p"))
        self.add(":MEASure:VOLTage?", lambda p, t: self._fmt(p, t, "v"))
        self.add(":MEASure:CURRent?", lambda p, t: self._fmt(p, t, "i"))
        self.add(":MEASure:ALL?", lambda p, t: self._fmt(p, t, "all"))
        self.add(":SYSTem:ERRor?", lambda _p, _t: self.pop_error())

    def _fmt(self, param: str, now_ns: int, what: str) -> str:
        _channel(param or "CH1", "CH", 3)
        v = self.held(now_ns)
        volts = f"{v.volts:.3f}" if v.volts >= 10 else f"{v.volts:.4f}"
        amps = f"{v.amps:.4f}"
        watts = f"{v.watts:.3f}"
        return {"v": volts, "i": amps, "p": watts, "all": f"{volts},{amps},{watts}"}[what]


class SiglentSPD(HeldReadings):
    """Siglent SPD3303X: ``MEASure:POWEr? CHn`` etc. with 3 decimals; silent on bad queries."""

    idn = "Siglent Technologies,SPD3303X,SPD3XIDX000000,1.01.01.02.05,V3.0"
    default_update_s = 0.5
    no_error = "0  No Error"

    def __init__(self, waveform: Waveform, options: dict[str, str]) -> None:
        super().__init__(waveform, options)
        self.add("MEASure:POWEr?", lambda p, t: self._fmt(p, t, "p"))
        self.add("MEASure:VOLTage?", lambda p, t: self._fmt(p, t, "v"))
        self.add("MEASure:CURRent?", lambda p, t: self._fmt(p, t, "i"))
        self.add("SYSTem:ERRor?", lambda _p, _t: self.pop_error())

    def format_error(self, code: int, text: str) -> str:
        return f"{code}  {text}"

    def _fmt(self, param: str, now_ns: int, what: str) -> str:
        _channel(param, "CH", 2)
        v = self.held(now_ns)
        return f"{ {'v': v.volts, 'i': v.amps, 'p': v.watts}[what]:.3f}"


class KeysightN6700(ScpiInstrument):
    """Keysight N6705C with a simultaneous-measurement module: ``MEAS`` acquires 21 ms from the
    command, ``FETC`` returns the last acquisition; replies ``+n.nnnnnnE+nn``."""

    idn = "Keysight Technologies,N6705C,MY00000000,D.04.01"
    acq_ns = round(1024 * 20.48e-6 * 1e9)

    def __init__(self, waveform: Waveform, options: dict[str, str]) -> None:
        super().__init__(waveform, options)
        self.last: dict[int, Values] = {}
        for what, name in (("v", "VOLTage"), ("i", "CURRent"), ("p", "POWer")):
            self.add(f"MEASure[:SCALar]:{name}[:DC]?", self._meas(what))
            self.add(f"FETCh[:SCALar]:{name}[:DC]?", self._fetch(what))
        self.add("SYSTem:ERRor?", lambda _p, _t: self.pop_error())

    def _meas(self, what: str) -> Handler:
        def handler(param: str, now_ns: int) -> str:
            ch = _channel(param, "@", 4)
            self.last[ch] = self.values(self.mean_power(now_ns, now_ns + self.acq_ns))
            return self._fmt(self.last[ch], what)

        return handler

    def _fetch(self, what: str) -> Handler:
        def handler(param: str, now_ns: int) -> str:
            ch = _channel(param, "@", 4)
            if ch not in self.last:
                raise ParamError("no acquisition yet")
            return self._fmt(self.last[ch], what)

        return handler

    @staticmethod
    def _fmt(v: Values, what: str) -> str:
        return f"{ {'v': v.volts, 'i': v.amps, 'p': v.watts}[what]:+.6E}"

    def reply_delay_ns(self, text: str) -> int:
        return self.delay_ns + (self.acq_ns if text.upper().lstrip(":").startswith("MEAS") else 0)


def hioki_nr3(x: float) -> str:
    """HIOKI's 10-character NR3: sign, 6 characters with the point, ``E``, exponent 0/±3/±6."""
    if x == 0 or not math.isfinite(x):
        return "+0.0000E+0"
    e = 3 * math.floor(math.log10(abs(x)) / 3)
    e = max(-6, min(6, e))
    for _ in range(2):
        m = x / 10.0**e
        ints = len(str(int(abs(m))))
        text = f"{abs(m):.{max(0, 5 - ints)}f}"
        if len(text) <= 6 and abs(float(text)) < 1000:
            return f"{'+' if x >= 0 else '-'}{text:>6}E{e:+d}".replace(" ", "0")
        e += 3
    return "+999.99E+9"


class HiokiPW3335(HeldReadings):
    """HIOKI PW3335: ``:MEASure? U,I,P`` with ``;`` between items; headers on until
    ``:HEADer OFF``; 200 ms updates; replies end in CR LF; errors only in ``*ESR?``."""

    idn = "HIOKI,PW3335,000000000,V1.00"
    default_update_s = 0.2
    reply_terminator = "\r\n"

    def __init__(self, waveform: Waveform, options: dict[str, str]) -> None:
        super().__init__(waveform, options)
        self.headers = True
        self.add(":HEADer", self._header)
        self.add(":HEADer?", lambda _p, _t: ":HEADER ON" if self.headers else "OFF")
        self.add(":MEASure[:POWer]?", self._measure)

    def _header(self, param: str, _t: int) -> None:
        if param.upper() not in ("ON", "OFF", "1", "0"):
            raise ParamError(param)
        self.headers = param.upper() in ("ON", "1")

    def _measure(self, param: str, now_ns: int) -> str:
        items = [x.strip().upper() for x in param.split(",") if x.strip()]
        if not items:
            raise ParamError(param)
        v = self.held(now_ns)
        table = {"U": v.volts, "I": v.amps, "P": v.watts}
        if any(item not in table for item in items):
            raise ParamError(param)
        return ";".join(
            (f"{item} " if self.headers else "") + hioki_nr3(table[item]) for item in items
        )


class TektronixPA1000(HeldReadings):
    """Tektronix PA1000: ``:SEL:...`` builds the result list, ``:DSR?`` new-data bit 1 (cleared
    on read), ``:FRD?`` the list; one command per message; autozero pause once a minute."""

    idn = "Tektronix,PA1000,SIM0001,1.004.002"
    default_update_s = 0.5
    one_command_per_message = True
    azero_pause_ns = 1_000_000_000

    def __init__(self, waveform: Waveform, options: dict[str, str]) -> None:
        super().__init__(waveform, options)
        self.azero_ns = round(_float(options, "azero", 60.0) * 1e9)
        self.selection: list[str] = []
        self.dse = 0
        self.seen_update = -1
        self.start_ns: int | None = None
        self.add(":SEL:CLR", self._sel_clear)
        for name in ("VLT", "AMP", "WAT"):
            self.add(f":SEL:{name}", self._sel(name))
        self.add(":DSE", self._dse)
        self.add(":DSE?", lambda _p, _t: str(self.dse))
        self.add(":DSR?", self._dsr)
        self.add(":FRD?", self._frd)

    def _sel_clear(self, _p: str, _t: int) -> None:
        self.selection.clear()

    def _sel(self, name: str) -> Handler:
        def handler(_p: str, _t: int) -> None:
            if name not in self.selection:
                self.selection.append(name)

        return handler

    def _dse(self, param: str, _t: int) -> None:
        if not param.isdigit():
            raise ParamError(param)
        self.dse = int(param)

    def last_update(self, now_ns: int) -> int:
        """Index of the latest refresh; refreshes inside an autozero pause do not happen."""
        if self.start_ns is None:
            self.start_ns = now_ns
        k = now_ns // self.update_ns
        while self.azero_ns and self._in_autozero(k * self.update_ns):
            k -= 1
        return k

    def _in_autozero(self, t_ns: int) -> bool:
        assert self.start_ns is not None
        since = t_ns - self.start_ns
        return since > 0 and since % self.azero_ns < self.azero_pause_ns and since >= self.azero_ns

    def _dsr(self, _p: str, now_ns: int) -> str:
        k = self.last_update(now_ns)
        new = k != self.seen_update
        self.seen_update = k
        return str((2 if new else 0) | 1)

    def _frd(self, _p: str, now_ns: int) -> str:
        k = self.last_update(now_ns)
        t_k = k * self.update_ns
        v = self.values(self.mean_power(t_k - self.update_ns, t_k))
        table = {"VLT": v.volts, "AMP": v.amps, "WAT": v.watts}
        return ",".join(f"{table[name]:.4E}" for name in self.selection)


MODELS: dict[str, type[ScpiInstrument]] = {
    "rigol-dp800": RigolDP800,
    "siglent-spd": SiglentSPD,
    "keysight-n6700": KeysightN6700,
    "hioki-pw3335": HiokiPW3335,
    "tek-pa1000": TektronixPA1000,
}


def _float(options: dict[str, str], key: str, default: float) -> float:
    try:
        value = float(options.get(key, default))
    except ValueError:
        raise SpecError(f"scpi sim: {key}={options[key]!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise SpecError(f"scpi sim: {key} must be a non-negative number")
    return value


def make(model: str, waveform: Waveform, options: dict[str, str]) -> MeterModel:
    """Factory named in ``probes/simulators.py``."""
    if model not in MODELS:
        raise SpecError(f"scpi sim: unknown model {model!r}; known: {', '.join(MODELS)}")
    unknown = set(options) - OPTIONS
    if unknown:
        raise SpecError(
            f"scpi sim: unknown option {sorted(unknown)[0]!r}; known: {', '.join(sorted(OPTIONS))}"
        )
    if "update" in options and _float(options, "update", 1.0) <= 0:
        raise SpecError("scpi sim: update must be > 0 seconds")
    if _float(options, "volts", 5.0) == 0:
        raise SpecError("scpi sim: volts must be > 0")
    return MODELS[model](waveform, options)
