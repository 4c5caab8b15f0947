// Debian's Chromium driven by playwright-core, and a driver for the console (static/console.html),
// which keeps what it knows in window.xmppgwDemo.state.
//
//   const browser = await launchChromium();
//   const { page, consoleLines } = await openPage(browser, url);
//   await demoWaitReady(page);
//   await demoConnect(page, { transport: 'bosh', boshUrl, jid, password });
//   const state = await demoState(page);
//   await browser.close();
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { SOURCE_DIR } from '../../integration/lib/gateway.mjs';

export const CHROMIUM_BIN = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const SCREENSHOT_DIR = path.join(SOURCE_DIR, 'tests', 'browser', 'screenshots');

/** Headless Chromium with a fresh profile and no background traffic. */
export function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM_BIN,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * Opens `url` in a new context (own cookies and storage). Collects console lines (Chromium reports
 * failed WebSocket handshakes there) and uncaught page errors.
 * Resolves to { context, page, consoleLines, pageErrors }.
 */
export async function openPage(browser, url, { viewport = { width: 1400, height: 900 } } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const consoleLines = [];
  const pageErrors = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => pageErrors.push(e.message));
  const res = await page.goto(url, { waitUntil: 'load' });
  if (!res || res.status() !== 200) throw new Error(`GET ${url}: ${res ? `HTTP ${res.status()}` : 'no response'}`);
  return { context, page, consoleLines, pageErrors };
}

/** Everything the demo page knows (a copy). */
export function demoState(page) {
  return page.evaluate(() => JSON.parse(JSON.stringify(window.xmppgwDemo.state)));
}

/** Waits until the page has filled in its endpoint fields (discovery done). */
export async function demoWaitReady(page, ms = 10000) {
  await page.waitForFunction(() => window.xmppgwDemo?.state.ready === true, null, { timeout: ms });
}

/**
 * Fills in the connection form and presses Connect. `transport`: "auto" (WebSocket, else BOSH),
 * "websocket" or "bosh". `wsUrl` / `boshUrl` replace the prefilled endpoints when given. With
 * `visitorDomain` it logs in as a visitor (SASL ANONYMOUS), else as `jid` with `password`. Does not
 * wait for the outcome: see demoWaitStatus().
 */
export async function demoConnect(page, { transport, wsUrl, boshUrl, jid, password, visitorDomain }) {
  await page.check(`input[name="transport"][value="${transport}"]`);
  if (wsUrl) await page.fill('#ws-url', wsUrl);
  if (boshUrl) await page.fill('#bosh-url', boshUrl);
  if (visitorDomain) {
    await page.check('input[name="login"][value="visitor"]');
    await page.fill('#visitor-domain', visitorDomain);
  } else {
    await page.check('input[name="login"][value="account"]');
    await page.fill('#jid', jid);
    await page.fill('#password', password);
  }
  await page.click('#connect');
}

/**
 * Waits until the page's Strophe status is one of `names` (e.g. ['CONNECTED']) or the attempt
 * failed; resolves to the state. Failure and timeout throw with the status history and log tail.
 */
export async function demoWaitStatus(page, names, ms = 15000) {
  try {
    await page.waitForFunction((want) => {
      const s = window.xmppgwDemo.state;
      return want.includes(s.status) || s.error !== null;
    }, names, { timeout: ms });
  } catch (err) {
    const s = await demoState(page);
    throw new Error(`page status never became ${names.join('|')}: ${err.message}\nstatus log: ${JSON.stringify(s.statusLog)}\nlog tail: ${JSON.stringify(s.log.slice(-6))}`);
  }
  const s = await demoState(page);
  if (!names.includes(s.status) && !(s.error && names.includes(s.error.status))) {
    throw new Error(`page status went ${JSON.stringify(s.statusLog)} instead of ${names.join('|')}; log tail: ${JSON.stringify(s.log.slice(-6))}`);
  }
  return s;
}

/** Sends a chat message with the page's message form. */
export async function demoSendMessage(page, to, body) {
  await page.fill('#message-to', to);
  await page.fill('#message-body', body);
  await page.click('#send-message');
}

/** Waits until the page received a message with `body`; resolves to it. */
export async function demoWaitMessage(page, body, ms = 10000) {
  const handle = await page.waitForFunction(
    (b) => window.xmppgwDemo.state.messages.find((m) => m.body === b) ?? false,
    body, { timeout: ms },
  );
  return handle.jsonValue();
}

/** Saves a full-page screenshot under tests/browser/screenshots/; resolves to the file path. */
export async function screenshot(page, name) {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
