"""The daemon's MQTT side: subscribe, hand every message to the Daemon, publish what it produces.

Markers from any ``powerd/v1/markers/<source>``; invalid ones are answered on
``powerd/v1/errors/<source>``. Agents' blocks, channel lists, status and clock replies go to the
Daemon; clock requests go out to agents whose status is online (``powerd.clockplan``: per-agent
interval, a global rate, backoff for agents that never answer); results are published retained on
``powerd/v1/results/<run>`` as they become due.

Nothing is lost and nothing is silent:

- Every message is handled on its own: one that raises is counted (``health.problem``), logged
  once per source and kind, answered on the errors topic if it was a marker, and acknowledged
  (it would fail again on every redelivery); the next message is handled as usual.
- QoS 1 messages are acknowledged by hand, and only once what they carried is committed to the
  store (markers and agents' samples at a flush; held messages in ``powerd.held``). Flushes
  are grouped: a burst of messages is handled, then one flush, then their acknowledgements —
  one commit per burst, not per message. Handling, committing and confirming run as three
  tasks (``_dispatch``, ``_committer``, ``_confirmer``), so the next burst is handled while the
  last one is committed and its senders confirmed (see ``_Ingest``).
- A broker acknowledges a publish before it has saved it, so a broker crash can lose what a
  sender already deleted. Each marker with a ``seq`` is therefore confirmed end to end once it is
  committed: ``{"v": 1, "run", "seq", "state"}`` on ``powerd/v1/acks/<source>``. Senders
  (``powerd.client``, ``powerd mark``, the agent) keep a marker and send it again until then; a
  repeat is recognised by (source, run, seq) and confirmed again. An agent's blocks are
  confirmed the same way, one ``{"v": 1, "blocks": [[boot_ns, seq], ...]}`` per agent per
  commit; the agent keeps them until then and sends the unconfirmed ones again on reconnect.
- The session is persistent under a stable client id (``powerd-<daemon id>``, MQTT v5 with clean
  start off and a session expiry), so QoS 1 messages sent while the daemon was down are delivered
  when it comes back, and so are those it had received but not acknowledged when it was killed.
- The loop is supervised: any exception (not only a lost connection) is logged once, ingestion
  is marked down (``/healthz`` degraded with the reason) and the loop reconnects with backoff.
  The daemon's retained presence on ``powerd/v1/daemons/<id>`` is "online" only while it ingests
  (else "degraded" when it can still say so, and its last will says "offline" if it dies), and
  agents send their spool only to an online daemon, so they keep it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import socket
import sys
from typing import Any

import aiomqtt

from powerd import __version__
from powerd.agent import wire
from powerd.agent.mqttconf import MqttSettings
from powerd.clockplan import ClockPlan
from powerd.daemon import Daemon, MarkerOutcome
from powerd.mqtt_batch import Outgoing, publish_many

BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0
ACK_BATCH_MAX = 512
PRESENCE_POLL_S = 1.0
CLOCK_POLL_MAX_S = 0.1
PUBLISH_TIMEOUT_S = 2.0
RESULTS_BATCH_MAX = 256
# Components that, when down, mean what the daemon receives may not be stored.
INGEST_COMPONENTS = ("mqtt", "store")
STORE_DOWN = "cannot commit received samples"


def _log(text: str) -> None:
    print(f"powerd: {text}", file=sys.stderr, flush=True)


def default_daemon_id() -> str:
    """The host name, as a topic-safe id."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "-", socket.gethostname())[:100] or "powerd"


def _source_and_kind(topic: str) -> tuple[str, str]:
    """Who sent a message and what kind it is, for counting problems."""
    parts = topic.split("/")
    if len(parts) >= 4 and parts[2] in ("markers", "blocks", "channels", "status", "gaps"):
        return parts[3][:128], parts[2]
    if len(parts) >= 4 and parts[2] == "clock":
        return parts[3][:128], "clock"
    return topic[:128], "unknown"


Confirmation = tuple[str, dict[str, Any]]


