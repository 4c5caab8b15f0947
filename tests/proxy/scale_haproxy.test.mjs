// Three gateway nodes behind HAProxy from docs/deploy/haproxy.cfg with its third node made active
// (lib/scale.mjs): BOSH routed by the sid in the body (half of the clients send no cookies), else
// the node cookie; WebSocket by its connection; /readyz as the health check; then one node
// drained.
import { scaleSuite } from './lib/scale.mjs';
import { startHaproxy } from './lib/proxies.mjs';

scaleSuite('HAProxy', { bodyRouting: true, start: startHaproxy });
