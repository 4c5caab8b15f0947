// Memory per idle session: opens many authenticated WebSocket sessions through the gateway and reads
// the gateway's resident set size (VmRSS in /proc/PID/status) before and after. Each session is a
// bare `ws` client doing what a browser client does up to being online, minus presence: open the
// stream, SASL PLAIN, stream restart, resource binding. All sessions use one account with distinct
// resources. No presence is sent (with one account, every presence would go to every other session).
// The gateway talks STARTTLS to Prosody (OpenSSL state per upstream), unless --tls says otherwise.
//
//   node bench/rss.mjs [--sessions 1000] [--rounds 1] [--parallel 50] [--settle-seconds 5] [--tls starttls]
//                      [--deflate] [--limit-seconds 300] [--json FILE]
// The gateway binary is $XMPPGW_BIN, else build/xmppgw.
import { writeFile } from 'node:fs/promises';
import WebSocket from 'ws';
import { startProsody } from '../tests/integration/lib/prosody.mjs';
import { startGateway, stopGatewayChecked, GATEWAY_BIN } from '../tests/integration/lib/gateway.mjs';
import { parseArgs, table, procStatus, countFds, sleep, machine } from './lib/common.mjs';

const USAGE = `usage: node bench/rss.mjs [options]
  --sessions N        idle sessions to open (default 1000)
  --rounds N          open and close the sessions N times, to tell growth from retention (default 1)
  --parallel N        logins in flight at once (default 50)
  --warmup N          sessions opened and closed before the baseline (default 20)
  --settle-seconds S  wait before each reading (default 5)
  --tls MODE          gateway upstream: starttls (default), direct or off
  --deflate           offer permessage-deflate, as browsers do (default: off)
  --limit-seconds S   give up opening sessions after S seconds (default 300)
  --json FILE         also write the results as JSON
`;

const opts = parseArgs(process.argv.slice(2), {
  sessions: 1000, rounds: 1, parallel: 50, warmup: 20, 'settle-seconds': 5, tls: 'starttls', deflate: false,
  'limit-seconds': 300, json: '',
}, USAGE);
if (!['starttls', 'direct', 'off'].includes(opts.tls)) throw new Error(`--tls: ${opts.tls}?\n${USAGE}`);

const USER = 'bench';
const PASSWORD = 'bench-secret-rss';
const DOMAIN = 'localhost';
const LOGIN_TIMEOUT_MS = 20000;

const FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';
const openFrame = `<open xmlns="${FRAMING}" to="${DOMAIN}" version="1.0"/>`;
const authFrame = `<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">${Buffer.from(`\0${USER}\0${PASSWORD}`).toString('base64')}</auth>`;
const bindFrame = (resource) => `<iq xmlns="jabber:client" type="set" id="bind1"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"><resource>${resource}</resource></bind></iq>`;

/**
 * One session, logged in by hand. Resolves to { ws, jid, extensions } once bound; rejects with the
 * step it was at and the last frame when anything else arrives.
 */
function openSession(url, resource) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, 'xmpp', { perMessageDeflate: opts.deflate, handshakeTimeout: LOGIN_TIMEOUT_MS });
    let step = 'handshake';
    let last = '';
    const fail = (why) => {
      clearTimeout(timer);
      ws.terminate();
      reject(new Error(`session ${resource}: ${why} at step "${step}"; last frame: ${last.slice(0, 300)}`));
    };
    const timer = setTimeout(() => fail('timed out'), LOGIN_TIMEOUT_MS);
    ws.on('error', (err) => fail(err.message));
    ws.on('unexpected-response', (_req, res) => { res.resume(); fail(`HTTP ${res.statusCode}`); });
    ws.on('close', (code) => { if (step !== 'bound') fail(`closed (${code})`); });
    ws.on('open', () => { step = 'features'; ws.send(openFrame); });
    ws.on('message', (data) => {
      const f = data.toString();
      last = f;
      if (f.startsWith('<open')) return;
      switch (step) {
        case 'features':
          if (!/<mechanism>PLAIN<\/mechanism>/.test(f)) return fail('no PLAIN offered');
          step = 'auth';
          ws.send(authFrame);
          break;
        case 'auth':
          if (!f.startsWith('<success')) return fail('SASL failed');
          step = 'features2';
          ws.send(openFrame);
          break;
        case 'features2':
          if (!/urn:ietf:params:xml:ns:xmpp-bind/.test(f)) return fail('no bind feature');
          step = 'bind';
          ws.send(bindFrame(resource));
          break;
        case 'bind': {
          const jid = /<jid>([^<]+)<\/jid>/.exec(f)?.[1];
          if (!/type=["']result["']/.test(f) || !jid) return fail('bind failed');
          step = 'bound';
          clearTimeout(timer);
          ws.removeAllListeners('message');
          ws.on('message', () => {}); // nothing is expected while idle
          resolve({ ws, jid, extensions: ws.extensions });
          break;
        }
        default:
          break;
      }
      return undefined;
    });
  });
}

/** Opens `n` sessions with at most `parallel` logins in flight; stops at `deadline`. */
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

/** Ends every session with <close/> and waits (bounded) for the sockets to close. */
async function closeAll(sessions) {
  await Promise.all(sessions.map(({ ws }) => new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve();
    const timer = setTimeout(() => { ws.terminate(); resolve(); }, 5000);
    ws.once('close', () => { clearTimeout(timer); resolve(); });
    try {
      ws.send(`<close xmlns="${FRAMING}"/>`);
      ws.close(1000);
    } catch {
      ws.terminate();
    }
    return undefined;
  })));
}

