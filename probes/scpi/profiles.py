"""Per-model SCPI profiles: the data that tells one generic session how to read each instrument.

A profile is data, not code: which queries to send (with ``{ch}`` for the channel), how to split
the reply, what each field is, how strictly a number must look, what the instrument answers when
it has no value, how to learn that a new reading is ready, which query returns the error queue,
how often the instrument itself refreshes its reading, and its accuracy. Sources are cited per
field in README.md; ``unverified`` lists what could not be checked against a vendor document.

Accuracy inputs: supplies give readback accuracy of voltage and current, ±(gain × reading +
offset), combined for P = V·I as ``(v_gain + i_gain)·P + v_offset·I + i_offset·V`` (taken at the
spec's ``amps`` and ``volts``); analysers give power accuracy ±(gain × reading + range_frac ×
range), with range = ``vrange × arange`` from the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Check = Literal["none", "vi", "bound"]
Stamping = Literal["held", "acquire", "ready"]

# A plain decimal, as supplies print readings ("2.0345", "0.000").
DECIMAL_RE = r"^[+-]?\d+\.\d+$"
# Keysight N67xx responses: "+n.nnnnnnE+nn".
KEYSIGHT_RE = r"^[+-]\d\.\d{6}E[+-]\d{2}$"
# HIOKI PW3335 measured values: NR3, always 10 characters, "±ddddddE±e" (6 chars incl. point).
HIOKI_RE = r"^[+-][\d.]{6}E[+-]\d$"
# Any SCPI number (NR1/NR2/NR3).
NUMBER_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([Ee][+-]?\d+)?$"


@dataclass(frozen=True)
class Mode:
    """One way of getting power: queries sent in order, the field names of all their replies
    (``v``, ``i``, ``p``, in order), and the consistency check between fields of one reply."""

    queries: tuple[str, ...]
    fields: tuple[str, ...]
    check: Check = "none"
    same_acquisition: bool = True  # all fields describe one instant (else V and I are apart)


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    idn_re: str
    modes: dict[str, Mode]
    default_mode: str
    error_query: str
    stamping: Stamping
    update_s: float  # the instrument's own refresh interval (held/ready), or poll default
    channels: int  # 0: single-input instrument, no channel in the queries
    terminator: bytes = b"\n"
    separator: str = ","
    alt_separators: str = ""
    number_re: str = NUMBER_RE
    sentinel_abs: float | None = None  # |value| at or above this is "no data", never a reading
    setup: tuple[str, ...] = ()
    setup_gap_s: float = 0.0
    ready_query: str = ""
    ready_mask: int = 0
    acq_s: float = 0.0  # on-demand acquisition time (stamping "acquire")
    baud: int = 9600
    default_rate_hz: float = 0.0  # 0: one poll per update_s
    kind: Literal["supply", "analyser"] = "supply"
    v_gain: float = 0.0
    v_offset: float = 0.0
    i_gain: float = 0.0
    i_offset: float = 0.0
    p_gain: float = 0.0
    p_range_frac: float = 0.0
    default_volts: float = 5.0
    default_amps: float = 1.0
    default_vrange: float = 15.0
    default_arange: float = 1.0
    unverified: tuple[str, ...] = field(default_factory=tuple)

    @property
    def rate_hz(self) -> float:
        return self.default_rate_hz or 1.0 / self.update_s


PROFILES: dict[str, Profile] = {
    "rigol-dp800": Profile(
        name="rigol-dp800",
        title="Rigol DP8xx programmable DC supply (DP811A/DP821A/DP831A/DP832)",
        idn_re=r"^RIGOL TECHNOLOGIES,DP8\d\d",
        modes={
            "power": Mode((":MEASure:POWEr? CH{ch}",), ("p",)),
            "all": Mode((":MEASure:ALL? CH{ch}",), ("v", "i", "p"), check="vi"),
        },
        default_mode="power",
        error_query=":SYSTem:ERRor?",
        stamping="held",
        update_s=1 / 3,
        channels=3,
        number_re=DECIMAL_RE,
        v_gain=0.0005,
        v_offset=0.010,
        i_gain=0.0015,
        i_offset=0.005,
        default_volts=5.0,
        default_amps=3.0,
        unverified=(
            ":MEASure:ALL? (mode=all) returning V,I,P is from third-party code, not the guide",
            "the readback refresh of ~3 Hz is a user report (lxi-tools wiki), not a spec",
        ),
    ),
    "siglent-spd": Profile(
        name="siglent-spd",
        title="Siglent SPD3303X/X-E (and SPD1000X) programmable DC supply",
        idn_re=r"^Siglent Technologies,SPD\w+",
        modes={
            "power": Mode(("MEASure:POWEr? CH{ch}",), ("p",)),
            "vi": Mode(
                ("MEASure:VOLTage? CH{ch}", "MEASure:CURRent? CH{ch}"),
                ("v", "i"),
                same_acquisition=False,
            ),
        },
        default_mode="power",
        error_query="SYSTem:ERRor?",
        stamping="held",
        update_s=0.5,
        channels=2,
        number_re=DECIMAL_RE,
        v_gain=0.0003,
        v_offset=0.010,
        i_gain=0.003,
        i_offset=0.010,
        default_volts=5.0,
        default_amps=3.2,
        unverified=(
            "readback accuracy (0.03 % + 10 mV, 0.3 % + 10 mA) is not from a Siglent datasheet",
            "the readback refresh interval (0.5 s assumed) is not documented",
            "the exact text of SYSTem:ERRor? for -113 is not documented",
        ),
    ),
    "keysight-n6700": Profile(
        name="keysight-n6700",
        title="Keysight (Agilent) N6700 modular power system / N6705 DC power analyser",
        idn_re=r"^(Agilent|Keysight) Technologies,N67\d\d",
        modes={
            "vi": Mode(
                ("MEAS:VOLT? (@{ch})", "MEAS:CURR? (@{ch})"), ("v", "i"), same_acquisition=False
            ),
            "fetch": Mode(("MEAS:VOLT? (@{ch})", "FETC:CURR? (@{ch})"), ("v", "i")),
            "power": Mode(("MEAS:POW? (@{ch})",), ("p",)),
        },
        default_mode="vi",
        error_query="SYST:ERR?",
        stamping="acquire",
        update_s=0.2,
        channels=4,
        number_re=KEYSIGHT_RE,
        acq_s=1024 * 20.48e-6,
        default_rate_hz=5.0,
        v_gain=0.0005,
        v_offset=0.010,
        i_gain=0.001,
        i_offset=0.005,
        default_volts=5.0,
        default_amps=3.0,
        unverified=(
            "accuracy is a placeholder for a basic N673xB-class module: set volts/amps and "
            "check your module's specification",
            "MEAS:POW? and FETC:CURR? need a module with simultaneous V/I measurement",
        ),
    ),
    "hioki-pw3335": Profile(
        name="hioki-pw3335",
        title="HIOKI PW3335 (PW333x) single-phase power meter",
        idn_re=r"^HIOKI,PW33\d\d",
        modes={"uip": Mode((":MEASure? U,I,P",), ("v", "i", "p"), check="bound")},
        default_mode="uip",
        error_query="*ESR?",
        stamping="held",
        update_s=0.2,
        channels=0,
        terminator=b"\r\n",
        separator=";",
        alt_separators=",",
        number_re=HIOKI_RE,
        sentinel_abs=777.77e9,
        setup=(":HEADer OFF",),
        kind="analyser",
        p_gain=0.001,
        p_range_frac=0.001,
        default_vrange=15.0,
        default_arange=1.0,
        unverified=(
            "the 200 ms data update interval is assumed, not read in the PW3335 manual",
            "DC power accuracy ±(0.1 % rdg + 0.1 % f.s.) is the PW3336's; PW3335 assumed equal",
            "the reply separator: ';' in HIOKI 333x code, ',' in the PW3335 manual text; "
            "both are accepted",
        ),
    ),
    "tek-pa1000": Profile(
        name="tek-pa1000",
        title="Tektronix PA1000 single-phase power analyser",
        idn_re=r"^Tektronix,\s*PA\s?1000",
        modes={"vaw": Mode((":FRD?",), ("v", "i", "p"), check="bound")},
        default_mode="vaw",
        error_query="*ESR?",
        stamping="ready",
        update_s=0.5,
        channels=0,
        setup=(":SEL:CLR", ":SEL:VLT", ":SEL:AMP", ":SEL:WAT", ":DSE 2"),
        setup_gap_s=0.5,
        ready_query=":DSR?",
        ready_mask=2,
        default_rate_hz=10.0,
        kind="analyser",
        p_gain=0.001,
        p_range_frac=0.001,
        default_vrange=15.0,
        default_arange=1.0,
        unverified=(
            "PA1000 accuracy (0.1 % rdg + 0.1 % range) is derived from V and A specs, not read",
            "the 0.5 s update interval and :DSR? bits are from the PA3000/PM1000 manuals",
        ),
    ),
}
