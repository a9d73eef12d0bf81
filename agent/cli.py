"""``powerd-agent``: the edge agent's command line (its daemon arrives with the MQTT issue)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="powerd-agent",
        description="powerd's edge agent: samples local probes and publishes blocks and markers "
        "over MQTT. This build has no agent daemon yet; use `powerd measure` on this host.",
    )
    parser.parse_args(argv)
    print("powerd-agent: the MQTT agent is not part of this build yet", file=sys.stderr)
    return 2
