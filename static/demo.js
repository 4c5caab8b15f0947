/* The demo page at / (static/index.html): its publish form posts an Atom entry's fields to the
 * gateway's demo-only /demo/publish (live.demo_publish) and shows the answer; the embed snippet
 * names this gateway's own address. The feed itself is live.js's. What the form last did is in
 * window.xmppgwPublish.state, for the browser tests. */
(function () {
  'use strict';

  const NODE = 'pubsub.localhost/princely_musings';
  const state = { pending: false, results: [] }; /* results: { status, id, condition } */
  window.xmppgwPublish = { state };

  const $ = (id) => document.getElementById(id);

  function show(text, ok) {
    const el = $('publish-status');
    el.textContent = text;
    el.dataset.ok = ok ? 'true' : 'false';
  }

  async function publish(ev) {
    ev.preventDefault();
    if (state.pending) return;
    state.pending = true;
    $('publish').disabled = true;
    show('publishing…', true);
    const body = {
      node: $('feed').getAttribute('data-xmppgw-node') || NODE,
      title: $('pub-title').value,
      summary: $('pub-summary').value,
      link: $('pub-link').value,
    };
    const rec = { status: 0, id: null, condition: null };
    try {
      const res = await fetch(new URL('demo/publish', location.href), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
        cache: 'no-store',
      });
      rec.status = res.status;
      const answer = await res.json().catch(() => ({}));
      rec.id = typeof answer.id === 'string' ? answer.id : null;
      rec.condition = typeof answer.condition === 'string' ? answer.condition : null;
      if (res.ok && rec.id) show(`published as ${rec.id}`, true);
      else if (res.status === 404) show('this gateway has no demo publishing (live.demo_publish is off)', false);
      else show(`refused: HTTP ${res.status}${rec.condition ? ` (${rec.condition})` : ''}`, false);
    } catch (err) {
      rec.condition = 'network';
      show(`failed: ${err.message}`, false);
    }
    state.results.push(rec);
    state.pending = false;
    $('publish').disabled = false;
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('publish-form').addEventListener('submit', publish);
    if (location.protocol === 'http:' || location.protocol === 'https:') {
      $('embed-snippet').textContent = `<div data-xmppgw-node="${NODE}"></div>\n`
        + `<script src="${new URL('live.js', location.href).href}" async></script>`;
    }
  });
})();
