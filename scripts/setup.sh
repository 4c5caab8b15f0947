#!/usr/bin/env bash
# Installs, builds and starts xmppgw for local use:
#   1. Debian packages for building and running it, and Prosody (installed only when missing);
#   2. npm ci (the demo page serves client libraries from node_modules/);
#   3. a release build in build/;
#   4. when config/xmppgw.json points at 127.0.0.1:5222 and nothing listens there: the Debian
#      Prosody set up for VirtualHost "localhost" (certificate, c2s on 127.0.0.1:5222) with the
#      pubsub component "pubsub.localhost", and started, plus the demo's accounts (passwords made
#      once, kept in .run/, mode 600): demo@localhost (.run/demo-password), the live-updates hub
#      hub@localhost (.run/hub.pass), the visitors' shared account site@localhost (.run/site.pass);
#      the demo node pubsub.localhost/princely_musings; and .run/xmppgw.json, the shipped config
#      plus the demo's "live" and "visitors" sections and an admin token (.run/admin.token);
#   5. the gateway in the background (pid in .run/xmppgw.pid, log in .run/xmppgw.log), with
#      .run/xmppgw.json when step 4 made it, else with the shipped config as it is.
# Running it again rebuilds and restarts the gateway and keeps the rest as it is.
#
#   bash scripts/setup.sh          install, build, start
#   bash scripts/setup.sh stop     stop the gateway (and the Prosody this script started)
#   bash scripts/setup.sh status
#   bash scripts/setup.sh build    steps 1 to 3 only, without Prosody: what docker/Dockerfile's
#                                  build stage runs (tests/integration/packaging.test.mjs too)
#
# XMPPGW_CONFIG=FILE uses another config file; XMPPGW_BUILD_DIR=DIR builds there instead of build/;
# XMPPGW_SKIP_DEPS=1 skips apt-get and npm ci (offline re-runs; node_modules must be there).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
RUN=$ROOT/.run
CONFIG=${XMPPGW_CONFIG:-$ROOT/config/xmppgw.json}
BUILD=${XMPPGW_BUILD_DIR:-$ROOT/build}
DEMO_CONFIG=$RUN/xmppgw.json
PIDFILE=$RUN/xmppgw.pid
LOGFILE=$RUN/xmppgw.log
PROSODY_MARK=$RUN/prosody-started-by-setup
PROSODY_SNIPPET=/etc/prosody/conf.d/xmppgw-local.cfg.lua
PROSODY_CERT=/etc/prosody/certs/localhost.crt
PROSODY_KEY=/etc/prosody/certs/localhost.key
PROSODY_MARKER='-- Written by xmppgw'"'"'s scripts/setup.sh: Prosody as the local upstream of the gateway.'
DEMO_SERVICE=pubsub.localhost
DEMO_NODE=princely_musings
VISITOR_DOMAIN=visitors.localhost

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

# What $PROSODY_SNIPPET holds. Included files start in Prosody's global section, so the
# listeners set here are global; the pubsub component comes last. hub@localhost administers the
# component only (not the server): it may create nodes and publish (/api/publish, /demo/publish).
prosody_snippet() {
    cat <<EOF
$PROSODY_MARKER
-- Delete this file to return to the Debian defaults.
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { 5222 }

-- The live-updates demo: the pubsub service of the node the demo page shows.
Component "$DEMO_SERVICE" "pubsub"
    admins = { "hub@localhost" }
EOF
}

# Writes the snippet when it is missing, or when it is this script's and says something else (an
# older version without the component); a Prosody already running reloads it. A file of the same
# name that this script did not write is left alone.
write_prosody_snippet() {
    local want
    want=$(prosody_snippet)
    if [ -e "$PROSODY_SNIPPET" ]; then
        [ "$(cat "$PROSODY_SNIPPET")" = "$want" ] && return 0
        if [ "$(head -n 1 "$PROSODY_SNIPPET")" != "$PROSODY_MARKER" ]; then
            echo "$PROSODY_SNIPPET was not written by this script: left as it is"
            return 0
        fi
    fi
    echo "writing $PROSODY_SNIPPET (listen on 127.0.0.1 only, c2s on 5222, component $DEMO_SERVICE)"
    printf '%s\n' "$want" | "${SUDO[@]}" tee "$PROSODY_SNIPPET" >/dev/null
    "${SUDO[@]}" chmod 644 "$PROSODY_SNIPPET"
    if pid_alive /run/prosody/prosody.pid; then
        echo "reloading Prosody's configuration"
        "${SUDO[@]}" prosodyctl reload >/dev/null 2>&1 || true
        sleep 1
    fi
}

