#!/usr/bin/env bash
# Runs the benchmarks against a release build of the gateway and prints their results:
#   bench/rtt.mjs  round trips of a message to oneself (gateway vs direct c2s vs Prosody's BOSH)
#   bench/rss.mjs  gateway memory with 1,000 idle WebSocket sessions (upstream STARTTLS)
#   bench/hub.mjs  the live-updates hub: 1,000 and 10,000 viewers of one node, one upstream session
#
#   bash bench/run.sh                     build build-bench/ (Release) and run all three
#   bash bench/run.sh hub                 only the named steps (rtt, rss, hub)
#   XMPPGW_BIN=build/xmppgw bash bench/run.sh   use an existing binary instead
#   RTT_ARGS="--count 5000" RSS_ARGS="--sessions 2000" bash bench/run.sh
#   HUB_VIEWERS="1000 10000" HUB_ARGS="--items 100" bash bench/run.sh hub
# JSON results go to build-bench/out/ (a build folder, so git ignores them), or to $BENCH_OUT.
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

steps=("$@")
[ "${#steps[@]}" -gt 0 ] || steps=(rtt rss hub)
for step in "${steps[@]}"; do
    case $step in
        rtt | rss | hub) ;;
        *) echo "run.sh: unknown step $step (rtt, rss, hub)" >&2; exit 2 ;;
    esac
done
want() { [[ " ${steps[*]} " == *" $1 "* ]]; }

OUT=${BENCH_OUT:-$ROOT/build-bench/out}
mkdir -p "$OUT"
stamp=$(date +%Y%m%d-%H%M%S)

if want rtt; then
    echo
    echo "==> round trips (node bench/rtt.mjs ${RTT_ARGS:-})"
    # shellcheck disable=SC2086 # the *_ARGS variables are lists of options
    node bench/rtt.mjs --json "$OUT/rtt-$stamp.json" ${RTT_ARGS:-}
fi

if want rss; then
    echo
    echo "==> memory (node bench/rss.mjs ${RSS_ARGS:-})"
    # shellcheck disable=SC2086
    node bench/rss.mjs --json "$OUT/rss-$stamp.json" ${RSS_ARGS:-}

    echo
    echo "==> memory with permessage-deflate offered, as browsers do (node bench/rss.mjs --deflate ${RSS_ARGS:-})"
    # shellcheck disable=SC2086
    node bench/rss.mjs --deflate --json "$OUT/rss-deflate-$stamp.json" ${RSS_ARGS:-}
fi

if want hub; then
    # Every viewer is a descriptor in the bench process and one in the gateway, which inherits the
    # limit: raise the soft limit to 65536, or to the hard limit when that is lower.
    hard=$(ulimit -Hn)
    soft=$(ulimit -n)
    if [ "$soft" != unlimited ] && [ "$soft" -lt 65536 ]; then
        if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then
            ulimit -n 65536
        else
            ulimit -n "$hard"
        fi
    fi
    for viewers in ${HUB_VIEWERS:-1000 10000}; do
        echo
        echo "==> live-updates hub, $viewers viewers (node bench/hub.mjs --viewers $viewers ${HUB_ARGS:-}; ulimit -n $(ulimit -n))"
        # shellcheck disable=SC2086
        node bench/hub.mjs --viewers "$viewers" --json "$OUT/hub-$stamp.jsonl" ${HUB_ARGS:-}
    done
fi

echo
echo "JSON results in $OUT/"
