"""The NVML probe: per GPU an energy-counter channel and a power channel, read independently.

At open each selected GPU is surveyed once: what it supports decides which channels exist, and
what it does not is kept as a note (shown by ``powerd probes`` and reported once by
``problems()``). Then every energy counter is polled quickly for a bounded time to learn its real
update period; the probe then polls a little faster than twice per period, keeps only readings
where the counter changed (a repeat is stale, not a new sample), and stamps each change at the
estimated update instant (see ``readings.UpdateTracker``).

Each GPU is read on its own: NOT_SUPPORTED appearing at run time drops that channel, GPU_IS_LOST
stops that GPU (its channels then have a gap, which marks windows ``incomplete``), other errors
skip one sample; none of them stops the other GPUs. A driver reload restarts the counter from 0;
the raw value is passed on and the integrator bridges the drop as a counter reset.

Samples leave in Blocks every other read (a Block costs far more than a sample; the delay is one
poll interval). Times are monotonic ns internally, mapped to UTC at each read with the runner's
offset.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np

from powerd.block import Block
from powerd.channel import Accuracy, Channel, Instrument
from powerd.probes.base import EdgeReading
from powerd.probes.nvml.readings import (
    ARCH_NAMES,
    FI_DEV_POWER_INSTANT,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_NOT_SUPPORTED,
    UpdateTracker,
    energy_j,
    field_power,
    learn_period_ns,
    power_usage_averaged,
    power_w,
)
from powerd.probes.nvml.transport import Handle, Nvml, NvmlError

DEFAULT_PERIOD_NS = 100_000_000  # the counter's usual update period, if it cannot be learned
POLL_FRACTION = 0.48  # of the update period: just under half, so reads slide over the update grid
MIN_POLL_S = 0.005
MAX_POLL_S = 0.5
LEARN_CHANGES = 6  # changes per counter (5 intervals) that end learning early
LEARN_SWEEP_S = 0.0005
ACCURACY_FRAC = 0.05  # NVIDIA: ±5 % of the reading (documented for power; applied to both)
INSTANT_STAMP_S = 0.01  # the instant field refreshes at ~50 Hz: a reading may be that old
EMIT_EVERY_READS = 2  # samples leave in Blocks every other read (see NvmlProbe.read)
AVERAGE_STAMP_S = 0.5  # a 1 s trailing average describes the power about 0.5 s before the read

Clock = Callable[[], int]
Sleep = Callable[[float], None]
PowerSource = Literal["instant", "usage"]
T = TypeVar("T")


@dataclass
class Gpu:
    """What one GPU offers, found by ``survey``; ``notes`` say why a channel is missing."""

    index: int
    handle: Handle
    name: str = "?"
    uuid: str = "?"
    arch: int | None = None
    mig: bool = False
    energy: bool = False
    power: PowerSource | None = None
    usage_averaged: bool | None = None
    lost: bool = False
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for ``powerd probes``: what is read and what is not."""
        arch = ARCH_NAMES.get(self.arch, "unknown architecture") if self.arch else "?"
        got: list[str] = []
        if self.energy:
            got.append("energy counter")
        if self.power == "instant":
            got.append("instant power (field 186)")
        elif self.power == "usage":
            got.append(f"power from nvmlDeviceGetPowerUsage ({_usage_kind(self.usage_averaged)})")
        text = f"GPU {self.index} {self.name} [{arch}] {self.uuid}: " + (
            ", ".join(got) if got else "nothing readable"
        )
        if self.mig:
            text += ", MIG enabled (read at the parent GPU)"
        return text + "".join(f"; {n}" for n in self.notes)


def _usage_kind(averaged: bool | None) -> str:
    if averaged is None:
        return "possibly a 1 s average: architecture unknown"
    return "1 s average on Ampere and later" if averaged else "instantaneous on this GPU"


def _optional(call: Callable[[], T]) -> T | NvmlError:
    """The call's result, or its NVML error; GPU_IS_LOST is raised, never returned."""
    try:
        return call()
    except NvmlError as err:
        if err.code == NVML_ERROR_GPU_IS_LOST:
            raise
        return err


