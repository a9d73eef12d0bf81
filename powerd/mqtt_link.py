"""The daemon's MQTT side: subscribe, hand every message to the Daemon, publish what it produces.

Markers from any ``powerd/v1/markers/<source>``; invalid ones are answered on
``powerd/v1/errors/<source>``. Agents' blocks, channel lists, status and clock replies go to the
Daemon; clock requests go out to every known agent each ``clock_interval_s``; results are
published retained on ``powerd/v1/results/<run>`` as they become due. aiomqtt does not reconnect
by itself, so the loop does, with backoff; the session is persistent (clean_session off), so QoS 1
messages sent while the daemon was away are delivered when it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

import aiomqtt

from agent import wire
from agent.mqttconf import MqttSettings
from powerd import __version__
from powerd.daemon import Daemon

BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0


def _log(text: str) -> None:
    print(f"powerd: {text}", file=sys.stderr, flush=True)


async def _dispatch(client: aiomqtt.Client, daemon: Daemon, clock: Callable[[], int]) -> None:
    async for message in client.messages:
        received_ns = clock()
        topic = str(message.topic)
        payload = (
            message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        )
        if (source := wire.topic_tail(topic, "markers")) is not None:
            outcome = daemon.submit_marker(source, payload, received_ns)
            if outcome.error is not None:
                body = json.dumps(wire.error_message(outcome.error, payload))
                await client.publish(wire.errors_topic(source), body, qos=1)
        elif (agent := wire.topic_tail(topic, "blocks")) is not None:
            daemon.accept_block(agent, payload)
        elif (agent := wire.topic_tail(topic, "channels")) is not None:
            daemon.accept_channels(agent, payload)
        elif (agent := wire.topic_tail(topic, "status")) is not None:
            daemon.accept_status(agent, payload)
        elif (agent := wire.topic_tail(topic, "gaps")) is not None:
            daemon.accept_gaps(agent, payload)
        elif topic.startswith(f"{wire.TOPIC_ROOT}/clock/") and topic.endswith("/reply"):
            agent = topic.split("/")[3]
            daemon.accept_clock_reply(agent, payload, received_ns)


async def _clock_requests(client: aiomqtt.Client, daemon: Daemon, interval_s: float) -> None:
    while True:
        for agent, status in list(daemon.agents.items()):
            if status.get("state") == "online":
                await client.publish(wire.clock_request_topic(agent), daemon.clock_request(agent))
        await asyncio.sleep(interval_s)


async def _results(client: aiomqtt.Client, queue: asyncio.Queue[dict[str, Any]]) -> None:
    """Publish results retained, in the order they were computed; one that fails stays queued."""
    while True:
        result = await queue.get()
        try:
            await client.publish(
                wire.results_topic(result["run"]), json.dumps(result), qos=1, retain=True
            )
        except BaseException:
            queue.put_nowait(result)
            raise


async def run_mqtt(
    daemon: Daemon, settings: MqttSettings, clock_interval_s: float, stop: asyncio.Event
) -> None:
    """Serve MQTT until ``stop`` is set, reconnecting whenever the broker goes away."""
    daemon_id = f"powerd-{socket.gethostname()}-{os.getpid()}"
    will = aiomqtt.Will(
        wire.daemon_topic(daemon_id),
        wire.status(daemon_id, "offline", 0, __version__),
        qos=1,
        retain=True,
    )
    client = settings.client(identifier=settings.client_id or daemon_id, will=will)
    loop = asyncio.get_running_loop()
    results: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def on_result(result: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(results.put_nowait, result)

    daemon.result_listeners.append(on_result)
    backoff_s = BACKOFF_FIRST_S
    while not stop.is_set():
        try:
            async with client:
                _log(f"connected to {settings.describe()}")
                backoff_s = BACKOFF_FIRST_S
                await client.subscribe(
                    [
                        (f"{wire.TOPIC_ROOT}/markers/+", 1),
                        (f"{wire.TOPIC_ROOT}/blocks/+", 1),
                        (f"{wire.TOPIC_ROOT}/channels/+", 1),
                        (f"{wire.TOPIC_ROOT}/status/+", 1),
                        (f"{wire.TOPIC_ROOT}/gaps/+", 1),
                        (f"{wire.TOPIC_ROOT}/clock/+/reply", 0),
                    ]
                )
                online = wire.status(daemon_id, "online", daemon.clock(), __version__)
                await client.publish(wire.daemon_topic(daemon_id), online, qos=1, retain=True)
                tasks = [
                    asyncio.create_task(_dispatch(client, daemon, daemon.clock)),
                    asyncio.create_task(_clock_requests(client, daemon, clock_interval_s)),
                    asyncio.create_task(_results(client, results)),
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
                        raise exc
                if stop.is_set():
                    offline = wire.status(daemon_id, "offline", daemon.clock(), __version__)
                    await client.publish(wire.daemon_topic(daemon_id), offline, qos=1, retain=True)
        except aiomqtt.MqttError as err:
            if stop.is_set():
                break
            _log(f"MQTT {settings.describe()}: {err}; retrying in {backoff_s:.1f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff_s)
            backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
