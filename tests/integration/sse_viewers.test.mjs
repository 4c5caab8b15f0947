// 200 concurrent Server-Sent Events viewers of one node against the real Prosody: each viewer is a
// bare TCP socket from one of 127.0.0.1..127.0.0.8 that sends its own HTTP/1.1 request and parses
// the answer by hand (status line, headers, chunked or not, then the event stream field by field).
// 50 items published through the admin port's POST /api/publish reach every viewer, each exactly
// once and in publication order, with an `id:` line that is the item's id; all 200 viewers cost the
// hub one upstream session and the node one subscription.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startStack } from './lib/stack.mjs';
import { loginXmppJs } from './lib/clients.mjs';
import { LOOPBACK_LIMITS } from '../fault/lib/raw.mjs';

const PS = 'pubsub.localhost';
const NODE = 'viewers-load';
const PUBSUB_NS = 'http://jabber.org/protocol/pubsub';
const OWNER_NS = 'http://jabber.org/protocol/pubsub#owner';
const HUB_PASSWORD = 'hub-viewers-Secret-77a1';
const TOKEN = 'viewers-admin-token-20c4';
const VIEWERS = 200;
const ITEMS = 50;
const SOURCES = 8; // 127.0.0.1 .. 127.0.0.8
const HEAD_MAX = 16384;

// One viewer: the request written by hand, the answer read by hand.
function openViewer(port, urlPath, localAddress) {
  return new Promise((resolve, reject) => {
    const v = {
      status: 0, headers: {}, events: [], comments: [], ended: false, error: null, arrivals: [],
    };
    let head = Buffer.alloc(0);
    let inBody = false;
    let chunked = false;
    let raw = ''; // body bytes not yet decoded (chunked) or not yet a whole line
    let text = ''; // decoded event-stream text not yet parsed
    let block = { fields: [] };
    const sock = net.connect({ host: '127.0.0.1', port, localAddress });
    v.close = () => sock.destroy();
    sock.setNoDelay(true);
    sock.on('connect', () => {
      sock.write(`GET ${urlPath} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`);
    });

    const dispatch = () => {
      const ev = { event: 'message', data: [] };
      for (const [field, value] of block.fields) {
        if (field === 'id') ev.id = value;
        else if (field === 'event') ev.event = value;
        else if (field === 'data') ev.data.push(value);
      }
      block = { fields: [] };
      ev.data = ev.data.join('\n');
      ev.json = JSON.parse(ev.data);
      v.events.push(ev);
      v.arrivals.push(Date.now());
    };
    // The event stream: lines; a blank one ends an event; ':' starts a comment.
    const parseStream = () => {
      let i;
      while ((i = text.indexOf('\n')) >= 0) {
        const line = text.slice(0, i).replace(/\r$/, '');
        text = text.slice(i + 1);
        if (line === '') {
          if (block.fields.length) dispatch();
        } else if (line.startsWith(':')) {
          v.comments.push(line);
        } else {
          const c = line.indexOf(':');
          block.fields.push(c < 0 ? [line, ''] : [line.slice(0, c), line.slice(c + 1).replace(/^ /, '')]);
        }
      }
    };
    // Chunked transfer coding: size line, data, CRLF.
    const dechunk = () => {
      for (;;) {
        const eol = raw.indexOf('\r\n');
        if (eol < 0) return;
        const size = parseInt(raw.slice(0, eol), 16);
        if (Number.isNaN(size)) throw new Error(`bad chunk size line ${JSON.stringify(raw.slice(0, eol))}`);
        if (raw.length < eol + 2 + size + 2) return;
        text += raw.slice(eol + 2, eol + 2 + size);
        raw = raw.slice(eol + 2 + size + 2);
        if (size === 0) v.ended = true;
      }
    };
    const onBody = (s) => {
      if (chunked) {
        raw += s;
        dechunk();
      } else {
        text += s;
      }
      parseStream();
    };

    sock.on('data', (chunk) => {
      try {
        if (inBody) {
          onBody(chunk.toString('latin1'));
          return;
        }
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) {
          if (head.length > HEAD_MAX) throw new Error('response head too long');
          return;
        }
        const lines = head.subarray(0, end).toString('latin1').split('\r\n');
        const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]);
        if (!m) throw new Error(`bad status line ${JSON.stringify(lines[0])}`);
        v.status = Number(m[1]);
        for (const l of lines.slice(1)) {
          const c = l.indexOf(':');
          v.headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
        }
        chunked = /chunked/i.test(v.headers['transfer-encoding'] ?? '');
        inBody = true;
        const rest = head.subarray(end + 4);
        resolve(v);
        if (rest.length) onBody(rest.toString('latin1'));
      } catch (err) {
        v.error = err;
        sock.destroy();
        reject(err);
      }
    });
    sock.on('error', (err) => { v.error ??= err; reject(err); });
    sock.on('close', () => { v.ended = true; });
  });
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