# Debian's /etc/prosody/prosody.cfg.lua already has VirtualHost "localhost" but no certificate for
# it. Make one (the gateway verifies it through "upstream_ca"), keep c2s on 127.0.0.1:5222 only,
# add the pubsub component, and start Prosody as a daemon (containers have no systemd).
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
    write_prosody_snippet
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

# A secret made once and kept in FILE (mode 600); printed.
secret_file() {
    if [ ! -s "$1" ]; then
        (umask 077 && openssl rand -base64 18 | tr -d '/+=\n' >"$1" && echo >>"$1")
    fi
    chmod 600 "$1"
    head -n 1 "$1"
}

# USER@localhost with the password kept in FILE (made once). Registering sets the password, so
# running it again is harmless and repairs an account whose password was changed or lost.
ensure_account() { # user file
    local pw
    pw=$(secret_file "$2")
    "${SUDO[@]}" prosodyctl register "$1" localhost "$pw" >/dev/null \
        || die "prosodyctl register $1 localhost failed"
}

# The demo node, made as the server (no owner: the hub account, an admin of the component,
# publishes to it); one that exists already is kept with its items.
ensure_demo_node() {
    local out lua
    lua="local svc = prosody.hosts[\"$DEMO_SERVICE\"].modules.pubsub.service"
    lua="$lua; local ok, err = svc:create(\"$DEMO_NODE\", true)"
    lua="$lua; if not ok and err ~= \"conflict\" then error(tostring(err)) end"
    lua="$lua; return ok and \"created\" or \"exists\""
    if ! out=$("${SUDO[@]}" prosodyctl shell ">$lua" 2>&1); then
        die "could not create $DEMO_SERVICE/$DEMO_NODE with prosodyctl shell: $out"
    fi
    case "$out" in
        *created*) echo "created the node $DEMO_SERVICE/$DEMO_NODE" ;;
        *exists*) echo "the node $DEMO_SERVICE/$DEMO_NODE exists" ;;
        *) die "prosodyctl shell said: $out" ;;
    esac
}

# The demo's accounts and node on the Prosody this script configured.
setup_demo_upstream() {
    say "demo accounts and node on the local Prosody"
    ensure_account demo "$RUN/demo-password"
    ensure_account hub "$RUN/hub.pass"
    ensure_account site "$RUN/site.pass"
    secret_file "$RUN/admin.token" >/dev/null
    ensure_demo_node
}

# .run/xmppgw.json: the config the gateway starts with, written again every time from $CONFIG
# plus what the demo needs. Sections the file already has are kept as they are; the demo's
# publish form (live.demo_publish) is on only when "listen" is a loopback address.
write_demo_config() {
    python3 - "$CONFIG" "$DEMO_CONFIG" "$RUN" "$DEMO_SERVICE" "$DEMO_NODE" "$VISITOR_DOMAIN" <<'EOF'
import json, os, sys
src, dst, run, service, node, visitors = sys.argv[1:]
cfg = json.load(open(src))
admin = cfg.setdefault("admin", {})
if not admin.get("token"):
    admin["token"] = open(os.path.join(run, "admin.token")).readline().strip()
# The demo's publish endpoint takes no token: the gateway allows it on a loopback listener only.
host = cfg.get("listen", "127.0.0.1:5280").rsplit(":", 1)[0].strip("[]")
loopback = host == "localhost" or host == "::1" or host.startswith("127.")
if not (cfg.get("live") or {}).get("jid"):
    cfg["live"] = {
        "jid": "hub@localhost",
        "password_file": os.path.join(run, "hub.pass"),
        "nodes": [service + "/" + node],
        "demo_publish": loopback,
    }
if not (cfg.get("visitors") or {}).get("domain"):
    cfg["visitors"] = {
        "domain": visitors,
        "jid": "site@localhost",
        "password_file": os.path.join(run, "site.pass"),
        "allow": {"pubsub": [service]},
    }
tmp = dst + ".tmp"
with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
    json.dump(cfg, f, indent=2)
    f.write("\n")
os.replace(tmp, dst)
EOF
    "$BUILD/xmppgw" --check-config "$DEMO_CONFIG" >/dev/null \
        || die "the generated $DEMO_CONFIG does not pass --check-config"
}

