"""Many MQTT publishes at once, their acknowledgements awaited together, at a fixed cost each.

aiomqtt's ``Client.publish`` costs, per message, an ``asyncio.Event``, a ``wait_for`` task and
a pass over every publish still pending (to log a warning past ``pending_calls_threshold``,
which it did for every confirmation a fleet daemon sent: 10 by default, hundreds pending); a
batch of N publishes cost O(N^2) and N log lines. At 1 000 agents the daemon publishes
thousands a second (confirmations, results, clock requests; issue 16, fleet profile). Here
each message is handed to paho once and its acknowledgement recorded by a slot object that
aiomqtt's own ``on_publish`` callback sets (``Client._pending_publishes``), and one future
per batch is awaited. What each message became is returned, so callers count and keep what
was not acknowledged exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

# topic, payload, qos, retain
Outgoing = tuple[str, bytes | str, int, bool]


class _Batch:
    """The acknowledgements one batch still waits for."""

    __slots__ = ("acked", "done", "left")

    def __init__(self, n: int, done: asyncio.Future[None]) -> None:
        self.acked = [False] * n
        self.left = 0
        self.done = done


class _Slot:
    """Stands in aiomqtt's table of pending publishes for one message of a batch: aiomqtt's
    ``on_publish`` calls ``set()`` when the broker acknowledged it (QoS 1) or it was written
    (QoS 0)."""

    __slots__ = ("batch", "index")

    def __init__(self, batch: _Batch, index: int) -> None:
        self.batch, self.index = batch, index

    def set(self) -> None:
        batch = self.batch
        if batch.acked[self.index]:
            return
        batch.acked[self.index] = True
        batch.left -= 1
        if batch.left == 0 and not batch.done.done():
            batch.done.set_result(None)


async def publish_many(
    client: aiomqtt.Client, items: Sequence[Outgoing], timeout_s: float | None = None
) -> list[BaseException | None]:
    """Publish ``items`` in order and wait (at most ``timeout_s``, default the client's
    timeout) until QoS 1 ones are acknowledged; QoS 0 ones are not waited for (as ``publish``
    with QoS 0, they are handed to paho, which writes them). Returns, per item, None if it was
    published or the error that kept it from being so (the connection is gone, or no
    acknowledgement within the timeout): callers decide what to keep and send again."""
    out: list[BaseException | None] = [None] * len(items)
    if not items:
        return out
    loop = asyncio.get_running_loop()
    batch = _Batch(len(items), loop.create_future())
    # aiomqtt's table, whose entries its on_publish callback sets (typed there as Events)
    pending: dict[int, Any] = client._pending_publishes
    mids: list[tuple[int, int]] = []
    try:
        for i, (topic, payload, qos, retain) in enumerate(items):
            info = client._client.publish(topic, payload, qos, retain)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                out[i] = aiomqtt.MqttCodeError(info.rc, "Could not publish message")
                continue
            if qos == 0 or info.is_published():
                batch.acked[i] = True
                continue
            pending[info.mid] = _Slot(batch, i)
            mids.append((info.mid, i))
            batch.left += 1
        if batch.left:
            timeout = client.timeout if timeout_s is None else timeout_s
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns normally when it is
            # cancelled just as what it waits for completes, so a cancelled loop went on
            # publishing (a daemon that did not stop on SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await batch.done
    finally:
        for mid, _ in mids:
            slot = pending.get(mid)
            if isinstance(slot, _Slot) and slot.batch is batch:
                del pending[mid]
    for _, i in mids:
        if not batch.acked[i]:
            out[i] = aiomqtt.MqttError("Operation timed out")
    return out
