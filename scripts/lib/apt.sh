# Sourced by the install-*-deps.sh scripts: apt_install WHO PACKAGE... installs Debian packages with one
# `apt-get update` and one install, as root or through sudo when there is one; fails loudly (naming WHO and
# the command to run by hand) when it cannot.
apt_install() {
    local who="$1"
    shift
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "$who: $* missing and I am not root (no sudo either)." >&2
            echo "$who: run as root: apt-get install -y --no-install-recommends $*" >&2
            return 1
        fi
        sudo=(sudo)
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$who: no apt-get here; install $* (Debian packages) yourself." >&2
        return 1
    fi
    echo "$who: installing $* from the Debian mirror" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}
