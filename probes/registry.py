"""Find probe families through the ``powerd.probes`` entry point and open specs with them."""

from __future__ import annotations

from dataclasses import replace
from importlib.metadata import entry_points
from typing import Any, cast

from powerd.channel import DEVICE_RE, Channel
from powerd.errors import ProbeUnavailable, SpecError
from powerd.probes.base import Probe, ProbeFamily, split_spec

GROUP = "powerd.probes"
# an optional dependency's import name -> (its distribution, the powerd extra that installs it)
EXTRAS = {
    "serial": ("pyserial", "serial"),
    "serial_asyncio_fast": ("pyserial-asyncio-fast", "serial"),
    "pynvml": ("nvidia-ml-py", "nvml"),
    "influxdb_client": ("influxdb-client", "influx"),
    "grafana_client": ("grafana-client", "grafana"),
}


def missing_extra(err: BaseException) -> str | None:
    """What to install when ``err`` is a missing optional dependency, e.g. ``pyserial is not
    installed: pip install 'powerd[serial]'``; None for any other error."""
    if not isinstance(err, ModuleNotFoundError) or not err.name:
        return None
    found = EXTRAS.get(err.name.partition(".")[0])
    if found is None:
        return None
    dist, extra = found
    return f"{dist} is not installed: pip install 'powerd[{extra}]'"


def families() -> dict[str, ProbeFamily]:
    """All registered families by name, in name order. A family that fails to import is skipped
    here and reported by ``broken_families``."""
    found: dict[str, ProbeFamily] = {}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            found[ep.name] = ep.load()
        except Exception:
            continue
    return found


def broken_families() -> dict[str, str]:
    """Families whose entry point fails to load, with the error (or, for a missing optional
    dependency, what to install)."""
    return {name: reason for name, (reason, _) in unloadable_families().items()}


def unloadable_families() -> dict[str, tuple[str, bool]]:
    """Families whose entry point fails to load: ``(reason, missing)``, where ``missing`` means
    an optional dependency is not installed and the reason says which extra to install."""
    out: dict[str, tuple[str, bool]] = {}
    for ep in entry_points(group=GROUP):
        try:
            ep.load()
        except Exception as err:
            extra = missing_extra(err)
            out[ep.name] = (extra, True) if extra else (f"{type(err).__name__}: {err}", False)
    return out


class AssignedProbe:
    """A probe whose channels are assigned to a device (the spec's common ``device=`` key), so a
    daemon-local meter can measure an agent's board. Everything else is the probe's own."""

    def __init__(self, probe: Probe, device: str) -> None:
        self._probe, self.device = probe, device

    def channels(self) -> list[Channel]:
        return [replace(ch, device=self.device) for ch in self._probe.channels()]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._probe, name)


def split_device(args: str) -> tuple[str, str | None]:
    """Take the common ``device=<id>`` key out of a probe's arguments."""
    kept: list[str] = []
    device: str | None = None
    for item in args.split(","):
        if item.startswith("device="):
            device = item.removeprefix("device=")
            if not DEVICE_RE.match(device):
                raise SpecError(
                    f"device={device!r}: a device id is an agent id (1-128 characters of "
                    "A-Za-z0-9_.:-) or 'local'"
                )
        else:
            kept.append(item)
    return ",".join(kept), device


def open_probe(spec: str) -> Probe:
    """Open a probe from a spec such as ``sim:constant,w=5``; errors say what exists.

    Every spec takes ``device=<id>`` besides its own keys: its channels then belong to that
    device (an agent id) instead of the host that samples them."""
    name, args = split_spec(spec)
    args, device = split_device(args)
    fams = families()
    if name not in fams:
        unloadable = unloadable_families()
        if name in unloadable:
            raise ProbeUnavailable(f"probe {name!r} is not usable here: {unloadable[name][0]}")
        known = ", ".join(fams) or "none"
        raise SpecError(
            f"unknown probe {name!r} in {spec!r}; known probes: {known} (see `powerd probes`)"
        )
    fam = fams[name]
    avail = fam.available()
    if not avail.ok:
        raise ProbeUnavailable(f"probe {name!r} is not usable here: {avail.reason}")
    probe = fam.open(args)
    return probe if device is None else cast(Probe, AssignedProbe(probe, device))
