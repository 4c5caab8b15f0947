// XMPP clients for the Node suites: @xmpp/client (WebSocket) and Strophe.js (WebSocket and BOSH),
// wrapped in one small interface so a test can run the same scenario with either library:
//
//   const c = await loginXmppJs({ service: gw.wsUrl, username: 'alice', password });
//   const c = await loginStrophe({ service: gw.boshUrl, username: 'alice', password });
//   c.jid                        full JID after bind
//   c.sendRaw('<message to=.../>')  one stanza as text (xmlns="jabber:client" added if missing)
//   c.sendMessage(to, body)
//   await c.iq('<iq type="get" ...>...</iq>')   -> the result/error stanza (a view, see below)
//   await c.waitFor((s) => s.name === 'message' && s.body === 'hi', 5000)
//   c.received                   every stanza received so far (views), oldest first
//   await c.stop()               closes the stream; never throws, never hangs
//
// A stanza "view" is { name, from, to, type, id, body, xml, el }: `xml` is the serialized stanza,
// `el` the library's own element. Every client started here is also tracked, so an `after` hook
// can call stopAllClients() even when a test failed half way.
//
// Node 20 has no global WebSocket: @xmpp/client needs one, so the `ws` class is installed. Strophe's
// Node entry installs `ws` and an @xmldom/xmldom DOM itself. Strophe's BOSH code reads
// `xhr.responseXML` and ignores responses that only carry `responseText`, so `xhr2` gets a
// `responseXML` getter that parses the text.
import WebSocket from 'ws';
import XHR2 from 'xhr2';
import { client as xmppClient, xml } from '@xmpp/client';
import { Strophe, $msg, $pres } from 'strophe.js';

if (typeof globalThis.WebSocket === 'undefined') globalThis.WebSocket = WebSocket;

// Strophe logs every request at DEBUG to the console; XMPPGW_TEST_DEBUG=1 brings that back.
Strophe.setLogLevel(process.env.XMPPGW_TEST_DEBUG ? Strophe.LogLevel.DEBUG : Strophe.LogLevel.ERROR);

const XMLHttpRequest = XHR2.XMLHttpRequest ?? XHR2;
if (!Object.getOwnPropertyDescriptor(XMLHttpRequest.prototype, 'responseXML')) {
  Object.defineProperty(XMLHttpRequest.prototype, 'responseXML', {
    configurable: true,
    get() {
      if (this.readyState !== 4 || !this.responseText) return null;
      return new globalThis.DOMParser().parseFromString(this.responseText, 'text/xml');
    },
  });
}
if (typeof globalThis.XMLHttpRequest === 'undefined') globalThis.XMLHttpRequest = XMLHttpRequest;

export { xml, Strophe, WebSocket };

export const DEFAULT_TIMEOUT_MS = 10000;
const open = new Set();

/** Promise that rejects after `ms` with `what` in the message; `.cancel()` clears the timer. */
export function timeout(ms, what) {
  let timer;
  const p = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  p.cancel = () => clearTimeout(timer);
  p.catch(() => {});
  return p;
}

