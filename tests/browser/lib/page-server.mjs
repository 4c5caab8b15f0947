// A small static file server on a free 127.0.0.1 port, so that a browser test can load a page from
// an origin other than the gateway's: the demo page from static/ at "/" and Strophe.js from
// node_modules/strophe.js/dist at "/lib/strophe/", the layout the gateway itself serves.
//
//   const site = await startPageServer();
//   site.origin              "http://127.0.0.1:PORT"
//   site.url('/index.html')  absolute URL on that origin
//   site.requests            paths asked for, in order
//   await site.close()
import http from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { SOURCE_DIR } from '../../integration/lib/gateway.mjs';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.cjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
};

/** Default mounts: URL prefix -> folder, longest prefix first. */
export function defaultMounts() {
  return [
    ['/lib/strophe/', path.join(SOURCE_DIR, 'node_modules', 'strophe.js', 'dist')],
    ['/', path.join(SOURCE_DIR, 'static')],
  ];
}

// Maps a URL path to a file inside one of the mounts, or null (never outside a mount's folder).
function resolvePath(mounts, urlPath) {
  let decoded;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0')) return null;
  for (const [prefix, dir] of mounts) {
    if (!decoded.startsWith(prefix)) continue;
    let rel = decoded.slice(prefix.length);
    if (rel === '' || rel.endsWith('/')) rel += 'index.html';
    const file = path.resolve(dir, rel);
    if (file !== dir && !file.startsWith(dir + path.sep)) return null;
    return file;
  }
  return null;
}

/**
 * Starts the server. Options: `mounts` ([[prefix, folder], ...], default defaultMounts()),
 * `host` (default 127.0.0.1), `port` (default: a free one).
 */
export async function startPageServer({ mounts = defaultMounts(), host = '127.0.0.1', port = 0 } = {}) {
  const requests = [];
  const server = http.createServer(async (req, res) => {
    const urlPath = new URL(req.url, 'http://x').pathname;
    requests.push(urlPath);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    const file = resolvePath(mounts, urlPath);
    try {
      if (!file || !(await stat(file)).isFile()) throw new Error('not a file');
      const body = await readFile(file);
      res.writeHead(200, {
        'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
        'content-length': body.length,
        'cache-control': 'no-store',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  server.keepAliveTimeout = 1000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, resolve);
  });
  const actual = server.address().port;
  const origin = `http://${host}:${actual}`;
  return {
    port: actual,
    origin,
    requests,
    url: (p = '/') => new URL(p, origin).toString(),
    close: () => new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
}
