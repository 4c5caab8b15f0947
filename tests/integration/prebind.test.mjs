// Prebind against the real Prosody: the public `GET /prebind` and `POST /prebind` make a visitor
// session that the gateway logs in and binds itself (`site@localhost/visitor-<16 hex>`); a client
// attaches with the sid and rid it was given (raw BOSH requests, as Strophe.js's attach sends
// them) and exchanges stanzas under the visitor policy (a pubsub subscription receives the
// admin's publish, a chat message is refused `forbidden`); a message sent to the prebound JID
// before the first request is delivered on it; a roster or blocklist request is answered empty by
// the gateway, a roster change refused; a prebind nobody picks up ends after
// `bosh.inactivity`, and an attached visitor left idle too, its subscription undone; the
// per-address limit answers 429 with a JSON error; no `visitors` -> 404; CORS for an allowed
// origin and none for a refused one (which is 403), the preflight; a password in a POST body is
// 400 and never a login; the log never holds the shared password, and names SCRAM-SHA-1 as the
// mechanism of the gateway's own upstream login.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startStack } from './lib/stack.mjs';
import { startGateway, stopGatewayChecked } from './lib/gateway.mjs';
import { loginXmppJs, stopAllClients, sleep } from './lib/clients.mjs';
import { RawBosh, isTerminate, status, until } from '../fault/lib/raw.mjs';

const T = { timeout: 40000 };
const PUBSUB_NS = 'http://jabber.org/protocol/pubsub';
const OWNER_NS = 'http://jabber.org/protocol/pubsub#owner';
const STANZAS_NS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
const VISITOR_DOMAIN = 'visitors.localhost';
const SITE_PASSWORD = 'site-Prebind-Secret-41c9';
const USERS = { alice: 'alice-secret-1', bob: 'bob-secret-2', site: SITE_PASSWORD };
const VISITOR_JID = /^site@localhost\/visitor-[0-9a-f]{16}$/;
const INACTIVITY_S = 5; // bosh.inactivity's minimum
const ALLOWED = 'http://localhost:8123'; // "localhost" is in the default origins
const REFUSED = 'http://evil.example';

