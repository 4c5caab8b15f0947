// What the benchmark scripts share: command-line options, statistics, tables, /proc readings.
import { readFile, readdir, readlink } from 'node:fs/promises';
import tls from 'node:tls';

/**
 * Parses `--name value` and `--flag` arguments against `spec` ({ name: default }); a boolean
 * default makes a flag. Unknown options and bad numbers throw.
 */
export function parseArgs(argv, spec, usage) {
  const out = { ...spec };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      process.stdout.write(usage);
      process.exit(0);
    }
    const m = /^--([a-z][a-z-]*)(?:=(.*))?$/.exec(a);
    if (!m || !(m[1] in spec)) throw new Error(`unknown argument ${a}\n${usage}`);
    const key = m[1];
    if (typeof spec[key] === 'boolean') {
      out[key] = m[2] === undefined ? true : m[2] !== 'false';
      continue;
    }
    const v = m[2] ?? argv[++i];
    if (v === undefined) throw new Error(`--${key} needs a value`);
    if (typeof spec[key] === 'number') {
      const n = Number(v);
      if (!Number.isFinite(n) || n < 0) throw new Error(`--${key}: not a number: ${v}`);
      out[key] = n;
    } else {
      out[key] = v;
    }
  }
  return out;
}

/** Nearest-rank percentile (q in 0..1) of an ascending array. */
export function percentile(sorted, q) {
  if (!sorted.length) return NaN;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** { n, p50, p95, p99, mean, min, max } of samples (milliseconds). */
export function summarize(samples) {
  const s = Float64Array.from(samples).sort();
  const sum = s.reduce((a, b) => a + b, 0);
  return {
    n: s.length,
    p50: percentile(s, 0.5),
    p95: percentile(s, 0.95),
    p99: percentile(s, 0.99),
    mean: s.length ? sum / s.length : NaN,
    min: s.length ? s[0] : NaN,
    max: s.length ? s[s.length - 1] : NaN,
  };
}

/** Formats rows (arrays of cells) as a text table; numbers are right-aligned. */
export function table(header, rows) {
  const all = [header, ...rows].map((r) => r.map((c) => String(c)));
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const right = header.map((_, i) => rows.every((r) => typeof r[i] === 'number' || /^[\d.x-]+$/.test(String(r[i]))));
  const line = (r) => r.map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(all[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...all.slice(1).map(line)].join('\n');
}

export const fmtMs = (v) => (Number.isFinite(v) ? v.toFixed(3) : '-');
export const fmtRatio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : '-');

/** Fields of /proc/PID/status in kB: { VmRSS, VmHWM, RssAnon, RssFile, ... }. */
export async function procStatus(pid) {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+):\s+(\d+) kB$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

/** Number of open descriptors of a process. */
export async function countFds(pid) {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

/**
 * Makes this process trust `caFile` for TLS connections that name no CA of their own.
 * @xmpp/client's STARTTLS passes no TLS options through, and NODE_EXTRA_CA_CERTS is read only at
 * start-up, before the test Prosody has made its certificate.
 */
export async function trustCaForTls(caFile) {
  const ca = [...tls.rootCertificates, await readFile(caFile, 'utf8')];
  const connect = tls.connect;
  tls.connect = function connectTrustingTestCa(...args) {
    const i = args.findIndex((a) => a !== null && typeof a === 'object');
    if (i >= 0 && !args[i].ca && !args[i].secureContext) args[i] = { ...args[i], ca };
    return connect.apply(this, args);
  };
}

/** CPU time a process has used so far in seconds (/proc/PID/stat): { user, system, total }. */
export async function cpuTimes(pid) {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces: utime is the 14th
  // field of the line, stime the 15th, both in clock ticks (USER_HZ, 100 on Linux).
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const user = Number(f[11]) / 100;
  const system = Number(f[12]) / 100;
  return { user, system, total: user + system };
}

/** The soft limit on open descriptors of a process ("Max open files" in /proc/PID/limits). */
export async function openFileLimit(pid = 'self') {
  const text = await readFile(`/proc/${pid}/limits`, 'utf8');
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(text);
  return !m || m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

/**
 * Established TCP connections of process `pid` to 127.0.0.1:`port`: its socket descriptors matched
 * against /proc/PID/net/tcp by inode.
 */
export async function tcpConnectionsTo(pid, port) {
  const inodes = new Set();
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch { /* closed meanwhile */ }
  }
  const want = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let n = 0;
  for (const line of (await readFile(`/proc/${pid}/net/tcp`, 'utf8')).split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // f[2] remote address:port, f[3] state (01 = ESTABLISHED), f[9] inode
    if (f[2] === want && f[3] === '01' && inodes.has(f[9])) n++;
  }
  return n;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Short description of the machine for the report header. */
export async function machine() {
  const os = await import('node:os');
  const cpus = os.cpus();
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
  return `${cpus.length} x ${cpus[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}, Node ${process.version}, load average ${load}`;
}
