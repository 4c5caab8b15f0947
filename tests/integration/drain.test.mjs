// A drain that loses nothing: two gateways (node_id g1, g2) on one Prosody with mod_smacks. A drain
// of g1, started by POST /api/drain and, separately, by SIGTERM: /readyz answers 503 at once while
// /healthz stays 200; new BOSH and WebSocket sessions on g1 are refused with system-shutdown; the
// sessions already open go on exchanging messages during drain.grace; after it, an @xmpp/client
// with stream management (its reconnect pointed at g2) resumes on g2, a node that never saw the
// stream, and receives every message a peer sent before, during and after the drain once and in
// order; a plain WebSocket client and a BOSH client get system-shutdown (and a prebind on g1 is
// refused with 503); g1 exits 0 within
// grace + 5 s; g2's own sessions see nothing.
// Real parts: Prosody with mod_smacks, @xmpp/client (stream management, reconnect), Strophe.js
// over BOSH, raw WebSockets.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { client as xmppClient, xml } from '@xmpp/client';
import { startProsody } from './lib/prosody.mjs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { startGateway, WRAPPER_SLACK, SOURCE_DIR } from './lib/gateway.mjs';
import { login, stopAllClients, sleep } from './lib/clients.mjs';
import { connect, openFrame, expectStreamError, rawLogin } from './lib/wsraw.mjs';

const T = { timeout: 90000 };
const GRACE_S = 2;
const TOKEN = 'drain-test-token';
const USERS = {
  dra: 'dra-pw-1', drb: 'drb-pw-2', drc: 'drc-pw-3', drd: 'drd-pw-4', dre: 'dre-pw-5',
};

function until(cond, ms, what) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      if (cond()) return resolve();
      if (Date.now() - t0 > ms) return reject(new Error(`timed out after ${ms} ms: ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

function startNode(prosody, nodeId) {
  return startGateway({
    prosody,
    config: { node_id: nodeId, drain: { grace: GRACE_S }, admin: { token: TOKEN } },
  });
}

// An @xmpp/client with stream management (on by default when the server offers it), PLAIN or
// SCRAM-SHA-1 as asked; its reconnect goes to service until the test points it elsewhere.
async function smClient(service, name, resource, mechanism) {
  const c = xmppClient({
    service,
    domain: 'localhost',
    resource,
    credentials: async (auth) => auth({ username: name, password: USERS[name] }, mechanism),
  });
  c.reconnect.delay = 100;
  const bodies = [];
  const events = [];
  c.on('stanza', (el) => {
    if (el.name === 'message' && el.getChildText('body')) bodies.push(el.getChildText('body'));
  });
  c.on('error', () => {});
  c.on('disconnect', (e) => events.push({ what: 'disconnect', at: Date.now(), clean: e?.clean }));
  c.streamManagement.on('resumed', () => events.push({ what: 'resumed', at: Date.now() }));
  await c.start();
  await until(() => c.streamManagement.enabled && c.streamManagement.id, 10000, 'sm enabled');
  return { c, bodies, events, resumed: () => events.filter((e) => e.what === 'resumed').length };
}

async function adminJson(gw, path) {
  const res = await fetch(`${gw.adminUrl}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: res.status, body: await res.json() };
}

async function status(gw, path) {
  const res = await fetch(`${gw.adminUrl}${path}`);
  await res.arrayBuffer();
  return res.status;
}

function postDrain(gw, body = '{}') {
  return fetch(`${gw.adminUrl}/api/drain`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body,
  });
}

// A BOSH session creation request, raw: the answer's body element as text.
async function boshCreate(gw) {
  const res = await fetch(gw.boshUrl, {
    method: 'POST',
    headers: { 'content-type': 'text/xml; charset=utf-8' },
    body: "<body rid='1000' to='localhost' wait='10' hold='1' ver='1.6' xml:lang='en' "
      + "xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>",
  });
  return { status: res.status, text: await res.text() };
}

