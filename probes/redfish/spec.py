"""The ``redfish:`` probe spec: parsed and checked once, each mistake a one-line SpecError."""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass

from powerd.errors import SpecError
from powerd.probes.base import parse_kv, seconds_arg

DEFAULT_INTERVAL_S = 2.0
MIN_INTERVAL_S = 0.5
DEFAULT_TIMEOUT_S = 5.0
KEYS = {
    "host", "url", "user", "password_file", "ca", "insecure", "chassis", "interval",
    "timeout", "sensors", "name", "measures",
}  # fmt: skip


def clean_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


@dataclass(frozen=True)
class RedfishSpec:
    base_url: str
    host: str
    user: str | None
    password_file: str | None
    ca: str | None
    insecure: bool
    chassis: tuple[str, ...]
    interval_s: float
    timeout_s: float
    sensors: bool
    name: str
    measures: str | None


def parse_spec(args: str) -> RedfishSpec:
    kv = parse_kv(args, KEYS)
    if ("host" in kv) == ("url" in kv):
        raise SpecError("redfish: give host=BMC (https) or url=https://BMC[:PORT], not both")
    base = kv["url"] if "url" in kv else f"https://{kv['host']}"
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(f"redfish: url={base!r} must be http(s)://HOST[:PORT]")
    if "ca" in kv and not os.access(kv["ca"], os.R_OK):
        raise SpecError(f"redfish: ca file {kv['ca']!r} is not readable")
    if "password_file" in kv and "user" not in kv:
        raise SpecError("redfish: password_file needs user=NAME")
    flags = {k: kv[k] for k in ("insecure", "sensors") if k in kv}
    for k, val in flags.items():
        if val not in ("0", "1"):
            raise SpecError(f"redfish: {k} must be 0 or 1")
    return RedfishSpec(
        base_url=f"{parts.scheme}://{parts.netloc}",
        host=parts.hostname,
        user=kv.get("user"),
        password_file=kv.get("password_file"),
        ca=kv.get("ca"),
        insecure=kv.get("insecure") == "1",
        chassis=tuple(filter(None, kv.get("chassis", "").split("+"))),
        interval_s=seconds_arg(
            "redfish", kv, "interval", DEFAULT_INTERVAL_S, MIN_INTERVAL_S, 3600.0
        ),
        timeout_s=seconds_arg("redfish", kv, "timeout", DEFAULT_TIMEOUT_S, 0.2, 120.0),
        sensors=kv.get("sensors", "1") == "1",
        name=clean_id(kv.get("name") or parts.hostname),
        measures=kv.get("measures"),
    )