def _confirmation(source: str, payload: bytes, outcome: MarkerOutcome) -> Confirmation | None:
    """What to tell ``source`` once this marker is committed (only markers with a ``seq``)."""
    marker = outcome.stamped.marker if outcome.stamped is not None else wire.decode_marker(payload)
    if marker.seq is None:
        return None
    state = "held" if outcome.held else "repeat" if outcome.repeat else "stored"
    return wire.acks_topic(source), wire.ack_message(marker.run, marker.seq, state)


async def _handle(
    client: aiomqtt.Client, daemon: Daemon, plan: ClockPlan, topic: str, payload: bytes, rx: int
) -> Confirmation | None:
    """Apply one message; a marker that was made durable returns its confirmation."""
    if (source := wire.topic_tail(topic, "markers")) is not None:
        # committed by the committer's flush, before it is acknowledged or confirmed
        outcome = daemon.submit_marker(source, payload, rx, commit_at_flush=True)
        if outcome.error is not None:
            daemon.health.problem(source, "marker_rejected", outcome.error)
            body = json.dumps(wire.error_message(outcome.error, payload))
            await _publish_one(client, wire.errors_topic(source), body)
            return None
        return _confirmation(source, payload, outcome)
    elif (agent := wire.topic_tail(topic, "blocks")) is not None:
        if daemon.accept_block(agent, payload):
            keys = [list(k) for k in wire.block_keys(payload)]
            return wire.acks_topic(agent), {"v": wire.VERSION, "blocks": keys}
    elif (agent := wire.topic_tail(topic, "channels")) is not None:
        daemon.accept_channels(agent, payload)
    elif (agent := wire.topic_tail(topic, "status")) is not None:
        if daemon.accept_status(agent, payload) and daemon.agents[agent].get("state") == "online":
            plan.online(agent)
        else:
            plan.offline(agent)
    elif (agent := wire.topic_tail(topic, "gaps")) is not None:
        daemon.accept_gaps(agent, payload)
    elif topic.startswith(f"{wire.TOPIC_ROOT}/clock/") and topic.endswith("/reply"):
        agent = topic.split("/")[3]
        if daemon.accept_clock_reply(agent, payload, rx):
            plan.answered(agent)
    else:
        daemon.health.problem(topic[:128], "topic_unexpected", "a message on no known topic")
    return None


def _ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """PUBACK now. aiomqtt 2.x has no manual-ack API of its own; paho's is used underneath."""
    client._client.ack(message.mid, message.qos)


Unacked = tuple[aiomqtt.Message, str, bytes]


class _Ingest:
    """What the dispatcher handled and the committer has not made durable and acknowledged
    yet, and the confirmations waiting for that commit or for the confirmer.

    Handling, committing and confirming are three tasks, not one (issue 16): the broker sends
    the daemon at most its ``max_inflight_messages`` unacknowledged messages (100 in the shipped
    ``mosquitto/powerd.conf``), so when one task handled a burst, then waited for the store's
    commit, then for the broker's acknowledgement of every confirmation, the broker's window
    sat idle through both waits and a fleet's messages queued up in the broker. Now the
    dispatcher goes on handling while the committer commits the previous burst, and the
    committer acknowledges the next burst while the confirmer waits on the broker. The order
    of guarantees is unchanged: a message is acknowledged and a sender confirmed only after
    the commit that made what it carried durable."""

    def __init__(self) -> None:
        self.open: list[Unacked] = []  # being handled (not yet handed to the committer)
        self.open_confirmations: list[Confirmation] = []
        self.ready: list[Unacked] = []  # handed to the committer
        self.ready_confirmations: list[Confirmation] = []
        self.commit = asyncio.Event()
        self.confirm: list[Confirmation] = []  # committed: for the confirmer to send
        self.confirm_wake = asyncio.Event()

    def seal(self) -> None:
        """Hand what was handled so far to the committer."""
        self.ready.extend(self.open)
        self.open.clear()
        self.ready_confirmations.extend(self.open_confirmations)
        self.open_confirmations.clear()
        self.commit.set()


