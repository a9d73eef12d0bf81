"""What the redfish probe polls: one reader per chassis resource, then one place deciding roles.

At open every chassis under ``/redfish/v1/Chassis`` is walked through ``RESOURCES`` (legacy
``Power``, ``EnvironmentMetrics``, ``Sensors``): each reader GETs its resource and returns the
readings it found, each with what it measures (a ``Role``, see ``parse.sensor_role``). Then
``assign`` gives every reading its source class and ``measures`` in one pass:

- ``total`` (PowerControl[0], EnvironmentMetrics, a sensor that measures the whole chassis):
  ``telemetry``, sharing ``measures`` with the chassis' other total views (alternatives, never
  summed; an energy counter is preferred); ``estimate`` if it is a counter too coarse for a
  phase (a step over 1 Wh);
- ``supply`` (a PSU/rectifier input): ``telemetry`` with its own ``measures`` (their sum is the
  input) only when the chassis has no total, else ``estimate``;
- ``unknown`` (a sensor that says nothing about what it measures): taken for the total only when
  the chassis has neither a total nor supplies, else ``estimate``;
- ``part``: ``estimate`` (reported, never added);
- everything in a chassis that sits inside another chassis with a total is ``estimate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from powerd.channel import Accuracy, Channel, SourceClass
from powerd.errors import ProbeUnavailable
from powerd.probes.redfish.parse import (
    Role,
    Value,
    contained_by,
    environment,
    link,
    members,
    power_controls,
    sensor,
    sensor_role,
)
from powerd.probes.redfish.spec import RedfishSpec, clean_id
from powerd.probes.redfish.transport import Client, RedfishError

MAX_SENSORS = 400
ASSUMED_FRAC = 0.05  # Redfish documents no accuracy for PowerControl/EnvironmentMetrics
COARSE_STEP_J = 3600.0  # an energy step above 1 Wh is too coarse to be a phase's figure
BMC_REFRESH_S = 1.0


@dataclass
class Target:
    """One reading the probe polls: which URI, how to pick the value out, and its channel."""

    uri: str
    pick: str  # "control:<i>", "env-power", "env-energy", "sensor"
    channel: Channel
    first: tuple[int, Value] | None = None  # the reading seen at discovery (mono ns, value)


@dataclass
class Found:
    """A reading found at open, with what it measures (the why is in its description)."""

    target: Target
    role: Role


@dataclass
class Walk:
    """One chassis being walked: where notes go, and sensors already read elsewhere."""

    client: Client
    spec: RedfishSpec
    cid: str
    notes: list[str]
    skip_uris: set[str] = field(default_factory=set)

    def note(self, text: str) -> None:
        self.notes.append(f"chassis {self.cid}: {text}")

    def target(
        self, uri: str, pick: str, what: str, kind: str, value: Value, desc: str, t0: int,
        frac: float = ASSUMED_FRAC, period_s: float | None = None,
    ) -> Target:  # fmt: skip
        spec = self.spec
        period = max(period_s or 0.0, spec.interval_s)
        tls = " (TLS not verified)" if spec.insecure else ""
        channel = Channel(
            id=f"redfish:{spec.name}:{clean_id(self.cid)}:{clean_id(what)}",
            kind="energy" if kind == "energy" else "power",
            source_class="telemetry",
            nominal_period_s=period,
            accuracy=Accuracy(
                reading_frac=frac, resolution_j=value.step_si if kind == "energy" else 0.0
            ),
            measures="",  # set by ``assign``
            description=f"chassis {self.cid} {desc}; BMC {spec.host}{tls}",
            stamp_uncertainty_s=max(BMC_REFRESH_S, period_s or 0.0),
        )
        return Target(uri, pick, channel, (t0, value))


def _from_power(w: Walk, uri: str, doc: object, t0: int) -> list[Found]:
    """Legacy ``Power``: PowerControl[0] is the chassis total, PowerControl[1..] are parts."""
    out: list[Found] = []
    controls = power_controls(doc)
    if not controls:
        w.note("Power has no PowerControl readings")
    for c in controls:
        if c.value.si is None:
            w.note(f"Power PowerControl[{c.index}]: {c.value.reason}")
            continue
        what = "power" if c.index == 0 else f"power{c.index}"
        desc = f"PowerControl[{c.index}] '{c.name}' PowerConsumedWatts (W)"
        tgt = w.target(uri, f"control:{c.index}", what, "power", c.value, desc, t0)
        out.append(Found(tgt, "total" if c.index == 0 else "part"))
    return out


def _from_environment(w: Walk, uri: str, doc: object, t0: int) -> list[Found]:
    """``EnvironmentMetrics``: the chassis' own power and energy (totals)."""
    env = environment(doc)
    out: list[Found] = []
    fields = (
        ("env-power", "power", env.power, "PowerWatts.Reading (W)", env.power_source_uri),
        ("env-energy", "energy", env.energy, env.energy_field, env.energy_source_uri),
    )
    for what, kind, value, name, source_uri in fields:
        if value is None:
            continue
        if value.si is None:
            w.note(f"EnvironmentMetrics {value.reason}")
            continue
        desc = f"EnvironmentMetrics {name}"
        if kind == "energy":
            desc += f" (cumulative energy, step {value.step_si:g} J)"
        out.append(Found(w.target(uri, what, what, kind, value, desc, t0), "total"))
        if source_uri:
            w.skip_uris.add(source_uri.rstrip("/"))
    return out


