// XEP-0198 through the gateway: a WebSocket that drops without <close/> leaves its upstream stream
// resumable (the gateway closes the upstream TCP connection without </stream:stream>), so a client
// that reconnects and resumes receives every stanza sent meanwhile, once and in order; the session
// that resumed takes the JID of the one it resumed (no bind result follows a resumption). A clean
// close still ends the stream and leaves nothing resumable.
// Real parts: Prosody with mod_smacks, @xmpp/client with its stream-management and reconnect.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { client as xmppClient } from '@xmpp/client';
import { startStack } from './lib/stack.mjs';
import { login, stopAllClients } from './lib/clients.mjs';

const T = { timeout: 60000 };
const USERS = { sma: 'sma-pw-1', smb: 'smb-pw-2', smc: 'smc-pw-3' };

function until(cond, ms, what) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      if (cond()) return resolve();
      if (Date.now() - t0 > ms) return reject(new Error(`timed out after ${ms} ms: ${what}`));
      setTimeout(tick, 25);
    };
    tick();
  });
}

// An @xmpp/client with stream management (on by default when the server offers it) and its
// reconnect module slowed down, so that messages can be sent while it is away.
async function smClient(stack, name, resource, reconnectDelayMs) {
  const c = xmppClient({
    service: stack.gw.wsUrl,
    domain: 'localhost',
    resource,
    credentials: async (auth) => auth({ username: name, password: USERS[name] }, 'PLAIN'),
  });
  c.reconnect.delay = reconnectDelayMs;
  const bodies = [];
  c.on('stanza', (el) => {
    if (el.name === 'message' && el.getChildText('body')) bodies.push(el.getChildText('body'));
  });
  c.on('error', () => {}); // a dropped socket is reported as an error: expected here
  let resumed = 0;
  c.streamManagement.on('resumed', () => { resumed++; });
  await c.start();
  await until(() => c.streamManagement.enabled && c.streamManagement.id, 10000, 'sm enabled');
  return { c, bodies, get resumed() { return resumed; } };
}

// Drop the TCP connection under the WebSocket: no close frame, no <close/>.
function dropSocket(c) {
  const ws = c.socket.socket; // @xmpp/websocket's Socket wraps a `ws` WebSocket
  ws._socket.destroy();
}

async function metric(stack, name) {
  const text = await (await fetch(`${stack.gw.adminUrl}/metrics`)).text();
  const m = text.match(new RegExp(`^${name} (\\d+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

describe('XEP-0198 stream management through the gateway', { timeout: 300000 }, () => {
  let stack;

  before(async () => {
    stack = await startStack({
      prosody: { users: USERS, smacks: true, extraGlobal: 'smacks_hibernation_time = 60' },
    });
  });

  after(async () => {
    await stopAllClients();
    const problem = await stack?.stop();
    if (problem) assert.fail(problem);
  });

  it('resumes after the WebSocket dropped: all 20 messages sent meanwhile arrive once, in order', T, async () => {
    const a = await smClient(stack, 'sma', 'phone', 4000);
    const jid = a.c.jid.toString();
    assert.equal(jid, 'sma@localhost/phone');
    const b = await login('xmpp.js', { service: stack.gw.wsUrl, username: 'smb', password: USERS.smb, resource: 'desk' });
    try {
      dropSocket(a.c);
      // The gateway sees the connection go and leaves the upstream stream to the server.
      await until(() => a.c.status === 'disconnect', 5000, 'client noticed the drop');
      await new Promise((r) => setTimeout(r, 500));
      for (let i = 0; i < 20; i++) await b.sendMessage(jid, `m${i}`);
      await until(() => a.resumed === 1, 20000, 'stream resumed');
      await until(() => a.bodies.length >= 20, 10000, `20 messages (got ${a.bodies.length})`);
      await new Promise((r) => setTimeout(r, 500)); // any duplicate would arrive now
      assert.deepEqual(a.bodies, Array.from({ length: 20 }, (_, i) => `m${i}`));
      assert.equal(a.c.jid.toString(), jid);
      // The session that resumed carries the JID of the one it resumed: a message sent to the
      // full JID now still arrives, and the metrics counted the drop and the resumption.
      await b.sendMessage(jid, 'after');
      await until(() => a.bodies.includes('after'), 10000, 'message after the resumption');
      assert.equal(await metric(stack, 'xmppgw_resumable_drops_total'), 1);
      assert.equal(await metric(stack, 'xmppgw_resumed_total'), 1);
      const log = stack.gw.logText();
      assert.match(log, /upstream left resumable/);
      assert.match(log, /sma@localhost\/phone.*resumed a stream \(XEP-0198\)/);
    } finally {
      await b.stop();
      a.c.reconnect.stop();
      await a.c.stop().catch(() => {});
    }
  });

  it('a clean close ends the stream: nothing is left resumable', T, async () => {
    const drops = await metric(stack, 'xmppgw_resumable_drops_total');
    const a = await smClient(stack, 'smc', 'tab', 200);
    a.c.reconnect.stop();
    await a.c.stop();
    await until(() => /smc@localhost\/tab.*session ended: closed by the client/.test(stack.gw.logText()),
      5000, 'the gateway saw a clean close');
    assert.equal(await metric(stack, 'xmppgw_resumable_drops_total'), drops);
  });
});