describe('200 concurrent SSE viewers', { timeout: 300000 }, () => {
  let stack;
  let dir;
  let owner;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-viewers-'));
    const passFile = path.join(dir, 'hub.pass');
    await writeFile(passFile, `${HUB_PASSWORD}\n`, { mode: 0o600 });
    stack = await startStack({
      prosody: { users: { alice: 'alice-pw', hub: HUB_PASSWORD }, admins: ['alice@localhost', 'hub@localhost'] },
      gateway: {
        config: {
          admin: { token: TOKEN },
          limits: { ...LOOPBACK_LIMITS },
          live: { jid: 'hub@localhost', password_file: passFile, nodes: [`${PS}/viewers-*`], heartbeat: 5 },
          log: { level: 'info' }, // 200 viewers' debug lines are not what this test reads
        },
      },
    });
    await stack.gw.waitForLog(/hub: online/, 15000);
    owner = await loginXmppJs({ service: stack.gw.wsUrl, username: 'alice', password: 'alice-pw', resource: 'owner' });
    const r = await owner.iq(`<iq type="set" to="${PS}"><pubsub xmlns="${PUBSUB_NS}"><create node="${NODE}"/></pubsub></iq>`);
    assert.equal(r.type, 'result', r.xml);
  });

  after(async () => {
    await owner?.stop().catch(() => {});
    const problem = await stack?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    if (problem) assert.fail(problem);
  });

  async function publish(fields) {
    const res = await fetch(`${stack.gw.adminUrl}/api/publish`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ service: PS, node: NODE, ...fields }),
    });
    const text = await res.text();
    assert.equal(res.status, 200, `POST /api/publish: ${res.status} ${text}`);
    assert.equal(JSON.parse(text).id, fields.id);
  }

  async function waitAll(viewers, test, ms, what) {
    const deadline = Date.now() + ms;
    while (!viewers.every(test)) {
      if (Date.now() > deadline) {
        const behind = viewers.filter((v) => !test(v));
        assert.fail(`${behind.length} of ${viewers.length} viewers still without ${what} after ${ms} ms; one has `
          + `${JSON.stringify(behind[0].events.map((e) => e.id))} (error: ${behind[0].error?.message}, ended: ${behind[0].ended})`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('each of 200 viewers receives every one of 50 items once, in order; one upstream session, one subscription', { timeout: 240000 }, async () => {
    const { gw } = stack;
    const viewers = [];
    try {
      for (let i = 0; i < VIEWERS; i += 20) {
        viewers.push(...await Promise.all(Array.from({ length: 20 }, (_, k) => openViewer(
          gw.port, `/events/${PS}/${NODE}?replay=0`, `127.0.0.${1 + ((i + k) % SOURCES)}`,
        ))));
      }
      for (const v of viewers) {
        assert.equal(v.status, 200);
        assert.match(v.headers['content-type'], /^text\/event-stream/);
        assert.equal(v.headers['cache-control'], 'no-store');
      }
      await gw.waitForLog(/hub: subscribing to pubsub\.localhost\/viewers-load/, 10000);
      await publish({ id: 'warmup', title: 'warm-up', summary: 'the node is subscribed', link: 'https://denmark.lit/w' });
      await waitAll(viewers, (v) => v.events.length >= 1, 20000, 'the warm-up item');

      const ids = Array.from({ length: ITEMS }, (_, k) => `item-${String(k).padStart(2, '0')}`);
      const sentAt = {};
      for (const [k, id] of ids.entries()) {
        sentAt[id] = Date.now();
        await publish({ id, title: `Item ${k}`, summary: `number ${k}`, link: `https://denmark.lit/${k}` });
      }
      await waitAll(viewers, (v) => v.events.length >= ITEMS + 1, 60000, `${ITEMS + 1} items`);
      await new Promise((r) => setTimeout(r, 500)); // anything extra would arrive now

      const delays = [];
      for (const v of viewers) {
        assert.equal(v.error, null);
        assert.equal(v.ended, false, 'the stream is still open');
        assert.deepEqual(v.events.map((e) => e.id), ['warmup', ...ids]);
        for (const [k, ev] of v.events.slice(1).entries()) {
          assert.equal(ev.event, 'item');
          assert.equal(ev.json.id, ev.id);
          assert.equal(ev.json.node, NODE);
          assert.equal(ev.json.service, PS);
          assert.equal(ev.json.title, `Item ${k}`);
          delays.push(v.arrivals[k + 1] - sentAt[ev.id]);
        }
      }
      delays.sort((a, b) => a - b);
      console.log(`# ${VIEWERS} viewers x ${ITEMS} items: publish request to arrival p50 ${percentile(delays, 50)} ms, `
        + `p99 ${percentile(delays, 99)} ms, max ${delays.at(-1)} ms`);

      // One upstream session for the hub, one subscription on the node, whatever the viewers.
      const res = await fetch(`${gw.adminUrl}/api/sessions?limit=1000`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const text = await res.text();
      assert.equal(res.status, 200, text);
      const hubSessions = JSON.parse(text).sessions.filter((s) => String(s.jid).startsWith('hub@localhost'));
      assert.equal(hubSessions.length, 1, text);
      const subs = await owner.iq(`<iq type="get" to="${PS}"><pubsub xmlns="${OWNER_NS}"><subscriptions node="${NODE}"/></pubsub></iq>`);
      assert.deepEqual([...subs.xml.matchAll(/<subscription [^>]*jid="([^"]+)"/g)].map((m) => m[1]), ['hub@localhost']);
    } finally {
      for (const v of viewers) v.close();
    }
  });
});
