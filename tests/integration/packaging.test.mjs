// Packaging kept in step with the code, on a machine with no container engine:
// - docker/Dockerfile: two stages, the build stage runs the README's install/build script in its
//   "build" mode and this test runs the same command in a copy of the build context; every path
//   the runtime stage copies from the build stage then exists; the runtime stage installs a Debian
//   package for every shared library the built binary needs (and for lws's libuv plug-in); it runs
//   as a non-root user with a health check on /healthz;
// - docker/compose.yaml names the three services and the files it mounts exist;
// - docs/deploy/xmppgw.service passes `systemd-analyze verify` with no complaint, and its command
//   lines are accepted by the gateway (--check-config on the shipped container config).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile, access, realpath } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { SOURCE_DIR, GATEWAY_BIN } from './lib/gateway.mjs';

const run = promisify(execFile);
const DOCKERFILE = path.join(SOURCE_DIR, 'docker', 'Dockerfile');

// The Dockerfile as stages: { from, name, lines: [{ op, args }] }, continuation lines joined.
function parseDockerfile(text) {
  const joined = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim());
  const stages = [];
  for (const l of joined) {
    if (!l || l.startsWith('#')) continue;
    const m = /^([A-Z]+)\s+(.*)$/.exec(l);
    assert.ok(m, `a Dockerfile instruction: ${l}`);
    const [, op, args] = m;
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      stages.push({ from: f[1], name: f[2] ?? null, lines: [] });
    } else {
      assert.ok(stages.length, `${op} before FROM`);
      stages.at(-1).lines.push({ op, args });
    }
  }
  return stages;
}

// Files of the build context: what git tracks (and what is not yet committed but present), minus
// .dockerignore's patterns (they name top-level folders and globs of the same shape as .gitignore).
async function contextFiles() {
  const { stdout } = await run('git', ['ls-files', '-co', '--exclude-standard'], { cwd: SOURCE_DIR, maxBuffer: 1 << 24 });
  const ignore = (await readFile(path.join(SOURCE_DIR, '.dockerignore'), 'utf8'))
    .split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const res = ignore.map((p) => new RegExp(`^${p.replace(/^\//, '').replace(/\/$/, '(/|$)')
    .replace(/\*\*\//g, '(.*/)?').replace(/\*(?!\))/g, '[^/]*')}`));
  return stdout.split('\n').filter((f) => f && !res.some((re) => re.test(f)));
}

// The Debian package that holds a file (Debian 12 is merged-/usr: try both spellings).
async function packageOf(file) {
  for (const f of [file, await realpath(file).catch(() => file), file.replace(/^\/lib/, '/usr/lib')]) {
    const r = await run('dpkg', ['-S', f]).catch(() => null);
    if (r) return r.stdout.split(':')[0].trim();
  }
  return null;
}

