// The scale-out suite, run once per proxy (scale_nginx.test.mjs, scale_haproxy.test.mjs): one
// Prosody with mod_smacks, three gateway nodes (node_id node1, node2, node3) behind the real
// proxy started from its shipped recipe (lib/proxies.mjs: ports substituted, the third node its
// comments show made active), and hundreds of clients reaching the proxy over TLS from loopback addresses 127.0.0.10 and up:
// raw BOSH sessions (lib/xmppraw.mjs; with cookies, as a browser keeps them, and for HAProxy half
// of them without any, so that only the sid in the body can route them; both kinds change their
// source address with every request, as mobile clients do, so that the client's address routes
// nothing), raw WebSocket sessions, and @xmpp/client WebSocket sessions with XEP-0198 stream
// management. Every message is sent with an id and counted when it arrives.
//
// Then one node is drained (POST /api/drain, drain.grace 3 s): its stream-management clients must
// resume on the other nodes with every message sent to them during and after the drain received,
// its BOSH and plain WebSocket clients must be told system-shutdown and log in again through the
// proxy (landing on another node), and the other nodes' sessions must see nothing: no end, no
// disconnect, every message. The figures go out as one JSON line at the end.
import { it, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { client as xmppClient, xml } from '@xmpp/client';
import { startProsody, makeCertificate } from '../../integration/lib/prosody.mjs';
import { startGateway, stopGatewayChecked } from '../../integration/lib/gateway.mjs';
import { WebSocket, sleep } from '../../integration/lib/clients.mjs';
import { wsLogin, boshLogin, boshAgent } from './xmppraw.mjs';

const NODES = ['node1', 'node2', 'node3']; // the recipes' node names
const GRACE_S = 3;
const env = (k, d) => Number(process.env[k] ?? d);
// Sessions of each kind (XMPPGW_SCALE_* make a run smaller for a quick check).
const N_BOSH = env('XMPPGW_SCALE_BOSH', 300);
const N_WS = env('XMPPGW_SCALE_WS', 150); // plain WebSocket
const N_SM = env('XMPPGW_SCALE_SM', 150); // WebSocket with stream management (@xmpp/client)
const LOGINS_AT_ONCE = env('XMPPGW_SCALE_CONCURRENCY', 40);
const USERS = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`scale${i}`, `scale-pw-${i}`]));
const SRC = Array.from({ length: 64 }, (_, i) => `127.0.0.${10 + i}`); // client addresses
const SRC_RE = /^127\.0\.0\.(\d+)$/;

// TLS to the proxy: the run's CA; IPv4 (the certificate names localhost).
const tls = { ca: null, family: 4 };
// @xmpp/client builds its WebSocket with `new WebSocket(url, ['xmpp'])`: the source address rides
// in the URL's fragment (#src=127.0.0.12), which this class takes off again.
class SourcedWebSocket extends WebSocket {
  constructor(url, protocols, opts = {}) {
    const u = new URL(url);
    const src = new URLSearchParams(u.hash.slice(1)).get('src') ?? undefined;
    u.hash = '';
    super(u.toString(), protocols, { ...tls, localAddress: src, perMessageDeflate: false, ...opts });
  }
}
globalThis.WebSocket = SourcedWebSocket;

/** What one client received: message id -> times, and when each first came. */
class Inbox extends Map {
  at = new Map();

  set(id, n) {
    if (!this.at.has(id)) this.at.set(id, Date.now());
    return super.set(id, n);
  }
}

/** Runs fn over items, at most n at once; resolves the results in order. */
async function pool(items, n, fn) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }));
  return out;
}

