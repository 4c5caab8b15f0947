// Light XMPP clients for the scale-out suite (lib/scale.mjs): hundreds of sessions in one Node
// process, so no XML library on the hot path. A raw RFC 7395 WebSocket client (`ws`) and a raw
// XEP-0124/0206 BOSH client (node:https with a keep-alive agent), each logging in with SASL PLAIN
// and binding a resource, then sending and receiving <message/> stanzas that are counted by id.
// They speak to the proxy over TLS from a source address of the caller's choosing, and note how
// their session ended (the stream error or BOSH terminate condition), so that the suite can tell
// a system-shutdown from a loss.
import https from 'node:https';
import WebSocket from 'ws';

const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';
const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
const NS_BOSH = 'http://jabber.org/protocol/httpbind';
const NS_XBOSH = 'urn:xmpp:xbosh';

const plain = (user, password) => Buffer.from(`\0${user}\0${password}`).toString('base64');
const attr = (text, name) => new RegExp(`\\s${name}=(["'])([^"']*)\\1`).exec(text)?.[2];
const messageRe = /<message\b[^>]*>[\s\S]*?<\/message>|<message\b[^>]*\/>/g;
const STREAM_ERROR_RE = /<(?:stream:)?error\b[\s\S]*?<([a-z-]+)\s+xmlns=["']urn:ietf:params:xml:ns:xmpp-streams["']/;

/** The `id` and `from` of every <message/> in text. */
function messages(text) {
  const out = [];
  for (const m of text.matchAll(messageRe)) {
    const head = m[0].slice(0, m[0].indexOf('>'));
    out.push({ id: attr(head, 'id'), from: attr(head, 'from') });
  }
  return out;
}

export const messageStanza = (to, id) =>
  `<message xmlns="jabber:client" to="${to}" id="${id}" type="chat"><body>scale ${id}</body></message>`;

// Fields both clients share: what the suite reads.
function base(kind, opts) {
  const { user, resource, src } = opts;
  return {
    kind, user, resource, src, jid: `${user}@localhost/${resource}`,
    received: opts.received ?? new Map(), // message id -> times received (kept across reconnects)
    ended: null, // { condition, at } once the session ended
    onMessage: null, // (id) => void
    onEnd: null, // ({ condition }) => void
    note(id) {
      this.received.set(id, (this.received.get(id) ?? 0) + 1);
      this.onMessage?.(id);
    },
  };
}

// ---------------------------------------------------------------- WebSocket

/**
 * A raw WebSocket session: resolves once the resource is bound. opts: { url, user, password,
 * resource, src, tls (ca, ...), timeoutMs }. The object: jid, received, ended, send(to, id),
 * close() (a clean <close/>), terminate().
 */
export function wsLogin(opts) {
  const { url, user, password, resource, src, tls, timeoutMs = 20000 } = opts;
  const c = base('ws', opts);
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['xmpp'], { ...tls, localAddress: src, family: 4, handshakeTimeout: timeoutMs, perMessageDeflate: false });
    c.ws = ws;
    let step = 'open';
    let bound = false;
    const timer = setTimeout(() => fail(new Error(`login step ${step} timed out`)), timeoutMs);
    const fail = (err) => {
      clearTimeout(timer);
      ws.terminate();
      err.message = `WebSocket login of ${c.jid} from ${src}: ${err.message}`;
      reject(err);
    };
    const end = (condition) => {
      if (c.ended) return;
      c.ended = { condition, at: Date.now() };
      c.onEnd?.(c.ended);
    };
    c.send = (to, id) => ws.send(messageStanza(to, id));
    c.close = () => new Promise((r) => {
      if (ws.readyState !== WebSocket.OPEN) { r(); return; }
      ws.once('close', r);
      ws.send(`<close xmlns="${NS_FRAMING}"/>`);
      setTimeout(() => { ws.terminate(); r(); }, 3000);
    });
    c.terminate = () => ws.terminate();
    const open = () => ws.send(`<open xmlns="${NS_FRAMING}" to="localhost" version="1.0"/>`);
    ws.on('open', open);
    ws.on('error', (err) => { if (!bound) fail(err); });
    ws.on('close', (code) => {
      if (!bound) fail(new Error(`closed (${code}) at step ${step}`));
      else end(c.streamError ?? `closed ${code}`);
    });
    ws.on('message', (data) => {
      const f = data.toString();
      if (bound) {
        if (f.startsWith('<message')) {
          for (const m of messages(f)) c.note(m.id);
        } else if (/^<(stream:)?error\b/.test(f)) {
          c.streamError = STREAM_ERROR_RE.exec(f)?.[1] ?? 'stream error';
        } else if (f.startsWith('<close')) {
          c.streamError ??= 'close';
        }
        return;
      }
      if (f.startsWith('<open')) return;
      if (/^<(stream:)?error\b/.test(f)) { fail(new Error(`stream error at step ${step}: ${f}`)); return; }
      if (step === 'open' && /<mechanism>PLAIN</.test(f)) {
        step = 'auth';
        ws.send(`<auth xmlns="${NS_SASL}" mechanism="PLAIN">${plain(user, password)}</auth>`);
      } else if (step === 'auth') {
        if (!f.startsWith('<success')) { fail(new Error(`SASL: ${f}`)); return; }
        step = 'restart';
        open();
      } else if (step === 'restart' && /urn:ietf:params:xml:ns:xmpp-bind/.test(f)) {
        step = 'bind';
        ws.send(`<iq xmlns="jabber:client" type="set" id="bind1"><bind xmlns="${NS_BIND}"><resource>${resource}</resource></bind></iq>`);
      } else if (step === 'bind' && f.startsWith('<iq')) {
        const jid = /<jid>([^<]+)<\/jid>/.exec(f)?.[1];
        if (attr(f.slice(0, f.indexOf('>')), 'type') !== 'result' || !jid) { fail(new Error(`bind: ${f}`)); return; }
        c.jid = jid;
        bound = true;
        step = 'bound';
        clearTimeout(timer);
        resolve(c);
      }
    });
  });
}

