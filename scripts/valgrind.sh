#!/usr/bin/env bash
# The Node integration suites with every gateway they start running under valgrind memcheck. A
# gcc build without sanitizers (build-valgrind/, -O1 -g) is started through XMPPGW_WRAPPER (see
# tests/integration/lib/gateway.mjs); valgrind makes a gateway exit 99 on a memory error or a
# definite leak, which the suites already count as a failure. Each gateway's report goes to
# build-valgrind/vg/PID.log; the script ends with each log's "definitely lost" (or "All heap
# blocks were freed") and "ERROR SUMMARY" lines. Not part of scripts/test.sh (too slow for CI): it
# needs a build of its own, and the suites run up to twice as long as under the sanitizer build.
#
#   bash scripts/valgrind.sh                                   every tests/integration/*.test.mjs
#   bash scripts/valgrind.sh tests/integration/bosh_clients.test.mjs ...   only these
#
# Exits non-zero when a suite fails or any log holds an error or a definite leak. Environment:
# JOBS (default 2) for the build; XMPPGW_SKIP_BUILD=1 reuses build-valgrind/ as it is.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=$ROOT/build-valgrind
VGDIR=$BUILD/vg
JOBS=${JOBS:-2}

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'valgrind.sh: %s\n' "$*" >&2; exit 1; }

command -v valgrind >/dev/null || die "valgrind not found (apt-get install -y valgrind)"
command -v node >/dev/null || die "Node.js 20 or newer is required (node not found)"
[ -d "$ROOT/node_modules" ] || die "node_modules missing: run npm ci (or scripts/test.sh) once"

if [ $# -gt 0 ]; then
    SUITES=("$@")
else
    SUITES=("$ROOT"/tests/integration/*.test.mjs)
fi
for f in "${SUITES[@]}"; do
    [ -f "$f" ] || die "no such suite: $f"
done

if [ "${XMPPGW_SKIP_BUILD:-0}" != 1 ]; then
    say "gcc build, -O1 -g, no sanitizers, in build-valgrind/"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=gcc \
        -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" -DXMPPGW_SANITIZE= -DXMPPGW_FUZZ=OFF \
        -DBUILD_TESTING=OFF >/dev/null
    cmake --build "$BUILD" -j"$JOBS" --target xmppgw
fi
[ -x "$BUILD/xmppgw" ] || die "$BUILD/xmppgw missing"

rm -rf "$VGDIR"
mkdir -p "$VGDIR"
WRAPPER="valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite"
WRAPPER+=" --error-exitcode=99 --track-fds=no --num-callers=30 --log-file=$VGDIR/%p.log"

say "suites under valgrind: ${SUITES[*]#"$ROOT"/}"
start=$(date +%s)
suites_rc=0
XMPPGW_BIN=$BUILD/xmppgw XMPPGW_SOURCE=$ROOT XMPPGW_BUILD=$BUILD XMPPGW_WRAPPER=$WRAPPER \
    node --test --test-reporter=spec --test-concurrency=1 "${SUITES[@]}" || suites_rc=$?
elapsed=$(($(date +%s) - start))

say "valgrind summary ($(find "$VGDIR" -name '*.log' | wc -l) gateway runs, ${elapsed} s)"
bad=0
for log in "$VGDIR"/*.log; do
    [ -e "$log" ] || continue
    lost=$(grep -E 'definitely lost:|All heap blocks were freed' "$log" | tail -n 1 || true)
    errs=$(grep -E 'ERROR SUMMARY:' "$log" | tail -n 1 || true)
    printf '%s\n  %s\n  %s\n' "${log#"$ROOT"/}" "${lost:-(no leak summary: killed?)}" \
        "${errs:-(no error summary: killed?)}"
    if [ -z "$errs" ] || ! grep -qE 'ERROR SUMMARY: 0 errors' <<<"$errs" ||
        { [ -n "$lost" ] && ! grep -qE 'definitely lost: 0 bytes|All heap blocks' <<<"$lost"; }; then
        bad=$((bad + 1))
    fi
done
if [ "$suites_rc" -ne 0 ]; then
    echo "valgrind.sh: the suites failed (node exited $suites_rc)"
fi
if [ "$bad" -ne 0 ]; then
    echo "valgrind.sh: $bad log(s) with errors, definite leaks or no summary"
fi
[ "$suites_rc" -eq 0 ] && [ "$bad" -eq 0 ] || exit 1
echo "valgrind.sh: no memory errors, no definite leaks"
