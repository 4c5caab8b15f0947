// The admin plane with real sessions against Prosody: /metrics families and their values after known
// traffic (2 WebSocket and 1 BOSH client logged in, a message each way, a held BOSH request, the
// event-loop lag histogram, RSS and descriptors), /status (node_id, the config digest before and
// after a SIGHUP), /api/sessions paged with limit/offset and filtered by JID and address,
// DELETE /api/sessions/<id> ending exactly that session with the condition asked (the client sees
// it), its 404/400/405/401 answers, and the client address in the log lines of a session.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { startStack } from './lib/stack.mjs';
import { startGateway, stopGatewayChecked } from './lib/gateway.mjs';
import { loginXmppJs, loginStrophe, goOnline, sleep } from './lib/clients.mjs';
import { rawLogin, expectStreamError } from './lib/wsraw.mjs';

const T = { timeout: 60000 };
const NS_BOSH = 'http://jabber.org/protocol/httpbind';
const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');
const sidHash = (sid) => sha256(sid).slice(0, 16);

// Prometheus text into [{ name, labels, value }], strictly enough to catch broken output.
function parseMetrics(text) {
  const samples = [];
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) throw new Error(`line ${i + 1}: not a sample: ${line}`);
    const labels = {};
    if (m[3]) for (const l of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g)) labels[l[1]] = l[2];
    const value = Number(m[4]);
    if (Number.isNaN(value) && m[4] !== '+Inf') throw new Error(`line ${i + 1}: bad value: ${line}`);
    samples.push({ name: m[1], labels, value });
  }
  return samples;
}

async function metrics(gw) {
  const res = await fetch(`${gw.adminUrl}/metrics`);
  assert.equal(res.status, 200);
  const text = await res.text();
  const samples = parseMetrics(text);
  const get = (name, labels = {}) => {
    const s = samples.filter((x) => x.name === name
      && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
    assert.ok(s.length > 0, `no ${name}${JSON.stringify(labels)} in:\n${text}`);
    return s.reduce((a, x) => a + x.value, 0);
  };
  return { text, samples, get };
}

async function api(gw, path, { method = 'GET', token } = {}) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const res = await fetch(`${gw.adminUrl}${path}`, { method, headers });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

/** Polls fn until it returns a truthy value (or fails after ms). */
async function until(fn, ms, what) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(50);
  }
}

/** A raw BOSH session (no login): its sid, the next rid, and post(body attrs, inner). */
async function rawBosh(gw) {
  let rid = 1000 + crypto.randomInt(1e6);
  const post = async (attrs, inner = '') => {
    const res = await fetch(gw.boshUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'text/xml; charset=utf-8' },
      body: `<body rid='${rid++}' ${attrs} xmlns='${NS_BOSH}'>${inner}</body>`,
    });
    return { status: res.status, text: await res.text() };
  };
  const created = await post(`to='localhost' wait='10' hold='1' ver='1.6' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'`);
  assert.equal(created.status, 200, created.text);
  const sid = /\ssid=['"]([^'"]+)['"]/.exec(created.text)?.[1];
  assert.ok(sid, created.text);
  return { sid, post: (inner = '', attrs = '') => post(`sid='${sid}' ${attrs}`, inner) };
}

