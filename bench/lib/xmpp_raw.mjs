// Bare XMPP clients for the side-by-side benchmark: the same few lines of protocol over each
// transport, so that every column pays the same (small) client cost and no client library sets a
// figure. A session logs in with SASL PLAIN, restarts the stream and binds a resource; after that it
// only sends <message/> stanzas and counts the ones that come back (by id).
//
//   tcp       XMPP over TCP (RFC 6120), plain: the direct client of the upstream (the floor)
//   ws        XMPP over WebSocket (RFC 7395 framing: <open/>, <close/>, one stanza per message)
//   ws-draft  the pre-RFC WebSocket framing that node-xmpp-bosh speaks (<stream:stream/> in a
//             message of its own, '</stream:stream>' to end)
//   bosh      BOSH (XEP-0124/0206): hold 1, at most 2 requests in flight, keep-alive HTTP/1.1
import net from 'node:net';
import http from 'node:http';
import WebSocket from 'ws';

const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';
const NS_BOSH = 'http://jabber.org/protocol/httpbind';
const NS_XBOSH = 'urn:xmpp:xbosh';
const STREAM_OPEN = (domain) => `<stream:stream to='${domain}' xmlns='jabber:client' `
  + `xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>`;
const DRAFT_OPEN = (domain) => `<stream:stream to='${domain}' xmlns='jabber:client' `
  + `xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'/>`;
const FEATURES_END = /<\/(?:stream:)?features>|<(?:stream:)?features[^>]*\/>/;

export const TRANSPORTS = ['tcp', 'ws', 'ws-draft', 'bosh'];

/** Escapes text for an XML attribute or element. */
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** A message stanza to `to` with `id`; the body is short, as in a chat. */
export const messageXml = (to, id) => `<message xmlns='jabber:client' to='${esc(to)}' id='${id}' type='chat'><body>m${id}</body></message>`;

class Session {
  constructor({ domain, timeoutMs = 30000 }) {
    this.domain = domain;
    this.timeoutMs = timeoutMs;
    this.buf = '';
    this.mbuf = '';
    this.waiter = null;
    this.loggedIn = false;
    this.closed = false;
    this.jid = null;
    /** Called with the id of every <message/> that arrives once logged in. */
    this.onMessage = null;
    this.onClose = null;
  }

  input(text) {
    if (this.loggedIn) {
      this.scan(text);
      return;
    }
    this.buf += text;
    if (/<failure|<stream:error|type=['"]terminate['"]/.test(this.buf) && this.waiter) {
      this.fail(new Error(`server refused: ${this.buf.slice(0, 300)}`));
      return;
    }
    const w = this.waiter;
    if (!w) return;
    const m = w.re.exec(this.buf);
    if (!m) return;
    this.buf = this.buf.slice(m.index + m[0].length);
    this.waiter = null;
    clearTimeout(w.timer);
    w.resolve(m);
  }

  /** Splits the text after login into <message/> stanzas and reports each one's id. */
  scan(text) {
    this.mbuf += text;
    let end;
    while ((end = this.mbuf.indexOf('</message>')) >= 0) {
      const start = this.mbuf.lastIndexOf('<message', end);
      const head = start >= 0 ? this.mbuf.slice(start, this.mbuf.indexOf('>', start) + 1) : '';
      const id = /\sid=['"]([^'"]+)['"]/.exec(head)?.[1];
      this.mbuf = this.mbuf.slice(end + 10);
      if (this.onMessage) this.onMessage(id);
    }
    if (this.mbuf.length > 1 << 20) this.mbuf = this.mbuf.slice(-(1 << 16));
  }

  expect(re, step) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new Error(`${this.kind}: no answer at step ${step} within ${this.timeoutMs} ms; have: ${this.buf.slice(0, 300)}`));
      }, this.timeoutMs);
      this.waiter = { re, resolve, reject, timer, step };
      this.input('');
    });
  }

  fail(err) {
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  closedByPeer(why) {
    if (this.closed) return;
    this.closed = true;
    this.fail(new Error(`${this.kind}: connection closed (${why}) before the login finished; have: ${this.buf.slice(0, 300)}`));
    if (this.onClose) this.onClose(why);
  }

  /** Logs in as user/password with `resource`; resolves to the bound full JID. */
  async login(user, password, resource) {
    const t0 = process.hrtime.bigint();
    await this.connect();
    await this.expect(FEATURES_END, 'stream features');
    const plain = Buffer.from(`\0${user}\0${password}`).toString('base64');
    this.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain}</auth>`);
    await this.expect(/<success[^>]*(?:\/>|>[^<]*<\/success>)/, 'SASL');
    this.restart();
    await this.expect(FEATURES_END, 'stream features after restart');
    this.send(`<iq type='set' id='bind1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${esc(resource)}</resource></bind></iq>`);
    const m = await this.expect(/<jid>([^<]+)<\/jid>/, 'bind');
    this.jid = m[1];
    this.loggedIn = true;
    const rest = this.buf;
    this.buf = '';
    if (rest) this.scan(rest);
    this.loginMs = Number(process.hrtime.bigint() - t0) / 1e6;
    return this.jid;
  }
}

