"""Accuracy against ground truth: energy and J/unit error, and coverage of the 95 % uncertainty.

Two parts, both against the exact energy of a ``probes/sim`` waveform (``Waveform.energy_j``):

- **in-process**: ``powerd.integrate.integrate`` on samples of each waveform (constant, square
  pulses of 1 ms to 10 s, a sawtooth ramp, random pulses, two with Gaussian noise, and two
  "phase-locked" ones) at 100 Hz, 1 kHz and 10 kHz, over many randomly placed windows of 10×,
  100× and 1000× the sample period (each length drawn uniformly in [m, 2m) periods). Samples are
  the sim probe's values (``Waveform.power_w`` plus ``gaussian_noise`` per sample index and seed)
  on a grid shifted by a random fraction of a period per trial (the sim probe's own grid starts
  at the epoch like the waveform). Periods are not multiples of the sample period (pulses have
  duty 0.4173), except in the phase-locked rows, where every edge sits at the same point of its
  sample interval. Random pulses are a telegraph signal (2/10 W, Poisson edges, mean 50 ms apart),
  a new realisation per window, its exact energy summed piece by piece.
- **end to end**: ``powerd measure`` reading a meter simulator (``powerd sim ina2xx`` at 1 kHz,
  ``powerd sim wt310`` at 10 Hz) over a pseudo-terminal, with a workload that marks phases of
  random length through the HTTP API (``powerd.client``); each phase's truth is the waveform's
  energy over the phase's ``t_begin_ns``/``t_end_ns``. The uncertainty terms are recomputed from
  the run's store with the same code (``integrate`` on the stored samples and marker windows).
  Each run's simulator reads with its own instrument error (``error_seed``: a per-run gain and
  offset drawn with the meter's datasheet bound as their 95 % bound), so coverage is counted over
  the phases of several runs.

Coverage is the fraction of trials with |energy − truth| <= uncertainty_j (plus 1e-9 relative for
float rounding). Where it is far from 95 %, the table's "largest term" column and the per-term
shares in bench/results/accuracy.json say which term of ``terms_j`` drives it. j_per_unit is
energy / count in ``powerd/results.py``, so in-process its relative error and coverage are the
energy's; end to end it is read from the result JSON and checked against truth / count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import benchlib
import numpy as np

from powerd.channel import Accuracy, Channel
from powerd.integrate import Window, combined_u95_j, integrate
from powerd.probes.sim.waveform import SimSpec, gaussian_noise, parse_spec

NAME = "accuracy"
GOAL_ERR = 0.1  # %, on phases >= 10 sample periods
GOAL_COV = (90.0, 99.0)  # %
TELEGRAPH = "telegraph"  # not a sim shape: random 2/10 W pulses, exact energy computed here
TELEGRAPH_MEAN_S = 0.05
MIN_COVERAGE_N = 20  # fewer non-trivial windows: coverage not stated
EPOCH_NS = 1_800_000_000_000_000_000  # windows sit at today's epoch offsets
RATES = (100, 1000, 10_000)
MULTS = (10, 100, 1000)
# Pulse periods are pulse / 0.4173 (duty 0.4173), so the edges drift across the sample grid as a
# workload's do on a free-running meter clock; the two "phase-locked" rows have periods that are
# exact multiples of every sample period, so each edge sits at the same point of its interval.
DUTY = 0.4173
CASES = (
    ("constant 5 W", "constant,w=5"),
    *(
        (f"square {name} pulses", f"square,high=10,low=2,period={w / DUTY!r},duty={DUTY}")
        for name, w in (
            ("1 ms", 1e-3),
            ("10 ms", 1e-2),
            ("100 ms", 0.1),
            ("1 s", 1.0),
            ("10 s", 10.0),
        )
    ),
    ("ramp 1.0137 s sawtooth", "ramp,low=2,high=10,period=1.0137"),
    ("random pulses (Poisson edges, mean 50 ms)", TELEGRAPH),
    ("constant 5 W + 0.5 W noise", "constant,w=5,noise=0.5"),
    (
        "square 100 ms + 0.5 W noise",
        f"square,high=10,low=2,period={0.1 / DUTY!r},duty={DUTY},noise=0.5",
    ),
    ("phase-locked: square 100 ms, period 200 ms", "square,high=10,low=2,period=0.2,duty=0.5"),
    ("phase-locked: ramp 1 s sawtooth", "ramp,low=2,high=10,period=1"),
)
QUICK_CASES = (CASES[0], CASES[3], CASES[7], CASES[9])
# Waveforms the model was not tuned on (issue 14: coverage is re-checked "on other waveforms"):
# pulse widths that are not whole sample periods, periods that are whole (phase-locked) or half
# sample periods, other duties and levels, noise, sawtooths of other periods. Shown in their own
# table, at the rates where they are resolved; not counted in the verdict above.
OTHER_CASES = (
    ("square 1.23 ms, duty 0.4173", "square,high=10,low=2,period=0.002947,duty=0.4173", (10_000,)),
    ("square 12.3 ms, duty 0.4173", "square,high=10,low=2,period=0.02947,duty=0.4173", (1000,)),
    ("square 124 ms, duty 0.4173", "square,high=10,low=2,period=0.2971,duty=0.4173", (100,)),
    (
        "square 1/7 W, period 37.1 ms, duty 0.33",
        "square,high=7,low=1,period=0.0371,duty=0.33",
        (1000, 10_000),
    ),
    (
        "square period 24.5 ms (½ sample at 1 kHz), duty 0.5",
        "square,high=10,low=2,period=0.0245,duty=0.5",
        (1000,),
    ),
    (
        "square 3/12 W, period 333 ms, duty 0.25",
        "square,high=12,low=3,period=0.333,duty=0.25",
        (100, 1000),
    ),
    (
        "square 51.3 ms, duty 0.61 + 0.3 W noise",
        "square,high=10,low=2,period=0.0513,duty=0.61,noise=0.3",
        (1000,),
    ),
    ("ramp 377.1 ms sawtooth", "ramp,low=2,high=10,period=0.3771", (1000,)),
    ("ramp 2.71 s sawtooth", "ramp,low=1,high=9,period=2.71", (100,)),
)
METERS = {
    # name: (simulator model, sim options, probe spec suffix, waveform, phase range s, phases)
    "ina2xx": (
        "ina2xx",
        ["rate=1000"],
        "rate=1000",
        "square,high=10,low=2,period=0.2,duty=0.3",
        (0.02, 2.0),
    ),
    "wt300": (
        "wt310",
        ["rate=0.1", "vrange=15", "irange=5"],
        "rate=0.1,vrange=15,irange=5",
        "square,high=40,low=5,period=2,duty=0.5",
        (1.0, 6.0),
    ),
}
# End to end: (runs, phases per run); each run draws its own instrument error (error_seed = run).
# Coverage of a 95 % interval over N drawn meters: with 8, a right U leaves ~0.4 meters uncovered
# and the figure is 100 % most of the time; 32 draws resolve 90-99 % (binomial sd ~4 %).
E2E_RUNS = {"ina2xx": (32, 4), "wt300": (32, 3)}
WORKLOAD = r"""
import random, sys, time
from powerd.client import PowerdClient
lo, hi, n, seed = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
client = PowerdClient()
time.sleep(0.3)
for i in range(n):
    with client.phase("p", trial=i, unit="inference") as ph:
        time.sleep(lo * (hi / lo) ** rng.random())
        ph.count = 100
    time.sleep(rng.uniform(0.0, 0.2))