describe('admin API with real sessions', { timeout: 240000 }, () => {
  let stack;
  let gw;
  const clients = {};

  before(async () => {
    stack = await startStack({ gateway: { config: { node_id: 'node-a' } } });
    gw = stack.gw;
    const { prosody } = stack;
    clients.ws1 = await loginXmppJs({ service: gw.wsUrl, username: 'alice', password: prosody.users.alice, resource: 'one' });
    clients.ws2 = await loginXmppJs({ service: gw.wsUrl, username: 'bob', password: prosody.users.bob });
    clients.bosh = await loginStrophe({ service: gw.boshUrl, username: 'carol', password: prosody.users.carol });
    await goOnline(clients.ws1);
    await goOnline(clients.ws2);
    await goOnline(clients.bosh);
  });
  after(async () => {
    const problem = await stack?.stop();
    if (problem) assert.fail(problem);
  });

  it('/metrics: 2 WebSocket and 1 BOSH session bound, a held BOSH request, counters move with a message', T, async () => {
    const m0 = await until(async () => {
      const m = await metrics(gw);
      return m.get('xmppgw_bosh_held_requests') >= 1 ? m : null;
    }, 10000, 'a held BOSH request');
    assert.equal(m0.get('xmppgw_sessions_by_state', { transport: 'websocket', state: 'bound' }), 2, m0.text);
    assert.equal(m0.get('xmppgw_sessions_by_state', { transport: 'bosh', state: 'bound' }), 1, m0.text);
    assert.equal(m0.get('xmppgw_sessions_by_state', { transport: 'websocket' }), 2);
    assert.equal(m0.get('xmppgw_sessions_by_state', { transport: 'bosh' }), 1);
    assert.equal(m0.get('xmppgw_sessions_open', { transport: 'websocket' }), 2);
    assert.equal(m0.get('xmppgw_sse_viewers'), 0);
    // Strophe keeps hold=1 request open; never more than the sessions' hold in all.
    assert.ok(m0.get('xmppgw_bosh_held_requests') <= 2, m0.text);
    assert.ok(m0.get('xmppgw_upstream_connects_total') >= 3);
    for (const k of ['connect', 'tls']) assert.equal(m0.get('xmppgw_upstream_failures_total', { kind: k }), 0);

    const body = `hello ${crypto.randomUUID()}`;
    clients.ws1.sendMessage(clients.bosh.jid, body);
    await clients.bosh.waitFor((s) => s.name === 'message' && s.body === body);
    clients.bosh.sendMessage(clients.ws2.jid, body);
    await clients.ws2.waitFor((s) => s.name === 'message' && s.body === body);
    const m1 = await metrics(gw);
    for (const d of ['to_upstream', 'to_client']) {
      assert.ok(m1.get('xmppgw_stanzas_total', { direction: d }) >= m0.get('xmppgw_stanzas_total', { direction: d }) + 2, d);
      assert.ok(m1.get('xmppgw_bytes_total', { direction: d }) >= m0.get('xmppgw_bytes_total', { direction: d }) + 2 * body.length, d);
    }
    assert.ok(m1.get('xmppgw_upstream_writes_total') > m0.get('xmppgw_upstream_writes_total'), m1.text);

    // Five stanzas in one BOSH body (Strophe.js sends what was queued in one tick in one request)
    // reach the server in fewer than five writes: what arrives in one loop turn leaves in one.
    const bodies = Array.from({ length: 5 }, (_, i) => `batch ${i} ${crypto.randomUUID()}`);
    for (const b of bodies) clients.bosh.sendMessage(clients.ws2.jid, b);
    for (const b of bodies) await clients.ws2.waitFor((s) => s.name === 'message' && s.body === b);
    const m2 = await metrics(gw);
    const stanzas = m2.get('xmppgw_stanzas_total', { direction: 'to_upstream' }) - m1.get('xmppgw_stanzas_total', { direction: 'to_upstream' });
    const writes = m2.get('xmppgw_upstream_writes_total') - m1.get('xmppgw_upstream_writes_total');
    assert.ok(stanzas >= 5, `stanzas ${stanzas}`);
    assert.ok(writes < 5, `${writes} upstream writes for ${stanzas} stanzas`);
  });

  it('/metrics: the lag histogram counts, RSS and descriptors are those of the process', T, async () => {
    const m = await metrics(gw);
    const count = m.get('xmppgw_event_loop_lag_seconds_count');
    assert.ok(count >= 4, `lag observations after a few seconds: ${count}`);
    const buckets = m.samples.filter((s) => s.name === 'xmppgw_event_loop_lag_seconds_bucket');
    assert.ok(buckets.length >= 5);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, 'cumulative buckets');
    assert.equal(buckets.at(-1).labels.le, '+Inf');
    assert.equal(buckets.at(-1).value, count);
    assert.ok(m.get('xmppgw_event_loop_lag_seconds_sum') >= 0);
    assert.match(m.text, /# TYPE xmppgw_event_loop_lag_seconds histogram/);

    const statm = (await readFile(`/proc/${gw.pid}/statm`, 'utf8')).split(' ').map(Number);
    const rss = m.get('xmppgw_process_resident_memory_bytes');
    assert.ok(rss > 1 << 20, `rss ${rss}`);
    assert.ok(Math.abs(rss - statm[1] * 4096) < 64 << 20, `rss ${rss} vs statm ${statm[1]} pages`);
    const fds = m.get('xmppgw_process_open_fds');
    assert.ok(fds >= 6, `open fds ${fds}`); // listeners, epoll, 3 upstreams, clients
    assert.ok(m.get('xmppgw_process_max_fds') > fds);
    // Conditions by transport: bosh terminate conditions and websocket stream errors apart.
    assert.equal(m.samples.filter((s) => s.name === 'xmppgw_conditions_total' && s.labels.transport === 'bosh'
      && s.labels.condition === 'item-not-found').length, 1);
    assert.equal(m.samples.filter((s) => s.name === 'xmppgw_conditions_total' && s.labels.transport === 'websocket'
      && s.labels.condition === 'item-not-found').length, 0);
  });

  it('/status: version, node_id, config digest, counts; the digest follows a SIGHUP that took', T, async () => {
    const s = await api(gw, '/status');
    assert.equal(s.status, 200);
    const j = s.json;
    assert.equal(typeof j.version, 'string');
    assert.equal(typeof j.uptime_seconds, 'number');
    assert.equal(j.node_id, 'node-a');
    assert.equal(j.draining, false);
    const file = await readFile(gw.configFile);
    assert.equal(j.config_digest, sha256(file));
    assert.equal(j.sessions.websocket, 2);
    assert.equal(j.sessions.bosh, 1);
    assert.equal(j.sessions.by_state.websocket.bound, 2);
    assert.equal(j.sessions.by_state.bosh.bound, 1);
    assert.equal(j.sse_viewers, 0);
    assert.ok(j.bosh_held_requests >= 0);

    // A changed file: the digest is the new file's.
    const cfg = JSON.parse(file.toString());
    cfg.log.level = 'info';
    const changed = `${JSON.stringify(cfg, null, 2)}\n`;
    await writeFile(gw.configFile, changed);
    process.kill(gw.pid, 'SIGHUP');
    await gw.waitForLog(/SIGHUP: configuration reloaded/);
    const after1 = (await api(gw, '/status')).json;
    assert.equal(after1.config_digest, sha256(changed));
    assert.notEqual(after1.config_digest, j.config_digest);

    // A refused file changes nothing, the digest included.
    await writeFile(gw.configFile, '{"log": {"level": "loud"}}\n');
    process.kill(gw.pid, 'SIGHUP');
    await gw.waitForLog(/SIGHUP: configuration not reloaded/);
    assert.equal((await api(gw, '/status')).json.config_digest, after1.config_digest);
    cfg.log.level = 'debug';
    await writeFile(gw.configFile, `${JSON.stringify(cfg, null, 2)}\n`);
  });

  it('/api/sessions: pages of 2 see every session once; filters by JID and address', T, async () => {
    const extra = [];
    for (let i = 0; i < 5; i++) extra.push(await rawBosh(gw));
    try {
      const all = (await api(gw, '/api/sessions')).json;
      assert.equal(all.total, 8, JSON.stringify(all));
      assert.equal(all.count, 8);
      assert.equal(all.next, null);
      const seen = [];
      let offset = 0;
      let pages = 0;
      for (;;) {
        const p = (await api(gw, `/api/sessions?limit=2&offset=${offset}`)).json;
        assert.equal(p.total, 8);
        assert.equal(p.offset, offset);
        assert.ok(p.sessions.length <= 2);
        for (const e of p.sessions) {
          assert.match(e.id, /^[0-9a-f]{16}$/);
          assert.equal(e.sid_hash, e.id);
          seen.push(e.id);
        }
        pages++;
        if (p.next === null) break;
        assert.equal(p.next, offset + 2);
        offset = p.next;
      }
      assert.equal(pages, 4);
      assert.equal(new Set(seen).size, 8, `every session once: ${seen}`);
      assert.deepEqual(new Set(seen), new Set(all.sessions.map((e) => e.id)));
      for (const b of extra) assert.ok(seen.includes(sidHash(b.sid)));
      assert.ok(!JSON.stringify(all).includes(extra[0].sid), 'the raw sid is never shown');

      const bare = (await api(gw, '/api/sessions?jid=alice@localhost')).json;
      assert.equal(bare.total, 1);
      assert.equal(bare.sessions[0].jid, clients.ws1.jid);
      const full = (await api(gw, `/api/sessions?jid=${encodeURIComponent(clients.bosh.jid)}`)).json;
      assert.equal(full.total, 1);
      assert.equal(full.sessions[0].transport, 'bosh');
      assert.equal((await api(gw, '/api/sessions?jid=alice@localhost/nope')).json.total, 0);
      assert.equal((await api(gw, '/api/sessions?jid=alic@localhost')).json.total, 0);
      const here = (await api(gw, '/api/sessions?address=127.0.0.1&limit=3')).json;
      assert.equal(here.total, 8);
      assert.equal(here.sessions.length, 3);
      assert.equal(here.next, 3);
      const none = (await api(gw, '/api/sessions?address=192.0.2.1')).json;
      assert.equal(none.total, 0);
      assert.deepEqual(none.sessions, []);
      for (const q of ['offset=-1', 'offset=x', 'jid=', 'address=', 'limit=0', `address=${'1'.repeat(65)}`]) {
        const r = await api(gw, `/api/sessions?${q}`);
        assert.equal(r.status, 400, q);
        assert.equal(r.json.condition, 'bad-request');
      }
    } finally {
      for (const b of extra) await b.post('', "type='terminate'").catch(() => {});
    }
  });

  it('DELETE /api/sessions/<id>: a WebSocket client gets the stream error asked, the others nothing', T, async () => {
    const { prosody } = stack;
    const victim = await rawLogin(gw.wsUrl, { username: 'alice', password: prosody.users.alice, resource: 'victim' });
    const list = (await api(gw, `/api/sessions?jid=${encodeURIComponent(victim.jid)}`)).json;
    assert.equal(list.total, 1);
    const { id } = list.sessions[0];
    const r = await api(gw, `/api/sessions/${id}?condition=system-shutdown`, { method: 'DELETE' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { id, transport: 'websocket', ended: true, condition: 'system-shutdown' });
    await expectStreamError(victim.probe, 'system-shutdown');
    const line = await gw.waitForLog(/session ended by the admin port: system-shutdown/);
    assert.match(line, / addr=127\.0\.0\.1 /);
    assert.equal((await api(gw, `/api/sessions?jid=${encodeURIComponent(victim.jid)}`)).json.total, 0);
    assert.equal((await api(gw, `/api/sessions/${id}`, { method: 'DELETE' })).status, 404);

    // The others still work.
    for (const c of [clients.ws1, clients.ws2, clients.bosh]) {
      const pong = await c.iq('<iq type="get" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>');
      assert.equal(pong.type, 'result');
    }
    assert.equal((await api(gw, '/status')).json.sessions.open, 3);
  });

  it('DELETE /api/sessions/<id>: a BOSH client gets the terminate condition; policy-violation by default', T, async () => {
    const b = await rawBosh(gw);
    const held = b.post(); // held for up to wait=10 s
    await sleep(200);
    const r = await api(gw, `/api/sessions/${sidHash(b.sid)}`, { method: 'DELETE' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.condition, 'policy-violation');
    assert.equal(r.json.transport, 'bosh');
    const answer = await held;
    assert.equal(answer.status, 200);
    assert.match(answer.text, /type=['"]terminate['"]/);
    assert.match(answer.text, /condition=['"]policy-violation['"]/);
    // The session is gone: the next request is refused as for an unknown sid.
    const next = await b.post();
    assert.match(`${next.status} ${next.text}`, /item-not-found|404|terminate/);
  });

  it('DELETE /api/sessions/<id>: 404 unknown id, 400 bad condition, 405 other methods', T, async () => {
    let r = await api(gw, '/api/sessions/0000000000000000', { method: 'DELETE' });
    assert.equal(r.status, 404);
    assert.equal(r.json.condition, 'not-found');
    r = await api(gw, '/api/sessions/not-an-id', { method: 'DELETE' });
    assert.equal(r.status, 404);
    const { id } = (await api(gw, '/api/sessions?jid=bob@localhost')).json.sessions[0];
    for (const c of ['item-not-found', 'see-other-uri', 'nonsense', '']) {
      r = await api(gw, `/api/sessions/${id}?condition=${c}`, { method: 'DELETE' });
      assert.equal(r.status, 400, c);
      assert.equal(r.json.condition, 'bad-request');
    }
    r = await api(gw, `/api/sessions/${id}`);
    assert.equal(r.status, 405);
    assert.equal(r.headers.get('allow'), 'DELETE');
    // bob is untouched by all of that.
    const pong = await clients.ws2.iq('<iq type="get" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>');
    assert.equal(pong.type, 'result');
  });

  it('log lines of a session carry its client address', T, async () => {
    const lines = gw.logs().filter((l) => / sid=(?!- )/.test(l) && l.includes(`jid=${clients.ws1.jid}`));
    assert.ok(lines.length > 0, 'lines for alice');
    for (const l of lines) assert.match(l, / addr=127\.0\.0\.1 /, l);
    for (const l of gw.logs().filter((x) => / sid=- /.test(x))) assert.match(l, / addr=- /, l);
    // Every session here came from 127.0.0.1, and every line naming one says so, the transports'
    // last lines about a session that just ended included.
    const sessionLines = gw.logs().filter((l) => / sid=(?!- )/.test(l));
    assert.ok(sessionLines.some((l) => /BOSH session ended|session ended/.test(l)));
    for (const l of sessionLines) assert.match(l, / addr=127\.0\.0\.1 /, l);
  });
});

describe('admin API under a token', { timeout: 60000 }, () => {
  it('DELETE /api/sessions/<id> is 401 without the token or with a wrong one', T, async () => {
    const g = await startGateway({ upstream: '127.0.0.1:1', upstreamTls: 'off', config: { admin: { token: 's3cret-token' } } });
    try {
      const path = '/api/sessions/0123456789abcdef';
      let r = await api(g, path, { method: 'DELETE' });
      assert.equal(r.status, 401);
      assert.equal(r.json.condition, 'not-authorized');
      r = await api(g, path, { method: 'DELETE', token: 'wrong' });
      assert.equal(r.status, 401);
      assert.equal(r.json.condition, 'invalid-token');
      r = await api(g, path, { method: 'DELETE', token: 's3cret-token' });
      assert.equal(r.status, 404);
      r = await api(g, '/api/sessions?limit=2', { token: 's3cret-token' });
      assert.equal(r.status, 200);
      assert.equal(r.json.total, 0);
      assert.equal((await api(g, '/status')).json.node_id, null);
    } finally {
      const problem = await stopGatewayChecked(g);
      if (problem) assert.fail(problem);
    }
  });
});
