// POST /api/prebind on the admin port against the real Prosody: a bound session answered with
// jid, sid and rid, usable over BOSH with that sid and rid (a ping answered); a wrong password 403
// not-authorized; bad bodies 400; no token 401; a visitor session with a visitor-* resource; an
// upstream that is down 503 remote-connection-failed.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startStack } from './lib/stack.mjs';
import { startGateway, stopGatewayChecked } from './lib/gateway.mjs';
import { freePorts } from './lib/ports.mjs';
import { request } from './lib/http.mjs';

const T = { timeout: 60000 };
const TOKEN = 'prebind-api-token-77d0';
const VISITOR_DOMAIN = 'visitors.localhost';

const prebind = (adminUrl, body, token = TOKEN) => request(`${adminUrl}/api/prebind`, {
  headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
  body: typeof body === 'string' ? body : JSON.stringify(body),
});

// Attach as Strophe.js does: requests with the sid and the next rids until the ping's answer.
async function pingOverBosh(boshUrl, sid, rid) {
  const ping = "<iq type='get' id='prebind-ping' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>";
  let r = rid;
  for (let i = 0; i < 4; i++, r++) {
    const body = `<body rid='${r}' sid='${sid}' xmlns='http://jabber.org/protocol/httpbind'>${i === 0 ? ping : ''}</body>`;
    const res = await request(boshUrl, { headers: { 'Content-Type': 'text/xml; charset=utf-8' }, body });
    assert.equal(res.status, 200, res.text);
    assert.doesNotMatch(res.text, /type=['"]terminate['"]/, res.text);
    if (/id=['"]prebind-ping['"]/.test(res.text)) return res.text;
  }
  throw new Error('no answer to the ping over the prebound session');
}

describe('prebind API (POST /api/prebind)', { timeout: 300000 }, () => {
  let stack;
  let dir;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-prebind-api-'));
    const passwordFile = path.join(dir, 'site.pass');
    await writeFile(passwordFile, 'site-secret-9\n', { mode: 0o600 });
    stack = await startStack({
      prosody: { users: { alice: 'alice-secret-1', site: 'site-secret-9' } },
      gateway: {
        config: {
          admin: { token: TOKEN },
          visitors: { domain: VISITOR_DOMAIN, jid: 'site@localhost', password_file: passwordFile, allow: { pubsub: ['pubsub.localhost'] } },
        },
      },
    });
  });

  after(async () => {
    const problem = await stack?.stop();
    await rm(dir, { recursive: true, force: true });
    if (problem) assert.fail(problem);
  });

  it('binds a session and answers jid, sid and rid; the session answers over BOSH', T, async () => {
    const r = await prebind(stack.gw.adminUrl, { jid: 'alice@localhost', password: 'alice-secret-1' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['cache-control'], 'no-store');
    assert.deepEqual(Object.keys(r.json).sort(), ['jid', 'rid', 'sid']);
    assert.match(r.json.jid, /^alice@localhost\/.+/);
    assert.equal(typeof r.json.sid, 'string');
    assert.ok(Number.isSafeInteger(r.json.rid) && r.json.rid > 0);
    const answer = await pingOverBosh(stack.gw.boshUrl, r.json.sid, r.json.rid);
    assert.match(answer, /type=['"]result['"]/);
    assert.ok(!stack.gw.logText().includes('alice-secret-1'), 'the password is never logged');
  });

  it('answers a wrong password 403 not-authorized', T, async () => {
    const r = await prebind(stack.gw.adminUrl, { jid: 'alice@localhost', password: 'wrong' });
    assert.equal(r.status, 403, r.text);
    assert.equal(r.json.condition, 'not-authorized');
    assert.equal(typeof r.json.error, 'string');
  });

  it('refuses a missing or wrong token 401 and bad bodies 400', T, async () => {
    let r = await prebind(stack.gw.adminUrl, { visitor: true }, null);
    assert.equal(r.status, 401);
    r = await prebind(stack.gw.adminUrl, { visitor: true }, 'nope');
    assert.equal(r.status, 401);
    for (const body of ['{', '[]', { jid: 'alice@localhost' }, { password: 'x' }, { jid: 'alice@localhost', password: '' },
      { visitor: 'yes' }, { visitor: true, jid: 'alice@localhost' }, { jid: 'not a jid', password: 'x' },
      { jid: 'alice@elsewhere.example', password: 'x' }, { jid: 'alice@localhost', password: 'x', extra: 1 }]) {
      r = await prebind(stack.gw.adminUrl, body);
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      assert.equal(r.json.condition, 'bad-request');
    }
  });

  it('makes a visitor session with a visitor-* resource', T, async () => {
    const r = await prebind(stack.gw.adminUrl, { visitor: true });
    assert.equal(r.status, 200, r.text);
    assert.match(r.json.jid, /^site@localhost\/visitor-[0-9a-f]{16}$/);
    await pingOverBosh(stack.gw.boshUrl, r.json.sid, r.json.rid);
  });

  it('answers 503 remote-connection-failed when the upstream is down', T, async () => {
    const [closed] = await freePorts(1);
    const gw = await startGateway({ upstream: `127.0.0.1:${closed}`, caFile: null, config: { admin: { token: TOKEN } } });
    try {
      const r = await prebind(gw.adminUrl, { jid: 'alice@localhost', password: 'alice-secret-1' });
      assert.equal(r.status, 503, r.text);
      assert.equal(r.json.condition, 'remote-connection-failed');
    } finally {
      const problem = await stopGatewayChecked(gw);
      if (problem) assert.fail(problem);
    }
  });
});
