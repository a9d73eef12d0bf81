"""The daemon's TOML configuration (``powerd run --config FILE``), checked up front.

The schema is the ``Table`` structs below (``powerd.schema``, msgspec): every table and key is
known, typed and ranged; a typo, a wrong type (``port = "8089"``) or a value out of range is one
line naming the file, the table and the key, what is expected and what was found. ``powerd run
--check-config FILE`` checks a file, and the files it names, without starting anything. This sample
lists every key (a test checks it against the schema, so keep both in step):

    [daemon]
    state_dir = "/var/lib/powerd"      # the store (powerd.db); default: powerd's state dir
    probes = ["wt300:/dev/ttyUSB0"]    # probes sampled by the daemon itself (may be empty)
    idle_power_w = 12.5                # optional known idle power, >= 0
    primary = ["wt300:..."]            # optional explicit primary channels
    result_grace_s = 2.0               # wait for late agent samples after a phase (0: none)
    clock_interval_s = 1.0             # clock exchanges with each agent (> 0)
    max_marker_skew_s = 86400.0        # a live marker's t_ns further from receipt is rejected (> 0)
    max_phase_s = 604800.0             # a longer phase is rejected at its end marker (> 0)
    clock_rate_max_hz = 200.0          # clock requests to all agents together, at most
    held_place_bound_s = 60.0          # an agent message held this long, its clock epoch still
                                       # unplaceable, is reported (held_unplaceable; > 0)
    result_worker = true               # compute results in a worker process reading the store
                                       # (false: in the daemon's own; powerd.result_worker)
    count_from = ["prom:http://127.0.0.1:8000/metrics#vllm:generation_tokens_total"]
                                       # counters read at every phase's begin and end whose
                                       # begin marker has no count_from (powerd.phasecount)
    id = "lab-01"                      # this daemon's id (default: the host name): MQTT client
                                       # id powerd-<id>, presence topic powerd/v1/daemons/<id>;
                                       # keep it stable: its persistent session resumes with it

    [mqtt]                             # omit to run without MQTT
    host = "127.0.0.1"
    port = 1883                        # 1-65535
    username = "powerd"
    password_file = "/etc/powerd/mqtt-password"
    tls_ca = "/etc/powerd/ca.pem"      # any tls_* enables TLS
    tls_cert = "/etc/powerd/client.pem"
    tls_key = "/etc/powerd/client.key"
    tls_insecure = false               # true: no broker host name check (test brokers only)
    client_id = "powerd"               # default: powerd-<[daemon] id>
    keepalive_s = 30                   # MQTT keep-alive, 1-65535 s
    session_expiry_s = 86400           # an MQTT v5 session kept this long while away (default:
                                       # 3.1.1, kept to the broker's persistent_client_expiration)

    [http]
    bind = "127.0.0.1"                 # anything else requires token_file
    port = 8089                        # 1-65535
    token_file = "/etc/powerd/api-token"
    header_timeout_s = 10.0            # a request head (or an idle keep-alive) must come sooner
    body_timeout_s = 10.0              # a request body must arrive within this (else 408)
    max_connections = 256              # open connections beyond this get a 503 and are closed

    [retention]
    max_age_days = 30                  # > 0
    max_gb = 4                         # > 0

    [sinks]                            # labels of every time series; see powerd/sinks/settings.py
    host = "edge-01"                   # default: the host name
    meta_labels = ["model", "batch"]   # phase meta keys that become labels (default ["model"])
    recent_runs = 10                   # runs whose phase figures /metrics exports (>= 1)

    [influx]                           # omit to write to no InfluxDB / VictoriaMetrics
    url = "http://127.0.0.1:8428"
    org = "lab"
    bucket = "powerd"
    token_file = "/etc/powerd/influx-token"
    downsample_s = 1.0                 # 0 writes raw samples
    buffer_dir = "/var/lib/powerd/influx-buffer"   # default: <state_dir>/influx-buffer
    buffer_max_mb = 256                # > 0
    batch_size = 5000                  # >= 1
    flush_interval_s = 1.0             # durations: > 0, at most a day
    timeout_s = 10.0
    health_interval_s = 10.0

    [calibration."wt300:ttyUSB0"]      # certificates of the meters (see powerd/calibration.py):
    date = 2026-03-01                  # key: a channel id, an id prefix, or "serial:<S>" (*IDN?)
    due = 2027-03-01                   # a phase ending after this is flagged calibration_due
    certificate = "CAL-2026-0142"      # a meter channel with none is flagged uncalibrated
    lab = "KTL"                        # optional

    [[efficiency]]                     # J per unit every interval (powerd/efficiency.py)
    device = "local"                   # an agent id, a probe's device=, or "local"
    counters = [{source = "prom:http://vllm:8000/metrics#vllm:prompt_tokens_total", unit = "token"}]
    interval_s = 10.0                  # one set of figures per interval
    poll_s = 1.0                       # counters read this often (idle fraction, resets)
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated, Any

import msgspec

from powerd.agent.mqttconf import MqttSettings
from powerd.calibration import CalibrationTable, check_table
from powerd.efficiency import EfficiencyTable, check_entries
from powerd.errors import PowerdError
from powerd.held import HELD_PLACE_BOUND_S
from powerd.phases import DEFAULT_MAX_MARKER_SKEW_S, DEFAULT_MAX_PHASE_S
from powerd.promcount import CounterSpec
from powerd.schema import (
    Name,
    Names,
    NonNegative,
    Port,
    Positive,
    Seconds,
    SecondsOrOff,
    Table,
    convert,
    read_toml,
)
from powerd.sinks.settings import InfluxSettings, SinkSettings, SinksTable
from powerd.store import Retention

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


DaemonId = Annotated[
    str, msgspec.Meta(description="1-128 of A-Za-z0-9_.:-", pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
]


class DaemonTable(Table, frozen=True):
    """``[daemon]``; ``DaemonConfig`` carries these same keys as attributes."""

    state_dir: Path | None = None
    probes: Names = ()
    idle_power_w: NonNegative | None = None
    primary: Names = ()
    result_grace_s: SecondsOrOff = 2.0
    clock_interval_s: Seconds = 1.0
    max_marker_skew_s: Positive = DEFAULT_MAX_MARKER_SKEW_S
    max_phase_s: Positive = DEFAULT_MAX_PHASE_S
    clock_rate_max_hz: Positive = 200.0
    held_place_bound_s: Positive = HELD_PLACE_BOUND_S
    result_worker: bool = True
    id: DaemonId | None = None
    count_from: Names = ()


class HttpSettings(Table, frozen=True):
    """``[http]``: the API's address and bearer token."""

    bind: Name = "127.0.0.1"
    port: Port = 8089
    token_file: Path | None = None
    header_timeout_s: Seconds = 10.0
    body_timeout_s: Seconds = 10.0
    max_connections: Port = 256  # an integer 1-65535, as a port

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