// A WebSocket <open/> to a draining node: the stream error the node answers with.
async function wsRefused(gw) {
  const probe = await connect(gw.wsUrl);
  probe.send(openFrame('localhost'));
  return expectStreamError(probe, 'system-shutdown', { expectOpenFirst: true });
}

// The gateway's exit and when it came.
function exitOf(gw) {
  return new Promise((r) => {
    if (gw.exited) r({ ...gw.exited, at: Date.now() });
    else gw.process.once('exit', (code, signal) => r({ code, signal, at: Date.now() }));
  });
}

// A peer on g2 sends tagged messages to `to` every `everyMs` until stop() is called; sent() gives
// the bodies in the order they were sent.
function sender(peer, to, tag, everyMs) {
  const sent = [];
  let running = true;
  const done = (async () => {
    let i = 0;
    while (running) {
      const body = `${tag}-${i++}`;
      await peer.sendMessage(to, body);
      sent.push(body);
      await sleep(everyMs);
    }
  })();
  done.catch(() => {}); // reported by stop()
  return { sent, async stop() { running = false; await done; } };
}

describe('drain without loss: two nodes, one Prosody', { timeout: 300000 }, () => {
  let prosody;
  let g2;
  const measured = [];
  const exits = [];

  before(async () => {
    prosody = await startProsody({ users: USERS, smacks: true, extraGlobal: 'smacks_hibernation_time = 60' });
    g2 = await startNode(prosody, 'g2');
  });

  after(async () => {
    await stopAllClients();
    const code = await g2?.stop();
    await prosody?.stop();
    if (measured.length) console.log(`# resume times after the drain (ms): ${measured.join(', ')}; g1 exited ${exits.join(', ')} ms after the drain started`);
    assert.equal(code, 0, `g2 exited with ${code}`);
  });

  // The drain of g1 by `start` (POST /api/drain or SIGTERM), with a stream-management client, a
  // plain WebSocket client and a BOSH client on g1 and a peer on g2. Returns what was seen.
  async function drainCase(start, mechanism) {
    const g1 = await startNode(prosody, 'g1');
    const g1exit = exitOf(g1);
    const a = await smClient(g1.wsUrl, 'dra', 'phone', mechanism);
    const jid = a.c.jid.toString();
    assert.equal(jid, 'dra@localhost/phone');
    const peer = await login('xmpp.js', { service: g2.wsUrl, username: 'drb', password: USERS.drb, resource: 'desk', mechanism: 'PLAIN' });
    const plain = await rawLogin(g1.wsUrl, { username: 'drc', password: USERS.drc, resource: 'plain' });
    const bosh = await login('strophe', { service: g1.boshUrl, username: 'drd', password: USERS.drd, resource: 'bosh', mechanism: 'PLAIN' });
    const g2own = await login('xmpp.js', { service: g2.wsUrl, username: 'dre', password: USERS.dre, resource: 'own', mechanism: 'PLAIN' });
    const g2ownErrors = g2own.errors.length;
    let during = null;
    try {
      // Before the drain.
      for (let i = 0; i < 10; i++) await peer.sendMessage(jid, `before-${i}`);
      await until(() => a.bodies.length >= 10, 10000, 'the messages sent before the drain');
      a.c.options.service = g2.wsUrl; // the proxy would send the reconnect to another node

      during = sender(peer, jid, 'during', 40);
      await sleep(200);
      const t0 = Date.now();
      await start(g1);
      // Out of the pool at once; alive all the same.
      assert.equal(await status(g1, '/readyz'), 503);
      assert.equal(await status(g1, '/healthz'), 200);
      assert.equal(await status(g2, '/readyz'), 200);
      // New sessions on g1 are refused.
      const refusedWs = await wsRefused(g1);
      assert.match(refusedWs.text, /shutting down|draining/);
      const refusedBosh = await boshCreate(g1);
      assert.match(refusedBosh.text, /type=['"]terminate['"]/);
      assert.match(refusedBosh.text, /condition=['"]system-shutdown['"]/);
      const prebind = await fetch(`${g1.adminUrl}/api/prebind`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ jid: 'drc@localhost', password: USERS.drc }),
      });
      assert.equal(prebind.status, 503, 'a prebind on a draining node');
      await prebind.arrayBuffer();
      // The open ones still work within the grace: BOSH both ways, the WebSocket clients too.
      const boshIn = `to-bosh-${Date.now()}`;
      await peer.sendMessage(bosh.jid, boshIn);
      await bosh.waitFor((s) => s.body === boshIn, 3000, 'a message to the BOSH client during the grace');
      const boshOut = `from-bosh-${Date.now()}`;
      await bosh.sendMessage(peer.jid, boshOut);
      await peer.waitFor((s) => s.body === boshOut, 3000, 'a message from the BOSH client during the grace');
      const before = a.bodies.length;
      await until(() => a.bodies.length > before + 3, 3000, 'messages to the stream-management client during the grace');
      assert.ok(Date.now() - t0 < GRACE_S * 1000, 'the checks within the grace took longer than the grace');
      assert.equal(a.resumed(), 0);

      // After the grace: the plain WebSocket client gets system-shutdown...
      const plainEnd = await expectStreamError(plain.probe, 'system-shutdown', { timeoutMs: (GRACE_S + 5) * 1000 });
      assert.ok(Date.now() - t0 >= GRACE_S * 1000 - 100, 'the plain client was ended before the grace was over');
      assert.equal(plainEnd.code, 1000);
      // ... the BOSH client too ...
      await until(() => bosh.statusLog.some((s) => s.condition === 'system-shutdown'), 5000,
        `BOSH system-shutdown (status: ${JSON.stringify(bosh.statusLog)})`);
      // ... and the stream-management client resumes on g2.
      await until(() => a.resumed() === 1, 30000, 'the stream resumed on g2');
      const drop = a.events.find((e) => e.what === 'disconnect');
      const resumedAt = a.events.find((e) => e.what === 'resumed').at;
      measured.push(`${mechanism} ${resumedAt - drop.at}`);
      const exit = await g1exit;
      const exitMs = exit.at - t0;
      assert.deepEqual([exit.code, exit.signal], [0, null]);
      assert.ok(exitMs < (GRACE_S + 5) * 1000 * WRAPPER_SLACK, `g1 exited ${exitMs} ms after the drain started`);

      await sleep(300);
      await during.stop();
      for (let i = 0; i < 10; i++) await peer.sendMessage(jid, `after-${i}`);
      const want = [
        ...Array.from({ length: 10 }, (_, i) => `before-${i}`),
        ...during.sent,
        ...Array.from({ length: 10 }, (_, i) => `after-${i}`),
      ];
      await until(() => a.bodies.length >= want.length, 10000, `all ${want.length} messages (got ${a.bodies.length})`);
      await sleep(500); // a duplicate would come now
      assert.deepEqual(a.bodies, want);
      assert.ok(during.sent.length >= 40, `only ${during.sent.length} messages sent around the drain`);

      // The resumed session is whole on g2: its JID in the log and in /api/sessions, stanzas
      // both ways.
      assert.equal(a.c.jid.toString(), jid);
      await g2.waitForLog(/dra@localhost\/phone.*resumed stream: full JID known/, 5000);
      assert.match(g2.logText(), /resumed a stream \(XEP-0198\) held by another node/);
      const listed = await adminJson(g2, '/api/sessions');
      assert.ok(listed.body.sessions.some((s) => s.jid === jid), JSON.stringify(listed.body));
      const back = `from-resumed-${Date.now()}`;
      await a.c.send(xml('message', { to: peer.jid, type: 'chat' }, xml('body', {}, back)));
      await peer.waitFor((s) => s.body === back, 5000, 'a message from the resumed client');
      // g1's log: one line at the start, one at the end; the stream left resumable.
      const log = g1.logText();
      assert.match(log, /drain started \(.*\): \d+ sessions \(websocket 2, bosh 1, internal 0\) end in 2 s/);
      assert.match(log, /dra@localhost\/phone.*session ended: drained; upstream left resumable/);
      assert.match(log, /drain: grace of 2 s over: 3 sessions ended \(1 left resumable for XEP-0198, 2 told system-shutdown\)/);
      // g2's own sessions saw nothing.
      assert.equal(g2own.client.status, 'online');
      assert.equal(g2own.errors.length, g2ownErrors);
      const ping = `to-g2-${Date.now()}`;
      await peer.sendMessage(g2own.jid, ping);
      await g2own.waitFor((s) => s.body === ping, 5000, 'a message to g2\'s own client');
      exits.push(exitMs);
      return { exitMs };
    } finally {
      await during?.stop().catch(() => {});
      a.c.reconnect.stop();
      await a.c.stop().catch(() => {});
      plain.probe.terminate();
      await bosh.stop();
      await peer.stop();
      await g2own.stop();
      await g1.stop(3000);
    }
  }

  it('POST /api/drain: 202, the drain as above; a second POST is harmless (PLAIN)', T, async () => {
    await drainCase(async (g1) => {
      const res = await postDrain(g1);
      assert.equal(res.status, 202);
      const body = await res.json();
      assert.deepEqual(body, { draining: true, grace_seconds: GRACE_S, sessions: 3 });
      const again = await postDrain(g1, '');
      assert.equal(again.status, 202);
      assert.equal((await again.json()).grace_seconds, GRACE_S);
      const st = await adminJson(g1, '/status');
      assert.equal(st.body.draining, true);
    }, 'PLAIN');
  });

  it('SIGTERM: the same drain (SCRAM-SHA-1)', T, async () => {
    await drainCase(async (g1) => { g1.process.kill('SIGTERM'); await g1.waitForLog(/drain started \(SIGTERM\)/, 2000); },
      'SCRAM-SHA-1');
  });

  it('POST /api/drain needs the token and a JSON body', T, async () => {
    const g1 = await startNode(prosody, 'g1');
    try {
      const noToken = await fetch(`${g1.adminUrl}/api/drain`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}',
      });
      assert.equal(noToken.status, 401);
      const notJson = await postDrain(g1, '[1]');
      assert.equal(notJson.status, 400);
      assert.equal(await status(g1, '/readyz'), 200, 'a refused drain request started a drain');
    } finally {
      assert.equal(await g1.stop(5000), 0);
    }
  });

  it('the shipped systemd unit waits longer than the example drain.grace + 5 s', async () => {
    const unit = await readFile(path.join(SOURCE_DIR, 'docs', 'deploy', 'xmppgw.service'), 'utf8');
    const example = JSON.parse(await readFile(path.join(SOURCE_DIR, 'config', 'xmppgw.example.json'), 'utf8'));
    const stop = Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1]);
    assert.ok(stop > example.drain.grace + 5, `TimeoutStopSec=${stop}, drain.grace ${example.drain.grace}`);
  });

  it('a second SIGTERM stops at once', T, async () => {
    const g1 = await startNode(prosody, 'g1');
    const c = await rawLogin(g1.wsUrl, { username: 'drc', password: USERS.drc, resource: 'twice' });
    try {
      const t0 = Date.now();
      g1.process.kill('SIGTERM');
      await g1.waitForLog(/drain started \(SIGTERM\)/, 2000);
      g1.process.kill('SIGTERM');
      const exit = await exitOf(g1);
      assert.equal(exit.code, 0);
      assert.ok(exit.at - t0 < GRACE_S * 1000, `exited ${exit.at - t0} ms after the first signal`);
      assert.match(g1.logText(), /second signal: stopping at once/);
    } finally {
      c.probe.terminate();
      await g1.stop(3000);
    }
  });
});
