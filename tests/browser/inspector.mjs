// The web inspector (GET /ui on the admin listener) end to end in a real browser: Debian's chromium,
// headless, driven over the DevTools protocol, against the real callvcr binary replaying a cassette.
// Every check waits for its condition in the page (the DOM read through Runtime.evaluate, looked at
// again every 25 ms up to a deadline), never a fixed pause. Screenshots of each view go to
// target/browser/screenshots/. Ends with "browser: N passed, M failed"; exit 0 or 1.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { chromiumPath, launchChromium, wsOpen } from './cdp.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.CALLVCR_BIN || path.join(ROOT, 'target/debug/callvcr');
const OUT = path.join(ROOT, 'target/browser');
const SHOTS = path.join(OUT, 'screenshots');
const SOON = 1000; // "within a second of happening"
const LONG = 8000; // page loads, first paint
const CALL = '5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e';
const CUSTOMER = '8e2f3a4b-1c2d-4e5f-9a0b-1c2d3e4f5a6b';
const CHANNEL = '/channels/streaming-0-inspector';
const ADMIN_TOKEN = 'inspector-admin-token';
const VERBOSE = !!process.env.BROWSER_VERBOSE;
// BROWSER_UI_FROM_TREE=1: the page's files come from this tree's ui/ (through a small server in
// front of the admin listener) instead of the ones the binary embedded when it was built, so the
// page can be tried without rebuilding. Everything else still goes to callvcr.
const FROM_TREE = !!process.env.BROWSER_UI_FROM_TREE;
const UI_FILES = { '/ui': 'index.html', '/ui/app.js': 'app.js', '/ui/app.css': 'app.css' };

const started = [];
let work;

function log(...a) { if (VERBOSE) console.error('[browser]', ...a); }

// ------------------------------------------------------------------ processes

function cleanup() {
  for (const p of started.reverse()) {
    if (p.exitCode !== null || p.signalCode !== null) continue;
    try { process.kill(p.group ? -p.pid : p.pid, 'SIGTERM'); } catch { /* gone */ }
  }
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { cleanup(); process.exit(1); });

