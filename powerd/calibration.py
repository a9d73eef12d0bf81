"""Calibration certificates from the config, put on the meter channels they cover, and the flags
a result gives for them.

A lab's meters are calibrated on a schedule; a figure measured with a meter whose calibration has
run out (or that was never calibrated) cannot back a signed claim. The config says which
certificate covers which channel (``[calibration."<match>"]``, see ``CalibrationEntry``); the
daemon puts it on each matching channel as it stores it (``Store.annotate_channel``), so the store
itself records which calibration a figure rests on, and ``powerd report``/``powerd audit`` see the
same thing as the live daemon.

``<match>`` is one of:

- ``serial:<serial>``: any channel whose instrument reports that serial number (``*IDN?``); the
  certificate follows the instrument from port to port;
- a channel id (``wt300:ttyUSB0:p1``) or a prefix of ids ending at a ``:`` (``wt300:ttyUSB0``
  covers ``wt300:ttyUSB0:p1`` and ``wt300:ttyUSB0:e1``; ``edge-01/ina2xx`` an agent's INA2xx).

A serial match beats an id match; among id matches the longest key wins.

Flags, on meter channels only (telemetry and estimates are not calibrated instruments; the ``sim``
source, whose instrument says ``source = "simulated"``, needs none): ``uncalibrated`` when no
certificate covers the channel, ``calibration_due`` when the phase ends after the certificate's
``due`` date (UTC calendar day).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated

import msgspec

from powerd.channel import Calibration, Channel
from powerd.errors import PowerdError
from powerd.schema import Name, Table

SERIAL_PREFIX = "serial:"
SIMULATED = "simulated"
FLAG_UNCALIBRATED = "uncalibrated"
FLAG_DUE = "calibration_due"

Text = Annotated[str, msgspec.Meta(description="a string")]


class CalibrationEntry(Table, frozen=True):
    """``[calibration."<match>"]``: one certificate (TOML dates, ``2026-03-01``)."""

    date: dt.date
    due: dt.date
    certificate: Name
    lab: Text = ""

    def calibration(self) -> Calibration:
        return Calibration(self.date.isoformat(), self.due.isoformat(), self.certificate, self.lab)


CalibrationTable = dict[str, CalibrationEntry]


def check_table(table: CalibrationTable) -> None:
    """Keys well formed and every ``due`` after its ``date``; errors name the key."""
    for key, entry in table.items():
        if not key or key == SERIAL_PREFIX:
            raise PowerdError(f"[calibration] {key!r}: name a channel id, a prefix or serial:<S>")
        if entry.due <= entry.date:
            raise PowerdError(
                f'[calibration."{key}"] due {entry.due.isoformat()} is not after date '
                f"{entry.date.isoformat()}"
            )


def find(table: CalibrationTable, ch: Channel) -> CalibrationEntry | None:
    """The entry covering ``ch`` (see the module docstring for the rule), or None."""
    serial = ch.instrument.serial if ch.instrument is not None else ""
    if serial and f"{SERIAL_PREFIX}{serial}" in table:
        return table[f"{SERIAL_PREFIX}{serial}"]
    best: str | None = None
    for key in table:
        if key.startswith(SERIAL_PREFIX):
            continue
        if (ch.id == key or ch.id.startswith(key + ":")) and (best is None or len(key) > len(best)):
            best = key
    return None if best is None else table[best]


def annotator(table: CalibrationTable) -> Callable[[Channel], Channel]:
    """What the store applies to each channel it is given: the covering certificate put on it
    (a channel no entry covers keeps what it came with, e.g. an agent's own)."""

    def annotate(ch: Channel) -> Channel:
        entry = find(table, ch)
        return ch if entry is None else replace(ch, calibration=entry.calibration())

    return annotate


def flags(ch: Channel, t_end_ns: int) -> list[str]:
    """``uncalibrated`` / ``calibration_due`` for a meter channel over a phase ending at
    ``t_end_ns`` (UTC ns); nothing for other channels and simulated sources."""
    if ch.source_class != "meter":
        return []
    if ch.instrument is not None and ch.instrument.source == SIMULATED:
        return []
    cal = ch.calibration
    if cal is None or not cal.due:
        return [FLAG_UNCALIBRATED]
    end_day = dt.datetime.fromtimestamp(t_end_ns / 1e9, dt.UTC).date()
    try:
        due = dt.date.fromisoformat(cal.due)
    except ValueError:
        return [FLAG_UNCALIBRATED]
    return [FLAG_DUE] if end_day > due else []
