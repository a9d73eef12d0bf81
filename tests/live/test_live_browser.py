"""The live page in a real browser (issue 17): Debian's chromium driven by Playwright, against
``powerd run`` in a subprocess with a sim source whose 1-sample spikes are narrower than a pixel
column. The page loads without console errors, the trace moves, a marker shades a phase, zoom
fetches the full-resolution spike the overview's min/max kept, and a SIGKILLed and restarted
daemon is reconnected to. Every wait is bounded; nothing is timed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port, wait_for, wait_port
from tests.tools import require_tool

playwright_sync = pytest.importorskip("playwright.sync_api")

SPIKY = "sim:spiky"
# 1 kHz, 100 W for one sample every 2 s over 5 W; the page's columns are 60 s / ~1000 px wide
SPIKE_W, BASE_W = 100.0, 5.0
PROBES = [
    f"sim:square,high={SPIKE_W},low={BASE_W},period=2,duty=0.0005,rate=1000,id=spiky",
    "sim:ramp,rate=1000",
]
WAIT_S = 60.0  # bounded waits (a loaded CI machine), never a timing assertion


class Powerd:
    """``powerd run`` on a fixed port and state dir that survive a SIGKILL and restart."""

    def __init__(self, tmp: Path, token: str | None = None) -> None:
        self.tmp, self.port, self.token = tmp, free_port(), token
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        conf = self.tmp / "powerd.toml"
        probes = ", ".join(json.dumps(p) for p in PROBES)
        http = f"[http]\nport = {self.port}\n"
        if self.token is not None:
            (self.tmp / "token").write_text(self.token)
            http += f'token_file = "{self.tmp / "token"}"\n'
        conf.write_text(
            f'[daemon]\nid = "live-test"\nprobes = [{probes}]\nresult_grace_s = 0.5\n{http}'
        )
        log = (self.tmp / "daemon.log").open("ab")
        cmd = [sys.executable, "-m", "powerd", "--state-dir", str(self.tmp / "state")]
        self.proc = subprocess.Popen([*cmd, "run", "--config", str(conf)], stdout=log, stderr=log)
        wait_port(self.port, WAIT_S)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def marker(self, run: str, phase: str, event: str) -> None:
        body = json.dumps({"v": 1, "run": run, "phase": phase, "event": event}).encode()
        req = urllib.request.Request(
            f"{self.url}/v1/markers?source=bench",
            body,
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as reply:
            assert reply.status == 202


@pytest.fixture(scope="module")
def powerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Powerd]:
    d = Powerd(tmp_path_factory.mktemp("live"))
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium (Debian's, never a downloaded one), for the whole module."""
    exe = require_tool("chromium")
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def page(powerd: Powerd, browser: Any) -> Iterator[tuple[Any, list[str]]]:
    """The live page open in headless chromium, and the console errors it has logged."""
    errors: list[str] = []
    pg = browser.new_page(viewport={"width": 1200, "height": 900})
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    pg.goto(f"{powerd.url}/live")
    yield pg, errors
    pg.close()


def state(pg: Any, expr: str) -> Any:
    return pg.evaluate(f"(() => {{ const S = window.powerdLive; return {expr}; }})()")


def until(pg: Any, expr: str, what: str) -> Any:
    return wait_for(lambda: state(pg, expr), WAIT_S, what)


def test_page_loads_and_the_trace_moves(page: tuple[Any, list[str]]) -> None:
    pg, errors = page
    until(pg, "S.connected && (S.columnsReceived['sim:spiky'] || 0) > 0", "first columns")
    first = state(pg, "S.data['sim:spiky'].t.at(-1)")
    until(pg, f"S.data['sim:spiky'].t.at(-1) > {first}", "a later column")
    assert state(pg, "Object.keys(S.charts).sort()") == ["sim:ramp", SPIKY]
    # drawn: the chart's canvas has the data the stream brought
    assert state(pg, "S.charts['sim:spiky'].data[0].length") > 0
    assert errors == []


def test_overview_keeps_a_spike_narrower_than_a_column(page: tuple[Any, list[str]]) -> None:
    pg, _ = page
    col_ms = state(pg, "S.colNs") / 1e6
    assert col_ms > 10  # a 1 ms sample is a tenth of a column or less
    until(pg, f"Math.max(...S.data['sim:spiky'].max) === {SPIKE_W}", "a spike in the overview")
    # the band's low edge stays at the base: the column's max came from one sample
    assert state(pg, "Math.min(...S.data['sim:spiky'].min)") == BASE_W


def test_a_marker_shades_a_phase_and_its_result_shows(
    page: tuple[Any, list[str]], powerd: Powerd
) -> None:
    pg, errors = page
    powerd.marker("live-run", "warmup", "begin")
    until(pg, "S.phases.some(p => p.phase === 'warmup' && p.t_end_ns === null)", "open phase")
    until(pg, "S.shaded >= 1", "the phase shaded on the chart")
    time.sleep(0.3)  # a phase with some samples in it (a duration, not a timing assertion)
    powerd.marker("live-run", "warmup", "end")
    until(pg, "S.phases.some(p => p.phase === 'warmup' && p.t_end_ns !== null)", "closed phase")
    until(pg, "S.results.some(r => r.run === 'live-run')", "the run's result")
    result = state(pg, "S.results.find(r => r.run === 'live-run').phases[0]")
    assert result["energy_j"] > 0 and result["uncertainty_j"] is not None
    assert "live-run" in pg.inner_text("#results")
    assert errors == []