async function until(what, check, ms = LONG, every = 25) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try { last = await check(); } catch (e) { last = e; }
    if (last && !(last instanceof Error)) return last;
    if (Date.now() >= end) throw new Error(`${what}: not within ${ms} ms${last instanceof Error ? ` (${last.message})` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/**
 * callvcr in its own directory, replaying `cassette` (or running `mode`: ['record', ...]); resolves
 * once its ready file names the listeners. Every instance shares one CA (work/certs).
 */
async function startCallvcr(name, cassette, configYaml, mode) {
  const dir = path.join(work, name);
  fs.mkdirSync(path.join(dir, 'cassettes'), { recursive: true });
  const ready = path.join(dir, 'ready.json');
  const args = [...(mode || ['replay', '--cassette', cassette, '--ws-speed', 'instant']), '--cassettes', path.join(dir, 'cassettes'), '--certs', path.join(work, 'certs'),
    '--listen', '127.0.0.1:0', '--proxy-listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--ready-file', ready];
  if (configYaml) {
    fs.writeFileSync(path.join(dir, 'proxy.yaml'), configYaml);
    args.push('--config', path.join(dir, 'proxy.yaml'));
  }
  const logFile = fs.openSync(path.join(dir, 'callvcr.log'), 'w');
  const child = spawn(BIN, args, { cwd: dir, stdio: ['ignore', logFile, logFile], env: { ...process.env, CALLVCR_NO_STATUS: '1' } });
  started.push(child);
  const addrs = await until(`callvcr (${name}) ready`, () => {
    if (child.exitCode !== null) throw new Error(`callvcr exited ${child.exitCode}: ${fs.readFileSync(path.join(dir, 'callvcr.log'), 'utf8').slice(-1500)}`);
    try { return JSON.parse(fs.readFileSync(ready, 'utf8')); } catch { return null; }
  }, 20000, 50);
  const [tlsHost, tlsPort] = addrs.tls.split(':');
  return { child, dir, admin: addrs.admin, tlsHost, tlsPort: Number(tlsPort), log: path.join(dir, 'callvcr.log') };
}

/** A cassette: the Genesys call example, plus a notification channel with one event. */
function writeCassette() {
  const lines = fs.readFileSync(path.join(ROOT, 'examples/genesys-call.jsonl'), 'utf8').trim().split('\n');
  const host = 'streaming.mypurecloud.com';
  const seq = lines.length; // the header line + (seq - 1) exchanges
  lines.push(JSON.stringify({
    seq, recorded_at: '2026-12-03T13:28:54.300Z', duration_ms: 2,
    request: { method: 'GET', scheme: 'https', host, path: CHANNEL, headers: [['host', host], ['upgrade', 'websocket'], ['connection', 'Upgrade']], body: { text: '' } },
    response: { status: 101, headers: [['upgrade', 'websocket'], ['connection', 'Upgrade']], body: { text: '' } },
  }));
  const event = { topicName: 'v2.users.u-1.presence', eventBody: { id: 'u-1', presenceDefinition: { systemPresence: 'Available' } } };
  lines.push(JSON.stringify({ frame: { session: seq, n: 0, dir: 'server', at_ms: 20, kind: 'text', data: { text: JSON.stringify(event) } } }));
  const p = path.join(work, 'inspector.jsonl');
  fs.writeFileSync(p, lines.join('\n') + '\n');
  return p;
}

// ------------------------------------------------------------------ traffic through callvcr

let CA;

/** One HTTPS request through callvcr's TLS listener, SNI and Host `host`. */
function send(cv, method, host, pathq, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const hs = { host, ...headers };
    if (data) hs['content-length'] = data.length;
    if (body !== undefined && typeof body !== 'string') hs['content-type'] = 'application/json';
    const req = https.request({ host: cv.tlsHost, port: cv.tlsPort, servername: host, ca: CA, method, path: pathq, headers: hs, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json, at: Date.now() });
      });
    });
    req.on('error', reject);
    req.setTimeout(10000, () => req.destroy(new Error(`${method} ${host}${pathq}: no answer in 10 s`)));
    if (data) req.write(data);
    req.end();
  });
}

/** Signs in as the example's user (authorization-code grant answered by the auth overlay). */
async function signIn(cv) {
  const cb = encodeURIComponent('http://localhost/cb');
  const a = await send(cv, 'GET', 'login.mypurecloud.com', `/oauth/authorize?response_type=code&client_id=example-client&redirect_uri=${cb}&state=s1`);
  const code = /code=([^&]+)/.exec(a.headers.location || '');
  if (!code) throw new Error(`authorize answered ${a.status} without a code (location: ${a.headers.location})`);
  const t = await send(cv, 'POST', 'login.mypurecloud.com', '/oauth/token', {
    headers: { authorization: 'Basic ' + Buffer.from('example-client:example-secret').toString('base64'), 'content-type': 'application/x-www-form-urlencoded' },
    body: `grant_type=authorization_code&code=${code[1]}&redirect_uri=${cb}`,
  });
  if (!t.json || !t.json.access_token) throw new Error(`token request answered ${t.status}: ${t.text.slice(0, 300)}`);
  return t.json.access_token;
}

/** Plain HTTP to the admin listener with exactly these headers (no browser in between). */
function adminRaw(cv, method, pathq, headers = {}, body) {
  return new Promise((resolve, reject) => {
    const [host, port] = cv.admin.split(':');
    const req = http.request({ host, port: Number(port), method, path: pathq, headers: { host: cv.admin, ...headers }, agent: false }, (res) => {
      if ((res.headers['content-type'] || '').startsWith('text/event-stream')) { resolve({ status: res.statusCode, headers: res.headers, text: '' }); res.destroy(); return; }
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error(`${method} ${pathq}: no answer in 5 s`)));
    if (body) req.write(body);
    req.end();
  });
}

/**
 * With BROWSER_UI_FROM_TREE: a server in front of `cv`'s admin listener, as if it were callvcr's
 * own origin (Host and Origin rewritten to it), answering the page's files from ui/ wherever
 * callvcr would answer them with 200 (so admin.token still decides). Resolves to its base URL.
 */
function treeServer(cv) {
  const [host, port] = cv.admin.split(':');
  const srv = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://page');
    const headers = { ...req.headers, host: cv.admin };
    if (headers.origin) headers.origin = `http://${cv.admin}`;
    const up = http.request({ host, port: Number(port), method: req.method, path: req.url, headers, agent: false }, (ur) => {
      const file = UI_FILES[u.pathname];
      if (file && ur.statusCode === 200) {
        ur.resume();
        const body = fs.readFileSync(path.join(ROOT, 'ui', file));
        const hs = { ...ur.headers, 'content-length': body.length };
        delete hs['transfer-encoding'];
        res.writeHead(200, hs);
        res.end(body);
        return;
      }
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  return new Promise((ok) => srv.listen(0, '127.0.0.1', () => { srv.unref(); ok(`http://127.0.0.1:${srv.address().port}`); }));
}

// ------------------------------------------------------------------ the page

class Page {
  constructor(cdp, sessionId) { this.cdp = cdp; this.sid = sessionId; }

  send(method, params) { return this.cdp.send(method, params, this.sid); }

  async eval(expr) {
    const r = await this.send('Runtime.evaluate', { expression: expr, returnByValue: true, awaitPromise: true });
    if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.exception ? r.exceptionDetails.exception.description : r.exceptionDetails.text}`);
    return r.result.value;
  }

  /** Waits until `expr` is truthy in the page; resolves to its value. */
  waitFor(what, expr, ms = LONG) { return until(what, () => this.eval(expr), ms); }

  /** Loads `url` as a new document (never a same-document jump to another fragment). */
  async goto(url) {
    await this.eval('window.__leaving = true');
    await this.send('Page.navigate', { url });
    await until(`load ${url}`, () => this.eval('document.readyState === "complete" && !window.__leaving'), LONG);
  }

  /** Loads the page again (a new document, so focus and state start afresh). */
  async reload() {
    await this.eval('window.__leaving = true');
    await this.send('Page.reload', { ignoreCache: true });
    await until('reload', () => this.eval('document.readyState === "complete" && !window.__leaving'), LONG);
  }

  /** A real mouse click at the middle of the element `sel`. */
  async click(sel) {
    const box = await this.waitFor(`${sel} on screen`, `(() => { const el = document.querySelector(${JSON.stringify(sel)}); if (!el) return null;
      el.scrollIntoView({block: 'center'}); const r = el.getBoundingClientRect(); return r.width ? {x: r.x + r.width / 2, y: r.y + r.height / 2} : null; })()`);
    for (const type of ['mouseMoved', 'mousePressed', 'mouseReleased']) {
      await this.send('Input.dispatchMouseEvent', { type, x: box.x, y: box.y, button: 'left', clickCount: type === 'mouseMoved' ? 0 : 1 });
    }
  }

  async key(key) {
    const codes = { Tab: 9, Enter: 13, ArrowRight: 39, ArrowLeft: 37, ArrowDown: 40, ArrowUp: 38, ' ': 32 };
    const base = { key, code: key === ' ' ? 'Space' : key, windowsVirtualKeyCode: codes[key], nativeVirtualKeyCode: codes[key] };
    await this.send('Input.dispatchKeyEvent', { type: 'keyDown', ...base, ...(key === 'Enter' ? { text: '\r' } : {}) });
    await this.send('Input.dispatchKeyEvent', { type: 'keyUp', ...base });
  }

  async view(name) {
    await this.click(`#tab-${name}`);
    await this.waitFor(`view ${name} shown`, `!document.getElementById('view-${name}').hidden`);
  }

  async shot(name) {
    fs.mkdirSync(SHOTS, { recursive: true });
    const r = await this.send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: false });
    fs.writeFileSync(path.join(SHOTS, `${name}.png`), Buffer.from(r.data, 'base64'));
  }

  async size(width, height) {
    await this.send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false });
  }
}

