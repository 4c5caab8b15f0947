#!/usr/bin/env bash
# Runs both benchmarks against a release build of the gateway and prints their results:
#   bench/rtt.mjs  round trips of a message to oneself (gateway vs direct c2s vs Prosody's BOSH)
#   bench/rss.mjs  gateway memory with 1,000 idle WebSocket sessions (upstream STARTTLS)
#
#   bash bench/run.sh                     build build-bench/ (Release) and run both
#   XMPPGW_BIN=build/xmppgw bash bench/run.sh   use an existing binary instead
#   RTT_ARGS="--count 5000" RSS_ARGS="--sessions 2000" bash bench/run.sh
# JSON results go to build-bench/out/ (a build folder, so git ignores them).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

if [ -z "${XMPPGW_BIN:-}" ]; then
    echo "==> building the gateway (Release) in build-bench/"
    cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$ROOT/build-bench" --target xmppgw -j"$(nproc)" >/dev/null
    XMPPGW_BIN=$ROOT/build-bench/xmppgw
fi
export XMPPGW_BIN
[ -x "$XMPPGW_BIN" ] || { echo "run.sh: no gateway binary at $XMPPGW_BIN" >&2; exit 1; }
[ -d "$ROOT/node_modules/@xmpp/client" ] || { echo "run.sh: run 'npm ci' first" >&2; exit 1; }

OUT=$ROOT/build-bench/out
mkdir -p "$OUT"
stamp=$(date +%Y%m%d-%H%M%S)

echo
echo "==> round trips (node bench/rtt.mjs ${RTT_ARGS:-})"
# shellcheck disable=SC2086 # the *_ARGS variables are lists of options
node bench/rtt.mjs --json "$OUT/rtt-$stamp.json" ${RTT_ARGS:-}

echo
echo "==> memory (node bench/rss.mjs ${RSS_ARGS:-})"
# shellcheck disable=SC2086
node bench/rss.mjs --json "$OUT/rss-$stamp.json" ${RSS_ARGS:-}

echo
echo "==> memory with permessage-deflate offered, as browsers do (node bench/rss.mjs --deflate ${RSS_ARGS:-})"
# shellcheck disable=SC2086
node bench/rss.mjs --deflate --json "$OUT/rss-deflate-$stamp.json" ${RSS_ARGS:-}

echo
echo "JSON results in $OUT/"
