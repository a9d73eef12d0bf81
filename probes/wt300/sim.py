"""A simulated WT310/WT310E/WT33x: the meter's command set, replies, update cycle and integrator.

Readings come from a ``sim`` waveform (the device's power) on the host's UTC clock, so the truth of
any window is known: update k ends at ``k*T`` (T the update interval) and its P is exactly the
waveform's mean power over it, ``energy_j(k*T - T, k*T) / T``; the integrator's WH at update k is
the exact energy since ``:INTEG:STAR`` (stop/start accumulate, reset zeroes). Element e of a
multi-element model draws ``share_e`` of the waveform at the same voltage.

What it implements, as the probe uses it (short and long SCPI forms, optional ``:INPut`` and
``:NORMal`` nodes, ``;``-joined message units, one reply line per message): ``*IDN? *CLS *RST
*OPT?``, ``:SYST:COMM:COMM``, ``:NUM:FORM``, ``:COMM:HEAD/VERB/REM/WAIT``, ``:STAT:QMES/ERR?/EESR?
/COND?/FILT<x>``, ``:RATE``, ``:INP:VOLT|CURR:RANG/AUTO``, ``:INP:CFAC``, ``:INTEG:MODE/TIM/STAR
/STOP/RES/STAT?``, ``:NUM:NORM:NUM/ITEM<x>/VAL?``. Errors go to the error queue as the meter's
do: an unknown header is ``-113,"Undefined header"`` and a query with an error gets no reply (so
the host sees a timeout and reads ``:STAT:ERR?``). ``:COMM:WAIT`` holds every later command until
the extended event arrives (EESR bit 0 with ``:STAT:FILT1 FALL`` at each update end).

Auto range follows the manual (IM WT310E-01EN §2): up when an rms value exceeds 130 % of the
range, down when it is at most 30 % of it and at most 125 % of the next lower range; while a range
switches no measurement takes place (the next update reads NAN, and auto range decides nothing on
it: one NAN update per move, never a chain of moves on values it did not measure). Above 140 % of
the range a reading is overrange: U reads INF when the voltage is over, I when the current is, and
P, S, Q and LAMBDA when either is (the other of U / I still reads its number).

Options (``powerd sim wt310 --option k=v``): ``model`` (ID string model, e.g. WT310E, WT333E),
``voltage`` (V, default 12), ``shares`` (per element, ``/``-separated, default equal),
``transport`` (``serial``: replies end CR+LF, default; ``usbtmc``: LF), ``rate`` (s, initial
update interval, default 0.25), ``cf`` (crest factor 3 or 6), ``vrange``/``irange`` (a fixed
initial range instead of auto), ``serial``, ``firmware``, ``pf`` (power factor of the load,
default 1: I = P / (U × pf), S = U × I, Q = √(S² − P²), LAMBDA = P / S), ``integ_ranges``
(``allow``, default, or ``refuse``: range and auto-range commands while the integrator runs are
rejected with ``-221,"Settings conflict"``; which one the real meter does is not verified),
``error_seed`` (draw a per-run gain and offset error within the model's DC accuracy at the
initial ranges, see ``probes/sim/insterror.py``; default none: exact readings).
Setting a different range, like an auto-range move, makes the next update read NAN.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from powerd.errors import SpecError
from powerd.probes.sim.insterror import ErredWaveform, InstrumentError, parse_seed
from powerd.probes.sim.waveform import Waveform
from powerd.probes.wt300.models import MODELS, ModelSpec, lookup
from powerd.probes.wt300.session import INTEG_READING_FRAC

TICK_S = 0.002
INTEG_SEED_SALT = 7919  # the integrator's draw: another stream of the same seed
MAX_CATCH_UP_UPDATES = 100_000
SERVED_LOG = 200_000
OVERRANGE_FRAC = 1.4
AUTO_UP_FRAC = 1.3
AUTO_DOWN_FRAC = 0.3
AUTO_DOWN_NEXT_FRAC = 1.25
NO_ERROR = (0, "No error")
FUNCTIONS = {
    "U": "U",
    "I": "I",
    "P": "P",
    "S": "S",
    "Q": "Q",
    "LAMB": "LAMB",
    "LAMBDA": "LAMB",
    "WH": "WH",
    "WHP": "WHP",
    "WHM": "WHM",
    "AH": "AH",
    "TIME": "TIME",
    "NONE": "NONE",
}
MULTIPLIERS = {
    "EX": 1e18,
    "PE": 1e15,
    "T": 1e12,
    "G": 1e9,
    "K": 1e3,
    "M": 1e-3,
    "U": 1e-6,
    "N": 1e-9,
    "P": 1e-12,
    "F": 1e-15,
}
VALUE_RE = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:E[+-]?\d+)?)(EX|PE|MA|[TGKMUNPF])?(V|A|S)?")


class CommandError(Exception):
    """A command the meter rejects: its code and message go to the error queue."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _value(text: str, unit: str) -> float:
    """``15V``, ``500MA`` (mA for currents), ``100MS``, ``1.5E+02`` → SI float."""
    m = VALUE_RE.fullmatch(text.strip().upper())
    if m is None or (m.group(3) and m.group(3) != unit):
        raise CommandError(-120, "Numeric data error")
    mult = m.group(2)
    scale = 1.0
    if mult == "MA":
        scale = 1e-3 if unit == "A" else 1e6
    elif mult:
        scale = MULTIPLIERS[mult]
    return float(m.group(1)) * scale


