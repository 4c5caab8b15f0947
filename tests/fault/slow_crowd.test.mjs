// 2,000 slow connections from eight client addresses (127.0.0.2 to 127.0.0.9, 250 each) while a
// healthy client from 127.0.0.1 logs in over BOSH and over WebSocket, each within 2 s:
//   header-bosh / header-ws  half of them (126 per address): a request's headers dripped a byte every 2 s (a BOSH
//                            POST, or a WebSocket upgrade), never complete;
//   bosh-body                a quarter (62 per address): a BOSH POST announcing 256 KiB, its body dripped at
//                            640 bytes/s (above http.min_body_rate, far below finishing);
//   ws-silent / ws-drip      a quarter (62 per address): a WebSocket upgrade that sends no frame, or drips a text
//                            frame a byte every 500 ms.
// The gateway runs with the shipped per-address limits and only its deadlines shortened
// (http.header_timeout 8, http.body_timeout 10, connect_timeout 8), so the test takes seconds:
// each connection must be cut by its own deadline (headers: header_timeout after the first byte,
// up to a second early since lws counts whole seconds;
// bodies: 408 at body_timeout after the headers; WebSockets: connection-timeout at connect_timeout
// after the upgrade), never before it and at most SLACK_MS after it (lws checks its timeouts once a
// second); limits.per_address_pending (50) refuses the 51st to 62nd BOSH body of each address with
// 429 at once, and the 51st to 62nd WebSocket of each address (counted apart from the bodies) right
// after its upgrade with <open/>, <stream:error> policy-violation and <close/> (the connection then
// closed within CLOSE_WAIT_S, as this client never answers the close frame), all counted in
// xmppgw_refused_total{limit="address_pending"}, the 408s in {limit="http_deadline"}. Afterwards
// the gateway's descriptors are back to the baseline exactly and it exits 0 on SIGTERM (the
// sanitizer build: no leak).
// No limit is lifted. One kind is held by no per-address limit, only by its deadline: headers that
// never complete (nothing is counted before lws has the headers).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startProsody } from '../integration/lib/prosody.mjs';
import { startGateway, stopGatewayChecked } from '../integration/lib/gateway.mjs';
import { rawLogin, closeFrame } from '../integration/lib/wsraw.mjs';
import { RawBosh, metrics, metricValue, until, fdInfo, median, status } from './lib/raw.mjs';
import { headerDrip, boshBodyDrip, wsSilent, maxOpenFiles } from './lib/slow.mjs';

