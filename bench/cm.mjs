// The side-by-side benchmark: one Prosody on loopback, and in the same run the connection managers
// in front of it, each measured with the same bare client (bench/lib/xmpp_raw.mjs) in worker
// processes (bench/lib/load_worker.mjs):
//   direct       a TCP client straight to Prosody's c2s port, plain: the floor
//   relay        the same client through HAProxy in TCP mode (one thread): the floor of any
//                process between client and server (one more hop each way, nothing parsed)
//   gw-ws        xmppgw's WebSocket endpoint (RFC 7395), plain TCP upstream
//   gw-bosh      xmppgw's BOSH endpoint, plain TCP upstream
//   pros-ws      Prosody's own mod_websocket on the same Prosody (its CPU and memory include c2s)
//   pros-bosh    Prosody's own mod_bosh on the same Prosody
//   nxb-ws       node-xmpp-bosh 0.7.10's WebSocket endpoint: pre-RFC framing (<stream:stream/>)
//   nxb-bosh     node-xmpp-bosh 0.7.10's BOSH endpoint
//   gw-ws-tls    xmppgw WebSocket, STARTTLS upstream (OpenSSL's share = this minus gw-ws)
//   gw-bosh-tls  xmppgw BOSH, STARTTLS upstream
// Prosody and the measured process are restarted before every column and every memory step. Per
// column: round trips of messages to oneself, throughput of pairs with messages in flight (the
// connection manager's CPU per delivered stanza from /proc), set-up rate and resident memory per
// idle session. Then, for xmppgw alone: many idle WebSocket sessions in one process, and the SSE
// hub (bench/hub.mjs) with 1,000 and 10,000 viewers. Prints a table with ratios, checks the
// targets, writes JSON and an SVG chart.
//
//   node bench/cm.mjs [--runs 3] [--quick] [--columns LIST] [--json FILE] [--svg FILE] [--md FILE]
// The gateway is $XMPPGW_BIN, else build/xmppgw; node-xmpp-bosh comes from bench/node_modules
// (npm ci --prefix bench). bash bench/run.sh does both.
import { execFileSync, fork, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProsody } from '../tests/integration/lib/prosody.mjs';
import { startGateway, GATEWAY_BIN } from '../tests/integration/lib/gateway.mjs';
import { freePorts } from '../tests/integration/lib/ports.mjs';
import {
  parseArgs, summarize, table, procStatus, cpuTimes, countFds, openFileLimit, sleep, machine,
} from './lib/common.mjs';
import { renderSvg } from './lib/chart.mjs';
import { updateReadme } from './lib/readme.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const WORKER = path.join(HERE, 'lib', 'load_worker.mjs');
const NXB = path.join(HERE, 'lib', 'nxb_server.cjs');

export const COLUMNS = {
  direct: { label: 'direct TCP', transport: 'tcp', cm: null },
  relay: { label: 'HAProxy TCP relay', transport: 'tcp', cm: 'haproxy' },
  'gw-ws': { label: 'xmppgw WS', transport: 'ws', cm: 'gw', tls: 'off' },
  'gw-bosh': { label: 'xmppgw BOSH', transport: 'bosh', cm: 'gw', tls: 'off' },
  'pros-ws': { label: 'Prosody WS', transport: 'ws', cm: 'prosody' },
  'pros-bosh': { label: 'Prosody BOSH', transport: 'bosh', cm: 'prosody' },
  'nxb-ws': { label: 'nxb WS (draft)', transport: 'ws-draft', cm: 'nxb' },
  'nxb-bosh': { label: 'nxb BOSH', transport: 'bosh', cm: 'nxb' },
  'gw-ws-tls': { label: 'xmppgw WS STARTTLS', transport: 'ws', cm: 'gw', tls: 'starttls' },
  'gw-bosh-tls': { label: 'xmppgw BOSH STARTTLS', transport: 'bosh', cm: 'gw', tls: 'starttls' },
};

const USAGE = `usage: node bench/cm.mjs [options]
  --runs N            runs of every column; figures are medians, ratios taken within a run (default 3)
  --quick             a smoke test: 1 run, few messages, 3 s of throughput, 200/500 logins,
                      1,000 idle sessions, 200 hub viewers (options given as well still apply)
  --columns LIST      comma-separated subset of ${Object.keys(COLUMNS).join(',')}
  --workers N         load-client processes for throughput and logins (default 2)
  --rtt-count N       measured round trips per column (default 2000)
  --rtt-warmup N      round trips first, not measured (default 200)
  --pairs N           sender/receiver pairs for throughput (default 50)
  --inflight N        messages on the way per pair (default 10)
  --seconds S         measured throughput window (default 20), after --warm-seconds (default 2)
  --logins LIST       login counts, each after a restart (default 1000,5000; the last one is the
                      memory figure of the table)
  --parallel N        logins in flight at once, over all workers (default 100)
  --idle N            idle xmppgw WebSocket sessions in one process (default 9000; 0 skips)
  --hub LIST          SSE hub viewers, one bench/hub.mjs run each (default 1000,10000; '' skips)
  --hub-items N       items published per hub run (default 50)
  --settle-seconds S  wait before a memory reading (default 2)
  --json FILE         results (default $BENCH_OUT/cm-STAMP.json, else build-bench/out/)
  --svg FILE          chart (default next to the JSON)
  --md FILE           the tables as Markdown (default next to the JSON)
  --readme            also put the tables into bench/README.md ("Latest run") and the chart into
                      bench/cm.svg
`;

