"""The audit trail: a manifest sealed with each stored result, and its check (``powerd audit``).

Why: a signed figure must say which meter, calibration, software, configuration and raw data
produced it, and anyone holding the store must be able to show that none of it changed since.

**When a manifest is written.** Every time a run's result is stored (the daemon after the run's
grace period, ``powerd measure`` at its end, ``powerd report RUN`` when it recomputes), a manifest
is sealed beside it as the run's next *revision* (1, 2, …; table ``manifests``, store schema 3).
Data that arrives for the run later (an agent's backlog) is not hidden: the sealed hashes no longer
match, so ``powerd audit`` fails and names the channel ("3 samples more than sealed"); the running
daemon recomputes such a run itself (``powerd.latedata``; the result's ``revised_after_late_data``
counts it), and ``powerd report RUN`` does the same by hand: either seals a new revision over the
data as it is then, and the old revisions stay for the record. ``powerd audit`` checks the latest
revision (``--revision N`` an older one: its hashes only; the stored result belongs to the latest).

**Canonical byte forms** (all digests SHA-256, lowercase hex; form ``powerd-audit-1``):

- *samples* of channel C: the samples the figures rest on, ``Store.samples(C, t0, t1)`` over the
  run's span (first phase begin ``t0`` to last phase end ``t1``, plus the nearest stored sample on
  each side), in time order; each sample is 16 bytes: ``t_ns`` as little-endian int64, then the
  value as little-endian IEEE 754 binary64 (W or J, as stored).
- *channel metadata*: the channel's JSON text exactly as stored (UTF-8).
- *markers* of run R: each stored marker row of R in arrival (row id) order, as the JSON array
  ``[source, seq, run, t_ns, received_ns, marker, timing]`` (``marker`` and ``timing`` are the
  stored JSON texts, as strings) dumped with ``separators=(",", ":")`` and ``ensure_ascii=False``,
  then ``"\\n"``; the rows concatenated, UTF-8.
- *result*: ``json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``,
  UTF-8; the same form for the redacted *config* and for the *manifest* itself.

The manifest holds: powerd's version, host, the sealing command, the daemon's config with secrets
removed and its digest (and the raw config file's digest), the probe specs, the parameters the
figures were computed with (``idle_power_w``, ``primary``), the clock-sync state of each agent
the run's phases cover (their devices and the agents of their channels: a choice, not a
contract; a fleet daemon knows thousands of agents, issue 16), and per channel its metadata as
stored then (accuracy, instrument, calibration …), sample count, first/last sample time and
digests.

**Channel metadata** is one row per channel in the store, the latest: the live daemon updates an
agent channel's ``stamp_uncertainty_s`` as it re-measures the agent's clock offset, and a probe
re-identifies its instrument. The audit therefore recomputes the figures with the metadata sealed
in the manifest (checked against its digest), and reports a stored row that differs from it: as a
finding, unless ``stamp_uncertainty_s`` is all that changed (a note). A result
is never changed by sealing (contract 2 is untouched); the manifest lives beside it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from powerd import __version__
from powerd.block import F64, I64
from powerd.channel import LOCAL_DEVICE, Channel
from powerd.store import Store

FORM = "powerd-audit-1"
MANIFEST_VERSION = 1
REDACTED = "<redacted>"
SECRET_KEY_RE = re.compile(r"pass(word|phrase)?|token|secret|credential|api_?key", re.IGNORECASE)
URL_USERINFO_RE = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", re.IGNORECASE)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """The one JSON byte form digests are taken over (module docstring)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def samples_bytes(t_ns: I64, value: F64) -> bytes:
    """Samples as 16-byte records: little-endian int64 time, then little-endian float64 value."""
    rec = np.empty(t_ns.size, dtype=[("t", "<i8"), ("v", "<f8")])
    rec["t"] = t_ns
    rec["v"] = value
    return rec.tobytes()


