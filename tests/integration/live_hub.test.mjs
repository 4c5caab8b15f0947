// The live-updates hub against the real Prosody's pubsub component: GET /events/<service>/<node>
// streams items a test client publishes, replays from Last-Event-ID or ?last_event_id=, honours
// ?replay=0, refuses nodes outside live.nodes, sends retractions, deletions and heartbeats, keeps
// 200 viewers in order, never logs the hub's password, unsubscribes once the viewers are gone, and
// holds each client address to limits.per_address_sessions streams (429 past it, counted).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startStack } from './lib/stack.mjs';
import { startGateway } from './lib/gateway.mjs';
import { login, sleep } from './lib/clients.mjs';

const T = { timeout: 60000 };
const PUBSUB_NS = 'http://jabber.org/protocol/pubsub';
const OWNER_NS = 'http://jabber.org/protocol/pubsub#owner';
const ATOM_NS = 'http://www.w3.org/2005/Atom';
const HUB_PASSWORD = 'hub-Pa55-never-logged-7f3a';
const NODE = 'princely_musings';

// One Server-Sent Events stream read by hand (what EventSource does, without reconnecting).
function openStream(url, { headers = {}, localAddress } = {}) {
  return new Promise((resolve, reject) => {
    const events = [];
    const comments = [];
    const waiters = new Set();
    let ended = false;
    const check = () => {
      for (const w of waiters) if (w.test()) { waiters.delete(w); w.resolve(); }
    };
    const req = http.get(url, { headers, agent: false, localAddress }, (res) => {
      let buf = '';
      let body = '';
      res.setEncoding('utf8');
      const sse = res.statusCode === 200 && /^text\/event-stream/.test(res.headers['content-type'] ?? '');
      res.on('data', (chunk) => {
        if (!sse) { body += chunk; return; }
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = { event: 'message', data: [] };
          let isEvent = false;
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) { comments.push(line); continue; }
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
            isEvent = true;
            if (field === 'data') ev.data.push(value);
            else if (field === 'id') ev.id = value;
            else if (field === 'event') ev.event = value;
          }
          if (isEvent) {
            ev.data = ev.data.join('\n');
            try { ev.json = JSON.parse(ev.data); } catch { ev.json = undefined; }
            events.push(ev);
          }
        }
        check();
      });
      res.on('end', () => { ended = true; check(); });
      res.on('error', () => { ended = true; check(); });
      const s = {
        status: res.statusCode,
        headers: res.headers,
        events,
        comments,
        get ended() { return ended; },
        body: () => new Promise((r) => (ended ? r(body) : res.on('end', () => r(body)))),
        items: () => events.filter((e) => e.event === 'item'),
        waitFor(test, ms = 5000, what = 'events') {
          if (test()) return Promise.resolve();
          return new Promise((res2, rej) => {
            const w = { test, resolve: () => { clearTimeout(timer); res2(); } };
            const timer = setTimeout(() => {
              waiters.delete(w);
              rej(new Error(`timed out after ${ms} ms waiting for ${what}; got ${JSON.stringify(events.map((e) => [e.event, e.id]))}`));
            }, ms);
            waiters.add(w);
          });
        },
        close() { req.destroy(); res.destroy(); },
      };
      resolve(s);
    });
    req.on('error', reject);
  });
}

