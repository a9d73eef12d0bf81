"""The SCPI transport: one generic serial session driven by a profile, in the reader thread.

Per connection: clear the input, ask ``*IDN?`` (no answer at all → the link is down: raise, so the
reader records a gap and reconnects with backoff), check the identity against the profile, send
the setup commands, then poll at the configured rate. Each query waits at most ``timeout_s`` for
its reply line; a query the instrument does not know is *never answered* (SCPI: the error goes to
the error queue, the output stays empty), so a missing reply is a timeout with a message that
names the query, what the error queue then says, and the likely cause. If the error query is not
answered either, the link is taken as dead after two such polls and the session ends (reconnect).

Stamps (host UTC ns, the midpoint of what the reading averages):

- ``held`` (supplies, PW3335): the instrument refreshes a held reading every ``update_s``; a
  reply is on average one interval old (half an averaging window plus half a holding interval),
  so it is placed at the query's midpoint minus ``update_s``, uncertain by ±``update_s``/2;
- ``acquire`` (N67xx): each ``MEAS`` starts a fresh acquisition, placed at the midpoint of the
  query exchange;
- ``ready`` (PA1000): ``:DSR?`` says when a new reading is ready; it covers the ``update_s``
  before that moment, so it is placed ``update_s``/2 before the middle of the last two polls.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import serial

from powerd.channel import Instrument
from powerd.probes.scpi.parser import (
    Reading,
    Reject,
    parse_error,
    parse_idn,
    parse_reading,
    parse_ready,
)
from powerd.probes.scpi.profiles import Mode, Profile
from powerd.probes.serialport import Clock, Emit

PORT_TIMEOUT_S = 0.02
DEAD_AFTER = 2
REPEAT_EVERY = 20


@dataclass(frozen=True)
class ScpiConfig:
    url: str
    channel_id: str
    profile: Profile
    mode: Mode
    channel: int
    rate_hz: float
    timeout_s: float
    strict: bool
    baud: int

    def query(self, template: str) -> str:
        return template.format(ch=self.channel)


@dataclass
class ScpiStats:
    """Counts since the probe opened (read by tests and reported in problems)."""

    polls: int = 0
    readings: int = 0
    rejected: int = 0
    timeouts: int = 0
    connects: int = 0
    idn: str = ""
    last_reject: str = ""
    instrument: Instrument | None = None


class Link:
    """Query/reply over a port: one line per reply, bounded waits, stale input discarded."""

    def __init__(self, port: serial.Serial, terminator: bytes, stop: threading.Event) -> None:
        self.port = port
        self.terminator = terminator
        self.stop = stop

    def write(self, command: str) -> None:
        self.port.reset_input_buffer()
        self.port.write(command.encode("ascii") + self.terminator)

    def query(self, command: str, timeout_s: float) -> bytes | None:
        """Send ``command``; its reply line without the terminator, or None after the timeout."""
        self.write(command)
        buf = b""
        deadline = time.monotonic() + timeout_s
        while True:
            end = buf.find(b"\n")
            if end >= 0:
                return buf[:end].rstrip(b"\r")
            if time.monotonic() >= deadline or self.stop.is_set():
                return None
            buf += self.port.read(max(1, self.port.in_waiting))
            if len(buf) > 4096:
                buf = buf[-4096:]


@dataclass
class Poller:
    """The polling state of one session: stamps, counters, rate-limited problems."""

    cfg: ScpiConfig
    stats: ScpiStats
    link: Link
    emit: Emit
    clock: Clock
    dead: int = 0
    last_stamp_ns: int = 0
    _said: dict[str, int] = field(default_factory=dict)

    def say(self, key: str, text: str) -> None:
        """Emit a problem; the same kind again only every ``REPEAT_EVERY`` times, with a count."""
        n = self._said.get(key, 0) + 1
        self._said[key] = n
        if n == 1:
            self.emit.problem(f"{self.cfg.channel_id}: {text}")
        elif n % REPEAT_EVERY == 0:
            self.emit.problem(f"{self.cfg.channel_id}: {text} (seen {n} times)")

    def no_reply(self, command: str) -> None:
        """A query timed out: ask the error queue to tell a bad query from a dead link."""
        if self.link.stop.is_set():
            return  # closing: the wait was cut short, not a timeout
        self.stats.timeouts += 1
        p = self.cfg.profile
        err_raw = self.link.query(p.error_query, self.cfg.timeout_s)
        wait = f"no reply to {command!r} within {self.cfg.timeout_s:g} s"
        if err_raw is None:
            self.dead += 1
            text = (
                f"{wait}, and none to {p.error_query!r} either: the link looks dead "
                f"(cable, power, baud {self.cfg.baud}, or the instrument is busy)"
            )
            self.say("dead", text)
            if self.dead >= DEAD_AFTER:
                raise serial.SerialException(f"{self.cfg.channel_id}: {text}")
            return
        self.dead = 0
        err = parse_error(err_raw)
        if err is not None and err[0] == 0:
            self.say(
                "lost",
                f"{wait}, and {p.error_query} reports no error: the reply was lost on the way "
                "(noise or a loose cable?); that poll is skipped",
            )
            return
        said = f"{err[0]} {err[1]}".strip() if err else repr(err_raw[:60])
        self.say(
            f"silent:{command}",
            f"{wait}; {p.error_query} then says {said}. The instrument never answers a query it "
            f"does not know (SCPI -113 undefined header): check the query spelling for "
            f"{p.name} (e.g. Siglent needs MEASure:POWEr? or MEAS:POWE?, not MEAS:POW?), "
            f"the channel ({self.cfg.channel}) and mode",
        )

    def reject(self, why: Reject) -> None:
        self.stats.rejected += 1
        self.stats.last_reject = why.reason
        self.say("reject", f"reading not used: {why.reason}")

    def record(self, reading: Reading, stamp_ns: int) -> None:
        if stamp_ns <= self.last_stamp_ns:
            stamp_ns = self.last_stamp_ns + 1
        self.last_stamp_ns = stamp_ns
        self.stats.readings += 1
        self.emit.sample(self.cfg.channel_id, stamp_ns, reading.power_w)

    def read_mode(self) -> Reading | Reject | None:
        """Send the mode's queries; None if one went unanswered (already reported)."""
        replies: list[bytes] = []
        for template in self.cfg.mode.queries:
            command = self.cfg.query(template)
            raw = self.link.query(command, self.cfg.timeout_s)
            if raw is None:
                self.no_reply(command)
                return None
            replies.append(raw)
        self.dead = 0
        return parse_reading(replies, self.cfg.profile, self.cfg.mode, self.cfg.strict)

    def poll_direct(self) -> None:
        """``held`` and ``acquire``: ask for the reading now."""
        self.stats.polls += 1
        t0 = self.clock()
        got = self.read_mode()
        t1 = self.clock()
        if got is None:
            return
        if isinstance(got, Reject):
            self.reject(got)
            return
        lag_ns = (
            round(self.cfg.profile.update_s * 1e9) if self.cfg.profile.stamping == "held" else 0
        )
        self.record(got, (t0 + t1) // 2 - lag_ns)

    def poll_ready(self, previous_ns: int) -> int:
        """``ready``: ask the status register; read when a new reading is ready. Returns the time
        of this status poll."""
        p = self.cfg.profile
        self.stats.polls += 1
        raw = self.link.query(p.ready_query, self.cfg.timeout_s)
        t = self.clock()
        if raw is None:
            self.no_reply(p.ready_query)
            return t
        self.dead = 0
        ready = parse_ready(raw, p.ready_mask)
        if ready is None:
            self.reject(Reject(f"status reply {raw[:40]!r} to {p.ready_query} is not a number"))
            return t
        if not ready:
            return t
        got = self.read_mode()
        if got is None:
            return t
        if isinstance(got, Reject):
            self.reject(got)
            return t
        half_update_ns = round(p.update_s * 1e9) // 2
        self.record(got, (previous_ns + t) // 2 - half_update_ns)
        return t


def make_session(
    cfg: ScpiConfig, stats: ScpiStats
) -> Callable[[serial.Serial, Emit, Clock, threading.Event], None]:
    """The reader-thread body for one instrument."""
    p = cfg.profile
    idn_re = re.compile(p.idn_re)

    def session(port: serial.Serial, emit: Emit, clock: Clock, stop: threading.Event) -> None:
        port.timeout = PORT_TIMEOUT_S
        link = Link(port, p.terminator, stop)
        stats.connects += 1
        raw = link.query("*IDN?", cfg.timeout_s)
        if raw is None:
            raise serial.SerialException(
                f"no reply to '*IDN?' within {cfg.timeout_s:g} s at {cfg.url}: is the "
                f"instrument on, the cable right and the baud rate {cfg.baud}?"
            )
        idn = parse_idn(raw) or repr(raw[:60])
        if idn != stats.idn:
            stats.idn = idn
            stats.instrument = Instrument.from_idn(idn) if parse_idn(raw) else None
            if not idn_re.search(idn):
                emit.problem(
                    f"{cfg.channel_id}: the instrument says it is {idn!r}, which does not look "
                    f"like profile {p.name} ({p.title}); measuring anyway"
                )
        for command in p.setup:
            link.write(command)
            if stop.wait(p.setup_gap_s):
                return
        poller = Poller(cfg, stats, link, emit, clock)
        period_s = 1.0 / cfg.rate_hz
        due = time.monotonic()
        previous_ns = clock()
        while not stop.is_set():
            if p.stamping == "ready":
                previous_ns = poller.poll_ready(previous_ns)
            else:
                poller.poll_direct()
            due += period_s
            now = time.monotonic()
            due = max(due, now)
            stop.wait(due - now)

    return session
