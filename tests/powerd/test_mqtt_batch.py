"""``powerd.mqtt_batch.publish_many`` against a real mosquitto: every message arrives, each
outcome says what became of its message (acknowledged, or not within the timeout while the
broker is stopped), a cancelled batch raises and leaves nothing in aiomqtt's pending table, and
a batch is not a pass over every pending publish per message (issue 16)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho

from powerd.mqtt_batch import publish_many
from tests.servers import mosquitto, wait_for


def subscriber(port: int, got: list[str], ready: threading.Event) -> paho.Client:
    sub = paho.Client(paho.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda _c, _u, msg: got.append(msg.topic)
    sub.on_subscribe = lambda *_: ready.set()
    sub.connect("127.0.0.1", port)
    sub.subscribe("batch/#", qos=1)
    sub.loop_start()
    return sub


def test_every_message_arrives_and_is_acknowledged(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as b:
        got: list[str] = []
        ready = threading.Event()
        sub = subscriber(b.port, got, ready)
        try:
            assert ready.wait(10)

            async def main() -> list[BaseException | None]:
                async with aiomqtt.Client("127.0.0.1", b.port, identifier="batch-1") as c:
                    items = [(f"batch/{i}", f"m{i}", 1 if i % 3 else 0, False) for i in range(600)]
                    out = await publish_many(c, items)
                    assert c._pending_publishes == {}  # nothing left behind
                    return out

            outcomes = asyncio.run(main())
            assert outcomes == [None] * 600
            wait_for(lambda: len(got) == 600, 10, "all 600 messages")
            assert sorted(got) == sorted(f"batch/{i}" for i in range(600))
        finally:
            sub.loop_stop()
            sub.disconnect()


def test_a_stopped_broker_gives_timeouts_and_a_cancelled_batch_raises(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as b:
        assert b.proc is not None

        async def main() -> None:
            async with aiomqtt.Client("127.0.0.1", b.port, identifier="batch-2") as c:
                os.kill(b.proc.pid, signal.SIGSTOP)  # no acknowledgement comes
                try:
                    items = [("batch/a", "x", 1, False), ("batch/b", "y", 0, False)]
                    out = await publish_many(c, items, timeout_s=0.5)
                    assert isinstance(out[0], aiomqtt.MqttError) and out[1] is None
                    assert c._pending_publishes == {}
                    task = asyncio.create_task(publish_many(c, items, timeout_s=30))
                    await asyncio.sleep(0.2)
                    task.cancel()
                    try:
                        await task
                    except asyncio.CancelledError:
                        pass
                    else:
                        raise AssertionError("a cancelled batch returned")
                    assert c._pending_publishes == {}
                finally:
                    os.kill(b.proc.pid, signal.SIGCONT)

        asyncio.run(main())
