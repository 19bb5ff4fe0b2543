/// The live status page, `GET /status` on the metrics listener.
///
/// It is a string in the binary, not a file beside it, so an installed or upgraded supervisor always serves
/// the page that matches its own snapshot format, and the page needs nothing else: no build step, no
/// framework, no external resource (it works on a host without internet access). It is fed by the hub's own
/// event stream: one `EventSource` on `/status/events`, whose `snapshot` events (one at once, then one a
/// second) carry everything it shows, and the page computes rates from consecutive snapshots' totals. No
/// polling: the same stream tells the page at once when the supervisor goes away (EventSource then reconnects).
enum StatusPage {
    static let html: String = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sse-hub status</title>
<style>
:root { --fg: #1c2230; --muted: #5b6473; --line: #dde2ea; --bg: #f4f6f9; --card: #fff;
  --ok: #1a7f37; --warn: #a35c00; --bad: #c62828; --s1: #2563eb; --s2: #d9480f; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; align-items: center; gap: .4rem 1.4rem; padding: .9rem 1.5rem;
  background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.15rem; margin: 0; }
header .meta { color: var(--muted); }
header .meta b { color: var(--fg); font-weight: 600; }
#state { margin-left: auto; padding: .15rem .7rem; border-radius: 999px; font-weight: 600; font-size: .85rem;
  color: #fff; background: var(--muted); }
#state[data-state="live"] { background: var(--ok); }
#state[data-state="reconnecting"] { background: var(--warn); }
main { max-width: 1200px; margin: 0 auto; padding: 1rem 1.5rem 2rem; display: grid; gap: 1rem; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: .75rem; }
.card, section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
.card { padding: .6rem .9rem; }
.card .label { color: var(--muted); font-size: .8rem; }
.card .value { font-size: 1.45rem; font-weight: 600; font-variant-numeric: tabular-nums; }
.card.main .value { color: var(--s1); }
section { padding: .9rem 1rem; min-width: 0; }
h2 { font-size: .95rem; margin: 0 0 .6rem; }
.scroll { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: .35rem .7rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { color: var(--muted); font-weight: 600; font-size: .8rem; }
th:nth-child(3), td:nth-child(3) { text-align: left; }
td .dot { display: inline-block; width: .55rem; height: .55rem; border-radius: 50%; margin-right: .4rem; background: var(--warn); }
td .dot.up, td .dot.replacing { background: var(--ok); }
#no-workers { color: var(--muted); margin: .5rem 0 0; }
.legend { display: flex; gap: 1.2rem; color: var(--muted); font-size: .85rem; margin-bottom: .4rem; }
.legend i { display: inline-block; width: 1rem; height: 3px; vertical-align: middle; margin-right: .35rem; }
#chart { display: block; width: 100%; height: 220px; }
@media (max-width: 600px) { header, main { padding-left: .8rem; padding-right: .8rem; } .card .value { font-size: 1.2rem; } }
</style>
</head>
<body>
<header>
  <h1>sse-hub</h1>
  <span class="meta">host <b id="host">&ndash;</b></span>
  <span class="meta">up <b id="uptime">&ndash;</b></span>
  <span class="meta">updated <b id="updated">&ndash;</b></span>
  <span id="state" data-state="connecting">connecting</span>
</header>
<main>
  <div class="cards">
    <div class="card main"><div class="label">Streams</div><div class="value" id="streams">&ndash;</div></div>
    <div class="card"><div class="label">Connections / s</div><div class="value" id="connections-per-second">&ndash;</div></div>
    <div class="card"><div class="label">Events / s</div><div class="value" id="events-per-second">&ndash;</div></div>
    <div class="card"><div class="label">Events delivered</div><div class="value" id="events-delivered">&ndash;</div></div>
    <div class="card"><div class="label">History events</div><div class="value" id="history-events">&ndash;</div></div>
    <div class="card"><div class="label">Publishes</div><div class="value" id="publishes">&ndash;</div></div>
    <div class="card"><div class="label">Slow consumers dropped</div><div class="value" id="slow-consumers-dropped">&ndash;</div></div>
    <div class="card"><div class="label">Worker restarts</div><div class="value" id="worker-restarts">&ndash;</div></div>
    <div class="card"><div class="label">Reloads</div><div class="value" id="reloads">&ndash;</div></div>
    <div class="card"><div class="label">Upgrades</div><div class="value" id="upgrades">&ndash;</div></div>
  </div>
  <section>
    <h2>Workers</h2>
    <div class="scroll">
      <table>
        <thead><tr><th>Worker</th><th>PID</th><th>State</th><th>Streams</th><th>Memory (MiB)</th><th>Uptime</th><th>Restarts</th></tr></thead>
        <tbody id="workers"></tbody>
      </table>
    </div>
    <p id="no-workers" hidden>No worker is running.</p>
  </section>
  <section>
    <h2>Last 5 minutes</h2>
    <div class="legend"><span><i style="background: var(--s1)"></i>streams (left axis)</span><span><i style="background: var(--s2)"></i>events / s (right axis)</span></div>
    <canvas id="chart"></canvas>
  </section>
</main>
<script>
(function () {
  'use strict';
  const WINDOW_MS = 5 * 60 * 1000, MAX_POINTS = 300, STALE_MS = 5000;
  const $ = id => document.getElementById(id);
  const points = [];              // {t, streams, eps}, oldest first, at most MAX_POINTS within WINDOW_MS
  let prev = null, count = 0, es = null, lastAt = 0, retry = null;
  document.body.dataset.snapshots = '0';

  function setState(s) { const el = $('state'); el.textContent = s; el.dataset.state = s; }
  function text(id, v) { $(id).textContent = v; }
  function int(n) { return String(Math.round(Number(n) || 0)); }
  function rate(n) { return n >= 100 ? String(Math.round(n)) : n.toFixed(1); }
  function duration(sec) {
    sec = Math.max(0, Math.floor(Number(sec) || 0));
    const d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60), s = sec % 60;
    return d ? d + 'd ' + h + 'h' : h ? h + 'h ' + m + 'm' : m ? m + 'm ' + s + 's' : s + 's';
  }
  // Per second, between two snapshots' monotonic totals; 0 for the first one, or when the supervisor restarted.
  function perSecond(snap, key) {
    if (!prev) return 0;
    const dt = (snap.time - prev.time) / 1000, delta = (snap.totals[key] || 0) - (prev.totals[key] || 0);
    return dt > 0 && delta > 0 ? delta / dt : 0;
  }

  function cell(tr, value) { const td = document.createElement('td'); td.textContent = value; tr.appendChild(td); return td; }
  function renderWorkers(workers) {
    const rows = workers.slice().sort((a, b) => a.shard - b.shard).map(w => {
      const tr = document.createElement('tr');
      cell(tr, int(w.shard)); cell(tr, int(w.pid));
      const state = cell(tr, ''), dot = document.createElement('span');
      dot.className = 'dot' + (w.state === 'up' || w.state === 'replacing' ? ' ' + w.state : '');
      state.append(dot, String(w.state));
      cell(tr, int(w.streams)); cell(tr, w.memoryKiB == null ? '\u2013' : (w.memoryKiB / 1024).toFixed(1));  // unknown: left out
      cell(tr, duration(w.uptimeSeconds)); cell(tr, int(w.restarts));
      return tr;
    });
    $('workers').replaceChildren(...rows);
    $('no-workers').hidden = rows.length > 0;
  }

  function onSnapshot(e) {
    let snap;
    try { snap = JSON.parse(e.data); } catch (err) { return; }
    if (!snap || typeof snap !== 'object' || !snap.totals) return;
    const t = snap.totals, cps = perSecond(snap, 'connectionsAccepted'), eps = perSecond(snap, 'eventsDelivered');
    text('host', String(snap.host)); document.title = 'sse-hub: ' + snap.host;
    text('uptime', duration(snap.uptimeSeconds));
    text('updated', new Date(snap.time).toLocaleTimeString());
    text('streams', int(snap.streams));
    text('connections-per-second', rate(cps));
    text('events-per-second', rate(eps));
    text('events-delivered', int(t.eventsDelivered));
    text('history-events', int(snap.historyEvents));
    text('publishes', int(t.publishes));
    text('slow-consumers-dropped', int(t.slowConsumersDropped));
    text('worker-restarts', int(t.workerRestarts));
    text('reloads', int(t.reloads));
    text('upgrades', int(t.upgrades));
    renderWorkers(Array.isArray(snap.workers) ? snap.workers : []);
    if (points.length && snap.time < points[points.length - 1].t) points.length = 0;  // the host's clock went back
    // No rate for the first snapshot, nor across a restart of the supervisor: a gap on the chart, not a 0.
    const measured = prev && snap.time > prev.time && (t.eventsDelivered || 0) >= (prev.totals.eventsDelivered || 0);
    points.push({t: snap.time, streams: Number(snap.streams) || 0, eps: measured ? eps : null});
    while (points.length > MAX_POINTS || points[0].t < snap.time - WINDOW_MS) points.shift();
    draw();
    prev = snap; count += 1; lastAt = Date.now();
    document.body.dataset.snapshots = String(count);
    setState('live');
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    return [1, 2, 5, 10].map(m => m * p).find(m => m >= v);
  }
  function draw() {
    const canvas = $('chart'), dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const L = 48, R = w - 48, T = 10, B = h - 24;
    const end = points.length ? points[points.length - 1].t : Date.now(), start = end - WINDOW_MS;
    const maxS = niceMax(Math.max(0, ...points.map(p => p.streams))), maxE = niceMax(Math.max(0, ...points.map(p => p.eps || 0)));
    const x = t => L + (t - start) / WINDOW_MS * (R - L);
    ctx.font = '11px system-ui, sans-serif'; ctx.lineWidth = 1; ctx.textBaseline = 'middle';
    for (let i = 0; i <= 4; i++) {
      const y = B - i / 4 * (B - T);
      ctx.strokeStyle = '#e6e9ef'; ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(R, y); ctx.stroke();
      ctx.fillStyle = '#2563eb'; ctx.textAlign = 'right'; ctx.fillText(+(maxS * i / 4).toFixed(2), L - 6, y);
      ctx.fillStyle = '#d9480f'; ctx.textAlign = 'left'; ctx.fillText(+(maxE * i / 4).toFixed(2), R + 6, y);
    }
    ctx.fillStyle = '#5b6473'; ctx.textAlign = 'center'; ctx.textBaseline = 'top';
    for (let m = 5; m >= 0; m--) ctx.fillText(m ? '-' + m + 'm' : 'now', x(end - m * 60000), B + 6);
    function line(key, max, color) {
      ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.lineJoin = 'round'; ctx.beginPath();
      let last = null;
      for (const p of points) {
        if (p[key] === null) { last = null; continue; }
        const px = x(p.t), py = B - Math.min(p[key] / max, 1) * (B - T);
        // More than a few seconds between two points (the stream was down) is left as a gap.
        if (!last || p.t - last.t > STALE_MS) ctx.moveTo(px, py); else ctx.lineTo(px, py);
        last = p;
      }
      ctx.stroke();
      if (last) { ctx.fillStyle = color; ctx.beginPath(); ctx.arc(x(last.t), B - Math.min(last[key] / max, 1) * (B - T), 3, 0, 2 * Math.PI); ctx.fill(); }
    }
    line('eps', maxE, '#d9480f');
    line('streams', maxS, '#2563eb');
  }

  function connect() {
    clearTimeout(retry);
    if (es) es.close();
    const source = es = new EventSource('/status/events');
    source.addEventListener('snapshot', onSnapshot);
    source.onopen = () => { lastAt = Date.now(); setState(count ? 'live' : 'connecting'); };
    source.onerror = () => {
      setState('reconnecting');
      // CONNECTING: the browser retries by itself. CLOSED (say a 502 from a proxy): it gave up, so retry here.
      if (source.readyState === EventSource.CLOSED) retry = setTimeout(connect, 3000);
    };
  }
  // A stream that stays open but brings nothing (a snapshot is due every second) is reopened.
  setInterval(() => {
    if (es && es.readyState === EventSource.OPEN && Date.now() - lastAt > 3 * STALE_MS) { setState('reconnecting'); connect(); }
  }, 1000);
  window.addEventListener('resize', draw);
  draw();
  connect();
})();
</script>
</body>
</html>
"""#
}
