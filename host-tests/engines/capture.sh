#!/usr/bin/env bash
# capture.sh URL NAME — record the raw bytes an OpenAI-compatible server sends
# for streamed /v1/chat/completions and /v1/completions under each variant of
# `stream_options`, so the filter's parser can be checked against real engines.
#
# Writes, under $ENGINES_DIR/captures/NAME/ (default ENGINES_DIR
# <repo>/target/engines), for each ENDPOINT (chat, completions) and CASE:
#   ENDPOINT-CASE.body     the response body exactly as received (curl -N)
#   ENDPOINT-CASE.headers  status line and headers
#   ENDPOINT-CASE.request  the JSON that was sent
#   ENDPOINT-b-include_usage.raw  case b again with the chunked framing kept
set -euo pipefail

URL="${1:?usage: capture.sh URL NAME}"
NAME="${2:?usage: capture.sh URL NAME}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ENGINES_DIR="${ENGINES_DIR:-$(cd "$HERE/../.." && pwd)/target/engines}"
OUT="$ENGINES_DIR/captures/$NAME"
MODEL="${MODEL:-tiny}"
mkdir -p "$OUT"

# CASE -> the members appended to the request (after "stream" and "max_tokens").
declare -A CASES=(
    [a-none]=''
    [b-include_usage]=',"stream_options":{"include_usage":true}'
    [c-continuous]=',"stream_options":{"include_usage":true,"continuous_usage_stats":true}'
    [d-include_usage_false]=',"stream_options":{"include_usage":false}'
    [e-bogus]=',"stream_options":{"bogus":1}'
    [g-null]=',"stream_options":null'
    # How strictly the two servers type-check stream_options:
    [h-string]=',"stream_options":"x"'
    [i-array]=',"stream_options":[]'
    [j-include_usage_string]=',"stream_options":{"include_usage":"yes"}'
    [k-include_usage_number]=',"stream_options":{"include_usage":1}'
    # llama.cpp's own per-event statistics (xpyd-sim ignores the member):
    [l-timings_per_token]=',"timings_per_token":true,"stream_options":{"include_usage":true}'
    # Force the byte tokens 0xC3 and 0xA9 (ids 195 and 169 in the tiny
    # model; xpyd-sim ignores logit_bias) to see how llama.cpp streams tokens
    # that end inside a UTF-8 sequence.
    [m-utf8_bytes]=',"logit_bias":[[195,30],[169,30]],"stream_options":{"include_usage":true}'
)

capture() {  # ENDPOINT PATH HEAD CASE STREAM EXTRA
    local endpoint=$1 path=$2 head=$3 case=$4 stream=$5 extra=$6
    local base="$OUT/$endpoint-$case"
    printf '{"model":"%s",%s,"stream":%s,"max_tokens":8%s}' "$MODEL" "$head" "$stream" "$extra" >"$base.request"
    curl -sS -N -D "$base.headers" -o "$base.body" \
        -H 'Content-Type: application/json' --data-binary @"$base.request" "$URL$path"
}

for endpoint in chat completions; do
    if [[ $endpoint == chat ]]; then
        path=/v1/chat/completions head='"messages":[{"role":"user","content":"Hello there"}]'
    else
        path=/v1/completions head='"prompt":"Hello there"'
    fi
    for case in "${!CASES[@]}"; do
        capture "$endpoint" "$path" "$head" "$case" true "${CASES[$case]}"
    done
    # f: stream_options on a request that does not stream (OpenAI refuses it).
    capture "$endpoint" "$path" "$head" f-nonstream-include_usage false ',"stream_options":{"include_usage":true}'
    capture "$endpoint" "$path" "$head" f-nonstream-null false ',"stream_options":null'
    # The same as case b once more, but keeping the HTTP/1.1 chunked framing
    # (curl --raw), which shows which events the server writes together.
    printf '{"model":"%s",%s,"stream":true,"max_tokens":8,"stream_options":{"include_usage":true}}' \
        "$MODEL" "$head" >"$OUT/$endpoint-b-include_usage.raw.request"
    curl -sS -N --raw -o "$OUT/$endpoint-b-include_usage.raw" \
        -H 'Content-Type: application/json' --data-binary @"$OUT/$endpoint-b-include_usage.raw.request" "$URL$path"
done
echo "$OUT"