class RetentionTable(Table, frozen=True):
    """``[retention]`` in the file's units (``Retention`` holds seconds and bytes)."""

    max_age_days: Positive = 30.0
    max_gb: Positive = 4.0


class ConfigFile(Table, frozen=True):
    """The whole file: its tables, each optional."""

    daemon: DaemonTable = msgspec.field(default_factory=DaemonTable)
    mqtt: MqttSettings | None = None
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    retention: RetentionTable = msgspec.field(default_factory=RetentionTable)
    sinks: SinksTable = msgspec.field(default_factory=SinksTable)
    influx: InfluxSettings | None = None
    calibration: CalibrationTable = msgspec.field(default_factory=dict)
    efficiency: tuple[EfficiencyTable, ...] = ()


class DaemonConfig(DaemonTable, frozen=True):
    """What ``powerd run`` uses: the ``[daemon]`` keys as attributes, the other tables as fields."""

    mqtt: MqttSettings | None = None
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    retention: Retention = msgspec.field(default_factory=Retention)
    sinks: SinkSettings = msgspec.field(default_factory=SinkSettings.default)
    influx: InfluxSettings | None = None
    calibration: CalibrationTable = msgspec.field(default_factory=dict)
    efficiency: tuple[EfficiencyTable, ...] = ()