/** Races `promise` against a timeout. */
export async function withTimeout(promise, ms, what) {
  const t = timeout(ms, what);
  try {
    return await Promise.race([promise, t]);
  } finally {
    t.cancel();
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Stops every client started through this module that is still open. */
export async function stopAllClients() {
  await Promise.all([...open].map((c) => c.stop()));
}

let idCounter = 0;
export const nextId = (prefix = 't') => `${prefix}${process.pid}-${++idCounter}`;

// An iq to send and the promise of its answer: gives the iq an id when it has none.
function expectIqAnswer(inbox, text, ms) {
  let stanza = text;
  let id = /\sid\s*=\s*["']([^"']*)["']/.exec(text.slice(0, text.indexOf('>')))?.[1];
  if (!id) {
    id = nextId('iq');
    stanza = text.replace(/^\s*<iq\b/, `<iq id="${id}"`);
  }
  const answer = inbox.waitFor((s) => s.name === 'iq' && s.id === id && (s.type === 'result' || s.type === 'error'), ms, `iq answer ${id}`);
  return { stanza, answer };
}

function escapeAttr(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
}
function escapeText(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
export { escapeAttr, escapeText };

// Adds xmlns="jabber:client" to the root element of a stanza text when it has no xmlns.
function withClientNs(text) {
  const m = /^\s*<([A-Za-z_][\w.-]*)([\s/>])/.exec(text);
  if (!m) throw new Error(`not a stanza: ${text.slice(0, 80)}`);
  const head = text.slice(0, m.index + m[0].length - 1);
  const rest = text.slice(m.index + m[0].length - 1);
  const rootEnd = text.indexOf('>');
  if (/\sxmlns\s*=/.test(text.slice(0, rootEnd))) return text;
  return `${head} xmlns="jabber:client"${rest}`;
}

const preview = (text, n = 300) => (text === undefined ? 'none'
  : text.length > n ? `${text.slice(0, n)}... (${text.length} chars)` : text);

// Shared part of both wrappers: the received list and waiting on it.
function makeInbox() {
  const received = [];
  const waiters = new Set();
  return {
    received,
    push(view) {
      received.push(view);
      for (const w of waiters) {
        if (w.pred(view)) {
          waiters.delete(w);
          w.resolve(view);
        }
      }
    },
    /** First stanza (already received or arriving within `ms`) that `pred` accepts. */
    waitFor(pred, ms = DEFAULT_TIMEOUT_MS, what = 'stanza') {
      const found = received.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        const timer = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`timed out after ${ms} ms waiting for ${what}; got ${received.length} stanzas, last: ${preview(received.at(-1)?.xml)}`));
        }, ms);
        w.resolve = (v) => { clearTimeout(timer); resolve(v); };
        waiters.add(w);
      });
    },
    /** Resolves when `pred` accepted `n` stanzas in all; returns them. */
    async waitForCount(pred, n, ms = DEFAULT_TIMEOUT_MS, what = 'stanzas') {
      const deadline = Date.now() + ms;
      for (;;) {
        const got = received.filter(pred);
        if (got.length >= n) return got;
        if (Date.now() > deadline) {
          throw new Error(`timed out after ${ms} ms waiting for ${n} ${what}; got ${got.length}`);
        }
        await sleep(20);
      }
    },
  };
}

// ---------------------------------------------------------------- @xmpp/client

function viewXmppJs(el) {
  return {
    name: el.name,
    from: el.attrs.from,
    to: el.attrs.to,
    type: el.attrs.type,
    id: el.attrs.id,
    body: el.getChildText('body') ?? undefined,
    xml: el.toString(),
    el,
  };
}

/**
 * Logs in with @xmpp/client over WebSocket.
 *   service    ws:// URL (the gateway's wsUrl)
 *   domain     XMPP domain (default "localhost")
 *   username, password  (both left out: SASL ANONYMOUS when the server offers it)
 *   resource   optional resource to bind
 *   mechanism  "PLAIN" or "SCRAM-SHA-1" to force one; default: the library's choice
 *   timeoutMs  login deadline (default 10 s)
 * Resolves to the wrapper described at the top of this file, with `.client` the @xmpp/client.
 */
