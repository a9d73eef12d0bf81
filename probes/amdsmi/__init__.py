"""AMD Instinct (and other amdgpu) GPUs through AMD's ``amdsmi`` Python binding.

Channels per processor handle ``<i>`` (``amdsmi_get_processor_handles`` order, as ``amd-smi``
numbers GPUs):

- ``amdsmi:<i>:energy``: ``amdsmi_get_energy_count``, accumulator × resolution (µJ) in J, a
  cumulative counter; a reading whose GPU timestamp has not moved is stale and dropped;
- ``amdsmi:<i>:power``: ``amdsmi_get_power_info``, the first of ``current_socket_power``,
  ``average_socket_power``, ``socket_power``, ``power`` with a number at open (W).

Both measure the GPU (``measures`` is its UUID, else its BDF): alternatives, never summed; the
counter is preferred. "N/A" is never 0: it is a problem for that sample. One GPU failing never
stops the others; a call that says NOT_SUPPORTED drops that channel. An energy counter that
stays still for ``STALE_S`` while the GPU draws power is reported once (the MI100 counter is
known to freeze until a reboot, ROCm/amdsmi#38). The library is imported only by
``available``/``open``.

Spec (after ``amdsmi:``): GPU indices or UUIDs (none: every GPU) and ``interval=SECONDS``
(default 0.1), ``stale=SECONDS`` (how long a still counter is tolerated, default 5).
Examples: ``amdsmi``, ``amdsmi:0,3``, ``amdsmi:interval=0.05``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from powerd.block import Block
from powerd.channel import Accuracy, Channel
from powerd.errors import ProbeUnavailable, SpecError
from powerd.probes.amdsmi.readings import INSTANT_KEYS, choose_power_key, energy, power_w
from powerd.probes.amdsmi.transport import (
    STATUS_NOT_SUPPORTED,
    Amdsmi,
    AmdsmiError,
    BindingMissing,
)
from powerd.probes.base import Availability

DEFAULT_INTERVAL_S = 0.1
ASSUMED_FRAC = 0.05  # AMD publishes no accuracy for socket power or the energy counter
AVERAGE_STAMP_S = 0.5  # an averaged reading describes the power about half a window earlier
STALE_S = 5.0
STALE_MIN_W = 5.0


@dataclass
class Gpu:
    """What one processor offers, found at open; ``notes`` say why a channel is missing."""

    index: int
    handle: object
    uuid: str = "?"
    bdf: str = "?"
    name: str = "?"
    power_key: str | None = None
    energy: bool = False
    resolution_j: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def measures(self) -> str:
        if self.uuid not in ("?", ""):
            return f"gpu:{self.uuid}"
        return f"gpu:{self.bdf}" if self.bdf not in ("?", "") else f"amdsmi:{self.index}"

    def summary(self) -> str:
        got = []
        if self.energy:
            got.append("energy counter")
        if self.power_key:
            got.append(f"power ({self.power_key})")
        text = f"GPU {self.index} {self.name} {self.bdf}: " + (", ".join(got) or "nothing")
        return text + "".join(f"; {n}" for n in self.notes)


def survey(amd: Amdsmi, index: int, handle: object) -> Gpu:
    gpu = Gpu(index, handle)
    for attr, call in (("uuid", amd.uuid), ("bdf", amd.bdf), ("name", amd.name)):
        with contextlib.suppress(AmdsmiError):
            setattr(gpu, attr, call(handle))
    try:
        pick = choose_power_key(amd.power_info(handle))
    except AmdsmiError as err:
        gpu.notes.append(f"no power ({err})")
    else:
        gpu.power_key = pick.key
        if pick.key is None:
            gpu.notes.append(pick.reason)
    try:
        reading = energy(amd.energy_count(handle))
    except AmdsmiError as err:
        gpu.notes.append(f"no energy counter ({err})")
    else:
        gpu.energy = reading.energy_j is not None
        gpu.resolution_j = reading.resolution_j
        if not gpu.energy:
            gpu.notes.append(f"no energy counter ({reading.reason})")
    return gpu


@dataclass
class _State:
    gpu: Gpu
    energy_id: str | None
    power_id: str | None
    last_stamp: int | None = None
    last_j: float | None = None
    still_since: float | None = None
    stale_reported: bool = False
    last_w: float = 0.0


class AmdsmiProbe:
    def __init__(
        self, amd: Amdsmi, gpus: list[Gpu], interval_s: float, stale_s: float = STALE_S
    ) -> None:
        self._amd = amd
        self._stale_s = stale_s
        self.poll_interval_s = interval_s
        self._problems: list[str] = []
        self._states: list[_State] = []
        self._channels: list[Channel] = []
        for g in gpus:
            base = f"amdsmi:{g.index}"
            self._problems += [f"{base}: {n}" for n in g.notes]
            st = _State(
                g,
                f"{base}:energy" if g.energy else None,
                f"{base}:power" if g.power_key else None,
            )
            if st.energy_id or st.power_id:
                self._states.append(st)
                self._channels += self._make_channels(st)

    def _make_channels(self, st: _State) -> list[Channel]:
        g = st.gpu
        where = f"{g.name} ({g.bdf}, {g.uuid})"
        out = []
        if st.energy_id:
            out.append(
                Channel(
                    id=st.energy_id,
                    kind="energy",
                    source_class="telemetry",
                    nominal_period_s=self.poll_interval_s,
                    accuracy=Accuracy(reading_frac=ASSUMED_FRAC, resolution_j=g.resolution_j),
                    measures=g.measures,
                    description=f"{where}: amdsmi_get_energy_count accumulator × "
                    f"{g.resolution_j * 1e6:.3f} µJ (cumulative, socket)",
                    stamp_uncertainty_s=self.poll_interval_s / 2,
                )
            )
        if st.power_id and g.power_key:
            instant = g.power_key in INSTANT_KEYS
            out.append(
                Channel(
                    id=st.power_id,
                    kind="power",
                    source_class="telemetry",
                    nominal_period_s=self.poll_interval_s,
                    accuracy=Accuracy(reading_frac=ASSUMED_FRAC),
                    measures=g.measures,
                    description=f"{where}: amdsmi_get_power_info {g.power_key} (W, "
                    + ("instantaneous)" if instant else "averaged by the firmware)"),
                    stamp_uncertainty_s=0.0 if instant else AVERAGE_STAMP_S,
                )
            )
        return out

    def channels(self) -> list[Channel]:
        return list(self._channels)

    def _fail(self, st: _State, cid: str, err: AmdsmiError) -> None:
        if err.code == STATUS_NOT_SUPPORTED:
            self._problems.append(f"{cid}: {err}; no longer read")
            if cid == st.energy_id:
                st.energy_id = None
            else:
                st.power_id = None
        else:
            self._problems.append(f"{cid}: {err}")

    def read(self, now_utc_ns: int) -> list[Block]:
        offset = now_utc_ns - time.monotonic_ns()
        blocks: list[Block] = []
        for st in self._states:
            h = st.gpu.handle
            if st.power_id and st.gpu.power_key:
                try:
                    t0 = time.monotonic_ns()
                    info = self._amd.power_info(h)
                    t1 = time.monotonic_ns()
                except AmdsmiError as err:
                    self._fail(st, st.power_id, err)
                else:
                    w = power_w(info, st.gpu.power_key)
                    if w is None:
                        value = info.get(st.gpu.power_key)
                        self._problems.append(f"{st.power_id}: {st.gpu.power_key} is {value!r}")
                    else:
                        st.last_w = w
                        blocks.append(Block.of(st.power_id, [(t0 + t1) // 2 + offset], [w]))
            if st.energy_id:
                blocks += self._read_energy(st, st.energy_id, offset)
        return blocks

    def _read_energy(self, st: _State, cid: str, offset: int) -> list[Block]:
        try:
            t0 = time.monotonic_ns()
            count = self._amd.energy_count(st.gpu.handle)
            t1 = time.monotonic_ns()
        except AmdsmiError as err:
            self._fail(st, cid, err)
            return []
        reading = energy(count)
        if reading.energy_j is None:
            self._problems.append(f"{cid}: {reading.reason}")
            return []
        now = time.monotonic()
        same_stamp = reading.timestamp_ns is not None and reading.timestamp_ns == st.last_stamp
        if reading.energy_j == st.last_j or same_stamp:
            if st.still_since is None:
                st.still_since = now
            still = now - st.still_since
            if still > self._stale_s and st.last_w > STALE_MIN_W and not st.stale_reported:
                st.stale_reported = True
                self._problems.append(
                    f"{cid}: counter has not moved for {still:.0f} s while the GPU draws "
                    f"{st.last_w:.0f} W (frozen counter: known on MI100, ROCm/amdsmi#38; a "
                    "reboot restores it); the power channel is still read"
                )
            return []  # a repeat is stale, not a new sample
        st.still_since = None
        st.last_stamp, st.last_j = reading.timestamp_ns, reading.energy_j
        return [Block.of(cid, [(t0 + t1) // 2 + offset], [reading.energy_j])]

    def problems(self) -> list[str]:
        out, self._problems = self._problems, []
        return out

    def close(self) -> None:
        with contextlib.suppress(AmdsmiError):
            self._amd.close()


@dataclass(frozen=True)
class AmdsmiSpec:
    gpus: tuple[int | str, ...] = ()
    interval_s: float = DEFAULT_INTERVAL_S
    stale_s: float = STALE_S


def parse_spec(args: str) -> AmdsmiSpec:
    """GPU indices or UUIDs, ``interval=S`` and ``stale=S``; mistakes are one-line errors."""
    sel: list[int | str] = []
    secs = {"interval": DEFAULT_INTERVAL_S, "stale": STALE_S}
    bounds = {"interval": (0.01, 60.0), "stale": (0.5, 3600.0)}
    for item in filter(None, (x.strip() for x in args.split(","))):
        key, eq, value = item.partition("=")
        if eq:
            if key not in secs:
                raise SpecError(
                    f"amdsmi: unknown key {key!r}; use GPU indices or UUIDs, interval=S, stale=S"
                )
            try:
                secs[key] = float(value)
            except ValueError:
                raise SpecError(f"amdsmi: {key}={value!r} is not seconds") from None
            lo, hi = bounds[key]
            if not lo <= secs[key] <= hi:
                raise SpecError(f"amdsmi: {key} must be within [{lo:g}, {hi:g}] seconds")
        else:
            sel.append(int(item) if (item.isascii() and item.isdigit()) else item)
    if len(set(sel)) != len(sel):
        raise SpecError("amdsmi: a GPU is selected twice")
    return AmdsmiSpec(tuple(sel), secs["interval"], secs["stale"])


class AmdsmiFamily:
    name = "amdsmi"
    summary = "AMD GPU socket power and energy counter through the amdsmi binding (ROCm)"

    def available(self) -> Availability:
        try:
            amd = Amdsmi()
        except BindingMissing as err:
            return Availability(False, str(err))
        except AmdsmiError as err:
            return Availability(False, f"amdsmi_init failed: {err}", broken=True)
        try:
            gpus = [survey(amd, i, h) for i, h in enumerate(amd.handles())]
            version = amd.version()
        except AmdsmiError as err:
            return Availability(False, f"amdsmi: {err}", broken=True)
        finally:
            with contextlib.suppress(AmdsmiError):
                amd.close()
        if not gpus:
            return Availability(False, f"no AMD GPU found (amdsmi {version})")
        usable = any(g.power_key or g.energy for g in gpus)
        found = f"amdsmi {version}, {len(gpus)} GPU(s): " + " | ".join(g.summary() for g in gpus)
        return Availability(usable, found if usable else "no readable GPU: " + found)

    def open(self, args: str) -> AmdsmiProbe:
        spec = parse_spec(args)
        sel = spec.gpus
        try:
            amd = Amdsmi()
        except (BindingMissing, AmdsmiError) as err:
            raise ProbeUnavailable(f"probe 'amdsmi': {err}") from None
        try:
            gpus = [survey(amd, i, h) for i, h in enumerate(amd.handles())]
            chosen = gpus
            if sel:
                by = {g.index: g for g in gpus} | {g.uuid: g for g in gpus}
                missing = [str(s) for s in sel if s not in by]
                if missing:
                    have = ", ".join(f"{g.index} ({g.uuid})" for g in gpus) or "none"
                    raise SpecError(f"amdsmi: no GPU {', '.join(missing)}; have {have}")
                chosen = [by[s] for s in sel]
            probe = AmdsmiProbe(amd, chosen, spec.interval_s, spec.stale_s)
        except AmdsmiError as err:
            with contextlib.suppress(AmdsmiError):
                amd.close()
            raise ProbeUnavailable(f"probe 'amdsmi': {err}") from None
        except BaseException:
            with contextlib.suppress(AmdsmiError):
                amd.close()
            raise
        if not probe.channels():
            probe.close()
            found = " | ".join(g.summary() for g in chosen) or "no GPU"
            raise ProbeUnavailable(f"probe 'amdsmi': no readable channel: {found}")
        return probe


family = AmdsmiFamily()