/** XMPP over plain TCP to host:port (no STARTTLS: the upstream must allow that). */
export class TcpSession extends Session {
  constructor(opts) {
    super(opts);
    this.kind = 'tcp';
    this.host = opts.host ?? '127.0.0.1';
    this.port = opts.port;
  }

  connect() {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: this.host, port: this.port });
      this.sock = s;
      s.setNoDelay(true);
      s.setEncoding('utf8');
      s.once('connect', () => { s.write(STREAM_OPEN(this.domain)); resolve(); });
      s.on('data', (d) => this.input(d));
      s.on('error', (err) => { reject(err); this.closedByPeer(err.message); });
      s.on('close', () => this.closedByPeer('tcp close'));
    });
  }

  send(xml) { this.sock.write(xml); }

  restart() { this.sock.write(STREAM_OPEN(this.domain)); }

  close() {
    this.closed = true;
    return new Promise((resolve) => {
      if (this.sock.destroyed) return resolve();
      const t = setTimeout(() => { this.sock.destroy(); resolve(); }, 3000);
      this.sock.once('close', () => { clearTimeout(t); resolve(); });
      this.sock.end('</stream:stream>');
      return undefined;
    });
  }
}

/** XMPP over WebSocket: RFC 7395 framing, or with `draft` the pre-RFC one of node-xmpp-bosh. */
export class WsSession extends Session {
  constructor(opts) {
    super(opts);
    this.draft = Boolean(opts.draft);
    this.kind = this.draft ? 'ws-draft' : 'ws';
    this.url = opts.url;
  }

  openFrame() {
    return this.draft ? DRAFT_OPEN(this.domain) : `<open xmlns='${NS_FRAMING}' to='${this.domain}' version='1.0'/>`;
  }

  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, 'xmpp', { perMessageDeflate: false, handshakeTimeout: this.timeoutMs });
      this.ws = ws;
      ws.once('open', () => {
        ws._socket?.setNoDelay(true);
        ws.send(this.openFrame());
        resolve();
      });
      ws.on('message', (d) => this.input(d.toString()));
      ws.on('unexpected-response', (_q, res) => { res.resume(); reject(new Error(`HTTP ${res.statusCode}`)); });
      ws.on('error', (err) => { reject(err); this.closedByPeer(err.message); });
      ws.on('close', (code) => this.closedByPeer(`websocket close ${code}`));
    });
  }

  send(xml) { this.ws.send(xml); }

  restart() { this.ws.send(this.openFrame()); }

  close() {
    this.closed = true;
    return new Promise((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) return resolve();
      const t = setTimeout(() => { this.ws.terminate(); resolve(); }, 3000);
      this.ws.once('close', () => { clearTimeout(t); resolve(); });
      try {
        this.ws.send(this.draft ? '</stream:stream>' : `<close xmlns='${NS_FRAMING}'/>`);
        this.ws.close(1000);
      } catch {
        this.ws.terminate();
      }
      return undefined;
    });
  }
}

/**
 * BOSH: one HTTP keep-alive agent with at most two sockets per session. One request is always
 * held by the server (hold 1); stanzas to send go out at once in a second request, or together
 * in the next one when two are in flight.
 */