/** One HTTP request on a connection of its own: { status, headers, text, json }. */
function request(url, { method = 'GET', headers = {}, body, localAddress } = {}) {
  if (method === 'POST' && body === undefined) body = ''; // Content-Length: 0, as browsers send it
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method,
      agent: false,
      localAddress,
      headers: {
        Connection: 'close',
        ...(body !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } : {}),
        ...headers,
      },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.setTimeout(30000, () => req.destroy(new Error(`${method} ${url}: no answer in 30 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

describe('prebind against the real Prosody', { timeout: 400000 }, () => {
  let stack;
  let dir;
  let ps;
  let alice;
  let bob;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-prebind-'));
    const passwordFile = path.join(dir, 'site.pass');
    await writeFile(passwordFile, `${SITE_PASSWORD}\n`, { mode: 0o600 });
    stack = await startStack({
      prosody: { users: USERS, admins: ['alice@localhost'] },
      gateway: {
        config: {
          visitors: {
            domain: VISITOR_DOMAIN,
            jid: 'site@localhost',
            password_file: passwordFile,
            allow: { pubsub: ['pubsub.localhost'] },
          },
          bosh: { inactivity: INACTIVITY_S },
        },
      },
    });
    ps = stack.prosody.pubsubDomain;
    alice = await loginXmppJs({ service: stack.gw.wsUrl, username: 'alice', password: USERS.alice, mechanism: 'PLAIN' });
    bob = await loginXmppJs({ service: stack.gw.wsUrl, username: 'bob', password: USERS.bob, mechanism: 'PLAIN' });
  });

  after(async () => {
    await stopAllClients();
    const problem = await stack?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    if (problem) assert.fail(problem);
  });

  const prebindUrl = () => `${stack.gw.url}/prebind`;

  /** A visitor prebind (GET or POST); asserts the JSON shape and returns it. */
  async function prebind(method = 'GET', opts = {}) {
    const r = await request(prebindUrl(), { method, ...opts });
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers['content-type'], /^application\/json/);
    assert.equal(r.headers['cache-control'], 'no-store');
    assert.deepEqual(Object.keys(r.json).sort(), ['jid', 'rid', 'sid']);
    assert.match(r.json.jid, VISITOR_JID);
    assert.match(r.json.sid, /^[0-9a-f]{32}$/);
    assert.equal(typeof r.json.rid, 'number');
    assert.ok(Number.isSafeInteger(r.json.rid) && r.json.rid > 0, r.text);
    return r.json;
  }

  /** The client side of a prebound session: its next request carries the rid it was given. */
  function attach(pb) {
    const c = new RawBosh(stack.gw);
    c.sid = pb.sid;
    c.rid = pb.rid - 1;
    c.jid = pb.jid;
    return c;
  }

  let nodeCount = 0;
  async function createNode() {
    const node = `prebind-${++nodeCount}`;
    const created = await alice.iq(`<iq type="set" to="${ps}"><pubsub xmlns="${PUBSUB_NS}"><create node="${node}"/></pubsub></iq>`);
    assert.equal(created.type, 'result', created.xml);
    return node;
  }

  async function subscribers(node) {
    const r = await alice.iq(`<iq type="get" to="${ps}"><pubsub xmlns="${OWNER_NS}"><subscriptions node="${node}"/></pubsub></iq>`);
    assert.equal(r.type, 'result', r.xml);
    return [...r.xml.matchAll(/<subscription\b[^>]*\bjid="([^"]*)"/g)].map((m) => m[1]);
  }

  it('GET /prebind gives a bound visitor; the attached client pings, subscribes and gets a publish, and a chat message is refused forbidden', T, async () => {
    const pb = await prebind('GET');
    const c = attach(pb);
    const ping = await c.sendUntil(`<iq type='get' id='p1' to='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>`,
      (r) => /id=['"]p1['"]/.test(r.text));
    assert.equal(ping.status, 200, ping.text);
    assert.match(ping.text, /type=['"]result['"]/, ping.text);

    const node = await createNode();
    const sub = await c.sendUntil(`<iq type='set' id='s1' to='${ps}' xmlns='jabber:client'><pubsub xmlns='${PUBSUB_NS}'><subscribe node='${node}' jid='${pb.jid}'/></pubsub></iq>`,
      (r) => /id=['"]s1['"]/.test(r.text));
    assert.match(sub.text, /subscription=['"]subscribed['"]/, sub.text);
    assert.ok((await subscribers(node)).includes(pb.jid));

    const published = alice.iq(`<iq type="set" to="${ps}"><pubsub xmlns="${PUBSUB_NS}"><publish node="${node}"><item id="i1"><entry xmlns="http://www.w3.org/2005/Atom"><title>Soliloquy</title></entry></item></publish></pubsub></iq>`);
    const ev = await c.sendUntil('', (r) => /Soliloquy/.test(r.text), { tries: 6 });
    assert.match(ev.text, /Soliloquy/, ev.text);
    assert.equal((await published).type, 'result');

    const msg = await c.sendUntil(`<message to='bob@localhost' id='m1' type='chat' xmlns='jabber:client'><body>hello bob</body></message>`,
      (r) => /id=['"]m1['"]/.test(r.text));
    assert.match(msg.text, /type=['"]error['"]/, msg.text);
    assert.match(msg.text, new RegExp(`<forbidden xmlns=['"]${STANZAS_NS}['"]`), msg.text);
    await sleep(1000);
    assert.equal(bob.received.filter((s) => s.name === 'message' && s.body === 'hello bob').length, 0);

    const end = await c.send('', { type: 'terminate' });
    assert.equal(end.body?.attrs.type, 'terminate', end.text);
    // A clean end undoes the subscription (visitor mode).
    assert.ok(await until(async () => !(await subscribers(node)).includes(pb.jid), 5000), 'subscription left behind');
  });

  it('a visitor asking for its roster or blocklist gets an empty one from the gateway (never the shared account\'s)', T, async () => {
    const pb = await prebind('GET');
    const c = attach(pb);
    const roster = await c.sendUntil(`<iq type='get' id='r1' xmlns='jabber:client'><query xmlns='jabber:iq:roster'/></iq>`,
      (r) => /id=['"]r1['"]/.test(r.text));
    assert.match(roster.text, /<iq[^>]*type=['"]result['"][^>]*>\s*<query xmlns=['"]jabber:iq:roster['"]\s*\/>\s*<\/iq>/, roster.text);
    const blocked = await c.sendUntil(`<iq type='get' id='b1' xmlns='jabber:client'><blocklist xmlns='urn:xmpp:blocking'/></iq>`,
      (r) => /id=['"]b1['"]/.test(r.text));
    assert.match(blocked.text, /<blocklist xmlns=['"]urn:xmpp:blocking['"]\s*\/>/, blocked.text);
    const change = await c.sendUntil(`<iq type='set' id='r2' xmlns='jabber:client'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'/></query></iq>`,
      (r) => /id=['"]r2['"]/.test(r.text));
    assert.match(change.text, /<forbidden xmlns=/, change.text);
    await c.send('', { type: 'terminate' });
  });

  it('POST /prebind (no body, or {"visitor": true}) gives a visitor too; a password in the body is 400, a large body 413', T, async () => {
    const a = await prebind('POST');
    const b = await prebind('POST', { body: '{"visitor": true}' });
    assert.notEqual(a.jid, b.jid);
    assert.notEqual(a.sid, b.sid);
    for (const body of ['{"jid": "alice@localhost", "password": "alice-secret-1"}', '{"visitor": false}', 'not json', '[]']) {
      const r = await request(prebindUrl(), { method: 'POST', body });
      assert.equal(r.status, 400, `${body}: ${r.text}`);
      assert.equal(r.json?.condition, 'bad-request', r.text);
      assert.match(r.json?.error, /visitor/);
    }
    const big = await request(prebindUrl(), { method: 'POST', body: `{"visitor": true, "pad": "${'x'.repeat(2000)}"}` });
    assert.equal(big.status, 413, big.text);
    assert.equal(big.json?.condition, 'policy-violation');
    assert.ok(!stack.gw.logText().includes('alice-secret-1'), 'a password from a body reached the log');
    for (const pb of [a, b]) await attach(pb).send('', { type: 'terminate' });
  });

  it('30 prebinds at once (three addresses) all bound, each its own JID and sid', T, async () => {
    const all = await Promise.all(Array.from({ length: 30 }, (_, i) =>
      request(prebindUrl(), { localAddress: `127.0.0.${4 + (i % 3)}` })));
    for (const r of all) assert.equal(r.status, 200, r.text);
    assert.equal(new Set(all.map((r) => r.json.sid)).size, 30);
    assert.equal(new Set(all.map((r) => r.json.jid)).size, 30);
    await Promise.all(all.map((r) => attach(r.json).send('', { type: 'terminate' })));
  });

  it('a message sent to the prebound JID before the first request is delivered on it', T, async () => {
    const pb = await prebind('GET');
    await bob.sendMessage(pb.jid, 'waiting-for-you');
    await sleep(700); // Prosody routes it to the bound resource; the gateway keeps it
    const c = attach(pb);
    const first = await c.sendUntil('', (r) => /waiting-for-you/.test(r.text), { tries: 2 });
    assert.match(first.text, /waiting-for-you/, first.text);
    assert.match(first.text, /from=['"]bob@localhost/, first.text);
    await c.send('', { type: 'terminate' });
  });

  it('a prebind nobody picks up ends after bosh.inactivity, and an idle attached visitor too (its subscription undone)', { timeout: 60000 }, async () => {
    const base = (await status(stack.gw)).sessions.open;
    const unused = await prebind('GET');
    const idle = await prebind('GET');
    const node = await createNode();
    const c = attach(idle);
    const sub = await c.sendUntil(`<iq type='set' id='s2' to='${ps}' xmlns='jabber:client'><pubsub xmlns='${PUBSUB_NS}'><subscribe node='${node}' jid='${idle.jid}'/></pubsub></iq>`,
      (r) => /id=['"]s2['"]/.test(r.text));
    assert.match(sub.text, /subscription=['"]subscribed['"]/, sub.text);
    assert.equal((await status(stack.gw)).sessions.open, base + 2);
    const t0 = Date.now();
    await sleep((INACTIVITY_S - 2) * 1000);
    assert.equal((await status(stack.gw)).sessions.open, base + 2, 'ended before bosh.inactivity');
    assert.ok(await until(async () => (await status(stack.gw)).sessions.open === base, (INACTIVITY_S + 8) * 1000, 200),
      'prebound sessions still open after bosh.inactivity');
    assert.ok(Date.now() - t0 >= (INACTIVITY_S - 2) * 1000);
    assert.ok(await until(async () => !(await subscribers(node)).includes(idle.jid), 5000), 'subscription left behind');
    for (const pb of [unused, idle]) {
      const r = await attach(pb).send('');
      assert.ok(isTerminate(r, 'item-not-found'), r.text);
    }
    await stack.gw.waitForLog(new RegExp(`sid=${unused.sid}.*BOSH session inactive`), 2000);
  });

  it('CORS: an allowed origin gets its headers (preflight too), a refused one 403 and none', T, async () => {
    const ok = await request(prebindUrl(), { headers: { Origin: ALLOWED, Accept: 'application/json, text/javascript' } });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.headers['access-control-allow-origin'], ALLOWED);
    assert.match(ok.headers.vary ?? '', /Origin/);
    await attach(ok.json).send('', { type: 'terminate' });

    const pre = await request(prebindUrl(), {
      method: 'OPTIONS',
      headers: { Origin: ALLOWED, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
    });
    assert.ok(pre.status === 204 || pre.status === 200, pre.text);
    assert.equal(pre.headers['access-control-allow-origin'], ALLOWED);
    assert.match(pre.headers['access-control-allow-methods'], /GET/);
    assert.match(pre.headers['access-control-allow-methods'], /POST/);
    assert.match(pre.headers['access-control-allow-headers'], /content-type/i);

    const before = (await status(stack.gw)).sessions.open;
    const bad = await request(prebindUrl(), { headers: { Origin: REFUSED } });
    assert.equal(bad.status, 403, bad.text);
    assert.equal(bad.json?.condition, 'forbidden');
    assert.equal(bad.headers['access-control-allow-origin'], undefined);
    const badPre = await request(prebindUrl(), { method: 'OPTIONS', headers: { Origin: REFUSED, 'Access-Control-Request-Method': 'GET' } });
    assert.equal(badPre.headers['access-control-allow-origin'], undefined);
    assert.equal((await status(stack.gw)).sessions.open, before, 'a refused origin made a session');
  });

  it('the log never holds the shared password', () => {
    const text = stack.gw.logText();
    assert.ok(!text.includes(SITE_PASSWORD), 'the shared password reached the log');
    const plain = Buffer.from(`\0site\0${SITE_PASSWORD}`).toString('base64');
    assert.ok(!text.includes(plain), 'the SASL PLAIN of the shared account reached the log');
    assert.match(text, /prebound: the client's next rid is \d+/);
    // Prosody 0.12 offers SCRAM-SHA-1 and PLAIN: the gateway's own login takes SCRAM.
    assert.match(text, /upstream SASL SCRAM-SHA-1 as site@localhost/);
    assert.doesNotMatch(text, /upstream SASL PLAIN/);
  });
});

describe('prebind refusals', { timeout: 120000 }, () => {
  let stack;
  let dir;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-prebind-lim-'));
    const passwordFile = path.join(dir, 'site.pass');
    await writeFile(passwordFile, `${SITE_PASSWORD}\n`, { mode: 0o600 });
    stack = await startStack({
      prosody: { users: USERS },
      gateway: {
        config: {
          visitors: { domain: VISITOR_DOMAIN, jid: 'site@localhost', password_file: passwordFile },
          bosh: { inactivity: INACTIVITY_S },
          limits: { per_address_sessions: 2 },
        },
      },
    });
  });

  after(async () => {
    const problem = await stack?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    if (problem) assert.fail(problem);
  });

  it('an address past limits.per_address_sessions gets 429 with a JSON error; another address is served', T, async () => {
    const url = `${stack.gw.url}/prebind`;
    const got = [];
    for (let i = 0; i < 2; i++) {
      const r = await request(url, { localAddress: '127.0.0.2' });
      assert.equal(r.status, 200, r.text);
      got.push(r.json);
    }
    const over = await request(url, { localAddress: '127.0.0.2', headers: { Origin: ALLOWED } });
    assert.equal(over.status, 429, over.text);
    assert.equal(over.json?.condition, 'policy-violation', over.text);
    assert.equal(over.headers['retry-after'], '1');
    assert.equal(over.headers['access-control-allow-origin'], ALLOWED);
    const other = await request(url, { localAddress: '127.0.0.3' });
    assert.equal(other.status, 200, other.text);
    assert.match(other.json.jid, VISITOR_JID);
    await stack.gw.waitForLog(/new session from 127\.0\.0\.2 refused: limit/, 2000);
  });

  it('with no visitors section /prebind is 404, GET and POST', T, async () => {
    const gw = await startGateway({ prosody: stack.prosody });
    try {
      for (const method of ['GET', 'POST']) {
        const r = await request(`${gw.url}/prebind`, { method });
        assert.equal(r.status, 404, r.text);
        assert.equal(r.json?.condition, 'item-not-found');
      }
      assert.equal((await status(gw)).sessions.open, 0);
    } finally {
      const problem = await stopGatewayChecked(gw);
      if (problem) assert.fail(problem);
    }
  });

  it('the visitors account refused by the server: 500 internal-server-error, and the log says why', T, async () => {
    const dir2 = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-prebind-bad-'));
    const pf = path.join(dir2, 'site.pass');
    await writeFile(pf, 'not-the-password\n', { mode: 0o600 });
    const gw = await startGateway({
      prosody: stack.prosody,
      config: { visitors: { domain: VISITOR_DOMAIN, jid: 'site@localhost', password_file: pf } },
    });
    try {
      const r = await request(`${gw.url}/prebind`);
      assert.equal(r.status, 500, r.text);
      assert.equal(r.json?.condition, 'internal-server-error');
      await gw.waitForLog(/visitor login as site@localhost: upstream refused the login/, 2000);
      assert.ok(!gw.logText().includes('not-the-password'));
    } finally {
      const problem = await stopGatewayChecked(gw);
      await rm(dir2, { recursive: true, force: true });
      if (problem) assert.fail(problem);
    }
  });

  it('upstream unreachable: 503 remote-connection-failed', T, async () => {
    const gw = await startGateway({
      prosody: stack.prosody,
      upstream: '127.0.0.1:1',
      config: { visitors: { domain: VISITOR_DOMAIN, jid: 'site@localhost', password: 'x' }, connect_timeout: 2 },
    });
    try {
      const r = await request(`${gw.url}/prebind`);
      assert.equal(r.status, 503, r.text);
      assert.equal(r.json?.condition, 'remote-connection-failed');
    } finally {
      const problem = await stopGatewayChecked(gw);
      if (problem) assert.fail(problem);
    }
  });
});
