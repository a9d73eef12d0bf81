"""The polling transport shared by the sysfs probes (hwmon, rapl, jetson).

A probe is a list of :class:`Source`: one channel, the sysfs files it needs, and a pure converter
from their text to an SI value (``probes/hwmon/units.py``). Each ``read`` reads every source's
files through ``powerd.probes.sysfs`` (the one configurable root) and stamps all of them with the
read time. One source failing (file gone, permission, "N/A", garbage) becomes that channel's
problem; the others are still returned.

A power sensor that refreshes slower than we poll returns the same value several times. A repeat
younger than the sensor's refresh period (``Source.hold_s``) is stale and dropped rather than
integrated as a fresh sample; a repeat after a full period is kept (the power really is steady).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from powerd.block import Block
from powerd.channel import Channel
from powerd.errors import SpecError
from powerd.probes import sysfs

Convert = Callable[[Sequence[str]], float]


@dataclass(frozen=True)
class Source:
    """One channel: the files read together and the pure function of their text to W or J."""

    channel: Channel
    paths: tuple[Path, ...]
    convert: Convert
    hold_s: float = 0.0


def describe_oserror(path: Path, err: OSError) -> str:
    """``cannot read <file>: <reason>`` for an OSError raised reading ``path``."""
    reason = err.strerror or type(err).__name__
    return f"cannot read {path}: {reason}"


class SysfsProbe:
    """Polls its sources every ``poll_interval_s``; one sample per source and read."""

    def __init__(
        self,
        sources: Sequence[Source],
        poll_interval_s: float,
        problems: Iterable[str] = (),
        permission_hint: str = "",
    ) -> None:
        self.sources = list(sources)
        self.poll_interval_s = poll_interval_s
        self.permission_hint = permission_hint
        self._problems = list(problems)
        self._last: dict[str, tuple[int, float]] = {}

    def channels(self) -> list[Channel]:
        return [s.channel for s in self.sources]

    def _read_one(self, src: Source) -> float | None:
        cid = src.channel.id
        texts: list[str] = []
        for p in src.paths:
            try:
                texts.append(sysfs.read_text(p))
            except OSError as err:
                msg = f"{cid}: {describe_oserror(p, err)}"
                if isinstance(err, PermissionError) and self.permission_hint:
                    msg += f" ({self.permission_hint})"
                self._problems.append(msg)
                return None
        try:
            return src.convert(texts)
        except ValueError as err:
            where = ", ".join(str(p) for p in src.paths)
            self._problems.append(f"{cid}: {err} in {where}")
            return None

    def read(self, now_utc_ns: int) -> list[Block]:
        blocks: list[Block] = []
        for src in self.sources:
            value = self._read_one(src)
            if value is None:
                continue
            cid = src.channel.id
            last = self._last.get(cid)
            if (
                last is not None
                and src.hold_s > 0
                and value == last[1]
                and now_utc_ns - last[0] < src.hold_s * 1e9
            ):
                continue  # a stale repeat within the sensor's refresh period
            if last is not None and now_utc_ns <= last[0]:
                continue  # never a sample at or before the previous one
            self._last[cid] = (now_utc_ns, value)
            blocks.append(
                Block(cid, np.array([now_utc_ns], np.int64), np.array([value], np.float64))
            )
        return blocks

    def problems(self) -> list[str]:
        out, self._problems = self._problems, []
        return out

    def close(self) -> None:
        return None


def interval_arg(value: str | None, default_s: float, lo_s: float, hi_s: float) -> float:
    """A spec's ``interval=SECONDS``, checked against [lo_s, hi_s]; SpecError says the range."""
    if value is None:
        return default_s
    try:
        s = float(value)
    except ValueError:
        raise SpecError(f"interval={value!r}: expected seconds, e.g. interval=0.1") from None
    if not lo_s <= s <= hi_s:
        raise SpecError(f"interval={value}: must be between {lo_s:g} and {hi_s:g} s")
    return s


def bool_arg(key: str, value: str | None, default: bool) -> bool:
    """A spec's ``key=yes|no`` (also 1/0, true/false, on/off)."""
    if value is None:
        return default
    v = value.lower()
    if v in ("1", "yes", "true", "on"):
        return True
    if v in ("0", "no", "false", "off"):
        return False
    raise SpecError(f"{key}={value!r}: expected yes or no")
