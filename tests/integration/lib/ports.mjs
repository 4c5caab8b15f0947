// Free loopback TCP ports for test servers: listen on port 0, read the port the kernel chose, close.
// Another process could take a port between close and reuse; on a test machine that is rare enough,
// and every server in these tests binds to 127.0.0.1 only.
import net from 'node:net';

/** One free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** `n` distinct free ports. All are held open until every one is chosen, so none repeats. */
export async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const srv = net.createServer();
      srv.unref();
      await new Promise((resolve, reject) => {
        srv.once('error', reject);
        srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, resolve);
      });
      servers.push(srv);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

/** A port that nothing listens on (chosen free, then closed): connecting to it is refused. */
export const closedPort = freePort;

/** Resolves once a TCP connection to host:port succeeds; rejects after `timeoutMs`. */
export async function waitForPort(port, { host = '127.0.0.1', timeoutMs = 10000, isAlive } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect({ host, port });
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (isAlive && !isAlive()) throw new Error(`process exited before ${host}:${port} accepted connections`);
    if (Date.now() > deadline) throw new Error(`nothing accepted connections on ${host}:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Listens on a free port and holds it (for "cannot listen" tests). Returns { port, close() }.
 */
export async function occupyPort(host = '127.0.0.1') {
  const srv = net.createServer((c) => c.destroy());
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen({ host, port: 0, exclusive: true }, resolve);
  });
  return { port: srv.address().port, close: () => new Promise((r) => srv.close(r)) };
}
