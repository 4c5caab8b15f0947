// The live-updates widget (static/live.js), the demo at / and the console as a visitor, in headless
// Chromium against the real Prosody's pubsub component. Items are published through the admin
// port's POST /api/publish (as the hub account). Checked: the demo feed shows an item within 1 s of
// the publish request; the widget embedded on another origin renders newest first, caps at
// data-xmppgw-max, removes retracted items, shows non-Atom payloads as text and asks the gateway
// it came from (also behind a path prefix); item content is text, never markup; across a gateway
// restart (items published while it is down, and after) every item shows exactly once, in order;
// the demo's publish form (/demo/publish) makes an item appear; the console logs in as a visitor
// (WebSocket, and BOSH when the WebSocket fails), gets a visitor-* resource, has its chat message
// refused with forbidden and receives its pubsub subscription's events.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startProsody } from '../integration/lib/prosody.mjs';
import { startGateway, stopGatewayChecked, SOURCE_DIR } from '../integration/lib/gateway.mjs';
import { loginXmppJs, goOnline, stopAllClients, sleep } from '../integration/lib/clients.mjs';
import { startPageServer } from './lib/page-server.mjs';
import {
  launchChromium, openPage, demoState, demoWaitReady, demoConnect, demoWaitStatus, demoSendMessage,
  screenshot,
} from './lib/browser.mjs';

const T = { timeout: 60000 };
const PS = 'pubsub.localhost';
const DEMO_NODE = 'princely_musings';
const PUBSUB_NS = 'http://jabber.org/protocol/pubsub';
const HUB_PASSWORD = 'hub-widget-Secret-41c2';
const SITE_PASSWORD = 'site-widget-Secret-9d07';
const TOKEN = 'widget-admin-token-5e1f0b';
const VISITOR_DOMAIN = 'visitors.localhost';
const VISITOR_JID = /^site@localhost\/visitor-[0-9a-f]{16}$/;

