// Three gateway nodes behind nginx from docs/deploy/nginx.conf with its third node made active
// (lib/scale.mjs): BOSH routed by the node cookie, WebSocket by its connection; then one node
// drained.
import { scaleSuite } from './lib/scale.mjs';
import { startNginx } from './lib/proxies.mjs';

scaleSuite('nginx', { bodyRouting: false, start: startNginx });
