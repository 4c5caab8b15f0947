// The bad-input catalogue's machinery (tests/data/bad-input/, format in its README.md): loading the
// case files, expanding placeholders, sending the exact bytes of a case (raw HTTP on a socket for
// BOSH, the admin port and WebSocket upgrades; frames through `ws` after the upgrade; a file for
// `--check-config`) and checking the exact answer. Every check throws an AssertionError naming what
// differed; a case passes only when every field of its `expect` held.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { DOMParser } from '@xmldom/xmldom';
import { runGateway } from './gateway.mjs';
import { connect, NS_FRAMING, NS_STREAM, NS_STREAMS, children } from './wsraw.mjs';

export const NS_BOSH = 'http://jabber.org/protocol/httpbind';
const CTL_RE = /[\x00-\x08\x0b-\x1f\x7f\u0080-\u009f]/;

// ---------------------------------------------------------------- the data

/** Every `*.json` file of `dir`, sorted: [{ group (file name without .json), cases }]. */
export async function loadCatalogue(dir) {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
  const groups = [];
  for (const f of files) {
    const data = JSON.parse(await readFile(path.join(dir, f), 'utf8'));
    const group = path.basename(f, '.json');
    if (!Array.isArray(data.cases)) throw new Error(`${f}: no "cases" array`);
    const names = new Set();
    for (const c of data.cases) {
      if (!c.name || !c.send || !c.expect) throw new Error(`${f}: a case needs name, send and expect: ${JSON.stringify(c).slice(0, 200)}`);
      if (names.has(c.name)) throw new Error(`${f}: two cases named "${c.name}"`);
      names.add(c.name);
      for (const [i, step] of [[null, c], ...(c.before ?? []).entries(), ...(c.then ?? []).entries()]) {
        const what = checksNothing(data.kind ?? group, step);
        if (what) throw new Error(`${f}: "${c.name}"${i === null ? '' : ` step ${i}`}: ${what}`);
      }
    }
    groups.push({ group, file: f, kind: data.kind ?? group, cases: data.cases });
  }
  return groups;
}

/** Why a step's expect would check too little (null when it names the answer). */
function checksNothing(kind, step) {
  const e = step.expect ?? {};
  if (kind === 'config') return e.exit !== undefined && e.message ? null : 'a config case needs expect.exit and expect.message';
  if (kind === 'websocket' && step.send?.frames) {
    return e.stream_error || e.answers ? null : 'a frames case needs expect.stream_error or expect.answers';
  }
  return e.status !== undefined || e.status_in || e.no_answer ? null : 'an HTTP case needs expect.status, status_in or no_answer';
}

// ---------------------------------------------------------------- placeholders

/**
 * Replaces {port}, {admin_port}, {host}, {token}, {sid}, {rid}, {rid+N}, {rid-N}, {key}, {key+N},
 * {repeat:N:TEXT} and {attrs:N} in `text`. `vars` holds port, adminPort, token, and for a case
 * with a BOSH session sid, rid (the creation rid) and keys (keys[0] = the first key to send).
 * Records in vars.maxRid the highest rid written. Unknown names are left as they are (config
 * files are JSON and full of braces).
 */
export function expand(text, vars) {
  if (typeof text !== 'string') return text;
  return text.replace(/\{(port|admin_port|host|token|sid|rid(?:[+-]\d+)?|key(?:\+\d+)?|repeat:\d+:[^}]*|attrs:\d+)\}/g, (all, name) => {
    if (name === 'port') return String(vars.port);
    if (name === 'admin_port') return String(vars.adminPort);
    if (name === 'host') return `127.0.0.1:${vars.port}`;
    if (name === 'token') return vars.token;
    if (name.startsWith('repeat:')) {
      const m = /^repeat:(\d+):(.*)$/s.exec(name);
      return m[2].repeat(Number(m[1]));
    }
    if (name.startsWith('attrs:')) {
      const n = Number(name.slice(6));
      let s = '';
      for (let i = 1; i <= n; i++) s += ` a${i}='${i}'`;
      return s;
    }
    if (name === 'sid') {
      if (!vars.sid) throw new Error(`${all} needs "setup": "bosh-session"`);
      return vars.sid;
    }
    if (name.startsWith('rid')) {
      if (vars.rid === undefined) throw new Error(`${all} needs "setup": "bosh-session"`);
      const off = name.length > 3 ? Number(name.slice(3)) : 0;
      const rid = vars.rid + off;
      vars.maxRid = Math.max(vars.maxRid ?? vars.rid, rid);
      return String(rid);
    }
    if (name.startsWith('key')) {
      if (!vars.keys) throw new Error(`${all} needs a setup with "keys": true`);
      const off = name.length > 3 ? Number(name.slice(4)) : 0;
      return vars.keys[off];
    }
    return all;
  });
}

