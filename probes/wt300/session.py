"""Talking to a WT300-series meter: discover it, configure it, read every update.

``discover`` runs once when the probe opens (identify the model, crest factor and ranges, which
decide the channels and their accuracy). ``MeterSession`` is what ``SerialReader`` runs in its
thread on every (re)connect: it configures the meter and then loops, once per update:

1. every few seconds, ``:STAT:ERR?`` and the ranges (meter errors and auto-range moves become
   problems); this comes before the clear, because an update ending while these are asked (a
   lost reply costs ``IMMEDIATE_S``) would latch UPD and ``:COMM:WAIT`` would then return a
   later update's values than the one the clear brackets;
2. ``:STAT:EESR?`` reads and clears the extended event register;
3. ``:COMM:WAIT 1`` holds the meter's command processing until EESR bit 0 (UPD, made to latch on
   its falling edge by ``:STAT:FILT1 FALL``), i.e. until the next update is complete, and
   ``:NUM:NORM:VAL?`` then returns that update's values.

``timing.UpdateClock`` numbers the update (bracketed by when EESR was cleared) and places its end
on the meter's update grid, free of the reply's latency jitter. P is the
mean over the update interval, so it is stamped at the interval's midpoint; the integrator's WH is
the energy up to the update's end, so it is stamped there. NAN/INF/9.91E+37 markers and frames
that fail parsing are counted and reported, never emitted. A reply that does not come within
twice the update interval (plus margin) is a timeout with a problem message; after a few in a row
the session raises ``MeterSilent``, the reader records a gap and reconnects.

On the first connect the integrator is reset and started; on a reconnect a running integrator is
left running (the meter kept integrating while the cable was out, so the counter bridges the gap).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import serial

from powerd.channel import Accuracy, Channel, Instrument
from powerd.errors import ProbeUnavailable, SpecError
from powerd.probes.base import AccuracyChange
from powerd.probes.serialport import Emit
from powerd.probes.wt300 import parser
from powerd.probes.wt300.link import Link, Port, Reply
from powerd.probes.wt300.models import ModelSpec, lookup, rate_command_arg, smallest_range
from powerd.probes.wt300.parser import Item, Layout
from powerd.probes.wt300.protocol_wt300tmc import url_for
from powerd.probes.wt300.spec import Wt300Spec
from powerd.probes.wt300.timing import UpdateClock

Clock = Callable[[], int]
MAX_ITEMS = 10
IMMEDIATE_S = 0.5
REST_S = 0.2
IDN_TRIES = 3
POLL_EVERY_S = 2.0
MAX_SILENT = 4
WAIT_MARGIN_S = 0.5
INTEG_READING_FRAC = 0.001  # integrator: power accuracy + 0.1 % of reading [I]
OVERRANGE_FRAC = 1.4  # the meter reads up to 140 % of a range; above it, INF (overrange)
ERROR_DRAIN_MAX = 16
REPEAT_S = 10.0
PROBLEM_LOG = 200
ELECTRICAL_MAX = 100_000  # U/I/LAMBDA rows kept per element for read_electrical (10 Hz: 2.7 h)
QUANTITY_COMMAND = {"V": ("VOLT", "V"), "A": ("CURR", "A")}

if "powerd.probes.wt300" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("powerd.probes.wt300")


class MeterSilent(serial.SerialException):
    """The port is open but the meter has stopped answering."""


def port_url(spec: Wt300Spec) -> str:
    return url_for(spec.path) if spec.transport == "usbtmc" else spec.path


def open_kwargs(spec: Wt300Spec) -> dict[str, object]:
    if spec.transport == "usbtmc":
        return {"timeout": IMMEDIATE_S}
    return {
        "baudrate": spec.baud,
        "bytesize": serial.EIGHTBITS,
        "parity": serial.PARITY_NONE,
        "stopbits": serial.STOPBITS_ONE,
        "xonxoff": False,
        "rtscts": False,
        "timeout": IMMEDIATE_S,
        "write_timeout": 5.0,
    }


@dataclass(frozen=True)
class Discovery:
    """What the meter said when the probe opened."""

    identity: parser.Identity | None
    crest_factor: int
    vrange_v: float | None
    irange_a: float | None


@dataclass(frozen=True)
class Plan:
    """Everything decided at open: the model, ranges, items, and the channels they give."""

    spec: Wt300Spec
    model: ModelSpec
    name: str
    elements: tuple[int, ...]
    crest_factor: int
    vrange_v: float | None
    irange_a: float | None
    range_w: float
    resolution_j: float
    layout: Layout
    power_ids: dict[int, str]
    energy_ids: dict[int, str]
    channels: tuple[Channel, ...]
    notes: tuple[str, ...] = ()

    @property
    def interval_ns(self) -> int:
        return round(self.spec.rate_s * 1e9)


def _query(link: Link, cmd: str, first_s: float = IMMEDIATE_S) -> bytes | None:
    r = link.query(cmd, first_s, REST_S)
    if r is None or not r.complete:
        link.flush()
        return None
    return r.data


def identify(link: Link) -> parser.Identity | None:
    """``*IDN?`` with a few tries (a first reply can be lost to a half-sent command)."""
    for _ in range(IDN_TRIES):
        if link.stop.is_set():
            return None
        data = _query(link, "*IDN?", 1.0)
        ident = parser.parse_idn(data) if data is not None else None
        if ident is not None:
            return ident
        link.flush()
    return None


def instrument_of(ident: parser.Identity | None) -> Instrument | None:
    """The channel's instrument identity from the ``*IDN?`` reply (None: the meter did not say)."""
    if ident is None:
        return None
    return Instrument(ident.maker, ident.model, ident.serial, ident.firmware, "*IDN?")


