// Three gateway nodes behind nginx from docs/deploy/nginx.conf (lib/scale.mjs): BOSH routed by the
// node cookie, WebSocket by its connection; then one node drained.
import { scaleSuite } from './lib/scale.mjs';
import { startNginx } from './lib/proxies.mjs';

scaleSuite('nginx', {
  bodyRouting: false,
  start: ({ gws, tls }) => startNginx({
    tls,
    nodes: [['server 127.0.0.1:5280 max_fails=0;', gws.map((g) => `server 127.0.0.1:${g.port} max_fails=0;`).join('\n    ')]],
  }),
});
