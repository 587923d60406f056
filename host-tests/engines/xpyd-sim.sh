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

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
ENGINES_DIR="${ENGINES_DIR:-$REPO/target/engines}"
XPYD_SIM_VERSION="${XPYD_SIM_VERSION:-0.5.0}"
VENV="$ENGINES_DIR/venv"
RUN_DIR="$ENGINES_DIR/run"
PID_FILE="$RUN_DIR/xpyd-sim.pid"
URL_FILE="$RUN_DIR/xpyd-sim.url"
LOG_FILE="$RUN_DIR/xpyd-sim.log"

log() { printf '[xpyd-sim.sh] %s\n' "$*" >&2; }

install_sim() {
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
    [[ -x "$VENV/bin/xpyd-sim" ]] || "$VENV/bin/pip" install -q "xpyd-sim==$XPYD_SIM_VERSION"
}

running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

start_sim() {
    if running_pid >/dev/null; then cat "$URL_FILE"; return; fi
    install_sim
    mkdir -p "$RUN_DIR"
    local port="${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
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
    echo $! >"$PID_FILE"
    echo "$url" >"$URL_FILE"
    for _ in $(seq 1 60); do
        if curl -fsS "$url/health" >/dev/null 2>&1; then echo "$url"; return; fi
        running_pid >/dev/null || { log "xpyd-sim exited:"; tail -n 30 "$LOG_FILE" >&2; exit 1; }
        sleep 0.5
    done
    log "xpyd-sim not healthy in 30 s; see $LOG_FILE"
    stop_sim
    exit 1
}

stop_sim() {
    local pid
    if pid="$(running_pid)"; then
        kill "$pid"
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
        log "stopped xpyd-sim (pid $pid)"
    fi
    rm -f "$PID_FILE" "$URL_FILE"
}

case "${1:-start}" in
    start) start_sim ;;
    stop)  stop_sim ;;
    url)   running_pid >/dev/null && cat "$URL_FILE" ;;
    *) echo "usage: $0 [start|stop|url]" >&2; exit 2 ;;
esac