def parse(data: dict[str, Any], where: str) -> DaemonConfig:
    """A parsed file checked against the schema; errors start with ``where``."""
    f = convert(data, ConfigFile, where)
    try:
        sinks = SinkSettings.of(f.sinks)
        check_table(f.calibration)
        check_entries(f.efficiency)
        for spec in f.daemon.count_from:
            CounterSpec.parse(spec)
    except PowerdError as err:
        raise PowerdError(f"{where}{err}") from None
    return DaemonConfig(
        **msgspec.structs.asdict(f.daemon),
        mqtt=f.mqtt,
        http=f.http,
        retention=Retention(
            max_age_s=f.retention.max_age_days * 86400,
            max_bytes=int(f.retention.max_gb * 1e9),
        ),
        sinks=sinks,
        influx=f.influx,
        calibration=f.calibration,
        efficiency=f.efficiency,
    )


def load(path: Path) -> DaemonConfig:
    """Read and check a config file; errors name the file, the table and the key."""
    return parse(read_toml(path), f"config {path}: ")


def _readable(path: Path | None, what: str) -> None:
    if path is not None and not os.access(path, os.R_OK):
        reason = "no such file" if not path.exists() else "not readable"
        raise PowerdError(f"{what} {path}: {reason}")


def _creatable(path: Path, what: str) -> None:
    """``path`` is a writable directory, or could be made one (its nearest existing parent is)."""
    here = path
    while not here.exists() and here != here.parent:
        here = here.parent
    if not here.is_dir():
        raise PowerdError(f"{what} {path}: {here} is not a directory")
    if not os.access(here, os.W_OK | os.X_OK):
        raise PowerdError(f"{what} {path}: {here} is not writable")


def _known_probes(specs: tuple[str, ...]) -> None:
    """Each spec names a registered probe family and a valid ``device=``, and its own keys are
    checked where the family can do so without opening anything (an optional ``check_spec``;
    opening may touch hardware; whether a probe is usable here is ``powerd probes``' question)."""
    from powerd.probes.base import split_spec
    from powerd.probes.registry import families, split_device, unloadable_families

    known = families()
    for i, spec in enumerate(specs):
        try:
            name, args = split_spec(spec)
            split_device(args)
            unloadable = {} if name in known else unloadable_families()
            if name in unloadable:  # installed but its optional dependency is not: say which
                raise PowerdError(f"probe {name!r} is not usable here: {unloadable[name][0]}")
            if name not in known:
                raise PowerdError(
                    f"unknown probe {name!r}; known: {', '.join(known) or 'none'} "
                    "(see `powerd probes`)"
                )
            check_spec = getattr(known[name], "check_spec", None)
            if check_spec is not None:
                check_spec(split_device(args)[0])
        except PowerdError as err:
            raise PowerdError(f"[daemon] probes[{i}] {spec!r}: {err}") from None


def check(path: Path, default_state_dir: Path) -> DaemonConfig:
    """``powerd run --check-config``: the file, and what it names that can be checked without
    starting anything (probe families known, token, password and TLS files readable, state and
    buffer dirs creatable)."""
    cfg = load(path)
    where = f"config {path}: "
    try:
        _known_probes(cfg.probes)
        cfg.http.token()
        if cfg.mqtt is not None:
            for key in ("password_file", "tls_ca", "tls_cert", "tls_key"):
                _readable(getattr(cfg.mqtt, key), f"[mqtt] {key}")
        state_dir = cfg.state_dir or default_state_dir
        _creatable(state_dir, "[daemon] state_dir")
        if cfg.influx is not None:
            if importlib.util.find_spec("influxdb_client") is None:
                raise PowerdError(
                    "[influx] needs the influxdb-client package: pip install 'powerd[influx]'"
                )
            _readable(cfg.influx.token_file, "[influx] token_file")
            _creatable(cfg.influx.buffer_dir or state_dir / "influx-buffer", "[influx] buffer_dir")
    except PowerdError as err:
        raise PowerdError(f"{where}{err}") from None
    return cfg