def survey(nvml: Nvml, index: int) -> Gpu:
    """Find what GPU ``index`` supports. A GPU that is lost is returned with ``lost`` set."""
    try:
        handle = nvml.handle(index)
    except NvmlError as err:
        if err.code != NVML_ERROR_GPU_IS_LOST:
            raise
        return Gpu(index, None, lost=True, notes=[f"GPU is lost ({err})"])
    gpu = Gpu(index, handle)
    try:
        _survey(nvml, gpu)
    except NvmlError as err:  # GPU_IS_LOST while surveying
        gpu.lost = True
        gpu.notes.append(f"GPU is lost ({err})")
    return gpu


def _survey(nvml: Nvml, gpu: Gpu) -> None:
    h = gpu.handle
    name = _optional(lambda: nvml.name(h))
    uuid = _optional(lambda: nvml.uuid(h))
    gpu.name = name if isinstance(name, str) else "?"
    gpu.uuid = uuid if isinstance(uuid, str) else f"nvml-index-{gpu.index}"
    if _optional(lambda: nvml.is_mig_device(h)) is True:
        gpu.notes.append("a MIG device handle: read its parent GPU instead")
        return
    arch = _optional(lambda: nvml.architecture(h))
    gpu.arch = arch if isinstance(arch, int) else None
    gpu.mig = _optional(lambda: nvml.mig_enabled(h)) is True
    mj = _optional(lambda: nvml.total_energy_mj(h))
    if isinstance(mj, int) and energy_j(mj) is not None:
        gpu.energy = True
    elif isinstance(mj, NvmlError) and mj.code == NVML_ERROR_NOT_SUPPORTED:
        gpu.notes.append(f"no energy counter ({mj}; Volta and later only)")
    else:
        gpu.notes.append(f"no energy counter ({mj if isinstance(mj, NvmlError) else 'N/A'})")
    raw = _optional(lambda: nvml.field(h, FI_DEV_POWER_INSTANT))
    if isinstance(raw, NvmlError):
        gpu.notes.append(f"no instant power ({raw})")
    else:
        fp = field_power(raw)
        if fp.nvml_return == NVML_ERROR_GPU_IS_LOST:
            raise NvmlError(fp.nvml_return, "nvmlDeviceGetFieldValues", fp.reason)
        if fp.power_w is not None:
            gpu.power = "instant"
            return
        gpu.notes.append(f"no instant power ({fp.reason})")
    mw = _optional(lambda: nvml.power_usage_mw(h))
    if isinstance(mw, int) and power_w(mw) is not None:
        gpu.power = "usage"
        gpu.usage_averaged = power_usage_averaged(gpu.arch, gpu.name)
    else:
        why = mw if isinstance(mw, NvmlError) else "nvmlDeviceGetPowerUsage: N/A"
        gpu.notes.append(f"no power reading ({why})")


@dataclass
class _State:
    """One GPU while the probe runs."""

    gpu: Gpu
    energy_id: str | None = None
    power_id: str | None = None
    tracker: UpdateTracker | None = None
    last_read_ns: int | None = None  # monotonic ns of the last counter read
    last_mj: int | None = None
    last_field_us: int | None = None  # the instant field's own timestamp at the last reading
    pending: list[tuple[int, float]] = field(default_factory=list)  # (mono ns, J) from learning
    period_ns: int = DEFAULT_PERIOD_NS
    # Samples read but not yet emitted (UTC ns): see NvmlProbe.read.
    energy_t_ns: list[int] = field(default_factory=list)
    energy_j: list[float] = field(default_factory=list)
    power_t_ns: list[int] = field(default_factory=list)
    power_w: list[float] = field(default_factory=list)
    power_source_t_ns: list[int] = field(default_factory=list)

    @property
    def ids(self) -> str:
        return ", ".join(c for c in (self.energy_id, self.power_id) if c)


