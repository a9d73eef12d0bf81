"""NVIDIA GPUs through NVML (``nvidia-ml-py``): per GPU an energy counter and board power.

Channels per GPU ``<i>`` (the NVML index, as ``nvidia-smi`` numbers GPUs):

- ``nvml:<i>:energy``: ``nvmlDeviceGetTotalEnergyConsumption``, mJ since the driver was loaded
  (Volta and later), a cumulative counter in J;
- ``nvml:<i>:power``: field ``NVML_FI_DEV_POWER_INSTANT`` (186), or else
  ``nvmlDeviceGetPowerUsage``, which is a 1 s average on Ampere and later (the channel says so).

Both measure the GPU (``measures`` is its UUID), so they are alternatives, never summed; the
counter is preferred and their ratio is reported. See README.md for units, rates and limits.

Spec (after ``nvml:``): comma-separated, all optional:

- GPU selections: an index (``0``) or a UUID (``GPU-8a3c...``); none selects every GPU;
- ``learn=SECONDS``: at most this long at open to learn each counter's update period
  (default 1; 0 assumes 100 ms).

Examples: ``nvml``, ``nvml:0,2``, ``nvml:GPU-8a3c4f2e-...,learn=0.5``.
"""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass

from powerd.errors import ProbeUnavailable, SpecError
from powerd.probes.base import Availability
from powerd.probes.nvml.probe import Gpu, NvmlProbe, survey
from powerd.probes.nvml.readings import NVML_ERROR_LIBRARY_NOT_FOUND
from powerd.probes.nvml.transport import BindingMissing, Nvml, NvmlError

LIBRARY_MISSING = "NVML library libnvidia-ml.so.1 not found: no NVIDIA driver on this host"
BINDING_MISSING = (
    "nvidia-ml-py (module pynvml) is not installed: pip install 'powerd[nvml]' "
    "(never the deprecated 'pynvml' package)"
)
DEFAULT_LEARN_S = 1.0
MAX_LEARN_S = 10.0


@dataclass(frozen=True)
class NvmlSpec:
    """A parsed ``nvml:`` spec: GPUs by index or UUID (empty: all), and the learning bound."""

    gpus: tuple[int | str, ...] = ()
    learn_s: float = DEFAULT_LEARN_S


def parse_spec(args: str) -> NvmlSpec:
    """Parse the part after ``nvml:``; every mistake is a one-line SpecError."""
    gpus: list[int | str] = []
    learn_s = DEFAULT_LEARN_S
    for item in filter(None, (x.strip() for x in args.split(","))):
        key, eq, value = item.partition("=")
        if eq:
            if key != "learn":
                raise SpecError(
                    f"nvml: unknown key {key!r}; use GPU indices or UUIDs and learn=SECONDS "
                    "(e.g. nvml:0,2,learn=0.5)"
                )
            try:
                learn_s = float(value)
            except ValueError:
                raise SpecError(f"nvml: learn={value!r} is not a number of seconds") from None
            if not 0 <= learn_s <= MAX_LEARN_S:
                raise SpecError(f"nvml: learn must be within [0, {MAX_LEARN_S:g}] seconds")
        elif item.isascii() and item.isdigit():
            gpus.append(int(item))
        elif item.startswith("GPU-"):
            gpus.append(item)
        elif item.startswith("MIG-"):
            raise SpecError(
                f"nvml: {item!r} is a MIG instance; NVML reads power per physical GPU, "
                "so select its parent GPU (index or GPU-... UUID)"
            )
        else:
            raise SpecError(f"nvml: {item!r} is not a GPU index or UUID (GPU-...); e.g. nvml:0,2")
    if len(set(gpus)) != len(gpus):
        raise SpecError("nvml: a GPU is selected twice")
    return NvmlSpec(tuple(gpus), learn_s)


def select_gpus(nvml: Nvml, spec: NvmlSpec) -> list[Gpu]:
    """Survey the GPUs a spec selects; an unknown index or UUID is a SpecError."""
    count = nvml.device_count()
    if not spec.gpus or any(isinstance(g, str) for g in spec.gpus):
        every = [survey(nvml, i) for i in range(count)]
    else:
        every = []
    if not spec.gpus:
        return every
    by_uuid = {g.uuid: g for g in every}
    out: list[Gpu] = []
    for sel in spec.gpus:
        if isinstance(sel, int):
            if sel >= count:
                have = f"indices 0-{count - 1}" if count else "no GPU"
                raise SpecError(f"nvml: no GPU {sel}; this host has {have}")
            out.append(every[sel] if every else survey(nvml, sel))
        elif sel in by_uuid:
            out.append(by_uuid[sel])
        else:
            raise SpecError(f"nvml: no GPU with UUID {sel!r} (`powerd probes` lists them)")
    return out


class NvmlFamily:
    name = "nvml"
    summary = "NVIDIA GPU energy counter and board power through NVML (nvidia-ml-py)"

    def available(self) -> Availability:
        try:
            nvml = Nvml()
        except BindingMissing:
            return Availability(False, BINDING_MISSING)
        except NvmlError as err:
            if err.code == NVML_ERROR_LIBRARY_NOT_FOUND:
                return Availability(False, LIBRARY_MISSING)
            return Availability(False, f"NVML init failed: {err}", broken=True)
        try:
            driver = nvml.driver_version()
            count = nvml.device_count()
            if count == 0:
                return Availability(False, f"no NVIDIA GPU found (driver {driver})")
            gpus = [survey(nvml, i) for i in range(count)]
        except NvmlError as err:
            return Availability(False, f"NVML: {err}", broken=True)
        finally:
            _close_quietly(nvml)
        usable = any((g.energy or g.power) and not g.lost for g in gpus)
        found = f"{count} GPU(s), driver {driver}: " + " | ".join(g.summary() for g in gpus)
        return Availability(usable, found if usable else "no readable GPU: " + found)

    def check_spec(self, args: str) -> None:
        """The spec's keys, and the Python binding installed (``powerd run --check-config``;
        NVML itself is not loaded: that is ``powerd probes``' question)."""
        parse_spec(args)
        if importlib.util.find_spec("pynvml") is None:
            raise ProbeUnavailable(BINDING_MISSING)

    def open(self, args: str) -> NvmlProbe:
        spec = parse_spec(args)
        try:
            nvml = Nvml()
        except BindingMissing:
            raise ProbeUnavailable(f"probe 'nvml': {BINDING_MISSING}") from None
        except NvmlError as err:
            if err.code == NVML_ERROR_LIBRARY_NOT_FOUND:
                raise ProbeUnavailable(f"probe 'nvml': {LIBRARY_MISSING}") from None
            raise ProbeUnavailable(f"probe 'nvml': NVML init failed: {err}") from None
        try:
            gpus = select_gpus(nvml, spec)
            probe = NvmlProbe(nvml, gpus, spec.learn_s)
        except NvmlError as err:
            _close_quietly(nvml)
            raise ProbeUnavailable(f"probe 'nvml': {err}") from None
        except BaseException:
            _close_quietly(nvml)
            raise
        if not probe.channels():
            probe.close()
            found = " | ".join(g.summary() for g in gpus) or "no GPU"
            raise ProbeUnavailable(f"probe 'nvml': no readable channel: {found}")
        return probe


def _close_quietly(nvml: Nvml) -> None:
    with contextlib.suppress(NvmlError):
        nvml.close()


family = NvmlFamily()
