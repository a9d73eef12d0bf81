"""Implausible markers are rejected with a reason, whatever way they come in: a stamp in seconds
or milliseconds, one years off the daemon's clock, one that overflows int64 after the clock
offset, and a phase longer than the configured maximum (a begin at 0 and an end at 2**63-1 must
not become 46 GJ). Importing stored historic markers applies no skew window."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from powerd.agent.wire import Marker
from powerd.commands.marker_import import apply_lines
from powerd.config import load
from powerd.daemon import Daemon
from powerd.errors import MarkerError, PowerdError
from powerd.phases import INT64_MAX, PhaseTracker, stamp
from powerd.store import Store
from powerd.timeline import Timeline

NOW_NS = 1_800_000_000_000_000_000
DAY_NS = 86_400 * 10**9


def _marker(event: str, seq: int, t_ns: int | None, run: str = "r1", **kw: object) -> bytes:
    obj: dict[str, object] = {"v": 1, "run": run, "phase": "p", "event": event, "seq": seq}
    if t_ns is not None:
        obj["t_ns"] = t_ns
    return json.dumps(obj | kw).encode()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "powerd.db")


def _daemon(store: Store, **kw: float) -> Daemon:
    return Daemon(store, Timeline(), lambda: NOW_NS, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("t_ns", "words"),
    [
        (NOW_NS // 10**9, "looks like seconds since the epoch; send nanoseconds"),
        (NOW_NS // 10**6, "looks like milliseconds since the epoch; send nanoseconds"),
        (NOW_NS // 10**3, "looks like microseconds since the epoch; send nanoseconds"),
        (NOW_NS + 3 * 365 * DAY_NS, "ahead of the daemon's clock"),
        (NOW_NS - 2 * DAY_NS, "behind the daemon's clock"),
        (0, "behind the daemon's clock"),
        (INT64_MAX, "ahead of the daemon's clock"),
    ],
)
def test_a_stamp_far_from_receipt_is_rejected_with_its_likely_mistake(
    store: Store, t_ns: int, words: str
) -> None:
    d = _daemon(store)
    out = d.submit_marker("h", _marker("begin", 1, t_ns))
    assert not out.applied and out.error is not None and words in out.error, out.error
    assert store.markers() == [] and d.counts["markers_rejected"] == 1


def test_the_window_is_configurable_and_its_edges_are_accepted(store: Store) -> None:
    d = _daemon(store, max_marker_skew_s=60.0)
    assert d.submit_marker("h", _marker("begin", 1, NOW_NS - 60 * 10**9)).applied
    assert d.submit_marker("h", _marker("end", 2, NOW_NS + 60 * 10**9)).applied
    out = d.submit_marker("h", _marker("begin", 3, NOW_NS + 61 * 10**9, run="r2"))
    assert out.error is not None and "at most 60 s" in out.error
    assert d.submit_marker("h", _marker("begin", 4, None, run="r3")).applied  # receive time


def test_a_phase_longer_than_the_maximum_is_rejected_at_its_end(store: Store) -> None:
    d = _daemon(store, max_marker_skew_s=1e12)  # the skew window out of the way
    assert d.submit_marker("h", _marker("begin", 1, 0)).applied
    out = d.submit_marker("h", _marker("end", 2, INT64_MAX, count=1))
    assert out.error is not None and "max_phase_s" in out.error and out.phase is None
    assert d.counts["results"] == 0 and not d.has_pending()
    # the begin stays open: a plausible end still closes it
    d2 = _daemon(Store(store.path.with_name("b.db")), max_phase_s=10.0)
    assert d2.submit_marker("h", _marker("begin", 1, NOW_NS - 5 * 10**9)).applied
    too_long = d2.submit_marker("h", _marker("end", 2, NOW_NS + 6 * 10**9))
    assert too_long.error is not None and "at most 10 s" in too_long.error
    ok = d2.submit_marker("h", _marker("end", 3, NOW_NS + 4 * 10**9))
    assert ok.applied and ok.phase is not None


def test_a_stamp_that_overflows_int64_after_the_offset_is_rejected() -> None:
    m = Marker("r", "p", "begin", 1, t_ns=INT64_MAX - 5)
    with pytest.raises(MarkerError, match=r"outside 0\.\.2\*\*63-1"):
        stamp("edge-01", m, NOW_NS, offset_ns=10)
    with pytest.raises(MarkerError, match=r"outside 0\.\.2\*\*63-1"):
        stamp("edge-01", Marker("r", "p", "begin", 1, t_ns=3), NOW_NS, offset_ns=-10)
    assert stamp("edge-01", m, NOW_NS, offset_ns=5).t_ns == INT64_MAX


def test_the_default_tracker_bounds_phases_and_replay_of_stored_ones_does_not() -> None:
    tr = PhaseTracker()
    tr.feed(stamp("h", Marker("r", "p", "begin", 1, t_ns=0), NOW_NS))
    with pytest.raises(MarkerError, match="max_phase_s"):
        tr.feed(stamp("h", Marker("r", "p", "end", 2, t_ns=8 * DAY_NS), NOW_NS))
    assert tr.feed(stamp("h", Marker("r", "p", "end", 3, t_ns=7 * DAY_NS), NOW_NS)) is not None


def test_importing_historic_markers_applies_no_skew_window(store: Store) -> None:
    old_ns = 1_600_000_000_000_000_000  # years before the import
    lines = [
        _marker("begin", 1, old_ns).decode(),
        _marker("end", 2, old_ns + 10**9, count=3).decode(),
    ]
    rep = apply_lines(store, "bench", lines, time.time_ns())
    assert (rep.applied, rep.phases_closed) == (2, 1)
    too_long = [_marker("begin", 1, 0, run="x").decode(), _marker("end", 2, INT64_MAX, run="x")]
    with pytest.raises(PowerdError, match="max_phase_s"):
        apply_lines(store, "bench", [too_long[0], too_long[1].decode()], time.time_ns())


def test_config_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[daemon]\nmax_marker_skew_s = 30\nmax_phase_s = 1209600\n")
    got = load(cfg)
    assert (got.max_marker_skew_s, got.max_phase_s) == (30.0, 1209600.0)
    cfg.write_text("[daemon]\nmax_phase_s = 0\n")
    with pytest.raises(PowerdError, match="max_phase_s"):
        load(cfg)


def test_deep_json_is_a_rejected_marker_not_an_exception(store: Store) -> None:
    d = _daemon(store)
    for payload in (b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        out = d.submit_marker("h", payload)
        assert out.error is not None and "nested" in out.error
    assert d.counts["markers_rejected"] == 2
