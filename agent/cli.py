"""``powerd-agent``: the edge agent's command line.

Configure it with a TOML file (``--config``) or flags; flags win. The file:

    [agent]
    id = "edge-01"                      # this host's source id (A-Za-z0-9_.:-)
    probes = ["nvml", "rapl"]
    spool_dir = "/var/lib/powerd-agent"
    spool_max_mb = 256
    http_bind = "127.0.0.1"             # local marker endpoint for harnesses
    http_port = 8090                    # 0: any free port (--no-http disables it)
    publish_interval_s = 0.5            # how often sampled blocks are sent

    [mqtt]                              # as for the daemon (host, port, username, tls_*)
    host = "broker.lab"
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
import tomllib
from pathlib import Path
from typing import Any

from agent.mqttconf import MqttSettings
from agent.wire import SOURCE_RE
from powerd.errors import PowerdError

AGENT_KEYS = {
    "id",
    "probes",
    "spool_dir",
    "spool_max_mb",
    "http_bind",
    "http_port",
    "publish_interval_s",
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


def _read(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise PowerdError(f"cannot read config {path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise PowerdError(f"config {path} is not valid TOML: {err}") from None
    unknown = set(data) - {"agent", "mqtt"}
    if unknown:
        raise PowerdError(f"config {path}: unknown table(s) {', '.join(sorted(unknown))}")
    bad = set(data.get("agent", {})) - AGENT_KEYS
    if bad:
        raise PowerdError(
            f"[agent]: unknown key(s) {', '.join(sorted(bad))}; "
            f"allowed: {', '.join(sorted(AGENT_KEYS))}"
        )
    return data


def config_from(args: argparse.Namespace) -> Any:
    from agent.agent import PUBLISH_INTERVAL_S, AgentConfig

    data = _read(args.config)
    a = data.get("agent", {})
    mqtt = dict(data.get("mqtt", {}))
    if args.mqtt:
        host, _, port = args.mqtt.rpartition(":") if ":" in args.mqtt else (args.mqtt, "", "")
        mqtt["host"] = host or args.mqtt
        if port:
            mqtt["port"] = int(port)
    agent_id = args.id or a.get("id") or socket.gethostname().split(".")[0]
    if not SOURCE_RE.match(agent_id):
        raise PowerdError(f"agent id {agent_id!r}: use 1-128 characters of A-Za-z0-9_.:-")
    probes = tuple(args.probe or a.get("probes", ()))
    if not probes:
        raise PowerdError("no probes: pass --probe SPEC or set [agent] probes")
    spool = args.spool_dir or Path(a.get("spool_dir", Path.home() / ".local/state/powerd-agent"))
    port = (
        None
        if args.no_http
        else args.http_port
        if args.http_port is not None
        else a.get("http_port", 8090)
    )
    return AgentConfig(
        id=agent_id,
        probes=probes,
        mqtt=MqttSettings.from_table(mqtt),
        spool_dir=Path(spool),
        spool_max_bytes=int(float(a.get("spool_max_mb", 256)) * (1 << 20)),
        http_bind=str(a.get("http_bind", "127.0.0.1")),
        http_port=port,
        publish_interval_s=float(
            args.publish_interval or a.get("publish_interval_s", PUBLISH_INTERVAL_S)
        ),
    )


async def _main(cfg: Any) -> None:
    from agent.agent import Agent

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
