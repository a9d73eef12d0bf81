"""Fake ``furiosa_smi`` (SDK 2026.4 API: no init, methods on Device, SmiError family)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fake_common import STATE, next_power


class SmiError(Exception):
    pass


class DeviceNotAvailableError(SmiError):
    pass


class IoError(SmiError):
    pass


class Arch:
    def __init__(self, name):
        self.name = name

    def __str__(self):
        return "Arch." + self.name.capitalize()


class Device:
    def __init__(self, d):
        self._d = d

    def device_name(self):
        return self._d["name"]

    def uuid(self):
        return self._d["uuid"]

    def dev_node_index(self):
        return self._d["index"]

    def arch(self):
        return Arch(self._d["arch"])

    def power_consumption(self):
        p = next_power(self._d)
        if p == "error":
            raise DeviceNotAvailableError("device not available: " + self._d.get("bdf", "?"))
        return p

    def __repr__(self):
        return f"Device(name='{self._d['name']}')"


def list_devices():
    if STATE.get("list_error"):
        raise IoError(STATE["list_error"])
    return [Device(d) for d in STATE["devices"]]
