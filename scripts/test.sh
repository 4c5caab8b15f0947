#!/usr/bin/env bash
# The one test command: installs what is missing (Debian packages, npm packages), runs
# scripts/lint.sh (formatting, function length, tests/README.md lists every test file), checks that
# the release build compiles with gcc and -Werror, then builds with clang + AddressSanitizer +
# UndefinedBehaviorSanitizer + libFuzzer and runs every CTest test (unit, integration, browser,
# fuzz). Exits non-zero on any failure.
#
#   bash scripts/test.sh              everything
#   bash scripts/test.sh -L unit      extra arguments go to ctest (here: only the "unit" label)
#   bash scripts/test.sh -R rfc7395   (only tests whose name matches)
#
# Environment: XMPPGW_SKIP_DEPS=1 skips apt/npm (offline re-runs); XMPPGW_SKIP_LINT=1 skips
# scripts/lint.sh; JOBS (default 2).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
JOBS=${JOBS:-2}

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }
# shellcheck source=scripts/lib/packages.sh
. "$ROOT/scripts/lib/packages.sh"

# Debian packages the build, the lint step and the suites need. lua-unbound gives Prosody
# asynchronous DNS.
PACKAGES=(
    cmake make pkg-config gcc clang libclang-rt-14-dev clang-format universal-ctags
    libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libmicrohttpd-dev libexpat1-dev
    libssl-dev libjansson-dev
    prosody lua-unbound chromium nginx haproxy openssl valgrind ca-certificates
)

check_node() {
    command -v node >/dev/null || die "Node.js 20 or newer is required (node not found)"
    command -v npm >/dev/null || die "npm is required"
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    [ "$major" -ge 20 ] || die "Node.js 20 or newer is required (found $(node --version))"
}

# The suites start their own Prosody from generated configs on free ports, so a system Prosody does
# not get in their way; say so when one is running (scripts/setup.sh starts one for the demo).
note_system_prosody() {
    local pidfile=/run/prosody/prosody.pid
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "note: the system Prosody is running (pid $(cat "$pidfile")); the tests do not use it"
    fi
    unset PROSODY_CONFIG
}

if [ "${XMPPGW_SKIP_DEPS:-0}" != 1 ]; then
    say "Debian packages"
    install_packages
    check_node
    say "npm ci"
    npm ci --no-audit --no-fund --loglevel=error
else
    check_node
    [ -d node_modules ] || die "node_modules missing: run without XMPPGW_SKIP_DEPS=1 once"
fi
note_system_prosody

if [ "${XMPPGW_SKIP_LINT:-0}" != 1 ]; then
    say "lint (scripts/lint.sh; XMPPGW_SKIP_LINT=1 skips it)"
    bash "$ROOT/scripts/lint.sh"
fi

say "release build with gcc (-Werror) in build/"
CC=gcc cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=gcc >/dev/null
cmake --build "$ROOT/build" -j"$JOBS"

say "clang build with address,undefined sanitizers and fuzzers in build-test/"
CC=clang cmake -S "$ROOT" -B "$ROOT/build-test" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DXMPPGW_SANITIZE=address,undefined -DXMPPGW_FUZZ=ON >/dev/null
cmake --build "$ROOT/build-test" -j"$JOBS"

say "ctest ${*:-(all labels)}"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir "$ROOT/build-test" -j"$JOBS" --output-on-failure "$@"
say "all tests passed"