/**
 * The bytes a send gives as `NAME` (text: placeholders expanded, then UTF-8), `NAME_hex`,
 * `NAME_base64`, or `NAME_parts`: a list of { text } (expanded), { hex } and { base64 } pieces,
 * concatenated (bytes that are not UTF-8 next to text that holds placeholders).
 */
function bytesOf(obj, name, vars) {
  if (obj[`${name}_parts`] !== undefined) {
    return Buffer.concat(obj[`${name}_parts`].map((p) => {
      if (p.text !== undefined) return Buffer.from(expand(p.text, vars), 'utf8');
      if (p.hex !== undefined) return Buffer.from(p.hex.replace(/\s+/g, ''), 'hex');
      if (p.base64 !== undefined) return Buffer.from(p.base64, 'base64');
      throw new Error(`a part needs text, hex or base64: ${JSON.stringify(p)}`);
    }));
  }
  if (obj[`${name}_hex`] !== undefined) return Buffer.from(obj[`${name}_hex`].replace(/\s+/g, ''), 'hex');
  if (obj[`${name}_base64`] !== undefined) return Buffer.from(obj[`${name}_base64`], 'base64');
  if (obj[name] !== undefined) return Buffer.from(expand(obj[name], vars), 'utf8');
  return undefined;
}

// ---------------------------------------------------------------- raw HTTP

/** Header pairs from an object or a list of [name, value] (a list may repeat a name). */
const headerPairs = (h) => (Array.isArray(h) ? h : Object.entries(h ?? {}));

/**
 * The exact bytes of an HTTP request `send`:
 *   raw / raw_hex / raw_base64   the whole request as given (nothing added), or else
 *   method (POST), path, version ("HTTP/1.1"), headers; the request line, then
 *   Host: 127.0.0.1:PORT (unless "host" is false or a Host header is given), the headers in order,
 *   Content-Type: text/xml; charset=utf-8 when a body is given without one (BOSH only),
 *   Content-Length: the body's length when a body is given, unless "content_length" is false or a
 *   Content-Length or Transfer-Encoding header is given, then the empty line and the body
 *   (body / body_hex / body_base64).
 */
export function buildRequest(send, vars, { port, contentType, path: defaultPath = '/' }) {
  const raw = bytesOf(send, 'raw', vars);
  if (raw) return raw;
  const method = send.method ?? 'POST';
  const target = expand(send.path ?? defaultPath, vars);
  const version = send.version ?? 'HTTP/1.1';
  const headers = headerPairs(send.headers).map(([k, v]) => [k, expand(String(v), vars)]);
  const has = (n) => headers.some(([k]) => k.toLowerCase() === n);
  const body = bytesOf(send, 'body', vars);
  const lines = [`${method} ${target} ${version}`];
  if (send.host !== false && !has('host')) lines.push(`Host: 127.0.0.1:${port}`);
  for (const [k, v] of headers) lines.push(`${k}: ${v}`);
  if (body !== undefined && contentType && !has('content-type')) lines.push(`Content-Type: ${contentType}`);
  if (body !== undefined && send.content_length !== false && !has('content-length') && !has('transfer-encoding')) {
    lines.push(`Content-Length: ${body.length}`);
  }
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'utf8'), body ?? Buffer.alloc(0)]);
}