describe('live.js, the demo page and the console in Chromium', { timeout: 600000 }, () => {
  let prosody;
  let gw; // the gateway under test (restarted on the same ports by one test)
  let gwB; // a second gateway on the same Prosody: publishes while the first one is down
  let dir;
  let site; // another origin that embeds the widget
  let browser;
  let owner; // alice: creates the nodes
  let ports; // { port, adminPort } of gw, kept across its restart
  const contexts = [];

  const gatewayConfig = (origins) => ({
    origins: ['same-host', ...origins],
    admin: { token: TOKEN },
    live: {
      jid: 'hub@localhost',
      password_file: path.join(dir, 'hub.pass'),
      nodes: [`${PS}/${DEMO_NODE}`, `${PS}/widget-*`],
      heartbeat: 1,
      linger: 2,
      demo_publish: true,
    },
    visitors: {
      domain: VISITOR_DOMAIN,
      jid: 'site@localhost',
      password_file: path.join(dir, 'site.pass'),
      allow: { pubsub: [PS] },
    },
  });

  const startGw = (extra = {}) => startGateway({ prosody, config: gatewayConfig([site.origin]), ...extra });

  // The gateway under test again, on the ports it had: its URLs are those of `ports`, not of the
  // object startGateway() returns.
  async function restartGw() {
    const g = await startGw({
      args: ['--listen', `127.0.0.1:${ports.port}`, '--admin', `127.0.0.1:${ports.adminPort}`],
      waitHealthy: false,
    });
    const deadline = Date.now() + 20000;
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${ports.adminPort}/healthz`).then((r) => r.status === 200, () => false);
      if (ok) return g;
      if (g.exited || Date.now() > deadline) {
        await g.stop(3000);
        throw new Error(`the restarted gateway did not come up: ${JSON.stringify(g.exited)}\n${g.logText()}`);
      }
      await sleep(50);
    }
  }
  const gwUrl = (p = '') => `http://127.0.0.1:${ports.port}${p}`;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-widget-'));
    await writeFile(path.join(dir, 'hub.pass'), `${HUB_PASSWORD}\n`, { mode: 0o600 });
    await writeFile(path.join(dir, 'site.pass'), `${SITE_PASSWORD}\n`, { mode: 0o600 });
    await writeFile(path.join(dir, 'embed.html'), embedPage());
    site = await startPageServer({
      mounts: [
        ['/chat/', path.join(SOURCE_DIR, 'static')],
        ['/', dir],
      ],
    });
    prosody = await startProsody({
      users: { alice: 'alice-pw-1', bob: 'bob-pw-2', hub: HUB_PASSWORD, site: SITE_PASSWORD },
      admins: ['alice@localhost', 'hub@localhost'],
    });
    gw = await startGw();
    ports = { port: gw.port, adminPort: gw.adminPort };
    gwB = await startGw();
    await gw.waitForLog(/hub: online/, 15000);
    await gwB.waitForLog(/hub: online/, 15000);
    owner = await loginXmppJs({ service: gwB.wsUrl, username: 'alice', password: 'alice-pw-1', resource: 'owner' });
    for (const node of [DEMO_NODE, 'widget-embed', 'widget-restart', 'widget-xss', 'widget-form']) {
      const r = await owner.iq(`<iq type="set" to="${PS}"><pubsub xmlns="${PUBSUB_NS}"><create node="${node}"/></pubsub></iq>`);
      assert.equal(r.type, 'result', r.xml);
    }
    browser = await launchChromium();
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close().catch(() => {});
    await stopAllClients().catch(() => {});
    const problems = [await stopGatewayChecked(gw), await stopGatewayChecked(gwB)].filter(Boolean);
    await prosody?.stop();
    await site?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
    if (problems.length) assert.fail(problems.join('\n'));
  });

  // The page on the other origin: the embed exactly as a site writes it, pointing at the gateway.
  function embedPage() {
    return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>embed</title><link rel="icon" href="data:,"></head>
<body>
<div id="capped" data-xmppgw-node="${PS}/widget-embed" data-xmppgw-max="3"></div>
<div id="restart" data-xmppgw-node="${PS}/widget-restart"></div>
<script src="GATEWAY/live.js" async></script>
</body></html>
`;
  }

  async function open(url) {
    const opened = await openPage(browser, url);
    contexts.push(opened.context);
    return opened;
  }

  // Like open(), with the URLs of the page's EventSource requests collected from the start.
  async function openWatched(url) {
    const context = await browser.newContext();
    contexts.push(context);
    const page = await context.newPage();
    const pageErrors = [];
    const streams = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('request', (r) => { if (r.resourceType() === 'eventsource') streams.push(r.url()); });
    const res = await page.goto(url, { waitUntil: 'load' });
    assert.equal(res?.status(), 200, url);
    return { page, pageErrors, streams };
  }

  // POST /api/publish on the admin port of `g` (default: the gateway under test).
  async function publish(node, fields, g = gw) {
    const adminUrl = g === gw ? `http://127.0.0.1:${ports.adminPort}` : g.adminUrl;
    const res = await fetch(`${adminUrl}/api/publish`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ service: PS, node, ...fields }),
    });
    const text = await res.text();
    assert.equal(res.status, 200, `POST /api/publish ${JSON.stringify(fields)}: ${res.status} ${text}`);
    const answer = JSON.parse(text);
    if (fields.id) assert.equal(answer.id, fields.id);
    return answer.id;
  }

  const entry = (n) => ({ id: `e${n}`, title: `Entry ${n}`, summary: `About entry ${n}`, link: `https://denmark.lit/${n}` });

  // The ids a widget element shows, top to bottom.
  const shownIds = (page, sel) => page.$$eval(`${sel} .xmppgw-live__item`, (els) => els.map((e) => e.dataset.id));

  async function waitShown(page, sel, ids, ms = 10000) {
    try {
      await page.waitForFunction(([s, want]) => {
        const got = [...document.querySelectorAll(`${s} .xmppgw-live__item`)].map((e) => e.dataset.id);
        return JSON.stringify(got) === JSON.stringify(want);
      }, [sel, ids], { timeout: ms });
    } catch (err) {
      throw new Error(`${sel} shows ${JSON.stringify(await shownIds(page, sel))}, not ${JSON.stringify(ids)}: ${err.message}`);
    }
  }

  // Waits until a widget element's data-xmppgw-state is `want` (an empty list has no size: it
  // counts as attached, not visible).
  const waitState = (page, sel, want, ms) => page.waitForSelector(`${sel}[data-xmppgw-state="${want}"]`, { state: 'attached', timeout: ms });

  // Resolves once the hub holds the node's cache (subscribed and items fetched) for gateway `g`.
  const nodeReady = (g, node) => g.waitForLog(new RegExp(`hub: ${PS.replace(/\./g, '\\.')}/${node}: \\d+ items cached`), 10000);

  it('the demo page shows an item within 1 s of its POST /api/publish', T, async () => {
    const { page, pageErrors } = await open(gwUrl('/'));
    await waitState(page, '#feed', 'open', 10000);
    await nodeReady(gw, DEMO_NODE);
    assert.equal(await page.getAttribute('#feed', 'aria-live'), 'polite');
    assert.equal(await page.evaluate(() => window.xmppgwLive.base), gwUrl('/'));
    // The page notes when each entry appears, by its own clock (the same machine's).
    await page.evaluate(() => {
      window.seen = {};
      new MutationObserver(() => {
        for (const li of document.querySelectorAll('#feed .xmppgw-live__item')) window.seen[li.dataset.id] ??= Date.now();
      }).observe(document.getElementById('feed'), { childList: true, subtree: true });
    });
    const delays = [];
    for (let i = 0; i < 3; i++) {
      const id = `soliloquy-${i}`;
      const t0 = Date.now();
      await publish(DEMO_NODE, {
        id, title: 'Soliloquy', summary: 'To be, or not to be: that is the question', link: 'http://denmark.lit/2003/12/13/atom03',
      });
      const handle = await page.waitForFunction((k) => window.seen[k], id, { timeout: 5000 });
      delays.push((await handle.jsonValue()) - t0);
    }
    assert.ok(delays.every((d) => d <= 1000), `publish to entry: ${delays.join(', ')} ms`);
    const li = page.locator('#feed .xmppgw-live__item[data-id="soliloquy-2"]');
    assert.equal(await li.locator('a.xmppgw-live__title').getAttribute('href'), 'http://denmark.lit/2003/12/13/atom03');
    assert.equal(await li.locator('a.xmppgw-live__title').textContent(), 'Soliloquy');
    assert.equal(await li.locator('.xmppgw-live__summary').textContent(), 'To be, or not to be: that is the question');
    const when = await li.locator('time').getAttribute('datetime');
    assert.ok(Math.abs(Date.parse(when) - Date.now()) < 60000, when);
    assert.deepEqual(await shownIds(page, '#feed'), ['soliloquy-2', 'soliloquy-1', 'soliloquy-0']);
    await screenshot(page, 'live-demo-feed');
    assert.deepEqual(pageErrors, []);
    console.log(`# publish to entry on the demo page: ${delays.join(', ')} ms`);
  });

  it('renders item content as text: markup in a title is no element, a javascript: link no link', T, async () => {
    const { page, pageErrors } = await open(gwUrl('/'));
    await page.evaluate((ps) => {
      const div = document.createElement('div');
      div.id = 'xss';
      div.setAttribute('data-xmppgw-node', `${ps}/widget-xss`);
      document.body.append(div); // added after load: live.js picks it up
    }, PS);
    await waitState(page, '#xss', 'open', 10000);
    await nodeReady(gw, 'widget-xss');
    const title = '<img src=x onerror="window.pwned=1">';
    const summary = '<script>window.pwned=2</script><b>bold</b>';
    await publish('widget-xss', { id: 'x1', title, summary, link: 'https://denmark.lit/x1' });
    // The API builds entries with http(s) links only: a javascript: link comes as an entry of our own.
    const esc = (t) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
    await publish('widget-xss', {
      id: 'x2',
      payload: `<entry xmlns="http://www.w3.org/2005/Atom"><title>${esc(title)}</title>`
        + '<link rel="alternate" href="javascript:window.pwned=3"/></entry>',
    });
    await waitShown(page, '#xss', ['x2', 'x1']);
    await sleep(300);
    assert.equal(await page.locator('#xss img').count(), 0);
    assert.equal(await page.locator('#xss script, #xss b').count(), 0);
    for (const id of ['x1', 'x2']) {
      assert.equal(await page.locator(`#xss [data-id="${id}"] .xmppgw-live__title`).textContent(), title);
    }
    assert.equal(await page.locator('#xss [data-id="x1"] a.xmppgw-live__title').getAttribute('href'), 'https://denmark.lit/x1');
    assert.equal(await page.locator('#xss [data-id="x1"] .xmppgw-live__summary').textContent(), summary);
    assert.equal(await page.locator('#xss [data-id="x2"] a').count(), 0, 'a javascript: link is no link');
    assert.equal(await page.evaluate(() => window.pwned), undefined);
    assert.deepEqual(pageErrors, []);
  });

  it('embedded on another origin: newest first, data-xmppgw-max, retractions, non-Atom payloads', T, async () => {
    await writeFile(path.join(dir, 'embed.html'), embedPage().replace('GATEWAY', gwUrl()));
    const { page, pageErrors, streams } = await openWatched(site.url('/embed.html'));
    await waitState(page, '#capped', 'open', 10000);
    await nodeReady(gw, 'widget-embed');
    for (let n = 1; n <= 5; n++) await publish('widget-embed', entry(n));
    await waitShown(page, '#capped', ['e5', 'e4', 'e3']);
    await publish('widget-embed', { id: 'note-1', payload: '<note xmlns="urn:example:note">to be <em>and</em> not</note>' });
    await waitShown(page, '#capped', ['note-1', 'e5', 'e4']);
    assert.equal(await page.locator('#capped [data-id="note-1"] .xmppgw-live__title').textContent(), 'to be and not');
    assert.equal(await page.locator('#capped [data-id="note-1"] a').count(), 0);
    const r = await owner.iq(`<iq type="set" to="${PS}"><pubsub xmlns="${PUBSUB_NS}"><retract node="widget-embed" notify="true"><item id="e5"/></retract></pubsub></iq>`);
    assert.equal(r.type, 'result', r.xml);
    await waitShown(page, '#capped', ['note-1', 'e4']);
    // The streams went to the gateway the script came from, not to the page's origin.
    assert.ok(streams.some((u) => u.startsWith(gwUrl(`/events/${PS}/widget-embed`))), JSON.stringify(streams));
    assert.ok(!streams.some((u) => u.startsWith(site.origin)), JSON.stringify(streams));
    await screenshot(page, 'live-embed');
    assert.deepEqual(pageErrors, []);
  });

  it('behind a path prefix the widget asks <prefix>/events/', T, async () => {
    await writeFile(path.join(dir, 'prefix.html'), `<!doctype html><html><head><link rel="icon" href="data:,"></head><body>
<div id="p" data-xmppgw-node="${PS}/widget-embed"></div><script src="/chat/live.js?v=1" async></script></body></html>`);
    const { page } = await open(site.url('/prefix.html'));
    const req = await page.waitForRequest((r) => r.resourceType() === 'eventsource', { timeout: 10000 });
    assert.equal(req.url(), `${site.origin}/chat/events/${PS}/widget-embed`);
    assert.equal(await page.evaluate(() => window.xmppgwLive.base), `${site.origin}/chat/`);
    // The page server has no /events: the widget backs off and tries again.
    await waitState(page, '#p', 'reconnecting', 10000);
  });

  it('keeps working across a gateway restart: every item once, in order', { timeout: 120000 }, async () => {
    await writeFile(path.join(dir, 'embed.html'), embedPage().replace('GATEWAY', gwUrl()));
    const { page, pageErrors } = await open(site.url('/embed.html'));
    const streams = [];
    page.on('request', (r) => {
      if (r.resourceType() === 'eventsource' && r.url().includes('widget-restart')) streams.push(r);
    });
    await waitState(page, '#restart', 'open', 10000);
    await nodeReady(gw, 'widget-restart');
    for (let n = 1; n <= 3; n++) await publish('widget-restart', entry(n));
    await waitShown(page, '#restart', ['e3', 'e2', 'e1']);

    const oldGw = gw;
    assert.equal(await stopGatewayChecked(oldGw), null);
    await waitState(page, '#restart', 'reconnecting', 10000);
    await publish('widget-restart', entry(4), gwB); // while the gateway is down
    await sleep(1500);
    gw = await restartGw();
    await publish('widget-restart', entry(5), gwB); // while the widget is (probably) reconnecting
    await waitShown(page, '#restart', ['e5', 'e4', 'e3', 'e2', 'e1'], 30000);
    await publish('widget-restart', entry(6));
    await waitShown(page, '#restart', ['e6', 'e5', 'e4', 'e3', 'e2', 'e1']);
    await sleep(1500); // nothing more arrives twice
    assert.deepEqual(await shownIds(page, '#restart'), ['e6', 'e5', 'e4', 'e3', 'e2', 'e1']);
    // The reconnect resumed from the last id (as the Last-Event-ID header or ?last_event_id=).
    const resumed = [];
    for (const r of streams) {
      const id = (await r.allHeaders())['last-event-id'] ?? new URL(r.url()).searchParams.get('last_event_id');
      if (id) resumed.push(id);
    }
    assert.ok(resumed.includes('e3') && resumed.every((id) => id === 'e3' || id === 'e5'),
      `resumed from ${JSON.stringify(resumed)}: ${streams.map((r) => r.url()).join(' ')}`);
    console.log(`# restart: ${streams.length} stream requests, resumed from ${resumed.join(', ')}`);
    assert.deepEqual(pageErrors, []);
  });

  it("the demo page's publish form makes an item appear (/demo/publish)", T, async () => {
    const { page, pageErrors } = await open(gwUrl('/'));
    await waitState(page, '#feed', 'open', 10000);
    await nodeReady(gw, DEMO_NODE);
    const title = `From the form ${Date.now()}`;
    await page.fill('#pub-title', title);
    await page.fill('#pub-summary', 'typed into the demo page');
    await page.click('#publish');
    const handle = await page.waitForFunction(() => window.xmppgwPublish.state.results[0], null, { timeout: 10000 });
    const result = await handle.jsonValue();
    assert.equal(result.status, 200, JSON.stringify(result));
    await page.waitForSelector(`#feed .xmppgw-live__item[data-id="${result.id}"]`, { timeout: 5000 });
    assert.equal(await page.locator(`#feed [data-id="${result.id}"] .xmppgw-live__title`).textContent(), title);
    assert.match(await page.textContent('#publish-status'), new RegExp(`published as ${result.id}`));
    assert.deepEqual(pageErrors, []);
  });

  it('the console as a visitor: a visitor-* resource, chat refused with forbidden, pubsub events received', T, async () => {
    const bob = await loginXmppJs({ service: gwB.wsUrl, username: 'bob', password: 'bob-pw-2', resource: 'desk' });
    await goOnline(bob);
    const { page, pageErrors } = await open(gwUrl('/console.html'));
    await demoWaitReady(page);
    await demoConnect(page, { transport: 'auto', visitorDomain: VISITOR_DOMAIN });
    let state = await demoWaitStatus(page, ['CONNECTED']);
    assert.match(state.jid, VISITOR_JID);
    assert.equal(state.transport, 'websocket');
    assert.equal(state.fallback, null);
    assert.equal(await page.textContent('#bound-jid'), state.jid);

    const body = `from a visitor ${Date.now()}`;
    await demoSendMessage(page, 'bob@localhost', body);
    await page.waitForFunction(() => window.xmppgwDemo.state.errors.some((e) => e.name === 'message'), null, { timeout: 5000 });
    state = await demoState(page);
    const refusal = state.errors.find((e) => e.name === 'message');
    assert.equal(refusal.condition, 'forbidden');
    assert.equal(refusal.type, 'auth');
    assert.equal(refusal.from, 'bob@localhost');

    await page.fill('#ps-service', PS);
    await page.fill('#ps-node', DEMO_NODE);
    await page.click('#ps-subscribe');
    await page.waitForFunction(() => window.xmppgwDemo.state.pubsub.status === 'subscribed', null, { timeout: 10000 });
    await publish(DEMO_NODE, { id: 'for-visitors', title: 'For visitors', summary: 'a pubsub event', link: 'https://denmark.lit/v' });
    await page.waitForFunction(() => window.xmppgwDemo.state.pubsub.items.some((i) => i.id === 'for-visitors'), null, { timeout: 5000 });
    state = await demoState(page);
    const item = state.pubsub.items.find((i) => i.id === 'for-visitors');
    assert.deepEqual(item, { node: DEMO_NODE, id: 'for-visitors', kind: 'item', title: 'For visitors' });
    await screenshot(page, 'console-visitor');

    await sleep(500);
    assert.deepEqual(bob.received.filter((s) => s.name === 'message' && s.body !== undefined).map((s) => s.xml), []);
    await gw.waitForLog(/visitor policy: refused a message to bob@localhost/, 5000);
    await page.click('#disconnect');
    await demoWaitStatus(page, ['DISCONNECTED']);
    await bob.stop();
    assert.deepEqual(pageErrors, []);
  });

  it('the console falls back to BOSH when the WebSocket cannot connect', T, async () => {
    const { page, pageErrors } = await open(gwUrl('/console.html'));
    await demoWaitReady(page);
    await demoConnect(page, {
      transport: 'auto', wsUrl: `ws://127.0.0.1:${ports.port}/no-such-websocket`, visitorDomain: VISITOR_DOMAIN,
    });
    const state = await demoWaitStatus(page, ['CONNECTED']);
    assert.match(state.jid, VISITOR_JID);
    assert.equal(state.transport, 'bosh');
    assert.equal(state.fallback?.from, 'websocket');
    assert.match(await page.textContent('#status'), /connected over BOSH/);
    await page.click('#disconnect');
    await demoWaitStatus(page, ['DISCONNECTED']);
    assert.deepEqual(pageErrors, []);
  });
});