async def _committer(client: aiomqtt.Client, daemon: Daemon, ingest: _Ingest) -> None:
    """Make every handled message durable (one store flush for all that is ready), acknowledge
    them to the broker, then hand their confirmations to the confirmer."""
    while True:
        await ingest.commit.wait()
        ingest.commit.clear()
        batch, ingest.ready = ingest.ready, []
        confirmations, ingest.ready_confirmations = ingest.ready_confirmations, []
        if not batch and not confirmations:
            continue
        try:
            await asyncio.to_thread(daemon.store.flush)
        except Exception as err:
            # Not written, but still in the store's buffer (Store.flush puts back what it
            # took): a later flush commits it. The messages stay unacknowledged; their
            # redelivery (after the reconnect this raise causes) is recognised as a repeat and
            # acknowledged after that later commit.
            daemon.health.down("store", f"{STORE_DOWN}: {err}")
            raise
        if daemon.health.down_reasons().get("store", "").startswith(STORE_DOWN):
            daemon.health.up("store")  # only what this module said is down
        for message, _, _ in batch:
            _ack(client, message)
        if confirmations:
            ingest.confirm.extend(confirmations)
            ingest.confirm_wake.set()


async def _confirmer(client: aiomqtt.Client, daemon: Daemon, ingest: _Ingest) -> None:
    """Confirm committed markers and blocks to their senders (``powerd/v1/acks/<source>``):
    everything committed meanwhile at once, one message per agent for its blocks, all in
    flight together (one broker round trip, not one per confirmation)."""
    while True:
        await ingest.confirm_wake.wait()
        ingest.confirm_wake.clear()
        confirmations, ingest.confirm = ingest.confirm, []
        await _send_confirmations(client, daemon, confirmations)


async def _send_confirmations(
    client: aiomqtt.Client, daemon: Daemon, confirmations: list[Confirmation]
) -> None:
    blocks: dict[str, list[list[int]]] = {}
    sends: list[tuple[str, str, str, int]] = []  # topic, body, count key, how many
    for topic, body in confirmations:
        if "blocks" in body:  # one confirmation per agent per commit, however many messages
            blocks.setdefault(topic, []).extend(body["blocks"])
            continue
        sends.append((topic, json.dumps(body), "markers_confirmed", 1))
    for topic, keys in blocks.items():
        body = {"v": wire.VERSION, "blocks": keys}
        sends.append(
            (topic, json.dumps(body, separators=(",", ":")), "blocks_confirmed", len(keys))
        )
    outcomes = await publish_many(client, [(topic, body, 1, False) for topic, body, _, _ in sends])
    failed: BaseException | None = None
    for (_, _, key, n), outcome in zip(sends, outcomes, strict=True):
        if outcome is not None:
            failed = failed or outcome
        else:
            daemon.counts[key] += n
    if failed is not None:
        raise failed  # the connection is gone: senders send again what stays unconfirmed


async def _dispatch(
    client: aiomqtt.Client, daemon: Daemon, plan: ClockPlan, ingest: _Ingest
) -> None:
    async for message in client.messages:
        received_ns = daemon.clock()
        topic = str(message.topic)
        payload = (
            message.payload
            if isinstance(message.payload, bytes)
            else str(message.payload or "").encode()
        )
        try:
            confirmation = await _handle(client, daemon, plan, topic, payload, received_ns)
            if confirmation is not None:
                ingest.open_confirmations.append(confirmation)
        except aiomqtt.MqttError:
            raise  # the connection is gone: the unacknowledged message comes again
        except Exception as err:
            source, kind = _source_and_kind(topic)
            reason = f"{type(err).__name__}: {err}"[:500]
            daemon.health.problem(source, f"{kind}_failed", reason)
            daemon.counts[f"{kind}_failed"] += 1
            if kind == "markers" and wire.SOURCE_RE.match(source):
                body = json.dumps(wire.error_message(f"internal error: {reason}", payload))
                await _publish_one(client, wire.errors_topic(source), body)
        if message.qos > 0:
            ingest.open.append((message, topic, payload))
        if (ingest.open or ingest.open_confirmations) and (
            len(client.messages) == 0 or len(ingest.open) >= ACK_BATCH_MAX
        ):
            ingest.seal()
            await asyncio.sleep(0)  # let the committer start on it