/** Parses one HTTP response at the start of `buf`: null when incomplete. */
function parseResponse(buf, ended) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const head = buf.subarray(0, end).toString('latin1');
  const lines = head.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(head.slice(0, 200))}`);
  const headers = {};
  const rawHeaders = [];
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    const k = l.slice(0, i).trim().toLowerCase();
    const v = l.slice(i + 1).trim();
    rawHeaders.push([k, v]);
    headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
  }
  const rest = buf.subarray(end + 4);
  let body;
  let used;
  if (headers['content-length'] !== undefined) {
    const len = Number(headers['content-length']);
    if (rest.length < len) return null;
    body = rest.subarray(0, len);
    used = end + 4 + len;
  } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const parts = [];
    let at = 0;
    for (;;) {
      const eol = rest.indexOf('\r\n', at);
      if (eol < 0) return null;
      const n = parseInt(rest.subarray(at, eol).toString('latin1'), 16);
      if (rest.length < eol + 2 + n + 2) return null;
      if (n === 0) { used = end + 4 + eol + 4; break; }
      parts.push(rest.subarray(eol + 2, eol + 2 + n));
      at = eol + 2 + n + 2;
    }
    body = Buffer.concat(parts);
  } else if ([204, 304].includes(Number(m[1])) || Number(m[1]) < 200) {
    body = Buffer.alloc(0);
    used = end + 4;
  } else {
    if (!ended) return null;
    body = rest;
    used = buf.length;
  }
  return {
    status: Number(m[1]),
    statusLine: lines[0],
    head,
    headers,
    rawHeaders,
    bodyBytes: body,
    text: body.toString('utf8'),
    used,
  };
}

/**
 * A client connection spoken by hand: `request(bytes)` writes the bytes and resolves to the next
 * response ({ status, headers, text, closed }); requests on one HttpConn go over the same socket
 * while the server keeps it open (BOSH answers carry stanzas only on the connection that got the
 * previous answer), a new one otherwise.
 */
export class HttpConn {
  constructor(port) {
    this.port = port;
    this.sock = null;
    this.buf = Buffer.alloc(0);
    this.ended = true;
    this.waiter = null;
  }

  open() {
    this.buf = Buffer.alloc(0);
    this.ended = false;
    const s = net.connect({ host: '127.0.0.1', port: this.port });
    this.sock = s;
    s.on('data', (d) => { if (this.sock === s) { this.buf = Buffer.concat([this.buf, d]); this.poke(); } });
    const gone = () => { if (this.sock === s) { this.ended = true; this.poke(); } };
    s.on('end', gone);
    s.on('close', gone);
    s.on('error', gone);
    return new Promise((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
  }

  poke() {
    const w = this.waiter;
    if (!w) return;
    let r;
    try {
      r = parseResponse(this.buf, this.ended);
    } catch (err) {
      this.waiter = null;
      w.reject(err);
      return;
    }
    if (r) {
      this.waiter = null;
      this.buf = this.buf.subarray(r.used);
      w.resolve(r);
    } else if (this.ended) {
      this.waiter = null;
      w.resolve({ status: 0, headers: {}, rawHeaders: [], text: '', bodyBytes: Buffer.alloc(0), noAnswer: true,
        partial: this.buf.toString('latin1').slice(0, 300) });
    }
  }

  async request(bytes, { timeoutMs = 5000, fresh = false } = {}) {
    if (fresh || this.ended || !this.sock) {
      this.close();
      await this.open();
    }
    const p = new Promise((resolve, reject) => { this.waiter = { resolve, reject }; });
    const timer = setTimeout(() => {
      const w = this.waiter;
      if (w) {
        this.waiter = null;
        w.resolve({ status: 0, headers: {}, rawHeaders: [], text: '', bodyBytes: Buffer.alloc(0), timedOut: true,
          partial: this.buf.toString('latin1').slice(0, 300) });
      }
    }, timeoutMs);
    this.sock.write(bytes);
    this.poke();
    try {
      const r = await p;
      // Did the server close after this answer? Give a FIN a moment to arrive.
      if (!r.noAnswer && !r.timedOut) {
        if (!this.ended && /close/i.test(r.headers.connection ?? '')) {
          await new Promise((res) => { const t = setTimeout(res, 500); this.sock.once('close', () => { clearTimeout(t); res(); }); });
        } else if (!this.ended) {
          await new Promise((res) => setTimeout(res, 20));
        }
      }
      r.closed = this.ended;
      return r;
    } finally {
      clearTimeout(timer);
    }
  }

  close() {
    if (this.sock) this.sock.destroy();
    this.sock = null;
    this.ended = true;
  }
}

// ---------------------------------------------------------------- checks

const show = (s, n = 600) => {
  const t = typeof s === 'string' ? s : String(s);
  return JSON.stringify(t.length > n ? `${t.slice(0, n)}... (${t.length} chars)` : t);
};

/** The answer's <body/> (BOSH): { attrs, el } or null when the text is not a BOSH <body/>. */
export function parseBoshBody(text) {
  if (!text || !text.trim().startsWith('<')) return null;
  const errors = [];
  const doc = new DOMParser({ onError: (level, msg) => { if (level !== 'warning') errors.push(msg); } })
    .parseFromString(text, 'text/xml');
  const el = doc?.documentElement;
  if (errors.length || !el || el.localName !== 'body' || el.namespaceURI !== NS_BOSH) return null;
  const attrs = {};
  for (let i = 0; i < el.attributes.length; i++) attrs[el.attributes[i].name] = el.attributes[i].value;
  return { attrs, el };
}

function checkHeaders(res, expect, where) {
  for (const [name, want] of Object.entries(expect.headers ?? {})) {
    const got = res.headers[name.toLowerCase()];
    if (want === null) assert.equal(got, undefined, `${where}: header ${name} should be absent, is ${show(got)}`);
    else assert.equal(got, want, `${where}: header ${name}`);
  }
  for (const [name, re] of Object.entries(expect.headers_match ?? {})) {
    const got = res.headers[name.toLowerCase()];
    assert.ok(got !== undefined && new RegExp(re).test(got), `${where}: header ${name} = ${show(got)} should match /${re}/`);
  }
  // No answer header may carry a control character (CR, LF, NUL, ...): nothing the client sent
  // can split or smuggle a header.
  for (const [k, v] of res.rawHeaders ?? []) {
    assert.ok(!/[\x00-\x08\x0a-\x1f\x7f]/.test(v), `${where}: answer header ${k} carries a control character: ${show(v)}`);
  }
}

/** Checks an HTTP answer (BOSH or admin) against `expect`. `saved` holds earlier answers. */
export function checkHttp(res, expect, { where, saved = {}, kind }) {
  const what = `${where}: answer ${res.statusLine ?? '(none)'} ${show(res.text)}`;
  if (expect.no_answer) {
    assert.ok(res.noAnswer || res.timedOut, `${what}: the server should not answer`);
    return;
  }
  assert.ok(!res.timedOut, `${where}: no answer within the time allowed (got ${show(res.partial ?? '')})`);
  assert.ok(!res.noAnswer, `${where}: connection closed without an answer (got ${show(res.partial ?? '')})`);
  if (expect.status !== undefined) assert.equal(res.status, expect.status, `${what}: HTTP status`);
  if (expect.status_in !== undefined) assert.ok(expect.status_in.includes(res.status), `${what}: HTTP status should be one of ${expect.status_in.join(', ')}`);
  checkHeaders(res, expect, what);
  if (expect.closed !== undefined) assert.equal(res.closed, expect.closed, `${what}: connection ${expect.closed ? 'closed' : 'kept open'} after the answer`);
  if (expect.body !== undefined) assert.equal(res.text, expect.body, `${what}: body`);
  if (expect.body_match !== undefined) assert.match(res.text, new RegExp(expect.body_match), `${what}: body`);
  if (expect.body_not_match !== undefined) assert.doesNotMatch(res.text, new RegExp(expect.body_not_match), `${what}: body`);
  if (expect.same_body_as !== undefined) {
    const prev = saved[expect.same_body_as];
    assert.ok(prev, `${where}: no earlier answer "${expect.same_body_as}"`);
    assert.equal(res.text, prev.text, `${what}: should replay the answer of ${expect.same_body_as} byte for byte`);
  }
  const boshFields = ['type', 'condition', 'attrs_match', 'attrs_absent', 'children'];
  if (boshFields.some((f) => expect[f] !== undefined)) {
    const b = parseBoshBody(res.text);
    assert.ok(b, `${what}: not a BOSH <body xmlns='${NS_BOSH}'/>`);
    if (expect.type !== undefined) assert.equal(b.attrs.type, expect.type ?? undefined, `${what}: type attribute`);
    if (expect.condition !== undefined) assert.equal(b.attrs.condition, expect.condition ?? undefined, `${what}: condition attribute`);
    for (const [k, re] of Object.entries(expect.attrs_match ?? {})) {
      assert.ok(b.attrs[k] !== undefined && new RegExp(re).test(b.attrs[k]), `${what}: attribute ${k} = ${show(b.attrs[k])} should match /${re}/`);
    }
    for (const k of expect.attrs_absent ?? []) assert.equal(b.attrs[k], undefined, `${what}: attribute ${k} should be absent`);
    if (expect.children !== undefined) {
      const kids = [];
      for (let n = b.el.firstChild; n; n = n.nextSibling) if (n.nodeType === 1) kids.push(n.localName);
      assert.deepEqual(kids, expect.children, `${what}: child elements`);
    }
  }
  if (expect.json !== undefined) {
    assert.match(res.headers['content-type'] ?? '', /^application\/json/, `${what}: Content-Type`);
    let j;
    try { j = JSON.parse(res.text); } catch (err) { assert.fail(`${what}: body is not JSON: ${err.message}`); }
    for (const [k, v] of Object.entries(expect.json)) assert.deepEqual(j[k], v, `${what}: JSON "${k}"`);
  }
  if (kind === 'bosh' && (expect.type !== undefined || expect.condition !== undefined)) {
    assert.equal(res.headers['content-type'], 'text/xml; charset=utf-8', `${what}: Content-Type of a BOSH answer`);
  }
}

/**
 * Waits for a gateway log line matching `re` (a string) among the lines written since line `from`
 * (the case's first), so that a line an earlier case caused cannot satisfy a later one.
 */
export async function checkLog(gw, re, where, from, ms = 3000) {
  const rx = new RegExp(re);
  const deadline = Date.now() + ms;
  for (;;) {
    const found = gw.logs().slice(from).find((l) => rx.test(l));
    if (found) return found;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  const tail = gw.logs().slice(from).slice(-15).map((l) => show(l, 300)).join('\n  ');
  return assert.fail(`${where}: no gateway log line since the case began matched /${re}/ within ${ms} ms; lines since:\n  ${tail}`);
}

/** The gateway log lines that hold a raw control character (C0 but tab, DEL, C1 in UTF-8). */
export function rawControlLines(gw) {
  return gw.logs().filter((l) => CTL_RE.test(l) || l.includes('\r'));
}

// ---------------------------------------------------------------- BOSH

const sha1hex = (s) => crypto.createHash('sha1').update(s).digest('hex');

/** A key chain (XEP-0124 section 15): [newkey, first key to send, second, ...]. */
function keyChain(n = 12) {
  const k = [crypto.randomBytes(12).toString('hex')];
  for (let i = 1; i <= n; i++) k.push(sha1hex(k[i - 1]));
  return k.reverse();
}

/**
 * "setup": "bosh-session" (or { "kind": "bosh-session", "attrs": {...}, "keys": true }): a session
 * creation request on the case's connection: rid random, to='localhost', wait='1', hold='1',
 * ver='1.6', xml:lang='en', xmpp:version='1.0' (attrs override; null removes one), newkey when
 * keys is true. Fills vars.sid, vars.rid (the creation rid) and vars.keys.
 */
async function boshSetup(setup, conn, vars, where) {
  const opts = typeof setup === 'string' ? { kind: setup } : setup;
  assert.equal(opts.kind, 'bosh-session', `${where}: unknown setup ${JSON.stringify(setup)}`);
  vars.rid = 100000 + crypto.randomInt(1e9);
  vars.maxRid = vars.rid;
  const attrs = {
    rid: vars.rid, to: 'localhost', wait: 1, hold: 1, ver: '1.6', 'xml:lang': 'en',
    'xmlns:xmpp': 'urn:xmpp:xbosh', 'xmpp:version': '1.0', ...(opts.attrs ?? {}),
  };
  if (opts.keys) {
    const chain = keyChain();
    attrs.newkey = chain[0];
    vars.keys = chain.slice(1);
  }
  const a = Object.entries(attrs).filter(([, v]) => v !== null).map(([k, v]) => ` ${k}='${v}'`).join('');
  const body = `<body${a} xmlns='${NS_BOSH}'/>`;
  const res = await conn.request(buildRequest({ body }, vars, { port: vars.port, contentType: 'text/xml; charset=utf-8', path: '/http-bind' }));
  const b = parseBoshBody(res.text);
  assert.ok(res.status === 200 && b?.attrs.sid && !b.attrs.type, `${where}: setup: session creation failed: ${res.status} ${show(res.text)}`);
  vars.sid = b.attrs.sid;
  return res;
}

/** Ends a case's BOSH session if it is still there (best effort, not awaited by the case). */
function boshCleanup(vars) {
  if (!vars.sid) return Promise.resolve();
  const c = new HttpConn(vars.port);
  const body = `<body rid='${vars.maxRid + 1}' sid='${vars.sid}' type='terminate' xmlns='${NS_BOSH}'/>`;
  return c.request(buildRequest({ body }, vars, { port: vars.port, contentType: 'text/xml; charset=utf-8', path: '/http-bind' }), { timeoutMs: 4000 })
    .catch(() => {}).finally(() => c.close());
}

/**
 * Runs an HTTP case (BOSH or admin): setup, `before` steps, the case's own request, `then` steps.
 * Each step is { send, expect, name? } checked like the case itself; answers are saved as
 * "before.N", "case" and "then.N" for same_body_as.
 */
export async function runHttpCase(c, { kind, gw, vars, cleanups }) {
  const port = kind === 'admin' ? gw.adminPort : gw.port;
  const contentType = kind === 'bosh' ? 'text/xml; charset=utf-8' : undefined;
  const defaultPath = kind === 'bosh' ? '/http-bind' : '/';
  const conn = new HttpConn(port);
  const saved = {};
  const logFrom = gw.logs().length;
  try {
    if (c.setup) saved.setup = await boshSetup(c.setup, conn, vars, c.name);
    const steps = [
      ...(c.before ?? []).map((s, i) => ({ ...s, label: `before.${i}` })),
      { send: c.send, expect: c.expect, label: 'case' },
      ...(c.then ?? []).map((s, i) => ({ ...s, label: `then.${i}` })),
    ];
    for (const step of steps) {
      const where = `${step.label}${step.name ? ` (${step.name})` : ''}`;
      const bytes = buildRequest(step.send, vars, { port, contentType, path: defaultPath });
      const res = await conn.request(bytes, { timeoutMs: step.expect.timeout_ms ?? 5000, fresh: step.send.fresh_connection });
      saved[step.label] = res;
      checkHttp(res, step.expect, { where, saved, kind });
      if (step.expect.log) await checkLog(gw, expand(step.expect.log, vars), where, logFrom);
    }
  } finally {
    conn.close();
    if (kind === 'bosh') cleanups.push(boshCleanup(vars));
  }
}

// ---------------------------------------------------------------- WebSocket

/**
 * A WebSocket upgrade request by hand (so that any header bytes can be sent): GET `path`
 * (default /xmpp-websocket) with Host, Upgrade: websocket, Connection: Upgrade,
 * Sec-WebSocket-Version: 13, a fresh Sec-WebSocket-Key, Sec-WebSocket-Protocol (`protocols`
 * joined with ", ", or `protocol_header` as written; none when both are absent or null), Origin
 * when given, then `headers`. `raw` sends a whole request as given.
 */
export function buildUpgrade(send, vars) {
  if (['raw', 'raw_hex', 'raw_base64', 'raw_parts'].some((k) => send[k] !== undefined)) {
    return buildRequest(send, vars, { port: vars.port });
  }
  const headers = [
    ['Upgrade', 'websocket'],
    ['Connection', 'Upgrade'],
    ['Sec-WebSocket-Version', '13'],
    ['Sec-WebSocket-Key', crypto.randomBytes(16).toString('base64')],
  ];
  const proto = send.protocol_header ?? (send.protocols ? send.protocols.join(', ') : null);
  if (proto !== null && proto !== undefined) headers.push(['Sec-WebSocket-Protocol', proto]);
  if (send.origin !== undefined) headers.push(['Origin', send.origin]);
  headers.push(...headerPairs(send.headers));
  return buildRequest({ method: 'GET', path: send.path ?? '/xmpp-websocket', headers }, vars, { port: vars.port });
}

export async function runUpgradeCase(c, { gw, vars }) {
  const logFrom = gw.logs().length;
  const conn = new HttpConn(gw.port);
  try {
    const res = await conn.request(buildUpgrade(c.send, vars), { timeoutMs: c.expect.timeout_ms ?? 5000 });
    checkHttp(res, c.expect, { where: 'upgrade', kind: 'upgrade' });
    if (c.expect.log) await checkLog(gw, expand(c.expect.log, vars), 'upgrade', logFrom);
  } finally {
    conn.close();
  }
}

/** The bytes of one frame entry: { text } / { text_hex } (a text frame), { binary } / { binary_hex }. */
function frameOf(f, vars) {
  const given = (n) => ['', '_hex', '_base64', '_parts'].some((x) => f[`${n}${x}`] !== undefined);
  if (given('text')) return { data: bytesOf(f, 'text', vars), binary: false };
  if (given('binary')) {
    return { data: bytesOf(f, 'binary', vars), binary: true };
  }
  throw new Error(`a frame needs text, text_hex, binary or binary_hex: ${JSON.stringify(f).slice(0, 100)}`);
}

const describeFrame = (f) => {
  if (!f) return 'nothing';
  const t = f.text.length > 200 ? `${f.text.slice(0, 200)}...` : f.text;
  return JSON.stringify(t);
};

/**
 * Checks the frames the server sent after the case's frames, up to the WebSocket close:
 *   open_first     an <open/> (framing namespace) comes first (the gateway answers the stream
 *                  before its error when none was answered yet)
 *   stream_error   the condition inside <stream:error/> (streams namespace), with a <text/>
 *   text_match     a regexp the <text/> must match
 *   close          <close/> (framing namespace) follows the error and is the last frame
 *   close_code     the WebSocket close frame's status code
 * or, for inputs that must be taken:
 *   answers        [{ name, ns, attrs }] the next frames, in order; the socket stays open.
 */
async function checkWsAnswer(probe, expect, where) {
  if (expect.answers) {
    for (const [i, want] of expect.answers.entries()) {
      let f;
      try {
        f = await probe.next(expect.timeout_ms ?? 5000);
      } catch (err) {
        assert.fail(`${where}: answer ${i}: ${err.message}`);
      }
      assert.ok(f.el, `${where}: answer ${i} is not one XML document: ${describeFrame(f)}`);
      assert.equal(f.el.localName, want.name, `${where}: answer ${i}: ${describeFrame(f)}`);
      if (want.ns) assert.equal(f.el.namespaceURI, want.ns, `${where}: answer ${i} namespace: ${describeFrame(f)}`);
      for (const [k, v] of Object.entries(want.attrs ?? {})) {
        assert.equal(f.el.getAttribute(k), v, `${where}: answer ${i} attribute ${k}: ${describeFrame(f)}`);
      }
    }
    assert.equal(probe.isClosed, false, `${where}: the socket should stay open`);
    return;
  }
  let res;
  try {
    res = await probe.readUntilClose(expect.timeout_ms ?? 8000);
  } catch (err) {
    assert.fail(`${where}: ${err.message}`);
  }
  const { frames, code } = res;
  const seen = `frames ${JSON.stringify(frames.map((f) => (f.text.length > 200 ? `${f.text.slice(0, 200)}...` : f.text)))}, close code ${code}`;
  let i = 0;
  if (expect.open_first) {
    const f = frames[i++];
    assert.ok(f?.el?.localName === 'open' && f.el.namespaceURI === NS_FRAMING, `${where}: an <open/> first; ${seen}`);
  }
  if (expect.stream_error !== undefined) {
    const f = frames[i++];
    assert.ok(f?.el?.localName === 'error' && f.el.namespaceURI === NS_STREAM, `${where}: a <stream:error/>; ${seen}`);
    const conds = children(f.el, null, NS_STREAMS).filter((e) => e.localName !== 'text');
    assert.deepEqual(conds.map((e) => e.localName), [expect.stream_error], `${where}: stream error condition; ${seen}`);
    const text = children(f.el, 'text', NS_STREAMS)[0];
    assert.ok(text, `${where}: the stream error has a <text/>; ${seen}`);
    if (expect.text_match) assert.match(text.textContent, new RegExp(expect.text_match), `${where}: <text/>; ${seen}`);
  }
  if (expect.close) {
    const f = frames[i++];
    assert.ok(f?.el?.localName === 'close' && f.el.namespaceURI === NS_FRAMING, `${where}: <close/> after the error; ${seen}`);
  }
  assert.equal(frames.length, i, `${where}: no other frame; ${seen}`);
  if (expect.close_code !== undefined) assert.equal(code, expect.close_code, `${where}: WebSocket close code; ${seen}`);
}

/**
 * A WebSocket frame case: the upgrade with `protocols` (default ["xmpp"]) and `origin`, with
 * "setup": "ws-open" the usual <open/> answered with <open/> and <stream:features/> first, then
 * every frame of `frames` at once, in order ("fin": false makes a fragment of one message).
 */
export async function runFramesCase(c, { gw, vars }) {
  const logFrom = gw.logs().length;
  const probe = await connect(gw.wsUrl, { protocols: c.send.protocols ?? ['xmpp'], origin: c.send.origin, perMessageDeflate: false });
  try {
    if (c.setup) {
      assert.equal(c.setup, 'ws-open', `unknown setup ${JSON.stringify(c.setup)}`);
      probe.send(`<open xmlns="${NS_FRAMING}" to="localhost" version="1.0"/>`);
      const o = await probe.next();
      assert.ok(o.el?.localName === 'open', `setup: <open/> answer: ${describeFrame(o)}`);
      const f = await probe.next();
      assert.ok(f.el?.localName === 'features', `setup: features: ${describeFrame(f)}`);
    }
    let fragmenting = false;
    for (const fr of c.send.frames) {
      const { data, binary } = frameOf(fr, vars);
      const fin = fr.fin !== false;
      // ws sends a continuation frame for every part after the first of a message.
      probe.ws.send(data, { binary, fin, compress: false });
      fragmenting = !fin;
    }
    assert.ok(!fragmenting, 'the last frame of a case must end its message');
    await checkWsAnswer(probe, c.expect, 'answer');
    if (c.expect.log) await checkLog(gw, expand(c.expect.log, vars), 'answer', logFrom);
  } finally {
    probe.terminate();
  }
}

// ---------------------------------------------------------------- config

/**
 * A config case: the file's bytes (`text` / `text_hex` / `text_base64`) written to DIR/NAME.json
 * (`file_name`, default "bad.json"), then `xmppgw --check-config --config FILE` plus `args`.
 * expect: exit (the exit status), message (a regexp the output must match: the file, line and
 * column, the key), message_not (one it must not).
 */
export async function runConfigCase(c, { dir, index }) {
  const data = bytesOf(c.send, 'text', {});
  assert.ok(data, 'a config case needs send.text, text_hex or text_base64');
  const file = path.join(dir, `${String(index).padStart(2, '0')}-${c.send.file_name ?? 'bad.json'}`);
  await writeFile(file, data);
  const r = await runGateway(['--check-config', '--config', file, ...(c.send.args ?? [])], { timeoutMs: 15000 });
  const out = `${r.stdout}${r.stderr}`;
  assert.equal(r.timedOut, false, '--check-config must exit, not hang');
  assert.equal(r.code, c.expect.exit, `exit status; output: ${show(out)}`);
  if (c.expect.message) assert.match(out, new RegExp(c.expect.message), `message: ${show(out)}`);
  if (c.expect.message_not) assert.doesNotMatch(out, new RegExp(c.expect.message_not), `message: ${show(out)}`);
  assert.ok(!/ERROR: AddressSanitizer|runtime error:/.test(out), `sanitizer report: ${show(out, 2000)}`);
}