time.sleep(0.3)
"""


def covered(err_j: float, unc_j: float, truth_j: float) -> bool:
    return abs(err_j) <= unc_j + 1e-9 * abs(truth_j)


def pulse_s(spec: SimSpec) -> float | None:
    wf = spec.waveform
    if wf.shape != "square":
        return None
    return min(wf.high_ns, wf.period_ns - wf.high_ns) / 1e9


class Telegraph:
    """Random pulses: edges of a Poisson process (mean spacing ``mean_s``), levels 2 W and 10 W."""

    def __init__(self, a: int, b: int, mean_s: float, rng: np.random.Generator) -> None:
        mean_ns = mean_s * 1e9
        span = b - a + 2 * 10**9
        n = int(span / mean_ns * 1.5) + 20
        start = a - 10**9 - int(rng.exponential(mean_ns))
        self.edges = start + np.cumsum(rng.exponential(mean_ns, n)).astype(np.int64)
        self.first = int(rng.integers(0, 2))

    def power_w(self, t: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.edges, t, "right")
        return np.where((i + self.first) % 2 == 0, 2.0, 10.0)

    def energy_j(self, a: int, b: int) -> float:
        inner = self.edges[(self.edges > a) & (self.edges < b)]
        pts = np.concatenate([[a], inner, [b]]).astype(np.int64)
        mids = pts[:-1] + np.diff(pts) // 2
        return float(np.dot(self.power_w(mids), np.diff(pts).astype(np.float64)) / 1e9)


def trial_windows(
    spec: SimSpec | None, step: int, mult: int, n: int, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """``n`` random windows of ``mult``..2×``mult`` sample periods; each one's figures and truth.

    ``spec`` None: random pulses (``Telegraph``), a new realisation per window.
    """
    ch = Channel(id="sim:x", kind="power", source_class="meter", nominal_period_s=step / 1e9)
    out = []
    for _ in range(n):
        a = EPOCH_NS + int(rng.integers(0, 10**13))
        b = a + int(mult * step * rng.uniform(1.0, 2.0))
        shift = int(rng.integers(0, step))  # grid offset against the waveform
        k = np.arange((a - shift) // step - 1, (b - shift) // step + 2, dtype=np.int64)
        t = k * step + shift
        wf: Any = spec.waveform if spec is not None else Telegraph(a, b, TELEGRAPH_MEAN_S, rng)
        v = wf.power_w(t)
        if spec is not None and spec.noise_w:
            v = v + spec.noise_w * gaussian_noise(k, int(rng.integers(0, 2**31)))
        ce = integrate(t, v, Window(a, b), ch)
        truth = wf.energy_j(a, b)
        assert ce.energy_j is not None and ce.uncertainty_j is not None
        err = ce.energy_j - truth
        out.append(
            {
                "err_rel": err / truth,
                "unc_rel": ce.uncertainty_j / truth,
                "covered": covered(err, ce.uncertainty_j, truth),
                "trivial": abs(err) < 1e-9 * truth and ce.uncertainty_j < 1e-9 * truth,
                "terms_rel": {k_: v_ / truth for k_, v_ in ce.terms_j.items()},
            }
        )
    return out


def summarise(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Error over all windows; coverage over the non-trivial ones (some error or uncertainty:
    a window with neither, e.g. inside one flat pulse, has nothing to cover)."""
    err = np.abs([t["err_rel"] for t in trials]) * 100
    unc = np.array([t["unc_rel"] for t in trials]) * 100
    live = [t for t in trials if not t["trivial"]]
    terms: dict[str, float] = {}
    for t in live:
        tot = sum(x * x for x in t["terms_rel"].values()) or 1.0
        for k, x in t["terms_rel"].items():
            terms[k] = terms.get(k, 0.0) + x * x / tot / len(live)
    ratio = [abs(t["err_rel"]) / t["unc_rel"] for t in live if t["unc_rel"] > 0]
    return {
        "n": len(trials),
        "n_nontrivial": len(live),
        "median_err_pct": float(np.median(err)),
        "p95_err_pct": float(np.percentile(err, 95)),
        "max_err_pct": float(err.max()),
        "median_unc_pct": float(np.median(unc)),
        "coverage_pct": (
            100.0 * float(np.mean([t["covered"] for t in live]))
            if len(live) >= MIN_COVERAGE_N
            else None
        ),
        "p95_err_over_unc": float(np.percentile(ratio, 95)) if ratio else None,
        "term_share": {k: v for k, v in terms.items() if v > 0.005},
    }


