// Real BOSH client libraries through the gateway: Strophe.js and Stanza log in with SASL PLAIN and
// SCRAM-SHA-1; a BOSH user and a WebSocket user exchange 100 messages each way (none lost; order
// kept, checked with Strophe: Stanza's BOSH may handle answers out of rid order); presence, roster
// and pubsub over BOSH.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import * as XMPP from 'stanza';
import { startStack } from './lib/stack.mjs';
import {
  loginStrophe, loginXmppJs, goOnline, stopAllClients, withTimeout, sleep,
} from './lib/clients.mjs';

const N_MESSAGES = 100;
const STANZA_MECHANISMS = ['EXTERNAL', 'SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256', 'SCRAM-SHA-1-PLUS',
  'SCRAM-SHA-1', 'DIGEST-MD5', 'OAUTHBEARER', 'X-OAUTH2', 'PLAIN', 'ANONYMOUS'];

const stanzaClients = new Set();

/**
 * Logs in with Stanza over BOSH only, with one SASL mechanism. Resolves to
 * { client, jid, mechanism, messages, stop() }.
 */
async function loginStanza({ service, username, password, mechanism, timeoutMs = 15000 }) {
  const client = XMPP.createClient({
    jid: `${username}@localhost`,
    password,
    resource: `stanza-${crypto.randomBytes(3).toString('hex')}`,
    transports: { websocket: false, bosh: service },
  });
  for (const m of STANZA_MECHANISMS) if (m !== mechanism) client.sasl.disable(m);
  let used = null;
  const messages = [];
  client.on('raw:outgoing', (data) => {
    const m = /<auth\b[^>]*mechanism=['"]([^'"]+)['"]/.exec(String(data));
    if (m) used = m[1];
  });
  client.on('message', (m) => { if (m.body !== undefined) messages.push(m); });
  let disconnected;
  const disconnectedP = new Promise((r) => { disconnected = r; });
  client.on('disconnected', () => disconnected());
  const wrapper = {
    client,
    jid: null,
    messages,
    get mechanism() { return used; },
    async stop() {
      if (!stanzaClients.delete(wrapper)) return;
      try {
        client.disconnect();
        await withTimeout(disconnectedP, 5000, 'stanza disconnect');
      } catch { /* the gateway forgets it after inactivity */ }
    },
  };
  stanzaClients.add(wrapper);
  const started = new Promise((resolve, reject) => {
    client.once('session:started', resolve);
    client.once('auth:failed', () => reject(new Error('auth failed')));
    disconnectedP.then(() => reject(new Error('disconnected before the session started')));
  });
  client.connect();
  try {
    await withTimeout(started, timeoutMs, `Stanza BOSH login ${username} via ${service}`);
  } catch (err) {
    await wrapper.stop();
    throw err;
  }
  wrapper.jid = client.jid;
  return wrapper;
}

