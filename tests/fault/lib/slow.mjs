// Slow clients for the fault suites: raw TCP connections from a chosen loopback address that drip
// an HTTP request's headers, a BOSH body announced large, or a WebSocket frame, and record when the
// gateway answered and when it closed the connection (performance.now() times). The connection
// never closes from this side unless destroy() is called.
import net from 'node:net';
import crypto from 'node:crypto';

const NS_BOSH = 'http://jabber.org/protocol/httpbind';

function base(kind, port, localAddress) {
  const c = {
    kind,
    localAddress,
    startAt: NaN,   // the first byte was written
    readyAt: NaN,   // headers written whole (bosh-body), or the 101 read (ws-*)
    answerAt: NaN,  // first byte the gateway sent (after the 101 for ws-*)
    closedAt: NaN,  // the gateway closed (FIN or reset)
    status: null,   // HTTP status of the answer
    received: '',   // everything read, latin1
    timer: null,
    socket: null,
    closed: null,   // a promise that resolves on close
  };
  c.socket = net.connect({ host: '127.0.0.1', port, localAddress });
  c.socket.setNoDelay(true);
  c.socket.on('error', () => {});
  c.closed = new Promise((resolve) => {
    c.socket.on('close', () => {
      if (Number.isNaN(c.closedAt)) c.closedAt = performance.now();
      clearInterval(c.timer);
      resolve();
    });
  });
  c.connected = new Promise((resolve, reject) => {
    c.socket.once('connect', resolve);
    c.socket.once('error', reject);
  });
  c.destroy = () => { clearInterval(c.timer); c.socket.destroy(); };
  c.drip = (bytes, everyMs) => {
    let i = 0;
    c.timer = setInterval(() => {
      if (c.socket.destroyed || !c.socket.writable) return;
      c.socket.write(bytes[i % bytes.length]);
      i++;
    }, everyMs);
  };
  return c;
}

const statusOf = (text) => {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  return m ? Number(m[1]) : null;
};

/**
 * Headers dripped one byte every `everyMs` (a POST to the BOSH path, or a WebSocket upgrade when
 * `upgrade`), never complete. The gateway must cut it at http.header_timeout after the first byte.
 */
export async function headerDrip(port, localAddress, { upgrade = false, everyMs = 2000 } = {}) {
  const c = base(upgrade ? 'header-ws' : 'header-bosh', port, localAddress);
  await c.connected;
  const text = upgrade
    ? `GET /xmpp-websocket HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
    : `POST /http-bind HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: text/xml; charset=utf-8\r\n`;
  c.socket.on('data', (d) => {
    if (Number.isNaN(c.answerAt)) c.answerAt = performance.now();
    c.received += d.toString('latin1');
    c.status ??= statusOf(c.received);
  });
  c.socket.write(text[0]);
  c.startAt = performance.now();
  let i = 1;
  c.timer = setInterval(() => {
    if (c.socket.writable && i < text.length) c.socket.write(text[i++]);
  }, everyMs);
  return c;
}

/**
 * A BOSH request with its headers whole, announcing `length` body bytes, then `chunk` bytes of
 * body every `everyMs`: fast enough for http.min_body_rate, far too slow for http.body_timeout.
 */
export async function boshBodyDrip(port, localAddress, { length = 262144, chunk = 64, everyMs = 100 } = {}) {
  const c = base('bosh-body', port, localAddress);
  await c.connected;
  c.socket.on('data', (d) => {
    if (Number.isNaN(c.answerAt)) c.answerAt = performance.now();
    c.received += d.toString('latin1');
    c.status ??= statusOf(c.received);
  });
  c.socket.write(`POST /http-bind HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`
    + `Content-Type: text/xml; charset=utf-8\r\nContent-Length: ${length}\r\n\r\n`
    + `<body rid='${crypto.randomInt(1e9)}' to='localhost' xmlns='${NS_BOSH}'>`);
  c.startAt = performance.now();
  c.readyAt = c.startAt;
  c.drip([Buffer.alloc(chunk, 0x20)], everyMs);
  return c;
}

/** A masked client frame header (RFC 6455 5.2) for a text frame of `len` payload bytes. */
function textFrameHeader(len, mask) {
  const h = len < 126 ? Buffer.from([0x81, 0x80 | len]) : Buffer.from([0x81, 0x80 | 126, len >> 8, len & 0xff]);
  return Buffer.concat([h, mask]);
}

/**
 * A WebSocket upgrade (subprotocol xmpp) sent whole; after the 101, nothing (`frame: false`) or a
 * text frame announced `frameLen` bytes long whose payload is dripped a byte every `everyMs`. No
 * <open/> is ever complete: the gateway must end it at connect_timeout after the upgrade.
 */
export async function wsSilent(port, localAddress, { frame = false, frameLen = 1000, everyMs = 500 } = {}) {
  const c = base(frame ? 'ws-drip' : 'ws-silent', port, localAddress);
  await c.connected;
  const mask = crypto.randomBytes(4);
  const payload = Buffer.from(`<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0"/>`.padEnd(frameLen, ' '));
  let upgraded = false;
  c.socket.on('data', (d) => {
    c.received += d.toString('latin1');
    if (!upgraded) {
      const end = c.received.indexOf('\r\n\r\n');
      if (end < 0) return;
      c.status = statusOf(c.received);
      upgraded = true;
      c.readyAt = performance.now();
      c.received = c.received.slice(end + 4);
      if (c.status !== 101) return;
      if (frame) {
        c.socket.write(textFrameHeader(frameLen, mask));
        let i = 0;
        c.timer = setInterval(() => {
          if (!c.socket.writable || i >= frameLen) return;
          c.socket.write(Buffer.from([payload[i] ^ mask[i % 4]]));
          i++;
        }, everyMs);
      }
      if (!c.received.length) return;
    }
    if (Number.isNaN(c.answerAt)) c.answerAt = performance.now();
  });
  c.socket.write(`GET /xmpp-websocket HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n`
    + `Connection: Upgrade\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n`
    + 'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n');
  c.startAt = performance.now();
  return c;
}

/** "Max open files" (soft) of process `pid` ('self' for this one), from /proc/PID/limits. */
export async function maxOpenFiles(pid = 'self') {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile(`/proc/${pid}/limits`, 'utf8');
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(text);
  return !m ? NaN : m[1] === 'unlimited' ? Infinity : Number(m[1]);
}
