"""Yokogawa WT310/WT310E/WT310HC/WT310EH/WT332(E)/WT333(E) power meters (probe ``wt300``).

Spec ``wt300:<device path>[,key=value...]``, e.g. ``wt300:/dev/ttyUSB0,rate=0.1,irange=5`` (RS-232,
9600 8N1) or ``wt300:/dev/usbtmc0`` (USBTMC). Each input element k gives a power channel
``wt300:<id>:p<k>`` (W, the mean over each update interval, stamped at its midpoint) and, with the
integrator (``integ=on``, default), an energy channel ``wt300:<id>:e<k>`` (J, the meter's own WH
counter) measuring the same thing, so results carry their ratio. ``<id>`` is the device file's
name unless ``id=`` is given. See README.md for every key, the accuracy figures and limitations.

Only the standard library is imported here; pyserial and numpy are loaded when a probe opens.
"""

from __future__ import annotations

import glob
import importlib.util
import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from powerd.channel import Channel, Instrument
from powerd.errors import ProbeUnavailable, SpecError
from powerd.probes.base import (
    AccuracyChange,
    Availability,
    DroppedBlock,
    ElectricalBlock,
    RangeQuantity,
)
from powerd.probes.serialport import SerialProbe

if TYPE_CHECKING:
    from powerd.probes.wt300.session import MeterSession, Plan, Stats

PATTERNS = (
    "/dev/usbtmc*",
    "/dev/serial/by-id/*",
    "/dev/ttyUSB*",
    "/dev/ttyACM*",
    "/dev/ttyS*",
    "/dev/pts/[0-9]*",
)
POLL_INTERVAL_S = 0.1
RANGE_REPLY_MARGIN_S = 5.0


class Wt300Probe(SerialProbe):
    """A WT300-series meter read by a SerialReader thread; ``read`` drains what it gathered."""

    def __init__(self, plan: Plan) -> None:
        from powerd.probes.wt300.session import MeterSession, open_kwargs, port_url

        self.plan = plan
        self.session: MeterSession = MeterSession(plan)
        super().__init__(
            list(plan.channels),
            plan.name,
            port_url(plan.spec),
            self.session,
            open_kwargs(plan.spec),
            plan.notes,
        )
        self.poll_interval_s = min(POLL_INTERVAL_S, plan.spec.rate_s / 2)

    @property
    def stats(self) -> Stats:
        return self.session.stats

    def channels(self) -> list[Channel]:
        """The channels with the accuracy in effect now (it follows the active range)."""
        with self.session.lock:
            now = dict(self.session.accuracy_now)
        return [replace(ch, accuracy=now.get(ch.id, ch.accuracy)) for ch in self._channels]

    def start(self, clock: Callable[[], int]) -> None:
        """Start reading; the accuracy declared at open is the first record of each channel's
        accuracy history (later moves are never placed before it)."""
        if self.reader is None:
            self.session.start_accuracy(clock())
        super().start(clock)

    def accuracy_changes(self) -> list[AccuracyChange]:
        return self.session.take_accuracy_changes()

    def set_range(self, quantity: RangeQuantity, value: float | None) -> str:
        """Set the V or A range (None: auto) between two updates, read it back, say what is set.

        A value picks the smallest range of this model at its crest factor that holds it (the
        ranges are rms figures at that crest factor; the meter reads up to 140 % of a range).
        Above the largest range: SpecError. ``value <= 0`` (power-dev's ``-1``): no change. A
        refusal, or no confirmation within a few update intervals, returns a message starting
        ``"<V|A> range not"`` and is also a problem."""
        from powerd.probes.wt300.session import RangeRequest

        if quantity not in ("V", "A"):
            raise SpecError(f"{self.name}: range quantity must be V or A, got {quantity!r}")
        unit = quantity
        if value is not None and not (value > 0 and math.isfinite(value)):
            v_now, i_now = self.active_ranges()
            now = v_now if quantity == "V" else i_now
            shown = "unknown" if now is None else f"{now:g} {unit}"
            return f"{quantity} range unchanged ({value:g} is no {quantity} value; stays {shown})"
        target: float | None = None
        if value is not None:
            pl = self.plan
            ranges = (
                pl.model.voltage_ranges_v(pl.crest_factor)
                if quantity == "V"
                else pl.model.current_ranges_a(pl.crest_factor)
            )
            from powerd.probes.wt300.models import smallest_range

            target = smallest_range(ranges, value)
            if target is None:
                raise SpecError(
                    f"{self.name}: {value:g} {unit} is above the {pl.model.name}'s largest "
                    f"{quantity} range {ranges[-1]:g} {unit} (crest factor {pl.crest_factor})"
                )
        req = RangeRequest(quantity, target)
        self.session.requests.put(req)
        wait_s = 3 * self.plan.spec.rate_s + RANGE_REPLY_MARGIN_S
        if not req.done.wait(wait_s):
            asked = "auto" if target is None else f"{target:g} {unit}"
            msg = (
                f"{quantity} range not confirmed within {wait_s:g} s: {asked} is queued and is "
                "applied when the meter answers"
            )
            if self.reader is not None:
                self.reader.emit.problem(f"{self.name}: {msg}")  # thread-safe, unlike the list
            else:
                self._problems.append(f"{self.name}: {msg}")
            return msg
        return req.reply

    def active_ranges(self) -> tuple[float | None, float | None]:
        with self.session.lock:
            return self.session.active_v, self.session.active_i

    def read_electrical(self) -> dict[str, ElectricalBlock]:
        """U, I and LAMBDA per power channel since the previous call (``vi=on``; else empty)."""
        import numpy as np

        with self.session.lock:
            taken = {e: list(rows) for e, rows in self.session.electrical.items() if rows}
            for e in taken:
                self.session.electrical[e].clear()
        out: dict[str, ElectricalBlock] = {}
        for e, rows in taken.items():
            arr = np.array([r[1:] for r in rows], np.float64).reshape(-1, 3)
            out[self.plan.power_ids[e]] = ElectricalBlock(
                np.array([r[0] for r in rows], np.int64), arr[:, 0], arr[:, 1], arr[:, 2]
            )
        return out

    def read_dropped(self) -> dict[str, DroppedBlock]:
        """Power readings lost to NAN (range switching) or INF (overrange) since the previous
        call, per power channel, with what an overrange reading was at least (1.4 × the range
        of U or I, whichever the meter marked; both when it cannot tell). Collected from the
        first call on."""
        import numpy as np

        with self.session.lock:
            self.session.dropped_wanted = True
            taken = {e: list(rows) for e, rows in self.session.dropped.items() if rows}
            for e in taken:
                self.session.dropped[e].clear()
        out: dict[str, DroppedBlock] = {}
        for e, rows in taken.items():
            out[self.plan.power_ids[e]] = DroppedBlock(
                np.array([r[0] for r in rows], np.int64),
                np.array([r[1] for r in rows], np.bool_),
                np.array([r[2] for r in rows], np.float64),
                np.array([r[3] for r in rows], np.float64),
            )
        return out

    def instrument(self) -> Instrument | None:
        """The meter's ``*IDN?`` identity at its last connect (None before the first)."""
        return self.session.instrument


