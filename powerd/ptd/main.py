"""``powerd-ptd``: open the probe, listen, serve PTDaemon's protocol, record, exit on SIGTERM.

Start-up order follows what power-dev's server needs: the probe is opened first (a meter that
does not answer is one timestamped ERROR line and exit 2), then the port is listened on, then
sampling starts. SIGTERM or SIGINT ends a running measurement (its phase is ended in the store),
closes the port, stops sampling, stores the results and exits 0. Everything printed goes through
the stamped stdout writer, Python's logging and warnings included, so check.py never sees an
untimestamped WARNING/ERROR line.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import warnings
from types import FrameType

from powerd import __version__
from powerd.errors import PowerdError
from powerd.ptd.argv import PtdArgs, parse
from powerd.ptd.stamp import StampedOut

EXIT_SETUP = 2


class _StampedHandler(logging.Handler):
    """Python logging (powerd's modules, libraries) as stamped lines."""

    def __init__(self, out: StampedOut) -> None:
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.out.line(f"{record.levelname}: {record.name}: {record.getMessage()}")
        except Exception:
            self.handleError(record)


def _route_logging(out: StampedOut) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(_StampedHandler(out))
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    warnings.simplefilter("default")


def main(argv: list[str] | None = None) -> int:
    out = StampedOut()
    _route_logging(out)
    try:
        args = parse(argv)
        return run(args, out)
    except PowerdError as err:
        out.error(str(err))
        return EXIT_SETUP
    except Exception as err:  # one stamped line, never a bare traceback on stderr
        out.error(f"powerd-ptd failed: {type(err).__name__}: {err}")
        return 1


def run(args: PtdArgs, out: StampedOut) -> int:
    from powerd.channel import Channel
    from powerd.daemon import Daemon
    from powerd.paths import default_state_dir, open_store
    from powerd.probes.registry import open_probe
    from powerd.ptd.aggregate import Aggregator, Interval, TapProbe
    from powerd.ptd.meter import Ranging, identify_reply, instrument_name, primary_channel
    from powerd.ptd.protocol import Face
    from powerd.ptd.recorder import StoreRecorder
    from powerd.ptd.samplelog import SampleLog
    from powerd.ptd.server import listen, serve
    from powerd.runner import Sampler
    from powerd.timebase import TimeAnchor
    from powerd.timeline import Timeline

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    probe = open_probe(args.device_port)
    try:
        channel = primary_channel(probe.channels(), args.channels[0])
    except ValueError as err:
        probe.close()
        raise PowerdError(str(err)) from None
    inst = instrument_name(probe, args.device_port)
    out.line(
        f"powerd-ptd {__version__} (powerd, not PTDaemon): instrument {inst}, channel "
        f"{channel.id}, device type {args.device_type} (recorded only)"
    )
    if len(args.channels) > 1:
        out.line(f"-c {args.channels}: one channel per face; reporting channel {channel.id}")
    state_dir = args.state_dir or default_state_dir()
    store = open_store(state_dir)
    anchor = TimeAnchor()
    timeline = Timeline()
    agg = Aggregator(channel, lambda _iv: None)
    tap = TapProbe(probe, channel.id, agg, on_problem=lambda p: out.warning(f"probe: {p}"))

    def on_status(component: str, reason: str | None) -> None:
        if reason is None:
            out.line(f"{component} is up")
        else:
            out.warning(f"{component} is down: {reason}")

    sampler = Sampler(
        [tap],
        timeline,
        store,
        anchor,
        put_gap=store.put_gap,
        put_accuracy=store.put_accuracy,
        names=[args.device_port],
        on_status=on_status,
        log=out.line,
    )
    daemon = Daemon(store, Timeline(capacity_per_channel=2), anchor.utc_ns)
    daemon.timeline = timeline
    devices = tuple(sorted({ch.device_id for ch in probe.channels()})) or None
    recorder = StoreRecorder(daemon, store, timeline, out.line, devices)
    log = SampleLog(args.log_path)
    ranging = Ranging(probe)
    face = Face(
        out=out,
        log=log,
        channel=channel,
        ranging=ranging,
        agg=agg,
        recorder=recorder,
        identify=identify_reply(probe, args.device_port, channel),
        dc=args.dc,
        nominal_volts_v=args.nominal_volts_v,
        clock=anchor.utc_ns,
    )

    def channel_now() -> Channel:
        for ch in probe.channels():
            if ch.id == channel.id:
                return ch
        return channel

    face.channel_now = channel_now

    def emit(iv: Interval) -> None:
        face.on_interval(iv)

    agg.emit = emit
    try:
        srv = listen(args.port)
    except OSError as err:
        probe.close()
        store.close()
        why = err.strerror or err
        raise PowerdError(f"cannot listen on 127.0.0.1:{args.port}: {why}") from None
    acc = channel.accuracy
    if acc.reading_frac or acc.range_frac or acc.offset_w:
        out.line(f"Uncertainty checking for {inst} is activated")
    else:
        out.line(f"Uncertainty checking for {inst} is not possible: no accuracy spec")
    out.line(
        f"listening on 127.0.0.1:{args.port}; ranges: "
        f"{'real (SR sets them)' if ranging.real else 'none (SR is a no-op)'}; store {store.path}"
    )
    sampler.start()
    try:
        serve(srv, face, out, stop)
    finally:
        srv.close()
        if face.current is not None:
            out.line(f"stopped while measuring: ending mark '{face.current.mark}'")
            with face._lock:
                face._end(anchor.utc_ns())
        sampler.stop()
        probe.close()
        recorder.settle()
        _summary(out, face, agg, tap, sampler)
        store.close()
        log.close()
    out.line("powerd-ptd exiting")
    return 0


def _summary(out: StampedOut, face: object, agg: object, tap: object, sampler: object) -> None:
    """What went wrong during the run, counted (nothing silent)."""
    from powerd.ptd.aggregate import Aggregator, TapProbe
    from powerd.ptd.protocol import Face
    from powerd.runner import Sampler

    assert isinstance(face, Face) and isinstance(agg, Aggregator)
    assert isinstance(tap, TapProbe) and isinstance(sampler, Sampler)
    errors = sum(h.errors for h in sampler.health)
    out.line(
        f"summary: {face.samples} samples, {agg.missing} missing intervals, {agg.late} late "
        f"samples, {agg.resets} counter resets, {errors} failed reads, "
        f"{tap.electrical_errors} failed V/A reads, {tap.problem_count} probe problems, "
        f"{face.high_uncertainty} above 1 %, {face.invalid} not valid ({face.overrange} with "
        f"overrange readings; {agg.dropped} readings lost to NAN/overrange)"
    )
    for h in sampler.health:
        if h.errors:
            out.warning(f"{h.errors} failed reads, last: {h.last_error}")
    if tap.electrical_errors:
        out.warning(f"V/A reads failed {tap.electrical_errors} times: {tap.last_electrical_error}")


if __name__ == "__main__":
    sys.exit(main())
