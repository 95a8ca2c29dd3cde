# Sourced by the .ci/install-*.sh scripts: the one way they get apt-get rights.
# apt_prepare NAME WHAT: sets SUDO ("" as root, "sudo" otherwise) and runs `apt-get update`,
# or exits 1 naming NAME and WHAT to install by hand when there is no apt-get or no root/sudo.
apt_prepare() {
    local name=$1 what=$2
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$name: no apt-get here; install $what by hand" >&2
        exit 1
    fi
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
            echo "$name: need root or sudo to apt-get install $what" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update
}