const quick = process.argv.includes('--quick');
const opts = parseArgs(process.argv.slice(2), {
  runs: quick ? 1 : 3, quick: false, columns: Object.keys(COLUMNS).join(','), workers: 2,
  'rtt-count': quick ? 300 : 2000, 'rtt-warmup': quick ? 50 : 200, pairs: 50, inflight: 10,
  seconds: quick ? 3 : 20, 'warm-seconds': quick ? 1 : 2, logins: quick ? '200,500' : '1000,5000',
  parallel: 100, idle: quick ? 1000 : 9000, hub: quick ? '200' : '1000,10000', 'hub-items': quick ? 10 : 50,
  'settle-seconds': quick ? 1 : 2, json: '', svg: '', md: '', readme: false,
}, USAGE);
const HAPROXY_BIN = process.env.HAPROXY_BIN || '/usr/sbin/haproxy';
const columns = opts.columns.split(',').filter(Boolean)
  .filter((c) => c !== 'relay' || existsSync(HAPROXY_BIN) || (process.stderr.write(`note: no ${HAPROXY_BIN}: the relay column is left out\n`), false));
for (const c of columns) if (!COLUMNS[c]) throw new Error(`unknown column ${c}\n${USAGE}`);
const loginCounts = String(opts.logins).split(',').filter(Boolean).map(Number);
const hubViewers = String(opts.hub).split(',').filter(Boolean).map(Number);

const USER = 'bench';
const PASSWORD = 'bench-secret-cm';
const DOMAIN = 'localhost';
const log = (s) => process.stderr.write(`${s}\n`);

// ---------------------------------------------------------------------------------------------
// Processes: one Prosody for the whole run (restarted in place), one connection manager at a time.

let prosody = null;
let cm = null; // { kind, pid, target(transport), stop() }

async function startNxb(upstreamPort) {
  const [port] = await freePorts(1);
  const child = spawn(process.execPath, [NXB, String(port), String(upstreamPort)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('node-xmpp-bosh did not start within 20 s')), 20000);
    child.stdout.setEncoding('utf8').on('data', (d) => { if (/listening/.test(d)) { clearTimeout(t); resolve(); } });
    child.once('exit', (code) => { clearTimeout(t); reject(new Error(`node-xmpp-bosh exited (${code})`)); });
  });
  return {
    pid: child.pid,
    ws: `ws://127.0.0.1:${port}/`,
    bosh: `http://127.0.0.1:${port}/http-bind`,
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', resolve);
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 3000).unref();
      return undefined;
    }),
  };
}

