// One worker thread's share of the hub bench's viewers (bench/hub.mjs starts one or more of these):
// each viewer is a bare TCP socket that sends `GET /events/<service>/<node>` as HTTP/1.1 and reads
// the Server-Sent Events stream by hand, as EventSource would, minus reconnecting. A viewer counts
// as open once it has the 200 answer and `replay` items of the cache. From then on it notes, for
// each measured item id, when the item arrived (process.hrtime, the same monotonic clock in every
// thread of the process), and counts duplicates, items out of order and anything unexpected.
//
// workerData: { port, path, count, sources, sourceBase, parallel, replay, ids, base, openTimeoutMs }
//   sources     spread the viewers over 127.0.0.<sourceBase .. sourceBase+sources-1>
//   ids         the measured item ids, in publication order
//   base        hrtime (bigint) that arrival times are counted from, in milliseconds
// Commands from the parent (postMessage): open, mark, collect, close. Answers: { type: 'opened' },
// { type: 'delivered' } (every viewer has every id; sent once, unasked), { type: 'result' },
// { type: 'closed' }, { type: 'error', message }.
import net from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';

const {
  port, path, count, sources, sourceBase, parallel, replay, ids, base, openTimeoutMs,
} = workerData;
const K = ids.length;
const index = new Map(ids.map((id, k) => [id, k]));
const HEAD_MAX = 16384;

const viewers = [];
let opened = false;
let complete = 0; // viewers that have every measured item
let deliveredSent = false;
let eluMark = null;

function maybeDelivered() {
  if (opened && !deliveredSent && complete === viewers.length) {
    deliveredSent = true;
    parentPort.postMessage({ type: 'delivered' });
  }
}

/** One SSE block (the text between blank lines) of viewer v, which arrived at t. */
function onBlock(v, block, t) {
  if (block.startsWith(':')) {
    v.comments++;
    return;
  }
  let id = null;
  let event = 'message';
  for (const line of block.split('\n')) {
    if (line.startsWith('id: ')) id = line.slice(4);
    else if (line.startsWith('event: ')) event = line.slice(7);
  }
  if (event !== 'item') {
    v.others.push(event);
    return;
  }
  const k = id === null ? undefined : index.get(id);
  if (k === undefined) {
    v.replayed++;
    if (v.replayed === replay) v.onReplay?.();
    return;
  }
  if (!Number.isNaN(v.arrivals[k])) {
    v.duplicates++;
    return;
  }
  v.arrivals[k] = t;
  if (k < v.lastK) v.disorder++;
  v.lastK = k;
  if (++v.got === K) {
    complete++;
    maybeDelivered();
  }
}

function onData(v, chunk) {
  const t = Number(process.hrtime.bigint() - base) / 1e6;
  let text = chunk.toString('latin1');
  if (v.head !== null) {
    v.head += text;
    const end = v.head.indexOf('\r\n\r\n');
    if (end < 0) {
      if (v.head.length > HEAD_MAX) v.fail(`no end of the response headers in ${HEAD_MAX} bytes`);
      return;
    }
    const head = v.head.slice(0, end);
    text = v.head.slice(end + 4);
    v.head = null;
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1];
    if (status !== '200' || !/\r\ncontent-type: *text\/event-stream/i.test(head)) {
      v.fail(`HTTP ${status ?? '?'}: ${head.split('\r\n')[0]} ${text.slice(0, 200)}`);
      return;
    }
    if (replay === 0) v.onReplay?.();
  }
  v.buf += text;
  let i;
  while ((i = v.buf.indexOf('\n\n')) >= 0) {
    const block = v.buf.slice(0, i);
    v.buf = v.buf.slice(i + 2);
    onBlock(v, block, t);
  }
}

/** Opens viewer number n; resolves once it has its replay, rejects with why it has not. */
function openViewer(n) {
  return new Promise((resolve, reject) => {
    const localAddress = `127.0.0.${sourceBase + (n % sources)}`;
    const v = {
      n, head: '', buf: '', replayed: 0, got: 0, lastK: -1, duplicates: 0, disorder: 0,
      comments: 0, others: [], closed: false, arrivals: new Float64Array(K).fill(NaN),
    };
    let settled = false;
    const timer = setTimeout(() => v.fail(`no replay of ${replay} items within ${openTimeoutMs} ms`), openTimeoutMs);
    v.fail = (why) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      v.sock.destroy();
      reject(new Error(`viewer ${n} (from ${localAddress}): ${why}`));
    };
    v.onReplay = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      v.onReplay = null;
      resolve(v);
    };
    v.sock = net.connect({ host: '127.0.0.1', port, localAddress });
    v.sock.setNoDelay(true);
    v.sock.on('connect', () => {
      v.sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n`
        + 'Cache-Control: no-cache\r\n\r\n');
    });
    v.sock.on('data', (chunk) => onData(v, chunk));
    v.sock.on('error', (err) => v.fail(err.code ?? err.message));
    v.sock.on('close', () => {
      v.closed = true;
      v.fail('closed by the gateway');
    });
  });
}

async function openAll() {
  let next = 0;
  const worker = async () => {
    while (next < count) viewers.push(await openViewer(next++));
  };
  await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker));
  opened = true;
  parentPort.postMessage({ type: 'opened', n: viewers.length });
  maybeDelivered();
}

function result() {
  const arrivals = new Float64Array(K * viewers.length);
  const stats = { duplicates: 0, disorder: 0, closed: 0, comments: 0, others: {}, replayed: 0 };
  viewers.forEach((v, i) => {
    arrivals.set(v.arrivals, i * K);
    stats.duplicates += v.duplicates;
    stats.disorder += v.disorder;
    stats.closed += v.closed ? 1 : 0;
    stats.comments += v.comments;
    stats.replayed += v.replayed;
    for (const e of v.others) stats.others[e] = (stats.others[e] ?? 0) + 1;
  });
  const elu = eluMark ? performance.eventLoopUtilization(eluMark).utilization : null;
  parentPort.postMessage({ type: 'result', viewers: viewers.length, arrivals, stats, elu }, [arrivals.buffer]);
}

parentPort.on('message', (msg) => {
  const run = async () => {
    switch (msg.cmd) {
      case 'open': await openAll(); break;
      case 'mark': eluMark = performance.eventLoopUtilization(); break;
      case 'collect': result(); break;
      case 'close':
        for (const v of viewers) v.sock.destroy();
        parentPort.postMessage({ type: 'closed' });
        break;
      default: throw new Error(`unknown command ${msg.cmd}`);
    }
  };
  run().catch((err) => parentPort.postMessage({ type: 'error', message: err.message }));
});
