"""The ``ipmi`` probe: whole-server input power from the BMC, ``ipmitool dcmi power reading``.

One channel, ``ipmi:<name>`` (``local`` for the in-band BMC, else the BMC host), power in W as
the BMC reports it (integer watts, refreshed about once a second or slower). The tool has no
loop mode, so it is run once per poll (default every 2 s) on a thread of its own
(``poller.Poller``), bounded by ``timeout`` and killed past it; the sampler only drains results.
The pure parser (``parse.judge``) decides what is a sample: a ``deactivated`` reading state or a
0 W reading is never a sample but a problem saying what to do; garbage and a tool that hangs or
fails are problems too, never 0 W.

In band (default) the tool talks to ``/dev/ipmi0`` and needs root (or access to that device).
Out of band (``host=``), it uses ``-I lanplus -H <host> -U <user> -f <password_file>``: the
password is only ever in that file, never on a command line or in a message.

Spec (after ``ipmi:``), all optional: ``host=BMC``, ``user=NAME``, ``password_file=PATH``,
``interface=lanplus|lan``, ``port=N``, ``cipher=N`` (``-C``), ``interval=SECONDS`` (≥ 1, default
2), ``timeout=SECONDS`` (default 10), ``path=IPMITOOL``, ``name=ID`` (channel id part),
``measures=THING`` (default ``bmc:<host>`` or ``bmc:local``; give the redfish probe reading
the same server the same value so the two are alternatives, never summed).
"""

from __future__ import annotations

import os
import re
import time

import numpy as np

from powerd.block import Block
from powerd.channel import Accuracy, Channel
from powerd.errors import ProbeUnavailable, SpecError
from powerd.probes.base import Availability, parse_kv, seconds_arg
from powerd.probes.cliexec import ToolError, find_tool, run_tool
from powerd.probes.ipmi.parse import judge
from powerd.probes.ipmi.poller import Poller

FALLBACK_PATHS = ("/usr/bin/ipmitool", "/usr/sbin/ipmitool", "/usr/local/bin/ipmitool")
LOCAL_DEVICES = ("/dev/ipmi0", "/dev/ipmi/0", "/dev/ipmidev/0")
DEFAULT_INTERVAL_S = 2.0
MIN_INTERVAL_S = 1.0  # a BMC refreshes its DCMI reading about once a second at best
DEFAULT_TIMEOUT_S = 10.0
READING_FRAC = 0.05  # assumed: no BMC documents DCMI accuracy; PSU PMBus input sensing class
RESOLUTION_W = 1.0  # DCMI carries integer watts
BMC_REFRESH_S = 1.0  # how old an "instantaneous" reading may be when it is read
KEYS = {
    "host", "user", "password_file", "interface", "port", "cipher",
    "interval", "timeout", "path", "name", "measures",
}  # fmt: skip