const ADDRESSES = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 2}`);
const PER_ADDRESS = 250;
const TOTAL = ADDRESSES.length * PER_ADDRESS;
const HEADER_TIMEOUT_S = 8;
const BODY_TIMEOUT_S = 10;
const CONNECT_TIMEOUT_S = 8;
const CLOSE_WAIT_S = 3;          // web/websocket.c: how long a close frame waits for its answer
const PENDING_LIMIT = 50;        // limits.per_address_pending, shipped default
const SLACK_MS = 2000;           // lws's once-a-second timeout check, and the loop under the crowd
const EARLY_MS = 150;            // a deadline of ours may fire this much before our clock says it is due
const LWS_EARLY_MS = 1000 + EARLY_MS; // lws keeps its timeouts in whole seconds: up to 1 s early
const LOGIN_MS = 2000;
const DESCRIPTORS = TOTAL + 1000; // what the test and the gateway each need open at once

// Which slow client the i-th connection of an address is.
const kindOf = (i) => ['header-bosh', 'header-ws', 'bosh-body', 'ws'][i % 4];

describe('a slow crowd of 2,000 connections from eight addresses', { timeout: 110000 }, () => {
  let prosody;
  let gw;
  const crowd = [];
  const figures = {};

  before(async () => {
    const mine = await maxOpenFiles();
    assert.ok(mine >= DESCRIPTORS, `this process may open ${mine} descriptors, the test needs ${DESCRIPTORS}: raise ulimit -n`);
    prosody = await startProsody({ logLevel: 'warn' });
    gw = await startGateway({
      prosody,
      config: {
        log: { level: 'warn' },
        connect_timeout: CONNECT_TIMEOUT_S,
        http: { header_timeout: HEADER_TIMEOUT_S, body_timeout: BODY_TIMEOUT_S },
      },
    });
    const theirs = await maxOpenFiles(gw.pid);
    assert.ok(theirs >= DESCRIPTORS, `the gateway may open ${theirs} descriptors, the test needs ${DESCRIPTORS}`);
  });

  after(async () => {
    for (const c of crowd) c.destroy();
    const problem = await stopGatewayChecked(gw);
    await prosody?.stop();
    for (const [k, v] of Object.entries(figures)) console.log(`# ${k}: ${JSON.stringify(v)}`);
    if (problem) assert.fail(problem);
  });

  const healthyBosh = async () => {
    const t0 = performance.now();
    const b = new RawBosh(gw);
    const jid = await b.login('alice', prosody.users.alice);
    const ms = performance.now() - t0;
    await b.send('', { type: 'terminate' });
    return { jid, ms };
  };
  const healthyWs = async () => {
    const t0 = performance.now();
    const { probe, jid } = await rawLogin(gw.wsUrl, { username: 'bob', password: prosody.users.bob });
    const ms = performance.now() - t0;
    probe.send(closeFrame());
    probe.ws.close();
    await Promise.race([probe.closed, new Promise((r) => setTimeout(r, 3000))]);
    return { jid, ms };
  };

  // The gateway's descriptors once the same count has held for 5 s: an upstream closed cleanly may
  // take up to 2 s to let go of its socket, and the harness's fetch() of /healthz keeps its
  // connection to the admin port alive for 4 s.
  const settledFds = async () => {
    let last = await fdInfo(gw.pid);
    let since = performance.now();
    for (const end = performance.now() + 20000; performance.now() < end && performance.now() - since < 5000;) {
      await new Promise((r) => setTimeout(r, 250));
      const now = await fdInfo(gw.pid);
      if (now.count !== last.count) since = performance.now();
      last = now;
    }
    return last;
  };

  it('serves a healthy client within 2 s per login while the crowd is open; cuts each slow connection at its deadline; counts the refusals; comes back to its descriptors', async () => {
    // Baseline: one login each way, everything closed again.
    await healthyBosh();
    await healthyWs();
    await until(async () => (await status(gw)).sessions.open === 0, 10000);
    const fd0 = await settledFds();
    const m0 = await metrics(gw);
    const refused0 = (l) => metricValue(m0, 'xmppgw_refused_total', { limit: l });

    // The crowd: every address's connections interleaved, opened as fast as they connect.
    const t0 = performance.now();
    const opening = [];
    for (let i = 0; i < PER_ADDRESS; i++) {
      for (const addr of ADDRESSES) {
        const k = kindOf(i);
        opening.push(k === 'header-bosh' ? headerDrip(gw.port, addr)
          : k === 'header-ws' ? headerDrip(gw.port, addr, { upgrade: true })
            : k === 'bosh-body' ? boshBodyDrip(gw.port, addr)
              : wsSilent(gw.port, addr, { frame: i % 8 === 3 }));
      }
    }
    crowd.push(...await Promise.all(opening));
    const upgrades = crowd.filter((c) => c.kind.startsWith('ws-'));
    await until(() => upgrades.every((c) => !Number.isNaN(c.readyAt) || !Number.isNaN(c.closedAt)), 10000, 20);
    figures.crowdOpenMs = Math.round(performance.now() - t0);
    assert.equal(crowd.length, TOTAL);
    for (const c of upgrades) assert.equal(c.status, 101, `${c.kind} from ${c.localAddress}: upgraded`);

    // The BOSH bodies past limits.per_address_pending were answered 429 at once.
    await new Promise((r) => setTimeout(r, 300));
    const bodies = crowd.filter((c) => c.kind === 'bosh-body');
    const refusedNow = bodies.filter((c) => c.status === 429);
    for (const addr of ADDRESSES) {
      const mine = bodies.filter((c) => c.localAddress === addr);
      assert.equal(mine.filter((c) => c.status === 429).length, mine.length - PENDING_LIMIT,
        `${addr}: the bodies past limits.per_address_pending refused`);
    }
    for (const c of refusedNow) assert.ok(c.answerAt - c.readyAt < 1000, '429 at once');

    // So were the WebSockets past it, right after their upgrade: a policy-violation stream error.
    const wsRefusedOf = (addr) => upgrades.filter((c) => c.localAddress === addr && /policy-violation/.test(c.received));
    const wsPerAddress = upgrades.length / ADDRESSES.length;
    await until(() => ADDRESSES.every((a) => wsRefusedOf(a).length >= wsPerAddress - PENDING_LIMIT), 5000, 20);
    for (const addr of ADDRESSES) {
      assert.equal(wsRefusedOf(addr).length, wsPerAddress - PENDING_LIMIT,
        `${addr}: the WebSockets past limits.per_address_pending refused`);
    }
    const wsRefused = ADDRESSES.flatMap(wsRefusedOf);
    for (const c of wsRefused) {
      assert.ok(c.answerAt - c.readyAt < 1000, `${c.kind} from ${c.localAddress}: refused at once`);
      assert.match(c.received, /<open [^>]*urn:ietf:params:xml:ns:xmpp-framing[\s\S]*<policy-violation[\s\S]*<close /,
        `${c.kind} from ${c.localAddress}: <open/>, the stream error, <close/>`);
      assert.doesNotMatch(c.received, /connection-timeout/);
    }
    const refusedAll = new Set([...refusedNow, ...wsRefused]);

    // While every other slow connection is open: a healthy login over BOSH and over WebSocket.
    const [hb, hw] = await Promise.all([healthyBosh(), healthyWs()]);
    figures.healthyLoginMs = { bosh: Math.round(hb.ms), websocket: Math.round(hw.ms) };
    const stillOpen = crowd.filter((c) => !refusedAll.has(c) && Number.isNaN(c.closedAt)).length;
    figures.openDuringLogins = stillOpen;
    assert.equal(stillOpen, TOTAL - refusedAll.size, 'every slow connection not refused is still open after the logins');
    assert.ok(hb.ms <= LOGIN_MS, `BOSH login took ${Math.round(hb.ms)} ms`);
    assert.ok(hw.ms <= LOGIN_MS, `WebSocket login took ${Math.round(hw.ms)} ms`);
    assert.match(hb.jid, /^alice@localhost\//);
    assert.match(hw.jid, /^bob@localhost\//);

    // Every slow connection is closed by the gateway, each at its own deadline.
    const lastDeadline = (HEADER_TIMEOUT_S > BODY_TIMEOUT_S ? HEADER_TIMEOUT_S : BODY_TIMEOUT_S) * 1000
      + CONNECT_TIMEOUT_S * 1000 + CLOSE_WAIT_S * 1000 + SLACK_MS;
    await Promise.race([Promise.all(crowd.map((c) => c.closed)), new Promise((r) => setTimeout(r, lastDeadline))]);
    const open = crowd.filter((c) => Number.isNaN(c.closedAt));
    assert.deepEqual(open.map((c) => `${c.kind} ${c.localAddress}`).slice(0, 10), [], `${open.length} still open`);

    const check = (list, what, from, dueMs, closeByMs, earlyMs = EARLY_MS) => {
      const late = [];
      const early = [];
      const times = list.map((c) => c[from.at] - c[from.start]);
      list.forEach((c, j) => {
        if (times[j] < dueMs - earlyMs) early.push(Math.round(times[j]));
        if (times[j] > dueMs + SLACK_MS) late.push(Math.round(times[j]));
        if (closeByMs !== undefined && c.closedAt - c[from.start] > closeByMs) late.push(`closed ${Math.round(c.closedAt - c[from.start])}`);
      });
      figures[what] = { n: list.length, minMs: Math.round(Math.min(...times)), medianMs: Math.round(median(times)), maxMs: Math.round(Math.max(...times)) };
      assert.deepEqual(early.slice(0, 10), [], `${what}: ${early.length} cut before ${dueMs - earlyMs} ms`);
      assert.deepEqual(late.slice(0, 10), [], `${what}: ${late.length} cut after ${dueMs + SLACK_MS} ms`);
    };

    const headers = crowd.filter((c) => c.kind.startsWith('header-'));
    for (const c of headers) assert.equal(c.status, null, `${c.kind}: no answer to headers never complete`);
    check(headers, 'headers cut after the first byte', { start: 'startAt', at: 'closedAt' }, HEADER_TIMEOUT_S * 1000,
      undefined, LWS_EARLY_MS);

    const timedOut = bodies.filter((c) => c.status !== 429);
    for (const c of timedOut) assert.equal(c.status, 408, `bosh-body from ${c.localAddress}: 408 (got ${c.status})`);
    check(timedOut, 'bodies answered 408 after the headers', { start: 'readyAt', at: 'answerAt' }, BODY_TIMEOUT_S * 1000,
      BODY_TIMEOUT_S * 1000 + SLACK_MS);

    const accepted = upgrades.filter((c) => !refusedAll.has(c));
    for (const c of accepted) {
      assert.match(c.received, /connection-timeout/, `${c.kind} from ${c.localAddress}: the connection-timeout stream error`);
    }
    // From the upgrade request written: the gateway's timer starts when it has read it, and the
    // 101 may reach this busy process later than that.
    check(accepted, 'websockets told connection-timeout after the upgrade request', { start: 'startAt', at: 'answerAt' },
      CONNECT_TIMEOUT_S * 1000, (CONNECT_TIMEOUT_S + CLOSE_WAIT_S) * 1000 + SLACK_MS);
    // A refused one is closed once its close frame has waited CLOSE_WAIT_S for an answer.
    const refusedClosed = wsRefused.map((c) => c.closedAt - c.readyAt);
    figures['websockets refused, closed after the 101'] = { n: wsRefused.length, medianMs: Math.round(median(refusedClosed)),
      maxMs: Math.round(Math.max(...refusedClosed)) };
    for (const ms of refusedClosed) assert.ok(ms <= CLOSE_WAIT_S * 1000 + SLACK_MS, `a refused WebSocket closed ${Math.round(ms)} ms after its 101`);

    // The refusals and the deadlines in /metrics, by limit.
    const m1 = await metrics(gw);
    const delta = (l) => metricValue(m1, 'xmppgw_refused_total', { limit: l }) - refused0(l);
    figures.refused = { address_pending: delta('address_pending'), http_deadline: delta('http_deadline') };
    assert.equal(delta('address_pending'), refusedNow.length + wsRefused.length,
      'each 429 and each refused WebSocket counted as address_pending');
    assert.equal(delta('http_deadline'), timedOut.length, 'each 408 counted as http_deadline');

    // Descriptors back to the baseline exactly; no session left.
    let fd1 = await fdInfo(gw.pid);
    await until(async () => { fd1 = await fdInfo(gw.pid); return fd1.count === fd0.count; }, 10000, 200);
    figures.descriptors = { before: fd0.count, peakNeeded: TOTAL, after: fd1.count, kinds: fd1.kinds };
    assert.equal(fd1.count, fd0.count, `descriptors: ${JSON.stringify(fd1.kinds)} after, ${JSON.stringify(fd0.kinds)} before`);
    assert.equal((await status(gw)).sessions.open, 0, "no session left");
  });
});