def _bool(text: str) -> bool:
    t = text.strip().upper()
    if t in ("ON", "1"):
        return True
    if t in ("OFF", "0"):
        return False
    raise CommandError(-224, "Illegal parameter value")


def _nr3(v: float, digits: int) -> str:
    return f"{v:.{digits - 1}E}"


@dataclass
class Node:
    """One header node: long form with the short form in capitals, e.g. ``NUMeric``."""

    long: str
    optional: bool = False
    suffix: bool = False

    @property
    def short(self) -> str:
        return "".join(c for c in self.long if c.isupper() or c in {"*", "?"})

    def match(self, token: str) -> tuple[bool, int | None]:
        m = re.fullmatch(r"([A-Z*]+)(\d*)", token)
        if m is None:
            return False, None
        name, digits = m.group(1), m.group(2)
        if name not in (self.short, self.long.upper()):
            return False, None
        if digits and not self.suffix:
            return False, None
        return True, int(digits) if digits else None


def _compile(pattern: str) -> list[Node]:
    nodes = []
    for m in re.finditer(r"(\[)?:?([A-Za-z*]+)(<x>)?\]?", pattern):
        nodes.append(Node(m.group(2), optional=bool(m.group(1)), suffix=bool(m.group(3))))
    return nodes


def _match(nodes: list[Node], tokens: list[str]) -> list[int | None] | None:
    """Suffix numbers of the matched nodes, or None if the tokens are not this header."""
    if not nodes:
        return [] if not tokens else None
    node = nodes[0]
    if tokens:
        ok, suffix = node.match(tokens[0])
        if ok:
            rest = _match(nodes[1:], tokens[1:])
            if rest is not None:
                return [suffix, *rest]
    if node.optional:
        return _match(nodes[1:], tokens)
    return None


Handler = Callable[["Wt300Sim", list[int | None], str, int], str | None]


@dataclass
class Update:
    """The readings of one completed update, per element."""

    k: int
    u_v: dict[int, float]
    i_a: dict[int, float]
    p_w: dict[int, float]
    marker: dict[int, str | None]
    # overrange of U / I alone: that item reads INF, the other stays a number (P, S, Q, LAMBDA
    # read INF when either is over, ``marker``)
    u_over: frozenset[int] = frozenset()
    i_over: frozenset[int] = frozenset()


