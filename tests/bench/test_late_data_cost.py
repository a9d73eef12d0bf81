"""bench/late_data_cost.py still runs (smoke sizes; its figures are never asserted here)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import late_data_cost


def test_late_data_cost_runs_at_smoke_size() -> None:
    got = late_data_cost.one(agents=3, runs=4, repeat=2)  # it checks what it finds itself
    assert got["channels"] == 3 * late_data_cost.CHANNELS_PER_AGENT
    assert got["indexed_phases"] == 12
    flush_us, listener_us = late_data_cost.flush_share(agents=2, repeat=2)
    assert flush_us > 0 and listener_us > 0
