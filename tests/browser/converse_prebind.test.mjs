// Converse.js (the npm package's own build, served from node_modules) in headless Chromium with
// `authentication: 'prebind'`: its `prebind_url` is the gateway's public `GET /prebind`
// (`visitors` configured), its `bosh_service_url` the gateway's BOSH endpoint, `auto_login` on.
// The page comes from another origin that `origins` allows. Converse.js fetches the prebind,
// attaches to the visitor session the gateway made (`site@localhost/visitor-<16 hex>`), and a
// message bob sends to that JID from Node (@xmpp/client) is shown in the page.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startStack } from '../integration/lib/stack.mjs';
import { SOURCE_DIR } from '../integration/lib/gateway.mjs';
import { loginXmppJs, stopAllClients } from '../integration/lib/clients.mjs';
import { startPageServer } from './lib/page-server.mjs';
import { launchChromium, screenshot } from './lib/browser.mjs';

const VISITOR_DOMAIN = 'visitors.localhost';
const SITE_PASSWORD = 'site-Converse-Secret-9d2e';
const USERS = { alice: 'alice-secret-1', bob: 'bob-secret-2', site: SITE_PASSWORD };
const VISITOR_JID = /^site@localhost\/visitor-[0-9a-f]{16}$/;
const CONVERSE_DIST = path.join(SOURCE_DIR, 'node_modules', 'converse.js', 'dist');

// The page: Converse.js (an ES module build) with prebind against the gateway, and a plugin that
// tells the test when Converse.js is connected, as whom, and what messages it handled
// (window.prebindTest).
function pageHtml(gwUrl) {
  const settings = {
    authentication: 'prebind',
    prebind_url: `${gwUrl}/prebind`,
    bosh_service_url: `${gwUrl}/http-bind`,
    auto_login: true,
    allow_non_roster_messaging: true,
    assets_path: '/lib/converse/',
    discover_connection_methods: false,
    whitelisted_plugins: ['prebind-test'],
    // OMEMO needs device lists (a personal pubsub node) that the visitor policy refuses: its
    // message hook would wait for them.
    blacklisted_plugins: ['converse-omemo'],
    loglevel: process.env.XMPPGW_TEST_DEBUG ? 'debug' : 'info',
    play_sounds: false,
    show_desktop_notifications: false,
  };
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Converse.js prebind</title>
<link rel="stylesheet" href="/lib/converse/converse.min.css">
<script type="module" src="/lib/converse/converse.min.js"></script>
</head><body>
<script type="module">
window.prebindTest = { connected: false, jid: null, errors: [], messages: [], events: [] };
converse.plugins.add('prebind-test', {
  initialize() {
    const { api } = this._converse;
    api.listen.on('connected', () => {
      window.prebindTest.connected = true;
      window.prebindTest.jid = api.user.jid();
    });
    // Converse.js adds its message handler once presences are initialized: a message that
    // comes before that is dropped by Strophe.js, so the test waits for it.
    for (const ev of ['presencesInitialized', 'rosterContactsFetched']) {
      api.listen.on(ev, () => window.prebindTest.events.push(ev));
    }
    api.listen.on('message', (data) => window.prebindTest.messages.push(data?.attrs?.body ?? '?'));
    api.listen.on('noResumeableBOSHSession', () => window.prebindTest.errors.push('prebind failed'));
  },
});
converse.initialize(${JSON.stringify(settings)});
</script>
</body></html>
`;
}

describe('Converse.js with prebind through the gateway', { timeout: 300000 }, () => {
  let stack;
  let dir;
  let site;
  let browser;
  let bob;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-converse-'));
    const passwordFile = path.join(dir, 'site.pass');
    await writeFile(passwordFile, `${SITE_PASSWORD}\n`, { mode: 0o600 });
    const pageDir = path.join(dir, 'page');
    site = await startPageServer({ mounts: [['/lib/converse/', CONVERSE_DIST], ['/', pageDir]] });
    stack = await startStack({
      // mod_blocklist as on most servers: Converse.js 14 opens a chat with a JID not in the roster
      // only once it has the blocklist (XEP-0191), which the gateway answers empty for a visitor.
      prosody: { users: USERS, extraHost: 'modules_enabled = { "blocklist" }' },
      gateway: {
        config: {
          origins: ['same-host', site.origin],
          visitors: { domain: VISITOR_DOMAIN, jid: 'site@localhost', password_file: passwordFile },
        },
      },
    });
    await mkdir(pageDir, { recursive: true });
    await writeFile(path.join(pageDir, 'index.html'), pageHtml(stack.gw.url));
    bob = await loginXmppJs({ service: stack.gw.wsUrl, username: 'bob', password: USERS.bob, mechanism: 'PLAIN' });
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await stopAllClients();
    await site?.close();
    const problem = await stack?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    assert.equal(problem, null);
  });

  it('attaches to the prebound visitor session and shows a message sent to it', { timeout: 90000 }, async () => {
    const prebinds = [];
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const consoleLines = [];
    const pageErrors = [];
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('requestfailed', (r) => consoleLines.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    page.on('response', async (res) => {
      if (res.url().endsWith('/prebind')) prebinds.push({ status: res.status(), headers: res.headers(), json: await res.json().catch(() => null) });
    });
    try {
      const res = await page.goto(site.url('/index.html'), { waitUntil: 'load' });
      assert.equal(res?.status(), 200);
      await page.waitForFunction(() => (window.prebindTest.connected && window.prebindTest.events.length === 2)
        || window.prebindTest.errors.length, null, { timeout: 30000 });
      const state = await page.evaluate(() => window.prebindTest);
      assert.deepEqual(state.errors, []);
      assert.match(state.jid, VISITOR_JID);
      // Converse.js fetched the gateway's prebind once (a GET from another origin, with CORS).
      await page.waitForTimeout(200);
      assert.equal(prebinds.length, 1, JSON.stringify(prebinds));
      assert.equal(prebinds[0].status, 200);
      assert.equal(prebinds[0].headers['access-control-allow-origin'], site.origin);
      assert.equal(prebinds[0].json.jid, state.jid);
      assert.ok(site.requests.some((p) => p.startsWith('/lib/converse/converse.min.js')));

      const text = `hello converse ${Date.now()}`;
      await bob.sendMessage(state.jid, text);
      // Converse.js lists bob with one unread message; opening his chat shows it.
      await page.waitForFunction((t) => window.prebindTest.messages.includes(t), text, { timeout: 20000 });
      await page.getByText(/^bob@localh/).first().click();
      await page.getByText(text).first().waitFor({ state: 'visible', timeout: 10000 });
      await stack.gw.waitForLog(new RegExp(`sid=${prebinds[0].json.sid}.*prebound`), 1000);
    } catch (err) {
      await screenshot(page, 'converse-prebind-failure').catch(() => {});
      const state = await page.evaluate(() => window.prebindTest).catch(() => null);
      err.message += `\npage state: ${JSON.stringify(state)}\nconsole:\n${consoleLines
        .filter((l) => !/wasm|ArrayBuffer/.test(l)).slice(-40).join('\n')}\npage errors: ${pageErrors.join('; ')}`;
      throw err;
    } finally {
      await context.close();
    }
  });
});
