// A real Prosody (the Debian package, /usr/bin/prosody) started from a generated configuration in a
// fresh temporary directory, listening only on free loopback ports. Used as the upstream XMPP
// server by the integration, browser, proxy and fault suites.
//
// Never run `prosody --version`: Prosody 0.12 has no such option and starts the system instance.
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePorts, waitForPort } from './ports.mjs';

const execFileP = promisify(execFile);

export const PROSODY_BIN = process.env.PROSODY_BIN || '/usr/bin/prosody';
export const PROSODYCTL_BIN = process.env.PROSODYCTL_BIN || '/usr/bin/prosodyctl';

/** Accounts created when the caller does not name any. */
export const DEFAULT_USERS = Object.freeze({
  alice: 'alice-secret-1',
  bob: 'bob-secret-2',
  carol: 'carol-secret-3',
});

// Paths go into the Lua config as double-quoted strings: refuse anything that would need escaping.
function luaString(s) {
  if (!/^[\x20-\x7e]*$/.test(s) || /["\\]/.test(s)) throw new Error(`cannot quote for Lua: ${s}`);
  return `"${s}"`;
}
const luaList = (items) => `{ ${items.map((i) => (typeof i === 'number' ? String(i) : luaString(i))).join(', ')} }`;

/**
 * Makes a self-signed certificate and key for `names` (first one is the CN) with the openssl CLI.
 * Returns { certFile, keyFile }.
 */
export async function makeCertificate(dir, stem, names = ['localhost']) {
  const certFile = path.join(dir, `${stem}.crt`);
  const keyFile = path.join(dir, `${stem}.key`);
  const san = names.map((n) => `DNS:${n}`).join(',');
  await execFileP('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-days', '30', '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${san}`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-keyout', keyFile, '-out', certFile,
  ], { timeout: 20000 });
  return { certFile, keyFile };
}

/**
 * Starts Prosody. Options (all optional):
 *   domain         VirtualHost name (default "localhost")
 *   users          { name: password } registered before start (default DEFAULT_USERS)
 *   admins         bare JIDs that are server admins (default: every user, so they may create
 *                  nodes on the pubsub component)
 *   untrustedCert  serve a certificate other than the one returned as `caFile`, so a gateway told
 *                  to trust `caFile` must refuse the connection
 *   directTls      also listen for direct TLS c2s (XEP-0368) on `directTlsPort`
 *   bosh           load mod_bosh on a free HTTP port (`boshUrl`), for comparisons
 *   websocket      load mod_websocket on the same HTTP port (`websocketUrl`)
 *   smacks         load mod_smacks (XEP-0198 stream management with resumption)
 *   certNames      names the (trusted) certificate carries (default: the domain and pubsub domain)
 *   logLevel       minimum Prosody log level (default "debug")
 *   extraGlobal    Lua text appended to the global section
 *   extraHost      Lua text appended inside the VirtualHost section
 *   startTimeoutMs how long to wait for the c2s port (default 15000)
 * Resolves to an object:
 *   { domain, port, directTlsPort, httpPort, boshUrl, websocketUrl, pubsubDomain, caFile,
 *     serverCertFile, dir, configFile, users, jid(name), register(name, password), logs(), stop(),
 *     kill(), restart() }
 *   kill()     SIGKILL, resolves once the process is gone; its directory (config, accounts) stays
 *   restart()  after kill(): the same binary, config and ports again; resolves once c2s accepts
 */
export async function startProsody(opts = {}) {
  const domain = opts.domain ?? 'localhost';
  const pubsubDomain = `pubsub.${domain}`;
  const users = { ...(opts.users ?? DEFAULT_USERS) };
  const admins = opts.admins ?? Object.keys(users).map((u) => `${u}@${domain}`);
  const logLevel = opts.logLevel ?? 'debug';
  const wantHttp = Boolean(opts.bosh || opts.websocket);

  const dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-prosody-'));
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'prosody.log');
  const configFile = path.join(dir, 'prosody.cfg.lua');
  let child = null;
  let exited = null;
  const output = [];

  const stop = async () => {
    if (child && exited === null) {
      const done = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => { if (exited === null) child.kill('SIGKILL'); }, 5000);
      await done;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };

  const readLog = async () => {
    let log = '';
    try { log = await readFile(logFile, 'utf8'); } catch { /* not written yet */ }
    return `${output.join('')}${log}`;
  };

  try {
    await mkdir(dataDir, { mode: 0o750 });
    await mkdir(path.join(dir, 'certs'));
    const trusted = await makeCertificate(dir, 'trusted', opts.certNames ?? [domain, pubsubDomain]);
    const served = opts.untrustedCert
      ? await makeCertificate(dir, 'untrusted', [domain, pubsubDomain])
      : trusted;

    const nPorts = 1 + (opts.directTls ? 1 : 0) + (wantHttp ? 1 : 0);
    const ports = await freePorts(nPorts);
    const port = ports.shift();
    const directTlsPort = opts.directTls ? ports.shift() : null;
    const httpPort = wantHttp ? ports.shift() : null;

    const modules = ['roster', 'saslauth', 'tls', 'disco', 'pep', 'ping', 'presence'];
    if (opts.bosh) modules.push('bosh');
    if (opts.websocket) modules.push('websocket');
    // XEP-0198 (Prosody 0.12's mod_smacks): resumable streams for the stream management tests.
    if (opts.smacks) modules.push('smacks');

    const ssl = `{ certificate = ${luaString(served.certFile)}; key = ${luaString(served.keyFile)}; }`;
    const runAsRoot = typeof process.getuid === 'function' && process.getuid() === 0;
    const cfg = `-- Generated by tests/integration/lib/prosody.mjs for one test run.
${runAsRoot ? 'run_as_root = true' : ''}
pidfile = ${luaString(path.join(dir, 'prosody.pid'))}
certificates = ${luaString(path.join(dir, "certs"))}
data_path = ${luaString(dataDir)}
plugin_paths = { }
log = { { levels = { min = ${luaString(logLevel)} }, to = "file", filename = ${luaString(logFile)} } }

interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = ${luaList([port])}
c2s_direct_tls_ports = ${luaList(directTlsPort ? [directTlsPort] : [])}
legacy_ssl_ports = { }
s2s_ports = { }
s2s_direct_tls_ports = { }
component_ports = { }
http_ports = ${luaList(httpPort ? [httpPort] : [])}
http_interfaces = { "127.0.0.1" }
https_ports = { }
proxy65_ports = { }

modules_enabled = ${luaList(modules)}
modules_disabled = { "s2s" }
admins = ${luaList(admins)}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
allow_registration = false
ssl = ${ssl}
${opts.bosh ? 'consider_bosh_secure = true\ncross_domain_bosh = true' : ''}
${opts.websocket ? 'consider_websocket_secure = true\ncross_domain_websocket = true' : ''}
${opts.extraGlobal ?? ''}

VirtualHost ${luaString(domain)}
  ssl = ${ssl}
${opts.extraHost ?? ''}

Component ${luaString(pubsubDomain)} "pubsub"
  ssl = ${ssl}
`;
    await writeFile(configFile, cfg);

    const register = async (name, password) => {
      try {
        await execFileP(PROSODYCTL_BIN, ['--config', configFile, 'register', name, domain, password],
          { timeout: 30000 });
      } catch (err) {
        throw new Error(`prosodyctl register ${name}@${domain} failed: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}\n${await readLog()}`);
      }
      users[name] = password;
    };
    await Promise.all(Object.entries(users).map(([u, p]) => register(u, p)));

    const isAlive = () => exited === null;
    const timeoutMs = opts.startTimeoutMs ?? 15000;
    const run = async () => {
      const c = spawn(PROSODY_BIN, ['-F', '--config', configFile], {
        cwd: dir,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, HOME: dir },
      });
      child = c;
      exited = null;
      c.stdout.setEncoding('utf8').on('data', (d) => output.push(d));
      c.stderr.setEncoding('utf8').on('data', (d) => output.push(d));
      c.once('exit', (code, signal) => { if (child === c) exited = { code, signal }; });
      c.once('error', (err) => { if (child === c) exited = { error: err }; output.push(`spawn error: ${err.message}\n`); });
      await waitForPort(port, { timeoutMs, isAlive });
      if (directTlsPort) await waitForPort(directTlsPort, { timeoutMs, isAlive });
      if (httpPort) await waitForPort(httpPort, { timeoutMs, isAlive });
    };
    await run();

    const kill = async () => {
      if (!child || exited !== null) return;
      const done = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await done;
    };
    const restart = async () => {
      if (exited === null) throw new Error('restart(): Prosody is still running (kill() it first)');
      await run();
    };

    return {
      domain,
      pubsubDomain,
      port,
      directTlsPort,
      httpPort,
      boshUrl: httpPort && opts.bosh ? `http://127.0.0.1:${httpPort}/http-bind` : null,
      websocketUrl: httpPort && opts.websocket ? `ws://127.0.0.1:${httpPort}/xmpp-websocket` : null,
      caFile: trusted.certFile,
      serverCertFile: served.certFile,
      dir,
      configFile,
      get pid() { return child.pid; },
      users,
      jid: (name) => `${name}@${domain}`,
      register,
      logs: readLog,
      alive: isAlive,
      stop,
      kill,
      restart,
    };
  } catch (err) {
    const log = await readLog();
    await stop().catch(() => {});
    err.message = `startProsody failed: ${err.message}\n--- Prosody output and log ---\n${log}`;
    throw err;
  }
}
