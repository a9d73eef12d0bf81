"""Helpers for the HTTP API tests: the OpenAPI document, a checking HTTP caller, test data.

Every JSON answer a test receives through ``Api.call`` is checked against the schema that
``powerd/openapi.json`` documents for that route, method and status, so the description cannot
drift from what the server does.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from powerd.block import Block
from powerd.channel import Accuracy, Channel
from powerd.daemon import Daemon

DOC: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "powerd" / "openapi.json").read_text(encoding="utf-8")
)
CHANNEL = "bench:dut"
POWER_W = 5.0
SAMPLE_PERIOD_NS = 10_000_000
TIMEOUT_S = 10.0


def schema_validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator for ``schema`` with the document's ``#/components/...`` refs resolvable."""
    return jsonschema.Draft202012Validator({**schema, "components": DOC["components"]})


def component(name: str) -> jsonschema.Draft202012Validator:
    return schema_validator({"$ref": f"#/components/schemas/{name}"})


def _operation(method: str, path: str) -> dict[str, Any] | None:
    for template, item in DOC["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return dict(item[method.lower()])
    return None


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Api:
    url: str
    token: str | None = None

    def call(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        documented: bool = True,
    ) -> Reply:
        """One request; a documented route's answer must match its OpenAPI response schema."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        hdrs = dict(headers or {})
        bearer = token if token is not None else self.token
        if bearer:
            hdrs["Authorization"] = f"Bearer {bearer}"
        req = urllib.request.Request(self.url + path, data=data, headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                reply = Reply(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as err:
            reply = Reply(err.code, dict(err.headers), err.read())
        ctype = reply.headers.get("Content-Type", "")
        if reply.status >= 400:
            assert ctype.startswith("application/json"), (reply.status, reply.body)
            assert set(reply.json()) == {"error"} and reply.json()["error"]
        op = _operation(method, path.split("?", maxsplit=1)[0])
        if documented:
            assert op is not None, f"{method} {path} is not in openapi.json"
            responses = op["responses"]
            assert str(reply.status) in responses, (
                f"{method} {path} answered {reply.status}, not documented: {reply.body[:200]!r}"
            )
            content = responses[str(reply.status)]["content"]
            media = ctype.split(";")[0]
            assert media in content, (method, path, reply.status, ctype)
            if media == "application/json":
                schema_validator(content[media]["schema"]).validate(reply.json())
        return reply


def add_constant_channel(d: Daemon, t0_ns: int, seconds: float) -> None:
    """A meter channel at POWER_W from ``t0_ns`` for ``seconds``, in timeline and store."""
    ch = Channel(CHANNEL, "power", "meter", SAMPLE_PERIOD_NS / 1e9, Accuracy(reading_frac=0.001))
    d.timeline.add_channel(ch)
    d.store.put_channel(ch)
    t = t0_ns + np.arange(int(seconds * 1e9 / SAMPLE_PERIOD_NS) + 1, dtype=np.int64) * (
        SAMPLE_PERIOD_NS
    )
    block = Block.of(CHANNEL, t, np.full(t.size, POWER_W))
    d.timeline.append(block)
    d.store.append(block)
    d.store.flush()


# --- mosquitto ---------------------------------------------------------------------------------


@dataclass
class Broker:
    host: str
    port: int