// ---------------------------------------------------------------- BOSH

/**
 * A raw BOSH session (hold 1, requests 2): resolves once the resource is bound. opts: { url (the
 * https URL of http-bind), host (the Host header: the proxy's public host), user, password,
 * resource, src (one address, or a function giving the source address of each request: a client
 * whose address changes), cookies (true: keeps what Set-Cookie gave, as a browser does; false:
 * sends none), agent, tls, wait, timeoutMs }. The object: jid, sid, received, ended, requests,
 * send(to, id), close() (type='terminate'), plus cookieJar.
 */
export function boshLogin(opts) {
  const { url, host, user, password, resource, agent, tls, wait = 20, timeoutMs = 20000 } = opts;
  const c = base('bosh', { ...opts, src: typeof opts.src === 'function' ? 'rotating' : opts.src });
  const srcOf = typeof opts.src === 'function' ? opts.src : () => opts.src;
  const target = new URL(url);
  c.cookieJar = new Map();
  c.cookies = Boolean(opts.cookies);
  c.requests = 0;
  c.srcs = new Set();
  let rid = Math.floor(Math.random() * 2 ** 40) + 1000;
  let outstanding = 0;
  const queue = [];
  let live = false; // the poll loop runs
  let terminateSent = false;

  const end = (condition) => {
    if (c.ended) return;
    c.ended = { condition, at: Date.now() };
    live = false;
    c.onEnd?.(c.ended);
  };

  /** One request; resolves the answer body (text). */
  const post = (payload) => new Promise((resolve, reject) => {
    const headers = { Host: host, 'Content-Type': 'text/xml; charset=utf-8' };
    if (c.cookies && c.cookieJar.size) headers.Cookie = [...c.cookieJar].map(([k, v]) => `${k}=${v}`).join('; ');
    const localAddress = srcOf();
    c.srcs.add(localAddress);
    c.requests++;
    const req = https.request({
      host: target.hostname === 'localhost' ? '127.0.0.1' : target.hostname, port: target.port,
      path: target.pathname, method: 'POST', headers, agent, servername: 'localhost', localAddress, ...tls,
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        for (const sc of [res.headers['set-cookie'] ?? []].flat()) {
          const [kv] = sc.split(';');
          const i = kv.indexOf('=');
          if (i > 0) c.cookieJar.set(kv.slice(0, i).trim(), kv.slice(i + 1).trim());
        }
        if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 300)}`));
        else resolve(text);
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout((wait + 30) * 1000, () => req.destroy(new Error('no answer')));
    req.end(payload);
  });

  const wrap = (inner = '', extra = '') =>
    `<body xmlns="${NS_BOSH}" rid="${rid++}" sid="${c.sid}"${extra}>${inner}</body>`;

  // Notes the body's messages (a terminate body may carry the last ones too); returns its
  // condition when it is a terminate, else null.
  const take = (text) => {
    const head = text.slice(0, text.indexOf('>') + 1);
    if (text.includes('<message')) for (const m of messages(text)) c.note(m.id);
    if (attr(head, 'type') === 'terminate') return attr(head, 'condition') ?? 'terminate';
    const se = STREAM_ERROR_RE.exec(text);
    if (se) return se[1];
    return null;
  };

  const pump = () => {
    while (live && (outstanding === 0 || (queue.length && outstanding < 2))) {
      const payload = queue.splice(0).join('');
      outstanding++;
      post(wrap(payload)).then((text) => {
        outstanding--;
        const cond = take(text);
        if (cond) end(cond);
        else pump();
      }, (err) => {
        outstanding--;
        c.lastError = err.message;
        end(`request failed: ${err.message}`);
      });
    }
  };

  c.send = (to, id) => {
    if (!live) throw new Error(`BOSH session of ${c.jid} is not live (${c.ended?.condition})`);
    queue.push(messageStanza(to, id));
    pump();
  };
  c.close = async () => {
    if (!live || terminateSent) return;
    terminateSent = true;
    live = false;
    await post(wrap('<presence xmlns="jabber:client" type="unavailable"/>', ' type="terminate"')).catch(() => {});
  };
  c.terminate = () => { live = false; };

  const login = async () => {
    const created = await post(`<body xmlns="${NS_BOSH}" xmlns:xmpp="${NS_XBOSH}" rid="${rid++}" to="localhost" `
      + `content="text/xml; charset=utf-8" hold="1" wait="${wait}" ver="1.11" xml:lang="en" xmpp:version="1.0"/>`);
    c.sid = attr(created.slice(0, created.indexOf('>')), 'sid');
    if (!c.sid) throw new Error(`no sid: ${created}`);
    let features = created;
    while (!/<mechanism>PLAIN</.test(features)) {
      features = await post(wrap());
      if (take(features)) throw new Error(`ended before features: ${features}`);
    }
    const auth = await post(wrap(`<auth xmlns="${NS_SASL}" mechanism="PLAIN">${plain(user, password)}</auth>`));
    if (!/<success\b/.test(auth)) throw new Error(`SASL: ${auth}`);
    let restarted = await post(wrap('', ` xmlns:xmpp="${NS_XBOSH}" to="localhost" xml:lang="en" xmpp:restart="true"`));
    while (!/xmpp-bind/.test(restarted)) {
      restarted = await post(wrap());
      if (take(restarted)) throw new Error(`ended before bind: ${restarted}`);
    }
    let bound = await post(wrap(`<iq xmlns="jabber:client" type="set" id="bind1"><bind xmlns="${NS_BIND}"><resource>${resource}</resource></bind></iq>`));
    while (!/<jid>/.test(bound)) {
      if (take(bound)) throw new Error(`ended at bind: ${bound}`);
      bound = await post(wrap());
    }
    c.jid = /<jid>([^<]+)<\/jid>/.exec(bound)[1];
    live = true;
    pump();
    return c;
  };
  let timer;
  return Promise.race([
    login(),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('timed out')), timeoutMs); }),
  ]).then((v) => { clearTimeout(timer); return v; }, (err) => {
    clearTimeout(timer);
    live = false;
    err.message = `BOSH login of ${c.jid} (cookies ${c.cookies}): ${err.message}`;
    throw err;
  });
}

/** A keep-alive https agent for the BOSH clients (one per run: sockets are pooled per source). */
export const boshAgent = (tls) => new https.Agent({ ...tls, keepAlive: true, maxSockets: Infinity, maxFreeSockets: 4096 });