def markers_bytes(rows: Iterable[tuple[Any, ...]]) -> bytes:
    """Stored marker rows in their canonical form (module docstring)."""
    return b"".join(
        json.dumps(list(r), separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        for r in rows
    )


def redact(obj: Any, key: str = "") -> Any:
    """A config with its secrets removed: values of keys that name a password, token, secret
    or credential (paths to such files, ``*_file``, are kept: a path is no secret), and the
    user:password part of URLs."""
    if isinstance(obj, dict):
        return {k: redact(v, str(k)) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact(v, key) for v in obj]
    if key and SECRET_KEY_RE.search(key) and not key.endswith(("_file", "_dir")):
        return REDACTED
    if isinstance(obj, str):
        return URL_USERINFO_RE.sub(r"\1", obj)
    if isinstance(obj, dt.date | dt.datetime | dt.time | Path):
        return str(obj)
    return obj


@dataclass
class AuditContext:
    """What the sealing process knows beyond the store: its command, config and probes."""

    command: str
    config: dict[str, Any] | None = None
    config_file_sha256: str | None = None
    probes: list[str] = field(default_factory=list)

    @classmethod
    def from_config_file(
        cls, command: str, path: Path | None, probes: Iterable[str]
    ) -> AuditContext:
        """The context of a daemon run from ``path`` (None: no config file)."""
        if path is None:
            return cls(command, None, None, list(probes))
        import tomllib

        raw = path.read_bytes()
        return cls(
            command, redact(tomllib.loads(raw.decode("utf-8"))), sha256_hex(raw), list(probes)
        )


def run_span(result: dict[str, Any]) -> tuple[int, int] | None:
    phases = result.get("phases") or []
    if not phases:
        return None
    return min(p["t_begin_ns"] for p in phases), max(p["t_end_ns"] for p in phases)


def result_channels(result: dict[str, Any]) -> list[str]:
    return sorted({c for p in result.get("phases") or [] for c in p.get("channels") or {}})


def result_agents(result: dict[str, Any]) -> set[str]:
    """The agents whose clocks a result rests on: the devices its phases cover and the agents
    its channels come from (``<agent>/...``). ``local`` names no agent and is left out."""
    out = {str(d) for p in result.get("phases") or [] for d in p.get("devices") or ()}
    out |= {c.partition("/")[0] for c in result_channels(result) if "/" in c}
    out.discard(LOCAL_DEVICE)
    return out


def stored_channel_text(meta: dict[str, Any]) -> str:
    """A channel's JSON as ``Store.put_channel`` writes it (so a snapshot can be re-hashed)."""
    return json.dumps(meta, sort_keys=True)


def channel_record(store: Store, cid: str, span: tuple[int, int]) -> dict[str, Any]:
    """A channel's entry in the manifest: identity, calibration, what its samples are."""
    text = store.channel_json(cid)
    meta: dict[str, Any] = json.loads(text) if text is not None else {}
    t, v = store.samples(cid, *span)
    return {
        "metadata": meta or None,
        "metadata_sha256": None if text is None else sha256_hex(text.encode()),
        "source_class": meta.get("source_class"),
        "instrument": meta.get("instrument"),
        "calibration": meta.get("calibration"),
        "samples": int(t.size),
        "t_first_ns": int(t[0]) if t.size else None,
        "t_last_ns": int(t[-1]) if t.size else None,
        "samples_sha256": sha256_hex(samples_bytes(t, v)),
    }


def build_manifest(
    store: Store,
    result: dict[str, Any],
    sealed_ns: int,
    context: AuditContext | None,
    clock_sync: dict[str, Any] | None,
    parameters: dict[str, Any],
) -> dict[str, Any]:
    """The manifest of ``result`` as the store holds it now (module docstring)."""
    run = result["run"]
    span = run_span(result) or (0, 0)
    previous = store.manifests(run)
    carried: int | None = None
    ctx = context
    if ctx is None or (ctx.config is None and not ctx.probes and previous):
        # an offline recompute (powerd report) does not know the daemon's config: keep the
        # last revision's, and say so
        last = previous[-1] if previous else None
        if last is not None:
            carried = int(last["revision"])
            ctx = AuditContext(
                context.command if context else "unknown",
                last.get("config"),
                last.get("config_file_sha256"),
                list(last.get("probes") or []),
            )
            clock_sync = clock_sync or last.get("clock_sync")
    if clock_sync:
        # only the agents the run's phases cover (issue 16: a fleet daemon knows thousands)
        agents = result_agents(result)
        clock_sync = {a: v for a, v in clock_sync.items() if a in agents}
    rows = store.marker_rows(run)
    config = None if ctx is None else ctx.config
    return {
        "v": MANIFEST_VERSION,
        "form": FORM,
        "run": run,
        "sealed_ns": sealed_ns,
        "sealed_utc": dt.datetime.fromtimestamp(sealed_ns / 1e9, dt.UTC).isoformat(),
        "powerd_version": __version__,
        "host": socket.gethostname(),
        "command": None if ctx is None else ctx.command,
        "config": config,
        "config_sha256": None if config is None else sha256_hex(canonical_json(config)),
        "config_file_sha256": None if ctx is None else ctx.config_file_sha256,
        "probes": [] if ctx is None else ctx.probes,
        "carried_from_revision": carried,
        "parameters": parameters,
        "clock_sync": clock_sync or {},
        "span": {"t_begin_ns": span[0], "t_end_ns": span[1]},
        "markers": {"count": len(rows), "sha256": sha256_hex(markers_bytes(rows))},
        "channels": {c: channel_record(store, c, span) for c in result_channels(result)},
        "result_sha256": sha256_hex(canonical_json(result)),
    }


def seal(
    store: Store,
    result: dict[str, Any],
    sealed_ns: int,
    context: AuditContext | None = None,
    clock_sync: dict[str, Any] | None = None,
    idle_power_w: float | None = None,
    primary: Iterable[str] = (),
) -> int:
    """Store ``result`` and seal its manifest as the run's next revision; returns it."""
    store.put_result(result, sealed_ns)
    return seal_manifest(store, result, sealed_ns, context, clock_sync, idle_power_w, primary)


def seal_manifest(
    store: Store,
    result: dict[str, Any],
    sealed_ns: int,
    context: AuditContext | None = None,
    clock_sync: dict[str, Any] | None = None,
    idle_power_w: float | None = None,
    primary: Iterable[str] = (),
) -> int:
    """Seal the manifest of ``result`` (already stored) as the run's next revision."""
    params = {"idle_power_w": idle_power_w, "primary": list(primary)}
    manifest = build_manifest(store, result, sealed_ns, context, clock_sync, params)
    return store.put_manifest(result["run"], sealed_ns, manifest)


def manifest_digest(manifest: dict[str, Any]) -> str:
    """The digest a signed report cites: SHA-256 of the manifest's canonical JSON."""
    return sha256_hex(canonical_json(manifest))


# checking ---------------------------------------------------------------------------------------


def diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON values differ, as ``path: stored X, recomputed Y`` lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.append(f"{sub}: absent in the stored result, recomputed {_short(b[k])}")
            elif k not in b:
                out.append(f"{sub}: stored {_short(a[k])}, absent when recomputed")
            else:
                out += diff(a[k], b[k], sub)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            line
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for line in diff(x, y, f"{path}[{i}]")
        ]
    if a != b or (
        type(a) is not type(b) and not (isinstance(a, int | float) and isinstance(b, int | float))
    ):
        return [f"{path}: stored {_short(a)}, recomputed {_short(b)}"]
    return []