@dataclass
class Wt300Sim:
    """The meter's behaviour for ``PtySimulator``."""

    model: ModelSpec
    waveform: Waveform | ErredWaveform
    voltage_v: float = 12.0
    shares: dict[int, float] = field(default_factory=dict)
    terminator: bytes = b"\r\n"
    idn_model: str = ""
    serial_no: str = "C2SIM0001"
    firmware: str = "F1.03"
    tick_s: float = TICK_S
    rate_ns: int = 250_000_000
    crest_factor: int = 3
    power_factor: float = 1.0
    ranges_in_integ: bool = True
    # state
    vrange_v: float = 0.0
    irange_a: float = 0.0
    vauto: bool = True
    iauto: bool = True
    items: list[tuple[str, int]] = field(default_factory=list)
    n_items: int = 3
    qmes: bool = True
    filters: dict[int, str] = field(default_factory=dict)
    eesr: int = 0
    errors: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=30))
    integ_state: str = "reset"
    integ_mode: str = "NORMAL"
    integ_timer_s: int = 0
    integ_acc_j: dict[int, float] = field(default_factory=dict)
    integ_acc_s: float = 0.0
    integ_since_ns: int | None = None
    integ_gain: float = 0.0  # the integrator's own error (``error_seed``: its datasheet share)
    last: Update | None = None
    served: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=SERVED_LOG))
    commands_seen: int = 0
    _k_done: int | None = None
    _switching: bool = False
    _inbuf: bytearray = field(default_factory=bytearray)
    _queue: deque[str] = field(default_factory=deque)
    _wait_mask: int = 0
    _out: bytearray = field(default_factory=bytearray)
    _now_ns: int = 0

    def __post_init__(self) -> None:
        self.idn_model = self.idn_model or self.model.name
        if not self.shares:
            n = len(self.model.elements)
            self.shares = {e: 1.0 / n for e in self.model.elements}
        self.vrange_v = self.vrange_v or max(self.model.voltage_ranges_v(self.crest_factor))
        self.irange_a = self.irange_a or max(self.model.current_ranges_a(self.crest_factor))
        if not self.items:
            self.items = [("U", 1), ("I", 1), ("P", 1)]
        self.integ_acc_j = {e: 0.0 for e in self.model.elements}

    # ---- the update cycle -------------------------------------------------------------------

    def _element_power_w(self, k: int, e: int) -> float:
        t1 = k * self.rate_ns
        return self.shares[e] * self.waveform.energy_j(t1 - self.rate_ns, t1) / (self.rate_ns / 1e9)

    def _auto(self, ranges: tuple[float, ...], current: float, value: float) -> float:
        if value > AUTO_UP_FRAC * current:
            for r in ranges:
                if r >= current and value <= AUTO_UP_FRAC * r:
                    return r
            return ranges[-1]
        lower = [r for r in ranges if r < current]
        if lower and value <= AUTO_DOWN_FRAC * current and value <= AUTO_DOWN_NEXT_FRAC * lower[-1]:
            return lower[-1]
        return current

    def _compute(self, k: int) -> Update:
        u, i, p, marker = {}, {}, {}, {}
        u_over: set[int] = set()
        i_over: set[int] = set()
        for e in self.model.elements:
            p[e] = self._element_power_w(k, e)
            u[e] = self.voltage_v
            i[e] = abs(p[e]) / (self.voltage_v * self.power_factor) if self.voltage_v else 0.0
            if u[e] > OVERRANGE_FRAC * self.vrange_v:
                u_over.add(e)
            if i[e] > OVERRANGE_FRAC * self.irange_a:
                i_over.add(e)
            over = e in u_over or e in i_over
            marker[e] = "NAN" if self._switching else ("INF" if over else None)
        if self._switching:
            # no measurement while a range switches: nothing for auto range to decide on either
            self._switching = False
            return Update(k, u, i, p, marker, frozenset(u_over), frozenset(i_over))
        vr = ir = None
        if self.vauto:
            vr = self._auto(
                self.model.voltage_ranges_v(self.crest_factor), self.vrange_v, max(u.values())
            )
        if self.iauto:
            ir = self._auto(
                self.model.current_ranges_a(self.crest_factor), self.irange_a, max(i.values())
            )
        if (vr is not None and vr != self.vrange_v) or (ir is not None and ir != self.irange_a):
            self.vrange_v = vr or self.vrange_v
            self.irange_a = ir or self.irange_a
            self._switching = True
        return Update(k, u, i, p, marker, frozenset(u_over), frozenset(i_over))

    def _settle(self, k: int) -> None:
        """Start with auto ranges already settled on the signal (the meter has been running)."""
        p = max(abs(self._element_power_w(k, e)) for e in self.model.elements)
        i = p / (self.voltage_v * self.power_factor)
        if self.vauto:
            ranges = self.model.voltage_ranges_v(self.crest_factor)
            self.vrange_v = next((r for r in ranges if self.voltage_v <= r), ranges[-1])
        if self.iauto:
            ranges = self.model.current_ranges_a(self.crest_factor)
            self.irange_a = next((r for r in ranges if i <= r), ranges[-1])

    def _advance(self, now_ns: int) -> None:
        self._now_ns = now_ns
        k_now = now_ns // self.rate_ns
        if self._k_done is None:
            self._k_done = k_now
            self._settle(k_now)
            self.last = self._compute(k_now)
            return
        first = max(self._k_done + 1, k_now - MAX_CATCH_UP_UPDATES)
        for k in range(first, k_now + 1):
            self.last = self._compute(k)
            self._k_done = k
            if self.filters.get(1) in ("FALL", "BOTH"):
                self.eesr |= 1
            self._check_timer(k * self.rate_ns)
            if self._wait_mask and self.eesr & self._wait_mask:
                # the meter answers at the update's end, even if this thread runs late
                self._wait_mask = 0
                self._now_ns = k * self.rate_ns
                self._out += self._run_queue()
                self._now_ns = now_ns
        self._k_done = max(self._k_done, k_now)

    # ---- integrator -------------------------------------------------------------------------

    def _integ_j(self, e: int, t_ns: int) -> float:
        acc = self.integ_acc_j[e]
        if self.integ_state == "start" and self.integ_since_ns is not None:
            t = max(t_ns, self.integ_since_ns)
            acc += self.shares[e] * self.waveform.energy_j(self.integ_since_ns, t)
        return acc

    def _integ_s(self, t_ns: int) -> float:
        s = self.integ_acc_s
        if self.integ_state == "start" and self.integ_since_ns is not None:
            s += max(0, t_ns - self.integ_since_ns) / 1e9
        return s

    def _freeze(self, t_ns: int) -> None:
        for e in self.model.elements:
            self.integ_acc_j[e] = self._integ_j(e, t_ns)
        self.integ_acc_s = self._integ_s(t_ns)
        self.integ_since_ns = None

    def _check_timer(self, t_ns: int) -> None:
        if self.integ_state != "start" or not self.integ_timer_s:
            return
        if self._integ_s(t_ns) >= self.integ_timer_s:
            end = (self.integ_since_ns or t_ns) + round(
                (self.integ_timer_s - self.integ_acc_s) * 1e9
            )
            self._freeze(end)
            self.integ_state = "timeup"

    # ---- the wire ---------------------------------------------------------------------------

    def on_input(self, data: bytes, now_ns: int) -> bytes:
        self._advance(now_ns)
        self._inbuf += data
        while True:
            nl = self._inbuf.find(b"\n")
            if nl < 0:
                break
            line = bytes(self._inbuf[:nl]).decode("ascii", errors="replace").strip("\r ")
            del self._inbuf[: nl + 1]
            if line:
                self._queue.append(line)
        return self._take_out() + self._run_queue()

    def stream(self, now_ns: int) -> bytes:
        self._advance(now_ns)
        return self._take_out()

    def _take_out(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def _run_queue(self) -> bytes:
        out = bytearray()
        while self._queue and not self._wait_mask:
            reply = self._message(self._queue.popleft())
            if reply is not None:
                out += reply.encode("ascii") + self.terminator
        return bytes(out)

    def _message(self, line: str) -> str | None:
        """Run one program message; the replies of its queries joined by ``;``."""
        replies: list[str] = []
        units = [u.strip() for u in line.split(";") if u.strip()]
        for n, unit in enumerate(units):
            self.commands_seen += 1
            try:
                r = self._unit(unit)
            except CommandError as err:
                self.errors.append((err.code, err.message))
                if unit.partition(" ")[0].endswith("?"):
                    return None
                continue
            if r is not None:
                replies.append(r)
            if self._wait_mask:
                rest = ";".join(units[n + 1 :])
                if rest:
                    self._queue.appendleft(rest)
                break
        return ";".join(replies) if replies else None

    def _unit(self, unit: str) -> str | None:
        header, _, arg = unit.partition(" ")
        header = header.upper()
        query = header.endswith("?")
        tokens = [t for t in header.rstrip("?").split(":") if t]
        for pattern, is_query, handler in _TABLE:
            if is_query != query:
                continue
            suffixes = _match(pattern, tokens)
            if suffixes is not None:
                return handler(self, suffixes, arg.strip(), self._now_ns)
        raise CommandError(-113, "Undefined header")

    # ---- handlers ---------------------------------------------------------------------------

    def h_idn(self, _s: list[int | None], _a: str, _t: int) -> str:
        return f"YOKOGAWA,{self.idn_model},{self.serial_no},{self.firmware}"

    def h_cls(self, _s: list[int | None], _a: str, _t: int) -> None:
        self.eesr = 0
        self.errors.clear()

    def h_rst(self, _s: list[int | None], _a: str, _t: int) -> None:
        self.items = [("U", 1), ("I", 1), ("P", 1)]
        self.n_items = 3
        self.vauto = self.iauto = True

    def h_opt(self, _s: list[int | None], _a: str, _t: int) -> str:
        return "NONE"

    def h_accept(self, _s: list[int | None], _a: str, _t: int) -> None:
        return None

    def h_comm_comm(self, _s: list[int | None], a: str, _t: int) -> None:
        if a.upper() not in ("WT300", "WT200"):
            raise CommandError(-224, "Illegal parameter value")

    def h_form(self, _s: list[int | None], a: str, _t: int) -> None:
        if a.upper() not in ("ASC", "ASCII"):
            raise CommandError(-224, "Illegal parameter value")

    def h_form_q(self, _s: list[int | None], _a: str, _t: int) -> str:
        return "ASCII"

    def h_bool_setting(self, _s: list[int | None], a: str, _t: int) -> None:
        _bool(a)

    def h_qmes(self, _s: list[int | None], a: str, _t: int) -> None:
        self.qmes = _bool(a)

    def h_err(self, _s: list[int | None], _a: str, _t: int) -> str:
        code, msg = self.errors.popleft() if self.errors else NO_ERROR
        return f'{code},"{msg}"' if self.qmes else str(code)

    def h_eesr(self, _s: list[int | None], _a: str, _t: int) -> str:
        v, self.eesr = self.eesr, 0
        return str(v)

    def h_cond(self, _s: list[int | None], _a: str, _t: int) -> str:
        return "0"

    def h_filter(self, s: list[int | None], a: str, _t: int) -> None:
        x = s[1]
        mode = {"RISE": "RISE", "FALL": "FALL", "BOTH": "BOTH", "NEV": "NEVER", "NEVER": "NEVER"}
        if x is None or not 1 <= x <= 16 or a.upper() not in mode:
            raise CommandError(-224, "Illegal parameter value")
        self.filters[x] = mode[a.upper()]

    def h_wait(self, _s: list[int | None], a: str, _t: int) -> None:
        try:
            mask = int(a)
        except ValueError:
            raise CommandError(-120, "Numeric data error") from None
        if not 0 <= mask <= 65535:
            raise CommandError(-222, "Data out of range")
        if mask and not self.eesr & mask:
            self._wait_mask = mask

    def h_rate(self, _s: list[int | None], a: str, _t: int) -> None:
        if self.integ_state == "start":
            raise CommandError(-221, "Settings conflict")
        seconds = _value(a, "S")
        if not any(abs(seconds - r) < 1e-9 for r in self.model.rates_s):
            raise CommandError(-222, "Data out of range")
        self._k_done = None  # a new update grid starts
        self.rate_ns = round(seconds * 1e9)
        self.eesr &= ~1

    def h_rate_q(self, _s: list[int | None], _a: str, _t: int) -> str:
        return _nr3(self.rate_ns / 1e9, 4)

    def _set_range(self, a: str, unit: str, ranges: tuple[float, ...]) -> float:
        v = _value(a, unit)
        for r in ranges:
            if abs(v - r) <= 1e-9 * r:
                return r
        raise CommandError(-222, "Data out of range")

    def _range_change_allowed(self) -> None:
        if self.integ_state == "start" and not self.ranges_in_integ:
            raise CommandError(-221, "Settings conflict")

    def h_vrange(self, _s: list[int | None], a: str, _t: int) -> None:
        self._range_change_allowed()
        r = self._set_range(a, "V", self.model.voltage_ranges_v(self.crest_factor))
        self._switching |= r != self.vrange_v  # no measurement while a range switches
        self.vrange_v, self.vauto = r, False

    def h_irange(self, _s: list[int | None], a: str, _t: int) -> None:
        self._range_change_allowed()
        r = self._set_range(a, "A", self.model.current_ranges_a(self.crest_factor))
        self._switching |= r != self.irange_a
        self.irange_a, self.iauto = r, False

    def h_vrange_q(self, _s: list[int | None], _a: str, _t: int) -> str:
        return _nr3(self.vrange_v, 4)

    def h_irange_q(self, _s: list[int | None], _a: str, _t: int) -> str:
        return _nr3(self.irange_a, 4)

    def h_vauto(self, _s: list[int | None], a: str, _t: int) -> None:
        self._range_change_allowed()
        self.vauto = _bool(a)

    def h_iauto(self, _s: list[int | None], a: str, _t: int) -> None:
        self._range_change_allowed()
        self.iauto = _bool(a)

    def h_vauto_q(self, _s: list[int | None], _a: str, _t: int) -> str:
        return "1" if self.vauto else "0"

    def h_iauto_q(self, _s: list[int | None], _a: str, _t: int) -> str:
        return "1" if self.iauto else "0"

    def h_cfac_q(self, _s: list[int | None], _a: str, _t: int) -> str:
        return str(self.crest_factor)

    def h_integ_mode(self, _s: list[int | None], a: str, _t: int) -> None:
        modes = {"NORM": "NORMAL", "NORMAL": "NORMAL", "CONT": "CONTINUOUS"}
        if a.upper() not in modes | {"CONTINUOUS": "CONTINUOUS"}:
            raise CommandError(-224, "Illegal parameter value")
        if self.integ_state == "start":
            raise CommandError(-221, "Settings conflict")
        self.integ_mode = modes.get(a.upper(), "CONTINUOUS")

    def h_integ_timer(self, _s: list[int | None], a: str, _t: int) -> None:
        try:
            h, m, s = (int(x) for x in a.split(","))
        except ValueError:
            raise CommandError(-109, "Missing parameter") from None
        if not (0 <= h <= 10000 and 0 <= m < 60 and 0 <= s < 60):
            raise CommandError(-222, "Data out of range")
        self.integ_timer_s = h * 3600 + m * 60 + s

    def h_integ_start(self, _s: list[int | None], _a: str, t: int) -> None:
        if self.integ_state not in ("reset", "stop"):
            raise CommandError(-221, "Settings conflict")
        self.integ_state = "start"
        self.integ_since_ns = t

    def h_integ_stop(self, _s: list[int | None], _a: str, t: int) -> None:
        if self.integ_state != "start":
            raise CommandError(-221, "Settings conflict")
        self._freeze(t)
        self.integ_state = "stop"

    def h_integ_reset(self, _s: list[int | None], _a: str, _t: int) -> None:
        if self.integ_state == "start":
            raise CommandError(-221, "Settings conflict")
        self.integ_state = "reset"
        self.integ_acc_j = {e: 0.0 for e in self.model.elements}
        self.integ_acc_s = 0.0
        self.integ_since_ns = None

    def h_integ_state_q(self, _s: list[int | None], _a: str, _t: int) -> str:
        return self.integ_state.upper()

    def h_num(self, _s: list[int | None], a: str, _t: int) -> None:
        try:
            n = int(a)
        except ValueError:
            raise CommandError(-120, "Numeric data error") from None
        if not 1 <= n <= 255:
            raise CommandError(-222, "Data out of range")
        self.n_items = n

    def h_num_q(self, _s: list[int | None], _a: str, _t: int) -> str:
        return str(self.n_items)

    def h_item(self, s: list[int | None], a: str, _t: int) -> None:
        x = s[-1]
        if x is None or not 1 <= x <= 255:
            raise CommandError(-114, "Header suffix out of range")
        fn, _, el = a.upper().partition(",")
        if fn.strip() not in FUNCTIONS:
            raise CommandError(-224, "Illegal parameter value")
        try:
            element = int(el) if el.strip() else 1
        except ValueError:
            raise CommandError(-120, "Numeric data error") from None
        if element not in self.model.elements:
            raise CommandError(-222, "Data out of range")
        while len(self.items) < x:
            self.items.append(("NONE", 1))
        self.items[x - 1] = (FUNCTIONS[fn.strip()], element)

    def h_item_q(self, s: list[int | None], _a: str, _t: int) -> str:
        x = s[-1] or 1
        fn, el = self.items[x - 1] if x <= len(self.items) else ("NONE", 1)
        return fn if fn == "NONE" else f"{fn},{el}"

    def _item_value(self, fn: str, e: int, upd: Update) -> str:
        t_end = upd.k * self.rate_ns
        if fn == "NONE":
            return "NAN"
        if fn in ("WH", "WHP", "WHM", "AH", "TIME"):
            if fn == "TIME":
                return str(int(self._integ_s(t_end)))
            wh = self._integ_j(e, t_end) * (1.0 + self.integ_gain) / 3600.0
            if fn == "WHM":
                wh = 0.0
            if fn == "AH":
                wh = wh / self.voltage_v if self.voltage_v else 0.0
            return _nr3(wh, 6)
        if upd.marker[e] == "NAN":
            return "NAN"  # range switching: no measurement at all
        if upd.marker[e] is not None and not (
            (fn == "U" and e not in upd.u_over) or (fn == "I" and e not in upd.i_over)
        ):
            return upd.marker[e] or "NAN"
        s_va, p_w = upd.u_v[e] * upd.i_a[e], upd.p_w[e]
        v = {
            "U": upd.u_v[e],
            "I": upd.i_a[e],
            "P": upd.p_w[e],
            "S": s_va,
            "Q": math.sqrt(max(s_va * s_va - p_w * p_w, 0.0)),
            "LAMB": p_w / s_va if s_va else 0.0,
        }[fn]
        return _nr3(v, 5)

    def h_val_q(self, _s: list[int | None], a: str, _t: int) -> str:
        upd = self.last
        if upd is None:
            raise CommandError(-200, "Execution error")
        items = (self.items + [("NONE", 1)] * self.n_items)[: self.n_items]
        if a:
            try:
                items = [items[int(a) - 1]]
            except (ValueError, IndexError):
                raise CommandError(-222, "Data out of range") from None
        text = ",".join(self._item_value(fn, e, upd) for fn, e in items)
        self.served.append((upd.k, text))
        return text


def _t(pattern: str, query: bool, handler: Handler) -> tuple[list[Node], bool, Handler]:
    return _compile(pattern), query, handler


S = Wt300Sim
_TABLE: list[tuple[list[Node], bool, Handler]] = [
    _t("*IDN", True, S.h_idn),
    _t("*CLS", False, S.h_cls),
    _t("*RST", False, S.h_rst),
    _t("*OPT", True, S.h_opt),
    _t(":SYSTem:COMMunicate:COMMand", False, S.h_comm_comm),
    _t(":NUMeric:FORMat", False, S.h_form),
    _t(":NUMeric:FORMat", True, S.h_form_q),
    _t(":COMMunicate:HEADer", False, S.h_bool_setting),
    _t(":COMMunicate:VERBose", False, S.h_bool_setting),
    _t(":COMMunicate:REMote", False, S.h_bool_setting),
    _t(":COMMunicate:WAIT", False, S.h_wait),
    _t(":STATus:QMESsage", False, S.h_qmes),
    _t(":STATus:ERRor", True, S.h_err),
    _t(":STATus:EESR", True, S.h_eesr),
    _t(":STATus:CONDition", True, S.h_cond),
    _t(":STATus:FILTer<x>", False, S.h_filter),
    _t(":RATE", False, S.h_rate),
    _t(":RATE", True, S.h_rate_q),
    _t("[:INPut]:VOLTage:RANGe", False, S.h_vrange),
    _t("[:INPut]:VOLTage:RANGe", True, S.h_vrange_q),
    _t("[:INPut]:VOLTage:AUTO", False, S.h_vauto),
    _t("[:INPut]:VOLTage:AUTO", True, S.h_vauto_q),
    _t("[:INPut]:CURRent:RANGe", False, S.h_irange),
    _t("[:INPut]:CURRent:RANGe", True, S.h_irange_q),
    _t("[:INPut]:CURRent:AUTO", False, S.h_iauto),
    _t("[:INPut]:CURRent:AUTO", True, S.h_iauto_q),
    _t("[:INPut]:CFACtor", True, S.h_cfac_q),
    _t(":INTEGrate:MODE", False, S.h_integ_mode),
    _t(":INTEGrate:TIMer", False, S.h_integ_timer),
    _t(":INTEGrate:STARt", False, S.h_integ_start),
    _t(":INTEGrate:STOP", False, S.h_integ_stop),
    _t(":INTEGrate:RESet", False, S.h_integ_reset),
    _t(":INTEGrate:STATe", True, S.h_integ_state_q),
    _t(":NUMeric[:NORMal]:NUMber", False, S.h_num),
    _t(":NUMeric[:NORMal]:NUMber", True, S.h_num_q),
    _t(":NUMeric[:NORMal]:ITEM<x>", False, S.h_item),
    _t(":NUMeric[:NORMal]:ITEM<x>", True, S.h_item_q),
    _t(":NUMeric[:NORMal]:VALue", True, S.h_val_q),
]

OPTIONS = {
    "model",
    "voltage",
    "shares",
    "transport",
    "rate",
    "cf",
    "serial",
    "firmware",
    "vrange",
    "irange",
    "pf",
    "integ_ranges",
    "error_seed",
}


def make(model: str, waveform: Waveform, options: dict[str, str]) -> Wt300Sim:
    """``powerd sim wt310|wt330``: see the module docstring for the options."""
    unknown = set(options) - OPTIONS
    if unknown:
        raise SpecError(
            f"{model}: unknown option {sorted(unknown)[0]!r}; known: {', '.join(sorted(OPTIONS))}"
        )
    default = "WT333" if model.lower().startswith("wt33") else "WT310"
    name = options.get("model", default)
    spec = lookup(name)
    if spec is None:
        raise SpecError(f"{model}: unknown model {name!r}; known: {', '.join(MODELS)}")
    try:
        voltage = float(options.get("voltage", "12"))
        rate = float(options.get("rate", "0.25"))
        cf = int(options.get("cf", "3"))
        pf = float(options.get("pf", "1"))
        shares_list = (
            [float(x) for x in options["shares"].split("/")] if "shares" in options else []
        )
    except ValueError as err:
        raise SpecError(f"{model}: bad option value: {err}") from None
    if voltage <= 0 or cf not in (3, 6) or not any(abs(rate - r) < 1e-9 for r in spec.rates_s):
        raise SpecError(
            f"{model}: voltage must be > 0, cf 3 or 6, rate one of {list(spec.rates_s)}"
        )
    if not 0.01 <= pf <= 1.0:
        raise SpecError(f"{model}: pf (power factor) must be within [0.01, 1]")
    if options.get("integ_ranges", "allow") not in ("allow", "refuse"):
        raise SpecError(f"{model}: integ_ranges must be allow or refuse")
    shares: dict[int, float] = {}
    if shares_list:
        if len(shares_list) != len(spec.elements):
            raise SpecError(f"{model}: shares needs {len(spec.elements)} values")
        shares = dict(zip(spec.elements, shares_list, strict=True))
    fixed: dict[str, float] = {}
    for key, ranges in (
        ("vrange", spec.voltage_ranges_v(cf)),
        ("irange", spec.current_ranges_a(cf)),
    ):
        if key in options:
            try:
                value = float(options[key])
            except ValueError:
                raise SpecError(f"{model}: {key} must be a number") from None
            if not any(abs(value - r) <= 1e-9 * r for r in ranges):
                raise SpecError(f"{model}: {key} must be one of {list(ranges)}")
            fixed[key] = value
    transport = options.get("transport", "serial")
    if transport not in ("serial", "usbtmc"):
        raise SpecError(f"{model}: transport must be serial or usbtmc")
    sim = Wt300Sim(
        model=spec,
        waveform=waveform,
        voltage_v=voltage,
        shares=shares,
        terminator=b"\r\n" if transport == "serial" else b"\n",
        idn_model=spec.name,
        serial_no=options.get("serial", "C2SIM0001"),
        firmware=options.get("firmware", "F1.03"),
        rate_ns=round(rate * 1e9),
        crest_factor=cf,
        power_factor=pf,
        ranges_in_integ=options.get("integ_ranges", "allow") == "allow",
        vrange_v=fixed.get("vrange", 0.0),
        irange_a=fixed.get("irange", 0.0),
        vauto="vrange" not in fixed,
        iauto="irange" not in fixed,
    )
    seed = parse_seed(options, model)
    if seed is not None:
        reading, rng = spec.accuracy_fracs("dc", cf)
        drawn = InstrumentError.draw(seed, reading, rng * sim.vrange_v * sim.irange_a)
        sim.waveform = drawn.wrap(waveform)
        # The integrator's spec is the power's plus 0.1 % of reading: its own gain error, drawn
        # the same way (95 % bound = that share), so the integrator errs within its whole spec.
        sim.integ_gain = InstrumentError.draw(seed + INTEG_SEED_SALT, INTEG_READING_FRAC, 0.0).gain
    return sim