async function until(cond, ms, what) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${typeof what === 'function' ? what() : what}`);
    await sleep(50);
  }
}

const pct = (xs, p) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

/** One HTTPS request to the proxy; resolves { status, headers, body }. */
function request(url, { method = 'GET', headers = {}, body, localAddress = SRC[0] } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, agent: false, ...tls, localAddress }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.setTimeout(10000, () => req.destroy(new Error(`no answer from ${url}`)));
    req.end(body);
  });
}

function upgradeStatus(url, { origin, localAddress }) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['xmpp'], { ...tls, localAddress, origin, handshakeTimeout: 5000 });
    ws.on('upgrade', () => { resolve(101); ws.terminate(); });
    ws.on('unexpected-response', (req, res) => { resolve(res.statusCode); req.destroy(); });
    ws.on('error', (err) => { if (!/Unexpected server response/.test(err.message)) reject(err); });
  });
}

/** An @xmpp/client session with stream management, its reconnect quick (the proxy routes it). */
async function smLogin({ url, user, password, resource, src, received }) {
  const c = xmppClient({
    service: `${url}#src=${src}`, domain: 'localhost', resource, timeout: 15000,
    credentials: async (auth) => auth({ username: user, password }, 'PLAIN'),
  });
  c.reconnect.delay = 200;
  const s = {
    kind: 'sm', user, resource, src, client: c, received, jid: `${user}@localhost/${resource}`,
    ended: null, disconnects: [], resumes: [], newSessions: 0, onMessage: null,
    send(to, id) {
      c.send(xml('message', { to, id, type: 'chat' }, xml('body', {}, `scale ${id}`))).catch(() => {});
    },
    async close() {
      c.reconnect.stop();
      await Promise.race([c.stop().catch(() => {}), sleep(3000)]);
      try { c.socket?.socket?.terminate?.(); } catch { /* gone */ }
    },
    terminate() {
      c.reconnect.stop();
      try { c.socket?.socket?.terminate?.(); } catch { /* gone */ }
    },
  };
  c.on('error', () => {}); // a dropped socket or a refused reconnect: expected during the drain
  c.on('stanza', (el) => {
    if (el.name === 'message' && el.attrs.id) {
      received.set(el.attrs.id, (received.get(el.attrs.id) ?? 0) + 1);
      s.onMessage?.(el.attrs.id);
    }
  });
  c.on('disconnect', () => { s.disconnects.push(Date.now()); });
  c.streamManagement.on('resumed', () => { s.resumes.push(Date.now()); });
  let online = 0;
  c.on('online', () => { if (++online > 1 && c.streamManagement.id && s.resumes.length < s.disconnects.length) s.newSessions++; });
  await Promise.race([c.start(), sleep(20000).then(() => { throw new Error('timed out'); })]).catch(async (err) => {
    await s.close();
    err.message = `@xmpp/client login of ${s.jid} from ${src}: ${err.message}`;
    throw err;
  });
  await until(() => c.streamManagement.enabled && c.streamManagement.id, 10000, `stream management for ${s.jid}`);
  s.jid = c.jid.toString();
  return s;
}

/**
 * The suite. start({ gws, tls }) starts the proxy from its recipe in front of the three gateways
 * (gws: [{ port, adminPort, node }]); opts.bodyRouting: the proxy routes BOSH on the sid in the
 * body (HAProxy), so half of the BOSH clients send no cookies.
 */
