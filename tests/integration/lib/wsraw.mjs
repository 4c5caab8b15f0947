// Raw RFC 7395 probes with the `ws` client: every frame the server sends is kept in order, parsed
// strictly (each must be one well-formed XML document), and can be awaited one by one.
import WebSocket from 'ws';
import { DOMParser } from '@xmldom/xmldom';

export const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';
export const NS_STREAM = 'http://etherx.jabber.org/streams';
export const NS_STREAMS = 'urn:ietf:params:xml:ns:xmpp-streams';
export const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
export const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';
export const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
export const NS_CLIENT = 'jabber:client';

export const openFrame = (to = 'localhost') =>
  `<open xmlns="${NS_FRAMING}" to="${to}" version="1.0"/>`;
export const closeFrame = () => `<close xmlns="${NS_FRAMING}"/>`;

const clip = (t, n = 400) => (t.length > n ? `${t.slice(0, n)}... (${t.length} chars)` : t);
const showFrames = (frames) => frames.map((f) => clip(f.text ?? f)).join(' | ');

/** Parses one frame as a whole XML document; throws on anything not well-formed. */
export function parseFrame(text) {
  const errors = [];
  const doc = new DOMParser({
    onError: (level, msg) => { if (level !== 'warning') errors.push(String(msg)); },
  }).parseFromString(text, 'text/xml');
  if (errors.length || !doc.documentElement) {
    throw new Error(`frame is not one well-formed XML document (${errors.join('; ')}): ${clip(text)}`);
  }
  return doc.documentElement;
}

/** Child elements of `el`, optionally only those with local name `name` (and namespace `ns`). */
export function children(el, name, ns) {
  const out = [];
  for (let n = el.firstChild; n; n = n.nextSibling) {
    if (n.nodeType !== 1) continue;
    if (name && n.localName !== name) continue;
    if (ns && n.namespaceURI !== ns) continue;
    out.push(n);
  }
  return out;
}

/**
 * Does the WebSocket upgrade and reports what came back: { status, headers, protocol, extensions }.
 * status is 101 when the upgrade succeeded (the socket is then closed again).
 */
export function upgrade(url, { protocols = ['xmpp'], origin, headers, timeoutMs = 5000, perMessageDeflate } = {}) {
  return new Promise((resolve, reject) => {
    const opts = { handshakeTimeout: timeoutMs, headers };
    if (origin !== undefined) opts.origin = origin;
    if (perMessageDeflate !== undefined) opts.perMessageDeflate = perMessageDeflate;
    const ws = protocols === null ? new WebSocket(url, opts) : new WebSocket(url, protocols, opts);
    ws.on('unexpected-response', (req, res) => {
      resolve({ status: res.statusCode, headers: res.headers });
      req.destroy();
      res.destroy();
    });
    ws.on('upgrade', (res) => {
      ws.once('open', () => {
        resolve({ status: 101, headers: res.headers, protocol: ws.protocol, extensions: ws.extensions });
        ws.terminate();
      });
    });
    ws.on('error', (err) => {
      if (err.message.startsWith('Unexpected server response')) return; // handled above
      reject(err);
    });
  });
}

/**
 * Opens a WebSocket with subprotocol "xmpp" (from `localAddress` when given) and resolves to a probe:
 *   send(text), sendBinary(buf), next(ms) -> { text, el } (next unread frame), frames (all so far),
 *   closed -> Promise<{ code, reason }>, pings (count), ws, close(), terminate(),
 *   readUntilClose(ms) -> { frames (unread ones, parsed), code, reason }
 */