const q = (s) => JSON.stringify(s);

/**
 * Page expression: every visible piece of text whose colour against its background falls short of
 * WCAG AA (4.5:1; 3:1 for large text), as "tag.class "text" ratio". Backgrounds with transparency
 * are blended over what lies under them.
 */
const CONTRAST = `(() => {
  const parse = (c) => {
    let m = /rgba?\\(([^)]+)\\)/.exec(c);
    if (m) { const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; }
    m = /color\\(srgb ([^)]+)\\)/.exec(c);
    if (m) { const p = m[1].split(/[\\s\\/]+/).filter(Boolean).map(Number); return [p[0] * 255, p[1] * 255, p[2] * 255, p.length > 3 ? p[3] : 1]; }
    return null;
  };
  const blend = (top, under) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3])).concat(1);
  const backdrop = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    return layers.reverse().reduce((under, c) => blend(c, under), [255, 255, 255, 1]);
  };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }; return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const bad = [];
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('svg') || el.getClientRects().length === 0) continue;
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const cs = getComputedStyle(el);
    if (cs.visibility === 'hidden') continue;
    const under = backdrop(el);
    const fg = blend(parse(cs.color) || [0, 0, 0, 1], under);
    const [hi, lo] = [lum(fg), lum(under)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(cs.fontSize);
    const large = size >= 24 || (size >= 18.6 && Number(cs.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) bad.push(el.tagName.toLowerCase() + '.' + String(el.className).replace(/ /g, '.') + ' "' + el.textContent.trim().slice(0, 24) + '" ' + ratio.toFixed(2));
  }
  return bad;
})()`;
/** Page expression: the journal row for `path` answered by `answered` (prefix), as {seq, ms}. */
const rowExpr = (pathText, answered, status) => `(() => { const rows = [...document.querySelectorAll('#journal-body tr[data-seq]')]
  .filter((r) => r.querySelector('td.path').textContent === ${q(pathText)} && r.dataset.answered.startsWith(${q(answered)})
    ${status ? `&& r.dataset.status === ${q(String(status))}` : ''});
  return rows.length ? Number(rows[rows.length - 1].dataset.seq) : null; })()`;

// ------------------------------------------------------------------ checks

const results = [];
let currentPage = null;
async function check(name, fn) {
  const t0 = Date.now();
  try {
    const note = await fn();
    results.push({ name, ok: true });
    console.log(`ok ${results.length} - ${name} (${Date.now() - t0} ms)${note ? ` — ${note}` : ''}`);
  } catch (e) {
    results.push({ name, ok: false });
    console.log(`not ok ${results.length} - ${name}: ${e.message}`);
    if (currentPage) await currentPage.shot(`failed-${results.length}`).catch(() => {});
  }
}

/** Waits for `expr` within SOON of `since` (when the event happened); says how long it took. */
async function soon(page, what, expr, since) {
  const left = Math.max(50, SOON - (Date.now() - since));
  const v = await page.waitFor(what, expr, left);
  return { value: v, ms: Date.now() - since };
}

