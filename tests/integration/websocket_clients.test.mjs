// Real client libraries through the gateway's WebSocket transport to a real Prosody: @xmpp/client
// and Strophe.js log in (SASL PLAIN and SCRAM-SHA-1), exchange messages without loss or reordering,
// use the roster, see each other's presence and use pubsub.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack } from './lib/stack.mjs';
import { login, goOnline, stopAllClients } from './lib/clients.mjs';

const T = { timeout: 30000 };
const PUBSUB_NS = 'http://jabber.org/protocol/pubsub';
const EVENT_NS = 'http://jabber.org/protocol/pubsub#event';
const LIBS = ['xmpp.js', 'strophe'];

// Accounts per library so that rosters and subscriptions of one library's tests do not meet the
// other's.
const USERS = {};
for (const lib of LIBS) {
  const p = lib === 'xmpp.js' ? 'x' : 's';
  USERS[`${p}alice`] = `${p}alice-pw-1`;
  USERS[`${p}bob`] = `${p}bob-pw-2`;
}
USERS.mixa = 'mixa-pw';
USERS.mixb = 'mixb-pw';

describe('client libraries over the gateway WebSocket', { timeout: 400000 }, () => {
  let stack;

  before(async () => {
    stack = await startStack({ prosody: { users: USERS } });
  });

  after(async () => {
    const problem = await stack?.stop();
    if (problem) assert.fail(problem);
  });

  const user = (name) => ({ username: name, password: stack.prosody.users[name] });

  for (const lib of LIBS) {
    const p = lib === 'xmpp.js' ? 'x' : 's';
    const alice = `${p}alice`;
    const bob = `${p}bob`;

    describe(lib, () => {
      after(() => stopAllClients());

      for (const mechanism of ['PLAIN', 'SCRAM-SHA-1']) {
        it(`logs in with SASL ${mechanism}`, T, async () => {
          const c = await login(lib, { service: stack.gw.wsUrl, ...user(alice), mechanism, resource: `m-${mechanism}` });
          try {
            assert.equal(c.jid, `${alice}@localhost/m-${mechanism}`);
            assert.equal(c.mechanism, mechanism);
            const r = await c.iq('<iq type="get" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>');
            assert.equal(r.type, 'result');
          } finally {
            await c.stop();
          }
        });
      }

      it('refuses a wrong password', T, async () => {
        await assert.rejects(
          login(lib, { service: stack.gw.wsUrl, username: alice, password: 'wrong', mechanism: 'SCRAM-SHA-1' }),
          /not-authorized|AUTHFAIL/,
        );
      });

      it('two users exchange 100 messages each way, none lost, order kept', { timeout: 60000 }, async () => {
        const a = await login(lib, { service: stack.gw.wsUrl, ...user(alice), resource: 'chat' });
        const b = await login(lib, { service: stack.gw.wsUrl, ...user(bob), resource: 'chat' });
        try {
          const N = 100;
          const sends = [];
          for (let i = 0; i < N; i++) {
            sends.push(a.sendMessage(b.jid, `a-to-b ${i}`));
            sends.push(b.sendMessage(a.jid, `b-to-a ${i}`));
          }
          await Promise.all(sends);
          const isFrom = (from, prefix) => (s) => s.name === 'message' && s.from === from && s.body?.startsWith(prefix);
          const atB = await b.waitForCount(isFrom(a.jid, 'a-to-b '), N, 30000, 'messages at bob');
          const atA = await a.waitForCount(isFrom(b.jid, 'b-to-a '), N, 30000, 'messages at alice');
          assert.deepEqual(atB.map((s) => s.body), Array.from({ length: N }, (_, i) => `a-to-b ${i}`));
          assert.deepEqual(atA.map((s) => s.body), Array.from({ length: N }, (_, i) => `b-to-a ${i}`));
          assert.ok(atB.every((s) => s.type === 'chat' && s.to === b.jid));
        } finally {
          await Promise.all([a.stop(), b.stop()]);
        }
      });

      it('carries messages of 1 KiB to 200 KiB both ways', T, async () => {
        const a = await login(lib, { service: stack.gw.wsUrl, ...user(alice), resource: 'big' });
        const b = await login(lib, { service: stack.gw.wsUrl, ...user(bob), resource: 'big' });
        try {
          for (const kib of [1, 8, 64, 200]) {
            const body = `${kib}:${'0123456789abcdef'.repeat(64 * kib)}`;
            await a.sendMessage(b.jid, body);
            const got = await b.waitFor((s) => s.name === 'message' && s.body?.startsWith(`${kib}:`), 10000, `${kib} KiB message at bob`);
            assert.ok(got.body === body, `${got.body.length} chars arrived, ${body.length} sent`);
            await b.sendMessage(a.jid, body);
            const back = await a.waitFor((s) => s.name === 'message' && s.body?.startsWith(`${kib}:`), 10000, `${kib} KiB message at alice`);
            assert.ok(back.body === body, `${back.body.length} chars arrived, ${body.length} sent`);
          }
        } finally {
          await Promise.all([a.stop(), b.stop()]);
        }
      });

      it('sets and gets the roster', T, async () => {
        const a = await login(lib, { service: stack.gw.wsUrl, ...user(alice), resource: 'roster' });
        try {
          // Roster pushes go to resources that have asked for the roster (RFC 6121 2.1.6).
          const first = await a.iq('<iq type="get"><query xmlns="jabber:iq:roster"/></iq>');
          assert.equal(first.type, 'result', first.xml);
          const set = await a.iq(`<iq type="set"><query xmlns="jabber:iq:roster"><item jid="carol@localhost" name="Carol ${lib}"><group>Friends</group></item></query></iq>`);
          assert.equal(set.type, 'result', set.xml);
          const push = await a.waitFor((s) => s.name === 'iq' && s.type === 'set' && s.xml.includes('carol@localhost'), 5000, 'roster push');
          assert.match(push.xml, /jabber:iq:roster/);
          const get = await a.iq('<iq type="get"><query xmlns="jabber:iq:roster"/></iq>');
          assert.equal(get.type, 'result');
          assert.match(get.xml, /<item[^>]*jid="carol@localhost"/);
          assert.match(get.xml, new RegExp(`name="Carol ${lib.replace('.', '\\.')}"`));
          assert.match(get.xml, /<group>Friends<\/group>/);
        } finally {
          await a.stop();
        }
      });

      it('sees presence both ways after a mutual subscription', T, async () => {
        const a = await login(lib, { service: stack.gw.wsUrl, ...user(alice), resource: 'pres' });
        const b = await login(lib, { service: stack.gw.wsUrl, ...user(bob), resource: 'pres' });
        try {
          await goOnline(a);
          await goOnline(b);
          const aBare = `${alice}@localhost`;
          const bBare = `${bob}@localhost`;
          await a.sendRaw(`<presence to="${bBare}" type="subscribe"/>`);
          await b.waitFor((s) => s.name === 'presence' && s.type === 'subscribe' && s.from?.startsWith(aBare), 5000, 'subscribe at bob');
          await b.sendRaw(`<presence to="${aBare}" type="subscribed"/>`);
          await b.sendRaw(`<presence to="${aBare}" type="subscribe"/>`);
          await a.waitFor((s) => s.name === 'presence' && s.type === 'subscribe' && s.from?.startsWith(bBare), 5000, 'subscribe at alice');
          await a.sendRaw(`<presence to="${bBare}" type="subscribed"/>`);
          const seenByA = await a.waitFor((s) => s.name === 'presence' && s.from === b.jid && s.type === undefined, 5000, "bob's presence at alice");
          const seenByB = await b.waitFor((s) => s.name === 'presence' && s.from === a.jid && s.type === undefined, 5000, "alice's presence at bob");
          assert.ok(seenByA.to?.startsWith(`${alice}@localhost`), seenByA.xml);
          assert.ok(seenByB.to?.startsWith(`${bob}@localhost`), seenByB.xml);

          // A status change travels too, and going offline is seen.
          await a.sendRaw('<presence><show>away</show><status>lunch</status></presence>');
          const away = await b.waitFor((s) => s.name === 'presence' && s.from === a.jid && s.xml.includes('<status>lunch</status>'), 5000, 'away presence at bob');
          assert.match(away.xml, /<show>away<\/show>/);
          await a.sendRaw('<presence type="unavailable"/>');
          await b.waitFor((s) => s.name === 'presence' && s.from === a.jid && s.type === 'unavailable', 5000, 'unavailable at bob');
        } finally {
          await Promise.all([a.stop(), b.stop()]);
        }
      });

      it('creates a pubsub node, subscribes, publishes, and the subscriber gets the event', T, async () => {
        const a = await login(lib, { service: stack.gw.wsUrl, ...user(alice), resource: 'ps' });
        const b = await login(lib, { service: stack.gw.wsUrl, ...user(bob), resource: 'ps' });
        const node = `news-${lib.replace('.', '')}`;
        const ps = stack.prosody.pubsubDomain;
        try {
          const created = await a.iq(`<iq type="set" to="${ps}"><pubsub xmlns="${PUBSUB_NS}"><create node="${node}"/></pubsub></iq>`);
          assert.equal(created.type, 'result', created.xml);
          const sub = await b.iq(`<iq type="set" to="${ps}"><pubsub xmlns="${PUBSUB_NS}"><subscribe node="${node}" jid="${b.jid}"/></pubsub></iq>`);
          assert.equal(sub.type, 'result', sub.xml);
          assert.match(sub.xml, /subscription="subscribed"/);
          const pub = await a.iq(`<iq type="set" to="${ps}"><pubsub xmlns="${PUBSUB_NS}"><publish node="${node}"><item id="item-1"><entry xmlns="urn:xmppgw:test">hello &amp; welcome</entry></item></publish></pubsub></iq>`);
          assert.equal(pub.type, 'result', pub.xml);
          const ev = await b.waitFor((s) => s.name === 'message' && s.from === ps && s.xml.includes(EVENT_NS), 5000, 'pubsub event');
          assert.match(ev.xml, new RegExp(`<items node="${node}"`));
          assert.match(ev.xml, /<item id="item-1"/);
          assert.match(ev.xml, /<entry xmlns="urn:xmppgw:test">hello &amp; welcome<\/entry>/);
        } finally {
          await Promise.all([a.stop(), b.stop()]);
        }
      });
    });
  }

  it('@xmpp/client and Strophe.js talk to each other through the gateway', T, async () => {
    const a = await login('xmpp.js', { service: stack.gw.wsUrl, ...user('mixa'), resource: 'x' });
    const b = await login('strophe', { service: stack.gw.wsUrl, ...user('mixb'), resource: 's' });
    try {
      await a.sendMessage(b.jid, 'from xmpp.js <&> ünïcödé');
      await b.sendMessage(a.jid, 'from strophe 🎉');
      const atB = await b.waitFor((s) => s.name === 'message' && s.from === a.jid, 5000);
      const atA = await a.waitFor((s) => s.name === 'message' && s.from === b.jid, 5000);
      assert.equal(atB.body, 'from xmpp.js <&> ünïcödé');
      assert.equal(atA.body, 'from strophe 🎉');
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