def _wake(link: Link) -> None:
    """End any half-received command, clear status and errors, drop stale replies."""
    link.send("", "*CLS")
    time.sleep(0.05)
    link.flush()


def discover(spec: Wt300Spec) -> Discovery:
    """Open the meter briefly: model, crest factor and (for auto) the ranges in use now."""
    try:
        port = serial.serial_for_url(port_url(spec), **open_kwargs(spec))  # type: ignore[arg-type]
    except (serial.SerialException, OSError, ValueError) as err:
        hint = " (is your user in the dialout group?)" if "ermission" in str(err) else ""
        raise ProbeUnavailable(f"wt300: cannot open {spec.path}: {err}{hint}") from None
    try:
        link = Link(port, time.time_ns, threading.Event(), spec.transport == "usbtmc")
        _wake(link)
        ident = identify(link)
        if ident is None:
            return Discovery(None, 3, None, None)
        data = _query(link, ":INP:CFAC?")
        cf = (parser.parse_crest_factor(data) if data else None) or 3
        v = _query(link, ":INP:VOLT:RANG?") if spec.vrange_v is None else None
        i = _query(link, ":INP:CURR:RANG?") if spec.irange_a is None else None
        vr = parser.parse_range(v) if v else None
        ir = parser.parse_range(i) if i else None
        return Discovery(ident, cf, vr[0] if vr else None, ir[0] if ir else None)
    except (serial.SerialException, OSError) as err:
        raise ProbeUnavailable(f"wt300: {spec.path} failed while identifying: {err}") from None
    finally:
        port.close()


def _fixed_range(
    kind: str, wanted: float | None, ranges: tuple[float, ...], spec: Wt300Spec, model: ModelSpec
) -> float | None:
    if wanted is None:
        return None
    r = smallest_range(ranges, wanted * spec.headroom)
    if r is None:
        raise SpecError(
            f"wt300: {kind} {wanted:g} × headroom {spec.headroom:g} is above the {model.name}'s "
            f"largest range {ranges[-1]:g}"
        )
    return r


def resolution_j(range_w: float, hours: float) -> float:
    """Step of a 6-digit WH reading once the counter holds ``hours`` at the full power range."""
    wh = max(range_w * hours, 1e-9)
    return 10.0 ** (math.floor(math.log10(wh)) - 5) * parser.WH_TO_J


VI_FUNCTIONS = ("U", "I", "LAMB")


