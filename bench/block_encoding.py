"""Sample-block wire encodings compared: size per sample and encode+decode time.

The candidates for ``powerd/v1/blocks/<agent>``: the binary format of ``agent/wire.py`` (int32
time deltas, float64 values), the same with zlib, and JSON (lists of ints and floats, the obvious
"compact" text alternative). The block is a realistic 1 kHz telemetry trace with jitter and noise.
The binary format was chosen from these figures.
"""

from __future__ import annotations

import json
import sys
import time
import zlib
from typing import Any

import benchlib
import numpy as np

from powerd.agent.wire import decode_block, encode_block

NAME = "block_encoding"
SIZES = (10, 100, 1000, 10_000)


def trace(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    t = 1_800_000_000_000_000_000 + np.cumsum(1_000_000 + rng.integers(-20_000, 20_000, n))
    v = 45.0 + 10.0 * (np.arange(n) % 100 < 50) + rng.normal(0, 0.2, n)
    return t.astype(np.int64), v


def json_encode(t: np.ndarray, v: np.ndarray) -> bytes:
    return json.dumps(
        {"channel": "edge/nvml:0:power", "boot": 1, "seq": 1, "t_ns": t.tolist(), "v": v.tolist()}
    ).encode()


def json_decode(p: bytes) -> tuple[np.ndarray, np.ndarray]:
    o = json.loads(p)
    return np.array(o["t_ns"], np.int64), np.array(o["v"], np.float64)


def per_call(fn: Any, min_time_s: float) -> float:
    return benchlib.median(benchlib.timed_repeats(fn, 5, min_time_s))


def measure(quick: bool) -> list[dict[str, Any]]:
    rows = []
    min_time = 0.02 if quick else 0.2
    for n in SIZES[:2] if quick else SIZES:
        t, v = trace(n)
        binary = encode_block(1, 1, "edge/nvml:0:power", t, v)
        zipped = zlib.compress(binary, 1)
        text = json_encode(t, v)
        cands = {
            "binary": (len(binary), lambda t=t, v=v: decode_block(encode_block(1, 1, "c:x", t, v))),
            "binary+zlib": (
                len(zipped),
                lambda t=t, v=v: decode_block(
                    zlib.decompress(zlib.compress(encode_block(1, 1, "c:x", t, v), 1))
                ),
            ),
            "json": (len(text), lambda t=t, v=v: json_decode(json_encode(t, v))),
        }
        for name, (size, fn) in cands.items():
            rows.append(
                {
                    "samples": n,
                    "encoding": name,
                    "bytes_per_sample": size / n,
                    "us_per_block": per_call(fn, min_time) * 1e6,
                }
            )
    return rows


def main() -> int:
    args = benchlib.parser(__doc__.splitlines()[0]).parse_args()
    setup = benchlib.single_core(args.cpu)
    data = benchlib.envelope(NAME, args.quick, setup)
    data["goal"] = "choose the block encoding: fewest bytes and least CPU per sample"
    t0 = time.perf_counter()
    rows = measure(args.quick)
    data.update(rows=rows, load_after=benchlib.load(), elapsed_s=time.perf_counter() - t0)
    big = max(r["samples"] for r in rows)
    at = {r["encoding"]: r for r in rows if r["samples"] == big}
    data["verdict"] = (
        f"binary: {at['binary']['bytes_per_sample']:.1f} B and "
        f"{at['binary']['us_per_block'] / big * 1e3:.0f} ns per sample at {big} samples, vs JSON "
        f"{at['json']['bytes_per_sample']:.1f} B and {at['json']['us_per_block'] / big * 1e3:.0f}"
        " ns; chosen: binary (zlib saves little on noisy values and costs time)."
    )
    data["markdown"] = benchlib.md_table(
        ["samples per block", "encoding", "bytes per sample", "encode+decode µs per block"],
        [
            [
                r["samples"],
                r["encoding"],
                f"{r['bytes_per_sample']:.1f}",
                f"{r['us_per_block']:.1f}",
            ]
            for r in rows
        ],
    )
    path = benchlib.write_result(NAME, args.quick, args.out, data)
    print(data["markdown"])
    print(f"\n{data['verdict']}\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
