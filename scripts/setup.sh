#!/usr/bin/env bash
# Installs, builds and starts xmppgw for local use:
#   1. Debian packages for building and running it, and Prosody (installed only when missing);
#   2. npm ci (the demo page serves client libraries from node_modules/);
#   3. a release build in build/;
#   4. when config/xmppgw.json points at 127.0.0.1:5222 and nothing listens there: the Debian
#      Prosody set up for VirtualHost "localhost" (certificate, c2s on 127.0.0.1:5222) and started,
#      plus a demo account demo@localhost whose password is kept in .run/demo-password;
#   5. the gateway in the background (pid in .run/xmppgw.pid, log in .run/xmppgw.log).
# Running it again rebuilds and restarts the gateway and keeps the rest as it is.
#
#   bash scripts/setup.sh          install, build, start
#   bash scripts/setup.sh stop     stop the gateway (and the Prosody this script started)
#   bash scripts/setup.sh status
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
RUN=$ROOT/.run
CONFIG=${XMPPGW_CONFIG:-$ROOT/config/xmppgw.json}
PIDFILE=$RUN/xmppgw.pid
LOGFILE=$RUN/xmppgw.log
PROSODY_MARK=$RUN/prosody-started-by-setup
PROSODY_SNIPPET=/etc/prosody/conf.d/xmppgw-local.cfg.lua
PROSODY_CERT=/etc/prosody/certs/localhost.crt
PROSODY_KEY=/etc/prosody/certs/localhost.key

say() { printf '==> %s\n' "$*"; }
die() { printf 'setup.sh: %s\n' "$*" >&2; exit 1; }
# shellcheck source=scripts/lib/packages.sh
. "$ROOT/scripts/lib/packages.sh"

PACKAGES=(
    cmake make pkg-config gcc
    libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libmicrohttpd-dev libexpat1-dev
    libssl-dev libjansson-dev
    prosody lua-unbound openssl ca-certificates
)

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# True when something accepts TCP connections on host:port.
port_open() {
    python3 - "$1" "$2" <<'EOF'
import socket, sys
s = socket.socket()
s.settimeout(1)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)
EOF
}

wait_port() { # host port seconds
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        port_open "$1" "$2" && return 0
        sleep 0.1
    done
    return 1
}

# Reads one value from the gateway config: listen, admin_listen, upstream (host:port), upstream_ca.
config_value() {
    python3 - "$CONFIG" "$1" <<'EOF'
import json, sys
cfg = json.load(open(sys.argv[1]))
what = sys.argv[2]
up = cfg.get("upstream") or {}
if what == "listen":
    print(cfg.get("listen", "127.0.0.1:5280"))
elif what == "admin_listen":
    print((cfg.get("admin") or {}).get("listen", "127.0.0.1:5281"))
elif what == "upstream":
    print("%s:%s" % (up.get("host", ""), up.get("port", 5222)) if up else "")
elif what == "upstream_ca":
    print(cfg.get("upstream_ca", ""))
EOF
}

