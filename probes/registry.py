"""Find probe families through the ``powerd.probes`` entry point and open specs with them."""

from __future__ import annotations

from importlib.metadata import entry_points

from powerd.errors import ProbeUnavailable, SpecError
from probes.base import Probe, ProbeFamily, split_spec

GROUP = "powerd.probes"


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
    """Families whose entry point fails to load, with the error."""
    broken: dict[str, str] = {}
    for ep in entry_points(group=GROUP):
        try:
            ep.load()
        except Exception as err:
            broken[ep.name] = f"{type(err).__name__}: {err}"
    return broken


def open_probe(spec: str) -> Probe:
    """Open a probe from a spec such as ``sim:constant,w=5``; errors say what exists."""
    name, args = split_spec(spec)
    fams = families()
    if name not in fams:
        known = ", ".join(fams) or "none"
        raise SpecError(
            f"unknown probe {name!r} in {spec!r}; known probes: {known} (see `powerd probes`)"
        )
    fam = fams[name]
    avail = fam.available()
    if not avail.ok:
        raise ProbeUnavailable(f"probe {name!r} is not usable here: {avail.reason}")
    return fam.open(args)