def in_process(
    quick: bool, seed: int = 8, cases: tuple[tuple[str, str, tuple[int, ...]], ...] | None = None
) -> list[dict[str, Any]]:
    """The in-process cells: ``cases`` (label, spec, rates), or the main table's."""
    rng = np.random.default_rng(seed)
    n = 40 if quick else 400
    rows = []
    if cases is None:
        rates = (1000,) if quick else RATES
        cases = tuple((label, base, rates) for label, base in (QUICK_CASES if quick else CASES))
    for label, base, case_rates in cases:
        for rate in case_rates:
            step = round(1e9 / rate)
            spec = None if base == TELEGRAPH else parse_spec(f"{base},rate={rate}")
            pulse = None if spec is None else pulse_s(spec)
            unresolved = pulse is not None and pulse < 2 * step / 1e9
            cells = {}
            for mult in (10, 100) if quick else MULTS:
                cells[mult] = summarise(trial_windows(spec, step, mult, n, rng))
            rows.append(
                {
                    "case": label,
                    "spec": base if spec is None else f"{base},rate={rate}",
                    "rate_hz": rate,
                    "unresolved": unresolved,
                    "cells": cells,
                }
            )
    return rows


# ---- end to end ---------------------------------------------------------------------------------


def wait_for(path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear")
        time.sleep(0.02)


def e2e_meter(name: str, n_phases: int, tmp: Path, seed: int, error_seed: int) -> dict[str, Any]:
    """One ``powerd measure`` run against a simulator whose readings carry the instrument error
    drawn for ``error_seed`` (a per-run gain and offset within the datasheet bound)."""
    from powerd.phases import replay
    from powerd.store import Store

    model, sim_opts, probe_opts, wave, (lo, hi) = METERS[name]
    sim_opts = [*sim_opts, f"error_seed={error_seed}"]
    tmp = tmp / f"{name}-run-{error_seed}"
    tmp.mkdir()
    link = tmp / f"{name}-link"
    state = tmp / f"{name}-state"
    out = tmp / f"{name}-out"
    wl = tmp / "workload.py"
    wl.write_text(WORKLOAD)
    py = sys.executable
    sim_cmd = [py, "-m", "powerd", "sim", model, "--link", str(link), "--waveform", wave]
    for o in sim_opts:
        sim_cmd += ["--option", o]
    env = {k: v for k, v in os.environ.items() if k != "POWERD_STATE_DIR"}
    sim = subprocess.Popen(
        sim_cmd, cwd=benchlib.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for(link, 20)
        run = f"acc-{name}"
        cmd = [
            py,
            "-m",
            "powerd",
            "--state-dir",
            str(state),
            "measure",
            "--probe",
            f"{name}:{link},{probe_opts}",
            "--run",
            run,
            "--out",
            str(out),
            "--quiet",
            "--",
            py,
            str(wl),
            str(lo),
            str(hi),
            str(n_phases),
            str(seed),
        ]
        t0 = time.perf_counter()
        r = subprocess.run(
            cmd, cwd=benchlib.ROOT, env=env, capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"powerd measure failed: {r.stderr[-1500:]}")
    finally:
        sim.terminate()
        sim.wait(10)
    result = json.loads((out / f"{run}.json").read_text())
    wf = parse_spec(wave).waveform
    store = Store(state / "powerd.db")
    try:
        phases = {(p.phase, p.trial): p for p in replay(store.markers(run))[0]}
        chans = store.channels()
        trials = []
        for entry in result["phases"]:
            if entry["phase"] != "p" or entry["energy_j"] is None:
                continue
            ph = phases[("p", entry["trial"])]
            w = Window(ph.t_begin_ns, ph.t_end_ns, ph.begin.uncertainty_ns, ph.end.uncertainty_ns)
            prim = [c for c, e in entry["channels"].items() if e.get("primary")]
            terms: dict[str, float] = {}
            no_instr = []  # the same figures with the instrument term left out
            for c in prim:
                samples = store.samples(c, w.t_begin_ns, w.t_end_ns)
                ce = integrate(*samples, w, chans[c])
                for k, x in ce.terms_j.items():
                    terms[k] = terms.get(k, 0.0) + x * x
                no_instr.append(integrate(*samples, w, replace(chans[c], accuracy=Accuracy())))
            terms = {k: float(np.sqrt(x)) for k, x in terms.items()}
            truth = wf.energy_j(entry["t_begin_ns"], entry["t_end_ns"])
            err = entry["energy_j"] - truth
            unc_no_instr = combined_u95_j(no_instr)
            jpu_truth = truth / entry["count"]
            trials.append(
                {
                    "duration_s": entry["duration_s"],
                    "primary": prim,
                    "flags": entry["flags"],
                    "truth_j": truth,
                    "energy_j": entry["energy_j"],
                    "uncertainty_j": entry["uncertainty_j"],
                    "err_rel": err / truth,
                    "jpu_err_rel": (entry["j_per_unit"] - jpu_truth) / jpu_truth,
                    "jpu_covered": covered(
                        entry["j_per_unit"] - jpu_truth,
                        entry["uncertainty_j"] / entry["count"],
                        jpu_truth,
                    ),
                    "covered": covered(err, entry["uncertainty_j"], truth),
                    "covered_no_instrument": covered(err, unc_no_instr, truth),
                    "unc_no_instrument_rel": unc_no_instr / truth,
                    "unc_rel": entry["uncertainty_j"] / truth,
                    "terms_rel": {k: x / truth for k, x in terms.items()},
                }
            )
    finally:
        store.close()
    return {
        "meter": name,
        "simulator": model,
        "waveform": wave,
        "probe": f"{name}:<pty>,{probe_opts}",
        "phase_range_s": [lo, hi],
        "measure_wall_s": wall,
        "trials": trials,
    }


def e2e_summary(m: dict[str, Any]) -> dict[str, Any]:
    tr = m["trials"]
    err = np.abs([t["err_rel"] for t in tr]) * 100
    jerr = np.abs([t["jpu_err_rel"] for t in tr]) * 100
    share: dict[str, float] = {}
    for t in tr:
        tot = sum(x * x for x in t["terms_rel"].values()) or 1.0
        for k, x in t["terms_rel"].items():
            share[k] = share.get(k, 0.0) + x * x / tot / len(tr)
    return {
        "n": len(tr),
        "median_err_pct": float(np.median(err)),
        "p95_err_pct": float(np.percentile(err, 95)),
        "max_err_pct": float(err.max()),
        "median_jpu_err_pct": float(np.median(jerr)),
        "median_unc_pct": float(np.median([t["unc_rel"] for t in tr])) * 100,
        "coverage_pct": 100.0 * float(np.mean([t["covered"] for t in tr])),
        "jpu_coverage_pct": 100.0 * float(np.mean([t["jpu_covered"] for t in tr])),
        "coverage_no_instrument_pct": 100.0
        * float(np.mean([t["covered_no_instrument"] for t in tr])),
        "p95_err_over_unc_no_instrument": float(
            np.percentile(
                [abs(t["err_rel"]) / max(t["unc_no_instrument_rel"], 1e-300) for t in tr], 95
            )
        ),
        "term_share": {k: v for k, v in share.items() if v > 0.005},
    }


# ---- report -------------------------------------------------------------------------------------


def fmt_pct(x: float | None) -> str:
    if x is None:
        return "exact"
    if x == 0:
        return "0"
    return f"{x:.2g}" if x < 10 else f"{x:.0f}"


def fmt_cov(c: dict[str, Any]) -> str:
    cov = c["coverage_pct"]
    if cov is None:
        return f"({c['n_nontrivial']})" if c["n_nontrivial"] else "exact"
    s = f"{cov:.0f}"
    return s if GOAL_COV[0] <= cov <= GOAL_COV[1] else f"**{s}**"


def largest_term(cells: dict[int, dict[str, Any]]) -> str:
    share: dict[str, float] = {}
    for c in cells.values():
        for k, v in c["term_share"].items():
            share[k] = share.get(k, 0.0) + v / len(cells)
    if not share:
        return "-"
    k = max(share, key=lambda x: share[x])
    return f"{k} ({share[k] * 100:.0f} %)"


def in_process_table(rows: list[dict[str, Any]]) -> str:
    mults = list(rows[0]["cells"])
    head = ["waveform", "rate"]
    head += [f"p95 \\|err\\| % @{m}×" for m in mults]
    head += [f"coverage % @{m}×" for m in mults]
    head += ["largest term (share of U²)"]
    out = []
    for r in rows:
        name = r["case"] + (" — unresolved: pulse < 2 samples" if r["unresolved"] else "")
        cells = r["cells"]
        out.append(
            [name, benchlib.si(r["rate_hz"], "Hz")]
            + [fmt_pct(cells[m]["p95_err_pct"]) for m in mults]
            + [fmt_cov(cells[m]) for m in mults]
            + [largest_term(cells)]
        )
    return benchlib.md_table(head, out, "l" + "r" * (len(head) - 2) + "l")


def e2e_table(ms: list[dict[str, Any]]) -> str:
    head = [
        "meter (simulator)",
        "waveform",
        "phases",
        "median \\|err\\| %",
        "p95 \\|err\\| %",
        "median \\|err\\| J/unit %",
        "median U %",
        "coverage % (U as published)",
        "coverage % (U without instrument term)",
        "p95 \\|err\\| ÷ U without instrument",
        "largest term",
    ]
    rows = []
    for m in ms:
        s = m["summary"]
        share = s["term_share"]
        big = max(share, key=lambda k: share[k]) if share else "-"
        rows.append(
            [
                f"{m['meter']} (`powerd sim {m['simulator']}`)",
                f"`{m['waveform']}`",
                s["n"],
                f"{s['median_err_pct']:.3g}",
                f"{s['p95_err_pct']:.3g}",
                f"{s['median_jpu_err_pct']:.3g}",
                f"{s['median_unc_pct']:.2g}",
                f"{s['coverage_pct']:.0f}",
                f"{s['coverage_no_instrument_pct']:.0f}",
                f"{s['p95_err_over_unc_no_instrument']:.2g}",
                f"{big} ({share.get(big, 0) * 100:.0f} %)" if share else "-",
            ]
        )
    return benchlib.md_table(head, rows, "ll" + "r" * 8 + "l")


def other_counts(rows: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(cells with coverage within the goal, with a stated coverage, below the goal)."""
    covs = [c["coverage_pct"] for r in rows for c in r["cells"].values()]
    stated = [c for c in covs if c is not None]
    ok = sum(1 for c in stated if GOAL_COV[0] <= c <= GOAL_COV[1])
    return ok, len(stated), sum(1 for c in stated if c < GOAL_COV[0])


def verdicts(rows: list[dict[str, Any]], ms: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Energy goal on resolved waveforms; coverage goal on non-exact, resolved cells."""
    err_fail, cov_low, cov_high, cov_ok = [], [], [], 0
    for r in rows:
        if r["unresolved"]:
            continue
        for m, c in r["cells"].items():
            tag = f"{r['case']} @{benchlib.si(r['rate_hz'], 'Hz')}, {m}×"
            if c["p95_err_pct"] > GOAL_ERR:
                err_fail.append(tag)
            cov = c["coverage_pct"]
            if cov is None:
                continue
            if cov < GOAL_COV[0]:
                cov_low.append(tag)
            elif cov > GOAL_COV[1]:
                cov_high.append(tag)
            else:
                cov_ok += 1
    n_cells = sum(len(r["cells"]) for r in rows if not r["unresolved"])
    parts = [
        f"in-process energy error (p95) <= {GOAL_ERR} % in {n_cells - len(err_fail)} of "
        f"{n_cells} resolved cells"
        + (
            f" (not met in {len(err_fail)}: waveforms with edges or noise, see the table)"
            if err_fail
            else " (met)"
        ),
        f"coverage within {GOAL_COV[0]:.0f}–{GOAL_COV[1]:.0f} % in {cov_ok} cells, above in "
        f"{len(cov_high)}, below in {len(cov_low)}",
    ]
    for m in ms:
        s = m["summary"]
        parts.append(
            f"{m['meter']} end to end: median error {s['median_err_pct']:.2g} %, coverage "
            f"{s['coverage_pct']:.0f} % ({s['coverage_no_instrument_pct']:.0f} % without the "
            "instrument term)"
        )
    detail = {"err_fail": err_fail, "cov_low": cov_low, "cov_high": cov_high, "cov_ok": cov_ok}
    return "; ".join(parts) + ".", detail


def plot(rows: list[dict[str, Any]], ms: list[dict[str, Any]], quick: bool) -> str | None:
    plt = benchlib.pyplot()
    if plt is None:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    floor = 1e-6
    for r in rows:
        if r["unresolved"] or r["rate_hz"] != 1000:
            continue
        xs = list(r["cells"])
        ax1.plot(
            xs,
            [max(r["cells"][m]["p95_err_pct"], floor) for m in xs],
            marker="o",
            label=r["case"],
        )
    ax1.axhline(GOAL_ERR, color="k", ls="--", lw=1, label=f"goal {GOAL_ERR} %")
    ax1.set(
        xscale="log",
        yscale="log",
        ylim=(floor / 2, 50),
        xlabel="window length (sample periods)",
        ylabel=f"p95 |energy error| (%), floor {floor:g}",
        title="in-process, 1 kHz samples",
    )
    ax1.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    covs = []
    for r in rows:
        if r["unresolved"]:
            continue
        covs += [c["coverage_pct"] for c in r["cells"].values() if c["coverage_pct"] is not None]
    for m in ms:
        covs.append(m["summary"]["coverage_pct"])
        covs.append(m["summary"]["coverage_no_instrument_pct"])
    ax2.hist(covs, bins=np.arange(0, 102.5, 2.5), color="tab:blue")
    ax2.axvspan(*GOAL_COV, color="tab:green", alpha=0.2, label="goal 90–99 %")
    ax2.set(
        xlabel="coverage of the 95 % interval (%)",
        ylabel="cells",
        title=f"coverage per cell (in-process and end to end, {len(covs)} cells)",
    )
    ax2.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return benchlib.save_plot(fig, NAME, quick)


def main() -> int:
    p = benchlib.parser(__doc__.splitlines()[0])
    p.add_argument("--no-e2e", action="store_true", help="in-process part only")
    args = p.parse_args()
    setup = benchlib.single_core(args.cpu)
    data = benchlib.envelope(NAME, args.quick, setup)
    data["uptime_before"] = benchlib.uptime()
    data["goal"] = (
        f"energy error <= {GOAL_ERR} % on phases >= 10× the sample period; coverage of the "
        f"95 % interval between {GOAL_COV[0]:.0f} % and {GOAL_COV[1]:.0f} %"
    )
    t0 = time.perf_counter()
    rows = in_process(args.quick)
    other = [] if args.quick else in_process(False, seed=9, cases=OTHER_CASES)
    t_in = time.perf_counter() - t0
    ms: list[dict[str, Any]] = []
    if not args.no_e2e:
        with tempfile.TemporaryDirectory(prefix="powerd-bench-acc-") as tmp:
            for i, name in enumerate(METERS):
                if args.quick and name != "ina2xx":
                    continue  # quick: one meter, a few phases
                runs, n = E2E_RUNS[name] if not args.quick else (2, 3)
                parts = [
                    e2e_meter(name, n, Path(tmp), seed=100 + i + 10 * r, error_seed=r + 1)
                    for r in range(runs)
                ]
                m = {**parts[0], "runs": runs, "error_seeds": [r + 1 for r in range(runs)]}
                m["trials"] = [t for part in parts for t in part["trials"]]
                m["measure_wall_s"] = sum(part["measure_wall_s"] for part in parts)
                m["summary"] = e2e_summary(m)
                ms.append(m)
    data["in_process"] = rows
    data["in_process_other"] = other
    data["end_to_end"] = ms
    data["verdict"], data["verdict_detail"] = verdicts(rows, ms)
    if other:
        ok, cells, low = other_counts(other)
        data["verdict"] = (
            data["verdict"].rstrip(".") + f"; other waveforms: coverage within 90–99 % in {ok} "
            f"of {cells} cells, below in {low}."
        )
    data["plot"] = plot(rows, ms, args.quick)
    data["load_after"] = benchlib.load()
    data["uptime_after"] = benchlib.uptime()
    data["elapsed_s"] = time.perf_counter() - t0
    data["in_process_s"] = t_in
    trials = sum(c["n"] for r in rows for c in r["cells"].values())
    md = [
        f"**In-process** ({trials} windows, {t_in:.0f} s): p95 of |energy − truth| / truth and "
        "coverage (fraction of windows whose ±uncertainty_j contains the truth) per window length "
        "in sample periods. Coverage counts only windows with some error or uncertainty (a window "
        "inside one flat pulse has neither); *(n)*: fewer than 20 such windows, *exact*: none. "
        "**Bold**: coverage outside 90–99 %.",
        "",
        in_process_table(rows),
    ]
    if other:
        ok, cells, low = other_counts(other)
        md += [
            "",
            "**Other waveforms** (`OTHER_CASES`, not counted in the verdict's cells; the model "
            f"was not tuned on them): coverage within 90–99 % in {ok} of {cells} cells, below "
            f"90 % in {low}.",
            "",
            in_process_table(other),
        ]
    if ms:
        md += [
            "",
            "**End to end** (`powerd measure` reading a meter simulator over a pty; phases marked "
            "by the workload through the HTTP API). Each run's simulator draws its own instrument "
            "error (`--option error_seed=N`: a gain and an offset drawn with the datasheet bound "
            "as their 95 % bound, "
            "`probes/sim/insterror.py`), so the instrument term has an error to cover; coverage "
            "is shown with and without it, over all phases of all runs "
            "(" + ", ".join(f"{m['meter']}: {m['runs']} runs" for m in ms) + ").",
            "",
            e2e_table(ms),
        ]
    if data["plot"]:
        md += ["", f"![accuracy]({data['plot']})"]
    data["markdown"] = "\n".join(md)
    path = benchlib.write_result(NAME, args.quick, args.out, data)
    print(data["markdown"])
    print(f"\n{data['verdict']}\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