describe('BOSH client libraries', () => {
  let stack;
  let gw;
  let users;

  before(async () => {
    stack = await startStack({ gateway: { config: { bosh: { max_wait: 10 } } } });
    gw = stack.gw;
    users = stack.prosody.users;
  });

  after(async () => {
    await Promise.all([...stanzaClients].map((c) => c.stop()));
    await stopAllClients();
    const problem = await stack?.stop();
    assert.equal(problem, null, problem ?? '');
  });

  for (const mechanism of ['PLAIN', 'SCRAM-SHA-1']) {
    it(`Strophe.js logs in over BOSH with ${mechanism}`, async () => {
      const c = await loginStrophe({ service: gw.boshUrl, username: 'alice', password: users.alice, mechanism });
      assert.match(c.jid, /^alice@localhost\/.+/);
      assert.equal(c.mechanism, mechanism);
      const pong = await c.iq(`<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
      assert.equal(pong.type, 'result');
      await c.stop();
    });

    it(`Stanza logs in over BOSH with ${mechanism}`, async () => {
      const c = await loginStanza({ service: gw.boshUrl, username: 'bob', password: users.bob, mechanism });
      assert.match(c.jid, /^bob@localhost\/.+/);
      assert.equal(c.mechanism, mechanism);
      // Resolves on the result, rejects on an error or no answer.
      await withTimeout(c.client.ping('localhost'), 10000, 'stanza ping');
      await c.stop();
    });
  }

  it('Strophe over BOSH and xmpp.js over WebSocket exchange 100 messages each way, in order', async () => {
    const a = await loginStrophe({ service: gw.boshUrl, username: 'alice', password: users.alice });
    const b = await loginXmppJs({ service: gw.wsUrl, username: 'bob', password: users.bob });
    const tag = crypto.randomBytes(3).toString('hex');
    const mine = (prefix) => (s) => s.name === 'message' && (s.body ?? '').startsWith(`${prefix}-${tag}-`);
    const sendA = (async () => {
      for (let i = 0; i < N_MESSAGES; i++) {
        await a.sendMessage(b.jid, `a2b-${tag}-${i}`);
        if (i % 10 === 9) await sleep(5);
      }
    })();
    const sendB = (async () => {
      for (let i = 0; i < N_MESSAGES; i++) await b.sendMessage(a.jid, `b2a-${tag}-${i}`);
    })();
    await Promise.all([sendA, sendB]);
    const atB = await b.waitForCount(mine('a2b'), N_MESSAGES, 30000, 'messages from BOSH');
    const atA = await a.waitForCount(mine('b2a'), N_MESSAGES, 30000, 'messages over BOSH');
    const expect = (prefix) => Array.from({ length: N_MESSAGES }, (_, i) => `${prefix}-${tag}-${i}`);
    assert.deepEqual(atB.map((s) => s.body), expect('a2b'), 'BOSH -> WebSocket: all, in order');
    assert.deepEqual(atA.map((s) => s.body), expect('b2a'), 'WebSocket -> BOSH: all, in order');
    await a.stop();
    await b.stop();
  });

  it('Stanza over BOSH and xmpp.js over WebSocket exchange 100 messages each way, none lost', async () => {
    const a = await loginStanza({ service: gw.boshUrl, username: 'carol', password: users.carol, mechanism: 'SCRAM-SHA-1' });
    const b = await loginXmppJs({ service: gw.wsUrl, username: 'bob', password: users.bob });
    const tag = crypto.randomBytes(3).toString('hex');
    for (let i = 0; i < N_MESSAGES; i++) {
      a.client.sendMessage({ to: b.jid, type: 'chat', body: `c2b-${tag}-${i}` });
      await b.sendMessage(a.jid, `b2c-${tag}-${i}`);
    }
    const atB = await b.waitForCount((s) => s.name === 'message' && (s.body ?? '').startsWith(`c2b-${tag}-`), N_MESSAGES, 30000);
    const deadline = Date.now() + 30000;
    const atA = () => a.messages.filter((m) => m.body.startsWith(`b2c-${tag}-`));
    while (atA().length < N_MESSAGES && Date.now() < deadline) await sleep(50);
    const want = (p) => new Set(Array.from({ length: N_MESSAGES }, (_, i) => `${p}-${tag}-${i}`));
    assert.deepEqual(new Set(atB.map((s) => s.body)), want('c2b'), 'Stanza BOSH -> WebSocket: none lost');
    assert.deepEqual(new Set(atA().map((m) => m.body)), want('b2c'), 'WebSocket -> Stanza BOSH: none lost');
    assert.equal(atA().length, N_MESSAGES, 'no duplicates');
    await a.stop();
    await b.stop();
  });

  it('presence over BOSH: own presence, directed presence both ways', async () => {
    const a = await loginStrophe({ service: gw.boshUrl, username: 'alice', password: users.alice });
    const b = await loginXmppJs({ service: gw.wsUrl, username: 'bob', password: users.bob });
    await goOnline(a);
    const atB = b.waitFor((s) => s.name === 'presence' && s.from === a.jid, 10000, 'presence from BOSH');
    await a.sendRaw(`<presence to='${b.jid}'><status>from bosh</status></presence>`);
    const p1 = await atB;
    assert.match(p1.xml, /from bosh/);
    const atA = a.waitFor((s) => s.name === 'presence' && s.from === b.jid, 10000, 'presence over BOSH');
    await b.sendRaw(`<presence to='${a.jid}'><status>from ws</status></presence>`);
    const p2 = await atA;
    assert.match(p2.xml, /from ws/);
    await a.stop();
    await b.stop();
  });

  it('roster over BOSH: get, set, push, get', async () => {
    const a = await loginStrophe({ service: gw.boshUrl, username: 'alice', password: users.alice });
    // Roster pushes go to resources that asked for the roster (RFC 6121 section 2.1.6).
    const first = await a.iq(`<iq type='get'><query xmlns='jabber:iq:roster'/></iq>`);
    assert.equal(first.type, 'result');
    const name = `Carol ${crypto.randomBytes(2).toString('hex')}`;
    const push = a.waitFor((s) => s.name === 'iq' && s.type === 'set' && /jabber:iq:roster/.test(s.xml) && s.xml.includes(name), 10000, 'roster push');
    const set = await a.iq(`<iq type='set'><query xmlns='jabber:iq:roster'><item jid='carol@localhost' name='${name}'/></query></iq>`);
    assert.equal(set.type, 'result');
    await push;
    const got = await a.iq(`<iq type='get'><query xmlns='jabber:iq:roster'/></iq>`);
    assert.equal(got.type, 'result');
    assert.match(got.xml, /jid="carol@localhost"|jid='carol@localhost'/);
    assert.ok(got.xml.includes(name), got.xml);
    await a.stop();
  });

  it('pubsub over BOSH: create, subscribe, receive an event published over WebSocket', async () => {
    const a = await loginStrophe({ service: gw.boshUrl, username: 'alice', password: users.alice });
    const b = await loginXmppJs({ service: gw.wsUrl, username: 'bob', password: users.bob });
    const svc = stack.prosody.pubsubDomain;
    const node = `bosh-${crypto.randomBytes(4).toString('hex')}`;
    const created = await a.iq(`<iq type='set' to='${svc}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='${node}'/><configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field var='pubsub#publish_model'><value>open</value></field></x></configure></pubsub></iq>`);
    assert.equal(created.type, 'result', created.xml);
    const sub = await a.iq(`<iq type='set' to='${svc}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='${node}' jid='${a.jid}'/></pubsub></iq>`);
    assert.equal(sub.type, 'result', sub.xml);
    const event = a.waitFor((s) => s.name === 'message' && s.xml.includes('pubsub#event') && s.xml.includes('bosh-item-1'), 10000, 'pubsub event over BOSH');
    const pub = await b.iq(`<iq type='set' to='${svc}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='${node}'><item id='bosh-item-1'><entry xmlns='urn:example:test'>hello over bosh</entry></item></publish></pubsub></iq>`);
    assert.equal(pub.type, 'result', pub.xml);
    const ev = await event;
    assert.match(ev.xml, /hello over bosh/);
    const items = await a.iq(`<iq type='get' to='${svc}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='${node}'/></pubsub></iq>`);
    assert.equal(items.type, 'result');
    assert.match(items.xml, /bosh-item-1/);
    await a.stop();
    await b.stop();
  });
});
