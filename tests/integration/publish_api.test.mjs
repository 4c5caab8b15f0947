// POST /api/publish on the admin port against the real Prosody's pubsub component: the token,
// bodies that are refused before anything is sent (bad JSON, missing fields, malformed payloads:
// nothing reaches the node), an Atom entry built from fields and a payload of one's own reaching
// an SSE viewer of /events, the upstream's refusals as HTTP statuses (forbidden on a node the
// hub's account may not publish to, item-not-found on a node that does not exist), a service that
// does not answer (504 after the deadline), a client that goes away while its publish waits, a
// gateway stopped while one waits (exit 0), and the counts in /metrics.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startStack } from './lib/stack.mjs';
import { login, sleep } from './lib/clients.mjs';
import { request, openStream } from './lib/http.mjs';

const T = { timeout: 60000 };
const PUBSUB_NS = 'http://jabber.org/protocol/pubsub';
const OWNER_NS = 'http://jabber.org/protocol/pubsub#owner';
const TOKEN = 'publish-api-token-5b1e';
const NODE = 'princely_musings';
const LOCKED = 'news-locked'; // in live.nodes, but the hub's account is no publisher there
const PS = 'pubsub.localhost';

describe('publish API (POST /api/publish)', { timeout: 300000 }, () => {
  let stack;
  let dir;
  let owner;
  let viewer;

  const publish = (body, { token = TOKEN, type = 'application/json' } = {}) => {
    const headers = { 'Content-Type': type };
    if (token !== null) headers.Authorization = `Bearer ${token}`;
    return request(`${stack.gw.adminUrl}/api/publish`, {
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
  const metric = async (outcome) => {
    const r = await request(`${stack.gw.adminUrl}/metrics`, { method: 'GET' });
    const m = r.text.match(new RegExp(`^xmppgw_publish_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm'));
    assert.ok(m, `no xmppgw_publish_total{outcome="${outcome}"} in /metrics`);
    return Number(m[1]);
  };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-publish-'));
    const passFile = path.join(dir, 'hub.pass');
    await writeFile(passFile, 'hub-publish-pw-29c4\n', { mode: 0o600 });
    stack = await startStack({
      // Only hamlet is an admin: the hub's account publishes where an owner made it a publisher.
      prosody: { users: { hamlet: 'hamlet-pw', hub: 'hub-publish-pw-29c4' }, admins: ['hamlet@localhost'] },
      gateway: {
        config: {
          admin: { token: TOKEN },
          live: { jid: 'hub@localhost', password_file: passFile, nodes: [`${PS}/${NODE}`, `${PS}/news-*`], heartbeat: 1 },
        },
      },
    });
    await stack.gw.waitForLog(/hub: online/, 15000);
    owner = await login('xmpp.js', { service: stack.gw.wsUrl, username: 'hamlet', password: 'hamlet-pw', resource: 'owner' });
    for (const node of [NODE, LOCKED])
      await iq(`<iq type="set" to="${PS}"><pubsub xmlns="${PUBSUB_NS}"><create node="${node}"/></pubsub></iq>`);
    await iq(`<iq type="set" to="${PS}"><pubsub xmlns="${OWNER_NS}"><affiliations node="${NODE}">`
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

  it('needs the bearer token: none or a wrong one is 401', T, async () => {
    const item = { service: PS, node: NODE, title: 'x' };
    let r = await publish(item, { token: null });
    assert.equal(r.status, 401);
    assert.equal(r.json.condition, 'not-authorized');
    assert.match(r.headers['www-authenticate'], /^Bearer /);
    r = await publish(item, { token: 'wrong' });
    assert.equal(r.status, 401);
    assert.equal(r.json.condition, 'invalid-token');
  });

  it('refuses bad bodies with 400, 413 or 415 and sends nothing upstream', T, async () => {
    const before = await itemIds(NODE);
    const invalidBefore = await metric('invalid');
    const bad = [
      ['{"service":', 'not a JSON object'],
      ['[1,2]', 'not a JSON object'],
      [{ node: NODE, title: 'no service' }, 'service'],
      [{ service: PS, title: 'no node' }, 'node'],
      [{ service: PS, node: NODE }, 'title'],
      [{ service: PS, node: NODE, title: '' }, 'title'],
      [{ service: PS, node: NODE, title: 'T', link: 'javascript:alert(1)' }, 'link'],
      [{ service: PS, node: NODE, title: 'T', colour: 'red' }, 'unknown field'],
      [{ service: PS, node: NODE, payload: '<x>' }, 'payload'],
      [{ service: PS, node: NODE, payload: '<x/><y/>' }, 'payload'],
      [{ service: PS, node: NODE, payload: 'plain text' }, 'payload'],
      [{ service: PS, node: NODE, payload: '<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>' }, 'payload'],
      [{ service: PS, node: NODE, payload: '<?xml version="1.0"?><x/>' }, 'payload'],
      [{ service: PS, node: NODE, payload: '<x><!-- no --></x>' }, 'payload'],
      [{ service: PS, node: NODE, payload: '</item></publish></pubsub></iq><message to="bob@localhost"><body>hi</body></message><iq><pubsub><publish><item>' }, 'payload'],
    ];
    for (const [body, word] of bad) {
      const r = await publish(body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.json.condition, 'bad-request');
      assert.ok(r.json.error.includes(word), `${JSON.stringify(body)}: ${r.json.error}`);
      assert.equal(r.headers['cache-control'], 'no-store');
    }
    let r = await publish({ service: PS, node: NODE, title: 'T' }, { type: 'text/plain' });
    assert.equal(r.status, 415);
    assert.equal(r.json.condition, 'unsupported-media-type');
    r = await publish({ service: PS, node: NODE, payload: `<x>${'a'.repeat(70000)}</x>` });
    assert.equal(r.status, 413);
    assert.equal(r.json.condition, 'payload-too-large');
    r = await request(`${stack.gw.adminUrl}/api/publish`, { method: 'GET', headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(r.status, 405);
    assert.equal(r.headers.allow, 'POST');
    await sleep(300);
    assert.deepEqual(await itemIds(NODE), before);
    assert.deepEqual(viewer.items(), []);
    assert.equal(await metric('invalid'), invalidBefore + bad.length);
  });

  it('publishes an Atom entry built from fields; a viewer gets it with title, summary, link, published', T, async () => {
    const t0 = Date.now();
    const r = await publish({
      service: PS,
      node: NODE,
      title: 'Soliloquy',
      summary: 'To be, or not to be: that is the question',
      link: 'http://denmark.lit/2003/12/13/atom03',
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.headers['cache-control'], 'no-store');
    assert.deepEqual(Object.keys(r.json), ['id']);
    const { id } = r.json;
    assert.match(id, /^[0-9a-f]{32}$/);
    await viewer.waitFor(() => viewer.items().some((e) => e.id === id), 5000, 'the published item');
    const ev = viewer.items().find((e) => e.id === id).json;
    assert.equal(ev.title, 'Soliloquy');
    assert.equal(ev.summary, 'To be, or not to be: that is the question');
    assert.equal(ev.link, 'http://denmark.lit/2003/12/13/atom03');
    assert.equal(ev.node, NODE);
    assert.equal(ev.service, PS);
    assert.equal(ev.entry_id, `xmpp:${PS}?;node=${NODE};item=${id}`);
    assert.equal(ev.updated, ev.published);
    const published = Date.parse(ev.published);
    assert.ok(published >= Math.floor(t0 / 1000) * 1000 - 1000 && published <= Date.now() + 1000, ev.published);
    assert.ok((await itemIds(NODE)).includes(id));
  });

  it('publishes a payload of its own under the id given, and text that needs escaping', T, async () => {
    let r = await publish({ service: PS, node: NODE, id: 'raw-1', payload: '<status xmlns="urn:example:status" level="2">all <b>fine</b> &amp; well</status>' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { id: 'raw-1' });
    await viewer.waitFor(() => viewer.items().some((e) => e.id === 'raw-1'), 5000, 'the raw item');
    const ev = viewer.items().find((e) => e.id === 'raw-1').json;
    // As the service stored it: Prosody writes the attributes in an order of its own.
    assert.match(ev.xml, /^<status [^>]*>all <b>fine<\/b> &amp; well<\/status>$/);
    assert.match(ev.xml, /^<status [^>]*xmlns=["']urn:example:status["']/);
    assert.match(ev.xml, /^<status [^>]*level=["']2["']/);

    r = await publish({ service: PS, node: NODE, id: 'esc-1', title: '<b>"Tags" & \'quotes\'</b>', summary: 'line 1\nline 2', link: 'https://denmark.lit/?a=1&b=<2>' });
    assert.equal(r.status, 200, r.text);
    await viewer.waitFor(() => viewer.items().some((e) => e.id === 'esc-1'), 5000, 'the escaped item');
    const e2 = viewer.items().find((e) => e.id === 'esc-1').json;
    assert.equal(e2.title, '<b>"Tags" & \'quotes\'</b>');
    assert.equal(e2.summary, 'line 1\nline 2');
    assert.equal(e2.link, 'https://denmark.lit/?a=1&b=<2>');
    // Chunked bodies are read too.
    r = await new Promise((resolve, reject) => {
      const req = http.request(`${stack.gw.adminUrl}/api/publish`, {
        method: 'POST',
        agent: false,
        headers: { 'Content-Type': 'application/json; charset=utf-8', Authorization: `Bearer ${TOKEN}`, 'Transfer-Encoding': 'chunked' },
      }, (res) => {
        let text = '';
        res.on('data', (d) => { text += d; });
        res.on('end', () => resolve({ status: res.statusCode, json: JSON.parse(text) }));
      });
      req.on('error', reject);
      req.write(`{"service":"${PS}","node":"${NODE}",`);
      setTimeout(() => { req.write('"id":"chunked-1","title":"In pieces"}'); req.end(); }, 100);
    });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { id: 'chunked-1' });
  });

  it('answers the service\'s refusals: forbidden 403 on a node it may not publish to or that does not exist', T, async () => {
    const refusedBefore = await metric('refused');
    let r = await publish({ service: PS, node: LOCKED, title: 'not mine' });
    assert.equal(r.status, 403, r.text);
    assert.equal(r.json.condition, 'forbidden');
    assert.equal(typeof r.json.error, 'string');
    assert.deepEqual(await itemIds(LOCKED), []);
    // No such node: Prosody checks the right to publish first, and an account that is neither
    // an admin nor affiliated has none on a node that does not exist (item-not-found is what an
    // admin gets: see the second suite).
    r = await publish({ service: PS, node: 'no-such-node', title: 'nowhere' });
    assert.equal(r.status, 403, r.text);
    assert.equal(r.json.condition, 'forbidden');
    // A node outside live.nodes is published to just the same: publishing is the operator's act.
    await iq(`<iq type="set" to="${PS}"><pubsub xmlns="${PUBSUB_NS}"><create node="outside"/></pubsub></iq>`);
    await iq(`<iq type="set" to="${PS}"><pubsub xmlns="${OWNER_NS}"><affiliations node="outside">`
      + '<affiliation jid="hub@localhost" affiliation="publisher"/></affiliations></pubsub></iq>');
    r = await publish({ service: PS, node: 'outside', id: 'o-1', title: 'outside the allowlist' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(await itemIds('outside'), ['o-1']);
    assert.equal(await metric('refused'), refusedBefore + 2);
    assert.ok(stack.gw.logs().some((l) => /hub: publish to pubsub\.localhost\/news-locked: refused forbidden/.test(l)));
  });

  it('answers a service that does not exist with what the server says (not-allowed, 405)', T, async () => {
    // Prosody without s2s refuses a remote domain with not-allowed and a text saying why.
    const r = await publish({ service: 'nowhere.localhost', node: NODE, title: 'x' });
    assert.equal(r.status, 405, r.text);
    assert.equal(r.headers.allow, 'POST');
    assert.equal(r.json.condition, 'not-allowed');
    assert.equal(typeof r.json.text, 'string');
  });

  it('answers 504 when the service does not answer within 10 s, and survives a client that went away', { timeout: 60000 }, async () => {
    const timeoutsBefore = await metric('timeout');
    process.kill(stack.prosody.pid, 'SIGSTOP');
    try {
      // One client gives up after 200 ms: its connection closes while the publish waits.
      const gone = new Promise((resolve) => {
        const req = http.request(`${stack.gw.adminUrl}/api/publish`, {
          method: 'POST', agent: false, headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${TOKEN}` },
        });
        req.on('error', () => resolve());
        req.on('close', () => resolve());
        req.end(JSON.stringify({ service: PS, node: NODE, id: 'gone-1', title: 'nobody waits' }));
        setTimeout(() => req.destroy(), 200);
      });
      const t0 = Date.now();
      const r = await publish({ service: PS, node: NODE, id: 'late-1', title: 'too late' });
      const took = Date.now() - t0;
      await gone;
      assert.equal(r.status, 504, r.text);
      assert.equal(r.json.condition, 'remote-server-timeout');
      assert.ok(took >= 9000 && took <= 13000, `answered after ${took} ms`);
      // The admin port still serves, at once.
      const h = await request(`${stack.gw.adminUrl}/healthz`, { method: 'GET' });
      assert.equal(h.status, 200);
    } finally {
      process.kill(stack.prosody.pid, 'SIGCONT');
    }
    assert.equal(await metric('timeout'), timeoutsBefore + 2);
    // The late answers are dropped; publishing works again.
    await sleep(500);
    const r = await publish({ service: PS, node: NODE, id: 'after-1', title: 'after' });
    assert.equal(r.status, 200, r.text);
  });

  it('counts the answers by outcome in /metrics', T, async () => {
    assert.ok(await metric('ok') >= 5);
    assert.equal(await metric('down'), 0);
    assert.equal(await metric('lost'), 0);
  });

  it('exits 0 on SIGTERM while a publish waits for its answer', { timeout: 60000 }, async () => {
    process.kill(stack.prosody.pid, 'SIGSTOP');
    let answered;
    try {
      const pending = publish({ service: PS, node: NODE, id: 'at-exit', title: 'at exit' }).then(
        (r) => { answered = r.status; }, () => { answered = 'closed'; });
      await sleep(500);
      const code = await stack.gw.stop();
      await pending;
      assert.equal(code, 0, stack.gw.logs().slice(-40).join('\n'));
      assert.ok(answered === 'closed' || answered >= 500, `answered ${answered}`);
    } finally {
      process.kill(stack.prosody.pid, 'SIGCONT');
    }
  });
});