def _from_sensors(w: Walk, uri: str, doc: object, t0: int) -> list[Found]:
    """``Sensors``: every Power/Energy* sensor, its role from what it declares it measures."""
    out: list[Found] = []
    for s_uri in members(doc)[:MAX_SENSORS]:
        if s_uri.rstrip("/") in w.skip_uris:
            continue
        t_ns = time.monotonic_ns()  # each sensor is its own GET
        try:
            s = sensor(w.client.get(s_uri))
        except RedfishError as err:
            w.note(str(err))
            continue
        if s.kind is None:
            continue
        if s.value.si is None:
            w.note(f"sensor {s.sensor_id}: {s.value.reason}")
            continue
        role, why = sensor_role(s)
        ctx = s.physical_context or "no PhysicalContext"
        unit = "W" if s.kind == "power" else f"{s.reading_type}, step {s.value.step_si:g} J"
        desc = f"sensor {s.sensor_id} '{s.name}' ({ctx}; {unit}; {why})"
        tgt = w.target(
            s_uri, "sensor", f"sensor-{s.sensor_id}", s.kind, s.value, desc, t_ns,
            s.accuracy_frac or ASSUMED_FRAC, s.sensing_interval_s,
        )  # fmt: skip
        out.append(Found(tgt, role))
    return out


Reader = Callable[[Walk, str, object, int], list[Found]]
RESOURCES: tuple[tuple[str, Reader], ...] = (
    ("Power", _from_power),
    ("EnvironmentMetrics", _from_environment),  # before Sensors: it names sensors to skip
    ("Sensors", _from_sensors),
)


@dataclass
class Chassis:
    cid: str
    uri: str
    container: str | None  # Links.ContainedBy
    found: list[Found]

    def has(self, role: Role) -> bool:
        return any(f.role == role for f in self.found)


def _chassis_of(uri: str, doc: object) -> Chassis:
    cid = str(doc.get("Id") if isinstance(doc, dict) else "") or uri.rstrip("/").rsplit("/")[-1]
    container = contained_by(doc)
    return Chassis(cid, uri.rstrip("/"), container.rstrip("/") if container else None, [])


def _walk(w: Walk, doc: object) -> list[Found]:
    """Every reading of one chassis, one reader per resource it links."""
    out: list[Found] = []
    for key, reader in RESOURCES:
        uri = link(doc, key)
        if uri is None or (key == "Sensors" and not w.spec.sensors):
            continue
        t0 = time.monotonic_ns()
        try:
            res = w.client.get(uri)
        except RedfishError as err:
            w.note(str(err))
            continue
        out += reader(w, uri, res, t0)
    return out


def discover(client: Client, spec: RedfishSpec) -> tuple[list[Target], list[str]]:
    """The readable targets under ``/redfish/v1/Chassis`` and notes on what was not."""
    notes: list[str] = []
    found: list[Chassis] = []
    for uri in members(client.get("/redfish/v1/Chassis")):
        doc = client.get(uri)
        ch = _chassis_of(uri, doc)
        if spec.chassis and ch.cid not in spec.chassis:
            continue
        ch.found = _walk(Walk(client, spec, ch.cid, notes), doc)
        found.append(ch)
    if spec.chassis:
        missing = set(spec.chassis) - {c.cid for c in found}
        if missing:
            raise ProbeUnavailable(f"probe 'redfish': no chassis {', '.join(sorted(missing))}")
    return assign(spec, found), notes


WHOLE_ORDER: tuple[Role, ...] = ("total", "supply", "unknown")


def _whole(c: Chassis) -> Role | None:
    """Which role gives this chassis' whole figure: its totals, else its supplies, else the
    sensors that say nothing (taken for the total only then), else none."""
    return next((role for role in WHOLE_ORDER if c.has(role)), None)


def assign(spec: RedfishSpec, chassis: list[Chassis]) -> list[Target]:
    """Source class and ``measures`` of every reading (the rules in the module docstring)."""
    with_totals = {c.uri for c in chassis if c.has("total")}
    figures = [c for c in chassis if _whole(c) and c.container not in with_totals]
    targets: list[Target] = []
    for c in chassis:
        contained = c.container in with_totals
        whole = _whole(c)
        mine = spec.measures if (spec.measures and c in figures[:1]) else None
        base = mine or (f"bmc:{spec.host}" if figures == [c] else f"bmc:{spec.host}:{c.cid}")
        for f in c.found:
            ch = f.target.channel
            what = ch.id.rsplit(":", 1)[-1]
            is_whole = f.role == whole and whole in ("total", "unknown")
            klass: SourceClass = "telemetry" if f.role == whole else "estimate"
            note = ""
            if f.role == "unknown":
                note = "; taken for the chassis total: nothing else measures it" if is_whole else ""
            coarse = ch.kind == "energy" and ch.accuracy.resolution_j > COARSE_STEP_J
            if coarse and klass == "telemetry":
                klass = "estimate"
                note += (
                    f"; step {ch.accuracy.resolution_j:g} J is too coarse to be a phase's figure"
                    " (estimate)"
                )
            if contained:
                klass = "estimate"
                note += "; a chassis inside another one (estimate)"
            f.target.channel = replace(
                ch,
                measures=base if is_whole else f"{base}:{what}",
                source_class=klass,
                description=ch.description + note,
            )
            targets.append(f.target)
    return targets
