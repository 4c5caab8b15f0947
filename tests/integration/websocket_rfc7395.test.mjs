// XMPP over WebSocket (RFC 7395) at /xmpp-websocket, probed frame by frame with the `ws` client:
// the upgrade rules (path, subprotocol, Origin), the <open/> and features answers, one stanza per
// frame with xmlns="jabber:client", stream restart after SASL, <close/> both ways, every stream
// error condition the gateway promises, isolation between sessions, pings and permessage-deflate.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack } from './lib/stack.mjs';
import { startGateway, stopGatewayChecked } from './lib/gateway.mjs';
import { loginXmppJs } from './lib/clients.mjs';
import {
  NS_FRAMING, NS_STREAM, NS_STREAMS, NS_SASL, NS_TLS, NS_BIND, NS_CLIENT,
  openFrame, closeFrame, upgrade, connect, expectOpen, expectFeatures, expectStreamError,
  rawLogin, children,
} from './lib/wsraw.mjs';

const T = { timeout: 20000 };

describe('RFC 7395 WebSocket transport', { timeout: 300000 }, () => {
  let stack;
  let gw;
  let users;

  before(async () => {
    stack = await startStack();
    gw = stack.gw;
    users = stack.prosody.users;
  });

  after(async () => {
    const problem = await stack?.stop();
    if (problem) assert.fail(problem);
  });

  // ---------------------------------------------------------------- upgrade

  describe('upgrade', () => {
    it('accepts /xmpp-websocket with subprotocol "xmpp" and echoes the subprotocol', T, async () => {
      const r = await upgrade(gw.wsUrl);
      assert.equal(r.status, 101);
      assert.equal(r.protocol, 'xmpp');
    });

    it('answers 404 on another path', T, async () => {
      const r = await upgrade(`ws://127.0.0.1:${gw.port}/not-xmpp-websocket`);
      assert.equal(r.status, 404);
    });

    it('answers 400 when the "xmpp" subprotocol is missing', T, async () => {
      const none = await upgrade(gw.wsUrl, { protocols: null });
      assert.equal(none.status, 400, 'no Sec-WebSocket-Protocol at all');
      const other = await upgrade(gw.wsUrl, { protocols: ['chat'] });
      assert.equal(other.status, 400, 'only another subprotocol offered');
    });

    it('accepts "xmpp" offered among other subprotocols', T, async () => {
      const r = await upgrade(gw.wsUrl, { protocols: ['chat', 'xmpp'] });
      assert.equal(r.status, 101);
      assert.equal(r.protocol, 'xmpp');
    });

    it('answers 400 when another protocol the server knows comes before "xmpp"', T, async () => {
      // lws binds the first name it knows: the connection would not be an XMPP stream.
      const r = await upgrade(gw.wsUrl, { protocols: ['xmppgw-bosh', 'xmpp'] });
      assert.equal(r.status, 400);
      const r2 = await upgrade(gw.wsUrl, { protocols: ['xmppgw-http', 'xmpp'] });
      assert.equal(r2.status, 400);
    });

    it('answers 400 (not a bare hang-up) to "XMPP" in upper case', T, async () => {
      const r = await upgrade(gw.wsUrl, { protocols: ['XMPP'] });
      assert.equal(r.status, 400);
    });

    it('answers 403 to an Origin that is not allowed', T, async () => {
      const r = await upgrade(gw.wsUrl, { origin: 'http://evil.example' });
      assert.equal(r.status, 403);
      const r2 = await upgrade(gw.wsUrl, { origin: 'https://127.0.0.1.evil.example' });
      assert.equal(r2.status, 403, 'a host that merely starts with 127.0.0.1');
    });

    it('allows the same host as the Host header, localhost origins and no Origin', T, async () => {
      for (const origin of [
        `http://127.0.0.1:${gw.port}`,
        'http://localhost:8080',
        'http://localhost',
        'https://127.0.0.1:9443',
        'http://[::1]:8080',
        undefined,
      ]) {
        const r = await upgrade(gw.wsUrl, { origin });
        assert.equal(r.status, 101, `Origin ${origin ?? '(none)'}`);
      }
    });

    it('does not negotiate permessage-deflate by default, even when offered', T, async () => {
      // websocket.deflate is off by default: libwebsockets 4.1.6's extension stalls and can abort.
      const r = await upgrade(gw.wsUrl);
      assert.equal(r.status, 101);
      assert.equal(r.extensions ?? '', '', `Sec-WebSocket-Extensions: ${r.headers['sec-websocket-extensions']}`);
    });

    it('carries a 20 KB message end to end (frames of every size up to the limit)', T, async () => {
      const { probe, jid } = await rawLogin(gw.wsUrl, { username: 'carol', password: users.carol });
      try {
        for (const size of [100, 3000, 8000, 20000]) {
          const big = 'z'.repeat(size);
          probe.send(`<message xmlns="${NS_CLIENT}" to="${jid}" type="chat" id="self${size}"><body>${big}</body></message>`);
          let f;
          do { f = await probe.next(); } while (f.el?.localName !== 'message');
          const got = f.el.getElementsByTagName('body')[0].textContent;
          assert.ok(got === big, `body of ${got.length} chars came back, ${size} sent`);
        }
      } finally {
        probe.terminate();
      }
    });
  });

  describe('fragmented messages', () => {
    it('reassembles a stanza sent in several WebSocket fragments', T, async () => {
      const { probe, jid } = await rawLogin(gw.wsUrl, { username: 'carol', password: users.carol });
      try {
        const text = `<message xmlns="${NS_CLIENT}" to="${jid}" type="chat" id="frag1"><body>${'f'.repeat(5000)}</body></message>`;
        const parts = [text.slice(0, 7), text.slice(7, 3000), text.slice(3000)];
        probe.ws.send(parts[0], { fin: false });
        probe.ws.send(parts[1], { fin: false });
        probe.ws.send(parts[2], { fin: true });
        let f;
        do { f = await probe.next(); } while (f.el?.localName !== 'message');
        assert.equal(f.el.getAttribute('id'), 'frag1');
        assert.equal(f.el.getElementsByTagName('body')[0].textContent.length, 5000);
      } finally {
        probe.terminate();
      }
    });

    it('policy-violation when the fragments together pass limits.max_stanza', T, async () => {
      const probe = await connect(gw.wsUrl, { perMessageDeflate: false });
      probe.send(openFrame('localhost'));
      await expectOpen(probe);
      await expectFeatures(probe);
      const chunk = 'x'.repeat(100 * 1024);
      probe.ws.send(`<message xmlns="${NS_CLIENT}" to="bob@localhost"><body>`, { fin: false });
      for (let i = 0; i < 3; i++) probe.ws.send(chunk, { fin: false }); // 300 KiB > 256 KiB
      probe.ws.send('</body></message>', { fin: true });
      await expectStreamError(probe, 'policy-violation', { timeoutMs: 10000 });
    });
  });

  describe('idle connections', () => {
    let istack;
    before(async () => { istack = await startStack({ gateway: { config: { connect_timeout: 2 } } }); });
    after(async () => {
      const problem = await istack?.stop();
      if (problem) assert.fail(problem);
    });

    it('closes a connection that never sends <open/> after connect_timeout: <open/>, connection-timeout, <close/>, close frame 1000', T, async () => {
      const probe = await connect(istack.gw.wsUrl, { perMessageDeflate: false });
      const t0 = Date.now();
      const { code, frames } = await expectStreamError(probe, 'connection-timeout',
        { expectOpenFirst: true, timeoutMs: 8000 });
      const ms = Date.now() - t0;
      assert.ok(ms >= 1500 && ms < 6000, `closed after ${ms} ms (connect_timeout 2 s)`);
      assert.equal(code, 1000, `WebSocket close code; frames: ${frames}`);
    });

    it('whitespace keepalives do not stand in for <open/>', T, async () => {
      const probe = await connect(istack.gw.wsUrl, { perMessageDeflate: false });
      const t0 = Date.now();
      const ticker = setInterval(() => { try { probe.send(' '); } catch { /* closed */ } }, 300);
      try {
        const { code } = await expectStreamError(probe, 'connection-timeout',
          { expectOpenFirst: true, timeoutMs: 8000 });
        const ms = Date.now() - t0;
        assert.ok(ms >= 1500 && ms < 6000, `closed after ${ms} ms (connect_timeout 2 s)`);
        assert.equal(code, 1000);
      } finally {
        clearInterval(ticker);
      }
    });

    it('keeps a connection that sent <open/> past connect_timeout', T, async () => {
      const probe = await connect(istack.gw.wsUrl, { perMessageDeflate: false });
      probe.send(openFrame('localhost'));
      await expectOpen(probe);
      await expectFeatures(probe);
      await new Promise((r) => setTimeout(r, 3500));
      assert.equal(probe.isClosed, false, 'still open after 3.5 s');
      probe.terminate();
    });
  });

  describe('permessage-deflate, when enabled (websocket.deflate: true)', () => {
    let dstack;
    before(async () => { dstack = await startStack({ gateway: { config: { websocket: { deflate: true } } } }); });
    after(async () => {
      const problem = await dstack?.stop();
      if (problem) assert.fail(problem);
    });

    it('negotiates permessage-deflate when the client offers it, and not otherwise', T, async () => {
      const r = await upgrade(dstack.gw.wsUrl);
      assert.match(r.extensions ?? '', /permessage-deflate/, `Sec-WebSocket-Extensions: ${r.headers['sec-websocket-extensions']}`);
      const off = await upgrade(dstack.gw.wsUrl, { perMessageDeflate: false });
      assert.equal(off.status, 101);
      assert.equal(off.extensions ?? '', '', 'no extension when none was offered');
    });

    it('carries small compressed frames both ways', T, async () => {
      const probe = await connect(dstack.gw.wsUrl);
      try {
        assert.match(probe.ws.extensions, /permessage-deflate/);
        probe.send(openFrame('localhost'));
        await expectOpen(probe);
        await expectFeatures(probe);
        // Unauthenticated: Prosody answers each iq with an error, which is enough to see it arrived.
        for (const size of [100, 2000]) {
          probe.send(`<iq xmlns="${NS_CLIENT}" type="get" id="s${size}" to="localhost"><ping xmlns="urn:xmpp:ping"/><pad xmlns="urn:x">${'z'.repeat(size)}</pad></iq>`);
          const f = await probe.next(5000).catch((err) => { throw new Error(`${size}-byte compressed frame: ${err.message}`); });
          assert.equal(f.el?.getAttribute('id'), `s${size}`, `answer to the ${size}-byte frame: ${f.text}`);
        }
      } finally {
        probe.terminate();
      }
    });

    // Compressed messages of several KiB are not tested: libwebsockets 4.1.6 holds the rest of an
    // inflated message until more data arrives and can abort in its inflate path (config/README.md).
  });

  // ---------------------------------------------------------------- stream

  describe('stream', () => {
    it('answers <open/> with from, id, version and xml:lang, then features without starttls', T, async () => {
      const probe = await connect(gw.wsUrl);
      try {
        probe.send(openFrame('localhost'));
        const open = await expectOpen(probe, { from: 'localhost' });
        assert.equal(open.getAttributeNS('http://www.w3.org/XML/1998/namespace', 'lang'), 'en');
        const features = await expectFeatures(probe);
        // expectFeatures parsed the frame on its own: the stream prefix is declared in it.
        const text = probe.frames[1].text;
        assert.equal(children(features, 'starttls', NS_TLS).length, 0, `features offer starttls: ${text}`);
        assert.doesNotMatch(text, /starttls/);
        const mechs = children(features, 'mechanisms', NS_SASL)[0];
        assert.ok(mechs, `no SASL mechanisms: ${text}`);
        const names = children(mechs, 'mechanism').map((m) => m.textContent);
        assert.ok(names.includes('PLAIN'), `mechanisms: ${names}`);
        assert.ok(names.includes('SCRAM-SHA-1'), `mechanisms: ${names}`);
      } finally {
        probe.terminate();
      }
    });

    it('logs in with PLAIN, restarts with a new <open/>, binds; one stanza per frame in jabber:client', T, async () => {
      const { probe, jid, features, bindFrame } = await rawLogin(gw.wsUrl, { username: 'alice', password: users.alice, resource: 'rfc' });
      try {
        assert.equal(jid, 'alice@localhost/rfc');
        assert.ok(children(features[1], 'bind', NS_BIND).length === 1, 'bind offered after restart');
        assert.doesNotMatch(probe.frames.map((f) => f.text).join(''), /starttls/);
        assert.equal(bindFrame.el.localName, 'iq');
        assert.equal(bindFrame.el.namespaceURI, NS_CLIENT);
        // Each frame is parsed alone, so namespaceURI === jabber:client means the frame declares it.

        probe.send(`<iq xmlns="${NS_CLIENT}" type="get" id="roster1"><query xmlns="jabber:iq:roster"/></iq>`);
        probe.send(`<iq xmlns="${NS_CLIENT}" type="get" id="ping1" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>`);
        const seen = new Map();
        while (seen.size < 2) {
          const f = await probe.next();
          assert.equal(f.parseError, null, `frame not one XML document: ${f.text}`);
          assert.equal(f.el.namespaceURI, NS_CLIENT, `stanza namespace in ${f.text}`);
          if (f.el.localName === 'iq') seen.set(f.el.getAttribute('id'), f);
        }
        assert.equal(seen.get('roster1').el.getAttribute('type'), 'result');
        assert.equal(seen.get('ping1').el.getAttribute('type'), 'result');
      } finally {
        probe.terminate();
      }
    });

    it('answers the client <close/> with <close/> and closes the WebSocket', T, async () => {
      const { probe } = await rawLogin(gw.wsUrl, { username: 'alice', password: users.alice, resource: 'closing' });
      probe.send(closeFrame());
      const { frames, code } = await probe.readUntilClose(5000);
      const closes = frames.filter((f) => f.el?.localName === 'close' && f.el.namespaceURI === NS_FRAMING);
      assert.equal(closes.length, 1, `frames: ${frames.map((f) => f.text)}`);
      assert.equal(frames.at(-1), closes[0], '<close/> is the last frame');
      assert.ok(code === 1000 || code === 1005, `WebSocket close code ${code}`);
    });

    it('sends <close/> and closes when the upstream ends the stream', T, async () => {
      // A second login with the same full JID makes Prosody replace the first session: the first
      // one's upstream stream ends with a <conflict/> stream error.
      const first = await rawLogin(gw.wsUrl, { username: 'bob', password: users.bob, resource: 'dup' });
      const second = await rawLogin(gw.wsUrl, { username: 'bob', password: users.bob, resource: 'dup' });
      try {
        const { frames } = await first.probe.readUntilClose(10000);
        const last = frames.at(-1);
        assert.ok(last?.el?.localName === 'close' && last.el.namespaceURI === NS_FRAMING,
          `last frame should be <close/>: ${frames.map((f) => f.text)}`);
        const err = frames.find((f) => f.el?.localName === 'error' && f.el.namespaceURI === NS_STREAM);
        assert.ok(err, `the upstream's stream error is passed on: ${frames.map((f) => f.text)}`);
        assert.match(err.text, /conflict/);
      } finally {
        first.probe.terminate();
        second.probe.terminate();
      }
    });
  });

  // ---------------------------------------------------------------- errors

  describe('stream errors', () => {
    // Uncompressed unless asked: these tests are about the XML rules, deflate has its own tests.
    const afterOpen = async ({ deflate = false } = {}) => {
      const probe = await connect(gw.wsUrl, { perMessageDeflate: deflate ? undefined : false });
      probe.send(openFrame('localhost'));
      await expectOpen(probe);
      await expectFeatures(probe);
      return probe;
    };

    it('not-well-formed: malformed XML in a frame', T, async () => {
      const probe = await afterOpen();
      probe.send(`<message xmlns="${NS_CLIENT}" to="bob@localhost"><body>x</message>`);
      await expectStreamError(probe, 'not-well-formed');
    });

    it('not-well-formed: invalid UTF-8', T, async () => {
      const probe = await afterOpen();
      const head = Buffer.from(`<message xmlns="${NS_CLIENT}" to="bob@localhost"><body>`);
      const tail = Buffer.from('</body></message>');
      probe.sendTextBytes(Buffer.concat([head, Buffer.from([0xc3, 0x28, 0xff, 0xfe]), tail]));
      await expectStreamError(probe, 'not-well-formed');
    });

    it('not-well-formed before any <open/>: the <open/> answer comes first', T, async () => {
      const probe = await connect(gw.wsUrl);
      // A duplicate attribute: not well-formed from the first start tag on.
      probe.send('<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" to="localhost" version="1.0"/>');
      await expectStreamError(probe, 'not-well-formed', { expectOpenFirst: true });
    });

    for (const [what, frame] of [
      ['a DOCTYPE', '<!DOCTYPE message><message xmlns="jabber:client"/>'],
      ['billion laughs', '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;"><!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]><message xmlns="jabber:client"><body>&lol4;</body></message>'],
      ['a processing instruction', '<?evil data?><message xmlns="jabber:client"/>'],
      ['a comment', '<message xmlns="jabber:client"><!-- hidden --><body>x</body></message>'],
    ]) {
      it(`restricted-xml: ${what}`, T, async () => {
        const probe = await afterOpen();
        probe.send(frame);
        await expectStreamError(probe, 'restricted-xml');
      });
    }

    it('restricted-xml before any <open/>: the <open/> answer comes first', T, async () => {
      const probe = await connect(gw.wsUrl);
      probe.send('<!DOCTYPE open><open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0"/>');
      await expectStreamError(probe, 'restricted-xml', { expectOpenFirst: true });
    });

    it('policy-violation: a 1 MiB frame (limit 256 KiB)', T, async () => {
      const probe = await afterOpen();
      probe.send(`<message xmlns="${NS_CLIENT}" to="bob@localhost"><body>${'a'.repeat(1024 * 1024)}</body></message>`);
      await expectStreamError(probe, 'policy-violation', { timeoutMs: 10000 });
    });

    it('bad-format: a binary frame, WebSocket close code 1003', T, async () => {
      const probe = await afterOpen();
      probe.sendBinary(Buffer.from(`<message xmlns="${NS_CLIENT}" to="bob@localhost"/>`));
      const { code } = await expectStreamError(probe, 'bad-format');
      assert.equal(code, 1003);
    });

    it('host-unknown: <open/> to a domain the gateway does not serve', T, async () => {
      const probe = await connect(gw.wsUrl);
      probe.send(openFrame('example.net'));
      const { frames } = await probe.readUntilClose(5000);
      // The <open/> answer may name the gateway's domain or the requested one; the error matters.
      const errIdx = frames.findIndex((f) => f.el?.localName === 'error');
      assert.ok(errIdx >= 0, `frames: ${frames.map((f) => f.text)}`);
      assert.ok(frames[0].el?.localName === 'open' && frames[0].el.namespaceURI === NS_FRAMING,
        `an <open/> answer first: ${frames.map((f) => f.text)}`);
      const errEl = frames[errIdx].el;
      assert.equal(errEl.namespaceURI, NS_STREAM, frames[errIdx].text);
      assert.deepEqual(children(errEl, null, NS_STREAMS).map((c) => c.localName).sort(), ['host-unknown', 'text'],
        frames[errIdx].text);
      assert.equal(frames.at(-1).el?.localName, 'close');
    });

    it('another session keeps working while one sends bad input', T, async () => {
      const good = await loginXmppJs({ service: gw.wsUrl, username: 'alice', password: users.alice, resource: 'steady' });
      try {
        const bads = [];
        for (const frame of [
          '<message><body>x</message>',
          '<!DOCTYPE x><x/>',
          `<message xmlns="jabber:client"><body>${'b'.repeat(400 * 1024)}</body></message>`,
        ]) {
          const probe = await afterOpen();
          probe.send(frame);
          bads.push(probe.readUntilClose(10000));
        }
        const r = await good.iq('<iq type="get"><query xmlns="jabber:iq:roster"/></iq>');
        assert.equal(r.type, 'result');
        const closes = await Promise.all(bads);
        for (const c of closes) assert.ok(c.frames.some((f) => f.el?.localName === 'error'));
        const r2 = await good.iq('<iq type="get" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>');
        assert.equal(r2.type, 'result');
      } finally {
        await good.stop();
      }
    });
  });

  // ---------------------------------------------------------------- pings

  describe('keep-alive', () => {
    let gw2;
    before(async () => {
      gw2 = await startGateway({ prosody: stack.prosody, config: { websocket: { ping_interval: 1 } } });
    });
    after(async () => {
      const problem = await stopGatewayChecked(gw2);
      if (problem) assert.fail(problem);
    });

    it('sends WebSocket pings every websocket.ping_interval seconds', T, async () => {
      const probe = await connect(gw2.wsUrl);
      try {
        probe.send(openFrame('localhost'));
        await expectOpen(probe);
        const start = Date.now();
        while (probe.pings < 2 && Date.now() - start < 6000) await new Promise((r) => setTimeout(r, 100));
        assert.ok(probe.pings >= 2, `pings received in ${Date.now() - start} ms: ${probe.pings}`);
        assert.equal(probe.isClosed, false, 'the session stays open (ws answers pings with pongs)');
      } finally {
        probe.terminate();
      }
    });

    it('sends no ping within 3 s at the default interval (30 s)', T, async () => {
      const probe = await connect(gw.wsUrl);
      try {
        probe.send(openFrame('localhost'));
        await expectOpen(probe);
        await new Promise((r) => setTimeout(r, 3000));
        assert.equal(probe.pings, 0);
      } finally {
        probe.terminate();
      }
    });
  });
});
