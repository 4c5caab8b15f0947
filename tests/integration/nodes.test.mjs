// Several nodes (node_id) in front of one real Prosody: gateways n1 and n2, one with a 32-byte
// node id (the longest sid), and one without node_id. Raw BOSH over HTTP: the sid carries the node
// id and a '.' before its 128 random bits, the session creation answer (and only it) sets the
// xmppgw_node cookie (Secure when a trusted proxy says the client came by https), a request with
// n1's sid that reaches n2 gets item-not-found and a log line naming n1, never a new session; a
// sid with no known prefix gets item-not-found; without node_id sids and answers are as before.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import { startProsody } from './lib/prosody.mjs';
import { startGateway, stopGatewayChecked } from './lib/gateway.mjs';
import { loginXmppJs, goOnline, stopAllClients, withTimeout } from './lib/clients.mjs';

const NS_BOSH = 'http://jabber.org/protocol/httpbind';
const LONG_ID = 'abcdefghij-ABCDEFGHIJ_0123456789';
const T = { timeout: 60000 };

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

/** One BOSH POST; resolves { status, headers, text, attrs (of the answer's <body/>) }. */
function post(gw, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(gw.boshUrl, {
      method: 'POST',
      agent,
      headers: { 'Content-Type': 'text/xml; charset=utf-8', 'Content-Length': Buffer.byteLength(body), ...headers },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        const tag = /^<body\b[^>]*>/.exec(text.trim())?.[0] ?? '';
        const attrs = {};
        for (const m of tag.matchAll(/([\w:-]+)=(['"])(.*?)\2/g)) attrs[m[1]] = m[3];
        resolve({ status: res.statusCode, headers: res.headers, text, attrs });
      });
    });
    req.on('error', reject);
    req.setTimeout(15000, () => req.destroy(new Error('no BOSH answer in 15 s')));
    req.end(body);
  });
}

const attrs = (a) => Object.entries(a).map(([k, v]) => ` ${k}='${v}'`).join('');
const bodyXml = (a, payload = '') => (payload
  ? `<body${attrs(a)} xmlns='${NS_BOSH}'>${payload}</body>`
  : `<body${attrs(a)} xmlns='${NS_BOSH}'/>`);
const b64 = (s) => Buffer.from(s, 'utf8').toString('base64');

/** A BOSH session spoken by hand on one gateway. */
class Raw {
  constructor(gw) {
    this.gw = gw;
    this.rid = 100000 + crypto.randomInt(1e6);
    this.sid = null;
  }

  async create(headers = {}) {
    const res = await post(this.gw, bodyXml({
      rid: this.rid, to: 'localhost', wait: 5, hold: 1, ver: '1.6', 'xml:lang': 'en',
      'xmpp:version': '1.0', 'xmlns:xmpp': 'urn:xmpp:xbosh',
    }), headers);
    this.sid = res.attrs.sid ?? null;
    return res;
  }

  send(payload = '', extra = {}, gw = this.gw) {
    this.rid += 1;
    return post(gw, bodyXml({ rid: this.rid, sid: this.sid, ...extra }, payload));
  }

