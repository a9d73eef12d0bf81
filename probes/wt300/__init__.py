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
from typing import TYPE_CHECKING

from powerd.channel import Instrument
from powerd.probes.base import Availability
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

    def instrument(self) -> Instrument | None:
        """The meter's ``*IDN?`` identity at its last connect (None before the first)."""
        return self.session.instrument


class Wt300Family:
    name = "wt300"
    summary = (
        "Yokogawa WT310/WT310E/WT33x power meter over RS-232 or USBTMC: "
        "wt300:<device>[,rate=0.1|0.25|0.5|1|2|5][,vrange=auto|<V>][,irange=auto|<A>]"
        "[,headroom=1][,integ=on|off][,baud=9600][,transport=serial|usbtmc][,coupling=dc|ac]"
        "[,model=][,elements=1/3][,id=][,measures=]"
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

    def open(self, args: str) -> Wt300Probe:
        from powerd.probes.wt300.session import discover, plan
        from powerd.probes.wt300.spec import parse_spec

        spec = parse_spec(args)
        return Wt300Probe(plan(spec, discover(spec)))


family = Wt300Family()
