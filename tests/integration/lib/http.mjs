// Plain HTTP for the suites that talk to the JSON endpoints (publish, prebind) and read an SSE
// stream by hand: no client library between the test and the bytes.
import http from 'node:http';
import { sleep } from './clients.mjs';

/**
 * One HTTP request; resolves to { status, headers, text, json } (json undefined when the body is
 * not JSON). A body gets a Content-Length, as browsers send it (lws never completes a chunked
 * body), unless headers name one already.
 */
export function request(url, { method = 'POST', headers = {}, body } = {}) {
  const h = body === undefined || Object.keys(headers).some((k) => k.toLowerCase() === 'content-length')
    ? headers
    : { 'Content-Length': Buffer.byteLength(body), ...headers };
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: h, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Parses one SSE block ("field: value" lines; comments skipped) into { event, id, data }. */
function parseBlock(block) {
  const ev = { event: 'message', data: '' };
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    const c = line.indexOf(':');
    const f = line.slice(0, c);
    const v = line.slice(c + 1).replace(/^ /, '');
    if (f === 'id') ev.id = v;
    else if (f === 'event') ev.event = v;
    else if (f === 'data') ev.data += v;
  }
  return ev;
}

/**
 * An SSE stream read by hand. Resolves at the response's headers to { status, items(),
 * waitFor(test, ms, what), close() }; items() are the "item" events so far, with .json parsed.
 */
export function openStream(url) {
  return new Promise((resolve, reject) => {
    const events = [];
    const req = http.get(url, { agent: false }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = parseBlock(buf.slice(0, i));
          buf = buf.slice(i + 2);
          if (ev.data) { ev.json = JSON.parse(ev.data); events.push(ev); }
        }
      });
      resolve({
        status: res.statusCode,
        items: () => events.filter((e) => e.event === 'item'),
        async waitFor(test, ms = 5000, what = 'an event') {
          const until = Date.now() + ms;
          while (!test()) {
            if (Date.now() > until) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(events)}`);
            await sleep(20);
          }
        },
        close() { req.destroy(); res.destroy(); },
      });
    });
    req.on('error', reject);
  });
}