describe('live-updates hub (/events)', { timeout: 300000 }, () => {
  let stack;
  let dir;
  let pub;
  const ps = 'pubsub.localhost';
  const published = {}; // node -> item ids in publication order
  let live; // the gateway's live section

  const url = (node, query = '') => `${stack.gw.url}/events/${ps}/${node}${query}`;

  const iq = async (text) => {
    const r = await pub.iq(text);
    assert.equal(r.type, 'result', r.xml);
    return r;
  };
  const createNode = (node) => iq(`<iq type="set" to="${ps}"><pubsub xmlns="${PUBSUB_NS}"><create node="${node}"/></pubsub></iq>`);
  const publishRaw = async (node, id, payload) => {
    await iq(`<iq type="set" to="${ps}"><pubsub xmlns="${PUBSUB_NS}"><publish node="${node}"><item id="${id}">${payload}</item></publish></pubsub></iq>`);
    (published[node] ??= []).push(id);
  };
  const atom = (title, extra = '') => `<entry xmlns="${ATOM_NS}"><title>${title}</title><summary>About ${title}</summary>`
    + `<link rel="self" href="https://denmark.lit/self/${title}"/><link rel="alternate" href="https://denmark.lit/${title}"/>`
    + `<id>tag:denmark.lit,2003:entry-${title}</id><published>2003-12-13T18:30:02Z</published><updated>2003-12-13T18:30:03Z</updated>${extra}</entry>`;
  const publish = (node, id, title = id) => publishRaw(node, id, atom(title));
  const subscriptions = async (node) => {
    const r = await iq(`<iq type="get" to="${ps}"><pubsub xmlns="${OWNER_NS}"><subscriptions node="${node}"/></pubsub></iq>`);
    return [...r.xml.matchAll(/<subscription [^>]*jid="([^"]+)"/g)].map((m) => m[1]);
  };
  // The cache as the hub holds it: the last 20 ids published to a node.
  const cacheOf = (node) => (published[node] ?? []).slice(-20);

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-live-'));
    const passFile = path.join(dir, 'hub.pass');
    await writeFile(passFile, `${HUB_PASSWORD}\n`, { mode: 0o600 });
    live = {
      jid: 'hub@localhost',
      password_file: passFile,
      nodes: [`${ps}/${NODE}`, `${ps}/news-*`],
      replay: 20,
      heartbeat: 1,
      linger: 1,
    };
    stack = await startStack({
      prosody: { users: { hamlet: 'hamlet-pw', hub: HUB_PASSWORD } },
      gateway: { config: { live } },
    });
    await stack.gw.waitForLog(/hub: online/, 15000);
    pub = await login('xmpp.js', { service: stack.gw.wsUrl, username: 'hamlet', password: 'hamlet-pw', resource: 'blogbot' });
    await createNode(NODE);
  });

  after(async () => {
    await pub?.stop().catch(() => {});
    const problem = await stack?.stop();
    await rm(dir, { recursive: true, force: true });
    if (problem) assert.fail(problem);
  });

  it('refuses a node outside live.nodes with 404 and a JSON error', T, async () => {
    await createNode('secret');
    for (const p of ['/events/pubsub.localhost/secret', '/events/other.localhost/princely_musings', '/events/pubsub.localhost/', '/events/']) {
      const s = await openStream(`${stack.gw.url}${p}`);
      assert.equal(s.status, 404, p);
      assert.match(s.headers['content-type'], /^application\/json/);
      const body = JSON.parse(await s.body());
      assert.equal(body.condition, 'item-not-found');
      assert.equal(typeof body.error, 'string');
    }
  });

  it('streams an Atom item published by a client within 1 s, with the exact fields', T, async () => {
    const s = await openStream(url(NODE), { headers: { Origin: 'http://localhost:8080' } });
    try {
      assert.equal(s.status, 200);
      assert.match(s.headers['content-type'], /^text\/event-stream/);
      assert.equal(s.headers['cache-control'], 'no-store');
      assert.equal(s.headers['access-control-allow-origin'], 'http://localhost:8080');
      await stack.gw.waitForLog(/hub: subscribing to pubsub\.localhost\/princely_musings/);
      await sleep(300); // subscribed and the (empty) cache fetched
      const t0 = Date.now();
      await publish(NODE, 'soliloquy', 'Soliloquy');
      await s.waitFor(() => s.items().some((e) => e.id === 'soliloquy'), 1000, 'the item within 1 s');
      assert.ok(Date.now() - t0 <= 1000);
      const ev = s.items().find((e) => e.id === 'soliloquy');
      assert.deepEqual(ev.json, {
        id: 'soliloquy',
        node: NODE,
        service: ps,
        published: '2003-12-13T18:30:02Z',
        title: 'Soliloquy',
        summary: 'About Soliloquy',
        link: 'https://denmark.lit/Soliloquy',
        entry_id: 'tag:denmark.lit,2003:entry-Soliloquy',
        updated: '2003-12-13T18:30:03Z',
      });
    } finally {
      s.close();
    }
  });

  it('gives other payloads as xml, with published set to the time the hub received them', T, async () => {
    const s = await openStream(url(NODE, '?replay=0'));
    try {
      await sleep(200);
      const before = Date.now() - 1000;
      await publishRaw(NODE, 'plain-1', '<note xmlns="urn:example:note">to be &amp; not</note>');
      await s.waitFor(() => s.items().some((e) => e.id === 'plain-1'));
      const ev = s.items().find((e) => e.id === 'plain-1');
      assert.deepEqual(Object.keys(ev.json).sort(), ['id', 'node', 'published', 'service', 'xml']);
      // The payload as the server serialized it (Prosody quotes attributes with ').
      assert.equal(ev.json.xml.replace(/'/g, '"'), '<note xmlns="urn:example:note">to be &amp; not</note>');
      const t = Date.parse(ev.json.published);
      assert.ok(t >= before - 1000 && t <= Date.now() + 1000, ev.json.published);
    } finally {
      s.close();
    }
  });

  it('replays the cache: after Last-Event-ID, after ?last_event_id=, all for an unknown id', T, async () => {
    for (let i = 1; i <= 5; i++) await publish(NODE, `r${i}`);
    await sleep(200);
    const cache = cacheOf(NODE);
    const after = (id) => cache.slice(cache.indexOf(id) + 1);
    const cases = [
      [url(NODE), { 'Last-Event-ID': 'r2' }, after('r2')],
      [url(NODE, '?last_event_id=r3'), {}, after('r3')],
      [url(NODE, '?last_event_id=r5'), {}, []],
      [url(NODE, '?last_event_id=no-such-item'), {}, cache],
      [url(NODE), {}, cache],
    ];
    for (const [u, headers, want] of cases) {
      const s = await openStream(u, { headers });
      try {
        await s.waitFor(() => s.items().length >= want.length, 3000, `${want.length} replayed items`);
        await sleep(300);
        assert.deepEqual(s.items().map((e) => e.id), want, `${u} ${JSON.stringify(headers)}`);
      } finally {
        s.close();
      }
    }
  });

  it('gives none of the cache with ?replay=0, then live items', T, async () => {
    const s = await openStream(url(NODE, '?replay=0'));
    try {
      await sleep(400);
      assert.deepEqual(s.items(), []);
      await publish(NODE, 'fresh-1');
      await s.waitFor(() => s.items().length >= 1);
      assert.deepEqual(s.items().map((e) => e.id), ['fresh-1']);
    } finally {
      s.close();
    }
  });

  it('sends a retraction as event: retract, and leaves the item out of later replays', T, async () => {
    const s = await openStream(url(NODE, '?replay=0'));
    try {
      await sleep(200);
      await publish(NODE, 'doomed');
      await s.waitFor(() => s.items().some((e) => e.id === 'doomed'));
      await iq(`<iq type="set" to="${ps}"><pubsub xmlns="${PUBSUB_NS}"><retract node="${NODE}" notify="true"><item id="doomed"/></retract></pubsub></iq>`);
      published[NODE] = published[NODE].filter((id) => id !== 'doomed');
      await s.waitFor(() => s.events.some((e) => e.event === 'retract'));
      const ev = s.events.find((e) => e.event === 'retract');
      assert.deepEqual(ev.json, { id: 'doomed' });
    } finally {
      s.close();
    }
    const r = await openStream(url(NODE));
    try {
      const cache = cacheOf(NODE);
      await r.waitFor(() => r.items().length >= cache.length, 3000);
      assert.ok(!r.items().some((e) => e.id === 'doomed'));
    } finally {
      r.close();
    }
  });

  it('sends a heartbeat comment every live.heartbeat seconds', T, async () => {
    const s = await openStream(url(NODE, '?replay=0'));
    try {
      await s.waitFor(() => s.comments.length >= 2, 3500, 'two heartbeats');
      assert.equal(s.comments[0], ': hb');
    } finally {
      s.close();
    }
  });

  it('ends the stream with event: delete when the node is deleted', T, async () => {
    await createNode('news-doomed');
    const s = await openStream(url('news-doomed'));
    try {
      await stack.gw.waitForLog(/hub: subscribing to pubsub\.localhost\/news-doomed/);
      await sleep(300);
      await iq(`<iq type="set" to="${ps}"><pubsub xmlns="${OWNER_NS}"><delete node="news-doomed"/></pubsub></iq>`);
      await s.waitFor(() => s.ended, 5000, 'the end of the stream');
      const last = s.events.at(-1);
      assert.equal(last.event, 'delete');
      assert.deepEqual(last.json, { service: ps, node: 'news-doomed' });
    } finally {
      s.close();
    }
  });

  it('200 concurrent viewers each receive every one of 50 items in order', { timeout: 120000 }, async () => {
    const node = 'news-load';
    await createNode(node);
    const viewers = await Promise.all(Array.from({ length: 200 }, () => openStream(url(node))));
    try {
      for (const v of viewers) assert.equal(v.status, 200);
      await publish(node, 'warmup');
      await Promise.all(viewers.map((v) => v.waitFor(() => v.items().some((e) => e.id === 'warmup'), 10000, 'warmup')));
      const ids = Array.from({ length: 50 }, (_, i) => `load-${i}`);
      for (const id of ids) await publish(node, id);
      await Promise.all(viewers.map((v) => v.waitFor(() => v.items().length >= 51, 20000, '51 items')));
      for (const v of viewers) assert.deepEqual(v.items().map((e) => e.id), ['warmup', ...ids]);
    } finally {
      for (const v of viewers) v.close();
    }
  });

  it('unsubscribes live.linger seconds after the last viewer left', T, async () => {
    const node = 'news-linger';
    await createNode(node);
    const a = await openStream(url(node));
    const b = await openStream(url(node));
    await stack.gw.waitForLog(/hub: subscribing to pubsub\.localhost\/news-linger/);
    await sleep(300);
    assert.deepEqual(await subscriptions(node), ['hub@localhost']);
    a.close();
    await sleep(1500);
    assert.deepEqual(await subscriptions(node), ['hub@localhost'], 'one viewer is still there');
    b.close();
    await stack.gw.waitForLog(/hub: unsubscribed from pubsub\.localhost\/news-linger/, 5000);
    await sleep(300);
    assert.deepEqual(await subscriptions(node), []);
  });

  it('never writes the hub password to the log', T, async () => {
    assert.ok(stack.gw.logText().length > 0);
    assert.ok(!stack.gw.logText().includes(HUB_PASSWORD));
  });

  it('holds one client address to limits.per_address_sessions streams: 429 past it, counted, others served', T, async () => {
    const gw = await startGateway({ prosody: stack.prosody, config: { live, limits: { per_address_sessions: 3 } } });
    const open = [];
    const refusedCount = async () => {
      const text = await (await fetch(`${gw.adminUrl}/metrics`)).text();
      const m = text.match(/^xmppgw_refused_total\{limit="address_viewers"\} (\d+)$/m);
      assert.ok(m, 'xmppgw_refused_total{limit="address_viewers"} in /metrics');
      return Number(m[1]);
    };
    const events = `${gw.url}/events/${ps}/${NODE}`;
    try {
      await gw.waitForLog(/hub: online/, 15000);
      assert.equal(await refusedCount(), 0);
      for (let i = 0; i < 3; i++) open.push(await openStream(events, { localAddress: '127.0.0.2' }));
      for (const s of open) assert.equal(s.status, 200);
      // The fourth from the same address: 429 with a JSON error, Retry-After and the CORS headers.
      const refused = await openStream(events, { localAddress: '127.0.0.2', headers: { Origin: 'http://localhost:8080' } });
      assert.equal(refused.status, 429);
      assert.match(refused.headers['content-type'], /^application\/json/);
      assert.equal(refused.headers['retry-after'], '1');
      assert.equal(refused.headers['access-control-allow-origin'], 'http://localhost:8080');
      const body = JSON.parse(await refused.body());
      assert.equal(body.condition, 'policy-violation');
      assert.equal(typeof body.error, 'string');
      assert.equal(await refusedCount(), 1);
      await gw.waitForLog(/events: viewer from 127\.0\.0\.2 refused: limit address_viewers/, 2000);
      // Another address is served meanwhile, and gets the events.
      const other = await openStream(events, { localAddress: '127.0.0.3' });
      open.push(other);
      assert.equal(other.status, 200);
      // One of the three goes: its address may open one again (and only one).
      open.shift().close();
      let again;
      for (const t0 = Date.now(); Date.now() - t0 < 5000; await sleep(100)) {
        again = await openStream(events, { localAddress: '127.0.0.2' });
        if (again.status === 200) break;
        await again.body();
      }
      open.push(again);
      assert.equal(again.status, 200, 'a stream once one of the three closed');
      const fourth = await openStream(events, { localAddress: '127.0.0.2' });
      assert.equal(fourth.status, 429);
      await fourth.body();
      await publish(NODE, 'per-address');
      await Promise.all(open.slice(-3).map((s) => s.waitFor(() => s.items().some((e) => e.id === 'per-address'), 5000, 'the item')));
    } finally {
      for (const s of open) s.close();
      const code = await gw.stop();
      assert.equal(code, 0, 'the second gateway exits 0');
    }
  });

  it('answers 503 when live is not configured', T, async () => {
    const gw = await startGateway({ prosody: stack.prosody });
    try {
      const s = await openStream(`${gw.url}/events/${ps}/${NODE}`);
      assert.equal(s.status, 503);
      assert.equal(JSON.parse(await s.body()).condition, 'service-unavailable');
    } finally {
      await gw.stop();
    }
  });
});