export function connect(url, { protocols = ['xmpp'], origin, timeoutMs = 5000, perMessageDeflate, localAddress } = {}) {
  return new Promise((resolve, reject) => {
    const opts = { handshakeTimeout: timeoutMs };
    if (localAddress) opts.localAddress = localAddress; // e.g. 127.0.0.2: another client address
    if (origin !== undefined) opts.origin = origin;
    if (perMessageDeflate !== undefined) opts.perMessageDeflate = perMessageDeflate;
    const ws = new WebSocket(url, protocols, opts);
    const frames = [];
    let readPos = 0;
    const waiters = [];
    let closeInfo = null;
    let resolveClosed;
    const closed = new Promise((r) => { resolveClosed = r; });
    const probe = {
      ws,
      frames,
      pings: 0,
      binaryFrames: 0,
      closed,
      get isClosed() { return closeInfo !== null; },
      send(text) { ws.send(text); },
      sendBinary(buf) { ws.send(buf, { binary: true }); },
      /** Sends bytes in a text frame without checking that they are UTF-8. */
      sendTextBytes(buf) { ws.send(buf, { binary: false }); },
      next(ms = 5000) {
        if (readPos < frames.length) return Promise.resolve(frames[readPos++]);
        if (closeInfo) return Promise.reject(new Error(`socket closed (${closeInfo.code}) and no frame is left to read`));
        return new Promise((res, rej) => {
          const w = {
            res: (f) => { clearTimeout(timer); readPos++; res(f); },
            rej: (e) => { clearTimeout(timer); rej(e); },
          };
          const timer = setTimeout(() => {
            waiters.splice(waiters.indexOf(w), 1);
            rej(new Error(`no frame within ${ms} ms (frames so far: ${showFrames(frames)})`));
          }, ms);
          waiters.push(w);
        });
      },
      async readUntilClose(ms = 5000) {
        let timer;
        const t = new Promise((_, rej) => {
          timer = setTimeout(() => rej(new Error(`socket not closed within ${ms} ms; frames: ${showFrames(frames)}`)), ms);
        });
        try {
          const info = await Promise.race([closed, t]);
          const rest = frames.slice(readPos);
          readPos = frames.length;
          return { frames: rest, ...info };
        } finally {
          clearTimeout(timer);
        }
      },
      close() { try { ws.close(); } catch { /* closed */ } },
      terminate() { try { ws.terminate(); } catch { /* closed */ } },
    };
    ws.on('message', (data, isBinary) => {
      if (isBinary) probe.binaryFrames++;
      const text = data.toString('utf8');
      let el = null;
      let parseError = null;
      try { el = parseFrame(text); } catch (err) { parseError = err; }
      const f = { text, el, parseError, binary: isBinary };
      frames.push(f);
      const w = waiters.shift();
      if (w) w.res(f);
    });
    ws.on('ping', () => { probe.pings++; });
    ws.on('close', (code, reason) => {
      closeInfo = { code, reason: reason.toString() };
      resolveClosed(closeInfo);
      for (const w of waiters.splice(0)) w.rej(new Error(`socket closed (${code}) before the next frame`));
    });
    ws.on('open', () => resolve(probe));
    ws.on('unexpected-response', (req, res) => {
      reject(new Error(`upgrade refused: HTTP ${res.statusCode}`));
      req.destroy();
    });
    ws.on('error', (err) => {
      if (!err.message.startsWith('Unexpected server response')) reject(err);
    });
  });
}

/** Reads the next frame and checks it is a framing <open/> answer; returns its element. */
export async function expectOpen(probe, { from = 'localhost' } = {}) {
  const f = await probe.next();
  if (f.parseError) throw f.parseError;
  const el = f.el;
  const problems = [];
  if (el.localName !== 'open' || el.namespaceURI !== NS_FRAMING) problems.push('not <open xmlns=framing>');
  if (el.getAttribute('from') !== from) problems.push(`from="${el.getAttribute('from')}"`);
  if (!el.getAttribute('id')) problems.push('no id');
  if (el.getAttribute('version') !== '1.0') problems.push(`version="${el.getAttribute('version')}"`);
  if (!el.getAttributeNS('http://www.w3.org/XML/1998/namespace', 'lang')) problems.push('no xml:lang');
  if (problems.length) throw new Error(`bad <open/> answer (${problems.join(', ')}): ${f.text}`);
  return el;
}

