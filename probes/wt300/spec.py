"""The ``wt300:`` probe spec: ``wt300:<device path>[,key=value...]``; every mistake is one line.

Keys (see README.md): ``rate`` (update interval in s), ``vrange``/``irange`` (``auto`` or the
expected maximum rms value: the smallest range at least ``headroom`` times it is fixed),
``headroom``, ``integ`` (on/off), ``integ_h``, ``baud``, ``transport`` (serial/usbtmc),
``verify`` (dup/none), ``coupling`` (dc/ac), ``model``, ``elements``, ``id``, ``measures``,
``stamp``, ``vi`` (on/off: also read U, I and LAMBDA of each element, for
``read_electrical``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from powerd.errors import SpecError
from powerd.probes.base import parse_kv
from powerd.probes.wt300.models import MODELS, RATES_E_S, lookup

KEYS = {
    "rate",
    "vrange",
    "irange",
    "headroom",
    "integ",
    "integ_h",
    "baud",
    "transport",
    "verify",
    "coupling",
    "model",
    "elements",
    "id",
    "measures",
    "stamp",
    "vi",
}
BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600)
EXAMPLE = "wt300:/dev/ttyUSB0,rate=0.25,irange=5 or wt300:/dev/usbtmc0"
DEFAULT_RATE_S = 0.25
STAMP_SERIAL_S = 0.01
STAMP_USBTMC_S = 0.005


@dataclass(frozen=True)
class Wt300Spec:
    path: str
    rate_s: float
    vrange_v: float | None
    irange_a: float | None
    headroom: float
    integ: bool
    integ_h: float
    baud: int
    transport: str
    copies: int
    coupling: str
    model: str | None
    elements: tuple[int, ...] | None
    instance: str
    measures: str
    stamp_s: float
    vi: bool = False


def _num(key: str, text: str, lo: float, hi: float) -> float:
    try:
        v = float(text)
    except ValueError:
        raise SpecError(f"wt300: {key}={text!r} is not a number") from None
    if not (math.isfinite(v) and lo <= v <= hi):
        raise SpecError(f"wt300: {key} must be within [{lo:g}, {hi:g}], got {text}")
    return v


def _choice(key: str, text: str, choices: dict[str, object]) -> object:
    if text.lower() not in choices:
        raise SpecError(f"wt300: {key}={text!r}; use one of {', '.join(choices)}")
    return choices[text.lower()]


def path_id(path: str) -> str:
    """A channel-id-safe name for a device path: ``/dev/ttyUSB0`` → ``ttyUSB0``."""
    name = PurePosixPath(path).name or "meter"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def parse_spec(args: str) -> Wt300Spec:
    path, _, rest = args.partition(",")
    path = path.strip()
    if not path or "=" in path:
        raise SpecError(f"wt300: give the device path first, e.g. {EXAMPLE}")
    kv = parse_kv(rest, KEYS)
    transport = str(
        _choice(
            "transport",
            kv.get("transport", "usbtmc" if "usbtmc" in path else "serial"),
            {"serial": "serial", "usbtmc": "usbtmc"},
        )
    )
    rate = _num("rate", kv.get("rate", str(DEFAULT_RATE_S)), 0.0, 60.0)
    if not any(abs(rate - r) < 1e-9 for r in RATES_E_S):
        raise SpecError(
            f"wt300: rate={kv['rate']} s is not an update interval of the meter; use one of "
            "0.1, 0.25, 0.5, 1, 2, 5 (and 10, 20 on the E models)"
        )
    ranges: dict[str, float | None] = {}
    for key, unit in (("vrange", "V"), ("irange", "A")):
        text = kv.get(key, "auto")
        ranges[key] = None if text.lower() == "auto" else _num(key, text.rstrip(unit), 1e-4, 1e4)
    model = kv.get("model")
    if model is not None and lookup(model) is None:
        raise SpecError(f"wt300: unknown model {model!r}; known: {', '.join(MODELS)}")
    elements: tuple[int, ...] | None = None
    if "elements" in kv:
        digits = re.findall(r"\d", kv["elements"])
        if not digits or set(digits) - {"1", "2", "3"} or re.search(r"\d\d\d\d", kv["elements"]):
            raise SpecError("wt300: elements takes element numbers 1-3, e.g. elements=1/3")
        elements = tuple(sorted({int(d) for d in digits}))
    baud = int(_num("baud", kv.get("baud", "9600"), 1200, 57600))
    if baud not in BAUDS:
        raise SpecError(f"wt300: baud must be one of {', '.join(map(str, BAUDS))}")
    verify_default = "dup" if transport == "serial" else "none"
    copies = int(_choice("verify", kv.get("verify", verify_default), {"dup": 2, "none": 1}))  # type: ignore[call-overload]
    instance = kv.get("id", path_id(path))
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", instance):
        raise SpecError("wt300: id takes letters, digits, '_', '.', '-'")
    stamp_default = STAMP_SERIAL_S if transport == "serial" else STAMP_USBTMC_S
    return Wt300Spec(
        path=path,
        rate_s=rate,
        vrange_v=ranges["vrange"],
        irange_a=ranges["irange"],
        headroom=_num("headroom", kv.get("headroom", "1"), 1.0, 100.0),
        integ=bool(_choice("integ", kv.get("integ", "on"), {"on": True, "off": False})),
        integ_h=_num("integ_h", kv.get("integ_h", "1"), 1e-3, 1e5),
        baud=baud,
        transport=transport,
        copies=copies,
        coupling=str(_choice("coupling", kv.get("coupling", "dc"), {"dc": "dc", "ac": "ac"})),
        model=model,
        elements=elements,
        instance=instance,
        measures=kv.get("measures", ""),
        stamp_s=_num("stamp", kv.get("stamp", str(stamp_default)), 0.0, 10.0),
        vi=bool(_choice("vi", kv.get("vi", "off"), {"on": True, "off": False})),
    )
