// Memory per idle BOSH session: rss.mjs's measurement for the gateway's /http-bind.
//
// Opens --sessions BOSH sessions (XEP-0124/0206) with a bare HTTP client (keep-alive, at most two
// connections per session, one in use while idle) that logs in by hand (session request, SASL
// PLAIN, restart, bind), then keeps one request waiting in the gateway (hold 1, wait --wait
// seconds, asked again when answered): an idle BOSH session as a browser holds it. Reads the
// gateway's VmRSS before and with them.
//
//   node bench/rss_bosh.mjs [--sessions 1000] [--parallel 50] [--settle-seconds 5] [--tls off]
import http from 'node:http';
import { writeFile } from 'node:fs/promises';
import { startProsody } from '../tests/integration/lib/prosody.mjs';
import { startGateway, stopGatewayChecked, GATEWAY_BIN } from '../tests/integration/lib/gateway.mjs';
import { parseArgs, table, procStatus, countFds, sleep, machine } from './lib/common.mjs';

const USAGE = `usage: node bench/rss_bosh.mjs [options]
  --sessions N        idle BOSH sessions to open (default 1000)
  --parallel N        logins in flight at once (default 50)
  --warmup N          sessions opened and closed before the baseline (default 20)
  --settle-seconds S  wait before each reading (default 5)
  --wait S            the sessions' BOSH wait: how long a request is held (default 50)
  --tls MODE          gateway upstream: starttls (default), direct or off
  --limit-seconds S   give up opening sessions after S seconds (default 300)
  --json FILE         also write the results as JSON`;

const opts = parseArgs(process.argv.slice(2), {
  sessions: 1000, parallel: 50, warmup: 20, 'settle-seconds': 5, wait: 50, tls: 'starttls',
  'limit-seconds': 300, json: '',
}, USAGE);
if (!['starttls', 'direct', 'off'].includes(opts.tls)) throw new Error(`--tls: ${opts.tls}?\n${USAGE}`);