class NvmlProbe:
    """Reads the selected GPUs' energy counters and power; see the module docstring."""

    def __init__(
        self,
        nvml: Nvml,
        gpus: list[Gpu],
        learn_s: float = 1.0,
        clock: Clock = time.monotonic_ns,
        sleep: Sleep = time.sleep,
    ) -> None:
        self._nvml = nvml
        self._clock = clock
        self._problems: list[str] = []
        self._states: list[_State] = []
        for gpu in gpus:
            st = _State(gpu)
            base = f"nvml:{gpu.index}"
            for note in gpu.notes:
                self._problems.append(f"{base}: {note}")
            if gpu.lost:
                continue
            st.energy_id = f"{base}:energy" if gpu.energy else None
            st.power_id = f"{base}:power" if gpu.power else None
            if st.ids:
                self._states.append(st)
        self.learn_report = self._learn(learn_s, sleep)
        periods = [st.period_ns for st in self._states if st.energy_id]
        period_s = (min(periods) if periods else DEFAULT_PERIOD_NS) / 1e9
        self.poll_interval_s = min(MAX_POLL_S, max(MIN_POLL_S, POLL_FRACTION * period_s))
        self._channels = [c for st in self._states for c in self._make_channels(st)]
        self._reads = 0
        self._no_temperature: set[int] = set()

    # -- open time -------------------------------------------------------------------------

    def _learn(self, max_s: float, sleep: Sleep) -> dict[int, int | None]:
        """Poll every counter fast for at most ``max_s``; set each GPU's period and tracker.

        Returns the learned period (ns) per GPU index, None where it could not be learned.
        """
        active = [st for st in self._states if st.energy_id]
        changes: dict[int, list[tuple[int, int, int]]] = {id(st): [] for st in active}
        deadline = self._clock() + int(max_s * 1e9)
        while active and max_s > 0:
            for st in active:
                before = (st.last_read_ns, st.last_mj)
                self._read_counter(st)
                t, mj = st.last_read_ns, st.last_mj
                if before[0] is not None and t is not None and mj is not None and mj != before[1]:
                    changes[id(st)].append((before[0], t, mj))
            active = [st for st in active if st.energy_id and not st.gpu.lost]
            if all(len(changes[id(st)]) >= LEARN_CHANGES for st in active):
                break
            if self._clock() >= deadline:
                break
            sleep(LEARN_SWEEP_S)
        learned: dict[int, int | None] = {}
        for st in self._states:
            if not st.energy_id:
                continue
            seen = changes.get(id(st), [])
            period = learn_period_ns([(lo, hi) for lo, hi, _ in seen])
            learned[st.gpu.index] = period
            if period is None:
                if max_s > 0:
                    self._problems.append(
                        f"{st.energy_id}: update period not learned ({len(seen)} changes in "
                        f"{max_s:g} s); assuming {DEFAULT_PERIOD_NS / 1e6:g} ms"
                    )
                period = DEFAULT_PERIOD_NS
            st.period_ns = period
            st.tracker = UpdateTracker(period)
            for lo, hi, mj in seen:
                value = energy_j(mj)
                stamp = st.tracker.observe(lo, hi)
                if value is not None:
                    st.pending.append((stamp, value))
        return learned

    def _make_channels(self, st: _State) -> list[Channel]:
        gpu = st.gpu
        where = f"{gpu.name} ({gpu.uuid})"
        inst = Instrument("NVIDIA", gpu.name, gpu.uuid, "", "nvml")  # the UUID is its identity
        if gpu.mig:
            where += ", MIG enabled: whole GPU, read at the parent device"
        out: list[Channel] = []
        if st.energy_id:
            out.append(
                Channel(
                    id=st.energy_id,
                    kind="energy",
                    source_class="telemetry",
                    nominal_period_s=st.period_ns / 1e9,
                    accuracy=Accuracy(reading_frac=ACCURACY_FRAC, resolution_j=0.001),
                    measures=gpu.uuid,
                    description=f"{where}: energy since driver load, "
                    f"nvmlDeviceGetTotalEnergyConsumption (mJ), updates every "
                    f"{st.period_ns / 1e6:.1f} ms (learned); stamped at the estimated update",
                    stamp_uncertainty_s=self.poll_interval_s / 2,
                    instrument=inst,
                )
            )
        if st.power_id:
            if gpu.power == "instant":
                what = "board power, field NVML_FI_DEV_POWER_INSTANT (instantaneous)"
                stamp_s = INSTANT_STAMP_S
            else:
                what = f"board power, nvmlDeviceGetPowerUsage: {_usage_kind(gpu.usage_averaged)}"
                stamp_s = 0.0 if gpu.usage_averaged is False else AVERAGE_STAMP_S
            out.append(
                Channel(
                    id=st.power_id,
                    kind="power",
                    source_class="telemetry",
                    nominal_period_s=self.poll_interval_s,
                    accuracy=Accuracy(reading_frac=ACCURACY_FRAC),
                    measures=gpu.uuid,
                    description=f"{where}: {what}",
                    stamp_uncertainty_s=stamp_s,
                    instrument=inst,
                )
            )
        return out

    # -- reading ---------------------------------------------------------------------------

    def _fail(self, st: _State, channel: str, err: NvmlError) -> None:
        """GPU_IS_LOST stops the GPU, NOT_SUPPORTED drops the channel, others skip a sample."""
        if err.code == NVML_ERROR_GPU_IS_LOST:
            st.gpu.lost = True
            self._problems.append(
                f"{st.ids}: GPU {st.gpu.index} ({st.gpu.uuid}) is lost ({err}); no longer read"
            )
        elif err.code == NVML_ERROR_NOT_SUPPORTED:
            self._problems.append(f"{channel}: {err}; no longer read")
            if channel == st.energy_id:
                st.energy_id = None
            else:
                st.power_id = None
        else:
            self._problems.append(f"{channel}: {err}")

    def _read_counter(self, st: _State) -> None:
        """One counter read into ``last_read_ns``/``last_mj`` (unchanged on failure)."""
        assert st.energy_id is not None
        try:
            t0 = self._clock()
            mj = self._nvml.total_energy_mj(st.gpu.handle)
            t1 = self._clock()
        except NvmlError as err:
            self._fail(st, st.energy_id, err)
            return
        st.last_read_ns, st.last_mj = (t0 + t1) // 2, mj

    def _sample_counter(self, st: _State, offset_ns: int) -> None:
        """Read the counter; hold a sample if it changed since the last read (a repeat is stale)."""
        assert st.energy_id is not None and st.tracker is not None
        if st.pending:  # changes seen while learning, now that UTC is known
            st.energy_t_ns += [t_mono + offset_ns for t_mono, _ in st.pending]
            st.energy_j += [v for _, v in st.pending]
            st.pending.clear()
        before_ns, before_mj = st.last_read_ns, st.last_mj
        self._read_counter(st)
        read_ns, mj = st.last_read_ns, st.last_mj
        if mj == before_mj or before_ns is None or read_ns is None or mj is None:
            return
        value = energy_j(mj)
        if value is None:
            self._problems.append(f"{st.energy_id}: counter N/A")
            return
        st.energy_t_ns.append(st.tracker.observe(before_ns, read_ns) + offset_ns)
        st.energy_j.append(value)

    def _sample_power(self, st: _State, offset_ns: int) -> None:
        """Read the power field (or power usage) and hold the sample."""
        assert st.power_id is not None
        h = st.gpu.handle
        source_t_ns = -1
        try:
            t0 = self._clock()
            if st.gpu.power == "instant":
                raw = self._nvml.field(h, FI_DEV_POWER_INSTANT)
                t1 = self._clock()
                if raw.timestamp_us == st.last_field_us:
                    return  # the driver has not refreshed the field: a stale repeat
                fp = field_power(raw)
                if fp.power_w is None:
                    raise NvmlError(fp.nvml_return, "nvmlDeviceGetFieldValues", fp.reason)
                st.last_field_us = raw.timestamp_us
                value_w: float | None = fp.power_w
                source_t_ns = fp.source_t_ns
            else:
                mw = self._nvml.power_usage_mw(h)
                t1 = self._clock()
                value_w = power_w(mw)
        except NvmlError as err:
            self._fail(st, st.power_id, err)
            return
        if value_w is None:
            self._problems.append(f"{st.power_id}: nvmlDeviceGetPowerUsage returned N/A")
            return
        st.power_t_ns.append((t0 + t1) // 2 + offset_ns)
        st.power_w.append(value_w)
        st.power_source_t_ns.append(source_t_ns)

    def _emit(self) -> list[Block]:
        """The held samples as one Block per channel."""
        blocks: list[Block] = []
        for st in self._states:
            if st.energy_t_ns and st.energy_id:
                blocks.append(Block.of(st.energy_id, st.energy_t_ns, st.energy_j))
            if st.power_t_ns and st.power_id:
                src = st.power_source_t_ns if st.gpu.power == "instant" else None
                blocks.append(
                    Block(
                        st.power_id,
                        np.array(st.power_t_ns, np.int64),
                        np.array(st.power_w, np.float64),
                        None if src is None else np.array(src, np.int64),
                    )
                )
            st.energy_t_ns, st.energy_j = [], []
            st.power_t_ns, st.power_w, st.power_source_t_ns = [], [], []
        return blocks

    def read_edge(self, now_utc_ns: int, with_power: bool = True) -> list[EdgeReading]:
        """Every GPU's energy counter, read once now, and (``with_power``) its instant power
        beside it (``powerd.window``'s counter path: no sample is held or emitted, the
        sampler's state is untouched). A failed read is ``energy_j``/``power_w`` None with the
        reason in ``problems()`` (GPU_IS_LOST and NOT_SUPPORTED stop that GPU or channel as in
        ``read``); a lost GPU's counter is reported as a failed read, never skipped.
        """
        offset_ns = now_utc_ns - self._clock()
        out: list[EdgeReading] = []
        for st in self._states:
            cid = st.energy_id or (f"nvml:{st.gpu.index}:energy" if st.gpu.energy else None)
            if cid is None:
                continue
            value: float | None = None
            t0 = t1 = self._clock()
            if st.gpu.lost:
                self._problems.append(f"{cid}: GPU {st.gpu.index} is lost; counter not read")
            elif not st.energy_id:
                self._problems.append(f"{cid}: counter no longer readable; not read")
            else:
                try:
                    t0 = self._clock()
                    mj = self._nvml.total_energy_mj(st.gpu.handle)
                    t1 = self._clock()
                    value = energy_j(mj)
                    if value is None:
                        self._problems.append(f"{cid}: counter N/A")
                except NvmlError as err:
                    self._fail(st, cid, err)
            power = self._edge_power(st) if value is not None and with_power else None
            period_s = st.period_ns / 1e9
            out.append(
                EdgeReading(cid, (t0 + t1) // 2 + offset_ns, t1 - t0, value, power, period_s)
            )
        return out

    def _edge_power(self, st: _State) -> float | None:
        """The instant power at an edge (None: no power channel, or its read failed)."""
        if not st.power_id or st.gpu.lost:
            return None
        try:
            if st.gpu.power == "instant":
                fp = field_power(self._nvml.field(st.gpu.handle, FI_DEV_POWER_INSTANT))
                if fp.power_w is None:
                    self._problems.append(f"{st.power_id}: {fp.reason}")
                return fp.power_w
            got = power_w(self._nvml.power_usage_mw(st.gpu.handle))
            if got is None:
                self._problems.append(f"{st.power_id}: nvmlDeviceGetPowerUsage returned N/A")
            return got
        except NvmlError as err:
            self._fail(st, st.power_id, err)
            return None

    def channels(self) -> list[Channel]:
        return list(self._channels)

    def read(self, now_utc_ns: int) -> list[Block]:
        """Read every GPU; return the samples of the last ``EMIT_EVERY_READS`` reads.

        Every read samples every GPU (the counter must be read twice per update to bracket it),
        but samples leave in Blocks only every other read: a Block costs far more than a sample
        (numpy arrays, timeline and store appends), and this halves that cost for a delay of
        one poll interval, within one update period of the counter.
        """
        offset_ns = now_utc_ns - self._clock()
        for st in self._states:
            if st.gpu.lost:
                continue
            if st.energy_id:
                self._sample_counter(st, offset_ns)
            if st.power_id and not st.gpu.lost:
                self._sample_power(st, offset_ns)
        self._reads += 1
        if self._reads % EMIT_EVERY_READS:
            return []
        return self._emit()

    def temperatures_c(self, now_utc_ns: int) -> dict[str, float]:
        """Each GPU's core temperature (°C), ``nvml:<i>:temperature`` (a ``TemperatureProbe``;
        not a channel). A GPU whose driver does not report one is left out from then on, said
        once in ``problems``; any other failure raises (the caller counts it)."""
        out: dict[str, float] = {}
        for st in self._states:
            if st.gpu.lost or st.gpu.index in self._no_temperature:
                continue
            try:
                out[f"nvml:{st.gpu.index}:temperature"] = float(
                    self._nvml.temperature_c(st.gpu.handle)
                )
            except NvmlError as err:
                if err.code != NVML_ERROR_NOT_SUPPORTED:
                    raise
                self._no_temperature.add(st.gpu.index)
                self._problems.append(f"nvml:{st.gpu.index}: no temperature: {err}")
        return out

    def problems(self) -> list[str]:
        out, self._problems = self._problems, []
        return out

    def close(self) -> None:
        with contextlib.suppress(NvmlError):
            self._nvml.close()
