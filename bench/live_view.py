"""Cost of the live view (issue 17): the daemon's CPU and the bytes per second per open page.

``powerd run`` samples either 8 channels at 1 kHz (``sim:ramp``) or one 100 kHz source (an
LPM01A-rate ``sim:square``), in its own process. Pages read ``/v1/live`` at the page's default
settings (1200 pixel columns, 60 s shown, a frame every 0.25 s): first none (the baseline), then
1 and 4 stream readers in this process (what a page costs the server, without a browser's own
CPU), then one real headless chromium page on ``/live`` (Debian's chromium via Playwright; its
renderer's CPU is reported too). The daemon's CPU is user + sys over the same window (psutil);
bytes are counted by the readers after the first second (the first frame carries the whole 60 s
window). The cost per page is the CPU above the baseline divided by the pages.
Goal: a page costs the daemon <= 2 % of one core and <= 50 kB/s at 8 × 1 kHz and at 100 kHz:
bounded by the screen, not by the sample rate.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import benchlib
import psutil
from _common import start_daemon, stop_daemon

NAME = "live_view"
GOAL_CPU_PCT = 2.0
GOAL_BYTES_S = 50_000
WIDTH, RANGE_S = 1200, 60
SCENARIOS = {
    "8 × 1 kHz": [f"sim:ramp,rate=1000,id=c{k}" for k in range(8)],
    "100 kHz": ["sim:square,high=0.05,low=0.001,period=0.01,duty=0.1,rate=100000,id=lpm"],
}


class Reader(threading.Thread):
    """One page's stream, read in full; counts the bytes after ``settle_s``."""

    def __init__(self, url: str, settle_s: float) -> None:
        super().__init__(daemon=True)
        self.url, self.settle_s = url, settle_s
        self.bytes_after = 0
        self.counting_since = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        q = f"{self.url}/v1/live?width={WIDTH}&range_s={RANGE_S}"
        t0 = time.monotonic()
        with urllib.request.urlopen(q, timeout=30) as resp:
            while not self.stop.is_set():
                chunk = resp.read1(65536)
                if not chunk:
                    break
                now = time.monotonic()
                if now - t0 >= self.settle_s:
                    if not self.counting_since:
                        self.counting_since = now
                    else:
                        self.bytes_after += len(chunk)


def cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def window(procs: list[psutil.Process], seconds: float) -> tuple[float, float]:
    """CPU seconds of ``procs`` (alive ones) over ``seconds`` of wall time, and the wall time."""
    c0 = sum(cpu_s(p) for p in procs if p.is_running())
    t0 = time.monotonic()
    time.sleep(seconds)
    c1 = sum(cpu_s(p) for p in procs if p.is_running())
    return c1 - c0, time.monotonic() - t0


def with_readers(
    url: str, daemon: psutil.Process, pages: int, settle_s: float, seconds: float
) -> dict[str, Any]:
    readers = [Reader(url, settle_s) for _ in range(pages)]
    for r in readers:
        r.start()
    time.sleep(settle_s + 0.5)
    cpu, wall = window([daemon], seconds)
    now = time.monotonic()
    rates = [r.bytes_after / (now - r.counting_since) for r in readers if r.counting_since]
    for r in readers:
        r.stop.set()
    for r in readers:
        r.join(5)
    return {
        "pages": pages,
        "daemon_cpu_pct": 100 * cpu / wall,
        "bytes_per_s_per_page": sum(rates) / len(rates) if rates else 0.0,
    }


def add(counter: list[int], n: Any) -> None:
    counter[0] += int(n)


