"""The only module that imports AMD's ``amdsmi`` binding; every call's failure is ``AmdsmiError``.

The binding loads ``libamd_smi.so`` when imported, so importing it on a host without ROCm fails
with whatever that raises (a ``KeyError: 'libamd_smi.so'`` in 7.0.2): that is "missing", not
"broken". Library errors carry an AMDSMI status code (``get_error_code()``).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

STATUS_NOT_SUPPORTED = 2
STATUS_NO_PERM = 10
STATUS_DRIVER_NOT_LOADED = 34


class BindingMissing(Exception):
    """``amdsmi`` is not installed, or its library is not on this host."""


class AmdsmiError(Exception):
    """A call failed; ``code`` is the AMDSMI status if the library gave one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class Amdsmi:
    """An initialised library; ``close`` shuts it down."""

    def __init__(self) -> None:
        try:
            self._m: Any = importlib.import_module("amdsmi")
        except ModuleNotFoundError as err:
            if err.name and err.name.split(".")[0] == "amdsmi":
                raise BindingMissing("amdsmi is not installed (pip install amdsmi)") from None
            raise BindingMissing(f"amdsmi cannot be imported: {err}") from None
        except Exception as err:
            raise BindingMissing(
                f"amdsmi is installed but its library is not loadable ({type(err).__name__}: "
                f"{err}): no ROCm (libamd_smi.so) on this host"
            ) from None
        self._call("amdsmi_init", self._m.amdsmi_init)

    def _call(self, what: str, fn: Callable[..., T], *args: object) -> T:
        try:
            return fn(*args)
        except Exception as err:
            code = getattr(err, "err_code", None)
            get = getattr(err, "get_error_code", None)
            if callable(get):
                with contextlib.suppress(Exception):
                    code = get()
            text = " ".join(str(err).split()) or type(err).__name__
            raise AmdsmiError(f"{what}: {text}", code if isinstance(code, int) else None) from None

    def handles(self) -> list[object]:
        return list(
            self._call("amdsmi_get_processor_handles", self._m.amdsmi_get_processor_handles)
        )

    def uuid(self, h: object) -> str:
        return str(self._call("amdsmi_get_gpu_device_uuid", self._m.amdsmi_get_gpu_device_uuid, h))

    def bdf(self, h: object) -> str:
        return str(self._call("amdsmi_get_gpu_device_bdf", self._m.amdsmi_get_gpu_device_bdf, h))

    def name(self, h: object) -> str:
        info = self._call("amdsmi_get_gpu_asic_info", self._m.amdsmi_get_gpu_asic_info, h)
        return str(info.get("market_name", "?")) if isinstance(info, Mapping) else "?"

    def power_info(self, h: object) -> Mapping[str, object]:
        info = self._call("amdsmi_get_power_info", self._m.amdsmi_get_power_info, h)
        if not isinstance(info, Mapping):
            raise AmdsmiError(f"amdsmi_get_power_info: not a dict: {info!r:.60}")
        return info

    def energy_count(self, h: object) -> Mapping[str, object]:
        count = self._call("amdsmi_get_energy_count", self._m.amdsmi_get_energy_count, h)
        if not isinstance(count, Mapping):
            raise AmdsmiError(f"amdsmi_get_energy_count: not a dict: {count!r:.60}")
        return count

    def version(self) -> str:
        get = getattr(self._m, "amdsmi_get_lib_version", None)
        if not callable(get):
            return "?"
        try:
            v = get()
        except Exception:
            return "?"
        if isinstance(v, Mapping):
            return ".".join(str(v[k]) for k in ("major", "minor", "release") if k in v) or "?"
        return str(v)

    def close(self) -> None:
        self._call("amdsmi_shut_down", self._m.amdsmi_shut_down)
