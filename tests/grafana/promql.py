"""What Grafana does to a panel's query before the datasource runs it, for the query tests.

Grafana substitutes template variables (``$name``, ``${name}``, ``[[name]]``) and its interval
variables (``$__interval``, ``$__rate_interval``, ``$__range``) in a Prometheus query's ``expr``;
a multi-value or "All" selection of a variable with ``allValue`` becomes that value (``.*``), a
multi-value selection ``(a|b)`` with regex characters escaped, as the Prometheus datasource does.
``label_values(selector, label)`` variable queries become ``/api/v1/label/<label>/values`` calls
with ``match[]=selector``, which is how Grafana's Prometheus datasource resolves them.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from tests.servers import http_json

ALL = "$__all"
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<sel>.+),\s*)?(?P<label>\w+)\)$")
_REGEX_SPECIAL = re.compile(r"([\\^$.|?*+()\[\]{}])")


def _regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(r"\\\\\1", value)


def substitute(expr: str, variables: dict[str, Any], board_vars: dict[str, dict[str, Any]]) -> str:
    """``expr`` with every variable replaced; an unknown variable is an error (a typo)."""

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in variables:
            raise KeyError(f"variable ${name} of {expr!r} has no value in the test")
        v = variables[name]
        spec = board_vars.get(name, {})
        if v == ALL:
            return str(spec.get("allValue", ".*"))
        if isinstance(v, list):
            if len(v) == 1:
                return _regex_escape(v[0])
            return "(" + "|".join(_regex_escape(x) for x in v) + ")"
        return str(v)

    return _VAR.sub(value, expr)


def label_values(base_url: str, query: str) -> list[str]:
    """Run a ``label_values(...)`` variable query the way Grafana's Prometheus datasource does."""
    m = _LABEL_VALUES.match(query.strip())
    if m is None:
        raise ValueError(f"not a label_values query: {query!r}")
    params = {"match[]": m["sel"]} if m["sel"] else {}
    url = f"{base_url}/api/v1/label/{m['label']}/values"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    reply = http_json(url)
    assert reply["status"] == "success", reply
    return sorted(reply["data"])


def query_range(base_url: str, expr: str, start_s: float, end_s: float, step_s: float) -> Any:
    reply = http_json(
        f"{base_url}/api/v1/query_range",
        {"query": expr, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}", "step": f"{step_s:g}"},
    )
    assert reply["status"] == "success", reply
    return reply["data"]["result"]
