// Visitor mode end to end: the gateway with `visitors` configured in front of the real Prosody.
// Unmodified Strophe.js (WebSocket and BOSH) and @xmpp/client log in anonymously to the visitor
// domain and are bound as the shared account with a generated `visitor-<16 hex>` resource; a
// visitor's chat message is refused with `forbidden` (type `auth`) and never delivered; a visitor's
// pubsub subscription receives events and is undone when its session ends (cleanly or by a dropped
// connection); two visitors get different resources and cannot message each other; the log names
// the refusal and never holds the shared password.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startStack } from './lib/stack.mjs';
import { loginStrophe, loginXmppJs, goOnline, stopAllClients, sleep } from './lib/clients.mjs';

const T = { timeout: 30000 };
const PUBSUB_NS = 'http://jabber.org/protocol/pubsub';
const OWNER_NS = 'http://jabber.org/protocol/pubsub#owner';
const EVENT_NS = 'http://jabber.org/protocol/pubsub#event';
const STANZAS_NS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
const VISITOR_DOMAIN = 'visitors.localhost';
const SITE_PASSWORD = 'site-Shared-Secret-7f3a9c';
const USERS = { alice: 'alice-secret-1', bob: 'bob-secret-2', site: SITE_PASSWORD };
const VISITOR_JID = /^site@localhost\/visitor-[0-9a-f]{16}$/;
// How long a stanza that must not arrive is waited for.
const QUIET_MS = 1500;

