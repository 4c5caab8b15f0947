// BOSH conformance (XEP-0124 + XEP-0206) with raw HTTP against the gateway in front of a real
// Prosody: creation attributes and caps, rids (replay, window, order), hold and wait, overactivity,
// pause, inactivity, acknowledgements, keys, restart, terminate, terminate conditions, HTTP errors
// and CORS. Small waits and timeouts are configured so that the clock-driven rules run quickly.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import crypto from 'node:crypto';
import { DOMParser } from '@xmldom/xmldom';
import { startStack } from './lib/stack.mjs';
import { startGateway, stopGatewayChecked } from './lib/gateway.mjs';
import { closedPort } from './lib/ports.mjs';
import { loginXmppJs, sleep, stopAllClients } from './lib/clients.mjs';

const NS_BOSH = 'http://jabber.org/protocol/httpbind';
const NS_STREAM = 'http://etherx.jabber.org/streams';
const ORIGIN_OK = 'http://allowed.example';
const ORIGIN_BAD = 'http://evil.example';
const ROUTE_OK = 'xmpp:localhost:5222';

// The gateway under test: short clocks so that wait, inactivity and pause run in seconds.
const BOSH_CFG = {
  max_wait: 4,
  max_hold: 2,
  max_requests: 3,
  inactivity: 6,
  max_pause: 10,
  polling: 1,
  max_body: 65536,
  routes: [ROUTE_OK],
};

// ---------------------------------------------------------------- raw HTTP

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/**
 * One HTTP request. Options: method, headers, body (string), chunked (send the body chunked, no
 * Content-Length), signal. Resolves to { status, headers, text, body (parsed <body/> or null) }.
 */
function request(url, { method = 'POST', headers = {}, body, chunked = false, onRequest } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (body !== undefined && !chunked) h['Content-Length'] = Buffer.byteLength(body);
    if (body !== undefined && !h['Content-Type']) h['Content-Type'] = 'text/xml; charset=utf-8';
    const req = http.request(url, { method, headers: h, agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text, body: parseBody(text) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    onRequest?.(req);
    if (body !== undefined) {
      if (chunked) {
        req.write(body.slice(0, 5));
        req.write(body.slice(5));
      } else {
        req.write(body);
      }
    }
    req.end();
  });
}

/** Sends raw bytes on a fresh socket and returns the HTTP response head and body text. */
function rawRequest(port, bytes, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let data = '';
    const timer = setTimeout(() => { s.destroy(); resolve(parseRaw(data)); }, timeoutMs);
    s.setEncoding('utf8');
    s.on('data', (d) => {
      data += d;
      const r = parseRaw(data);
      if (r.complete) { clearTimeout(timer); s.destroy(); resolve(r); }
    });
    s.on('error', (err) => { clearTimeout(timer); if (data) resolve(parseRaw(data)); else reject(err); });
    s.on('close', () => { clearTimeout(timer); resolve(parseRaw(data)); });
    s.write(bytes);
  });
}

function parseRaw(data) {
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) return { status: 0, headers: {}, text: '', complete: false };
  const lines = data.slice(0, end).split('\r\n');
  const status = Number(/^HTTP\/1\.\d (\d{3})/.exec(lines[0])?.[1] ?? 0);
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  const text = data.slice(end + 4);
  const len = Number(headers['content-length'] ?? -1);
  return { status, headers, text, complete: len >= 0 && Buffer.byteLength(text) >= len };
}

/** The response's <body/> as { attrs, children (elements), xml } or null when not a BOSH body. */
function parseBody(text) {
  if (!text || !text.trim().startsWith('<')) return null;
  let doc;
  try {
    doc = new DOMParser({ onError: () => {} }).parseFromString(text, 'text/xml');
  } catch {
    return null;
  }
  const el = doc?.documentElement;
  if (!el || el.localName !== 'body' || el.namespaceURI !== NS_BOSH) return null;
  const attrs = {};
  for (let i = 0; i < el.attributes.length; i++) attrs[el.attributes[i].name] = el.attributes[i].value;
  const children = [];
  for (let n = el.firstChild; n; n = n.nextSibling) if (n.nodeType === 1) children.push(n);
  return { attrs, children, el, xml: text };
}

const bodyXml = (attrs, payload = '') => {
  const a = Object.entries(attrs).filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => ` ${k}='${v}'`).join('');
  return payload
    ? `<body${a} xmlns='${NS_BOSH}'>${payload}</body>`
    : `<body${a} xmlns='${NS_BOSH}'/>`;
};

