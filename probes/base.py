"""The probe interface every source implements, and the spec syntax ``<name>[:<args>]``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from powerd.block import Block
from powerd.channel import Channel
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


class StreamingProbe(Probe, Protocol):
    """A probe with its own reader thread (serial meters, streaming CLIs). The sampler calls
    ``start(clock)`` once before polling; ``clock()`` gives the host's UTC ns for stamping."""

    def start(self, clock: Callable[[], int]) -> None: ...


class ProbeFamily(Protocol):
    """What the entry point names: a description, a host check, and a constructor from a spec."""

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
