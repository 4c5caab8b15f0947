// BOSH under attack, over raw sockets so that each test controls what is sent and when: HTTP
// pipelining on a keep-alive connection, an early rid whose gap is never filled, bodies and headers
// dripped byte by byte, a client that never reads its answer, replays in parallel, per-address
// limits (from several loopback addresses), a body far over bosh.max_body sent by a client that
// reads only once it has written everything, prefixes declared on <body/>, children in the stream
// namespace, and an upstream that does not serve the domain asked for. Each refusal is checked as
// the client sees it (status line, headers, terminate condition), and where it matters also in
// /status, /metrics and the gateway's descriptors (/proc/<pid>/fd).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import crypto from 'node:crypto';
import { DOMParser } from '@xmldom/xmldom';
import { startStack } from './lib/stack.mjs';
import { startGateway, stopGatewayChecked } from './lib/gateway.mjs';
import { closedPort } from './lib/ports.mjs';
import { loginXmppJs, stopAllClients } from './lib/clients.mjs';

const NS = 'http://jabber.org/protocol/httpbind';
const XBOSH = "xmlns:xmpp='urn:xmpp:xbosh'";
const MIB = 1024 * 1024;
const T = { timeout: 60000 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The gateway in front of Prosody: short clocks so that wait, write and inactivity run in seconds.
const MAIN = {
  domains: ['localhost', 'other.example'],
  bosh: { max_wait: 4, max_hold: 1, max_requests: 2, inactivity: 8, max_body: 4 * MIB },
  http: { write_timeout: 3 },
  limits: { send_queue: 16 * MIB },
};
// The gateway for HTTP-level rules (no upstream needed): body deadlines and per-address limits.
const HTTP = {
  http: { body_timeout: 4, min_body_rate: 512 },
  limits: { per_address_pending: 3, per_address_body_bytes: 65536 },
};

// ---------------------------------------------------------------- raw HTTP

function post(body, { length, close = true, extra = '' } = {}) {
  const len = length ?? Buffer.byteLength(body);
  return `POST /http-bind HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml; charset=utf-8\r\n` +
    `Content-Length: ${len}\r\n${close ? 'Connection: close\r\n' : ''}${extra}\r\n${body}`;
}

function parseResponse(data) {
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = data.slice(0, end).split('\r\n');
  const status = Number(/^HTTP\/1\.\d (\d{3})/.exec(lines[0])?.[1] ?? 0);
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  const len = Number(headers['content-length'] ?? 0);
  const text = data.slice(end + 4);
  if (Buffer.byteLength(text) < len) return null;
  return { status, headers, text: text.slice(0, len), statusLine: lines[0] };
}

/** One raw client connection: what it received, when it closed. */
class Conn {
  constructor(port, { localAddress, paused = false } = {}) {
    this.data = '';
    this.closedAt = null;
    this.error = null;
    this.t0 = Date.now();
    this.sock = net.connect({ host: '127.0.0.1', port, localAddress });
    this.connected = new Promise((resolve, reject) => {
      this.sock.once('connect', resolve);
      this.sock.once('error', reject);
    });
    this.sock.on('error', (err) => { this.error = err; });
    this.closed = new Promise((resolve) => this.sock.on('close', () => {
      this.closedAt = Date.now();
      resolve(this.closedAt - this.t0);
    }));
    if (!paused) this.read();
  }

  read() {
    this.sock.setEncoding('latin1');
    this.sock.on('data', (d) => { this.data += d; });
  }

  write(s) { return new Promise((resolve, reject) => this.sock.write(s, (err) => (err ? reject(err) : resolve()))); }

  /** The first complete response, or null after ms. */
  async response(ms = 10000) {
    const end = Date.now() + ms;
    for (;;) {
      const r = parseResponse(this.data);
      if (r) return r;
      if (this.closedAt || Date.now() > end) return null;
      await sleep(20);
    }
  }

  destroy() { this.sock.destroy(); }
}

/** One whole request on a fresh connection (closed after the answer). */
async function request(gw, body, { localAddress, ms = 15000 } = {}) {
  const c = new Conn(gw.port, { localAddress });
  await c.connected;
  await c.write(post(body));
  const r = await c.response(ms);
  c.destroy();
  return r;
}

function attrs(text) {
  const doc = new DOMParser({ onError: () => {} }).parseFromString(text, 'text/xml');
  return doc?.documentElement;
}

const isTerminate = (r, cond) => {
  const el = r && attrs(r.text);
  return !!el && el.getAttribute('type') === 'terminate' && (cond === undefined || el.getAttribute('condition') === cond);
};

const bodyXml = (a, payload = '') => {
  const s = Object.entries(a).filter(([, v]) => v !== undefined).map(([k, v]) => ` ${k}='${v}'`).join('');
  return payload ? `<body${s} xmlns='${NS}'>${payload}</body>` : `<body${s} xmlns='${NS}'/>`;
};

/** A BOSH session spoken by hand, one connection per request. */
class Session {
  constructor(gw) {
    this.gw = gw;
    this.rid = 100000 + crypto.randomInt(1e6);
    this.sid = null;
  }

  async create(a = {}) {
    const r = await request(this.gw, bodyXml({
      rid: this.rid, to: 'localhost', wait: 4, hold: 1, ver: '1.11', 'xmpp:version': '1.0',
      'xmlns:xmpp': 'urn:xmpp:xbosh', ...a,
    }));
    this.sid = /sid='([0-9a-f]+)'/.exec(r?.text ?? '')?.[1] ?? null;
    return r;
  }

  body(rid, payload = '', a = {}) { return bodyXml({ rid, sid: this.sid, ...a }, payload); }

  send(payload = '', a = {}) {
    this.rid += 1;
    return request(this.gw, this.body(this.rid, payload, a));
  }

  async login(user, password) {
    const c = await this.create();
    assert.equal(c?.status, 200, c?.text);
    assert.ok(this.sid, c.text);
    const b64 = Buffer.from(`\0${user}\0${password}`).toString('base64');
    const auth = await this.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${b64}</auth>`);
    assert.match(auth.text, /<success/, auth.text);
    const rs = await this.send('', { 'xmpp:restart': 'true', 'xmlns:xmpp': 'urn:xmpp:xbosh' });
    assert.match(rs.text, /<bind/, rs.text);
    const bind = await this.send(`<iq type='set' id='b1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`);
    this.jid = /<jid>([^<]+)<\/jid>/.exec(bind.text)?.[1];
    assert.ok(this.jid, bind.text);
    return this.jid;
  }

  /** Empty requests until an answer satisfies pred (or ms pass). */
  async until(pred, ms = 15000) {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const r = await this.send();
      if (r && pred(r)) return r;
      if (!r || isTerminate(r)) return r;
    }
    return null;
  }
}

