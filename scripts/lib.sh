# Shared by scripts/demo and scripts/test: install what is missing, build.
# Sourced, not run.

# Debian packages the build, the tests and the demo need.
SHOAL_PACKAGES=(gcc make cmake pkg-config libuv1-dev libmsgpack-dev
                libcjson-dev libcriterion-dev python3 procps iproute2)

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }

# Installs the packages given that are not installed yet, with apt-get, as
# root or through sudo. Skips everything when all are present.
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
            grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null || {
            log "need root or sudo to install: ${missing[*]}"
            return 1
        }
        sudo=(sudo)
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y \
        --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
        "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 update >/dev/null
        "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y \
            --no-install-recommends "${missing[@]}" >/dev/null
    }
}

# Node.js and npm, for the json-socket interoperability test: any node on
# PATH will do, else Debian's.
ensure_node() {
    if command -v node >/dev/null && command -v npm >/dev/null; then
        return 0
    fi
    ensure_packages nodejs npm
}

# build DIR [cmake options...]: configures and builds into DIR.
build() {
    local dir=$1
    shift
    cmake -S "$SHOAL_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        "$@" >/dev/null
    cmake --build "$dir" -j "$(nproc)" -- --no-print-directory
}
