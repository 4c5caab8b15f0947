// Strophe.js in a real browser (Debian's Chromium, headless) through the gateway, over BOSH and over
// WebSocket. The page is the console (static/console.html), served by a separate small HTTP server
// on another port: a different origin than the gateway, which the gateway's `origins` allows. A
// second page server, whose origin is not in the list, checks that the gateway refuses it.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startStack } from '../integration/lib/stack.mjs';
import { startPageServer } from './lib/page-server.mjs';
import {
  launchChromium, openPage, demoState, demoWaitReady, demoConnect, demoWaitStatus,
  demoSendMessage, demoWaitMessage, screenshot,
} from './lib/browser.mjs';

const TRANSPORT_NAME = { bosh: 'BOSH', websocket: 'WebSocket' };

// Node-side WebSocket handshake with a chosen Origin: resolves to the HTTP status (101 when open).
function handshakeStatus(url, origin) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, 'xmpp', { headers: { Origin: origin }, handshakeTimeout: 5000 });
    ws.once('open', () => { ws.terminate(); resolve(101); });
    ws.once('unexpected-response', (_req, res) => { res.resume(); resolve(res.statusCode); ws.terminate(); });
    ws.once('error', (err) => reject(err));
  });
}

describe('Strophe.js in Chromium through the gateway', { timeout: 300000 }, () => {
  let site; // allowed origin
  let stranger; // origin not allowed
  let stack;
  let browser;
  const contexts = [];

  before(async () => {
    site = await startPageServer();
    stranger = await startPageServer();
    stack = await startStack({ gateway: { config: { origins: ['same-host', site.origin] } } });
    browser = await launchChromium();
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close().catch(() => {});
    await site?.close();
    await stranger?.close();
    const problem = await stack?.stop();
    assert.equal(problem, null);
  });

  async function open(url) {
    const opened = await openPage(browser, url);
    contexts.push(opened.context);
    return opened;
  }

  it('serves the demo page, the console, Strophe.js, live.js and host-meta', { timeout: 20000 }, async () => {
    const { gw } = stack;
    const get = async (p) => {
      const res = await fetch(`${gw.url}${p}`);
      return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
    };
    const index = await get('/');
    assert.equal(index.status, 200);
    assert.match(index.type, /^text\/html/);
    assert.match(index.text, /<script src="live\.js" async>/);
    assert.match(index.text, /href="console\.html"/);
    const consolePage = await get('/console.html');
    assert.equal(consolePage.status, 200);
    assert.match(consolePage.text, /lib\/strophe\/strophe\.umd\.min\.js/);
    for (const p of ['/xmppgw.js', '/live.js', '/demo.js', '/lib/strophe/strophe.umd.min.js']) {
      const r = await get(p);
      assert.equal(r.status, 200, p);
      assert.match(r.type, /javascript/, p);
    }
    const css = await get('/xmppgw.css');
    assert.equal(css.status, 200);
    assert.match(css.type, /^text\/css/);
    const meta = await get('/.well-known/host-meta.json');
    assert.equal(meta.status, 200);
    const links = Object.fromEntries(JSON.parse(meta.text).links.map((l) => [l.rel, l.href]));
    assert.equal(links['urn:xmpp:alt-connections:websocket'], gw.wsUrl);
    assert.equal(links['urn:xmpp:alt-connections:xbosh'], gw.boshUrl);
  });

  for (const transport of ['bosh', 'websocket']) {
    it(`logs in over ${TRANSPORT_NAME[transport]} from another origin and gets a message to itself back`,
      { timeout: 60000 }, async () => {
        const { gw, prosody } = stack;
        const { page, consoleLines, pageErrors } = await open(site.url('/console.html'));
        const boshRequests = [];
        const sockets = [];
        page.on('request', (req) => { if (req.url() === gw.boshUrl) boshRequests.push(req); });
        page.on('websocket', (ws) => sockets.push(ws.url()));

        await demoWaitReady(page);
        await demoConnect(page, {
          transport, wsUrl: gw.wsUrl, boshUrl: gw.boshUrl, jid: 'alice@localhost', password: prosody.users.alice,
        });
        let state;
        try {
          state = await demoWaitStatus(page, ['CONNECTED']);
        } catch (err) {
          err.message += `\nconsole: ${consoleLines.join('\n')}\n--- gateway log tail ---\n${gw.logs().slice(-40).join('\n')}`;
          throw err;
        }
        assert.equal(state.transport, transport);
        assert.match(state.jid, /^alice@localhost\/.+/);

        // Own presence comes back: the session is available.
        await page.waitForFunction((jid) => window.xmppgwDemo.state.presences[jid]?.type === 'available',
          state.jid, { timeout: 10000 });

        const body = `hello over ${transport} ${Date.now()}`;
        await demoSendMessage(page, state.jid, body);
        const msg = await demoWaitMessage(page, body);
        assert.equal(msg.from, state.jid);
        assert.equal(msg.to, state.jid);
        assert.equal(msg.type, 'chat');

        state = await demoState(page);
        const logged = (dir) => state.log.some((e) => e.dir === dir && e.xml.startsWith('<message') && e.xml.includes(body));
        assert.ok(logged('out'), 'the message is in the log as sent');
        assert.ok(logged('in'), 'the message is in the log as received');
        assert.match(await page.textContent('#status'), new RegExp(`connected over ${TRANSPORT_NAME[transport]}`));
        assert.equal(await page.textContent('#bound-jid'), state.jid);

        // The traffic really went cross-origin to the gateway, by the chosen transport.
        if (transport === 'bosh') {
          assert.ok(boshRequests.length >= 2, `BOSH requests seen: ${boshRequests.length}`);
          const headers = await boshRequests[0].allHeaders();
          assert.equal(headers.origin, site.origin);
          const res = await boshRequests[0].response();
          assert.equal((await res.allHeaders())['access-control-allow-origin'], site.origin);
          assert.deepEqual(sockets, []);
        } else {
          assert.deepEqual(sockets, [gw.wsUrl]);
          assert.equal(boshRequests.length, 0);
        }

        const file = await screenshot(page, `strophe-${transport}`);
        assert.ok(file.endsWith('.png'));

        await page.click('#disconnect');
        await demoWaitStatus(page, ['DISCONNECTED']);
        assert.deepEqual(pageErrors, []);
      });
  }

  it('the console served by the gateway finds its endpoints in host-meta and connects', { timeout: 60000 },
    async () => {
      const { gw, prosody } = stack;
      const { page, pageErrors } = await open(`${gw.url}/console.html`);
      await demoWaitReady(page);
      const before = await demoState(page);
      assert.equal(before.endpoints.source, '/.well-known/host-meta.json');
      assert.equal(await page.inputValue('#ws-url'), gw.wsUrl);
      assert.equal(await page.inputValue('#bosh-url'), gw.boshUrl);

      await demoConnect(page, { transport: 'websocket', jid: 'bob@localhost', password: prosody.users.bob });
      const state = await demoWaitStatus(page, ['CONNECTED']);
      assert.match(state.jid, /^bob@localhost\/.+/);
      const body = `same origin ${Date.now()}`;
      await demoSendMessage(page, state.jid, body);
      await demoWaitMessage(page, body);
      await page.click('#disconnect');
      await demoWaitStatus(page, ['DISCONNECTED']);
      assert.deepEqual(pageErrors, []);
    });

  it('refuses a WebSocket from a page whose origin is not allowed (403 handshake)', { timeout: 60000 },
    async () => {
      const { gw, prosody } = stack;
      const { page, consoleLines } = await open(stranger.url('/console.html'));
      const sockets = [];
      page.on('websocket', (ws) => sockets.push(ws.url()));
      await demoWaitReady(page);
      await demoConnect(page, {
        transport: 'websocket', wsUrl: gw.wsUrl, boshUrl: gw.boshUrl, jid: 'carol@localhost', password: prosody.users.carol,
      });
      const state = await demoWaitStatus(page, ['CONNFAIL']);
      assert.ok(!state.statusLog.some((s) => s.status === 'CONNECTED'), JSON.stringify(state.statusLog));
      assert.deepEqual(sockets, [gw.wsUrl], 'the browser did try the gateway');

      // Chromium reports the handshake's status on the console; the gateway logs why.
      const deadline = Date.now() + 5000;
      const is403 = (l) => l.includes(gw.wsUrl) && /\b403\b/.test(l);
      while (!consoleLines.some(is403) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.ok(consoleLines.some(is403), `console:\n${consoleLines.join('\n')}`);
      await gw.waitForLog(/websocket upgrade .*refused \(403\): origin not allowed/, 5000);
      await screenshot(page, 'strophe-refused-origin');

      // The same handshakes from Node, where the status is visible directly.
      assert.equal(await handshakeStatus(gw.wsUrl, stranger.origin), 403);
      assert.equal(await handshakeStatus(gw.wsUrl, site.origin), 101);
    });

  it('does not let a page whose origin is not allowed use BOSH', { timeout: 60000 }, async () => {
    const { gw, prosody } = stack;
    const { page, consoleLines } = await open(stranger.url('/console.html'));
    await demoWaitReady(page);
    await demoConnect(page, {
      transport: 'bosh', wsUrl: gw.wsUrl, boshUrl: gw.boshUrl, jid: 'carol@localhost', password: prosody.users.carol,
    });
    // Strophe retries a failed BOSH request with a growing back-off; the first refusal is enough.
    const deadline = Date.now() + 10000;
    const blocked = (l) => l.includes(gw.boshUrl) && /CORS|403/.test(l);
    while (!consoleLines.some(blocked) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(consoleLines.some(blocked), `console:\n${consoleLines.join('\n')}`);
    const state = await demoState(page);
    assert.ok(!state.statusLog.some((s) => s.status === 'CONNECTED'), JSON.stringify(state.statusLog));
    await gw.waitForLog(new RegExp(`BOSH .*refused.*${stranger.origin.replace(/[.]/g, '\\.')}`), 5000);
    await page.click('#disconnect');

    // From Node: the gateway grants no CORS access to that origin.
    const res = await fetch(gw.boshUrl, {
      method: 'OPTIONS',
      headers: { Origin: stranger.origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
    });
    await res.arrayBuffer();
    assert.notEqual(res.headers.get('access-control-allow-origin'), stranger.origin);
    assert.notEqual(res.headers.get('access-control-allow-origin'), '*');
  });
});
