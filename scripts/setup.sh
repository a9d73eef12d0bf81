#!/usr/bin/env bash
# Prepare this checkout on a fresh Debian machine: system packages, a venv in .venv, powerd in it.
# Usage: scripts/setup.sh [--dev]   (--dev adds what the tests need: test tools and Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

packages=()
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv python3-pip)
if [ "$dev" = 1 ]; then
    # the tests' real parts: a browser for the HTML report and the live page (driven by the
    # playwright package of the dev extras; it never downloads a browser), the MQTT broker and
    # its clients, libfaketime for an agent whose clock is off, gcc for the fake NVML library,
    # socat for ptys
    command -v chromium >/dev/null || packages+=(chromium fonts-dejavu-core)
    command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || packages+=(mosquitto)
    command -v mosquitto_pub >/dev/null || packages+=(mosquitto-clients)
    command -v faketime >/dev/null || packages+=(faketime)
    command -v gcc >/dev/null || packages+=(gcc libc6-dev)
    command -v socat >/dev/null || packages+=(socat)
    command -v ipmitool >/dev/null || packages+=(ipmitool)
    command -v openssl >/dev/null || packages+=(openssl)
    # the time-series stores the sink and exporter tests write to and scrape from
    command -v victoria-metrics >/dev/null || packages+=(victoria-metrics)
    command -v prometheus >/dev/null || packages+=(prometheus)
fi
if [ "${#packages[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${packages[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi

python3 - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"setup: powerd needs Python >= 3.11, this python3 is {sys.version.split()[0]}")
PY

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$dev" = 1 ]; then
    .venv/bin/python -m pip install -q -e '.[dev]'
else
    .venv/bin/python -m pip install -q -e .
fi
echo "setup: ready (.venv/bin/powerd)"
