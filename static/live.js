/* xmppgw live updates: one tag and this script show a publish-subscribe node's items as they are
 * published, with no XMPP library in the page.
 *
 *   <div data-xmppgw-node="pubsub.example.org/princely_musings"></div>
 *   <script src="https://gw.example.org/live.js" async></script>
 *
 * Every element with data-xmppgw-node (also ones added later) gets an EventSource on the gateway
 * this script came from: /events/<service>/<node> next to live.js, so a gateway behind a path
 * prefix (https://x/chat/live.js) is asked at https://x/chat/events/... The browser reconnects by
 * itself after a network error, sending Last-Event-ID; when the stream ends (event: error or
 * delete, a refusal, the server closing it for good) the widget reopens it with a backoff and
 * ?last_event_id=<the last item id>. Items are de-duplicated by id.
 *
 * Rendering: an ordered list, newest first, at most data-xmppgw-max entries (default 20); each
 * entry has the title (a link when the item's link is http or https), a <time datetime> and the
 * summary; items that are not Atom show their text, shortened. The element is a polite live region.
 * Item content only ever reaches the page through textContent and attributes set one by one.
 * Class hooks: xmppgw-live, xmppgw-live__list, xmppgw-live__item, xmppgw-live__title,
 * xmppgw-live__time, xmppgw-live__summary, xmppgw-live__status; the element's data-xmppgw-state
 * says connecting, open, reconnecting or deleted. Each item is also dispatched on the element as a
 * "xmppgw-live:item" CustomEvent (detail: the item's JSON).
 * Plain ES2017, no dependencies. */
