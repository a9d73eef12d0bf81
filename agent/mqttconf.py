"""MQTT connection settings shared by the daemon and the agent: broker, credentials, TLS.

Secrets are read from files named in the config (``password_file``), never from the config text,
and never logged: ``describe()`` names the broker and the user only.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Annotated, Any

import aiomqtt
from msgspec import Meta
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from powerd.errors import PowerdError
from powerd.schema import Name, Port, Table, convert, table_key


class MqttSettings(Table, frozen=True):
    """``[mqtt]``: the broker, its credentials (from files) and TLS; every key optional."""

    host: Name = "127.0.0.1"
    port: Port = 1883
    username: Name | None = None
    password_file: Path | None = None
    tls_ca: Path | None = None  # any tls_* enables TLS
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_insecure: bool = False  # no host name check (a self-signed test broker)
    client_id: Name | None = None  # default: the daemon's / agent's own
    keepalive_s: Annotated[int, Meta(ge=1, le=65535)] = 30  # MQTT keep-alive, whole seconds
    # How long the broker keeps the daemon's session (its subscriptions and queued QoS 1
    # messages) after it disconnects: set, the daemon speaks MQTT v5 with this session expiry;
    # None (the default), MQTT 3.1.1 with clean_session off, kept until the broker's
    # persistent_client_expiration (cheaper per received packet: bench/mqtt_decode.py).
    session_expiry_s: Annotated[int, Meta(ge=0, le=0xFFFFFFFF)] | None = None

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> MqttSettings:
        """The ``[mqtt]`` table checked; errors read ``[mqtt] port: expected ...``."""
        return convert(table, cls, "", lambda steps: table_key(["mqtt", *steps]))

    @property
    def tls(self) -> bool:
        return self.tls_ca is not None or self.tls_cert is not None

    def password(self) -> str | None:
        if self.password_file is None:
            return None
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise PowerdError(
                f"cannot read MQTT password file {self.password_file}: {err.strerror}"
            ) from None

    def describe(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"mqtt{'s' if self.tls else ''}://{user}{self.host}:{self.port}"

    def client(
        self,
        identifier: str,
        will: aiomqtt.Will | None = None,
        session_expiry_s: int | None = None,
    ) -> aiomqtt.Client:
        """A client with a persistent session. With ``session_expiry_s`` it speaks MQTT v5
        (clean start off, the broker keeps the session that long after a disconnect); without,
        MQTT 3.1.1 with clean_session off (the broker's ``persistent_client_expiration``)."""
        tls_context = None
        if self.tls:
            tls_context = ssl.create_default_context(
                cafile=str(self.tls_ca) if self.tls_ca else None
            )
            if self.tls_cert is not None:
                tls_context.load_cert_chain(
                    str(self.tls_cert), str(self.tls_key) if self.tls_key else None
                )
            if self.tls_insecure:
                tls_context.check_hostname = False
        v5: dict[str, Any] = {"clean_session": False}
        if session_expiry_s is not None:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = max(0, min(int(session_expiry_s), 0xFFFFFFFF))
            v5 = {
                "protocol": aiomqtt.ProtocolVersion.V5,
                "clean_start": False,
                "properties": props,
                "clean_session": None,
            }
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password(),
            identifier=self.client_id or identifier,
            will=will,
            keepalive=self.keepalive_s,
            tls_context=tls_context,
            tls_insecure=self.tls_insecure if self.tls else None,
            timeout=10,
            # small messages (markers, results, clock exchanges) must not wait for Nagle
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            **v5,
        )
