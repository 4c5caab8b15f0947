// Two gateway nodes (node_id node1 and node2) behind the real HAProxy and nginx, each started
// from its shipped recipe with both of its node lines pointed at the two gateways: raw BOSH over
// TLS through the proxy, each session's requests sent from changing client addresses
// (127.0.0.5 to .7). HAProxy: the sid in the body routes every request to its node, with the
// node cookie and without any cookie, and the sid wins over a cookie naming the other node;
// nginx: the cookie routes every request. Both: a creation request carrying the cookie of a node
// is made on that node; WebSocket connections reach a node and log in.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import crypto from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startProsody, makeCertificate } from '../integration/lib/prosody.mjs';
import { startGateway, stopGatewayChecked } from '../integration/lib/gateway.mjs';
import { startHaproxy, startNginx } from './lib/proxies.mjs';
import { WebSocket } from '../integration/lib/clients.mjs';
import { openFrame } from '../integration/lib/wsraw.mjs';

const NS_BOSH = 'http://jabber.org/protocol/httpbind';
const ADDRS = ['127.0.0.5', '127.0.0.6', '127.0.0.7'];
const T = { timeout: 120000 };
let ca = null;

/** One BOSH POST through the proxy; resolves { status, text, attrs, cookie (Set-Cookie) }. */
function post(url, body, { localAddress, cookie } = {}) {
  return new Promise((resolve, reject) => {
    const headers = { 'Content-Type': 'text/xml; charset=utf-8', 'Content-Length': Buffer.byteLength(body) };
    if (cookie) headers.Cookie = cookie;
    const req = https.request(url, { method: 'POST', headers, agent: false, ca, family: 4, localAddress }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        const tag = /^<body\b[^>]*>/.exec(text.trim())?.[0] ?? '';
        const attrs = {};
        for (const m of tag.matchAll(/([\w:-]+)=(['"])(.*?)\2/g)) attrs[m[1]] = m[3];
        resolve({ status: res.statusCode, text, attrs, cookie: res.headers['set-cookie']?.[0] });
      });
    });
    req.on('error', reject);
    req.setTimeout(15000, () => req.destroy(new Error(`no answer from ${url}`)));
    req.end(body);
  });
}

const attrs = (a) => Object.entries(a).map(([k, v]) => ` ${k}='${v}'`).join('');
const bodyXml = (a, payload = '') => (payload
  ? `<body${attrs(a)} xmlns='${NS_BOSH}'>${payload}</body>`
  : `<body${attrs(a)} xmlns='${NS_BOSH}'/>`);
const b64 = (s) => Buffer.from(s, 'utf8').toString('base64');

/**
 * A BOSH session through the proxy. cookies: 'keep' sends the cookie the creation answer set,
 * 'none' sends none, or a fixed Cookie header value. Every request goes from the next address.
 */
class Raw {
  constructor(url, { cookies = 'keep', createCookie } = {}) {
    this.url = url;
    this.cookies = cookies;
    this.createCookie = createCookie;
    this.rid = 100000 + crypto.randomInt(1e6);
    this.n = crypto.randomInt(ADDRS.length);
    this.jar = null;
  }

  post(body, cookie) {
    this.n += 1;
    return post(this.url, body, { localAddress: ADDRS[this.n % ADDRS.length], cookie });
  }

  async create() {
    const res = await this.post(bodyXml({
      rid: this.rid, to: 'localhost', wait: 2, hold: 1, ver: '1.6', 'xml:lang': 'en',
      'xmpp:version': '1.0', 'xmlns:xmpp': 'urn:xmpp:xbosh',
    }), this.createCookie);
    assert.equal(res.status, 200, res.text);
    this.sid = res.attrs.sid;
    assert.ok(this.sid, res.text);
    this.jar = res.cookie?.split(';')[0] ?? null;
    return res;
  }

  send(payload = '', extra = {}) {
    this.rid += 1;
    const cookie = this.cookies === 'keep' ? this.jar : this.cookies === 'none' ? undefined : this.cookies;
    return this.post(bodyXml({ rid: this.rid, sid: this.sid, ...extra }, payload), cookie);
  }

  /** Login and `more` further requests; every answer must be the session's, none a terminate. */
  async run(user, password, more = 4) {
    const ok = (res, what) => {
      assert.equal(res.status, 200, `${what}: ${res.text}`);
      assert.notEqual(res.attrs.type, 'terminate', `${what} reached another node: ${res.text}`);
      return res;
    };
    await this.create();
    const auth = ok(await this.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${b64(`\0${user}\0${password}`)}</auth>`), 'auth');
    assert.match(auth.text, /<success/, auth.text);
    ok(await this.send('', { 'xmpp:restart': 'true', 'xmlns:xmpp': 'urn:xmpp:xbosh' }), 'restart');
    const bind = ok(await this.send("<iq type='set' id='b1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"), 'bind');
    assert.match(bind.text, /<jid>/, bind.text);
    for (let i = 0; i < more; i++) {
      ok(await this.send(`<iq type='get' id='p${i}' to='localhost' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>`), `ping ${i}`);
    }
    const end = await this.send('', { type: 'terminate' });
    assert.equal(end.attrs.type, 'terminate', end.text);
    assert.equal(end.attrs.condition, undefined, `a clean end at its own node: ${end.text}`);
  }
}

const nodeOf = (sid) => /^(node[12])\./.exec(sid)?.[1];

/** A WebSocket through the proxy: resolves with the node whose log shows the session. */
function wsOpen(url, localAddress) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['xmpp'], { ca, family: 4, localAddress, handshakeTimeout: 5000 });
    ws.on('open', () => ws.send(openFrame()));
    ws.on('message', (d) => { if (/<open\b/.test(String(d))) { resolve(ws); } });
    ws.on('error', reject);
  });
}

function nodesSuite(name, start) {
  describe(`two nodes behind ${name}`, { timeout: 300000 }, () => {
    let dir;
    let prosody;
    let gws;
    let proxy;
    const url = () => `${proxy.origin}/chat/http-bind`;

    before(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-nodes-'));
      const tls = await makeCertificate(dir, 'proxy', ['localhost']);
      ca = await readFile(tls.certFile);
      prosody = await startProsody();
      gws = [];
      for (const id of ['node1', 'node2']) {
        gws.push(await startGateway({ prosody, config: { node_id: id, public_url: 'https://chat.invalid/chat/', trusted_proxies: ['127.0.0.1'] } }));
      }
      proxy = await start({ gws, tls });
      console.log(`${proxy.version}: node1 on ${gws[0].port}, node2 on ${gws[1].port}`);
    });

    after(async () => {
      const logs = proxy ? await proxy.logs() : '';
      await proxy?.stop();
      const problems = [];
      for (const gw of gws ?? []) {
        const p = await stopGatewayChecked(gw);
        if (p) problems.push(p);
      }
      await prosody?.stop();
      await rm(dir, { recursive: true, force: true });
      if (problems.length) assert.fail(`${problems.join('\n')}\n${name} said:\n${logs.slice(-3000)}`);
    });

    it('makes a session on the node its creation request\'s cookie names, with a Secure cookie', T, async () => {
      for (const id of ['node1', 'node2', 'node2', 'node1']) {
        const s = new Raw(url(), { createCookie: `xmppgw_node=${id}` });
        const res = await s.create();
        assert.equal(nodeOf(s.sid), id, `sid ${s.sid}`);
        assert.equal(res.cookie, `xmppgw_node=${id}; Path=/; HttpOnly; SameSite=Lax; Secure`);
        await s.send('', { type: 'terminate' });
      }
    });

    it('routes every request of a session to its node, from changing addresses, with the cookie', T, async () => {
      const seen = new Set();
      for (let i = 0; i < 6; i++) {
        const s = new Raw(url(), { createCookie: `xmppgw_node=node${1 + (i % 2)}` });
        await s.run('alice', prosody.users.alice);
        seen.add(nodeOf(s.sid));
      }
      assert.deepEqual([...seen].sort(), ['node1', 'node2']);
    });

    if (name === 'haproxy') {
      it('routes on the sid in the body without any cookie, and before a cookie of the other node', T, async () => {
        const seen = new Set();
        for (let i = 0; i < 6; i++) {
          const s = new Raw(url(), { cookies: 'none', createCookie: `xmppgw_node=node${1 + (i % 2)}` });
          await s.run('bob', prosody.users.bob);
          seen.add(nodeOf(s.sid));
        }
        assert.deepEqual([...seen].sort(), ['node1', 'node2']);
        for (const [id, other] of [['node1', 'node2'], ['node2', 'node1']]) {
          const s = new Raw(url(), { cookies: `xmppgw_node=${other}`, createCookie: `xmppgw_node=${id}` });
          await s.run('carol', prosody.users.carol, 2);
          assert.equal(nodeOf(s.sid), id);
        }
        // Sessions created without a cookie are balanced over both nodes and then stay put.
        const free = new Set();
        for (let i = 0; i < 6; i++) {
          const s = new Raw(url(), { cookies: 'none' });
          await s.run('bob', prosody.users.bob, 1);
          free.add(nodeOf(s.sid));
        }
        assert.deepEqual([...free].sort(), ['node1', 'node2'], 'leastconn uses both');
      });
    }

    it('opens WebSocket streams on any node', T, async () => {
      const wsUrl = `wss://localhost:${proxy.port}/chat/xmpp-websocket`;
      const socks = [];
      for (let i = 0; i < 4; i++) socks.push(await wsOpen(wsUrl, ADDRS[i % ADDRS.length]));
      const count = (gw) => gw.logs().filter((l) => /session created: transport=websocket/.test(l)).length;
      const counts = gws.map(count);
      assert.equal(counts[0] + counts[1], 4, `WebSocket sessions per node: ${counts}`);
      for (const ws of socks) ws.terminate();
    });
  });
}

nodesSuite('haproxy', startHaproxy);
nodesSuite('nginx', startNginx);
