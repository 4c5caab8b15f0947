// Draws the side-by-side results of bench/cm.mjs as one SVG: a panel of horizontal bars per figure,
// one bar per column (medians), xmppgw's bars in one colour and its peers' in another. Plain text,
// no library.

const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));

const num = (v) => {
  if (!Number.isFinite(v)) return '-';
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
};

/** SVG text of the chart for a cm.mjs result ({ columns, figures, medians, when, header }). */
export function renderSvg(result) {
  const cols = Object.keys(result.columns).filter((c) => result.medians[c]);
  const keys = result.figures.map((f) => f.key);
  const lastRss = keys.filter((k) => k.startsWith('rss')).at(-1);
  const lastSetup = keys.filter((k) => k.startsWith('setup')).at(-1);
  const wanted = ['rate', 'cmUs', 'rttP50', 'rttP99', lastRss, lastSetup].filter(Boolean);
  const figs = wanted.map((k) => result.figures.find((f) => f.key === k)).filter(Boolean);

  const W = 960;
  const labelW = 170;
  const rowH = 18;
  const panelH = 34 + rowH * cols.length;
  const perRow = 2;
  const panelW = W / perRow;
  const H = 56 + Math.ceil(figs.length / perRow) * panelH + 40;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="10" y="22" font-size="15" font-weight="bold">xmppgw beside its peers, one Prosody on loopback (medians of ${result.opts.runs} run(s))</text>`);
  out.push(`<text x="10" y="42" fill="#555">${esc(result.when)}; ${esc((result.header?.[1] ?? '').replace(/^machine:\s*/, ''))}</text>`);
  figs.forEach((f, i) => {
    const x0 = (i % perRow) * panelW + 10;
    const y0 = 56 + Math.floor(i / perRow) * panelH;
    const vals = cols.map((c) => result.medians[c][f.key]);
    const max = Math.max(...vals.filter(Number.isFinite), 0) || 1;
    const inner = panelW - labelW - 70;
    out.push(`<text x="${x0}" y="${y0 + 16}" font-weight="bold">${esc(f.label)}${f.lower ? ' (lower is better)' : ' (higher is better)'}</text>`);
    cols.forEach((c, j) => {
      const y = y0 + 26 + j * rowH;
      const v = vals[j];
      const w = Number.isFinite(v) ? Math.max(1, (v / max) * inner) : 0;
      const gw = c.startsWith('gw-');
      out.push(`<text x="${x0 + labelW - 6}" y="${y + 12}" text-anchor="end">${esc(result.columns[c].label)}</text>`);
      if (w) out.push(`<rect x="${x0 + labelW}" y="${y + 2}" width="${w.toFixed(1)}" height="${rowH - 5}" fill="${gw ? '#2b6cb0' : '#a0aec0'}"/>`);
      out.push(`<text x="${x0 + labelW + w + 4}" y="${y + 12}" fill="#333">${num(v)}</text>`);
    });
  });
  out.push(`<text x="10" y="${H - 24}" fill="#555">CPU and RSS are the connection manager's process; for Prosody's own endpoints they include its c2s.</text>`);
  out.push(`<text x="10" y="${H - 8}" fill="#555">nxb = node-xmpp-bosh 0.7.10 (its WebSocket speaks the pre-RFC framing). Upstream plain TCP unless the label says STARTTLS.</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
