"""The daemon's TOML configuration (``powerd run --config FILE``), checked up front.

Every table and key is known; a typo is an error naming the allowed keys, not a silent default.

    [daemon]
    state_dir = "/var/lib/powerd"      # the store (powerd.db); default: powerd's state dir
    probes = ["wt300:/dev/ttyUSB0"]    # probes sampled by the daemon itself (may be empty)
    idle_power_w = 12.5                # optional known idle power
    primary = ["wt300:..."]            # optional explicit primary channels
    result_grace_s = 2.0               # how long a closed phase waits for late agent samples
    clock_interval_s = 1.0             # clock exchanges with each agent
    clock_rate_max_hz = 200.0          # clock requests to all agents together, at most
    id = "lab-01"                      # this daemon's id (default: the host name): its MQTT
                                       # client id powerd-<id> and presence topic; keep it
                                       # stable so its persistent session resumes on restart

    [mqtt]                             # omit to run without MQTT
    host = "127.0.0.1"
    port = 1883
    username = "powerd"
    password_file = "/etc/powerd/mqtt-password"
    tls_ca = "/etc/powerd/ca.pem"      # any tls_* enables TLS
    client_id = "powerd-lab-01"        # default: powerd-<[daemon] id>
    session_expiry_s = 86400           # how long the broker queues for the daemon while away

    [http]
    bind = "127.0.0.1"                 # anything else requires token_file
    port = 8089
    token_file = "/etc/powerd/api-token"

    [retention]
    max_age_days = 30
    max_gb = 4

    [sinks]                            # labels of every time series; see powerd/sinks/settings.py
    host = "edge-01"                   # default: the host name
    meta_labels = ["model", "batch"]   # phase meta keys that become labels (default ["model"])
    recent_runs = 10                   # runs whose phase figures /metrics exports

    [influx]                           # omit to write to no InfluxDB / VictoriaMetrics
    url = "http://127.0.0.1:8428"
    org = "lab"
    bucket = "powerd"
    token_file = "/etc/powerd/influx-token"
    downsample_s = 1.0                 # 0 writes raw samples
    buffer_dir = "/var/lib/powerd/influx-buffer"   # default: <state_dir>/influx-buffer
    buffer_max_mb = 256
    batch_size = 5000
    flush_interval_s = 1.0
    timeout_s = 10.0
    health_interval_s = 10.0
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.mqttconf import MqttSettings
from agent.wire import SOURCE_RE
from powerd.errors import PowerdError
from powerd.sinks.settings import INFLUX_KEYS, SINKS_KEYS, InfluxSettings, SinkSettings
from powerd.store import Retention

TABLES = {
    "daemon": {
        "state_dir",
        "probes",
        "idle_power_w",
        "primary",
        "result_grace_s",
        "clock_interval_s",
        "clock_rate_max_hz",
        "id",
    },
    "mqtt": None,
    "http": {"bind", "port", "token_file"},
    "retention": {"max_age_days", "max_gb"},
    "sinks": SINKS_KEYS,
    "influx": INFLUX_KEYS,
}
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True)
class HttpSettings:
    bind: str = "127.0.0.1"
    port: int = 8089
    token_file: Path | None = None

    def token(self) -> str | None:
        if self.token_file is None:
            if self.bind not in LOOPBACK:
                raise PowerdError(
                    f"[http] bind = {self.bind!r} is not loopback: set token_file so the API "
                    "requires a bearer token"
                )
            return None
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise PowerdError(
                f"cannot read API token file {self.token_file}: {err.strerror}"
            ) from None
        if len(token) < 16:
            raise PowerdError(f"API token in {self.token_file} is shorter than 16 characters")
        return token


@dataclass(frozen=True)
class DaemonConfig:
    state_dir: Path | None = None
    probes: tuple[str, ...] = ()
    idle_power_w: float | None = None
    primary: tuple[str, ...] = ()
    result_grace_s: float = 2.0
    clock_interval_s: float = 1.0
    clock_rate_max_hz: float = 200.0
    daemon_id: str | None = None
    mqtt: MqttSettings | None = None
    http: HttpSettings = field(default_factory=HttpSettings)
    retention: Retention = field(default_factory=Retention)
    sinks: SinkSettings = field(default_factory=SinkSettings.default)
    influx: InfluxSettings | None = None


def _check(table: str, values: dict[str, Any]) -> None:
    allowed = TABLES[table]
    if allowed is None:
        return
    unknown = set(values) - allowed
    if unknown:
        raise PowerdError(
            f"[{table}]: unknown key(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _daemon_id(value: Any) -> str:
    if not isinstance(value, str) or not SOURCE_RE.match(value):
        raise PowerdError(f"[daemon] id must be 1-128 characters of A-Za-z0-9_.:-, got {value!r}")
    return value


def load(path: Path) -> DaemonConfig:
    """Read and check a config file; errors name the file and what to fix."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise PowerdError(f"cannot read config {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise PowerdError(f"config {path} is not valid TOML: {err}") from None
    unknown = set(data) - set(TABLES)
    if unknown:
        raise PowerdError(
            f"config {path}: unknown table(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(TABLES)}"
        )
    for table, values in data.items():
        _check(table, values)
    d = data.get("daemon", {})
    r = data.get("retention", {})
    h = data.get("http", {})
    try:
        return DaemonConfig(
            state_dir=Path(d["state_dir"]) if "state_dir" in d else None,
            probes=tuple(d.get("probes", ())),
            idle_power_w=d.get("idle_power_w"),
            primary=tuple(d.get("primary", ())),
            result_grace_s=float(d.get("result_grace_s", 2.0)),
            clock_interval_s=float(d.get("clock_interval_s", 1.0)),
            clock_rate_max_hz=float(d.get("clock_rate_max_hz", 200.0)),
            daemon_id=_daemon_id(d["id"]) if "id" in d else None,
            mqtt=MqttSettings.from_table(data["mqtt"]) if "mqtt" in data else None,
            http=HttpSettings(
                bind=str(h.get("bind", "127.0.0.1")),
                port=int(h.get("port", 8089)),
                token_file=Path(h["token_file"]) if "token_file" in h else None,
            ),
            retention=Retention(
                max_age_s=float(r.get("max_age_days", 30)) * 86400,
                max_bytes=int(float(r.get("max_gb", 4)) * 1e9),
            ),
            sinks=SinkSettings.from_table(data.get("sinks", {})),
            influx=InfluxSettings.from_table(data["influx"]) if "influx" in data else None,
        )
    except (TypeError, ValueError) as err:
        raise PowerdError(f"config {path}: {err}") from None
    except PowerdError as err:
        raise PowerdError(f"config {path}: {err}") from None
