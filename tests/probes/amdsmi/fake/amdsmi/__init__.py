"""A fake of AMD's ``amdsmi`` Python binding for tests, driven by a JSON file ($FAKE_AMDSMI).

It exposes the calls the probe makes with the binding's names, exception classes and status
codes; each device's ``power_info`` and ``energy`` dicts are returned as written in the file
(so a case can give the key names of any ROCm version), and an energy accumulator advances at
``power_w`` from import time in 1 ms steps unless ``frozen``. ``fail`` makes a call raise an
``AmdSmiLibraryException(code)`` after some calls. ``import_error`` mimics the binding on a host
without libamd_smi.so (7.0.2 raises ``KeyError: 'libamd_smi.so'`` at import).
"""

import json
import os
import time
from pathlib import Path

_STATE = json.loads(Path(os.environ["FAKE_AMDSMI"]).read_text())
if _STATE.get("import_error"):
    raise KeyError("libamd_smi.so")
_T0 = time.monotonic()
_CALLS = {}
_NAMES = {
    2: "AMDSMI_STATUS_NOT_SUPPORTED - Feature not supported",
    10: "AMDSMI_STATUS_NO_PERM - Permission Denied",
    34: "AMDSMI_STATUS_DRIVER_NOT_LOADED - Driver not loaded",
    32: "AMDSMI_STATUS_NOT_INIT - Not initialized",
    12: "AMDSMI_STATUS_IO - I/O Error",
}
_LIB = {"initialised": False}


class AmdSmiException(Exception):
    pass


class AmdSmiLibraryException(AmdSmiException):
    def __init__(self, err_code):
        super().__init__(err_code)
        self.err_code = err_code

    def get_error_code(self):
        return self.err_code

    def __str__(self):
        return "Error code:\n\t{} | {}".format(self.err_code, _NAMES.get(self.err_code, "?"))


class _Handle:
    def __init__(self, i):
        self.i = i


def _dev(h, call):
    if not _LIB["initialised"]:
        raise AmdSmiLibraryException(32)
    d = _STATE["devices"][h.i]
    n = _CALLS[(h.i, call)] = _CALLS.get((h.i, call), 0) + 1
    fail = d.get("fail", {}).get(call)
    if fail and n > fail["after"]:
        raise AmdSmiLibraryException(fail["code"])
    return d


def amdsmi_init(flag=None):
    if _STATE.get("init_error"):
        raise AmdSmiLibraryException(_STATE["init_error"])
    _LIB["initialised"] = True


def amdsmi_shut_down():
    _LIB["initialised"] = False
    log = os.environ.get("FAKE_AMDSMI_LOG")
    if log:
        with open(log, "a") as f:
            f.write("shut_down\n")


def amdsmi_get_lib_version():
    return dict(_STATE.get("version", {"major": 0, "minor": 0, "release": 0}))


def amdsmi_get_processor_handles():
    if not _LIB["initialised"]:
        raise AmdSmiLibraryException(32)
    return [_Handle(i) for i in range(len(_STATE["devices"]))]


def amdsmi_get_gpu_device_uuid(h):
    return _dev(h, "uuid")["uuid"]


def amdsmi_get_gpu_device_bdf(h):
    return _dev(h, "bdf")["bdf"]


def amdsmi_get_gpu_asic_info(h):
    return {"market_name": _dev(h, "asic")["name"], "vendor_id": 4098}


def amdsmi_get_power_info(h):
    d = _dev(h, "power_info")
    if "power_info" not in d:
        raise AmdSmiLibraryException(2)
    return dict(d["power_info"])


def amdsmi_get_energy_count(h):
    d = _dev(h, "energy")
    if "energy" not in d:
        raise AmdSmiLibraryException(2)
    e = dict(d["energy"])
    if not d.get("frozen") and "power_w" in d:
        elapsed_ms = int((time.monotonic() - _T0) * 1000)
        key = "energy_accumulator" if "energy_accumulator" in e else "power"
        e[key] = e[key] + int(elapsed_ms * 1e-3 * d["power_w"] / (e["counter_resolution"] * 1e-6))
        e["timestamp"] = e["timestamp"] + elapsed_ms * 1_000_000
    return e
