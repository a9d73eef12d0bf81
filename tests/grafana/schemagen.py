"""Derive a JSON Schema for Grafana dashboards from the pinned grafana-foundation-sdk types.

Why derived: no Grafana server can run here, and the PyPI package ships no JSON Schema, only Python
types generated (by Grafana's ``cog``) from Grafana's own CUE schemas for one Grafana release. The
package is pinned exactly in pyproject.toml (``grafana-foundation-sdk==1769699379!11.6.0``, "types
and builders generated for Grafana v11.6.x"), so its types are the dashboard schema of Grafana 11.6.

How: every generated model class has class-level annotations (the field types; ``Optional`` marks
a field that may be absent or null) and a ``to_json`` whose source names the JSON key of every
field: keys in the initial ``payload = {...}`` literal are required, keys set under
``if self.x is not None`` are optional. Enums become ``enum`` lists, ``Literal`` too, a reference
to another model a ``$ref``; ``object`` (Grafana's ``_`` or ``{...}``) accepts anything. Every
object is closed (``additionalProperties: false``) except the structs Grafana's CUE leaves open
(``OPEN``): a key the pinned Grafana does not know fails validation instead of being dropped
silently.

``python -m tests.grafana.schemagen`` rewrites the vendored copy
(``tests/grafana/schema/grafana-11.6-dashboard.schema.json``); a test regenerates it from the
installed package and compares, so a different SDK version cannot slip in unnoticed.
"""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import json
import sys
import textwrap
import types
import typing
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE = "grafana-foundation-sdk"
PINNED_VERSION = "1769699379!11.6.0"
GRAFANA_VERSION = "11.6"
SCHEMA_PATH = Path(__file__).parent / "schema" / f"grafana-{GRAFANA_VERSION}-dashboard.schema.json"

# Models whose types the dashboards use: the dashboard itself, the Prometheus query, shared types;
# and the panel plugins the powerd dashboards use (``panel.<type>``: options and field config).
MODULES = ("dashboard", "common", "prometheus")
PANEL_MODULES = ("timeseries", "table", "stat", "bargauge")

# Structs that Grafana's CUE declares open (``...``): Grafana stores datasource-specific keys in
# them (a Prometheus annotation keeps ``step``, ``titleFormat``, ``tagKeys`` beside ``expr``).
OPEN = {"dashboard.AnnotationQuery"}

_PRIMITIVES: dict[Any, dict[str, Any]] = {
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    bool: {"type": "boolean"},
    object: {},
    typing.Any: {},
}


def _json_keys(cls: type) -> tuple[dict[str, str], set[str]]:
    """(attribute -> JSON key, required keys) read from the source of ``cls.to_json``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls.to_json)))  # type: ignore[attr-defined]
    keys: dict[str, str] = {}
    required: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Dict):
            for k, v in zip(node.value.keys, node.value.values, strict=True):
                if isinstance(k, ast.Constant) and isinstance(v, ast.Attribute):
                    keys[v.attr] = str(k.value)
                    required.add(str(k.value))
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript):
            target = node.targets[0]
            if (
                isinstance(target.slice, ast.Constant)
                and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "self"
            ):
                keys[node.value.attr] = str(target.slice.value)
    return keys, required


class _Builder:
    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}

    @staticmethod
    def name(model: type) -> str:
        return f"{model.__module__.rsplit('.', 1)[-1]}.{model.__name__}"

    def ref(self, cls: type) -> dict[str, Any]:
        name = self.name(cls)
        if name not in self.defs:
            self.defs[name] = {}  # placeholder against recursion
            self.defs[name] = self.model(cls)
        return {"$ref": f"#/$defs/{name}"}

    def model(self, cls: type) -> dict[str, Any]:
        if issubclass(cls, enum.Enum):
            return {"enum": [m.value for m in cls]}
        if not hasattr(cls, "to_json"):
            return {}
        keys, required = _json_keys(cls)
        hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
        props: dict[str, Any] = {}
        for attr, key in keys.items():
            hint = hints[attr]
            nullable = _is_optional(hint)
            schema = self.type(_strip_optional(hint))
            if nullable and key in required:
                # Required but typed Optional: Grafana serialises e.g. -Infinity as null here.
                schema = {"anyOf": [schema, {"type": "null"}]}
            props[key] = schema
        out: dict[str, Any] = {"type": "object", "properties": props}
        if required:
            out["required"] = sorted(required)
        if self.name(cls) not in OPEN:
            out["additionalProperties"] = False
        return out

    def type(self, hint: Any) -> dict[str, Any]:
        if hint in _PRIMITIVES:
            return dict(_PRIMITIVES[hint])
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is list:
            return {"type": "array", "items": self.type(args[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.type(args[1])}
        if origin is typing.Literal:
            return {"enum": list(args)}
        if origin in (typing.Union, types.UnionType):
            if type(None) in args:
                return self.type(_strip_optional(hint))
            return {"anyOf": [self.type(a) for a in args]}
        if isinstance(hint, type):
            if hint.__module__.endswith("cog.variants"):
                # A datasource query or panel config variant: its plugin's own model says more.
                return {"type": "object"}
            return self.ref(hint)
        raise TypeError(f"no JSON Schema for type hint {hint!r}")


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(hint)
    )


def _strip_optional(hint: Any) -> Any:
    if not _is_optional(hint):
        return hint
    rest = [a for a in typing.get_args(hint) if a is not type(None)]
    return rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007


def installed_version() -> str:
    return metadata.version(PACKAGE)


def generate() -> dict[str, Any]:
    """The schema: ``$defs`` holds every model reachable from ``MODULES``' classes."""
    builder = _Builder()
    for module_name in MODULES:
        module = importlib.import_module(f"grafana_foundation_sdk.models.{module_name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__:
                builder.ref(cls)
    defs = builder.defs
    for module_name in PANEL_MODULES:
        module = importlib.import_module(f"grafana_foundation_sdk.models.{module_name}")
        config = module.variant_config()
        plugin: dict[str, Any] = {
            "type": {"const": config.identifier},
            "options": builder.ref(config.options_from_json_hook.__self__),
        }
        if config.field_config_from_json_hook is not None:
            custom = builder.ref(config.field_config_from_json_hook.__self__)
            plugin["fieldConfig"] = {"properties": {"defaults": {"properties": {"custom": custom}}}}
        # A panel of this plugin: the generic panel, its options and field config the plugin's.
        defs[f"panel.{config.identifier}"] = {
            "allOf": [{"$ref": "#/$defs/dashboard.Panel"}, {"properties": plugin}]
        }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            f"Grafana {GRAFANA_VERSION} dashboard schema, derived by tests/grafana/schemagen.py "
            f"from the types of {PACKAGE}=={installed_version()} (generated by Grafana's cog "
            "from Grafana's CUE schemas). Do not edit: regenerate."
        ),
        "$ref": "#/$defs/dashboard.Dashboard",
        "$defs": dict(sorted(defs.items())),
    }


def main() -> int:
    if installed_version() != PINNED_VERSION:
        print(
            f"{PACKAGE} {installed_version()} is installed; the pin is {PINNED_VERSION}",
            file=sys.stderr,
        )
        return 1
    SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA_PATH.write_text(json.dumps(generate(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
