"""The probe interface every source implements, and the spec syntax ``<name>[:<args>]``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from powerd.block import Block
from powerd.channel import Accuracy, Channel
from powerd.errors import SpecError


@dataclass(frozen=True)
class Availability:
    """Whether a probe family can run on this host; ``reason`` explains a no, or what was found."""

    ok: bool
    reason: str
    broken: bool = False


class Probe(Protocol):
    """An open source of samples. ``read`` is called every ``poll_interval_s`` by the runner."""

    poll_interval_s: float

    def channels(self) -> list[Channel]: ...

    def read(self, now_utc_ns: int) -> list[Block]:
        """Samples taken since the previous call, stamped on this host's UTC timeline.

        A failure of one channel must not lose the others: the probe returns what it could read
        and reports the rest through ``problems()``. Raising means the whole probe failed this time.
        """
        ...

    def problems(self) -> list[str]:
        """Channel-level problems since the previous call ("nvml:1:power: GPU is lost"), drained."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class TemperatureProbe(Protocol):
    """A probe that also reports device temperatures (°C): a separate quantity from its power
    channels (nothing integrates it; ``powerd verify``'s stability criterion reads it).

    ``temperatures_c(now_utc_ns)`` gives each sensor's current reading by name
    (``nvml:0:temperature``); an empty dict when none is readable now. It may raise: the caller
    counts and reports the failure."""

    def temperatures_c(self, now_utc_ns: int) -> dict[str, float]: ...


class StreamingProbe(Probe, Protocol):
    """A probe with its own reader thread (serial meters, streaming CLIs). The sampler calls
    ``start(clock)`` once before polling; ``clock()`` gives the host's UTC ns for stamping."""

    def start(self, clock: Callable[[], int]) -> None: ...


RangeQuantity = Literal["V", "A"]


@dataclass(frozen=True)
class ElectricalBlock:
    """One power channel's electrical readings since the previous ``read_electrical`` call.

    Parallel numpy arrays, one element per meter update: ``t_ns`` on the host's UTC timeline (the
    same stamps as that channel's power samples), ``volts`` (V rms), ``amps`` (A rms) and ``pf``
    (power factor, the meter's LAMBDA). A reading the meter did not give (over range, error) is NaN;
    a consumer that must not show NaN (the PTDaemon face logs ``-1``) maps it itself.
    """

    t_ns: np.ndarray
    volts: np.ndarray
    amps: np.ndarray
    pf: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.t_ns)
        if not len(self.volts) == len(self.amps) == len(self.pf) == n:
            raise ValueError("ElectricalBlock arrays must have one element per update")

    def __len__(self) -> int:
        return len(self.t_ns)


@dataclass(frozen=True)
class DroppedBlock:
    """One power channel's readings the meter did not give, since the previous ``read_dropped``.

    Why: a mean over an interval that silently lacks some of its readings is not that interval's
    mean (the readings a range-crossing load loses are the high ones), so a consumer that reports
    interval means (the PTDaemon face) must know which were lost and why. Parallel numpy arrays,
    one element per lost update, stamped like the power samples would have been: ``overrange``
    (True: INF, the input was above what the range reads; False: NAN, e.g. range switching), and
    ``volts_floor`` / ``amps_floor``: what an overrange reading was at least (the meter reads up to
    1.4 × its range), NaN when that quantity was not the one over (or not overrange).
    """

    t_ns: np.ndarray
    overrange: np.ndarray
    volts_floor: np.ndarray
    amps_floor: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.t_ns)
        if not len(self.overrange) == len(self.volts_floor) == len(self.amps_floor) == n:
            raise ValueError("DroppedBlock arrays must have one element per lost update")

    def __len__(self) -> int:
        return len(self.t_ns)


@runtime_checkable
class DropReportingProbe(Protocol):
    """A meter that says which power readings it lost (NAN/overrange) and what an overrange
    reading was at least."""

    def read_dropped(self) -> dict[str, DroppedBlock]:
        """Lost readings since the previous call, keyed by power channel id; drained."""
        ...


@runtime_checkable
class RangedProbe(Protocol):
    """A meter whose voltage and current ranges can be set, as PTDaemon's ``SR`` does.

    Why: MLPerf Power ranges the meter in a first run and fixes the ranges for the measured run;
    the channel's accuracy (range part of the spec) follows the range in use.
    """

    def set_range(self, quantity: RangeQuantity, value: float | None) -> str:
        """Set the ``"V"`` or ``"A"`` range and say what was set (``"V range 150 V"``).

        ``None`` turns auto ranging on. A value picks the smallest range that holds it (crest
        factor aware: the peak the range can hold). A value above the largest range raises
        :class:`powerd.errors.SpecError`. A value ``<= 0`` (power-dev sends ``-1`` when it saw no
        V or A) keeps the current setting, and the reply says so. A meter that refuses the command
        is reported through ``problems()`` and the reply says the range was not set.
        """
        ...

    def active_ranges(self) -> tuple[float | None, float | None]:
        """The voltage and current ranges in use now (V, A), read back from the meter; ``None``
        where not known yet (no reply so far)."""
        ...