/** HAProxy relaying TCP to Prosody's c2s port: one thread, as the gateway has one. */
async function startRelay(upstreamPort) {
  const [port] = await freePorts(1);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bench-relay-'));
  const cfg = path.join(dir, 'haproxy.cfg');
  await writeFile(cfg, [
    'global', '  nbthread 1', '  maxconn 9000',
    'defaults', '  mode tcp', '  timeout connect 5s', '  timeout client 1h', '  timeout server 1h',
    'frontend relay', `  bind 127.0.0.1:${port}`, '  default_backend prosody',
    'backend prosody', `  server p 127.0.0.1:${upstreamPort}`, '',
  ].join('\n'));
  const child = spawn(HAPROXY_BIN, ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
  const deadline = Date.now() + 10000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`haproxy exited (${child.exitCode}): ${stderr.trim()}`);
    const ok = await new Promise((resolve) => {
      const sock = net.connect(port, '127.0.0.1', () => { sock.destroy(); resolve(true); });
      sock.on('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error('haproxy did not start within 10 s');
    await sleep(50);
  }
  return {
    pid: child.pid,
    port,
    stop: () => new Promise((resolve) => {
      const done = () => rm(dir, { recursive: true, force: true }).finally(resolve);
      if (child.exitCode !== null) return done();
      child.once('exit', done);
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 3000).unref();
      return undefined;
    }),
  };
}

/**
 * Runs start() up to three times while it fails with a port taken (free ports are chosen, closed
 * and then bound: another process on the machine can take one in between).
 */
async function retryPortRace(start) {
  for (let i = 0; ; i++) {
    try {
      return await start();
    } catch (err) {
      if (i >= 2 || !/Address already in use|EADDRINUSE|did not start|exited/.test(err.message)) throw err;
      log(`    (start failed, port taken? trying again: ${err.message.split('\n')[0]})`);
    }
  }
}

/** Restarts Prosody and starts the connection manager of `col`; resolves to { target, cmPid }. */
async function fresh(col) {
  const c = COLUMNS[col];
  if (cm) {
    await cm.stop();
    cm = null;
  }
  await prosody.kill();
  await prosody.restart();
  switch (c.cm) {
    case null:
      return { target: { host: '127.0.0.1', port: prosody.port }, cmPid: null };
    case 'prosody':
      return { target: { url: c.transport === 'bosh' ? prosody.boshUrl : prosody.websocketUrl }, cmPid: prosody.pid };
    case 'haproxy': {
      const r = await retryPortRace(() => startRelay(prosody.port));
      cm = r;
      return { target: { host: '127.0.0.1', port: r.port }, cmPid: r.pid };
    }
    case 'nxb': {
      const n = await retryPortRace(() => startNxb(prosody.port));
      cm = n;
      return { target: { url: c.transport === 'bosh' ? n.bosh : n.ws }, cmPid: n.pid };
    }
    case 'gw': {
      const gw = await retryPortRace(() => startGateway({
        prosody,
        upstreamTls: c.tls,
        config: {
          log: { level: 'warn' },
          // 100 logins at once on a busy machine can keep an upstream TLS handshake waiting longer
          // than the default 10 s; the bench measures speed, not that timeout.
          connect_timeout: 60,
          // Every bench client comes from 127.0.0.1: the per-address limits (a defence against one
          // hostile address) would measure themselves, not the gateway.
          limits: {
            max_sessions: 100000, per_address_sessions: 1000000, per_address_unauthenticated: 100000,
            per_address_rate: 100000, per_address_burst: 100000, per_address_pending: 100000,
          },
        },
      }));
      cm = { pid: gw.pid, stop: () => gw.stop() };
      return { target: { url: c.transport === 'bosh' ? gw.boshUrl : gw.wsUrl }, cmPid: gw.pid };
    }
    default:
      throw new Error(c.cm);
  }
}

/** A load-client process; call(cmd, args) resolves to its answer. */
async function startWorker(col, target) {
  const child = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pending = new Map();
  let seq = 0;
  child.on('message', (m) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.ok) p.resolve(m);
    else p.reject(new Error(`worker ${child.pid} (${col}): ${m.error}`));
  });
  child.on('exit', (code) => {
    for (const p of pending.values()) p.reject(new Error(`worker ${child.pid} exited (${code})`));
    pending.clear();
  });
  const call = (cmd, args = {}, timeoutMs = 600000) => new Promise((resolve, reject) => {
    const id = ++seq;
    const timer = setTimeout(() => { pending.delete(id); reject(new Error(`worker ${col}: ${cmd} timed out`)); }, timeoutMs);
    pending.set(id, { resolve, reject, timer });
    child.send({ id, cmd, ...args });
  });
  await call('init', { setup: { transport: COLUMNS[col].transport, target, domain: DOMAIN, user: USER, password: PASSWORD } });
  return {
    pid: child.pid,
    call,
    stop: async () => {
      await call('close', {}, 30000).catch(() => {});
      child.disconnect();
      await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
    },
  };
}

const cpuOf = async (pid) => (pid ? (await cpuTimes(pid)).total : NaN);
const cpuSum = async (pids) => (await Promise.all(pids.map(cpuOf))).reduce((a, b) => a + b, 0);
const rssOf = async (pid) => (pid ? (await procStatus(pid)).VmRSS : NaN);
const now = () => Number(process.hrtime.bigint()) / 1e9;

// ---------------------------------------------------------------------------------------------
// Measurements.