export async function loginXmppJs({
  service, domain = 'localhost', username, password, resource, mechanism, timeoutMs = DEFAULT_TIMEOUT_MS,
}) {
  const credentials = async (authenticate, mechanisms, _fast, _entity) => {
    if (mechanism && !mechanisms.includes(mechanism)) {
      throw new Error(`server did not offer ${mechanism}; offered ${mechanisms.join(', ')}`);
    }
    await authenticate({ username, password }, mechanism ?? mechanisms[0]);
  };
  const c = xmppClient({ service, domain, resource, credentials });
  c.reconnect.stop();
  const inbox = makeInbox();
  const errors = [];
  let mechanismUsed = null;
  c.on('stanza', (el) => inbox.push(viewXmppJs(el)));
  c.on('error', (err) => errors.push(err));
  c.on('send', (el) => {
    if (el.name === 'auth' && el.attrs.mechanism) mechanismUsed = el.attrs.mechanism;
  });

  let stopped = false;
  const wrapper = {
    kind: 'xmpp.js',
    client: c,
    jid: null,
    errors,
    get mechanism() { return mechanismUsed; },
    received: inbox.received,
    waitFor: inbox.waitFor,
    waitForCount: inbox.waitForCount,
    async sendRaw(text) {
      await c.write(withClientNs(text));
    },
    async sendMessage(to, body, { type = 'chat', id = nextId('m') } = {}) {
      await c.send(xml('message', { to, type, id }, xml('body', {}, body)));
    },
    async sendPresence(attrs = {}, children = []) {
      await c.send(xml('presence', attrs, ...children));
    },
    async iq(text, ms = DEFAULT_TIMEOUT_MS) {
      const { stanza, answer } = expectIqAnswer(inbox, text, ms);
      await c.write(withClientNs(stanza));
      return answer;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      open.delete(wrapper);
      c.reconnect.stop();
      try {
        await withTimeout(c.stop(), 3000, 'xmpp.js stop');
      } catch {
        try { c.socket?.socket?.terminate?.(); } catch { /* already gone */ }
      }
    },
  };
  open.add(wrapper);
  try {
    const address = await withTimeout(c.start(), timeoutMs, `xmpp.js login ${username} via ${service}`);
    wrapper.jid = address.toString();
    return wrapper;
  } catch (err) {
    await wrapper.stop();
    err.message = `xmpp.js login of ${username} at ${service} failed: ${err.message}${errors.length ? ` (errors: ${errors.map((e) => e.message).join('; ')})` : ''}`;
    throw err;
  }
}

// ---------------------------------------------------------------- Strophe.js

function viewStrophe(el) {
  const bodyEl = el.getElementsByTagName('body')[0];
  const attr = (n) => (el.hasAttribute(n) ? el.getAttribute(n) : undefined);
  return {
    name: el.tagName,
    from: attr('from'),
    to: attr('to'),
    type: attr('type'),
    id: attr('id'),
    body: bodyEl ? bodyEl.textContent : undefined,
    xml: Strophe.serialize(el),
    el,
  };
}

const STROPHE_STATUS = Object.fromEntries(Object.entries(Strophe.Status).map(([k, v]) => [v, k]));
const STROPHE_MECHANISMS = {
  PLAIN: () => Strophe.SASLPlain,
  'SCRAM-SHA-1': () => Strophe.SASLSHA1,
};

/**
 * Logs in with Strophe.js. `service` chooses the transport: ws:// for WebSocket, http:// for BOSH.
 *   domain, username, password, resource, mechanism ("PLAIN" | "SCRAM-SHA-1"), timeoutMs as above
 *   anonymous  true: SASL ANONYMOUS (Strophe's connect() with a JID of the domain alone, no password);
 *              username and password are not used
 *   options    extra Strophe.Connection options
 * Resolves to the wrapper, with `.conn` the Strophe.Connection and `.statusLog` its status changes.
 */
