"""The daemon's loops end when cancelled, even when the cancellation comes just as what they
wait for does (issue 16: on Python 3.11 ``asyncio.wait_for`` then returns normally and
swallows the cancellation, and ``powerd run`` sometimes took over 60 s to stop on SIGTERM
under a fleet's load, its loops running on)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from powerd.commands.serve import housekeeping
from powerd.daemon import Daemon
from powerd.store import Store
from powerd.timeline import Timeline


def test_housekeeping_ends_when_cancelled_as_it_is_woken(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    daemon = Daemon(store, Timeline(), time.time_ns)

    async def main() -> list[bool]:
        ended = []
        for _ in range(20):  # the cancellation at several points around the wake-up
            task = asyncio.create_task(housekeeping(daemon, store))
            await asyncio.sleep(0.01)  # waiting for a wake-up or its poll
            wake = daemon.pending_listeners.pop()
            wake()  # the event is set by a callback of the loop (as from another thread)
            for _ in range(len(ended) % 4):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=3.0)
            ended.append(bool(done))
            if not done:  # swallowed: stop it for good, and fail
                task.cancel()
                await asyncio.wait([task], timeout=3.0)
                break
        return ended

    try:
        ended = asyncio.run(main())
    finally:
        if daemon.held is not None:
            daemon.held.close()
        store.close()
    assert all(ended), f"housekeeping ran on after its cancellation: {ended}"
