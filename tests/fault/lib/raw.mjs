// Raw traffic and process figures for the fault suites: BOSH spoken by hand over HTTP (each request
// on a socket the test owns, so it can be destroyed at any point), the admin port read without a
// kept-alive connection (which would count as one of the gateway's descriptors), and the gateway
// process's descriptors and resident memory from /proc.
import http from 'node:http';
import net from 'node:net';
import crypto from 'node:crypto';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { DOMParser } from '@xmldom/xmldom';

export const NS_BOSH = 'http://jabber.org/protocol/httpbind';
export const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
export const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
export const XBOSH = { 'xmlns:xmpp': 'urn:xmpp:xbosh' };

const clip = (t, n = 400) => (t && t.length > n ? `${t.slice(0, n)}... (${t.length} chars)` : t);

/** `<body .../>` with the attributes given (undefined or null ones left out) around `payload`. */
export function boshBody(attrs, payload = '') {
  const a = Object.entries(attrs).filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => ` ${k}='${v}'`).join('');
  return payload ? `<body${a} xmlns='${NS_BOSH}'>${payload}</body>` : `<body${a} xmlns='${NS_BOSH}'/>`;
}

/** The answer's <body/> as { attrs, children, el } or null when it is not a BOSH body. */
export function parseBody(text) {
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
  return { attrs, children, el };
}

/** The bytes of one HTTP/1.1 POST of `body` to `path` (keep-alive, as browsers send them). */
export function postBytes(port, path, body) {
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: text/xml; charset=utf-8\r\n`
    + `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: keep-alive\r\n\r\n${body}`;
}

/**
 * POSTs `body` to `url` on a connection of its own (no agent). Resolves to
 * { status, text, body (parsed), at (performance.now() when the answer was complete) }.
 * `onRequest(req)` sees the request (to destroy it); `timeoutMs` rejects a request left unanswered.
 */
export function post(url, body, { onRequest, timeoutMs = 30000, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST',
      agent: false,
      headers: {
        'Content-Type': 'text/xml; charset=utf-8',
        'Content-Length': Buffer.byteLength(body),
        Connection: 'close',
        ...headers,
      },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode, text, body: parseBody(text), at: performance.now() });
      });
      res.on('error', (err) => { clearTimeout(timer); reject(err); });
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms to ${clip(body)}`));
    }, timeoutMs);
    req.on('error', (err) => { clearTimeout(timer); reject(err); });
    onRequest?.(req);
    req.end(body);
  });
}

const b64 = (s) => Buffer.from(s, 'utf8').toString('base64');

/** A BOSH session spoken by hand, one connection per request. */
export class RawBosh {
  constructor(gw, { to = 'localhost' } = {}) {
    this.url = gw.boshUrl;
    this.to = to;
    this.rid = 1000000 + crypto.randomInt(1e9);
    this.sid = null;
    this.jid = null;
  }

  /** Session creation; `attrs` override the defaults. */
  async create(attrs = {}, opts = {}) {
    const res = await post(this.url, boshBody({
      rid: this.rid, to: this.to, wait: 30, hold: 1, ver: '1.6', 'xml:lang': 'en',
      'xmpp:version': '1.0', ...XBOSH, ...attrs,
    }), opts);
    if (res.body?.attrs.sid) this.sid = res.body.attrs.sid;
    return res;
  }

  /** The next request (rid + 1) with `payload`; resolves to the answer (see post()). */
  send(payload = '', attrs = {}, opts = {}) {
    this.rid += 1;
    return post(this.url, boshBody({ rid: this.rid, sid: this.sid, ...attrs }, payload), opts);
  }

  /**
   * Sends `payload`, then empty requests while the answers do not satisfy `pred` (at most `tries`
   * in all). Each request on its own connection means the gateway may answer one at once and
   * empty while it cannot know that the client has the previous answer (docs/bosh.md, "Order of
   * answers with stanzas"): what it holds comes with the next request. Resolves to the answer that
   * satisfied `pred`, or the last one.
   */
  async sendUntil(payload, pred, { attrs = {}, tries = 4, timeoutMs = 10000 } = {}) {
    let res = await this.send(payload, attrs, { timeoutMs });
    for (let i = 1; i < tries && !pred(res) && res.body?.attrs.type !== 'terminate'; i++) {
      res = await this.send('', {}, { timeoutMs });
    }
    return res;
  }

