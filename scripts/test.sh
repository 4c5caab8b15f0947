#!/usr/bin/env bash
# The one test command: installs what is missing (Debian packages, npm packages), checks that the
# release build compiles with gcc and -Werror, then builds with clang + AddressSanitizer +
# UndefinedBehaviorSanitizer + libFuzzer and runs every CTest test (unit, integration, browser,
# proxy, fault, fuzz). Exits non-zero on any failure.
#
#   bash scripts/test.sh              everything
#   bash scripts/test.sh -L unit      extra arguments go to ctest (here: only the "unit" label)
#   bash scripts/test.sh -R rfc7395   (only tests whose name matches)
#
# Environment: XMPPGW_SKIP_DEPS=1 skips apt/npm (offline re-runs); JOBS (default 2).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
JOBS=${JOBS:-2}

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: cannot install packages"
    SUDO=(sudo)
fi

# Debian packages the build and the suites need. lua-unbound gives Prosody asynchronous DNS.
PACKAGES=(
    cmake make pkg-config gcc clang libclang-rt-14-dev
    libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libmicrohttpd-dev libexpat1-dev
    libssl-dev libjansson-dev
    prosody lua-unbound chromium nginx haproxy openssl valgrind ca-certificates
)

missing_packages() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' \
            || printf '%s\n' "$p"
    done
}

install_packages() {
    local missing
    mapfile -t missing < <(missing_packages "${PACKAGES[@]}")
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "all Debian packages present"
        return
    fi
    say "installing: ${missing[*]}"
    # Installing prosody, nginx or haproxy must not start their system services: the suites run
    # their own instances on free loopback ports. policy-rc.d answering 101 forbids the start; it
    # is only put in place (and removed again) when the machine has none.
    local policy=/usr/sbin/policy-rc.d placed=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod 755 "$policy"
        placed=1
    fi
    local rc=0
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
    if [ "$rc" -eq 0 ]; then
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
    fi
    [ "$placed" -eq 1 ] && "${SUDO[@]}" rm -f "$policy"
    [ "$rc" -eq 0 ] || die "apt-get failed (exit $rc)"
}

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