async function reading(gw, what) {
  await sleep(opts['settle-seconds'] * 1000);
  const s = await procStatus(gw.pid);
  return {
    what, rssKb: s.VmRSS, anonKb: s.RssAnon, fileKb: s.RssFile, hwmKb: s.VmHWM,
    fds: await countFds(gw.pid), sessions: await sessionsOnAdmin(gw),
  };
}

async function sessionsOnAdmin(gw) {
  try {
    const res = await fetch(`${gw.adminUrl}/metrics`, { signal: AbortSignal.timeout(3000) });
    const text = await res.text();
    const m = /^xmppgw_sessions_open\{transport="websocket"\}\s+(\d+)/m.exec(text);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
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
  const readings = [];
  let extensions = '';
  try {
    gw = await startGateway({
      prosody,
      upstream: opts.tls === 'direct' ? `127.0.0.1:${prosody.directTlsPort}` : undefined,
      upstreamTls: opts.tls,
      // Every bench client comes from 127.0.0.1: the per-address limits (a defence against one
      // hostile address) would measure themselves, not the gateway.
      config: {
        log: { level: 'warn' },
        limits: {
          max_sessions: Math.max(10000, opts.sessions + 100),
          per_address_sessions: 1000000, per_address_unauthenticated: 100000,
          per_address_rate: 100000, per_address_burst: 100000,
        },
      },
    });
    const upstreamDesc = {
      starttls: `STARTTLS to Prosody 127.0.0.1:${prosody.port} (OpenSSL, one TLS connection per session)`,
      direct: `direct TLS to Prosody 127.0.0.1:${prosody.directTlsPort} (OpenSSL, one TLS connection per session)`,
      off: `plain TCP to Prosody 127.0.0.1:${prosody.port} (no TLS)`,
    }[opts.tls];
    console.log(`xmppgw memory bench: ${opts.sessions} idle authenticated WebSocket sessions (SASL PLAIN + bind, no presence)`);
    console.log(`machine:  ${await machine()}`);
    console.log(`gateway:  ${GATEWAY_BIN} (pid ${gw.pid}), ${gw.wsUrl}`);
    console.log(`upstream: ${upstreamDesc}`);
    console.log(`client:   ws, permessage-deflate ${opts.deflate ? 'offered' : 'not offered'}, one account, distinct resources`);
    console.log('');

    readings.push(await reading(gw, 'started, no session yet'));
    if (opts.warmup > 0) {
      const warm = await openMany(gw.wsUrl, opts.warmup, 'warm', deadline);
      await closeAll(warm);
    }
    const before = await reading(gw, `after ${opts.warmup} warm-up sessions came and went`);
    readings.push(before);
    // The upstream server's own cost of the same sessions, as a reference beside the gateway's.
    const prosodyBefore = (await procStatus(prosody.pid)).VmRSS;
    let prosodyAfter;

    let after;
    let openSeconds;
    for (let round = 1; round <= opts.rounds; round++) {
      const t = Date.now();
      sessions = await openMany(gw.wsUrl, opts.sessions, `r${round}-`, deadline);
      const seconds = (Date.now() - t) / 1000;
      extensions = sessions[0]?.extensions || 'none';
      const open = await reading(gw, `round ${round}: ${sessions.length} sessions open`);
      readings.push(open);
      process.stderr.write(`  round ${round}: opened ${sessions.length} sessions in ${seconds.toFixed(1)} s\n`);
      if (round === 1) {
        after = open;
        openSeconds = seconds;
        prosodyAfter = (await procStatus(prosody.pid)).VmRSS;
      }
      await closeAll(sessions);
      sessions = [];
      readings.push(await reading(gw, `round ${round}: all closed again`));
    }

    const rows = readings.map((r) => [r.what, r.rssKb, r.anonKb, r.fds, r.sessions ?? '-']);
    console.log(table(['gateway process', 'VmRSS kB', 'RssAnon kB', 'fds', 'ws sessions (/metrics)'], rows));
    const deltaKb = after.rssKb - before.rssKb;
    const perSession = (deltaKb * 1024) / opts.sessions;
    console.log('');
    console.log(`permessage-deflate negotiated: ${extensions}`);
    console.log(`RSS with ${opts.sessions} sessions: ${(after.rssKb / 1024).toFixed(1)} MiB; growth ${(deltaKb / 1024).toFixed(1)} MiB`);
    console.log(`per session: ${(perSession / 1024).toFixed(1)} KiB (upstream ${opts.tls})`);
    console.log(`descriptors per session: ${((after.fds - before.fds) / opts.sessions).toFixed(2)}`);
    const prosodyPer = ((prosodyAfter - prosodyBefore) * 1024) / opts.sessions;
    console.log(`Prosody (upstream) per session, same sessions: ${(prosodyPer / 1024).toFixed(1)} KiB; `
      + `gateway / Prosody: ${(perSession / prosodyPer).toFixed(2)}x`);

    if (opts.json) {
      await writeFile(opts.json, `${JSON.stringify({
        when: new Date().toISOString(), opts, upstream: opts.tls, extensions, openSeconds, readings,
        perSessionBytes: perSession, prosodyPerSessionBytes: prosodyPer,
      }, null, 2)}\n`);
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
