// The behind-a-proxy suite, run once per proxy (nginx.test.mjs, haproxy.test.mjs): a real Prosody,
// one gateway, and the real proxy started from its shipped recipe (lib/proxies.mjs) with TLS from
// a certificate made for the run, which the clients trust. Clients reach the proxy from 127.0.0.5
// (127.0.0.6 and .7 for the limits), the proxy reaches the gateway from 127.0.0.1, the only
// trusted proxy. The gateway's public_url names another host (chat.invalid) with the /chat/
// prefix, so a right scheme and host in its answers can only come from the proxy's forwarding
// headers, and the prefix from public_url.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { mkdtemp, writeFile, rm, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startProsody, makeCertificate, DEFAULT_USERS } from '../../integration/lib/prosody.mjs';
import { startGateway, stopGatewayChecked, SOURCE_DIR } from '../../integration/lib/gateway.mjs';
import {
  loginXmppJs, loginStrophe, goOnline, sleep, stopAllClients, WebSocket,
} from '../../integration/lib/clients.mjs';
import { parseFrame, openFrame, NS_STREAMS } from '../../integration/lib/wsraw.mjs';
import { activeLines, seconds } from './proxies.mjs';

const CLIENT = '127.0.0.5';
const IDLE_MS = 80000; // above nginx's default 60 s read timeout and the recipes' 75 s idle ones
const HUB_PASSWORD = 'hub-proxied-Pa55';
const PS = 'pubsub.localhost';
const NODE = 'proxied';
const T = { timeout: 60000 };

// Every client connection: the run's CA trusted, IPv4 (the certificate names localhost), and a
// source address of the test's choosing. Strophe.js and @xmpp/client take the global WebSocket
// and XMLHttpRequest (clients.mjs installs `ws` and xhr2): both get these options.
const tlsOpts = { ca: null, family: 4, localAddress: CLIENT };
class ProxiedWebSocket extends WebSocket {
  constructor(url, protocols, opts = {}) {
    super(url, protocols, { ...tlsOpts, ...opts });
  }
}
globalThis.WebSocket = ProxiedWebSocket;

/** One HTTP(S) request; resolves { status, headers, body }. */
function request(url, { method = 'GET', headers = {}, body, localAddress = CLIENT } = {}) {
  const mod = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method, headers, agent: false, ...tlsOpts, localAddress }, (res) => {
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

/** A WebSocket upgrade: resolves the HTTP status (101 when it succeeded; the socket then closes). */
function upgradeStatus(url, { origin, headers, localAddress = CLIENT } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['xmpp'], { ...tlsOpts, localAddress, origin, headers, handshakeTimeout: 5000 });
    ws.on('upgrade', () => { resolve(101); ws.terminate(); });
    ws.on('unexpected-response', (req, res) => { resolve(res.statusCode); req.destroy(); });
    ws.on('error', (err) => { if (!/Unexpected server response/.test(err.message)) reject(err); });
  });
}

/** A raw RFC 7395 connection: sends <open/>, resolves { frames, closed, ws } as frames arrive. */
function rawOpen(url, { localAddress }) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['xmpp'], { ...tlsOpts, localAddress, handshakeTimeout: 5000 });
    const frames = [];
    let closedResolve;
    const closed = new Promise((r) => { closedResolve = r; });
    ws.on('message', (d) => frames.push(d.toString()));
    ws.on('close', (code) => closedResolve(code));
    ws.on('open', () => { ws.send(openFrame()); resolve({ ws, frames, closed }); });
    ws.on('error', reject);
  });
}

