"""The daemon's result path in-process: CPU per result with N agents x 8 channels (issue 16).

N agents join a ``Daemon`` directly (status, channels, clock exchanges; no MQTT), each sends 10 s
of 8 channels at 10 Hz, then each closes one 2 s phase naming its own device; one
``due_results()`` call computes the N results (figures, stored result, sealed manifest) and its
CPU time is divided by N. Also printed: one manifest's size and how many agents' clock state it
holds. ``--tree DIR`` imports powerd from another checkout (for "before" figures);
``--profile`` prints the cProfile of the call.

    .venv/bin/python bench/result_cost.py --agents 300 1000
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

S = 10**9


class Clock:
    def __init__(self) -> None:
        self.t_ns = time.time_ns()

    def __call__(self) -> int:
        return self.t_ns


def one(n: int, profile: bool) -> dict[str, float]:
    from powerd.agent import wire
    from powerd.channel import Channel
    from powerd.daemon import MIN_EXCHANGES, Daemon
    from powerd.store import Store
    from powerd.timeline import Timeline

    clock = Clock()
    tmp = Path(tempfile.mkdtemp(prefix="powerd-result-cost-"))
    d = Daemon(Store(tmp / "powerd.db"), Timeline(64), clock, result_grace_s=60.0)
    chans = [Channel(f"sim:c{i}", "power", "meter", 0.1).to_json() for i in range(8)]
    names = [f"fleet-{a:05d}" for a in range(n)]
    for ag in names:
        d.accept_status(ag, wire.status(ag, "online", clock.t_ns, "b", boot_ns=7, epoch=1))
        d.accept_channels(ag, json.dumps(chans).encode())
        for _ in range(MIN_EXCHANGES):
            req = json.dumps(json.loads(d.clock_request(ag))).encode()
            t2 = clock.t_ns + 500_000
            clock.t_ns += 1_000_000
            d.accept_clock_reply(ag, wire.clock_reply(req, t2, t2, 7, 1))
    t0 = clock.t_ns
    t = t0 + np.arange(100, dtype=np.int64) * (S // 10)
    seq = 0
    for ag in names:
        parts = []
        for i in range(8):
            seq += 1
            parts.append(wire.encode_block(7, seq, f"sim:c{i}", t, np.full(100, 100.0 + i)))
        d.accept_block(ag, b"".join(parts))
    d.store.flush()
    for ag in names:
        base: dict[str, Any] = {"v": 1, "run": f"{ag}-1", "phase": "infer"}
        begin = {**base, "event": "begin", "seq": 1, "t_ns": t0 + 2 * S, "device": ag}
        end = {**base, "event": "end", "seq": 2, "t_ns": t0 + 4 * S, "count": 10}
        for m in (begin, end):
            assert d.submit_marker("harness", m, int(m["t_ns"])).applied
    clock.t_ns = t0 + 11 * S
    prof = cProfile.Profile() if profile else None
    c0 = time.process_time()
    if prof is not None:
        prof.enable()
    out = d.due_results()
    if prof is not None:
        prof.disable()
    cpu_s = time.process_time() - c0
    assert len(out) == n, f"{len(out)} of {n} results"
    manifest = d.store.manifests(str(out[0]["run"]))[0]
    d.store.close()
    if prof is not None:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    return {
        "agents": n,
        "cpu_ms_per_result": 1e3 * cpu_s / n,
        "manifest_bytes": len(json.dumps(manifest)),
        "manifest_clock_agents": len(manifest["clock_sync"]),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--agents", type=int, nargs="+", default=[300, 1000])
    p.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, str(args.tree))
    for n in args.agents:
        print(json.dumps(one(n, args.profile)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