class Wt300Family:
    name = "wt300"
    summary = (
        "Yokogawa WT310/WT310E/WT33x power meter over RS-232 or USBTMC: "
        "wt300:<device>[,rate=0.1|0.25|0.5|1|2|5][,vrange=auto|<V>][,irange=auto|<A>]"
        "[,headroom=1][,integ=on|off][,baud=9600][,transport=serial|usbtmc][,coupling=dc|ac]"
        "[,model=][,elements=1/3][,id=][,measures=][,vi=on|off]"
    )

    def available(self) -> Availability:
        if importlib.util.find_spec("serial") is None:
            return Availability(False, "pyserial is not installed: pip install 'powerd[serial]'")
        found = sorted({p for pattern in PATTERNS for p in glob.glob(pattern)})
        if not found:
            return Availability(
                False,
                "no /dev/usbtmc*, /dev/ttyUSB*, /dev/ttyACM*, /dev/ttyS* or pseudo-terminal: "
                "connect the meter (USB: the usbtmc driver; RS-232: a null-modem cable) and "
                "pass wt300:/dev/usbtmc0 or wt300:/dev/ttyUSB0[,baud=9600]",
            )
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        return Availability(True, f"serial/USBTMC device paths: {shown} (pass wt300:<path>)")

    def check_spec(self, args: str) -> None:
        """The spec's keys, and pyserial installed (``powerd run --check-config``; no port is
        opened)."""
        from powerd.probes.wt300.spec import parse_spec

        parse_spec(args)
        if importlib.util.find_spec("serial") is None:
            raise ProbeUnavailable("pyserial is not installed: pip install 'powerd[serial]'")

    def open(self, args: str) -> Wt300Probe:
        from powerd.probes.wt300.session import discover, plan
        from powerd.probes.wt300.spec import parse_spec

        spec = parse_spec(args)
        return Wt300Probe(plan(spec, discover(spec)))


family = Wt300Family()
