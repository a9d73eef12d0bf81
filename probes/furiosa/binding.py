"""The only module that imports FuriosaAI's Python binding, under either of its names.

- ``furiosa_smi`` (package ``furiosa-smi``, SDK 2026.4 and later, RNGD): no ``init``; each
  ``Device`` answers ``device_name()`` (``npu0``), ``uuid()``, ``dev_node_index()``,
  ``arch()``, ``power_consumption()``; errors are ``SmiError`` subclasses.
- ``furiosa_smi_py`` (package ``furiosa-smi-py``, older, Warboy and RNGD): ``init()`` first
  (without it every call fails with "Context error"); ``Device.device_info()`` gives
  ``name()/uuid()/index()/arch()``; errors are ``RuntimeError``.

Both were read from the published wheels (2026.4.0 and 2026.1.2). ``open_binding`` tries the
current name first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NAMES = ("furiosa_smi", "furiosa_smi_py")


class BindingMissing(Exception):
    """Neither module can be imported."""


class BindingError(Exception):
    """A binding call failed (message says which call)."""


@dataclass(frozen=True)
class NpuDevice:
    name: str
    uuid: str
    index: int
    arch: str
    read_power: Callable[[], object]


def _call(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as err:
        text = " ".join(str(err).split()) or type(err).__name__
        raise BindingError(f"{what}: {type(err).__name__}: {text}") from None


def open_binding(only: str | None = None) -> tuple[str, list[NpuDevice]]:
    """(module name, devices); BindingMissing if no module, BindingError if it fails."""
    errors: list[str] = []
    for name in (only,) if only else NAMES:
        try:
            mod: Any = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:
                errors.append(f"{name} not installed")
                continue
            raise BindingMissing(f"{name} cannot be imported: {err}") from None
        except Exception as err:
            raise BindingMissing(
                f"{name} cannot be imported: {type(err).__name__}: {err}"
            ) from None
        if name == "furiosa_smi_py":
            _call("furiosa_smi_py.init()", mod.init)
            return name, _old_devices(mod)
        return name, _new_devices(mod)
    raise BindingMissing(
        "; ".join(errors) + " (pip install furiosa-smi, or furiosa-smi-py for older SDKs)"
    )


def _new_devices(mod: Any) -> list[NpuDevice]:
    out = []
    for d in _call("furiosa_smi.list_devices()", mod.list_devices):
        name = str(_call("Device.device_name()", d.device_name))
        out.append(
            NpuDevice(
                name=name,
                uuid=str(_call(f"{name}: Device.uuid()", d.uuid)),
                index=int(_call(f"{name}: Device.dev_node_index()", d.dev_node_index)),
                arch=_arch(_call(f"{name}: Device.arch()", d.arch)),
                read_power=d.power_consumption,
            )
        )
    return out


def _old_devices(mod: Any) -> list[NpuDevice]:
    out = []
    for d in _call("furiosa_smi_py.list_devices()", mod.list_devices):
        info = _call("Device.device_info()", d.device_info)
        name = str(_call("DeviceInfo.name()", info.name))
        out.append(
            NpuDevice(
                name=name,
                uuid=str(_call(f"{name}: DeviceInfo.uuid()", info.uuid)),
                index=int(_call(f"{name}: DeviceInfo.index()", info.index)),
                arch=_arch(_call(f"{name}: DeviceInfo.arch()", info.arch)),
                read_power=d.power_consumption,
            )
        )
    return out


def _arch(a: object) -> str:
    """``Arch.Rngd`` → ``rngd``."""
    return str(a).rsplit(".", 1)[-1].lower()


def read_power(dev: NpuDevice) -> object:
    """One ``power_consumption()`` call; BindingError on failure."""
    return _call(f"{dev.name}: power_consumption()", dev.read_power)
