// The admin plane: /healthz, and /metrics in the Prometheus text format counting WebSocket sessions
// and stanzas once a real session has run through the gateway.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
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

  it('the admin port is not the public port: /metrics is not served publicly', T, async () => {
    const res = await fetch(`${stack.gw.url}/metrics`);
    assert.notEqual(res.status, 200);
    await res.arrayBuffer();
  });
});
