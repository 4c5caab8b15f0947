// POST /demo/publish on the public port (live.demo_publish, the demo page's publish form) against
// the real Prosody's pubsub component: off it is not there (404); on, an Atom entry from
// {"node", "title", "summary", "link"} reaches an SSE viewer of /events and the answer is
// /api/publish's 200 {"id"}; a node outside live.nodes is 404 and nothing is sent; a bad Origin
// 403, a wrong content type 415, a big body 413, bad fields 400; CORS and the preflight for an
// allowed origin; the per-address token bucket (429); a client that goes away while its publish
// waits; and --check-config refusing the key off loopback.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startStack } from './lib/stack.mjs';
import { startGateway, runGateway, baseConfig, mergeConfig, stopGatewayChecked } from './lib/gateway.mjs';
import { login, sleep } from './lib/clients.mjs';
import { request, openStream } from './lib/http.mjs';

const T = { timeout: 60000 };
const PUBSUB_NS = 'http://jabber.org/protocol/pubsub';
const OWNER_NS = 'http://jabber.org/protocol/pubsub#owner';
const NODE = 'princely_musings';
const PS = 'pubsub.localhost';

describe('demo publish (POST /demo/publish)', { timeout: 300000 }, () => {
  let stack;
  let dir;
  let owner;
  let viewer;

  // A request from an allowed origin (the gateway's own) unless told otherwise.
  const post = (body, { type = 'application/json', origin, from, url } = {}) => {
    const headers = { Origin: origin ?? `http://localhost:${stack.gw.port}` };
    if (type !== null) headers['Content-Type'] = type;
    if (from) headers['X-Forwarded-For'] = from;
    if (origin === null) delete headers.Origin;
    return request(url ?? `${stack.gw.url}/demo/publish`, {
      headers,
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  };
  const iq = async (text) => {
    const r = await owner.iq(text);
    assert.equal(r.type, 'result', r.xml);
    return r;
  };
  const itemIds = async (node) => {
    const r = await iq(`<iq type="get" to="${PS}"><pubsub xmlns="${PUBSUB_NS}"><items node="${node}"/></pubsub></iq>`);
    return [...r.xml.matchAll(/<item [^>]*id="([^"]+)"/g)].map((m) => m[1]);
  };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-demo-'));
    const passFile = path.join(dir, 'hub.pass');
    await writeFile(passFile, 'hub-demo-pw-7d2a\n', { mode: 0o600 });
    stack = await startStack({
      prosody: { users: { hamlet: 'hamlet-pw', hub: 'hub-demo-pw-7d2a' }, admins: ['hamlet@localhost'] },
      gateway: {
        config: {
          live: { jid: 'hub@localhost', password_file: passFile, nodes: [`${PS}/${NODE}`], heartbeat: 1, demo_publish: true },
        },
      },
    });
    await stack.gw.waitForLog(/hub: online/, 15000);
    owner = await login('xmpp.js', { service: stack.gw.wsUrl, username: 'hamlet', password: 'hamlet-pw', resource: 'owner' });
    for (const node of [NODE, 'not-listed'])
      await iq(`<iq type="set" to="${PS}"><pubsub xmlns="${PUBSUB_NS}"><create node="${node}"/></pubsub></iq>`);
    for (const node of [NODE, 'not-listed'])
      await iq(`<iq type="set" to="${PS}"><pubsub xmlns="${OWNER_NS}"><affiliations node="${node}">`
        + '<affiliation jid="hub@localhost" affiliation="publisher"/></affiliations></pubsub></iq>');
    viewer = await openStream(`${stack.gw.url}/events/${PS}/${NODE}?replay=0`);
    assert.equal(viewer.status, 200);
    await stack.gw.waitForLog(/hub: subscribing to pubsub\.localhost\/princely_musings/);
    await sleep(300);
  });

  after(async () => {
    viewer?.close();
    await owner?.stop().catch(() => {});
    const problem = await stack?.stop();
    await rm(dir, { recursive: true, force: true });
    if (problem) assert.fail(problem);
  });

  it('is not there when live.demo_publish is off: 404 JSON, as any unknown path', T, async () => {
    const gw = await startGateway({ prosody: stack.prosody });
    try {
      const r = await request(`${gw.url}/demo/publish`, {
        headers: { 'Content-Type': 'application/json', Origin: `http://localhost:${gw.port}` },
        body: JSON.stringify({ node: `${PS}/${NODE}`, title: 'off' }),
      });
      assert.equal(r.status, 404, r.text);
      assert.equal(r.json.condition, 'item-not-found');
      assert.equal(r.headers['cache-control'], 'no-store');
    } finally {
      const problem = await stopGatewayChecked(gw);
      if (problem) assert.fail(problem);
    }
    assert.deepEqual(viewer.items(), []);
  });

  it('publishes an Atom entry that an SSE viewer of the node receives, and answers 200 {"id"}', T, async () => {
    const t0 = Date.now();
    const r = await post({ node: `${PS}/${NODE}`, title: 'Soliloquy', summary: 'To be, or not to be', link: 'https://denmark.lit/soliloquy' });
    assert.equal(r.status, 200, r.text);
    assert.match(r.json.id, /^[0-9a-f]{32}$/);
    assert.deepEqual(Object.keys(r.json), ['id']);
    assert.equal(r.headers['cache-control'], 'no-store');
    assert.equal(r.headers['access-control-allow-origin'], `http://localhost:${stack.gw.port}`);
    await viewer.waitFor(() => viewer.items().some((e) => e.id === r.json.id), 5000, 'the item');
    const ev = viewer.items().find((e) => e.id === r.json.id);
    assert.equal(ev.json.title, 'Soliloquy');
    assert.equal(ev.json.summary, 'To be, or not to be');
    assert.equal(ev.json.link, 'https://denmark.lit/soliloquy');
    assert.equal(ev.json.node, NODE);
    assert.equal(ev.json.service, PS);
    console.log(`# publish to viewer: ${Date.now() - t0} ms`);
    assert.ok((await itemIds(NODE)).includes(r.json.id));
    // Empty summary and link, as the demo form sends them, and a charset parameter.
    const r2 = await post({ node: `${PS}/${NODE}`, title: 'Plain', summary: '', link: '' }, { type: 'application/json; charset=utf-8' });
    assert.equal(r2.status, 200, r2.text);
    await viewer.waitFor(() => viewer.items().some((e) => e.id === r2.json.id), 5000, 'the second item');
  });

  it('answers 404 item-not-found for a node live.nodes does not allow, and sends nothing', T, async () => {
    const before = await itemIds('not-listed');
    const r = await post({ node: `${PS}/not-listed`, title: 'nope' });
    assert.equal(r.status, 404, r.text);
    assert.equal(r.json.condition, 'item-not-found');
    const r2 = await post({ node: `other.localhost/${NODE}`, title: 'nope' });
    assert.equal(r2.status, 404, r2.text);
    await sleep(300);
    assert.deepEqual(await itemIds('not-listed'), before);
  });

  it('refuses a bad Origin (403), a wrong content type (415), a body over 4 KiB (413) and bad fields (400)', T, async () => {
    const n = viewer.items().length;
    const item = { node: `${PS}/${NODE}`, title: 'refused' };
    let r = await post(item, { origin: 'http://evil.example' });
    assert.equal(r.status, 403, r.text);
    assert.equal(r.json.condition, 'forbidden');
    assert.equal(r.headers['access-control-allow-origin'], undefined);
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/jsonx', null]) {
      r = await post(item, { type });
      assert.equal(r.status, 415, `${type}: ${r.text}`);
      assert.equal(r.json.condition, 'unsupported-media-type');
    }
    r = await post({ ...item, summary: 'a'.repeat(4097) });
    assert.equal(r.status, 413, r.text);
    assert.equal(r.json.condition, 'payload-too-large');
    const bad = [
      ['{"node":', 'not a JSON object'],
      [{ node: NODE, title: 'no service' }, 'node'],
      [{ node: `${PS}/${NODE}` }, 'title'],
      [{ node: `${PS}/${NODE}`, title: 'T', link: 'javascript:alert(1)' }, 'link'],
      [{ node: `${PS}/${NODE}`, title: 'T', service: PS }, 'unknown field'],
      [{ node: `${PS}/${NODE}`, payload: '<x/>' }, 'unknown field'],
    ];
    for (const [body, word] of bad) {
      r = await post(body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.json.condition, 'bad-request');
      assert.ok(r.json.error.includes(word), `${JSON.stringify(body)}: ${r.json.error}`);
      assert.equal(r.headers['cache-control'], 'no-store');
    }
    r = await request(`${stack.gw.url}/demo/publish`, { method: 'GET' });
    assert.equal(r.status, 405);
    assert.match(r.headers.allow, /POST/);
    await sleep(300);
    assert.equal(viewer.items().length, n);
  });

  it('answers a preflight from an allowed origin, and none from another', T, async () => {
    let r = await request(`${stack.gw.url}/demo/publish`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://localhost:9', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
    });
    assert.equal(r.status, 204);
    assert.equal(r.headers['access-control-allow-origin'], 'http://localhost:9');
    assert.match(r.headers['access-control-allow-methods'], /POST/);
    assert.match(r.headers['access-control-allow-headers'], /Content-Type/i);
    r = await request(`${stack.gw.url}/demo/publish`, { method: 'OPTIONS', headers: { Origin: 'https://evil.example' } });
    assert.equal(r.status, 403);
  });

  it('holds each address to limits.per_address_rate and _burst (429 with Retry-After)', T, async () => {
    // Bodies that are refused after the token is spent: nothing reaches the node.
    const answers = [];
    for (let i = 0; i < 60; i++) answers.push(post({ node: `${PS}/${NODE}` }, { from: '192.0.2.7' }));
    const results = await Promise.all(answers);
    const codes = results.map((r) => r.status);
    const limited = codes.filter((c) => c === 429).length;
    assert.ok(limited >= 5, `429s: ${limited} of ${codes.join(',')}`);
    assert.ok(codes.every((c) => c === 429 || c === 400), codes.join(','));
    // (Tokens come back at per_address_rate a second: on a slow machine a later request may get
    // one again, so the answer checked is one of the batch's refusals.)
    const r = results.find((x) => x.status === 429);
    assert.equal(r.json.condition, 'policy-violation');
    assert.equal(r.headers['retry-after'], '1');
    // Another address is not held up.
    const other = await post({ node: `${PS}/${NODE}`, title: 'another address' }, { from: '192.0.2.8' });
    assert.equal(other.status, 200, other.text);
    assert.ok(stack.gw.logs().some((l) => /demo: publish from 192\.0\.2\.7 refused: limit address_rate/.test(l)));
  });

  it('survives a client that goes away while its publish waits (the answer is dropped)', T, async () => {
    const answered = () => stack.gw.logs().filter((l) => /demo: publish from 127\.0\.0\.1: 200 ok/.test(l)).length;
    const before = answered();
    process.kill(stack.prosody.pid, 'SIGSTOP');
    try {
      const body = JSON.stringify({ node: `${PS}/${NODE}`, title: 'nobody waits' });
      await new Promise((resolve) => {
        const req = http.request(`${stack.gw.url}/demo/publish`, {
          method: 'POST', agent: false, headers: { 'Content-Type': 'application/json', 'Content-Length': body.length, Origin: `http://localhost:${stack.gw.port}` },
        });
        req.on('error', () => resolve());
        req.on('close', () => resolve());
        req.end(body);
        setTimeout(() => req.destroy(), 300);
      });
      await sleep(300);
    } finally {
      process.kill(stack.prosody.pid, 'SIGCONT');
    }
    // The item is still published (the hub sent it), but nobody is told.
    await viewer.waitFor(() => viewer.items().some((e) => e.json.title === 'nobody waits'), 5000, 'the orphan item');
    await sleep(300);
    assert.equal(answered(), before);
    const r = await post({ node: `${PS}/${NODE}`, title: 'after' });
    assert.equal(r.status, 200, r.text);
    assert.equal(answered(), before + 1);
  });

  it('--check-config refuses live.demo_publish when listen is not a loopback address', T, async () => {
    const file = path.join(dir, 'open.json');
    const cfg = mergeConfig(baseConfig(), { listen: '0.0.0.0:5280', upstream: { host: '127.0.0.1' }, live: { demo_publish: true } });
    await writeFile(file, JSON.stringify(cfg));
    const r = await runGateway(['--check-config', file]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /key 'live\.demo_publish'/);
    assert.match(lines[0], /0\.0\.0\.0:5280/);
    await writeFile(file, JSON.stringify({ ...cfg, listen: '127.0.0.1:5280' }));
    const ok = await runGateway(['--check-config', file]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  });
});
