"""Go/Stop as phases in powerd's own store, through the same Daemon as every other marker.

Run id rule: a mark ``<session>_ranging`` or ``<session>_testing`` (power-dev's Go marks) belongs
to run ``<session>``; any other mark is its own run. The phase is the whole mark, so a session
gives phases ``<session>_ranging`` and ``<session>_testing`` in run ``<session>``, and
``powerd report <session>`` computes both. Characters outside the marker alphabet
(``A-Za-z0-9_.:-``) become ``_`` and names are cut at 128 characters (power-dev's session names,
``YYYY-MM-DD_HH-MM-SS[_label]``, need neither).

After each Stop the run's result is computed from the store and stored (as ``powerd report``
would), once the samples covering the phase's end are in (bounded wait).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from powerd.agent.wire import Marker
from powerd.daemon import Daemon
from powerd.runs import compute_run
from powerd.store import Store
from powerd.timeline import Timeline

SOURCE = "powerd-ptd"
SUFFIXES = ("_ranging", "_testing")
BAD = re.compile(r"[^A-Za-z0-9_.:-]")
TRAIL_WAIT_S = 2.0


def clean_name(text: str) -> str:
    """A valid marker name from any text: bad characters → ``_``, 1-128 characters."""
    return (BAD.sub("_", text) or "_")[:128]


def run_and_phase(mark: str) -> tuple[str, str]:
    """(run id, phase name) of a Go mark."""
    session = mark
    for suffix in SUFFIXES:
        if mark.endswith(suffix) and len(mark) > len(suffix):
            session = mark[: -len(suffix)]
    return clean_name(session), clean_name(mark)


class StoreRecorder:
    """Begins and ends phases through ``daemon.submit_marker``; computes results after Stop."""

    def __init__(
        self,
        daemon: Daemon,
        store: Store,
        timeline: Timeline,
        log: Callable[[str], None],
        devices: tuple[str, ...] | None = None,
    ) -> None:
        self.daemon, self.store, self.timeline, self.log = daemon, store, timeline, log
        # the phases cover the face's probe, assigned to a device (device=...) or local
        self.devices = devices
        self._due: list[tuple[str, int]] = []  # (run, end ns) whose result is to compute
        self.results = 0

    def _submit(self, mark: str, event: str, t_ns: int) -> str | None:
        run, phase = run_and_phase(mark)
        device = self.devices if event == "begin" else None
        marker = Marker(run, phase, event, None, t_ns, device=device)  # type: ignore[arg-type]
        outcome = self.daemon.submit_marker(SOURCE, marker.to_json(), received_ns=t_ns)
        if outcome.error is not None:
            return outcome.error
        if event == "end":
            self._due.append((run, t_ns))
        return None

    def begin(self, mark: str, t_ns: int) -> str | None:
        return self._submit(mark, "begin", t_ns)

    def end(self, mark: str, t_ns: int) -> str | None:
        return self._submit(mark, "end", t_ns)

    def settle(self) -> None:
        """Compute and store the result of every run with a phase ended since the last call."""
        due, self._due = self._due, []
        for run, end_ns in due:
            deadline = time.monotonic() + TRAIL_WAIT_S
            while time.monotonic() < deadline:
                latest = [self.timeline.latest(c) for c in list(self.timeline.channels)]
                if all(x is not None and x[0] >= end_ns for x in latest):
                    break
                time.sleep(0.01)
            self.store.flush()
            try:
                result = compute_run(self.store, run, None, ())
            except Exception as err:  # reported, never fatal: the samples are stored
                self.log(f"powerd store: result of run {run!r} not computed: {err}")
                continue
            self.store.put_result(result, time.time_ns())
            self.results += 1
            phases = ", ".join(
                f"{p['phase']} {p['mean_power_w']:.4g} W"
                if p.get("mean_power_w") is not None
                else f"{p['phase']} -"
                for p in result.get("phases", [])
            )
            self.log(f"powerd store: run {run}: {phases} (powerd report {run})")
