// Per-address limits and the authentication deadline, tried as an attacker would: one client
// address cannot hold more unauthenticated sessions, sessions, or new sessions per second than the
// configuration allows, while another address (127.0.0.2) is served as usual; a session that never
// binds a JID is ended with policy-violation after limits.auth_timeout. Each refusal is the
// protocol's answer (stream error, BOSH terminate), a log line and a counter in /metrics.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack } from './lib/stack.mjs';
import { connect, openFrame, expectOpen, expectFeatures, expectStreamError, rawLogin } from './lib/wsraw.mjs';

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
