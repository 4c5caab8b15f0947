/* xmppgw console (static/console.html): logs in with Strophe.js over WebSocket, falling back to
 * BOSH when the WebSocket cannot connect (or over one of them by choice), with an account or as a
 * visitor (SASL ANONYMOUS to the gateway's visitor domain); shows every stanza that goes each way,
 * sends messages and presence, subscribes to a publish-subscribe node and lists its items. Plain
 * DOM, no framework. Endpoints come from the page's own address, or from
 * /.well-known/host-meta.json (XEP-0156) when the server has one.
 *
 * What the page knows is kept in one object, window.xmppgwDemo.state, so that it can be read from
 * the developer console (and by the browser tests). Text from the network is only ever put into
 * the page with textContent. */
(function () {
  'use strict';

  const LOG_MAX = 500; /* stanza log entries kept, oldest dropped first */
  const NS_WEBSOCKET = 'urn:xmpp:alt-connections:websocket';
  const NS_BOSH = 'urn:xmpp:alt-connections:xbosh';
  const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
  const NS_PUBSUB_EVENT = 'http://jabber.org/protocol/pubsub#event';
  const NS_ATOM = 'http://www.w3.org/2005/Atom';
  const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
  const ITEMS_MAX = 200; /* pubsub items kept in the list */

  const $ = (id) => document.getElementById(id);

  const state = {
    ready: false, /* true once the endpoint fields are filled in */
    endpoints: null, /* { websocket, bosh, source } as found at load */
    status: 'DISCONNECTED', /* name of the last Strophe.Status */
    condition: null, /* condition that came with it, if any */
    error: null, /* first failure of the current attempt: { status, condition } */
    statusLog: [], /* every status change: { status, condition } */
    transport: null, /* "websocket" | "bosh" of the current attempt */
    service: null, /* its URL */
    mode: null, /* "auto" | "websocket" | "bosh": what was chosen */
    fallback: null, /* { from, status, condition } when auto mode went from WebSocket to BOSH */
    login: null, /* "account" | "visitor" */
    jid: null, /* full JID once bound */
    messages: [], /* received: { from, to, type, id, body } */
    sent: [], /* sent by the form: { to, id, body } */
    presences: {}, /* full JID -> { type, show, status } */
    errors: [], /* stanza errors received: { name, id, from, type, condition } */
    pubsub: { status: 'none', service: null, node: null, items: [] }, /* items: { node, id, title, text } */
    log: [], /* { dir: "in" | "out", xml } */
  };

  let conn = null;

  window.xmppgwDemo = {
    state,
    get connection() { return conn; },
  };

  if (typeof window.Strophe === 'undefined') {
    document.addEventListener('DOMContentLoaded', () => {
      showStatus('ERROR', 'Strophe.js did not load (expected at lib/strophe/strophe.umd.min.js)');
    });
    return;
  }

  Strophe.setLogLevel(Strophe.LogLevel.INFO); /* its DEBUG level logs every BOSH request */

  const STATUS_NAMES = {};
  for (const [name, value] of Object.entries(Strophe.Status)) STATUS_NAMES[value] = name;

  const STATUS_TEXT = {
    CONNECTING: 'connecting',
    AUTHENTICATING: 'authenticating',
    CONNECTED: 'connected',
    DISCONNECTING: 'disconnecting',
    DISCONNECTED: 'disconnected',
    CONNFAIL: 'connection failed',
    AUTHFAIL: 'authentication failed',
    CONNTIMEOUT: 'connection timed out',
    ERROR: 'error',
    BINDREQUIRED: 'resource binding required',
    ATTACHFAIL: 'attach failed',
    REDIRECT: 'redirected',
  };
  const FAILURES = ['CONNFAIL', 'AUTHFAIL', 'CONNTIMEOUT', 'ERROR', 'ATTACHFAIL'];

  /* ---- endpoints ---- */

  function endpointsFromLocation() {
    const secure = location.protocol === 'https:';
    return {
      websocket: `${secure ? 'wss' : 'ws'}://${location.host}/xmpp-websocket`,
      bosh: `${secure ? 'https' : 'http'}://${location.host}/http-bind`,
      source: "this page's address",
    };
  }

  /* XEP-0156 in its JSON form; on any failure the defaults stay. */
  async function discoverEndpoints() {
    const found = endpointsFromLocation();
    try {
      const res = await fetch(new URL('/.well-known/host-meta.json', location.href), { cache: 'no-store' });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const meta = await res.json();
      let any = false;
      for (const link of Array.isArray(meta.links) ? meta.links : []) {
        if (typeof link.href !== 'string') continue;
        if (link.rel === NS_WEBSOCKET) { found.websocket = link.href; any = true; }
        if (link.rel === NS_BOSH) { found.bosh = link.href; any = true; }
      }
      if (any) found.source = '/.well-known/host-meta.json';
    } catch (err) {
      found.source = `this page's address (no host-meta: ${err.message})`;
    }
    return found;
  }

  async function fillEndpoints() {
    if (location.protocol !== 'http:' && location.protocol !== 'https:') {
      $('discovery').textContent = 'Open this page over HTTP to have the endpoints filled in.';
      state.ready = true;
      return;
    }
    const initial = endpointsFromLocation();
    setIfEmpty($('ws-url'), initial.websocket);
    setIfEmpty($('bosh-url'), initial.bosh);
    const found = await discoverEndpoints();
    /* Replace only what the user has not edited meanwhile. */
    if ($('ws-url').value === initial.websocket) $('ws-url').value = found.websocket;
    if ($('bosh-url').value === initial.bosh) $('bosh-url').value = found.bosh;
    state.endpoints = found;
    $('discovery').textContent = `Endpoints from ${found.source}.`;
    state.ready = true;
  }

  function setIfEmpty(input, value) {
    if (!input.value) input.value = value;
  }

  /* ---- stanza log ---- */

  /* BOSH hands over whole <body/> wrappers, the WebSocket transport a <wrapper/>: log what is inside.
   * Empty bodies are polls, except those that open, restart or end a session. */
  function logElement(dir, el) {
    if (!el || el.nodeType !== 1) {
      if (el && typeof el.data === 'string') addLog(dir, el.data); /* WebSocket <close/> event */
      return;
    }
    if (el.nodeName === 'body' || el.nodeName === 'wrapper') {
      const children = Array.from(el.childNodes).filter((n) => n.nodeType === 1);
      if (children.length) {
        for (const child of children) addLog(dir, Strophe.serialize(child));
        return;
      }
      if (el.nodeName === 'wrapper') return;
      const marks = dir === 'out' ? ['to', 'type', 'xmpp:restart'] : ['sid', 'type'];
      if (!marks.some((a) => el.hasAttribute(a))) return;
    }
    addLog(dir, Strophe.serialize(el));
  }

  function addLog(dir, xml) {
    state.log.push({ dir, xml });
    if (state.log.length > LOG_MAX) state.log.shift();
    const list = $('log');
    const li = document.createElement('li');
    li.className = dir;
    const arrow = document.createElement('span');
    arrow.className = 'dir';
    arrow.textContent = dir === 'in' ? 'in' : 'out';
    const code = document.createElement('code');
    code.textContent = xml;
    li.append(arrow, code);
    list.append(li);
    while (list.childElementCount > LOG_MAX) list.firstElementChild.remove();
    li.scrollIntoView({ block: 'nearest' });
  }

  /* ---- status ---- */

  function showStatus(name, condition) {
    const el = $('status');
    el.dataset.status = name;
    let text = STATUS_TEXT[name] ?? name.toLowerCase();
    if (name === 'CONNECTED' && state.jid) text += ` over ${state.transport === 'bosh' ? 'BOSH' : 'WebSocket'}`;
    if (condition) text += ` (${condition})`;
    /* Keep a failure in view after the disconnect that follows it. */
    const failed = name === 'DISCONNECTED' && state.error;
    let hint = '';
    if (failed) {
      text = STATUS_TEXT[state.error.status] ?? state.error.status;
      if (state.error.condition) hint = `${state.error.condition} `;
      if (state.transport === 'websocket' && state.error.status === 'CONNFAIL') {
        hint += "Browsers do not tell a page why a WebSocket handshake failed; the console shows the HTTP status (403: this page's origin is not in the gateway's origins).";
      } else if (state.transport === 'bosh' && state.error.status === 'CONNFAIL') {
        hint += "The console shows why the requests failed (a CORS refusal: this page's origin is not in the gateway's origins).";
      }
    }
    el.classList.toggle('failed', Boolean(failed));
    el.textContent = text;
    $('status-hint').textContent = hint;
  }

  function setConnectedUi(connected, busy) {
    $('connect').disabled = connected || busy;
    $('disconnect').disabled = !connected && !busy;
    $('send-message').disabled = !connected;
    $('send-presence').disabled = !connected;
    $('ps-subscribe').disabled = !connected;
    $('ps-unsubscribe').disabled = !connected;
    for (const input of document.querySelectorAll('#connect-form input')) input.disabled = connected || busy;
  }

  /* In auto mode a WebSocket that never connected gives way to BOSH, once. */
  function wantsFallback(name, condition) {
    if (state.mode !== 'auto' || state.transport !== 'websocket' || name !== 'CONNFAIL') return false;
    if (state.fallback || state.statusLog.some((s) => s.status === 'CONNECTED')) return false;
    state.fallback = { from: 'websocket', status: name, condition: condition ?? null };
    return true;
  }

  function onStatus(c, status, condition) {
    if (c !== conn) return; /* a late word from an attempt given up */
    const name = STATUS_NAMES[status] ?? String(status);
    if (wantsFallback(name, condition)) {
      state.statusLog.push({ status: name, condition: condition ?? null });
      addLog('out', `<!-- WebSocket failed (${condition ?? name}): trying BOSH -->`);
      conn = null;
      startAttempt('bosh');
      return;
    }
    state.status = name;
    state.condition = condition ?? null;
    state.statusLog.push({ status: name, condition: condition ?? null });
    if (FAILURES.includes(name) && !state.error) state.error = { status: name, condition: condition ?? null };

    if (name === 'CONNECTED') {
      state.jid = conn.jid;
      $('bound-jid').textContent = conn.jid;
      setIfEmpty($('message-to'), Strophe.getBareJidFromJid(conn.jid));
      conn.send($pres()); /* initial presence: be available, receive messages to the bare JID */
      setConnectedUi(true, false);
    } else if (name === 'DISCONNECTED') {
      conn = null;
      state.jid = null;
      state.pubsub.status = 'none';
      $('ps-status').textContent = 'none';
      $('bound-jid').textContent = 'none';
      setConnectedUi(false, false);
    }
    showStatus(name, condition);
  }

  /* ---- stanzas in ---- */

  function childText(el, name) {
    const child = Array.from(el.childNodes).find((n) => n.nodeType === 1 && n.nodeName === name);
    return child ? child.textContent : null;
  }

  /* The defined condition of a stanza error: { type, condition }, or null. */
  function stanzaError(el) {
    const err = Array.from(el.childNodes).find((n) => n.nodeType === 1 && n.nodeName === 'error');
    if (!err) return null;
    const cond = Array.from(err.childNodes).find((n) => n.nodeType === 1 && n.namespaceURI === NS_STANZAS
      && n.nodeName !== 'text');
    return { type: err.getAttribute('type'), condition: cond ? cond.nodeName : 'undefined-condition' };
  }

  function recordError(el) {
    const e = stanzaError(el) ?? { type: null, condition: 'undefined-condition' };
    const rec = { name: el.nodeName, id: el.getAttribute('id'), from: el.getAttribute('from'), ...e };
    state.errors.push(rec);
    return rec;
  }

  function onMessage(el) {
    if (el.getAttribute('type') === 'error') {
      const e = recordError(el);
      addMessageItem('in', e.from, `error: ${e.condition} (${e.type})`, 'error');
      return true;
    }
    if (el.getElementsByTagNameNS(NS_PUBSUB_EVENT, 'event').length) {
      onPubsubEvent(el);
      return true;
    }
    const body = childText(el, 'body');
    if (body === null) return true; /* chat states, receipts and the like */
    const msg = {
      from: el.getAttribute('from'),
      to: el.getAttribute('to'),
      type: el.getAttribute('type') ?? 'normal',
      id: el.getAttribute('id'),
      body,
    };
    state.messages.push(msg);
    addMessageItem('in', msg.from, msg.type === 'error' ? `error: ${body}` : body);
    return true;
  }

  function onPresence(el) {
    const from = el.getAttribute('from');
    if (!from) return true;
    state.presences[from] = {
      type: el.getAttribute('type') ?? 'available',
      show: childText(el, 'show'),
      status: childText(el, 'status'),
    };
    renderContacts();
    return true;
  }

  function addMessageItem(dir, who, text, cls) {
    const li = document.createElement('li');
    li.className = cls ? `${dir} ${cls}` : dir;
    const head = document.createElement('span');
    head.className = 'who';
    head.textContent = dir === 'in' ? `from ${who}` : `to ${who}`;
    const body = document.createElement('span');
    body.className = 'text';
    body.textContent = text;
    li.append(head, body);
    $('messages').append(li);
    li.scrollIntoView({ block: 'nearest' });
  }

  function renderContacts() {
    const list = $('contacts');
    list.replaceChildren();
    for (const [jid, p] of Object.entries(state.presences)) {
      const li = document.createElement('li');
      li.dataset.type = p.type;
      let text = `${jid}: ${p.type === 'available' ? (p.show ?? 'available') : p.type}`;
      if (p.status) text += ` "${p.status}"`;
      li.textContent = text;
      list.append(li);
    }
  }

  /* ---- actions ---- */

  /* The JID to connect with: a visitor connects to the visitor domain alone, which makes Strophe
   * choose SASL ANONYMOUS. */
  function loginJid() {
    return state.login === 'visitor' ? $('visitor-domain').value.trim() : $('jid').value.trim();
  }

  function startAttempt(transport) {
    const service = (transport === 'bosh' ? $('bosh-url') : $('ws-url')).value.trim();
    Object.assign(state, { transport, service, error: null });
    const c = new Strophe.Connection(service);
    conn = c;
    c.xmlInput = (el) => logElement('in', el);
    c.xmlOutput = (el) => logElement('out', el);
    c.addHandler(onMessage, null, 'message');
    c.addHandler(onPresence, null, 'presence');
    setConnectedUi(false, true);
    const password = state.login === 'visitor' ? null : $('password').value;
    c.connect(loginJid(), password, (status, condition) => onStatus(c, status, condition));
  }

  function connect(ev) {
    ev.preventDefault();
    if (conn) return;
    const mode = document.querySelector('input[name="transport"]:checked').value;
    const login = document.querySelector('input[name="login"]:checked').value;
    Object.assign(state, {
      mode, login, fallback: null, jid: null, error: null, statusLog: [], presences: {}, errors: [],
    });
    const transport = mode === 'bosh' ? 'bosh' : 'websocket';
    const service = (transport === 'bosh' ? $('bosh-url') : $('ws-url')).value.trim();
    if (!service || !loginJid() || (mode === 'auto' && !$('bosh-url').value.trim())) {
      showStatus('ERROR', login === 'visitor' ? 'the URLs and a visitor domain are needed' : 'the URLs and a JID are needed');
      return;
    }
    renderContacts();
    startAttempt(transport);
  }

  function showLoginFields() {
    const visitor = document.querySelector('input[name="login"]:checked').value === 'visitor';
    $('account-fields').hidden = visitor;
    $('visitor-fields').hidden = !visitor;
  }

  /* ---- publish-subscribe ---- */

  function setPubsubStatus(status, text) {
    state.pubsub.status = status;
    $('ps-status').textContent = text ?? status;
  }

  /* Subscribe (or unsubscribe) this full JID: what a visitor may do, and fine for an account. */
  function pubsubRequest(op) {
    const service = $('ps-service').value.trim();
    const node = $('ps-node').value.trim();
    if (!conn || !state.jid || !service || !node) return;
    Object.assign(state.pubsub, { service, node });
    setPubsubStatus(`${op}-pending`, `${op === 'subscribe' ? 'subscribing to' : 'leaving'} ${node}`);
    const iq = $iq({ type: 'set', to: service })
      .c('pubsub', { xmlns: NS_PUBSUB }).c(op, { node, jid: state.jid });
    conn.sendIQ(iq, () => {
      setPubsubStatus(op === 'subscribe' ? 'subscribed' : 'none',
        op === 'subscribe' ? `subscribed to ${service}/${node}` : 'none');
    }, (el) => {
      const e = el ? recordError(el) : { condition: 'remote-server-timeout' };
      setPubsubStatus('error', `${op} failed: ${e.condition}`);
    }, 15000);
  }

  /* An item as a line of text: an Atom entry's title, else the payload's text. */
  function itemTitle(item) {
    const payload = Array.from(item.childNodes).find((n) => n.nodeType === 1);
    if (!payload) return '';
    if (payload.namespaceURI === NS_ATOM) {
      const title = Array.from(payload.childNodes).find((n) => n.nodeType === 1 && n.nodeName === 'title');
      if (title) return title.textContent;
    }
    return payload.textContent.replace(/\s+/g, ' ').trim().slice(0, 200);
  }

  function onPubsubEvent(el) {
    for (const items of el.getElementsByTagNameNS(NS_PUBSUB_EVENT, 'items')) {
      const node = items.getAttribute('node');
      for (const item of Array.from(items.childNodes).filter((n) => n.nodeType === 1)) {
        const rec = { node, id: item.getAttribute('id'), kind: item.nodeName, title: item.nodeName === 'item' ? itemTitle(item) : '' };
        state.pubsub.items.push(rec);
        if (state.pubsub.items.length > ITEMS_MAX) state.pubsub.items.shift();
        const li = document.createElement('li');
        li.dataset.id = rec.id ?? '';
        li.textContent = rec.kind === 'retract' ? `${node}: ${rec.id} retracted` : `${node}: ${rec.title} (${rec.id})`;
        $('ps-items').prepend(li);
        while ($('ps-items').childElementCount > ITEMS_MAX) $('ps-items').lastElementChild.remove();
      }
    }
  }

  function disconnect() {
    if (conn) conn.disconnect('logged out');
  }

  function sendMessage(ev) {
    ev.preventDefault();
    const to = $('message-to').value.trim();
    const body = $('message-body').value;
    if (!conn || !to || !body) return;
    const id = conn.getUniqueId('msg');
    conn.send($msg({ to, type: 'chat', id }).c('body').t(body));
    state.sent.push({ to, id, body });
    addMessageItem('out', to, body);
    $('message-body').value = '';
  }

  function sendPresence(ev) {
    ev.preventDefault();
    if (!conn) return;
    const show = $('presence-show').value;
    const status = $('presence-status').value.trim();
    const pres = show === 'unavailable' ? $pres({ type: 'unavailable' }) : $pres();
    if (show && show !== 'unavailable') pres.c('show').t(show).up();
    if (status) pres.c('status').t(status).up();
    conn.send(pres);
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('connect-form').addEventListener('submit', connect);
    $('disconnect').addEventListener('click', disconnect);
    $('message-form').addEventListener('submit', sendMessage);
    $('presence-form').addEventListener('submit', sendPresence);
    $('pubsub-form').addEventListener('submit', (ev) => { ev.preventDefault(); pubsubRequest('subscribe'); });
    $('ps-unsubscribe').addEventListener('click', () => pubsubRequest('unsubscribe'));
    for (const r of document.querySelectorAll('input[name="login"]')) r.addEventListener('change', showLoginFields);
    showLoginFields();
    $('clear-log').addEventListener('click', () => {
      state.log.length = 0;
      $('log').replaceChildren();
    });
    /* Leaving the page ends the session rather than leaving it to time out. */
    window.addEventListener('pagehide', () => { if (conn) conn.disconnect('page closed'); });
    fillEndpoints();
  });
})();