def test_zoom_fetches_the_full_resolution_spike(page: tuple[Any, list[str]]) -> None:
    pg, errors = page
    until(pg, f"S.data['sim:spiky'].max.includes({SPIKE_W})", "a spike in the overview")
    t_ns = state(pg, f"S.data['sim:spiky'].t[S.data['sim:spiky'].max.indexOf({SPIKE_W})]")
    col_ns = state(pg, "S.colNs")
    # drag across the spike's column on the chart, as a person would
    box = state(
        pg,
        f"""(() => {{ const u = S.charts['sim:spiky'], r = u.over.getBoundingClientRect();
            return {{ x0: r.left + u.valToPos({(t_ns - 3 * col_ns) / 1e9}, 'x'),
                      x1: r.left + u.valToPos({(t_ns + 4 * col_ns) / 1e9}, 'x'),
                      y: r.top + r.height / 2 }}; }})()""",
    )
    pg.mouse.move(box["x0"], box["y"])
    pg.mouse.down()
    pg.mouse.move(box["x1"], box["y"], steps=5)
    pg.mouse.up()
    until(pg, "S.zoom && S.zoom.done", "the zoomed range fetched")
    zoomed = state(pg, "S.zoom.channels['sim:spiky']")
    assert zoomed["raw"] is True  # every sample of the range, not columns
    assert zoomed["max"] == SPIKE_W
    assert zoomed["n"] > 7 * col_ns / 1e6 / 2  # ~1 sample per ms over ~7 columns
    shown = state(pg, "S.charts['sim:spiky'].data[2]")
    assert shown.count(SPIKE_W) >= 1 and shown.count(BASE_W) > shown.count(SPIKE_W)
    # Shift+wheel pans: the range moves by a fifth and is fetched again at full resolution
    t0 = state(pg, "S.zoom.t0Ns")
    pg.keyboard.down("Shift")
    pg.mouse.wheel(0, 100)
    pg.keyboard.up("Shift")
    until(pg, f"S.zoom && S.zoom.done && S.zoom.t0Ns > {t0}", "panned and fetched")
    pg.click("#follow")
    until(pg, "S.zoom === null", "back to live")
    assert errors == []


def test_a_narrower_window_restarts_the_stream_with_fewer_columns(
    page: tuple[Any, list[str]],
) -> None:
    pg, errors = page
    until(pg, "S.connected", "connected")
    connects, col_ns = state(pg, "S.connects"), state(pg, "S.colNs")
    pg.set_viewport_size({"width": 700, "height": 900})
    until(pg, f"S.connected && S.connects > {connects}", "the stream restarted")
    assert state(pg, "S.colNs") > col_ns  # the same 60 s over fewer pixel columns
    assert state(pg, "S.charts['sim:spiky'].width") < 700
    assert errors == []


def test_page_reconnects_after_the_daemon_restarts(
    page: tuple[Any, list[str]], powerd: Powerd
) -> None:
    pg, errors = page
    until(pg, "S.connected", "connected")
    connects = state(pg, "S.connects")
    powerd.kill()
    until(pg, "!S.connected", "the page notices the daemon is gone")
    assert "reconnecting" in pg.inner_text("#status")
    powerd.start()
    until(pg, f"S.connected && S.connects > {connects}", "reconnected")
    frames = state(pg, "S.frames")
    until(pg, f"S.frames > {frames}", "frames after the restart")
    # chromium logs the stream cut by the kill and the page's retries while the daemon was down
    expected = ("ERR_INCOMPLETE_CHUNKED_ENCODING", "ERR_CONNECTION_REFUSED")
    assert [e for e in errors if not any(x in e for x in expected)] == []


def test_with_a_token_the_page_streams_only_when_given_it(browser: Any, tmp_path: Path) -> None:
    """The page (no data) opens without the token; its stream needs it, taken from the URL's
    fragment (never sent to the server) and sent as a bearer header."""
    token = "live-view-token-0123456789"
    d = Powerd(tmp_path, token=token)
    d.start()
    try:
        bare = browser.new_page()
        bare.goto(f"{d.url}/live")
        until(bare, "S.errors.some(e => e.startsWith('401'))", "a 401 the page shows")
        assert state(bare, "S.frames") == 0
        assert "reconnecting" in bare.inner_text("#status")
        bare.close()
        good = browser.new_page()
        good.goto(f"{d.url}/live#token={token}")
        until(good, "S.connected && S.columnsReceived['sim:spiky'] > 0", "columns")
        good.close()
    finally:
        d.stop()
