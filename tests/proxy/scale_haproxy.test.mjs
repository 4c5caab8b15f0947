// Three gateway nodes behind HAProxy from docs/deploy/haproxy.cfg (lib/scale.mjs): BOSH routed by
// the sid in the body (half of the clients send no cookies), else the node cookie; WebSocket by
// its connection; /readyz as the health check; then one node drained.
import { scaleSuite } from './lib/scale.mjs';
import { startHaproxy } from './lib/proxies.mjs';

scaleSuite('HAProxy', {
  bodyRouting: true,
  start: ({ gws, tls }) => startHaproxy({
    tls,
    nodes: [['server node1 127.0.0.1:5280 check port 5281 inter 2s cookie node1',
      gws.map((g) => `server ${g.node} 127.0.0.1:${g.port} check port ${g.adminPort} inter 2s cookie ${g.node}`).join('\n    ')]],
  }),
});