async def _publish_one(
    client: aiomqtt.Client, topic: str, body: str | bytes, retain: bool = False
) -> None:
    """One QoS 1 publish, its acknowledgement awaited; raises what kept it from the broker."""
    (outcome,) = await publish_many(client, [(topic, body, 1, retain)])
    if outcome is not None:
        raise outcome


def _on_clock_reply(daemon: Daemon, plan: ClockPlan, _c: Any, _u: Any, message: Any) -> None:
    """A clock reply, handled in paho's read callback as it is read: stamped t4 then, not when
    the dispatcher reaches it behind a burst of blocks (at 1 000 agents that queue added tens of
    ms to every round trip, so to every agent's offset uncertainty). Never raises (paho would
    end the loop): a failure is counted like any message's."""
    t4 = daemon.clock()
    topic = str(message.topic)
    agent = topic.split("/")[3] if topic.count("/") >= 4 else topic[:128]
    try:
        if daemon.accept_clock_reply(agent, bytes(message.payload), t4):
            plan.answered(agent)
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"[:500]
        daemon.health.problem(agent[:128], "clock_failed", reason)
        daemon.counts["clock_failed"] += 1


async def _clock_requests(client: aiomqtt.Client, daemon: Daemon, plan: ClockPlan) -> None:
    while True:
        out: list[Outgoing] = []
        for agent in plan.take():
            if daemon.agents.get(agent, {}).get("state") != "online":
                plan.offline(agent)
                continue
            out.append((wire.clock_request_topic(agent), daemon.clock_request(agent), 0, False))
        # QoS 0, handed to paho together (each one awaited in turn cost an event-loop pass)
        for outcome in await publish_many(client, out):
            if outcome is not None:
                raise outcome
        await asyncio.sleep(min(plan.next_in_s(), CLOCK_POLL_MAX_S))


async def _results(client: aiomqtt.Client, queue: asyncio.Queue[dict[str, Any]]) -> None:
    """Publish results retained, in the order they were computed; those that fail stay queued.

    Every result queued is sent at once and their acknowledgements awaited together: awaiting
    each one's broker round trip in turn held a fleet's results (tens a second) seconds behind
    ingestion on the same event loop (issue 16)."""
    while True:
        batch = [await queue.get()]
        while not queue.empty() and len(batch) < RESULTS_BATCH_MAX:
            batch.append(queue.get_nowait())
        try:
            outcomes = await publish_many(
                client, [(wire.results_topic(r["run"]), json.dumps(r), 1, True) for r in batch]
            )
        except BaseException:
            for result in batch:  # cancelled: sent again (retained: a repeat is harmless)
                queue.put_nowait(result)
            raise
        failed = [e for e in outcomes if e is not None]
        if failed:
            for result, outcome in zip(batch, outcomes, strict=True):
                if outcome is not None:
                    queue.put_nowait(result)
            raise failed[0]


def _state(daemon: Daemon) -> str:
    down = daemon.health.down_reasons()
    return "degraded" if any(c in down for c in INGEST_COMPONENTS) else "online"


async def _presence(client: aiomqtt.Client, daemon: Daemon, daemon_id: str) -> None:
    """Keep the retained presence in step with whether the daemon can store what it gets."""
    published = ""
    while True:
        state = _state(daemon)
        if state != published:
            body = wire.status(daemon_id, state, daemon.clock(), __version__)
            await _publish_one(client, wire.daemon_topic(daemon_id), body, retain=True)
            published = state
        await asyncio.sleep(PRESENCE_POLL_S)


async def _publish_state(
    client: aiomqtt.Client, daemon: Daemon, daemon_id: str, state: str
) -> None:
    """Best effort (the connection may be what failed): bounded, never raises."""
    body = wire.status(daemon_id, state, daemon.clock(), __version__)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            client.publish(wire.daemon_topic(daemon_id), body, qos=1, retain=True),
            PUBLISH_TIMEOUT_S,
        )