(function () {
  'use strict';

  const ATTR = 'data-xmppgw-node';
  const MAX_DEFAULT = 20; /* entries shown when data-xmppgw-max is absent */
  const MAX_LIMIT = 1000; /* data-xmppgw-max is capped here */
  const RETRY_MIN_MS = 1000; /* first reopen after the stream ended */
  const RETRY_MAX_MS = 30000; /* reopens back off to this */
  const STEADY_MS = 30000; /* a stream open this long starts the backoff again from the minimum */
  const TEXT_MAX = 280; /* characters of a non-Atom payload's text shown */

  if (typeof window === 'undefined' || typeof window.EventSource !== 'function') return;
  if (window.xmppgwLive) return; /* the script included twice */

  /* Where this script came from, without "live.js": the gateway's base URL. currentScript is only
   * set while the script first runs (async scripts included); else find the tag by its name. */
  function scriptBase() {
    let src = document.currentScript && document.currentScript.src;
    if (!src) {
      const tags = document.getElementsByTagName('script');
      for (let i = tags.length - 1; i >= 0 && !src; i--) {
        if (/\/live\.js(?:[?#]|$)/.test(tags[i].src)) src = tags[i].src;
      }
    }
    const url = new URL(src || '/live.js', location.href);
    url.search = '';
    url.hash = '';
    url.pathname = url.pathname.replace(/[^/]*$/, '');
    return url;
  }

  const BASE = scriptBase();

  /* "service/node" into the stream's URL; null when it is not that shape. */
  function streamUrl(spec) {
    const slash = spec.indexOf('/');
    if (slash <= 0 || slash === spec.length - 1) return null;
    const service = spec.slice(0, slash);
    const node = spec.slice(slash + 1);
    const path = `events/${encodeURIComponent(service)}/${node.split('/').map(encodeURIComponent).join('/')}`;
    return new URL(path, BASE);
  }

  function safeHref(link) {
    if (typeof link !== 'string' || !link) return null;
    try {
      const url = new URL(link);
      return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
    } catch (err) {
      return null;
    }
  }

  /* The text of a non-Atom payload, shortened. DOMParser on XML runs no scripts and loads nothing. */
  function payloadText(xml) {
    let text = '';
    try {
      const doc = new DOMParser().parseFromString(xml, 'application/xml');
      if (!doc.getElementsByTagName('parsererror').length) text = doc.documentElement.textContent;
    } catch (err) {
      text = '';
    }
    text = (text || '').replace(/\s+/g, ' ').trim();
    return text.length > TEXT_MAX ? `${text.slice(0, TEXT_MAX - 1)}\u2026` : text;
  }

  function el(name, cls, text) {
    const e = document.createElement(name);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function timeElement(when) {
    const t = el('time', 'xmppgw-live__time');
    if (typeof when !== 'string' || !when) return t;
    t.setAttribute('datetime', when);
    const d = new Date(when);
    t.textContent = Number.isNaN(d.getTime()) ? when : d.toLocaleString();
    return t;
  }

  /* One entry's content from the item's JSON. */
  function renderItem(li, item) {
    li.replaceChildren();
    const isAtom = typeof item.xml !== 'string';
    const title = isAtom ? (item.title || item.id) : (payloadText(item.xml) || item.id);
    const href = isAtom ? safeHref(item.link) : null;
    const head = el(href ? 'a' : 'span', 'xmppgw-live__title', String(title));
    if (href) head.setAttribute('href', href);
    li.append(head, ' ', timeElement(item.published || item.updated));
    if (isAtom && typeof item.summary === 'string' && item.summary) {
      li.append(el('p', 'xmppgw-live__summary', item.summary));
    }
  }

  class Feed {
    constructor(root) {
      this.root = root;
      this.spec = (root.getAttribute(ATTR) || '').trim();
      const max = parseInt(root.getAttribute('data-xmppgw-max'), 10);
      this.max = max > 0 ? Math.min(max, MAX_LIMIT) : MAX_DEFAULT;
      this.url = streamUrl(this.spec);
      this.entries = new Map(); /* item id -> its <li> */
      this.lastId = null; /* the last item id received: where a reopened stream resumes */
      this.es = null;
      this.timer = null;
      this.retryMs = RETRY_MIN_MS;
      this.openedAt = 0; /* when the current stream opened (0: not open) */
      this.root.classList.add('xmppgw-live');
      this.root.setAttribute('aria-live', 'polite');
      this.list = el('ol', 'xmppgw-live__list');
      this.status = el('p', 'xmppgw-live__status');
      this.root.replaceChildren(this.list, this.status);
      if (!this.url) {
        this.setState('error', `not a "service/node": ${this.spec}`);
        return;
      }
      this.open();
    }

    setState(state, text) {
      this.root.setAttribute('data-xmppgw-state', state);
      this.status.textContent = text || '';
      this.status.hidden = !text;
    }

    open() {
      this.timer = null;
      const url = new URL(this.url.href);
      if (this.lastId !== null) url.searchParams.set('last_event_id', this.lastId);
      const es = new EventSource(url.href);
      this.es = es;
      this.setState('connecting');
      es.addEventListener('open', () => {
        this.openedAt = Date.now();
        this.setState('open');
      });
      es.addEventListener('item', (ev) => this.onItem(ev));
      es.addEventListener('retract', (ev) => this.onRetract(ev));
      es.addEventListener('delete', () => this.onDelete());
      es.addEventListener('error', (ev) => this.onError(ev));
    }

    /* The stream is over: reopen it later (after delayMs, else the backoff), from the last id. */
    reopen(text, delayMs) {
      if (this.es) this.es.close();
      this.es = null;
      if (this.timer) return;
      /* A stream refused or ended at once backs off; one that ran for a while starts again. */
      if (this.openedAt && Date.now() - this.openedAt >= STEADY_MS) this.retryMs = RETRY_MIN_MS;
      this.openedAt = 0;
      const jitter = 0.8 + Math.random() * 0.4;
      this.timer = setTimeout(() => this.open(), Math.round((delayMs || this.retryMs) * jitter));
      if (!delayMs) this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
      this.setState('reconnecting', text);
    }

    onError(ev) {
      if (ev.target !== this.es) return;
      if (typeof ev.data === 'string') {
        this.reopen(); /* event: error from the hub: the stream ends */
      } else if (this.es.readyState === EventSource.CLOSED) {
        this.reopen('Live updates are unavailable; retrying.');
      } else {
        this.setState('reconnecting'); /* the browser reconnects by itself */
      }
    }

    onItem(ev) {
      const item = parse(ev.data);
      if (!item || typeof item.id !== 'string') return;
      this.lastId = item.id;
      let li = this.entries.get(item.id);
      if (!li) {
        li = el('li', 'xmppgw-live__item');
        li.setAttribute('data-id', item.id);
        this.entries.set(item.id, li);
      }
      renderItem(li, item);
      this.list.prepend(li); /* newest first; a repeated id moves up, once */
      while (this.list.childElementCount > this.max) {
        const last = this.list.lastElementChild;
        this.entries.delete(last.getAttribute('data-id'));
        last.remove();
      }
      this.root.dispatchEvent(new CustomEvent('xmppgw-live:item', { detail: item }));
    }

    onRetract(ev) {
      const item = parse(ev.data);
      const li = item && this.entries.get(item.id);
      if (!li) return;
      this.entries.delete(item.id);
      li.remove();
    }

    /* The node is gone: its entries go; it may be made again, so look again later. */
    onDelete() {
      this.entries.clear();
      this.list.replaceChildren();
      this.lastId = null;
      this.reopen('This feed was deleted.', RETRY_MAX_MS);
      this.root.setAttribute('data-xmppgw-state', 'deleted');
    }

    close() {
      if (this.es) this.es.close();
      if (this.timer) clearTimeout(this.timer);
      this.es = null;
      this.timer = null;
    }
  }

  function parse(data) {
    try {
      const v = JSON.parse(data);
      return v && typeof v === 'object' ? v : null;
    } catch (err) {
      return null;
    }
  }

  const feeds = new Map(); /* element -> Feed */

  function scan(root) {
    const found = [];
    if (root.nodeType === 1 && root.hasAttribute(ATTR)) found.push(root);
    if (root.querySelectorAll) found.push(...root.querySelectorAll(`[${ATTR}]`));
    for (const e of found) if (!feeds.has(e)) feeds.set(e, new Feed(e));
  }

  function start() {
    scan(document);
    new MutationObserver((records) => {
      for (const r of records) {
        for (const n of r.addedNodes) if (n.nodeType === 1) scan(n);
        for (const n of r.removedNodes) {
          if (n.nodeType !== 1) continue;
          for (const [e, feed] of feeds) {
            if (!e.isConnected && (n === e || n.contains(e))) {
              feed.close();
              feeds.delete(e);
            }
          }
        }
      }
    }).observe(document.documentElement, { childList: true, subtree: true });
  }

  window.xmppgwLive = { base: BASE.href, feeds, scan: () => scan(document) };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
