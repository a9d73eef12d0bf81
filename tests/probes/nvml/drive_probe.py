"""Open the nvml probe in this process, read it as the sampler would, print what happened as JSON.

Run by the tests in a subprocess whose ``LD_LIBRARY_PATH`` holds the fake ``libnvidia-ml.so.1``.
Usage: ``drive_probe.py SPEC SECONDS [temperatures]``. Prints one JSON object: availability,
channels, poll interval, learned periods, every sample per channel, every problem reported, and
(with ``temperatures``) the temperatures read at each poll.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from powerd.errors import PowerdError
from powerd.probes.nvml import family


def main() -> int:
    spec, seconds = sys.argv[1], float(sys.argv[2])
    read_temperatures = sys.argv[3:] == ["temperatures"]
    avail = family.available()
    out: dict[str, Any] = {
        "available": {"ok": avail.ok, "reason": avail.reason, "broken": avail.broken}
    }
    try:
        probe = family.open(spec)
    except PowerdError as err:
        out["error"] = str(err)
        print(json.dumps(out))
        return 0
    channels = probe.channels()
    samples: dict[str, dict[str, list[int | float]]] = {
        c.id: {"t_ns": [], "value": [], "source_t_ns": []} for c in channels
    }
    problems = probe.problems()
    temperatures: list[dict[str, float]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if read_temperatures:
            temperatures.append(probe.temperatures_c(time.time_ns()))
        for block in probe.read(time.time_ns()):
            got = samples[block.channel]
            got["t_ns"] += block.t_ns.tolist()
            got["value"] += block.value.tolist()
            if block.source_t_ns is not None:
                got["source_t_ns"] += block.source_t_ns.tolist()
        problems += probe.problems()
        time.sleep(probe.poll_interval_s)
    probe.close()
    out.update(
        poll_interval_s=probe.poll_interval_s,
        learned_ns={str(k): v for k, v in probe.learn_report.items()},
        channels=[c.to_json() for c in channels],
        samples=samples,
        problems=problems,
        temperatures=temperatures,
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
