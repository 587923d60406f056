#!/usr/bin/env bash
# xpyd-sim.sh — the PyPI simulator `xpyd-sim` (an OpenAI-compatible fake
# engine, FastAPI + uvicorn) on 127.0.0.1, as a second upstream next to
# llama-server.sh.
#
# Usage:
#   host-tests/engines/xpyd-sim.sh start   # install if needed, start, print URL
#   host-tests/engines/xpyd-sim.sh stop
#   host-tests/engines/xpyd-sim.sh url
#
# Environment: ENGINES_DIR (default <repo>/target/engines), PORT (default: free port).
set -euo pipefail
shopt -s inherit_errexit

ENGINE=xpyd-sim
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
XPYD_SIM_VERSION="${XPYD_SIM_VERSION:-0.5.0}"

install_sim() {
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
    [[ -x "$VENV/bin/xpyd-sim" ]] || "$VENV/bin/pip" install -q "xpyd-sim==$XPYD_SIM_VERSION"
}

start_sim() {
    if running_pid >/dev/null; then cat "$URL_FILE"; return; fi
    install_sim
    mkdir -p "$RUN_DIR"
    local port="${PORT:-$(free_port)}"
    local url="http://127.0.0.1:$port"
    # --host: its default is 0.0.0.0. --eos-min-ratio 1: otherwise it draws
    # the output length at random in [ceil(max_tokens*0.5), max_tokens] and
    # may also report finish_reason "stop" at max_tokens; with 1 every stream
    # has exactly max_tokens content events and finish_reason "length".
    # Small delays keep tests fast (defaults: 50 ms prefill, 10 ms/token).
    "$VENV/bin/xpyd-sim" serve \
        --host 127.0.0.1 --port "$port" --model tiny-sim \
        --eos-min-ratio 1 \
        --prefill-delay-ms 1 --kv-transfer-delay-ms 0 --decode-delay-per-token-ms 1 \
        >"$LOG_FILE" 2>&1 &
    started $! "$url"
    wait_healthy "$url" 60
}

case "${1:-start}" in
    start) start_sim ;;
    stop)  stop_engine ;;
    url)   running_pid >/dev/null && cat "$URL_FILE" ;;
    *) echo "usage: $0 [start|stop|url]" >&2; exit 2 ;;
esac
