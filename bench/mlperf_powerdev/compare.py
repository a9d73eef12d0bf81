"""Compare power-dev's session output (spl.txt samples, marks, LoadGen windows) with powerd's.

Why: issue 13 asks that "the samples and marks agree with powerd's own result for the same run".
power-dev keeps only the face's 1 Hz means (`ranging/spl.txt`, `run_1/spl.txt`, each line carrying
the mark of its Go); powerd keeps the full-rate samples and turns each Go/Stop into a phase named
after the mark. This reads both and lines them up per mark: window edges (first/last 1 Hz stamp vs
the phase's t_begin/t_end), sample count, mean power (mean of the 1 Hz means vs powerd's integrated
mean), and MLPerf's own figure (mean of the samples strictly inside LoadGen's power_begin/power_end,
W > 0, as compliance and the submission checker compute it).
"""

from __future__ import annotations

import json
import re
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STAMP_RE = re.compile(r"(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d\.\d+)")


def parse_stamp_ns(text: str) -> int:
    """MM-DD-YYYY HH:MM:SS.fff (UTC, as PTD and LoadGen write it) to Unix ns."""
    dt = datetime.strptime(text, "%m-%d-%Y %H:%M:%S.%f").replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000) * 1000


def read_spl(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Read a spl.txt into {mark: [(t_ns, watts), ...]}."""
    out: dict[str, list[tuple[int, float]]] = {}
    for line in path.read_text().splitlines():
        f = line.strip().split(",")
        if len(f) < 12 or f[0] != "Time":
            continue
        out.setdefault(f[11], []).append((parse_stamp_ns(f[1]), float(f[3])))
    return out


def read_loadgen_window(path: Path) -> tuple[int, int] | None:
    """(power_begin_ns, power_end_ns) from a LoadGen mlperf_log_detail.txt, or None."""
    begin = end = None
    for line in path.read_text().splitlines():
        if '"power_begin"' in line or '"power_end"' in line:
            m = STAMP_RE.search(line)
            if m:
                if '"power_begin"' in line:
                    begin = parse_stamp_ns(m.group(1))
                else:
                    end = parse_stamp_ns(m.group(1))
    return (begin, end) if begin is not None and end is not None else None


def store_check(session_dir: Path, state_dir: Path) -> list[dict[str, Any]]:
    """Recompute every spl.txt 1 Hz sample from the full-rate samples powerd-ptd stored.

    Each spl line is the mean of the probe's native samples stamped in [t - 1 s, t); this takes
    them from powerd's store and reports, per mark, the largest |spl W - store mean W|, the native
    sample count behind the 1 Hz samples, and the store's mean over the span the spl samples cover
    (so the spl mean and powerd's mean are compared over the same time).
    """
    import numpy as np

    from powerd.store import Store

    store = Store(state_dir / "powerd.db")
    try:
        power = [name for name, ch in store.channels().items() if ch.kind == "power"]
        rows: list[dict[str, Any]] = []
        for sub in ("ranging", "run_1"):
            spl_path = session_dir / sub / "spl.txt"
            if not spl_path.is_file():
                continue
            for mark, samples in read_spl(spl_path).items():
                t0_ns, t1_ns = samples[0][0] - 1_000_000_000, samples[-1][0]
                row: dict[str, Any] = {"mark": mark, "channels": power}
                if len(power) != 1:
                    rows.append(row)
                    continue
                t, v = store.samples(power[0], t0_ns, t1_ns)
                diffs, native, invalid = [], 0, 0
                for t_ns, w in samples:
                    sel = v[(t >= t_ns - 1_000_000_000) & (t < t_ns)]
                    native += int(sel.size)
                    if w == -1.0:  # not valid (readings lost): powerd-ptd logs no mean
                        invalid += 1
                        continue
                    diffs.append(abs(w - float(sel.mean())) if sel.size else float("inf"))
                span = v[(t >= t0_ns) & (t < t1_ns)]
                row.update(
                    max_abs_diff_w=float(max(diffs)) if diffs else None,
                    invalid_samples=invalid,
                    native_samples=native,
                    store_mean_over_spl_span_w=round(float(np.mean(span)), 4)
                    if span.size
                    else None,
                )
                rows.append(row)
        return rows
    finally:
        store.close()


def _s(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%H:%M:%S.%f")[:-3]


def truth_w(waveform_spec: str | None, t0_ns: int, t1_ns: int) -> float | None:
    """The simulated load's exact mean power over [t0, t1] (sim and WT300 simulator run on UTC)."""
    if not waveform_spec or t1_ns <= t0_ns:
        return None
    from powerd.probes.sim.waveform import parse_spec

    wf = parse_spec(waveform_spec).waveform
    return round(wf.energy_j(t0_ns, t1_ns) / ((t1_ns - t0_ns) / 1e9), 4)


def compare(
    session_dir: Path, result: dict[str, Any], waveform: str | None = None
) -> list[dict[str, Any]]:
    """One row per mark (ranging, testing): power-dev's view beside powerd's phase of the same name.

    waveform: the simulated load's sim spec (without 'sim:'), to add the true mean power of each
    window (Go..Stop, the spl span, LoadGen's window) when the source is a simulator.
    """
    phases = {p["phase"]: p for p in result.get("phases", [])}
    rows: list[dict[str, Any]] = []
    for sub in ("ranging", "run_1"):
        spl_path = session_dir / sub / "spl.txt"
        if not spl_path.is_file():
            continue
        window = None
        detail = session_dir / sub / "mlperf_log_detail.txt"
        if detail.is_file():
            window = read_loadgen_window(detail)
        for mark, samples in read_spl(spl_path).items():
            watts = [w for _, w in samples if w != -1.0]  # -1: not valid (readings lost)
            row: dict[str, Any] = {
                "mark": mark,
                "spl_samples": len(samples),
                "spl_invalid_samples": len(samples) - len(watts),
                "spl_first": _s(samples[0][0]),
                "spl_last": _s(samples[-1][0]),
                "spl_mean_w": round(statistics.fmean(watts), 4) if watts else None,
                "truth_spl_span_w": truth_w(
                    waveform, samples[0][0] - 1_000_000_000, samples[-1][0]
                ),
            }
            if window:
                inside = [w for t, w in samples if window[0] < t < window[1] and w > 0]
                row["loadgen_begin"] = _s(window[0])
                row["loadgen_end"] = _s(window[1])
                row["mlperf_samples_inside"] = len(inside)
                row["mlperf_mean_w"] = round(statistics.fmean(inside), 4) if inside else None
                row["truth_loadgen_w"] = truth_w(waveform, window[0], window[1])
            lg_ph = phases.get(mark.rsplit("_", 1)[0] + "_loadgen_" + mark.rsplit("_", 1)[1])
            ml = (lg_ph or {}).get("mlperf") or {}
            if lg_ph is not None:
                row["loadgen_phase_energy_j"] = round(lg_ph["energy_j"], 3)
                row["loadgen_phase_uncertainty_j"] = round(lg_ph["uncertainty_j"], 3)
                row["loadgen_phase_mean_w"] = round(lg_ph["mean_power_w"], 4)
                row["powerd_mlperf_avg_w"] = ml.get("avg_power_w") and round(ml["avg_power_w"], 4)
                row["powerd_mlperf_samples"] = ml.get("sample_count")
                row["powerd_mlperf_metric"] = f"{ml.get('metric')}={ml.get('metric_value')}"
            ph = phases.get(mark)
            if ph is None:
                row["powerd_phase"] = None
            else:
                row["powerd_begin"] = _s(ph["t_begin_ns"])
                row["powerd_end"] = _s(ph["t_end_ns"])
                row["powerd_duration_s"] = round(ph["duration_s"], 3)
                row["powerd_mean_w"] = round(ph["mean_power_w"], 4)
                row["truth_phase_w"] = truth_w(waveform, ph["t_begin_ns"], ph["t_end_ns"])
                row["powerd_energy_j"] = round(ph["energy_j"], 3)
                row["powerd_uncertainty_j"] = ph.get("uncertainty_j")
                row["powerd_flags"] = ph.get("flags", [])
                row["powerd_channel_samples"] = {
                    k: c.get("samples") for k, c in ph.get("channels", {}).items()
                }
                # Edges: a 1 Hz PTD sample is stamped at the end of its 1 s interval, so the first
                # stamp should be ~1 s after Go and the last at or before Stop.
                row["first_stamp_minus_begin_s"] = round(
                    (samples[0][0] - ph["t_begin_ns"]) / 1e9, 3
                )
                row["end_minus_last_stamp_s"] = round((ph["t_end_ns"] - samples[-1][0]) / 1e9, 3)
                row["mean_w_diff_pct"] = (
                    round(100 * (row["spl_mean_w"] - ph["mean_power_w"]) / ph["mean_power_w"], 4)
                    if ph["mean_power_w"] and row["spl_mean_w"] is not None
                    else None
                )
            rows.append(row)
    return rows


def _fmt(x: Any) -> str:
    return (
        f"{x:.4g}"
        if isinstance(x, float) and abs(x) < 1e-3
        else (f"{x:.4f}".rstrip("0").rstrip(".") if isinstance(x, float) else str(x))
    )


def markdown(summary: dict[str, Any]) -> str:
    """A short markdown report of one run: the checker verdicts and the comparison table."""
    lines = [
        f"### power-dev {summary.get('power_dev_revision', '?')[:7]} against powerd-ptd "
        f"`{summary.get('device_port')}` (deviceType {summary.get('device_type')})"
        + (f", simulator `{summary['sim']}`" if summary.get("sim") else ""),
        "",
        f"session `{summary.get('session')}`, client exit {summary.get('client_exit_code')}, "
        f"{summary.get('session_wall_s')} s wall; workdir `{summary.get('workdir')}`",
        "",
    ]
    check = summary.get("check") or {}
    lines.append(f"compliance/check.py exit code {check.get('exit_code')}:")
    lines.append("")
    for c in check.get("checks", []):
        why = "; ".join(c["why"]) if not c["passed"] and c["why"] else ""
        lines.append(
            f"- [{'x' if c['passed'] else ' '}] {c['check']}" + (f" — {why}" if why else "")
        )
    relaxed = summary.get("check_relaxed") or {}
    if relaxed:
        lines += [
            "",
            f"check_relaxed.py (identity lists widened only) exit code {relaxed.get('exit_code')}:",
            "",
        ]
        for c in relaxed.get("checks", []):
            why = "; ".join(c["why"]) if not c["passed"] and c["why"] else ""
            lines.append(
                f"- [{'x' if c['passed'] else ' '}] {c['check']}" + (f" — {why}" if why else "")
            )
    sc = summary.get("store_check") or []
    if sc:
        lines += ["", "spl.txt 1 Hz samples recomputed from powerd's stored full-rate samples:", ""]
        for r in sc:
            lines.append(
                f"- `{r['mark']}`: max |spl W − store mean W| = {r.get('max_abs_diff_w')} over "
                f"{r.get('native_samples')} native samples ({r.get('invalid_samples')} spl samples "
                "not valid, W -1, left out); store mean over the spl span "
                f"{r.get('store_mean_over_spl_span_w')} W"
            )
    rows = summary.get("compare") or []
    if rows:
        keys = [
            "mark", "spl_samples", "spl_invalid_samples", "spl_mean_w", "truth_spl_span_w",
            "mlperf_samples_inside", "mlperf_mean_w",
            "powerd_mlperf_samples", "powerd_mlperf_avg_w", "powerd_mlperf_metric",
            "loadgen_phase_mean_w", "loadgen_phase_energy_j",
            "loadgen_phase_uncertainty_j", "truth_loadgen_w",
            "powerd_mean_w", "truth_phase_w", "mean_w_diff_pct",
            "powerd_energy_j", "powerd_uncertainty_j",
            "powerd_begin", "spl_first", "spl_last", "powerd_end",
            "first_stamp_minus_begin_s", "end_minus_last_stamp_s", "loadgen_begin", "loadgen_end",
        ]  # fmt: skip
        lines += ["", "| figure | " + " | ".join(r["mark"].rsplit("_", 1)[1] for r in rows) + " |"]
        lines.append("|---|" + "---|" * len(rows))
        for k in keys[1:]:
            lines.append(f"| {k} | " + " | ".join(_fmt(r.get(k, "")) for r in rows) + " |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    sess, res = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
    print(json.dumps(compare(sess, res), indent=2))
