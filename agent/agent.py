"""``powerd-agent``: runs on the device under test; samples local probes and publishes them.

- Samples its probes with powerd's sampler, stamping on this host's clock (the daemon measures
  this clock's offset and moves everything onto its own).
- Every block and marker goes through the on-disk spool first and is deleted once the broker
  acknowledged it (QoS 1): a broker restart or a network cut loses nothing, the backlog is
  replayed in order. Blocks carry (boot, seq) so the daemon drops resent duplicates. Blocks and
  markers are kept further, until the daemon confirms it stored them (``powerd/v1/acks/<agent>``):
  a broker acknowledges before it saves, so a broker SIGKILL can lose what it acknowledged.
  Unconfirmed ones are sent again on every reconnect, markers also every ``RESEND_S``; the
  daemon ignores a repeated (boot, seq) or (source, run, seq) and confirms it again.
- Answers the daemon's clock requests at once, stamping receipt (t2) and reply (t3).
- Relays markers from local harnesses (``POST /v1/markers`` on loopback), stamping ``t_ns`` with
  this host's clock when the harness gave none, under the agent's own source id and sequence.
- Announces itself retained as online, with an MQTT last will that says offline; the status
  also carries the clock epoch (``boot_ns``, ``epoch``: see agent/epoch.py) and the spool's state
  (``spool``: ok, full or error, with the blocks dropped so far), republished when they change;
  each status also says ``reads_asked`` (probe reads taken out of cadence on end markers so far:
  the daemon sums them on ``/metrics``, ``powerd_reads_asked_total{source="agents"}``).
- Every stamp carries its clock epoch (blocks, clock replies, relayed markers), so the daemon
  never places data of a restarted or stepped clock with the previous epoch's offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from powerd import __version__
from powerd.agent import wire
from powerd.agent.epoch import EpochAnchor, host_boot_id
from powerd.agent.mqttconf import MqttSettings
from powerd.agent.spool import Message, Spool
from powerd.block import F64, I64, Block, concat
from powerd.channel import Channel
from powerd.errors import MarkerError, PowerdError
from powerd.runner import Sampler, open_probes

MAX_BLOCK_SAMPLES = 1 << 16
MAX_MESSAGE_BYTES = 1 << 20
PUBLISH_BATCH = 64
RESEND_S = 5.0
# 1 s, not 0.5 s (issue 16 item 4): each flush is a spool transaction, a publish and its PUBACK,
# the daemon's confirmation and its PUBACK; halving them cut the agent's CPU by about a quarter
# at 8 channels x 10 Hz (BENCHMARKS.md §12). The price: up to 1 s of samples in memory (lost on
# a SIGKILL, then a flagged gap), and a result whose end marker the agent did not relay waits up
# to 1 s for the samples that cover it (a relayed end marker flushes at once: Outbox).
PUBLISH_INTERVAL_S = 1.0
# how long after a relayed end marker its early flush waits for every channel (Outbox)
EARLY_FLUSH_WINDOW_NS = 1_000_000_000
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0
STATUS_CHECK_S = 0.5
# housekeeping (status, marker resends) runs on the flush's wake; on its own only when idle
HOUSEKEEPING_IDLE_S = 1.0
HOUSEKEEPING_EARLY_S = 0.1
EPOCHS_REPORTED = 16
# ... plus older ones still needed by unconfirmed data, up to this many in all (status size)
EPOCHS_REPORTED_MAX = 256


def _log(text: str) -> None:
    print(f"powerd-agent: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class AgentConfig:
    id: str
    probes: tuple[str, ...]
    mqtt: MqttSettings
    spool_dir: Path
    spool_max_bytes: int = 256 << 20
    spool_memory_bytes: int = 32 << 20
    http_bind: str = "127.0.0.1"
    http_port: int | None = 8090
    publish_interval_s: float = PUBLISH_INTERVAL_S


class Outbox:
    """The sampler's sink on the agent: blocks become spooled MQTT messages."""

    def __init__(self, agent_id: str, spool: Spool, anchor: EpochAnchor) -> None:
        self.agent_id, self.spool, self.anchor = agent_id, spool, anchor
        self.boot_ns = anchor.boot_ns
        self.flush_errors = 0
        self.channels: dict[str, Channel] = {}
        self.seq = 0
        self._pending: dict[str, tuple[list[I64], list[F64]]] = {}
        self.on_spooled: Callable[[], None] | None = None
        self.on_epoch: Callable[[], None] | None = None
        # An end marker relayed (its stamp, our clock): the daemon computes the phase's result
        # once every channel has a sample at or after it, so those samples are flushed as soon
        # as every channel sampling lately has one, not up to a publish interval later (issue
        # 16). Set by the marker relay's thread, read by the sampler's (a plain int: atomic).
        self.flush_after_ns: int | None = None
        self._armed_for: int | None = None
        self._required: set[str] = set()  # channels sampling lately: each must pass the end
        self._passed: set[str] = set()
        self._recent: set[str] = set()  # channels of the last flush
        self.early_flushes = 0
        self.early_flushes_missed = 0

    def put_channel(self, ch: Channel) -> None:
        new = self.channels.get(ch.id) != ch
        self.channels[ch.id] = ch
        # a probe that opened late (its channels reach the daemon before its blocks), or a
        # channel whose metadata changed (an instrument's identity learnt after opening)
        if new:
            topic = wire.channels_topic(self.agent_id)
            self.spool.put_many([(topic, self.channels_message(), 1, True)])

    def channels_message(self) -> bytes:
        return json.dumps([ch.to_json() for ch in self.channels.values()]).encode()

    def append(self, block: Block) -> None:
        ts, vs = self._pending.setdefault(block.channel, ([], []))
        ts.append(block.t_ns)
        vs.append(block.value)
        end_ns = self.flush_after_ns
        if end_ns is not None and block.t_ns.size:
            self._flush_if_past(block.channel, int(block.t_ns[-1]), end_ns)

    def _flush_if_past(self, channel: str, last_ns: int, end_ns: int) -> None:
        """Flush now once every channel sampling lately (the last flush's and those buffered
        since) has a sample at or after the relayed end marker's stamp ``end_ns``; give up when
        one is still short a second after it (a channel gone quiet: the regular flush goes on)."""
        if self._armed_for != end_ns:
            self._armed_for = end_ns
            self._required = self._recent | set(self._pending)
            self._passed = set()
        self._required.add(channel)
        if last_ns >= end_ns:
            self._passed.add(channel)
        if self._passed >= self._required:
            self.early_flushes += 1
            self._disarm(end_ns)
            self.flush()
        elif last_ns > end_ns + EARLY_FLUSH_WINDOW_NS:
            self.early_flushes_missed += 1
            if self.early_flushes_missed == 1:
                _log(
                    f"note: channel(s) {sorted(self._required - self._passed)} had no sample "
                    "within 1 s of a relayed end marker; its data goes with the regular flush "
                    "(counted)"
                )
            self._disarm(end_ns)

    def _disarm(self, end_ns: int) -> None:
        if self.flush_after_ns == end_ns:  # a newer end, relayed meanwhile, stays armed
            self.flush_after_ns = None

    def flush(self) -> int:
        """Spool everything sampled since the last flush; never raises (the sampler must go on:
        the spool keeps what the disk refuses in memory and reports what it drops)."""
        try:
            return self._flush()
        except Exception as err:
            self.flush_errors += 1
            if self.flush_errors == 1:
                _log(f"error: spooling a flush failed: {type(err).__name__}: {err} (counted)")
            return 0

    def _flush(self) -> int:
        """Spool everything sampled since the last flush as one message (split when large)."""
        pending, self._pending = self._pending, {}
        self._recent = set(pending)
        topic = wire.blocks_topic(self.agent_id)
        parts: list[bytes] = []
        size = total = 0
        items: list[tuple[str, bytes, int, bool]] = []
        for channel, (ts, vs) in pending.items():
            t, v = concat(ts, vs)
            for s in range(0, t.size, MAX_BLOCK_SAMPLES):
                self.seq += 1
                part = wire.encode_block(
                    self.boot_ns,
                    self.seq,
                    channel,
                    t[s : s + MAX_BLOCK_SAMPLES],
                    v[s : s + MAX_BLOCK_SAMPLES],
                )
                parts.append(part)
                size += len(part)
                total += min(MAX_BLOCK_SAMPLES, t.size - s)
                if size >= MAX_MESSAGE_BYTES:
                    items.append((topic, b"".join(parts), 1, False))
                    parts, size = [], 0
        if parts:
            items.append((topic, b"".join(parts), 1, False))
        self.spool.put_many(items)
        if items and self.on_spooled is not None:
            self.on_spooled()
        return total

    def put_clock_step(self, mono_ns: int, utc_ns: int, step_ns: int) -> None:
        """The anchor re-anchored on a wall-clock step (a new epoch): what was sampled before
        goes out under the old epoch id, the rest under the new one."""
        self.flush()
        self.boot_ns = self.anchor.boot_ns
        if self.on_epoch is not None:
            self.on_epoch()
        _log(
            f"wall clock stepped by {step_ns / 1e9:+.6f} s; re-anchored "
            f"(clock epoch {self.anchor.epoch}, boot_ns {self.boot_ns})"
        )
        if self.on_spooled is not None:
            self.on_spooled()