def make_layout(
    elements: tuple[int, ...], integ: bool, copies: int, vi: bool = False
) -> tuple[Layout, list[str]]:
    """P (and WH, and with ``vi`` U, I, LAMBDA) of each element, each ``copies`` times; past
    MAX_ITEMS the WH copies go first, then the U/I/LAMBDA copies, then every copy. More items than
    the meter takes even once is a SpecError."""
    items: list[Item] = []
    for e in elements:
        items.append(Item("P", e))
        if integ:
            items.append(Item("WH", e))
        if vi:
            items.extend(Item(f, e) for f in VI_FUNCTIONS)
    counts = [copies] * len(items)
    notes: list[str] = []
    if sum(counts) > MAX_ITEMS:
        counts = [1 if it.function == "WH" else c for it, c in zip(items, counts, strict=True)]
        notes.append("the integrator's WH is read once per update (no room for a copy)")
    if sum(counts) > MAX_ITEMS and vi:
        counts = [
            1 if it.function in VI_FUNCTIONS else c for it, c in zip(items, counts, strict=True)
        ]
        notes.append("U, I and LAMBDA are read once per update (no room for copies)")
    if sum(counts) > MAX_ITEMS:
        counts = [1] * len(items)
        notes.append("items are read once per update (no room for copies): no garble check")
    if sum(counts) > MAX_ITEMS:
        raise SpecError(
            f"wt300: {len(items)} items per update, the meter takes {MAX_ITEMS}: with vi=on read "
            "fewer elements (elements=1/3) or turn the integrator off (integ=off)"
        )
    return Layout(tuple(items), tuple(counts)), notes


def plan(spec: Wt300Spec, found: Discovery) -> Plan:
    """Decide the model, ranges and channels from the spec and what the meter said."""
    notes: list[str] = []
    name = f"wt300:{spec.instance}"
    if found.identity is None:
        if spec.model is None:
            raise ProbeUnavailable(
                f"{name}: no reply to *IDN? from {spec.path}: is the meter on, the baud rate "
                f"right (baud={spec.baud}), the RS-232 cable a null-modem one? Pass model=WT310 "
                "(etc.) to start anyway and wait for it"
            )
        model = lookup(spec.model)
        notes.append(f"{name}: no reply to *IDN?; assuming a {spec.model}")
    else:
        model = lookup(found.identity.model)
        if model is None and spec.model is not None:
            model = lookup(spec.model)
            notes.append(f"{name}: unknown model {found.identity.model!r}; as {spec.model}")
        if model is None:
            raise ProbeUnavailable(
                f"{name}: {spec.path} says {found.identity.model!r}, not a WT310/WT310E/WT33x "
                "model; pass model=... if it is one"
            )
    assert model is not None
    elements = spec.elements or model.elements
    if set(elements) - set(model.elements):
        raise SpecError(
            f"{name}: the {model.name} has elements {'/'.join(map(str, model.elements))}"
        )
    if not any(abs(spec.rate_s - r) < 1e-9 for r in model.rates_s):
        raise SpecError(f"{name}: the {model.name} updates every {list(model.rates_s)} s")
    cf = found.crest_factor
    vranges, iranges = model.voltage_ranges_v(cf), model.current_ranges_a(cf)
    vfix = _fixed_range("vrange", spec.vrange_v, vranges, spec, model)
    ifix = _fixed_range("irange", spec.irange_a, iranges, spec, model)
    v_now = vfix or found.vrange_v or vranges[-1]
    i_now = ifix or found.irange_a or iranges[-1]
    range_w = v_now * i_now
    reading, rng = model.accuracy_fracs(spec.coupling, cf)
    res = resolution_j(range_w, spec.integ_h)
    layout, layout_notes = make_layout(elements, spec.integ, spec.copies, spec.vi)
    notes += [f"{name}: {n}" for n in layout_notes]
    t_s = spec.rate_s
    inst = instrument_of(found.identity)
    power_ids: dict[int, str] = {}
    energy_ids: dict[int, str] = {}
    channels: list[Channel] = []
    for e in elements:
        if spec.measures:
            measures = spec.measures if len(elements) == 1 else f"{spec.measures}:{e}"
        else:
            measures = f"{name}:{e}"
        power_ids[e] = f"{name}:p{e}"
        channels.append(
            Channel(
                id=power_ids[e],
                kind="power",
                source_class="meter",
                nominal_period_s=t_s,
                accuracy=Accuracy(reading, rng, range_w),
                measures=measures,
                description=(
                    f"Yokogawa {model.name} element {e}: active power, mean over each {t_s:g} s "
                    "update, stamped at its midpoint"
                ),
                stamp_uncertainty_s=spec.stamp_s,
                instrument=inst,
                averaging_s=t_s,
            )
        )
        if spec.integ:
            energy_ids[e] = f"{name}:e{e}"
            channels.append(
                Channel(
                    id=energy_ids[e],
                    kind="energy",
                    source_class="meter",
                    nominal_period_s=t_s,
                    accuracy=Accuracy(reading + INTEG_READING_FRAC, rng, range_w, 0.0, res),
                    measures=measures,
                    description=(
                        f"Yokogawa {model.name} element {e}: integrator WH in J since the probe "
                        "started it, read at each update's end"
                    ),
                    stamp_uncertainty_s=spec.stamp_s,
                    instrument=inst,
                )
            )
    return Plan(
        spec=spec,
        model=model,
        name=name,
        elements=elements,
        crest_factor=cf,
        vrange_v=vfix,
        irange_a=ifix,
        range_w=range_w,
        resolution_j=res,
        layout=layout,
        power_ids=power_ids,
        energy_ids=energy_ids,
        channels=tuple(channels),
        notes=tuple(notes),
    )