stop_gateway() {
    if pid_alive "$PIDFILE"; then
        local pid i
        pid=$(cat "$PIDFILE")
        say "stopping the gateway (pid $pid)"
        kill -TERM "$pid"
        for ((i = 0; i < 300; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "still running after 30 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$PIDFILE"
}

cmd_stop() {
    stop_gateway
    if [ -e "$PROSODY_MARK" ]; then
        say "stopping the Prosody this script started"
        "${SUDO[@]}" prosodyctl stop >/dev/null 2>&1 || true
        rm -f "$PROSODY_MARK"
    fi
}

cmd_status() {
    if pid_alive "$PIDFILE"; then echo "gateway: running (pid $(cat "$PIDFILE"))"; else echo "gateway: stopped"; fi
    if pid_alive /run/prosody/prosody.pid; then echo "prosody: running (pid $(cat /run/prosody/prosody.pid))"; else echo "prosody: not running (system instance)"; fi
}

# Debian's /etc/prosody/prosody.cfg.lua already has VirtualHost "localhost" but no certificate for
# it. Make one (the gateway verifies it through "upstream_ca"), keep c2s on 127.0.0.1:5222 only,
# and start Prosody as a daemon (containers have no systemd).
setup_local_prosody() {
    say "setting up the local Prosody for VirtualHost \"localhost\""
    if [ ! -s "$PROSODY_CERT" ] || [ ! -s "$PROSODY_KEY" ]; then
        echo "creating a self-signed certificate for localhost in /etc/prosody/certs"
        "${SUDO[@]}" openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -days 3650 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
            -keyout "$PROSODY_KEY" -out "$PROSODY_CERT" 2>/dev/null
        "${SUDO[@]}" chown root:prosody "$PROSODY_CERT" "$PROSODY_KEY"
        "${SUDO[@]}" chmod 644 "$PROSODY_CERT"
        "${SUDO[@]}" chmod 640 "$PROSODY_KEY"
    fi
    if [ ! -e "$PROSODY_SNIPPET" ]; then
        echo "writing $PROSODY_SNIPPET (listen on 127.0.0.1 only, c2s on 5222)"
        "${SUDO[@]}" tee "$PROSODY_SNIPPET" >/dev/null <<'EOF'
-- Written by xmppgw's scripts/setup.sh: Prosody as the local upstream of the gateway.
-- Delete this file to return to the Debian defaults.
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { 5222 }
EOF
        "${SUDO[@]}" chmod 644 "$PROSODY_SNIPPET"
    fi
    "${SUDO[@]}" install -d -o prosody -g prosody -m 755 /run/prosody
    if ! pid_alive /run/prosody/prosody.pid; then
        echo "starting Prosody"
        "${SUDO[@]}" prosodyctl start >/dev/null 2>&1 || true
        touch "$PROSODY_MARK"
    fi
    wait_port 127.0.0.1 5222 20 || {
        "${SUDO[@]}" tail -n 30 /var/log/prosody/prosody.log /var/log/prosody/prosody.err 2>/dev/null || true
        die "Prosody did not start listening on 127.0.0.1:5222"
    }
}

# The demo account: its password is made once and kept in .run/demo-password.
ensure_demo_user() {
    if [ -s "$RUN/demo-password" ]; then
        return
    fi
    say "registering demo@localhost"
    local pw
    pw=$(openssl rand -base64 18 | tr -d '/+=\n')
    "${SUDO[@]}" prosodyctl register demo localhost "$pw" >/dev/null
    (umask 077 && printf '%s\n' "$pw" >"$RUN/demo-password")
}

start_gateway() {
    local listen admin i pid
    listen=$(config_value listen)
    admin=$(config_value admin_listen)
    stop_gateway
    if port_open "${listen%:*}" "${listen##*:}"; then
        die "something else already listens on $listen (see config/xmppgw.json \"listen\")"
    fi
    say "starting the gateway: build/xmppgw --config ${CONFIG#"$ROOT"/}"
    nohup "$ROOT/build/xmppgw" --config "$CONFIG" >>"$LOGFILE" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PIDFILE"
    for ((i = 0; i < 200; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$LOGFILE" >&2
            rm -f "$PIDFILE"
            die "the gateway exited at start (log: .run/xmppgw.log)"
        fi
        if python3 - "http://$admin/healthz" <<'EOF'
import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=1).status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
        then
            return 0
        fi
        sleep 0.1
    done
    tail -n 30 "$LOGFILE" >&2
    die "the gateway did not answer http://$admin/healthz within 20 s (log: .run/xmppgw.log)"
}

cmd_start() {
    mkdir -p "$RUN"
    [ -f "$CONFIG" ] || die "no config file at $CONFIG"
    install_packages
    command -v node >/dev/null || die "Node.js 20 or newer and npm are required"
    say "npm ci"
    npm ci --no-audit --no-fund --loglevel=error
    say "release build in build/"
    cmake -S "$ROOT" -B "$ROOT/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$ROOT/build" -j"${JOBS:-2}" --target xmppgw

    local upstream local_prosody=0
    upstream=$(config_value upstream)
    if [ "$upstream" = "127.0.0.1:5222" ] || [ "$upstream" = "localhost:5222" ]; then
        if ! port_open 127.0.0.1 5222; then
            setup_local_prosody
        fi
        # Prosody on 5222 is ours to add the demo account to when it is the system instance.
        if pid_alive /run/prosody/prosody.pid; then
            local_prosody=1
            ensure_demo_user
        fi
    fi

    start_gateway

    local listen admin host
    listen=$(config_value listen)
    admin=$(config_value admin_listen)
    host=$listen
    cat <<EOF

xmppgw is running (pid $(cat "$PIDFILE"), log .run/xmppgw.log), upstream $upstream.

  demo page        http://$host/
  WebSocket        ws://$host/xmpp-websocket
  BOSH             http://$host/http-bind
  metrics (admin)  http://$admin/metrics
EOF
    if [ "$local_prosody" -eq 1 ] && [ -s "$RUN/demo-password" ]; then
        cat <<EOF

  account          demo@localhost
  password         $(cat "$RUN/demo-password")   (also in .run/demo-password)
EOF
    fi
    cat <<EOF

Stop it with:  bash scripts/setup.sh stop     (or: kill \$(cat .run/xmppgw.pid))
EOF
}

case "${1:-start}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) die "usage: bash scripts/setup.sh [start|stop|status]" ;;
esac
