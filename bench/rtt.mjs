// Round trip of a message to oneself, through the gateway and without it, in one run against one
// Prosody: a client sends <message to="its own full JID"> and times how long until the server hands
// it back. Messages go one at a time (the next is sent when the previous came back), after a
// warm-up. Paths measured:
//   gw-ws      the gateway's WebSocket endpoint            (@xmpp/client)
//   direct     Prosody's c2s port, TCP + STARTTLS           (@xmpp/client)
//   gw-bosh    the gateway's BOSH endpoint                  (Strophe.js)
//   mod_bosh   Prosody's own mod_bosh, same Prosody         (Strophe.js)
//   mod_ws     Prosody's own mod_websocket, same Prosody    (@xmpp/client)
// The gateway talks STARTTLS to Prosody, as in production. Everything is on 127.0.0.1.
//
//   node bench/rtt.mjs [--count 2000] [--warmup 200] [--paths gw-ws,direct,gw-bosh,mod_bosh,mod_ws]
//                      [--limit-seconds 120] [--json FILE]
// The gateway binary is $XMPPGW_BIN, else build/xmppgw.
import { writeFile } from 'node:fs/promises';
import { xml } from '@xmpp/client';
import { $msg } from 'strophe.js';
import { startProsody } from '../tests/integration/lib/prosody.mjs';
import { startGateway, stopGatewayChecked, GATEWAY_BIN } from '../tests/integration/lib/gateway.mjs';
import { loginXmppJs, loginStrophe, withTimeout } from '../tests/integration/lib/clients.mjs';
import {
  parseArgs, summarize, table, fmtMs, fmtRatio, trustCaForTls, machine,
} from './lib/common.mjs';

const USAGE = `usage: node bench/rtt.mjs [--count N] [--warmup N] [--paths LIST] [--limit-seconds S] [--json FILE]
  --count N          measured messages per path (default 2000)
  --warmup N         messages sent first and not measured (default 200)
  --paths LIST       comma-separated subset of gw-ws,direct,gw-bosh,mod_bosh,mod_ws (default: all)
  --limit-seconds S  stop measuring a path after S seconds, keeping what was measured (default 120)
  --json FILE        also write the results as JSON
`;

const PATHS = {
  'gw-ws': { label: 'gateway WebSocket', client: '@xmpp/client' },
  direct: { label: 'Prosody c2s, TCP + STARTTLS', client: '@xmpp/client' },
  'gw-bosh': { label: 'gateway BOSH', client: 'Strophe.js' },
  mod_bosh: { label: 'Prosody mod_bosh', client: 'Strophe.js' },
  mod_ws: { label: 'Prosody mod_websocket', client: '@xmpp/client' },
};

const opts = parseArgs(process.argv.slice(2), {
  count: 2000, warmup: 200, paths: Object.keys(PATHS).join(','), 'limit-seconds': 120, json: '',
}, USAGE);
const paths = opts.paths.split(',').filter(Boolean);
for (const p of paths) if (!PATHS[p]) throw new Error(`unknown path ${p}\n${USAGE}`);

const PER_MESSAGE_TIMEOUT_MS = 10000;
const USER = 'bench';
const PASSWORD = 'bench-secret-rtt';

/** Logs in on `path`; resolves to the harness wrapper. */
function login(path, prosody, gw) {
  const creds = { username: USER, password: PASSWORD, domain: prosody.domain, timeoutMs: 20000 };
  switch (path) {
    case 'gw-ws': return loginXmppJs({ ...creds, service: gw.wsUrl });
    case 'direct': return loginXmppJs({ ...creds, service: `xmpp://127.0.0.1:${prosody.port}` });
    case 'gw-bosh': return loginStrophe({ ...creds, service: gw.boshUrl });
    case 'mod_bosh': return loginStrophe({ ...creds, service: prosody.boshUrl });
    case 'mod_ws': return loginXmppJs({ ...creds, service: prosody.websocketUrl });
    default: throw new Error(path);
  }
}

/**
 * Sends warm-up + count messages to the client's own full JID, one at a time; resolves to the
 * measured round trips in milliseconds.
 */
