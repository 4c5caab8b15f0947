// The command line: --help, --version, --check-config on good and bad files (errors name the key,
// the line and the column), bad arguments, a clear one-line failure when a port is taken, and
// log.format "json": every line the running gateway writes is one JSON object.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { runGateway, startGateway, stopGatewayChecked, baseConfig, SOURCE_DIR } from './lib/gateway.mjs';
import { occupyPort, freePorts } from './lib/ports.mjs';

const T = { timeout: 20000 };
// A complete, valid configuration (baseConfig() leaves the upstream to the command line).
const validConfig = (extra = {}) => ({
  ...baseConfig(),
  upstream: { host: '127.0.0.1', port: 5222, tls: 'starttls' },
  ...extra,
});
const OPTIONS = ['--config', '--listen', '--admin', '--upstream', '--upstream-tls', '--upstream-ca',
  '--check-config', '--version', '--help'];

describe('command line', { timeout: 200000 }, () => {
  let dir;
  const file = async (name, text) => {
    const f = path.join(dir, name);
    await writeFile(f, text);
    return f;
  };
  const out = (r) => `${r.stdout}${r.stderr}`;

  before(async () => { dir = await mkdtemp(path.join(os.tmpdir(), 'xmppgw-cli-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  it('--help prints every option and exits 0', T, async () => {
    const r = await runGateway(['--help']);
    assert.equal(r.code, 0, out(r));
    for (const o of OPTIONS) assert.ok(out(r).includes(o), `--help does not mention ${o}:\n${out(r)}`);
  });

  it('--version prints the project version and exits 0', T, async () => {
    const cmake = await readFile(path.join(SOURCE_DIR, 'CMakeLists.txt'), 'utf8');
    const version = /project\(xmppgw\s+VERSION\s+([0-9.]+)/.exec(cmake)[1];
    const r = await runGateway(['--version']);
    assert.equal(r.code, 0, out(r));
    assert.ok(r.stdout.includes(version), `expected ${version} in: ${out(r)}`);
    assert.ok(r.stdout.trim().split('\n').length <= 3, `short output: ${r.stdout}`);
  });

  it('refuses an unknown option with a non-zero exit', T, async () => {
    const r = await runGateway(['--no-such-option']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no-such-option|unknown|unrecognized/i);
  });

  it('refuses a bad --upstream-tls value', T, async () => {
    const r = await runGateway(['--check-config', '--config', await file('ok-tls.json', JSON.stringify(validConfig())),
      '--upstream-tls', 'sometimes']);
    assert.notEqual(r.code, 0, out(r));
    assert.match(out(r), /sometimes|upstream-tls/);
  });

  it('--check-config accepts a valid file', T, async () => {
    const f = await file('good.json', `${JSON.stringify(validConfig({ websocket: { ping_interval: 5 }, limits: { max_stanza: 65536 } }), null, 2)}\n`);
    const r = await runGateway(['--check-config', '--config', f]);
    assert.equal(r.code, 0, out(r));
  });

  it('--check-config accepts the shipped example config', T, async () => {
    const r = await runGateway(['--check-config', '--config', path.join(SOURCE_DIR, 'config/xmppgw.example.json')]);
    assert.equal(r.code, 0, out(r));
  });

  it('--check-config after --config, and with flags that complete the file', T, async () => {
    const f = await file('good2.json', JSON.stringify(validConfig()));
    const r = await runGateway(['--config', f, '--check-config']);
    assert.equal(r.code, 0, out(r));
    const partial = await file('partial.json', JSON.stringify(baseConfig()));
    const r2 = await runGateway(['--config', partial, '--upstream', '127.0.0.1:5222', '--check-config']);
    assert.equal(r2.code, 0, out(r2));
  });

  it('--check-config rejects a file without any upstream, naming the key', T, async () => {
    const f = await file('no-upstream.json', JSON.stringify(baseConfig()));
    const r = await runGateway(['--check-config', '--config', f]);
    assert.equal(r.code, 1, out(r));
    assert.match(out(r), /upstream/);
  });

  it('--check-config refuses an admin port off loopback without a token, naming both keys', T, async () => {
    const f = await file('admin-open.json', JSON.stringify(validConfig({ admin: { listen: '0.0.0.0:5281' } })));
    const r = await runGateway(['--check-config', '--config', f]);
    assert.equal(r.code, 1, out(r));
    const lines = out(r).split('\n').filter((l) => l.includes('admin.listen'));
    assert.equal(lines.length, 1, out(r));
    assert.match(lines[0], /admin\.token/, out(r));
    assert.match(lines[0], /0\.0\.0\.0:5281/, out(r));
    assert.match(lines[0], /loopback/, out(r));

    // The same address from the command line, at start.
    const ok = await file('admin-ok.json', JSON.stringify(validConfig()));
    const r2 = await runGateway(['--config', ok, '--admin', '0.0.0.0:5281', '--listen', '127.0.0.1:1'],
      { timeoutMs: 10000 });
    assert.equal(r2.timedOut, false, 'the gateway must exit, not hang');
    assert.notEqual(r2.code, 0, out(r2));
    assert.match(out(r2), /admin\.listen.*admin\.token/, out(r2));
  });

  it('--check-config accepts an admin port off loopback with a token, and loopback without', T, async () => {
    const withToken = await file('admin-token.json',
      JSON.stringify(validConfig({ admin: { listen: '0.0.0.0:5281', token: 's3cret', hosts: ['xmppgw-admin.internal'] } })));
    const r = await runGateway(['--check-config', '--config', withToken]);
    assert.equal(r.code, 0, out(r));
    for (const listen of ['localhost:5281', '127.0.0.2:5281', '[::1]:5281']) {
      const f = await file(`admin-${listen.replace(/[^0-9a-z]/g, '_')}.json`, JSON.stringify(validConfig({ admin: { listen } })));
      const r2 = await runGateway(['--check-config', '--config', f]);
      assert.equal(r2.code, 0, `${listen}: ${out(r2)}`);
    }
  });

  // Each bad file: the key that must be named and where the problem is (1-based line, column).
  const BAD = [
    {
      name: 'a value out of range',
      key: 'websocket.ping_interval',
      line: 4,
      text: '{\n  "domains": ["localhost"],\n  "websocket": {\n    "ping_interval": 99999\n  }\n}\n',
    },
    {
      name: 'a value of the wrong type',
      key: 'limits.max_stanza',
      line: 3,
      text: '{\n  "domains": ["localhost"],\n  "limits": { "max_stanza": "big" }\n}\n',
    },
    {
      name: 'an unknown key',
      key: 'limitz',
      line: 3,
      text: '{\n  "domains": ["localhost"],\n  "limitz": {}\n}\n',
    },
    {
      name: 'a bad upstream port',
      key: 'upstream.port',
      line: 5,
      text: '{\n  "domains": ["localhost"],\n  "upstream": {\n    "host": "127.0.0.1",\n    "port": 70000\n  }\n}\n',
    },
    {
      name: 'a bad log level',
      key: 'log.level',
      line: 2,
      text: '{\n  "log": { "level": "chatty" },\n  "domains": ["localhost"]\n}\n',
    },
  ];

  for (const bad of BAD) {
    it(`--check-config rejects ${bad.name}, naming key, line and column`, T, async () => {
      const f = await file(`bad-${bad.key}.json`, bad.text);
      const r = await runGateway(['--check-config', '--config', f]);
      assert.equal(r.code, 1, `exit code; output:\n${out(r)}`);
      const o = out(r);
      assert.ok(o.includes(bad.key), `message should name "${bad.key}":\n${o}`);
      assert.match(o, new RegExp(`line\\s*:?\\s*${bad.line}\\b|:${bad.line}:\\d+`), `message should give line ${bad.line}:\n${o}`);
      assert.match(o, /col(umn)?\s*:?\s*\d+|:\d+:\d+/i, `message should give a column:\n${o}`);
    });
  }

  it('--check-config rejects a JSON syntax error with its line and column', T, async () => {
    const f = await file('syntax.json', '{\n  "domains": ["localhost"]\n  "log": { "level": "info" }\n}\n');
    const r = await runGateway(['--check-config', '--config', f]);
    assert.equal(r.code, 1, out(r));
    assert.match(out(r), /line\s*:?\s*3\b|:3:\d+/, out(r));
    assert.match(out(r), /col(umn)?\s*:?\s*\d+|:\d+:\d+/i, out(r));
  });

  it('--check-config on a missing file exits 1 naming the file', T, async () => {
    const missing = path.join(dir, 'does-not-exist.json');
    const r = await runGateway(['--check-config', '--config', missing]);
    assert.equal(r.code, 1, out(r));
    assert.ok(out(r).includes('does-not-exist.json'), out(r));
  });

  for (const which of ['--listen', '--admin']) {
    it(`exits non-zero with one clear line when ${which} cannot listen`, T, async () => {
      const taken = await occupyPort();
      try {
        const [other] = await freePorts(1);
        const cfg = await file(`listen${which}.json`, JSON.stringify({ ...baseConfig(), log: { level: 'info' } }));
        const args = ['--config', cfg, '--upstream', '127.0.0.1:1', '--upstream-tls', 'off'];
        if (which === '--listen') args.push('--listen', `127.0.0.1:${taken.port}`, '--admin', `127.0.0.1:${other}`);
        else args.push('--listen', `127.0.0.1:${other}`, '--admin', `127.0.0.1:${taken.port}`);
        const r = await runGateway(args, { timeoutMs: 10000 });
        assert.equal(r.timedOut, false, 'the gateway must exit, not hang');
        assert.notEqual(r.code, 0, out(r));
        const lines = r.stderr.split('\n').filter((l) => l.includes(`127.0.0.1:${taken.port}`));
        assert.ok(lines.length >= 1, `a stderr line naming 127.0.0.1:${taken.port}:\n${r.stderr}`);
        assert.match(lines.join('\n'), /listen|bind|in use/i);
      } finally {
        await taken.close();
      }
    });
  }

  it('log.format "json" writes every line as one JSON object with escaped client bytes', { timeout: 60000 }, async () => {
    const gw = await startGateway({ upstream: '127.0.0.1:1', upstreamTls: 'off', config: { log: { level: 'debug', format: 'json' } } });
    let code;
    try {
      // A BOSH request from a refused Origin: its bytes (client bytes) reach the log.
      const r = await fetch(gw.boshUrl, {
        method: 'POST', body: '<body/>',
        headers: { 'Content-Type': 'text/xml', Origin: 'http://evil.example:81/"quoted"\\' },
      });
      assert.equal(r.status, 403);
      await gw.waitForLog(/evil\.example/);
    } finally {
      code = await stopGatewayChecked(gw).catch((e) => e);
    }
    const lines = gw.logs().filter((l) => l.length > 0);
    assert.ok(lines.length >= 3, gw.logText());
    for (const l of lines) {
      let o;
      assert.doesNotThrow(() => { o = JSON.parse(l); }, `not JSON: ${l}`);
      assert.deepEqual(Object.keys(o), ['time', 'level', 'sid', 'jid', 'addr', 'msg'], l);
      assert.match(o.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, l);
      assert.ok(['error', 'warn', 'info', 'debug'].includes(o.level), l);
      assert.equal(typeof o.msg, 'string', l);
    }
    const origin = lines.map((l) => JSON.parse(l)).find((o) => o.msg.includes('evil.example'));
    assert.ok(origin && origin.msg.includes('"quoted"\\\\'), `the origin as the plain line shows it: ${origin?.msg}`);
    assert.ok(!(code instanceof Error), String(code));
  });
});