def clean_id(text: str) -> str:
    """A channel-id-safe form of a host name or label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "bmc"


def build_argv(exe: str, kv: dict[str, str]) -> list[str]:
    """The ipmitool command line for a spec; a password never appears in it."""
    argv = [exe]
    host = kv.get("host")
    if host:
        interface = kv.get("interface", "lanplus")
        if interface not in ("lanplus", "lan"):
            raise SpecError("ipmi: interface must be lanplus or lan")
        argv += ["-I", interface, "-H", host]
        if "port" in kv:
            if not (kv["port"].isascii() and kv["port"].isdigit()):
                raise SpecError(f"ipmi: port={kv['port']!r} is not a port number")
            argv += ["-p", kv["port"]]
        if "user" in kv:
            argv += ["-U", kv["user"]]
        if "password_file" in kv:
            pw = kv["password_file"]
            if not os.access(pw, os.R_OK):
                raise SpecError(f"ipmi: password_file {pw!r} is not readable")
            argv += ["-f", pw]
        if "cipher" in kv:
            if not (kv["cipher"].isascii() and kv["cipher"].isdigit()):
                raise SpecError(f"ipmi: cipher={kv['cipher']!r} is not a cipher suite number")
            argv += ["-C", kv["cipher"]]
    else:
        extra = sorted({"user", "password_file", "interface", "port", "cipher"} & set(kv))
        if extra:
            raise SpecError(f"ipmi: {', '.join(extra)} need host=BMC (out-of-band access)")
    return [*argv, "dcmi", "power", "reading"]


class IpmiProbe:
    """Drains the poller's readings into one Block per read; problems pass through."""

    def __init__(
        self, argv: list[str], channel: Channel, interval_s: float, timeout_s: float
    ) -> None:
        self.argv = argv
        self.channel = channel
        self.poll_interval_s = min(1.0, interval_s)
        self._timeout_s = timeout_s
        self._last_t = -1
        first = self._fetch()  # raises: the caller turns it into ProbeUnavailable
        self._first: tuple[int, float] | None = (time.monotonic_ns(), first)
        self.poller: Poller[float] = Poller(channel.id, self._fetch, interval_s)
        self.poller.start()

    def _fetch(self) -> float:
        out = run_tool(self.argv, time.monotonic_ns, self._timeout_s)
        verdict = judge(out.stdout.decode("utf-8", "replace"))
        if verdict.power_w is None:
            raise ValueError(verdict.problem)
        return verdict.power_w

    def channels(self) -> list[Channel]:
        return [self.channel]

    def read(self, now_utc_ns: int) -> list[Block]:
        offset = now_utc_ns - time.monotonic_ns()
        t: list[int] = []
        v: list[float] = []
        pending = [(p.mono_ns, p.value) for p in self.poller.drain()]
        if self._first is not None:
            pending.insert(0, self._first)
            self._first = None
        for mono_ns, watts in pending:
            t_ns = mono_ns + offset
            if t_ns <= self._last_t:
                continue
            t.append(t_ns)
            v.append(watts)
            self._last_t = t_ns
        if not t:
            return []
        return [Block(self.channel.id, np.array(t, np.int64), np.array(v, np.float64))]

    def problems(self) -> list[str]:
        return self.poller.problems()

    def close(self) -> None:
        self.poller.stop()


class IpmiFamily:
    name = "ipmi"
    summary = "Whole-server input power from the BMC: ipmitool dcmi power reading"

    def available(self) -> Availability:
        exe = find_tool("ipmitool", FALLBACK_PATHS)
        if exe is None:
            return Availability(False, "ipmitool not found (apt-get install ipmitool)")
        dev = next((d for d in LOCAL_DEVICES if os.path.exists(d)), None)
        where = f"local BMC at {dev}" if dev else "no local BMC device (use host=BMC for lanplus)"
        return Availability(True, f"{exe}; {where}")

    def open(self, args: str) -> IpmiProbe:
        kv = parse_kv(args, KEYS)
        interval_s = seconds_arg("ipmi", kv, "interval", DEFAULT_INTERVAL_S, MIN_INTERVAL_S, 3600.0)
        timeout_s = seconds_arg("ipmi", kv, "timeout", DEFAULT_TIMEOUT_S, 0.5, 120.0)
        path = kv.get("path")
        exe = path if path and os.access(path, os.X_OK) else find_tool("ipmitool", FALLBACK_PATHS)
        if exe is None:
            raise ProbeUnavailable(f"probe 'ipmi': ipmitool not found at {path or 'PATH'}")
        argv = build_argv(exe, kv)
        host = kv.get("host")
        name = clean_id(kv.get("name") or (host or "local"))
        where = f"BMC {host} over {kv.get('interface', 'lanplus')}" if host else "local BMC"
        channel = Channel(
            id=f"ipmi:{name}",
            kind="power",
            source_class="telemetry",
            nominal_period_s=interval_s,
            accuracy=Accuracy(reading_frac=READING_FRAC, offset_w=RESOLUTION_W / 2),
            measures=kv.get("measures") or f"bmc:{host or 'local'}",
            description=f"whole-server input power from the {where}, DCMI Get Power Reading "
            "(instantaneous, integer W; includes fans, drives and PSU losses)",
            stamp_uncertainty_s=BMC_REFRESH_S,
        )
        try:
            return IpmiProbe(argv, channel, interval_s, timeout_s)
        except (ToolError, ValueError) as err:
            raise ProbeUnavailable(f"probe 'ipmi' ({where}): {err}") from None


family = IpmiFamily()
