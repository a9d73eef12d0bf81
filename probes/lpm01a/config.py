"""The ``lpm01a:`` spec, checked before any byte is sent, and the command sequence it implies.

Everything the PowerShield would refuse is refused here first with a one-line reason, so a typo
is a ``SpecError`` at start-up rather than an ``error`` reply in a reconnect loop. The values and
limits come from the firmware's own command help (``help`` on the shield, copied in MLPerf Tiny's
``power_manager_lpm.py``) and ST's user manual UM2243 (X-NUCLEO-LPM01A):

- ``volt`` 1800m–3300m; ``freq`` one of 100k 50k 20k 10k 5k 2k 1k 500 200 100 50 20 10 5 2 1;
- ``output energy`` integrates on the shield, at most 10 kHz;
- ``format ascii_dec`` streams without limit only up to 5 kHz (10 kHz is limited to 1 s
  acquisitions, 20 kHz to 500 ms); ``bin_hexa`` streams without limit up to 100 kHz;
- ``acqmode dyn`` measures 100 nA–50 mA at up to 100 kHz; ``stat`` gives one reading per
  acquisition for constant currents (2 nA–200 mA) and is not a stream, so it is not offered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from powerd.errors import SpecError
from powerd.probes.base import parse_kv

DEFAULT_BAUD = 3_686_400
RATES_HZ = (
    100_000, 50_000, 20_000, 10_000, 5_000, 2_000, 1_000, 500, 200, 100, 50, 20, 10, 5, 2, 1
)  # fmt: skip
ASCII_MAX_HZ = 5_000
ENERGY_MAX_HZ = 10_000
VOLT_MIN_MV, VOLT_MAX_MV = 1800, 3300
KEYS = {"voltage", "rate", "output", "format", "funcmode", "id", "measures", "baud", "timeout"}
INSTANCE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
URL_PREFIXES = ("socket://", "rfc2217://", "loop://", "spy://")
DEFAULT_REPLY_TIMEOUT_S = 2.0
# ``volt`` triggers a self-calibration on the shield (UM2243: "Calibration is done at PowerShield
# power-up and after each update of power supply voltage level"), so its ack may take longer.
VOLT_REPLY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class LpmConfig:
    """A checked ``lpm01a:`` spec."""

    url: str
    voltage_mv: int
    rate_hz: int
    output: str  # "current" (power channel, W) or "energy" (energy counter, J)
    binary: bool
    funcmode: str
    instance: str
    measures: str
    baud: int
    reply_timeout_s: float

    @property
    def voltage_v(self) -> float:
        return self.voltage_mv / 1000.0

    @property
    def period_ns(self) -> int:
        """Sample period; every allowed rate divides 1 s exactly."""
        return 1_000_000_000 // self.rate_hz

    @property
    def channel_id(self) -> str:
        return f"lpm01a:{self.instance}"

    @property
    def format_word(self) -> str:
        return "bin_hexa" if self.binary else "ascii_dec"


def rate_word(rate_hz: int) -> str:
    """``100000`` → ``100k``, ``500`` → ``500`` (the firmware's spelling)."""
    return f"{rate_hz // 1000}k" if rate_hz >= 1000 else str(rate_hz)


def parse_rate(text: str) -> int:
    t = text.strip().lower().removesuffix("hz")
    mult = 1000 if t.endswith("k") else 1
    t = t.removesuffix("k")
    try:
        value = float(t) * mult
    except ValueError:
        raise SpecError(f"lpm01a: rate={text!r} is not a frequency (e.g. 100k, 1k, 500)") from None
    if value not in RATES_HZ:
        allowed = " ".join(rate_word(r) for r in RATES_HZ)
        raise SpecError(f"lpm01a: rate={text!r} is not one the PowerShield offers: {allowed}")
    return int(value)


def parse_voltage_mv(text: str) -> int:
    t = text.strip().lower()
    try:
        mv = round(float(t[:-1])) if t.endswith("m") else round(float(t.removesuffix("v")) * 1000)
    except ValueError:
        raise SpecError(f"lpm01a: voltage={text!r} is not a voltage (e.g. 3.3 or 1800m)") from None
    if not VOLT_MIN_MV <= mv <= VOLT_MAX_MV:
        raise SpecError(
            f"lpm01a: voltage={text!r}: the PowerShield supplies 1.8 V to 3.3 V (1800m-3300m)"
        )
    return mv


def _choice(kv: dict[str, str], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = kv.get(key, default).lower()
    if value not in allowed:
        raise SpecError(f"lpm01a: {key}={kv[key]!r}: use one of {', '.join(allowed)}")
    return value


def parse_spec(args: str) -> LpmConfig:
    """Parse ``<device>[,key=value...]``; every mistake is a one-line SpecError."""
    path, _, rest = args.partition(",")
    path = path.strip()
    if not path or "=" in path:
        raise SpecError(
            "lpm01a: give the PowerShield's serial device first, "
            "e.g. lpm01a:/dev/ttyACM0,rate=100k,output=current"
        )
    kv = parse_kv(rest, KEYS)
    rate = parse_rate(kv.get("rate", "1k"))
    output = _choice(kv, "output", ("current", "energy"), "energy")
    fmt = _choice(kv, "format", ("auto", "bin", "ascii"), "auto")
    if fmt == "auto":
        fmt = "ascii" if output == "energy" else "bin"
    if output == "energy" and rate > ENERGY_MAX_HZ:
        raise SpecError("lpm01a: output=energy integrates on the shield at up to 10k (rate<=10k)")
    if output == "energy" and fmt == "bin":
        raise SpecError(
            "lpm01a: output=energy is read in format=ascii (its binary encoding is not "
            "documented); use output=current for the binary stream"
        )
    if fmt == "ascii" and rate > ASCII_MAX_HZ:
        raise SpecError(
            f"lpm01a: format=ascii streams without limit only up to 5k (ST: 10k is limited to 1 s "
            f"acquisitions); use format=bin for rate={rate_word(rate)}"
        )
    funcmode = _choice(kv, "funcmode", ("optim", "high"), "optim")
    if funcmode == "high" and output == "energy":
        raise SpecError("lpm01a: funcmode applies to output=current only")
    instance = kv.get("id", "0")
    if not INSTANCE_RE.match(instance):
        raise SpecError(f"lpm01a: id={instance!r}: use letters, digits and _.:-")
    baud_text = kv.get("baud", str(DEFAULT_BAUD))
    if not (baud_text.isascii() and baud_text.isdigit()) or int(baud_text) <= 0:
        raise SpecError(f"lpm01a: baud={baud_text!r} is not a positive integer")
    timeout_text = kv.get("timeout", str(DEFAULT_REPLY_TIMEOUT_S))
    try:
        timeout = float(timeout_text)
    except ValueError:
        raise SpecError(f"lpm01a: timeout={timeout_text!r} is not a number of seconds") from None
    if not 0.05 <= timeout <= 60:
        raise SpecError("lpm01a: timeout is the reply timeout in seconds, 0.05 to 60")
    return LpmConfig(
        url=path,
        voltage_mv=parse_voltage_mv(kv.get("voltage", "3.3")),
        rate_hz=rate,
        output=output,
        binary=fmt == "bin",
        funcmode=funcmode,
        instance=instance,
        measures=kv.get("measures", ""),
        baud=int(baud_text),
        reply_timeout_s=timeout,
    )


def setup_commands(cfg: LpmConfig) -> list[str]:
    """What the host sends after ``htc`` to configure an endless software-triggered acquisition.

    ``acqtime 0`` means infinite; ``funcmode`` applies to the current output only; ``pwr on``
    powers the target now, so it is already running when ``start`` comes.
    """
    cmds = [
        f"volt {cfg.voltage_mv}m",
        f"freq {rate_word(cfg.rate_hz)}",
        "acqtime 0",
        "acqmode dyn",
    ]
    if cfg.output == "current":
        cmds.append(f"funcmode {cfg.funcmode}")
    cmds += [f"output {cfg.output}", f"format {cfg.format_word}", "trigsrc sw", "pwr on"]
    return cmds


def is_url(path: str) -> bool:
    return path.startswith(URL_PREFIXES)


def path_exists(path: str) -> bool:
    return is_url(path) or Path(path).exists()
