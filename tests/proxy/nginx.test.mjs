// xmppgw behind the real nginx (Debian 12: 1.22) from docs/deploy/nginx.conf as shipped (ports,
// certificate paths and the gateway's address substituted): TLS termination, BOSH and WebSocket
// logins and messages, the client's address in the log, forged and untrusted forwarding headers,
// host-meta and same-host for the public host, per-address limits, Server-Sent Events without
// buffering, an idle WebSocket and BOSH session kept for 80 s. The suite is lib/suite.mjs.
import { proxySuite, nginxTimeouts } from './lib/suite.mjs';
import { startNginx } from './lib/proxies.mjs';

proxySuite('nginx', {
  start: startNginx,
  timeouts: nginxTimeouts,
  checks: [
    /proxy_http_version 1\.1;/,
    /proxy_set_header Upgrade +\$http_upgrade;/,
    /proxy_set_header Connection +\$xmppgw_connection;/,
    /proxy_set_header X-Forwarded-For +\$remote_addr;/,
    /proxy_set_header Forwarded +"";/,
    /location \/chat\/http-bind \{[^}]*proxy_buffering off;/,
    /location \/chat\/events\/ \{[^}]*proxy_buffering off;/,
    /map \$cookie_xmppgw_node \$xmppgw_pool/,
    /location \/chat\/http-bind \{[^}]*proxy_pass http:\/\/\$xmppgw_pool;/,
  ],
});