@runtime_checkable
class ElectricalProbe(Protocol):
    """A meter that also reports volts, amps and power factor beside power."""

    def read_electrical(self) -> dict[str, ElectricalBlock]:
        """Readings since the previous call, keyed by power channel id; drained."""
        ...


@dataclass(frozen=True)
class AccuracyChange:
    """A channel's accuracy from ``t_ns`` (host UTC) on: a meter's range moved (``set_range``, or
    auto ranging). ``t_ns`` is placed so that every sample measured on the larger range is
    covered by the larger bound (a move up counts from before it could have happened, a move down
    from after it surely had)."""

    channel: str
    t_ns: int
    accuracy: Accuracy


@runtime_checkable
class AccuracyTracking(Protocol):
    """A probe whose channels' accuracy can change while it runs; ``channels()`` gives the
    accuracy in effect now, and the runner stores every change in the store's accuracy history
    (results then use, per phase, the accuracy in effect for the samples they integrate)."""

    def accuracy_changes(self) -> list[AccuracyChange]:
        """Changes since the previous call, oldest first; drained."""
        ...


class ProbeFamily(Protocol):
    """What the entry point names: a description, a host check, and a constructor from a spec.

    A family may also define ``check_spec(args) -> None``: it raises ``PowerdError`` (one line)
    for a spec that cannot work, without opening or touching anything; ``powerd run
    --check-config`` calls it (sim, wt300 and nvml do: their keys, and their Python binding)."""

    name: str
    summary: str

    def available(self) -> Availability: ...

    def open(self, args: str) -> Probe: ...


def split_spec(spec: str) -> tuple[str, str]:
    """``"sim:square,high=10"`` → ``("sim", "square,high=10")``."""
    name, _, args = spec.partition(":")
    if not name:
        raise SpecError(f"empty probe name in {spec!r}: use NAME[:ARGS], e.g. sim:constant,w=5")
    return name, args


def seconds_arg(
    probe: str, kv: dict[str, str], key: str, default: float, lo: float, hi: float
) -> float:
    """A duration key of a probe spec (``interval=``, ``timeout=``), within [lo, hi] seconds."""
    if key not in kv:
        return default
    try:
        value = float(kv[key])
    except ValueError:
        raise SpecError(f"{probe}: {key}={kv[key]!r} is not a number of seconds") from None
    if not lo <= value <= hi:
        raise SpecError(f"{probe}: {key} must be within [{lo:g}, {hi:g}] seconds")
    return value


def parse_kv(text: str, allowed: set[str]) -> dict[str, str]:
    """Parse ``k=v,k=v``; unknown keys are an error naming the allowed ones."""
    out: dict[str, str] = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not value:
            raise SpecError(f"expected key=value, got {item!r}")
        if key not in allowed:
            raise SpecError(f"unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")
        out[key] = value
    return out


@dataclass(frozen=True)
class EdgeReading:
    """One energy counter read on demand at a window edge (``powerd.window``), not sampled.

    Why: a harness that wants only a phase's energy from a counter needs two reads, one per
    edge, not a sampler thread running in between (Zeus reads NVML's counter the same way).
    ``t_ns`` is the middle of the read on the host's UTC timeline and ``read_ns`` its length.
    ``energy_j`` is the counter's value, None when the read failed (the probe's ``problems()``
    says why; never 0). A counter updates only every ``update_period_s``, so the value read
    may be up to that old: ``powerd.window`` states this staleness in the uncertainty.
    ``power_w`` is the instantaneous power read beside it when the device has one (None:
    none, or its read failed), used to bound the energy in the stale part of the edge.
    """

    channel: str
    t_ns: int
    read_ns: int
    energy_j: float | None
    power_w: float | None
    update_period_s: float


@runtime_checkable
class EdgeProbe(Protocol):
    """A probe whose energy counters can be read on demand at a window's edges."""

    def read_edge(self, now_utc_ns: int, with_power: bool = True) -> list[EdgeReading]:
        """One read of every counter (and, ``with_power``, its power beside it); failures as
        None, with ``problems()`` saying why."""
        ...
