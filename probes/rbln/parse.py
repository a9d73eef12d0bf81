"""Pure parser of ``rbln-smi --json`` / ``rbln-stat --json`` into card power in W, one per card.

The JSON (Rebellions driver tools; field names as captured on an 8 × RBLN-CA22 node, KMD 3.0.0)
has ``devices[]``, one entry per NPU die, each with ``device`` (``"rbln0"``), ``sid`` (the card's
serial), ``uuid``, ``name`` (``"RBLN-CA22"``), ``npu`` and ``card_power``: a string in µW,
``"18109794uW"`` (this module converts it to W, the only unit conversion of the probe). Every
measurement is a string; ``npu`` is a string in SDK 1.x (``"0"``) and a number in 2.x (``0``).

An ATOM Max card (RBLN-CA25) has four dies, listed as four devices with the same ``sid``, and
every one of them repeats the card's ``card_power``: summing the devices counts the card four
times. ``group_cards`` groups dies by ``sid``; a card is reported once, by its die with the
lowest ``rblnN``. A die without a usable ``sid`` cannot be matched to siblings and is a card of
its own. A card whose dies disagree on ``card_power`` is flagged (the field is then not a card
repeat and de-duplicating it would undercount).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

POWER_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(uW|µW|mW|W)\s*$")
PER_W = {"uW": 1e6, "µW": 1e6, "mW": 1e3, "W": 1.0}  # units per W
DEVICE_RE = re.compile(r"^rbln(\d+)$")
DISAGREE_FRAC = 0.01


@dataclass(frozen=True)
class Die:
    """One ``devices[]`` entry: a die, with its card's power in W or why there is none."""

    device: str
    sid: str | None
    name: str
    uuid: str
    npu: int | None
    card_power_w: float | None
    power_error: str | None = None

    @property
    def index(self) -> int | None:
        m = DEVICE_RE.match(self.device)
        return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Card:
    """One physical card: its dies (reporter first) and the key its channel is built on."""

    key: str
    sid: str | None
    dies: tuple[Die, ...]

    @property
    def reporter(self) -> Die:
        return self.dies[0]

    def power(self) -> tuple[float | None, str | None]:
        """The card's power in W (from the first die that has it), else why not."""
        for d in self.dies:
            if d.card_power_w is not None:
                return d.card_power_w, None
        return None, self.reporter.power_error or "no card_power"

    def disagreement(self) -> str | None:
        """A note if the dies do not all repeat the same card power."""
        ws = [(d.device, d.card_power_w) for d in self.dies if d.card_power_w is not None]
        if len(ws) < 2:
            return None
        lo, hi = min(w for _, w in ws), max(w for _, w in ws)
        if hi - lo <= DISAGREE_FRAC * max(hi, 1e-9):
            return None
        shown = ", ".join(f"{dev}={w:.3f} W" for dev, w in ws)
        return f"dies of one card report different card_power ({shown})"


def card_power_w(value: Any) -> tuple[float | None, str | None]:
    """``"18109794uW"`` → 18.109794 W; ``"N/A"``, a bare number or garbage → (None, why)."""
    if not isinstance(value, str):
        return None, f"card_power is {value!r}, not a string with a unit"
    m = POWER_RE.match(value)
    if m is None:
        return None, f"card_power is {value!r}"
    return float(m.group(1)) / PER_W[m.group(2)], None


def _npu(value: Any) -> int | None:
    """``npu``: a string in SDK 1.x, an int in 2.x."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    return None


def _sid(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def parse_status(raw: bytes) -> list[Die]:
    """The dies of one ``--json`` output; ValueError if it is not that JSON."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg} at char {err.pos} of {len(text)})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("devices"), list):
        raise ValueError("no 'devices' list in the JSON")
    dies: list[Die] = []
    for i, d in enumerate(doc["devices"]):
        if not isinstance(d, dict):
            raise ValueError(f"devices[{i}] is not an object")
        device = d.get("device")
        if not isinstance(device, str) or not device:
            raise ValueError(f"devices[{i}] has no 'device' name")
        w, why = card_power_w(d.get("card_power"))
        dies.append(
            Die(
                device=device,
                sid=_sid(d.get("sid")),
                name=str(d.get("name", "?")),
                uuid=str(d.get("uuid", "?")),
                npu=_npu(d.get("npu")),
                card_power_w=w,
                power_error=why,
            )
        )
    return dies


def _die_order(d: Die) -> tuple[int, int, str]:
    i = d.index
    return (0, i, d.device) if i is not None else (1, 0, d.device)


def group_cards(dies: list[Die]) -> list[Card]:
    """Cards by ``sid`` (a die without one is its own card), reporter = lowest ``rblnN``."""
    groups: dict[str, list[Die]] = {}
    for d in dies:
        key = f"sid:{d.sid}" if d.sid else f"device:{d.device}"
        groups.setdefault(key, []).append(d)
    cards = [
        Card(key, members[0].sid, tuple(sorted(members, key=_die_order)))
        for key, members in groups.items()
    ]
    return sorted(cards, key=lambda c: _die_order(c.reporter))
