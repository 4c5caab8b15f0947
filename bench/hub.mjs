// The live-updates hub under many viewers of one node: N raw HTTP viewers of
// GET /events/pubsub.localhost/bench (in worker threads, bench/lib/sse_viewers.mjs), then a
// publisher logged in to Prosody directly (not through the gateway) publishes K items spaced
// --interval-ms apart. For every viewer and item: delay = arrival at the viewer - the moment the
// publish left the publisher, on one monotonic clock (process.hrtime, shared by the threads of this
// process). The publisher's own full JID is subscribed to the node as well: its notifications give
// Prosody's part of the delay, with no gateway in between.
//
// Reported: viewers, the upstream sessions the gateway holds for them (Prosody's c2s sessions of the
// hub account, from `prosodyctl shell`, and the gateway's TCP connections to Prosody's c2s port),
// items delivered of expected (losses, duplicates, items out of order), delay p50/p95/p99/max, the
// gateway's CPU seconds while the items went out (per item per 1,000 viewers), its RSS before the
// viewers, with them, and per viewer, its descriptors; the CPU of Prosody and of this client too.
//
//   node bench/hub.mjs [--viewers 1000] [--items 50] [--interval-ms 200] [--workers N] [--json FILE]
// The gateway binary is $XMPPGW_BIN, else build/xmppgw. 10,000 viewers need `ulimit -n` above
// 10,000 in this process (the gateway inherits it): bench/run.sh raises it.
import { appendFile, mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { execFile, spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { startProsody, PROSODYCTL_BIN } from '../tests/integration/lib/prosody.mjs';
import { startGateway, stopGatewayChecked, GATEWAY_BIN } from '../tests/integration/lib/gateway.mjs';
import { loginXmppJs, withTimeout } from '../tests/integration/lib/clients.mjs';
import {
  parseArgs, summarize, table, fmtMs, trustCaForTls, machine, procStatus, countFds, cpuTimes,
  openFileLimit, tcpConnectionsTo, sleep,
} from './lib/common.mjs';

const USAGE = `usage: node bench/hub.mjs [options]
  --viewers N          event streams open on the node at once (default 1000)
  --items K            items published while they watch (default 50)
  --interval-ms MS     between two publishes (default 200)
  --replay R           items published before the viewers come; each viewer waits for them (default 5)
  --workers W          worker threads holding the viewers (default 1, 2 from 2,000 viewers)
  --parallel P         connections being opened at once per worker (default 100)
  --sources S          spread the viewers over 127.0.0.1 .. 127.0.0.S (default 1)
  --heartbeat S        live.heartbeat of the gateway (default 3600: no heartbeat while measuring)
  --settle-seconds S   wait before each memory reading (default 3)
  --connect-seconds S  all viewers must be open within S seconds (default 300)
  --deliver-seconds S  after the last publish, wait at most S seconds for every delivery (default 60)
  --syscalls           count the gateway's epoll_ctl and sendto calls while publishing (perf stat
                       on the syscalls tracepoints; needs perf and the right to use it)
  --json FILE          also append the JSON result line to FILE
`;

const opts = parseArgs(process.argv.slice(2), {
  viewers: 1000, items: 50, 'interval-ms': 200, replay: 5, workers: 0, parallel: 100, sources: 1,
  heartbeat: 3600, 'settle-seconds': 3, 'connect-seconds': 300, 'deliver-seconds': 60, syscalls: false,
  json: '',
}, USAGE);
const N = Math.floor(opts.viewers);
const K = Math.floor(opts.items);
const WORKERS = Math.max(1, Math.min(N, opts.workers || (N >= 2000 ? 2 : 1)));
if (N < 1 || K < 1) throw new Error(`--viewers and --items must be at least 1\n${USAGE}`);
if (opts.replay > 20) throw new Error('--replay: at most 20 (live.replay of this bench)');
if (opts.sources < 1 || opts.sources > 250) throw new Error('--sources: 1..250');

const SERVICE = 'pubsub.localhost';
const NODE = 'bench';
const HUB = { user: 'hub', password: 'hub-bench-Pa55' };
const PUBLISHER = { user: 'publisher', password: 'publisher-bench-pw' };
const PUBSUB_NS = 'http://jabber.org/protocol/pubsub';
const EVENT_NS = 'http://jabber.org/protocol/pubsub#event';
const STEP_TIMEOUT_MS = 20000;
const execFileP = promisify(execFile);
const base = process.hrtime.bigint();
const nowMs = () => Number(process.hrtime.bigint() - base) / 1e6;
const ids = Array.from({ length: K }, (_, k) => `item-${k}`);
let stopping = false; // a signal came: publish no more

/** Refuses to start when the descriptors, or the source ports, cannot hold N viewers. */
async function checkLimits() {
  const need = N + 256;
  const limit = await openFileLimit();
  if (limit < need) {
    throw new Error(`ulimit -n is ${limit} here; ${N} viewers need at least ${need} descriptors in this `
      + 'process and in the gateway (it inherits the limit): raise it first, e.g. `ulimit -n 65536` '
      + '(bench/run.sh does), or use fewer viewers');
  }
  const [lo, hi] = (await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).trim().split(/\s+/).map(Number);
  if (N / opts.sources > hi - lo - 1000) {
    throw new Error(`${N} viewers from ${opts.sources} source address(es) do not fit the ephemeral port range ${lo}-${hi}: use --sources`);
  }
  return limit;
}

/** A worker thread of viewers, with promises for the messages it answers. */
function startWorker(workerData) {
  const w = new Worker(new URL('./lib/sse_viewers.mjs', import.meta.url), { workerData });
  const seen = new Map();
  const waiting = new Map();
  let failed = null;
  const fail = (err) => {
    failed ??= err;
    for (const [, ws] of waiting) for (const { reject } of ws) reject(failed);
    waiting.clear();
  };
  w.on('message', (m) => {
    if (m.type === 'error') return fail(new Error(m.message));
    seen.set(m.type, m);
    for (const { resolve } of waiting.get(m.type) ?? []) resolve(m);
    waiting.delete(m.type);
    return undefined;
  });
  w.on('error', fail);
  w.on('exit', (code) => fail(new Error(`viewer worker exited (${code})`)));
  return {
    send: (cmd) => w.postMessage({ cmd }),
    /** The message of `type`, once the worker sent it (also when it did already). */
    next(type) {
      if (seen.has(type)) return Promise.resolve(seen.get(type));
      if (failed) return Promise.reject(failed);
      return new Promise((resolve, reject) => {
        if (!waiting.has(type)) waiting.set(type, []);
        waiting.get(type).push({ resolve, reject });
      });
    },
    terminate: () => w.terminate(),
  };
}

/** c2s sessions at Prosody: { hub, total } (prosodyctl shell, through mod_admin_shell). */
async function prosodySessions(prosody) {
  const { stdout } = await execFileP(PROSODYCTL_BIN,
    ['--config', prosody.configFile, 'shell', 'c2s:show()'],
    { env: { ...process.env, HOME: prosody.dir }, timeout: STEP_TIMEOUT_MS });
  const hub = stdout.split('\n').filter((l) => l.includes(` ${HUB.user}@${prosody.domain}/`)).length;
  const total = Number(/^OK: (\d+) c2s session/m.exec(stdout)?.[1] ?? NaN);
  if (!Number.isFinite(total)) throw new Error(`prosodyctl shell c2s:show(): unexpected output: ${stdout.slice(0, 500)}`);
  return { hub, total };
}

async function reading(what, gw, prosody) {
  await sleep(opts['settle-seconds'] * 1000);
  const s = await procStatus(gw.pid);
  return {
    what, rssKb: s.VmRSS, anonKb: s.RssAnon, fds: await countFds(gw.pid),
    upstreamTcp: await tcpConnectionsTo(gw.pid, prosody.port),
    prosody: await prosodySessions(prosody),
  };
}

/** The publisher: logged in to Prosody's c2s port, owner of the node, subscribed with its full JID. */
async function startPublisher(prosody) {
  let pub;
  // @xmpp/client gives each step of the login 2 s of its own: on a busy machine, try again.
  for (let attempt = 1; !pub; attempt++) {
    try {
      pub = await loginXmppJs({
        service: `xmpp://127.0.0.1:${prosody.port}`, domain: prosody.domain, username: PUBLISHER.user,
        password: PUBLISHER.password, resource: 'bench', timeoutMs: STEP_TIMEOUT_MS,
      });
    } catch (err) {
      if (attempt === 3) throw err;
      process.stderr.write(`  publisher login, attempt ${attempt}: ${err.message}; again\n`);
    }
  }
  const ok = async (stanza, what) => {
    const r = await pub.iq(stanza, STEP_TIMEOUT_MS);
    if (r.type !== 'result') throw new Error(`${what} failed: ${r.xml}`);
    pub.received.length = 0;
  };
  await ok(`<iq type="set" to="${SERVICE}"><pubsub xmlns="${PUBSUB_NS}"><create node="${NODE}"/></pubsub></iq>`, 'node creation');
  await ok(`<iq type="set" to="${SERVICE}"><pubsub xmlns="${PUBSUB_NS}"><subscribe node="${NODE}" jid="${pub.jid}"/></pubsub></iq>`, 'the publisher\'s subscription');
  const direct = new Map(); // item id -> arrival (ms) of Prosody's notification to the publisher
  pub.client.on('stanza', (el) => {
    if (el.name !== 'message') return;
    const t = nowMs();
    for (const item of el.getChild('event', EVENT_NS)?.getChild('items')?.getChildren('item') ?? []) {
      if (!direct.has(item.attrs.id)) direct.set(item.attrs.id, t);
    }
  });
  const publish = (id, seq) => {
    const payload = `<bench xmlns="urn:xmppgw:bench" seq="${seq}" t="${nowMs().toFixed(3)}"/>`;
    return pub.iq(`<iq type="set" to="${SERVICE}"><pubsub xmlns="${PUBSUB_NS}"><publish node="${NODE}"><item id="${id}">${payload}</item></publish></pubsub></iq>`, STEP_TIMEOUT_MS)
      .then((r) => { if (r.type !== 'result') throw new Error(`publish of ${id} failed: ${r.xml}`); });
  };
  return { pub, direct, publish };
}

const SYSCALLS = ['epoll_ctl', 'sendto', 'epoll_wait'];

/**
 * `perf stat` counting the gateway's system calls until stop() (SIGINT): resolves to
 * { epoll_ctl, sendto, epoll_wait } counts.
 */
function countSyscalls(pid, dir) {
  const file = path.join(dir, 'perf-stat.csv');
  const events = SYSCALLS.map((c) => `syscalls:sys_enter_${c}`).join(',');
  const child = spawn('perf', ['stat', '-x', ',', '-o', file, '-e', events, '-p', String(pid)],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => { child.once('exit', resolve); child.once('error', (e) => { err += e.message; resolve(); }); });
  return {
    async stop() {
      child.kill('SIGINT');
      await withTimeout(exited, STEP_TIMEOUT_MS, 'perf stat to exit');
      const text = await readFile(file, 'utf8').catch(() => '');
      const out = {};
      for (const line of text.split('\n')) {
        const f = line.split(',');
        const m = /syscalls:sys_enter_(\w+)/.exec(f[2] ?? '');
        if (m) out[m[1]] = Number(f[0]);
      }
      if (!SYSCALLS.every((c) => Number.isFinite(out[c]))) throw new Error(`--syscalls: perf stat gave no counts: ${err.trim()} ${text.trim()}`);
      return out;
    },
  };
}

/** Opens the viewers in WORKERS threads, added to `workers`; resolves once every viewer has its replay. */
async function openViewers(gw, workers) {
  for (let j = 0; j < WORKERS; j++) {
    const count = Math.floor(N / WORKERS) + (j < N % WORKERS ? 1 : 0);
    workers.push(startWorker({
      port: gw.port, path: `/events/${SERVICE}/${NODE}`, count, sources: opts.sources, sourceBase: 1,
      parallel: opts.parallel, replay: opts.replay, ids, base, openTimeoutMs: 60000,
    }));
  }
  for (const w of workers) w.send('open');
  await withTimeout(Promise.all(workers.map((w) => w.next('opened'))), opts['connect-seconds'] * 1000,
    `${N} viewers open with their replay of ${opts.replay} items (--connect-seconds)`);
}

/** Publishes the K items on schedule; resolves to the send times (ms) once every viewer has all. */
async function publishAll(publisher, workers) {
  const sent = new Float64Array(K);
  const acks = [];
  const start = nowMs();
  for (let k = 0; k < K; k++) {
    const wait = start + k * opts['interval-ms'] - nowMs();
    if (wait > 0) await sleep(wait);
    if (stopping) throw new Error('stopped while publishing');
    sent[k] = nowMs();
    acks.push(publisher.publish(ids[k], k));
  }
  await Promise.all(acks);
  let timedOut = false;
  try {
    await withTimeout(Promise.all(workers.map((w) => w.next('delivered'))), opts['deliver-seconds'] * 1000,
      'every item at every viewer');
  } catch (err) {
    if (!/timed out/.test(err.message)) throw err;
    timedOut = true;
  }
  return { sent, timedOut, seconds: (nowMs() - start) / 1000 };
}

/** Delays of every (viewer, item) from the workers' arrival times. */
async function collect(workers, sent) {
  for (const w of workers) w.send('collect');
  const results = await withTimeout(Promise.all(workers.map((w) => w.next('result'))), STEP_TIMEOUT_MS, 'the viewers\' results');
  const delays = [];
  const lastPerItem = new Float64Array(K).fill(-Infinity);
  const stats = { viewers: 0, duplicates: 0, disorder: 0, closed: 0, comments: 0, others: {}, elu: [] };
  for (const r of results) {
    stats.viewers += r.viewers;
    for (const key of ['duplicates', 'disorder', 'closed', 'comments']) stats[key] += r.stats[key];
    for (const [e, c] of Object.entries(r.stats.others)) stats.others[e] = (stats.others[e] ?? 0) + c;
    stats.elu.push(r.elu);
    for (let i = 0; i < r.arrivals.length; i++) {
      const t = r.arrivals[i];
      if (Number.isNaN(t)) continue;
      const k = i % K;
      delays.push(t - sent[k]);
      if (t - sent[k] > lastPerItem[k]) lastPerItem[k] = t - sent[k];
    }
  }
  return { delays, lastPerItem: [...lastPerItem].filter(Number.isFinite), stats };
}

function report(r) {
  const row = (what, s) => [what, s.n, fmtMs(s.p50), fmtMs(s.p95), fmtMs(s.p99), fmtMs(s.max)];
  console.log(table(['delay from publish', 'n', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms'], [
    row('to a viewer, through the hub', r.delay),
    row('to the last viewer of each item', r.lastViewer),
    row('to the publisher itself (Prosody alone)', r.direct),
  ]));
  console.log('');
  const rows = r.readings.map((x) => [x.what, x.rssKb, x.anonKb, x.fds, x.upstreamTcp, x.prosody.hub, x.prosody.total]);
  console.log(table(['gateway', 'VmRSS kB', 'RssAnon kB', 'fds', 'TCP to Prosody', 'hub c2s at Prosody', 'all c2s at Prosody'], rows));
  console.log('');
  console.log(`viewers: ${r.viewers}; upstream sessions for them: ${r.upstreamSessions} (hub@${r.domain} c2s sessions at Prosody with all viewers open)`);
  console.log(`items: ${r.delivered} of ${r.expected} delivered (${r.expected - r.delivered} lost), ${r.duplicates} twice, ${r.disorder} out of order, ${r.closed} streams closed early`);
  console.log(`gateway RSS: ${(r.rssBeforeKb / 1024).toFixed(1)} MiB before the viewers, ${(r.rssAllKb / 1024).toFixed(1)} MiB with them: ${(r.rssPerViewerBytes / 1024).toFixed(2)} KiB per viewer; ${r.fdsPerViewer.toFixed(2)} descriptors per viewer`);
  console.log(`gateway CPU while publishing: ${r.gwCpuPublish.toFixed(2)} s (user ${r.gwCpuPublishUser.toFixed(2)}, system ${r.gwCpuPublishSystem.toFixed(2)}) for ${K} items = ${r.gwCpuMsPerItemPer1k.toFixed(3)} ms per item per 1,000 viewers (${r.gwCpuUsPerDelivery.toFixed(2)} us per delivered event); opening the viewers: ${r.gwCpuConnect.toFixed(2)} s (${r.gwCpuUsPerConnect.toFixed(0)} us per viewer)`);
  if (r.syscalls) {
    const s = r.syscalls;
    console.log(`gateway system calls while publishing: ${s.epoll_ctl} epoll_ctl, ${s.sendto} sendto, ${s.epoll_wait} epoll_wait: ${(s.epoll_ctl / r.delivered).toFixed(2)} epoll_ctl per delivered event, ${(s.epoll_ctl / s.sendto).toFixed(2)} per sendto, ${(r.delivered / s.sendto).toFixed(2)} events per sendto`);
  }
  console.log(`gateway CPU with the viewers open and nothing published: ${r.gwCpuIdlePerSecond.toFixed(3)} s per s over ${r.idleSeconds.toFixed(1)} s (live.heartbeat ${r.opts.heartbeat} s)`);
  console.log(`Prosody CPU while publishing: ${r.prosodyCpuPublish.toFixed(2)} s; this client (all threads): ${r.clientCpuPublish.toFixed(2)} s, viewer threads' event-loop use ${r.clientElu.map((e) => `${(e * 100).toFixed(0)}%`).join(' ')}`);
}

async function main() {
  const fdLimit = await checkLimits();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-bench-hub-'));
  let prosody;
  let gw;
  let publisher;
  const workers = [];
  let cleaning = null;
  // Once, whoever asks first: the main flow's finally, a signal, or an error nobody caught.
  const cleanup = () => {
    cleaning ??= (async () => {
      await Promise.all(workers.map((w) => w.terminate().catch(() => {})));
      await publisher?.pub.stop();
      const problem = gw ? await stopGatewayChecked(gw) : null;
      await prosody?.stop();
      await rm(dir, { recursive: true, force: true });
      if (problem) console.error(`\ngateway problem at exit: ${problem}`);
    })();
    return cleaning;
  };
  const abort = (why) => {
    stopping = true;
    console.error(`\n${why}: stopping`);
    cleanup().finally(() => process.exit(1));
  };
  process.once('SIGINT', () => abort('SIGINT'));
  process.once('SIGTERM', () => abort('SIGTERM'));
  process.on('uncaughtException', (err) => abort(err.stack ?? err));
  try {
    const loadBefore = os.loadavg();
    prosody = await startProsody({
      users: { [HUB.user]: HUB.password, [PUBLISHER.user]: PUBLISHER.password },
      logLevel: 'warn',
      // mod_admin_shell, so that `prosodyctl shell` can list the c2s sessions.
      extraHost: '  modules_enabled = { "admin_shell" }',
    });
    await trustCaForTls(prosody.caFile);
    const passFile = path.join(dir, 'hub.pass');
    await writeFile(passFile, `${HUB.password}\n`, { mode: 0o600 });
    gw = await startGateway({
      prosody,
      config: {
        log: { level: 'info' },
        live: {
          jid: `${HUB.user}@${prosody.domain}`, password_file: passFile, nodes: [`${SERVICE}/${NODE}`],
          replay: 20, heartbeat: opts.heartbeat, linger: 60, max_viewers: N + 100,
        },
        // Every viewer comes from loopback: the per-address limits (a defence against one hostile
        // address) would measure themselves, not the hub.
        limits: {
          max_sessions: 100000, per_address_sessions: 1000000, per_address_unauthenticated: 100000,
          per_address_rate: 100000, per_address_burst: 100000, per_address_pending: 100000,
        },
      },
    });
    await gw.waitForLog(/hub: online/, STEP_TIMEOUT_MS);
    publisher = await startPublisher(prosody);
    for (let i = 0; i < opts.replay; i++) await publisher.publish(`pre-${i}`, -1 - i);

    console.log(`xmppgw live-updates hub bench: ${N} viewers of ${SERVICE}/${NODE}, ${K} items every ${opts['interval-ms']} ms`);
    console.log(`machine:  ${await machine()}`);
    console.log(`gateway:  ${GATEWAY_BIN} (pid ${gw.pid}), ${gw.url}, upstream STARTTLS to Prosody 127.0.0.1:${prosody.port}, live.heartbeat ${opts.heartbeat} s`);
    console.log(`client:   ${WORKERS} worker thread(s), raw HTTP/1.1, from ${opts.sources} address(es) 127.0.0.1..${opts.sources}; ulimit -n ${fdLimit}`);
    console.log(`publisher: ${PUBLISHER.user}@${prosody.domain} on Prosody's c2s port (STARTTLS), not through the gateway`);
    console.log('');

    const readings = [await reading('before the viewers', gw, prosody)];
    const cpu0 = (await cpuTimes(gw.pid)).total;
    const t0 = Date.now();
    await openViewers(gw, workers);
    const connectSeconds = (Date.now() - t0) / 1000;
    const cpu1 = (await cpuTimes(gw.pid)).total;
    process.stderr.write(`  ${N} viewers open in ${connectSeconds.toFixed(1)} s\n`);
    const idleT0 = Date.now();
    readings.push(await reading(`${N} viewers open`, gw, prosody));
    const idleSeconds = (Date.now() - idleT0) / 1000;
    const idleCpu = (await cpuTimes(gw.pid)).total - cpu1;

    for (const w of workers) w.send('mark');
    const client0 = process.cpuUsage();
    const gwCpu0 = await cpuTimes(gw.pid);
    const prosodyCpu0 = (await cpuTimes(prosody.pid)).total;
    const perf = opts.syscalls ? countSyscalls(gw.pid, dir) : null;
    if (perf) await sleep(500); // perf attaches
    const pubResult = await publishAll(publisher, workers);
    const syscalls = perf ? await perf.stop() : null;
    const gwCpu1 = await cpuTimes(gw.pid);
    const prosodyCpu1 = (await cpuTimes(prosody.pid)).total;
    const client1 = process.cpuUsage(client0);
    if (pubResult.timedOut) process.stderr.write(`  not every item reached every viewer within --deliver-seconds ${opts['deliver-seconds']}: losses counted\n`);
    const got = await collect(workers, pubResult.sent);
    readings.push(await reading(`after ${K} items`, gw, prosody));

    for (const w of workers) w.send('close');
    await withTimeout(Promise.all(workers.map((w) => w.next('closed'))), STEP_TIMEOUT_MS, 'closing the viewers');
    readings.push(await reading('viewers closed again', gw, prosody));
    const loadAfter = os.loadavg();

    const [before, all] = readings;
    const directDelays = ids.filter((id) => publisher.direct.has(id))
      .map((id) => publisher.direct.get(id) - pubResult.sent[ids.indexOf(id)]);
    const gwCpuPublish = gwCpu1.total - gwCpu0.total;
    const result = {
      bench: 'hub', when: new Date().toISOString(), opts, viewers: N, items: K, workers: WORKERS,
      domain: prosody.domain, upstreamSessions: all.prosody.hub, upstreamTcp: all.upstreamTcp,
      expected: N * K, delivered: got.delays.length, duplicates: got.stats.duplicates,
      disorder: got.stats.disorder, closed: got.stats.closed, otherEvents: got.stats.others,
      delay: summarize(got.delays), lastViewer: summarize(got.lastPerItem), direct: summarize(directDelays),
      connectSeconds, publishSeconds: pubResult.seconds, deliveryTimedOut: pubResult.timedOut,
      gwCpuIdlePerSecond: idleCpu / idleSeconds, idleSeconds, gwCpuConnect: cpu1 - cpu0, gwCpuUsPerConnect: ((cpu1 - cpu0) * 1e6) / N,
      gwCpuPublish, gwCpuPublishUser: gwCpu1.user - gwCpu0.user, gwCpuPublishSystem: gwCpu1.system - gwCpu0.system,
      gwCpuMsPerItemPer1k: (gwCpuPublish * 1000) / K / (N / 1000),
      gwCpuUsPerDelivery: (gwCpuPublish * 1e6) / (N * K),
      prosodyCpuPublish: prosodyCpu1 - prosodyCpu0, clientCpuPublish: (client1.user + client1.system) / 1e6,
      clientElu: got.stats.elu, syscalls,
      rssBeforeKb: before.rssKb, rssAllKb: all.rssKb, rssPerViewerBytes: ((all.rssKb - before.rssKb) * 1024) / N,
      fdsPerViewer: (all.fds - before.fds) / N, readings,
      loadBefore, loadAfter, machine: await machine(),
    };
    report(result);
    console.log(`load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${loadAfter.map((l) => l.toFixed(2)).join(' ')}`);
    console.log(JSON.stringify(result));
    if (opts.json) await appendFile(opts.json, `${JSON.stringify(result)}\n`);
    if (result.upstreamSessions !== 1) throw new Error(`expected ONE upstream session of the hub, Prosody lists ${result.upstreamSessions}`);
  } finally {
    await cleanup();
  }
}

main().then(() => process.exit(0), (err) => {
  console.error(err.stack ?? err);
  process.exit(1);
});