@dataclass
class Stats:
    """Counters a test or a status page can read (written by the session thread only)."""

    connects: int = 0
    updates: int = 0
    frames_bad: int = 0
    timeouts: int = 0
    skipped_updates: int = 0
    markers: int = 0
    meter_errors: int = 0
    bad_replies: int = 0
    suppressed: int = 0
    electrical_dropped: int = 0
    problems: deque[str] = field(default_factory=lambda: deque(maxlen=PROBLEM_LOG))


@dataclass
class RangeRequest:
    """One ``set_range`` call waiting for the session thread; ``target`` None is auto ranging.
    The session sets ``reply`` (and ``ok``) and then ``done``."""

    quantity: str
    target: float | None
    done: threading.Event = field(default_factory=threading.Event)
    reply: str = ""
    ok: bool = False


def _fmt_value(v: float) -> str:
    return f"{v:g}"


@dataclass
class MeterSession:
    """The SerialReader session: configure on each connect, then read every update."""

    plan: Plan
    stats: Stats = field(default_factory=Stats)
    _started_integ: bool = False
    _ranges: tuple[float, float] | None = None
    _lsd_warned: bool = False
    _last_said: dict[str, float] = field(default_factory=dict)
    _held: dict[str, int] = field(default_factory=dict)
    # ranging: set_range requests from other threads, applied between updates by this thread
    requests: queue.Queue[RangeRequest] = field(default_factory=queue.Queue)
    lock: threading.Lock = field(default_factory=threading.Lock)
    want_v: float | None = None
    want_i: float | None = None
    active_v: float | None = None
    active_i: float | None = None
    range_w: float = 0.0
    accuracy_now: dict[str, Accuracy] = field(default_factory=dict)
    _acc_changes: list[AccuracyChange] = field(default_factory=list)
    _acc_last_ns: int = 0
    _range_check_ns: int | None = None
    _recheck: bool = False
    # the start of the first update that read NAN (range switching) since the last range check,
    # and the skipped-update count at that check: dates an auto-range move to the update it
    # happened at, instead of anywhere since the previous check (see _check_ranges)
    _nan_start_ns: int | None = None
    _skipped_at_check: int = 0
    electrical: dict[int, deque[tuple[int, float, float, float]]] = field(default_factory=dict)
    # power readings lost to NAN/INF, per element, for read_dropped: (t_mid, overrange, volts
    # floor, amps floor); kept only once someone asked (read_dropped sets dropped_wanted)
    dropped: dict[int, deque[tuple[int, bool, float, float]]] = field(default_factory=dict)
    dropped_wanted: bool = False

    def __post_init__(self) -> None:
        pl = self.plan
        self.want_v, self.want_i = pl.vrange_v, pl.irange_a
        self.range_w = pl.range_w
        self.accuracy_now = {ch.id: ch.accuracy for ch in pl.channels}
        if pl.spec.vi:
            self.electrical = {e: deque(maxlen=ELECTRICAL_MAX) for e in pl.elements}
        self.dropped = {e: deque(maxlen=ELECTRICAL_MAX) for e in pl.elements}

    # the identity at the last connect (a meter swapped on the port shows on its channels)
    instrument: Instrument | None = None

    def __call__(
        self, port: serial.Serial, emit: Emit, clock: Clock, stop: threading.Event
    ) -> None:
        p: Port = port
        link = Link(p, clock, stop, self.plan.spec.transport == "usbtmc")
        self.stats.connects += 1
        self._configure(link, emit)
        self._loop(link, emit, stop)

    # ---- helpers ----------------------------------------------------------------------------

    def _problem(self, emit: Emit, text: str, key: str | None = None) -> None:
        """Report a problem; the same kind (``key``) again within REPEAT_S is only counted, and
        the next report says how many were held back."""
        key = key or text
        now = time.monotonic()
        last = self._last_said.get(key)
        if last is not None and now - last < REPEAT_S:
            self._held[key] = self._held.get(key, 0) + 1
            self.stats.suppressed += 1
            return
        self._last_said[key] = now
        held = self._held.pop(key, 0)
        msg = f"{self.plan.name}: {text}"
        if held:
            msg += f" (and {held} more like it in the last {REPEAT_S:g} s)"
        self.stats.problems.append(msg)
        emit.problem(msg)

    def _ask(self, link: Link, emit: Emit, cmd: str, tries: int = 2) -> bytes | None:
        for _ in range(tries):
            data = _query(link, cmd)
            if data is not None:
                return data
            self.stats.timeouts += 1
            self._problem(emit, f"no reply to {cmd} within {IMMEDIATE_S} s")
        return None

    def _drain_errors(self, link: Link, emit: Emit, context: str) -> None:
        for _ in range(ERROR_DRAIN_MAX):
            data = self._ask(link, emit, ":STAT:ERR?")
            err = parser.parse_error(data) if data is not None else None
            if err is None:
                if data is not None:
                    self.stats.bad_replies += 1
                    self._problem(emit, f"unreadable :STAT:ERR? reply {data[:40]!r}")
                return
            code, msg = err
            if code == 0:
                return
            self.stats.meter_errors += 1
            self._problem(emit, f"meter error {code} {msg!r} ({context})")

    # ---- configuration ----------------------------------------------------------------------

    def _configure(self, link: Link, emit: Emit) -> None:
        pl, spec = self.plan, self.plan.spec
        t_configure_ns = link.clock()
        _wake(link)
        ident = identify(link)
        if ident is None:
            raise MeterSilent(f"no reply to *IDN? from {spec.path}")
        self.instrument = instrument_of(ident)
        if lookup(ident.model) not in (pl.model, None):
            self._problem(emit, f"the meter is now a {ident.model}, was a {pl.model.name}")
        link.send(":SYST:COMM:COMM WT300", ":NUM:FORM ASC", ":COMM:HEAD OFF", ":COMM:VERB ON")
        link.send(":STAT:QMES ON")
        self._drain_errors(link, emit, "before configuration")
        data = self._ask(link, emit, ":INTEG:STAT?")
        state = parser.parse_integ_state(data) if data is not None else None
        keep = spec.integ and self._started_integ and state == "start"
        if not keep:
            if state not in ("reset", None):
                if state == "start":
                    link.send(":INTEG:STOP")
                link.send(":INTEG:RES")
            link.send(f":RATE {rate_command_arg(spec.rate_s)}")
            with self.lock:
                wants = (("VOLT", self.want_v, "V"), ("CURR", self.want_i, "A"))
            for kind, fixed, unit in wants:
                if fixed is None:
                    link.send(f":INP:{kind}:AUTO ON")
                else:
                    link.send(f":INP:{kind}:RANG {_fmt_value(fixed)}{unit}")
        wire = pl.layout.wire_items
        link.send(f":NUM:NORM:NUM {len(wire)}")
        link.send(*(f":NUM:NORM:ITEM{k} {it.command_arg}" for k, it in enumerate(wire, 1)))
        link.send(":STAT:FILT1 FALL")
        if spec.integ and not keep:
            link.send(":INTEG:MODE NORM", ":INTEG:TIM 0,0,0", ":INTEG:STAR")
        self._drain_errors(link, emit, "configuration")
        if spec.integ:
            data = self._ask(link, emit, ":INTEG:STAT?")
            state = parser.parse_integ_state(data) if data is not None else None
            if state == "start":
                self._started_integ = True
            else:
                self._problem(emit, f"the integrator is {state or 'unknown'}, not running")
        data = self._ask(link, emit, ":RATE?")
        rate = parser.parse_rate(data) if data is not None else None
        if rate is None or abs(rate - spec.rate_s) > 1e-6:
            self._problem(emit, f"update interval reads {rate} s, asked for {spec.rate_s} s")
        # on a reconnect the ranges may have moved since the last check before the link went
        self._check_ranges(link, emit, min(self._range_check_ns or t_configure_ns, t_configure_ns))
        self._check_bandwidth(emit)

    def _check_bandwidth(self, emit: Emit) -> None:
        spec = self.plan.spec
        if spec.transport != "serial":
            return
        # After an update ends, its reply and the next EESR? exchange must fit before the
        # following update ends (WAIT and VAL? may arrive later: they are answered at once).
        critical = 12 * len(self.plan.layout.wire_items) + 2 + 16
        busy_s = critical * 10 / spec.baud
        if busy_s > 0.8 * spec.rate_s:
            self._problem(
                emit,
                f"{critical} bytes after each update take {busy_s * 1000:.0f} ms at {spec.baud} "
                f"baud, too close to the {spec.rate_s:g} s interval: updates will be skipped "
                "(raise the baud rate on meter and spec, or rate=, or verify=none)",
            )

    def _check_ranges(self, link: Link, emit: Emit, t_from_ns: int | None = None) -> None:
        """Read the ranges in use back; a move (auto ranging, or set) changes the accuracy.

        ``t_from_ns``: since when the ranges could have moved (default: the previous check)."""
        t_ask = link.clock()
        t_from = t_from_ns if t_from_ns is not None else (self._range_check_ns or t_ask)
        if (
            t_from_ns is None
            and self._nan_start_ns is not None
            and self.stats.skipped_updates == self._skipped_at_check
        ):
            # every range move makes the next update read NAN, and every update since the last
            # check was read: a move since then happened no earlier than the first NAN update
            # began (a NAN from a move before that check began earlier: max keeps the check)
            t_from = max(t_from, self._nan_start_ns)
        v = self._ask(link, emit, ":INP:VOLT:RANG?")
        i = self._ask(link, emit, ":INP:CURR:RANG?")
        vr = parser.parse_range(v) if v is not None else None
        ir = parser.parse_range(i) if i is not None else None
        if vr is None or ir is None:
            return
        t_now = link.clock()
        self._range_check_ns = t_ask
        self._nan_start_ns = None
        self._skipped_at_check = self.stats.skipped_updates
        ranges = (vr[0], ir[0])
        with self.lock:
            self.active_v, self.active_i = ranges
            wants = (("voltage", self.want_v, vr[0], "V"), ("current", self.want_i, ir[0], "A"))
        for kind, want, got, unit in wants:
            if want is not None and abs(got - want) > 1e-9 * want:
                self._problem(emit, f"{kind} range reads {got:g} {unit}, set {want:g} {unit}")
        if ranges != self._ranges:
            self._ranges = ranges
            self._range_moved(emit, ranges, t_from, t_now)

    def _range_moved(
        self, emit: Emit, ranges: tuple[float, float], t_from_ns: int, t_now_ns: int
    ) -> None:
        """The accuracy follows the power range V × A from when it took effect: a larger
        range from before it could have been switched (half an interval before ``t_from_ns``:
        an update straddling the switch has its P stamped at its midpoint, its WH at its end), a
        smaller one from after it surely was (one interval after ``t_now_ns``, when the last
        update measured partly on the larger range has ended)."""
        new_w = ranges[0] * ranges[1]
        if abs(new_w - self.range_w) <= 1e-9 * max(new_w, self.range_w):
            return
        up = new_w > self.range_w
        t_eff = t_from_ns - self.plan.interval_ns // 2 if up else t_now_ns + self.plan.interval_ns
        with self.lock:
            # never at or before the previous record: the store keeps one record per instant
            # (a second one replaces the first), and a move that lasted less than the dating
            # allows must still show in the history (a phase takes the largest bound of the
            # records within it and is flagged range_changed)
            t_eff = max(t_eff, self._acc_last_ns + 1)
            self._acc_last_ns = t_eff
            old_w, self.range_w = self.range_w, new_w
            for cid, acc in list(self.accuracy_now.items()):
                self.accuracy_now[cid] = replace(acc, range_w=new_w)
                self._acc_changes.append(AccuracyChange(cid, t_eff, self.accuracy_now[cid]))
        when = datetime.fromtimestamp(t_eff / 1e9, UTC).isoformat(timespec="milliseconds")
        self._problem(
            emit,
            f"ranges are now {ranges[0]:g} V × {ranges[1]:g} A = {new_w:g} W (was {old_w:g} W): "
            f"the accuracy uses the {new_w:g} W range from {when} on",
            "ranges moved",
        )

    def start_accuracy(self, t_ns: int) -> None:
        """Record the accuracy in effect when reading starts, as the history's first entry."""
        with self.lock:
            self._acc_last_ns = max(self._acc_last_ns, t_ns)
            self._acc_changes.extend(
                AccuracyChange(cid, t_ns, acc) for cid, acc in self.accuracy_now.items()
            )

    def take_accuracy_changes(self) -> list[AccuracyChange]:
        with self.lock:
            out, self._acc_changes = self._acc_changes, []
        return out

    def _apply_requests(self, link: Link, emit: Emit) -> None:
        """Apply pending ``set_range`` requests (this thread owns the link), each read back."""
        while True:
            try:
                req = self.requests.get_nowait()
            except queue.Empty:
                return
            try:
                self._apply_range(link, emit, req)
            finally:
                req.done.set()

    def _apply_range(self, link: Link, emit: Emit, req: RangeRequest) -> None:
        kind, unit = QUANTITY_COMMAND[req.quantity]
        t0 = link.clock()
        errors_before = self.stats.meter_errors
        if req.target is None:
            link.send(f":INP:{kind}:AUTO ON")
            asked = "auto"
        else:
            link.send(f":INP:{kind}:RANG {_fmt_value(req.target)}{unit}")
            asked = f"{req.target:g} {unit}"
        self._drain_errors(link, emit, f"setting the {req.quantity} range to {asked}")
        refused = self.stats.meter_errors > errors_before
        rng = self._ask(link, emit, f":INP:{kind}:RANG?")
        auto = self._ask(link, emit, f":INP:{kind}:AUTO?")
        got = parser.parse_range(rng) if rng is not None else None
        got_auto = parser.parse_bool(auto) if auto is not None else None
        self._check_ranges(link, emit, t0)
        if got is None or got_auto is None:
            req.reply = f"{req.quantity} range not confirmed: no readable reply from the meter"
            self._problem(emit, req.reply)
            return
        if req.target is None:
            ok = got_auto and not refused
        else:
            ok = not got_auto and abs(got[0] - req.target) <= 1e-9 * req.target and not refused
        # what the meter keeps is what the session asks for again on a reconnect
        keep = req.target if ok else (None if got_auto else got[0])
        with self.lock:
            if req.quantity == "V":
                self.want_v = keep
            else:
                self.want_i = keep
        now = f"{'auto, now ' if got_auto else ''}{got[0]:g} {unit}"
        if ok:
            req.ok = True
            req.reply = f"{req.quantity} range {now}"
        else:
            req.reply = f"{req.quantity} range not set: the meter refused {asked} (keeps {now})"
            self._problem(emit, req.reply)

    # ---- the update loop --------------------------------------------------------------------

    def _loop(self, link: Link, emit: Emit, stop: threading.Event) -> None:
        pl = self.plan
        clock_est = UpdateClock(pl.interval_ns)
        wait_s = 2 * pl.spec.rate_s + WAIT_MARGIN_S
        rest_s = 0.1 + 30 * len(pl.layout.wire_items) * 10 / pl.spec.baud
        silent = 0
        next_poll = time.monotonic() + POLL_EVERY_S
        while not stop.is_set():
            if silent >= MAX_SILENT:
                raise MeterSilent(f"{silent} queries in a row got no reply")
            if not self.requests.empty():
                self._apply_requests(link, emit)
            if time.monotonic() >= next_poll or self._recheck:
                if time.monotonic() >= next_poll:
                    self._drain_errors(link, emit, "while reading")
                next_poll = time.monotonic() + POLL_EVERY_S
                self._recheck = False
                self._check_ranges(link, emit)
            t_send = link.clock()
            eesr = link.query(":STAT:EESR?", IMMEDIATE_S, REST_S)
            if eesr is None or not eesr.complete or parser.parse_int(eesr.data) is None:
                silent += eesr is None
                self._note_bad_reply(emit, ":STAT:EESR?", eesr.data if eesr else None)
                link.flush()
                continue
            cleared = (t_send, eesr.t_ns)
            link.send(":COMM:WAIT 1", ":NUM:NORM:VAL?")
            reply = link.read_reply(wait_s, rest_s)
            if reply is None:
                silent += 1
                self.stats.timeouts += 1
                if not stop.is_set():
                    self._problem(
                        emit, f"no update within {wait_s:g} s (meter on HOLD, or not answering)"
                    )
                link.flush()
                continue
            silent = 0
            self._update(link, emit, clock_est, reply, cleared)

    def _note_bad_reply(self, emit: Emit, cmd: str, data: bytes | None) -> None:
        if data is None:
            self.stats.timeouts += 1
            self._problem(emit, f"no reply to {cmd} within {IMMEDIATE_S} s")
        else:
            self.stats.bad_replies += 1
            self._problem(emit, f"unreadable reply to {cmd}: {data[:40]!r}", f"bad {cmd}")

    def _update(
        self,
        link: Link,
        emit: Emit,
        clock_est: UpdateClock,
        reply: Reply,
        cleared: tuple[int, int],
    ) -> None:
        pl = self.plan
        upd = clock_est.feed(reply.t_ns, *cleared)
        self.stats.updates += 1
        if upd.skipped:
            self.stats.skipped_updates += upd.skipped
            self._problem(
                emit, f"{upd.skipped} update(s) skipped (host or link too slow)", "skipped"
            )
        frame = parser.parse_values(reply.data, pl.layout)
        if isinstance(frame, parser.BadFrame):
            self.stats.frames_bad += 1
            self._problem(emit, f"bad frame, not used: {frame.reason}", "bad frame")
            link.flush()
            return
        half = pl.interval_ns // 2
        t_mid = upd.t_end_ns - half
        vi: dict[int, dict[str, float]] = {}
        lost: dict[int, str] = {}  # element -> P's marker
        over_items: dict[int, set[str]] = {}  # element -> U/I items that read overrange
        for item, value in frame.values.items():
            if value.marker is not None:
                self.stats.markers += 1
                self._problem(emit, f"{item.command_arg} reads {value.marker}: not used")
                if value.marker == "no data" and item.function == "P":
                    self._recheck = True  # range switching: read the ranges back now
                    if self._nan_start_ns is None:
                        self._nan_start_ns = upd.t_end_ns - pl.interval_ns
                if item.function == "P":
                    lost[item.element] = value.marker
                elif value.marker == "overrange" and item.function in ("U", "I"):
                    over_items.setdefault(item.element, set()).add(item.function)
                if item.function in VI_FUNCTIONS:
                    vi.setdefault(item.element, {})[item.function] = math.nan
                continue
            if item.function == "P":
                emit.sample(pl.power_ids[item.element], t_mid, value.si)
            elif item.function in VI_FUNCTIONS:
                vi.setdefault(item.element, {})[item.function] = value.si
            elif item.function == "WH":
                emit.sample(pl.energy_ids[item.element], upd.t_end_ns, value.si)
                if value.lsd_si > pl.resolution_j * (1 + 1e-9) and not self._lsd_warned:
                    self._lsd_warned = True
                    self._problem(
                        emit,
                        f"integrator steps are now {value.lsd_si:g} J, above the declared "
                        f"resolution {pl.resolution_j:g} J: the counter's uncertainty is "
                        "understated from here (restart with a larger integ_h)",
                    )
        if vi:
            self._keep_electrical(emit, t_mid, vi)
        if lost and self.dropped_wanted:
            self._keep_dropped(t_mid, lost, over_items)

    def _keep_dropped(self, t_mid: int, lost: dict[int, str], over: dict[int, set[str]]) -> None:
        """Note each lost P reading for ``read_dropped``. An overrange reading was at least
        OVERRANGE_FRAC × the range of the quantity that was over: U or I when the meter says
        which (``vi=on``: those items read INF too), else both (it cannot tell)."""
        with self.lock:
            v_rng, i_rng = self.active_v, self.active_i
            for e, marker in lost.items():
                is_over = marker == "overrange"
                which = over.get(e) or {"U", "I"}
                v_floor = i_floor = math.nan
                if is_over and "U" in which and v_rng is not None:
                    v_floor = OVERRANGE_FRAC * v_rng
                if is_over and "I" in which and i_rng is not None:
                    i_floor = OVERRANGE_FRAC * i_rng
                self.dropped[e].append((t_mid, is_over, v_floor, i_floor))

    def _keep_electrical(self, emit: Emit, t_mid: int, vi: dict[int, dict[str, float]]) -> None:
        """Buffer one update's U, I, LAMBDA per element for ``read_electrical`` (bounded: the
        oldest rows go first, counted and reported, when nobody reads them)."""
        dropped = 0
        with self.lock:
            for e, got in vi.items():
                rows = self.electrical[e]
                dropped += len(rows) == rows.maxlen
                rows.append(
                    (
                        t_mid,
                        got.get("U", math.nan),
                        got.get("I", math.nan),
                        got.get("LAMB", math.nan),
                    )
                )
        if dropped:
            self.stats.electrical_dropped += dropped
            self._problem(
                emit,
                f"U/I/LAMBDA readings not collected (read_electrical not called): oldest of "
                f"{ELECTRICAL_MAX} dropped, {self.stats.electrical_dropped} so far",
                "electrical dropped",
            )
