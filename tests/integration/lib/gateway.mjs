// Starts the built gateway (XMPPGW_BIN, else build/xmppgw) on free loopback ports with a generated
// JSON config, waits for its admin /healthz, and collects what it writes to stderr and stdout.
import { spawn } from 'node:child_process';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts } from './ports.mjs';

export const SOURCE_DIR = process.env.XMPPGW_SOURCE
  || path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const GATEWAY_BIN = process.env.XMPPGW_BIN || path.join(SOURCE_DIR, 'build', 'xmppgw');
// XMPPGW_WRAPPER: a command prefix put in front of the binary, split at white space (no quoting),
// e.g. "valgrind --tool=memcheck --log-file=/tmp/vg/%p.log" (scripts/valgrind.sh). Unset: the
// binary runs as is.
const WRAPPER = (process.env.XMPPGW_WRAPPER ?? '').split(/\s+/).filter(Boolean);
/** How many times longer the gateway's start, stop and CLI runs may take: 10 under a wrapper. */
export const WRAPPER_SLACK = WRAPPER.length ? 10 : 1;

function spawnGateway(args, options) {
  return WRAPPER.length
    ? spawn(WRAPPER[0], [...WRAPPER.slice(1), GATEWAY_BIN, ...args], options)
    : spawn(GATEWAY_BIN, args, options);
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Deep merge of plain objects; arrays and scalars in `over` replace those in `base`. */
export function mergeConfig(base, over) {
  if (!isObject(over)) return over === undefined ? base : over;
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = isObject(v) && isObject(base?.[k]) ? mergeConfig(base[k], v) : v;
  }
  return out;
}

/** The config every test gateway starts from (before `opts.config` is merged in). */
export function baseConfig() {
  return {
    domains: ['localhost'],
    static: {
      root: path.join(SOURCE_DIR, 'static'),
      node_modules: path.join(SOURCE_DIR, 'node_modules'),
    },
    log: { level: 'debug' },
    // The harness stops a gateway with SIGTERM: no grace, so that it ends its sessions and exits
    // about a second later (drain.test.mjs sets a grace of its own).
    drain: { grace: 0 },
  };
}

/**
 * Runs the gateway binary with `args` to completion (for CLI tests). Resolves to
 * { code, signal, stdout, stderr }; kills it after `timeoutMs`.
 */
export function runGateway(args, { timeoutMs = 15000, env = {}, input } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawnGateway(args, {
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutMs * WRAPPER_SLACK);
    child.once('error', (err) => { clearTimeout(timer); reject(err); });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
    if (input !== undefined) child.stdin.end(input);
  });
}

/**
 * Starts the gateway. Options (all optional):
 *   prosody       the object from startProsody(): gives --upstream, --upstream-ca
 *   upstream      "host:port" (overrides prosody's port; e.g. a closed port)
 *   upstreamTls   "off" | "starttls" | "direct" (default "starttls")
 *   caFile        CA file for --upstream-ca (default prosody.caFile); null leaves the flag out
 *   config        object deep-merged into baseConfig() before writing the JSON file
 *   args          extra command-line arguments, appended last
 *   env           extra environment variables
 *   waitHealthy   wait for GET /healthz == 200 (default true)
 *   startTimeoutMs  (default 20000; sanitizer builds start slower; times WRAPPER_SLACK)
 * Resolves to:
 *   { port, adminPort, url, wsUrl, boshUrl, adminUrl, configFile, config, pid,
 *     logs() -> array of stderr+stdout lines, logText(), waitForLog(re, ms),
 *     exited (null or { code, signal }), stop(ms) -> exit code (or signal name) }
 */
