"""Fake ``furiosa_smi_py`` (older API: init() first, Device.device_info(), RuntimeError)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fake_common import STATE, next_power

_CTX = {"init": False}


def init():
    _CTX["init"] = True


def _ctx():
    if not _CTX["init"]:
        raise RuntimeError("Context error")


class DeviceInfo:
    def __init__(self, d):
        self._d = d

    def name(self):
        return self._d["name"]

    def uuid(self):
        return self._d["uuid"]

    def index(self):
        return self._d["index"]

    def arch(self):
        return self._d["arch"]


class Device:
    def __init__(self, d):
        self._d = d

    def device_info(self):
        _ctx()
        return DeviceInfo(self._d)

    def power_consumption(self):
        _ctx()
        p = next_power(self._d)
        if p == "error":
            raise RuntimeError("Io error")
        return p


def list_devices():
    _ctx()
    return [Device(d) for d in STATE["devices"]]
