"""SCPI bench supplies and power analysers on a serial port, each through a per-model profile.

One channel per spec, ``scpi:<instance>`` (power, W, a meter; instance ``<profile>:<channel>``
by default). The profile (``profiles.py``) holds the model's queries, reply format, quirks and
accuracy; the session polls at the instrument's own update rate. A query the instrument does not
know is never answered: that is a timeout with a message naming the query and the error queue's
verdict, never a hang. See README.md.

Spec: ``scpi:<device>,profile=<name>[,key=value...]``, keys:

- ``profile``: ``rigol-dp800``, ``siglent-spd``, ``keysight-n6700``, ``hioki-pw3335``,
  ``tek-pa1000``;
- ``channel`` (output number on multi-output supplies, default 1), ``mode`` (the profile's ways
  to read power, e.g. ``vi``), ``cmd`` (replace the query by your own, answering power in W);
- ``rate`` (polls per second, default the instrument's update rate), ``timeout`` (s per reply,
  default 1), ``baud`` (default 9600), ``strict`` (1: replies must match the documented number
  format, default; 0: any number);
- ``check``: cross-check of fields read together, ``vi`` (P = V×I: DC only), ``bound``
  (|P| ≤ V×I) or ``none`` (default per profile);
- ``id``, ``measures``; accuracy inputs ``volts``, ``amps`` (supplies: output voltage, maximum
  current) or ``vrange``, ``arange`` (analysers: the ranges in use).

Example: ``scpi:/dev/ttyUSB0,profile=siglent-spd,channel=1,rate=5``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import cast

from powerd.channel import Accuracy, Channel, Instrument
from powerd.errors import ProbeUnavailable, SpecError
from powerd.probes.base import Availability, parse_kv
from powerd.probes.scpi.profiles import PROFILES, Check, Mode, Profile
from powerd.probes.scpi.session import ScpiConfig, ScpiStats, make_session
from powerd.probes.serialport import SerialProbe, serial_availability
from powerd.probes.serialport import candidate_ports as serial_ports

KEYS = {
    "profile",
    "channel",
    "mode",
    "cmd",
    "rate",
    "timeout",
    "baud",
    "strict",
    "id",
    "measures",
    "volts",
    "amps",
    "vrange",
    "arange",
    "check",
}
PORT_GLOBS = ("/dev/ttyUSB*", "/dev/ttyACM*", "/dev/ttyS[0-9]", "/dev/serial/by-id/*")
URL_PREFIXES = ("socket://", "rfc2217://", "loop://", "spy://")
INSTANCE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_RATE_HZ = 50.0


def _number(key: str, text: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SpecError(f"scpi: {key}={text!r} is not a number") from None
    if not low < value <= high:
        raise SpecError(f"scpi: {key} must be within ({low:g}, {high:g}], got {text!r}")
    return value


def parse_spec(args: str) -> tuple[ScpiConfig, Channel]:
    """Parse ``<device>,profile=<name>[,...]`` into the session config and the channel."""
    path, _, rest = args.partition(",")
    path = path.strip()
    if not path or "=" in path:
        raise SpecError(
            "scpi: give the device first, e.g. scpi:/dev/ttyUSB0,profile=siglent-spd,channel=1"
        )
    kv = parse_kv(rest, KEYS)
    name = kv.get("profile")
    if name not in PROFILES:
        raise SpecError(
            f"scpi: profile={name!r} is not known; use one of: {', '.join(PROFILES)}"
            if name
            else f"scpi: which instrument? add profile=<{'|'.join(PROFILES)}>"
        )
    profile = PROFILES[name]
    channel = 0
    if profile.channels:
        text = kv.get("channel", "1")
        if not text.isdigit() or not 1 <= int(text) <= profile.channels:
            raise SpecError(f"scpi: {name} has outputs 1..{profile.channels}, got channel={text!r}")
        channel = int(text)
    elif "channel" in kv:
        raise SpecError(f"scpi: {name} has a single input; drop channel=")
    mode = _mode(profile, kv)
    rate = _number("rate", kv.get("rate", f"{profile.rate_hz:.6g}"), 0.0, MAX_RATE_HZ)
    timeout = _number("timeout", kv.get("timeout", "1"), 0.0, 30.0)
    baud_text = kv.get("baud", str(profile.baud))
    if not baud_text.isdigit() or int(baud_text) <= 0:
        raise SpecError(f"scpi: baud={baud_text!r} is not a positive integer")
    strict = kv.get("strict", "1")
    if strict not in ("0", "1"):
        raise SpecError("scpi: strict is 1 (documented number format only) or 0 (any number)")
    instance = kv.get("id", f"{name}:{channel}" if channel else name)
    if not INSTANCE_RE.match(instance):
        raise SpecError(f"scpi: id={instance!r}: use letters, digits and _.:-")
    cfg = ScpiConfig(
        url=path,
        channel_id=f"scpi:{instance}",
        profile=profile,
        mode=mode,
        channel=channel,
        rate_hz=rate,
        timeout_s=timeout,
        strict=strict == "1",
        baud=int(baud_text),
    )
    nominal_s = profile.update_s if profile.stamping == "ready" else 1.0 / rate
    stamp_s = {
        "held": profile.update_s / 2,
        "acquire": profile.acq_s,
        "ready": 0.5 / rate,
    }[profile.stamping]
    chan = Channel(
        id=cfg.channel_id,
        kind="power",
        source_class="meter",
        nominal_period_s=nominal_s,
        accuracy=accuracy(profile, kv),
        measures=kv.get("measures", ""),
        description=f"{profile.title} at {path}"
        + (f", output {channel}" if channel else "")
        + f", mode {'cmd' if 'cmd' in kv else kv.get('mode', profile.default_mode)}",
        stamp_uncertainty_s=stamp_s,
    )
    return cfg, chan


def _mode(profile: Profile, kv: dict[str, str]) -> Mode:
    if "cmd" in kv:
        if "mode" in kv:
            raise SpecError("scpi: give mode= or cmd=, not both")
        return Mode((kv["cmd"],), ("p",))
    name = kv.get("mode", profile.default_mode)
    if name not in profile.modes:
        raise SpecError(
            f"scpi: {profile.name} has modes {', '.join(profile.modes)}; got mode={name!r}"
        )
    mode = profile.modes[name]
    check = kv.get("check")
    if check is not None:
        if check not in ("none", "vi", "bound"):
            raise SpecError("scpi: check is none, vi (P = V×I, DC) or bound (|P| ≤ V×I)")
        if check != "none" and not {"v", "i", "p"} <= set(mode.fields):
            raise SpecError(f"scpi: mode {name} does not read V, I and P together; drop check=")
        mode = replace(mode, check=cast(Check, check))
    return mode


def accuracy(profile: Profile, kv: dict[str, str]) -> Accuracy:
    """The profile's accuracy at the operating point given in the spec (see profiles.py)."""
    if profile.kind == "supply":
        volts = _number("volts", kv.get("volts", str(profile.default_volts)), 0.0, 1e4)
        amps = _number("amps", kv.get("amps", str(profile.default_amps)), 0.0, 1e4)
        return Accuracy(
            reading_frac=profile.v_gain + profile.i_gain,
            offset_w=profile.v_offset * amps + profile.i_offset * volts,
        )
    vrange = _number("vrange", kv.get("vrange", str(profile.default_vrange)), 0.0, 1e5)
    arange = _number("arange", kv.get("arange", str(profile.default_arange)), 0.0, 1e5)
    return Accuracy(
        reading_frac=profile.p_gain, range_frac=profile.p_range_frac, range_w=vrange * arange
    )


