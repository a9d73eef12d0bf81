"""A tiny SUT and QSL for MLCommons LoadGen: every query is answered after ``--latency-ms``.

Run as ``python loadgen_sut.py SCENARIO OUTDIR [--mode performance|accuracy]``: LoadGen then runs
its test for about ``--min-duration-ms`` and writes its real logs (mlperf_log_detail.txt, …) into
OUTDIR. Used by the loadgen tests as the workload ``powerd measure`` measures.
"""

from __future__ import annotations

import argparse
import threading
import time

import mlperf_loadgen as lg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["SingleStream", "Offline"])
    ap.add_argument("outdir")
    ap.add_argument("--mode", choices=["performance", "accuracy"], default="performance")
    ap.add_argument("--latency-ms", type=float, default=2.0)
    ap.add_argument("--min-duration-ms", type=int, default=300)
    args = ap.parse_args()
    latency_s = args.latency_ms / 1000

    def issue(samples: list[lg.QuerySample]) -> None:
        def answer() -> None:
            time.sleep(latency_s)
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples])

        threading.Thread(target=answer).start()

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(16, 16, lambda idx: None, lambda idx: None)
    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, args.scenario)
    settings.mode = (
        lg.TestMode.PerformanceOnly if args.mode == "performance" else lg.TestMode.AccuracyOnly
    )
    settings.min_duration_ms = args.min_duration_ms
    settings.min_query_count = 10
    settings.single_stream_expected_latency_ns = int(latency_s * 1e9)
    settings.offline_expected_qps = 2000
    log = lg.LogSettings()
    log.log_output.outdir = args.outdir
    log.log_output.copy_summary_to_stdout = False
    lg.StartTestWithLogSettings(sut, qsl, settings, log)
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)


if __name__ == "__main__":
    main()
