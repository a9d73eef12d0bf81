"""PTDaemon's command line, as power-dev's ``server.py`` builds it.

``powerd-ptd -l LOG -p PORT [-b N] [-c CH] [-D] [-n|-g|-y|-U] DEVTYPE DEVPORT``: ``DEVTYPE`` is
PTDaemon's device number (an int; kept for the record, the probe spec decides the meter) and
``DEVPORT`` is a powerd probe spec (``sim:square,high=10``, ``wt300:/dev/ttyUSB0``, ...). The
interface flags and ``-b`` are accepted because the server passes them; the probe spec already
says how to reach the meter.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from powerd import __version__
from powerd.errors import SpecError

NOMINAL_VOLTS_V = 230.0

DESCRIPTION = """\
A PTDaemon-compatible face over any powerd probe, for MLCommons power-dev's server.py.

It stays in the foreground, listens on 127.0.0.1:PORT, answers PTDaemon's commands (Hello,
Identify, RR, SR, Go, Stop, RL, Watts, Uncertainty) with 1 s means of the probe's samples,
writes the sample log LOG and prints PTDaemon's timestamped lines on stdout. It exits and frees
the port on SIGTERM or SIGINT. Identify names powerd and the real instrument, never PTDaemon.

The probe's full-rate samples go into powerd's store (--state-dir, else $POWERD_STATE_DIR, else
the default), and each Go/Stop becomes a phase named after its mark (<session>_ranging,
<session>_testing) in run <session>: `powerd report <session>` gives the full result.
"""

EPILOG = """\
examples:
  powerd-ptd -l /tmp/ptd.log -p 8888 49 sim:square,high=40,low=20,period=0.1
  powerd-ptd -l /tmp/ptd.log -p 8888 -c 1 49 wt300:/dev/ttyUSB0

Probes without voltage and current (sim, NVML, NPU telemetry) log Volts as --volts (default
230) and Amps as Watts/Volts, so power-dev's ranging arithmetic works; their SR commands are
accepted and logged as no-ops.
"""


@dataclass(frozen=True)
class PtdArgs:
    """The parsed command line."""

    log_path: Path
    port: int
    device_type: int
    device_port: str
    channels: tuple[int, ...]
    dc: bool
    interface: str
    gpib_board: int | None
    state_dir: Path | None
    nominal_volts_v: float


def _channels(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"-c {text!r}: expected N or N,M") from None
    if not out or any(c < 1 for c in out) or len(out) > 2:
        raise argparse.ArgumentTypeError(f"-c {text!r}: expected N or N,M (1-based)")
    return out


class _Parser(argparse.ArgumentParser):
    """Usage errors as a SpecError, so they come out as one timestamped line like the rest."""

    def error(self, message: str) -> NoReturn:
        raise SpecError(f"{message} (see powerd-ptd --help)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="powerd-ptd",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-l", dest="log", type=Path, required=True, help="sample log file (appended)")
    p.add_argument("-p", dest="port", type=int, required=True, help="TCP port on 127.0.0.1")
    p.add_argument("-b", dest="board", type=int, help="GPIB board (accepted, not used)")
    p.add_argument(
        "-c",
        dest="channels",
        type=_channels,
        default=(1,),
        help="channel: the Nth power channel of the probe (1-based; default 1)",
    )
    p.add_argument("-D", dest="dc", action="store_true", help="DC mode (RL,*,* → DC-RL)")
    iface = p.add_mutually_exclusive_group()
    for flag in ("-n", "-g", "-y", "-U"):
        iface.add_argument(flag, dest="interface", action="store_const", const=flag)
    p.add_argument("devtype", type=int, help="PTDaemon device type number (recorded only)")
    p.add_argument("devport", help="a powerd probe spec, e.g. sim:constant,w=50")
    p.add_argument("--state-dir", type=Path, help="powerd's state directory (store)")
    p.add_argument(
        "--volts",
        type=float,
        default=NOMINAL_VOLTS_V,
        help="Volts logged for probes that measure no voltage (default 230)",
    )
    p.add_argument("--version", action="version", version=f"powerd-ptd {__version__}")
    return p


def parse(argv: list[str] | None = None) -> PtdArgs:
    ns = parser().parse_args(argv)
    if not 0 < ns.port < 65536:
        raise SpecError(f"-p {ns.port}: a TCP port is 1-65535")
    if not ns.volts > 0:
        raise SpecError("--volts must be > 0")
    return PtdArgs(
        log_path=ns.log,
        port=ns.port,
        device_type=ns.devtype,
        device_port=ns.devport,
        channels=ns.channels,
        dc=ns.dc,
        interface=ns.interface or "",
        gpib_board=ns.board,
        state_dir=ns.state_dir,
        nominal_volts_v=ns.volts,
    )
