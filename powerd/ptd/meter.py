"""What the face knows about the instrument: identity, ranges and per-sample uncertainty.

Ranging is duck-typed: a probe that has ``set_range(quantity, value)`` (``"V"``/``"A"``, None
for auto; SpecError above its largest range) and ``active_ranges() -> (V or None, A or None)``
is really ranged by SR; any other probe accepts SR as a logged no-op. Volts/Amps/PF come from
``read_electrical()`` where the probe has it; otherwise the face logs the nominal voltage and
Watts/Volts (see ``argv.NOMINAL_VOLTS_V``), so power-dev's ranging arithmetic works.
"""

from __future__ import annotations

from typing import Any

from powerd import __version__
from powerd.channel import Channel
from powerd.probes.base import split_spec

PTD_SAFE = str.maketrans({",": " ", "\r": " ", "\n": " "})


def primary_channel(channels: list[Channel], index_1: int) -> Channel:
    """The ``index_1``-th power channel (1-based), else the ``index_1``-th channel of any kind."""
    power = [c for c in channels if c.kind == "power"]
    pool = power or channels
    if not pool:
        raise ValueError("the probe has no channels")
    if index_1 > len(pool):
        ids = ", ".join(c.id for c in pool)
        raise ValueError(f"-c {index_1}: the probe has {len(pool)} power channel(s): {ids}")
    return pool[index_1 - 1]


def instrument_name(probe: Any, spec: str) -> str:
    """The real instrument: the probe's own identity where it knows one (the WT300's *IDN?
    model, through its plan), else the probe family of the spec."""
    ident = getattr(probe, "identity", None)
    if callable(ident):
        ident = ident()
    if isinstance(ident, str) and ident:
        return ident.translate(PTD_SAFE).strip()
    plan = getattr(probe, "plan", None)
    model = getattr(getattr(plan, "model", None), "name", None)
    family = split_spec(spec)[0]
    if isinstance(model, str) and model:
        return f"{family} {model}".translate(PTD_SAFE)
    return family.translate(PTD_SAFE)


def identify_reply(probe: Any, spec: str, channel: Channel) -> str:
    """``Identify``'s reply: field 0 names powerd (never PTDaemon, never a Yokogawa model it is
    not), then the instrument, the channel and powerd's version in PTD's ``version=`` form."""
    inst = instrument_name(probe, spec)
    return f"powerd-ptd,instrument={inst},channel={channel.id},version={__version__}-powerd"


class Ranging:
    """SR/RR over a probe: real ranges where it has them, a recorded no-op elsewhere."""

    def __init__(self, probe: Any) -> None:
        self.probe = probe
        self.set_range = getattr(probe, "set_range", None)
        self.active_ranges = getattr(probe, "active_ranges", None)
        self.requested: dict[str, float | None] = {"V": None, "A": None}

    @property
    def real(self) -> bool:
        return callable(self.set_range) and callable(self.active_ranges)

    def ranges(self) -> tuple[float | None, float | None]:
        """The active (V, A) ranges; None = auto or unknown."""
        if not self.real:
            return None, None
        v, a = self.active_ranges()  # type: ignore[misc]
        return v, a

    def rr_reply(self) -> str:
        """``Ranges,<A auto>,<A range>,<V auto>,<V range>``: auto 1/0 (-1 unknown), range
        > 0 or -1 unknown (what power-dev's server reads)."""
        if not self.real:
            return "Ranges,-1,-1,-1,-1"
        v, a = self.ranges()
        a_auto = "1" if self.requested["A"] is None else "0"
        v_auto = "1" if self.requested["V"] is None else "0"
        return f"Ranges,{a_auto},{_num(a)},{v_auto},{_num(v)}"

    def set(self, quantity: str, value: float | None) -> str:
        """Apply SR (raises SpecError from the probe when the value is above its largest
        range); returns what was done, for the log. A value <= 0 (power-dev's ``-1`` when its
        ranging log had no V/A) keeps the current setting."""
        keep = value is not None and value <= 0
        if not keep:
            self.requested[quantity] = value
        if not self.real:
            what = "auto" if value is None else f"{value:g}"
            return f"range {quantity} {what}: no ranges on this probe (no-op)"
        done = self.set_range(quantity, value)  # type: ignore[misc]
        return f"range {quantity}: {done}"

    def range_w(self, channel: Channel) -> float:
        """The power range the accuracy's range term applies to: the channel's own
        ``accuracy.range_w`` (a probe whose accuracy follows its range keeps it current), else
        V range × A range when the probe reports both."""
        if channel.accuracy.range_w > 0:
            return channel.accuracy.range_w
        v, a = self.ranges()
        if v is not None and a is not None:
            return v * a
        return 0.0


def _num(x: float | None) -> str:
    return "-1" if x is None else f"{x:g}"


def uncertainty_frac(channel: Channel, power_w: float, range_w: float) -> float | None:
    """(reading_frac·|P| + range_frac·range_w + offset_w)/|P| at the active range; None at 0 W."""
    acc = channel.accuracy
    p = abs(power_w)
    if p == 0.0:
        return None
    return (acc.reading_frac * p + acc.range_frac * range_w + acc.offset_w) / p
