// The bad-input catalogue (tests/data/bad-input/*.json, described in its README.md): every case
// sends its exact bytes to BOSH, WebSocket, the admin port or --check-config and checks its exact
// answer, while two healthy sessions stay open (alice with @xmpp/client over WebSocket, bob with
// Strophe.js over BOSH). After the whole catalogue they must still answer a ping and exchange a
// message both ways, must have received nothing they did not ask for, the gateway's log must hold
// no raw control character, and the gateway must exit 0 (no sanitizer report) on SIGTERM.
// A case marked "known_gap" (the gateway differs from the spec) runs like any other and is
// reported as skipped with its reason while it still differs; once it answers as the spec says,
// the case fails until the mark is removed.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startStack } from './lib/stack.mjs';
import { SOURCE_DIR } from './lib/gateway.mjs';
import { loginXmppJs, loginStrophe, goOnline, stopAllClients, nextId } from './lib/clients.mjs';
import {
  loadCatalogue, runHttpCase, runUpgradeCase, runFramesCase, runConfigCase, rawControlLines,
} from './lib/badinput.mjs';

const DATA_DIR = path.join(SOURCE_DIR, 'tests', 'data', 'bad-input');
const TOKEN = 'bad-input-admin-token';
const ORIGIN_OK = 'http://allowed.example';

// Every case comes from 127.0.0.1, most of them with a session of their own: the per-address
// limits (limits.test.mjs checks them) must not be what answers.
const PER_ADDRESS = {
  per_address_unauthenticated: 1000, per_address_rate: 1000, per_address_burst: 1000, per_address_pending: 1000,
};

// Small limits, so that the cases that pass them stay small; the gateway (not Prosody, which
// refuses 10,000 bytes before authentication) is the one that must say no.
const GATEWAY_CONFIG = {
  origins: [ORIGIN_OK, 'same-host', 'localhost'],
  admin: { token: TOKEN },
  bosh: { max_body: 16384, max_wait: 5, routes: ['xmpp:localhost:5222'] },
  limits: { max_stanza: 8192, max_depth: 64, max_attrs: 64, ...PER_ADDRESS },
};

const catalogue = await loadCatalogue(DATA_DIR);
const RUNNERS = {
  bosh: (c, env) => runHttpCase(c, { ...env, kind: 'bosh' }),
  admin: (c, env) => runHttpCase(c, { ...env, kind: 'admin' }),
  websocket: (c, env) => (c.send.frames ? runFramesCase(c, env) : runUpgradeCase(c, env)),
  config: (c, env) => runConfigCase(c, env),
};

describe('bad input', { timeout: 180000 }, () => {
  let stack;
  let gw;
  let alice;
  let bob;
  let configDir;
  let seenBefore; // stanzas each healthy client had received when the catalogue started
  const cleanups = [];
  const PING = '<iq type="get" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>';

  before(async () => {
    configDir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-badinput-'));
    stack = await startStack({ gateway: { config: GATEWAY_CONFIG } });
    gw = stack.gw;
    const { users } = stack.prosody;
    [alice, bob] = await Promise.all([
      loginXmppJs({ service: gw.wsUrl, username: 'alice', password: users.alice, resource: 'healthy', mechanism: 'PLAIN' }),
      loginStrophe({ service: gw.boshUrl, username: 'bob', password: users.bob, resource: 'healthy', mechanism: 'PLAIN' }),
    ]);
    await Promise.all([goOnline(alice), goOnline(bob)]);
    seenBefore = { alice: alice.received.length, bob: bob.received.length };
  });

  after(async () => {
    await Promise.allSettled(cleanups);
    await stopAllClients();
    const problem = await stack?.stop();
    if (configDir) await rm(configDir, { recursive: true, force: true });
    assert.equal(problem, null, problem ?? '');
  });

  for (const { group, file, kind, cases } of catalogue) {
    const run = RUNNERS[kind];
    if (!run) throw new Error(`${file}: no runner for kind "${kind}"`);
    describe(`${group} (${file})`, () => {
      cases.forEach((c, index) => {
        it(c.name, { timeout: 30000 }, async (t) => {
          const vars = { port: gw.port, adminPort: gw.adminPort, token: TOKEN };
          let failure = null;
          try {
            await run(c, { gw, vars, cleanups, dir: configDir, index: `${group}-${index}` });
          } catch (err) {
            failure = err;
          }
          if (c.known_gap) {
            if (failure) {
              t.skip(`known gap: ${c.known_gap} (now: ${String(failure.message).split('\n')[0].slice(0, 300)})`);
              return;
            }
            assert.fail(`marked known_gap ("${c.known_gap}") but the answer is now the expected one: remove the mark`);
          }
          if (failure) throw failure;
        });
      });
    });
  }

  describe('afterwards', () => {
    it('the healthy sessions still answer a ping and exchange a message both ways', { timeout: 30000 }, async () => {
      await Promise.allSettled(cleanups);
      const [pa, pb] = await Promise.all([alice.iq(PING), bob.iq(PING)]);
      assert.equal(pa.type, 'result', `alice (WebSocket) ping: ${pa.xml}`);
      assert.equal(pb.type, 'result', `bob (BOSH) ping: ${pb.xml}`);
      const toBob = `to-bob-${nextId()}`;
      const toAlice = `to-alice-${nextId()}`;
      await alice.sendMessage(bob.jid, toBob);
      await bob.sendMessage(alice.jid, toAlice);
      await Promise.all([
        bob.waitFor((s) => s.name === 'message' && s.body === toBob, 10000, 'the message from alice'),
        alice.waitFor((s) => s.name === 'message' && s.body === toAlice, 10000, 'the message from bob'),
      ]);
    });

    it('the healthy sessions received nothing they did not ask for', () => {
      for (const [who, c, other] of [['alice', alice, bob], ['bob', bob, alice]]) {
        const since = c.received.slice(seenBefore[who]);
        const unexpected = since.filter((s) => {
          if (s.name === 'iq' && s.type === 'result' && s.from === 'localhost') return false; // the ping
          if (s.name === 'message' && s.from === other.jid && /^to-(alice|bob)-/.test(s.body ?? '')) return false;
          return true;
        });
        assert.deepEqual(unexpected.map((s) => s.xml), [], `${who} received stanzas nobody sent it`);
        assert.equal(since.filter((s) => s.name === 'message').length, 1, `${who}: exactly one message`);
        assert.equal(since.filter((s) => s.name === 'iq').length, 1, `${who}: exactly one iq (the ping's answer)`);
      }
    });

    it('the gateway log holds no raw control character', () => {
      const bad = rawControlLines(gw);
      assert.deepEqual(bad.map((l) => JSON.stringify(l.slice(0, 300))), [], 'log lines with raw control characters');
    });
  });
});
