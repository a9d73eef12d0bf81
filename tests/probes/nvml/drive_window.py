"""Measure windows with ``powerd.window.Monitor`` on the fake NVML, print what happened as JSON.

Run by the tests in a subprocess whose ``LD_LIBRARY_PATH`` holds the fake ``libnvidia-ml.so.1``.
Usage: ``drive_window.py SPEC FULL SECONDS...`` (FULL 0 or 1). For each length: ``begin``, a
sleep of that length, ``end``. Prints one JSON object: the monitor's health, the number of
threads while a window is open (the counter path runs none), and per window its figures.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from powerd.window import Monitor


def main() -> int:
    spec, full, lengths = sys.argv[1], sys.argv[2] == "1", [float(x) for x in sys.argv[3:]]
    out: dict[str, Any] = {"windows": []}
    with Monitor([spec], full=full) as mon:
        out["health_open"] = mon.health()
        for k, seconds in enumerate(lengths):
            mon.begin(f"w{k}")
            out["threads_in_window"] = threading.active_count()
            time.sleep(seconds)
            r = mon.end(f"w{k}")
            out["windows"].append(
                {
                    "t_begin_ns": r.t_begin_ns,
                    "t_end_ns": r.t_end_ns,
                    "energy_j": r.energy_j,
                    "uncertainty_j": r.uncertainty_j,
                    "flags": list(r.flags),
                    "primary": list(r.primary),
                    "problems": list(r.problems),
                    "channels": {
                        c: {"energy_j": f.energy_j, "flags": list(f.flags), "terms_j": f.terms_j}
                        for c, f in r.channels.items()
                    },
                }
            )
        out["health"] = mon.health()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
