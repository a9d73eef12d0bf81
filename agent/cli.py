"""``powerd-agent``: the edge agent's command line.

Configure it with a TOML file (``--config``) or flags; flags win. The file:

    [agent]
    id = "edge-01"                      # this host's source id (A-Za-z0-9_.:-); default: host name
    probes = ["nvml", "rapl"]
    spool_dir = "/var/lib/powerd-agent"
    spool_max_mb = 256                  # > 0; counts SQLite's WAL too
    spool_memory_mb = 32                # > 0; kept in memory while the spool's disk fails
    http_bind = "127.0.0.1"             # local marker endpoint for harnesses
    http_port = 8090                    # 0: any free port (--no-http disables it)
    publish_interval_s = 1.0            # how often sampled blocks are sent (> 0)

    [mqtt]                              # as for the daemon (host, port, username, tls_*)
    host = "broker.lab"

Every key is checked (type, range, unknown keys) and so is every flag, one line per error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec

from powerd.agent.mqttconf import MqttSettings
from powerd.agent.wire import SOURCE_RE
from powerd.errors import PowerdError
from powerd.schema import Name, Names, PortOrAny, Positive, Seconds, Table, convert, read_toml

AgentId = Annotated[
    str,
    msgspec.Meta(pattern=SOURCE_RE.pattern, description="1-128 characters of A-Za-z0-9_.:-"),
]


class AgentTable(Table, frozen=True):
    """``[agent]``; a key named as an ``AgentConfig`` field is passed on as it is."""

    id: AgentId | None = None
    probes: Names = ()
    spool_dir: Path | None = None
    spool_max_mb: Positive = 256.0
    spool_memory_mb: Positive = 32.0
    http_bind: Name = "127.0.0.1"
    http_port: PortOrAny = 8090
    publish_interval_s: Seconds | None = None  # default: powerd.agent.agent.PUBLISH_INTERVAL_S


class AgentFile(Table, frozen=True):
    agent: AgentTable = msgspec.field(default_factory=AgentTable)
    mqtt: MqttSettings = msgspec.field(default_factory=MqttSettings)


# the flags that stand for [agent] keys; a flag given wins over the file
FLAGS = {
    "id": "--id",
    "probes": "--probe",
    "spool_dir": "--spool-dir",
    "http_port": "--http-port",
    "publish_interval_s": "--publish-interval",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="powerd-agent",
        description="powerd's edge agent: samples this host's probes and publishes them over "
        "MQTT to powerd, answers its clock requests, and relays markers from local harnesses.",
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration")
    p.add_argument("--id", help="agent id (default: the host name)")
    p.add_argument(
        "--probe",
        action="append",
        default=None,
        metavar="SPEC",
        help="probe to sample (repeat); `powerd probes` lists them",
    )
    p.add_argument("--mqtt", metavar="HOST[:PORT]", help="broker (default 127.0.0.1:1883)")
    p.add_argument(
        "--spool-dir",
        type=Path,
        metavar="DIR",
        help="where unsent messages wait (default ~/.local/state/powerd-agent)",
    )
    p.add_argument(
        "--http-port",
        type=int,
        metavar="PORT",
        help="local marker endpoint port on 127.0.0.1 (0: any free port)",
    )
    p.add_argument("--no-http", action="store_true", help="no local marker endpoint")
    p.add_argument(
        "--publish-interval",
        type=float,
        metavar="S",
        help="how often sampled blocks are sent (default 0.5 s; lower: fresher results, more CPU)",
    )
    return p


def _read(path: Path | None) -> AgentFile:
    if path is None:
        return AgentFile()
    return convert(read_toml(path), AgentFile, f"config {path}: ")


def _flags(
    args: argparse.Namespace, table: AgentTable, mqtt: MqttSettings
) -> tuple[AgentTable, MqttSettings]:
    """The file's tables with the flags given applied, each flag checked as its key is."""
    given = {
        "id": args.id,
        "probes": args.probe,
        "spool_dir": str(args.spool_dir) if args.spool_dir is not None else None,
        "http_port": args.http_port,
        "publish_interval_s": args.publish_interval,
    }
    given = {key: value for key, value in given.items() if value is not None}
    flags = convert(given, AgentTable, "", lambda steps: FLAGS.get(str(steps[0]), str(steps[0])))
    table = msgspec.structs.replace(table, **{key: getattr(flags, key) for key in given})
    if args.mqtt:
        host, colon, port = args.mqtt.rpartition(":")
        broker: dict[str, Any] = {"host": host if colon else args.mqtt}
        if colon:
            broker["port"] = int(port) if port.isdigit() else port
        checked = convert(broker, MqttSettings, "", lambda steps: f"--mqtt {args.mqtt}")
        mqtt = msgspec.structs.replace(mqtt, **{k: getattr(checked, k) for k in broker})
    return table, mqtt


def config_from(args: argparse.Namespace) -> Any:
    from powerd.agent.agent import PUBLISH_INTERVAL_S, AgentConfig

    file = _read(args.config)
    a, mqtt = _flags(args, file.agent, file.mqtt)
    if not a.probes:
        raise PowerdError("no probes: pass --probe SPEC or set [agent] probes")
    agent_id = a.id or socket.gethostname().split(".")[0]
    if not SOURCE_RE.match(agent_id):
        raise PowerdError(f"agent id {agent_id!r}: use 1-128 characters of A-Za-z0-9_.:- (--id)")
    names = {f.name for f in dataclasses.fields(AgentConfig)}
    same = {k: v for k, v in msgspec.structs.asdict(a).items() if k in names and v is not None}
    return AgentConfig(
        **{
            **same,
            "id": agent_id,
            "mqtt": mqtt,
            "spool_dir": a.spool_dir or Path.home() / ".local/state/powerd-agent",
            "spool_max_bytes": int(a.spool_max_mb * (1 << 20)),
            "spool_memory_bytes": int(a.spool_memory_mb * (1 << 20)),
            "http_port": None if args.no_http else a.http_port,
            "publish_interval_s": a.publish_interval_s or PUBLISH_INTERVAL_S,
        }
    )


async def _main(cfg: Any) -> None:
    from powerd.agent.agent import Agent

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Agent(cfg).run(stop)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from(args)
        asyncio.run(_main(cfg))
    except PowerdError as err:
        print(f"powerd-agent: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"powerd-agent: error: {err}", file=sys.stderr)
        return 2
    return 0