  /** Creation, SASL PLAIN, restart, bind. Resolves to the full JID; throws with the answer. */
  async login(user, password, { resource = `r${crypto.randomBytes(4).toString('hex')}`, createAttrs = {} } = {}) {
    const c = await this.create(createAttrs);
    if (c.status !== 200 || !this.sid) throw new Error(`BOSH creation failed: HTTP ${c.status} ${clip(c.text)}`);
    const auth = await this.sendUntil(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${b64(`\0${user}\0${password}`)}</auth>`,
      (r) => /<success|<failure/.test(r.text));
    if (!/<success/.test(auth.text)) throw new Error(`BOSH SASL failed: ${clip(auth.text)}`);
    const rs = await this.sendUntil('', (r) => /<bind/.test(r.text), { attrs: { 'xmpp:restart': 'true', ...XBOSH } });
    if (!/<bind/.test(rs.text)) throw new Error(`BOSH restart: no bind feature in ${clip(rs.text)}`);
    const bind = await this.sendUntil(`<iq type='set' id='bind1' xmlns='jabber:client'><bind xmlns='${NS_BIND}'><resource>${resource}</resource></bind></iq>`,
      (r) => /<jid>|type=['"]error/.test(r.text));
    const jid = /<jid>([^<]+)<\/jid>/.exec(bind.text)?.[1];
    if (!jid) throw new Error(`BOSH bind failed: ${clip(bind.text)}`);
    this.jid = jid;
    return jid;
  }
}

/** Is `res` a BOSH `type='terminate'` answer with `condition`? */
export const isTerminate = (res, condition) => res?.status === 200 && res.body?.attrs.type === 'terminate'
  && res.body.attrs.condition === condition;

/** GET on the admin port, connection closed after the answer. Resolves to { status, text }. */
export function adminGet(gw, path) {
  return new Promise((resolve, reject) => {
    const req = http.get(`${gw.adminUrl}${path}`, { agent: false, headers: { Connection: 'close' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
      res.on('error', reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error(`admin ${path}: no answer within 5 s`)));
    req.on('error', reject);
  });
}

/** The admin /status JSON. */
export async function status(gw) {
  const r = await adminGet(gw, '/status');
  if (r.status !== 200) throw new Error(`/status: HTTP ${r.status} ${r.text}`);
  return JSON.parse(r.text);
}

/** One sample of a /metrics text: `name` with every label in `labels` (an object), else NaN. */
export function metricValue(text, name, labels = {}) {
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{([^}]*)\})? (\d+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return NaN;
}

export async function metrics(gw) {
  const r = await adminGet(gw, '/metrics');
  if (r.status !== 200) throw new Error(`/metrics: HTTP ${r.status}`);
  return r.text;
}

/** Polls `fn` until it returns a truthy value or `ms` pass; resolves to the last value. */
export async function until(fn, ms, stepMs = 100) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Open descriptors of process `pid` (entries of /proc/PID/fd) and what they are. */
export async function fdInfo(pid) {
  const names = await readdir(`/proc/${pid}/fd`);
  const kinds = {};
  for (const n of names) {
    let target = '?';
    try { target = await readlink(`/proc/${pid}/fd/${n}`); } catch { /* closed meanwhile */ }
    const kind = target.replace(/\[\d+\]$/, '').replace(/^\/.*/, 'file');
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  return { count: names.length, kinds };
}

/** Resident set size of process `pid` in KiB (VmRSS of /proc/PID/status). */
export async function rssKiB(pid) {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB/m.exec(text);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]);
}

/** Runs `fn(i)` for i in 0..n-1 with at most `limit` running at once; resolves to the results. */
export async function pool(n, limit, fn) {
  const results = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      results[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
  return results;
}

/** A raw TCP connection to 127.0.0.1:port; resolves once connected. */
export function tcpConnect(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => { s.off('error', reject); s.on('error', () => {}); resolve(s); });
    s.once('error', reject);
  });
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};

/**
 * `limits` for a gateway that every client of a fault test reaches from 127.0.0.1: the per-address
 * limits (sessions, unbound sessions, new sessions per second and at once, pending connections)
 * raised out of the way, since these tests are about clients and upstreams that fail, not about
 * one address opening many sessions (tests/integration/limits.test.mjs is).
 */
export const LOOPBACK_LIMITS = Object.freeze({
  per_address_sessions: 1000000,
  per_address_unauthenticated: 100000,
  per_address_rate: 100000,
  per_address_burst: 100000,
  per_address_pending: 100000,
});
