// callvcr inspector: one page over the admin API on the same listener. No framework and no network
// beyond this origin: every view is built from /mock/admin/* answers, kept live by the server-sent
// event stream at /mock/admin/events (no polling). Everything the API returns is data from the traffic
// (paths, bodies, headers), so it is only ever put in the page as text, never as markup.
'use strict';

(() => {
  // ---------------------------------------------------------------- small DOM helpers

  const $ = (id) => document.getElementById(id);
  const SVG = 'http://www.w3.org/2000/svg';

  /** An element: h('td', {class: 'x', dataset: {seq: 1}, onclick: f}, 'text', child, ...). */
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, kids);
    return el;
  }

  /** An SVG element, same calling shape as h(). */
  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(SVG, tag);
    setAttrs(el, attrs);
    append(el, kids);
    return el;
  }

  function setAttrs(el, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function append(el, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === undefined || k === null || k === false) continue;
      el.append(k instanceof Node ? k : String(k));
    }
  }

  // ---------------------------------------------------------------- state

  const S = {
    health: null,
    clock: { base: null, local: 0, frozen: false }, // virtual now = base + (Date.now() - local) unless frozen
    journal: new Map(), // seq -> entry
    journalDuring: null, // entries that arrived by event while GET /journal was in flight
    rows: new Map(), // seq -> <tr>
    selected: null,
    missDetail: new Map(), // seq -> {state: 'loading'|'ok'|'error', data, message}
    missCards: new Map(), // seq -> card element
    ws: new Map(), // session id -> {id, url, topics, queued, open, frames, framesState}
    wsSelected: null,
    sessions: [],
    machines: [],
    partSel: new Map(), // session id -> participant id shown
    tokens: [],
    faults: [],
    cassette: null,
    view: 'journal',
    stale: new Set(), // views to reload when shown
    deadlines: [], // state timers and delayed moves, ms on the virtual clock
    hosts: new Set(),
    scopes: new Set(),
    recordCols: false,
  };
  const VIEWS = ['journal', 'misses', 'ws', 'calls', 'tokens', 'faults', 'cassette'];

  // ---------------------------------------------------------------- the admin API

  /**
   * One admin call. Resolves to {ok, status, data, message, missing}; `missing` says the route does
   * not exist in this callvcr (an older binary), so the view can say so instead of breaking.
   */
  async function api(method, path, body) {
    const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
    if (method !== 'GET') {
      // The admin API refuses a state-changing call from a page unless it is JSON (415).
      init.headers['Content-Type'] = 'application/json';
      if (body !== undefined) init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch('/mock/admin' + path, init);
    } catch (e) {
      return { ok: false, status: 0, data: null, message: 'callvcr did not answer (' + e.message + '); is it still running?' };
    }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = text; }
    const message = (data && typeof data === 'object' && data.message) || (typeof data === 'string' && data) || res.statusText;
    const missing = res.status === 405 || (res.status === 404 && /^no admin route/.test(String(message)))
      || (res.status === 404 && !(data && typeof data === 'object'));
    const r = { ok: res.ok, status: res.status, data, message: String(message || ''), missing };
    if (res.status === 401) showAuthBanner(r.message);
    else if (res.status === 403) showBanner('callvcr refused this page (403): ' + r.message);
    return r;
  }

  /** What a view shows when its route failed. */
  function failureText(r, call) {
    if (r.missing) return 'Not available in this callvcr: ' + call + ' answered ' + r.status + '. A newer callvcr serves it.';
    if (r.status === 401) return 'Not signed in (401): open /ui?token=<admin.token> once.';
    if (r.status === 0) return r.message;
    return call + ' answered ' + r.status + ': ' + r.message;
  }

  function showBanner(text) {
    const b = $('banner');
    b.textContent = text;
    b.hidden = false;
  }

  function showAuthBanner(message) {
    showBanner('This callvcr has admin.token set and this page is not signed in (401' + (message ? ': ' + message : '') +
      '). Open ' + location.origin + '/ui?token=<your admin.token> once; callvcr then keeps a cookie for this page.');
  }

  /** Puts (or clears) a notice at the top of a view. */
  function viewNotice(view, text) {
    const sec = $('view-' + view);
    let p = sec.querySelector(':scope > .unavail');
    if (!text) { if (p) p.remove(); return; }
    if (!p) { p = h('p', { class: 'unavail', role: 'note' }); sec.prepend(p); }
    p.textContent = text;
  }

  // ---------------------------------------------------------------- formatting

  function parseTime(t) {
    if (t === undefined || t === null || t === '') return NaN;
    if (typeof t === 'number') return t;
    return Date.parse(t);
  }

  /** The virtual clock's now, in ms. */
  function now() {
    const c = S.clock;
    if (c.base === null) return NaN;
    return c.frozen ? c.base : c.base + (Date.now() - c.local);
  }

  function iso(ms) {
    return Number.isFinite(ms) ? new Date(ms).toISOString() : '—';
  }

  /** A time of the virtual clock, short: HH:MM:SS.mmm, with the date when it is not today's. */
  function shortTime(t) {
    const ms = parseTime(t);
    if (!Number.isFinite(ms)) return t ? String(t) : '';
    const full = new Date(ms).toISOString();
    const today = Number.isFinite(now()) ? iso(now()).slice(0, 10) : full.slice(0, 10);
    return (full.slice(0, 10) === today ? '' : full.slice(5, 10) + ' ') + full.slice(11, 23);
  }

  function duration(ms) {
    if (!Number.isFinite(ms)) return '—';
    const a = Math.abs(ms);
    let t;
    if (a < 1000) t = Math.round(a) + ' ms';
    else if (a < 60e3) t = (a / 1000).toFixed(a < 10e3 ? 1 : 0) + ' s';
    else if (a < 3600e3) t = Math.floor(a / 60e3) + ' min ' + Math.floor((a % 60e3) / 1000) + ' s';
    else if (a < 86400e3) t = Math.floor(a / 3600e3) + ' h ' + Math.floor((a % 3600e3) / 60e3) + ' min';
    else t = Math.floor(a / 86400e3) + ' d ' + Math.floor((a % 86400e3) / 3600e3) + ' h';
    return (ms < 0 ? '−' : '') + t;
  }

  /** A path as text that may wrap after each `/`, `?` or `&` (and nowhere else unless it must). */
  function breakable(text) {
    const out = [];
    for (const piece of String(text).split(/(?<=[/?&])/)) out.push(piece, h('wbr'));
    return out;
  }

  function kindOf(answeredBy) {
    return String(answeredBy || '').split(':')[0];
  }

  function isMiss(e) {
    return e.answered_by === 'miss' || String(e.detail || '').startsWith('miss');
  }

  function answerBadge(answeredBy) {
    const k = kindOf(answeredBy);
    return h('span', { class: 'badge k-' + (k || 'none') }, answeredBy || '—');
  }

  function statusClass(st) {
    const n = Number(st);
    if (!n) return 's0';
    return 's' + Math.floor(n / 100);
  }

  function valueText(v) {
    if (v === undefined) return '(absent)';
    if (typeof v === 'string') return v;
    return JSON.stringify(v);
  }

  // ---------------------------------------------------------------- bodies, headers, JSON

  /** A body as the API gives it (a string, {json}, {text}, {base64} or a JSON value) → what to show. */
  function bodyOf(b) {
    if (b === undefined || b === null || b === '') return { kind: 'empty' };
    if (typeof b === 'string') {
      const t = b.trim();
      if (t.startsWith('{') || t.startsWith('[')) {
        try { return { kind: 'json', value: JSON.parse(t) }; } catch { /* text */ }
      }
      return { kind: 'text', text: b };
    }
    if (typeof b === 'object' && !Array.isArray(b)) {
      if ('json' in b) return { kind: 'json', value: b.json };
      if ('text' in b && typeof b.text === 'string') return b.text === '' ? { kind: 'empty' } : bodyOf(b.text);
      if ('base64' in b && typeof b.base64 === 'string') return { kind: 'binary', text: b.base64 };
    }
    return { kind: 'json', value: b };
  }

  const MAX_TEXT = 200000;

  function bodyView(b) {
    const v = bodyOf(b);
    if (v.kind === 'empty') return h('p', { class: 'muted' }, '(no body)');
    if (v.kind === 'binary') {
      const bytes = Math.floor(v.text.length * 3 / 4);
      return h('div', null, h('p', { class: 'muted' }, 'binary, about ' + bytes + ' bytes (base64 below)'),
        h('pre', { class: 'body' }, v.text.slice(0, MAX_TEXT)));
    }
    if (v.kind === 'text') {
      const cut = v.text.length > MAX_TEXT;
      return h('div', null, h('pre', { class: 'body' }, v.text.slice(0, MAX_TEXT)),
        cut && h('p', { class: 'muted' }, 'shown up to ' + MAX_TEXT + ' characters of ' + v.text.length));
    }
    return jsonView(v.value);
  }

  /** Pretty-printed JSON with its keys, strings and numbers marked for colour. */
  function jsonView(value) {
    const pre = h('pre', { class: 'body json' });
    let budget = MAX_TEXT;
    const put = (text, cls) => {
      if (budget <= 0) return;
      const t = text.length > budget ? text.slice(0, budget) : text;
      budget -= t.length;
      pre.append(cls ? h('span', { class: cls }, t) : t);
    };
    const walk = (v, ind) => {
      if (v === null) put('null', 'j-lit');
      else if (typeof v === 'string') put(JSON.stringify(v), 'j-str');
      else if (typeof v === 'number') put(String(v), 'j-num');
      else if (typeof v === 'boolean') put(String(v), 'j-lit');
      else if (Array.isArray(v)) {
        if (!v.length) { put('[]'); return; }
        put('[\n');
        v.forEach((x, i) => { put(ind + '  '); walk(x, ind + '  '); put(i < v.length - 1 ? ',\n' : '\n'); });
        put(ind + ']');
      } else if (typeof v === 'object') {
        const ks = Object.keys(v);
        if (!ks.length) { put('{}'); return; }
        put('{\n');
        ks.forEach((k, i) => {
          put(ind + '  '); put(JSON.stringify(k), 'j-key'); put(': ');
          walk(v[k], ind + '  '); put(i < ks.length - 1 ? ',\n' : '\n');
        });
        put(ind + '}');
      } else put(String(v));
    };
    walk(value, '');
    if (budget <= 0) pre.append(h('span', { class: 'muted' }, '\n… (cut at ' + MAX_TEXT + ' characters)'));
    return pre;
  }

  /** Headers as [[k, v]], {k: v | [v]} or absent → [[k, v]]. */
  function headerList(hs) {
    if (!hs) return [];
    if (Array.isArray(hs)) return hs.map((p) => (Array.isArray(p) ? [String(p[0]), valueText(p[1])] : [String(p.name ?? p.key ?? ''), valueText(p.value)]));
    const out = [];
    for (const [k, v] of Object.entries(hs)) {
      if (Array.isArray(v)) v.forEach((x) => out.push([k, valueText(x)]));
      else out.push([k, valueText(v)]);
    }
    return out;
  }

  function headersView(hs) {
    const list = headerList(hs);
    if (!list.length) return h('p', { class: 'muted' }, '(no headers)');
    return h('table', { class: 'kv' }, h('tbody', null, list.map(([k, v]) => h('tr', null, h('th', { scope: 'row' }, k), h('td', null, v)))));
  }

  function dl(pairs) {
    return h('dl', { class: 'pairs' }, pairs.filter((p) => p && p[1] !== undefined && p[1] !== null && p[1] !== '')
      .map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v))));
  }

  // ---------------------------------------------------------------- health and the clock

  function applyHealth(hl) {
    if (!hl || typeof hl !== 'object') return;
    S.health = hl;
    $('fact-mode').textContent = hl.mode || '?';
    $('fact-cassette').textContent = hl.cassette || '—';
    const recording = String(hl.mode || '').startsWith('record');
    document.body.classList.toggle('recording', recording);
    $('record-note').hidden = !recording;
    if (hl.clock && hl.clock.now) setClock(hl.clock.now, hl.clock.frozen);
    if (!$('cassette-name').value && hl.cassette) $('cassette-name').value = hl.cassette;
  }

  function setClock(t, frozen) {
    const ms = parseTime(t);
    if (!Number.isFinite(ms)) return;
    S.clock.base = ms;
    S.clock.local = Date.now();
    if (frozen !== undefined) S.clock.frozen = !!frozen;
    paintClock();
    renderTokens();
  }

  function paintClock() {
    const n = now();
    const text = iso(n);
    $('fact-clock').textContent = text;
    $('clock-now').textContent = text;
    const fz = $('clock-frozen');
    fz.textContent = S.clock.frozen ? 'frozen: moves only when advanced or set' : 'ticking with real time';
    fz.className = 'badge ' + (S.clock.frozen ? 'k-callvcr' : 'k-hit');
    const set = $('clock-set');
    if (!set.dataset.edited && document.activeElement !== set && Number.isFinite(n)) set.value = text;
  }

  async function loadClock() {
    const r = await api('GET', '/clock');
    if (r.ok && r.data) setClock(r.data.now, r.data.frozen);
  }

  async function moveClock(body) {
    const msg = $('clock-msg');
    msg.textContent = 'moving the clock…';
    const r = await api('POST', '/clock', body);
    if (!r.ok) { msg.textContent = failureText(r, 'POST /mock/admin/clock'); return; }
    setClock(r.data.now);
    msg.textContent = 'The clock now reads ' + r.data.now + '.';
    loadTokens();
  }

  // ---------------------------------------------------------------- journal

  let journalPending = false;
  function renderJournalSoon() {
    if (journalPending) return;
    journalPending = true;
    requestAnimationFrame(() => { journalPending = false; renderJournal(); });
  }

  const MAX_ROWS = 1500;

  function journalFilter() {
    const words = $('f-text').value.toLowerCase().split(/\s+/).filter(Boolean);
    const host = $('f-host').value;
    const kind = $('f-kind').value;
    const scope = $('f-scope').value;
    return (e) => {
      if (host && e.host !== host) return false;
      if (kind && kindOf(e.answered_by) !== kind) return false;
      if (scope === '-' && e.scope) return false;
      if (scope && scope !== '-' && e.scope !== scope) return false;
      if (words.length) {
        const hay = [e.seq, e.method, e.host, e.path, e.query, e.status, e.answered_by, e.detail, e.scope,
          (e.redacted || []).join(' ')].join(' ').toLowerCase();
        if (!words.every((w) => hay.includes(w))) return false;
      }
      return true;
    };
  }

  function journalRow(e) {
    const tr = h('tr', {
      tabindex: '-1',
      dataset: { seq: e.seq, kind: kindOf(e.answered_by), answered: e.answered_by || '', status: e.status ?? '' },
      'aria-selected': String(S.selected === e.seq),
    },
    h('td', { class: 'num' }, e.seq),
    h('td', { class: 'time', title: e.at || '' }, shortTime(e.at)),
    h('td', { class: 'method' }, e.method || ''),
    h('td', { class: 'host' }, e.host || ''),
    h('td', { class: 'path', title: (e.path || '') + (e.query ? '?' + e.query : '') }, breakable((e.path || '') + (e.query ? '?' + e.query : ''))),
    h('td', { class: 'status ' + statusClass(e.status) }, e.status === 0 ? '0 (none)' : e.status ?? ''),
    h('td', { class: 'answered' }, answerBadge(e.answered_by)),
    h('td', { class: 'detail-cell' }, e.detail || ''),
    h('td', { class: 'scope-cell' }, e.scope || ''),
    h('td', { class: 'rec-col' }, e.stored === undefined ? '' : e.stored ? 'stored' : 'not stored'),
    h('td', { class: 'rec-col' }, Array.isArray(e.redacted) ? e.redacted.join(', ') : ''));
    tr._entry = e;
    return tr;
  }

  function renderJournal() {
    const all = [...S.journal.values()].sort((a, b) => a.seq - b.seq);
    const keep = journalFilter();
    const shown = all.filter(keep);
    const cut = shown.length > MAX_ROWS ? shown.slice(shown.length - MAX_ROWS) : shown;
    const wrap = $('journal-wrap');
    const atBottom = wrap.scrollHeight - wrap.scrollTop - wrap.clientHeight < 40;
    const focusedSeq = document.activeElement && document.activeElement.closest && document.activeElement.closest('#journal-body tr')
      ? Number(document.activeElement.dataset.seq) : null;
    const frag = document.createDocumentFragment();
    for (const e of cut) {
      let tr = S.rows.get(e.seq);
      if (!tr || tr._entry !== e) { tr = journalRow(e); S.rows.set(e.seq, tr); }
      tr.setAttribute('aria-selected', String(S.selected === e.seq));
      frag.append(tr);
    }
    const body = $('journal-body');
    body.replaceChildren(frag);
    // One row is in the tab order: the selected one, else the last one (arrow keys move between them).
    const tabRow = (S.selected !== null && S.rows.get(S.selected) && S.rows.get(S.selected).isConnected)
      ? S.rows.get(S.selected) : body.lastElementChild;
    for (const tr of body.children) tr.tabIndex = tr === tabRow ? 0 : -1;
    if (focusedSeq !== null && S.rows.get(focusedSeq) && S.rows.get(focusedSeq).isConnected) S.rows.get(focusedSeq).focus({ preventScroll: true });
    $('journal-empty').hidden = all.length > 0;
    $('journal-shown').textContent = shown.length === all.length ? all.length + ' requests'
      : shown.length + ' of ' + all.length + ' requests match';
    if (cut.length < shown.length) $('journal-shown').textContent += ' (the last ' + MAX_ROWS + ' shown)';
    $('count-journal').textContent = all.length ? String(all.length) : '';
    if ($('f-follow').checked && atBottom) wrap.scrollTop = wrap.scrollHeight;
  }

  function noteEntry(e) {
    if (e.host && !S.hosts.has(e.host)) {
      S.hosts.add(e.host);
      addOption($('f-host'), e.host);
    }
    if (e.scope && !S.scopes.has(e.scope)) {
      S.scopes.add(e.scope);
      addOption($('f-scope'), e.scope);
      $('journal-table').classList.add('with-scope');
    }
    if (!S.recordCols && (e.stored !== undefined || e.redacted !== undefined)) setRecordCols(true);
  }

  function addOption(sel, value) {
    const opts = [...sel.options].slice(sel.id === 'f-scope' ? 2 : 1);
    const before = opts.find((o) => o.value > value);
    sel.insertBefore(h('option', { value }, value), before || null);
  }

  function setRecordCols(on) {
    S.recordCols = on;
    $('journal-table').classList.toggle('with-record', on);
  }

  async function loadJournal() {
    S.journalDuring = new Map();
    const r = await api('GET', '/journal');
    const during = S.journalDuring;
    S.journalDuring = null;
    if (!r.ok || !Array.isArray(r.data)) {
      viewNotice('journal', failureText(r, 'GET /mock/admin/journal'));
      return;
    }
    viewNotice('journal', null);
    const m = new Map();
    for (const e of r.data) m.set(e.seq, e);
    for (const [k, v] of during) m.set(k, v);
    S.journal = m;
    S.rows.clear();
    for (const e of m.values()) noteEntry(e);
    renderJournalSoon();
    renderMissesSoon();
  }

  /** Entries the page keeps (the oldest go first), so a long run does not fill the tab's memory. */
  const KEEP = 5000;

  function onJournalEvent(e) {
    if (!e || e.seq === undefined) return;
    S.journal.set(e.seq, e);
    // The map holds entries in the order they came, oldest first.
    while (S.journal.size > KEEP) {
      const seq = S.journal.keys().next().value;
      S.journal.delete(seq); S.rows.delete(seq); S.missCards.delete(seq); S.missDetail.delete(seq);
    }
    if (S.journalDuring) S.journalDuring.set(e.seq, e);
    noteEntry(e);
    renderJournalSoon();
    if (isMiss(e)) renderMissesSoon();
    if (Number(e.status) === 101) loadWsSoon();
    const kind = kindOf(e.answered_by);
    // No event says a token was issued or a fault rule fired: the answers that do it say so.
    if (e.answered_by === 'overlay:auth') loadSoon('tokens', 60);
    if (kind === 'fault') loadSoon('faults', 60);
    if (S.view === 'cassette') loadSoon('cassette', 300); else S.stale.add('cassette');
  }

  /** `captured`: the request and answer of these entries can now be read in full. */
  function onCaptured(d) {
    const seqs = (d && Array.isArray(d.seqs)) ? d.seqs.map(Number) : [];
    for (const seq of seqs) {
      const m = S.missDetail.get(seq);
      if (m && (m.state !== 'ok' || !m.data || m.data.captured === false)) loadMiss(seq);
      if (S.selected === seq && S.detailUncaptured === seq) loadDetail(seq);
    }
  }

  /** `changed`: an admin call changed something; refetch what it touched. */
  function onChanged(d) {
    const route = String((d && d.route) || '');
    if (d && d.now) setClock(d.now);
    if (route === '/reset' || route === '/cassette') { refreshAll(); return; }
    if (route.startsWith('/tokens')) loadSoon('tokens', 30);
    else if (route.startsWith('/faults')) loadSoon('faults', 30);
    else if (route.startsWith('/session')) loadSoon('calls', 30);
    else if (route.startsWith('/ws')) loadSoon('ws', 60);
    else if (route === '/clock') { loadSoon('tokens', 30); loadSoon('calls', 30); }
  }

  function selectRow(seq, focus) {
    S.selected = seq;
    $('journal-split').classList.add('has-detail');
    for (const tr of $('journal-body').children) {
      const on = Number(tr.dataset.seq) === seq;
      tr.setAttribute('aria-selected', String(on));
      tr.tabIndex = on ? 0 : -1;
      if (on && focus) tr.focus();
    }
    loadDetail(seq);
  }

  function rowKeys(ev) {
    const tr = ev.target.closest('tr[data-seq]');
    if (!tr) return;
    const seq = Number(tr.dataset.seq);
    const move = (to) => {
      if (!to) return;
      ev.preventDefault();
      tr.tabIndex = -1;
      to.tabIndex = 0;
      to.focus();
    };
    switch (ev.key) {
      case 'Enter': case ' ': ev.preventDefault(); selectRow(seq, true); break;
      case 'ArrowDown': move(tr.nextElementSibling); break;
      case 'ArrowUp': move(tr.previousElementSibling); break;
      case 'Home': move(tr.parentElement.firstElementChild); break;
      case 'End': move(tr.parentElement.lastElementChild); break;
      default:
    }
  }

  function closeDetail() {
    const seq = S.selected;
    S.selected = null;
    $('journal-split').classList.remove('has-detail');
    $('journal-detail').replaceChildren();
    renderJournal();
    const tr = S.rows.get(seq);
    if (tr && tr.isConnected) { tr.tabIndex = 0; tr.focus(); }
  }

  function closeButton() {
    return h('button', { type: 'button', class: 'quiet close', 'aria-label': 'Close the request details (Escape)', onclick: closeDetail }, 'Close');
  }

  let detailAsked = 0;
  async function loadDetail(seq) {
    const pane = $('journal-detail');
    const e = S.journal.get(seq) || { seq };
    pane.replaceChildren(closeButton(), h('h2', null, '#' + seq + ' ' + (e.method || '') + ' ' + (e.host || '') + (e.path || '')), h('p', { class: 'muted' }, 'Loading…'));
    const ask = ++detailAsked;
    const r = await api('GET', '/journal/' + seq);
    if (S.selected !== seq || ask !== detailAsked) return;
    S.detailUncaptured = r.ok && r.data && r.data.captured === false ? seq : null;
    if (r.ok && r.data && typeof r.data === 'object') {
      const d = Object.assign({}, e, r.data.entry || {}, r.data);
      renderDetail(pane, d, r.data.captured === false
        ? 'callvcr did not keep this request in full' + (r.data.why ? ': ' + r.data.why : '') + '. Only its journal line is shown.' : null);
    }
    else renderDetail(pane, e, r.missing ? 'The request and response are not available in this callvcr (GET /mock/admin/journal/' + seq + ' answered ' + r.status + '): only the journal line is shown.' : failureText(r, 'GET /mock/admin/journal/' + seq));
  }

  const MARKER = /\[REDACTED\]|%5BREDACTED%5D/i;

  /**
   * What callvcr redacted in a captured exchange, found where the marker stands (headers, query,
   * form and JSON fields), as `request.header.authorization`, `response.body.$.access_token`,
   * `request.body.code`: names only, since the values are gone.
   */
  function redactedNames(d) {
    const names = [];
    const add = (n) => { if (!names.includes(n)) names.push(n); };
    const walk = (v, path, side) => {
      if (typeof v === 'string') { if (path !== '$' && MARKER.test(v)) add(side + '.body.' + path); return; }
      if (Array.isArray(v)) v.forEach((x, i) => walk(x, path + '[' + i + ']', side));
      else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, path + '.' + k, side);
    };
    const form = (text, prefix) => {
      for (const p of String(text).split(/[&#?]/)) {
        const i = p.indexOf('=');
        if (i <= 0 || !MARKER.test(p.slice(i + 1))) continue;
        let k = p.slice(0, i);
        try { k = decodeURIComponent(k); } catch { /* as sent */ }
        add(prefix + k);
      }
    };
    for (const [side, x] of [['request', d.request], ['response', d.response]]) {
      if (!x || typeof x !== 'object') continue;
      for (const [k, v] of headerList(x.headers)) {
        if (!MARKER.test(v)) continue;
        if (/^location$/i.test(k)) form(v.split('?').slice(1).join('?'), side + '.header.location ');
        else add(side + '.header.' + k.toLowerCase());
      }
      const b = bodyOf(x.body);
      if (b.kind === 'json') walk(b.value, '$', side);
      else if (b.kind === 'text') form(b.text, side + '.body.');
      if (x.url) form(String(x.url).split('?').slice(1).join('?'), side + '.query.');
    }
    return names;
  }

  /** callvcr's list of what it redacted, a whole body it names refined to the fields the marker shows. */
  function redactedList(d) {
    const found = redactedNames(d);
    if (!Array.isArray(d.redacted)) return found;
    const out = [];
    for (const n of d.redacted) {
      const finer = found.filter((f) => f.startsWith(n + '.'));
      for (const x of finer.length ? finer : [n]) if (!out.includes(x)) out.push(x);
    }
    return out;
  }

  /** What was redacted, by name: `request.header.authorization` reads "authorization (request header)". */
  function redactedView(names) {
    if (!names || !names.length) return undefined;
    return h('ul', { class: 'chips', 'aria-label': 'redacted, names only' }, names.map((n) => {
      const m = /^(request|response)\.(header|body|query)\.?(.*)$/.exec(String(n));
      const where = m ? m[1] + ' ' + (m[2] === 'body' && m[3] && !m[3].startsWith('$') ? 'form field' : m[2] === 'body' && m[3] ? 'body field' : m[2]) : '';
      return h('li', null, h('code', null, m ? (m[3] || m[2]) : String(n)), m ? h('span', { class: 'muted' }, ' ' + where) : null);
    }));
  }

  function pick(o, ...names) {
    for (const n of names) if (o && o[n] !== undefined && o[n] !== null) return o[n];
    return undefined;
  }

  function renderDetail(pane, d, note) {
    const req = d.request || {};
    const res = d.response || {};
    const kind = kindOf(d.answered_by);
    const query = pick(req, 'query') ?? d.query;
    const url = req.url || ((req.scheme || 'https') + '://' + (req.host || d.host || '') + (req.path || d.path || '') + (query ? '?' + query : ''));
    const status = pick(res, 'status') ?? d.status;
    const out = [
      closeButton(),
      h('h2', null, '#' + d.seq + ' ' + (req.method || d.method || '') + ' ' + (d.host || '') + (d.path || '')),
      note && h('p', { class: 'unavail' }, note),
      dl([
        ['at (virtual clock)', d.at], ['status', status], ['answered by', answerBadge(d.answered_by)],
        ['rule / detail', d.detail], ['scope', d.scope],
        ['stored', d.stored === undefined ? undefined : d.stored ? 'yes' : 'no'],
        ['redacted', redactedView(redactedList(d))],
        ['recording', d.recorded && d.recorded.seq !== undefined ? '#' + d.recorded.seq + ' of the cassette' + (d.recorded.fresh === false ? ' (already served before: the last one repeats)' : '') : undefined],
      ]),
    ];
    if (kind === 'overlay' || kind === 'fault') {
      const rec = pick(d, 'recorded', 'recorded_response', 'recorded_answer', 'departed_from', 'recording');
      const rule = pick(d, 'rule') ?? d.detail;
      out.push(h('section', { class: 'box overlay-box' },
        h('h3', null, (kind === 'overlay' ? 'Why the overlay answered' : 'The injected fault')),
        h('p', null, d.answered_by + (rule ? ', rule ' + valueText(rule) : '') + '.'),
        rec ? [h('h4', null, 'The recorded answer it departed from' + (rec.seq !== undefined ? ' (#' + rec.seq + ')' : '')), answerView(rec.response || rec)]
          : h('p', { class: 'muted' }, note ? '' : 'No recorded answer for this request: the overlay answered on its own.')));
    }
    if (isMiss(d) && d.response) {
      const v = bodyOf(res.body);
      if (v.kind === 'json' && v.value && Array.isArray(v.value.closest)) {
        out.push(h('section', { class: 'box miss-box' }, h('h3', null, 'Why it missed'), explanationView(v.value)));
      }
    }
    if (d.request) {
      out.push(h('section', { class: 'side' }, h('h3', null, 'Request'),
        h('p', { class: 'mono' }, (req.method || d.method || '') + ' ' + url),
        h('h4', null, 'Headers'), headersView(req.headers), h('h4', null, 'Body'), bodyView(req.body), cutNote(req)));
    }
    if (d.response) {
      out.push(h('section', { class: 'side' }, h('h3', null, 'Response'), answerView(res)));
    }
    if (kind === 'hit' && d.recorded && typeof d.recorded === 'object') {
      out.push(h('details', { class: 'side' }, h('summary', null, 'The recording it was answered from (#' + valueText(d.recorded.seq) + ')'), answerView(d.recorded)));
    }
    pane.replaceChildren(...out.filter(Boolean));
  }

  function answerView(a) {
    return h('div', null, h('p', { class: 'mono' }, 'status ' + valueText(a.status)),
      h('h4', null, 'Headers'), headersView(a.headers), h('h4', null, 'Body'), bodyView(a.body), cutNote(a));
  }

  function cutNote(x) {
    return x && x.body_truncated ? h('p', { class: 'muted' }, 'cut: callvcr keeps the first part of a long body' + (x.body_bytes ? ' (' + x.body_bytes + ' bytes in all)' : '') + '.') : null;
  }

  // ---------------------------------------------------------------- misses

  /**
   * callvcr's differences as sentences ("path: `a` vs recorded `b`", "body: JSON {..} vs recorded
   * JSON {..}") → parts {part, field, live, recorded}; a body is compared field by field.
   */
  function partsFromDifferences(list) {
    const out = [];
    for (const d of list || []) {
      const m = /^(\w[\w-]*)(?:\s+([^:]+?))?:\s*([\s\S]*?)\s+vs\.?\s+recorded\s+([\s\S]*)$/.exec(String(d));
      if (!m) { out.push({ part: '', field: '', text: String(d) }); continue; }
      const [, part, field, live, rec] = m;
      if (part === 'body') {
        const l = jsonSide(live); const r = jsonSide(rec);
        if (l.ok && r.ok && l.value !== undefined && r.value !== undefined) {
          const diffs = jsonDiff(l.value, r.value);
          if (diffs.length) { diffs.forEach((x) => out.push({ part: 'body', field: x.path, live: x.live, recorded: x.recorded })); continue; }
        }
        out.push({ part: 'body', field: '', live: l.ok ? l.value : live, recorded: r.ok ? r.value : rec, whole: true });
        continue;
      }
      const lv = unquote(live); const rv = unquote(rec);
      if (part === 'query' && !field && /[=&]/.test(lv + rv)) {
        const a = queryMap(lv); const b = queryMap(rv);
        const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => a[k] !== b[k]);
        if (keys.length) { keys.forEach((k) => out.push({ part: 'query', field: k, live: a[k], recorded: b[k] })); continue; }
      }
      out.push({ part, field: field ? unquote(field) : '', live: lv, recorded: rv });
    }
    return out;
  }

  function unquote(t) {
    t = String(t).trim();
    return t.length >= 2 && t.startsWith('`') && t.endsWith('`') ? t.slice(1, -1) : t;
  }

  function jsonSide(t) {
    t = String(t).trim();
    if (/^empty$/i.test(t) || /^\(?none\)?$/i.test(t)) return { ok: true, value: undefined };
    const body = t.replace(/^JSON\s+/i, '');
    try { return { ok: true, value: JSON.parse(body) }; } catch { return { ok: false }; }
  }

  function queryMap(q) {
    const m = {};
    for (const p of String(q).replace(/^\?/, '').split('&')) {
      if (!p) continue;
      const i = p.indexOf('=');
      const k = i < 0 ? p : p.slice(0, i);
      m[k] = m[k] === undefined ? (i < 0 ? '' : p.slice(i + 1)) : m[k] + '&' + (i < 0 ? '' : p.slice(i + 1));
    }
    return m;
  }

  /** Leaf paths whose values differ between two JSON values: [{path, live, recorded}]. */
  function jsonDiff(a, b) {
    const fa = new Map(); const fb = new Map();
    flatten(a, '', fa); flatten(b, '', fb);
    const out = [];
    for (const k of new Set([...fa.keys(), ...fb.keys()])) {
      const x = fa.get(k); const y = fb.get(k);
      if (JSON.stringify(x) !== JSON.stringify(y)) out.push({ path: k || '(whole body)', live: x, recorded: y });
    }
    return out;
  }

  function flatten(v, path, out) {
    if (v && typeof v === 'object') {
      const ks = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
      if (!ks.length) { out.set(path, v); return; }
      for (const k of ks) flatten(v[k], Array.isArray(v) ? path + '[' + k + ']' : (path ? path + '.' : '') + k, out);
    } else out.set(path, v);
  }

  /** A value with the part that differs from `other` marked (common prefix and suffix left plain). */
  function marked(v, other) {
    const a = valueText(v); const b = valueText(other);
    if (v === undefined) return h('span', { class: 'muted' }, a);
    if (a === b) return a;
    let p = 0;
    while (p < a.length && p < b.length && a[p] === b[p]) p++;
    let q = 0;
    while (q < a.length - p && q < b.length - p && a[a.length - 1 - q] === b[b.length - 1 - q]) q++;
    return h('span', null, a.slice(0, p), h('mark', null, a.slice(p, a.length - q) || '∅'), a.slice(a.length - q));
  }

  /** One side of a difference: a whole body pretty-printed, an absent body said so, else marked. */
  function side(p, v, other) {
    if (p.whole) return bodyView(v);
    if (p.part === 'body' && (v === null || v === undefined || v === '')) return h('span', { class: 'muted' }, '(no body)');
    if (p.part === 'body' && !p.field && (typeof v === 'object' || bodyOf(v).kind === 'json')) return bodyView(typeof v === 'object' ? { json: v } : v);
    return marked(v, other);
  }

  function explanationView(x) {
    const items = (x.closest || []).map((c, i) => {
      const parts = Array.isArray(c.parts) && c.parts.length ? c.parts : partsFromDifferences(c.differences);
      const rows = parts.map((p) => (p.text !== undefined
        ? h('tr', { class: 'diff' }, h('td', { colspan: '4' }, p.text))
        : h('tr', { class: 'diff', dataset: { part: p.part || '', field: p.field || '' } },
          h('th', { scope: 'row' }, p.part || ''),
          h('td', { class: 'diff-field' }, p.field ? h('mark', null, p.field) : h('span', { class: 'muted' }, p.part === 'body' ? 'whole body' : '—')),
          h('td', { class: 'live' }, side(p, p.live, p.recorded)),
          h('td', { class: 'recorded' }, side(p, p.recorded, p.live)))));
      return h('li', { class: 'closest' },
        h('h4', null, (i === 0 ? 'Closest recording: ' : 'Next closest: '), h('span', { class: 'mono' }, c.recorded || '?')),
        rows.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'grid diff-table' },
          h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'part'), h('th', { scope: 'col' }, 'field'),
            h('th', { scope: 'col' }, 'live request'), h('th', { scope: 'col' }, 'recording'))),
          h('tbody', null, rows))) : h('p', { class: 'muted' }, 'No difference listed.'),
        c.hint && h('p', { class: 'hint' }, h('strong', null, 'Would hit with: '), h('code', null, valueText(c.hint))));
    });
    return h('div', { class: 'explanation' },
      x.message && h('p', { class: 'message' }, x.message),
      items.length ? h('ol', { class: 'closest-list' }, items) : h('p', { class: 'muted' }, 'The cassette holds no recording close to it.'));
  }

  let missesPending = false;
  function renderMissesSoon() {
    if (missesPending) return;
    missesPending = true;
    requestAnimationFrame(() => { missesPending = false; renderMisses(); });
  }

  function renderMisses() {
    const misses = [...S.journal.values()].filter(isMiss).sort((a, b) => b.seq - a.seq);
    const list = $('misses-list');
    const frag = document.createDocumentFragment();
    for (const e of misses) {
      let card = S.missCards.get(e.seq);
      if (!card) { card = missCard(e); S.missCards.set(e.seq, card); }
      frag.append(card);
      if (!S.missDetail.has(e.seq)) loadMiss(e.seq);
    }
    list.replaceChildren(frag);
    $('misses-empty').hidden = misses.length > 0;
    $('count-misses').textContent = misses.length ? String(misses.length) : '';
  }

  function missCard(e) {
    const body = h('div', { class: 'miss-body' }, h('p', { class: 'muted' }, 'Loading the explanation…'));
    const card = h('article', { class: 'miss card', dataset: { seq: e.seq } },
      h('header', null,
        h('h3', null, h('span', { class: 'method' }, e.method || ''), ' ', h('span', { class: 'mono' }, (e.host || '') + (e.path || '') + (e.query ? '?' + e.query : ''))),
        h('p', { class: 'muted' }, '#' + e.seq + ' · ' + shortTime(e.at) + ' · status ' + (e.status ?? '?') + (e.scope ? ' · scope ' + e.scope : '') + (e.detail ? ' · ' + e.detail : '')),
        h('button', { type: 'button', class: 'quiet', onclick: () => { showView('journal'); selectRow(e.seq, true); } }, 'Open in the journal')),
      body);
    card._body = body;
    return card;
  }

  const missQueue = [];
  let missActive = 0;
  let missAsked = 0;
  function loadMiss(seq) {
    // Each ask is numbered: an older answer arriving late does not overwrite a newer one.
    const ask = ++missAsked;
    S.missDetail.set(seq, { state: 'loading', ask });
    if (!missQueue.includes(seq)) missQueue.push(seq);
    pumpMisses();
  }

  function pumpMisses() {
    while (missActive < 3 && missQueue.length) {
      const seq = missQueue.shift();
      const ask = (S.missDetail.get(seq) || {}).ask;
      missActive++;
      api('GET', '/journal/' + seq).then((r) => {
        missActive--;
        pumpMisses();
        const latest = S.missDetail.get(seq);
        if (!latest || latest.ask !== ask) return;
        const card = S.missCards.get(seq);
        S.missDetail.set(seq, { state: r.ok ? 'ok' : 'error', data: r.data, ask });
        if (card && !(r.ok && r.data && r.data.captured === false && !r.data.response)) fillMiss(card, seq, r);
        else if (card) fillMiss(card, seq, r, true);
      });
    }
  }

  function fillMiss(card, seq, r, uncaptured) {
    if (uncaptured) {
      card._body.replaceChildren(h('p', { class: 'muted' }, 'callvcr did not keep this request in full' +
        (r.data && r.data.why ? ' (' + r.data.why + ')' : '') + '; its journal line is above.'));
      return;
    }
    if (!r.ok) {
      card._body.replaceChildren(h('p', { class: 'unavail' }, r.missing
        ? 'The explanation is not available in this callvcr (GET /mock/admin/journal/' + seq + ' answered ' + r.status + ').'
        : failureText(r, 'GET /mock/admin/journal/' + seq)));
      return;
    }
    const d = r.data || {};
    const res = d.response || {};
    const v = bodyOf(res.body !== undefined ? res.body : d.explanation);
    const x = v.kind === 'json' ? v.value : null;
    if (x && typeof x === 'object' && (Array.isArray(x.closest) || x.message)) card._body.replaceChildren(explanationView(x));
    else card._body.replaceChildren(h('p', { class: 'muted' }, 'callvcr gave no explanation for this miss:'), bodyView(res.body));
  }

  // ---------------------------------------------------------------- WebSocket sessions

  function wsKey(id) { return String(id); }

  function wsSession(id) {
    const k = wsKey(id);
    let w = S.ws.get(k);
    if (!w) { w = { id: k, url: '', topics: [], queued: null, open: true, frames: [], framesState: 'none' }; S.ws.set(k, w); }
    return w;
  }

  async function loadWs() {
    const r = await api('GET', '/ws/sessions');
    if (!r.ok || !Array.isArray(r.data)) { viewNotice('ws', failureText(r, 'GET /mock/admin/ws/sessions')); renderWs(); return; }
    viewNotice('ws', null);
    const listed = new Set();
    for (const x of r.data) {
      const w = wsSession(x.id);
      Object.assign(w, { url: x.url ?? w.url, topics: x.topics || [], queued: x.queued ?? null, open: true, raw: x });
      listed.add(w.id);
    }
    for (const w of S.ws.values()) if (!listed.has(w.id)) w.open = false;
    if (S.wsSelected === null && S.ws.size) S.wsSelected = [...S.ws.keys()][0];
    renderWs();
    if (S.wsSelected !== null && S.ws.get(S.wsSelected) && S.ws.get(S.wsSelected).framesState === 'none') loadFrames(S.wsSelected);
  }

  function loadWsSoon() { loadSoon('ws', 60); }

  async function loadFrames(id) {
    const w = wsSession(id);
    w.framesState = 'loading';
    const r = await api('GET', '/ws/sessions/' + encodeURIComponent(id) + '/frames');
    if (r.ok && Array.isArray(r.data)) {
      w.frames = r.data;
      w.framesState = 'ok';
    } else {
      w.framesState = 'error';
      w.framesError = r.missing ? 'Frames are not available in this callvcr (GET /mock/admin/ws/sessions/' + id + '/frames answered ' + r.status + '); frames seen live since this page opened are shown.' : failureText(r, 'GET /mock/admin/ws/sessions/' + id + '/frames');
    }
    renderWs();
  }

  function onWsEvent(d) {
    if (!d || d.session === undefined) return;
    const known = S.ws.has(wsKey(d.session));
    const w = wsSession(d.session);
    const f = Object.assign({}, d);
    delete f.session;
    // Frames arriving while the full list loads would be counted twice; the loaded list has them.
    if (w.framesState !== 'loading') { w.frames.push(f); if (w.frames.length > 500) w.frames.shift(); }
    if (!known || !w.url) loadWsSoon();
    else if (f.kind === 'pushed' || f.direction === 'sent') loadSoon('ws', 250);
    if (S.wsSelected === null) S.wsSelected = w.id;
    renderWsSoon();
  }

  let wsPending = false;
  function renderWsSoon() {
    if (wsPending) return;
    wsPending = true;
    requestAnimationFrame(() => { wsPending = false; renderWs(); });
  }

  function renderWs() {
    const list = [...S.ws.values()];
    const rows = list.map((w) => h('tr', {
      tabindex: String(w.id) === String(S.wsSelected) ? '0' : '-1',
      dataset: { session: w.id, open: String(w.open) },
      'aria-selected': String(String(w.id) === String(S.wsSelected)),
    },
    h('td', { class: 'mono' }, w.id),
    h('td', { class: 'path' }, w.url || ''),
    h('td', null, (w.topics || []).join(', ')),
    h('td', { class: 'num' }, w.queued ?? ''),
    h('td', { class: 'num' }, w.frames.length),
    h('td', null, w.open ? h('span', { class: 'badge k-hit' }, 'open') : h('span', { class: 'badge k-none' }, 'closed'))));
    const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest('#ws-body tr');
    const fid = focused ? focused.dataset.session : null;
    $('ws-body').replaceChildren(...rows);
    if (fid !== null) { const tr = $('ws-body').querySelector('tr[data-session="' + CSS.escape(fid) + '"]'); if (tr) tr.focus({ preventScroll: true }); }
    if (rows.length && !rows.some((r) => r.tabIndex === 0)) rows[0].tabIndex = 0;
    $('ws-empty').hidden = list.length > 0;
    const open = list.filter((w) => w.open).length;
    $('count-ws').textContent = list.length ? String(open) : '';
    renderFrames();
  }

  function selectWs(id, focus) {
    S.wsSelected = String(id);
    const w = S.ws.get(S.wsSelected);
    renderWs();
    if (focus) { const tr = $('ws-body').querySelector('tr[data-session="' + CSS.escape(String(id)) + '"]'); if (tr) tr.focus(); }
    if (w && (w.framesState === 'none' || w.framesState === 'error')) loadFrames(id);
  }

  function renderFrames() {
    const pane = $('ws-detail');
    const w = S.wsSelected !== null ? S.ws.get(String(S.wsSelected)) : null;
    if (!w) { pane.replaceChildren(h('p', { class: 'empty' }, 'Select a session to see its frames.')); return; }
    const frames = w.frames;
    const times = frames.map((f) => parseTime(f.at)).filter(Number.isFinite);
    const t0 = times.length ? Math.min(...times) : NaN;
    const t1 = times.length ? Math.max(...times) : NaN;
    const out = [
      h('h2', null, 'Session ' + w.id),
      dl([['url', w.url], ['topics', (w.topics || []).join(', ') || '—'], ['queued (outbound)', w.queued ?? '—'],
        ['state', w.open ? 'open' : 'closed'], ['frames', String(frames.length)]]),
      w.framesState === 'error' && h('p', { class: 'unavail' }, w.framesError),
      w.framesState === 'loading' && h('p', { class: 'muted' }, 'Loading frames…'),
    ];
    if (frames.length) {
      out.push(timelineStrip(frames, t0, t1));
      out.push(h('ol', { class: 'frames' }, frames.map((f) => frameItem(f, t0))));
    } else if (w.framesState !== 'loading') out.push(h('p', { class: 'muted' }, 'No frames yet.'));
    pane.replaceChildren(...out.filter(Boolean));
  }

  function timelineStrip(frames, t0, t1) {
    const W = 1000; const span = Math.max(1, t1 - t0);
    const svg = s('svg', { class: 'strip', viewBox: '0 0 ' + W + ' 46', role: 'img', preserveAspectRatio: 'none',
      'aria-label': frames.length + ' frames over ' + duration(t1 - t0) + ' of virtual time' });
    svg.append(s('line', { x1: 8, x2: W - 8, y1: 14, y2: 14, class: 'lane' }), s('line', { x1: 8, x2: W - 8, y1: 32, y2: 32, class: 'lane' }));
    for (const f of frames) {
      const t = parseTime(f.at);
      const x = Number.isFinite(t) ? 8 + ((t - t0) / span) * (W - 16) : 8;
      svg.append(s('rect', { x: x - 2, y: f.direction === 'received' ? 26 : 8, width: 4, height: 12, class: 'tick kind-' + (f.kind || 'frame') },
        s('title', null, (f.direction || '') + ' ' + (f.kind || '') + ' at ' + (f.at || ''))));
    }
    return h('figure', { class: 'strip-fig' }, svg,
      h('figcaption', { class: 'muted' }, 'top: sent by callvcr to the client · bottom: received from the client · ' + duration(t1 - t0) + ' from first to last'));
  }

  function frameItem(f, t0) {
    const t = parseTime(f.at);
    const text = f.text ?? f.data ?? '';
    let shown;
    const v = bodyOf(typeof text === 'string' ? text : JSON.stringify(text));
    if (v.kind === 'json') shown = jsonView(v.value);
    else shown = h('pre', { class: 'body' }, String(text).slice(0, MAX_TEXT));
    const long = String(typeof text === 'string' ? text : JSON.stringify(text)).length > 240;
    return h('li', { class: 'frame dir-' + (f.direction || 'x') + ' kind-' + (f.kind || 'frame'), dataset: { kind: f.kind || 'frame', direction: f.direction || '' } },
      h('div', { class: 'frame-head' },
        h('span', { class: 'time', title: f.at || '' }, shortTime(f.at)),
        Number.isFinite(t) && Number.isFinite(t0) && h('span', { class: 'muted' }, '+' + duration(t - t0)),
        h('span', { class: 'dir' }, f.direction === 'received' ? 'client → callvcr' : f.direction === 'sent' ? 'callvcr → client' : (f.direction || '')),
        h('span', { class: 'badge kind-' + (f.kind || 'frame') }, f.kind || 'frame')),
      f.waited_for !== undefined && f.waited_for !== null && h('p', { class: 'waited' }, 'waited for: ', h('span', { class: 'mono' }, valueText(f.waited_for))),
      long ? h('details', null, h('summary', null, String(text).slice(0, 120) + '…'), shown) : shown);
  }

  // ---------------------------------------------------------------- calls and machines

  async function loadCalls() {
    const [r, m] = await Promise.all([api('GET', '/sessions'), api('GET', '/machines')]);
    if (m.ok && Array.isArray(m.data)) S.machines = m.data;
    if (!r.ok || !Array.isArray(r.data)) {
      viewNotice('calls', failureText(r, 'GET /mock/admin/sessions'));
      S.sessions = [];
    } else {
      viewNotice('calls', m.ok ? null : failureText(m, 'GET /mock/admin/machines'));
      S.sessions = r.data;
    }
    renderCalls();
  }

  /**
   * The next state deadline (a timer or a delayed move) on a ticking clock: the sessions are
   * fetched again once it has passed, since nothing else tells the page that time alone moved one.
   */
  let deadlineTimer = null;
  function watchDeadlines() {
    clearTimeout(deadlineTimer);
    if (S.clock.frozen || !S.deadlines.length) return;
    const next = Math.min(...S.deadlines);
    const wait = next - now();
    if (!Number.isFinite(wait)) return;
    deadlineTimer = setTimeout(() => loadSoon('calls', 0), Math.max(50, Math.min(wait + 100, 2 ** 31 - 1)));
  }

  function renderCalls() {
    S.deadlines = [];
    const focusKey = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : null;
    const cards = S.sessions.map(sessionCard);
    $('calls-list').replaceChildren(...cards);
    $('calls-empty').hidden = S.sessions.length > 0;
    $('count-calls').textContent = S.sessions.length ? String(S.sessions.length) : '';
    $('machines-list').replaceChildren(...S.machines.map((m) => h('div', { class: 'card' },
      h('h3', null, m.name), machineGraph(m, { state: null, visited: new Set(), taken: new Set() }),
      dl([['initial', m.initial], ['terminal', (m.terminal || []).join(', ')], ['timeout state', m.timeout_state],
        ['timeouts', timeoutsText(m.timeouts_ms)], ['flags', (m.flags || []).join(', ')],
        ['learned from', m.learned ? (m.learned.host || '') + (m.learned.resource || '') + (m.learned.field ? ' (field ' + m.learned.field + ')' : '') + (m.learned.instances ? ', ' + m.learned.instances + ' seen' : '') : undefined]]))));
    if (focusKey) { const el = document.querySelector('[data-key="' + CSS.escape(focusKey) + '"]'); if (el) el.focus({ preventScroll: true }); }
    watchDeadlines();
    requestAnimationFrame(centreGraphs);
  }

  /** A graph wider than its card (a narrow screen) is scrolled to show the current state. */
  function centreGraphs() {
    for (const wrap of $('calls-list').querySelectorAll('.graph-wrap')) {
      const node = wrap.querySelector('.node.current');
      if (!node || wrap.scrollWidth <= wrap.clientWidth) continue;
      const a = node.getBoundingClientRect(); const b = wrap.getBoundingClientRect();
      wrap.scrollLeft += (a.left + a.width / 2) - (b.left + b.width / 2);
    }
  }

  function timeoutsText(t) {
    if (!t || typeof t !== 'object') return '';
    return Object.entries(t).map(([k, v]) => k + ' after ' + duration(Number(v))).join(', ');
  }

  function flagsOn(flags) {
    if (!flags || typeof flags !== 'object') return [];
    return Object.entries(flags).filter(([, v]) => (v && typeof v === 'object' ? v.on : v)).map(([k, v]) => k + (v && v.since ? ' since ' + shortTime(v.since) : ''));
  }

  function machineFor(sess) {
    const m = S.machines.find((x) => x.name === sess.machine);
    if (m) return m;
    // Not listed: what the session itself shows.
    const states = new Set([sess.state]);
    const transitions = {};
    for (const x of sess.history || []) {
      states.add(x.from); states.add(x.to);
      (transitions[x.from] = transitions[x.from] || []).includes(x.to) || transitions[x.from].push(x.to);
    }
    return { name: sess.machine || '(unknown machine)', states: [...states].filter(Boolean), transitions, initial: null, terminal: [], inferred: true };
  }

  function sessionCard(sess) {
    const id = String(sess.id);
    const m = machineFor(sess);
    const parts = Array.isArray(sess.participants) ? sess.participants : [];
    let sel = S.partSel.get(id);
    if (sel === undefined || (sel && !parts.some((p) => p.id === sel))) {
      const cust = parts.find((p) => p.purpose === 'customer');
      sel = cust ? cust.id : '';
      S.partSel.set(id, sel);
    }
    const party = parts.find((p) => p.id === sel);
    const current = party ? party.state : sess.state;
    const hist = (sess.history || []).filter((x) => !party || !x.participantId || x.participantId === party.id);
    const visited = new Set(); const taken = new Set();
    for (const x of hist) { visited.add(x.from); visited.add(x.to); taken.add(x.from + '\u0000' + x.to); }
    const allowed = ((m.transitions || {})[current]) || [];
    const msg = h('p', { class: 'msg', role: 'status' });
    const moves = allowed.map((to) => h('button', {
      type: 'button', dataset: { to, key: 'move:' + id + ':' + to }, 'aria-label': 'Move ' + (party ? (party.purpose || 'participant') : 'the session') + ' to ' + to,
      onclick: () => transition(id, to, party ? party.id : null, msg),
    }, '→ ' + to));
    const known = new Set(['id', 'machine', 'state', 'flags', 'history', 'participants', 'pending']);
    const extra = Object.fromEntries(Object.entries(sess).filter(([k]) => !known.has(k)));
    // A move waiting: held until released, or delayed until a time on the virtual clock.
    const pending = (party ? party.pending : sess.pending) || null;
    // A timer: the machine moves a party left in this state that long to its timeout state.
    const limit = m.timeouts_ms && Number(m.timeouts_ms[current]);
    const lastMove = hist.length ? hist[hist.length - 1].at : null;
    const since = party ? party.since : lastMove;
    const due = limit && since ? parseTime(since) + limit : NaN;
    const waits = [];
    // Only deadlines still ahead: GET /sessions carries out those already passed.
    if (Number.isFinite(due) && due > now()) S.deadlines.push(due);
    if (pending && pending.at && parseTime(pending.at) > now()) S.deadlines.push(parseTime(pending.at));
    if (pending && pending.held) waits.push(h('p', { class: 'wait held' }, 'Held move to ', h('strong', null, pending.to), ': it waits until released.'));
    else if (pending && pending.at) waits.push(h('p', { class: 'wait' }, 'Delayed move to ', h('strong', null, pending.to), ' at ' + shortTime(pending.at) + ' (' + duration(parseTime(pending.at) - now()) + ' from now on the virtual clock).'));
    if (Number.isFinite(due)) waits.push(h('p', { class: 'wait' }, 'Timer: ' + current + ' times out to ' + (m.timeout_state || '?') + ' at ' + shortTime(iso(due)) + ' (' + (due > now() ? 'in ' + duration(due - now()) : 'due') + ').'));
    return h('article', { class: 'session card', dataset: { id, state: current || '' } },
      h('header', null,
        h('h3', null, h('span', { class: 'mono' }, id)),
        h('p', null, h('span', { class: 'badge' }, m.name), ' state ', h('strong', { class: 'state-now' }, current || '?'),
          party ? ' (' + (party.purpose || 'participant') + ' ' + party.id + ')' : '',
          flagsOn(party ? party.flags : sess.flags).map((f) => h('span', { class: 'badge k-overlay' }, f)))),
      parts.length ? h('label', { class: 'inline' }, 'Show participant ',
        h('select', { dataset: { key: 'part:' + id }, onchange: (ev) => { S.partSel.set(id, ev.target.value); renderCalls(); } },
          parts.map((p) => h('option', { value: p.id, selected: p.id === sel }, (p.purpose || 'participant') + ' · ' + p.state + ' · ' + p.id)))) : null,
      machineGraph(m, { state: current, visited, taken, pending: pending && pending.to }),
      waits,
      h('div', { class: 'row moves', role: 'group', 'aria-label': 'Allowed moves from ' + current },
        moves.length ? moves : h('span', { class: 'muted' }, 'No move is allowed from ' + (current || 'here') + ' (terminal).'),
        pending && pending.held ? h('button', { type: 'button', dataset: { key: 'release:' + id }, onclick: () => release(id, party ? party.id : null, msg) }, 'Release the held move to ' + pending.to) : null),
      msg,
      hist.length ? h('details', null, h('summary', null, 'Path taken (' + hist.length + (hist.length === 1 ? ' move)' : ' moves)')),
        h('ol', { class: 'history' }, hist.map((x) => h('li', null, shortTime(x.at) + ' ' + x.from + ' → ' + x.to + (x.by ? ' by ' + x.by : '') + (x.participantId ? ' (' + x.participantId + ')' : ''))))) : h('p', { class: 'muted' }, 'No moves yet.'),
      parts.length > 1 ? h('div', { class: 'table-wrap flat' }, h('table', { class: 'grid small' }, h('caption', { class: 'vh' }, 'Participants'),
        h('thead', null, h('tr', null, ['participant', 'purpose', 'state', 'since', 'flags'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', null, parts.map((p) => h('tr', null, h('td', { class: 'mono' }, p.id), h('td', null, p.purpose || ''), h('td', null, p.state), h('td', null, shortTime(p.since)), h('td', null, flagsOn(p.flags).join(', '))))))) : null,
      Object.keys(extra).length ? h('details', null, h('summary', null, 'More about this session'), jsonView(extra)) : null);
  }

  async function transition(id, to, participantId, msg) {
    msg.textContent = 'moving to ' + to + '…';
    const body = { to };
    if (participantId) body.metadata = { participantId };
    const r = await api('POST', '/session/' + encodeURIComponent(id) + '/transition', body);
    msg.textContent = r.ok ? 'Moved to ' + (r.data && r.data.state) + '.' : failureText(r, 'POST /mock/admin/session/' + id + '/transition');
    if (r.ok) loadCalls();
  }

  async function release(id, participantId, msg) {
    const r = await api('POST', '/session/' + encodeURIComponent(id) + '/release', participantId ? { participantId } : {});
    msg.textContent = r.ok ? 'Released; state ' + (r.data && r.data.state) + '.' : failureText(r, 'POST /mock/admin/session/' + id + '/release');
    if (r.ok) loadCalls();
  }

  const layouts = new Map();
  let svgSerial = 0;

  /**
   * Where a machine's states and moves go: states in columns by their longest path from a source
   * once back edges (found depth first) are set aside; a move to the next column is a curve from
   * side to side; any other (skipping columns, going back, staying in a column) runs in a lane
   * above or below the states, with rounded corners, so no move is drawn through a state.
   */
  function layout(m) {
    const key = JSON.stringify([m.states, m.transitions, m.initial]);
    if (layouts.has(key)) return layouts.get(key);
    const tr = m.transitions || {};
    const states = [...(m.states || [])];
    for (const [f, tos] of Object.entries(tr)) {
      if (!states.includes(f)) states.push(f);
      for (const x of tos) if (!states.includes(x)) states.push(x);
    }
    const out = (x) => tr[x] || [];
    const color = new Map(); const back = new Set();
    const dfs = (u) => {
      color.set(u, 1);
      for (const v of out(u)) {
        if (color.get(v) === 1) back.add(u + '\u0000' + v);
        else if (!color.get(v)) dfs(v);
      }
      color.set(u, 2);
    };
    for (const st of [m.initial, ...states].filter((x) => x && states.includes(x))) if (!color.get(st)) dfs(st);
    const preds = new Map(states.map((x) => [x, []]));
    for (const u of states) for (const v of out(u)) if (!back.has(u + '\u0000' + v) && u !== v) preds.get(v).push(u);
    const layer = new Map();
    const depth = (x) => {
      if (layer.has(x)) return layer.get(x);
      layer.set(x, 0);
      const l = preds.get(x).reduce((acc, p) => Math.max(acc, depth(p) + 1), 0);
      layer.set(x, l);
      return l;
    };
    states.forEach(depth);
    const cols = [];
    for (const x of states) (cols[layer.get(x)] = cols[layer.get(x)] || []).push(x);
    for (let i = 0; i < cols.length; i++) cols[i] = cols[i] || [];
    const longest = states.reduce((acc, x) => Math.max(acc, x.length), 4);
    const W = Math.max(84, longest * 8 + 24); const H = 34; const GX = 64; const GY = 30;
    const rows = Math.max(1, ...cols.map((c) => c.length));
    const pos = new Map();
    cols.forEach((c, i) => c.forEach((x, j) => {
      const off = ((rows - c.length) * (H + GY)) / 2;
      pos.set(x, { x: 16 + i * (W + GX), y: off + j * (H + GY), layer: i, row: j, of: c.length });
    }));
    // Which lane side a state's long moves leave from: the upper half of a column above, the lower below.
    const sideOf = (x) => {
      const p = pos.get(x);
      if (p.of === 1 || p.row * 2 === p.of - 1) return null;
      return p.row * 2 < p.of - 1 ? 'top' : 'bottom';
    };
    const edges = [];
    const lanes = { top: 0, bottom: 0 };
    for (const from of states) {
      for (const to of out(from)) {
        if (!pos.has(to)) continue;
        const a = pos.get(from); const b = pos.get(to);
        const e = { from, to, key: from + '\u0000' + to };
        if (from === to) e.kind = 'self';
        else if (b.layer === a.layer + 1) e.kind = 'direct';
        else {
          e.kind = 'lane';
          e.side = sideOf(from) || sideOf(to) || (lanes.top <= lanes.bottom ? 'top' : 'bottom');
          e.lane = lanes[e.side]++;
        }
        edges.push(e);
      }
    }
    const LANE = 9;
    const top = 14 + lanes.top * LANE;
    for (const p of pos.values()) p.y += top;
    const bottomOfStates = top + rows * (H + GY) - GY;
    // Ports: where on its side each move leaves or arrives, spread so moves do not share a point.
    const ports = new Map();
    const port = (node, side, e) => { const k = node + ':' + side; if (!ports.has(k)) ports.set(k, []); ports.get(k).push(e); };
    for (const e of edges) {
      if (e.kind === 'direct') { port(e.from, 'right', e); port(e.to, 'left', e); }
      if (e.kind === 'lane') { port(e.from, e.side, e); port(e.to, e.side, e); }
    }
    const spread = (node, side, e, length) => {
      const list = ports.get(node + ':' + side) || [e];
      const i = list.indexOf(e); const n = list.length;
      return (i + 1) * length / (n + 1);
    };
    for (const e of edges) {
      const a = pos.get(e.from); const b = pos.get(e.to);
      if (e.kind === 'self') {
        const x = a.x + W - 18; const y = a.y;
        e.d = `M${x - 8},${y} C${x - 14},${y - 22} ${x + 14},${y - 22} ${x + 8},${y}`;
      } else if (e.kind === 'direct') {
        const x1 = a.x + W; const y1 = a.y + spread(e.from, 'right', e, H);
        const x2 = b.x; const y2 = b.y + spread(e.to, 'left', e, H);
        const dx = (x2 - x1) / 2;
        e.d = `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
      } else {
        const up = e.side === 'top';
        const sx = a.x + spread(e.from, e.side, e, W); const tx = b.x + spread(e.to, e.side, e, W);
        const sy = up ? a.y : a.y + H; const ty = up ? b.y : b.y + H;
        const ly = up ? top - 8 - e.lane * LANE : bottomOfStates + 8 + e.lane * LANE;
        const r = 6; const dir = tx >= sx ? 1 : -1; const v = up ? 1 : -1;
        e.d = `M${sx},${sy} V${ly + v * r} Q${sx},${ly} ${sx + dir * r},${ly} H${tx - dir * r} Q${tx},${ly} ${tx},${ly + v * r} V${ty}`;
      }
    }
    const res = {
      states, pos, edges, W, H,
      width: 32 + cols.length * (W + GX) - GX,
      height: bottomOfStates + 14 + lanes.bottom * LANE,
    };
    layouts.set(key, res);
    return res;
  }

  function machineGraph(m, hl) {
    const L = layout(m);
    const id = 'g' + (++svgSerial);
    const terminal = new Set(m.terminal || []);
    const svg = s('svg', {
      class: 'machine', viewBox: '0 0 ' + L.width + ' ' + L.height, width: L.width, height: L.height, role: 'img',
      'aria-label': 'State machine ' + m.name + (hl.state ? ': current state ' + hl.state : '') +
        (hl.taken.size ? '; path taken ' + [...hl.taken].map((e) => e.replace('\u0000', ' → ')).join(', ') : ''),
    });
    svg.append(s('defs', null,
      s('marker', { id: id + '-a', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 6, markerHeight: 6, orient: 'auto-start-reverse', class: 'arrow' }, s('path', { d: 'M0,0 L10,5 L0,10 z' })),
      s('marker', { id: id + '-t', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 5, markerHeight: 5, orient: 'auto-start-reverse', class: 'arrow taken' }, s('path', { d: 'M0,0 L10,5 L0,10 z' }))));
    const plain = s('g', { class: 'edges' });
    const bold = s('g', { class: 'edges taken' });
    for (const e of L.edges) {
      const taken = hl.taken.has(e.key);
      const waiting = hl.pending && e.from === hl.state && e.to === hl.pending;
      (taken ? bold : plain).append(s('path', { d: e.d, class: 'edge' + (taken ? ' taken' : '') + (waiting ? ' pending' : ''), dataset: { from: e.from, to: e.to }, 'marker-end': 'url(#' + id + (taken ? '-t' : '-a') + ')' },
        s('title', null, e.from + ' → ' + e.to + (taken ? ' (taken)' : ''))));
    }
    // Taken moves drawn last, over the others.
    svg.append(plain, bold);
    const nodes = s('g', { class: 'nodes' });
    for (const st of L.states) {
      const p = L.pos.get(st);
      const cls = ['node', st === hl.state && 'current', hl.visited.has(st) && 'visited', terminal.has(st) && 'terminal', st === m.initial && 'initial', hl.pending === st && 'pending'].filter(Boolean).join(' ');
      nodes.append(s('g', { class: cls, dataset: { state: st }, transform: `translate(${p.x},${p.y})` },
        s('rect', { width: L.W, height: L.H, rx: 8, ry: 8 }),
        terminal.has(st) && s('rect', { class: 'inner', x: 3, y: 3, width: L.W - 6, height: L.H - 6, rx: 6, ry: 6 }),
        s('text', { x: L.W / 2, y: L.H / 2 + 5, 'text-anchor': 'middle' }, st),
        s('title', null, st + (st === hl.state ? ' (current)' : '') + (terminal.has(st) ? ' (terminal)' : '') + (st === m.initial ? ' (initial)' : ''))));
    }
    svg.append(nodes);
    return h('div', { class: 'graph-wrap' }, svg,
      h('p', { class: 'legend muted' }, h('span', { class: 'lg lg-current' }), 'current state ', h('span', { class: 'lg lg-visited' }), 'visited ',
        h('span', { class: 'lg lg-taken' }), 'move taken ', h('span', { class: 'lg lg-terminal' }), 'terminal',
        hl.pending ? [' ', h('span', { class: 'lg lg-pending' }), 'move waiting'] : null));
  }

  // ---------------------------------------------------------------- tokens

  async function loadTokens() {
    const r = await api('GET', '/tokens');
    if (!r.ok || !Array.isArray(r.data)) {
      viewNotice('tokens', failureText(r, 'GET /mock/admin/tokens'));
      S.tokens = [];
    } else {
      viewNotice('tokens', null);
      S.tokens = r.data;
    }
    renderTokens();
  }

  function tokenStatus(t, n) {
    if (t.revoked) return 'revoked';
    const exp = parseTime(t.expires_at);
    if (t.expired || (Number.isFinite(exp) && Number.isFinite(n) && exp <= n)) return 'expired';
    return 'live';
  }

  function renderTokens() {
    const n = now();
    const rows = S.tokens.map((t) => {
      const st = tokenStatus(t, n);
      const exp = parseTime(t.expires_at);
      const left = Number.isFinite(exp) && Number.isFinite(n) ? exp - n : NaN;
      return h('tr', { dataset: { status: st, tokenId: t.token_id || '', kind: t.kind || '' } },
        h('td', { class: 'mono', title: t.token_id ? 'fingerprint ' + t.token_id : '' }, (t.token_prefix || '') + '…'),
        h('td', null, t.kind || ''), h('td', null, t.client_id || ''), h('td', null, t.platform || ''),
        h('td', { class: 'nowrap', title: t.issued_at || '' }, shortTime(t.issued_at)), h('td', { class: 'nowrap', title: t.expires_at || '' }, shortTime(t.expires_at)),
        h('td', { class: 'num nowrap' }, st === 'live' ? duration(left) : Number.isFinite(left) ? duration(-left) + ' ago' : ''),
        h('td', null, h('span', { class: 'badge ' + (st === 'live' ? 'k-hit' : 'k-miss') }, st)),
        h('td', null, t.client_id && st === 'live' ? h('button', {
          type: 'button', class: 'quiet', dataset: { key: 'expire:' + t.client_id + ':' + (t.token_id || '') },
          onclick: () => expireTokens({ client_id: t.client_id }),
          'aria-label': 'Expire every token of ' + t.client_id,
        }, 'Expire client') : ''));
    });
    const focusKey = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : null;
    $('tokens-body').replaceChildren(...rows);
    if (focusKey) { const el = document.querySelector('[data-key="' + CSS.escape(focusKey) + '"]'); if (el) el.focus({ preventScroll: true }); }
    $('tokens-empty').hidden = S.tokens.length > 0;
  }

  async function expireTokens(body) {
    const r = await api('POST', '/tokens/expire', body);
    $('tokens-msg').textContent = r.ok ? 'Expired ' + r.data.expired + ' token(s).' : failureText(r, 'POST /mock/admin/tokens/expire');
    loadTokens();
  }

  // ---------------------------------------------------------------- faults

  async function loadFaults() {
    const r = await api('GET', '/faults');
    if (!r.ok || !Array.isArray(r.data)) {
      viewNotice('faults', failureText(r, 'GET /mock/admin/faults'));
      S.faults = [];
    } else {
      viewNotice('faults', null);
      S.faults = r.data;
    }
    renderFaults();
  }

  function renderFaults() {
    const rows = S.faults.map((f) => {
      const m = f.match || {};
      const rest = Object.entries(f).filter(([k]) => !['id', 'match', 'kind', 'remaining'].includes(k));
      return h('tr', { dataset: { id: f.id } },
        h('td', { class: 'mono' }, f.id),
        h('td', { class: 'mono' }, [m.method || 'any', m.host || '*', m.path || '.*'].join(' ')),
        h('td', null, h('span', { class: 'badge k-fault' }, f.kind)),
        h('td', null, rest.map(([k, v]) => k + '=' + valueText(v)).join(', ')),
        h('td', { class: 'num' }, f.remaining ?? '∞'),
        h('td', null, h('button', { type: 'button', class: 'quiet', dataset: { key: 'rmfault:' + f.id }, onclick: () => removeFault(f.id) }, 'Remove')));
    });
    $('faults-body').replaceChildren(...rows);
    $('faults-empty').hidden = S.faults.length > 0;
    $('count-faults').textContent = S.faults.length ? String(S.faults.length) : '';
  }

  async function removeFault(id) {
    const r = await api('DELETE', '/faults/' + encodeURIComponent(id));
    $('faults-msg').textContent = r.ok ? 'Removed rule ' + id + '.' : failureText(r, 'DELETE /mock/admin/faults/' + id);
    loadFaults();
  }

  function faultKindChanged() {
    const kind = $('ff-kind').value;
    for (const l of $('fault-form').querySelectorAll('label[data-kinds]')) l.hidden = !l.dataset.kinds.split(' ').includes(kind);
  }

  async function addFault(ev) {
    ev.preventDefault();
    const kind = $('ff-kind').value;
    const match = {};
    for (const k of ['method', 'host', 'path']) { const v = $('ff-' + k).value.trim(); if (v) match[k] = v; }
    const body = { match, kind };
    for (const el of $('fault-form').querySelectorAll('input[type=number]')) {
      const label = el.closest('label');
      if (label && label.hidden) continue;
      if (el.value === '') continue;
      body[el.id.slice(3)] = Number(el.value);
    }
    const r = await api('POST', '/faults', body);
    $('fault-form-msg').textContent = r.ok ? 'Added rule ' + r.data.id + '.' : failureText(r, 'POST /mock/admin/faults');
    loadFaults();
  }

  // ---------------------------------------------------------------- cassette

  async function loadCassette() {
    const r = await api('GET', '/cassette');
    if (!r.ok) {
      viewNotice('cassette', failureText(r, 'GET /mock/admin/cassette') + ' Switching still works where POST /mock/admin/cassette does.');
      S.cassette = null;
    } else {
      viewNotice('cassette', null);
      const d = r.data;
      S.cassette = Array.isArray(d) ? { exchanges: d } : { name: d && d.name, total: d && d.total, exchanges: (d && d.exchanges) || [], names: (d && d.cassettes) || [] };
      $('cassette-names').replaceChildren(...(S.cassette.names || []).map((n) => h('option', { value: n })));
    }
    renderCassette();
  }

  function renderCassette() {
    const ex = (S.cassette && S.cassette.exchanges) || [];
    const words = $('c-text').value.toLowerCase().split(/\s+/).filter(Boolean);
    const unserved = $('c-unserved').checked;
    const served = (x) => (typeof x.served === 'number' ? x.served > 0 : !!x.served);
    const shown = ex.filter((x) => (!unserved || !served(x)) &&
      (!words.length || words.every((w) => [x.seq, x.method, x.host, x.path, x.query, x.status].join(' ').toLowerCase().includes(w))));
    const cut = shown.slice(0, MAX_ROWS);
    $('cassette-body').replaceChildren(...cut.map((x) => h('tr', { dataset: { seq: x.seq, served: String(served(x)) } },
      h('td', { class: 'num' }, x.seq), h('td', { class: 'method' }, x.method || ''), h('td', { class: 'host' }, x.host || ''),
      h('td', { class: 'path' }, breakable((x.path || '') + (x.query ? '?' + x.query : ''))),
      h('td', { class: 'status ' + statusClass(x.status) }, x.status ?? ''),
      h('td', null, typeof x.served === 'number' ? (x.served ? '×' + x.served : h('span', { class: 'muted' }, 'never')) : served(x) ? 'yes' : h('span', { class: 'muted' }, 'never')))));
    $('cassette-empty').hidden = !S.cassette || ex.length > 0;
    const total = S.cassette && S.cassette.total > ex.length ? ' (the first ' + ex.length + ' of ' + S.cassette.total + ' listed)' : '';
    $('cassette-shown').textContent = S.cassette ? (shown.length === ex.length ? ex.length + ' exchanges' : shown.length + ' of ' + ex.length + ' exchanges') + total +
      (S.cassette.name ? ' in ' + S.cassette.name : '') + (cut.length < shown.length ? ' (first ' + MAX_ROWS + ' shown)' : '') : '';
  }

  async function switchCassette(ev) {
    ev.preventDefault();
    const name = $('cassette-name').value.trim();
    if (!name) return;
    $('cassette-msg').textContent = 'switching to ' + name + '…';
    const r = await api('POST', '/cassette', { name });
    $('cassette-msg').textContent = r.ok ? 'Replaying ' + r.data.cassette + (r.data.exchanges !== undefined ? ' (' + r.data.exchanges + ' exchanges)' : '') + '; everything was reset.' : failureText(r, 'POST /mock/admin/cassette');
    if (r.ok) refreshAll();
  }

  // ---------------------------------------------------------------- loading and live updates

  const loaders = { journal: loadJournal, misses: () => renderMisses(), ws: loadWs, calls: loadCalls, tokens: loadTokens, faults: loadFaults, cassette: loadCassette };
  const timers = new Map();

  /** Loads a view once within `ms`, however many events asked for it. */
  function loadSoon(view, ms) {
    if (timers.has(view)) return;
    timers.set(view, setTimeout(() => { timers.delete(view); loaders[view](); }, ms));
  }

  async function refreshAll() {
    const r = await api('GET', '/health');
    if (r.ok) { applyHealth(r.data); $('banner').hidden = true; } else if (r.status !== 401 && r.status !== 403) showBanner(failureText(r, 'GET /mock/admin/health'));
    await Promise.all([loadJournal(), loadWs(), loadCalls(), loadTokens(), loadFaults(), S.view === 'cassette' ? loadCassette() : (S.stale.add('cassette'), null), loadClock()]);
    // Frames of sessions already loaded are fetched again when their session is next selected.
    for (const w of S.ws.values()) if (w.framesState === 'ok' && String(w.id) !== String(S.wsSelected)) w.framesState = 'none';
    if (S.wsSelected !== null && S.ws.get(String(S.wsSelected))) loadFrames(S.wsSelected);
  }

  function setLive(state, text) {
    const el = $('live');
    el.dataset.state = state;
    document.body.dataset.live = state;
    el.textContent = text || { live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…', down: 'live updates stopped', unavailable: 'no live updates' }[state] || state;
  }

  let es = null;
  let helloSeen = false;

  function parse(ev) {
    try { return JSON.parse(ev.data); } catch { return null; }
  }

  function connectEvents() {
    if (!('EventSource' in window)) { setLive('unavailable', 'this browser has no EventSource: use Refresh'); refreshAll(); return; }
    if (es) es.close();
    setLive('connecting');
    es = new EventSource('/mock/admin/events', { withCredentials: true });
    const fallback = setTimeout(() => { if (!helloSeen) refreshAll(); }, 1500);
    es.onopen = () => setLive('live');
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) { clearTimeout(fallback); setLive('down'); probeEvents(); } else setLive('reconnecting');
    };
    es.addEventListener('hello', (ev) => {
      helloSeen = true;
      clearTimeout(fallback);
      setLive('live');
      applyHealth(parse(ev));
      refreshAll();
    });
    es.addEventListener('journal', (ev) => onJournalEvent(parse(ev)));
    es.addEventListener('ws', (ev) => onWsEvent(parse(ev)));
    es.addEventListener('state', () => loadSoon('calls', 30));
    // A moved clock may have fired state timers and delayed moves.
    es.addEventListener('clock', (ev) => { const d = parse(ev); if (d && d.now) setClock(d.now); loadSoon('calls', 30); });
    es.addEventListener('tokens', () => loadSoon('tokens', 30));
    es.addEventListener('faults', () => loadSoon('faults', 30));
    es.addEventListener('cassette', () => refreshAll());
    es.addEventListener('captured', (ev) => onCaptured(parse(ev)));
    es.addEventListener('changed', (ev) => onChanged(parse(ev)));
    es.addEventListener('lagged', () => refreshAll());
  }

  /** Why the stream closed: a missing route is said once; anything else is tried again. */
  async function probeEvents() {
    const ctl = new AbortController();
    let status = 0;
    try {
      const r = await fetch('/mock/admin/events', { signal: ctl.signal, credentials: 'same-origin', headers: { Accept: 'text/event-stream' } });
      status = r.status;
      ctl.abort();
    } catch { /* not answering */ }
    if (status === 404 || status === 405) {
      setLive('unavailable', 'no live updates in this callvcr (GET /mock/admin/events answered ' + status + '); use Refresh');
      refreshAll();
      return;
    }
    if (status === 401) { showAuthBanner(''); setLive('down', 'not signed in'); return; }
    setTimeout(connectEvents, 3000);
  }

  // ---------------------------------------------------------------- views and keyboard

  function tabs() { return [...document.querySelectorAll('[role=tab]')]; }

  function showView(view, focusTab) {
    if (!VIEWS.includes(view)) view = 'journal';
    S.view = view;
    for (const t of tabs()) {
      const on = t.dataset.view === view;
      t.setAttribute('aria-selected', String(on));
      t.tabIndex = on ? 0 : -1;
      if (on && focusTab) t.focus();
    }
    for (const v of VIEWS) $('view-' + v).hidden = v !== view;
    document.body.dataset.view = view;
    if (location.hash !== '#' + view) history.replaceState(null, '', '#' + view);
    if (S.stale.has(view)) { S.stale.delete(view); loaders[view](); }
    if (view === 'misses') renderMisses();
    if (view === 'tokens') paintClock();
    if (view === 'calls') centreGraphs();
  }

  function tabKeys(ev) {
    const list = tabs();
    const i = list.indexOf(ev.target);
    if (i < 0) return;
    let j = null;
    if (ev.key === 'ArrowRight') j = (i + 1) % list.length;
    else if (ev.key === 'ArrowLeft') j = (i - 1 + list.length) % list.length;
    else if (ev.key === 'Home') j = 0;
    else if (ev.key === 'End') j = list.length - 1;
    if (j === null) return;
    ev.preventDefault();
    showView(list[j].dataset.view, true);
  }

  function start() {
    for (const t of tabs()) t.addEventListener('click', () => showView(t.dataset.view));
    document.querySelector('[role=tablist]').addEventListener('keydown', tabKeys);
    window.addEventListener('hashchange', () => showView(location.hash.slice(1)));
    window.addEventListener('resize', () => { if (S.view === 'calls') centreGraphs(); });

    const jb = $('journal-body');
    jb.addEventListener('click', (ev) => { const tr = ev.target.closest('tr[data-seq]'); if (tr) selectRow(Number(tr.dataset.seq), true); });
    jb.addEventListener('keydown', rowKeys);
    $('journal-detail').addEventListener('keydown', (ev) => { if (ev.key === 'Escape') { ev.preventDefault(); closeDetail(); } });
    jb.addEventListener('keydown', (ev) => { if (ev.key === 'Escape' && S.selected !== null) { ev.preventDefault(); closeDetail(); } });
    $('journal-filters').addEventListener('submit', (ev) => ev.preventDefault());
    for (const id of ['f-text', 'f-host', 'f-kind', 'f-scope']) $(id).addEventListener('input', renderJournalSoon);

    const wb = $('ws-body');
    wb.addEventListener('click', (ev) => { const tr = ev.target.closest('tr[data-session]'); if (tr) selectWs(tr.dataset.session, true); });
    wb.addEventListener('keydown', (ev) => {
      const tr = ev.target.closest('tr[data-session]');
      if (!tr) return;
      if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); selectWs(tr.dataset.session, true); }
      const to = ev.key === 'ArrowDown' ? tr.nextElementSibling : ev.key === 'ArrowUp' ? tr.previousElementSibling : null;
      if (to) { ev.preventDefault(); tr.tabIndex = -1; to.tabIndex = 0; to.focus(); }
    });

    for (const b of document.querySelectorAll('[data-advance]')) b.addEventListener('click', () => moveClock({ advance_ms: Number(b.dataset.advance) }));
    $('clock-advance-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      moveClock({ advance_ms: Math.round(Number($('clock-amount').value) * Number($('clock-unit').value)) });
    });
    $('clock-set').addEventListener('input', () => { $('clock-set').dataset.edited = '1'; });
    $('clock-set-form').addEventListener('submit', (ev) => { ev.preventDefault(); moveClock({ set: $('clock-set').value.trim() }); });
    $('tokens-expire-all').addEventListener('click', () => expireTokens({}));

    $('ff-kind').addEventListener('change', faultKindChanged);
    faultKindChanged();
    $('fault-form').addEventListener('submit', addFault);
    $('faults-clear').addEventListener('click', async () => {
      const r = await api('DELETE', '/faults');
      $('faults-msg').textContent = r.ok ? 'Removed ' + r.data.removed + ' rule(s).' : failureText(r, 'DELETE /mock/admin/faults');
      loadFaults();
    });

    $('cassette-form').addEventListener('submit', switchCassette);
    $('cassette-filters').addEventListener('submit', (ev) => ev.preventDefault());
    $('c-text').addEventListener('input', renderCassette);
    $('c-unserved').addEventListener('change', renderCassette);
    $('refresh').addEventListener('click', refreshAll);

    // The virtual clock ticks with real time unless frozen: repaint it (no request is made).
    setInterval(() => { if (!S.clock.frozen && S.clock.base !== null) { paintClock(); if (S.view === 'tokens') renderTokens(); } }, 1000);

    showView(location.hash.slice(1) || 'journal');
    connectEvents();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
