"""Simulated INA226 logger: streams ``$PWR`` lines from a waveform, with a real device clock.

Line ``k`` closes its averaging window at host time ``start + k/rate``; its power is the
waveform's exact mean over that window, its current that power over the bus voltage, both
quantised as an INA226 logger prints them (bus in 1.25 mV steps, µA and µW integers). The
device clock ``t_us`` runs from the simulated boot, optionally offset (``t0_us``, to reach the
32-bit wrap within seconds) and skewed (``ppm``). A banner ``$PWRI`` line is printed at boot and
every ``banner_s`` seconds.

When the link was down (the host stopped reading for longer than ``STALL_S``, i.e. the
``PtySimulator`` was unplugged), the lines due meanwhile are printed into the void: with
``unplug=keep`` the logger kept running (``seq`` jumps), with ``unplug=reset`` it was powered by
the cable and reboots (``seq`` and ``t_us`` restart, banner again).

Options (``--option k=v``): ``rate`` (Hz, default 1000), ``vbus`` (V, default 5), ``shunt``
(Ω, default 0.1), ``ppm`` (device clock error, default 0), ``t0_us`` (device time at boot,
default 0), ``unplug`` (``keep``/``reset``, default keep), ``banner_s`` (default 10),
``error_seed`` (draw a per-run gain and offset error within the INA226 datasheet bounds the probe
assumes by default, see ``probes/sim/insterror.py``; default none: exact readings).
"""

from __future__ import annotations

from powerd.errors import SpecError
from powerd.probes.ina2xx.protocol import U32, format_line, pwr_line
from powerd.probes.serialsim import MeterModel
from powerd.probes.sim.insterror import ErredWaveform, InstrumentError, parse_seed
from powerd.probes.sim.waveform import Waveform

STALL_S = 1.0
BUS_LSB_MV = 1.25
OPTIONS = {"rate", "vbus", "shunt", "ppm", "t0_us", "unplug", "banner_s", "error_seed"}


def _opt(options: dict[str, str], key: str, default: float) -> float:
    try:
        return float(options.get(key, default))
    except ValueError:
        raise SpecError(f"ina2xx sim: {key}={options[key]!r} is not a number") from None


class InaLogger:
    """The logger's behaviour as a ``MeterModel`` (it streams; it ignores what the host sends)."""

    tick_s = 0.002

    def __init__(
        self,
        waveform: Waveform | ErredWaveform,
        rate_hz: float = 1000.0,
        vbus_v: float = 5.0,
        shunt_ohm: float = 0.1,
        ppm: float = 0.0,
        t0_us: int = 0,
        reset_on_unplug: bool = False,
        banner_s: float = 10.0,
    ) -> None:
        self.waveform = waveform
        self.period_ns = round(1e9 / rate_hz)
        self.vbus_v = vbus_v
        self.shunt_ohm = shunt_ohm
        self.ppm = ppm
        self.t0_us = t0_us
        self.reset_on_unplug = reset_on_unplug
        self.banner_ns = round(banner_s * 1e9)
        self.boot_ns: int | None = None
        self.next_k = 0
        self.seq = 0
        self.last_call_ns = 0
        self.next_banner_ns = 0
        self.lines_sent = 0
        self.lines_lost = 0

    def on_input(self, data: bytes, now_ns: int) -> bytes:
        return b""

    def banner(self) -> bytes:
        return format_line(
            f"PWRI,fw=powerd-sim-1,chip=INA226,shunt_uohm={round(self.shunt_ohm * 1e6)},"
            f"period_us={self.period_ns // 1000},win_us={self.period_ns // 1000}"
        ) + format_line("PWRI,mfr_id=5449,die_id=2260,serial=SIM-INA-0001")

    def _boot(self, now_ns: int) -> bytes:
        self.boot_ns = now_ns
        self.next_k = 1
        self.seq = 0
        self.next_banner_ns = now_ns + self.banner_ns
        return self.banner()

    def device_us(self, t_ns: int) -> int:
        assert self.boot_ns is not None
        elapsed_ns = (t_ns - self.boot_ns) * (1.0 + self.ppm * 1e-6)
        return (self.t0_us + int(elapsed_ns // 1000)) % U32

    def stream(self, now_ns: int) -> bytes:
        out = bytearray()
        if self.boot_ns is None:
            out += self._boot(now_ns)
        elif now_ns - self.last_call_ns > STALL_S * 1e9:
            if self.reset_on_unplug:
                out += self._boot(now_ns)
            else:
                # Printed into the void while nobody was listening.
                while self.boot_ns + self.next_k * self.period_ns < now_ns - 20_000_000:
                    self.next_k += 1
                    self.seq += 1
                    self.lines_lost += 1
        self.last_call_ns = now_ns
        assert self.boot_ns is not None
        while True:
            t_end = self.boot_ns + self.next_k * self.period_ns
            if t_end > now_ns:
                break
            power_w = self.waveform.energy_j(t_end - self.period_ns, t_end) / (self.period_ns / 1e9)
            bus_mv = round(self.vbus_v * 1000 / BUS_LSB_MV) * BUS_LSB_MV
            cur_ua = round(power_w / self.vbus_v * 1e6)
            pwr_uw = round(power_w * 1e6)
            out += pwr_line(self.seq, self.device_us(t_end), bus_mv, cur_ua, pwr_uw)
            self.seq = (self.seq + 1) % U32
            self.next_k += 1
            self.lines_sent += 1
        if now_ns >= self.next_banner_ns:
            self.next_banner_ns = now_ns + self.banner_ns
            out += self.banner()
        return bytes(out)


def datasheet_bounds(vbus_v: float, shunt_ohm: float) -> tuple[float, float]:
    """(gain, offset W) bounds of the probe's default accuracy for this bus and shunt."""
    from powerd.probes.ina2xx import accuracy, parse_spec

    acc = accuracy(parse_spec(f"sim,vbus={vbus_v!r},shunt={shunt_ohm!r}"))
    return acc.reading_frac, acc.offset_w


def make(model: str, waveform: Waveform, options: dict[str, str]) -> MeterModel:
    """Factory named in ``probes/simulators.py``."""
    unknown = set(options) - OPTIONS
    if unknown:
        known = ", ".join(sorted(OPTIONS))
        raise SpecError(f"ina2xx sim: unknown option {sorted(unknown)[0]!r}; known: {known}")
    unplug = options.get("unplug", "keep")
    if unplug not in ("keep", "reset"):
        raise SpecError("ina2xx sim: unplug must be keep or reset")
    rate = _opt(options, "rate", 1000.0)
    if not 0 < rate <= 20_000:
        raise SpecError("ina2xx sim: rate must be within (0, 20000] Hz")
    vbus_v = _opt(options, "vbus", 5.0)
    shunt_ohm = _opt(options, "shunt", 0.1)
    seed = parse_seed(options, "ina2xx sim")
    served: Waveform | ErredWaveform = waveform
    if seed is not None:
        served = InstrumentError.draw(seed, *datasheet_bounds(vbus_v, shunt_ohm)).wrap(waveform)
    return InaLogger(
        served,
        rate_hz=rate,
        vbus_v=vbus_v,
        shunt_ohm=shunt_ohm,
        ppm=_opt(options, "ppm", 0.0),
        t0_us=int(_opt(options, "t0_us", 0)) % U32,
        reset_on_unplug=unplug == "reset",
        banner_s=_opt(options, "banner_s", 10.0),
    )
