"""Run a vendor tool on a thread and hand its output over as time-stamped pieces, for CLI probes.

Two runners, for the two kinds of tools:

- ``LineStream``: a tool with a loop mode (``tegrastats --interval``, ``hl-smi -l``,
  ``mobilint-cli status -m``) is started ONCE in that mode and its stdout is read line by line
  on a thread. It is never forked per sample: that would cost a process start per reading and
  lose the tool's own pacing.
- ``ToolPoller``: a tool without a loop mode (``rbln-smi --json``, ``hyperdex-smi``,
  ``npu-smi info -t power``) is run with ``cliexec.run_tool`` every interval on a thread, so a
  slow or hanging tool never blocks the sampler, which serves every probe from one thread.

Both stamp what they get with ``time.monotonic_ns`` when it arrives (a line when its newline is
read; a poll at the midpoint of the call, with half the call as its uncertainty); the probe maps
those stamps onto the caller's UTC timeline at ``read`` with ``utc_of``, so a wall-clock step
between arrival and read does not move the samples. The queues are bounded (oldest dropped,
reported) so a probe that is never read cannot grow without limit.

A tool that exits (or a poll that fails) is retried with exponential backoff (0.5 s doubling to
30 s, back to 0.5 s after output); the exit and, once output comes back, the length of the gap
are reported through ``problems`` (drained by the probe into its own ``problems()``). A loop-mode
tool that stays alive but prints nothing for ``stall_s`` is killed and restarted the same way:
a tool that never answers is a reported gap, never a hang. ``stop`` terminates the tool (kill
after 2 s) and joins the thread.

On top of the runners, ``PolledProbe`` and ``StreamedProbe`` are the ``Probe`` s most CLI
families need: the family gives its channels (fixed at ``open``) and its pure parser (output →
W per channel id, plus problems), and they do the rest: map stamps to UTC, keep each channel's
samples strictly increasing (``Series``), report a channel missing from an output, ignore (and
report once) a channel that appears later, and pass on the runners' problems.
"""

from __future__ import annotations

import collections
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from powerd.block import Block
from powerd.channel import Channel
from powerd.probes.cliexec import DEFAULT_TIMEOUT_S, ToolError, run_tool

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
STOP_WAIT_S = 2.0
QUEUE_MAX_LINES = 100_000
QUEUE_MAX_POLLS = 10_000
PROBLEMS_MAX = 1000


@dataclass(frozen=True)
class Arrived:
    """One line of a loop-mode tool and the monotonic time its newline was read."""

    mono_ns: int
    text: str


@dataclass(frozen=True)
class Polled:
    """One successful run of a one-shot tool: its stdout, stamped at the middle of the call."""

    mono_ns: int
    half_span_ns: int
    stdout: bytes


def utc_of(mono_ns: int, now_utc_ns: int, now_mono_ns: int) -> int:
    """UTC ns of a monotonic stamp, given the caller's UTC and the monotonic clock read together."""
    return now_utc_ns - (now_mono_ns - mono_ns)


class Series:
    """Samples of one read per channel, kept strictly increasing in time across reads.

    A probe calls ``add`` for every reading it parsed and ``blocks`` once per read; a stamp that
    is not after the channel's previous one (a repeated line, a clock quirk) is dropped.
    """

    def __init__(self) -> None:
        self._last_t: dict[str, int] = {}
        self._t: dict[str, list[int]] = {}
        self._v: dict[str, list[float]] = {}

    def add(self, channel_id: str, t_ns: int, value: float) -> bool:
        ts = self._t.setdefault(channel_id, [])
        last = ts[-1] if ts else self._last_t.get(channel_id)
        if last is not None and t_ns <= last:
            return False
        ts.append(t_ns)
        self._v.setdefault(channel_id, []).append(value)
        return True

    def blocks(self) -> list[Block]:
        """One Block per channel with samples since the previous call."""
        out: list[Block] = []
        for cid, ts in self._t.items():
            if ts:
                self._last_t[cid] = ts[-1]
                out.append(Block(cid, np.array(ts, np.int64), np.array(self._v[cid], np.float64)))
        self._t, self._v = {}, {}
        return out


class _Problems:
    """A bounded, thread-safe list of problem strings, drained by the probe."""

    def __init__(self) -> None:
        self._items: collections.deque[str] = collections.deque(maxlen=PROBLEMS_MAX)

    def append(self, text: str) -> None:
        self._items.append(text)

    def popleft(self) -> str:
        return self._items.popleft()

    def __bool__(self) -> bool:
        return bool(self._items)

    def drain(self) -> list[str]:
        out: list[str] = []
        while self._items:
            out.append(self._items.popleft())
        return out