const XBOSH = { 'xmlns:xmpp': 'urn:xmpp:xbosh' };
const b64 = (s) => Buffer.from(s, 'utf8').toString('base64');
const sha1hex = (s) => crypto.createHash('sha1').update(s).digest('hex');

/** A BOSH session spoken by hand. */
class Raw {
  constructor(gw, { origin } = {}) {
    this.url = gw.boshUrl;
    this.headers = origin ? { Origin: origin } : {};
    this.rid = 100000 + Math.floor(Math.random() * 1e6);
    this.sid = null;
  }

  post(text, extra = {}) {
    return request(this.url, { body: text, headers: { ...this.headers, ...extra.headers }, onRequest: extra.onRequest });
  }

  /** Session creation; attrs override the defaults (undefined removes one). */
  async create(attrs = {}) {
    const a = {
      rid: this.rid, to: 'localhost', wait: 3, hold: 1, ver: '1.6', 'xml:lang': 'en',
      'xmpp:version': '1.0', ...XBOSH, ...attrs,
    };
    const res = await this.post(bodyXml(a));
    if (res.body?.attrs.sid) this.sid = res.body.attrs.sid;
    return res;
  }

  /** Next request (rid + 1) with payload. Returns the response promise. */
  send(payload = '', attrs = {}, extra = {}) {
    this.rid += 1;
    return this.sendRid(this.rid, payload, attrs, extra);
  }

  sendRid(rid, payload = '', attrs = {}, extra = {}) {
    return this.post(bodyXml({ rid, sid: this.sid, ...attrs }, payload), extra);
  }

  /** SASL PLAIN, restart, bind: resolves to the full JID. */
  async login(user, password, resource = `r${crypto.randomBytes(4).toString('hex')}`, createAttrs = {}) {
    const c = await this.create(createAttrs);
    assert.equal(c.status, 200, c.text);
    assert.ok(this.sid, `no sid in ${c.text}`);
    const auth = await this.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${b64(`\0${user}\0${password}`)}</auth>`);
    assert.match(auth.text, /<success/, auth.text);
    const rs = await this.send('', { 'xmpp:restart': 'true', ...XBOSH });
    assert.match(rs.text, /<bind/, rs.text);
    const bind = await this.send(`<iq type='set' id='bind1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`);
    const jid = /<jid>([^<]+)<\/jid>/.exec(bind.text)?.[1];
    assert.ok(jid, `no bound JID in ${bind.text}`);
    this.jid = jid;
    return jid;
  }
}

/**
 * The parked request `first` (a promise) or, if it comes back without what `pred` wants, the next
 * requests, until an answer satisfies `pred` or `ms` pass.
 */
async function pollUntil(s, pred, ms, first) {
  const deadline = Date.now() + ms;
  let res = first ? await first : null;
  while (!res || !pred(res)) {
    if (Date.now() > deadline) throw new Error(`no answer as wanted within ${ms} ms; last: ${res?.text}`);
    res = await s.send('');
  }
  return res;
}

const isTerminate = (res, condition) => res.body?.attrs.type === 'terminate'
  && (condition === undefined ? true : res.body.attrs.condition === condition);

function assertTerminate(res, condition, status = 200) {
  assert.equal(res.status, status, `HTTP status; body: ${res.text}`);
  assert.ok(res.body, `not a BOSH body: ${res.text}`);
  assert.equal(res.body.attrs.type, 'terminate', res.text);
  assert.equal(res.body.attrs.condition, condition, res.text);
}

const msg = (to, body, id = crypto.randomBytes(4).toString('hex')) =>
  `<message to='${to}' type='chat' id='${id}' xmlns='jabber:client'><body>${body}</body></message>`;

const bodiesIn = (res) => [...res.text.matchAll(/<body>([^<]*)<\/body>/g)].map((m) => m[1]);

async function metrics(gw) {
  const r = await fetch(`${gw.adminUrl}/metrics`);
  return r.text();
}

function metricValue(text, name, label) {
  const re = label
    ? new RegExp(`^${name}\\{[^}]*${label}[^}]*\\} (\\d+)`, 'm')
    : new RegExp(`^${name} (\\d+)`, 'm');
  return Number(re.exec(text)?.[1] ?? NaN);
}

