"""``powerd sim MODEL``: serve a meter simulator on a pseudo-terminal until stopped.

The simulator answers with the meter's real command set and framing, its readings drawn from a
``sim`` waveform (so the true energy of any window is known), with optional faults and a schedule
of unplug/replug events. Point a probe at ``--link`` as if it were the meter's device path.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from powerd.errors import SpecError
from probes.base import parse_kv
from probes.serialsim import Faults, PtySimulator
from probes.sim.waveform import parse_spec
from probes.simulators import SIMULATORS, make


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
        help="path of the symlink to the pty (the 'device path' for the probe)",
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


def run_command(args: argparse.Namespace) -> int:
    waveform = parse_spec(args.waveform).waveform
    options: dict[str, str] = {}
    for opt in args.option:
        options |= parse_kv(opt, {opt.partition("=")[0]})
    schedule = _schedule(args.unplug)
    model = make(args.model, waveform, options)
    faults = Faults(args.garble, args.drop, args.partial, args.no_reply, args.seed)
    sim = PtySimulator(model, args.link, faults).start()
    print(f"powerd sim: {args.model} at {args.link}; Ctrl-C to stop", file=sys.stderr, flush=True)
    start = time.monotonic()
    try:
        for at, dur in schedule:
            time.sleep(max(0.0, start + at - time.monotonic()))
            sim.unplug()
            print(f"powerd sim: unplugged at {at:.3f} s", file=sys.stderr, flush=True)
            time.sleep(dur)
            sim.replug()
            print(f"powerd sim: replugged after {dur:.3f} s", file=sys.stderr, flush=True)
        if args.duration is not None:
            time.sleep(max(0.0, start + args.duration - time.monotonic()))
        else:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0
