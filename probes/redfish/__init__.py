"""The ``redfish`` probe: chassis power and energy from a BMC's Redfish service.

At open the probe walks ``/redfish/v1/Chassis`` and, per chassis, the three places a BMC may put
its power (see ``parse``): the legacy ``Power`` resource, ``EnvironmentMetrics`` and the
``Sensors`` collection (only sensors of ``ReadingType`` Power/Energy*). Every reading that has a
number at open becomes a channel; then a poller thread GETs those resources every ``interval``
(the sampler is never blocked by a slow BMC) and the probe's ``read`` drains the readings.

Channels, ``redfish:<name>:<chassis>:<what>`` with ``what`` one of ``power`` (PowerControl[0]),
``power<i>``, ``env-power``, ``env-energy``, ``sensor-<SensorId>``:

- every whole-chassis view (PowerControl[0], EnvironmentMetrics, a total Sensor) of one chassis
  shares ``measures`` (``bmc:<host>``, or ``bmc:<host>:<chassis>`` when several chassis have
  readings): they are alternatives, never summed, and an energy channel is preferred;
- parts (a PSU's or CPU's sensor, PowerControl[1..], a chassis inside another one) measure
  themselves and are ``estimate`` (reported, never added to the total); PSU input sensors are
  ``telemetry`` only when their chassis has no total at all (their sum is then the input);
- an energy counter sent with a step over 1 Wh (e.g. whole kWh) is ``estimate`` too: a 3.6 MJ
  step says nothing over a phase of minutes. Its step is the channel's ``resolution_j``.

A null reading, an HTTP error, a timeout or a body that is not JSON is a problem for that
channel, never 0 W; the others are still read.

Spec (after ``redfish:``): ``host=BMC`` (https) or ``url=SCHEME://HOST[:PORT]``; ``user=NAME``
and ``password_file=PATH`` (basic auth); ``ca=PEM`` or ``insecure=1``; ``chassis=ID[+ID...]``;
``interval=SECONDS`` (default 2, ≥ 0.5); ``timeout=SECONDS`` per request (default 5);
``sensors=0`` skips the Sensors collection; ``name=ID`` (default the host); ``measures=THING``
(the whole-server figure's ``measures``; give the ipmi probe of the same server the same value).
"""

from __future__ import annotations

import os
import re
import time
import urllib.parse
from dataclasses import dataclass, field, replace

import numpy as np

from powerd.block import Block
from powerd.channel import Accuracy, Channel, SourceClass
from powerd.errors import ProbeUnavailable, SpecError
from probes.base import Availability, parse_kv
from probes.ipmi.poller import Poller
from probes.redfish.parse import (
    SensorReading,
    Value,
    contained_by,
    environment,
    is_total_sensor,
    link,
    members,
    power_controls,
    sensor,
)
from probes.redfish.transport import Client, RedfishError

DEFAULT_INTERVAL_S = 2.0
MIN_INTERVAL_S = 0.5
DEFAULT_TIMEOUT_S = 5.0
MAX_SENSORS = 400
ASSUMED_FRAC = 0.05  # Redfish documents no accuracy for PowerControl/EnvironmentMetrics
COARSE_STEP_J = 3600.0  # an energy step above 1 Wh is too coarse to be a phase's figure
BMC_REFRESH_S = 1.0
KEYS = {
    "host", "url", "user", "password_file", "ca", "insecure", "chassis", "interval",
    "timeout", "sensors", "name", "measures",
}  # fmt: skip


def clean_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


@dataclass
class Target:
    """One reading the probe polls: which URI, how to pick the value out, and its channel."""

    uri: str
    pick: str  # "control:<i>", "env-power", "env-energy", "sensor"
    channel: Channel
    first: tuple[int, Value] | None = None  # the reading seen at discovery (mono ns, value)


@dataclass
class _Chassis:
    cid: str
    contained: bool
    targets: list[Target] = field(default_factory=list)
    parts: list[tuple[Target, SensorReading | None]] = field(default_factory=list)
    has_total: bool = False