describe('packaging', { timeout: 900000 }, () => {
  let stages, build, runtime, ctxDir;

  before(async () => {
    stages = parseDockerfile(await readFile(DOCKERFILE, 'utf8'));
    build = stages.find((s) => s.name === 'build');
    runtime = stages.at(-1);
  });
  after(async () => { if (ctxDir) await rm(ctxDir, { recursive: true, force: true }); });

  it('the Dockerfile has a Debian 12 build stage and a slim Debian 12 runtime stage', () => {
    assert.equal(stages.length, 2, 'two stages');
    assert.ok(build && build !== runtime, 'a stage named "build" before the runtime stage');
    assert.match(build.from, /bookworm|^debian:12/, `build stage on Debian 12: ${build.from}`);
    assert.match(runtime.from, /^debian:12(-slim)?$/, `runtime on Debian 12: ${runtime.from}`);
  });

  it('the runtime stage runs as a non-root user with a health check on /healthz', () => {
    const users = runtime.lines.filter((l) => l.op === 'USER').map((l) => l.args);
    assert.ok(users.length && !['root', '0'].includes(users.at(-1)), `USER ${users.at(-1)}`);
    const hc = runtime.lines.find((l) => l.op === 'HEALTHCHECK');
    assert.ok(hc && /\/healthz\b/.test(hc.args), 'HEALTHCHECK on /healthz');
    const tool = /CMD\s+(\S+)/.exec(hc.args)?.[1];
    const installs = runtime.lines.filter((l) => l.op === 'RUN').map((l) => l.args).join(' ');
    assert.ok(tool && new RegExp(`\\s${tool}(\\s|$)`).test(installs),
      `the health check's ${tool} is installed in the runtime stage`);
  });

  it('the build stage runs the setup script in build mode, and so does this test', async () => {
    const runs = build.lines.filter((l) => l.op === 'RUN').map((l) => l.args);
    const setup = runs.find((r) => /scripts\/setup\.sh\s+build\b/.test(r));
    assert.ok(setup, `a RUN of scripts/setup.sh build in the build stage: ${runs.join(' | ')}`);
    assert.deepEqual(build.lines.filter((l) => l.op === 'COPY').map((l) => l.args), ['. .'],
      'the build stage copies the whole context');
    // The same command in a copy of the build context (as `COPY . .` makes it).
    ctxDir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-docker-ctx-'));
    for (const f of await contextFiles()) {
      await cp(path.join(SOURCE_DIR, f), path.join(ctxDir, f), { recursive: false, force: true })
        .catch((e) => { if (e.code !== 'ENOENT') throw e; });
    }
    const cmd = setup.replace(/^.*?(bash\s+scripts\/setup\.sh\s+build\b.*)$/, '$1');
    const r = await run('bash', ['-c', cmd], { cwd: ctxDir, maxBuffer: 1 << 26, timeout: 840000 })
      .catch((e) => e);
    assert.ok(!(r instanceof Error), `${cmd} failed:\n${r.stdout ?? ''}\n${r.stderr ?? ''}`);
    await access(path.join(ctxDir, 'build', 'xmppgw'));
    for (const c of runtime.lines.filter((l) => l.op === 'COPY' && l.args.startsWith('--from=build '))) {
      const src = c.args.split(/\s+/)[1].replace(/^\/src\//, '');
      await access(path.join(ctxDir, src)).catch(() => assert.fail(`COPY ${c.args}: ${src} is not there after the build`));
    }
    const v = await run(path.join(ctxDir, 'build', 'xmppgw'), ['--version']);
    assert.match(v.stdout, /xmppgw \d/);
  });

  it('the runtime stage installs the package of every shared library the binary needs', async () => {
    const installs = runtime.lines.filter((l) => l.op === 'RUN').map((l) => l.args).join(' ');
    const listed = new Set(/apt-get install\s+(.*?)(&&|$)/.exec(installs)?.[1].split(/\s+/)
      .filter((p) => p && !p.startsWith('-')) ?? []);
    assert.ok(listed.size > 0, 'an apt-get install in the runtime stage');
    const bin = ctxDir ? path.join(ctxDir, 'build', 'xmppgw') : GATEWAY_BIN;
    const { stdout: dyn } = await run('readelf', ['-d', bin]);
    const needed = [...dyn.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
    assert.ok(needed.length >= 6, `NEEDED entries: ${needed}`);
    const { stdout: ldd } = await run('ldd', [bin]);
    const where = new Map([...ldd.matchAll(/^\s*(\S+) => (\S+)/gm)].map((m) => [m[1], m[2]]));
    const base = new Set(['libc6']); // in every Debian image
    const missing = [];
    for (const lib of needed) {
      const pkg = await packageOf(where.get(lib) ?? lib);
      assert.ok(pkg, `a Debian package holds ${lib}`);
      if (!base.has(pkg) && !listed.has(pkg)) missing.push(`${lib} (${pkg})`);
    }
    assert.deepEqual(missing, [], 'libraries whose package the runtime stage does not install');
    assert.ok(listed.has('libwebsockets-evlib-uv'), 'the libuv plug-in lws loads at run time');
  });

  it('the container config passes --check-config, and compose names its services and files', async () => {
    const cfg = JSON.parse(await readFile(path.join(SOURCE_DIR, 'docker', 'xmppgw.json'), 'utf8'));
    const dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-docker-cfg-'));
    try {
      // The CA file only exists in the container (compose makes it): stand one in.
      const ca = path.join(dir, 'ca.pem');
      await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
        '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', path.join(dir, 'k.pem'), '-out', ca]);
      const f = path.join(dir, 'xmppgw.json');
      await writeFile(f, JSON.stringify({ ...cfg, upstream_ca: ca }));
      const r = await run(GATEWAY_BIN, ['--config', f, '--check-config']).catch((e) => e);
      assert.ok(!(r instanceof Error), `--check-config: ${r.stderr ?? r}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const compose = await readFile(path.join(SOURCE_DIR, 'docker', 'compose.yaml'), 'utf8');
    const services = compose.split('\nservices:\n')[1] ?? '';
    for (const s of ['xmppgw', 'prosody', 'nginx'])
      assert.match(services, new RegExp(`^  ${s}:`, 'm'), `service ${s}`);
    assert.match(compose, /dockerfile:\s*docker\/Dockerfile/);
    for (const m of compose.matchAll(/^\s*-\s*(\.\.?\/[^:\s]+):/gm)) {
      await access(path.resolve(SOURCE_DIR, 'docker', m[1]))
        .catch(() => assert.fail(`compose mounts ${m[1]}, which does not exist`));
    }
  });

  it('the systemd unit passes systemd-analyze verify and its commands are the gateway\'s', async (t) => {
    const unit = await readFile(path.join(SOURCE_DIR, 'docs', 'deploy', 'xmppgw.service'), 'utf8');
    const have = await run('systemd-analyze', ['--version']).catch(() => null);
    if (!have) { t.skip('no systemd-analyze on this machine'); return; }
    const dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-unit-'));
    try {
      const f = path.join(dir, 'xmppgw.service');
      await writeFile(f, unit.replaceAll('/usr/local/bin/xmppgw', GATEWAY_BIN));
      const r = await run('systemd-analyze', ['verify', f]).catch((e) => e);
      assert.ok(!(r instanceof Error), `verify failed: ${r.stderr ?? r}`);
      assert.equal(`${r.stdout}${r.stderr}`.trim(), '', 'systemd-analyze has nothing to say');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    assert.match(unit, /^DynamicUser=yes$/m);
    assert.match(unit, /^ProtectSystem=strict$/m);
    const start = /^ExecStart=(\S+)\s+(.*)$/m.exec(unit);
    assert.ok(start && start[1] === '/usr/local/bin/xmppgw', 'ExecStart runs the installed binary');
    const help = await run(GATEWAY_BIN, ['--help']);
    for (const flag of start[2].match(/--[a-z-]+/g)) assert.ok(help.stdout.includes(flag), `${flag} in --help`);
  });
});
