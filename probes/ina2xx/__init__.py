"""INA2xx serial loggers: a microcontroller streams INA226 readings as checksummed ``$PWR`` lines.

One channel ``ina2xx:<id>`` (power, W, a meter), sampled at the logger's full rate (1 kHz
typical), placed on the host timeline by the logger's own microsecond clock (so serial jitter does
not bend the time grid), with the device time kept beside each sample. Lines that fail their
checksum, are cut short or garbled are counted and never integrated; lines lost in transit show as
gaps in ``seq``, counted and never invented. The line format is specified in README.md.

Spec: ``ina2xx:<device>[,key=value...]``, keys:

- ``baud`` (default 115200), ``id`` (channel instance, default 0), ``measures`` (what it measures);
- ``rate`` (Hz, lines per second, default 1000) and ``window_us`` (averaging window of a line,
  default one period): used to judge gaps, to centre each sample on its window, and as the
  channel's ``averaging_s`` (each sample is the mean over its window: ``integrate`` then has no
  per-interval discretisation error inside a phase);
- ``power``: ``reported`` (the logger's ``pwr_uW``, default) or ``vi`` (bus voltage × current);
- accuracy inputs: ``shunt`` (Ω, default 0.1), ``shunt_tol`` (fraction, default 0.01), ``vbus``
  (V, typical bus voltage, default 5), ``imax`` (A, default full scale 81.92 mV / shunt).

Example: ``ina2xx:/dev/ttyACM0,rate=1000,shunt=0.01,vbus=12``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from powerd.channel import Accuracy, Channel
from powerd.errors import ProbeUnavailable, SpecError
from powerd.probes.base import Availability, parse_kv
from powerd.probes.ina2xx.probe import InaConfig, InaProbe
from powerd.probes.serialport import candidate_ports as serial_ports
from powerd.probes.serialport import serial_availability

DEFAULT_BAUD = 115200
DEFAULT_RATE_HZ = 1000.0
PORT_GLOBS = ("/dev/ttyACM*", "/dev/ttyUSB*", "/dev/serial/by-id/*")
KEYS = {
    "baud",
    "id",
    "measures",
    "rate",
    "window_us",
    "power",
    "shunt",
    "shunt_tol",
    "vbus",
    "imax",
}
INSTANCE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
URL_PREFIXES = ("socket://", "rfc2217://", "loop://", "spy://")

# TI INA226 datasheet (SBOS547), electrical characteristics, maximum values at 25 °C.
INA226_SHUNT_OFFSET_V = 10e-6
INA226_SHUNT_GAIN = 0.001
INA226_BUS_OFFSET_V = 7.5e-3
INA226_BUS_GAIN = 0.001
INA226_SHUNT_FULL_SCALE_V = 0.08192
# Host-side placement: one USB full-speed frame of unknown delay on the least-delayed line.
STAMP_UNCERTAINTY_S = 0.001


@dataclass(frozen=True)
class InaSpec:
    url: str
    baud: int
    instance: str
    measures: str
    rate_hz: float
    window_us: float
    power_from_vi: bool
    shunt_ohm: float
    shunt_tol: float
    vbus_v: float
    imax_a: float


def _positive(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SpecError(f"ina2xx: {key}={text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise SpecError(f"ina2xx: {key} must be a positive number, got {text!r}")
    return value


def parse_spec(args: str) -> InaSpec:
    """Parse ``<device>[,key=value...]``; every mistake is a one-line SpecError."""
    path, _, rest = args.partition(",")
    path = path.strip()
    if not path or "=" in path:
        raise SpecError(
            "ina2xx: give the logger's serial device first, e.g. ina2xx:/dev/ttyACM0,rate=1000"
        )
    kv = parse_kv(rest, KEYS)
    rate = _positive("rate", kv.get("rate", str(DEFAULT_RATE_HZ)))
    if rate > 100_000:
        raise SpecError("ina2xx: rate above 100000 lines/s cannot fit 115200-baud serial")
    window = _positive("window_us", kv.get("window_us", str(1e6 / rate)))
    power = kv.get("power", "reported")
    if power not in ("reported", "vi"):
        raise SpecError("ina2xx: power must be reported (pwr_uW) or vi (bus_mV × cur_uA)")
    shunt = _positive("shunt", kv.get("shunt", "0.1"))
    tol_text = kv.get("shunt_tol", "0.01")
    try:
        tol = float(tol_text)
    except ValueError:
        raise SpecError(f"ina2xx: shunt_tol={tol_text!r} is not a number") from None
    if not 0 <= tol < 0.5:
        raise SpecError("ina2xx: shunt_tol is a fraction, e.g. 0.01 for a 1 % resistor")
    baud_text = kv.get("baud", str(DEFAULT_BAUD))
    if not (baud_text.isascii() and baud_text.isdigit()) or int(baud_text) <= 0:
        raise SpecError(f"ina2xx: baud={baud_text!r} is not a positive integer")
    instance = kv.get("id", "0")
    if not INSTANCE_RE.match(instance):
        raise SpecError(f"ina2xx: id={instance!r}: use letters, digits and _.:-")
    return InaSpec(
        url=path,
        baud=int(baud_text),
        instance=instance,
        measures=kv.get("measures", ""),
        rate_hz=rate,
        window_us=window,
        power_from_vi=power == "vi",
        shunt_ohm=shunt,
        shunt_tol=tol,
        vbus_v=_positive("vbus", kv.get("vbus", "5")),
        imax_a=_positive("imax", kv.get("imax", str(INA226_SHUNT_FULL_SCALE_V / shunt))),
    )


def accuracy(spec: InaSpec) -> Accuracy:
    """INA226 power accuracy from its datasheet maxima plus the shunt tolerance.

    P = V·I: gain errors add (bus 0.1 % + shunt 0.1 % + shunt resistor tolerance); offsets enter
    as bus offset × current and shunt offset / R × bus voltage, taken at ``imax`` and ``vbus``.
    """
    offset_w = INA226_BUS_OFFSET_V * spec.imax_a + INA226_SHUNT_OFFSET_V / spec.shunt_ohm * (
        spec.vbus_v
    )
    return Accuracy(
        reading_frac=INA226_BUS_GAIN + INA226_SHUNT_GAIN + spec.shunt_tol, offset_w=offset_w
    )


def is_url(path: str) -> bool:
    return path.startswith(URL_PREFIXES)


def candidate_ports() -> list[str]:
    return serial_ports(PORT_GLOBS)


class InaFamily:
    name = "ina2xx"
    summary = (
        "INA226/INA219 serial logger, checksummed $PWR lines at up to kHz rates "
        "(ina2xx:/dev/ttyACM0[,rate=1000,power=reported|vi,shunt=0.1])"
    )

    def available(self) -> Availability:
        return serial_availability(
            candidate_ports,
            "no USB serial port seen now (/dev/ttyACM*, /dev/ttyUSB*); "
            "give the logger's path, e.g. ina2xx:/dev/ttyACM0",
        )

    def open(self, args: str) -> InaProbe:
        spec = parse_spec(args)
        if not is_url(spec.url) and not Path(spec.url).exists():
            found = ", ".join(candidate_ports()) or "none"
            raise ProbeUnavailable(
                f"ina2xx: {spec.url} does not exist (serial ports now: {found}); "
                "plug the logger in or pass its path, e.g. ina2xx:/dev/ttyACM0"
            )
        period_ns = round(1e9 / spec.rate_hz)
        cfg = InaConfig(
            url=spec.url,
            channel=f"ina2xx:{spec.instance}",
            baud=spec.baud,
            power_from_vi=spec.power_from_vi,
            window_ns=round(spec.window_us * 1000),
            period_ns=period_ns,
        )
        source = "bus V × current" if spec.power_from_vi else "pwr_uW"
        channel = Channel(
            id=cfg.channel,
            kind="power",
            source_class="meter",
            nominal_period_s=period_ns / 1e9,
            accuracy=accuracy(spec),
            measures=spec.measures,
            description=f"INA2xx logger at {spec.url} ({source})",
            stamp_uncertainty_s=STAMP_UNCERTAINTY_S,
            averaging_s=min(spec.window_us / 1e6, period_ns / 1e9),
        )
        return InaProbe(cfg, channel)


family = InaFamily()
