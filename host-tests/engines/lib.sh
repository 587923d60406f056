# Sourced by the engine scripts (llama-server.sh, xpyd-sim.sh): where everything lives and a
# server's life around its pid file. The sourcing script sets ENGINE (its name) first.

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
ENGINES_DIR="${ENGINES_DIR:-$REPO/target/engines}"
VENV="$ENGINES_DIR/venv"
RUN_DIR="$ENGINES_DIR/run"
PID_FILE="$RUN_DIR/$ENGINE.pid"
URL_FILE="$RUN_DIR/$ENGINE.url"
LOG_FILE="$RUN_DIR/$ENGINE.log"

log() { printf '[%s.sh] %s\n' "$ENGINE" "$*" >&2; }

# The pid of the server `start` left running, if it still runs.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# started PID URL: the server just put in the background, for running_pid and `url`.
started() {
    echo "$1" >"$PID_FILE"
    echo "$2" >"$URL_FILE"
}

# wait_healthy URL TRIES: polls URL/health every 0.5 s; prints URL once it answers 200, stops
# the server and fails after TRIES polls or when it exits.
wait_healthy() {
    local url="$1" tries="$2"
    for _ in $(seq 1 "$tries"); do
        if curl -fsS "$url/health" >/dev/null 2>&1; then
            echo "$url"
            return
        fi
        if ! running_pid >/dev/null; then
            log "$ENGINE exited; last log lines:"
            tail -n 30 "$LOG_FILE" >&2
            exit 1
        fi
        sleep 0.5
    done
    log "$ENGINE did not become healthy in $((tries / 2)) s; see $LOG_FILE"
    stop_engine
    exit 1
}

stop_engine() {
    local pid
    if pid="$(running_pid)"; then
        kill "$pid"
        # Give it a moment to exit cleanly, then insist.
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
        log "stopped $ENGINE (pid $pid)"
    fi
    rm -f "$PID_FILE" "$URL_FILE"
}
