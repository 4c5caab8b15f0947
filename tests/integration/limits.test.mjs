// Per-address limits and the authentication deadline, tried as an attacker would: one client
// address cannot hold more unauthenticated sessions, sessions, or new sessions per second than the
// configuration allows, while another address (127.0.0.2) is served as usual; a session that never
// binds a JID is ended with policy-violation after limits.auth_timeout; one address cannot hold
// more WebSocket connections that have not sent <open/> than limits.per_address_pending (the next
// is refused after the upgrade, 127.0.0.3 is served, and a slot comes back exactly once when one
// closes or opens its stream). Each refusal is the protocol's answer (stream error, BOSH
// terminate), a log line and a counter in /metrics.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack } from './lib/stack.mjs';
import {
  connect, openFrame, expectOpen, expectFeatures, expectStreamError, rawLogin, NS_SASL, NS_CLIENT, NS_BIND,
} from './lib/wsraw.mjs';

const T = { timeout: 30000 };

async function metric(gw, name, label) {
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  const m = text.match(new RegExp(`^${name}\\{limit="${label}"\\} (\\d+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

// A stream opened but never authenticated.
async function openUnauthenticated(gw, localAddress) {
  const p = await connect(gw.wsUrl, { localAddress });
  p.send(openFrame());
  await expectOpen(p);
  await expectFeatures(p);
  return p;
}

async function boshCreate(gw, rid, localAddress, to = 'localhost') {
  const { request } = await import('node:http');
  const body = `<body rid='${rid}' to='${to}' xml:lang='en' wait='5' hold='1' ver='1.6' ` +
    `xmpp:version='1.0' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>`;
  return new Promise((resolve, reject) => {
    const req = request(gw.boshUrl, {
      method: 'POST', localAddress,
      headers: { 'Content-Type': 'text/xml; charset=utf-8', 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('per-address limits and the authentication deadline', { timeout: 120000 }, () => {
  let stack;
  const open = [];

  before(async () => {
    stack = await startStack({
      gateway: {
        config: {
          limits: {
            per_address_unauthenticated: 3, per_address_sessions: 5,
            per_address_rate: 1, per_address_burst: 6, auth_timeout: 5,
          },
        },
      },
    });
  });

  after(async () => {
    for (const p of open) p.terminate();
    const problem = await stack?.stop();
    if (problem) assert.fail(problem);
  });

  it('refuses a fourth unauthenticated session from one address, not from another', T, async () => {
    for (let i = 0; i < 3; i++) open.push(await openUnauthenticated(stack.gw, '127.0.0.1'));
    const p = await connect(stack.gw.wsUrl, { localAddress: '127.0.0.1' });
    open.push(p);
    p.send(openFrame());
    const e = await expectStreamError(p, 'resource-constraint', { expectOpenFirst: true });
    assert.match(e.text, /too many sessions/);
    assert.equal(await metric(stack.gw, 'xmppgw_refused_total', 'address_unauthenticated'), 1);
    // Another client address is not affected.
    open.push(await openUnauthenticated(stack.gw, '127.0.0.2'));
    assert.match(stack.gw.logText(), /new session from 127\.0\.0\.1 refused: limit address_unauthenticated/);
  });

  it('ends a session that binds no JID within limits.auth_timeout with policy-violation', T, async () => {
    const p = await openUnauthenticated(stack.gw, '127.0.0.3');
    const t0 = Date.now();
    const e = await expectStreamError(p, 'policy-violation', { timeoutMs: 9000 });
    const waited = (Date.now() - t0) / 1000;
    assert.ok(waited >= 4 && waited <= 8, `ended after ${waited} s, expected about 5`);
    assert.match(e.text, /auth_timeout/);
    assert.ok(await metric(stack.gw, 'xmppgw_refused_total', 'auth_timeout') >= 1);
    // The sessions opened by the first test are ended by the same deadline: their slots are free
    // again, so this address may authenticate now.
    const { probe } = await rawLogin(stack.gw.wsUrl, { username: 'alice', password: stack.prosody.users.alice });
    open.push(probe);
  });

  it('refuses new sessions past the per-address rate (token bucket), over BOSH', T, async () => {
    const addr = '127.0.0.4';
    // Six sessions that end at once (a domain not served): each takes a token of the burst of 6
    // but holds no session slot afterwards.
    for (let i = 0; i < 6; i++) {
      const r = await boshCreate(stack.gw, 1000 + i, addr, 'not-served.example');
      assert.match(r.text, /condition=['"]host-unknown['"]/);
    }
    const refused = await boshCreate(stack.gw, 2000, addr);
    assert.equal(refused.status, 200);
    assert.match(refused.text, /type=['"]terminate['"]/);
    assert.match(refused.text, /condition=['"]policy-violation['"]/);
    assert.equal(await metric(stack.gw, 'xmppgw_refused_total', 'address_rate'), 1);
    // One token comes back per second.
    await new Promise((r) => setTimeout(r, 1200));
    const ok = await boshCreate(stack.gw, 3000, addr);
    assert.doesNotMatch(ok.text, /type=['"]terminate['"]/);
    assert.match(ok.text, /sid=['"]/);
  });
});

// A whole login (SASL PLAIN, restart, bind) on a connection already open; resolves to the JID.
async function loginOn(p, username, password) {
  p.send(openFrame());
  await expectOpen(p);
  await expectFeatures(p);
  p.send(`<auth xmlns="${NS_SASL}" mechanism="PLAIN">${Buffer.from(`\0${username}\0${password}`).toString('base64')}</auth>`);
  const success = await p.next();
  assert.equal(success.el?.localName, 'success', success.text);
  p.send(openFrame());
  await expectOpen(p);
  await expectFeatures(p);
  p.send(`<iq xmlns="${NS_CLIENT}" type="set" id="b1"><bind xmlns="${NS_BIND}"/></iq>`);
  const bound = await p.next();
  const jid = bound.el?.getElementsByTagNameNS(NS_BIND, 'jid')[0]?.textContent;
  assert.ok(jid, `bind result: ${bound.text}`);
  return jid;
}

describe('WebSocket connections that have not sent <open/>, per address', { timeout: 120000 }, () => {
  const LIMIT = 3;
  let stack;
  const open = [];

  before(async () => {
    stack = await startStack({ gateway: { config: { limits: { per_address_pending: LIMIT } } } });
  });

  after(async () => {
    for (const p of open) p.terminate();
    const problem = await stack?.stop();
    if (problem) assert.fail(problem);
  });

  const refusals = () => (stack.gw.logText().match(/websocket connection from 127\.0\.0\.2 refused/g) ?? []).length;

  // A connection from addr that sends nothing: the gateway must leave it alone (no frame, no
  // close, no refusal counted) while its <open/> is due.
  async function silent(addr) {
    const before = await metric(stack.gw, 'xmppgw_refused_total', 'address_pending');
    const p = await connect(stack.gw.wsUrl, { localAddress: addr });
    open.push(p);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(p.frames.length, 0, `accepted from ${addr}: no frame before <open/> (${p.frames.map((f) => f.text)})`);
    assert.equal(p.isClosed, false, `accepted from ${addr}: still open`);
    assert.equal(await metric(stack.gw, 'xmppgw_refused_total', 'address_pending'), before, 'no refusal counted');
    return p;
  }

  // The next connection from addr is upgraded, then refused: <open/>, <stream:error>
  // <policy-violation/>, <close/>, close 1008; counted and logged once.
  async function refused(addr, n) {
    const p = await connect(stack.gw.wsUrl, { localAddress: addr });
    open.push(p);
    const e = await expectStreamError(p, 'policy-violation', { expectOpenFirst: true });
    assert.match(e.text, /too many connections from this address/);
    assert.equal(e.code, 1008, 'close 1008 (policy violation)');
    assert.equal(await metric(stack.gw, 'xmppgw_refused_total', 'address_pending'), n);
    await stack.gw.waitForLog(/websocket connection from 127\.0\.0\.2 refused \(policy-violation\): 3 connections .*limits\.per_address_pending/, 2000);
    assert.equal(refusals(), n, 'one log line per refusal');
  }

  it('refuses the next one from 127.0.0.2 past limits.per_address_pending, serves 127.0.0.3, and counts each slot back once', T, async () => {
    const a = [];
    for (let i = 0; i < LIMIT; i++) a.push(await silent('127.0.0.2'));
    await refused('127.0.0.2', 1);

    // Another address is served as usual, a whole login, while 127.0.0.2 is full.
    const c = await silent('127.0.0.3');
    assert.match(await loginOn(c, 'alice', stack.prosody.users.alice), /^alice@localhost\//);

    // One closes: room for exactly one more.
    a[0].close();
    await a[0].closed;
    a.push(await silent('127.0.0.2'));
    await refused('127.0.0.2', 2);

    // One opens its stream and logs in: from <open/> on it counts as a session, not here.
    assert.match(await loginOn(a[1], 'bob', stack.prosody.users.bob), /^bob@localhost\//);
    a.push(await silent('127.0.0.2'));
    await refused('127.0.0.2', 3);

    // That one closing gives nothing back a second time: the address is still full.
    a[1].send('<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>');
    await a[1].closed;
    await refused('127.0.0.2', 4);

    // Every connection gone (closed with the close handshake, so the gateway has seen each go):
    // the address starts afresh.
    for (const p of a) p.close();
    await Promise.all(a.map((p) => p.closed));
    for (let i = 0; i < LIMIT; i++) await silent('127.0.0.2');
    await refused('127.0.0.2', 5);
  });
});
