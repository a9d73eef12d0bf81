"""The ``redfish`` probe: chassis power and energy from a BMC's Redfish service.

At open the probe walks ``/redfish/v1/Chassis`` and, per chassis, the three places a BMC may put
its power (see ``parse``): the legacy ``Power`` resource, ``EnvironmentMetrics`` and the
``Sensors`` collection (only sensors of ``ReadingType`` Power/Energy*). Every reading that has a
number at open becomes a channel; then a poller thread GETs those resources every ``interval``
(the sampler is never blocked by a slow BMC) and the probe's ``read`` drains the readings.

Channels, ``redfish:<name>:<chassis>:<what>`` with ``what`` one of ``power`` (PowerControl[0]),
``power<i>``, ``env-power``, ``env-energy``, ``sensor-<SensorId>``:

- what a reading measures decides its role (``discover``): the chassis' own PowerControl[0] and
  EnvironmentMetrics, and sensors that declare they measure the whole chassis (``PhysicalContext``
  Chassis; a board or regulator *input* named "Sys Power", "Node", ...) are totals; they share
  ``measures`` (``bmc:<host>``, or ``bmc:<host>:<chassis>`` when several chassis have a figure):
  alternatives, never summed, an energy channel preferred. A sensor is never a total merely for
  lacking a ``PhysicalContext`` (HPE Cray's CPU aggregates lack one);
- parts (a CPU's, accelerator's or regulator output's sensor, PowerControl[1..], a chassis inside
  another chassis that has a total) measure themselves and are ``estimate`` (reported, never
  added); PSU/rectifier input sensors are ``telemetry`` only when their chassis has no total
  (their sum is then the input); a sensor that says nothing about what it measures is the total
  only when nothing else measures its chassis;
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

import time

import numpy as np

from powerd.block import Block
from powerd.channel import Channel
from powerd.errors import ProbeUnavailable
from powerd.probes.base import Availability
from powerd.probes.ipmi.poller import Poller
from powerd.probes.redfish.discover import Target, discover
from powerd.probes.redfish.parse import Value, environment, power_controls, sensor
from powerd.probes.redfish.spec import RedfishSpec, parse_spec
from powerd.probes.redfish.transport import Client, RedfishError

__all__ = ["RedfishFamily", "RedfishProbe", "RedfishSpec", "Target", "family", "parse_spec"]


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


def _read_password(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().rstrip("\r\n")
    except OSError as err:
        raise ProbeUnavailable(
            f"probe 'redfish': cannot read password_file {path!r}: {err.strerror}"
        ) from None


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