class LineStream:
    """A loop-mode tool running on a thread: lines with their arrival time, restarts, problems.

    ``name`` prefixes every problem (``"tegrastats: exited with status 3; restarting in 0.5 s"``).
    ``stall_s`` (None: never) is how long the tool may stay silent before it is killed and
    restarted; it is checked whenever the probe calls ``drain``.
    """

    def __init__(
        self,
        argv: Sequence[str],
        name: str,
        *,
        stall_s: float | None = None,
        encoding: str = "utf-8",
        max_lines: int = QUEUE_MAX_LINES,
    ) -> None:
        self.argv = list(argv)
        self.name = name
        self.stall_s = stall_s
        self.encoding = encoding
        self.lines: collections.deque[Arrived] = collections.deque(maxlen=max_lines)
        self.problems = _Problems()
        self.first_line = threading.Event()
        self.starts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._last_output_mono_ns = time.monotonic_ns()
        self._stalled = False
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"powerd-{name}", daemon=True)

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def start(self) -> None:
        if not self.started:
            self._thread.start()

    def _spawn(self) -> subprocess.Popen[str] | None:
        try:
            proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                encoding=self.encoding,
                errors="replace",
            )
        except OSError as err:
            self.problems.append(f"{self.name}: cannot start {self.argv[0]}: {err.strerror or err}")
            return None
        with self._lock:
            self._proc = proc
            self._last_output_mono_ns = time.monotonic_ns()
            self._stalled = False
        self.starts += 1
        return proc

    def _run(self) -> None:
        backoff = BACKOFF_FIRST_S
        gap_since_ns: int | None = None
        while not self._stop.is_set():
            proc = self._spawn()
            if proc is not None and proc.stdout is not None:
                for text in proc.stdout:
                    now = time.monotonic_ns()
                    if gap_since_ns is not None:
                        gap_s = (now - gap_since_ns) / 1e9
                        self.problems.append(
                            f"{self.name}: restarted; no samples for {gap_s:.1f} s"
                        )
                        gap_since_ns = None
                    backoff = BACKOFF_FIRST_S
                    if len(self.lines) == self.lines.maxlen:
                        self._dropped += 1
                    self.lines.append(Arrived(now, text))
                    self._last_output_mono_ns = now
                    self.first_line.set()
                rc = proc.wait()
                if self._stop.is_set():
                    return
                why = "stalled, killed" if self._stalled else f"exited with status {rc}"
                self.problems.append(f"{self.name}: {why}; restarting in {backoff:g} s")
            if gap_since_ns is None:
                gap_since_ns = time.monotonic_ns()
            if self._stop.wait(backoff):
                return
            backoff = min(BACKOFF_MAX_S, backoff * 2)

    def check_stall(self) -> None:
        """Kill the tool if it has been silent for ``stall_s``; the thread then restarts it."""
        if self.stall_s is None:
            return
        with self._lock:
            proc = self._proc
            silent_s = (time.monotonic_ns() - self._last_output_mono_ns) / 1e9
            if proc is None or self._stalled or proc.poll() is not None or silent_s < self.stall_s:
                return
            self._stalled = True
        self.problems.append(f"{self.name}: no output for {silent_s:.1f} s; killing it")
        proc.kill()

    def drain(self) -> list[Arrived]:
        """The lines that arrived since the last call, oldest first."""
        self.check_stall()
        if self._dropped:
            n, self._dropped = self._dropped, 0
            self.problems.append(f"{self.name}: {n} lines dropped (not read in time)")
        out: list[Arrived] = []
        while self.lines:
            out.append(self.lines.popleft())
        return out

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.started:
            self._thread.join(STOP_WAIT_S)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()