  /** SASL PLAIN, restart, bind; resolves with the answers' Set-Cookie headers and the JID. */
  async login(user, password) {
    const cookies = [];
    const auth = await this.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${b64(`\0${user}\0${password}`)}</auth>`);
    assert.match(auth.text, /<success/, auth.text);
    cookies.push(auth.headers['set-cookie']);
    const rs = await this.send('', { 'xmpp:restart': 'true', 'xmlns:xmpp': 'urn:xmpp:xbosh' });
    assert.match(rs.text, /<bind/, rs.text);
    cookies.push(rs.headers['set-cookie']);
    const bind = await this.send("<iq type='set' id='b1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
    const jid = /<jid>([^<]+)<\/jid>/.exec(bind.text)?.[1];
    assert.ok(jid, bind.text);
    cookies.push(bind.headers['set-cookie']);
    return { jid, cookies };
  }

  terminate() {
    return this.send('', { type: 'terminate' });
  }
}

function assertItemNotFound(res) {
  assert.equal(res.status, 200, res.text);
  assert.equal(res.attrs.type, 'terminate', res.text);
  assert.equal(res.attrs.condition, 'item-not-found', res.text);
  assert.equal(res.attrs.sid, undefined, `no session was made: ${res.text}`);
  assert.equal(res.headers['set-cookie'], undefined, 'no cookie with an error');
}

const created = (gw) => gw.logs().filter((l) => /session created: transport=bosh/.test(l)).length;

describe('several nodes: node_id in the sid and the cookie', () => {
  let prosody;
  let n1;
  let n2;
  let long;
  let plain;
  let users;

  before(async () => {
    prosody = await startProsody();
    users = prosody.users;
    const start = (config) => startGateway({ prosody, config });
    n1 = await start({ node_id: 'n1' });
    n2 = await start({ node_id: 'n2' });
    long = await start({ node_id: LONG_ID });
    plain = await start({});
  });

  after(async () => {
    await stopAllClients();
    agent.destroy();
    const problems = [];
    for (const gw of [n1, n2, long, plain]) {
      const p = await stopGatewayChecked(gw);
      if (p) problems.push(p);
    }
    await prosody?.stop();
    assert.deepEqual(problems, []);
  });

  it('prefixes the sid with the node id and sets the cookie on the creation answer only', T, async () => {
    const s = new Raw(n1);
    const res = await s.create();
    assert.equal(res.status, 200, res.text);
    assert.match(s.sid, /^n1\.[0-9a-f]{32}$/, 'node id, ".", 128 random bits in hex');
    assert.deepEqual(res.headers['set-cookie'], ['xmppgw_node=n1; Path=/; HttpOnly; SameSite=Lax']);
    const { jid, cookies } = await s.login('alice', users.alice);
    assert.match(jid, /^alice@localhost\//);
    assert.deepEqual(cookies, [undefined, undefined, undefined], 'later answers set no cookie');
    // The session works with its long sid: a message to itself comes back.
    const echo = await s.send(`<message to='${jid}' type='chat' id='m1' xmlns='jabber:client'><body>to myself</body></message>`);
    let text = echo.text;
    for (let i = 0; i < 5 && !/to myself/.test(text); i++) text = (await s.send()).text;
    assert.match(text, /to myself/);
    const end = await s.terminate();
    assert.equal(end.attrs.type, 'terminate', end.text);
  });

  it('marks the cookie Secure when the client came by https', T, async () => {
    // The test's loopback address is a trusted proxy by default: its X-Forwarded-Proto holds.
    const s = new Raw(n2);
    const res = await s.create({ 'X-Forwarded-Proto': 'https', 'X-Forwarded-For': '127.0.0.9' });
    assert.equal(res.status, 200, res.text);
    assert.match(s.sid, /^n2\.[0-9a-f]{32}$/);
    assert.deepEqual(res.headers['set-cookie'], ['xmppgw_node=n2; Path=/; HttpOnly; SameSite=Lax; Secure']);
    await s.terminate();
  });

  it('answers item-not-found to a request with another node\'s sid, and names that node', T, async () => {
    const s = new Raw(n1);
    assert.equal((await s.create()).status, 200);
    await s.login('bob', users.bob);
    const before2 = created(n2);
    const wrong = await s.send('', {}, n2); // the proxy sent it to n2
    assertItemNotFound(wrong);
    const line = await n2.waitForLog(/BOSH request from 127\.0\.0\.1 for a session of node 'n1' \(this is node 'n2'\): item-not-found/);
    assert.ok(!line.includes(s.sid.slice(3)), 'the line does not give away the sid');
    // A message in the misrouted request went nowhere; nothing was created on n2.
    const msg = await s.send(`<message to='bob@localhost' xmlns='jabber:client'><body>lost</body></message>`, {}, n2);
    assertItemNotFound(msg);
    assert.equal(created(n2), before2, 'no new session on n2');
    // The session itself lives on at n1, which never saw those two rids.
    s.rid -= 2;
    const back = await s.send();
    assert.equal(back.status, 200, back.text);
    assert.notEqual(back.attrs.type, 'terminate', back.text);
    await s.terminate();
  });

  it('answers item-not-found to a sid with no known prefix, or its own prefix and an unknown id', T, async () => {
    for (const sid of [crypto.randomBytes(16).toString('hex'), `n1.${crypto.randomBytes(16).toString('hex')}`, 'n1.', '.abc', 'x y.abc']) {
      const before1 = created(n1);
      const res = await post(n1, bodyXml({ rid: 5000, sid }));
      assertItemNotFound(res);
      assert.equal(created(n1), before1, `no session made for sid ${sid}`);
    }
    assert.ok(!n1.logs().some((l) => /for a session of node 'n1'/.test(l)), 'its own prefix is not another node');
    await n1.waitForLog(/BOSH request from 127\.0\.0\.1 for an unknown sid/);
  });

  it('takes a 32-byte node id: a 65-byte sid, a session that logs in', T, async () => {
    const s = new Raw(long);
    const res = await s.create();
    assert.equal(res.status, 200, res.text);
    assert.equal(s.sid.length, 65);
    assert.ok(s.sid.startsWith(`${LONG_ID}.`), s.sid);
    assert.deepEqual(res.headers['set-cookie'], [`xmppgw_node=${LONG_ID}; Path=/; HttpOnly; SameSite=Lax`]);
    await s.login('carol', users.carol);
    assertItemNotFound(await s.send('', {}, n1));
    await n1.waitForLog(new RegExp(`for a session of node '${LONG_ID}' \\(this is node 'n1'\\)`));
    await s.terminate();
  });

  it('without node_id: the sid is 128 random bits alone, no cookie; others\' sids are unknown', T, async () => {
    const s = new Raw(plain);
    const res = await s.create();
    assert.equal(res.status, 200, res.text);
    assert.match(s.sid, /^[0-9a-f]{32}$/);
    assert.equal(res.headers['set-cookie'], undefined);
    await s.login('alice', users.alice);
    await s.terminate();
    const other = new Raw(n1);
    await other.create();
    assertItemNotFound(await post(plain, bodyXml({ rid: other.rid + 1, sid: other.sid })));
    await other.terminate();
  });

  it('gives WebSocket sessions the prefix in their internal sid (log lines), and no cookie', T, async () => {
    const c = await loginXmppJs({ service: n2.wsUrl, username: 'bob', password: users.bob });
    await goOnline(c);
    const line = await n2.waitForLog(/session created: transport=websocket/);
    assert.match(line, /sid=n2\.[0-9a-f]{32}\b/);
    await withTimeout(c.sendPresence({ type: 'unavailable' }), 5000, 'presence');
    await c.stop();
  });
});
