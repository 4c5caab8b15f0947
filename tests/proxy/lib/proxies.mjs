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

/**
 * Replaces each [from, to] everywhere in text, in one pass (so that one replacement is never
 * taken for another's `from`: 127.0.0.1:5380 inside 127.0.0.1:53801; the longest `from` wins
 * where several start at one place); throws when one does not occur at all.
 */
export function substitute(text, pairs) {
  const map = new Map(pairs);
  for (const from of map.keys()) {
    if (!text.includes(from)) throw new Error(`the recipe no longer holds ${JSON.stringify(from)}`);
  }
  const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const re = new RegExp([...map.keys()].sort((a, b) => b.length - a.length).map(esc).join('|'), 'g');
  return text.replace(re, (m) => map.get(m));
}

/**
 * The recipes' gateway nodes: node1 at 127.0.0.1:5280 (admin 5281) and node2 at 127.0.0.1:5380
 * (admin 5381). gws: the gateways to put there, in that order ({ port, adminPort }); one gateway
 * stands for both nodes (a single-node deployment with the shipped file).
 */
const NODES = [{ addr: '127.0.0.1:5280', admin: 'port 5281' }, { addr: '127.0.0.1:5380', admin: 'port 5381' }];
// The third node the recipes show in comments (node3, 127.0.0.1:5480, admin 5481).
const NODE3 = { addr: '127.0.0.1:5480', admin: 'port 5481' };
function nodePairs(gws, { admin }) {
  if (gws.length < 1 || gws.length > NODES.length + 1) throw new Error(`the recipes name ${NODES.length + 1} nodes`);
  return [...NODES, ...(gws.length > NODES.length ? [NODE3] : [])].flatMap((n, i) => {
    const gw = gws[Math.min(i, gws.length - 1)];
    const pairs = [[n.addr, `127.0.0.1:${gw.port}`]];
    if (admin) pairs.push([n.admin, `port ${gw.adminPort}`]);
    return pairs;
  });
}

/**
 * A recipe with its commented third node made active, as its comments tell an operator to do:
 * every commented line that names node3 or 127.0.0.1:5480, and the commented upstream block of
 * node3 (nginx). Throws when there is none: the recipe changed.
 */
export function withThirdNode(text) {
  let inBlock = false;
  let n = 0;
  const out = text.split('\n').map((line) => {
    const m = /^(\s*)# ?(.*)$/.exec(line);
    if (!m) return line;
    const body = m[2];
    if (/^upstream xmppgw_node3 \{/.test(body)) inBlock = true;
    const take = inBlock || /\bnode3\b|127\.0\.0\.1:5480/.test(body);
    if (inBlock && /^\}/.test(body)) inBlock = false;
    if (!take) return line;
    n++;
    return `${m[1]}${body.replace(/\s+# .*$/, '')}`;
  });
  if (!n) throw new Error('the recipe shows no third node (node3, 127.0.0.1:5480) in its comments');
  return out.join('\n');
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
 * own pid, logs and temp paths. gw: { port } of the gateway, or gws: the recipe's nodes (see
 * NODES); tls: { certFile, keyFile }.
 * Resolves to { name, version, port, httpPort, origin ('https://localhost:P'), text (the site
 * file as run), logs(), stop() }.
 */
export async function startNginx({ gw, gws = [gw], tls }) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-nginx-'));
  const [port, httpPort] = await freePorts(2);
  const shipped = await recipe('nginx.conf');
  const text = substitute(gws.length > NODES.length ? withThirdNode(shipped) : shipped, [
    ['listen 80;', `listen 127.0.0.1:${httpPort};`],
    ['listen [::]:80;', `listen [::1]:${httpPort};`],
    ['listen 443 ssl;', `listen 127.0.0.1:${port} ssl;`],
    ['listen [::]:443 ssl;', `listen [::1]:${port} ssl;`],
    ['/etc/ssl/xmppgw/fullchain.pem', tls.certFile],
    ['/etc/ssl/xmppgw/privkey.pem', tls.keyFile],
    ...nodePairs(gws, { admin: false }),
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
 * gw: { port, adminPort } of the gateway, or gws as for startNginx. Resolves like startNginx.
 */
export async function startHaproxy({ gw, gws = [gw], tls }) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-haproxy-'));
  const [port, httpPort] = await freePorts(2);
  const pem = path.join(dir, 'xmppgw.pem');
  await writeFile(pem, `${await readFile(tls.certFile, 'utf8')}${await readFile(tls.keyFile, 'utf8')}`);
  const shipped = await recipe('haproxy.cfg');
  const text = substitute(gws.length > NODES.length ? withThirdNode(shipped) : shipped, [
    ['bind :::80 v6only', `bind ::1:${httpPort} v6only`],
    ['bind :::443 v6only ', `bind ::1:${port} v6only `],
    ['bind :80', `bind 127.0.0.1:${httpPort}`],
    ['bind :443 ', `bind 127.0.0.1:${port} `],
    ['/etc/haproxy/certs/xmppgw.pem', pem],
    ...nodePairs(gws, { admin: true }),
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
