// The real reverse proxies for tests/proxy/: Debian's nginx and HAProxy, each started from the
// recipe shipped in docs/deploy/ with only its ports, certificate paths and the gateway's
// addresses substituted (every substitution must hit, or the recipe changed and the test says
// so), in its own temp directory with its own pid and log files, on free loopback ports; never
// the system service. Also the TLS and source-address set-up the clients need to reach them.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePorts, waitForPort } from '../../integration/lib/ports.mjs';
import { SOURCE_DIR } from '../../integration/lib/gateway.mjs';

export const NGINX_BIN = process.env.NGINX_BIN || '/usr/sbin/nginx';
export const HAPROXY_BIN = process.env.HAPROXY_BIN || '/usr/sbin/haproxy';

/** The shipped recipe, as text. */
export const recipe = (file) => readFile(path.join(SOURCE_DIR, 'docs', 'deploy', file), 'utf8');

/** Replaces each [from, to] everywhere in text; throws when one does not occur at all. */
export function substitute(text, pairs) {
  let out = text;
  for (const [from, to] of pairs) {
    if (!out.includes(from)) throw new Error(`the recipe no longer holds ${JSON.stringify(from)}`);
    out = out.split(from).join(to);
  }
  return out;
}

/** The active (uncommented) lines of a recipe. */
export const activeLines = (text) => text.split('\n').map((l) => l.replace(/#.*$/, '').trim()).filter(Boolean);

/** nginx/HAProxy durations ("75s", "1h", "3600", "500ms") in seconds. */
export function seconds(v) {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(v);
  if (!m) throw new Error(`not a duration: ${v}`);
  const n = Number(m[1]);
  return { ms: n / 1000, s: n, m: n * 60, h: n * 3600, d: n * 86400 }[m[2] ?? 's'];
}

function run(bin, args, { cwd, lines }) {
  const child = spawn(bin, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const add = (d) => { for (const l of String(d).split('\n')) if (l) lines.push(l); };
  child.stdout.on('data', add);
  child.stderr.on('data', add);
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (err) => { lines.push(`spawn ${bin}: ${err.message}`); resolve({ code: null, error: err }); });
  });
  return { child, exited };
}

async function started(name, proc, port, dir, lines) {
  let gone = null;
  proc.exited.then((e) => { gone = e; });
  try {
    await waitForPort(port, { timeoutMs: 10000, isAlive: () => gone === null });
  } catch (err) {
    proc.child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw new Error(`${name} did not listen on ${port}: ${err.message}\n${lines.slice(-20).join('\n')}`);
  }
  if (gone) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`${name} exited ${JSON.stringify(gone)}\n${lines.slice(-20).join('\n')}`);
  }
  return async () => {
    if (gone === null) {
      proc.child.kill('SIGTERM');
      const t = setTimeout(() => proc.child.kill('SIGKILL'), 5000);
      await proc.exited;
      clearTimeout(t);
    }
    await rm(dir, { recursive: true, force: true });
  };
}

/**
 * nginx from docs/deploy/nginx.conf, included from a minimal main configuration that gives it its
 * own pid, logs and temp paths. gw: { port } of the gateway; tls: { certFile, keyFile }.
 * Resolves to { name, version, port, httpPort, origin ('https://localhost:P'), text (the site
 * file as run), logs(), stop() }.
 */
export async function startNginx({ gw, tls }) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-nginx-'));
  const [port, httpPort] = await freePorts(2);
  const text = substitute(await recipe('nginx.conf'), [
    ['listen 80;', `listen 127.0.0.1:${httpPort};`],
    ['listen [::]:80;', `listen [::1]:${httpPort};`],
    ['listen 443 ssl;', `listen 127.0.0.1:${port} ssl;`],
    ['listen [::]:443 ssl;', `listen [::1]:${port} ssl;`],
    ['/etc/ssl/xmppgw/fullchain.pem', tls.certFile],
    ['/etc/ssl/xmppgw/privkey.pem', tls.keyFile],
    ['127.0.0.1:5280', `127.0.0.1:${gw.port}`],
  ]);
  await writeFile(path.join(dir, 'xmppgw.conf'), text);
  const main = [
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log info;`,
    'daemon off;',
    'master_process on;',
    'worker_processes 1;',
    'events { worker_connections 4096; }',
    'http {',
    `  access_log ${dir}/access.log;`,
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${dir}/${t};`),
    `  include ${dir}/xmppgw.conf;`,
    '}',
  ].join('\n');
  await writeFile(path.join(dir, 'nginx.conf'), `${main}\n`);
  const lines = [];
  const args = ['-p', dir, '-e', `${dir}/error.log`, '-c', `${dir}/nginx.conf`];
  const check = run(NGINX_BIN, ['-t', ...args], { cwd: dir, lines });
  const c = await check.exited;
  if (c.code !== 0) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`nginx -t failed:\n${lines.join('\n')}`);
  }
  const v = [];
  await run(NGINX_BIN, ['-v'], { cwd: dir, lines: v }).exited;
  const version = (v.join('\n').match(/nginx\/[\d.]+/) ?? [''])[0];
  const proc = run(NGINX_BIN, args, { cwd: dir, lines });
  const stop = await started('nginx', proc, port, dir, lines);
  const errorLog = async () => readFile(`${dir}/error.log`, 'utf8').catch(() => '');
  return {
    name: 'nginx', version, port, httpPort, origin: `https://localhost:${port}`, text,
    logs: async () => `${lines.join('\n')}\n${await errorLog()}`, stop,
  };
}

/**
 * HAProxy from docs/deploy/haproxy.cfg (one PEM with certificate and key), in the foreground.
 * gw: { port, adminPort } of the gateway. Resolves like startNginx.
 */
export async function startHaproxy({ gw, tls }) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-haproxy-'));
  const [port, httpPort] = await freePorts(2);
  const pem = path.join(dir, 'xmppgw.pem');
  await writeFile(pem, `${await readFile(tls.certFile, 'utf8')}${await readFile(tls.keyFile, 'utf8')}`);
  const text = substitute(await recipe('haproxy.cfg'), [
    ['bind :::80 v6only', `bind ::1:${httpPort} v6only`],
    ['bind :::443 v6only ', `bind ::1:${port} v6only `],
    ['bind :80', `bind 127.0.0.1:${httpPort}`],
    ['bind :443 ', `bind 127.0.0.1:${port} `],
    ['/etc/haproxy/certs/xmppgw.pem', pem],
    ['127.0.0.1:5280', `127.0.0.1:${gw.port}`],
    ['port 5281', `port ${gw.adminPort}`],
  ]);
  const cfg = path.join(dir, 'haproxy.cfg');
  await writeFile(cfg, text);
  const lines = [];
  const check = run(HAPROXY_BIN, ['-c', '-f', cfg], { cwd: dir, lines });
  if ((await check.exited).code !== 0) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`haproxy -c failed:\n${lines.join('\n')}`);
  }
  const v = [];
  await run(HAPROXY_BIN, ['-v'], { cwd: dir, lines: v }).exited;
  const version = (v.join('\n').match(/HAProxy version [\d.]+/) ?? [''])[0];
  const proc = run(HAPROXY_BIN, ['-db', '-f', cfg, '-p', path.join(dir, 'haproxy.pid')], { cwd: dir, lines });
  const stop = await started('haproxy', proc, port, dir, lines);
  return {
    name: 'haproxy', version, port, httpPort, origin: `https://localhost:${port}`, text,
    logs: async () => lines.join('\n'), stop,
  };
}