def pick(pick_key: str, doc: object) -> Value:
    """The value ``pick_key`` names in a fetched resource."""
    if pick_key.startswith("control:"):
        i = int(pick_key.partition(":")[2])
        controls = {c.index: c.value for c in power_controls(doc)}
        return controls.get(i, Value(None, f"PowerControl[{i}] is gone"))
    if pick_key == "env-power":
        env = environment(doc)
        return env.power or Value(None, "PowerWatts is gone")
    if pick_key == "env-energy":
        env = environment(doc)
        return env.energy or Value(None, "energy field is gone")
    return sensor(doc).value


class RedfishProbe:
    """Polls the discovered targets on a thread; ``read`` drains one Block per channel."""

    def __init__(self, client: Client, targets: list[Target], interval_s: float) -> None:
        self.client = client
        self.targets = targets
        self.poll_interval_s = min(1.0, interval_s)
        self._last_t: dict[str, int] = {}
        self.poller: Poller[list[tuple[int, str, float]]] = Poller(
            "redfish", self._fetch, interval_s
        )
        self._first = [
            (t.first[0], t.channel.id, t.first[1].si)
            for t in targets
            if t.first is not None and t.first[1].si is not None
        ]
        self.poller.start()

    def _fetch(self) -> list[tuple[int, str, float]]:
        out: list[tuple[int, str, float]] = []
        docs: dict[str, tuple[int, object] | RedfishError] = {}
        for t in self.targets:
            if t.uri not in docs:
                t0 = time.monotonic_ns()
                try:
                    doc = self.client.get(t.uri)
                except RedfishError as err:
                    docs[t.uri] = err
                else:
                    docs[t.uri] = ((t0 + time.monotonic_ns()) // 2, doc)
            got = docs[t.uri]
            if isinstance(got, RedfishError):
                self.poller.report(f"{t.channel.id}: {got}")
                continue
            value = pick(t.pick, got[1])
            if value.si is None:
                self.poller.report(f"{t.channel.id}: {value.reason}")
                continue
            out.append((got[0], t.channel.id, value.si))
        return out

    def channels(self) -> list[Channel]:
        return [t.channel for t in self.targets]

    def read(self, now_utc_ns: int) -> list[Block]:
        offset = now_utc_ns - time.monotonic_ns()
        rows = self._first + [r for p in self.poller.drain() for r in p.value]
        self._first = []
        t: dict[str, list[int]] = {}
        v: dict[str, list[float]] = {}
        for mono_ns, cid, value in rows:
            t_ns = mono_ns + offset
            if t_ns <= self._last_t.get(cid, -1):
                continue
            self._last_t[cid] = t_ns
            t.setdefault(cid, []).append(t_ns)
            v.setdefault(cid, []).append(value)
        return [
            Block(cid, np.array(t[cid], np.int64), np.array(v[cid], np.float64))
            for cid in sorted(t)
        ]

    def problems(self) -> list[str]:
        return self.poller.problems()

    def close(self) -> None:
        self.poller.stop()


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


def _seconds(kv: dict[str, str], key: str, default: float, lo: float, hi: float) -> float:
    if key not in kv:
        return default
    try:
        value = float(kv[key])
    except ValueError:
        raise SpecError(f"redfish: {key}={kv[key]!r} is not a number of seconds") from None
    if not lo <= value <= hi:
        raise SpecError(f"redfish: {key} must be within [{lo:g}, {hi:g}] seconds")
    return value


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
        interval_s=_seconds(kv, "interval", DEFAULT_INTERVAL_S, MIN_INTERVAL_S, 3600.0),
        timeout_s=_seconds(kv, "timeout", DEFAULT_TIMEOUT_S, 0.2, 120.0),
        sensors=kv.get("sensors", "1") == "1",
        name=clean_id(kv.get("name") or parts.hostname),
        measures=kv.get("measures"),
    )