// ---------------------------------------------------------------- the suite

describe('BOSH conformance', () => {
  let stack;
  let gw;
  let users;

  before(async () => {
    stack = await startStack({
      gateway: { config: { origins: [ORIGIN_OK], bosh: BOSH_CFG, limits: { send_queue: 65536 } } },
    });
    gw = stack.gw;
    users = stack.prosody.users;
  });

  after(async () => {
    await stopAllClients();
    agent.destroy();
    const problem = await stack?.stop();
    assert.equal(problem, null, problem ?? '');
  });

  describe('session creation', () => {
    it('answers with every attribute, capped by the configuration', async () => {
      const s = new Raw(gw);
      const rid = s.rid;
      const res = await s.create({ wait: 300, hold: 5, ver: '1.6', ack: 1 });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers['content-type'], 'text/xml; charset=utf-8');
      const a = res.body.attrs;
      assert.match(a.sid, /^[0-9a-f]{32}$/, '128 random bits in hex');
      assert.equal(a.wait, '4', 'wait capped by bosh.max_wait');
      assert.equal(a.hold, '2', 'hold capped by bosh.max_hold');
      assert.equal(a.requests, '3', 'requests = hold + 1 within max_requests');
      assert.equal(a.inactivity, '6');
      assert.equal(a.polling, '1');
      assert.equal(a.maxpause, '10');
      assert.equal(a.ver, '1.6', 'the lower of the two versions');
      assert.equal(a.from, 'localhost');
      assert.ok(a.authid && a.authid.length > 0, 'authid = upstream stream id');
      assert.equal(a.ack, String(rid), 'ack echoes the creation rid');
      assert.equal(a['xmpp:version'], '1.0');
      assert.equal(a['xmpp:restartlogic'], 'true');
      const features = res.body.children.find((c) => c.localName === 'features' && c.namespaceURI === NS_STREAM);
      assert.ok(features, `stream features in the creation response: ${res.text}`);
      assert.match(res.text, /<mechanism>PLAIN<\/mechanism>/);
      assert.doesNotMatch(res.text, /starttls/, 'STARTTLS is the gateway\'s business');
      const t = await s.send('', { type: 'terminate' });
      assert.ok(isTerminate(t), t.text);
    });

    it('keeps the client values below the caps and answers ver 1.11 to newer clients', async () => {
      const s = new Raw(gw);
      const res = await s.create({ wait: 2, hold: 1, ver: '1.11', ack: undefined });
      const a = res.body.attrs;
      assert.equal(a.wait, '2');
      assert.equal(a.hold, '1');
      assert.equal(a.requests, '2');
      assert.equal(a.ver, '1.11');
      assert.equal(a.ack, undefined, 'no ack unless the client asked for acknowledgements');
      await s.send('', { type: 'terminate' });
    });

    it('refuses a domain that is not served: host-unknown', async () => {
      const s = new Raw(gw);
      const res = await s.create({ to: 'not-served.example' });
      assertTerminate(res, 'host-unknown');
      assert.equal(res.body.attrs.sid, undefined);
    });

    it('refuses a creation request without to: improper-addressing', async () => {
      const s = new Raw(gw);
      const res = await s.create({ to: undefined });
      assertTerminate(res, 'improper-addressing');
    });

    it('ignores a route that is not allowed (logged) and notes an allowed one', async () => {
      const s = new Raw(gw);
      const res = await s.create({ route: 'xmpp:evil.example:5222' });
      assert.equal(res.status, 200);
      assert.ok(res.body.attrs.sid, res.text);
      await gw.waitForLog(/route 'xmpp:evil\.example:5222'.*not allowed: ignored/);
      await s.send('', { type: 'terminate' });
      const s2 = new Raw(gw);
      const res2 = await s2.create({ route: ROUTE_OK });
      assert.ok(res2.body.attrs.sid, res2.text);
      await gw.waitForLog(/route 'xmpp:localhost:5222'.*allowed \(informational\)/);
      await s2.send('', { type: 'terminate' });
    });

    it('answers item-not-found for an unknown sid', async () => {
      const res = await request(gw.boshUrl, { body: bodyXml({ rid: 5, sid: 'f'.repeat(32) }) });
      assertTerminate(res, 'item-not-found');
    });

    it('answers bad-request for a request without rid', async () => {
      const res = await request(gw.boshUrl, { body: bodyXml({ to: 'localhost' }) });
      assertTerminate(res, 'bad-request');
    });
  });

  describe('rids', () => {
    it('replays the cached response of a repeated rid', async () => {
      const s = new Raw(gw);
      const jid = await s.login('alice', users.alice);
      const r1 = await s.send(`<iq type='get' id='ping1' to='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>`);
      assert.match(r1.text, /id='ping1'/, r1.text);
      const again = await s.sendRid(s.rid, `<iq type='get' id='ping1' to='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>`);
      assert.equal(again.status, 200);
      assert.equal(again.text, r1.text, 'byte-identical replay');
      // The session goes on.
      const r2 = await s.send(`<iq type='get' id='ping2' to='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>`);
      assert.match(r2.text, /id='ping2'/);
      assert.ok(jid.startsWith('alice@localhost/'));
      await s.send('', { type: 'terminate' });
    });

    it('ends the session with item-not-found for a rid outside the window', async () => {
      const s = new Raw(gw);
      await s.create();
      const res = await s.sendRid(s.rid + 3, ''); // requests = 2
      assertTerminate(res, 'item-not-found');
      const later = await s.send('');
      assertTerminate(later, 'item-not-found');
    });

    it('ends the session with item-not-found for a rid too old to replay', async () => {
      const s = new Raw(gw);
      await s.login('bob', users.bob);
      // The rid log keeps 2 x requests answers: this one is older.
      const res = await s.sendRid(s.rid - 6, '');
      assertTerminate(res, 'item-not-found');
    });

    it('processes requests in rid order, holding early ones until the gap is filled', async () => {
      const bob = await loginXmppJs({ service: gw.wsUrl, username: 'bob', password: users.bob });
      const s = new Raw(gw);
      await s.login('alice', users.alice);
      const first = s.rid + 1;
      const second = s.rid + 2;
      s.rid = second;
      const order = [];
      const p2 = s.sendRid(second, msg(bob.jid, 'order-second')).then((r) => { order.push(second); return r; });
      await sleep(300);
      assert.deepEqual(order, [], 'the early request is held');
      const p1 = s.sendRid(first, msg(bob.jid, 'order-first')).then((r) => { order.push(first); return r; });
      await bob.waitForCount((st) => st.name === 'message' && /^order-/.test(st.body ?? ''), 2, 5000);
      const got = bob.received.filter((st) => st.name === 'message' && /^order-/.test(st.body ?? '')).map((st) => st.body);
      assert.deepEqual(got, ['order-first', 'order-second'], 'stanzas reached upstream in rid order');
      const r1 = await p1;
      assert.equal(r1.status, 200);
      assert.deepEqual(order, [first], 'the older request is answered first (hold=1)');
      // Terminating answers the second one.
      const t = await s.send('', { type: 'terminate' });
      assert.ok(isTerminate(t), t.text);
      await p2;
      assert.deepEqual(order, [first, second]);
      await bob.stop();
    });
  });

  describe('hold and wait', () => {
    it('answers a parked request as soon as data comes, with every stanza in one body', async () => {
      const bob = await loginXmppJs({ service: gw.wsUrl, username: 'bob', password: users.bob });
      const s = new Raw(gw);
      const jid = await s.login('alice', users.alice, undefined, { wait: 4 });
      const t0 = Date.now();
      const parked = s.send('');
      await sleep(400);
      await bob.sendMessage(jid, 'wake-1');
      // The parked request answers at once: with the message, or (when the answer that carried
      // the last stanzas may still be on its way on another connection) empty, so that the
      // client comes back for it at once.
      const res = await pollUntil(s, (r) => bodiesIn(r).includes('wake-1'), 2500, parked);
      const took = Date.now() - t0;
      assert.ok(took < 2500, `answered after ${took} ms (wait is 4 s)`);
      assert.deepEqual(bodiesIn(res).filter((b) => b.startsWith('wake')), ['wake-1']);

      // Several stanzas while nothing is held: all of them in the next answer that has any.
      for (let i = 0; i < 5; i++) await bob.sendMessage(jid, `batch-${i}`);
      await sleep(500);
      const res2 = await pollUntil(s, (r) => bodiesIn(r).length > 0, 2500);
      assert.deepEqual(bodiesIn(res2), ['batch-0', 'batch-1', 'batch-2', 'batch-3', 'batch-4']);
      assert.match(res2.text, /xmlns='jabber:client'/, 'stanzas carry jabber:client');
      await s.send('', { type: 'terminate' });
      await bob.stop();
    });

    it('answers a parked request empty when wait passes', async () => {
      const s = new Raw(gw);
      await s.login('carol', users.carol, undefined, { wait: 2 });
      const t0 = Date.now();
      const res = await s.send('');
      const took = Date.now() - t0;
      assert.equal(res.status, 200);
      assert.equal(res.body.children.length, 0, res.text);
      assert.equal(res.body.attrs.type, undefined);
      assert.ok(took >= 1800 && took < 3800, `empty answer after ${took} ms, wait=2`);
      await s.send('', { type: 'terminate' });
    });

    it('answers the oldest parked request when a new one comes beyond hold', async () => {
      const s = new Raw(gw);
      await s.login('carol', users.carol, undefined, { wait: 4 });
      const t0 = Date.now();
      const older = s.send('');
      await sleep(300);
      const newer = s.send('');
      const r1 = await older;
      assert.ok(Date.now() - t0 < 2000, 'the older request went at once');
      assert.equal(r1.status, 200);
      const rt = s.send('', { type: 'terminate' });
      await newer;
      await rt;
    });

    it('keeps what upstream sends while no request is held (back-pressure at limits.send_queue), losing nothing', async () => {
      const bob = await loginXmppJs({ service: gw.wsUrl, username: 'bob', password: users.bob });
      const s = new Raw(gw);
      const jid = await s.login('alice', users.alice, undefined, { wait: 1 });
      const filler = 'y'.repeat(1000);
      const n = 200; // about three times limits.send_queue
      for (let i = 0; i < n; i++) await bob.sendMessage(jid, `bp-${i}-${filler}`);
      await sleep(1000);
      const got = [];
      let polls = 0;
      const deadline = Date.now() + 20000;
      while (got.length < n && Date.now() < deadline) {
        const r = await s.send('');
        polls += 1;
        got.push(...bodiesIn(r).filter((b) => b.startsWith('bp-')).map((b) => b.split('-').slice(0, 2).join('-')));
      }
      assert.deepEqual(got, Array.from({ length: n }, (_, i) => `bp-${i}`), 'all, in order');
      assert.ok(polls > 1, 'the gateway did not take everything at once');
      await s.send('', { type: 'terminate' });
      await bob.stop();
    });

    it('notices at once that a browser abandoned a parked request; data waits for the next one', async () => {
      const bob = await loginXmppJs({ service: gw.wsUrl, username: 'bob', password: users.bob });
      const s = new Raw(gw);
      const jid = await s.login('alice', users.alice, undefined, { wait: 4 });
      let reqObj;
      const abandoned = s.send('', {}, { onRequest: (r) => { reqObj = r; } }).catch((e) => e);
      await sleep(300);
      reqObj.destroy();
      await abandoned;
      await gw.waitForLog(new RegExp(`sid=${s.sid}.*abandoned by the browser`), 3000);
      await bob.sendMessage(jid, 'after-abandon');
      await sleep(300);
      const res = await s.send('');
      assert.deepEqual(bodiesIn(res), ['after-abandon']);
      await s.send('', { type: 'terminate' });
      await bob.stop();
    });
  });

  describe('overactivity', () => {
    it('ends a session that polls faster than polling: policy-violation', async () => {
      const s = new Raw(gw);
      const created = await s.create({ hold: 0 });
      assert.equal(created.body.attrs.hold, '0');
      const a = await s.send('');
      assert.equal(a.status, 200);
      assert.equal(a.body.attrs.type, undefined, 'hold=0: answered at once, empty');
      const b = await s.send('');
      assertTerminate(b, 'policy-violation');
      const c = await s.send('');
      assertTerminate(c, 'item-not-found');
    });

    it('ends a session with more simultaneous requests than allowed: policy-violation', async () => {
      const s = new Raw(gw);
      await s.login('carol', users.carol, undefined, { wait: 4, hold: 1 });
      const base = s.rid;
      const parked = s.sendRid(base + 1, ''); // held
      await sleep(200);
      const early = s.sendRid(base + 3, ''); // waits for base + 2
      await sleep(200);
      const third = await s.sendRid(base + 2, ''); // three outstanding, requests = 2
      assertTerminate(third, 'policy-violation');
      const [p, e] = await Promise.all([parked, early]);
      assertTerminate(p, 'other-request');
      assertTerminate(e, 'other-request');
    });
  });

  describe('pause and inactivity', () => {
    it('refuses a pause longer than maxpause: policy-violation', async () => {
      const s = new Raw(gw);
      await s.create();
      const res = await s.send('', { pause: 11 });
      assertTerminate(res, 'policy-violation');
    });

    it('answers every held request at once and keeps the session for the pause', async () => {
      const s = new Raw(gw);
      const jid = await s.login('carol', users.carol, undefined, { wait: 4 });
      const t0 = Date.now();
      const parked = s.send('');
      await sleep(200);
      const pause = await s.send('', { pause: 9 });
      assert.equal(pause.status, 200);
      assert.equal(pause.body.attrs.type, undefined, pause.text);
      await parked;
      assert.ok(Date.now() - t0 < 2000, 'held request answered at once');
      // Longer than inactivity (6 s), shorter than the pause (9 s).
      await sleep(7500);
      const back = await s.send(`<iq type='get' id='p1' to='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>`);
      assert.equal(back.body.attrs.type, undefined, `session survived the pause: ${back.text}`);
      assert.match(back.text, /id='p1'/);
      assert.ok(jid);
      await s.send('', { type: 'terminate' });
    });

    it('ends a session after a pause runs out', async () => {
      const s = new Raw(gw);
      await s.create({ wait: 2 });
      const pause = await s.send('', { pause: 2 });
      assert.equal(pause.status, 200);
      await sleep(3500);
      const res = await s.send('');
      assertTerminate(res, 'item-not-found');
    });

    it('ends a session with no request for inactivity seconds; then item-not-found', async () => {
      const s = new Raw(gw);
      await s.login('carol', users.carol, undefined, { wait: 2 });
      await s.send(''); // answered after wait: the inactivity clock starts then
      await sleep(7500); // inactivity = 6 s
      await gw.waitForLog(new RegExp(`sid=${s.sid}.*inactive for 6 s`), 2000);
      const res = await s.send('');
      assertTerminate(res, 'item-not-found');
    });
  });

  describe('acknowledgements', () => {
    it('acks older answers and reports a response the client says it lost (section 9)', async () => {
      const s = new Raw(gw);
      const created = await s.create({ ack: 1, wait: 1 });
      const r0 = s.rid;
      assert.equal(created.body.attrs.ack, String(r0));
      // r0+1 is held; r0+2 releases it (hold 1): its answer acks r0+2.
      const p1 = s.sendRid(r0 + 1, '', { ack: r0 });
      await sleep(200);
      const p2 = s.sendRid(r0 + 2, '', { ack: r0 });
      const a1 = await p1;
      assert.equal(a1.body.attrs.ack, String(r0 + 2), `ack on an older answer: ${a1.text}`);
      await p2;
      // The client says it has seen nothing after r0: the answer reports r0+1 and its age.
      const a3 = await s.sendRid(r0 + 3, '', { ack: r0 });
      assert.equal(a3.body.attrs.report, String(r0 + 1), a3.text);
      assert.ok(Number(a3.body.attrs.time) >= 0, a3.text);
      // It asks for r0+1 again: the same answer.
      const again = await s.sendRid(r0 + 1, '', { ack: r0 });
      assert.equal(again.text, a1.text);
      s.rid = r0 + 3;
      await s.send('', { type: 'terminate', ack: r0 + 3 });
    });
  });

  describe('key sequencing', () => {
    const chain = (seed, n) => {
      const k = [seed];
      for (let i = 1; i <= n; i++) k.push(sha1hex(k[i - 1]));
      return k; // k[n] is sent first (newkey), then k[n-1], ...
    };

    it('accepts the key chain, a switch to a new chain, and refuses a wrong key: item-not-found', async () => {
      const k = chain('seed-one', 5);
      const s = new Raw(gw);
      const c = await s.create({ newkey: k[5], wait: 1, hold: 1 });
      assert.equal(c.status, 200);
      const a = await s.send('', { key: k[4] });
      assert.equal(a.body.attrs.type, undefined, a.text);
      // Last key of the first chain, with the start of a new one.
      const k2 = chain('seed-two', 4);
      const b = await s.send('', { key: k[3], newkey: k2[4] });
      assert.equal(b.body.attrs.type, undefined, b.text);
      const d = await s.send('', { key: k2[3] });
      assert.equal(d.body.attrs.type, undefined, d.text);
      // A repeat carries the same key as the original and replays.
      const rep = await s.sendRid(s.rid, '', { key: k2[3] });
      assert.equal(rep.text, d.text);
      // Wrong key.
      const e = await s.send('', { key: k[2] });
      assertTerminate(e, 'item-not-found');
    });

    it('refuses a request without key once a chain started: item-not-found', async () => {
      const k = chain('seed-three', 3);
      const s = new Raw(gw);
      await s.create({ newkey: k[3] });
      const e = await s.send('');
      assertTerminate(e, 'item-not-found');
    });
  });

  describe('restart and terminate', () => {
    it('refuses a restart before SASL success: bad-request', async () => {
      const s = new Raw(gw);
      await s.create();
      const res = await s.send('', { 'xmpp:restart': 'true', ...XBOSH });
      assertTerminate(res, 'bad-request');
    });

    it('delivers the stanzas of a terminate request, closes upstream cleanly and forgets the sid', async () => {
      const bob = await loginXmppJs({ service: gw.wsUrl, username: 'bob', password: users.bob });
      const s = new Raw(gw);
      await s.login('alice', users.alice);
      const parked = s.send('');
      await sleep(200);
      const t = await s.send(msg(bob.jid, 'last-words-1') + msg(bob.jid, 'last-words-2'), { type: 'terminate' });
      assert.equal(t.status, 200);
      assert.equal(t.body.attrs.type, 'terminate', t.text);
      assert.equal(t.body.attrs.condition, undefined);
      const p = await parked;
      assert.equal(p.body.attrs.type, 'terminate', 'held requests are answered too');
      await bob.waitForCount((st) => st.name === 'message' && /^last-words/.test(st.body ?? ''), 2, 5000);
      const later = await s.send('');
      assertTerminate(later, 'item-not-found');
      await bob.stop();
    });
  });

  describe('upstream ends the session', () => {
    it('answers remote-stream-error with the upstream <stream:error/>, keeps a tombstone', async () => {
      const s = new Raw(gw);
      const jid = await s.login('alice', users.alice, 'same-resource', { wait: 4 });
      const parked = s.send('');
      await sleep(200);
      // Prosody replaces a session whose resource is taken over: <conflict/> for the old one. PLAIN:
      // the login must end within the parked request's wait (4 s), SCRAM in xmpp.js takes seconds.
      const ws = await loginXmppJs({ service: gw.wsUrl, username: 'alice', password: users.alice, resource: 'same-resource', mechanism: 'PLAIN' });
      const res = await parked;
      assertTerminate(res, 'remote-stream-error');
      assert.match(res.text, /<stream:error[\s\S]*<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/, res.text);
      const again = await s.send('');
      assertTerminate(again, 'remote-stream-error');
      assert.match(again.text, /<conflict/, 'the tombstone keeps the upstream error');
      // The tombstone lasts `inactivity` seconds (6), then the sid is unknown.
      await sleep(6800);
      const gone = await s.send('');
      assertTerminate(gone, 'item-not-found');
      assert.ok(jid);
      await ws.stop();
    });
  });

  describe('HTTP', () => {
    it('answers a CORS preflight from an allowed origin', async () => {
      const res = await request(gw.boshUrl, {
        method: 'OPTIONS',
        headers: { Origin: ORIGIN_OK, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers['access-control-allow-origin'], ORIGIN_OK);
      assert.match(res.headers['access-control-allow-methods'], /POST/);
      assert.match(res.headers['access-control-allow-headers'], /content-type/i);
    });

    it('refuses a preflight and a POST from an origin not allowed: 403', async () => {
      const pre = await request(gw.boshUrl, { method: 'OPTIONS', headers: { Origin: ORIGIN_BAD, 'Access-Control-Request-Method': 'POST' } });
      assert.equal(pre.status, 403);
      assert.equal(pre.headers['access-control-allow-origin'], undefined);
      const s = new Raw(gw, { origin: ORIGIN_BAD });
      const res = await s.create();
      assert.equal(res.status, 403);
    });

    it('adds CORS headers to BOSH answers for an allowed origin', async () => {
      const s = new Raw(gw, { origin: ORIGIN_OK });
      const res = await s.create();
      assert.equal(res.status, 200);
      assert.equal(res.headers['access-control-allow-origin'], ORIGIN_OK);
      await s.send('', { type: 'terminate' });
    });

    it('answers other methods 405 with Allow: POST, OPTIONS', async () => {
      for (const method of ['GET', 'PUT', 'DELETE']) {
        const res = await request(gw.boshUrl, { method, body: method === 'PUT' ? '<x/>' : undefined });
        assert.equal(res.status, 405, method);
        assert.match(res.headers.allow ?? '', /POST,\s*OPTIONS/, method);
      }
    });

    it('answers 411 without Content-Length and for a chunked body', async () => {
      const raw = await rawRequest(gw.port, `POST /http-bind HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\nConnection: close\r\n\r\n`);
      assert.equal(raw.status, 411);
      const chunked = await request(gw.boshUrl, { body: bodyXml({ rid: 1, to: 'localhost' }), chunked: true });
      assert.equal(chunked.status, 411);
    });

    it('answers 413 for a body over bosh.max_body and harms no session', async () => {
      const s = new Raw(gw);
      await s.login('carol', users.carol, undefined, { wait: 2 });
      const big = bodyXml({ rid: s.rid + 1, sid: s.sid }, msg('bob@localhost', 'x'.repeat(70000)));
      const res = await request(gw.boshUrl, { body: big });
      assert.equal(res.status, 413);
      const next = await s.send(`<iq type='get' id='after413' to='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>`);
      assert.match(next.text, /id='after413'/, next.text);
      await s.send('', { type: 'terminate' });
    });

    it('answers 400 with a bad-request body for a body that is not well-formed, ending the session it names', async () => {
      const res = await request(gw.boshUrl, { body: '<body rid=\'1\' xmlns=\'http://jabber.org/protocol/httpbind\'><unclosed></body>' });
      assert.equal(res.status, 400);
      assert.equal(res.headers['content-type'], 'text/xml; charset=utf-8');
      assertTerminate(res, 'bad-request', 400);
      const garbage = await request(gw.boshUrl, { body: 'this is not XML' });
      assertTerminate(garbage, 'bad-request', 400);

      const s = new Raw(gw);
      await s.create();
      s.rid += 1;
      const broken = await s.post(`<body rid='${s.rid}' sid='${s.sid}' xmlns='${NS_BOSH}'><message>`);
      assertTerminate(broken, 'bad-request', 400);
      const later = await s.send('');
      assertTerminate(later, 'item-not-found');
    });

    it('uses HTTP error codes for legacy clients (ver < 1.6)', async () => {
      const s = new Raw(gw);
      const c = await s.create({ ver: '1.5' });
      assert.equal(c.status, 200);
      assert.equal(c.body.attrs.ver, '1.5');
      const res = await s.sendRid(s.rid + 5, '');
      assert.equal(res.status, 404);
    });

    it('counts HTTP errors and terminate conditions', async () => {
      const text = await metrics(gw);
      assert.ok(metricValue(text, 'xmppgw_http_errors_total') > 0, 'http errors counted');
      assert.ok(metricValue(text, 'xmppgw_stream_errors_total', 'condition="item-not-found"') > 0, text);
      assert.ok(metricValue(text, 'xmppgw_stream_errors_total', 'condition="policy-violation"') > 0);
      assert.ok(metricValue(text, 'xmppgw_stream_errors_total', 'condition="host-unknown"') > 0);
    });
  });
});

describe('BOSH conditions from the gateway itself', () => {
  it('answers remote-connection-failed when upstream cannot be reached', async () => {
    const port = await closedPort();
    const gw = await startGateway({ upstream: `127.0.0.1:${port}`, upstreamTls: 'off', caFile: null });
    try {
      const s = new Raw(gw);
      const res = await s.create();
      assertTerminate(res, 'remote-connection-failed');
    } finally {
      const problem = await stopGatewayChecked(gw);
      assert.equal(problem, null, problem ?? '');
    }
  });

  it('answers system-shutdown to held requests when the gateway drains', async () => {
    const st = await startStack({ gateway: { config: { bosh: { max_wait: 20 } } } });
    let stopped = false;
    try {
      const s = new Raw(st.gw);
      await s.login('alice', st.prosody.users.alice, undefined, { wait: 20 });
      const parked = s.send('');
      await sleep(300);
      const stopping = st.stop();
      stopped = true;
      const res = await parked;
      assertTerminate(res, 'system-shutdown');
      const problem = await stopping;
      assert.equal(problem, null, problem ?? '');
    } finally {
      if (!stopped) await st.stop();
    }
  });
});
