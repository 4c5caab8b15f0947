// What a WebSocket client sees when the gateway cannot reach its upstream the way it must: an
// untrusted certificate, nothing listening, an upstream that never answers, a domain that is not
// served. Each ends in <stream:error><remote-connection-failed/> (or host-unknown) with a <text/>
// saying why, a log line saying why, and no hang. Also the working upstream TLS modes, as controls.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startProsody } from './lib/prosody.mjs';
import { startGateway, stopGatewayChecked } from './lib/gateway.mjs';
import { closedPort } from './lib/ports.mjs';
import { loginXmppJs, loginStrophe, stopAllClients } from './lib/clients.mjs';
import { connect, openFrame, expectOpen, expectFeatures, expectStreamError } from './lib/wsraw.mjs';

const T = { timeout: 30000 };

// Opens a stream on the gateway and expects it to end with `condition`; returns the <text/> and
// how long it took.
async function openAndExpectError(gw, condition, { to = 'localhost', timeoutMs = 10000 } = {}) {
  const probe = await connect(gw.wsUrl);
  const start = Date.now();
  probe.send(openFrame(to));
  const r = await expectStreamError(probe, condition, { expectOpenFirst: true, timeoutMs });
  return { ...r, ms: Date.now() - start };
}

describe('upstream failures', { timeout: 300000 }, () => {
  const gateways = [];
  let good;      // Prosody with the certificate the gateway is told to trust
  let untrusted; // Prosody serving a certificate the gateway does not trust

  const gateway = async (opts) => {
    const gw = await startGateway(opts);
    gateways.push(gw);
    return gw;
  };

  before(async () => {
    [good, untrusted] = await Promise.all([
      startProsody({ directTls: true }),
      startProsody({ untrustedCert: true }),
    ]);
  });

  after(async () => {
    await stopAllClients();
    const problems = [];
    for (const gw of gateways) {
      const p = await stopGatewayChecked(gw);
      if (p) problems.push(p);
    }
    await Promise.all([good?.stop(), untrusted?.stop()]);
    if (problems.length) assert.fail(problems.join('\n\n'));
  });

  it('control: logs in through STARTTLS with the right CA', T, async () => {
    const gw = await gateway({ prosody: good });
    const c = await loginXmppJs({ service: gw.wsUrl, username: 'alice', password: good.users.alice });
    assert.match(c.jid, /^alice@localhost\//);
    await c.stop();
  });

  it('control: logs in through direct TLS (--upstream-tls direct)', T, async () => {
    const gw = await gateway({ prosody: good, upstream: `127.0.0.1:${good.directTlsPort}`, upstreamTls: 'direct' });
    const c = await loginStrophe({ service: gw.wsUrl, username: 'bob', password: good.users.bob });
    assert.match(c.jid, /^bob@localhost\//);
    await c.stop();
  });

  it('untrusted certificate: remote-connection-failed with a reason, and a log line', T, async () => {
    const gw = await gateway({ prosody: untrusted, caFile: untrusted.caFile });
    assert.notEqual(untrusted.caFile, untrusted.serverCertFile);
    const { text } = await openAndExpectError(gw, 'remote-connection-failed');
    assert.match(text, /certificate|verif|trust/i, `<text/> should say why: "${text}"`);
    const line = await gw.waitForLog(/certificate|verif/i, 5000);
    assert.ok(line);
    // And through a real client library: the login fails with the condition, nothing hangs.
    // (Strophe here: @xmpp/client 0.14 throws an uncaught TypeError on the <close/> that follows a
    // stream error, see tests/README.md.)
    await assert.rejects(
      loginStrophe({ service: gw.wsUrl, username: 'alice', password: untrusted.users.alice, timeoutMs: 10000 }),
      /CONNFAIL: remote-connection-failed/,
    );
  });

  it('certificate for another name: remote-connection-failed, host name mismatch', T, async () => {
    // The chain is trusted (the gateway is given this very certificate as CA) but it names
    // "elsewhere.example", not the XMPP domain "localhost".
    const wrong = await startProsody({ certNames: ['elsewhere.example'] });
    try {
      const gw = await gateway({ prosody: wrong });
      const { text } = await openAndExpectError(gw, 'remote-connection-failed');
      assert.match(text, /hostname mismatch/i, `<text/> should say why: "${text}"`);
      const line = await gw.waitForLog(/hostname mismatch/i, 5000);
      assert.ok(line);
    } finally {
      await wrong.stop();
    }
  });

  it('untrusted certificate: no CA given means the system store, which does not know it either', T, async () => {
    const gw = await gateway({ prosody: untrusted, caFile: null });
    const { text } = await openAndExpectError(gw, 'remote-connection-failed');
    assert.match(text, /certificate|verif|trust/i, `<text/> should say why: "${text}"`);
  });

  it('upstream down (closed port): remote-connection-failed quickly', T, async () => {
    const port = await closedPort();
    const gw = await gateway({ upstream: `127.0.0.1:${port}`, caFile: good.caFile });
    const { text, ms } = await openAndExpectError(gw, 'remote-connection-failed');
    assert.ok(ms < 3000, `took ${ms} ms`);
    assert.match(text, /refused|connect|unreachable/i, `<text/> should say why: "${text}"`);
    await gw.waitForLog(new RegExp(`refused|127\\.0\\.0\\.1:${port}`, 'i'), 5000);
    // The gateway stays healthy and keeps answering.
    const res = await fetch(`${gw.adminUrl}/healthz`);
    assert.equal(res.status, 200);
    const again = await openAndExpectError(gw, 'remote-connection-failed');
    assert.ok(again.ms < 3000);
  });

  it('upstream accepts TCP but never speaks: remote-connection-failed after connect_timeout', T, async () => {
    const held = new Set();
    const silent = net.createServer((s) => { held.add(s); s.on('error', () => {}); });
    await new Promise((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const gw = await gateway({
        upstream: `127.0.0.1:${silent.address().port}`, caFile: good.caFile, config: { connect_timeout: 2 },
      });
      const { text, ms } = await openAndExpectError(gw, 'remote-connection-failed', { timeoutMs: 15000 });
      assert.ok(ms >= 1500 && ms < 10000, `took ${ms} ms with connect_timeout 2 s`);
      assert.ok(text.length > 0);
    } finally {
      for (const s of held) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  it('unknown domain: host-unknown, without touching the upstream', T, async () => {
    const port = await closedPort();
    const gw = await gateway({ upstream: `127.0.0.1:${port}`, caFile: good.caFile });
    const { text } = await openAndExpectError(gw, 'host-unknown', { to: 'example.net' });
    assert.ok(text.length > 0);
    await assert.rejects(
      loginStrophe({ service: gw.wsUrl, domain: 'example.net', username: 'alice', password: 'x', timeoutMs: 10000 }),
      /CONNFAIL: host-unknown/,
    );
    assert.equal(gw.logs().filter((l) => l.includes(`127.0.0.1:${port}`)).length, 0,
      'no upstream connection attempt for a domain that is not served');
  });

  it('a failed session does not disturb a working one', T, async () => {
    const gw = await gateway({ prosody: good });
    const c = await loginXmppJs({ service: gw.wsUrl, username: 'carol', password: good.users.carol });
    try {
      await openAndExpectError(gw, 'host-unknown', { to: 'example.org' });
      const probe = await connect(gw.wsUrl);
      probe.send(openFrame('localhost'));
      await expectOpen(probe);
      await expectFeatures(probe);
      probe.terminate();
      const r = await c.iq('<iq type="get" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>');
      assert.equal(r.type, 'result');
    } finally {
      await c.stop();
    }
  });
});