export function scaleSuite(name, { start, bodyRouting }) {
  describe(`three nodes behind ${name}`, { timeout: 280000 }, () => {
    let dir;
    let prosody;
    const gws = [];
    let proxy;
    let agent;
    const slots = []; // one per client: { label, kind, user, resource, cookies, src, received, client, node }
    const sent = new Map(); // message id -> { to: slot, phase }
    const figures = { proxy: name, started: Date.now() };
    let features = {}; // what the gateways on main can do (see before())
    let drainedNode = null;
    const wss = () => `wss://localhost:${proxy.port}/chat/xmpp-websocket`;
    const boshUrl = () => `https://localhost:${proxy.port}/chat/http-bind`;
    const host = () => `localhost:${proxy.port}`;
    // Each BOSH client walks the source addresses from its own starting point, so that every one
    // of its requests comes from another address than the one before (a counter shared by all
    // clients could hand one client the same address twice while others log in).
    let srcStart = 0;
    const rotating = () => {
      let turn = srcStart++;
      return () => SRC[turn++ % SRC.length];
    };

    const loginSlot = async (slot) => {
      const common = { user: slot.user, password: USERS[slot.user], resource: slot.resource, received: slot.received, tls };
      if (slot.kind === 'bosh') {
        slot.client = await boshLogin({ ...common, url: boshUrl(), host: host(), agent, src: features.boshSticky ? rotating() : slot.src, cookies: slot.cookies });
        slot.node = /^([a-z0-9_-]+)\./i.exec(slot.client.sid)?.[1] ?? null;
      } else if (slot.kind === 'ws') {
        slot.client = await wsLogin({ ...common, url: wss(), src: slot.src });
      } else {
        slot.client = await smLogin({ ...common, url: wss(), src: slot.src });
      }
      slot.jid = slot.client.jid;
      return slot;
    };

    /** Which node holds which full JID, from each node's /api/sessions. */
    const whereAreThey = async () => {
      const at = new Map();
      for (const g of gws) {
        if (g.exited) continue;
        const r = await fetch(`${g.adminUrl}/api/sessions?limit=10000`);
        const list = (await r.json()).sessions.filter((x) => x.transport !== 'internal');
        for (const x of list) {
          if (x.jid) at.set(x.jid, g.node);
          assert.match(x.peer ?? '', SRC_RE, `node ${g.node} lists ${x.jid} from ${x.peer}`);
        }
      }
      return at;
    };

    let msgSeq = 0;
    const sendTo = (from, to, phase) => {
      const id = `${phase}-${++msgSeq}`;
      sent.set(id, { to, from, phase, at: Date.now() });
      from.client.send(to.jid, id);
    };
    // Messages to and from a plain session of the drained node while it drains may be on their
    // way when the session ends: without stream management nothing brings them back. They are
    // counted apart (cut by the shutdown); on a quiet machine none is, on a loaded one the last
    // few are (stanzas then take seconds). Every other message must arrive.
    const CUT_OK = ['d-grace-plain', 'd-from-plain'];
    const missing = (phase) => [...sent].filter(([id, m]) => (phase ? m.phase === phase : !CUT_OK.includes(m.phase)) && !m.to.received.has(id));
    const waitDelivered = (phase, ms) => until(() => missing(phase).length === 0, ms,
      () => `${missing(phase).length} messages of ${phase} not received, e.g. ${missing(phase).slice(0, 5).map(([id, m]) => `${id} to ${m.to.label} (${m.to.kind}, node ${m.to.node})`).join(', ')}`);

    before(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-scale-'));
      const cert = await makeCertificate(dir, 'proxy', ['localhost']);
      tls.ca = await readFile(cert.certFile);
      agent = boshAgent(tls);
      prosody = await startProsody({
        users: USERS, smacks: true, logLevel: 'warn',
        extraGlobal: 'smacks_hibernation_time = 120\nsmacks_max_unacked_stanzas = 0\nc2s_stanza_size_limit = 262144',
      });
      // One after the other: each takes free ports that the one before holds by then.
      for (const node of NODES) {
        const g = await startGateway({
          prosody,
          config: {
            node_id: node,
            public_url: 'https://chat.invalid/chat/',
            trusted_proxies: ['127.0.0.1'],
            origins: ['same-host'],
            drain: { grace: GRACE_S },
            log: { level: 'info' },
            limits: { per_address_rate: 10000, per_address_burst: 10000, per_address_unauthenticated: 1000 },
          },
        });
        g.node = node;
        gws.push(g);
      }
      assert.equal(new Set(gws.map((g) => g.port)).size, NODES.length, 'each node on its own port');
      proxy = await start({ gws, tls: cert });
      figures.proxy_version = proxy.version;
      // What the gateways can do: a BOSH session created through the proxy says whether node_id
      // prefixes the sid and names the node in a cookie (sticky BOSH), and a POST of a JSON
      // array to /api/drain on the first node's admin port whether the drain exists (404 when
      // there is no such route, else 400: the body must be an object, and nothing drains).
      const probe = await new Promise((resolve, reject) => {
        const req = https.request(boshUrl(), { method: 'POST', agent: false, ...tls, localAddress: SRC[0], headers: { 'Content-Type': 'text/xml; charset=utf-8' } }, (res) => {
          let t = '';
          res.on('data', (d) => { t += d; });
          res.on('end', () => resolve({ headers: res.headers, body: t }));
        });
        req.on('error', reject);
        req.end("<body rid='100' to='localhost' wait='1' hold='1' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>");
      });
      const sid = /sid=["']([^"']+)/.exec(probe.body)?.[1] ?? '';
      features.boshSticky = /^node[123]\./.test(sid) && /xmppgw_node=node[123]/.test(String(probe.headers['set-cookie'] ?? ''));
      const d = await fetch(`${gws[0].adminUrl}/api/drain`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '[]' });
      await d.arrayBuffer();
      features.drain = d.status !== 404;
      if (features.drain) assert.equal(d.status, 400, 'a drain request with an array for a body is refused');
      console.log(`${proxy.version}; gateways ${gws.map((g) => `${g.node}:${g.port}`).join(' ')}; sticky BOSH: ${features.boshSticky} (sid ${sid.slice(0, 4)}...), drain: ${features.drain}`);
    });

    after(async () => {
      await Promise.all(slots.map((s) => s.client?.terminate?.()));
      agent?.destroy();
      const logs = proxy ? await proxy.logs() : '';
      await proxy?.stop();
      const problems = (await Promise.all(gws.map((g) => stopGatewayChecked(g)))).filter(Boolean);
      await prosody?.stop();
      await rm(dir, { recursive: true, force: true });
      figures.seconds = Math.round((Date.now() - figures.started) / 1000);
      delete figures.started;
      console.log(JSON.stringify({ scale: figures }));
      if (problems.length) assert.fail(`${problems.join('\n')}\n${name} said:\n${logs.slice(-3000)}`);
    });

    it(`logs in BOSH (${N_BOSH}), WebSocket (${N_WS}) and stream-management (${N_SM}) sessions through ${name}, spread over the nodes`, { timeout: 120000 }, async (t) => {
      const users = Object.keys(USERS);
      const add = (kind, n, extra = () => ({})) => {
        for (let i = 0; i < n; i++) {
          const label = `${kind}${i}`;
          slots.push({ label, kind, user: users[slots.length % users.length], resource: label, src: SRC[slots.length % SRC.length], received: new Inbox(), ...extra(i) });
        }
      };
      if (features.boshSticky) add('bosh', N_BOSH, (i) => ({ cookies: !bodyRouting || i % 2 === 0 }));
      else t.diagnostic('BOSH left out: the gateways neither prefix the sid with node_id nor set the node cookie');
      add('ws', N_WS);
      add('sm', N_SM);
      const t0 = Date.now();
      const order = slots.map((s, i) => [(i * 7919) % slots.length, s]).sort((a, b) => a[0] - b[0]).map(([, s]) => s);
      await pool(order, LOGINS_AT_ONCE, loginSlot);
      figures.login_ms = Date.now() - t0;
      const at = await whereAreThey();
      for (const s of slots) {
        const n = at.get(s.jid);
        assert.ok(n, `${s.label} (${s.jid}) is on no node`);
        if (s.kind === 'bosh') assert.equal(n, s.node, `${s.label}: the sid names ${s.node}, the session is on ${n}`);
        s.node = n;
      }
      figures.sessions_per_node = Object.fromEntries(NODES.map((n) => [n, Object.fromEntries(['bosh', 'ws', 'sm'].map((k) => [k, slots.filter((s) => s.node === n && s.kind === k).length]))]));
      console.log(`logged in ${slots.length} sessions in ${figures.login_ms} ms: ${JSON.stringify(figures.sessions_per_node)}`);
      for (const n of NODES) {
        const here = slots.filter((s) => s.node === n);
        assert.ok(here.length >= slots.length / 10, `node ${n} holds ${here.length} of ${slots.length} sessions`);
        assert.ok(here.some((s) => s.kind === 'sm'), `node ${n} holds no stream-management session`);
      }
      if (features.boshSticky) {
        const bosh = slots.filter((s) => s.kind === 'bosh');
        assert.ok(bosh.every((s) => s.client.srcs.size > 3), 'BOSH clients changed their address');
      }
    });

    it('exchanges messages between all of them with none lost', { timeout: 60000 }, async () => {
      const n = slots.length;
      const t0 = Date.now();
      for (let i = 0; i < n; i++) {
        sendTo(slots[i], slots[(i + 1) % n], 'p1');
        sendTo(slots[i], slots[(i + 97) % n], 'p1');
      }
      await waitDelivered('p1', 40000);
      figures.p1_ms = Date.now() - t0;
      const ended = slots.filter((s) => s.client.ended);
      assert.deepEqual(ended.map((s) => `${s.label}: ${s.client.ended.condition}`), []);
    });

    it("answers the Origin and host-meta for the proxy's public host, and logs the clients' addresses", { timeout: 30000 }, async () => {
      for (const src of SRC.slice(0, 6)) { // several addresses: more than one node answers
        const r = await request(`https://localhost:${proxy.port}/.well-known/host-meta.json`, { localAddress: src });
        assert.equal(r.status, 200);
        const links = Object.fromEntries(JSON.parse(r.body).links.map((l) => [l.rel, l.href]));
        assert.deepEqual(links, {
          'urn:xmpp:alt-connections:xbosh': `https://localhost:${proxy.port}/chat/http-bind`,
          'urn:xmpp:alt-connections:websocket': `wss://localhost:${proxy.port}/chat/xmpp-websocket`,
        });
        assert.equal(await upgradeStatus(wss(), { origin: `https://localhost:${proxy.port}`, localAddress: src }), 101);
        assert.equal(await upgradeStatus(wss(), { origin: 'https://chat.invalid', localAddress: src }), 403);
        const pre = await request(boshUrl(), { method: 'OPTIONS', localAddress: src, headers: { Origin: `https://localhost:${proxy.port}`, 'Access-Control-Request-Method': 'POST' } });
        assert.equal(pre.status, 200);
        assert.equal(pre.headers['access-control-allow-origin'], `https://localhost:${proxy.port}`);
      }
      for (const g of gws) {
        const created = g.logs().filter((l) => /session created: transport=(bosh|websocket) /.test(l));
        assert.ok(created.length >= slots.filter((s) => s.node === g.node).length, `node ${g.node}: ${created.length} sessions created`);
        const peers = new Set(created.map((l) => /peer=(\S+)/.exec(l)[1]));
        for (const p of peers) assert.match(p, SRC_RE, `node ${g.node} logged peer ${p}`);
        assert.ok(![...peers].includes('127.0.0.1'), `node ${g.node} logged the proxy's address`);
      }
    });

    it('drains one node: stream management resumes elsewhere with nothing lost, the others reconnect, the rest sees nothing', { timeout: 90000 }, async (t) => {
      if (!features.drain) {
        t.skip('POST /api/drain is not on the admin port of these gateways (the drain is not built yet)');
        return;
      }
      // The node with the most stream-management sessions.
      drainedNode = NODES.reduce((a, b) => (slots.filter((s) => s.node === b && s.kind === 'sm').length > slots.filter((s) => s.node === a && s.kind === 'sm').length ? b : a));
      const g = gws.find((x) => x.node === drainedNode);
      const gone = slots.filter((s) => s.node === drainedNode);
      const stay = slots.filter((s) => s.node !== drainedNode);
      const goneSm = gone.filter((s) => s.kind === 'sm');
      const goneOther = gone.filter((s) => s.kind !== 'sm');
      const pick = (i) => stay[(i * 31) % stay.length];
      const stayDisconnects = new Map(stay.filter((s) => s.kind === 'sm').map((s) => [s, s.client.disconnects.length]));
      figures.drained = { node: drainedNode, sm: goneSm.length, ws: gone.filter((s) => s.kind === 'ws').length, bosh: gone.filter((s) => s.kind === 'bosh').length };

      // Plain sessions on the drained node: told system-shutdown, then they log in again.
      const reconnects = [];
      const relogin = async (s) => {
        const ended = s.client.ended;
        s.endedWith = ended.condition;
        s.endedAt = ended.at;
        for (let tries = 1; ; tries++) {
          try {
            await loginSlot(s);
            reconnects.push({ s, ms: Date.now() - ended.at, tries });
            return;
          } catch (err) {
            s.lastError = err.message;
            if (Date.now() - ended.at > 40000) { reconnects.push({ s, ms: null, tries, error: err.message }); return; }
            await sleep(300);
          }
        }
      };
      const relogins = [];
      for (const s of goneOther) s.client.onEnd = () => relogins.push(relogin(s));

      let exitedAt = null;
      g.process.once('exit', () => { exitedAt = Date.now(); });
      const t0 = Date.now();
      const r = await fetch(`${g.adminUrl}/api/drain`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
      await r.arrayBuffer();
      assert.ok(r.status >= 200 && r.status < 300, `POST /api/drain: ${r.status}`);
      const ready = await fetch(`${g.adminUrl}/readyz`);
      await ready.arrayBuffer();
      assert.equal(ready.status, 503, '/readyz fails at once');
      for (const o of gws.filter((x) => x !== g)) assert.equal((await fetch(`${o.adminUrl}/readyz`)).status, 200);

      await sleep(300);
      // During the grace: a message to every session of the drained node, one from each of them
      // (its node must still carry them), and a round among the rest.
      gone.forEach((s, i) => sendTo(pick(i), s, s.kind === 'sm' ? 'd-grace' : 'd-grace-plain'));
      gone.forEach((s, i) => sendTo(s, pick(i + 3), s.kind === 'sm' ? 'd-from' : 'd-from-plain'));
      stay.forEach((s, i) => sendTo(s, stay[(i + 13) % stay.length], 'o-grace'));
      // After the grace: the stream-management sessions are away or resuming; more for them.
      await until(() => Date.now() - t0 > GRACE_S * 1000 + 300, 10000, 'the grace');
      goneSm.forEach((s, i) => sendTo(pick(i + 1), s, 'd-after'));
      await sleep(1000);
      goneSm.forEach((s, i) => sendTo(pick(i + 2), s, 'd-after'));
      stay.forEach((s, i) => sendTo(s, stay[(i + 29) % stay.length], 'o-after'));

      const dropAt = (s) => s.client.disconnects.find((x) => x >= t0); // its first drop in the drain
      const drainLog = () => g.logs().filter((l) => /drain|signal|exit|stopp/i.test(l)).slice(-8).join('\n');
      await until(() => goneSm.every((s) => s.client.resumes.length > 0 || s.client.newSessions > 0), 40000,
        () => `${goneSm.filter((s) => !s.client.resumes.length).length} of ${goneSm.length} stream-management sessions not resumed (${goneSm.filter((s) => dropAt(s)).length} dropped; e.g. ${goneSm.filter((s) => !s.client.resumes.length).slice(0, 3).map((s) => `${s.label}: ${s.client.client.status}`).join(', ')}); node ${drainedNode} said:\n${drainLog()}`);
      await until(() => reconnects.length === goneOther.length, 45000,
        () => `${goneOther.length - reconnects.length} of ${goneOther.length} plain sessions not back (ended: ${goneOther.filter((s) => s.client.ended).length}; e.g. ${goneOther.filter((s) => !reconnects.some((x) => x.s === s)).slice(0, 3).map((s) => `${s.label}: ${s.client.ended?.condition ?? 'not ended'} ${s.lastError ?? ''}`).join('; ')})`);
      await Promise.all(relogins);
      const endAt = (s) => (s.kind === 'sm' ? dropAt(s) : s.endedAt) ?? Infinity;
      figures.drain_to_end_ms = { first: Math.min(...gone.map(endAt)) - t0, last: Math.max(...gone.map(endAt)) - t0 };
      assert.ok(figures.drain_to_end_ms.first >= GRACE_S * 1000 - 100, `a session of the drained node ended ${figures.drain_to_end_ms.first} ms into a grace of ${GRACE_S} s`);
      const resumed = goneSm.filter((s) => s.client.resumes.length && dropAt(s));
      const resumeMs = resumed.map((s) => s.client.resumes.at(-1) - dropAt(s));
      const resumeFromDrain = resumed.map((s) => s.client.resumes.at(-1) - t0);
      figures.resume_ms = { n: resumeMs.length, p50: pct(resumeMs, 50), max: pct(resumeMs, 100), from_drain_p50: pct(resumeFromDrain, 50), from_drain_max: pct(resumeFromDrain, 100), attempts_max: Math.max(0, ...resumed.map((s) => s.client.disconnects.filter((x) => x >= t0).length)) };
      const rc = reconnects.filter((x) => x.ms !== null).map((x) => x.ms);
      figures.reconnect_ms = { n: rc.length, p50: pct(rc, 50), max: pct(rc, 100), tries_max: Math.max(0, ...reconnects.map((x) => x.tries)) };

      // Where everyone is now.
      const at = await whereAreThey();
      for (const s of slots) s.nodeAfter = at.get(s.jid) ?? null;
      figures.sessions_per_node_after = Object.fromEntries(NODES.map((n) => [n, slots.filter((s) => s.nodeAfter === n).length]));

      // A last round between everyone.
      slots.forEach((s, i) => sendTo(s, slots[(i + 211) % slots.length], 'final'));
      await waitDelivered(null, 30000).catch((err) => { figures.lost_at_end = missing().length; throw err; });

      const failedResume = goneSm.filter((s) => s.client.newSessions > 0 || !s.client.resumes.length);
      assert.deepEqual(failedResume.map((s) => s.label), [], 'stream-management sessions that did not resume');
      assert.deepEqual(reconnects.filter((x) => x.ms === null).map((x) => `${x.s.label}: ${x.error}`), []);
      // Told system-shutdown. Some BOSH sessions of the drained node see a 502 from the proxy
      // instead, a request of theirs having gone to the node as it closed (a proxy does not send
      // a POST again), or item-not-found, one having come just after the session's end: counted
      // apart in the figures (behind nginx up to most of them, behind HAProxy a few in the runs
      // so far); the client starts anew just the same.
      const endedWith = {};
      for (const s of goneOther) {
        const k = /^request failed: HTTP (\d+)/.exec(s.endedWith)?.[1] ?? s.endedWith;
        endedWith[`${s.kind} ${k}`] = (endedWith[`${s.kind} ${k}`] ?? 0) + 1;
      }
      figures.drained.ended_with = endedWith;
      for (const s of goneOther) {
        const ok = s.endedWith === 'system-shutdown' || (s.kind === 'bosh' && /^request failed: HTTP 502|^item-not-found$/.test(s.endedWith));
        assert.ok(ok, `${s.label} (${s.kind}) ended with ${s.endedWith}, not system-shutdown`);
      }
      assert.ok(goneOther.some((s) => s.endedWith === 'system-shutdown'), `told system-shutdown: ${JSON.stringify(endedWith)}`);
      for (const s of gone) assert.ok(s.nodeAfter && s.nodeAfter !== drainedNode, `${s.label} is on ${s.nodeAfter} after the drain`);
      assert.deepEqual(stay.filter((s) => s.client.ended).map((s) => `${s.label}: ${s.client.ended.condition}`), [], 'sessions of the other nodes that ended');
      assert.deepEqual([...stayDisconnects].filter(([s, n]) => s.client.disconnects.length !== n).map(([s]) => s.label), [], 'stream-management sessions of the other nodes that were disconnected');
      for (const s of stay) assert.equal(s.nodeAfter, s.node, `${s.label} moved`);
      const c = await g.stop();
      figures.drained.exit_ms = exitedAt - t0;
      assert.equal(c, 0, `the drained node exited ${c}`);
    });

    it('counts: every message sent was received (but those cut by the shutdown of a plain session), none twice', async () => {
      const total = sent.size;
      const lost = missing();
      const cut = CUT_OK.flatMap((p) => missing(p));
      let dups = 0;
      for (const s of slots) for (const [id, k] of s.received) if (sent.has(id) && k > 1) dups++;
      const byPhase = {};
      for (const [, m] of sent) byPhase[m.phase] = (byPhase[m.phase] ?? 0) + 1;
      const latency = {};
      for (const [id, m] of sent) {
        const at = m.to.received.at.get(id);
        if (at !== undefined) (latency[m.phase] ??= []).push(at - m.at);
      }
      figures.messages = {
        sent: total, received: total - lost.length - cut.length, lost: lost.length, cut_by_shutdown: cut.length, duplicates: dups, by_phase: byPhase,
        latency_ms: Object.fromEntries(Object.entries(latency).map(([p, xs]) => [p, { p50: pct(xs, 50), max: pct(xs, 100) }])),
        lost_by_phase: lost.reduce((o, [, m]) => ({ ...o, [m.phase]: (o[m.phase] ?? 0) + 1 }), {}),
      };
      assert.equal(lost.length, 0, `lost: ${lost.slice(0, 10).map(([id, m]) => `${id} to ${m.to.label}`).join(', ')}`);
      if (drainedNode) {
        // The drained node carried its plain sessions' traffic during the grace: most of it
        // arrived (all of it unless the machine is so loaded that stanzas take seconds).
        const plain = [...sent.values()].filter((m) => CUT_OK.includes(m.phase)).length;
        assert.ok(cut.length <= plain / 2, `${cut.length} of ${plain} messages to and from the drained node's plain sessions during the grace cut`);
      }
      assert.equal(dups, 0, 'messages received twice');
    });
  });
}
