"""The protocol file of ``powerd verify``: a strict TOML schema (msgspec, as powerd/schema.py).

A protocol says how to measure (probes, warm-up, stability, idle baseline, trials) and what to
decide (claims). Unknown keys, wrong types and out-of-range values are one-line errors naming the
table and the key. A preset fills in the keys the file leaves out and sets minima the file may
not go below:

- ``mlperf``: trial windows of at least 60 s, and a trial whose relative 95 % energy uncertainty
  exceeds 1 % is flagged ``meter_uncertainty_high`` (MLPerf Power's meter accuracy bound).
- ``tiny``: trial windows of at least 10 s, 5 trials (at least), verdict from their median
  (MLPerf Tiny).

The unit count of a trial: what CMD wrote to ``$POWERD_COUNT_FILE``, else the summed ``count``
of the phases named ``count_phase`` that CMD marked (``powerd.client``) inside the trial, else
``count``.

Claims are strings ``"<figure> <op> <value> [gross|net]"``: figure one of ``j_per_unit``,
``mean_power_w``, ``units_per_j``, ``energy_j``; op ``<=`` or ``>=``; ``net`` subtracts the idle
baseline (so it needs ``[idle] seconds > 0`` or ``idle_power_w``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from powerd.errors import PowerdError
from powerd.schema import (
    MAX_S,
    Count,
    Name,
    Names,
    Positive,
    Seconds,
    SecondsOrOff,
    Table,
    convert,
    read_toml,
)

FIGURES = ("j_per_unit", "mean_power_w", "units_per_j", "energy_j")
CLAIM_RE = re.compile(
    r"^\s*(?P<figure>" + "|".join(FIGURES) + r")\s*(?P<op><=|>=)\s*"
    r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?:\s(?P<basis>gross|net))?\s*$"
)
ClaimText = Annotated[
    str,
    msgspec.Meta(
        description='a claim such as "j_per_unit <= 0.35" or "mean_power_w <= 25 net" '
        "(figure: " + ", ".join(FIGURES) + "; op: <= or >=; then gross (default) or net)",
        pattern=CLAIM_RE.pattern,
    ),
]
Percent = Annotated[
    float, msgspec.Meta(description="a percentage greater than 0, at most 100", gt=0, le=100)
]
Samples = Annotated[int, msgspec.Meta(description="an integer of at least 0", ge=0)]

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "mlperf": {"trials": {"min_duration_s": 60.0}, "": {"max_energy_uncertainty_pct": 1.0}},
    "tiny": {"trials": {"min_duration_s": 10.0, "n": 5, "aggregate": "median"}},
}


class Warmup(Table, frozen=True):
    """Warm-up: CMD runs in a loop as phase ``warmup`` for ``seconds``, or until the stability
    criterion holds (``until_stable``), at most ``max_s``."""

    seconds: SecondsOrOff = 0.0
    until_stable: bool = False
    max_s: Seconds = 600.0


class Stability(Table, frozen=True):
    """Settled: over the last ``window_s``, the mean power of each fifth of the window is within
    ±``power_pct`` % of the window's mean (and temperature within ±``temperature_c`` °C where a
    probe reports one). ``required``: a run that never showed it is flagged ``not_stable``."""

    window_s: Seconds = 60.0
    power_pct: Percent = 2.0
    temperature_c: Positive = 1.0
    required: bool = True


class Idle(Table, frozen=True):
    """The idle baseline, measured before warm-up and trials (0: none); or a known power."""

    seconds: SecondsOrOff = 0.0
    power_w: float | None = None


class Trials(Table, frozen=True):
    """N trials of CMD (phase ``trial``, trial 1..n) with a pause before each one after the first.
    A trial shorter than ``min_duration_s`` or with fewer than ``min_samples`` samples on a
    primary channel is flagged ``too_short`` and not used for a verdict."""

    n: Count = 3
    pause_s: SecondsOrOff = 0.0
    min_duration_s: SecondsOrOff = 0.0
    min_samples: Samples = 0
    aggregate: Literal["all", "median"] = "all"


class ProtocolFile(Table, frozen=True):
    """The whole file."""

    claims: Annotated[tuple[ClaimText, ...], msgspec.Meta(min_length=1)]
    preset: Literal["mlperf", "tiny"] | None = None
    probes: Names = ()
    unit: Name = "inference"
    count: Samples | None = None
    count_phase: Name | None = None
    max_energy_uncertainty_pct: Percent | None = None
    warmup: Warmup = msgspec.field(default_factory=Warmup)
    stability: Stability = msgspec.field(default_factory=Stability)
    idle: Idle = msgspec.field(default_factory=Idle)
    trials: Trials = msgspec.field(default_factory=Trials)


@dataclass(frozen=True)
class Claim:
    """One claim: ``figure op value`` on the gross or net (of idle) energy."""

    text: str
    figure: str
    op: str
    value: float
    basis: str


@dataclass(frozen=True)
class Protocol:
    """A checked protocol with its claims parsed."""

    file: ProtocolFile
    claims: tuple[Claim, ...]
    path: Path


def parse_claim(text: str) -> Claim:
    """``"j_per_unit <= 0.35 net"`` → Claim; the schema's pattern has already checked it."""
    m = CLAIM_RE.match(text)
    if m is None:  # pragma: no cover - the schema refused it before
        raise PowerdError(f"bad claim {text!r}")
    value = float(m.group("value"))
    if not math.isfinite(value):
        raise PowerdError(f"claim {text!r}: the value must be finite")
    basis = m.group("basis") or "gross"
    return Claim(" ".join(text.split()), m.group("figure"), m.group("op"), value, basis)


