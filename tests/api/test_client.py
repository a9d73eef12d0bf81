"""The harness client (powerd.client) against a real API server and a real mosquitto broker."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from powerd.agent import wire
from powerd.client import PowerdClient, PowerdClientError, default_source
from powerd.daemon import Daemon
from tests.api.helpers import TIMEOUT_S, Api, Broker, component
from tests.ports import free_port


def test_phase_context_sends_begin_and_end_with_count_meta_and_error_flag(
    api: Api, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERD_URL", api.url)
    monkeypatch.setenv("POWERD_RUN", "bench")
    client = PowerdClient()
    assert client.source == default_source() and client.url == api.url
    with client.phase("decode", trial=2, unit="token", meta={"model": "m1"}) as ph:
        ph.count = 128
    with pytest.raises(ZeroDivisionError), client.phase("prefill", count=4):
        _ = 1 / 0
    stored = daemon.store.markers("bench")
    assert [(sm.marker.phase, sm.marker.event) for sm in stored] == [
        ("decode", "begin"),
        ("decode", "end"),
        ("prefill", "begin"),
        ("prefill", "end"),
    ]
    end = stored[1].marker
    assert (end.count, end.unit, end.trial, end.meta) == (128, "token", 2, {"model": "m1"})
    assert stored[3].marker.count == 4 and stored[3].marker.meta == {"error": "ZeroDivisionError"}
    assert all(sm.timing.source == "marker" and sm.source == client.source for sm in stored)
    seqs = [sm.marker.seq for sm in stored]
    assert seqs == sorted(set(seqs))
    assert stored[0].marker.t_ns is not None and stored[0].t_ns == stored[0].marker.t_ns


def test_server_refusals_and_bad_input_raise_with_the_reason(api: Api, serve: Any) -> None:
    client = PowerdClient(url=api.url, run="r2", source="harness")
    with pytest.raises(PowerdClientError, match=r"HTTP 422.*without a begin"):
        client.mark("end", "decode")
    with pytest.raises(PowerdClientError, match="invalid marker: phase"):
        client.mark("begin", "bad phase")
    with pytest.raises(PowerdClientError, match="no run id"):
        PowerdClient(url=api.url, run="")
    guarded = serve("t0ken-0123456789abcdef")
    with pytest.raises(PowerdClientError, match=r"HTTP 401.*bearer token"):
        PowerdClient(url=guarded.url, run="r2").mark("begin", "decode")
    ok = PowerdClient(url=guarded.url, run="r2", token="t0ken-0123456789abcdef")
    answer = ok.mark("begin", "decode")
    component("MarkerAccepted").validate(answer)
    closed = PowerdClient(url=f"http://127.0.0.1:{free_port()}", run="r2", timeout_s=2)
    with pytest.raises(PowerdClientError, match="cannot reach powerd"):
        closed.mark("begin", "decode")


def _subscribe(broker: Broker, topic: str) -> tuple[mqtt.Client, queue.Queue[mqtt.MQTTMessage]]:
    got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    ready = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-subscriber")
    sub.on_message = lambda _c, _u, msg: got.put(msg)
    sub.on_subscribe = lambda *_args: ready.set()
    sub.on_connect = lambda c, *_args: c.subscribe(topic, qos=1)
    sub.connect(broker.host, broker.port)
    sub.loop_start()
    assert ready.wait(TIMEOUT_S), "subscription not acknowledged"
    return sub, got


def test_mqtt_transport_publishes_contract_1_markers_and_reports_rejections(
    broker: Broker,
) -> None:
    sub, got = _subscribe(broker, "powerd/v1/markers/#")
    try:
        with PowerdClient(
            run="r3",
            source="harness-mqtt",
            transport="mqtt",
            mqtt_host=broker.host,
            mqtt_port=broker.port,
            confirm_timeout_s=0.5,  # no daemon here: nothing is confirmed
        ) as client:
            with client.phase("decode", meta={"batch": 8}) as ph:
                ph.count = 3
            messages = [got.get(timeout=TIMEOUT_S) for _ in range(2)]
            for msg in messages:
                assert msg.topic == wire.markers_topic("harness-mqtt") and msg.qos == 1
                component("Marker").validate(json.loads(msg.payload))
            begin, end = (wire.decode_marker(bytes(m.payload)) for m in messages)
            assert (begin.event, end.event, end.count, end.meta) == (
                "begin",
                "end",
                3,
                {"batch": 8},
            )
            assert end.seq > begin.seq and end.t_ns is not None

            # powerd answers an invalid marker on powerd/v1/errors/<source>; the client raises it.
            info = sub.publish(
                wire.errors_topic("harness-mqtt"),
                json.dumps(wire.error_message("end of phase 'x' without a begin", b"{}")),
                qos=1,
            )
            info.wait_for_publish(TIMEOUT_S)
            deadline = time.monotonic() + TIMEOUT_S
            while not client.rejections and time.monotonic() < deadline:
                time.sleep(0.01)
            assert client.rejections == ["end of phase 'x' without a begin"]
            with pytest.raises(PowerdClientError, match="without a begin"):
                client.close()
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_mqtt_transport_says_when_the_broker_is_unreachable() -> None:
    client = PowerdClient(
        run="r4", transport="mqtt", mqtt_host="127.0.0.1", mqtt_port=free_port(), timeout_s=2
    )
    with pytest.raises(PowerdClientError, match="MQTT broker"):
        client.mark("begin", "decode")
