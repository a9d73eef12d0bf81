"""PTDaemon's commands and replies over one face: the measurement state machine.

``Face.handle(line)`` returns the reply lines for one command (RL's reply is several lines);
``Face.on_interval`` takes each completed 1 s mean from the aggregator (the sampler's thread).
Replies are exactly what power-dev's server and checker expect (the table in README.md here);
the wording of anything they do not parse is powerd's own and says what happened.

A measurement runs from ``Go`` to ``Stop``: its samples are the intervals that start at or after
Go and end at or before Stop. They go to the ``-l`` log with Go's mark, to ``RL`` (each RL returns
only the samples not yet read; Go resets the cursor) and to the ``Watts``/``Uncertainty``
statistics. Every sample is echoed on stdout, as PTDaemon does, and one whose uncertainty is above
1 % gets PTDaemon's timestamped warning.

A sample is *valid* only if it is the mean of the whole interval: built from at least
``VALID_COUNT_FRAC`` of the readings the interval holds at the channel's nominal rate, and with no
reading lost to NAN (range switching) or overrange. An invalid sample is still echoed, logged and
returned by RL (power-dev's server parses every line and takes its ranging V/A from them), but
with Watts ``-1``, PTDaemon's "unknown" (check.py averages only W > 0), no uncertainty (``-1`` in
the echo; left out of the Uncertainty and Watts figures), a timestamped WARNING saying why, and a
count. A second with overrange readings logs Volts/Amps of at least what the range reads
(1.4 × range, of the quantity the meter marked over) or the largest reading the meter gave in that
second, whichever is larger, so the server's ``SR,A,<1.1 × max A>`` picks a range that holds the
load.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from powerd.channel import Channel
from powerd.errors import PowerdError
from powerd.ptd.aggregate import NS_PER_S, Aggregator, Interval
from powerd.ptd.meter import Ranging, uncertainty_frac
from powerd.ptd.samplelog import SampleLog, num, sample_fields
from powerd.ptd.stamp import StampedOut, stamp_text

HELLO_REPLY = "Hello, PTDaemon here!"
RANGE_CHANGED = "Range {q} changed"
GO_REPLY = (
    "Starting untimed measurement, maximum 500000 samples at {ms}ms with {ramp} rampup samples"
)
STOP_REPLY = "Stopping untimed measurement"
STOP_NONE = "Error: no measurement to stop"
RL_SINGLE = "Error: Invalid number of parameters"
UNKNOWN = "Error: Unknown command"
UNCERTAINTY_LIMIT = 0.01
VALID_COUNT_FRAC = 0.9  # a valid sample has at least this share of the interval's readings
STOP_WAIT_S = 3.0


class Recorder(Protocol):
    """Where Go/Stop go in powerd's own store (``powerd.ptd.recorder``)."""

    def begin(self, mark: str, t_ns: int) -> str | None: ...

    def end(self, mark: str, t_ns: int) -> str | None: ...

    def settle(self) -> None: ...


@dataclass
class Row:
    """One face sample as reported: the RL/log fields plus its uncertainty (None: unknown)."""

    t_ns: int
    watts: float
    volts: float | None
    amps: float | None
    pf: float | None
    n: int
    unc: float | None
    valid: bool = True  # False: not the mean of the whole interval (Watts logged -1)


@dataclass
class Measurement:
    """One Go..Stop: its mark, window, samples and RL cursor."""

    mark: str
    go_ns: int
    interval_ns: int
    rampup: int = 0  # samples still to leave out at the start (Go's second field)
    stop_ns: int | None = None
    rows: list[Row] = field(default_factory=list)
    cursor: int = 0


