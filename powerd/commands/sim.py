"""``powerd sim MODEL``: serve a meter simulator on a pseudo-terminal until stopped.

The simulator answers with the meter's real command set and framing, its readings drawn from a
``sim`` waveform (so the true energy of any window is known), with optional faults and a schedule
of unplug/replug events. Point a probe at ``--link`` as if it were the meter's device path.

``--link`` is only ever our own symlink to a pseudo-terminal: a regular file, a directory or a
symlink to anything else at that path (or at the ``PATH.new`` used to swap it atomically) is
refused with a one-line error and left untouched; a stale link of ours (its pty is gone, e.g.
after a SIGKILL) is replaced; a link whose pty is still open belongs to a running simulator and
is refused. The link is removed on exit, including SIGTERM, SIGINT and SIGHUP.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import stat
import sys
import time
from pathlib import Path
from types import FrameType

from powerd.errors import SpecError
from powerd.probes.base import parse_kv
from powerd.probes.serialsim import Faults, PtySimulator
from powerd.probes.sim.waveform import parse_spec
from powerd.probes.simulators import SIMULATORS, make

PTY_TARGET = re.compile(r"^/dev/(pts/\d+|ttys\d+|ttyp[0-9a-f])$")  # what os.ttyname gives a pty
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = "\n".join(f"  {name:<15} {desc}" for name, (_, desc) in SIMULATORS.items())
    p = sub.add_parser(
        "sim",
        help="serve a simulated meter on a pseudo-terminal",
        description=__doc__,
        epilog=f"Simulators:\n{listing}\n\nExample:\n  powerd sim wt310 --link /tmp/wt310 "
        "--waveform square,high=40,low=5,period=2 --unplug 5:1.5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="which meter to simulate (see below)")
    p.add_argument(
        "--link",
        type=Path,
        required=True,
        metavar="PATH",
        help="path of the symlink to the pty (the 'device path' for the probe); a file, a "
        "directory or a foreign symlink there is refused, and the link is removed on exit",
    )
    p.add_argument(
        "--waveform",
        default="constant,w=5",
        metavar="SPEC",
        help="power drawn by the simulated device, a sim spec without 'sim:' "
        "(default constant,w=5)",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="K=V",
        help="simulator option (e.g. voltage=3.3, mode=binary); see the probe README",
    )
    for fault in ("garble", "drop", "partial", "no-reply"):
        p.add_argument(
            f"--{fault}",
            type=float,
            default=0.0,
            metavar="P",
            help=f"probability of a {fault.replace('-', ' ')} fault per reply/chunk",
        )
    p.add_argument("--seed", type=int, default=0, help="fault random seed")
    p.add_argument(
        "--unplug",
        action="append",
        default=[],
        metavar="AT:FOR",
        help="pull the cable AT seconds after start for FOR seconds (repeatable)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds (default: until Ctrl-C)",
    )


def _schedule(items: list[str]) -> list[tuple[float, float]]:
    out = []
    for item in items:
        at, _, dur = item.partition(":")
        try:
            out.append((float(at), float(dur)))
        except ValueError:
            raise SpecError(f"--unplug {item!r}: use AT:FOR in seconds, e.g. 5:1.5") from None
    return sorted(out)


def _what_is(path: Path) -> str | None:
    """None if ``path`` is free or a stale link of ours; else why it cannot be replaced."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISLNK(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a regular file"
        if not stat.S_ISDIR(st.st_mode) and not stat.S_ISREG(st.st_mode):
            kind = "not a symlink"
        return f"{kind}, not a link made by powerd sim"
    target = os.readlink(path)
    if not PTY_TARGET.match(target):
        return f"a symlink to {target}, not a link made by powerd sim"
    if os.path.exists(target):
        return f"a live link to {target} (another powerd sim is serving it?)"
    return None  # ours, and its pty is gone: stale


def claim_link(link: Path) -> None:
    """Check that ``link`` (and its ``.new`` swap name) may be created; SpecError if not."""
    parent = link.parent
    if not parent.is_dir():
        raise SpecError(f"--link {link}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SpecError(f"--link {link}: directory {parent} is not writable")
    for path in (link, link.with_name(link.name + ".new")):
        why = _what_is(path)
        if why is not None:
            raise SpecError(f"--link {link}: {path} is {why}; refusing to replace it")


class _Stop(Exception):
    """SIGTERM/SIGHUP arrived: leave the serving loop and clean up as for Ctrl-C."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _serve(sim: PtySimulator, schedule: list[tuple[float, float]], duration: float | None) -> None:
    start = time.monotonic()
    for at, dur in schedule:
        time.sleep(max(0.0, start + at - time.monotonic()))
        sim.unplug()
        print(f"powerd sim: unplugged at {at:.3f} s", file=sys.stderr, flush=True)
        time.sleep(dur)
        sim.replug()
        print(f"powerd sim: replugged after {dur:.3f} s", file=sys.stderr, flush=True)
    if duration is not None:
        time.sleep(max(0.0, start + duration - time.monotonic()))
    else:
        while True:
            time.sleep(3600)


def run_command(args: argparse.Namespace) -> int:
    waveform = parse_spec(args.waveform).waveform
    options: dict[str, str] = {}
    for opt in args.option:
        options |= parse_kv(opt, {opt.partition("=")[0]})
    schedule = _schedule(args.unplug)
    model = make(args.model, waveform, options)
    faults = Faults(args.garble, args.drop, args.partial, args.no_reply, args.seed)
    link: Path = args.link
    claim_link(link)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in STOP_SIGNALS}
    sim: PtySimulator | None = None
    try:
        try:
            sim = PtySimulator(model, link, faults).start()
        except OSError as err:
            raise SpecError(f"--link {link}: cannot create the link: {err.strerror}") from None
        print(f"powerd sim: {args.model} at {link}; Ctrl-C to stop", file=sys.stderr, flush=True)
        _serve(sim, schedule, args.duration)
    except KeyboardInterrupt:
        pass
    except _Stop as stop:
        print(f"powerd sim: stopped by {stop}", file=sys.stderr, flush=True)
    finally:
        for sig in (*STOP_SIGNALS, signal.SIGINT):  # a second signal must not skip the cleanup
            previous.setdefault(sig, signal.signal(sig, signal.SIG_IGN))
        if sim is not None:
            sim.stop()  # removes the link (only while it is still ours)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
