"""Run one probe family in this process and print what it saw as JSON (for subprocess tests).

``python drive.py FAMILY SPEC READS SLEEP_S``: available(), then open(SPEC), READS reads
SLEEP_S apart, close(). Prints {"available", "channels", "samples": {id: [[t_ns, v], ...]},
"problems", "error"}. Fake binding modules come first on PYTHONPATH.
"""

import json
import sys
import time
from dataclasses import asdict

from powerd.probes.registry import families

family = families()[sys.argv[1]]
spec, reads, sleep_s = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
out: dict = {
    "available": asdict(family.available()),
    "channels": [],
    "samples": {},
    "problems": [],
    "error": None,
}
try:
    probe = family.open(spec)
except Exception as err:
    out["error"] = f"{type(err).__name__}: {err}"
else:
    try:
        out["channels"] = [c.to_json() for c in probe.channels()]
        out["problems"] += probe.problems()
        for _ in range(reads):
            for b in probe.read(time.time_ns()):
                out["samples"].setdefault(b.channel, []).extend(
                    [int(t), float(v)] for t, v in zip(b.t_ns, b.value, strict=True)
                )
            out["problems"] += probe.problems()
            time.sleep(sleep_s)
    finally:
        probe.close()
print(json.dumps(out))