def _apply_preset(data: dict[str, Any], where: str) -> None:
    """Fill the preset's keys the file left out; refuse a value below the preset's minimum."""
    name = data.get("preset")
    if name not in PRESETS:
        return  # a bad preset name is the schema's error
    for table, keys in PRESETS[name].items():
        target = data if table == "" else data.setdefault(table, {})
        if not isinstance(target, dict):
            return  # the schema says what is wrong with it
        for key, floor in keys.items():
            given = target.get(key)
            if given is None:
                target[key] = floor
                continue
            if isinstance(floor, str) or isinstance(given, bool):
                if given != floor and isinstance(floor, str):
                    raise PowerdError(f"{where}[{table}] {key}: preset {name} needs {floor!r}")
                continue
            low = key != "max_energy_uncertainty_pct"
            if isinstance(given, int | float) and (given < floor if low else given > floor):
                bound = "at least" if low else "at most"
                place = f"[{table}] {key}" if table else key
                raise PowerdError(
                    f"{where}{place}: preset {name} needs {bound} {floor:g}, got {given}"
                )


def load_protocol(path: Path) -> Protocol:
    """Read, check and parse a protocol file; every problem is one ``PowerdError`` line."""
    try:
        data = read_toml(path)
    except PowerdError as err:
        raise PowerdError(str(err).replace("config", "protocol", 1)) from None
    where = f"protocol {path}: "
    _apply_preset(data, where)
    pf = convert(data, ProtocolFile, where, label=_label)
    claims = tuple(parse_claim(c) for c in pf.claims)
    if pf.warmup.until_stable and pf.warmup.max_s < pf.stability.window_s:
        raise PowerdError(
            f"{where}[warmup] max_s: {pf.warmup.max_s:g} s is shorter than "
            f"[stability] window_s ({pf.stability.window_s:g} s): stability could never be seen"
        )
    needs_net = [c.text for c in claims if c.basis == "net"]
    if needs_net and pf.idle.seconds <= 0 and pf.idle.power_w is None:
        raise PowerdError(
            f"{where}claim {needs_net[0]!r} is net of idle: set [idle] seconds > 0 or power_w"
        )
    if pf.warmup.max_s > MAX_S:  # pragma: no cover - the schema bounds it
        raise PowerdError(f"{where}[warmup] max_s too long")
    return Protocol(pf, claims, path)


def _label(steps: list[str | int]) -> str:
    """``[trials] n``, ``claims[1]``, ``preset``: where in the protocol file a value is."""
    if not steps:
        return "the file"
    head, rest = steps[0], steps[1:]
    if isinstance(head, str) and head in {"warmup", "stability", "idle", "trials"}:
        key = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in rest).lstrip(".")
        return f"[{head}] {key}" if key else f"[{head}]"
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps).lstrip(".")
