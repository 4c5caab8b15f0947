// The admin plane: /healthz, and /metrics in the Prometheus text format counting WebSocket sessions
// and stanzas once a real session has run through the gateway; the Host check (DNS rebinding) and
// /api/sessions showing a hash of each sid, never the sid.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { startStack } from './lib/stack.mjs';
import { loginXmppJs, goOnline } from './lib/clients.mjs';

const T = { timeout: 30000 };

// Parses the Prometheus text exposition format strictly enough to catch broken output.
function parseMetrics(text) {
  const samples = [];
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '' || line.startsWith('#')) {
      if (line.startsWith('# ') && !/^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+/.test(line)) {
        throw new Error(`line ${i + 1}: bad comment: ${line}`);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$/.exec(line);
    if (!m) throw new Error(`line ${i + 1}: not a sample: ${line}`);
    const labels = {};
    if (m[3]) {
      for (const l of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/g)) labels[l[1]] = l[2];
    }
    const value = Number(m[4]);
    if (Number.isNaN(value) && !['NaN', '+Inf', '-Inf'].includes(m[4])) throw new Error(`line ${i + 1}: bad value: ${line}`);
    samples.push({ name: m[1], labels, value });
  }
  return samples;
}

async function getMetrics(gw) {
  const res = await fetch(`${gw.adminUrl}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  const text = await res.text();
  return { text, samples: parseMetrics(text) };
}

/** One request with headers of our choosing (fetch will not set Host). Resolves to
 * { status, headers, text }. */
function httpRequest(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (body !== undefined) h['Content-Length'] = Buffer.byteLength(body);
    const req = http.request(url, { method, headers: h, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const NS_BOSH = 'http://jabber.org/protocol/httpbind';
const sidHash = (sid) => crypto.createHash('sha256').update(sid).digest('hex').slice(0, 16);

const wsSessions = (samples) => samples
  .filter((s) => /(^|_)sessions_total$/.test(s.name) && s.labels.transport === 'websocket')
  .reduce((a, s) => a + s.value, 0);
const stanzaSamples = (samples) => samples.filter((s) => /stanza/.test(s.name));

describe('admin plane', { timeout: 120000 }, () => {
  let stack;

  before(async () => { stack = await startStack(); });
  after(async () => {
    const problem = await stack?.stop();
    if (problem) assert.fail(problem);
  });

  it('/healthz answers 200', T, async () => {
    const res = await fetch(`${stack.gw.adminUrl}/healthz`);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  });

  it('/metrics is valid Prometheus text', T, async () => {
    const { samples, text } = await getMetrics(stack.gw);
    assert.ok(samples.length > 0, text);
  });

  it('/metrics counts a WebSocket session and its stanzas', T, async () => {
    const before = await getMetrics(stack.gw);
    const sessionsBefore = wsSessions(before.samples);

    const { gw, prosody } = stack;
    const a = await loginXmppJs({ service: gw.wsUrl, username: 'alice', password: prosody.users.alice });
    await goOnline(a);
    for (let i = 0; i < 5; i++) {
      const r = await a.iq('<iq type="get" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>');
      assert.equal(r.type, 'result');
    }
    await a.sendMessage(a.jid, 'to myself');
    await a.waitFor((s) => s.name === 'message' && s.body === 'to myself');
    await a.stop();

    const after = await getMetrics(stack.gw);
    const sessionsAfter = wsSessions(after.samples);
    assert.ok(sessionsAfter >= 1, `sessions_total{transport="websocket"} after a session:\n${after.text}`);
    assert.ok(sessionsAfter >= sessionsBefore + 1, `went from ${sessionsBefore} to ${sessionsAfter}`);

    const stanzas = stanzaSamples(after.samples);
    assert.ok(stanzas.length > 0, `no stanza counters in:\n${after.text}`);
    const total = stanzas.reduce((a, s) => a + s.value, 0);
    assert.ok(total >= 12, `stanza counters sum to ${total} after ~12 stanzas each way:\n${after.text}`);
    assert.ok(stanzas.some((s) => s.value > 0 && (s.labels.transport === undefined || s.labels.transport === 'websocket')),
      `a non-zero stanza counter for websocket:\n${after.text}`);
  });

  it('refuses a Host that is not an address, localhost or admin.hosts: 421 with a JSON error', T, async () => {
    for (const path of ['/api/sessions', '/metrics', '/status', '/healthz']) {
      const res = await httpRequest(`${stack.gw.adminUrl}${path}`, { headers: { Host: 'evil.example' } });
      assert.equal(res.status, 421, `${path}: ${res.text}`);
      assert.match(res.headers['content-type'] ?? '', /^application\/json/);
      const body = JSON.parse(res.text);
      assert.deepEqual(Object.keys(body).sort(), ['condition', 'error']);
      assert.equal(body.condition, 'host-not-allowed');
      assert.equal(typeof body.error, 'string');
    }
    const port = stack.gw.adminPort;
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, 'localhost']) {
      const res = await httpRequest(`${stack.gw.adminUrl}/healthz`, { headers: { Host: host } });
      assert.equal(res.status, 200, `Host: ${host}: ${res.text}`);
    }
  });

  it('/api/sessions shows the hash of a BOSH sid, never the sid', T, async () => {
    const rid = 1000 + Math.floor(Math.random() * 1e6);
    const create = await httpRequest(stack.gw.boshUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'text/xml; charset=utf-8' },
      body: `<body rid='${rid}' to='localhost' wait='5' hold='1' ver='1.6' xmpp:version='1.0' `
        + `xmlns:xmpp='urn:xmpp:xbosh' xmlns='${NS_BOSH}'/>`,
    });
    assert.equal(create.status, 200, create.text);
    const sid = /\ssid=['"]([^'"]+)['"]/.exec(create.text)?.[1];
    assert.ok(sid, `no sid in ${create.text}`);
    try {
      const res = await fetch(`${stack.gw.adminUrl}/api/sessions`);
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.ok(!text.includes(sid), `the raw sid is in the body:\n${text}`);
      const { sessions } = JSON.parse(text);
      for (const s of sessions) {
        assert.equal(s.sid, undefined, JSON.stringify(s));
        assert.match(s.sid_hash, /^[0-9a-f]{16}$/);
      }
      const mine = sessions.find((s) => s.sid_hash === sidHash(sid));
      assert.ok(mine, `no entry with sid_hash ${sidHash(sid)}:\n${text}`);
      assert.equal(mine.transport, 'bosh');
    } finally {
      await httpRequest(stack.gw.boshUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'text/xml; charset=utf-8' },
        body: `<body rid='${rid + 1}' sid='${sid}' type='terminate' xmlns='${NS_BOSH}'/>`,
      });
    }
  });

  it('the admin port is not the public port: /metrics is not served publicly', T, async () => {
    const res = await fetch(`${stack.gw.url}/metrics`);
    assert.notEqual(res.status, 200);
    await res.arrayBuffer();
  });
});