def _short(x: Any) -> str:
    text = json.dumps(x)
    return text if len(text) <= 80 else text[:77] + "..."


def _phase_path(line: str, result: dict[str, Any]) -> str:
    """``phases[2].energy_j`` → ``phases[2] (inference trial 0).energy_j``: which phase."""
    m = re.match(r"^phases\[(\d+)\]", line)
    phases = result.get("phases") or []
    if m and int(m.group(1)) < len(phases):
        p = phases[int(m.group(1))]
        return line.replace(
            m.group(0), f"{m.group(0)} ({p.get('phase')} trial {p.get('trial')})", 1
        )
    return line


@dataclass
class AuditReport:
    run: str
    revision: int | None
    differences: list[str]
    checked: list[str]
    manifest: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)  # changes that are expected, not findings

    @property
    def ok(self) -> bool:
        return self.manifest is not None and not self.differences


def audit(store: Store, run: str, revision: int | None = None) -> AuditReport:
    """Re-hash the store and recompute every figure; say what differs from the manifest and
    the stored result (module docstring)."""
    from powerd.runs import compute_run

    manifests = store.manifests(run)
    if not manifests:
        return AuditReport(
            run,
            None,
            [
                f"run {run!r} has no manifest: it was never sealed (a store from before the "
                f"audit trail, or no result yet); `powerd report {run}` seals it as it is now"
            ],
            [],
            None,
        )
    if revision is None:
        m = manifests[-1]
    else:
        found = [x for x in manifests if x["revision"] == revision]
        if not found:
            known = ", ".join(str(x["revision"]) for x in manifests)
            return AuditReport(
                run, revision, [f"no revision {revision}; revisions: {known}"], [], None
            )
        m = found[0]
    latest = m is manifests[-1]
    out: list[str] = []
    checked: list[str] = []
    notes: list[str] = []
    rows = store.marker_rows(run)
    digest = sha256_hex(markers_bytes(rows))
    checked.append(f"markers: {len(rows)} rows")
    if digest != m["markers"]["sha256"]:
        out.append(
            f"markers: {len(rows)} stored rows hash to {digest[:16]}…, sealed "
            f"{m['markers']['count']} rows as {m['markers']['sha256'][:16]}… (a marker was "
            "changed, added or removed)"
        )
    span = (m["span"]["t_begin_ns"], m["span"]["t_end_ns"])
    sealed_channels: dict[str, Channel] = {}
    for cid, sealed in sorted(m["channels"].items()):
        now = channel_record(store, cid, span)
        checked.append(f"{cid}: {now['samples']} samples")
        snapshot = sealed.get("metadata")
        if snapshot is not None:
            if sha256_hex(stored_channel_text(snapshot).encode()) != sealed["metadata_sha256"]:
                out.append(f"{cid}: the manifest's channel metadata does not match its digest")
            sealed_channels[cid] = Channel.from_json(snapshot)
        if now["metadata_sha256"] != sealed["metadata_sha256"]:
            changed = sorted(
                k
                for k in {*(snapshot or {}), *(now["metadata"] or {})}
                if (snapshot or {}).get(k) != (now["metadata"] or {}).get(k)
            )
            if changed == ["stamp_uncertainty_s"]:
                # the daemon re-measures an agent's clock offset and updates this for later
                # data; the figures are recomputed with the sealed value
                notes.append(f"{cid}: stamp_uncertainty_s changed since the seal (live agent)")
            else:
                out.append(
                    f"{cid}: channel metadata in the store differs from the sealed: "
                    f"{', '.join(changed) or 'its bytes'}"
                )
        if now["samples_sha256"] != sealed["samples_sha256"]:
            n0, n1 = sealed["samples"], now["samples"]
            why = (
                f"{n1 - n0} samples more than sealed (data arrived after the seal?)"
                if n1 > n0
                else f"{n0 - n1} samples fewer than sealed (pruned or deleted?)"
                if n1 < n0
                else f"same {n1} samples, different values or times"
            )
            out.append(f"{cid}: raw samples differ from the sealed: {why}")
    if latest:
        stored_text = store.result_json(run)
        stored = None if stored_text is None else json.loads(stored_text)
        if stored is None:
            out.append("result: no stored result")
        else:
            if sha256_hex(canonical_json(stored)) != m["result_sha256"]:
                out.append("result: the stored result is not the one sealed (edited after sealing)")
            params = m.get("parameters") or {}
            try:
                again = compute_run(
                    store,
                    run,
                    params.get("idle_power_w"),
                    tuple(params.get("primary") or ()),
                    sealed_channels,
                )
            except Exception as err:  # a store too damaged to recompute is a finding, not a crash
                out.append(f"result: cannot recompute: {type(err).__name__}: {err}")
            else:
                checked.append(f"result: {len(again.get('phases') or [])} phases recomputed")
                for line in diff(stored, again):
                    out.append("result " + _phase_path(line, stored))
    return AuditReport(run, int(m["revision"]), out, checked, m, notes)