export class BoshSession extends Session {
  constructor(opts) {
    super(opts);
    this.kind = 'bosh';
    const u = new URL(opts.url);
    this.reqOpts = { host: u.hostname, port: Number(u.port), path: u.pathname, method: 'POST' };
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
    this.rid = Math.floor(Math.random() * 1e9) + 1e6;
    this.sid = null;
    this.queue = [];
    this.inFlight = 0;
    this.restartPending = false;
    this.wait = opts.wait ?? 60;
  }

  post(body) {
    this.inFlight++;
    const req = http.request({
      ...this.reqOpts,
      agent: this.agent,
      headers: { 'Content-Type': 'text/xml; charset=utf-8', 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        this.inFlight--;
        if (res.statusCode !== 200) {
          this.closedByPeer(`HTTP ${res.statusCode}`);
          return;
        }
        this.answer(text);
      });
    });
    req.on('socket', (s) => s.setNoDelay(true));
    req.on('error', (err) => { this.inFlight--; this.closedByPeer(err.message); });
    req.end(body);
  }

  answer(text) {
    if (!this.sid) {
      const sid = /\ssid=['"]([^'"]+)['"]/.exec(text)?.[1];
      if (!sid) {
        this.closedByPeer(`no sid in ${text.slice(0, 200)}`);
        return;
      }
      this.sid = sid;
    }
    const open = text.indexOf('>', text.indexOf('<body'));
    const terminate = /<body[^>]*type=['"]terminate['"]/.test(text);
    if (open > 0 && text[open - 1] !== '/') {
      const close = text.lastIndexOf('</body>');
      this.input(text.slice(open + 1, close >= 0 ? close : text.length));
    }
    if (terminate) {
      this.closedByPeer(`terminate: ${text.slice(0, 200)}`);
      return;
    }
    this.pump();
  }

  /** Sends what is queued (or an empty poll, so that one request is always held). */
  pump() {
    if (this.closed || !this.sid) return;
    while (this.inFlight < 2 && (this.queue.length || this.restartPending || this.inFlight === 0)) {
      const rid = this.rid++;
      if (this.restartPending) {
        this.restartPending = false;
        this.post(`<body rid='${rid}' sid='${this.sid}' to='${this.domain}' xml:lang='en' xmpp:restart='true' xmlns='${NS_BOSH}' xmlns:xmpp='${NS_XBOSH}'/>`);
      } else {
        const payload = this.queue.join('');
        this.queue.length = 0;
        this.post(`<body rid='${rid}' sid='${this.sid}' xmlns='${NS_BOSH}'>${payload}</body>`);
      }
    }
  }

  connect() {
    this.post(`<body rid='${this.rid++}' to='${this.domain}' xml:lang='en' wait='${this.wait}' hold='1' `
      + `ver='1.6' content='text/xml; charset=utf-8' xmpp:version='1.0' xmlns='${NS_BOSH}' xmlns:xmpp='${NS_XBOSH}'/>`);
    return Promise.resolve();
  }

  send(xml) {
    this.queue.push(xml);
    this.pump();
  }

  restart() {
    this.restartPending = true;
    this.pump();
  }

  async close() {
    if (this.closed) return;
    if (this.sid) {
      const body = `<body rid='${this.rid++}' sid='${this.sid}' type='terminate' xmlns='${NS_BOSH}'><presence type='unavailable' xmlns='jabber:client'/></body>`;
      this.closed = true;
      await new Promise((resolve) => {
        const req = http.request({
          ...this.reqOpts, agent: this.agent, headers: { 'Content-Type': 'text/xml; charset=utf-8' },
        }, (res) => { res.resume(); res.on('end', resolve); });
        req.on('error', resolve);
        req.setTimeout(3000, () => { req.destroy(); resolve(); });
        req.end(body);
      });
    }
    this.closed = true;
    this.agent.destroy();
  }
}

/** A session of `transport` against `target` ({ url } or { host, port }). */
export function makeSession(transport, target, domain) {
  switch (transport) {
    case 'tcp': return new TcpSession({ ...target, domain });
    case 'ws': return new WsSession({ ...target, domain });
    case 'ws-draft': return new WsSession({ ...target, domain, draft: true });
    case 'bosh': return new BoshSession({ ...target, domain });
    default: throw new Error(`unknown transport ${transport}`);
  }
}