describe('visitor mode against the real Prosody', { timeout: 300000 }, () => {
  let stack;
  let dir;
  let ps;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-visitors-'));
    const passwordFile = path.join(dir, 'site.pass');
    await writeFile(passwordFile, `${SITE_PASSWORD}\n`, { mode: 0o600 });
    stack = await startStack({
      // Only alice administers the server (and so may create nodes); the shared account is an
      // ordinary user.
      prosody: { users: USERS, admins: ['alice@localhost'] },
      gateway: {
        config: {
          visitors: {
            domain: VISITOR_DOMAIN,
            jid: 'site@localhost',
            password_file: passwordFile,
            allow: { pubsub: ['pubsub.localhost'] },
          },
        },
      },
    });
    ps = stack.prosody.pubsubDomain;
  });

  after(async () => {
    await stopAllClients();
    const problem = await stack?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    if (problem) assert.fail(problem);
  });

  const user = (name) => ({ username: name, password: stack.prosody.users[name] });
  const visitorStrophe = (service, extra = {}) => loginStrophe({
    service, domain: VISITOR_DOMAIN, anonymous: true, ...extra,
  });
  const visitorXmppJs = (extra = {}) => loginXmppJs({ service: stack.gw.wsUrl, domain: VISITOR_DOMAIN, ...extra });

  let nodeCount = 0;
  async function createNode(owner) {
    const node = `visitors-${++nodeCount}`;
    const created = await owner.iq(`<iq type="set" to="${ps}"><pubsub xmlns="${PUBSUB_NS}"><create node="${node}"/></pubsub></iq>`);
    assert.equal(created.type, 'result', created.xml);
    return node;
  }

  async function subscribe(v, node) {
    const sub = await v.iq(`<iq type="set" to="${ps}"><pubsub xmlns="${PUBSUB_NS}"><subscribe node="${node}" jid="${v.jid}"/></pubsub></iq>`);
    assert.equal(sub.type, 'result', sub.xml);
    assert.match(sub.xml, /subscription="subscribed"/);
  }

  // The node's subscriber JIDs as its owner sees them (XEP-0060 8.8.1).
  async function subscribers(owner, node) {
    const r = await owner.iq(`<iq type="get" to="${ps}"><pubsub xmlns="${OWNER_NS}"><subscriptions node="${node}"/></pubsub></iq>`);
    assert.equal(r.type, 'result', r.xml);
    return [...r.xml.matchAll(/<subscription\b[^>]*\bjid="([^"]*)"/g)].map((m) => m[1]);
  }

  async function waitUnsubscribed(owner, node, jid, ms = 5000) {
    const deadline = Date.now() + ms;
    let subs;
    for (;;) {
      subs = await subscribers(owner, node);
      if (!subs.includes(jid)) return;
      if (Date.now() > deadline) break;
      await sleep(100);
    }
    assert.fail(`${jid} still subscribed to ${node} ${ms} ms after its session ended: ${JSON.stringify(subs)}`);
  }

  function assertForbidden(answer, name) {
    assert.equal(answer.name, name, answer.xml);
    assert.equal(answer.type, 'error', answer.xml);
    assert.match(answer.xml, /<error\b[^>]*\btype="auth"/, answer.xml);
    assert.match(answer.xml, new RegExp(`<forbidden xmlns="${STANZAS_NS}"/>`), answer.xml);
  }

  for (const transport of ['WebSocket', 'BOSH']) {
    it(`Strophe.js over ${transport} logs in anonymously and is bound as the shared account`, T, async () => {
      const service = transport === 'WebSocket' ? stack.gw.wsUrl : stack.gw.boshUrl;
      const v = await visitorStrophe(service);
      try {
        assert.match(v.jid, VISITOR_JID);
        assert.equal(v.mechanism, 'ANONYMOUS');
        const r = await v.iq('<iq type="get" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>');
        assert.equal(r.type, 'result', r.xml);
      } finally {
        await v.stop();
      }
    });
  }

  it('the SASL offer on the visitor domain is ANONYMOUS alone', T, async () => {
    const v = await visitorStrophe(stack.gw.wsUrl);
    try {
      const features = v.transportLog.filter(([dir, x]) => dir === 'in' && x.includes('<mechanisms'));
      assert.equal(features.length, 1, JSON.stringify(v.transportLog));
      const mechs = [...features[0][1].matchAll(/<mechanism>([^<]*)<\/mechanism>/g)].map((m) => m[1]);
      assert.deepEqual(mechs, ['ANONYMOUS']);
    } finally {
      await v.stop();
    }
  });

  it('@xmpp/client logs in anonymously; the resource it asked for is replaced', T, async () => {
    const v = await visitorXmppJs({ resource: 'my-own-resource' });
    try {
      assert.equal(v.mechanism, 'ANONYMOUS');
      assert.match(v.jid, VISITOR_JID);
      assert.doesNotMatch(v.jid, /my-own-resource/);
    } finally {
      await v.stop();
    }
  });

  it('Strophe.js asking for a resource gets a generated one as well', T, async () => {
    const v = await visitorStrophe(stack.gw.boshUrl, { resource: 'strophe-res' });
    try {
      assert.match(v.jid, VISITOR_JID);
    } finally {
      await v.stop();
    }
  });

  for (const kind of ['strophe-ws', 'xmpp.js']) {
    it(`a visitor's chat message (${kind}) is refused with forbidden/auth and never reaches bob`, T, async () => {
      const bob = await loginXmppJs({ service: stack.gw.wsUrl, ...user('bob'), resource: `bob-${kind}` });
      await goOnline(bob);
      const v = kind === 'xmpp.js' ? await visitorXmppJs() : await visitorStrophe(stack.gw.wsUrl);
      try {
        const body = `hello bob from a visitor via ${kind}`;
        for (const to of [bob.jid, 'bob@localhost']) {
          const id = `vm-${kind}-${to.length}`;
          await v.sendMessage(to, body, { id });
          const answer = await v.waitFor((s) => s.name === 'message' && s.id === id, 5000, `error for ${id}`);
          assertForbidden(answer, 'message');
          assert.equal(answer.from, to);
        }
        await sleep(QUIET_MS);
        const got = bob.received.filter((s) => s.name === 'message' && (s.body === body || s.from?.startsWith('site@')));
        assert.deepEqual(got.map((s) => s.xml), []);
      } finally {
        await Promise.all([v.stop(), bob.stop()]);
      }
    });
  }

  for (const kind of ['strophe-ws', 'strophe-bosh', 'xmpp.js']) {
    it(`a visitor (${kind}) subscribed to a node receives the admin's publish; the subscription ends with a clean close`, T, async () => {
      const admin = await loginXmppJs({ service: stack.gw.wsUrl, ...user('alice'), resource: `admin-${kind}` });
      const v = kind === 'xmpp.js' ? await visitorXmppJs()
        : await visitorStrophe(kind === 'strophe-ws' ? stack.gw.wsUrl : stack.gw.boshUrl);
      try {
        const node = await createNode(admin);
        await subscribe(v, node);
        assert.ok((await subscribers(admin, node)).includes(v.jid), 'subscribed visitor listed by the owner');
        const pub = await admin.iq(`<iq type="set" to="${ps}"><pubsub xmlns="${PUBSUB_NS}"><publish node="${node}"><item id="it-1"><entry xmlns="urn:xmppgw:test">for visitors</entry></item></publish></pubsub></iq>`);
        assert.equal(pub.type, 'result', pub.xml);
        const ev = await v.waitFor((s) => s.name === 'message' && s.from === ps && s.xml.includes(EVENT_NS), 5000, 'pubsub event');
        assert.match(ev.xml, new RegExp(`<items node="${node}"`));
        assert.match(ev.xml, /<item id="it-1"/);
        assert.match(ev.xml, /for visitors<\/entry>/);
        const jid = v.jid;
        await v.stop();
        await waitUnsubscribed(admin, node, jid);
      } finally {
        await Promise.all([v.stop(), admin.stop()]);
      }
    });
  }

  for (const kind of ['strophe-ws', 'xmpp.js']) {
    it(`a visitor's (${kind}) subscription ends when its connection drops`, T, async () => {
      const admin = await loginXmppJs({ service: stack.gw.wsUrl, ...user('alice'), resource: `admin-drop-${kind}` });
      const v = kind === 'xmpp.js' ? await visitorXmppJs() : await visitorStrophe(stack.gw.wsUrl);
      try {
        const node = await createNode(admin);
        await subscribe(v, node);
        const jid = v.jid;
        assert.ok((await subscribers(admin, node)).includes(jid), 'subscribed visitor listed by the owner');
        const ended = stack.gw.waitForLog(/visitor ended: 1 subscription\(s\) undone/, 5000);
        // No closing handshake: the TCP connection is cut.
        if (kind === 'xmpp.js') v.client.socket.socket.terminate();
        else v.conn._proto.socket.terminate();
        await ended;
        await waitUnsubscribed(admin, node, jid);
      } finally {
        await Promise.all([v.stop(), admin.stop()]);
      }
    });
  }

  it('two visitors at once get different resources and cannot message each other', T, async () => {
    const a = await visitorStrophe(stack.gw.wsUrl);
    const b = await visitorXmppJs();
    try {
      assert.match(a.jid, VISITOR_JID);
      assert.match(b.jid, VISITOR_JID);
      assert.notEqual(a.jid, b.jid);
      for (const [from, to] of [[a, b], [b, a]]) {
        const id = `vv-${from.kind}`;
        const body = `visitor to visitor from ${from.kind}`;
        await from.sendMessage(to.jid, body, { id });
        const answer = await from.waitFor((s) => s.name === 'message' && s.id === id, 5000, `error for ${id}`);
        assertForbidden(answer, 'message');
      }
      await sleep(QUIET_MS);
      for (const c of [a, b]) {
        const got = c.received.filter((s) => s.name === 'message' && s.body !== undefined);
        assert.deepEqual(got.map((s) => s.xml), []);
      }
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('the log names the refusal and never holds the shared password', T, async () => {
    const log = stack.gw.logText();
    assert.match(log, /visitor policy: refused a message to bob@localhost/);
    assert.ok(!log.includes(SITE_PASSWORD), 'the shared password is in the log');
    const plain = Buffer.from(`\0site\0${SITE_PASSWORD}`).toString('base64');
    assert.ok(!log.includes(plain), 'the SASL PLAIN of the shared account is in the log');
    // Prosody 0.12 offers SCRAM-SHA-1 and PLAIN: an anonymous visitor's upstream login is SCRAM.
    assert.match(log, /upstream SASL SCRAM-SHA-1 as site@localhost/);
    assert.doesNotMatch(log, /upstream SASL PLAIN/);
  });
});