/** Round trips and throughput after one restart. */
async function speed(col) {
  const { target, cmPid } = await fresh(col);
  const one = await startWorker(col, target);
  let rtt;
  try {
    const r = await one.call('rtt', { count: opts['rtt-count'], warmup: opts['rtt-warmup'], limitMs: 120000 });
    rtt = summarize(r.samples);
    log(`    ${col}: round trips p50 ${fmt(rtt.p50)} / p99 ${fmt(rtt.p99)} ms`);
  } finally {
    await one.stop();
  }

  const nw = Math.max(1, Math.min(opts.workers, opts.pairs));
  const workers = await Promise.all(Array.from({ length: nw }, () => startWorker(col, target)));
  try {
    const share = (i) => Math.floor(opts.pairs / nw) + (i < opts.pairs % nw ? 1 : 0);
    await Promise.all(workers.map((w, i) => w.call('pairs', { pairs: share(i), prefix: `p${i}-` })));
    await Promise.all(workers.map((w) => w.call('go', { inflight: opts.inflight })));
    await sleep(opts['warm-seconds'] * 1000);
    const snap = async () => {
      const [counts, cmCpu, prosodyCpu, clientCpus] = await Promise.all([
        Promise.all(workers.map((w) => w.call('count'))),
        cpuOf(cmPid), cpuOf(prosody.pid), Promise.all(workers.map((w) => cpuOf(w.pid))),
      ]);
      return { t: now(), delivered: counts.reduce((a, c) => a + c.delivered, 0), cmCpu, prosodyCpu, clientCpus };
    };
    const s0 = await snap();
    await sleep(opts.seconds * 1000);
    const s1 = await snap();
    await Promise.all(workers.map((w) => w.call('halt')));
    const dt = s1.t - s0.t;
    const delivered = s1.delivered - s0.delivered;
    log(`    ${col}: ${fmt(delivered / dt)} stanzas/s`);
    const clientCpu = s1.clientCpus.map((c, i) => c - s0.clientCpus[i]);
    const cmCpu = s1.cmCpu - s0.cmCpu;
    return {
      rtt,
      tput: {
        seconds: dt,
        delivered,
        rate: delivered / dt,
        cmUsPerStanza: cmPid ? (cmCpu * 1e6) / delivered : NaN,
        cmCpuPct: cmPid ? (100 * cmCpu) / dt : NaN,
        prosodyCpuPct: (100 * (s1.prosodyCpu - s0.prosodyCpu)) / dt,
        clientCpuPct: (100 * clientCpu.reduce((a, b) => a + b, 0)) / dt,
        clientMaxWorkerPct: (100 * Math.max(...clientCpu)) / dt,
        workers: nw,
      },
    };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

/** Opens n sessions (opts.parallel at a time over the workers) after a restart, and holds them. */
async function logins(col, n, { workers: nWorkers = opts.workers, idleSeconds = 0 } = {}) {
  const { target, cmPid } = await fresh(col);
  const nw = Math.max(1, Math.min(nWorkers, n));
  const workers = await Promise.all(Array.from({ length: nw }, () => startWorker(col, target)));
  try {
    await sleep(opts['settle-seconds'] * 1000);
    const base = { cm: await rssOf(cmPid), prosody: await rssOf(prosody.pid), fds: cmPid ? await countFds(cmPid) : NaN };
    const cpu0 = { cm: await cpuOf(cmPid), prosody: await cpuOf(prosody.pid), client: await cpuSum(workers.map((w) => w.pid)) };
    const share = (i) => Math.floor(n / nw) + (i < n % nw ? 1 : 0);
    const par = Math.max(1, Math.round(opts.parallel / nw));
    const t0 = now();
    const r = await Promise.all(workers.map((w, i) => w.call('open', { n: share(i), parallel: par, prefix: `l${i}-` })));
    const seconds = now() - t0;
    log(`    ${col}: ${n} logins in ${seconds.toFixed(1)} s`);
    const cpu1 = { cm: await cpuOf(cmPid), prosody: await cpuOf(prosody.pid), client: await cpuSum(workers.map((w) => w.pid)) };
    await sleep(opts['settle-seconds'] * 1000);
    const after = { cm: await rssOf(cmPid), prosody: await rssOf(prosody.pid), fds: cmPid ? await countFds(cmPid) : NaN };
    const out = {
      n,
      opened: r.reduce((a, x) => a + x.opened, 0),
      seconds,
      rate: n / seconds,
      loginP50Ms: r[0].loginP50,
      cmUsPerLogin: ((cpu1.cm - cpu0.cm) * 1e6) / n,
      cmCpuPct: (100 * (cpu1.cm - cpu0.cm)) / seconds,
      prosodyCpuPct: (100 * (cpu1.prosody - cpu0.prosody)) / seconds,
      clientCpuPct: (100 * (cpu1.client - cpu0.client)) / seconds,
      cmRssBaseKb: base.cm,
      cmRssKb: after.cm,
      rssPerSessionKb: (after.cm - base.cm) / n,
      prosodyRssPerSessionKb: (after.prosody - base.prosody) / n,
      fdsPerSession: (after.fds - base.fds) / n,
    };
    if (idleSeconds > 0) {
      const c0 = await cpuOf(cmPid);
      await sleep(idleSeconds * 1000);
      out.idleCpuPct = (100 * ((await cpuOf(cmPid)) - c0)) / idleSeconds;
      const alive = await Promise.all(workers.map((w) => w.call('alive')));
      out.stillOpen = alive.reduce((a, x) => a + x.sessions, 0);
    }
    return out;
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

/** One bench/hub.mjs run with `viewers`; resolves to its JSON result. */
async function hub(viewers, dir) {
  const file = path.join(dir, `hub-${viewers}-${process.pid}.jsonl`);
  const args = [path.join(HERE, 'hub.mjs'), '--viewers', String(viewers), '--items', String(opts['hub-items']), '--json', file];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  const code = await new Promise((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`bench/hub.mjs --viewers ${viewers} exited ${code}`);
  const lines = (await readFile(file, 'utf8')).trim().split('\n');
  return JSON.parse(lines[lines.length - 1]);
}

// ---------------------------------------------------------------------------------------------
// Figures, ratios, targets.

const median = (xs) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!v.length) return NaN;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};

/** The figures of the table: key, label, value(result of one column in one run), better. */
export const FIGURES = [
  { key: 'rttP50', label: 'round trip p50 (ms)', get: (r) => r.speed?.rtt.p50, lower: true },
  { key: 'rttP99', label: 'round trip p99 (ms)', get: (r) => r.speed?.rtt.p99, lower: true },
  { key: 'rate', label: 'delivered stanzas/s, pairs', get: (r) => r.speed?.tput.rate, lower: false },
  { key: 'cmUs', label: 'CPU µs per delivered stanza (CM process)', get: (r) => r.speed?.tput.cmUsPerStanza, lower: true },
  { key: 'cmPct', label: 'CM process CPU while loaded (% of a core)', get: (r) => r.speed?.tput.cmCpuPct, lower: true },
  { key: 'prosodyPct', label: 'Prosody CPU while loaded (%)', get: (r) => r.speed?.tput.prosodyCpuPct, lower: true },
  { key: 'clientPct', label: 'load client CPU while loaded (%, busiest worker)', get: (r) => r.speed?.tput.clientCpuPct, lower: true, extra: (r) => r.speed?.tput.clientMaxWorkerPct },
];
for (const n of loginCounts) {
  FIGURES.push({ key: `setup${n}`, label: `set-up rate, ${n.toLocaleString('en-US')} logins (sessions/s)`, get: (r) => r.logins?.[n]?.rate, lower: false });
}
for (const n of loginCounts) {
  FIGURES.push({ key: `rss${n}`, label: `RSS per idle session at ${n.toLocaleString('en-US')} (KiB)`, get: (r) => r.logins?.[n]?.rssPerSessionKb, lower: true });
}
FIGURES.push({ key: 'prosodyRss', label: `Prosody's own RSS per session at ${loginCounts.at(-1)?.toLocaleString('en-US')} (KiB)`, get: (r) => r.logins?.[loginCounts.at(-1)]?.prosodyRssPerSessionKb, lower: true });
FIGURES.push({ key: 'usLogin', label: `CM CPU µs per login (${loginCounts.at(-1)?.toLocaleString('en-US')})`, get: (r) => r.logins?.[loginCounts.at(-1)]?.cmUsPerLogin, lower: true });

/** The ratios printed: [numerator column, denominator column]. */
const RATIO_PAIRS = [
  ['relay', 'direct'], ['gw-ws', 'direct'], ['gw-ws', 'relay'], ['gw-ws', 'pros-ws'], ['gw-ws', 'nxb-ws'],
  ['gw-bosh', 'direct'], ['gw-bosh', 'relay'], ['gw-bosh', 'pros-bosh'], ['gw-bosh', 'nxb-bosh'],
  ['gw-ws-tls', 'gw-ws'], ['gw-bosh-tls', 'gw-bosh'],
];

function ratioMedian(runs, fig, a, b) {
  return median(runs.map((run) => {
    const x = run[a] && fig.get(run[a]);
    const y = run[b] && fig.get(run[b]);
    return Number.isFinite(x) && Number.isFinite(y) && y > 0 ? x / y : NaN;
  }));
}

function targets(runs, med, extra) {
  const last = loginCounts.at(-1);
  const rat = (key, a, b) => ratioMedian(runs, FIGURES.find((f) => f.key === key), a, b);
  const out = [];
  const add = (what, value, limit, pass, unit = 'x') => out.push({ what, value, limit, unit, pass: Number.isFinite(value) ? pass(value) : null });
  add('throughput xmppgw WS / direct TCP', rat('rate', 'gw-ws', 'direct'), '>= 0.95', (v) => v >= 0.95);
  add('throughput xmppgw BOSH / direct TCP', rat('rate', 'gw-bosh', 'direct'), '>= 0.90', (v) => v >= 0.90);
  add('CPU per stanza xmppgw WS / nxb WS', rat('cmUs', 'gw-ws', 'nxb-ws'), '<= 0.20', (v) => v <= 0.2);
  add('CPU per stanza xmppgw BOSH / nxb BOSH', rat('cmUs', 'gw-bosh', 'nxb-bosh'), '<= 0.20', (v) => v <= 0.2);
  add('WS round trip p50 xmppgw / direct TCP', rat('rttP50', 'gw-ws', 'direct'), '<= 1.30', (v) => v <= 1.3);
  add('WS round trip p99 xmppgw / direct TCP', rat('rttP99', 'gw-ws', 'direct'), '<= 1.50', (v) => v <= 1.5);
  add('BOSH round trip p50 xmppgw / Prosody mod_bosh', rat('rttP50', 'gw-bosh', 'pros-bosh'), '<= 1.00', (v) => v <= 1.0);
  add('BOSH round trip p99 xmppgw / Prosody mod_bosh', rat('rttP99', 'gw-bosh', 'pros-bosh'), '<= 1.00', (v) => v <= 1.0);
  add(`RSS per idle WS session, plain upstream (at ${last})`, med['gw-ws']?.[`rss${last}`], '<= 8 KiB', (v) => v <= 8, ' KiB');
  add(`RSS per idle BOSH session, plain upstream (at ${last})`, med['gw-bosh']?.[`rss${last}`], '<= 12 KiB', (v) => v <= 12, ' KiB');
  add(`RSS per idle WS session, STARTTLS upstream (at ${last})`, med['gw-ws-tls']?.[`rss${last}`], 'stated', () => true, ' KiB');
  add(`RSS per idle BOSH session, STARTTLS upstream (at ${last})`, med['gw-bosh-tls']?.[`rss${last}`], 'stated', () => true, ' KiB');
  // The target is 9,000 sessions: a smaller --idle run shows what it opened, and cannot pass.
  if (extra.idle) add(`idle WS sessions open in one process (${extra.idle.n} tried)`, extra.idle.failed ? 0 : extra.idle.stillOpen ?? extra.idle.opened, '>= 9000', (v) => v >= 9000, '');
  add(`set-up rate xmppgw WS / direct TCP (${last})`, rat(`setup${last}`, 'gw-ws', 'direct'), '>= 0.90', (v) => v >= 0.9);
  const boshPeers = ['pros-bosh', 'nxb-bosh'].filter((c) => med[c]);
  const worst = Math.min(...boshPeers.map((c) => rat(`setup${last}`, 'gw-bosh', c)));
  add(`set-up rate xmppgw BOSH / best peer BOSH (${last})`, boshPeers.length ? worst : NaN, '> 1.00', (v) => v > 1.0);
  const h = extra.hub?.find((x) => x.viewers === 10000) ?? extra.hub?.at(-1);
  if (h) {
    add(`hub: upstream sessions for ${h.viewers} viewers`, h.upstreamSessions, '= 1', (v) => v === 1, '');
    add(`hub: publish-to-last-viewer p99, ${h.viewers} viewers`, h.lastViewer.p99, '<= 50 ms', (v) => v <= 50, ' ms');
    add(`hub: RSS per idle viewer, ${h.viewers} viewers`, h.rssPerViewerBytes / 1024, '<= 4 KiB', (v) => v <= 4, ' KiB');
  }
  return out;
}

const fmt = (v, digits) => {
  if (!Number.isFinite(v)) return '-';
  if (digits !== undefined) return v.toFixed(digits);
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  if (Math.abs(v) >= 1) return v.toFixed(2);
  return v.toFixed(3);
};

function tables(runs, med, extra, tg) {
  const cols = columns;
  const note = (c) => (COLUMNS[c].cm === 'prosody' ? ' (incl. c2s)' : '');
  const main = FIGURES.map((f) => [f.label, ...cols.map((c) => {
    const v = med[c]?.[f.key];
    if (f.key === 'clientPct' && Number.isFinite(v)) return `${fmt(v, 0)} (${fmt(med[c].clientMax, 0)})`;
    if (['cmUs', 'cmPct', 'usLogin'].includes(f.key) || f.key.startsWith('rss')) return Number.isFinite(v) ? `${fmt(v)}${note(c)}` : '-';
    return fmt(v);
  })]);
  const header = ['figure', ...cols.map((c) => COLUMNS[c].label)];
  const pairs = RATIO_PAIRS.filter(([a, b]) => cols.includes(a) && cols.includes(b));
  const ratios = FIGURES.filter((f) => !['cmPct', 'prosodyPct', 'clientPct', 'prosodyRss'].includes(f.key)).map((f) => [f.label, ...pairs.map(([a, b]) => {
    const r = ratioMedian(runs, f, a, b);
    return Number.isFinite(r) ? `${r.toFixed(2)}x` : '-';
  })]);
  const rheader = ['ratio (median of per-run ratios)', ...pairs.map(([a, b]) => `${COLUMNS[a].label} / ${COLUMNS[b].label}`)];
  const digits = { x: 2, '': 0 };
  const trows = tg.map((t) => [t.what, Number.isFinite(t.value) ? `${fmt(t.value, digits[t.unit] ?? 1)}${t.unit}` : '-', t.limit,
    t.pass === null ? 'n/a' : t.limit === 'stated' ? 'stated' : t.pass ? 'PASS' : 'MISS']);
  const xrows = [];
  if (extra.idle && !extra.idle.failed) {
    const i = extra.idle;
    xrows.push([`${i.n.toLocaleString('en-US')} idle xmppgw WS sessions, one process`, `${i.stillOpen ?? i.opened} open; set-up ${fmt(i.rate)}/s; RSS ${fmt(i.cmRssKb / 1024, 1)} MiB (${fmt(i.rssPerSessionKb, 2)} KiB each, ${fmt(i.fdsPerSession, 2)} fds each); CPU idle ${fmt(i.idleCpuPct, 2)} % of a core; projected for 1,000,000 sessions ${fmt((i.cmRssBaseKb + i.rssPerSessionKb * 1e6) / 2 ** 20, 1)} GiB`]);
  }
  for (const [tls, plain, what] of [['gw-ws-tls', 'gw-ws', 'WS'], ['gw-bosh-tls', 'gw-bosh', 'BOSH']]) {
    if (!med[tls] || !med[plain]) continue;
    const last = loginCounts.at(-1);
    const d = (k) => med[tls][k] - med[plain][k];
    xrows.push([`STARTTLS upstream, xmppgw ${what}: OpenSSL's share (STARTTLS minus plain)`,
      `${fmt(d('cmUs'))} µs CPU per delivered stanza (${fmt(med[tls].cmUs)} vs ${fmt(med[plain].cmUs)}); `
      + `${fmt(d(`rss${last}`))} KiB per idle session (${fmt(med[tls][`rss${last}`])} vs ${fmt(med[plain][`rss${last}`])}); `
      + `${fmt(d('usLogin'))} µs CPU per login; round trip p50 ${fmt(d('rttP50'))} ms`]);
  }
  for (const h of extra.hub ?? []) {
    xrows.push([`SSE hub, ${h.viewers.toLocaleString('en-US')} viewers`, `${h.delivered} of ${h.expected} events; delay p50 ${fmt(h.delay.p50)} / p99 ${fmt(h.delay.p99)} ms; last viewer of an item p50 ${fmt(h.lastViewer.p50)} / p99 ${fmt(h.lastViewer.p99)} ms; Prosody alone p50 ${fmt(h.direct.p50)} ms; ${fmt(h.rssPerViewerBytes / 1024, 2)} KiB per viewer; ${fmt(h.gwCpuUsPerDelivery, 1)} µs CPU per event; upstream sessions ${h.upstreamSessions}`]);
  }
  return { header, main, rheader, ratios, trows, xrows };
}

function markdown({ header, main, rheader, ratios, trows, xrows }) {
  const md = (h, rows) => [`| ${h.join(' | ')} |`, `|${h.map((_, i) => (i ? '---:' : '---')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
  return [md(header, main), '', md(rheader, ratios), '', md(['target', 'measured', 'limit', ''], trows),
    ...(xrows.length ? ['', md(['xmppgw alone', 'measured'], xrows)] : [])].join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const started = Date.now();
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  const outDir = process.env.BENCH_OUT || path.join(HERE, '..', 'build-bench', 'out');
  await mkdir(outDir, { recursive: true });
  const jsonFile = opts.json || path.join(outDir, `cm-${stamp}.json`);
  const svgFile = opts.svg || jsonFile.replace(/\.json$/, '') + '.svg';
  const mdFile = opts.md || jsonFile.replace(/\.json$/, '') + '.md';
  if (columns.some((c) => COLUMNS[c].cm === 'nxb') && !existsSync(path.join(HERE, 'node_modules', 'node-xmpp-bosh'))) {
    throw new Error('node-xmpp-bosh is not installed: npm ci --prefix bench (bash bench/run.sh does it)');
  }
  const fdLimit = await openFileLimit();
  const need = Math.max(...loginCounts, opts.idle) * 2 + 512;
  if (fdLimit < need) log(`note: ulimit -n is ${fdLimit}; sessions need up to ${need} descriptors in Prosody and in the gateway (bench/run.sh raises it)`);

  const header = [
    `xmppgw side-by-side bench: ${opts.runs} run(s); rtt ${opts['rtt-count']} after ${opts['rtt-warmup']}; `
      + `${opts.pairs} pairs x ${opts.inflight} in flight for ${opts.seconds} s; logins ${loginCounts.join(', ')} (${opts.parallel} at a time); `
      + `${opts.workers} load-client processes`,
    `machine:  ${await machine()}`,
    `gateway:  ${GATEWAY_BIN}`,
    `client:   bench/lib/xmpp_raw.mjs (bare sockets, ws 8, node:http keep-alive), SASL PLAIN, one account, distinct resources, no presence`,
  ];
  for (const l of header) console.log(l);

  prosody = await startProsody({
    users: { [USER]: PASSWORD },
    bosh: true,
    websocket: true,
    logLevel: 'error',
    // Plain c2s for the direct client, node-xmpp-bosh and the gateway's plain columns; STARTTLS is
    // still offered (the gateway's -tls columns use it).
    extraGlobal: 'c2s_require_encryption = false\nallow_unencrypted_plain_auth = true\nbosh_max_inactivity = 300\n',
  });
  const runs = [];
  const extra = {};
  let failure = null;
  const cleanup = async () => {
    if (cm) await cm.stop().catch(() => {});
    cm = null;
    if (prosody) await prosody.stop().catch(() => {});
    prosody = null;
  };
  process.once('SIGINT', () => { cleanup().finally(() => process.exit(130)); });
  try {
    for (let run = 0; run < opts.runs; run++) {
      const res = {};
      runs.push(res);
      for (const col of columns) {
        const t = Date.now();
        try {
          const one = { speed: await speed(col), logins: {} };
          for (const n of loginCounts) one.logins[n] = await logins(col, n);
          res[col] = one;
        } catch (err) {
          log(`  run ${run + 1}/${opts.runs} ${col} FAILED: ${err.stack ?? err}`);
          (extra.failures ??= []).push({ run: run + 1, col, error: String(err.message ?? err) });
          continue;
        }
        const s = res[col].speed;
        log(`  run ${run + 1}/${opts.runs} ${col}: rtt p50 ${fmt(s.rtt.p50)} ms, ${fmt(s.tput.rate)}/s, `
          + `${fmt(s.tput.cmUsPerStanza)} µs/stanza, client ${fmt(s.tput.clientCpuPct, 0)} %; `
          + loginCounts.map((n) => `${n}: ${fmt(res[col].logins[n].rate)}/s ${fmt(res[col].logins[n].rssPerSessionKb)} KiB`).join(', ')
          + ` (${((Date.now() - t) / 1000).toFixed(0)} s)`);
      }
    }
    if (opts.idle > 0 && columns.includes('gw-ws')) {
      const t = Date.now();
      try {
        extra.idle = await logins('gw-ws', opts.idle, { workers: Math.max(opts.workers, Math.ceil(opts.idle / 4000)), idleSeconds: 10 });
        log(`  idle: ${extra.idle.opened} WS sessions, ${fmt(extra.idle.rssPerSessionKb)} KiB each (${((Date.now() - t) / 1000).toFixed(0)} s)`);
      } catch (err) {
        log(`  idle: ${opts.idle} WS sessions FAILED: ${err.message}`);
        (extra.failures ??= []).push({ run: 1, col: `${opts.idle} idle gw-ws sessions`, error: String(err.message ?? err) });
        extra.idle = { n: opts.idle, opened: NaN, failed: true };
      }
    }
  } catch (err) {
    failure = err;
  } finally {
    await cleanup();
  }
  if (!failure && hubViewers.length) {
    extra.hub = [];
    for (const v of hubViewers) {
      try {
        const t = Date.now();
        extra.hub.push(await hub(v, outDir));
        log(`  hub: ${v} viewers (${((Date.now() - t) / 1000).toFixed(0)} s)`);
      } catch (err) {
        log(`  hub with ${v} viewers FAILED: ${err.message}`);
        (extra.failures ??= []).push({ run: 1, col: `hub ${v}`, error: String(err.message ?? err) });
      }
    }
  }

  const med = {};
  for (const c of columns) {
    if (!runs.some((r) => r[c])) continue;
    med[c] = {};
    for (const f of FIGURES) med[c][f.key] = median(runs.map((r) => (r[c] ? f.get(r[c]) : NaN)));
    med[c].clientMax = median(runs.map((r) => r[c]?.speed?.tput.clientMaxWorkerPct));
  }
  const tg = targets(runs, med, extra);
  const t = tables(runs, med, extra, tg);
  for (const f of extra.failures ?? []) t.xrows.push([`run ${f.run}, ${f.col}`, `FAILED (left out of the medians): ${f.error.split('\n')[0]}`]);
  console.log('');
  console.log(table(t.header, t.main));
  console.log('');
  console.log(table(t.rheader, t.ratios));
  console.log('');
  console.log(table(['target', 'measured', 'limit', ''], t.trows));
  if (t.xrows.length) {
    console.log('');
    for (const [k, v] of t.xrows) console.log(`${k}: ${v}`);
  }
  const seconds = (Date.now() - started) / 1000;
  console.log(`\n${(seconds / 60).toFixed(1)} minutes in all; load average now ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);

  let commit = null;
  try {
    commit = execFileSync('git', ['-C', path.join(HERE, '..'), 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch { /* not a git checkout */ }
  const argv = process.argv.slice(2).filter((a, i, all) => !['--json', '--svg', '--md'].includes(a) && !['--json', '--svg', '--md'].includes(all[i - 1]) && a !== '--readme');
  const result = {
    bench: 'cm', when: new Date().toISOString(), seconds, commit, argv, opts, header, columns: Object.fromEntries(columns.map((c) => [c, COLUMNS[c]])),
    figures: FIGURES.map(({ key, label, lower }) => ({ key, label, lower })), runs, medians: med, extra, targets: tg,
    failure: failure ? String(failure.stack ?? failure) : null,
  };
  await writeFile(jsonFile, `${JSON.stringify(result, null, 2)}\n`);
  await writeFile(svgFile, renderSvg(result));
  await writeFile(mdFile, `${header.map((l) => `    ${l}`).join('\n')}\n\n${markdown(t)}\n`);
  console.log(`JSON ${jsonFile}\nSVG  ${svgFile}\nMarkdown ${mdFile}`);
  if (opts.readme) {
    await updateReadme(jsonFile, mdFile, svgFile);
    console.log('bench/README.md and bench/cm.svg updated');
  }
  if (failure) throw failure;
}

main().then(() => process.exit(0), (err) => {
  console.error(err.stack ?? err);
  process.exit(1);
});
