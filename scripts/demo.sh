#!/usr/bin/env bash
# Quickstart: set up, then measure a simulated 10 W / 2 W square wave around `sleep 3`,
# with a 1 s idle baseline first, and print joules per inference. No server, no hardware.
# Also installs the `serial` extra (pyserial), which the README's examples use: the serial
# meters (`powerd probes`), their simulators (`powerd sim`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python -m pip install -q -e '.[serial]'
run="demo-$(date +%Y%m%d-%H%M%S)"
# period 0.1003 s, not 0.1: the 1 kHz samples slide across the wave as a real meter's do; a
# period of exactly 100 samples is phase-locked to the grid and rightly flagged periodic_load
exec .venv/bin/powerd measure \
    --probe sim:square,high=10,low=2,period=0.1003,duty=0.5 \
    --idle 1 --run "$run" --count 1000 --out reports -- sleep 3