async def run_mqtt(
    daemon: Daemon,
    settings: MqttSettings,
    clock_interval_s: float,
    stop: asyncio.Event,
    daemon_id: str | None = None,
    clock_rate_max_hz: float = 200.0,
) -> None:
    """Serve MQTT until ``stop`` is set, reconnecting whenever the broker goes away or anything
    in the loop fails. ``daemon_id`` (default: the host name) names the retained presence topic
    and the client id ``powerd-<id>`` (``[mqtt] client_id`` overrides), which must be stable
    across restarts for the persistent session to be resumed."""
    daemon_id = daemon_id or default_daemon_id()
    will = aiomqtt.Will(
        wire.daemon_topic(daemon_id),
        wire.status(daemon_id, "offline", 0, __version__),
        qos=1,
        retain=True,
    )
    # MQTT 3.1.1 with clean_session off unless [mqtt] session_expiry_s asks for a v5 session:
    # the session is as durable (the broker keeps it until its persistent_client_expiration, 7
    # days in the shipped mosquitto/powerd.conf, for ever in mosquitto's default) and paho
    # handles a received 3.1.1 PUBLISH in less than half the CPU of a v5 one, which builds a
    # Properties object for every packet (bench/mqtt_decode.py; BENCHMARKS.md §12).
    client = settings.client(
        identifier=f"powerd-{daemon_id}",
        will=will,
        session_expiry_s=settings.session_expiry_s,
    )
    client._client.manual_ack_set(True)  # see _ack
    loop = asyncio.get_running_loop()
    results: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    plan = ClockPlan(clock_interval_s, clock_rate_max_hz)
    # clock replies are taken as paho reads them, not in turn behind the blocks queued for the
    # dispatcher: their t4 is the time they arrived (issue 16)
    client._client.message_callback_add(
        f"{wire.TOPIC_ROOT}/clock/+/reply", functools.partial(_on_clock_reply, daemon, plan)
    )

    def on_result(result: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(results.put_nowait, result)

    daemon.result_listeners.append(on_result)
    daemon.health.down("mqtt", f"not yet connected to {settings.describe()}")
    backoff_s = BACKOFF_FIRST_S
    while not stop.is_set():
        try:
            async with client:
                _log(f"connected to {settings.describe()} as {client.identifier}")
                await client.subscribe(
                    [
                        (f"{wire.TOPIC_ROOT}/status/+", 1),
                        (f"{wire.TOPIC_ROOT}/channels/+", 1),
                        (f"{wire.TOPIC_ROOT}/markers/+", 1),
                        (f"{wire.TOPIC_ROOT}/blocks/+", 1),
                        (f"{wire.TOPIC_ROOT}/gaps/+", 1),
                        (f"{wire.TOPIC_ROOT}/clock/+/reply", 0),
                    ]
                )
                daemon.health.up("mqtt")
                backoff_s = BACKOFF_FIRST_S
                for agent, status in list(daemon.agents.items()):
                    if status.get("state") == "online":
                        plan.online(agent)
                ingest = _Ingest()
                tasks = [
                    asyncio.create_task(_dispatch(client, daemon, plan, ingest)),
                    asyncio.create_task(_committer(client, daemon, ingest)),
                    asyncio.create_task(_confirmer(client, daemon, ingest)),
                    asyncio.create_task(_clock_requests(client, daemon, plan)),
                    asyncio.create_task(_results(client, results)),
                    asyncio.create_task(_presence(client, daemon, daemon_id)),
                    asyncio.create_task(stop.wait()),
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
                        if not isinstance(exc, aiomqtt.MqttError):
                            # still connected: say so before going away (no will on a clean
                            # disconnect)
                            daemon.health.down("mqtt", f"ingestion failed: {exc!r}"[:300])
                            await _publish_state(client, daemon, daemon_id, "degraded")
                        raise exc
                if stop.is_set():
                    await _publish_state(client, daemon, daemon_id, "offline")
        except asyncio.CancelledError:
            raise
        except Exception as err:
            if stop.is_set():
                break
            what = str(err) if isinstance(err, aiomqtt.MqttError) else repr(err)
            # logged by health once per distinct reason, not at every retry
            daemon.health.down("mqtt", f"{settings.describe()}: {what}"[:300])
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff_s):  # not wait_for: see mqtt_batch
                    await stop.wait()
            backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
    daemon.health.down("mqtt", "stopped")