def candidate_ports() -> list[str]:
    return serial_ports(PORT_GLOBS)


class ScpiProbe(SerialProbe):
    """One SCPI instrument output; its own thread polls, the sampler drains.

    The sampler drains every ``poll_interval_s``: a quarter second, or longer for instruments
    whose setup takes seconds (PA1000), so a caller that waits a few drain intervals for the first
    sample waits long enough.
    """

    def __init__(self, cfg: ScpiConfig, channel: Channel) -> None:
        self.cfg = cfg
        self.channel = channel
        self.stats = ScpiStats()
        super().__init__(
            [channel],
            channel.id,
            cfg.url,
            make_session(cfg, self.stats),
            {"baudrate": cfg.baud, "timeout": 0.02},
        )
        setup_s = cfg.profile.setup_gap_s * len(cfg.profile.setup)
        self.poll_interval_s = max(0.25, (setup_s + 1.0) / 4)

    def instrument(self) -> Instrument | None:
        """The identity from the instrument's last ``*IDN?`` (None before it answered)."""
        return self.stats.instrument


class ScpiFamily:
    name = "scpi"
    summary = (
        "SCPI bench supplies and power analysers by profile: "
        + ", ".join(PROFILES)
        + " (scpi:/dev/ttyUSB0,profile=siglent-spd,channel=1)"
    )

    def available(self) -> Availability:
        return serial_availability(
            candidate_ports,
            "no serial port seen now (/dev/ttyUSB*, /dev/ttyACM*); give the instrument's path "
            "or socket://HOST:PORT, e.g. scpi:/dev/ttyUSB0,profile=rigol-dp800",
        )

    def open(self, args: str) -> ScpiProbe:
        cfg, channel = parse_spec(args)
        if not cfg.url.startswith(URL_PREFIXES) and not Path(cfg.url).exists():
            found = ", ".join(candidate_ports()) or "none"
            raise ProbeUnavailable(
                f"scpi: {cfg.url} does not exist (serial ports now: {found}); connect the "
                "instrument or pass its path"
            )
        return ScpiProbe(cfg, channel)


family = ScpiFamily()

__all__ = ["PROFILES", "ScpiProbe", "family", "parse_spec"]