async function waitUntil(test, ms, what) {
  const end = Date.now() + ms;
  while (!test()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${what}`);
    await sleep(50);
  }
}

/** A Server-Sent Events stream through the proxy; resolves { status, events, comments, close }. */
function openEvents(url) {
  return new Promise((resolve, reject) => {
    const events = [];
    const comments = [];
    const req = https.get(url, { agent: false, ...tlsOpts }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = { at: Date.now() };
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push({ line, at: Date.now() });
            else if (line.startsWith('id:')) ev.id = line.slice(3).trim();
            else if (line.startsWith('event:')) ev.event = line.slice(6).trim();
          }
          if (ev.id || ev.event) events.push(ev);
        }
      });
      resolve({ status: res.statusCode, headers: res.headers, events, comments, close: () => req.destroy() });
    });
    req.on('error', reject);
  });
}

/**
 * The suite. start({ gw, tls }) starts the proxy (lib/proxies.mjs); timeouts(text) gives the
 * recipe's { bosh, websocket, events } idle limits in seconds; checks(text) names what else the
 * recipe must hold (HTTP/1.1 and Upgrade for the WebSocket, no buffering).
 */
export function proxySuite(name, { start, timeouts, checks }) {
  describe(`behind ${name}`, { timeout: 300000 }, () => {
    let dir;
    let prosody;
    let gw;
    let proxy;
    let defaults;
    let idle; // an @xmpp/client WebSocket left idle from the start, and when it started
    let idleBosh; // a Strophe.js BOSH client left idle just as long (its requests held for wait)
    const wss = () => `wss://localhost:${proxy.port}/chat/xmpp-websocket`;
    const bosh = () => `${proxy.origin}/chat/http-bind`;

    before(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-proxy-'));
      const tls = await makeCertificate(dir, 'proxy', ['localhost']);
      tlsOpts.ca = await readFile(tls.certFile);
      const XHR = globalThis.XMLHttpRequest;
      XHR.nodejsSet({ httpsAgent: new https.Agent({ ...tlsOpts, keepAlive: true }) });
      defaults = JSON.parse(await readFile(path.join(SOURCE_DIR, 'config', 'xmppgw.example.json'), 'utf8'));
      const passFile = path.join(dir, 'hub.pass');
      await writeFile(passFile, `${HUB_PASSWORD}\n`, { mode: 0o600 });
      prosody = await startProsody({ users: { ...DEFAULT_USERS, hamlet: 'hamlet-pw', hub: HUB_PASSWORD } });
      gw = await startGateway({
        prosody,
        config: {
          public_url: 'https://chat.invalid/chat/',
          trusted_proxies: ['127.0.0.1'],
          origins: ['same-host'],
          websocket: { ping_interval: 0 }, // an idle WebSocket carries nothing the clients do not send
          limits: { per_address_unauthenticated: 3 },
          live: { jid: 'hub@localhost', password_file: passFile, nodes: [`${PS}/${NODE}`], heartbeat: 15 },
        },
      });
      proxy = await start({ gw, tls });
      await gw.waitForLog(/hub: online/, 15000);
      idle = { c: await loginXmppJs({ service: wss(), username: 'carol', password: prosody.users.carol, mechanism: 'PLAIN' }), at: Date.now() };
      idleBosh = await loginStrophe({ service: bosh(), username: 'bob', password: prosody.users.bob, mechanism: 'PLAIN', resource: 'idle' });
    });

    after(async () => {
      await stopAllClients().catch(() => {});
      const logs = proxy ? await proxy.logs() : '';
      await proxy?.stop();
      const problem = gw ? await stopGatewayChecked(gw) : null;
      await prosody?.stop();
      await rm(dir, { recursive: true, force: true });
      if (problem) assert.fail(`${problem}\n${name} said:\n${logs.slice(-3000)}`);
    });

    it(`runs the shipped recipe (${name})`, async () => {
      console.log(`${proxy.version}, on https://localhost:${proxy.port}, gateway on ${gw.port}`);
      assert.ok(proxy.version, 'version printed');
    });

    it('holds timeouts above BOSH wait, the WebSocket ping interval and the SSE heartbeat', async () => {
      const t = timeouts(proxy.text);
      const wait = defaults.bosh.max_wait;
      const hb = defaults.live.heartbeat;
      const ping = defaults.websocket.ping_interval;
      console.log(`recipe: BOSH ${t.bosh} s (wait ${wait}), WebSocket ${t.websocket} s (ping ${ping}), events ${t.events} s (heartbeat ${hb})`);
      assert.ok(t.bosh > wait + 10, `BOSH idle limit ${t.bosh} s must be above bosh.max_wait ${wait} s with room`);
      assert.ok(t.websocket > ping && t.websocket >= 3600, `WebSocket idle limit ${t.websocket} s`);
      assert.ok(t.events > 2 * hb, `events idle limit ${t.events} s must be above live.heartbeat ${hb} s`);
      for (const re of checks) assert.match(activeLines(proxy.text).join('\n'), re);
    });

    it('logs in and exchanges messages over BOSH and WebSocket through the proxy', T, async () => {
      const a = await loginStrophe({ service: bosh(), username: 'alice', password: prosody.users.alice, mechanism: 'PLAIN' });
      const b = await loginXmppJs({ service: wss(), username: 'bob', password: prosody.users.bob, mechanism: 'PLAIN' });
      const c = await loginStrophe({ service: wss(), username: 'carol', password: prosody.users.carol, mechanism: 'PLAIN', resource: 'strophe-ws' });
      await goOnline(a);
      await goOnline(b);
      for (let i = 0; i < 10; i++) {
        await a.sendMessage(b.jid, `bosh-to-ws ${i}`);
        await b.sendMessage(a.jid, `ws-to-bosh ${i}`);
        await c.sendMessage(a.jid, `strophe-ws ${i}`);
      }
      await b.waitForCount((s) => s.name === 'message' && /^bosh-to-ws/.test(s.body ?? ''), 10, 10000);
      await a.waitForCount((s) => s.name === 'message' && /^ws-to-bosh/.test(s.body ?? ''), 10, 10000);
      await a.waitForCount((s) => s.name === 'message' && /^strophe-ws/.test(s.body ?? ''), 10, 10000);
      const order = a.received.filter((s) => /^ws-to-bosh/.test(s.body ?? '')).map((s) => s.body);
      assert.deepEqual(order, [...Array(10).keys()].map((i) => `ws-to-bosh ${i}`));
      await Promise.all([a.stop(), b.stop(), c.stop()]);
    });

    it("logs the client's address, not the proxy's, and believes no header the client sent", T, async () => {
      const text = gw.logText();
      assert.match(text, /session created: transport=bosh peer=127\.0\.0\.5 /);
      assert.match(text, /session created: transport=websocket peer=127\.0\.0\.5 /);
      assert.doesNotMatch(text, /session created: transport=\w+ peer=127\.0\.0\.1 /);
      // /api/sessions on the admin port: the idle clients' sessions under the client's address.
      const listed = await request(`${gw.adminUrl}/api/sessions`, { localAddress: '127.0.0.1' });
      const sessions = JSON.parse(listed.body).sessions.filter((x) => x.transport !== 'internal');
      assert.ok(sessions.length >= 2, listed.body);
      assert.deepEqual([...new Set(sessions.map((x) => x.peer))], [CLIENT], listed.body);
      // Forged forwarding headers through the proxy: the proxy replaces them.
      const forged = { 'X-Forwarded-For': '198.51.100.66', Forwarded: 'for=198.51.100.67;proto=http;host=evil.example', 'X-Forwarded-Host': 'evil.example', 'X-Forwarded-Proto': 'http' };
      const created = () => gw.logs().filter((l) => /session created: transport=websocket peer=127\.0\.0\.5 /.test(l)).length;
      const before = created();
      const ws = new ProxiedWebSocket(wss(), ['xmpp'], { headers: forged });
      await new Promise((res, rej) => { ws.on('open', res); ws.on('error', rej); });
      ws.send(openFrame());
      await waitUntil(() => created() > before, 5000, 'a session from 127.0.0.5');
      const meta = await request(`${proxy.origin}/.well-known/host-meta.json`, { headers: forged });
      assert.match(meta.body, new RegExp(`"https://localhost:${proxy.port}/chat/http-bind"`));
      ws.terminate();
      assert.doesNotMatch(gw.logText(), /198\.51\.100\.6[67]/);
    });

    it('serves an IPv6 client through the proxy and logs its address', T, async () => {
      const p = await new Promise((resolve, reject) => {
        const ws = new WebSocket(`wss://[::1]:${proxy.port}/chat/xmpp-websocket`, ['xmpp'], {
          ca: tlsOpts.ca, servername: 'localhost', family: 6, localAddress: '::1', handshakeTimeout: 5000,
        });
        const frames = [];
        ws.on('message', (d) => frames.push(d.toString()));
        ws.on('open', () => { ws.send(openFrame()); resolve({ ws, frames }); });
        ws.on('error', reject);
      });
      try {
        await waitUntil(() => p.frames.some((f) => /features/.test(f)), 5000, 'features over IPv6');
        await gw.waitForLog(/session created: transport=websocket peer=::1 /, 5000);
      } finally {
        p.ws.terminate();
      }
    });

    it('ignores forwarding headers sent straight to the gateway by a peer that is no trusted proxy', T, async () => {
      const headers = { 'X-Forwarded-For': '203.0.113.7', 'X-Forwarded-Host': 'evil.example', 'X-Forwarded-Proto': 'http' };
      const meta = await request(`${gw.url}/.well-known/host-meta.json`, { headers, localAddress: '127.0.0.9' });
      assert.equal(meta.status, 200);
      assert.match(meta.body, /"https:\/\/chat\.invalid\/chat\/http-bind"/); // public_url, not the header
      const res = await request(`${gw.url}/chat/http-bind`, {
        method: 'POST', localAddress: '127.0.0.9',
        headers: { ...headers, Forwarded: 'for=203.0.113.8', 'Content-Type': 'text/xml; charset=utf-8' },
        body: "<body rid='1000' to='localhost' wait='1' hold='1' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>",
      });
      assert.equal(res.status, 200);
      await gw.waitForLog(/session created: transport=bosh peer=127\.0\.0\.9 /, 5000);
      await gw.waitForLog(/forwarding headers from 127\.0\.0\.9 ignored: not a trusted proxy/, 5000);
      assert.doesNotMatch(gw.logText(), /peer=203\.0\.113\.[78]/);
    });

    it("answers host-meta and the same-host origin rule for the proxy's public host", T, async () => {
      for (const p of ['/.well-known/host-meta.json', '/chat/.well-known/host-meta.json']) {
        const r = await request(`${proxy.origin}${p}`);
        assert.equal(r.status, 200, p);
        const links = Object.fromEntries(JSON.parse(r.body).links.map((l) => [l.rel, l.href]));
        assert.deepEqual(links, {
          'urn:xmpp:alt-connections:xbosh': `https://localhost:${proxy.port}/chat/http-bind`,
          'urn:xmpp:alt-connections:websocket': `wss://localhost:${proxy.port}/chat/xmpp-websocket`,
        }, p);
      }
      const xrd = await request(`${proxy.origin}/.well-known/host-meta`);
      assert.match(xrd.body, new RegExp(`href='wss://localhost:${proxy.port}/chat/xmpp-websocket'`));
      // Direct to the gateway (no proxy): public_url's host.
      const direct = await request(`${gw.url}/.well-known/host-meta.json`, { localAddress: '127.0.0.1' });
      assert.match(direct.body, /"wss:\/\/chat\.invalid\/chat\/xmpp-websocket"/);

      assert.equal(await upgradeStatus(wss(), { origin: proxy.origin }), 101);
      assert.equal(await upgradeStatus(wss(), { origin: 'https://chat.invalid' }), 403);
      assert.equal(await upgradeStatus(wss(), { origin: `https://localhost:${gw.port}` }), 403);
      assert.equal(await upgradeStatus(wss(), { origin: 'https://evil.example' }), 403);
      const pre = await request(bosh(), { method: 'OPTIONS', headers: { Origin: proxy.origin, 'Access-Control-Request-Method': 'POST' } });
      assert.equal(pre.status, 200);
      assert.equal(pre.headers['access-control-allow-origin'], proxy.origin);
      const bad = await request(bosh(), { method: 'OPTIONS', headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' } });
      assert.equal(bad.status, 403);
      // The static files and live.js under the prefix, as the proxy passes it.
      assert.equal((await request(`${proxy.origin}/chat/live.js`)).status, 200);
    });

    it('counts per-address limits by the real client address', T, async () => {
      const open = [];
      try {
        for (let i = 0; i < 3; i++) {
          const p = await rawOpen(wss(), { localAddress: '127.0.0.6' });
          open.push(p);
          await waitUntil(() => p.frames.some((f) => /<stream:features|<features/.test(f)), 5000, 'features');
        }
        const over = await rawOpen(wss(), { localAddress: '127.0.0.6' });
        open.push(over);
        await waitUntil(() => over.frames.some((f) => /<(stream:)?error/.test(f)), 5000, 'the stream error');
        const err = parseFrame(over.frames.find((f) => /<(stream:)?error/.test(f)));
        assert.equal(err.getElementsByTagNameNS(NS_STREAMS, 'resource-constraint').length, 1, over.frames.join(' | '));
        assert.match(gw.logText(), /new session from 127\.0\.0\.6 refused: limit address_unauthenticated/);
        // Another client address through the same proxy is served.
        const other = await rawOpen(wss(), { localAddress: '127.0.0.7' });
        open.push(other);
        await waitUntil(() => other.frames.some((f) => /features/.test(f)), 5000, 'features for 127.0.0.7');
      } finally {
        for (const p of open) p.ws.terminate();
      }
    });

    it('delivers a Server-Sent Event through the proxy at once (no buffering)', T, async () => {
      const pub = await loginXmppJs({ service: wss(), username: 'hamlet', password: 'hamlet-pw', mechanism: 'PLAIN' });
      const created = await pub.iq(`<iq type="set" to="${PS}"><pubsub xmlns="http://jabber.org/protocol/pubsub"><create node="${NODE}"/></pubsub></iq>`);
      assert.equal(created.type, 'result', created.xml);
      const s = await openEvents(`${proxy.origin}/chat/events/${PS}/${NODE}`);
      try {
        assert.equal(s.status, 200);
        assert.match(s.headers['content-type'], /^text\/event-stream/);
        await gw.waitForLog(/events: viewer 127\.0\.0\.5 of pubsub\.localhost\/proxied/, 5000);
        await sleep(500); // subscribed
        const t0 = Date.now();
        await pub.iq(`<iq type="set" to="${PS}"><pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="${NODE}"><item id="through-${name}"><entry xmlns="http://www.w3.org/2005/Atom"><title>x</title></entry></item></publish></pubsub></iq>`);
        await waitUntil(() => s.events.some((e) => e.id === `through-${name}`), 2000, 'the event');
        const ms = s.events.find((e) => e.id === `through-${name}`).at - t0;
        console.log(`event through ${name} after ${ms} ms`);
        assert.ok(ms < 1000, `event after ${ms} ms`);
      } finally {
        s.close();
        await pub.stop();
      }
    });

    it(`keeps an idle WebSocket and BOSH session for ${IDLE_MS / 1000} s`, { timeout: IDLE_MS + 30000 }, async () => {
      const left = IDLE_MS - (Date.now() - idle.at);
      if (left > 0) await sleep(left);
      console.log(`idle for ${Math.round((Date.now() - idle.at) / 1000)} s`);
      const body = `after ${IDLE_MS / 1000} s idle`;
      await idle.c.sendMessage(idleBosh.jid, body);
      await idleBosh.waitFor((s) => s.name === 'message' && s.body === body, 10000);
      await idleBosh.sendMessage(idle.c.jid, body);
      await idle.c.waitFor((s) => s.name === 'message' && s.body === body, 10000);
      assert.ok(!idleBosh.statusLog.some((s) => /DISCONNECT|ERROR|CONNFAIL/.test(s.status)), JSON.stringify(idleBosh.statusLog));
    });
  });
}

/** nginx: a location's proxy_read_timeout (seconds). */
export function nginxTimeouts(text) {
  const lines = activeLines(text).join('\n');
  const loc = (p) => {
    const m = new RegExp(`location ${p.replace(/[/.]/g, '\\$&')} \\{([^}]*)\\}`).exec(lines);
    if (!m) throw new Error(`no location ${p}`);
    const t = /proxy_read_timeout (\S+);/.exec(m[1]);
    return t ? seconds(t[1]) : 60; // nginx's default
  };
  return { bosh: loc('/chat/http-bind'), websocket: loc('/chat/xmpp-websocket'), events: loc('/chat/events/') };
}

/** HAProxy: BOSH and events are bound by timeout client and server; an upgraded WebSocket by tunnel. */
export function haproxyTimeouts(text) {
  const lines = activeLines(text).join('\n');
  const get = (k) => {
    const m = new RegExp(`timeout ${k} (\\S+)`).exec(lines);
    if (!m) throw new Error(`no timeout ${k}`);
    return seconds(m[1]);
  };
  const idle = Math.min(get('client'), get('server'));
  return { bosh: idle, websocket: get('tunnel'), events: idle };
}
