"""Apply contract-1 markers from JSON lines to the store, all or nothing.

For harnesses that log their markers to a file (or a pipe) instead of sending them live: every line
is validated and checked against the phase state rebuilt from the store; if any line is rejected,
none is applied and every reason is reported, so the user can fix the file and apply it again.
Lines already stored (same source and seq, same content) are ignored, so re-applying is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from powerd.agent.wire import decode_marker
from powerd.errors import MarkerError, PowerdError
from powerd.phases import PhaseTracker, StampedMarker, stamp
from powerd.store import Store


@dataclass(frozen=True)
class ImportReport:
    applied: int
    repeats: int
    phases_closed: int


def apply_lines(
    store: Store,
    source: str,
    lines: Iterable[str],
    received_ns: int,
    offset_ns: int = 0,
    uncertainty_ns: int = 0,
) -> ImportReport:
    """Validate all lines, then store them; raise PowerdError naming each bad line otherwise.
    ``uncertainty_ns`` is the 95 % half-width of every stamp (e.g. a log's time resolution)."""
    tracker = PhaseTracker()
    for sm in store.markers():
        try:
            tracker.feed(sm)
        except MarkerError:
            continue
    todo: list[StampedMarker] = []
    errors: list[str] = []
    repeats = closed = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            sm = stamp(source, decode_marker(line), received_ns, offset_ns, uncertainty_ns)
            seen_repeats = tracker.duplicates
            phase = tracker.feed(sm)
        except MarkerError as err:
            errors.append(f"line {lineno}: {err}")
            continue
        if tracker.duplicates > seen_repeats:
            repeats += 1
            continue
        closed += phase is not None
        todo.append(sm)
    if errors:
        shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
        raise PowerdError(f"no marker applied, {len(errors)} rejected: {shown}")
    applied = sum(store.put_marker(sm) for sm in todo)
    return ImportReport(applied, repeats, closed)
