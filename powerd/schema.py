"""Strict TOML configuration: msgspec structs are the schema, errors are one line each.

Every config table is a ``Table`` (a frozen ``msgspec.Struct`` that forbids unknown keys); a key is
one annotated field, its range a ``msgspec.Meta``. ``convert`` checks a ``tomllib``-parsed dict
against a schema with no coercion (``"18091"`` is not a port, ``18090.5`` is not an integer, a
string is not a list) and turns msgspec's error into one line naming the file, the table and the
key, what is expected (said from the schema itself, so it cannot disagree with the check) and what
was found, e.g.::

    config /etc/powerd/powerd.toml: [http] port: expected an integer from 1 to 65535, got "18091"

msgspec rather than pydantic: no other part of powerd needs models (the wire formats are plain
JSON checked by hand on hot paths), msgspec is one small wheel without dependencies, strict by
default, and its errors carry the exact path (``$.http.port``) that the line above is made from.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import msgspec.inspect as mi

from powerd.errors import PowerdError

T = TypeVar("T")

MAX_S = 86400.0  # no duration in a config is longer than a day (and TOML's inf is not one)


class Table(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One config table: known keys only, each typed and ranged; frozen once read."""


def _expect(text: str, **constraints: Any) -> Any:
    """``msgspec.Meta`` with the error text said in words (the ``description``)."""
    return msgspec.Meta(description=text, **constraints)


# the value kinds shared by the daemon's and the agent's tables
Port = Annotated[int, _expect("an integer from 1 to 65535", ge=1, le=65535)]
PortOrAny = Annotated[int, _expect("an integer from 0 (any free port) to 65535", ge=0, le=65535)]
Seconds = Annotated[
    float, _expect(f"a number of seconds greater than 0, at most {MAX_S:.0f}", gt=0, le=MAX_S)
]
SecondsOrOff = Annotated[
    float, _expect(f"a number of seconds from 0 (off) to {MAX_S:.0f}", ge=0, le=MAX_S)
]
Positive = Annotated[float, _expect("a number greater than 0", gt=0, le=1e15)]
NonNegative = Annotated[float, _expect("a number of at least 0", ge=0, le=1e15)]
Count = Annotated[int, _expect("an integer of at least 1", ge=1)]
Name = Annotated[str, _expect("a non-empty string", min_length=1)]
Names = tuple[Name, ...]


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is Path:
        if isinstance(value, str) and value:
            return Path(value)
        raise ValueError("expected a path")
    raise NotImplementedError(kind)


_PLURAL = {
    "a string": "strings",
    "a non-empty string": "non-empty strings",
    "an integer": "integers",
}


def describe(info: mi.Type) -> str:
    """What a schema type accepts, in words (the ``expected ...`` of an error)."""
    if isinstance(info, mi.Metadata):
        text = (info.extra_json_schema or {}).get("description")
        return str(text) if text else describe(info.type)
    if isinstance(info, mi.UnionType):  # X | None: TOML has no null, None is the key left out
        return " or ".join(describe(t) for t in info.types if not isinstance(t, mi.NoneType))
    if isinstance(info, mi.BoolType):
        return "true or false"
    if isinstance(info, mi.IntType | mi.FloatType):
        noun = "an integer" if isinstance(info, mi.IntType) else "a number"
        low = info.ge if info.ge is not None else info.gt
        if info.ge is not None and info.le is not None:
            return f"{noun} from {info.ge} to {info.le}"
        if low is not None:
            return f"{noun} {'of at least' if info.ge is not None else 'greater than'} {low}"
        return noun
    if isinstance(info, mi.StrType):
        if info.pattern:
            return f"a string matching {info.pattern}"
        return "a non-empty string" if info.min_length else "a string"
    if isinstance(info, mi.ListType | mi.VarTupleType):
        item = describe(info.item_type)
        return f"a list of {_PLURAL.get(item, item)}"
    if isinstance(info, mi.CustomType) and info.cls is Path:
        return "a path (a non-empty string)"
    if isinstance(info, mi.StructType):
        return "a table"
    return str(info)


