// Prosody killed (SIGKILL) under 20 BOSH and 20 WebSocket sessions that are logged in: every client
// hears of it within 1 s (BOSH: the held request, or the next one, answered type='terminate'
// condition='remote-connection-failed'; WebSocket: <stream:error> with remote-connection-failed,
// <close/>, then the close frame), no session is left open, and once Prosody is started again on
// the same port (same config, same accounts) new sessions log in and get an answer to a ping.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startProsody } from '../integration/lib/prosody.mjs';
import { startGateway, stopGatewayChecked } from '../integration/lib/gateway.mjs';
import { rawLogin, expectStreamError, NS_CLIENT } from '../integration/lib/wsraw.mjs';
import { sleep } from '../integration/lib/clients.mjs';
import { RawBosh, isTerminate, status, until, pool, median, LOOPBACK_LIMITS } from './lib/raw.mjs';

const N = 20;              // clients of each transport
const TELL_WITHIN_MS = 1000;
const PING = (id) => `<iq type='get' id='${id}' to='localhost' xmlns='${NS_CLIENT}'><ping xmlns='urn:xmpp:ping'/></iq>`;

const stats = (xs) => `max ${Math.max(...xs).toFixed(1)} ms, median ${median(xs).toFixed(1)} ms`;

describe('upstream loss: Prosody killed under logged-in sessions', { timeout: 170000 }, () => {
  let prosody;
  let gw;
  const probes = [];

  before(async () => {
    prosody = await startProsody({ logLevel: 'info' });
    gw = await startGateway({
      prosody,
      // A held request stays held for the whole test unless something answers it; inactivity
      // longer than the test, so that no session ends for any reason but the upstream's loss.
      config: { log: { level: 'info' }, bosh: { max_wait: 60, inactivity: 120 }, limits: LOOPBACK_LIMITS },
    });
  });

  after(async () => {
    for (const p of probes) p.terminate();
    const problem = await stopGatewayChecked(gw);
    await prosody?.stop();
    if (problem) assert.fail(problem);
  });

  it(`tells ${N} BOSH and ${N} WebSocket clients remote-connection-failed within ${TELL_WITHIN_MS} ms`, { timeout: 90000 }, async () => {
    const users = Object.keys(prosody.users);
    const user = (i) => users[i % users.length];

    const boshClients = await pool(N, 10, async (i) => {
      const s = new RawBosh(gw);
      await s.login(user(i), prosody.users[user(i)], { createAttrs: { wait: 60 } });
      return s;
    });
    const wsClients = await pool(N, 10, async (i) => {
      const { probe } = await rawLogin(gw.wsUrl, {
        username: user(i), password: prosody.users[user(i)], resource: `ws${i}`,
      });
      probes.push(probe);
      return probe;
    });
    const before = await status(gw);
    assert.equal(before.sessions.open, 2 * N, `sessions open before the kill: ${JSON.stringify(before.sessions)}`);

    // Half the BOSH clients have a request held (wait 60 s: nothing else answers it in this
    // test); the other half have none open when Prosody dies and send their next one after it.
    const held = boshClients.slice(0, N / 2);
    const idle = boshClients.slice(N / 2);
    const heldAnswers = held.map((s) => s.send('', {}, { timeoutMs: 10000 }));
    await sleep(500);
    for (const [i, p] of heldAnswers.entries()) {
      const early = await Promise.race([p.then((r) => r), sleep(0).then(() => null)]);
      assert.equal(early, null, `held request ${i} answered before the kill: ${early?.text}`);
    }

    const wsEnds = wsClients.map((probe) => {
      const closedAt = probe.closed.then(() => performance.now());
      return expectStreamError(probe, 'remote-connection-failed', { timeoutMs: 10000 })
        .then(async (r) => ({ ...r, at: await closedAt }));
    });

    const t0 = performance.now();
    const killed = prosody.kill();
    // The idle clients' next requests go out over the first 400 ms after the kill, some before the
    // gateway can have seen the connection drop, some after (those meet the ended session).
    const idleSentAt = [];
    const idleAnswers = idle.map((s, i) => sleep((i * 400) / idle.length)
      .then(() => { idleSentAt[i] = performance.now(); return s.send('', {}, { timeoutMs: 10000 }); }));
    await killed;

    const heldRes = await Promise.all(heldAnswers);
    const idleRes = await Promise.all(idleAnswers);
    const wsRes = await Promise.all(wsEnds);

    for (const [i, r] of [...heldRes, ...idleRes].entries()) {
      assert.ok(isTerminate(r, 'remote-connection-failed'),
        `BOSH client ${i}: expected type='terminate' condition='remote-connection-failed', got HTTP ${r.status} ${r.text}`);
    }
    for (const [i, r] of wsRes.entries()) {
      assert.ok(r.text.length > 0, `WebSocket client ${i}: <text/> is empty`);
    }

    const heldMs = heldRes.map((r) => r.at - t0);
    const idleMs = idleRes.map((r) => r.at - t0);
    const wsMs = wsRes.map((r) => r.at - t0);
    const all = [...heldMs, ...idleMs, ...wsMs];
    console.log(`# time from SIGKILL to the client told (BOSH held request): ${stats(heldMs)}`);
    console.log(`# time from SIGKILL to the client told (BOSH next request, sent 0-400 ms after): ${stats(idleMs)}`
      + ` (request to answer: ${stats(idleRes.map((r, i) => r.at - idleSentAt[i]))})`);
    console.log(`# time from SIGKILL to the WebSocket close frame: ${stats(wsMs)}`);
    console.log(`# all ${all.length} clients: ${stats(all)}; WebSocket <text/>: "${wsRes[0].text}"`);
    for (const [what, xs] of [['BOSH held', heldMs], ['BOSH next', idleMs], ['WebSocket', wsMs]]) {
      const late = xs.filter((ms) => ms > TELL_WITHIN_MS);
      assert.equal(late.length, 0, `${what}: ${late.length} client(s) told after more than ${TELL_WITHIN_MS} ms: ${late.map((x) => x.toFixed(0)).join(', ')}`);
    }

    // No session is left open (a BOSH session's tombstone is not one).
    const after = await until(async () => {
      const st = await status(gw);
      return st.sessions.open === 0 ? st : null;
    }, 2000);
    assert.ok(after, `sessions still open after the kill: ${JSON.stringify((await status(gw)).sessions)}`);

    // The ended BOSH sessions keep answering with the same condition (the tombstone).
    const again = await held[0].send('', {}, { timeoutMs: 5000 });
    assert.ok(isTerminate(again, 'remote-connection-failed'), `after the end: ${again.text}`);
  });

  it('serves new sessions (login and ping, BOSH and WebSocket) once Prosody is back on the same port', { timeout: 60000 }, async () => {
    if (prosody.alive()) await prosody.kill(); // the previous test stopped before its kill
    const oldPid = prosody.pid;
    await prosody.restart();
    assert.notEqual(prosody.pid, oldPid);

    const s = new RawBosh(gw);
    const jid = await s.login('alice', prosody.users.alice);
    assert.match(jid, /^alice@localhost\//);
    const res = await s.sendUntil(PING('bping'), (r) => /id=['"]bping['"]/.test(r.text));
    assert.match(res.text, /<iq[^>]*type=['"]result['"]/, `ping answer over BOSH: ${res.text}`);
    assert.match(res.text, /id=['"]bping['"]/, res.text);
    const t = await s.send('', { type: 'terminate' });
    assert.equal(t.body?.attrs.type, 'terminate', t.text);

    const { probe } = await rawLogin(gw.wsUrl, { username: 'bob', password: prosody.users.bob, resource: 'back' });
    probes.push(probe);
    probe.send(PING('wping'));
    let f;
    do { f = await probe.next(5000); } while (f.el?.getAttribute('id') !== 'wping');
    assert.equal(f.el.localName, 'iq');
    assert.equal(f.el.getAttribute('type'), 'result', f.text);
    probe.terminate();

    const st = await until(async () => {
      const x = await status(gw);
      return x.sessions.open === 0 ? x : null;
    }, 3000);
    assert.ok(st, 'sessions left open after the clients ended');
  });
});
