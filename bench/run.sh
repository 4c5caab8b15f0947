#!/usr/bin/env bash
# Runs the benchmarks against a release build of the gateway and prints their results:
#   bench/cm.mjs   the side-by-side bench (default step): direct TCP, a TCP relay (HAProxy),
#                  xmppgw WebSocket and BOSH,
#                  Prosody's mod_websocket and mod_bosh, node-xmpp-bosh, xmppgw with STARTTLS,
#                  9,000 idle sessions, the SSE hub; one table, the targets, JSON and an SVG chart
#   bench/rtt.mjs  round trips of a message to oneself (gateway vs direct c2s vs Prosody's BOSH)
#   bench/rss.mjs  gateway memory with 1,000 idle WebSocket sessions (upstream STARTTLS)
#   bench/hub.mjs  the live-updates hub: 1,000 and 10,000 viewers of one node, one upstream session
#
#   bash bench/run.sh                     build build-bench/ (Release), install, run bench/cm.mjs
#   bash bench/run.sh --quick             options starting with -- go to bench/cm.mjs (a smoke test)
#   bash bench/run.sh --runs 1 --columns direct,gw-ws
#   bash bench/run.sh rtt rss hub         only the named steps (cm, rtt, rss, hub)
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

steps=()
cm_args=()
for a in "$@"; do
    case $a in
        cm | rtt | rss | hub) steps+=("$a") ;;
        -*) cm_args+=("$a") ;;
        *)
            # the value of the option before it
            if [ "${#cm_args[@]}" -gt 0 ]; then cm_args+=("$a"); else
                echo "run.sh: unknown step $a (cm, rtt, rss, hub)" >&2
                exit 2
            fi
            ;;
    esac
done
[ "${#steps[@]}" -gt 0 ] || steps=(cm)
want() { [[ " ${steps[*]} " == *" $1 "* ]]; }

# The clients (ws, @xmpp/client, Strophe.js) come from the root node_modules/ (the test
# dependencies); node-xmpp-bosh, which only the bench needs, from bench/node_modules/.
if [ ! -d "$ROOT/node_modules/ws" ]; then
    echo "==> npm ci (the clients)"
    npm ci --no-audit --no-fund >/dev/null
fi
if want cm && [ ! -f "$ROOT/bench/node_modules/node-expat/build/Release/node_expat.node" ]; then
    # node-expat (node-xmpp-bosh's XML parser) is built from source: it needs g++, make, python3.
    if ! command -v g++ >/dev/null || ! command -v make >/dev/null || ! command -v python3 >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "==> apt-get install g++ make python3 (to build node-expat)"
            apt-get update -qq >/dev/null && apt-get install -y -qq g++ make python3 >/dev/null
        else
            echo "run.sh: node-expat needs g++, make and python3 to build" >&2
            exit 1
        fi
    fi
    echo "==> npm ci --prefix bench (node-xmpp-bosh 0.7.10)"
    npm ci --prefix "$ROOT/bench" --no-audit --no-fund >/dev/null
fi

# The relay column runs HAProxy (Debian's haproxy package; the proxy tests use it too).
if want cm && ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "==> apt-get install haproxy (the relay column)"
        apt-get update -qq >/dev/null && apt-get install -y -qq haproxy >/dev/null
        # only the binary is wanted: not the system service the package starts
        systemctl disable --now haproxy >/dev/null 2>&1 || service haproxy stop >/dev/null 2>&1 || true
    else
        echo "run.sh: haproxy not found: the relay column is left out" >&2
    fi
fi

OUT=${BENCH_OUT:-$ROOT/build-bench/out}
mkdir -p "$OUT"
stamp=$(date +%Y%m%d-%H%M%S)

# Thousands of sessions are thousands of descriptors in the load client, in Prosody and in the
# gateway (two per WebSocket session), which all inherit this limit: raise the soft limit to 65536,
# or to the hard limit when that is lower.
hard=$(ulimit -Hn)
soft=$(ulimit -n)
if [ "$soft" != unlimited ] && [ "$soft" -lt 65536 ]; then
    if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then
        ulimit -n 65536
    else
        ulimit -n "$hard"
    fi
fi

if want cm; then
    echo
    echo "==> side by side (node bench/cm.mjs ${cm_args[*]}; ulimit -n $(ulimit -n))"
    BENCH_OUT=$OUT node bench/cm.mjs --json "$OUT/cm-$stamp.json" "${cm_args[@]}"
fi

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
    for viewers in ${HUB_VIEWERS:-1000 10000}; do
        echo
        echo "==> live-updates hub, $viewers viewers (node bench/hub.mjs --viewers $viewers ${HUB_ARGS:-}; ulimit -n $(ulimit -n))"
        # shellcheck disable=SC2086
        node bench/hub.mjs --viewers "$viewers" --json "$OUT/hub-$stamp.jsonl" ${HUB_ARGS:-}
    done
fi

echo
echo "JSON results in $OUT/"