def _marker_key(m: Message) -> tuple[str, int] | None:
    """(run, seq) of a relayed marker in the spool."""
    return wire.parse_ack(m.payload)


def _block_keys(m: Message) -> list[tuple[int, int]]:
    """(boot_ns, seq) of each block of a spooled blocks message (empty if undecodable)."""
    try:
        return wire.block_keys(m.payload)
    except wire.WireError:
        return []


@dataclass
class Agent:
    cfg: AgentConfig
    anchor: EpochAnchor = field(default_factory=EpochAnchor)
    spool: Spool = field(init=False)
    outbox: Outbox = field(init=False)
    sampler: Sampler = field(init=False)
    http_url: str | None = None
    _daemons: set[str] = field(default_factory=set)
    _daemon_online: asyncio.Event = field(default_factory=asyncio.Event)
    # probe component ("probe:<spec>") -> why it is down; in the status as ``probes_down``
    probes_down: dict[str, str] = field(default_factory=dict)
    status_changes: int = 0
    markers_refused: int = 0
    # (run, seq) of each relayed marker sent and not yet confirmed -> its spooled copies
    _unconfirmed: dict[tuple[str, int], list[Message]] = field(default_factory=dict)
    # blocks messages sent and not yet confirmed: spool id -> (message, blocks unconfirmed)
    _waiting_blocks: dict[int, tuple[Message, set[tuple[int, int]]]] = field(default_factory=dict)
    _block_message: dict[tuple[int, int], int] = field(default_factory=dict)
    # set on every flush's wake of the loop: the housekeeping checks ride on it
    _tick: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def _markers_topic(self) -> str:
        return wire.markers_topic(self.cfg.id)

    @property
    def _blocks_topic(self) -> str:
        return wire.blocks_topic(self.cfg.id)

    def __post_init__(self) -> None:
        self.spool = Spool(
            self.cfg.spool_dir / "spool.db",
            self.cfg.spool_max_bytes,
            agent=self.cfg.id,
            memory_max_bytes=self.cfg.spool_memory_bytes,
        )
        self.outbox = Outbox(self.cfg.id, self.spool, self.anchor)
        self.outbox.on_epoch = self._remember_epoch
        self._remember_epoch()
        # a probe that does not open now is retried by the sampler for ever
        opened, pending = open_probes(self.cfg.probes, _log)
        if not opened and not pending:
            raise PowerdError("no probe can be sampled on this host; see `powerd probes`")
        self.sampler = Sampler(
            [p for _, p in opened],
            None,
            self.outbox,
            self.anchor,
            flush_interval_s=self.cfg.publish_interval_s,
            names=[spec for spec, _ in opened],
            pending=pending,
            on_status=self._probe_status,
            put_gap=self._probe_gap,
            log=_log,
        )

    # probes that are down -----------------------------------------------------------------------

    def _probe_status(self, component: str, reason: str | None) -> None:
        """A probe went down or came back: logged, and in our status so the daemon shows it."""
        if reason is None:
            if self.probes_down.pop(component, None) is not None:
                _log(f"{component} is up")
                self.status_changes += 1
        elif self.probes_down.get(component) != reason:
            self.probes_down[component] = reason
            _log(f"{component} is down: {reason}")
            self.status_changes += 1

    def _probe_gap(self, channel: str, t_begin_ns: int, t_end_ns: int | None, reason: str) -> None:
        """A probe's outage, once it is over, goes to the daemon with its exact extent (our clock)
        on the gaps topic, so results that overlap it are flagged ``probe_down``."""
        if t_end_ns is None:
            return
        gap = wire.DroppedBlock(channel, self.anchor.boot_ns, t_begin_ns, t_end_ns, 0, reason)
        self.spool.put_many([(wire.gaps_topic(self.cfg.id), wire.encode_gaps([gap]), 1, False)])
        if self.outbox.on_spooled is not None:
            self.outbox.on_spooled()

    # clock epochs -------------------------------------------------------------------------------

    def _remember_epoch(self) -> None:
        """Keep this epoch's anchor with the host's boot id: after a restart, the daemon can
        place the backlog of an epoch it never measured (see agent/epoch.py)."""
        host = host_boot_id()
        if host is None:
            return
        boot_ns, anchor_ns = self.anchor.info()
        self.spool.put_meta(f"epoch:{boot_ns}", anchor_ns)
        self.spool.put_meta(f"epoch_host:{boot_ns}", host)

    def epochs(self) -> dict[str, int]:
        """{boot_ns: anchor_ns} of this host boot's latest epochs (ours and earlier runs')."""
        host = host_boot_id()
        if host is None:
            return {}
        hosts = self.spool.meta("epoch_host:")
        mine = sorted(
            (int(k.split(":", 1)[1]), v)
            for k, v in self.spool.meta("epoch:").items()
            if hosts.get(f"epoch_host:{k.split(':', 1)[1]}") == host
        )
        needed = self._epochs_needed()
        kept = mine[-EPOCHS_REPORTED:] + [e for e in mine[:-EPOCHS_REPORTED] if e[0] in needed]
        return {str(b): a for b, a in sorted(kept)[-EPOCHS_REPORTED_MAX:]}

    def _epochs_needed(self) -> set[int]:
        """Epochs of what was sent and is not confirmed yet (relayed markers, blocks): the daemon
        may hold it until it can link that epoch, so its anchor stays in our status until then,
        however many epochs came since (a marker must never be held for ever for want of it)."""
        needed = {boot for boot, _ in list(self._block_message)}
        for sent in list(self._unconfirmed.values()):
            for m in sent[:1]:
                with contextlib.suppress(ValueError, AttributeError, RecursionError):
                    boot = json.loads(m.payload).get("boot_ns")
                    if isinstance(boot, int) and not isinstance(boot, bool):
                        needed.add(boot)
        return needed

    # local markers ------------------------------------------------------------------------------

    def relay_marker(self, obj: Any) -> dict[str, Any]:
        """Validate a harness's marker, stamp it on this host's clock, queue it under our id."""
        marker = wire.parse_marker(obj)
        boot_ns, now = self.anchor.stamp()
        seq = self.spool.next_counter("marker_seq")
        body = {**marker.to_json(), "seq": seq, "t_ns": marker.t_ns or now, "boot_ns": boot_ns}
        self.spool.put_many(
            [(wire.markers_topic(self.cfg.id), json.dumps(body).encode(), 1, False)]
        )
        if marker.event == "end":
            # the samples that close the phase go out as soon as they exist (Outbox.append),
            # and they exist at once: the sampler reads every probe now, not at its next poll
            self.outbox.flush_after_ns = int(body["t_ns"])
            self.sampler.poll_now()
        if self.outbox.on_spooled is not None:
            self.outbox.on_spooled()
        return {"queued": True, "seq": seq, "t_ns": body["t_ns"]}

    async def _http(self) -> Any:
        from aiohttp import web

        async def post_marker(request: web.Request) -> web.Response:
            try:
                obj = await request.json()
                return web.json_response(self.relay_marker(obj), status=202)
            except (ValueError, MarkerError) as err:
                return web.json_response({"error": str(err)}, status=400)

        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/v1/markers", post_marker)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.cfg.http_bind, self.cfg.http_port or 0)
        await site.start()
        port = runner.addresses[0][1]
        self.http_url = f"http://{self.cfg.http_bind}:{port}"
        _log(f"markers from local harnesses: POST {self.http_url}/v1/markers")
        return runner

    # MQTT ---------------------------------------------------------------------------------------

    def _note_daemon(self, daemon: str, payload: bytes) -> None:
        try:
            state = json.loads(payload).get("state") if payload else "offline"
        except (ValueError, AttributeError):
            state = "offline"
        if state == "online":
            self._daemons.add(daemon)
        else:
            self._daemons.discard(daemon)
        if self._daemons:
            self._daemon_online.set()
        else:
            self._daemon_online.clear()

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish the spool in order while a daemon is listening; delete what the broker acked.

        Woken when the sampler spools something (no polling); acks are deleted per batch."""
        loop = asyncio.get_running_loop()
        spooled = asyncio.Event()

        def woken() -> None:
            spooled.set()
            self._tick.set()  # housekeeping rides on this wake (see _housekeeping)

        def wake() -> None:
            loop.call_soon_threadsafe(woken)

        self.outbox.on_spooled = wake
        spooled.set()
        while True:
            await self._daemon_online.wait()
            await spooled.wait()
            spooled.clear()
            # markers and blocks leave peek (and can no longer be dropped at the bound) as
            # they are taken: they are in flight until the daemon confirms them
            while batch := self.spool.peek_to_send(PUBLISH_BATCH, self._held_kind):
                done = self._register_in_flight(batch)
                for msg in batch:
                    await client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
                self.spool.ack_many(done)
                if len(batch) < PUBLISH_BATCH:
                    break  # that was all; whatever is spooled since set ``spooled`` again

    def _held_kind(self, m: Message) -> bool | None:
        """Kept until confirmed: markers (also resent on a timer), blocks; else None."""
        if m.topic == self._markers_topic:
            return True
        return False if m.topic == self._blocks_topic else None

    def _register_in_flight(self, batch: list[Message]) -> list[Message]:
        """Before publishing: note which daemon confirmation each marker and block waits for
        (they stay spooled until then: a broker acknowledges before it saves, so its
        acknowledgement does not survive a broker crash); returns the messages that are done
        once the broker has them (status, gap reports, anything undecodable)."""
        done: list[Message] = []
        for m in batch:
            if m.topic == self._markers_topic and (key := _marker_key(m)):
                self._unconfirmed.setdefault(key, []).append(m)
            elif m.topic == self._blocks_topic and (keys := _block_keys(m)):
                self._waiting_blocks[m.id] = (m, set(keys))
                for k in keys:
                    self._block_message[k] = m.id
            else:
                done.append(m)
        return done

    def _confirmed(self, payload: bytes) -> None:
        key = wire.parse_ack(payload)
        if key is not None:
            if sent := self._unconfirmed.pop(key, None):
                self.spool.ack_many(sent)
            return
        stored: list[Message] = []
        for k in wire.parse_block_acks(payload):
            mid = self._block_message.pop(k, None)
            if mid is None or mid not in self._waiting_blocks:
                continue
            message, left = self._waiting_blocks[mid]
            left.discard(k)
            if not left:
                del self._waiting_blocks[mid]
                stored.append(message)
        if stored:
            self.spool.ack_many(stored)

    def _refused(self, payload: bytes) -> None:
        """The daemon refused a relayed marker: dropped from the spool (logged, counted), unless
        a marker of its run sent before it is still unconfirmed (resends can arrive out of
        order: an end before its begin); then it goes again with the next resend."""
        try:
            err = json.loads(payload)
            key = wire.parse_ack(str(err.get("message", "")).encode())
            reason = str(err.get("error", ""))[:300]
        except (ValueError, AttributeError, RecursionError):
            return
        if key is None or key not in self._unconfirmed:
            return
        if any(r == key[0] and q < key[1] for r, q in self._unconfirmed):
            return
        self.spool.ack_many(self._unconfirmed.pop(key))
        self.markers_refused += 1
        self.status_changes += 1  # republished with the count
        _log(f"the daemon refused marker seq {key[1]} of run {key[0]!r}: {reason}")

    async def _housekeeping(self, client: aiomqtt.Client) -> None:
        """Republish the retained status when the clock epoch or the spool's state changes
        (checked every ``STATUS_CHECK_S``), and send again the markers the daemon has not
        confirmed within ``RESEND_S`` (checked every ``RESEND_S / 5``).

        The checks run when the sampler's flush wakes the loop anyway (every publish
        interval), and on a timer of their own only when no flush came for
        ``HOUSEKEEPING_IDLE_S``: a timer per check was a wake of the process per check."""
        loop = asyncio.get_running_loop()

        # the oldest epoch unconfirmed data needs: its anchor must reach the daemon (epochs())
        def oldest() -> int | None:
            return min(self._epochs_needed(), default=None)

        def state_now() -> tuple[Any, ...]:  # what the status says that may change
            return (
                self.anchor.boot_ns,
                self.spool.changes,
                self.status_changes,
                oldest(),
                self.sampler.reads_asked,
            )

        seen = state_now()
        next_status = next_resend = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tick.wait(), HOUSEKEEPING_IDLE_S)
            self._tick.clear()
            now = loop.time()
            if now >= next_status - HOUSEKEEPING_EARLY_S:
                next_status = now + STATUS_CHECK_S
                state = state_now()
                if state != seen:
                    seen = state
                    await client.publish(
                        wire.status_topic(self.cfg.id), self.status("online"), qos=1, retain=True
                    )
            if now >= next_resend - HOUSEKEEPING_EARLY_S:
                next_resend = now + RESEND_S / 5
                self.spool.tidy()  # confirmed rows no write took along (spool._defer_delete)
                if self.spool.release_unconfirmed(RESEND_S) and self.outbox.on_spooled:
                    self.outbox.on_spooled()

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Clock requests (answered at once) and daemons' presence."""
        async for message in client.messages:
            boot2, t2 = self.anchor.stamp()
            payload = message.payload if isinstance(message.payload, bytes) else b""
            daemon = wire.topic_tail(str(message.topic), "daemons")
            if daemon is not None:
                self._note_daemon(daemon, payload)
                continue
            if str(message.topic) == wire.acks_topic(self.cfg.id):
                self._confirmed(payload)
                continue
            if str(message.topic) == wire.errors_topic(self.cfg.id):
                self._refused(payload)
                continue
            boot3, t3 = self.anchor.stamp()
            if boot3 != boot2:
                continue  # re-anchored between the two stamps: not one epoch
            try:
                reply = wire.clock_reply(payload, t2, t3, boot3, self.anchor.epoch)
            except (wire.WireError, ValueError, KeyError, TypeError, RecursionError):
                continue
            await client.publish(wire.clock_reply_topic(self.cfg.id), reply)

    def status(self, state: str) -> bytes:
        """Our status: presence, clock epoch and spool state (see the module docstring)."""
        boot_ns, now = self.anchor.stamp()
        return wire.status(
            self.cfg.id,
            state,
            now,
            __version__,
            boot_ns=boot_ns,
            epoch=self.anchor.epoch,
            epochs=self.epochs(),
            spool=self.spool.snapshot(),
            probes_down=dict(self.probes_down),
            markers_refused=self.markers_refused,
            reads_asked=self.sampler.reads_asked,
        )

    async def _session(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        status = self.status("online")
        await client.publish(wire.status_topic(self.cfg.id), status, qos=1, retain=True)
        await client.publish(
            wire.channels_topic(self.cfg.id), self.outbox.channels_message(), qos=1, retain=True
        )
        self._daemons.clear()
        self._daemon_online.clear()
        await client.subscribe(wire.clock_request_topic(self.cfg.id), qos=0)
        await client.subscribe(f"{wire.TOPIC_ROOT}/daemons/+", qos=1)
        await client.subscribe(wire.acks_topic(self.cfg.id), qos=1)
        await client.subscribe(wire.errors_topic(self.cfg.id), qos=1)
        self.spool.release_unconfirmed()  # a new session: what was in flight may be lost
        self._unconfirmed.clear()
        self._waiting_blocks.clear()
        self._block_message.clear()
        tasks = [
            asyncio.create_task(c)
            for c in (
                self._drain(client),
                self._receive(client),
                self._housekeeping(client),
                stop.wait(),
            )
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            exc = None if task.cancelled() else task.exception()
            if exc is not None:
                raise exc
        offline = self.status("offline")
        await client.publish(wire.status_topic(self.cfg.id), offline, qos=1, retain=True)

    async def run(self, stop: asyncio.Event) -> None:
        self.sampler.start()
        runner = await self._http() if self.cfg.http_port is not None else None
        will = aiomqtt.Will(
            wire.status_topic(self.cfg.id),
            wire.status(self.cfg.id, "offline", 0, __version__, boot_ns=self.anchor.boot_ns),
            qos=1,
            retain=True,
        )
        client = self.cfg.mqtt.client(identifier=f"powerd-agent-{self.cfg.id}", will=will)
        backoff_s = BACKOFF_FIRST_S
        try:
            while not stop.is_set():
                try:
                    async with client:
                        _log(f"connected to {self.cfg.mqtt.describe()} as {self.cfg.id}")
                        backoff_s = BACKOFF_FIRST_S
                        await self._session(client, stop)
                except aiomqtt.MqttError as err:
                    if stop.is_set():
                        break
                    _log(
                        f"MQTT {self.cfg.mqtt.describe()}: {err}; spooling "
                        f"({len(self.spool)} queued), retrying in {backoff_s:.1f} s"
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), backoff_s)
                    backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
        finally:
            self.sampler.stop()
            if runner is not None:
                await runner.cleanup()
            self.spool.close()