export async function loginStrophe({
  service, domain = 'localhost', username, password, resource, mechanism, timeoutMs = DEFAULT_TIMEOUT_MS,
  anonymous = false, options = {},
}) {
  const connOptions = { ...options };
  if (mechanism) {
    const m = STROPHE_MECHANISMS[mechanism];
    if (!m) throw new Error(`no Strophe mechanism mapping for ${mechanism}`);
    connOptions.mechanisms = [m()];
  }
  const conn = new Strophe.Connection(service, connOptions);
  const inbox = makeInbox();
  const statusLog = [];
  const transportLog = [];
  let mechanismUsed = null;
  conn.addHandler((el) => { inbox.push(viewStrophe(el)); return true; });
  conn.xmlOutput = (el) => {
    transportLog.push(['out', Strophe.serialize(el)]);
    const auth = el.tagName === 'auth' ? el : el.getElementsByTagName?.('auth')[0];
    if (auth && auth.getAttribute('mechanism')) mechanismUsed = auth.getAttribute('mechanism');
  };
  conn.xmlInput = (el) => transportLog.push(['in', Strophe.serialize(el)]);

  let stopped = false;
  let disconnected = null;
  const disconnectedP = new Promise((r) => { disconnected = r; });
  const wrapper = {
    kind: service.startsWith('ws') ? 'strophe-ws' : 'strophe-bosh',
    conn,
    jid: null,
    statusLog,
    transportLog,
    get mechanism() { return mechanismUsed; },
    received: inbox.received,
    waitFor: inbox.waitFor,
    waitForCount: inbox.waitForCount,
    async sendRaw(text) {
      const doc = new globalThis.DOMParser().parseFromString(withClientNs(text), 'text/xml');
      if (doc.documentElement.tagName === 'parsererror') throw new Error(`bad stanza text: ${text}`);
      conn.send(doc.documentElement);
      conn.flush();
    },
    async sendMessage(to, body, { type = 'chat', id = nextId('m') } = {}) {
      conn.send($msg({ to, type, id }).c('body').t(body));
      conn.flush();
    },
    async sendPresence(attrs = {}) {
      conn.send($pres(attrs));
      conn.flush();
    },
    async iq(text, ms = DEFAULT_TIMEOUT_MS) {
      const { stanza, answer } = expectIqAnswer(inbox, text, ms);
      await wrapper.sendRaw(stanza);
      return answer;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      open.delete(wrapper);
      try {
        if (conn.connected) {
          conn.disconnect('test done');
          await withTimeout(disconnectedP, 3000, 'strophe disconnect');
        }
      } catch { /* fall through to a hard reset */ }
      try { conn.reset(); } catch { /* nothing left */ }
      try { conn._proto?.socket?.terminate?.(); } catch { /* nothing left */ }
    },
  };
  open.add(wrapper);

  const login = new Promise((resolve, reject) => {
    const bare = anonymous ? domain : `${username}@${domain}`;
    const jid = resource ? `${bare}/${resource}` : bare;
    conn.connect(jid, anonymous ? null : password, (status, condition) => {
      statusLog.push({ status: STROPHE_STATUS[status] ?? status, condition });
      if (status === Strophe.Status.CONNECTED) resolve();
      else if (status === Strophe.Status.DISCONNECTED) {
        disconnected();
        reject(new Error(`disconnected${condition ? `: ${condition}` : ''}`));
      } else if ([Strophe.Status.CONNFAIL, Strophe.Status.AUTHFAIL, Strophe.Status.ERROR,
        Strophe.Status.CONNTIMEOUT].includes(status)) {
        reject(new Error(`${STROPHE_STATUS[status]}${condition ? `: ${condition}` : ''}`));
      }
    });
  });
  try {
    await withTimeout(login, timeoutMs, `Strophe login ${username} via ${service}`);
    wrapper.jid = conn.jid;
    return wrapper;
  } catch (err) {
    await wrapper.stop();
    err.message = `Strophe login of ${username} at ${service} failed: ${err.message}; status: ${JSON.stringify(statusLog)}; last frames: ${JSON.stringify(transportLog.slice(-6))}`;
    throw err;
  }
}

/** Logs in with the library named `kind` ("xmpp.js" | "strophe"); same arguments as above. */
export function login(kind, args) {
  if (kind === 'xmpp.js') return loginXmppJs(args);
  if (kind === 'strophe') return loginStrophe(args);
  throw new Error(`unknown client kind ${kind}`);
}

/** Sends initial presence and waits until the client sees its own presence come back. */
export async function goOnline(c, ms = DEFAULT_TIMEOUT_MS) {
  const bare = c.jid.split('/')[0];
  const seen = c.waitFor((s) => s.name === 'presence' && s.from === c.jid && s.type === undefined, ms, `own presence of ${bare}`);
  await c.sendPresence();
  return seen;
}
