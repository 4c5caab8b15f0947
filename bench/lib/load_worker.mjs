// One load-client process of bench/cm.mjs (started with child_process.fork). It holds sessions of
// one transport and does what the parent asks over IPC, one command at a time:
//   { cmd: 'open', n, parallel, prefix }     log in n sessions, `parallel` at a time; they stay open
//   { cmd: 'rtt', count, warmup, limitMs }   one more session sends messages to itself, one at a
//                                            time; answers with the round trips in ms
//   { cmd: 'pairs', pairs, prefix }          log in 2 x pairs sessions (a sends to b)
//   { cmd: 'go', inflight }                  each pair keeps `inflight` messages on the way
//   { cmd: 'count' }                         answers with messages delivered so far
//   { cmd: 'halt' }                          stops sending (what is on the way still arrives)
//   { cmd: 'close' }                         closes every session
// The set-up: { transport, target, domain, user, password } in the first message ({ cmd: 'init' }).
// Every answer is { ok: true, ... } or { ok: false, error }. Nothing here leaves loopback: the
// target is the 127.0.0.1 address the parent gives.
import { makeSession, messageXml } from './xmpp_raw.mjs';

let setup = null;
let sessions = [];
let pairs = [];
let delivered = 0;
let running = false;
let inflight = 0;
let seq = 0;

async function openOne(resource) {
  const s = makeSession(setup.transport, setup.target, setup.domain);
  try {
    await s.login(setup.user, setup.password, resource);
  } catch (err) {
    s.close().catch(() => {});
    throw err;
  }
  return s;
}

async function openMany(n, parallel, prefix) {
  const opened = [];
  let next = 0;
  let failed = null;
  const loginMs = [];
  const lane = async () => {
    while (next < n && !failed) {
      const i = next++;
      try {
        const s = await openOne(`${prefix}${i}`);
        opened.push(s);
        loginMs.push(s.loginMs);
      } catch (err) {
        failed = err;
      }
    }
  };
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: Math.min(parallel, n) }, lane));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  sessions.push(...opened);
  if (failed) throw new Error(`opened ${opened.length} of ${n}: ${failed.message}`);
  loginMs.sort((a, b) => a - b);
  return { opened: opened.length, seconds, loginP50: loginMs[Math.floor(loginMs.length / 2)] };
}

async function rtt(count, warmup, limitMs) {
  const s = await openOne(`rtt-${process.pid}`);
  sessions.push(s);
  const samples = [];
  let waiting = null;
  s.onMessage = (id) => {
    if (waiting && id === waiting.id) {
      const w = waiting;
      waiting = null;
      w.resolve(process.hrtime.bigint());
    }
  };
  const deadline = Date.now() + limitMs;
  for (let i = 0; i < warmup + count; i++) {
    if (i >= warmup && Date.now() > deadline) break;
    const id = `r${i}`;
    const back = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`message ${id} not back within 10 s`)), 10000);
      waiting = { id, resolve: (t) => { clearTimeout(timer); resolve(t); } };
    });
    const t0 = process.hrtime.bigint();
    s.send(messageXml(s.jid, id));
    const t1 = await back;
    if (i >= warmup) samples.push(Number(t1 - t0) / 1e6);
  }
  return { samples };
}

async function openPairs(n, prefix) {
  const r = await openMany(2 * n, Math.min(2 * n, 50), prefix);
  const mine = sessions.slice(-2 * n);
  pairs = [];
  for (let i = 0; i < n; i++) {
    const a = mine[2 * i];
    const b = mine[2 * i + 1];
    const pair = { a, b };
    b.onMessage = () => {
      delivered++;
      if (running) a.send(messageXml(b.jid, `t${seq++}`));
    };
    pairs.push(pair);
  }
  return r;
}

function go(n) {
  inflight = n;
  running = true;
  for (const { a, b } of pairs) {
    for (let i = 0; i < inflight; i++) a.send(messageXml(b.jid, `t${seq++}`));
  }
}

async function closeAll() {
  running = false;
  const all = sessions;
  sessions = [];
  pairs = [];
  // Close in slices, so that thousands of closes do not all wait on one another's timers.
  for (let i = 0; i < all.length; i += 500) {
    await Promise.all(all.slice(i, i + 500).map((s) => s.close().catch(() => {})));
  }
  return { closed: all.length };
}

const handlers = {
  init: async (m) => { setup = m.setup; return {}; },
  open: (m) => openMany(m.n, m.parallel, m.prefix),
  rtt: (m) => rtt(m.count, m.warmup, m.limitMs),
  pairs: (m) => openPairs(m.pairs, m.prefix),
  go: async (m) => { go(m.inflight); return {}; },
  count: async () => ({ delivered }),
  halt: async () => { running = false; return { delivered }; },
  close: () => closeAll(),
  alive: async () => ({ sessions: sessions.filter((s) => !s.closed).length }),
};

process.on('message', async (m) => {
  try {
    const r = await handlers[m.cmd](m);
    process.send({ id: m.id, ok: true, ...r });
  } catch (err) {
    process.send({ id: m.id, ok: false, error: err.stack ?? String(err) });
  }
});
process.on('disconnect', () => process.exit(0));
