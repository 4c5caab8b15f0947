// xmppgw behind the real HAProxy (Debian 12: 2.6) from docs/deploy/haproxy.cfg as shipped (ports,
// certificate path and the gateway's addresses substituted): TLS termination, BOSH and WebSocket
// logins and messages, the client's address (RFC 7239 Forwarded) in the log, forged and untrusted
// forwarding headers, host-meta and same-host for the public host, per-address limits,
// Server-Sent Events without buffering, an idle WebSocket and BOSH session kept for 80 s (past
// timeout client/server: only timeout tunnel keeps the WebSocket). The suite is lib/suite.mjs.
import { proxySuite, haproxyTimeouts } from './lib/suite.mjs';
import { startHaproxy } from './lib/proxies.mjs';

proxySuite('haproxy', {
  start: startHaproxy,
  timeouts: haproxyTimeouts,
  checks: [
    /timeout tunnel \S+/,
    /http-request del-header Forwarded/,
    /http-request set-header Forwarded "for=/,
    /option http-buffer-request/,
    /use-server node1 if sid_node1/,
    /use-server node1 if \{ req\.cook\(xmppgw_node\) -m str node1 \}/,
    /balance leastconn/,
    /http-check send meth GET uri \/readyz/,
  ],
});
