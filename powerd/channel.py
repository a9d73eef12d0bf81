"""Channel metadata: what one stream of samples measures and how far to trust it.

A channel is one quantity of one source, ``[<agent>/]<probe>:<instance>``. ``kind`` says whether
values are power in W or a cumulative energy counter in J. ``measures`` names the physical thing
measured (e.g. ``dut``, ``gpu0``): channels that share it are alternatives and are never summed.

Every channel belongs to one *device*, the unit a phase's result covers: an agent's channels
(``<agent>/...``) to that agent; the daemon's own channels to ``local``, unless their probe spec
assigns them (``wt300:/dev/ttyUSB0,device=edge-01``: a bench meter measuring an agent's board).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["power", "energy"]
SourceClass = Literal["meter", "telemetry", "estimate"]

CHANNEL_ID_RE = re.compile(r"^(?:[A-Za-z0-9_.-]+/)?[A-Za-z0-9_.-]+:[A-Za-z0-9_.:-]+$")
SOURCE_CLASS_RANK: dict[str, int] = {"meter": 0, "telemetry": 1, "estimate": 2}
LOCAL_DEVICE = "local"
DEVICE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


@dataclass(frozen=True)
class Accuracy:
    """Instrument accuracy as a 95 % bound.

    ±(reading_frac × reading + range_frac × range_w + offset_w).

    For an energy counter the same spec applies to the energy it reports; ``resolution_j`` is the
    counter's step (quantisation at each end of a window).
    """

    reading_frac: float = 0.0
    range_frac: float = 0.0
    range_w: float = 0.0
    offset_w: float = 0.0
    resolution_j: float = 0.0

    def power_bound_w(self, mean_power_w: float) -> float:
        """Bound on a power reading of ``mean_power_w``: what the spec allows at that level."""
        return (
            self.reading_frac * abs(mean_power_w) + self.range_frac * self.range_w + self.offset_w
        )

    def power_u95_w(self, mean_power_w: float) -> float:
        """95 % uncertainty of a power reading of ``mean_power_w``: each component of the spec
        (gain, range, offset) a 95 % bound of an error from its own source, so the components
        combine in quadrature (GUM), not linearly: the linear sum (``power_bound_w``) is the
        case of every component at its bound with one sign, and covers ~99 % of meters."""
        return math.sqrt(
            (self.reading_frac * mean_power_w) ** 2
            + (self.range_frac * self.range_w) ** 2
            + self.offset_w**2
        )


@dataclass(frozen=True)
class Instrument:
    """Who made the measurement: the instrument's identity as it reports it (``*IDN?`` and
    equivalents). Empty strings are fields the instrument does not report; ``source`` says
    where the identity came from (``*IDN?``, ``version``, ``nvml``, ``registers`` …)."""

    maker: str = ""
    model: str = ""
    serial: str = ""
    firmware: str = ""
    source: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_idn(cls, text: str) -> Instrument:
        """An IEEE 488.2 ``*IDN?`` reply, ``maker,model,serial,firmware[,more]`` (what follows
        the third comma stays in ``firmware``)."""
        parts = [p.strip() for p in text.strip().split(",", 3)]
        parts += [""] * (4 - len(parts))
        return cls(parts[0], parts[1], parts[2], parts[3], "*IDN?")


@dataclass(frozen=True)
class Calibration:
    """A calibration certificate from the config: ISO dates (``YYYY-MM-DD``) and its id.

    ``due`` is the date after which the calibration no longer holds (a phase ending after it is
    flagged ``calibration_due``)."""

    date: str = ""
    due: str = ""
    certificate: str = ""
    lab: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Channel:
    """Metadata of one channel; immutable, serialisable to JSON for the store.

    ``averaging_s`` is the length of the interval each power sample is the exact mean of (a
    WT300's update, an INA2xx's conversion time × averages), stamped at that interval's midpoint;
    0 means an instantaneous sampler. ``integrate`` uses it to drop the per-interval
    discretisation error the averaging already removed. Stores and agents that predate it read
    as 0 (the conservative, instantaneous treatment).
    """

    id: str
    kind: Kind
    source_class: SourceClass
    nominal_period_s: float
    accuracy: Accuracy = field(default_factory=Accuracy)
    measures: str = ""
    description: str = ""
    wrap_j: float | None = None
    stamp_uncertainty_s: float = 0.0
    device: str = ""
    instrument: Instrument | None = None
    calibration: Calibration | None = None
    averaging_s: float = 0.0

    def __post_init__(self) -> None:
        if not CHANNEL_ID_RE.match(self.id):
            raise ValueError(f"bad channel id {self.id!r}: expected [<agent>/]<probe>:<instance>")
        if self.kind not in ("power", "energy"):
            raise ValueError(f"bad channel kind {self.kind!r}")
        if self.source_class not in SOURCE_CLASS_RANK:
            raise ValueError(f"bad source class {self.source_class!r}")
        if not self.nominal_period_s > 0:
            raise ValueError("nominal_period_s must be > 0")
        if not self.averaging_s >= 0:
            raise ValueError("averaging_s must be >= 0")
        if self.device and not DEVICE_RE.match(self.device):
            raise ValueError(f"bad device id {self.device!r}: 1-128 characters of A-Za-z0-9_.:-")

    @property
    def device_id(self) -> str:
        """The device this channel belongs to: its agent, its assigned device, or ``local``."""
        agent, sep, _ = self.id.partition("/")
        if sep:
            return agent
        return self.device or LOCAL_DEVICE

    @property
    def unit(self) -> str:
        """SI unit of the values: W for power, J for an energy counter."""
        return "W" if self.kind == "power" else "J"

    @property
    def measured_thing(self) -> str:
        """What this channel measures; defaults to the channel id (unique, so never shared)."""
        return self.measures or self.id

    def to_json(self) -> dict[str, Any]:
        """JSON for the store and the agent wire; ``instrument`` and ``calibration`` only when
        set, so a channel without them reads the same as before they existed."""
        out = asdict(self)
        for key in ("instrument", "calibration"):
            if out[key] is None:
                del out[key]
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Channel:
        data = dict(obj)
        data["accuracy"] = Accuracy(**data.get("accuracy", {}))
        inst = data.get("instrument")
        data["instrument"] = None if inst is None else Instrument(**inst)
        cal = data.get("calibration")
        data["calibration"] = None if cal is None else Calibration(**cal)
        return cls(**data)
