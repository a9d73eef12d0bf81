"""ST X-NUCLEO-LPM01A (PowerShield): powers a low-power target at 1.8–3.3 V and measures its
current, streamed over its USB virtual COM port at up to 100 kS/s.

One channel ``lpm01a:<id>``, a meter: with ``output=current`` a power channel (W = measured
current × the configured supply voltage), read as the binary stream up to 100 kHz or ASCII up to
5 kHz; with ``output=energy`` (the default) an energy counter (J) accumulated from the energy the
shield integrates over each sample period (ASCII, up to 5 kHz), which misses no burst between
samples. Samples sit on the shield's own sample grid, placed on the host timeline; the shield's
time is kept beside them. See README.md for the protocol, accuracy and the simulator.

Spec: ``lpm01a:<device>[,key=value...]``, keys:

- ``voltage`` supply in V, 1.8–3.3 (default 3.3; also ``3300m``);
- ``rate`` Hz: 100k 50k 20k 10k 5k 2k 1k 500 200 100 50 20 10 5 2 1 (default 1k);
- ``output`` ``energy`` (default) or ``current``; ``format`` ``auto`` (default: binary for
  current, ASCII for energy), ``bin`` or ``ascii``; ``funcmode`` ``optim`` (default) or ``high``;
- ``id`` channel instance (default 0), ``measures`` what it measures, ``baud`` (default 3686400),
  ``timeout`` reply timeout in s (default 2).

Examples: ``lpm01a:/dev/ttyACM0`` (energy, 1 kHz), ``lpm01a:/dev/ttyACM0,output=current,rate=100k``.
"""

from __future__ import annotations

from powerd.channel import Accuracy, Channel
from powerd.errors import ProbeUnavailable
from powerd.probes.base import Availability
from powerd.probes.lpm01a.config import LpmConfig, parse_spec, path_exists
from powerd.probes.lpm01a.probe import LpmProbe
from powerd.probes.serialport import candidate_ports as serial_ports
from powerd.probes.serialport import serial_availability

PORT_GLOBS = ("/dev/serial/by-id/*STMicroelectronics*", "/dev/ttyACM*")
# UM2243 §9 and §10: static and dynamic modes both measure current "with an accuracy of better
# than 2 %" / "in the range of 2 %"; the dynamic range is 100 nA-50 mA.
CURRENT_ACCURACY_FRAC = 0.02
# ASCII tokens carry 4 significant digits: half a unit in the last digit is at most 0.05 %.
ASCII_ROUNDING_FRAC = 0.0005
# Samples are placed by the least-delayed read; USB full-speed frames are 1 ms.
STAMP_UNCERTAINTY_S = 0.001


def candidate_ports() -> list[str]:
    return serial_ports(PORT_GLOBS)


def make_channel(cfg: LpmConfig) -> Channel:
    reading = CURRENT_ACCURACY_FRAC + (0.0 if cfg.binary else ASCII_ROUNDING_FRAC)
    what = (
        "energy counter from per-period energies"
        if cfg.output == "energy"
        else f"current × {cfg.voltage_v:g} V"
    )
    return Channel(
        id=cfg.channel_id,
        kind="energy" if cfg.output == "energy" else "power",
        source_class="meter",
        nominal_period_s=cfg.period_ns / 1e9,
        accuracy=Accuracy(reading_frac=reading),
        measures=cfg.measures,
        description=(
            f"X-NUCLEO-LPM01A at {cfg.url}: {what}, {cfg.rate_hz} Hz, "
            f"{'bin_hexa' if cfg.binary else 'ascii_dec'}, supply {cfg.voltage_v:g} V"
        ),
        stamp_uncertainty_s=STAMP_UNCERTAINTY_S,
        # Energy mode: each reading is the energy of a whole period (a counter, no sampling gap).
        averaging_s=cfg.period_ns / 1e9 if cfg.output == "energy" else 0.0,
    )


class LpmFamily:
    name = "lpm01a"
    summary = (
        "ST X-NUCLEO-LPM01A PowerShield, current x supply voltage at up to 100 kS/s or its "
        "on-board energy (lpm01a:/dev/ttyACM0[,output=energy|current,rate=1k,voltage=3.3])"
    )

    def available(self) -> Availability:
        return serial_availability(
            candidate_ports,
            "no USB serial port seen now (/dev/ttyACM*); give the PowerShield's path, "
            "e.g. lpm01a:/dev/ttyACM0",
        )

    def open(self, args: str) -> LpmProbe:
        cfg = parse_spec(args)
        if not path_exists(cfg.url):
            found = ", ".join(candidate_ports()) or "none"
            raise ProbeUnavailable(
                f"lpm01a: {cfg.url} does not exist (serial ports now: {found}); plug the "
                "PowerShield in (USB ST-LINK VCP, 0483:5740) or pass its path, "
                "e.g. lpm01a:/dev/ttyACM0"
            )
        return LpmProbe(cfg, make_channel(cfg))


family = LpmFamily()