async function main() {
  const chromium = chromiumPath();
  if (!chromium) { console.log('browser: chromium is not installed (apt-get install chromium)'); process.exit(3); }
  if (!fs.existsSync(BIN)) { console.log(`browser: no callvcr binary at ${BIN} (cargo build first)`); console.log('browser: 0 passed, 1 failed'); process.exit(1); }
  fs.mkdirSync(OUT, { recursive: true });
  fs.rmSync(SHOTS, { recursive: true, force: true });
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'callvcr-browser-'));
  const cassette = writeCassette();
  const cv = await startCallvcr('replay', cassette, null);
  CA = fs.readFileSync(path.join(work, 'certs/ca.pem'));
  log('callvcr', cv.admin, 'work', work);

  const { child: browser, cdp } = await launchChromium(chromium, path.join(work, 'profile'), { log: VERBOSE ? (t) => log(t.trim()) : null });
  browser.group = true;
  started.push(browser);
  const { targetId } = await cdp.send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await cdp.send('Target.attachToTarget', { targetId, flatten: true });
  const page = new Page(cdp, sessionId);
  currentPage = page;
  // What the page logs or throws is part of the test's output: an exception fails nothing by
  // itself, but it says why a check did.
  const pageErrors = [];
  cdp.on('Runtime.exceptionThrown', (p) => { const d = p.exceptionDetails; pageErrors.push(d.exception ? d.exception.description : d.text); console.log(`# page exception: ${pageErrors[pageErrors.length - 1]}`); });
  cdp.on('Runtime.consoleAPICalled', (p) => { if (p.type === 'error' || p.type === 'warning' || VERBOSE) console.log(`# page console.${p.type}: ${p.args.map((a) => a.value ?? a.description).join(' ')}`); });
  await page.send('Page.enable');
  await page.send('Runtime.enable');
  await page.size(1280, 800);
  const base = FROM_TREE ? await treeServer(cv) : `http://${cv.admin}`;
  let token;

  const embedded = async () => {
    const stale = [];
    for (const [route, file] of Object.entries(UI_FILES)) {
      const r = await adminRaw(cv, 'GET', route);
      if (r.text !== fs.readFileSync(path.join(ROOT, 'ui', file), 'utf8')) stale.push(`${route} (${r.status})`);
    }
    return stale;
  };
  if (FROM_TREE) {
    const stale = await embedded();
    console.log(`# BROWSER_UI_FROM_TREE: the page comes from ui/${stale.length ? `; the binary embeds other files at ${stale.join(', ')}` : ' (the binary embeds the same files)'}`);
  } else {
    await check("the binary serves this tree's ui/ files (else it is older than the page: rebuild)", async () => {
      const stale = await embedded();
      if (stale.length) throw new Error(`different at ${stale.join(', ')}: the checks below test the older page`);
    });
  }
  let overlaySeq;

  await check('the page loads from GET /ui and its live stream (GET /mock/admin/events) connects', async () => {
    const r = await adminRaw(cv, 'GET', '/ui');
    if (r.status !== 200 || !/text\/html/.test(r.headers['content-type'] || '')) throw new Error(`GET /ui answered ${r.status} ${r.headers['content-type'] || ''}: ${r.text.slice(0, 200)}`);
    await page.goto(`${base}/ui`);
    await page.waitFor('the live indicator to say live', `document.body.dataset.live === 'live'`);
    await page.waitFor('the header to show the mode', `document.getElementById('fact-mode').textContent === 'replay'`);
  });

  await check('a hit appears in the journal within a second', async () => {
    token = await signIn(cv);
    const r = await send(cv, 'GET', 'api.mypurecloud.com', '/api/v2/users/me', { headers: { authorization: `Bearer ${token}` } });
    if (r.status !== 200) throw new Error(`users/me answered ${r.status}: ${r.text.slice(0, 200)}`);
    const { ms } = await soon(page, 'the hit row', rowExpr('/api/v2/users/me', 'hit', 200), r.at);
    return `${ms} ms after the answer`;
  });

  await check('an overlay answer (an unknown token, 401 by overlay:auth) appears within a second', async () => {
    const r = await send(cv, 'GET', 'api.mypurecloud.com', '/api/v2/users/me', { headers: { authorization: 'Bearer not-a-token-callvcr-issued' } });
    if (r.status !== 401) throw new Error(`users/me with a made-up token answered ${r.status}`);
    const { value, ms } = await soon(page, 'the overlay row', rowExpr('/api/v2/users/me', 'overlay:auth', 401), r.at);
    overlaySeq = value;
    return `${ms} ms`;
  });

  let missAt;
  await check('a miss appears in the journal within a second', async () => {
    const r = await send(cv, 'POST', 'api.mypurecloud.com', '/api/v2/conversations/calls', { headers: { authorization: `Bearer ${token}` }, body: { phoneNumber: '+13175550199' } });
    if (r.status !== 404 || r.headers['x-callvcr-miss'] !== '1') throw new Error(`the unrecorded call placement answered ${r.status}`);
    missAt = r.at;
    const { ms } = await soon(page, 'the miss row', rowExpr('/api/v2/conversations/calls', 'miss', 404), r.at);
    return `${ms} ms`;
  });

  await check('the Misses view names the differing field (phoneNumber, live against recorded)', async () => {
    await page.view('misses');
    const found = await page.waitFor('a miss card naming phoneNumber', `(() => {
      const card = document.querySelector('.miss'); if (!card) return null;
      const row = [...card.querySelectorAll('tr.diff')].find((r) => /phoneNumber/.test(r.querySelector('.diff-field') ? r.querySelector('.diff-field').textContent : ''));
      if (!row) return null;
      return {live: row.querySelector('.live').textContent, recorded: row.querySelector('.recorded').textContent, marked: !!row.querySelector('.diff-field mark')};
    })()`, LONG);
    if (!found.live.includes('+13175550199') || !found.recorded.includes('+13175550100')) throw new Error(`side by side shows ${JSON.stringify(found)}`);
    if (!found.marked) throw new Error('the field is not highlighted');
    await page.shot('misses');
    return `live ${found.live} vs recorded ${found.recorded}`;
  });

  await check('a WebSocket session appears within a second, its replayed frame on the timeline', async () => {
    await page.view('ws');
    const sock = tls.connect({ host: cv.tlsHost, port: cv.tlsPort, servername: 'streaming.mypurecloud.com', ca: CA, ALPNProtocols: ['http/1.1'] });
    await new Promise((ok, no) => { sock.once('secureConnect', ok); sock.once('error', no); });
    const ws = await wsOpen(sock, 'streaming.mypurecloud.com', CHANNEL);
    const opened = Date.now();
    const got = new Promise((ok) => ws.once('message', ok));
    const { ms } = await soon(page, 'the session row', `[...document.querySelectorAll('#ws-body tr[data-session]')].some((r) => r.textContent.includes(${q(CHANNEL)}))`, opened);
    await got;
    await page.waitFor('the replayed event on the timeline', `[...document.querySelectorAll('#ws-detail .frame')].some((f) => f.textContent.includes('presenceDefinition'))`, SOON);
    await page.shot('websockets');
    ws.close();
    return `${ms} ms after the handshake`;
  });

  await check('selecting a journal row (Enter) shows its request and response, JSON pretty-printed', async () => {
    await page.view('journal');
    if (!overlaySeq) throw new Error('no overlay row to open');
    await page.eval(`document.querySelector('#journal-body tr[data-seq="${overlaySeq}"]').focus()`);
    await page.key('Enter');
    const d = await page.waitFor('the detail pane with the response', `(() => { const p = document.getElementById('journal-detail');
      const j = p.querySelector('pre.json'); return p.querySelector('.side') && j ? {text: p.textContent, json: j.textContent} : null; })()`);
    if (!/bad\.credentials/.test(d.text)) throw new Error('the response body (bad.credentials) is not shown');
    if (!/\n {2}"/.test(d.json)) throw new Error('the JSON body is not pretty-printed');
    if (!/Authorization|authorization/.test(d.text)) throw new Error('the request headers are not shown');
    await page.shot('journal');
  });

  await check('the journal filters: answered-by, host and text narrow the rows', async () => {
    await page.view('journal');
    const rows = `[...document.querySelectorAll('#journal-body tr[data-seq]')]`;
    const set = (id, v) => page.eval(`(() => { const el = document.getElementById(${q(id)}); el.value = ${q(v)}; el.dispatchEvent(new Event('input', {bubbles: true})); })()`);
    await set('f-kind', 'miss');
    await page.waitFor('only misses', `${rows}.length > 0 && ${rows}.every((r) => r.dataset.kind === 'miss')`, SOON);
    await set('f-kind', '');
    await set('f-host', 'login.mypurecloud.com');
    await page.waitFor('only login rows', `${rows}.length > 0 && ${rows}.every((r) => r.querySelector('td.host').textContent === 'login.mypurecloud.com')`, SOON);
    await set('f-host', '');
    await set('f-text', 'unknown-token');
    await page.waitFor('only the unknown-token row', `${rows}.length === 1 && ${rows}[0].dataset.answered === 'overlay:auth'`, SOON);
    await set('f-text', '');
    await page.waitFor('every row back', `${rows}.length === document.getElementById('journal-shown').textContent.match(/^(\\d+)/).map(Number)[1]`, SOON);
  });

  await check("a call's graph highlights its current state and moves to disconnected when the SDK hangs up", async () => {
    await page.view('calls');
    const placed = await send(cv, 'POST', 'api.mypurecloud.com', '/api/v2/conversations/calls', { headers: { authorization: `Bearer ${token}` }, body: { phoneNumber: '+13175550100' } });
    if (placed.status !== 200) throw new Error(`placing the recorded call answered ${placed.status}: ${placed.text.slice(0, 200)}`);
    const sel = `.session[data-id="${CALL}"] svg.machine`;
    const first = await soon(page, 'the placed call drawn, connected as its current state', `!!document.querySelector('${sel} .node.current[data-state="connected"]')`, placed.at);
    await page.shot('calls-connected');
    const r = await send(cv, 'PATCH', 'api.mypurecloud.com', `/api/v2/conversations/calls/${CALL}/participants/${CUSTOMER}`, { headers: { authorization: `Bearer ${token}` }, body: { state: 'disconnected' } });
    if (r.status >= 300) throw new Error(`the hang-up answered ${r.status}: ${r.text.slice(0, 200)}`);
    const { ms } = await soon(page, 'disconnected highlighted', `!!document.querySelector('${sel} .node.current[data-state="disconnected"]') && !!document.querySelector('${sel} .edge.taken[data-from="connected"][data-to="disconnected"]')`, r.at);
    await page.shot('calls-disconnected');
    // The admin transition one click away: disconnected → terminated.
    await page.click(`.session[data-id="${CALL}"] button[data-to="terminated"]`);
    await page.waitFor('terminated highlighted after the click', `!!document.querySelector('${sel} .node.current[data-state="terminated"]')`, SOON);
    return `drawn ${first.ms} ms after the call was placed, moved ${ms} ms after the hang-up`;
  });

  await check('advancing the clock from the page expires the token: the next API call gets 401', async () => {
    await page.view('tokens');
    await page.waitFor('the access token listed as live', `!!document.querySelector('#tokens-body tr[data-kind="access"][data-status="live"]')`);
    const before = await page.eval(`document.getElementById('clock-now').textContent`);
    await page.click('#clock-plus-day');
    await page.waitFor('the clock a day on', `document.getElementById('clock-now').textContent !== ${q(before)}`);
    await page.waitFor('the access token shown expired', `!!document.querySelector('#tokens-body tr[data-kind="access"][data-status="expired"]') && !document.querySelector('#tokens-body tr[data-kind="access"][data-status="live"]')`);
    const r = await send(cv, 'GET', 'api.mypurecloud.com', '/api/v2/users/me', { headers: { authorization: `Bearer ${token}` } });
    if (r.status !== 401) throw new Error(`the call after the clock moved answered ${r.status}`);
    await page.shot('tokens-clock');
    return `${(r.json && r.json.code) || r.status}`;
  });

  await check('a fault rule added from the page is served, then removed from the page', async () => {
    await page.view('faults');
    await page.eval(`(() => { const set = (id, v) => { const el = document.getElementById(id); el.value = v; el.dispatchEvent(new Event('change')); };
      set('ff-kind', 'status'); set('ff-path', '^/api/v2/users/me$'); set('ff-status', '503'); })()`);
    await page.click('#fault-form button[type=submit]');
    await page.waitFor('the rule listed', `[...document.querySelectorAll('#faults-body tr')].some((r) => r.textContent.includes('^/api/v2/users/me$'))`);
    await page.shot('faults');
    const r = await send(cv, 'GET', 'api.mypurecloud.com', '/api/v2/users/me');
    if (r.status !== 503 || !r.headers['x-callvcr-fault']) throw new Error(`the request under the rule answered ${r.status}`);
    await page.click('#faults-clear');
    await page.waitFor('no rule listed', `document.querySelectorAll('#faults-body tr').length === 0`);
  });

  await check('the Cassette view lists the loaded exchanges and which were served', async () => {
    await page.view('cassette');
    const n = await page.waitFor('the exchanges listed', `document.querySelectorAll('#cassette-body tr[data-seq]').length`);
    const served = await page.eval(`document.querySelectorAll('#cassette-body tr[data-served="true"]').length`);
    if (!served) throw new Error('no exchange shown as served, though users/me was');
    await page.shot('cassette');
    return `${n} exchanges, ${served} served`;
  });

  await check('keyboard: Tab reaches the views and a journal row, arrows switch views, Enter opens a row', async () => {
    await page.eval(`location.hash = '#journal'`);
    await page.reload();
    await page.waitFor('the journal loaded', `document.body.dataset.live === 'live' && document.querySelector('#journal-body tr[tabindex="0"]')`);
    const seen = [];
    for (let i = 0; i < 40; i++) {
      await page.key('Tab');
      const who = await page.eval(`(() => { const a = document.activeElement; return a ? (a.id || (a.dataset && a.dataset.seq ? 'row' : a.tagName)) : null; })()`);
      seen.push(who);
      if (who === 'row') break;
    }
    for (const want of ['refresh', 'tab-journal', 'f-text', 'f-host', 'f-kind', 'f-scope', 'row']) {
      if (!seen.includes(want)) throw new Error(`Tab never reached ${want} (went ${seen.join(' → ')})`);
    }
    const focusVisible = await page.eval(`getComputedStyle(document.activeElement).outlineStyle !== 'none'`);
    if (!focusVisible) throw new Error('the focused row shows no focus outline');
    await page.key('Enter');
    await page.waitFor('Enter on the row opens it', `document.getElementById('journal-detail').querySelector('h2') !== null`);
    await page.eval(`document.getElementById('tab-journal').focus()`);
    await page.key('ArrowRight');
    await page.waitFor('ArrowRight shows the Misses view', `!document.getElementById('view-misses').hidden && document.activeElement.id === 'tab-misses'`, SOON);
  });

  await check('readable colours: all text meets WCAG AA contrast in every view, light and dark', async () => {
    const bad = [];
    for (const scheme of ['light', 'dark']) {
      await page.send('Emulation.setEmulatedMedia', { features: [{ name: 'prefers-color-scheme', value: scheme }] });
      for (const v of ['journal', 'misses', 'ws', 'calls', 'tokens', 'faults', 'cassette']) {
        await page.view(v);
        for (const x of await page.eval(CONTRAST)) bad.push(`${scheme} ${v}: ${x}`);
        if (scheme === 'dark' && (v === 'journal' || v === 'calls' || v === 'misses')) await page.shot(`${v}-dark`);
      }
    }
    await page.send('Emulation.setEmulatedMedia', { features: [{ name: 'prefers-color-scheme', value: 'light' }] });
    if (bad.length) throw new Error(`${bad.length} below AA: ${[...new Set(bad)].slice(0, 12).join('; ')}`);
  });

  await check('at a narrow width (390 px) the page fits: no sideways scrolling, panes stacked', async () => {
    await page.size(390, 844);
    await page.view('journal');
    const w = await page.waitFor('layout at 390 px', `window.innerWidth === 390 ? {scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth} : null`);
    if (w.scroll > w.client) throw new Error(`the page is ${w.scroll} px wide in a ${w.client} px window`);
    const stacked = await page.eval(`(() => { const a = document.getElementById('journal-wrap').getBoundingClientRect(); const b = document.getElementById('journal-detail').getBoundingClientRect(); return b.top >= a.bottom - 1; })()`);
    if (!stacked) throw new Error('the detail pane is not below the table');
    await page.shot('journal-narrow');
    const wide = [];
    for (const v of ['misses', 'ws', 'calls', 'tokens', 'faults', 'cassette']) {
      await page.view(v);
      const x = await page.eval(`({scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth})`);
      if (x.scroll > x.client) wide.push(`${v} ${x.scroll} px`);
      if (v === 'calls' || v === 'tokens') await page.shot(`${v}-narrow`);
    }
    if (wide.length) throw new Error(`wider than the 390 px window: ${wide.join(', ')}`);
    await page.size(1280, 800);
  });

  // ---------------------------------------------------------------- record mode
  // Recording with the replaying callvcr above as the sandbox: its CA is the one both share.
  const rec = await startCallvcr('record', null, null, ['record', '--cassette', 'recorded', '--resolve', `*=${cv.tlsHost}:${cv.tlsPort}`, '--upstream-ca', path.join(work, 'certs/ca.pem')]);
  const rb = FROM_TREE ? await treeServer(rec) : `http://${rec.admin}`;

  await check('record mode: the journal shows the exchange live, answered upstream, and names what was redacted (names only)', async () => {
    await page.goto(`${rb}/ui#journal`);
    await page.waitFor('the page live in record mode', `document.body.dataset.live === 'live' && document.getElementById('fact-mode').textContent === 'record' && !document.getElementById('record-note').hidden`);
    const live = await signIn(rec);
    const t0 = Date.now();
    const { value: seq, ms } = await soon(page, 'the recorded token request', rowExpr('/oauth/token', 'upstream', 200), t0);
    await page.eval(`document.querySelector('#journal-body tr[data-seq="${seq}"]').focus()`);
    await page.key('Enter');
    const d = await page.waitFor('the detail naming access_token as redacted', `(() => { const p = document.getElementById('journal-detail');
      const dt = [...p.querySelectorAll('dt')].find((x) => x.textContent === 'redacted');
      return dt && /access_token/.test(dt.nextElementSibling.textContent) ? {names: dt.nextElementSibling.textContent, text: p.textContent} : null; })()`);
    if (d.text.includes(live)) throw new Error('the detail shows the live access token');
    await page.shot('record-mode');
    await page.view('tokens');
    await page.waitFor('the tokens view saying the auth overlay is off', `(document.querySelector('#view-tokens .unavail') || {}).textContent.includes('not running')`);
    return `row ${ms} ms after the answer; redacted: ${d.names}`;
  });

  // ---------------------------------------------------------------- admin.token and the browser checks
  const cvt = await startCallvcr('token', cassette, [
    'admin:', `  token: ${ADMIN_TOKEN}`,
    'state:', '  machines:', '    - name: generic', '      timeouts_ms: {RINGING: 60000}', '      hold: [{from: INIT, to: RINGING}]', ''].join('\n'));
  const tb = FROM_TREE ? await treeServer(cvt) : `http://${cvt.admin}`;

  await check('with admin.token set, /ui is refused without the token or with a wrong one (401)', async () => {
    const a = await adminRaw(cvt, 'GET', '/ui');
    const b = await adminRaw(cvt, 'GET', '/ui?token=wrong');
    const c = await adminRaw(cvt, 'GET', '/mock/admin/events');
    const bad = [['GET /ui', a], ['GET /ui?token=wrong', b], ['GET /mock/admin/events', c]].filter(([, r]) => r.status !== 401);
    if (bad.length) throw new Error(bad.map(([w, r]) => `${w} answered ${r.status}`).join('; '));
    await page.goto(`${tb}/ui`);
    const shown = await page.eval('document.body ? document.body.innerText.slice(0, 300) : ""');
    if (/callvcr\s+inspector/.test(shown) && !/401|token/i.test(shown)) throw new Error('the inspector was shown without the token');
  });

  await check('/ui?token=T answers 303 to /ui with an HttpOnly SameSite=Strict cookie; the page signs in and goes live', async () => {
    const r = await adminRaw(cvt, 'GET', `/ui?token=${ADMIN_TOKEN}`);
    if (r.status !== 303 || r.headers.location !== '/ui') throw new Error(`answered ${r.status}, Location ${r.headers.location}`);
    const cookie = [].concat(r.headers['set-cookie'] || [])[0] || '';
    if (!/HttpOnly/i.test(cookie) || !/SameSite=Strict/i.test(cookie)) throw new Error(`Set-Cookie: ${cookie || '(none)'}`);
    const pair = cookie.split(';')[0];
    const h = await adminRaw(cvt, 'GET', '/mock/admin/health', { cookie: pair });
    if (h.status !== 200) throw new Error(`the admin API refused the cookie: ${h.status}`);
    await page.goto(`${tb}/ui?token=${ADMIN_TOKEN}`);
    await page.waitFor('the page at /ui without the token in its address', `location.pathname === '/ui' && location.search === ''`);
    await page.waitFor('the page live', `document.body.dataset.live === 'live' && document.getElementById('fact-mode').textContent === 'replay'`);
    await page.shot('signed-in');
  });

  await check('a held move and a state timer are shown; releasing it and advancing the clock from the page move the session', async () => {
    const bearer = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
    const r = await adminRaw(cvt, 'POST', '/mock/admin/session/t-1/transition', bearer, JSON.stringify({ to: 'RINGING' }));
    if (r.status !== 200 || !/"held"/.test(r.text)) throw new Error(`the held transition answered ${r.status}: ${r.text}`);
    await page.view('calls');
    const sel = '.session[data-id="t-1"]';
    await page.waitFor('the held move shown', `!!document.querySelector('${sel} .wait.held') && !!document.querySelector('${sel} svg .node.pending[data-state="RINGING"]') && !!document.querySelector('${sel} svg .node.current[data-state="INIT"]')`, SOON);
    await page.shot('calls-held');
    await page.click(`${sel} button[data-key^="release:"]`);
    const timer = await page.waitFor('RINGING current, its timer shown', `(() => { const c = document.querySelector('${sel}');
      return c && c.querySelector('svg .node.current[data-state="RINGING"]') && [...c.querySelectorAll('.wait')].map((w) => w.textContent).find((x) => /times out to TIMEOUT/.test(x)); })()`);
    await page.view('tokens');
    await page.click('[data-advance="60000"]');
    await page.view('calls');
    await page.waitFor('TIMEOUT current once the clock passed the timer', `!!document.querySelector('${sel} svg .node.current[data-state="TIMEOUT"]')`);
    return timer;
  });

  await check('/ui and its event stream refuse a foreign Host or Origin (403) and allow their own origin', async () => {
    const r0 = await adminRaw(cvt, 'GET', `/ui?token=${ADMIN_TOKEN}`);
    const cookie = ([].concat(r0.headers['set-cookie'] || [])[0] || '').split(';')[0];
    const port = cvt.admin.split(':')[1];
    const cases = [
      ['GET /ui, Host evil.example', '/ui', { host: `evil.example:${port}`, cookie }, 403],
      ['GET /ui, Origin http://evil.example', '/ui', { origin: 'http://evil.example', cookie }, 403],
      ['GET /mock/admin/events, Origin http://evil.example', '/mock/admin/events', { origin: 'http://evil.example', cookie }, 403],
      ['GET /mock/admin/events, Host evil.example', '/mock/admin/events', { host: `evil.example:${port}`, cookie }, 403],
      ['GET /ui, own Origin', '/ui', { origin: `http://${cvt.admin}`, cookie }, 200],
      ['GET /mock/admin/events, own Origin', '/mock/admin/events', { origin: `http://${cvt.admin}`, cookie }, 200],
    ];
    const wrong = [];
    for (const [what, p, headers, want] of cases) {
      const r = await adminRaw(cvt, 'GET', p, headers);
      if (r.status !== want) wrong.push(`${what}: ${r.status}, wanted ${want}`);
    }
    if (wrong.length) throw new Error(wrong.join('; '));
    // And in the browser: a page of another origin (this signed-in page, on the second listener)
    // sends the first callvcr a "simple" cross-site request; it must not move that clock.
    const clockOf = async () => Date.parse(JSON.parse((await adminRaw(cv, 'GET', '/mock/admin/clock')).text).now);
    const before = await clockOf();
    await page.eval(`fetch(${q(`http://${cv.admin}/mock/admin/clock`)}, {method: 'POST', mode: 'no-cors', headers: {'content-type': 'text/plain'}, body: '{"advance_ms": 31536000000}'}).then(() => 'sent', () => 'blocked')`);
    const after = await clockOf();
    if (after - before > 3600e3) throw new Error('a cross-site request from the browser moved the clock a year');
  });

  await check('the page threw no exception in any of the above', async () => {
    if (pageErrors.length) throw new Error(`${pageErrors.length}: ${pageErrors.slice(0, 3).join(' | ')}`);
  });

  try { await cdp.send('Browser.close'); } catch { /* closing */ }
  await until('chromium to exit', () => browser.exitCode !== null || browser.signalCode !== null, 5000, 50).catch(() => {});
  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed;
  if (failed) console.log(`callvcr logs: ${cv.log} ${cvt.log}`);
  console.log(`browser: ${passed} passed, ${failed} failed`);
  cleanup();
  if (!failed && !process.env.BROWSER_KEEP) fs.rmSync(work, { recursive: true, force: true });
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.log(`not ok - the browser test could not run: ${e.stack || e.message}`);
  const passed = results.filter((r) => r.ok).length;
  console.log(`browser: ${passed} passed, ${results.length - passed + 1} failed`);
  cleanup();
  process.exit(1);
});
