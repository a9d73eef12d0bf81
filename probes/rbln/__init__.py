"""The ``rbln`` probe: Rebellions ATOM / ATOM Max card power from ``rbln-smi --json``.

The driver package's ``rbln-smi`` (formerly ``rbln-stat``, still shipped and accepted) prints the
status of every NPU die as JSON; ``parse.py`` turns one output into card power in W and groups
dies into cards by serial (``sid``), so an ATOM Max (four dies, each repeating the card's power)
is one channel, not four. The tool has no loop mode that prints JSON (users run
``watch -n 1 rbln-smi``), so it is run once per interval by a ``clistream.ToolPoller`` on a thread
(a hanging call is killed at ``timeout`` and reported; the sampler never waits for it).

Channels: ``rbln:<die>`` per card, named after its lowest die (``rbln:rbln0``), power in W,
``telemetry``, ``measures = rbln-card:<sid>``. The cards are those of the first output, taken at
``open``.

Spec: ``rbln[:interval=SECONDS,path=EXECUTABLE,timeout=SECONDS]`` (default 1 s; ``rbln-smi``,
else ``rbln-stat``, on PATH, /usr/bin or /usr/local/bin; 5 s).
"""

from __future__ import annotations

import time

from powerd.channel import Accuracy, Channel
from powerd.errors import ProbeUnavailable
from powerd.probes.base import Availability, parse_kv
from powerd.probes.cliexec import ToolError, find_tool, run_tool, timeout_arg
from powerd.probes.clistream import PolledProbe, ToolPoller, Values
from powerd.probes.hwmon.poll import interval_arg
from powerd.probes.rbln.parse import Card, group_cards, parse_status

TOOLS = ("rbln-smi", "rbln-stat")
EXTRA_DIRS = ("/usr/bin", "/usr/local/bin")
DEFAULT_INTERVAL_S = 1.0
DEFAULT_TIMEOUT_S = 5.0
READING_FRAC = 0.10  # undocumented by Rebellions: a working 95 % bound, as for unknown sensors


def find_rbln(path: str | None = None) -> str | None:
    if path:
        return find_tool(path, (path,))
    for name in TOOLS:
        found = find_tool(name, tuple(f"{d}/{name}" for d in EXTRA_DIRS))
        if found:
            return found
    return None


def channel_id(card: Card) -> str:
    return f"rbln:{card.reporter.device}"


def card_channel(card: Card, interval_s: float) -> Channel:
    dies = ", ".join(d.device for d in card.dies)
    what = f"card sid={card.sid}" if card.sid else f"die {card.reporter.device} (no sid)"
    repeat = " (card power repeated on every die, counted once)" if len(card.dies) > 1 else ""
    return Channel(
        id=channel_id(card),
        kind="power",
        source_class="telemetry",
        nominal_period_s=interval_s,
        accuracy=Accuracy(reading_frac=READING_FRAC),
        measures=f"rbln-card:{card.sid or card.reporter.device}",
        description=f"{card.reporter.name} {what}, dies {dies}: card_power{repeat}",
        stamp_uncertainty_s=interval_s,
    )


class CardReadings:
    """The pure step from one output to values per channel, with the card keys fixed at open."""

    def __init__(self, cards: list[Card]) -> None:
        self.ids = {c.key: channel_id(c) for c in cards}
        self._warned: set[str] = set()

    def __call__(self, stdout: bytes) -> tuple[Values, list[str]]:
        values: Values = {}
        problems: list[str] = []
        for card in group_cards(parse_status(stdout)):
            cid = self.ids.get(card.key)
            if cid is None:
                if card.key not in self._warned:
                    self._warned.add(card.key)
                    problems.append(
                        f"rbln: card {card.key} ({card.reporter.device}) appeared after the "
                        "probe started; ignored"
                    )
                continue
            w, why = card.power()
            if w is None:
                problems.append(f"{cid}: {why}")
            else:
                values[cid] = w
            note = card.disagreement()
            if note and card.key not in self._warned:
                self._warned.add(card.key)
                problems.append(f"{cid}: {note}; reporting the lowest die's value")
        return values, problems


class RblnFamily:
    name = "rbln"
    summary = "Rebellions ATOM/ATOM Max card power from rbln-smi --json (one channel per card)"

    def available(self) -> Availability:
        exe = find_rbln()
        if exe is None:
            return Availability(
                False, "rbln-smi / rbln-stat not found on PATH or in /usr/bin, /usr/local/bin"
            )
        return Availability(True, exe)

    def open(self, args: str) -> PolledProbe:
        kv = parse_kv(args, {"interval", "path", "timeout"})
        interval_s = interval_arg(kv.get("interval"), DEFAULT_INTERVAL_S, 0.05, 3600.0)
        timeout_s = timeout_arg(kv, DEFAULT_TIMEOUT_S)
        exe = find_rbln(kv.get("path"))
        if exe is None:
            raise ProbeUnavailable(
                f"probe 'rbln' is not usable here: no {kv.get('path') or 'rbln-smi/rbln-stat'}"
            )
        argv = [exe, "--json"]
        try:
            first = run_tool(argv, time.monotonic_ns, timeout_s)
            cards = group_cards(parse_status(first.stdout))
        except (ToolError, ValueError) as err:
            raise ProbeUnavailable(f"probe 'rbln' is not usable here: {err}") from None
        if not cards:
            raise ProbeUnavailable(f"probe 'rbln' is not usable here: {exe} lists no NPU")
        poller = ToolPoller(argv, "rbln", interval_s, timeout_s=timeout_s)
        channels = [card_channel(c, interval_s) for c in cards]
        return PolledProbe("rbln", poller, channels, CardReadings(cards))


family = RblnFamily()
