#!/usr/bin/env bash
# Installs QGIS (Debian packages) for the @pytest.mark.qgis tests; idempotent: does nothing when
# qgis_process is already on the machine. Needs root (or sudo) and network for apt.
set -euo pipefail

if command -v qgis_process >/dev/null 2>&1 || [ -x /usr/bin/qgis_process.bin ] \
        || [ -x /usr/lib/qgis/qgis_process.bin ]; then
    echo "install-qgis: QGIS already present ($(command -v qgis_process || echo qgis_process.bin))"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install-qgis: need root or sudo to apt-get install qgis" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends qgis python3-qgis
echo "install-qgis: installed $(dpkg-query -W -f='${Version}' qgis)"
