"""The harness client: mark a workload's phases so powerd can give energy per phase.

    from powerd.client import PowerdClient

    client = PowerdClient()                 # POWERD_URL / POWERD_RUN, as set by `powerd measure`
    with client.phase("prefill", meta={"model": "llama-8b"}):
        prefill()
    with client.phase("decode", trial=0, unit="token") as ph:
        ph.count = decode()                 # sent with the end marker

Each marker is contract 1, stamped ``t_ns`` with this process's clock (``time.time_ns()``) at the
edge, so the time it takes to reach powerd does not matter. Transports:

- ``http`` (default): ``POST {url}/v1/markers?source=<source>`` with the standard library (urllib),
  so a harness needs no extra package. A server's refusal raises ``PowerdClientError`` with the
  server's reason. A connection failure is retried a few times with the same ``seq``, which is safe:
  powerd ignores a repeat of (source, seq).
- ``mqtt``: QoS 1 publish to ``powerd/v1/markers/<source>`` with paho-mqtt (installed with
  ``powerd[mqtt]``). MQTT has no reply, so the client validates each marker before sending and
  listens on ``powerd/v1/errors/<source>``: a rejection raises on the next call or on ``close()``.
  The broker's acknowledgement is not enough (a broker acknowledges before it saves, so a broker
  crash can lose an acknowledged message): the client keeps every marker until powerd confirms
  on ``powerd/v1/acks/<source>`` that it is stored, sends it again every ``RESEND_S`` (and at
  every reconnect) until then, and ``close()`` waits up to ``confirm_timeout_s`` for the last
  confirmations, raising ``PowerdClientError`` with the markers still unconfirmed.

Sequence numbers: ``source`` defaults to ``<hostname>-<pid>``; ``seq`` is the send time in ns,
bumped to stay strictly increasing. A process never repeats one, and a later process that reuses
the same source (a recycled pid, or an explicit ``source=`` such as successive ``powerd mark``
calls) starts above every seq an earlier one sent, unless the wall clock stepped back meanwhile.
Two processes that use one explicit source at the same time may collide: give each its own source.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from powerd.agent import wire
from powerd.errors import MarkerError, PowerdError

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

URL_ENV = "POWERD_URL"
RUN_ENV = "POWERD_RUN"
TOKEN_ENV = "POWERD_TOKEN"
DEFAULT_MQTT_PORT = 1883
TIMEOUT_S = 10.0
HTTP_ATTEMPTS = 3
RETRY_DELAY_S = 0.2
ERROR_WAIT_S = 0.2
RESEND_S = 5.0
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 5
CONFIRM_TIMEOUT_S = 30.0

Transport = Literal["http", "mqtt"]


class PowerdClientError(PowerdError):
    """powerd refused a marker, or could not be reached; the message says why."""


def default_source() -> str:
    """``<hostname>-<pid>``, reduced to the source alphabet (A-Za-z0-9_.:-, at most 128)."""
    host = re.sub(r"[^A-Za-z0-9_.:-]", "_", socket.gethostname()) or "host"
    pid = f"-{os.getpid()}"
    return host[: 128 - len(pid)] + pid


class Phase:
    """A phase being measured, as returned by ``PowerdClient.phase``.

    Set ``count`` (and add to ``meta``) inside the block; both go with the end marker. If the block
    raises, the end is still sent, with ``meta["error"]`` set to the exception's class name.
    """

    def __init__(
        self,
        client: PowerdClient,
        name: str,
        count: int | None,
        unit: str | None,
        trial: int | None,
        meta: dict[str, Any] | None,
        device: str | list[str] | None = None,
    ) -> None:
        self.client, self.name = client, name
        self.count, self.unit, self.trial = count, unit, trial
        self.meta: dict[str, Any] = dict(meta or {})
        self.device = device

    def __enter__(self) -> Phase:
        self.client.mark(
            "begin", self.name, trial=self.trial, meta=self.meta or None, device=self.device
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        meta = dict(self.meta)
        if exc_type is not None:
            meta["error"] = exc_type.__name__
        try:
            self.client.mark(
                "end",
                self.name,
                count=self.count,
                unit=self.unit,
                trial=self.trial,
                meta=meta or None,
            )
        except PowerdClientError as err:
            if exc is None:
                raise
            # Keep the workload's own exception; say why its phase end was lost.
            exc.add_note(f"powerd: the end of phase {self.name!r} was not recorded: {err}")


class PowerdClient:
    """Sends phase markers of one run to powerd over HTTP or MQTT; see the module docstring."""

    def __init__(
        self,
        url: str | None = None,
        run: str | None = None,
        source: str | None = None,
        transport: Transport = "http",
        mqtt_host: str = "127.0.0.1",
        mqtt_port: int = DEFAULT_MQTT_PORT,
        token: str | None = None,
        timeout_s: float = TIMEOUT_S,
        confirm_timeout_s: float = CONFIRM_TIMEOUT_S,
    ) -> None:
        run = run or os.environ.get(RUN_ENV)
        if not run:
            raise PowerdClientError(f"no run id: pass run=... or set {RUN_ENV}")
        if not wire.NAME_RE.match(run):
            raise PowerdClientError(f"run id {run!r}: use 1-128 characters of A-Za-z0-9_.:-")
        self.run = run
        self.source = source or default_source()
        if not wire.SOURCE_RE.match(self.source):
            raise PowerdClientError(
                f"source {self.source!r}: use 1-128 characters of A-Za-z0-9_.:-"
            )
        if transport not in ("http", "mqtt"):
            raise PowerdClientError(f"transport {transport!r}: use http or mqtt")
        self.transport: Transport = transport
        self.timeout_s = timeout_s
        self.url = ""
        if transport == "http":
            url = url or os.environ.get(URL_ENV)
            if not url:
                raise PowerdClientError(
                    f"no powerd URL: pass url=... or set {URL_ENV} (powerd measure sets it)"
                )
            if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                raise PowerdClientError(f"powerd URL {url!r} must start with http:// or https://")
            self.url = url.rstrip("/")
        self._token = token if token is not None else os.environ.get(TOKEN_ENV)
        self.mqtt_host, self.mqtt_port = mqtt_host, mqtt_port
        self._mqtt: mqtt.Client | None = None
        self._mqtt_errors: list[str] = []
        self._lock = threading.Lock()
        self._last_seq = 0
        self.confirm_timeout_s = confirm_timeout_s
        # (run, seq) -> (payload, monotonic time last sent): MQTT markers not yet confirmed
        self._unconfirmed: dict[tuple[str, int], tuple[str, float]] = {}
        self._confirmed = threading.Condition(self._lock)
        self._deferred: set[tuple[str, int]] = set()  # refused out of order: sent again later
        self._resender: threading.Thread | None = None
        self._closing = threading.Event()

    # --- the public API ------------------------------------------------------------------------

    def mark(
        self,
        event: Literal["begin", "end"],
        phase: str,
        count: int | None = None,
        unit: str | None = None,
        trial: int | None = None,
        meta: dict[str, Any] | None = None,
        t_ns: int | None = None,
        device: str | list[str] | None = None,
    ) -> dict[str, Any]:
        """Send one marker, stamped now (or at ``t_ns``, UTC ns on this host's clock).

        ``device`` (begin only) names the devices whose channels the phase covers (agent ids,
        ``local``); by default the phase covers this source's own device.

        Returns the server's answer over HTTP, or the marker as published over MQTT. Raises
        PowerdClientError when the marker is invalid or powerd refuses it.
        """
        stamp_ns = time.time_ns() if t_ns is None else t_ns
        with self._lock:
            self._last_seq = max(self._last_seq + 1, time.time_ns())
            seq = self._last_seq
        obj: dict[str, Any] = {
            "v": wire.VERSION,
            "run": self.run,
            "phase": phase,
            "event": event,
            "t_ns": stamp_ns,
            "seq": seq,
        }
        for key, value in (
            ("count", count),
            ("unit", unit),
            ("trial", trial),
            ("meta", meta),
            ("device", device),
        ):
            if value is not None:
                obj[key] = value
        try:
            wire.parse_marker(obj)
        except MarkerError as err:
            raise PowerdClientError(f"invalid marker: {err}") from None
        if self.transport == "mqtt":
            return self._publish(obj)
        return self._post(obj)

    def begin(self, phase: str, **kwargs: Any) -> dict[str, Any]:
        return self.mark("begin", phase, **kwargs)

    def end(self, phase: str, **kwargs: Any) -> dict[str, Any]:
        return self.mark("end", phase, **kwargs)

    def phase(
        self,
        name: str,
        count: int | None = None,
        unit: str | None = None,
        trial: int | None = None,
        meta: dict[str, Any] | None = None,
        device: str | list[str] | None = None,
    ) -> Phase:
        """``with client.phase("decode", trial=0) as ph: ...; ph.count = n``."""
        return Phase(self, name, count, unit, trial, meta, device)

    @property
    def rejections(self) -> list[str]:
        """Reasons powerd gave over MQTT for markers of this source, not raised yet."""
        with self._lock:
            return list(self._mqtt_errors)

    @property
    def unconfirmed(self) -> list[tuple[str, int]]:
        """(run, seq) of the MQTT markers powerd has not yet confirmed it stored."""
        with self._lock:
            return sorted(self._unconfirmed)

    def wait_confirmed(self, timeout_s: float) -> list[tuple[str, int]]:
        """Wait until powerd has confirmed every MQTT marker sent so far (sending again as
        needed); returns those still unconfirmed after ``timeout_s`` (empty: all stored)."""
        deadline = time.monotonic() + timeout_s
        with self._confirmed:
            while self._unconfirmed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._confirmed.wait(min(left, 0.5))
            return sorted(self._unconfirmed)

    def close(self) -> None:
        """Disconnect MQTT, once powerd has confirmed every marker (up to
        ``confirm_timeout_s``) and after raising any rejection it reported meanwhile."""
        client = self._mqtt
        if client is None:
            return
        try:
            time.sleep(ERROR_WAIT_S)  # a rejection of the last marker may be on its way
            left = self.wait_confirmed(self.confirm_timeout_s)
            self._raise_mqtt_errors()
            if left:
                shown = ", ".join(f"{run}#{seq}" for run, seq in left[:5])
                raise PowerdClientError(
                    f"powerd did not confirm {len(left)} marker(s) from {self.source} within "
                    f"{self.confirm_timeout_s:g} s ({shown}{', …' if len(left) > 5 else ''}): "
                    "the broker accepted them but powerd has not stored them (is powerd "
                    "running and connected to this broker?)"
                )
        finally:
            self._mqtt = None
            self._closing.set()
            client.disconnect()
            client.loop_stop()

    def __enter__(self) -> PowerdClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- HTTP ----------------------------------------------------------------------------------

    def _post(self, obj: dict[str, Any]) -> dict[str, Any]:
        query = urllib.parse.urlencode({"source": self.source})
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        body = json.dumps(obj).encode("utf-8")
        last: Exception | None = None
        for attempt in range(HTTP_ATTEMPTS):
            if attempt:
                time.sleep(RETRY_DELAY_S * attempt)
            req = urllib.request.Request(
                f"{self.url}/v1/markers?{query}", data=body, headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return dict(json.loads(resp.read()))
            except urllib.error.HTTPError as err:
                raise PowerdClientError(
                    f"powerd at {self.url} refused the {obj['event']} of phase "
                    f"{obj['phase']!r} (HTTP {err.code}): {_reason(err)}"
                ) from None
            except (urllib.error.URLError, OSError) as err:
                last = err
        reason = getattr(last, "reason", last)
        raise PowerdClientError(f"cannot reach powerd at {self.url}: {reason}") from None

    # --- MQTT ----------------------------------------------------------------------------------

    def _connect(self) -> mqtt.Client:
        if self._mqtt is not None:
            return self._mqtt
        try:
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion
        except ImportError:
            raise PowerdClientError(
                "MQTT needs paho-mqtt: pip install 'powerd[mqtt]' (or use the HTTP transport)"
            ) from None
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"powerd-client-{self.source}")
        connected = threading.Event()
        errors_topic = wire.errors_topic(self.source)
        acks_topic = wire.acks_topic(self.source)

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if not reason.is_failure:
                c.subscribe([(errors_topic, 1), (acks_topic, 1)])
                self._resend(c, 0.0)  # a reconnect: what was in flight may be lost
            connected.set()

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            if msg.topic == acks_topic:
                key = wire.parse_ack(bytes(msg.payload))
                if key is not None:
                    with self._confirmed:
                        self._unconfirmed.pop(key, None)
                        self._deferred.discard(key)
                        self._confirmed.notify_all()
                return
            try:
                err = json.loads(msg.payload)
                reason = str(err.get("error", err))
            except (ValueError, AttributeError):
                reason = msg.payload.decode("utf-8", "replace")
                err = None
            with self._confirmed:
                key = _rejected_key(err)
                if key is not None and key in self._unconfirmed and self._earlier_unconfirmed(key):
                    # Resent markers can arrive out of order after a reconnect (an end before
                    # its begin): refused now, it is sent again once the earlier ones are in.
                    self._deferred.add(key)
                    return
                self._mqtt_errors.append(reason)
                if key is not None:  # refused for good: never sent again
                    self._unconfirmed.pop(key, None)
                    self._deferred.discard(key)
                    self._confirmed.notify_all()

        client.on_connect = on_connect
        client.on_message = on_message
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        where = f"mqtt://{self.mqtt_host}:{self.mqtt_port}"
        try:
            client.connect(self.mqtt_host, self.mqtt_port, keepalive=30)
        except OSError as err:
            raise PowerdClientError(f"cannot reach the MQTT broker {where}: {err}") from None
        client.loop_start()
        if not connected.wait(self.timeout_s) or not client.is_connected():
            client.loop_stop()
            raise PowerdClientError(f"the MQTT broker {where} did not accept the connection")
        self._mqtt = client
        self._resender = threading.Thread(
            target=self._resend_loop, args=(client,), name="powerd-client-resend", daemon=True
        )
        self._resender.start()
        return client

    def _earlier_unconfirmed(self, key: tuple[str, int]) -> bool:
        """Whether a marker of the same run sent before ``key`` still awaits confirmation."""
        return any(r == key[0] and s < key[1] for r, s in self._unconfirmed)

    def _resend(self, client: mqtt.Client, older_than_s: float) -> None:
        """Publish again, in order, every unconfirmed marker last sent more than ``older_than_s``
        ago; one refused out of order waits until the markers before it are confirmed."""
        now = time.monotonic()
        with self._lock:
            due = [
                (key, payload)
                for key, (payload, sent) in sorted(self._unconfirmed.items())
                if (key in self._deferred and not self._earlier_unconfirmed(key))
                or (key not in self._deferred and now - sent >= older_than_s)
            ]
            self._deferred.difference_update(k for k, _ in due)
            for key, payload in due:
                self._unconfirmed[key] = (payload, now)
        for _, payload in due:
            client.publish(wire.markers_topic(self.source), payload, qos=1)

    def _resend_loop(self, client: mqtt.Client) -> None:
        while not self._closing.wait(RESEND_S / 5):
            if client.is_connected():
                self._resend(client, RESEND_S)

    def _raise_mqtt_errors(self) -> None:
        with self._lock:
            errors, self._mqtt_errors = self._mqtt_errors, []
        if errors:
            raise PowerdClientError(
                f"powerd rejected marker(s) from {self.source}: " + "; ".join(errors)
            )

    def _publish(self, obj: dict[str, Any]) -> dict[str, Any]:
        client = self._connect()
        self._raise_mqtt_errors()
        payload = json.dumps(obj)
        with self._lock:
            self._unconfirmed[(obj["run"], obj["seq"])] = (payload, time.monotonic())
        info = client.publish(wire.markers_topic(self.source), payload, qos=1)
        try:
            info.wait_for_publish(self.timeout_s)
        except (ValueError, RuntimeError) as err:
            raise PowerdClientError(f"cannot publish the marker: {err}") from None
        if not info.is_published():
            raise PowerdClientError(
                f"the MQTT broker did not acknowledge the marker within {self.timeout_s:g} s"
            )
        return obj


def _rejected_key(err: Any) -> tuple[str, int] | None:
    """(run, seq) of the marker an errors-topic message refused, when its text says."""
    if not isinstance(err, dict) or not isinstance(err.get("message"), str):
        return None
    return wire.parse_ack(err["message"].encode())


def _reason(err: urllib.error.HTTPError) -> str:
    """The server's ``{"error": ...}``, else the start of its body, else the HTTP reason."""
    try:
        body = err.read()
    except OSError:
        body = b""
    try:
        obj = json.loads(body)
        if isinstance(obj, dict) and isinstance(obj.get("error"), str):
            return str(obj["error"])
    except ValueError:
        pass
    text = body.decode("utf-8", "replace").strip()
    return text[:300] if text else str(err.reason)