async function measure(c, { count, warmup, limitMs }) {
  const waiting = new Map(); // id -> resolve(arrival time)
  const arrived = (id) => {
    const resolve = id && waiting.get(id);
    if (resolve) {
      waiting.delete(id);
      resolve(process.hrtime.bigint());
    }
  };
  let send;
  if (c.kind === 'xmpp.js') {
    c.client.on('stanza', (el) => { if (el.name === 'message') arrived(el.attrs.id); });
    send = (id, body) => c.client.send(xml('message', { to: c.jid, id, type: 'chat' }, xml('body', {}, body)));
  } else {
    c.conn.addHandler((el) => { arrived(el.getAttribute('id')); return true; }, null, 'message');
    send = (id, body) => { c.conn.send($msg({ to: c.jid, id, type: 'chat' }).c('body').t(body)); c.conn.flush(); };
  }

  const samples = [];
  const deadline = Date.now() + limitMs;
  for (let i = 0; i < warmup + count; i++) {
    if (i >= warmup && Date.now() > deadline) break;
    const id = `rtt-${i}`;
    const back = new Promise((resolve) => waiting.set(id, resolve));
    const t0 = process.hrtime.bigint();
    await send(id, `round trip ${i}`);
    const t1 = await withTimeout(back, PER_MESSAGE_TIMEOUT_MS, `message ${id} back on ${c.kind}`);
    if (i >= warmup) samples.push(Number(t1 - t0) / 1e6);
    // The harness keeps every stanza it sees; the bench needs none of them.
    c.received.length = 0;
  }
  return samples;
}

async function main() {
  const started = Date.now();
  const prosody = await startProsody({
    users: { [USER]: PASSWORD },
    bosh: paths.includes('mod_bosh'),
    websocket: paths.includes('mod_ws'),
    logLevel: 'warn',
  });
  let gw;
  const results = [];
  try {
    await trustCaForTls(prosody.caFile);
    if (paths.some((p) => p.startsWith('gw-'))) {
      gw = await startGateway({ prosody, config: { log: { level: 'warn' } } });
    }

    console.log(`xmppgw round-trip bench: message to own full JID, ${opts.count} per path after ${opts.warmup} warm-up, sequential`);
    console.log(`machine:  ${await machine()}`);
    if (gw) console.log(`gateway:  ${GATEWAY_BIN} (pid ${gw.pid}), ${gw.url}, upstream STARTTLS to Prosody 127.0.0.1:${prosody.port}`);
    console.log(`prosody:  c2s 127.0.0.1:${prosody.port} (STARTTLS)${prosody.httpPort ? `, http 127.0.0.1:${prosody.httpPort} (mod_bosh/mod_websocket)` : ''}, log level warn`);
    console.log('');

    for (const path of paths) {
      const c = await login(path, prosody, gw);
      try {
        const t = Date.now();
        const samples = await measure(c, { count: opts.count, warmup: opts.warmup, limitMs: opts['limit-seconds'] * 1000 });
        const s = summarize(samples);
        results.push({ path, ...PATHS[path], ...s, seconds: (Date.now() - t) / 1000 });
        process.stderr.write(`  ${path}: ${s.n} round trips in ${((Date.now() - t) / 1000).toFixed(1)} s\n`);
      } finally {
        await c.stop();
      }
    }
  } finally {
    const problem = gw ? await stopGatewayChecked(gw) : null;
    await prosody.stop();
    if (problem) console.error(`\ngateway problem at exit: ${problem}`);
  }

  const rows = results.map((r) => [`${r.path}`, `${r.label} (${r.client})`, r.n, fmtMs(r.p50), fmtMs(r.p99), fmtMs(r.mean)]);
  console.log(table(['path', 'what', 'n', 'p50 ms', 'p99 ms', 'mean ms'], rows));

  const by = Object.fromEntries(results.map((r) => [r.path, r]));
  const ratios = [];
  const ratio = (a, b, what) => {
    if (!by[a] || !by[b]) return;
    ratios.push([what, fmtRatio(by[a].p50, by[b].p50), fmtRatio(by[a].p99, by[b].p99), fmtRatio(by[a].mean, by[b].mean)]);
  };
  ratio('gw-ws', 'direct', 'gateway WebSocket / direct c2s');
  ratio('gw-bosh', 'mod_bosh', 'gateway BOSH / Prosody mod_bosh');
  ratio('gw-ws', 'mod_ws', 'gateway WebSocket / Prosody mod_websocket');
  if (ratios.length) {
    console.log('');
    console.log(table(['ratio', 'p50', 'p99', 'mean'], ratios));
  }
  console.log(`\n(${((Date.now() - started) / 1000).toFixed(0)} s in all)`);

  if (opts.json) {
    await writeFile(opts.json, `${JSON.stringify({ when: new Date().toISOString(), opts, results }, null, 2)}\n`);
  }
}

main().then(() => process.exit(0), (err) => {
  console.error(err.stack ?? err);
  process.exit(1);
});
