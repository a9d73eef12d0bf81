"""Settings of the sinks, from the config's ``[sinks]`` and ``[influx]`` tables.

Kept free of optional imports (``influxdb-client``), so the config can be checked on a host that
does not write to InfluxDB.

    [sinks]
    host = "edge-01"                 # the host label of every series; default: the host name
    meta_labels = ["model", "batch"] # phase meta keys that become labels (default ["model"])
    recent_runs = 10                 # runs whose phase figures /metrics exports

    [influx]                         # omit to write nowhere but the local store
    url = "http://127.0.0.1:8428"    # InfluxDB 2/3, or VictoriaMetrics (/api/v2/write)
    org = "lab"                      # InfluxDB organisation (VictoriaMetrics ignores it)
    bucket = "powerd"                # InfluxDB bucket (VictoriaMetrics ignores it)
    token_file = "/etc/powerd/influx-token"   # optional API token, read from a file
    downsample_s = 1.0               # mean power per channel per interval; 0 writes raw samples
    buffer_dir = "/var/lib/powerd/influx-buffer"  # default: <state_dir>/influx-buffer
    buffer_max_mb = 256              # disk buffer bound; beyond it the oldest batches go
    batch_size = 5000                # lines per write request
    flush_interval_s = 1.0           # longest a point waits before it is buffered and sent
    timeout_s = 10.0                 # one write request's timeout
    health_interval_s = 10.0         # probe health points every this many s
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from powerd.errors import PowerdError
from powerd.metrics import DEFAULT_META_LABELS, LabelConfig

SINKS_KEYS = {"host", "meta_labels", "recent_runs"}
INFLUX_KEYS = {
    "url",
    "org",
    "bucket",
    "token_file",
    "downsample_s",
    "buffer_dir",
    "buffer_max_mb",
    "batch_size",
    "flush_interval_s",
    "timeout_s",
    "health_interval_s",
}


@dataclass(frozen=True)
class SinkSettings:
    """``[sinks]``: labels shared by every sink, and the exporter's bound on recent runs."""

    labels: LabelConfig
    recent_runs: int = 10

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> SinkSettings:
        meta = table.get("meta_labels", list(DEFAULT_META_LABELS))
        if not isinstance(meta, list) or not all(isinstance(k, str) for k in meta):
            raise PowerdError("[sinks] meta_labels must be a list of strings")
        recent = int(table.get("recent_runs", 10))
        if recent < 1:
            raise PowerdError("[sinks] recent_runs must be at least 1")
        host = str(table.get("host") or socket.gethostname())
        return cls(LabelConfig(host, tuple(meta)), recent)

    @classmethod
    def default(cls) -> SinkSettings:
        return cls.from_table({})


@dataclass(frozen=True)
class InfluxSettings:
    """``[influx]``: where and how the InfluxDB line-protocol sink writes."""

    url: str
    org: str = ""
    bucket: str = "powerd"
    token_file: Path | None = None
    downsample_s: float = 1.0
    buffer_dir: Path | None = None
    buffer_max_mb: float = 256.0
    batch_size: int = 5000
    flush_interval_s: float = 1.0
    timeout_s: float = 10.0
    health_interval_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise PowerdError(f"[influx] url must start with http:// or https://: {self.url!r}")
        if self.downsample_s < 0:
            raise PowerdError("[influx] downsample_s must be >= 0 (0 writes raw samples)")
        if self.batch_size < 1 or self.buffer_max_mb <= 0:
            raise PowerdError("[influx] batch_size and buffer_max_mb must be positive")
        if min(self.flush_interval_s, self.timeout_s, self.health_interval_s) <= 0:
            raise PowerdError("[influx] flush_interval_s, timeout_s, health_interval_s must be > 0")

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> InfluxSettings:
        if "url" not in table:
            raise PowerdError('[influx] needs url, e.g. url = "http://127.0.0.1:8428"')
        return cls(
            url=str(table["url"]).rstrip("/"),
            org=str(table.get("org", "")),
            bucket=str(table.get("bucket", "powerd")),
            token_file=Path(table["token_file"]) if table.get("token_file") else None,
            downsample_s=float(table.get("downsample_s", 1.0)),
            buffer_dir=Path(table["buffer_dir"]) if table.get("buffer_dir") else None,
            buffer_max_mb=float(table.get("buffer_max_mb", 256.0)),
            batch_size=int(table.get("batch_size", 5000)),
            flush_interval_s=float(table.get("flush_interval_s", 1.0)),
            timeout_s=float(table.get("timeout_s", 10.0)),
            health_interval_s=float(table.get("health_interval_s", 10.0)),
        )

    def token(self) -> str | None:
        if self.token_file is None:
            return None
        try:
            return self.token_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise PowerdError(
                f"cannot read InfluxDB token file {self.token_file}: {err.strerror}"
            ) from None
