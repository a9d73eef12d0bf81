"""``powerd mark begin|end PHASE``: send one phase marker to a running powerd (HTTP or MQTT).

For shell-driven benchmarks: ``powerd mark begin decode`` before a step, ``powerd mark end decode
--count 512 --unit token`` after it. The run id and URL default to ``POWERD_RUN`` and ``POWERD_URL``
(set by ``powerd measure`` for its command), so inside a measured script no option is needed.
Begin and end may come from different invocations: phases are matched by (run, phase, trial), not by
sender. Each marker is stamped with this host's clock when the command runs; errors (an invalid
option, an end without a begin, an unreachable server) are one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from powerd.client import CONFIRM_TIMEOUT_S, DEFAULT_MQTT_PORT, RUN_ENV, URL_ENV, PowerdClient
from powerd.errors import PowerdError

EPILOG = f"""\
Examples:
  powerd mark begin decode --run bench-1
  powerd mark end decode --run bench-1 --count 512 --unit token --meta model=llama-8b --meta batch=8
  powerd mark begin prefill --mqtt broker.lab:1883 --source harness-1

Defaults: --run from ${RUN_ENV}, --url from ${URL_ENV} (both set by `powerd measure` for its
command). --meta values that read as JSON numbers, true, false or null are sent as such; anything
else is a string.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "mark",
        help="send a phase marker to a running powerd (HTTP or MQTT)",
        description="Send one contract-1 phase marker, stamped now, to powerd's HTTP API or "
        "over MQTT.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("event", choices=["begin", "end"], help="edge of the phase")
    p.add_argument("phase", metavar="PHASE", help="phase name, e.g. prefill, decode, inference")
    p.add_argument("--run", default=None, metavar="ID", help=f"run id (default: ${RUN_ENV})")
    p.add_argument(
        "--count", type=int, default=None, metavar="N", help="units of work done (end only)"
    )
    p.add_argument(
        "--unit",
        default=None,
        metavar="U",
        help="what --count counts: inference (default), token, …",
    )
    p.add_argument("--trial", type=int, default=None, metavar="K", help="repetition index")
    p.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label (repeat for several)",
    )
    p.add_argument(
        "--source", default=None, metavar="S", help="sender id (default: <hostname>-<pid>)"
    )
    p.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="ID",
        help="begin only: a device whose channels the phase covers (an agent id, or local for "
        "the daemon's own probes); repeat for several, which are then summed (default: the "
        "source's own device)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--url", default=None, metavar="URL", help=f"powerd's HTTP API (default: ${URL_ENV})"
    )
    where.add_argument(
        "--mqtt",
        default=None,
        metavar="HOST[:PORT]",
        help=f"publish over MQTT to this broker instead (port default {DEFAULT_MQTT_PORT})",
    )
    p.add_argument(
        "--confirm-timeout",
        type=float,
        default=CONFIRM_TIMEOUT_S,
        metavar="S",
        help="with --mqtt: how long to wait for powerd to confirm it stored the marker (the "
        "broker's own acknowledgement does not survive a broker crash); unconfirmed is an error "
        f"(default {CONFIRM_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="F",
        help="file holding the API's bearer token (default: $POWERD_TOKEN, if set)",
    )


def parse_meta(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value that parses as a JSON scalar keeps its type."""
    meta: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise PowerdError(f"--meta {item!r}: use KEY=VALUE, e.g. --meta batch=8")
        value: Any = text
        try:
            parsed = json.loads(text, parse_constant=_not_json)
        except ValueError:
            parsed = text
        if parsed is None or isinstance(parsed, bool | int | float):
            value = parsed
        meta[key] = value
    return meta


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_broker(spec: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6addr]:PORT`` for IPv6)."""
    host, port = spec, DEFAULT_MQTT_PORT
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest:
            port_text = rest.removeprefix(":")
            port = _port(spec, port_text)
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
        port = _port(spec, port_text)
    if not host:
        raise PowerdError(f"--mqtt {spec!r}: use HOST or HOST:PORT")
    return host, port


def _port(spec: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise PowerdError(f"--mqtt {spec!r}: the port must be a number from 1 to 65535")
    return int(text)


def _token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise PowerdError(f"cannot read the token file {path}: {err.strerror}") from None
    if not token:
        raise PowerdError(f"the token file {path} is empty")
    return token


def _check_defaults(args: argparse.Namespace) -> None:
    """Say which option is missing in the command line's words (the client's own messages name
    its keyword arguments, ``run=...``, which a shell user cannot pass)."""
    if not (args.run or os.environ.get(RUN_ENV)):
        raise PowerdError(
            f"no run id: pass --run ID or set {RUN_ENV} (powerd measure sets it for its command)"
        )
    if args.mqtt is None and not (args.url or os.environ.get(URL_ENV)):
        raise PowerdError(
            "no powerd URL: pass --url URL (e.g. --url http://127.0.0.1:8089), "
            f"--mqtt HOST[:PORT], or set {URL_ENV} (powerd measure sets it for its command)"
        )


def run_command(args: argparse.Namespace) -> int:
    meta = parse_meta(args.meta)
    _check_defaults(args)
    if args.count is not None and args.event != "end":
        raise PowerdError("--count goes with `powerd mark end` (units completed in the phase)")
    if args.device and args.event != "begin":
        raise PowerdError("--device goes with `powerd mark begin` (the phase's scope)")
    if args.mqtt is not None:
        host, port = parse_broker(args.mqtt)
        if not args.confirm_timeout > 0:
            raise PowerdError("--confirm-timeout must be > 0 seconds")
        client = PowerdClient(
            run=args.run,
            source=args.source,
            transport="mqtt",
            mqtt_host=host,
            mqtt_port=port,
            confirm_timeout_s=args.confirm_timeout,
        )
    else:
        client = PowerdClient(
            url=args.url, run=args.run, source=args.source, token=_token(args.token_file)
        )
    with client:
        answer = client.mark(
            args.event,
            args.phase,
            count=args.count,
            unit=args.unit,
            trial=args.trial,
            meta=meta or None,
            device=args.device or None,
        )
    print(_describe(client, args.event, args.phase, answer))
    return 0


def _describe(client: PowerdClient, event: str, phase: str, answer: dict[str, Any]) -> str:
    what = f"{event} of phase {phase!r} (run {client.run!r}, source {client.source})"
    if client.transport == "mqtt":
        where = f"mqtt://{client.mqtt_host}:{client.mqtt_port}"
        return f"published {what} to {where}; powerd confirmed it stored it"
    if answer.get("held"):
        return f"{what}: held until the agent's clock offset is known"
    if answer.get("repeat"):
        return f"{what}: a repeat, ignored"
    closed = answer.get("phase")
    if isinstance(closed, dict):
        return f"applied {what}: phase closed after {closed['duration_s']:.6f} s"
    return f"applied {what}"
