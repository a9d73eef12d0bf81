"""The meter simulators ``powerd sim <model>`` can serve, by name.

Each entry names a factory ``make(model, waveform, options) -> MeterModel`` in the meter's own probe
folder, so a simulator lives beside the parser it is the ground truth for.
"""

from __future__ import annotations

from importlib import import_module
from typing import Protocol

from powerd.errors import SpecError
from powerd.probes.serialsim import MeterModel
from powerd.probes.sim.waveform import Waveform

SIMULATORS: dict[str, tuple[str, str]] = {
    "wt310": ("powerd.probes.wt300.sim", "Yokogawa WT310/WT310E (RS-232 or USBTMC)"),
    "wt330": ("powerd.probes.wt300.sim", "Yokogawa WT330/WT330E, three elements"),
    "lpm01a": ("powerd.probes.lpm01a.sim", "ST X-NUCLEO-LPM01A PowerShield (ASCII and binary)"),
    "ina2xx": ("powerd.probes.ina2xx.sim", "INA226 logger, $PWR line format"),
    "rigol-dp800": ("powerd.probes.scpi.sim", "Rigol DP8xx bench supply (SCPI)"),
    "siglent-spd": (
        "powerd.probes.scpi.sim",
        "Siglent SPD bench supply (SCPI; silent on bad queries)",
    ),
    "keysight-n6700": ("powerd.probes.scpi.sim", "Keysight N67xx power system (SCPI)"),
    "hioki-pw3335": ("powerd.probes.scpi.sim", "HIOKI PW333x power meter (SCPI)"),
    "tek-pa1000": ("powerd.probes.scpi.sim", "Tektronix PA1000 power analyser"),
}


class Factory(Protocol):
    def __call__(self, model: str, waveform: Waveform, options: dict[str, str]) -> MeterModel: ...


def make(model: str, waveform: Waveform, options: dict[str, str]) -> MeterModel:
    """Build the simulator called ``model``; unknown names list the known ones."""
    if model not in SIMULATORS:
        raise SpecError(f"unknown simulator {model!r}; known: {', '.join(SIMULATORS)}")
    module = import_module(SIMULATORS[model][0])
    factory: Factory = module.make
    return factory(model, waveform, options)
