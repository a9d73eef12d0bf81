"""The one place that talks to NVML: thin calls through nvidia-ml-py (module ``pynvml``).

``pynvml`` is imported when a session opens, never at import time, so powerd runs on hosts
without it. Every NVML failure becomes ``NvmlError`` carrying the ``nvmlReturn`` code, so the rest
of the probe decides what a code means (NOT_SUPPORTED drops a channel, GPU_IS_LOST stops a GPU)
without importing pynvml. Values are returned in NVML's units (mW, mJ); ``readings`` converts.
"""

from __future__ import annotations

from typing import Any

from powerd.probes.nvml.readings import (
    NVML_ERROR_LIBRARY_NOT_FOUND,
    VALUE_TYPE_DOUBLE,
    VALUE_TYPE_SIGNED_INT,
    VALUE_TYPE_SIGNED_LONG_LONG,
    VALUE_TYPE_UNSIGNED_INT,
    VALUE_TYPE_UNSIGNED_LONG,
    VALUE_TYPE_UNSIGNED_SHORT,
    RawField,
    error_name,
)

LIBRARY = "libnvidia-ml.so.1"
_UNION_MEMBER = {
    VALUE_TYPE_DOUBLE: "dVal",
    VALUE_TYPE_UNSIGNED_INT: "uiVal",
    VALUE_TYPE_UNSIGNED_LONG: "ulVal",
    VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
    VALUE_TYPE_SIGNED_INT: "siVal",
    VALUE_TYPE_UNSIGNED_SHORT: "usVal",
}

Handle = Any  # pynvml's c_nvmlDevice_t, opaque here


TEMPERATURE_GPU = 0  # nvmlTemperatureSensors_t: the GPU core


class BindingMissing(Exception):
    """nvidia-ml-py (module ``pynvml``) is not installed."""


class NvmlError(Exception):
    """An NVML call failed with ``code`` (an nvmlReturn_t)."""

    def __init__(self, code: int, call: str, text: str) -> None:
        super().__init__(f"{call}: {text} ({error_name(code)})")
        self.code = code
        self.call = call


class Nvml:
    """An initialised NVML session: ``nvmlInit`` on creation, ``nvmlShutdown`` on ``close``."""

    def __init__(self) -> None:
        try:
            import pynvml
        except ImportError as err:
            raise BindingMissing(str(err)) from None
        self._nv: Any = pynvml
        self._error: type[Exception] = pynvml.NVMLError
        self._open = False
        self._call("nvmlInit", pynvml.nvmlInit)
        self._open = True

    def _call(self, name: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._error as err:
            code = int(getattr(err, "value", -1))
            if code == NVML_ERROR_LIBRARY_NOT_FOUND:
                text = f"{LIBRARY} not found"
            else:
                try:
                    text = str(err)
                except Exception:  # str() itself calls into the library
                    text = "NVML error"
            raise NvmlError(code, name, text) from None

    def close(self) -> None:
        if self._open:
            self._open = False
            self._call("nvmlShutdown", self._nv.nvmlShutdown)

    def driver_version(self) -> str:
        return str(self._call("nvmlSystemGetDriverVersion", self._nv.nvmlSystemGetDriverVersion))

    def device_count(self) -> int:
        return int(self._call("nvmlDeviceGetCount", self._nv.nvmlDeviceGetCount))

    def handle(self, index: int) -> Handle:
        return self._call("nvmlDeviceGetHandleByIndex", self._nv.nvmlDeviceGetHandleByIndex, index)

    def name(self, h: Handle) -> str:
        return str(self._call("nvmlDeviceGetName", self._nv.nvmlDeviceGetName, h))

    def uuid(self, h: Handle) -> str:
        return str(self._call("nvmlDeviceGetUUID", self._nv.nvmlDeviceGetUUID, h))

    def architecture(self, h: Handle) -> int:
        return int(self._call("nvmlDeviceGetArchitecture", self._nv.nvmlDeviceGetArchitecture, h))

    def mig_enabled(self, h: Handle) -> bool:
        current, _pending = self._call("nvmlDeviceGetMigMode", self._nv.nvmlDeviceGetMigMode, h)
        return bool(current)

    def is_mig_device(self, h: Handle) -> bool:
        # nvidia-ml-py 13 returns the c_uint itself here, older versions an int.
        flag = self._call("nvmlDeviceIsMigDeviceHandle", self._nv.nvmlDeviceIsMigDeviceHandle, h)
        return bool(getattr(flag, "value", flag))

    def temperature_c(self, h: Handle) -> int:
        """The GPU core sensor (``NVML_TEMPERATURE_GPU``), whole °C."""
        fn = self._nv.nvmlDeviceGetTemperature
        return int(self._call("nvmlDeviceGetTemperature", fn, h, TEMPERATURE_GPU))

    def power_usage_mw(self, h: Handle) -> int:
        return int(self._call("nvmlDeviceGetPowerUsage", self._nv.nvmlDeviceGetPowerUsage, h))

    def total_energy_mj(self, h: Handle) -> int:
        try:  # the hot path: every GPU at every read, so no wrapper
            return int(self._nv.nvmlDeviceGetTotalEnergyConsumption(h))
        except self._error as err:
            code = int(getattr(err, "value", -1))
            raise NvmlError(code, "nvmlDeviceGetTotalEnergyConsumption", str(err)) from None

    def field(self, h: Handle, field_id: int) -> RawField:
        """One field value (the hot path: a power field of every GPU at every read)."""
        try:
            fv = self._nv.nvmlDeviceGetFieldValues(h, [field_id])[0]
        except self._error as err:
            code = int(getattr(err, "value", -1))
            raise NvmlError(code, "nvmlDeviceGetFieldValues", str(err)) from None
        ret, t_us = fv.nvmlReturn, fv.timestamp
        if ret:  # the union is not meaningful for a failed field
            return RawField(field_id, 0, ret, -1, 0, t_us)
        vtype = fv.valueType
        return RawField(
            field_id, 0, ret, vtype, getattr(fv.value, _UNION_MEMBER.get(vtype, "ullVal")), t_us
        )

    def fields(self, h: Handle, field_ids: list[int]) -> list[RawField]:
        """Field values; each carries its own nvmlReturn (the call can succeed while one fails)."""
        values = self._call(
            "nvmlDeviceGetFieldValues", self._nv.nvmlDeviceGetFieldValues, h, field_ids
        )
        out: list[RawField] = []
        # Ids are passed as plain ints (scope 0); NVML echoes them back, so they are not re-read.
        for field_id, fv in zip(field_ids, values, strict=True):
            ret, t_us = fv.nvmlReturn, fv.timestamp
            if ret:  # the union is not meaningful for a failed field
                out.append(RawField(field_id, 0, ret, -1, 0, t_us))
                continue
            vtype = fv.valueType
            value = getattr(fv.value, _UNION_MEMBER.get(vtype, "ullVal"))
            out.append(RawField(field_id, 0, ret, vtype, value, t_us))
        return out