class ToolPoller:
    """A one-shot tool run every ``interval_s`` on a thread; its outputs queued with stamps.

    A failed run (missing, timeout, non-zero exit: ``cliexec.ToolError``) is a problem and the
    next try waits ``max(interval, backoff)``; the first success after failures reports the gap.
    """

    def __init__(
        self,
        argv: Sequence[str],
        name: str,
        interval_s: float,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_polls: int = QUEUE_MAX_POLLS,
    ) -> None:
        self.argv = list(argv)
        self.name = name
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.outputs: collections.deque[Polled] = collections.deque(maxlen=max_polls)
        self.problems = _Problems()
        self.first_output = threading.Event()
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"powerd-{name}", daemon=True)

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def start(self) -> None:
        if not self.started:
            self._thread.start()

    def _run(self) -> None:
        backoff = BACKOFF_FIRST_S
        gap_since_ns: int | None = None
        due = time.monotonic()
        while not self._stop.is_set():
            self.runs += 1
            try:
                out = run_tool(self.argv, time.monotonic_ns, self.timeout_s)
            except ToolError as err:
                self.problems.append(f"{self.name}: {err}; retrying in {backoff:g} s")
                if gap_since_ns is None:
                    gap_since_ns = time.monotonic_ns()
                wait = max(self.interval_s, backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
                due = time.monotonic() + wait
            else:
                if gap_since_ns is not None:
                    gap_s = (out.t_mid_ns - gap_since_ns) / 1e9
                    self.problems.append(
                        f"{self.name}: answering again; no samples for {gap_s:.1f} s"
                    )
                    gap_since_ns = None
                backoff = BACKOFF_FIRST_S
                self.outputs.append(Polled(out.t_mid_ns, out.half_span_ns, out.stdout))
                self.first_output.set()
                due = max(due + self.interval_s, time.monotonic())
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return

    def drain(self) -> list[Polled]:
        out: list[Polled] = []
        while self.outputs:
            out.append(self.outputs.popleft())
        return out

    def stop(self) -> None:
        """Stop polling; a call in progress finishes (bounded by ``timeout_s``) without waiting."""
        self._stop.set()
        if self.started:
            self._thread.join(min(STOP_WAIT_S, self.timeout_s + 0.5))


# --- probes built on the runners: the family supplies channels and a pure parser


Values = dict[str, float]
"""Readings of one output: channel id → W."""


@dataclass
class Parsed:
    """One reading of a stream (a line or a record): its arrival stamp, values and problems."""

    mono_ns: int
    values: Values
    problems: list[str]


class Feeder(Protocol):
    """Turns a stream's lines into readings; may keep a partial record between calls."""

    def feed(self, lines: list[Arrived], now_mono_ns: int) -> list[Parsed]: ...


class _ChannelSet:
    """The channels fixed at open; values for others are reported once and ignored."""

    def __init__(self, name: str, channels: list[Channel]) -> None:
        self.name = name
        self.channels = channels
        self.ids = {c.id for c in channels}
        self._unknown: set[str] = set()
        self.series = Series()
        self.problems: list[str] = []

    def add(self, t_ns: int, values: Values) -> None:
        for cid, w in values.items():
            if cid in self.ids:
                self.series.add(cid, t_ns, w)
            elif cid not in self._unknown:
                self._unknown.add(cid)
                self.problems.append(f"{cid}: appeared after the probe started; ignored")


class PolledProbe:
    """A probe over a ``ToolPoller``: every output is parsed by ``parse`` into values.

    ``parse(stdout) -> (values, problems)`` is the family's pure parser (it may raise
    ``ValueError`` for output it cannot read: a problem, never a 0 W reading). A channel missing
    from an output is a problem for that channel; the others are kept.
    """

    def __init__(
        self,
        name: str,
        poller: ToolPoller,
        channels: list[Channel],
        parse: Callable[[bytes], tuple[Values, list[str]]],
    ) -> None:
        self.name = name
        self.poller = poller
        self.poll_interval_s = max(0.05, min(1.0, poller.interval_s))
        self._set = _ChannelSet(name, channels)
        self._parse = parse

    def channels(self) -> list[Channel]:
        return list(self._set.channels)

    def start(self, clock: Callable[[], int] | None = None) -> None:
        self.poller.start()

    def read(self, now_utc_ns: int) -> list[Block]:
        self.poller.start()
        mono_now = time.monotonic_ns()
        for out in self.poller.drain():
            try:
                values, problems = self._parse(out.stdout)
            except ValueError as err:
                self._set.problems.append(f"{self.name}: unreadable output: {err}")
                continue
            self._set.problems.extend(problems)
            for cid in sorted(self._set.ids - values.keys()):
                if not any(p.startswith(f"{cid}: ") for p in problems):
                    self._set.problems.append(f"{cid}: no reading in this output")
            self._set.add(utc_of(out.mono_ns, now_utc_ns, mono_now), values)
        return self._set.series.blocks()

    def problems(self) -> list[str]:
        out = self._set.problems + self.poller.problems.drain()
        self._set.problems = []
        return out

    def close(self) -> None:
        self.poller.stop()


class StreamedProbe:
    """A probe over one or more ``LineStream`` s, each with the ``Feeder`` that parses it."""

    def __init__(
        self,
        name: str,
        streams: list[tuple[LineStream, Feeder]],
        channels: list[Channel],
        poll_interval_s: float,
    ) -> None:
        self.name = name
        self.streams = streams
        self.poll_interval_s = max(0.05, min(1.0, poll_interval_s))
        self._set = _ChannelSet(name, channels)

    def channels(self) -> list[Channel]:
        return list(self._set.channels)

    def start(self, clock: Callable[[], int] | None = None) -> None:
        for stream, _ in self.streams:
            stream.start()

    def read(self, now_utc_ns: int) -> list[Block]:
        self.start()
        for stream, feeder in self.streams:
            lines = stream.drain()
            mono_now = time.monotonic_ns()
            for p in feeder.feed(lines, mono_now):
                self._set.problems.extend(p.problems)
                self._set.add(utc_of(p.mono_ns, now_utc_ns, mono_now), p.values)
        return self._set.series.blocks()

    def problems(self) -> list[str]:
        out = self._set.problems
        for stream, _ in self.streams:
            out.extend(stream.problems.drain())
        self._set.problems = []
        return out

    def close(self) -> None:
        for stream, _ in self.streams:
            stream.stop()