def with_browser(url: str, daemon: psutil.Process, settle_s: float, seconds: float) -> Any:
    """One chromium page on /live: the daemon's CPU, the renderer's, and the page's bytes."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "playwright not installed"
    exe = shutil.which("chromium")
    if exe is None:
        return "chromium not installed"
    me = psutil.Process()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": WIDTH + 120, "height": 900})
            received = [0]
            cdp = page.context.new_cdp_session(page)
            cdp.send("Network.enable")
            # the stream is one long response: its bytes as the network layer receives them
            cdp.on("Network.dataReceived", lambda e: add(received, e["encodedDataLength"]))
            page.goto(f"{url}/live")
            page.wait_for_function("window.powerdLive && powerdLive.frames > 2", timeout=30_000)
            # Playwright's sync API delivers events only inside its calls: wait in one, so the
            # first frames' bytes are counted before the window, not in it
            page.wait_for_timeout(settle_s * 1000)
            chrome = [p for p in me.children(recursive=True) if "chrom" in p.name().lower()]
            b0 = received[0]
            cpu_d0 = cpu_s(daemon)
            cpu_c, wall = window(chrome, seconds)
            cpu_d = cpu_s(daemon) - cpu_d0
            frames = page.evaluate("window.powerdLive.frames")  # delivers the window's events
            return {
                "pages": "1 chromium",
                "daemon_cpu_pct": 100 * cpu_d / wall,
                "chromium_cpu_pct": 100 * cpu_c / wall,
                "bytes_per_s_per_page": (received[0] - b0) / wall,
                "frames": frames,
            }
        finally:
            browser.close()


def main() -> int:
    p = benchlib.parser(__doc__.splitlines()[0] if __doc__ else NAME)
    p.add_argument("--seconds", type=float, default=15.0, help="measuring window per case")
    args = p.parse_args()
    seconds = 1.5 if args.quick else args.seconds
    settle_s = 0.5 if args.quick else 1.0
    warmup_s = 1.5 if args.quick else 3.0
    result = benchlib.envelope(NAME, args.quick, {})
    result["uptime_before"] = benchlib.uptime()
    rows: list[list[object]] = []
    cases: dict[str, list[Any]] = {}
    with tempfile.TemporaryDirectory(prefix="powerd-bench-live-") as tmp:
        for k, (scenario, probes) in enumerate(SCENARIOS.items()):
            proc, port = start_daemon(Path(tmp), f"s{k}", f"probes = {json.dumps(probes)}")
            url = f"http://127.0.0.1:{port}"
            try:
                daemon = psutil.Process(proc.pid)
                time.sleep(warmup_s)  # probes open, the ring fills
                base_cpu, wall = window([daemon], seconds)
                base_pct = 100 * base_cpu / wall
                got: list[Any] = [{"pages": 0, "daemon_cpu_pct": base_pct}]
                for pages in (1, 4):
                    got.append(with_readers(url, daemon, pages, settle_s, seconds))
                got.append(with_browser(url, daemon, settle_s, seconds))
                cases[scenario] = got
            finally:
                stop_daemon(proc)
            for g in got:
                if isinstance(g, str):
                    rows.append([scenario, "1 chromium", g, "", "", ""])
                    continue
                n = 1 if g["pages"] == "1 chromium" else g["pages"]
                per_page = (g["daemon_cpu_pct"] - base_pct) / n if n else 0.0
                rows.append(
                    [
                        scenario,
                        g["pages"],
                        f"{g['daemon_cpu_pct']:.2f}",
                        f"{per_page:.2f}" if n else "-",
                        f"{g['bytes_per_s_per_page'] / 1e3:.1f}" if n else "-",
                        f"{g['chromium_cpu_pct']:.1f}" if "chromium_cpu_pct" in g else "-",
                    ]
                )
    header = [
        "source",
        "pages",
        "daemon % core",
        "daemon % core per page",
        "kB/s per page",
        "chromium % core",
    ]
    table = benchlib.md_table(header, rows)
    print(table)
    per_page = [
        (float(r[3]), float(r[4]) * 1e3)
        for r in rows
        if r[3] not in ("-", "") and r[4] not in ("-", "")
    ]
    worst_cpu = max((c for c, _ in per_page), default=float("nan"))
    worst_bytes = max((b for _, b in per_page), default=float("nan"))
    met = worst_cpu <= GOAL_CPU_PCT and worst_bytes <= GOAL_BYTES_S
    result.update(
        {
            "goal": f"a live page costs the daemon <= {GOAL_CPU_PCT:g} % of one core and "
            f"<= {GOAL_BYTES_S / 1e3:g} kB/s, at 8 × 1 kHz and at 100 kHz",
            "verdict": f"{'met' if met else 'not met'}: worst {worst_cpu:.2f} % of one core and "
            f"{worst_bytes / 1e3:.1f} kB/s per page",
            "markdown": table,
            "cases": cases,
            "settings": {"width": WIDTH, "range_s": RANGE_S, "window_s": seconds},
            "uptime_after": benchlib.uptime(),
        }
    )
    print(f"\n{result['verdict']}")
    benchlib.write_result(NAME, args.quick, None, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
