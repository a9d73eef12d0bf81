"""A LoadGen-driven dummy workload for power-dev's client.py `-w`.

Why: power-dev's client runs the workload twice (ranging, testing) and then looks for a real
`mlperf_log_detail.txt` (with LoadGen's UTC `power_begin`/`power_end` stamps strictly inside the
workload's own run time) under its `-L` directory. This runs MLCommons LoadGen itself
(`mlcommons-loadgen` from PyPI) against a small dummy SUT for a few seconds, so the logs are the
genuine article, not a mock: LoadGen writes mlperf_log_detail.txt, _summary.txt, _trace.json and
_accuracy.json into --outdir. The SUT answers each query from a worker thread after a short busy
spin (so the host actually does some work and the power draw is not pure idle on real meters).
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import time

import mlperf_loadgen as lg  # type: ignore[import-not-found,unused-ignore]

SCENARIOS = {
    "SingleStream": lg.TestScenario.SingleStream,
    "Offline": lg.TestScenario.Offline,
    "Server": lg.TestScenario.Server,
}


def busy_s(duration_s: float) -> None:
    """Spin the CPU for duration_s seconds (the dummy SUT's 'inference')."""
    end_s = time.perf_counter() + duration_s
    while time.perf_counter() < end_s:
        pass


def run(outdir: str, scenario: str, duration_s: float, work_s: float) -> None:
    """Run one LoadGen PerformanceOnly test of at least duration_s s, its logs into outdir."""
    os.makedirs(outdir, exist_ok=True)
    work: queue.Queue[list[int] | None] = queue.Queue()

    def worker() -> None:
        while True:
            ids = work.get()
            if ids is None:
                return
            for qid in ids:
                busy_s(work_s)
                lg.QuerySamplesComplete([lg.QuerySampleResponse(qid, 0, 0)])

    thread = threading.Thread(target=worker, name="dummy-sut", daemon=True)
    thread.start()

    def issue(samples: list[lg.QuerySample]) -> None:
        work.put([s.id for s in samples])

    def flush() -> None:
        return None

    sut = lg.ConstructSUT(issue, flush)
    qsl = lg.ConstructQSL(1024, 1024, lambda _s: None, lambda _s: None)
    settings = lg.TestSettings()
    settings.scenario = SCENARIOS[scenario]
    settings.mode = lg.TestMode.PerformanceOnly
    rate_qps = 1.0 / work_s
    settings.min_duration_ms = int(duration_s * 1000)
    settings.min_query_count = 1
    # Offline issues one query of expected_qps * duration samples; the others issue per query.
    settings.offline_expected_qps = rate_qps
    settings.server_target_qps = rate_qps * 0.5
    settings.single_stream_expected_latency_ns = int(work_s * 1e9)
    log = lg.LogSettings()
    log.log_output.outdir = outdir
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    lg.StartTestWithLogSettings(sut, qsl, settings, log)
    work.put(None)
    thread.join()
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run LoadGen, print the power window and count LoadGen logged."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--outdir", required=True, help="where LoadGen writes its logs (under client.py's -L)"
    )
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default="Offline")
    ap.add_argument("--duration-s", type=float, default=5.0, help="LoadGen min_duration")
    ap.add_argument("--work-s", type=float, default=0.002, help="busy time per sample")
    args = ap.parse_args(argv)
    run(args.outdir, args.scenario, args.duration_s, args.work_s)
    detail = os.path.join(args.outdir, "mlperf_log_detail.txt")
    with open(detail, encoding="utf-8") as f:
        for line in f:
            if '"power_begin"' in line or '"power_end"' in line or '"result_query_count"' in line:
                print(line.strip()[:120], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