/** Reads the next frame and checks it is <stream:features/>; returns its element. */
export async function expectFeatures(probe) {
  const f = await probe.next();
  if (f.parseError) throw f.parseError;
  if (f.el.localName !== 'features' || f.el.namespaceURI !== NS_STREAM) {
    throw new Error(`expected <stream:features/>, got: ${f.text}`);
  }
  return f.el;
}

/**
 * After a stream error: reads frames until the socket closes and checks the RFC 7395 sequence:
 * [<open/> when `expectOpenFirst`], <stream:error> with `condition` (streams namespace) and a
 * <text/>, then <close/>, then the WebSocket close. Returns { errorEl, text, code, frames }.
 */
export async function expectStreamError(probe, condition, { expectOpenFirst = false, timeoutMs = 5000 } = {}) {
  const { frames, code, reason } = await probe.readUntilClose(timeoutMs);
  const texts = frames.map((f) => f.text);
  const where = `frames: ${JSON.stringify(texts.map((t) => clip(t)))}, ws close ${code} ${reason}`;
  let i = 0;
  if (expectOpenFirst) {
    const f = frames[i++];
    if (!f || !f.el || f.el.localName !== 'open' || f.el.namespaceURI !== NS_FRAMING) {
      throw new Error(`expected <open/> before the stream error; ${where}`);
    }
  }
  const errFrame = frames[i++];
  if (!errFrame || errFrame.parseError || errFrame.el.localName !== 'error' || errFrame.el.namespaceURI !== NS_STREAM) {
    throw new Error(`expected <stream:error/>; ${where}`);
  }
  const conds = children(errFrame.el, null, NS_STREAMS).filter((c) => c.localName !== 'text');
  if (conds.length !== 1 || conds[0].localName !== condition) {
    throw new Error(`expected condition <${condition}/>, got ${conds.map((c) => c.localName).join(',') || 'none'}; ${where}`);
  }
  const textEl = children(errFrame.el, 'text', NS_STREAMS)[0];
  if (!textEl) throw new Error(`stream error has no <text/>; ${where}`);
  const closeF = frames[i++];
  if (!closeF || !closeF.el || closeF.el.localName !== 'close' || closeF.el.namespaceURI !== NS_FRAMING) {
    throw new Error(`expected <close/> after the stream error; ${where}`);
  }
  if (frames.length > i) throw new Error(`frames after <close/>; ${where}`);
  return { errorEl: errFrame.el, text: textEl.textContent, code, frames: texts };
}

/**
 * Opens a stream and authenticates with SASL PLAIN, restarts, binds. Resolves to
 * { probe, jid, features: [first, second] }.
 */
export async function rawLogin(url, { username, password, domain = 'localhost', resource = 'raw' } = {}) {
  const probe = await connect(url);
  try {
    probe.send(openFrame(domain));
    await expectOpen(probe, { from: domain });
    const f1 = await expectFeatures(probe);
    const auth = Buffer.from(`\0${username}\0${password}`).toString('base64');
    probe.send(`<auth xmlns="${NS_SASL}" mechanism="PLAIN">${auth}</auth>`);
    const success = await probe.next();
    if (!success.el || success.el.localName !== 'success' || success.el.namespaceURI !== NS_SASL) {
      throw new Error(`expected <success/>, got ${success.text}`);
    }
    probe.send(openFrame(domain));
    await expectOpen(probe, { from: domain });
    const f2 = await expectFeatures(probe);
    probe.send(`<iq xmlns="${NS_CLIENT}" type="set" id="bind1"><bind xmlns="${NS_BIND}"><resource>${resource}</resource></bind></iq>`);
    const bound = await probe.next();
    const jidEl = bound.el?.getElementsByTagNameNS(NS_BIND, 'jid')[0];
    if (!jidEl || bound.el.getAttribute('type') !== 'result') throw new Error(`bind failed: ${bound.text}`);
    return { probe, jid: jidEl.textContent, features: [f1, f2], bindFrame: bound };
  } catch (err) {
    probe.terminate();
    throw err;
  }
}
