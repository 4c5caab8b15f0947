// An upstream that accepts TCP and never writes a byte (it reads what the gateway sends and keeps
// the connection): with connect_timeout 2, 50 new sessions started at once (25 WebSocket, 25 BOSH)
// are each ended between 2 s and 4 s after they started, not later and not much sooner, and not one
// after another: WebSocket with <stream:error> remote-connection-failed whose <text/> names the
// timeout, then <close/> and the close frame; BOSH with the creation request answered
// type='terminate' condition='remote-connection-failed'. The gateway closes every upstream
// connection it opened, and /status counts no session afterwards.
// (tests/integration/upstream_failures.test.mjs checks one WebSocket session against such an
// upstream, with a wide time window; this file is about the timing, and about many at once.)
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startGateway, stopGatewayChecked } from '../integration/lib/gateway.mjs';
import { connect, openFrame, expectStreamError } from '../integration/lib/wsraw.mjs';
import { RawBosh, isTerminate, status, metrics, metricValue, until, median, LOOPBACK_LIMITS } from './lib/raw.mjs';

const CONNECT_TIMEOUT_S = 2;
const LOW_MS = CONNECT_TIMEOUT_S * 1000;
const HIGH_MS = LOW_MS + 2000;
// The gateway arms its timer from libuv's loop clock, read when the loop iteration began, so it can
// fire a few milliseconds before 2 s have passed since it read the request; the client-side clock
// starts earlier still (before the request is written). 50 ms covers that and no real early end.
const EARLY_SLACK_MS = 50;
const PER_TRANSPORT = 25;

const stats = (xs) => `min ${Math.min(...xs).toFixed(0)} ms, median ${median(xs).toFixed(0)} ms, max ${Math.max(...xs).toFixed(0)} ms`;

describe(`silent upstream: sessions ended by connect_timeout (${CONNECT_TIMEOUT_S} s)`, { timeout: 120000 }, () => {
  let silent;
  let gw;
  const upstreamSockets = new Set();
  let accepted = 0;
  let closedByGateway = 0;
  const probes = [];

  before(async () => {
    silent = net.createServer((s) => {
      accepted++;
      upstreamSockets.add(s);
      s.on('data', () => {}); // read, never answer
      s.on('error', () => {});
      s.on('close', () => { closedByGateway++; upstreamSockets.delete(s); });
    });
    await new Promise((r) => silent.listen(0, '127.0.0.1', r));
    gw = await startGateway({
      upstream: `127.0.0.1:${silent.address().port}`,
      caFile: null, // no TLS is ever reached
      config: { connect_timeout: CONNECT_TIMEOUT_S, log: { level: 'info' }, limits: LOOPBACK_LIMITS },
    });
  });

  after(async () => {
    for (const p of probes) p.terminate();
    const problem = await stopGatewayChecked(gw);
    for (const s of upstreamSockets) s.destroy();
    await new Promise((r) => silent?.close(r));
    if (problem) assert.fail(problem);
  });

  it(`ends ${2 * PER_TRANSPORT} sessions started at once, each within [${LOW_MS}, ${HIGH_MS}] ms`, { timeout: 60000 }, async () => {
    const errorsBefore = metricValue(await metrics(gw), 'xmppgw_stream_errors_total', { condition: 'remote-connection-failed' });

    // Every WebSocket connected first, so that the <open/> frames (where the clock starts) go out
    // together with the BOSH creation requests.
    const wsProbes = await Promise.all(Array.from({ length: PER_TRANSPORT }, () => connect(gw.wsUrl)));
    probes.push(...wsProbes);

    const wsEnds = wsProbes.map((probe) => {
      const t = performance.now();
      const closedAt = probe.closed.then(() => performance.now());
      probe.send(openFrame('localhost'));
      return expectStreamError(probe, 'remote-connection-failed', { expectOpenFirst: true, timeoutMs: HIGH_MS + 5000 })
        .then(async (r) => ({ ...r, ms: (await closedAt) - t }));
    });
    const boshEnds = Array.from({ length: PER_TRANSPORT }, () => {
      const s = new RawBosh(gw);
      const t = performance.now();
      return s.create({ wait: 30 }, { timeoutMs: HIGH_MS + 5000 }).then((r) => ({ ...r, ms: r.at - t }));
    });

    // Half way: all 50 are waiting at once, each on its own upstream connection.
    await new Promise((r) => setTimeout(r, LOW_MS / 2));
    const mid = await status(gw);
    assert.equal(mid.sessions.open, 2 * PER_TRANSPORT, `sessions open while waiting: ${JSON.stringify(mid.sessions)}`);
    assert.equal(accepted, 2 * PER_TRANSPORT, 'upstream connections accepted by the silent server');

    const ws = await Promise.all(wsEnds);
    const bosh = await Promise.all(boshEnds);

    for (const [i, r] of ws.entries()) {
      assert.match(r.text, new RegExp(`within ${CONNECT_TIMEOUT_S} s|time(d)?[ -]?out`, 'i'),
        `WebSocket ${i}: the <text/> should name the timeout: "${r.text}"`);
    }
    for (const [i, r] of bosh.entries()) {
      assert.ok(isTerminate(r, 'remote-connection-failed'),
        `BOSH ${i}: creation should be answered type='terminate' condition='remote-connection-failed', got HTTP ${r.status} ${r.text}`);
      assert.equal(r.body.attrs.sid, undefined, `BOSH ${i}: no sid for a session that never started: ${r.text}`);
    }

    const wsMs = ws.map((r) => r.ms);
    const boshMs = bosh.map((r) => r.ms);
    console.log(`# WebSocket, <open/> to close frame: ${stats(wsMs)}; <text/>: "${ws[0].text}"`);
    console.log(`# BOSH, creation request to its terminate answer: ${stats(boshMs)}`);
    for (const [what, xs] of [['WebSocket', wsMs], ['BOSH', boshMs]]) {
      const out = xs.filter((ms) => ms < LOW_MS - EARLY_SLACK_MS || ms > HIGH_MS);
      assert.equal(out.length, 0, `${what}: ${out.length} session(s) ended outside [${LOW_MS}, ${HIGH_MS}] ms: ${out.map((x) => x.toFixed(0)).join(', ')}`);
    }

    // The gateway hangs up on the silent upstream for each of them, and counts each end once.
    const allClosed = await until(() => closedByGateway === 2 * PER_TRANSPORT, 2000);
    assert.ok(allClosed, `upstream connections closed by the gateway: ${closedByGateway} of ${accepted}`);
    const after = await until(async () => {
      const st = await status(gw);
      return st.sessions.open === 0 ? st : null;
    }, 2000);
    assert.ok(after, `sessions still open: ${JSON.stringify((await status(gw)).sessions)}`);
    const errorsAfter = metricValue(await metrics(gw), 'xmppgw_stream_errors_total', { condition: 'remote-connection-failed' });
    assert.equal(errorsAfter - errorsBefore, 2 * PER_TRANSPORT, 'remote-connection-failed counted once per session');
  });
});
