#!/usr/bin/env bash
# Installs QGIS from the distribution (Debian/Ubuntu) for the @pytest.mark.qgis tests.
# Idempotent: does nothing when qgis_process and QGIS's Python bindings are already there.
# Needs root (or sudo) and network for apt. Tests skip (with this script named) without QGIS.
set -euo pipefail

have_qgis() {
    { command -v qgis_process >/dev/null 2>&1 || [ -x /usr/bin/qgis_process.bin ]; } \
        && /usr/bin/python3 -c "import qgis.core" >/dev/null 2>&1
}

if have_qgis; then
    echo "install-qgis: QGIS already present ($(command -v qgis_process || echo /usr/bin/qgis_process.bin))"
    exit 0
fi

. "$(dirname "$0")/apt.sh"
apt_prepare install-qgis "QGIS >= 3.22 with its Python bindings"
$SUDO apt-get install -y --no-install-recommends qgis python3-qgis
have_qgis || { echo "install-qgis: QGIS installed but 'import qgis.core' fails" >&2; exit 1; }
echo "install-qgis: installed QGIS $(dpkg-query -W -f='${Version}' qgis)"