def _read_password(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().rstrip("\r\n")
    except OSError as err:
        raise ProbeUnavailable(
            f"probe 'redfish': cannot read password_file {path!r}: {err.strerror}"
        ) from None


def _channel(
    spec: RedfishSpec,
    cid: str,
    what: str,
    kind: str,
    value: Value,
    measures: str,
    source_class: SourceClass,
    description: str,
    frac: float = ASSUMED_FRAC,
    period_s: float | None = None,
) -> Channel:
    step = value.step_si
    period = max(period_s or 0.0, spec.interval_s)
    tls = " (TLS not verified)" if spec.insecure else ""
    return Channel(
        id=f"redfish:{spec.name}:{clean_id(cid)}:{clean_id(what)}",
        kind="energy" if kind == "energy" else "power",
        source_class=source_class,
        nominal_period_s=period,
        accuracy=Accuracy(reading_frac=frac, resolution_j=step if kind == "energy" else 0.0),
        measures=measures,
        description=f"{description}; BMC {spec.host}{tls}",
        stamp_uncertainty_s=max(BMC_REFRESH_S, period_s or 0.0),
    )


def discover(client: Client, spec: RedfishSpec) -> tuple[list[Target], list[str]]:
    """The readable targets under ``/redfish/v1/Chassis`` and notes on what was not."""
    notes: list[str] = []
    found: list[_Chassis] = []
    for uri in members(client.get("/redfish/v1/Chassis")):
        doc = client.get(uri)
        cid = str(doc.get("Id") or uri.rstrip("/").rsplit("/", 1)[-1])
        if spec.chassis and cid not in spec.chassis:
            continue
        ch = _Chassis(cid, contained_by(doc) is not None)
        found.append(ch)
        _discover_chassis(client, spec, doc, ch, notes)
    if spec.chassis:
        missing = set(spec.chassis) - {c.cid for c in found}
        if missing:
            raise ProbeUnavailable(f"probe 'redfish': no chassis {', '.join(sorted(missing))}")
    with_readings = [c for c in found if c.targets or c.parts]
    top = [c for c in with_readings if not c.contained]
    targets: list[Target] = []
    for c in with_readings:
        whole = spec.measures if (spec.measures and c in top[:1]) else None
        base = whole or (f"bmc:{spec.host}" if len(top) == 1 and c in top else None)
        base = base or f"bmc:{spec.host}:{c.cid}"
        klass: SourceClass = "estimate" if c.contained else "telemetry"
        for t in c.targets:
            coarse = t.channel.kind == "energy" and t.channel.accuracy.resolution_j > COARSE_STEP_J
            note = ""
            if coarse:
                step = t.channel.accuracy.resolution_j
                note += f"; step {step:g} J is too coarse to be a phase's figure (estimate)"
            if c.contained:
                note += "; a chassis inside another one (estimate)"
            t.channel = replace(
                t.channel,
                measures=base,
                source_class="estimate" if coarse else klass,
                description=t.channel.description + note,
            )
            targets.append(t)
        for t, s in c.parts:
            psu = s is not None and s.physical_context == "PowerSupply"
            part_class: SourceClass = "telemetry" if psu and not c.has_total else "estimate"
            if c.contained:
                part_class = "estimate"
            t.channel = replace(
                t.channel,
                source_class=part_class,
                measures=f"{base}:{t.channel.id.rsplit(':', 1)[-1]}",
            )
            targets.append(t)
    return targets, notes


def _discover_chassis(
    client: Client, spec: RedfishSpec, doc: object, ch: _Chassis, notes: list[str]
) -> None:
    where = f"chassis {ch.cid}"
    skip_uris: set[str] = set()
    power_uri = link(doc, "Power")
    if power_uri:
        t0 = time.monotonic_ns()
        try:
            pdoc = client.get(power_uri)
        except RedfishError as err:
            notes.append(f"{where}: {err}")
        else:
            controls = power_controls(pdoc)
            for c in controls:
                if c.value.si is None:
                    notes.append(f"{where}: Power PowerControl[{c.index}]: {c.value.reason}")
                    continue
                what = "power" if c.index == 0 else f"power{c.index}"
                desc = f"{where} PowerControl[{c.index}] '{c.name}' PowerConsumedWatts (W)"
                tgt = Target(
                    power_uri,
                    f"control:{c.index}",
                    _channel(spec, ch.cid, what, "power", c.value, "", "telemetry", desc),
                    (t0, c.value),
                )
                if c.index == 0:
                    ch.targets.append(tgt)
                    ch.has_total = True
                else:
                    ch.parts.append((tgt, None))
            if not controls:
                notes.append(f"{where}: Power has no PowerControl readings")
    env_uri = link(doc, "EnvironmentMetrics")
    if env_uri:
        t0 = time.monotonic_ns()
        try:
            env = environment(client.get(env_uri))
        except RedfishError as err:
            notes.append(f"{where}: {err}")
        else:
            if env.power is not None and env.power.si is not None:
                desc = f"{where} EnvironmentMetrics PowerWatts.Reading (W)"
                ch.targets.append(
                    Target(
                        env_uri,
                        "env-power",
                        _channel(
                            spec, ch.cid, "env-power", "power", env.power, "", "telemetry", desc
                        ),
                        (t0, env.power),
                    )
                )
                ch.has_total = True
                if env.power_source_uri:
                    skip_uris.add(env.power_source_uri.rstrip("/"))
            elif env.power is not None:
                notes.append(f"{where}: EnvironmentMetrics {env.power.reason}")
            if env.energy is not None and env.energy.si is not None:
                desc = (
                    f"{where} EnvironmentMetrics {env.energy_field} (cumulative energy, "
                    f"step {env.energy.step_si:g} J)"
                )
                ch.targets.append(
                    Target(
                        env_uri,
                        "env-energy",
                        _channel(
                            spec, ch.cid, "env-energy", "energy", env.energy, "", "telemetry", desc
                        ),
                        (t0, env.energy),
                    )
                )
                ch.has_total = True
                if env.energy_source_uri:
                    skip_uris.add(env.energy_source_uri.rstrip("/"))
            elif env.energy is not None:
                notes.append(f"{where}: EnvironmentMetrics {env.energy.reason}")
    sensors_uri = link(doc, "Sensors") if spec.sensors else None
    if sensors_uri:
        try:
            uris = members(client.get(sensors_uri))
        except RedfishError as err:
            notes.append(f"{where}: {err}")
            uris = []
        for uri in uris[:MAX_SENSORS]:
            if uri.rstrip("/") in skip_uris:
                continue
            t0 = time.monotonic_ns()
            try:
                s = sensor(client.get(uri))
            except RedfishError as err:
                notes.append(f"{where}: {err}")
                continue
            if s.kind is None:
                continue
            if s.value.si is None:
                notes.append(f"{where}: sensor {s.sensor_id}: {s.value.reason}")
                continue
            total = is_total_sensor(s)
            ctx = s.physical_context or "no PhysicalContext"
            unit = "W" if s.kind == "power" else f"{s.reading_type}, step {s.value.step_si:g} J"
            desc = f"{where} sensor {s.sensor_id} '{s.name}' ({ctx}; {unit})"
            tgt = Target(
                uri,
                "sensor",
                _channel(
                    spec,
                    ch.cid,
                    f"sensor-{s.sensor_id}",
                    s.kind,
                    s.value,
                    "",
                    "telemetry",
                    desc,
                    s.accuracy_frac or ASSUMED_FRAC,
                    s.sensing_interval_s,
                ),
                (t0, s.value),
            )
            if total:
                ch.targets.append(tgt)
                ch.has_total = True
            else:
                ch.parts.append((tgt, s))


class RedfishFamily:
    name = "redfish"
    summary = "Chassis power and energy from a BMC's Redfish service"

    def available(self) -> Availability:
        return Availability(
            True, "needs a BMC address: redfish:host=BMC,user=NAME,password_file=PATH"
        )

    def open(self, args: str) -> RedfishProbe:
        spec = parse_spec(args)
        password = _read_password(spec.password_file) if spec.password_file else None
        client = Client(spec.base_url, spec.user, password, spec.ca, spec.insecure, spec.timeout_s)
        try:
            targets, notes = discover(client, spec)
        except RedfishError as err:
            raise ProbeUnavailable(f"probe 'redfish' ({spec.base_url}): {err}") from None
        except (AttributeError, TypeError) as err:
            raise ProbeUnavailable(
                f"probe 'redfish' ({spec.base_url}): not a Redfish service ({err})"
            ) from None
        if not targets:
            seen = "; ".join(notes) or "no chassis with Power, EnvironmentMetrics or Sensors"
            raise ProbeUnavailable(
                f"probe 'redfish' ({spec.base_url}): no standard power or energy reading "
                f"(OEM-only BMC?): {seen}"
            )
        probe = RedfishProbe(client, targets, spec.interval_s)
        for note in notes:
            probe.poller.report(f"redfish:{spec.name}: {note}")
        return probe


family = RedfishFamily()