const USER = 'bench';
const PASSWORD = 'bench-secret-rss';
const DOMAIN = 'localhost';
const LOGIN_TIMEOUT_MS = 20000;
const NS = "xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'";
const AUTH = `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${USER}\0${PASSWORD}`).toString('base64')}</auth>`;

function post(agent, url, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST', agent, headers: { 'Content-Type': 'text/xml; charset=utf-8' },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** One session, logged in; then one request always waiting until stop() is called. */
async function openSession(url, resource) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  let rid = 1000000 + Math.floor(Math.random() * 1000000);
  const deadline = Date.now() + LOGIN_TIMEOUT_MS;
  const first = await post(agent, url, `<body rid='${rid}' to='${DOMAIN}' xml:lang='en' wait='${opts.wait}' hold='1' ver='1.6' xmpp:version='1.0' ${NS}/>`);
  const sid = /sid=['"]([^'"]+)['"]/.exec(first)?.[1];
  if (!sid) throw new Error(`session ${resource}: no sid in ${first.slice(0, 200)}`);
  const send = (payload, extra = '') => post(agent, url, `<body rid='${++rid}' sid='${sid}' ${extra}${NS}>${payload}</body>`);
  // Poll until a pattern shows up (features may come in the session answer or a later one).
  const until = async (seen, re, what) => {
    let text = seen;
    while (!re.test(text)) {
      if (Date.now() > deadline) throw new Error(`session ${resource}: no ${what}; last: ${text.slice(-200)}`);
      text += await send('');
    }
    return text;
  };
  await until(first, /<mechanism>PLAIN<\/mechanism>/, 'PLAIN');
  await until(await send(AUTH), /<success/, 'SASL success');
  await until(await send('', "xmpp:restart='true' to='localhost' xml:lang='en' "), /xmpp-bind/, 'bind feature');
  await until(await send(`<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`), /<jid>/, 'bound JID');
  let stopped = false;
  const idle = (async () => {
    while (!stopped) {
      try {
        await send('');
      } catch {
        return;
      }
    }
  })();
  return {
    async stop() {
      stopped = true;
      await Promise.race([send('', "type='terminate' ").catch(() => {}), sleep(5000)]);
      await Promise.race([idle, sleep(5000)]);
      agent.destroy();
    },
  };
}

async function openMany(url, n, prefix, deadline) {
  const sessions = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      if (Date.now() > deadline) throw new Error(`opened only ${sessions.length} of ${n} sessions in time`);
      const i = next++;
      sessions.push(await openSession(url, `${prefix}${i}`));
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(opts.parallel, n) }, worker));
  } catch (err) {
    await closeAll(sessions);
    throw err;
  }
  return sessions;
}

async function closeAll(sessions) {
  await Promise.all(sessions.map((s) => s.stop()));
}

async function sessionsOnAdmin(gw) {
  try {
    const res = await fetch(`${gw.adminUrl}/metrics`, { signal: AbortSignal.timeout(3000) });
    const m = /^xmppgw_sessions_open\{transport="bosh"\}\s+(\d+)/m.exec(await res.text());
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

async function reading(gw, what) {
  await sleep(opts['settle-seconds'] * 1000);
  const s = await procStatus(gw.pid);
  return { what, rssKb: s.VmRSS, anonKb: s.RssAnon, fds: await countFds(gw.pid), sessions: await sessionsOnAdmin(gw) };
}

async function main() {
  const deadline = Date.now() + opts['limit-seconds'] * 1000;
  const prosody = await startProsody({
    users: { [USER]: PASSWORD },
    logLevel: 'warn',
    directTls: opts.tls === 'direct',
    extraGlobal: opts.tls === 'off' ? 'c2s_require_encryption = false\nallow_unencrypted_plain_auth = true' : '',
  });
  let gw;
  let sessions = [];
  try {
    gw = await startGateway({
      prosody,
      upstream: opts.tls === 'direct' ? `127.0.0.1:${prosody.directTlsPort}` : undefined,
      upstreamTls: opts.tls,
      config: {
        log: { level: 'warn' },
        limits: {
          max_sessions: Math.max(10000, opts.sessions + 100),
          per_address_sessions: 1000000, per_address_unauthenticated: 100000,
          per_address_rate: 100000, per_address_burst: 100000,
        },
      },
    });
    const url = gw.boshUrl ?? `${gw.httpUrl}/http-bind`;
    console.log(`xmppgw memory bench: ${opts.sessions} idle authenticated BOSH sessions (SASL PLAIN + bind, one request held, wait ${opts.wait} s)`);
    console.log(`machine:  ${await machine()}`);
    console.log(`gateway:  ${GATEWAY_BIN} (pid ${gw.pid}), ${url}`);
    console.log(`upstream: ${opts.tls}`);
    console.log('');
    const readings = [await reading(gw, 'started, no session yet')];
    if (opts.warmup > 0) await closeAll(await openMany(url, opts.warmup, 'warm', deadline));
    const before = await reading(gw, `after ${opts.warmup} warm-up sessions came and went`);
    readings.push(before);
    const t = Date.now();
    sessions = await openMany(url, opts.sessions, 's', deadline);
    const openSeconds = (Date.now() - t) / 1000;
    process.stderr.write(`  opened ${sessions.length} sessions in ${openSeconds.toFixed(1)} s\n`);
    const after = await reading(gw, `${sessions.length} sessions open`);
    readings.push(after);
    await closeAll(sessions);
    sessions = [];
    readings.push(await reading(gw, 'all closed again'));
    console.log(table(['gateway process', 'VmRSS kB', 'RssAnon kB', 'fds', 'bosh sessions (/metrics)'],
      readings.map((r) => [r.what, r.rssKb, r.anonKb, r.fds, r.sessions ?? '-'])));
    const perSession = ((after.rssKb - before.rssKb) * 1024) / opts.sessions;
    console.log('');
    console.log(`per session: ${(perSession / 1024).toFixed(1)} KiB (upstream ${opts.tls})`);
    console.log(`descriptors per session: ${((after.fds - before.fds) / opts.sessions).toFixed(2)}`);
    if (opts.json) {
      await writeFile(opts.json, `${JSON.stringify({ when: new Date().toISOString(), opts, openSeconds, readings, perSessionBytes: perSession }, null, 2)}\n`);
    }
  } finally {
    await closeAll(sessions);
    const problem = gw ? await stopGatewayChecked(gw) : null;
    await prosody.stop();
    if (problem) console.error(`\ngateway problem at exit: ${problem}`);
  }
}

main().then(() => process.exit(0), (err) => {
  console.error(err.stack ?? err);
  process.exit(1);
});
