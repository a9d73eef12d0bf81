"""Fleet capacity: N simulated agents through real mosquitto to one ``powerd run`` (issue 16).

The load generator speaks the agent's wire protocol exactly (``powerd.agent.wire``), one MQTT
connection per simulated agent as real agents have, all of them on one asyncio loop in this
process so the generator is not a fleet of interpreters:

- on connect, the retained status (``online``, ``boot_ns``, ``epoch``, spool ``ok``) and channel
  list (8 power channels at 10 Hz), then subscriptions to its clock requests and confirmations;
- every ``publish_interval_s`` (the agent's default, ``powerd.agent.agent.PUBLISH_INTERVAL_S``,
  1 s; each agent at its own random offset) one blocks message: 8 blocks of 10 samples,
  each block its own (boot_ns, seq), QoS 1;
- clock requests answered at once with t2/t3 stamps on this host's clock (the daemon's clock
  too, so the true offset is 0 and the uncertainty the daemon reports is all there is);
- a phase every ``phase_every_s`` (random offset per agent): begin, then end ``phase_s`` later,
  each with ``seq``, ``t_ns`` and ``boot_ns``, QoS 1, under run ``<agent>-<k>``;
- as the agent does (``powerd.agent.agent.Outbox``, ``Sampler.poll_now``, issue 16), on an end
  marker the probes are read at once and the samples up to that reading (stamped at the end
  marker's stamp) are published right away, not at the next interval (``--no-early-flush``: the
  agent before that change).

What lands is checked end to end: every block and marker must be confirmed on
``powerd/v1/acks/<agent>`` (the daemon confirms only what it committed), and every phase's result
must arrive on ``powerd/v1/results/<run>``; marker→result latency is from sending the end marker
to the result's arrival (it includes the daemon's ``result_grace_s`` wait for late samples, set
here to ``RESULT_GRACE_S``). CPU of the daemon, the broker and the generator is utime+stime from
``/proc/<pid>/stat`` over the steady window; RSS from ``/proc/<pid>/status``; clock-offset
uncertainty from the daemon's ``/metrics``. The daemon writes to VictoriaMetrics through its
InfluxDB sink (tests/servers.py starts it, as in the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from powerd import __version__  # noqa: E402
from powerd.agent import wire  # noqa: E402
from powerd.agent.agent import PUBLISH_INTERVAL_S  # noqa: E402  (the agent's own default)
from powerd.channel import Channel  # noqa: E402

CHANNELS = 8
RATE_HZ = 10.0
RESULT_GRACE_S = 1.0
TICK_S = os.sysconf("SC_CLK_TCK")
METRIC_UNC = "powerd_agent_clock_uncertainty_seconds"
# the shipped mosquitto/powerd.conf's queue and in-flight limits, without its persistence (its
# autosave_on_changes rewrites the broker's database at every message: see BENCHMARKS.md)
BROKER_LIMITS = (
    "max_queued_messages 100000\nmax_queued_bytes 1073741824\nmax_inflight_messages 100\n"
)


@dataclass
class Tally:
    """What the generator sent and what came back, over all simulated agents."""

    blocks_sent: int = 0
    samples_sent: int = 0
    blocks_unconfirmed: dict[tuple[str, int], int] = field(default_factory=dict)  # -> samples
    markers_unconfirmed: set[tuple[str, str, int]] = field(default_factory=set)
    markers_sent: int = 0
    end_sent_s: dict[str, float] = field(default_factory=dict)  # run -> end marker sent
    results_s: dict[str, float] = field(default_factory=dict)  # run -> result arrived
    clock_replies: int = 0
    connect_errors: int = 0
    publish_errors: int = 0


@dataclass
class FleetSpec:
    agents: int
    port: int
    phase_every_s: float = 5.0
    phase_s: float = 2.0
    publish_interval_s: float = PUBLISH_INTERVAL_S
    prefix: str = "fleet"
    early_flush: bool = True


def channels_message() -> bytes:
    chans = [
        Channel(id=f"sim:c{i}", kind="power", source_class="meter", nominal_period_s=1 / RATE_HZ)
        for i in range(CHANNELS)
    ]
    return json.dumps([c.to_json() for c in chans]).encode()


class SimAgent:
    """One simulated agent: its MQTT session and its share of the tally."""

    def __init__(self, name: str, spec: FleetSpec, tally: Tally, rng: random.Random) -> None:
        self.name, self.spec, self.tally, self.rng = name, spec, tally, rng
        self.boot_ns = time.time_ns()
        self.seq = 0
        self.marker_seq = 0
        self.next_sample_ns = time.time_ns()
        self.period_ns = int(1e9 / RATE_HZ)
        self.base_w = 100.0 + 100.0 * rng.random()
        self.block_samples: dict[int, int] = {}
        self.published_all = False  # its last blocks are sent: only confirmations to wait for

    def _status(self, state: str) -> bytes:
        return wire.status(
            self.name,
            state,
            time.time_ns(),
            __version__,
            boot_ns=self.boot_ns,
            epoch=1,
            epochs={},
            spool={"state": "ok", "dropped_blocks": 0},
            probes_down={},
        )

    def _blocks(self, until_ns: int, extra_ns: int | None = None) -> bytes | None:
        """Samples due since the last flush, 8 channels, one message. With ``extra_ns`` (a read
        asked for then, the end marker's stamp): every grid point before it, then that reading,
        the grid going on after it (in time order, none twice)."""
        span = until_ns - self.next_sample_ns
        n = max(0, -(-span // self.period_ns) if extra_ns is not None else span // self.period_ns)
        t = self.next_sample_ns + np.arange(n, dtype=np.int64) * self.period_ns
        self.next_sample_ns += n * self.period_ns
        if extra_ns is not None:
            t = np.append(t, np.int64(extra_ns))
            if self.next_sample_ns == extra_ns:  # the reading is this grid point
                self.next_sample_ns += self.period_ns
        n = int(t.size)
        if n <= 0:
            return None
        parts = []
        for i in range(CHANNELS):
            self.seq += 1
            v = np.full(n, self.base_w + i, np.float64)
            parts.append(wire.encode_block(self.boot_ns, self.seq, f"sim:c{i}", t, v))
            self.tally.blocks_unconfirmed[(self.name, self.seq)] = n
            self.tally.blocks_sent += 1
            self.tally.samples_sent += n
        return b"".join(parts)

    async def _publisher(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        await asyncio.sleep(self.rng.random() * self.spec.publish_interval_s)
        topic = wire.blocks_topic(self.name)
        while not stop.is_set():
            payload = self._blocks(time.time_ns())
            if payload is not None:
                await client.publish(topic, payload, qos=1)
            await asyncio.sleep(self.spec.publish_interval_s)
        payload = self._blocks(time.time_ns())  # the rest, as an agent flushes on stop
        if payload is not None:
            await client.publish(topic, payload, qos=1)

    async def _marker(self, client: aiomqtt.Client, run: str, event: str) -> int:
        """Send one marker; returns its stamp."""
        self.marker_seq += 1
        t_ns = time.time_ns()
        body = {
            "v": 1,
            "run": run,
            "phase": "infer",
            "event": event,
            "t_ns": t_ns,
            "seq": self.marker_seq,
            "boot_ns": self.boot_ns,
        }
        if event == "end":
            body["count"] = 10
        self.tally.markers_unconfirmed.add((self.name, run, self.marker_seq))
        self.tally.markers_sent += 1
        await client.publish(wire.markers_topic(self.name), json.dumps(body).encode(), qos=1)
        return t_ns

    async def _early_flush(self, client: aiomqtt.Client, end_ns: int) -> None:
        """The agent's flush after an end marker: its sampler reads every probe at once
        (``Sampler.poll_now``), so the samples due so far and one real reading at the end
        marker's stamp go out right away, without waiting for the grid's next point."""
        if end_ns < self.next_sample_ns:
            return  # already sent by the regular flush
        payload = self._blocks(end_ns, extra_ns=end_ns)
        if payload is not None:
            await client.publish(wire.blocks_topic(self.name), payload, qos=1)

    async def _phases(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        await asyncio.sleep(1.0 + self.rng.random() * self.spec.phase_every_s)
        k = 0
        while not stop.is_set():
            k += 1
            run = f"{self.name}-{k}"
            await self._marker(client, run, "begin")
            await asyncio.sleep(self.spec.phase_s)
            end_ns = await self._marker(client, run, "end")
            self.tally.end_sent_s[run] = time.time()
            t_end = time.monotonic()
            if self.spec.early_flush:
                await self._early_flush(client, end_ns)
            rest = self.spec.phase_every_s - self.spec.phase_s - (time.monotonic() - t_end)
            await asyncio.sleep(max(0.0, rest))

    async def _receiver(self, client: aiomqtt.Client) -> None:
        acks = wire.acks_topic(self.name)
        reply_topic = wire.clock_reply_topic(self.name)
        async for message in client.messages:
            t2 = time.time_ns()
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if str(message.topic) == acks:
                for key in wire.parse_block_acks(payload):
                    if key[0] == self.boot_ns:
                        self.tally.blocks_unconfirmed.pop((self.name, key[1]), None)
                ack = wire.parse_ack(payload)
                if ack is not None:
                    self.tally.markers_unconfirmed.discard((self.name, ack[0], ack[1]))
                continue
            reply = wire.clock_reply(payload, t2, time.time_ns(), self.boot_ns, 1)
            self.tally.clock_replies += 1
            await client.publish(reply_topic, reply)

    async def run(self, stop: asyncio.Event, drained: asyncio.Event) -> None:
        will = aiomqtt.Will(wire.status_topic(self.name), self._status("offline"), 1, True)
        client = aiomqtt.Client(
            "127.0.0.1",
            self.spec.port,
            identifier=self.name,
            will=will,
            keepalive=60,
            timeout=30,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        async with client:
            await client.subscribe(wire.clock_request_topic(self.name), qos=0)
            await client.subscribe(wire.acks_topic(self.name), qos=1)
            await client.publish(
                wire.status_topic(self.name), self._status("online"), qos=1, retain=True
            )
            await client.publish(
                wire.channels_topic(self.name), channels_message(), qos=1, retain=True
            )
            receiver = asyncio.create_task(self._receiver(client))
            phases = asyncio.create_task(self._phases(client, stop))
            await self._publisher(client, stop)
            phases.cancel()
            self.published_all = True
            await drained.wait()  # keep answering and collecting confirmations
            receiver.cancel()
            await client.publish(
                wire.status_topic(self.name), self._status("offline"), qos=1, retain=True
            )


async def results_listener(port: int, tally: Tally, ready: asyncio.Event) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"fleet-results-{os.getpid()}") as c:
        await c.subscribe(f"{wire.TOPIC_ROOT}/results/+", qos=1)
        ready.set()
        async for message in c.messages:
            run = str(message.topic).rsplit("/", 1)[1]
            tally.results_s.setdefault(run, time.time())


async def run_fleet(spec: FleetSpec, duration_s: float, drain_s: float, tally: Tally) -> None:
    """Run ``spec.agents`` simulated agents for ``duration_s``, then wait up to ``drain_s`` for
    every confirmation and every due result."""
    stop, drained, ready = asyncio.Event(), asyncio.Event(), asyncio.Event()
    listener = asyncio.create_task(results_listener(spec.port, tally, ready))
    await asyncio.wait_for(ready.wait(), 30)
    rng = random.Random(16)
    agents = [
        SimAgent(f"{spec.prefix}-{i:05d}", spec, tally, random.Random(rng.random()))
        for i in range(spec.agents)
    ]
    tasks = []
    for a in agents:  # connect in a ramp, as a fleet does after a broker restart (not in step)
        tasks.append(asyncio.create_task(a.run(stop, drained)))
        await asyncio.sleep(0.002)
    await asyncio.sleep(duration_s)
    stop.set()
    deadline = time.monotonic() + drain_s
    while time.monotonic() < deadline:
        due = [r for r, t in tally.end_sent_s.items() if r not in tally.results_s]
        sending = any(
            not a.published_all for a, t in zip(agents, tasks, strict=True) if not t.done()
        )
        if not (sending or tally.blocks_unconfirmed or tally.markers_unconfirmed or due):
            break
        await asyncio.sleep(0.2)
    drained.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    tally.connect_errors += sum(1 for r in results if isinstance(r, BaseException))
    listener.cancel()


# --- the servers and the measurement -----------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` in s (NaN once it is gone: a result worker restarted)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / TICK_S


def children(pid: int) -> set[int]:
    """The processes ``pid`` started (every thread's children, from /proc)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue  # a thread that ended meanwhile
    return out


def rss_mib(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return float("nan")
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def clock_uncertainty_s(url: str) -> list[float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as r:
        text = r.read().decode()
    return [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(METRIC_UNC + "{")
    ]


def daemon_config(work: Path, mqtt_port: int, http_port: int, vm_url: str) -> Path:
    path = work / "powerd.toml"
    path.write_text(
        f"""[daemon]
probes = []
result_grace_s = {RESULT_GRACE_S}

[http]
bind = "127.0.0.1"
port = {http_port}

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}

[influx]
url = "{vm_url}"
org = "lab"
bucket = "powerd"
buffer_dir = "{work / "buffer"}"
"""
    )
    return path


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} never answered")


def pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


def one_n(
    n: int,
    seconds: float,
    work: Path,
    phase_every_s: float,
    early_flush: bool = True,
    inflight: int | None = None,
) -> dict[str, Any]:
    from tests.servers import free_port, mosquitto, victoria_metrics

    with ExitStack() as stack:
        limits = BROKER_LIMITS
        if inflight is not None:  # --broker-inflight: not the shipped limit (an experiment)
            limits = limits.replace("inflight_messages 100", f"inflight_messages {inflight}")
        broker = stack.enter_context(mosquitto(work, extra=limits))
        vm = stack.enter_context(victoria_metrics(work))
        http_port = free_port()
        cfg = daemon_config(work, broker.port, http_port, vm.url)
        log = (work / "daemon.log").open("wb")
        profile = os.environ.get("FLEET_PROFILE")  # a path: run the daemon under cProfile
        prof = ["-m", "cProfile", "-o", profile] if profile else []
        argv = ["-m", "powerd", "--state-dir", str(work / "state"), "run", "--config", str(cfg)]
        nice = int(os.environ.get("FLEET_DAEMON_NICE", "0"))  # an experiment: see --daemon-nice
        niced = ["nice", "-n", str(nice)] if nice else []  # nice execs: the same pid
        daemon = subprocess.Popen(
            [*niced, sys.executable, *prof, *argv],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        notes: list[str] = []
        stopped: dict[str, float | None] = {"stop_s": None}  # filled when the daemon stops

        def stop_daemon() -> None:
            t_term = time.monotonic()
            daemon.terminate()
            try:
                daemon.wait(60)
                stopped["stop_s"] = time.monotonic() - t_term
            except subprocess.TimeoutExpired:
                notes.append("the daemon did not stop within 60 s of SIGTERM: killed")
                daemon.send_signal(signal.SIGUSR1)  # its threads' stacks into its log
                time.sleep(2.0)
                log.flush()
                tail = (work / "daemon.log").read_bytes()[-6000:].decode(errors="replace")
                notes.append(f"daemon log tail: {tail}")
                daemon.kill()
                daemon.wait(30)

        stack.callback(stop_daemon)
        url = f"http://127.0.0.1:{http_port}"
        wait_http(f"{url}/healthz")
        assert broker.proc is not None
        tally = Tally()
        spec = FleetSpec(n, broker.port, phase_every_s=phase_every_s, early_flush=early_flush)
        pids = {"daemon": daemon.pid, "broker": broker.proc.pid, "generator": os.getpid()}
        # the daemon's result worker (powerd.result_worker), a process of its own: its CPU is
        # the daemon's too ("daemon_total"); none when results are computed in-process
        workers = children(daemon.pid)
        if len(workers) == 1:
            pids["worker"] = workers.pop()
        marks: dict[str, Any] = {}

        async def measured() -> None:
            fleet = asyncio.create_task(run_fleet(spec, seconds, 60.0, tally))
            await asyncio.sleep(min(10.0, seconds / 3))  # connected and warm
            marks["c0"] = {k: proc_cpu_s(p) for k, p in pids.items()}
            marks["t0"] = time.monotonic()
            await asyncio.sleep(seconds - min(10.0, seconds / 3) - 1.0)
            marks["c1"] = {k: proc_cpu_s(p) for k, p in pids.items()}
            marks["t1"] = time.monotonic()
            marks["rss"] = {k: rss_mib(p) for k, p in pids.items()}
            if "worker" in pids and pids["worker"] not in children(pids["daemon"]):
                notes.append("the result worker was restarted during the window: its CPU is short")
            try:
                marks["unc"] = await asyncio.to_thread(clock_uncertainty_s, url)
            except OSError as err:
                notes.append(f"/metrics did not answer: {err}")
                marks["unc"] = []
            await fleet

        asyncio.run(measured())
        try:
            vm.force_flush()
            one = f"{spec.prefix}-00000"
            runs = f"{one}-.+"
            series = {
                "all": vm.query('count({__name__=~"powerd_.+"})'),
                "agent_channels": vm.query(f'count({{__name__=~"powerd_.+",agent="{one}"}})'),
                "agent_phases": vm.query(f'count({{__name__=~"powerd_phase_.+",run=~"{runs}"}})'),
            }
            marks["series"] = {
                k: int(float(v[0]["value"][1])) if v else 0 for k, v in series.items()
            }
        except OSError as err:
            notes.append(f"VictoriaMetrics query failed: {err}")
            marks["series"] = {}
        wall = marks["t1"] - marks["t0"]
        cpu = {k: 100 * (marks["c1"][k] - marks["c0"][k]) / wall for k in pids}
        cpu["daemon_total"] = cpu["daemon"] + cpu.get("worker", 0.0)
        try:
            health = json.loads(urllib.request.urlopen(f"{url}/healthz", timeout=30).read())
            counts = health.get("counts", {})
        except OSError as err:
            notes.append(f"/healthz did not answer: {err}")
            counts = {}
        lat = [tally.results_s[r] - t for r, t in tally.end_sent_s.items() if r in tally.results_s]
        # p50 by when the phase ended (10 s bins from the first end): a backlog that builds up
        # (the latency grows bin by bin) from one that drains (a start-up transient)
        t_first = min(tally.end_sent_s.values(), default=0.0)
        bins: dict[int, list[float]] = {}
        for r, t in tally.end_sent_s.items():
            if r in tally.results_s:
                bins.setdefault(int((t - t_first) // 10), []).append(tally.results_s[r] - t)
        p50_by_10s = [round(float(np.median(bins[b])), 3) for b in sorted(bins)]
        unc = marks["unc"]
        return {
            "agents": n,
            "seconds": seconds,
            "early_flush": early_flush,
            "broker_inflight": inflight or 100,
            "daemon_nice": nice,
            "cpu_pct": cpu,
            "rss_mib": marks["rss"],
            "blocks_sent": tally.blocks_sent,
            "samples_sent": tally.samples_sent,
            "blocks_unconfirmed": len(tally.blocks_unconfirmed),
            "samples_lost": sum(tally.blocks_unconfirmed.values()),
            "markers_sent": tally.markers_sent,
            "markers_unconfirmed": len(tally.markers_unconfirmed),
            "phases": len(tally.end_sent_s),
            "results_missing": len(set(tally.end_sent_s) - set(tally.results_s)),
            "latency_p50_s": pct(lat, 50),
            "latency_p99_s": pct(lat, 99),
            "latency_p50_by_10s": p50_by_10s,
            "clock_unc_median_ms": statistics.median(unc) * 1e3 if unc else None,
            "clock_unc_max_ms": max(unc) * 1e3 if unc else None,
            "clock_agents_measured": len(unc),
            "clock_replies": tally.clock_replies,
            "series": marks["series"],
            "notes": notes,
            "agent_errors": tally.connect_errors,
            "result_worker_restarts": counts.get("result_worker_restarts", 0),
            "results_failed": counts.get("result_failed", 0),
            # SIGTERM to exit, s (None: killed after 60 s), set as the daemon stops
            "stop": stopped,
        }


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "fleet")
    p.add_argument("--agents", type=int, nargs="+", default=[10, 100])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--phase-every", type=float, default=5.0)
    p.add_argument(
        "--no-early-flush",
        action="store_true",
        help="publish only every interval, as the agent did before its flush after an end marker",
    )
    p.add_argument(
        "--broker-inflight",
        type=int,
        default=None,
        help="the broker's max_inflight_messages (default: the shipped powerd.conf's 100)",
    )
    p.add_argument(
        "--daemon-nice",
        type=int,
        default=0,
        help="run the daemon at this nice value (e.g. -10, as root): on a machine shared with "
        "other work, the daemon then gets a core before them (an experiment, not the method)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fleet.json")
    args = p.parse_args()
    os.environ["FLEET_DAEMON_NICE"] = str(args.daemon_nice)
    rows = []
    for n in args.agents:
        try:
            with tempfile.TemporaryDirectory(prefix=f"powerd-fleet-{n}-") as tmp:
                r = one_n(
                    n,
                    args.seconds,
                    Path(tmp),
                    args.phase_every,
                    not args.no_early_flush,
                    args.broker_inflight,
                )
        except Exception as err:  # one N that breaks down is a finding, not the end of the run
            print(json.dumps({"agents": n, "error": repr(err)[:2000]}), flush=True)
            continue
        rows.append(r)
        print(json.dumps(r), flush=True)
    head = "| N | daemon % core (main + worker) | daemon RSS MiB | broker % core | "
    head += "generator % core | "
    head += "p50 s | p99 s | samples lost | markers unconfirmed | results missing | "
    head += "clock unc. median / max ms | stop s |"
    print(head)
    print("|" + "---|" * 12)
    for r in rows:
        print(
            f"| {r['agents']} | {r['cpu_pct']['daemon_total']:.1f} "
            f"({r['cpu_pct']['daemon']:.1f} + {r['cpu_pct'].get('worker', 0.0):.1f}) | "
            f"{r['rss_mib']['daemon'] + r['rss_mib'].get('worker', 0.0):.0f} | "
            f"{r['cpu_pct']['broker']:.1f} | {r['cpu_pct']['generator']:.1f} | "
            f"{fmt(r['latency_p50_s'], '.3f')} | {fmt(r['latency_p99_s'], '.3f')} | "
            f"{r['samples_lost']} of {r['samples_sent']} | {r['markers_unconfirmed']} | "
            f"{r['results_missing']} of {r['phases']} | "
            f"{fmt(r['clock_unc_median_ms'], '.2f')} / {fmt(r['clock_unc_max_ms'], '.2f')} | "
            f"{fmt(r['stop']['stop_s'], '.1f')} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "fleet", "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
