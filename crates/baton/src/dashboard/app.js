// baton's dashboard. Follows GET /v1/events (server-sent events read with
// fetch, so that the token goes in an Authorization header) and redraws
// the page from each snapshot. Every value from the API is put in the page
// as text (textContent, attributes), never parsed as HTML.
'use strict';

(() => {
  const KEY = 'baton.admin-token';
  const SPAN_MS = 5 * 60 * 1000;
  const SVG = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);

  let token = sessionStorage.getItem(KEY) || '';
  let retries = 0;
  let last = null;
  // Graph points by pool, kept across snapshots (each brings only new ones).
  const series = new Map();

  // ---- building the page ----------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else e.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function table(id, heads, rows) {
    const t = $(id);
    const head = el('tr', {}, heads.map((h) => el('th', { class: h.endsWith('#') ? 'num' : null }, h.replace(/#$/, ''))));
    if (rows.length === 0) {
      rows = [el('tr', {}, el('td', { colspan: heads.length, class: 'muted' }, 'none'))];
    }
    t.replaceChildren(el('thead', {}, head), el('tbody', {}, rows));
  }

  const num = (v, digits = 1) => (v === null || v === undefined ? '–' : Number(v).toFixed(digits));
  const pct = (v) => (v === null || v === undefined ? '–' : (100 * v).toFixed(2) + ' %');
  const ms = (v) => (v === null || v === undefined ? '–' : (v < 10 ? v.toFixed(2) : v.toFixed(0)) + ' ms');
  const td = (v, numeric) => el('td', { class: numeric ? 'num' : null }, v);
  const time = (t) => new Date(t).toLocaleTimeString();

  function badge(text, kind) {
    return el('span', { class: 'badge ' + (kind || '') }, text);
  }

  // A small line graph of one field of a pool's points over SPAN_MS.
  function spark(label, points, field, now, format, cls) {
    const W = 240, H = 40;
    // The last five minutes, or since the first point (at least one).
    const first = points.length ? points[0].t_ms : now;
    const span = Math.max(60000, Math.min(SPAN_MS, now - first));
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('width', W);
    svg.setAttribute('height', H);
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('class', cls);
    const values = points.map((p) => p[field]).filter((v) => v !== null && v !== undefined);
    const max = Math.max(...values, field === 'error_rate' ? 0.01 : 1e-9);
    let run = [];
    const flush = () => {
      if (run.length > 0) {
        const line = document.createElementNS(SVG, 'polyline');
        line.setAttribute('points', run.join(' '));
        svg.append(line);
      }
      run = [];
    };
    for (const p of points) {
      const v = p[field];
      if (v === null || v === undefined) { flush(); continue; }
      const x = ((p.t_ms - (now - span)) / span) * W;
      const y = H - 2 - (v / max) * (H - 4);
      run.push(`${x.toFixed(1)},${y.toFixed(1)}`);
    }
    flush();
    const latest = points.length ? points[points.length - 1][field] : null;
    return el('div', { class: 'spark ' + cls }, el('span', {}, label), svg,
      el('span', { class: 'num', title: 'max ' + format(values.length ? max : null) }, format(latest)));
  }

  // ---- sections -----------------------------------------------------------

  function shareBar(newShare, newLabel, oldLabel) {
    const n = Math.max(0, Math.min(100, newShare));
    return el('div', { class: 'share', 'data-share': n },
      n > 0 ? el('div', { class: 'new', style: null, 'data-width': n }, `${newLabel} ${n}%`) : null,
      n < 100 ? el('div', { class: 'old', 'data-width': 100 - n }, `${oldLabel} ${100 - n}%`) : null);
  }

  // Widths are set through the CSS object model (the policy refuses
  // style attributes written as text).
  function sizeBars(root) {
    for (const d of root.querySelectorAll('[data-width]')) {
      d.style.width = d.getAttribute('data-width') + '%';
    }
  }

  function renderDeploys(s) {
    const root = $('deploys');
    if (s.deploys.length === 0) return;
    const cards = s.deploys.map((d) => {
      const svc = s.services.find((x) => x.name === d.service);
      const state = d.running ? 'running' : d.ok ? 'deployed' : 'failed';
      const kind = d.running ? 'info' : d.ok ? 'ok' : 'bad';
      const judged = d.events.filter((e) => e.event === 'judged');
      const steps = judged.map((e) => e.percent);
      const took = ((d.ended_ms || s.time_ms) - d.started_ms) / 1000;
      const head = el('div', { class: 'card-head' },
        el('h3', {}, `${d.kind} ${d.service} → ${d.version || '?'}`),
        badge(d.strategy || '?'), badge(state, kind),
        el('span', { class: 'muted' }, `started ${time(d.started_ms)}, ${took.toFixed(1)} s`));
      const body = [];
      if (d.share !== null && d.share !== undefined) {
        const old = svc && svc.sets.find((x) => x.version !== d.version);
        body.push(el('p', {}, 'Traffic on the new version:'),
          shareBar(d.share, d.version, old ? old.version : 'old'));
      }
      if (d.strategy === 'canary' || judged.length > 0) {
        const rows = judged.map((e) => el('tr', { 'data-step': e.percent },
          td(e.percent + ' %'), td(e.canary_requests, true), td(pct(e.canary_error_rate), true),
          td(ms(e.canary_p99_ms), true), td(ms(e.stable_p99_ms), true), el('td', { class: 'passed' }, 'passed')));
        if (d.running && d.share !== null && d.share !== undefined && !steps.includes(d.share) && svc) {
          // The step being measured: the sets' numbers over the last seconds.
          const i = svc.sets.findIndex((x) => x.version === d.version);
          const j = svc.sets.findIndex((x) => x.version !== d.version);
          const c = svc.set_rates[i] || {}, st = svc.set_rates[j] || {};
          rows.push(el('tr', { class: 'current', 'data-step': d.share },
            td(d.share + ' %'), td(num(c.requests_per_s) + '/s', true), td(pct(c.error_rate), true),
            td(ms(c.p99_ms), true), td(ms(st.p99_ms), true), td('measuring…')));
        }
        body.push(el('table', { class: 'steps' },
          el('thead', {}, el('tr', {}, el('th', {}, 'step'), el('th', { class: 'num' }, 'canary requests'),
            el('th', { class: 'num' }, 'canary errors'), el('th', { class: 'num' }, 'canary p99'),
            el('th', { class: 'num' }, 'stable p99'), el('th', {}, 'judged'))),
          el('tbody', {}, rows)));
      }
      if (d.error) body.push(el('p', { class: 'error' }, d.error));
      const log = d.events.slice(-6).map((e) => el('li', {}, `${time(e.t_ms)} ${describe(e)}`));
      body.push(el('ul', { class: 'log' }, log));
      return el('div', {
        class: 'card deploy', id: 'deploy-' + d.service, 'data-service': d.service,
        'data-state': state, 'data-share': d.share === null ? '' : d.share, 'data-steps': steps.join(','),
      }, head, body);
    });
    root.replaceChildren(...cards);
    sizeBars(root);
  }

  function describe(e) {
    switch (e.event) {
      case 'started': return `started ${e.version} (${e.strategy}, ${e.instances} instance(s))`;
      case 'ready': return `ready ${e.address} (${e.ready}/${e.of})`;
      case 'smoke': return `smoke check ${e.address}${e.path}: ${e.status}`;
      case 'traffic': return `traffic ${e.percent} % on the new version`;
      case 'judged': return `step ${e.percent} % passed (${e.canary_requests} requests)`;
      case 'draining': return `draining ${e.version}`;
      case 'scaling': return `scaling ${e.from} → ${e.to}`;
      case 'rolling_back': return `rolling back: ${e.reason}`;
      case 'node': return `node ${e.node}: ${e.state} ${e.version}${e.reason ? ': ' + e.reason : ''}`;
      default: return e.event;
    }
  }

  function renderServices(s) {
    const cards = s.services.map((svc) => {
      const pool = svc.pool;
      const state = [];
      if (svc.deploying) state.push(badge('deploying', 'info'));
      if (svc.paused) state.push(badge('paused', 'warn'));
      if (svc.registry_unreachable) state.push(badge('registry unreachable', 'bad'));
      const head = el('div', { class: 'card-head' },
        el('h3', {}, svc.name), badge(svc.kind), el('span', {}, 'version ', el('b', {}, svc.version || '–')),
        el('span', { class: 'muted' }, 'strategy ' + svc.strategy), state,
        pool ? el('span', { class: 'muted' },
          `${num(pool.requests_per_s)} req/s · ${pct(pool.error_rate)} errors · p99 ${ms(pool.p99_ms)}`) : null);
      const sets = svc.sets.map((set, i) => {
        const r = svc.set_rates[i] || {};
        return el('tr', { 'data-version': set.version, 'data-share': set.share },
          td(set.version), td(set.share + ' %', true), td(set.standby ? 'standby' : ''),
          td(set.members.length, true), td(num(r.requests_per_s), true), td(pct(r.error_rate), true), td(ms(r.p99_ms), true));
      });
      const order = (m) => svc.sets.findIndex((x) => x.version === m.version);
      const sorted = (pool ? pool.members.slice() : []).sort((a, b) => order(a) - order(b));
      const members = sorted.map((m) => el('tr', { 'data-address': m.address },
        td(m.address), td(m.version || '–'), el('td', { class: m.up ? 'up' : 'down' }, m.up ? 'up' : 'down'),
        td(m.in_flight, true), td(num(m.requests_per_s), true), td(num(m.errors_per_s, 2), true),
        td(m.failures, true), td(m.connect_failures, true), td(m.retries, true), td(m.ejections, true),
        td(ms(m.p99_ms), true)));
      const tables = el('div', { class: 'tables' },
        el('table', {}, el('thead', {}, el('tr', {}, ['set', 'share#', '', 'ready#', 'req/s#', 'errors#', 'p99#']
          .map((h) => el('th', { class: h.endsWith('#') ? 'num' : null }, h.replace(/#$/, ''))))), el('tbody', {}, sets)),
        el('table', {}, el('thead', {}, el('tr', {}, ['instance', 'version', 'health', 'in flight#', 'req/s#', 'errors/s#', 'failed#', 'connect failures#',
          'retries#', 'ejections#', 'p99#']
          .map((h) => el('th', { class: h.endsWith('#') ? 'num' : null }, h.replace(/#$/, ''))))), el('tbody', {}, members)));
      const points = pool ? (series.get(pool.name) || []) : [];
      const graphs = el('div', { class: 'graphs' },
        spark('req/s', points, 'requests_per_s', s.time_ms, (v) => num(v), 'rps'),
        spark('errors', points, 'error_rate', s.time_ms, pct, 'error-rate'),
        spark('p99', points, 'p99_ms', s.time_ms, ms, 'p99'));
      return el('div', { class: 'card service', id: 'service-' + svc.name, 'data-version': svc.version || '' },
        head, el('div', { class: 'card-body' }, tables, graphs));
    });
    $('services').replaceChildren(...cards);
  }

  function renderTables(s) {
    const classes = ['1xx', '2xx', '3xx', '4xx', '5xx'];
    table('routes', ['route', 'pool', 'req/s#', ...classes.map((c) => c + '#')], s.routes.map((r) =>
      el('tr', {}, td(r.label), td(r.pool), td(num(r.requests_per_s), true), r.by_status.map((n) => td(n, true)))));
    table('listeners', ['listener', 'open#', 'accepted#'], s.listeners.map((l) =>
      el('tr', {}, td(l.name), td(l.open, true), td(l.accepted, true))));
    table('pools', ['pool', 'req/s#', 'errors#', 'p99#', 'up#'], s.pools.map((p) =>
      el('tr', {}, td(p.name), td(num(p.requests_per_s), true), td(pct(p.error_rate), true), td(ms(p.p99_ms), true),
        td(`${p.members.filter((m) => m.up).length}/${p.members.length}`, true))));
    const now = s.time_ms / 1000;
    table('certificates', ['listener', 'source', 'names', 'expires', 'days left#'], s.certificates.certificates.map((c) => {
      const days = c.not_after_unix ? (c.not_after_unix - now) / 86400 : null;
      return el('tr', {}, td(c.listener), td(c.file ? `${c.source} (${c.file})` : c.source), td(c.names.join(', ')),
        td(c.not_after || 'not issued yet'),
        el('td', { class: 'num ' + (days !== null && days < 14 ? 'down' : '') }, days === null ? '–' : days.toFixed(0)));
    }));
    const acme = s.certificates.acme;
    $('acme').textContent = acme
      ? `ACME (${acme.names.join(', ')}): ${acme.state}, ${acme.issued} issued of ${acme.orders} orders` +
        (acme.failures ? `, ${acme.failures} failure(s) in a row: ${acme.last_error || ''}` : '') +
        (acme.renew_at ? `, renews at ${acme.renew_at}` : '')
      : '';
    const history = s.services.flatMap((svc) => svc.history.map((h) => ({ service: svc.name, ...h })));
    history.sort((a, b) => (a.started < b.started ? 1 : -1));
    table('history', ['started', 'service', 'version', 'outcome'], history.slice(0, 30).map((h) => {
      const outcome = String(h.outcome);
      const cls = outcome.startsWith('failed') ? 'down' : outcome === 'deployed' ? 'up' : '';
      return el('tr', {}, td(h.started), td(h.service), td(h.version), el('td', { class: cls }, outcome));
    }));
  }

  function syncServiceSelect(s) {
    const select = $('act-service');
    const names = s.services.filter((x) => x.kind !== 'discovered').map((x) => x.name);
    const have = Array.from(select.options).map((o) => o.value);
    if (names.join('\n') !== have.join('\n')) {
      const keep = select.value;
      select.replaceChildren(...names.map((n) => el('option', { value: n }, n)));
      if (names.includes(keep)) select.value = keep;
    }
  }

  function render(s, fresh) {
    if (fresh) series.clear();
    const pools = s.services.map((x) => x.pool).filter(Boolean).concat(s.pools);
    for (const p of pools) {
      const points = (series.get(p.name) || []).concat(p.series).filter((x) => x.t_ms > s.time_ms - SPAN_MS);
      series.set(p.name, points);
    }
    for (const name of Array.from(series.keys())) {
      if (!pools.some((p) => p.name === name)) series.delete(name);
    }
    last = s;
    $('clock').textContent = time(s.time_ms);
    renderDeploys(s);
    renderServices(s);
    renderTables(s);
    syncServiceSelect(s);
    document.body.dataset.snapshots = String(Number(document.body.dataset.snapshots) + 1);
  }

  // ---- the connection -----------------------------------------------------

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (token) h.Authorization = 'Bearer ' + token;
    return h;
  }

  function setConn(state, text) {
    const c = $('conn');
    c.dataset.state = state;
    c.textContent = text;
  }

  function showLogin(message) {
    $('main').hidden = true;
    $('forget').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    setConn('down', 'token needed');
    $('token').focus();
  }

  function showMain() {
    $('login').hidden = true;
    $('main').hidden = false;
    $('forget').hidden = !token;
  }

  async function connect() {
    setConn('connecting', 'connecting…');
    let response;
    try {
      response = await fetch('/v1/events', { headers: headers(), cache: 'no-store' });
    } catch (e) {
      reconnect();
      return;
    }
    if (response.status === 401) {
      showLogin(token ? 'That token was refused.' : '');
      return;
    }
    if (!response.ok || !response.body) {
      reconnect();
      return;
    }
    showMain();
    retries = 0;
    setConn('live', 'live');
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let fresh = true;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, ''));
          const event = (block.split('\n').find((l) => l.startsWith('event:')) || 'event: message').slice(6).trim();
          if (event === 'snapshot' && data.length > 0) {
            render(JSON.parse(data.join('\n')), fresh);
            fresh = false;
          }
        }
      }
    } catch (e) {
      // The stream broke: connect again.
    }
    reconnect();
  }

  function reconnect() {
    const delay = Math.min(10000, 500 * 2 ** retries);
    retries += 1;
    setConn('down', `disconnected; again in ${(delay / 1000).toFixed(1)} s`);
    setTimeout(connect, delay);
  }

  // ---- actions (the same API, the same token) -----------------------------

  async function act(path, body, question) {
    if (question && !window.confirm(question)) return;
    const out = $('act-result');
    out.textContent = `${path}…`;
    try {
      const r = await fetch(path, {
        method: 'POST', headers: headers({ 'Content-Type': 'application/json' }), body: JSON.stringify(body),
      });
      const text = await r.text();
      const lastLine = text.trim().split('\n').pop();
      let message = `${r.status}`;
      try {
        const v = JSON.parse(lastLine);
        const o = v.outcome || v;
        message = o.ok ? 'done' : (o.error || (o.errors || []).join('; ') || message);
      } catch (e) {
        message = `${r.status} ${text.slice(0, 200)}`;
      }
      out.textContent = `${path}: ${message}`;
    } catch (e) {
      out.textContent = `${path}: ${e}`;
    }
  }

  function wire() {
    const service = () => $('act-service').value;
    $('act-deploy').addEventListener('click', () => {
      const version = $('act-version').value.trim();
      const strategy = $('act-strategy').value;
      const body = { service: service() };
      if (version) body.version = version;
      if (strategy) body.strategy = strategy;
      act('/v1/deploy', body, `Deploy ${service()} ${version || '(its version)'}?`);
    });
    $('act-rollback').addEventListener('click', () =>
      act('/v1/rollback', { service: service() }, `Roll ${service()} back?`));
    $('act-pause').addEventListener('click', () => act('/v1/pause', { service: service() }));
    $('act-resume').addEventListener('click', () => act('/v1/resume', { service: service() }));
    $('login').addEventListener('submit', (e) => {
      e.preventDefault();
      const entered = $('token').value.trim();
      $('token').value = '';
      if (!/^[\x21-\x7e]+$/.test(entered)) {
        showLogin('A token is printable ASCII without spaces.');
        return;
      }
      token = entered;
      sessionStorage.setItem(KEY, token);
      connect();
    });
    $('forget').addEventListener('click', () => {
      sessionStorage.removeItem(KEY);
      token = '';
      location.reload();
    });
  }

  wire();
  connect();
  // For a test or a console: the last snapshot.
  window.batonLast = () => last;
})();