start_gateway() { # config file
    local listen admin i pid
    listen=$(config_value listen)
    admin=$(config_value admin_listen)
    stop_gateway
    if port_open "${listen%:*}" "${listen##*:}"; then
        die "something else already listens on $listen (see config/xmppgw.json \"listen\")"
    fi
    say "starting the gateway: ${BUILD#"$ROOT"/}/xmppgw --config ${1#"$ROOT"/}"
    nohup "$BUILD/xmppgw" --config "$1" >>"$LOGFILE" 2>&1 </dev/null &
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

# Steps 1 to 3: packages, npm ci, the release build.
install_and_build() {
    if [ -n "${XMPPGW_SKIP_DEPS:-}" ]; then
        echo "XMPPGW_SKIP_DEPS: no apt-get, no npm ci"
        [ -d "$ROOT/node_modules/strophe.js" ] || die "node_modules/ is missing: run without XMPPGW_SKIP_DEPS"
    else
        install_packages
        command -v node >/dev/null || die "Node.js 20 or newer and npm are required"
        say "npm ci"
        npm ci --no-audit --no-fund --loglevel=error
    fi
    say "release build in ${BUILD#"$ROOT"/}/"
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" -j"${JOBS:-2}" --target xmppgw
}

# The build alone, as a container's build stage needs it: no Prosody, nothing started.
cmd_build() {
    local p keep=()
    for p in "${PACKAGES[@]}"; do
        case $p in prosody | lua-unbound) ;; *) keep+=("$p") ;; esac
    done
    PACKAGES=("${keep[@]}")
    install_and_build
    say "built ${BUILD#"$ROOT"/}/xmppgw"
}

cmd_start() {
    mkdir -p "$RUN"
    [ -f "$CONFIG" ] || die "no config file at $CONFIG"
    install_and_build

    local upstream local_prosody=0 demo=0 run_config=$CONFIG
    upstream=$(config_value upstream)
    if [ "$upstream" = "127.0.0.1:5222" ] || [ "$upstream" = "localhost:5222" ]; then
        if ! port_open 127.0.0.1 5222; then
            setup_local_prosody
        fi
        # Prosody on 5222 is ours to add the demo's accounts to when it is the system instance,
        # and the live demo needs the component that only this script's snippet adds.
        if pid_alive /run/prosody/prosody.pid; then
            local_prosody=1
            if [ "$(head -n 1 "$PROSODY_SNIPPET" 2>/dev/null)" = "$PROSODY_MARKER" ]; then
                write_prosody_snippet
                setup_demo_upstream
                write_demo_config
                demo=1
                run_config=$DEMO_CONFIG
            else
                ensure_account demo "$RUN/demo-password"
            fi
        fi
    fi

    start_gateway "$run_config"

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
  password         $(head -n 1 "$RUN/demo-password")   (also in .run/demo-password)
EOF
    fi
    if [ "$demo" -eq 1 ]; then
        cat <<EOF

  live feed        http://$host/events/$DEMO_SERVICE/$DEMO_NODE   (the demo page shows it)
  console          http://$host/console.html   (visitor domain $VISITOR_DOMAIN)
  publish          curl -H "Authorization: Bearer \$(cat .run/admin.token)" -H 'Content-Type: application/json' \\
                     -d '{"service":"$DEMO_SERVICE","node":"$DEMO_NODE","title":"Hello"}' http://$admin/api/publish
  config           .run/xmppgw.json (config/xmppgw.json plus the demo's live and visitors sections)
EOF
    elif [ "$local_prosody" -eq 0 ]; then
        cat <<EOF

  An XMPP server other than the one this script sets up answers on $upstream: the gateway runs
  with ${run_config#"$ROOT"/} as it is, without the live-updates demo (add "live" and "visitors"
  sections for that server; see README.md, "Live updates").
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
    build) cmd_build ;;
    *) die "usage: bash scripts/setup.sh [start|stop|status|build]" ;;
esac
