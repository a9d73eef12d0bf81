"""The ``deepx`` family: DeepX NPUs (DX-M1) have no power reading, so there is no probe to open.

DeepX's runtime (DX-RT: ``dxrt-cli --status``, Python ``dx_engine.DeviceStatus``) reports per
NPU the temperature, the NPU core voltage (mV) and clock, e.g.
``NPU0, DX_M1_4K @ 1000MHz, 850mV, 43'C``, and no power or current. A voltage without a current
is not a power, and powerd does not model power from clocks. This family exists so that
``powerd probes`` says so, on every host, and names what to use instead: an external meter on the
card's supply. ``available()`` is never ok; ``open()`` raises ``ProbeUnavailable`` with the same
reason.
"""

from __future__ import annotations

from powerd.errors import ProbeUnavailable
from powerd.probes.base import Availability, Probe
from powerd.probes.cliexec import find_tool

TOOL = "dxrt-cli"
EXTRA_PATHS = ("/usr/local/bin/dxrt-cli", "/usr/bin/dxrt-cli")
NO_SENSOR = (
    "DeepX runtime (dxrt-cli --status, dx_engine.DeviceStatus) exposes no power sensor, only "
    "temperature, NPU voltage and clock; measure a DX-M1 with an external meter on its supply: "
    "wt300 (Yokogawa WT300 on the host's AC input), ina2xx (an INA226/INA3221 on the card's "
    "3.3 V/12 V rail), scpi (a bench supply), or ipmi/redfish for the whole server"
)


def reason() -> str:
    exe = find_tool(TOOL, EXTRA_PATHS)
    found = f"{TOOL} found at {exe}, but the " if exe else f"{TOOL} not found; the "
    return found + NO_SENSOR


class DeepxFamily:
    name = "deepx"
    summary = "DeepX DX-M1: no power reading in the runtime (use an external meter)"

    def available(self) -> Availability:
        return Availability(False, reason())

    def open(self, args: str) -> Probe:
        raise ProbeUnavailable(f"probe 'deepx' is not usable here: {reason()}")


family = DeepxFamily()
