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
    downsample_s = 1.0               # mean power per channel per interval (s); 0 writes raw samples
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
from typing import Annotated, Any

import msgspec

from powerd.errors import PowerdError
from powerd.metrics import DEFAULT_META_LABELS, LabelConfig
from powerd.schema import (
    Count,
    Name,
    Positive,
    Seconds,
    SecondsOrOff,
    Table,
    convert,
    table_key,
)

HttpUrl = Annotated[
    str, msgspec.Meta(pattern=r"^https?://.", description="a URL starting with http:// or https://")
]


class SinksTable(Table, frozen=True):
    """``[sinks]`` as written in the file (``SinkSettings`` is what the sinks use)."""

    host: Name | None = None
    meta_labels: tuple[str, ...] = DEFAULT_META_LABELS
    recent_runs: Count = 10


@dataclass(frozen=True)
class SinkSettings:
    """``[sinks]``: labels shared by every sink, and the exporter's bound on recent runs."""

    labels: LabelConfig
    recent_runs: int = 10

    @classmethod
    def of(cls, table: SinksTable) -> SinkSettings:
        """From the checked table; ``LabelConfig`` checks the label names."""
        host = table.host or socket.gethostname()
        return cls(LabelConfig(host, table.meta_labels), table.recent_runs)

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> SinkSettings:
        return cls.of(convert(table, SinksTable, "", lambda steps: table_key(["sinks", *steps])))

    @classmethod
    def default(cls) -> SinkSettings:
        return cls.of(SinksTable())


class InfluxSettings(Table, frozen=True):
    """``[influx]``: where and how the InfluxDB line-protocol sink writes (only url required)."""

    url: HttpUrl
    org: str = ""
    bucket: Name = "powerd"
    token_file: Path | None = None
    downsample_s: SecondsOrOff = 1.0
    buffer_dir: Path | None = None
    buffer_max_mb: Positive = 256.0
    batch_size: Count = 5000
    flush_interval_s: Seconds = 1.0
    timeout_s: Seconds = 10.0
    health_interval_s: Seconds = 10.0

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "url", self.url.rstrip("/"))

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> InfluxSettings:
        return convert(table, cls, "", lambda steps: table_key(["influx", *steps]))

    def token(self) -> str | None:
        if self.token_file is None:
            return None
        try:
            return self.token_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise PowerdError(
                f"cannot read InfluxDB token file {self.token_file}: {err.strerror}"
            ) from None