def shown(value: Any) -> str:
    """A found value as TOML would write it, cut to one short line."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | list | int):
        text = json.dumps(value, default=str, ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


_MISSING = object()
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _steps(path: str) -> list[str | int]:
    return [name if name else int(index) for name, index in _STEP.findall(path)]


def _struct(info: mi.Type) -> mi.StructType | None:
    """The table type behind ``info`` (``X | None`` and annotations looked through)."""
    if isinstance(info, mi.Metadata):
        return _struct(info.type)
    if isinstance(info, mi.UnionType):
        found = [s for s in map(_struct, info.types) if s is not None]
        return found[0] if found else None
    return info if isinstance(info, mi.StructType) else None


def _walk(info: mi.Type, data: Any, steps: list[str | int]) -> tuple[mi.Type | None, Any]:
    """The schema type and the found value at ``steps`` (None / _MISSING past what exists)."""
    here: mi.Type | None = info
    for step in steps:
        if isinstance(step, int):
            while isinstance(here, mi.Metadata | mi.UnionType):
                if isinstance(here, mi.Metadata):
                    here = here.type
                else:
                    here = next(t for t in here.types if not isinstance(t, mi.NoneType))
            here = here.item_type if isinstance(here, mi.ListType | mi.VarTupleType) else None
            ok = isinstance(data, list) and step < len(data)
            data = data[step] if ok else _MISSING
        else:
            table = _struct(here) if here is not None else None
            fields = {f.name: f.type for f in table.fields} if table else {}
            here = fields.get(step)
            data = data.get(step, _MISSING) if isinstance(data, dict) else _MISSING
    return here, data


def _allowed(info: mi.Type | None) -> str:
    table = _struct(info) if info is not None else None
    return ", ".join(f.name for f in table.fields) if table else "none"


Label = Callable[[list[str | int]], str]


def table_key(steps: list[str | int]) -> str:
    """``[http] port``, ``[daemon] probes[1]``, ``[influx]``: where in a file a value is."""
    if not steps:
        return "the file"
    head, rest = steps[0], steps[1:]
    key = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in rest).lstrip(".")
    return f"[{head}] {key}" if key else f"[{head}]"


def explain(err: msgspec.ValidationError, schema: type, data: Any, label: Label = table_key) -> str:
    """msgspec's error as ``<where>: expected <what>, got <value>`` from the schema and data."""
    m = _AT.match(str(err))
    message, path = (m.group("msg"), m.group("path") or "") if m else (str(err), "")
    steps = _steps(path)
    root = mi.type_info(schema)
    info, found = _walk(root, data, steps)
    unknown = re.fullmatch(r"Object contains unknown field `(.*)`", message, re.S)
    missing = re.fullmatch(r"Object missing required field `(.*)`", message, re.S)
    if unknown:
        key = unknown.group(1)
        if not steps and label is table_key:
            tables = ", ".join(f"[{name}]" for name in _allowed(root).split(", "))
            return f"unknown table [{key}]; allowed: {tables}"
        return f"{label([*steps, key])}: unknown key; allowed: {_allowed(info)}"
    if missing:
        key = missing.group(1)
        want, _ = _walk(root, data, [*steps, key])
        expected = f"; expected {describe(want)}" if want is not None else ""
        return f"{label([*steps, key])}: required{expected}"
    if info is None:
        return f"{label(steps)}: {message}"
    if _struct(info) is not None and isinstance(found, dict):
        return f"{label(steps)}: {message}"  # a check across keys (a __post_init__)
    got = "" if found is _MISSING else f", got {shown(found)}"
    return f"{label(steps)}: expected {describe(info)}{got}"


def convert(data: Any, schema: type[T], where: str, label: Label = table_key) -> T:
    """``data`` checked into ``schema``; a mismatch is one ``PowerdError`` line after ``where``."""
    try:
        return msgspec.convert(data, schema, dec_hook=_dec_hook)
    except msgspec.ValidationError as err:
        line = f"{where}{explain(err, schema, data, label)}"
        raise PowerdError(line.replace("\n", "\\n")) from None  # one line, whatever a key holds


def read_toml(path: Path) -> dict[str, Any]:
    """A config file parsed; a missing file or bad TOML is one line naming the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise PowerdError(f"cannot read config {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise PowerdError(f"config {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as err:
        raise PowerdError(f"config {path} is not valid TOML: {err}") from None
