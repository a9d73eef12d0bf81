"""The simulated source ``sim``: deterministic waveforms sampled on an exact time grid.

Sample k is at ``k × step_ns`` UTC (step = 1/rate), so a run's samples, and the true energy of any
window, follow from the spec alone. See ``waveform.py`` for the spec. With ``temp=`` the probe
also reports a device temperature (``thermal.py``; a ``TemperatureProbe``), from its first read.
"""

from __future__ import annotations

import numpy as np

from powerd.block import Block
from powerd.calibration import SIMULATED
from powerd.channel import Accuracy, Channel, Instrument
from powerd.probes.base import Availability
from powerd.probes.sim.waveform import SimSpec, gaussian_noise, parse_spec

POLL_MIN_S = 0.01
POLL_MAX_S = 0.1


class SimProbe:
    """Emits every grid sample up to the read time; never misses one, never repeats one."""

    def __init__(self, spec: SimSpec) -> None:
        self.spec = spec
        # every grid sample is generated exactly whenever it is read, so one read per sample
        # period (at most 100 per second, at least 10) loses nothing and costs least
        self.poll_interval_s = min(POLL_MAX_S, max(POLL_MIN_S, 1.0 / spec.rate_hz))
        self._next_k: int | None = None
        self._started_ns: int | None = None  # the thermal model's t = 0: the first read
        self.channel = Channel(
            id=f"sim:{spec.instance}",
            kind="energy" if spec.kind == "energy" else "power",
            source_class=spec.source_class,  # type: ignore[arg-type]
            nominal_period_s=spec.step_ns / 1e9,
            accuracy=Accuracy(reading_frac=spec.accuracy_frac),
            measures=spec.measures,
            description=f"simulated {spec.waveform.shape} waveform",
            wrap_j=spec.wrap_j,
            # not an instrument: no calibration is asked of it (powerd.calibration)
            instrument=Instrument("powerd", "sim", "", "", SIMULATED),
        )

    def channels(self) -> list[Channel]:
        return [self.channel]

    def samples(self, k: np.ndarray) -> Block:
        """The samples with grid indices ``k`` (pure: used by read() and by tests)."""
        t = k.astype(np.int64) * np.int64(self.spec.step_ns)
        wf = self.spec.waveform
        if self.spec.kind == "energy":
            v = wf.cumulative_j(t)
            if self.spec.wrap_j is not None:
                v = np.mod(v, self.spec.wrap_j)
        else:
            v = wf.power_w(t)
            if self.spec.noise_w:
                v = v + self.spec.noise_w * gaussian_noise(k, self.spec.seed)
        return Block(self.channel.id, t, v)

    def temperatures_c(self, now_utc_ns: int) -> dict[str, float]:
        """The device temperature with ``temp=`` in the spec (``thermal.py``), else none."""
        model = self.spec.thermal
        if model is None:
            return {}
        if self._started_ns is None:
            self._started_ns = now_utc_ns
        elapsed_s = (now_utc_ns - self._started_ns) / 1e9
        return {f"{self.channel.id}:temperature": model.at(elapsed_s)}

    def read(self, now_utc_ns: int) -> list[Block]:
        if self._started_ns is None:
            self._started_ns = now_utc_ns
        last_k = now_utc_ns // self.spec.step_ns
        first_k = last_k if self._next_k is None else self._next_k
        if last_k < first_k:
            return []
        self._next_k = last_k + 1
        return [self.samples(np.arange(first_k, last_k + 1, dtype=np.int64))]

    def problems(self) -> list[str]:
        return []

    def close(self) -> None:
        return None


class SimFamily:
    name = "sim"
    summary = "simulated waveforms with exactly known energy (ground truth, no hardware)"

    def available(self) -> Availability:
        return Availability(True, "always available (software)")

    def open(self, args: str) -> SimProbe:
        return SimProbe(parse_spec(args))

    def check_spec(self, args: str) -> None:
        """The spec's keys and values, without opening anything (``powerd run --check-config``)."""
        parse_spec(args)


family = SimFamily()
