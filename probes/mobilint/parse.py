"""Pure parsers of ``mobilint-cli status`` output into power rails in W, and the card rules.

Two formats (Mobilint utility 1.x; shapes from Mobilint's own tracker and its captured outputs
in ``mblt-model-zoo``):

- ``mobilint-cli status -q`` (query): ``Key : value`` lines, one block per NPU chip starting at
  ``/dev/ariesN``, nested by 4-space indentation; ``Power`` holds ``Total``, ``NPU``, ``DDR``,
  ``PMIC`` and, on an MLA400, ``GOLDFINGER``, each like ``12.85 W``.
- the legacy table (``mobilint-cli status``): one row per chip,
  ``|   0  Aries(aries0)  |   2.11W   7.87W | ...`` under the header ``Pwr:NPU/Total``.

Values are W in both (``W`` is checked, the only unit accepted); ``N/A`` or anything else is
no reading, never 0 W.

Cards and rails (``rail_roles``): an MLA100 is one chip per card; an MLA400 carries four chips
(``GOLDFINGER`` present, or PCI sub-IDs 0x402/0x108B), grouped by ``/dev/aries`` number // 4.
``Total`` is the card's input power: the card total, ``telemetry``. ``GOLDFINGER`` (the power
through the PCIe edge connector, part of ``Total``), ``NPU``, ``DDR`` and ``PMIC`` are parts of
it: ``estimate`` when the total is there, so they are shown but never summed with it (the rule of
``probes/jetson/rails.py``). On an MLA400 the card rails (``Total``, ``GOLDFINGER``) are read on
its first chip only; the other chips print 0.00 W there, and ``DDR``/``PMIC`` print 0.00 W on
every chip under load, so those are not instrumented and not made channels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from powerd.channel import SourceClass

DEV_RE = re.compile(r"^/dev/(aries(\d+))\s*$")
KV_RE = re.compile(r"^(\s*)([^:]*?)\s*(?::\s*(.*?))?\s*$")
WATTS_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*W$")
TABLE_ROW_RE = re.compile(
    r"^\|\s*(\d+)\s+(.+?)\s*\|\s*(\S+)\s+(\S+)\s*\|"
)  # | 0 Aries(aries0) | 2.11W 7.87W |
TEMP_CELL_RE = re.compile(r"^\d+\s*C\b")  # the second row of a chip: "49 C   1.2.4"
TABLE_NAME_RE = re.compile(r"\((aries\d+)\)")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\s*$")
RAILS = ("Total", "GOLDFINGER", "NPU", "DDR", "PMIC")
CARD_RAILS = ("Total", "GOLDFINGER")
MLA400_SUB_IDS = ("0x402", "0x108b")
MLA400_CHIPS = 4


@dataclass
class Chip:
    """One ``/dev/ariesN``: its rails in W (None: no reading, with the reason in ``errors``)."""

    name: str
    index: int
    rails: dict[str, float | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    sub_ids: tuple[str, str] | None = None

    @property
    def mla400(self) -> bool:
        return "GOLDFINGER" in self.rails or self.sub_ids == MLA400_SUB_IDS


def watts(text: str) -> tuple[float | None, str | None]:
    """``"12.85 W"`` → 12.85; ``"N/A"`` and anything else → (None, why)."""
    m = WATTS_RE.match(text.strip())
    if m is None:
        return None, f"reads {text.strip()!r}"
    return float(m.group(1)), None


def _set_rail(chip: Chip, rail: str, text: str) -> None:
    w, why = watts(text)
    chip.rails[rail] = w
    if why:
        chip.errors[rail] = why


def parse_query(text: str) -> list[Chip]:
    """Chips of one ``status -q`` output (header lines before the first ``/dev`` are skipped)."""
    chips: list[Chip] = []
    chip: Chip | None = None
    path: list[tuple[int, str]] = []  # (indent, key) of the open sections
    sub: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        m = DEV_RE.match(line.strip()) if not line[:1].isspace() else None
        if m:
            chip = Chip(m.group(1), int(m.group(2)))
            chips.append(chip)
            path, sub = [], {}
            continue
        if chip is None or not line[:1].isspace():
            if not line[:1].isspace():
                chip = None
            continue
        kv = KV_RE.match(line)
        if kv is None:
            continue
        indent, key, value = len(kv.group(1)), kv.group(2), kv.group(3)
        while path and path[-1][0] >= indent:
            path.pop()
        if value is None:
            path.append((indent, key))
            continue
        section = path[-1][1] if path else ""
        if section == "Power" and len(path) == 1:
            _set_rail(chip, key, value)
        elif section == "PCI Express" and key in ("Sub Vendor ID", "Sub Device ID"):
            sub[key] = value.lower()
            if len(sub) == 2:
                chip.sub_ids = (sub["Sub Vendor ID"], sub["Sub Device ID"])
    return chips


def parse_table(text: str) -> list[Chip]:
    """Chips of the legacy table: ``NPU`` and ``Total`` from the ``Pwr:NPU/Total`` column."""
    chips: list[Chip] = []
    for line in text.splitlines():
        m = TABLE_ROW_RE.match(line.strip())
        if m is None or TEMP_CELL_RE.match(m.group(2)):
            continue
        index, cell, npu, total = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        named = TABLE_NAME_RE.search(cell)
        chip = Chip(named.group(1) if named else f"aries{index}", index)
        _set_rail(chip, "NPU", npu)
        _set_rail(chip, "Total", total)
        chips.append(chip)
    return chips


def parse_status(text: str) -> list[Chip]:
    """Either format; ValueError if no chip with power rails is found."""
    chips = parse_query(text) if re.search(r"^/dev/aries\d+", text, re.M) else parse_table(text)
    if not any(c.rails for c in chips):
        head = text.strip().splitlines()[:1]
        raise ValueError(f"no NPU power rails in the output ({head[0][:80]!r}...)" if head else
                         "empty output")  # fmt: skip
    return chips


def is_record_start(line: str) -> bool:
    """A line that begins one output of the loop mode (its timestamp)."""
    return line.startswith("Timestamp") or bool(DATE_RE.match(line))


@dataclass(frozen=True)
class RailRole:
    """One rail made a channel: on which chip, and how it enters the totals."""

    chip: str
    rail: str
    card: str
    source_class: SourceClass
    note: str


def card_of(chip: Chip) -> int:
    """The card a chip belongs to: its own index, or (MLA400) the first chip of its four."""
    return chip.index // MLA400_CHIPS * MLA400_CHIPS if chip.mla400 else chip.index


def rail_roles(chips: list[Chip]) -> list[RailRole]:
    """The channels of one host's chips: card totals, card parts and chip rails (see above)."""
    cards: dict[int, list[Chip]] = {}
    for c in chips:
        cards.setdefault(card_of(c), []).append(c)
    roles: list[RailRole] = []
    for members in (sorted(v, key=lambda c: c.index) for _, v in sorted(cards.items())):
        first = members[0]
        card = first.name
        mla400 = first.mla400
        has_total = "Total" in first.rails
        has_slot = "GOLDFINGER" in first.rails
        for chip in members:
            for rail in RAILS:
                if rail not in chip.rails:
                    continue
                if rail in CARD_RAILS and chip is not first:
                    continue  # read on the card's first chip
                if mla400 and rail in ("DDR", "PMIC"):
                    continue  # not instrumented on an MLA400 (0.00 W on every chip)
                if rail == "Total":
                    roles.append(RailRole(chip.name, rail, card, "telemetry", "card input: total"))
                elif rail == "GOLDFINGER":
                    cls: SourceClass = "estimate" if has_total else "telemetry"
                    why = "PCIe slot input, part of Total" if has_total else "PCIe slot input"
                    roles.append(RailRole(chip.name, rail, card, cls, why))
                elif has_total or has_slot:
                    total = "Total" if has_total else "GOLDFINGER"
                    roles.append(
                        RailRole(chip.name, rail, card, "estimate", f"part of {card} {total}")
                    )
                else:
                    roles.append(RailRole(chip.name, rail, card, "telemetry", "no card total"))
    return roles