export async function startGateway(opts = {}) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-gw-'));
  const [port, adminPort] = await freePorts(2);
  const config = mergeConfig(baseConfig(), opts.config ?? {});
  const configFile = path.join(dir, 'xmppgw.json');
  await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);

  const upstream = opts.upstream ?? (opts.prosody ? `127.0.0.1:${opts.prosody.port}` : null);
  const caFile = opts.caFile === undefined ? opts.prosody?.caFile : opts.caFile;
  const args = ['--config', configFile, '--listen', `127.0.0.1:${port}`, '--admin', `127.0.0.1:${adminPort}`];
  if (upstream) args.push('--upstream', upstream, '--upstream-tls', opts.upstreamTls ?? 'starttls');
  if (caFile) args.push('--upstream-ca', caFile);
  args.push(...(opts.args ?? []));

  const lines = [];
  const lineWaiters = new Set();
  const addLines = (() => {
    const partial = { out: '', err: '' };
    return (which, chunk) => {
      const text = partial[which] + chunk;
      const parts = text.split('\n');
      partial[which] = parts.pop();
      for (const l of parts) {
        lines.push(l);
        for (const w of lineWaiters) if (w.re.test(l)) { lineWaiters.delete(w); w.resolve(l); }
      }
    };
  })();

  const child = spawnGateway(args, {
    cwd: SOURCE_DIR,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...(opts.env ?? {}) },
  });
  child.stdout.setEncoding('utf8').on('data', (d) => addLines('out', d));
  child.stderr.setEncoding('utf8').on('data', (d) => addLines('err', d));
  let exited = null;
  const exitP = new Promise((resolve) => {
    child.once('exit', (code, signal) => { exited = { code, signal }; resolve(exited); });
    child.once('error', (err) => {
      lines.push(`spawn ${GATEWAY_BIN} failed: ${err.message}`);
      exited = { code: null, signal: null, error: err };
      resolve(exited);
    });
  });

  const logText = () => lines.join('\n');
  let stopped = false;
  const stop = async (grace = 15000) => {
    const graceMs = grace * WRAPPER_SLACK;
    if (!stopped) {
      stopped = true;
      if (exited === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => {
          if (exited === null) {
            lines.push(`[test harness] gateway did not exit within ${graceMs} ms of SIGTERM: SIGKILL`);
            child.kill('SIGKILL');
          }
        }, graceMs);
        await exitP;
        clearTimeout(timer);
      }
      await new Promise((r) => setImmediate(r));
      await rm(dir, { recursive: true, force: true });
    }
    return exited.code ?? exited.signal;
  };

  const gw = {
    port,
    adminPort,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}/xmpp-websocket`,
    boshUrl: `http://127.0.0.1:${port}/http-bind`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    configFile,
    config,
    args,
    pid: child.pid,
    process: child,
    logs: () => lines.slice(),
    logText,
    get exited() { return exited; },
    /** Resolves with the first log line (already written or coming) matching `re`. */
    waitForLog(re, ms = 10000) {
      const found = lines.find((l) => re.test(l));
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { re, resolve };
        const timer = setTimeout(() => {
          lineWaiters.delete(w);
          reject(new Error(`no gateway log line matched ${re} within ${ms} ms; log:\n${logText()}`));
        }, ms);
        w.resolve = (l) => { clearTimeout(timer); resolve(l); };
        lineWaiters.add(w);
      });
    },
    stop,
  };

  if (opts.waitHealthy === false) return gw;
  try {
    await waitHealthy(gw, (opts.startTimeoutMs ?? 20000) * WRAPPER_SLACK);
    return gw;
  } catch (err) {
    await stop(3000);
    err.message = `startGateway failed: ${err.message}\ncommand: ${GATEWAY_BIN} ${args.join(' ')}\nconfig: ${JSON.stringify(config)}\n--- gateway output ---\n${logText()}`;
    throw err;
  }
}

async function waitHealthy(gw, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  for (;;) {
    if (gw.exited) throw new Error(`gateway exited (${JSON.stringify(gw.exited)}) before /healthz answered`);
    try {
      const res = await fetch(`${gw.adminUrl}/healthz`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err.cause?.code ?? err.message;
    }
    if (Date.now() > deadline) throw new Error(`/healthz not 200 within ${timeoutMs} ms (last: ${last})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Stops the gateway and returns a message describing what went wrong (null when it exited 0).
 * Sanitizer reports and crashes at shutdown surface here, so `after` hooks should assert on it.
 */
export async function stopGatewayChecked(gw) {
  if (!gw) return null;
  const code = await gw.stop();
  if (code === 0) return null;
  const tail = gw.logs().slice(-80).join('\n');
  return `gateway exited with ${code} after SIGTERM; last output:\n${tail}`;
}
