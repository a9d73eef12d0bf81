"""The ``furiosa`` probe: FuriosaAI NPU (Warboy, RNGD) board power, one channel per device.

Source, in order (``source=auto``):

1. the Python binding, ``furiosa_smi`` (current) or ``furiosa_smi_py`` (older, needs
   ``init()``; see ``binding``): ``power_consumption()`` per device, read inline at each poll
   (a sysfs read in the library, well under a millisecond);
2. the ``furiosa-smi`` CLI: ``furiosa-smi info --format json`` (RNGD), or ``info --output
   json`` if the first form is refused (older Warboy tools, per the notes; not verified), run
   once per poll on a thread of its own (``powerd.probes.ipmi.poller``), bounded by ``timeout``.

Channels are ``furiosa:<dev_name>`` (``furiosa:npu0``), power in W, ``measures`` the device's
UUID (``npu:<uuid>``), so the binding and the CLI never add up one card twice. A device whose
reading fails or is not a number gives a problem for that device, never 0 W; the others are
still read. The binding is imported only by ``available``/``open``.

Spec (after ``furiosa:``): device names (``npu0``) or UUIDs (none: all), ``source=auto|
binding|cli``, ``module=furiosa_smi|furiosa_smi_py``, ``interval=SECONDS`` (default 0.5 for the
binding, 1 for the CLI), ``timeout=SECONDS`` (CLI, default 5), ``path=FURIOSA_SMI``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from powerd.block import Block
from powerd.channel import Accuracy, Channel
from powerd.errors import ProbeUnavailable, SpecError
from powerd.probes.base import Availability
from powerd.probes.cliexec import ToolError, find_tool, run_tool
from powerd.probes.furiosa.binding import (
    NAMES,
    BindingError,
    BindingMissing,
    NpuDevice,
    open_binding,
    read_power,
)
from powerd.probes.furiosa.parse import CliDevice, binding_power, parse_info_json
from powerd.probes.ipmi.poller import Poller

BINDING_INTERVAL_S = 0.5
CLI_INTERVAL_S = 1.0
DEFAULT_TIMEOUT_S = 5.0
ASSUMED_FRAC = 0.05  # FuriosaAI publishes no accuracy for the board power reading
CLI_PATHS = ("/usr/bin/furiosa-smi", "/usr/local/bin/furiosa-smi")
CLI_FORMS = (("info", "--format", "json"), ("info", "--output", "json"))
KEYS = {"source", "module", "interval", "timeout", "path"}


@dataclass(frozen=True)
class FuriosaSpec:
    devices: tuple[str, ...] = ()
    source: str = "auto"
    module: str | None = None
    interval_s: float | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    path: str | None = None


def parse_spec(args: str) -> FuriosaSpec:
    devices: list[str] = []
    kv: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in args.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            devices.append(item)
        elif key not in KEYS or not value:
            raise SpecError(
                f"furiosa: bad item {item!r}; use device names (npu0) or UUIDs and "
                f"{', '.join(sorted(KEYS))}"
            )
        else:
            kv[key] = value
    source = kv.get("source", "auto")
    if source not in ("auto", "binding", "cli"):
        raise SpecError("furiosa: source must be auto, binding or cli")
    module = kv.get("module")
    if module is not None and module not in NAMES:
        raise SpecError(f"furiosa: module must be one of {', '.join(NAMES)}")
    secs: dict[str, float] = {}
    for key in ("interval", "timeout"):
        if key in kv:
            try:
                secs[key] = float(kv[key])
            except ValueError:
                raise SpecError(f"furiosa: {key}={kv[key]!r} is not seconds") from None
            if not 0.05 <= secs[key] <= 600:
                raise SpecError(f"furiosa: {key} must be within [0.05, 600] seconds")
    return FuriosaSpec(
        tuple(devices),
        source,
        module,
        secs.get("interval"),
        secs.get("timeout", DEFAULT_TIMEOUT_S),
        kv.get("path"),
    )


def _select(names: list[tuple[str, str]], wanted: tuple[str, ...]) -> set[str]:
    """Names of the selected devices from (name, uuid) pairs; SpecError for unknown ones."""
    if not wanted:
        return {n for n, _ in names}
    out: set[str] = set()
    for w in wanted:
        hit = [n for n, u in names if w in (n, u)]
        if not hit:
            have = ", ".join(f"{n} ({u})" for n, u in names) or "none"
            raise SpecError(f"furiosa: no device {w!r}; have {have}")
        out.update(hit)
    return out


def _channel(name: str, uuid: str, arch: str, how: str, period_s: float, step_w: float) -> Channel:
    return Channel(
        id=f"furiosa:{name}",
        kind="power",
        source_class="telemetry",
        nominal_period_s=period_s,
        accuracy=Accuracy(reading_frac=ASSUMED_FRAC, offset_w=step_w / 2),
        measures=f"npu:{uuid}" if uuid else f"npu:{name}",
        description=f"FuriosaAI {arch} {name} ({uuid or 'no uuid'}): board power, {how}",
        stamp_uncertainty_s=period_s,
    )


class BindingProbe:
    """Reads ``power_consumption()`` of each device at every poll."""

    def __init__(self, module: str, devices: list[NpuDevice], interval_s: float) -> None:
        self.poll_interval_s = interval_s
        self._devices = devices
        self._problems: list[str] = []
        how = f"{module} Device.power_consumption() (W; RMS_TOTAL hwmon average)"
        self._channels = {
            d.name: _channel(d.name, d.uuid, d.arch, how, interval_s, 0.0) for d in devices
        }
        self._last_t: dict[str, int] = {}

    def channels(self) -> list[Channel]:
        return list(self._channels.values())

    def read(self, now_utc_ns: int) -> list[Block]:
        offset = now_utc_ns - time.monotonic_ns()
        blocks: list[Block] = []
        for d in self._devices:
            cid = self._channels[d.name].id
            t0 = time.monotonic_ns()
            try:
                raw = read_power(d)
            except BindingError as err:
                self._problems.append(f"{cid}: {err}")
                continue
            t = (t0 + time.monotonic_ns()) // 2 + offset
            w = binding_power(raw)
            if w.value_w is None:
                self._problems.append(f"{cid}: {w.reason}")
            elif t > self._last_t.get(cid, -1):
                self._last_t[cid] = t
                blocks.append(Block.of(cid, [t], [w.value_w]))
        return blocks

    def problems(self) -> list[str]:
        out, self._problems = self._problems, []
        return out

    def close(self) -> None:
        pass


class CliProbe:
    """Runs ``furiosa-smi info`` once per poll on a thread; ``read`` drains the results."""

    def __init__(
        self,
        argv: list[str],
        first: list[CliDevice],
        selected: set[str],
        interval_s: float,
        timeout_s: float,
    ) -> None:
        self.argv = argv
        self.poll_interval_s = min(1.0, interval_s)
        self._timeout_s = timeout_s
        how = f"`{' '.join(argv[1:])}` power (W, 2 decimals)"
        self._channels = {
            d.name: _channel(d.name, d.uuid, d.arch, how, interval_s, 0.01)
            for d in first
            if d.name in selected
        }
        self._first: tuple[int, list[CliDevice]] | None = (time.monotonic_ns(), first)
        self._last_t: dict[str, int] = {}
        self.poller: Poller[list[CliDevice]] = Poller("furiosa", self._fetch, interval_s)
        self.poller.start()

    def _fetch(self) -> list[CliDevice]:
        out = run_tool(self.argv, time.monotonic_ns, self._timeout_s)
        return parse_info_json(out.stdout)

    def channels(self) -> list[Channel]:
        return list(self._channels.values())

    def read(self, now_utc_ns: int) -> list[Block]:
        offset = now_utc_ns - time.monotonic_ns()
        polls = [(p.mono_ns, p.value) for p in self.poller.drain()]
        if self._first is not None:
            polls.insert(0, self._first)
            self._first = None
        t: dict[str, list[int]] = {}
        v: dict[str, list[float]] = {}
        for mono_ns, devices in polls:
            seen = {d.name: d for d in devices}
            for name, ch in self._channels.items():
                d = seen.get(name)
                if d is None:
                    self.poller.report(f"{ch.id}: missing from furiosa-smi output")
                    continue
                if d.power.value_w is None:
                    self.poller.report(f"{ch.id}: {d.power.reason}")
                    continue
                t_ns = mono_ns + offset
                if t_ns <= self._last_t.get(ch.id, -1):
                    continue
                self._last_t[ch.id] = t_ns
                t.setdefault(ch.id, []).append(t_ns)
                v.setdefault(ch.id, []).append(d.power.value_w)
        return [Block(cid, np.array(t[cid], np.int64), np.array(v[cid], np.float64)) for cid in t]

    def problems(self) -> list[str]:
        return self.poller.problems()

    def close(self) -> None:
        self.poller.stop()


def _find_cli(path: str | None) -> str | None:
    if path:
        return path if os.access(path, os.X_OK) else None
    return find_tool("furiosa-smi", CLI_PATHS)


def _first_cli_run(exe: str, timeout_s: float) -> tuple[list[str], list[CliDevice]]:
    """The first argv form the tool accepts, with its devices; ToolError/ValueError if none."""
    errors: list[str] = []
    for form in CLI_FORMS:
        argv = [exe, *form]
        try:
            out = run_tool(argv, time.monotonic_ns, timeout_s)
        except ToolError as err:
            errors.append(str(err))
            if "exit" not in str(err):  # missing or hung: the other form will not help
                break
            continue
        return argv, parse_info_json(out.stdout)
    raise ToolError("; ".join(errors))


class FuriosaFamily:
    name = "furiosa"
    summary = "FuriosaAI NPU (Warboy, RNGD) board power: furiosa_smi binding or furiosa-smi CLI"

    def available(self) -> Availability:
        try:
            module, devices = open_binding()
        except BindingMissing as err:
            cli = _find_cli(None)
            if cli:
                return Availability(True, f"{err}; using the CLI {cli}")
            return Availability(False, f"{err}; no furiosa-smi CLI either")
        except BindingError as err:
            return Availability(False, f"FuriosaAI binding failed: {err}", broken=True)
        if not devices:
            return Availability(False, f"{module}: no FuriosaAI NPU found")
        names = ", ".join(f"{d.name} {d.arch} {d.uuid}" for d in devices)
        return Availability(True, f"{module}: {len(devices)} NPU(s): {names}")

    def open(self, args: str) -> BindingProbe | CliProbe:
        spec = parse_spec(args)
        why: list[str] = []
        if spec.source in ("auto", "binding"):
            try:
                module, devices = open_binding(spec.module)
            except (BindingMissing, BindingError) as err:
                why.append(str(err))
            else:
                if devices:
                    chosen = _select([(d.name, d.uuid) for d in devices], spec.devices)
                    picked = [d for d in devices if d.name in chosen]
                    interval = spec.interval_s or BINDING_INTERVAL_S
                    return BindingProbe(module, picked, interval)
                why.append(f"{module}: no FuriosaAI NPU found")
        if spec.source in ("auto", "cli"):
            exe = _find_cli(spec.path)
            if exe is None:
                why.append(f"furiosa-smi not found at {spec.path or 'PATH'}")
            else:
                try:
                    argv, first = _first_cli_run(exe, spec.timeout_s)
                except (ToolError, ValueError) as err:
                    why.append(f"furiosa-smi: {err}")
                else:
                    if first:
                        chosen = _select([(d.name, d.uuid) for d in first], spec.devices)
                        interval = spec.interval_s or CLI_INTERVAL_S
                        return CliProbe(argv, first, chosen, interval, spec.timeout_s)
                    why.append("furiosa-smi lists no device")
        raise ProbeUnavailable(f"probe 'furiosa': {'; '.join(why)}")


family = FuriosaFamily()