// ---------------------------------------------------------------- the gateway, seen from outside

function admin(gw, path) {
  return new Promise((resolve, reject) => {
    const req = http.get(`${gw.adminUrl}${path}`, { agent: false, headers: { Connection: 'close' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
  });
}

const boshSessions = async (gw) => JSON.parse(await admin(gw, '/status')).sessions.bosh;
const fds = (gw) => fs.readdirSync(`/proc/${gw.pid}/fd`).length;

async function refused(gw, limit) {
  const m = new RegExp(`^xmppgw_refused_total\\{limit="${limit}"\\} (\\d+)$`, 'm').exec(await admin(gw, '/metrics'));
  return m ? Number(m[1]) : NaN;
}

async function waitFor(pred, ms, step = 200) {
  const end = Date.now() + ms;
  for (;;) {
    if (await pred()) return true;
    if (Date.now() > end) return false;
    await sleep(step);
  }
}

/** The descriptor count once the gateway is idle (nothing moving for a moment). */
async function idleFds(gw) {
  let last = fds(gw);
  for (let i = 0; i < 20; i++) {
    await sleep(150);
    const now = fds(gw);
    if (now === last) return now;
    last = now;
  }
  return last;
}

// ---------------------------------------------------------------- the tests

describe('BOSH hardening', { timeout: 600000 }, () => {
  let stack;
  let gw;    // in front of Prosody
  let plain; // HTTP rules only, no upstream

  before(async () => {
    stack = await startStack({ gateway: { config: MAIN } });
    gw = stack.gw;
    plain = await startGateway({ upstream: `127.0.0.1:${await closedPort()}`, upstreamTls: 'off', caFile: null, config: HTTP });
  });

  after(async () => {
    await stopAllClients();
    const problems = [await stopGatewayChecked(plain), await stack?.stop()].filter(Boolean);
    if (problems.length) assert.fail(problems.join('\n\n'));
  });

  describe('pipelining and deadlines of requests (items 1, 2)', () => {
    it('pipelined requests: 400 and closed; the session and every descriptor go', T, async (t) => {
      const before = await idleFds(gw);
      const sessions0 = await boshSessions(gw);
      const s = new Session(gw);
      assert.equal((await s.create())?.status, 200);
      // The next two requests in one write on one keep-alive connection, then close.
      const c = new Conn(gw.port);
      await c.connected;
      await c.write(post(s.body(s.rid + 1), { close: false }) + post(s.body(s.rid + 2), { close: false }));
      const during = fds(gw);
      const r = await c.response(5000);
      c.sock.end();
      assert.equal(r?.status, 400, `pipelining refused: ${c.data.slice(0, 200)}`);
      assert.equal(r.headers.connection, 'close');
      await gw.waitForLog(/HTTP pipelining/, 5000);
      // wait + write timeout + inactivity, with room: the session and its descriptors are gone.
      const ms = (MAIN.bosh.max_wait + MAIN.http.write_timeout + MAIN.bosh.inactivity + 6) * 1000;
      const gone = await waitFor(async () => (await boshSessions(gw)) === sessions0 && fds(gw) <= before, ms);
      const after = fds(gw);
      t.diagnostic(`descriptors: ${before} before, ${during} during the attack, ${after} after`);
      assert.ok(gone, `bosh sessions ${await boshSessions(gw)} (was ${sessions0}), descriptors ${after} (was ${before})`);
    });

    it('an early rid whose gap is never filled: item-not-found after wait, and the session ends', T, async () => {
      const sessions0 = await boshSessions(gw);
      const s = new Session(gw);
      assert.equal((await s.create({ wait: 2 }))?.status, 200);
      const t0 = Date.now();
      const r = await request(gw, s.body(s.rid + 2), { ms: 8000 });
      const took = Date.now() - t0;
      assert.ok(isTerminate(r, 'item-not-found'), `answer: ${r?.text}`);
      assert.ok(took >= 1500 && took < 6000, `answered after ${took} ms with wait 2 s`);
      assert.equal(await boshSessions(gw), sessions0);
      const after = await request(gw, s.body(s.rid + 1));
      assert.ok(isTerminate(after, 'item-not-found'), after?.text);
    });
  });

  describe('slow readers and replays (item 4)', () => {
    it('an answer the client never reads: the connection is closed after http.write_timeout', T, async (t) => {
      const alice = new Session(gw);
      const jid = await alice.login('alice', stack.prosody.users.alice);
      // PLAIN: alice has no request open from her bind answer on, and bosh.inactivity (8 s) must
      // cover bob's login too (xmpp.js computes SCRAM in JavaScript: seconds under load).
      const bob = await loginXmppJs({ service: gw.wsUrl, username: 'bob', password: stack.prosody.users.bob, mechanism: 'PLAIN' });
      // About 8 MB for alice while she has no request open: more than the sockets hold.
      const big = 'x'.repeat(100000);
      for (let i = 0; i < 80; i++) await bob.sendMessage(jid, `big-${i} ${big}`);
      await bob.iq("<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
      await sleep(1500);
      // The bind answer carried stanzas, so the next answer carries none (the client may not have
      // the bind answer yet: see docs/bosh.md, order of answers); the one after gets them all.
      const empty = await alice.send();
      assert.ok(!/big-/.test(empty.text), 'answered empty first');
      const refused0 = await refused(gw, 'http_deadline');
      const before = await idleFds(gw);
      const c = new Conn(gw.port, { paused: true });
      await c.connected;
      alice.rid += 1;
      await c.write(post(alice.body(alice.rid), { close: false }));
      await sleep(500);
      const with1 = fds(gw);
      assert.ok(with1 > before, `descriptors ${with1} with the connection, ${before} without`);
      // The gateway closes its side: it says so, and its descriptor goes, whatever the client does.
      await gw.waitForLog(/not read within http\.write_timeout/, (MAIN.http.write_timeout + 5) * 1000);
      const took = Date.now() - c.t0;
      const gone = await waitFor(() => fds(gw) <= before, 3000, 100);
      t.diagnostic(`descriptors: ${before} idle, ${with1} with the unread answer, ${fds(gw)} ${Date.now() - c.t0} ms later; closed after ${took} ms`);
      assert.ok(gone, `the connection of an unread answer is still open after ${took} ms`);
      assert.ok(took >= MAIN.http.write_timeout * 1000 - 500 && took < (MAIN.http.write_timeout + 3) * 1000, `closed after ${took} ms`);
      assert.equal(await refused(gw, 'http_deadline'), refused0 + 1);
      c.destroy();
      await bob.stop();
    });

    it('20 parallel replays of one rid: those past `requests` end the session with policy-violation', T, async (t) => {
      const s = new Session(gw);
      await s.login('carol', stack.prosody.users.carol);
      const a = await s.send("<iq type='get' id='r1' to='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>");
      assert.match(a.text, /id='r1'/, a.text);
      const conns = [];
      for (let i = 0; i < 20; i++) conns.push(new Conn(gw.port));
      await Promise.all(conns.map((c) => c.connected));
      const bytes = post(s.body(s.rid));
      for (const c of conns) c.sock.write(bytes);
      const answers = await Promise.all(conns.map((c) => c.response(10000)));
      conns.forEach((c) => c.destroy());
      const replays = answers.filter((r) => r?.text === a.text).length;
      const refusedN = answers.filter((r) => isTerminate(r, 'policy-violation')).length;
      t.diagnostic(`${replays} replays, ${refusedN} policy-violation, ${20 - replays - refusedN} other`);
      assert.ok(refusedN >= 1, `no replay was refused: ${answers.map((r) => r?.text).join('\n')}`);
      assert.ok(replays <= 2, `${replays} replays open at once with requests=2`);
      const next = await s.send();
      assert.ok(isTerminate(next, 'item-not-found'), `the session ended: ${next?.text}`);
    });
  });

  describe('bodies (items 3, 6)', () => {
    it('headers dripped a byte a second: lws closes the connection 10 s after the first byte', T, async (t) => {
      const c = new Conn(plain.port);
      await c.connected;
      await c.write('POST /http-bind HTTP/1.1\r\n');
      const drip = setInterval(() => c.sock.write('X'), 1000);
      const ms = await Promise.race([c.closed, sleep(20000).then(() => null)]);
      clearInterval(drip);
      c.destroy();
      t.diagnostic(`closed after ${ms} ms`);
      assert.ok(ms !== null && ms >= 8000 && ms < 13000, `header drip closed after ${ms} ms`);
    });

    it('a 1 MiB body dripped a byte at a time: 408 with Connection: close, counted and logged', T, async (t) => {
      const refused0 = await refused(plain, 'http_deadline');
      const c = new Conn(plain.port);
      await c.connected;
      await c.write(post('', { length: MIB, close: false }));
      const drip = setInterval(() => c.sock.write('<'), 500);
      const r = await c.response(10000);
      clearInterval(drip);
      const took = Date.now() - c.t0;
      t.diagnostic(`408 after ${took} ms`);
      assert.equal(r?.status, 408, c.data);
      assert.equal(r.headers.connection, 'close');
      assert.ok(took < 4000, `answered after ${took} ms (min_body_rate 512 bytes/s after 1 s)`);
      await c.closed;
      assert.equal(await refused(plain, 'http_deadline'), refused0 + 1);
      await plain.waitForLog(/slower than http\.min_body_rate: 408/, 2000);
    });

    it('a body fast enough but never complete: 408 at http.body_timeout', T, async () => {
      const c = new Conn(plain.port);
      await c.connected;
      await c.write(post('', { length: MIB, close: false }));
      const feed = setInterval(() => c.sock.write('x'.repeat(200)), 100); // 2000 bytes/s
      const r = await c.response(12000);
      clearInterval(feed);
      const took = Date.now() - c.t0;
      assert.equal(r?.status, 408, c.data);
      assert.ok(took >= 3500 && took < 7000, `answered after ${took} ms with body_timeout 4 s`);
      await plain.waitForLog(/past http\.body_timeout: 408/, 2000);
      c.destroy();
    });

    it('32 MiB sent without reading first: the client then reads the 413', T, async () => {
      const sessions0 = await boshSessions(gw);
      const c = new Conn(gw.port, { paused: true });
      await c.connected;
      const body = Buffer.alloc(32 * MIB, 0x20);
      let writeError = null;
      await c.write(post('', { length: body.length, close: false })).catch((e) => { writeError = e; });
      await c.write(body).catch((e) => { writeError = e; });
      assert.equal(writeError, null, `the write failed: ${writeError?.code} (the gateway reset the connection)`);
      c.read();
      const r = await c.response(10000);
      assert.equal(r?.status, 413, `read: ${JSON.stringify(c.data.slice(0, 200))}`);
      assert.match(r.statusLine, /^HTTP\/1\.1 413 /);
      assert.equal(r.headers.connection, 'close');
      assert.ok(await Promise.race([c.closed.then(() => true), sleep(8000).then(() => false)]), 'closed');
      assert.equal(await boshSessions(gw), sessions0);
    });
  });

  describe('per-address limits (item 5)', () => {
    it('requests still sending their bodies: the 4th from one address gets 429, another address is served', T, async () => {
      const refused0 = await refused(plain, 'address_pending');
      const pending = [];
      for (let i = 0; i < 3; i++) {
        const c = new Conn(plain.port, { localAddress: '127.0.0.2' });
        await c.connected;
        await c.write(post('', { length: 1000, close: false }) + '<body');
        pending.push(c);
      }
      await sleep(100);
      const r = await request(plain, bodyXml({ rid: 1, to: 'localhost' }), { localAddress: '127.0.0.2' });
      assert.equal(r?.status, 429);
      assert.equal(r.headers['retry-after'], '1');
      assert.equal(r.headers.connection, 'close');
      const other = await request(plain, bodyXml({ rid: 1, to: 'localhost' }), { localAddress: '127.0.0.3' });
      assert.equal(other?.status, 200, other?.text);
      assert.ok(attrs(other.text)?.localName === 'body', other.text);
      assert.equal(await refused(plain, 'address_pending'), refused0 + 1);
      await plain.waitForLog(/from 127\.0\.0\.2 refused \(429\).*per_address_pending/, 2000);
      // Once they are gone, the address is served again.
      pending.forEach((c) => c.destroy());
      await sleep(300);
      const again = await request(plain, bodyXml({ rid: 1, to: 'localhost' }), { localAddress: '127.0.0.2' });
      assert.equal(again?.status, 200, again?.text);
    });

    it('body bytes being read: past limits.per_address_body_bytes 429, another address is served', T, async () => {
      const refused0 = await refused(plain, 'address_body_bytes');
      const big = new Conn(plain.port, { localAddress: '127.0.0.4' });
      await big.connected;
      await big.write(post('', { length: 60000, close: false }) + '<body');
      await sleep(100);
      const small = bodyXml({ rid: 1, to: 'localhost' }).padEnd(10000, ' ');
      const r = await request(plain, small, { localAddress: '127.0.0.4' });
      assert.equal(r?.status, 429, r?.text);
      assert.equal(r.headers['retry-after'], '1');
      const other = await request(plain, small, { localAddress: '127.0.0.5' });
      assert.equal(other?.status, 200, other?.text);
      assert.equal(await refused(plain, 'address_body_bytes'), refused0 + 1);
      await plain.waitForLog(/from 127\.0\.0\.4 refused \(429\).*per_address_body_bytes/, 2000);
      big.destroy();
    });
  });

  describe('what a body carries (items 7, 8)', () => {
    it('a prefix declared on <body/> reaches Prosody with the stanza that uses it', T, async () => {
      const s = new Session(gw);
      const jid = await s.login('alice', stack.prosody.users.alice);
      const sent = await s.send(`<message to='${jid}' type='chat' id='ns1' xmlns='jabber:client'>` +
        `<body>prefixed</body><foo:x foo:a='1'/></message>`, { 'xmlns:foo': 'urn:example:foo' });
      const got = /prefixed/.test(sent.text) ? sent : await s.until((r) => /prefixed/.test(r.text), 10000);
      assert.ok(got && !isTerminate(got), `no message came back: ${got?.text ?? sent.text}`);
      const x = attrs(got.text).getElementsByTagNameNS('urn:example:foo', 'x');
      assert.equal(x.length, 1, got.text);
      assert.equal(x[0].getAttributeNS('urn:example:foo', 'a'), '1', got.text);
      await s.send('', { type: 'terminate' });
    });

    it('a child in the stream namespace is refused: bad-request, the session ends', T, async () => {
      const s = new Session(gw);
      assert.equal((await s.create())?.status, 200);
      const r = await s.send("<stream:features/>", { 'xmlns:stream': 'http://etherx.jabber.org/streams' });
      assert.equal(r.status, 200);
      assert.ok(isTerminate(r, 'bad-request'), r.text);
      assert.ok(isTerminate(await s.send(), 'item-not-found'));
    });

    it('a domain upstream does not serve: host-unknown with upstream\'s <stream:error/>', T, async () => {
      const s = new Session(gw);
      const r = await request(gw, `<body rid='${s.rid}' to='other.example' wait='4' hold='1' ver='1.11' ` +
        `xmpp:version='1.0' ${XBOSH} xmlns='${NS}'/>`);
      assert.equal(r?.status, 200);
      assert.ok(isTerminate(r, 'host-unknown'), r?.text);
      const el = attrs(r.text);
      const errs = el.getElementsByTagNameNS('http://etherx.jabber.org/streams', 'error');
      assert.equal(errs.length, 1, `the stream error element is carried: ${r.text}`);
      assert.equal(errs[0].getElementsByTagNameNS('urn:ietf:params:xml:ns:xmpp-streams', 'host-unknown').length, 1, r.text);
    });
  });
});
