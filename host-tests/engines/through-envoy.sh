#!/usr/bin/env bash
# The usage_stats edit through a real Envoy in front of a real engine: starts the engine, runs
# the opt-in test host-tests/tests/suite/engine_usage.rs against it, stops the engine.
#
#   host-tests/engines/through-envoy.sh llama-server   # llama.cpp (build it first: llama-server.sh build)
#   host-tests/engines/through-envoy.sh xpyd-sim
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
engine="${1:-}"
case "$engine" in
    llama-server) model=tiny-random-llama ;;
    xpyd-sim) model=tiny-sim ;;
    *) echo "usage: $0 llama-server|xpyd-sim" >&2; exit 2 ;;
esac
url="$("$HERE/$engine.sh" start | tail -n1)"
trap '"$HERE/$engine.sh" stop >/dev/null 2>&1 || true' EXIT
cd "$ROOT"
cargo build --quiet --release --target wasm32-wasip1 -p llm-pulse
LLM_PULSE_ENGINE_URL="$url" LLM_PULSE_ENGINE_MODEL="$model" \
    cargo test -p host-tests --test suite -- --ignored engine_usage --nocapture --test-threads 1
