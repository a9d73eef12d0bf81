"""The one definition of powerd's wire contracts: topic names and phase-marker validation.

Contract 1 (phase markers), one JSON object per message on ``powerd/v1/markers/<source>``:
``v`` (1), ``run``, ``phase``, ``event`` (begin|end), ``t_ns`` (optional, sender's UTC ns),
``seq`` (optional, per source and run), ``count`` (end only), ``unit``, ``trial``, ``meta``,
``device`` (begin only: the device ids whose channels the phase covers), ``boot_ns`` (set by an
agent relaying a marker: the clock epoch of its ``t_ns``). Anything else is
rejected with a reason, so a typo in a harness shows up as an error on
``powerd/v1/errors/<source>`` instead of a silent default.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from powerd.channel import LOCAL_DEVICE
from powerd.errors import MarkerError

VERSION = 1
TOPIC_ROOT = "powerd/v1"
NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
SOURCE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
UNITS = ("inference", "token", "query", "sample")
KEYS = {
    "v",
    "count_from",
    "run",
    "phase",
    "event",
    "t_ns",
    "seq",
    "count",
    "unit",
    "trial",
    "meta",
    "device",
    "boot_ns",
}
MAX_DEVICES = 64
META_MAX_KEYS = 32
META_MAX_STR = 256
MAX_INT = 2**63 - 1

Event = Literal["begin", "end"]


def markers_topic(source: str) -> str:
    return f"{TOPIC_ROOT}/markers/{source}"


def errors_topic(source: str) -> str:
    return f"{TOPIC_ROOT}/errors/{source}"


def acks_topic(source: str) -> str:
    """The daemon's confirmations to ``source``: each marker with a ``seq`` that it has made
    durable (stored, held for the sender's clock, or a repeat of one stored), QoS 1. A sender
    keeps a marker until this confirmation, since a broker's own acknowledgement is given before
    the broker has saved the message and so does not survive a broker crash."""
    return f"{TOPIC_ROOT}/acks/{source}"


def ack_message(run: str, seq: int, state: str) -> dict[str, Any]:
    """The body on ``powerd/v1/acks/<source>`` for a marker: ``state`` is stored, held or
    repeat. For an agent's blocks the body is ``{"v": 1, "blocks": [[boot_ns, seq], ...]}``
    (every block of the messages committed together)."""
    return {"v": VERSION, "run": run, "seq": seq, "state": state}


def parse_block_acks(payload: bytes) -> list[tuple[int, int]]:
    """The (boot_ns, seq) pairs a blocks confirmation names (empty for anything else)."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return []
    blocks = obj.get("blocks") if isinstance(obj, dict) else None
    if not isinstance(blocks, list):
        return []
    return [
        (b[0], b[1])
        for b in blocks
        if isinstance(b, list) and len(b) == 2 and all(type(x) is int for x in b)
    ]


def parse_ack(payload: bytes) -> tuple[str, int] | None:
    """(run, seq) of a confirmation, or None for anything else."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    run, seq = obj.get("run"), obj.get("seq")
    if not isinstance(run, str) or not isinstance(seq, int) or isinstance(seq, bool):
        return None
    return run, seq


def results_topic(run: str) -> str:
    return f"{TOPIC_ROOT}/results/{run}"


@dataclass(frozen=True)
class Marker:
    """A valid contract-1 marker. ``t_ns`` is on the sender's clock, None when it sent none;
    ``seq`` None when the sender numbers nothing (then only an identical repeat is a repeat);
    ``device`` None on a begin that names no device (the source's own device applies)."""

    run: str
    phase: str
    event: Event
    seq: int | None = None
    t_ns: int | None = None
    count: int | None = None
    unit: str = "inference"
    trial: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    device: tuple[str, ...] | None = None
    # Set by an agent relaying a marker: the clock epoch its t_ns was stamped in (agent/epoch.py).
    boot_ns: int | None = None
    # On a begin: counters (``prom:<url>#<metric>{...}``, powerd.promcount) the daemon reads at
    # the phase's begin and end; each gives one entry of the phase's ``counts`` (contract 2).
    count_from: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """The marker as contract-1 JSON (keys that are unset are left out)."""
        out: dict[str, Any] = {"v": VERSION, "run": self.run, "phase": self.phase}
        out["event"] = self.event
        if self.seq is not None:
            out["seq"] = self.seq
        if self.t_ns is not None:
            out["t_ns"] = self.t_ns
        if self.count is not None:
            out["count"] = self.count
        if self.unit != "inference":
            out["unit"] = self.unit
        if self.trial:
            out["trial"] = self.trial
        if self.meta:
            out["meta"] = self.meta
        if self.device is not None:
            out["device"] = self.device[0] if len(self.device) == 1 else list(self.device)
        if self.boot_ns is not None:
            out["boot_ns"] = self.boot_ns
        if self.count_from is not None:
            out["count_from"] = list(self.count_from)
        return out


def _int(obj: dict[str, Any], key: str, minimum: int = 0) -> int | None:
    value = obj.get(key)
    if value is None:
        if key in obj:
            raise MarkerError(f"{key} must be an integer, not null")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MarkerError(f"{key} must be an integer, got {type(value).__name__} {value!r}")
    if not minimum <= value <= MAX_INT:
        raise MarkerError(f"{key} must be an integer >= {minimum}, got {value}")
    return value


def _name(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise MarkerError(f"{key} must be 1-128 characters of A-Za-z0-9_.:- , got {value!r}")
    return value


def _meta(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MarkerError("meta must be a JSON object of labels")
    if len(value) > META_MAX_KEYS:
        raise MarkerError(f"meta has {len(value)} keys; at most {META_MAX_KEYS}")
    for k, v in value.items():
        if not NAME_RE.match(k):
            raise MarkerError(f"meta key {k!r} must be 1-128 characters of A-Za-z0-9_.:-")
        if not (v is None or isinstance(v, str | int | float | bool)):
            raise MarkerError(f"meta[{k!r}] must be a string, number, boolean or null")
        if isinstance(v, float) and not math.isfinite(v):
            raise MarkerError(f"meta[{k!r}] must be a finite number")
        if isinstance(v, str) and len(v) > META_MAX_STR:
            raise MarkerError(f"meta[{k!r}] is longer than {META_MAX_STR} characters")
    return dict(value)


def _device(value: Any) -> tuple[str, ...]:
    ids = [value] if isinstance(value, str) else value
    if not isinstance(ids, list) or not ids or len(ids) > MAX_DEVICES:
        raise MarkerError(
            f"device must be a device id or a list of 1-{MAX_DEVICES} device ids, got {value!r}"
        )
    for d in ids:
        if not isinstance(d, str) or not SOURCE_RE.match(d):
            raise MarkerError(
                f"device ids are agent ids or {LOCAL_DEVICE!r} (1-128 characters of "
                f"A-Za-z0-9_.:-), got {d!r}"
            )
    return tuple(dict.fromkeys(ids))


def parse_marker(obj: Any) -> Marker:
    """Validate a decoded JSON value as a contract-1 marker; MarkerError says what is wrong."""
    if not isinstance(obj, dict):
        raise MarkerError("a marker must be a JSON object")
    unknown = set(obj) - KEYS
    if unknown:
        raise MarkerError(
            f"unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(KEYS))}"
        )
    v = obj.get("v")
    if isinstance(v, bool) or v != VERSION:
        raise MarkerError(f"v must be {VERSION}, got {v!r}")
    run = _name(obj, "run")
    phase = _name(obj, "phase")
    event = obj.get("event")
    if event not in ("begin", "end"):
        raise MarkerError(f'event must be "begin" or "end", got {event!r}')
    seq = _int(obj, "seq")
    count = _int(obj, "count")
    if count is not None and event != "end":
        raise MarkerError("count belongs on the end marker (units completed in the phase)")
    unit = obj.get("unit", "inference")
    if not isinstance(unit, str) or not NAME_RE.match(unit):
        raise MarkerError(f"unit must be a name such as {', '.join(UNITS)}, got {unit!r}")
    trial = _int(obj, "trial")
    device = _device(obj["device"]) if "device" in obj else None
    if device is not None and event != "begin":
        raise MarkerError("device belongs on the begin marker (the phase's scope is set there)")
    return Marker(
        run=run,
        phase=phase,
        event=event,
        seq=seq,
        t_ns=_int(obj, "t_ns"),
        count=count,
        unit=unit,
        trial=trial or 0,
        meta=_meta(obj["meta"]) if "meta" in obj else {},
        device=device,
        boot_ns=_int(obj, "boot_ns"),
        count_from=_count_from(obj["count_from"], event) if "count_from" in obj else None,
    )


MAX_COUNT_FROM = 8
COUNT_FROM_MAX_LEN = 1024


def _count_from(value: Any, event: str) -> tuple[str, ...]:
    """``count_from``: one counter spec or a list of 1-8 (checked in full by powerd.promcount
    where the daemon reads them; here: strings starting with ``prom:``), on a begin only."""
    if event != "begin":
        raise MarkerError("count_from belongs on the begin marker (its counters are read there)")
    specs = [value] if isinstance(value, str) else value
    if not isinstance(specs, list) or not specs or len(specs) > MAX_COUNT_FROM:
        raise MarkerError(
            f"count_from must be a counter spec or a list of 1-{MAX_COUNT_FROM}, got {value!r}"
        )
    for s in specs:
        if not isinstance(s, str) or not s.startswith("prom:") or len(s) > COUNT_FROM_MAX_LEN:
            raise MarkerError(
                "count_from entries are prom:<url>#<metric>{label=...} strings of at "
                f"most {COUNT_FROM_MAX_LEN} characters, got {s!r}"
            )
    return tuple(dict.fromkeys(specs))


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def decode_marker(payload: bytes | str) -> Marker:
    """Parse a UTF-8 JSON message into a Marker; decoding errors are MarkerErrors too."""
    try:
        obj = decode_json(payload)
    except ValueError as err:
        raise MarkerError(f"not UTF-8 JSON: {err}") from None
    except RecursionError:
        raise MarkerError("not UTF-8 JSON: nested too deeply") from None
    return parse_marker(obj)


JSON_MAX_DEPTH = 64


def decode_json(payload: bytes | str) -> Any:
    """Decode one UTF-8 JSON message from the network; ValueError for anything unfit: bad
    UTF-8 or JSON, NaN/Infinity, or nesting deeper than ``JSON_MAX_DEPTH`` (which would
    otherwise end in a RecursionError that no caller expects)."""
    text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
    depth = 0
    if text.count("[") + text.count("{") > JSON_MAX_DEPTH:
        # a cheap bound on nesting before the recursive decoder sees it (strings ignored)
        deepest = 0
        in_str = esc = False
        for ch in text:
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch in "[{":
                depth += 1
                deepest = max(deepest, depth)
                if deepest > JSON_MAX_DEPTH:
                    raise ValueError(f"JSON nested deeper than {JSON_MAX_DEPTH} levels")
            elif ch in "]}":
                depth -= 1
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def error_message(reason: str, payload: bytes | str, limit: int = 512) -> dict[str, str]:
    """The body for ``powerd/v1/errors/<source>``: the reason and the input (or its start)."""
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    return {"error": reason, "message": text[:limit]}


# --- topics beyond markers, errors and results -----------------------------------------------


def blocks_topic(agent: str) -> str:
    """Sample blocks from an agent (binary, QoS 1)."""
    return f"{TOPIC_ROOT}/blocks/{agent}"


def channels_topic(agent: str) -> str:
    """An agent's channel metadata (JSON list, retained)."""
    return f"{TOPIC_ROOT}/channels/{agent}"


def status_topic(agent: str) -> str:
    """An agent's status (JSON, retained; the MQTT last will sets it offline)."""
    return f"{TOPIC_ROOT}/status/{agent}"


def daemon_topic(daemon: str) -> str:
    """A daemon's presence (JSON status, retained; last will offline). Agents send their backlog
    only while some daemon is online, so a broker restart that lost subscriptions loses no data."""
    return f"{TOPIC_ROOT}/daemons/{daemon}"


def clock_request_topic(agent: str) -> str:
    return f"{TOPIC_ROOT}/clock/{agent}/request"


def clock_reply_topic(agent: str) -> str:
    return f"{TOPIC_ROOT}/clock/{agent}/reply"


def topic_tail(topic: str, kind: str) -> str | None:
    """The ``<source>`` of ``powerd/v1/<kind>/<source>``; None for a topic of another kind."""
    prefix = f"{TOPIC_ROOT}/{kind}/"
    if not topic.startswith(prefix):
        return None
    tail = topic[len(prefix) :]
    return tail if SOURCE_RE.match(tail) else None


# --- sample blocks: compact binary -------------------------------------------------------------

BLOCK_MAGIC = b"PB"
BLOCK_VERSION = 1
_HEAD = struct.Struct("<2sBBQIH")  # magic, version, flags, boot_ns, seq, channel id length
_COUNT = struct.Struct("<Iq")  # n samples, first t_ns
FLAG_T_DELTA_I32 = 1


class WireError(ValueError):
    """A message that does not decode."""


@dataclass(frozen=True)
class BlockMessage:
    """A sample block as sent by an agent: ``boot_ns`` + ``seq`` identify it for de-duplication."""

    boot_ns: int
    seq: int
    channel: str
    t_ns: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]


def encode_block(
    boot_ns: int,
    seq: int,
    channel: str,
    t_ns: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
) -> bytes:
    """Header, then times as int32 deltas when they fit (else int64), then float64 values."""
    cid = channel.encode("utf-8")
    n = int(t_ns.size)
    if n == 0:
        raise WireError("an empty block is not sent")
    deltas = np.diff(t_ns)
    small = n < 2 or bool((deltas >= 0).all() and (deltas < 2**31).all())
    flags = FLAG_T_DELTA_I32 if small else 0
    times = deltas.astype("<i4").tobytes() if small else t_ns.astype("<i8").tobytes()
    return b"".join(
        [
            _HEAD.pack(BLOCK_MAGIC, BLOCK_VERSION, flags, boot_ns, seq, len(cid)),
            cid,
            _COUNT.pack(n, int(t_ns[0])),
            times,
            value.astype("<f8").tobytes(),
        ]
    )


def decode_blocks(payload: bytes) -> list[BlockMessage]:
    """A message may hold several blocks back to back (one per channel of one flush)."""
    out: list[BlockMessage] = []
    off = 0
    while off < len(payload):
        msg, off = _decode_one(payload, off)
        out.append(msg)
    if not out:
        raise WireError("empty blocks message")
    return out


def block_keys(payload: bytes) -> list[tuple[int, int]]:
    """(``boot_ns``, ``seq``) of each block of a blocks message, from the headers only (cheap)."""
    keys: list[tuple[int, int]] = []
    off = 0
    try:
        while off < len(payload):
            _, _, flags, boot_ns, seq, clen = _HEAD.unpack_from(payload, off)
            off += _HEAD.size + clen
            n, _ = _COUNT.unpack_from(payload, off)
            off += _COUNT.size + ((n - 1) * 4 if flags & FLAG_T_DELTA_I32 else n * 8) + n * 8
            keys.append((boot_ns, seq))
    except struct.error as err:
        raise WireError(f"malformed block: {err}") from None
    return keys


def block_boots(payload: bytes) -> set[int]:
    """The clock epochs (``boot_ns``) of a blocks message, from the headers only (cheap)."""
    return {boot for boot, _ in block_keys(payload)}


def decode_block(payload: bytes) -> BlockMessage:
    """Inverse of ``encode_block`` for a message of exactly one block; WireError if malformed."""
    msg, end = _decode_one(payload, 0)
    if end != len(payload):
        raise WireError("block length does not match its header")
    return msg


def _decode_one(payload: bytes, start: int) -> tuple[BlockMessage, int]:
    try:
        magic, version, flags, boot_ns, seq, clen = _HEAD.unpack_from(payload, start)
        if magic != BLOCK_MAGIC or version != BLOCK_VERSION:
            raise WireError("not a powerd v1 block")
        off = start + _HEAD.size
        channel = payload[off : off + clen].decode("utf-8")
        off += clen
        n, t0 = _COUNT.unpack_from(payload, off)
        off += _COUNT.size
        if n == 0:
            raise WireError("empty block")
        if flags & FLAG_T_DELTA_I32:
            deltas = np.frombuffer(payload, "<i4", n - 1, off).astype(np.int64)
            t = np.empty(n, np.int64)
            t[0] = t0
            np.cumsum(deltas, out=t[1:])
            t[1:] += t0
            off += (n - 1) * 4
        else:
            t = np.frombuffer(payload, "<i8", n, off).astype(np.int64)
            off += n * 8
        v = np.frombuffer(payload, "<f8", n, off).astype(np.float64)
        off += n * 8
    except (struct.error, ValueError, UnicodeDecodeError) as err:
        if isinstance(err, WireError):
            raise
        raise WireError(f"malformed block: {err}") from None
    return BlockMessage(boot_ns, seq, channel, t, v), off


# --- clock exchange and status (JSON) ----------------------------------------------------------


def clock_request(req_id: int, t1_ns: int) -> bytes:
    return json.dumps({"v": VERSION, "id": req_id, "t1_ns": t1_ns}).encode()


def clock_reply(
    request: bytes, t2_ns: int, t3_ns: int, boot_ns: int | None = None, epoch: int | None = None
) -> bytes:
    """The agent's answer: the request's id and t1, its receive (t2) and send (t3) stamps, and
    the clock epoch (``boot_ns``, ``epoch``) both stamps belong to (see agent/epoch.py)."""
    req = json.loads(request)
    if not isinstance(req, dict) or not isinstance(req.get("id"), int):
        raise WireError("clock request without an integer id")
    out: dict[str, Any] = {
        "v": VERSION,
        "id": req["id"],
        "t1_ns": req["t1_ns"],
        "t2_ns": t2_ns,
        "t3_ns": t3_ns,
    }
    if boot_ns is not None:
        out["boot_ns"] = boot_ns
    if epoch is not None:
        out["epoch"] = epoch
    return json.dumps(out).encode()


def parse_clock_reply(payload: bytes) -> tuple[int, int, int, int]:
    """(id, t1, t2, t3) of a clock reply; WireError if malformed."""
    req_id, t1, t2, t3, _ = parse_clock_reply_boot(payload)
    return req_id, t1, t2, t3


def parse_clock_reply_boot(payload: bytes) -> tuple[int, int, int, int, int | None]:
    """(id, t1, t2, t3, boot_ns) of a clock reply; boot_ns None from an agent that sends none."""
    try:
        obj = decode_json(payload)
        out = (obj["id"], obj["t1_ns"], obj["t2_ns"], obj["t3_ns"])
        boot = obj.get("boot_ns")
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise WireError(f"malformed clock reply: {err}") from None
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in out):
        raise WireError("clock reply fields must be integers")
    if not all(0 <= x <= MAX_INT for x in out):
        raise WireError("clock reply fields must be integers in 0..2^63-1")
    return (*out, _boot(boot))


def _boot(value: Any) -> int | None:
    """A clock-epoch id (``boot_ns``) as sent: a u64 integer, or None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise WireError(f"boot_ns must be an integer in [0, 2^64), got {value!r}")
    return value


STATE_RE = re.compile(r"^[a-z_]{1,32}$")


def status_problem(agent: str, obj: Any) -> str | None:
    """Why a decoded status message from ``agent`` is not a valid status (None if it is): a
    JSON object with ``v`` 1, ``agent`` equal to the topic's id and a ``state`` name."""
    if not isinstance(obj, dict):
        return "a status must be a JSON object"
    if obj.get("v") != VERSION or isinstance(obj.get("v"), bool):
        return f"status v must be {VERSION}, got {obj.get('v')!r}"[:200]
    if obj.get("agent") != agent:
        return f"status agent must be the topic's id {agent!r}, got {obj.get('agent')!r}"[:200]
    state = obj.get("state")
    if not isinstance(state, str) or not STATE_RE.match(state):
        return f"status state must be a name such as online, got {state!r}"[:200]
    return None


def status(agent: str, state: str, t_ns: int, version: str, **extra: Any) -> bytes:
    """An agent's or daemon's presence. Agents add ``boot_ns`` and ``epoch`` (their clock epoch,
    see agent/epoch.py) and ``spool`` (``{"state": "ok|full|error", "dropped_blocks": n, ...}``)."""
    body = {"v": VERSION, "agent": agent, "state": state, "t_ns": t_ns, "version": version}
    return json.dumps(body | extra).encode()


def status_boot(obj: Any) -> int | None:
    """The clock epoch an agent's decoded status announces (None: none, or malformed)."""
    if not isinstance(obj, dict):
        return None
    try:
        return _boot(obj.get("boot_ns"))
    except WireError:
        return None


# --- dropped data: what an agent could not keep (exact extent, on its own clock) ---------------


def gaps_topic(agent: str) -> str:
    """Data an agent had to drop (spool full or failing): JSON, QoS 1, spooled like blocks."""
    return f"{TOPIC_ROOT}/gaps/{agent}"


@dataclass(frozen=True)
class DroppedBlock:
    """Samples an agent dropped: its channel, clock epoch and first and last stamp (its clock)."""

    channel: str
    boot_ns: int
    t_first_ns: int
    t_last_ns: int
    samples: int
    reason: str = "agent_dropped"

    def to_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "boot_ns": self.boot_ns,
            "t_first_ns": self.t_first_ns,
            "t_last_ns": self.t_last_ns,
            "samples": self.samples,
            "reason": self.reason,
        }


GAP_REASONS = ("agent_dropped", "probe_down")


def encode_gaps(gaps: list[DroppedBlock]) -> bytes:
    return json.dumps({"v": VERSION, "gaps": [g.to_json() for g in gaps]}).encode()


def decode_gaps(payload: bytes) -> list[DroppedBlock]:
    """The dropped extents of a gaps message; WireError if malformed."""
    try:
        obj = decode_json(payload)
        items = obj["gaps"]
        if not isinstance(items, list):
            raise TypeError("gaps must be a list")
        out = []
        for g in items:
            channel = g["channel"]
            if not isinstance(channel, str) or not NAME_RE.match(channel.replace("/", "_")):
                raise ValueError(f"bad channel {channel!r}")
            nums = (g["boot_ns"], g["t_first_ns"], g["t_last_ns"], g.get("samples", 0))
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in nums):
                raise TypeError("gap fields must be integers")
            boot, t0, t1, n = nums
            if not (0 <= boot < 2**64 and -MAX_INT <= t0 <= t1 <= MAX_INT and n >= 0):
                raise ValueError("gap extent out of range")
            reason = g.get("reason", "agent_dropped")
            if reason not in GAP_REASONS:
                raise ValueError(f"gap reason must be one of {', '.join(GAP_REASONS)}")
            out.append(DroppedBlock(channel, boot, t0, t1, n, reason))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
        raise WireError(f"malformed gaps message: {err}") from None
    return out