class Face:
    """The protocol over one probe channel; thread-safe (commands and samples meet here)."""

    def __init__(
        self,
        *,
        out: StampedOut,
        log: SampleLog,
        channel: Channel,
        ranging: Ranging,
        agg: Aggregator,
        recorder: Recorder,
        identify: str,
        dc: bool,
        nominal_volts_v: float,
        clock: Callable[[], int] = time.time_ns,
        channel_now: Callable[[], Channel] | None = None,
    ) -> None:
        self.out, self.log, self.channel = out, log, channel
        self.ranging, self.agg, self.recorder = ranging, agg, recorder
        self.identify, self.dc, self.nominal_volts_v = identify, dc, nominal_volts_v
        self.clock = clock
        # the channel with the accuracy in effect now (a WT300's follows its active range)
        self.channel_now = channel_now or (lambda: channel)
        self.current: Measurement | None = None  # measuring now
        self.last: Measurement | None = None  # the latest measurement, running or stopped
        self.samples = 0
        self.missing_seen = 0
        self.high_uncertainty = 0
        self.invalid = 0  # samples not valid (too few readings, or some lost)
        self.overrange = 0  # samples with overrange readings (V/A raised to the range's limit)
        self._lock = threading.RLock()
        self._settle = False

    # samples (sampler thread) -----------------------------------------------------------------

    def on_interval(self, iv: Interval) -> None:
        volts, amps, pf = iv.volts, iv.amps, iv.pf
        if volts is None and amps is None:
            # no V/A from this probe: the documented convention (nominal V, A = W/V), so the
            # server's ranging arithmetic has positive numbers; PF stays unknown (-1)
            volts = self.nominal_volts_v
            amps = abs(iv.watts) / volts if math.isfinite(iv.watts) else None
        why = invalid_reason(iv)
        if iv.volts_floor is not None:
            volts = iv.volts_floor if volts is None else max(volts, iv.volts_floor)
        if iv.amps_floor is not None:
            amps = iv.amps_floor if amps is None else max(amps, iv.amps_floor)
        unc: float | None = None
        if why is None:
            ch = self.channel_now()
            unc = uncertainty_frac(ch, iv.watts, self.ranging.range_w(ch))
        watts = iv.watts if why is None else math.nan
        row = Row(iv.t_end_ns, watts, volts, amps, pf, iv.n, unc, why is None)
        fields = sample_fields(row.t_ns, row.watts, row.volts, row.amps, row.pf)
        with self._lock:
            self.samples += 1
            if why is not None:
                self.invalid += 1
                self.overrange += iv.overrange > 0
                floors = ""
                if iv.overrange:
                    floors = (
                        f"; Volts/Amps logged as at least {num(iv.volts_floor)} V / "
                        f"{num(iv.amps_floor)} A (1.4 x the range, or the largest reading of "
                        "the second; -1: not over)"
                    )
                kept = ""
                if math.isfinite(iv.watts):
                    kept = f" (mean of the {iv.n} kept: {num(iv.watts)} W, not the second's)"
                self.out.warning(
                    f"sample {stamp_text(row.t_ns)} not valid: {why}; logged with Watts -1{kept} "
                    f"and no uncertainty{floors} ({self.invalid} invalid so far)"
                )
            if self.agg.missing > self.missing_seen:
                gap = self.agg.missing - self.missing_seen
                self.missing_seen = self.agg.missing
                self.out.warning(
                    f"no samples from {self.channel.id} for {gap} interval(s) before "
                    f"{stamp_text(row.t_ns)}; {self.agg.missing} missing so far"
                )
            m = self.current
            mark = ""
            if m is not None and iv.t_end_ns - m.interval_ns >= m.go_ns:
                if m.rampup > 0:
                    m.rampup -= 1  # a ramp-up sample: echoed below, not measured
                else:
                    m.rows.append(row)
                    mark = m.mark
                    self.log.write(fields, mark)
            unc_text = "-1" if unc is None else f"{unc * 100:.3f}%"
            self.out.line(f"{fields},Mark,{mark},Uncertainty,{unc_text},Samples,{iv.n}")
            if unc is not None and unc > UNCERTAINTY_LIMIT:
                self.high_uncertainty += 1
                self.out.warning(
                    f"Uncertainty {unc * 100:.2f}%, which is above "
                    f"{UNCERTAINTY_LIMIT * 100:.2f}% limit for the last sample!"
                )

    # commands ---------------------------------------------------------------------------------

    def handle(self, line: str) -> list[str]:
        """The reply lines to one command line (CR/LF already stripped)."""
        self.out.line(f"Command: {line}")
        try:
            reply = self._dispatch(line.strip())
        except PowerdError as err:
            reply = [f"Error: {err}"]
        for r in reply[:1]:
            self.out.line(f"Reply: {r}")
        if len(reply) > 1:
            self.out.line(f"Reply: ({len(reply) - 1} sample lines)")
        return reply

    def after_reply(self) -> None:
        """Work that must not delay a reply: the result of a measurement just stopped."""
        if self._settle:
            self._settle = False
            self.recorder.settle()

    def _dispatch(self, cmd: str) -> list[str]:
        parts = [p.strip() for p in cmd.split(",")]
        head = parts[0]
        if cmd == "Hello":
            return [HELLO_REPLY]
        if cmd == "Identify":
            return [self.identify]
        if cmd == "RR":
            return [self.ranging.rr_reply()]
        if head == "SR" and len(parts) == 3 and parts[1] in ("V", "A"):
            return [self._set_range(parts[1], parts[2])]
        if head == "Go" and len(parts) == 4:
            return [self._go(parts[1], parts[2], parts[3])]
        if cmd == "Stop":
            return [self._stop()]
        if cmd == "RL,*,*":
            return [UNKNOWN if self.dc else RL_SINGLE]
        if cmd in ("RL", "DC-RL"):
            return self._read_last()
        if cmd == "Watts":
            rows = self._rows()
            self._say_invalid("Watts", rows)
            return [self._stats("Watts", [r.watts for r in rows if r.valid], tail="")]
        if cmd == "Uncertainty":
            rows = self._rows()
            self._say_invalid("Uncertainty", rows)
            known = [r.unc for r in rows if r.unc is not None]
            return [self._stats("Uncertainty", known, tail=",0")]
        return [UNKNOWN]

    def _set_range(self, q: str, text: str) -> str:
        if text.lower() == "auto":
            value: float | None = None
        else:
            try:
                value = float(text)
            except ValueError:
                return f"Error: range {text!r} is not a number or Auto"
            if not math.isfinite(value):
                return f"Error: range {text!r} is not a number or Auto"
        done = self.ranging.set(q, value)
        self.out.line(done)
        return RANGE_CHANGED.format(q=q)

    def _go(self, interval_ms: str, rampup: str, mark: str) -> str:
        try:
            ms, ramp = int(interval_ms), int(rampup)
        except ValueError:
            return "Error: Go needs Go,<interval ms>,<rampup samples>,<mark>"
        if ms <= 0 or ramp < 0 or not mark:
            return "Error: Go needs an interval > 0 ms, rampup >= 0 and a mark"
        now = self.clock()
        # the aggregator's lock is taken before the face's when a sample arrives: never inside
        self.agg.set_interval(ms * NS_PER_S // 1000)
        with self._lock:
            if self.current is not None:
                self.out.line(f"Go while measuring: stopping mark '{self.current.mark}' first")
                self._end(now)
            self.current = self.last = Measurement(mark, now, ms * NS_PER_S // 1000, ramp)
        problem = self.recorder.begin(mark, now)
        if problem is not None:
            self.out.warning(f"powerd store: phase {mark!r} not begun: {problem}")
        self.out.line(f"Go with mark '{mark}'")
        return GO_REPLY.format(ms=ms, ramp=ramp)

    def _stop(self) -> str:
        now = self.clock()
        with self._lock:
            if self.current is None:
                return STOP_NONE
            interval = self.current.interval_ns
        # the intervals ending by now are complete once data after them has arrived
        boundary = now // interval * interval
        deadline = time.monotonic() + STOP_WAIT_S
        while self.agg.complete_until_ns < boundary and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._lock:  # commands come from one connection: nothing ended it meanwhile
            self._end(now)
        self.out.line("Completed test")
        return STOP_REPLY

    def _end(self, now: int) -> None:
        m = self.current
        assert m is not None
        m.stop_ns = now
        # intervals that end after Stop do not belong to this measurement
        m.rows = [r for r in m.rows if r.t_ns <= now]
        self.current = None
        problem = self.recorder.end(m.mark, now)
        if problem is not None:
            self.out.warning(f"powerd store: phase {m.mark!r} not ended: {problem}")
        self._settle = True

    def _rows(self) -> list[Row]:
        with self._lock:
            return list(self.last.rows) if self.last is not None else []

    def _read_last(self) -> list[str]:
        with self._lock:
            m = self.last
            if m is None:
                return ["Last 0 samples"]
            new = m.rows[m.cursor :]
            m.cursor = len(m.rows)
        lines = [sample_fields(r.t_ns, r.watts, r.volts, r.amps, r.pf) for r in new]
        return [f"Last {len(new)} samples", *lines]

    def _say_invalid(self, what: str, rows: list[Row]) -> None:
        """A timestamped WARNING when a reply's figures leave invalid samples out."""
        bad = sum(not r.valid for r in rows)
        if bad:
            self.out.warning(
                f"{what}: {bad} of {len(rows)} samples of the measurement are not valid (not the "
                f"mean of their whole interval); the figures cover the {len(rows) - bad} valid ones"
            )

    @staticmethod
    def _stats(name: str, values: list[float], tail: str) -> str:
        """``<name>,avg,min,max,n,0,n`` (+ ``tail``); ``-1`` figures when there are none."""
        n = len(values)
        if n == 0:
            return f"{name},-1,-1,-1,0,0,0{tail}"
        avg = sum(values) / n
        return f"{name},{num(avg)},{num(min(values))},{num(max(values))},{n},0,{n}{tail}"


def invalid_reason(iv: Interval) -> str | None:
    """Why an interval's mean is not the mean of the whole interval, or None if it is: a
    reading lost to NAN or overrange (the readings a range-crossing load loses are the high
    ones, so the rest is biased low), or fewer than VALID_COUNT_FRAC of the readings it holds."""
    why: list[str] = []
    if iv.overrange:
        why.append(f"{iv.overrange} reading(s) overrange")
    if iv.dropped > iv.overrange:
        why.append(f"{iv.dropped - iv.overrange} reading(s) with no data (range switching)")
    if iv.expected is not None and iv.n < VALID_COUNT_FRAC * iv.expected:
        why.append(f"{iv.n} of the {iv.expected:g} readings the interval holds")
    elif iv.n == 0:
        why.append("no reading")
    return "; ".join(why) if why else None
