"""Shared state of the fake FuriosaAI bindings: devices from $FAKE_FURIOSA (a JSON file).

A device's ``power`` is a number, or a list cycled call by call whose items may be numbers,
``"error"`` (the call raises) or any other value (returned as is, e.g. a string).
"""

import json
import os
from pathlib import Path

STATE = json.loads(Path(os.environ["FAKE_FURIOSA"]).read_text())
_calls = {}


def next_power(dev):
    p = dev["power"]
    if not isinstance(p, list):
        return p
    n = _calls[dev["name"]] = _calls.get(dev["name"], -1) + 1
    return p[n % len(p)]
