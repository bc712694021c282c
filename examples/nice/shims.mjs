// Browser globals for NICE CXone's browser SDKs in Node 20. Import before the SDKs:
//   node --import ./loader.mjs --import ./shims.mjs agent_flow.mjs
//
// What the SDKs touch and what stands in for it here:
//  - window, self, document, location, navigator: globalThis with EventTarget methods; a minimal
//    document (no DOM: the SDKs only read cookies/visibility and build iframes for UI features).
//  - localStorage / sessionStorage: in-memory Storage (the SDKs keep tokens, config and the agent
//    session id there).
//  - indexedDB: fake-indexeddb (in memory).
//  - WebSocket: the `ws` package (Node 20 has no global WebSocket without a flag).
//  - Worker: the SDKs build their workers from source strings (Blob + URL.createObjectURL) whose
//    first line is importScripts(<rxjs or sockjs from a public CDN>). Here a Worker runs that
//    source on the main thread (see InProcessWorker); importScripts serves the local rxjs instead
//    of downloading it, so nothing leaves the machine. The worker logic itself is unchanged.
//  - HTTPS_PROXY: Node's fetch ignores it; with it set, undici's EnvHttpProxyAgent becomes the
//    global dispatcher (fetch honours HTTPS_PROXY/NO_PROXY then), and `ws` gets an agent that
//    tunnels through the proxy with CONNECT.
//  - require: core-sdk's HttpRequest (an ES module) calls require('node-fetch') only to build a
//    Headers object, which a bundler would resolve; here a global require answers 'node-fetch'
//    with Node's own Headers (so the request still goes through Node's fetch).
// Trust: NODE_EXTRA_CA_CERTS covers both fetch and ws.
import { EventEmitter } from 'node:events';
import { resolveObjectURL } from 'node:buffer';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import 'fake-indexeddb/auto';
import WsWebSocket from 'ws';
import { EnvHttpProxyAgent, setGlobalDispatcher } from 'undici';
import * as rxjs from 'rxjs';
import * as rxjsFetch from 'rxjs/fetch';
import * as rxjsOperators from 'rxjs/operators';

const g = globalThis;

// ---- require('node-fetch') from ES modules ----
if (typeof g.require === 'undefined') {
  g.require = (id) => {
    if (id === 'node-fetch') return Object.assign(g.fetch, { default: g.fetch, Headers: g.Headers, Request: g.Request, Response: g.Response });
    throw new Error(`shims.mjs: require(${JSON.stringify(id)}) is not available to ES modules`);
  };
}

// ---- window, self, document, navigator, location ----
const target = new EventTarget();
for (const m of ['addEventListener', 'removeEventListener', 'dispatchEvent']) {
  if (!g[m]) g[m] = target[m].bind(target);
}
g.window = g;
g.self = g;
g.top = g;
g.parent = g;
if (!g.navigator) {
  Object.defineProperty(g, 'navigator', { value: {}, configurable: true, writable: true });
}
Object.assign(g.navigator, {
  userAgent: g.navigator.userAgent || `Node.js/${process.versions.node}`,
  language: 'en-US',
  languages: ['en-US'],
  onLine: true,
  platform: process.platform,
  hardwareConcurrency: 2,
  cookieEnabled: false,
});
if (!g.location) {
  g.location = new URL(process.env.NICE_APP_ORIGIN || 'https://localhost/');
  g.location.reload = () => {};
  g.location.assign = () => {};
  g.location.replace = () => {};
}
if (!g.document) {
  const el = () => ({ style: {}, setAttribute() {}, appendChild() {}, addEventListener() {}, remove() {} });
  g.document = Object.assign(new EventTarget(), {
    cookie: '',
    hidden: false,
    visibilityState: 'visible',
    readyState: 'complete',
    referrer: '',
    title: '',
    location: g.location,
    head: el(),
    body: el(),
    documentElement: el(),
    createElement: el,
    getElementById: () => null,
    getElementsByTagName: () => [],
    querySelector: () => null,
    querySelectorAll: () => [],
    hasFocus: () => true,
  });
}
g.screen ??= { width: 1920, height: 1080 };
g.matchMedia ??= () => ({ matches: false, addListener() {}, removeListener() {}, addEventListener() {}, removeEventListener() {} });
g.requestAnimationFrame ??= (cb) => setTimeout(() => cb(Date.now()), 16);
g.cancelAnimationFrame ??= (id) => clearTimeout(id);
g.open ??= () => null;
g.postMessage ??= () => {};
g.focus ??= () => {};

// ---- Storage ----
class MemoryStorage {
  #m = new Map();
  get length() { return this.#m.size; }
  key(i) { return [...this.#m.keys()][i] ?? null; }
  getItem(k) { return this.#m.has(String(k)) ? this.#m.get(String(k)) : null; }
  setItem(k, v) { this.#m.set(String(k), String(v)); }
  removeItem(k) { this.#m.delete(String(k)); }
  clear() { this.#m.clear(); }
}
// Object.keys(localStorage) is used by the SDK to list keys: expose them as own properties too.
function storage() {
  const s = new MemoryStorage();
  return new Proxy(s, {
    get: (t, p) => {
      if (typeof p === 'string' && !(p in t)) return t.getItem(p) ?? undefined;
      const v = Reflect.get(t, p, t);
      return typeof v === 'function' ? v.bind(t) : v;
    },
    set: (t, p, v) => { t.setItem(p, v); return true; },
    deleteProperty: (t, p) => { t.removeItem(p); return true; },
    ownKeys: (t) => Array.from({ length: t.length }, (_, i) => t.key(i)),
    getOwnPropertyDescriptor: (t, p) => (t.getItem(p) !== null
      ? { value: t.getItem(p), enumerable: true, configurable: true, writable: true } : undefined),
  });
}
g.localStorage = storage();
g.sessionStorage = storage();

// ---- Proxy (HTTPS_PROXY) ----
const proxyUrl = process.env.HTTPS_PROXY || process.env.https_proxy || '';
if (proxyUrl) setGlobalDispatcher(new EnvHttpProxyAgent());

// A CONNECT tunnel for `ws` (an https agent whose sockets are TLS over a proxy tunnel).
class ConnectTunnelAgent extends https.Agent {
  constructor(proxy) { super({ keepAlive: false }); this.proxy = new URL(proxy); }
  createConnection(options, callback) {
    const host = options.host || options.hostname;
    const port = options.port || 443;
    const req = http.request({
      host: this.proxy.hostname, port: this.proxy.port || 80, method: 'CONNECT',
      path: `${host}:${port}`, headers: { host: `${host}:${port}` },
    });
    req.once('connect', (res, socket) => {
      if (res.statusCode !== 200) { socket.destroy(); callback(new Error(`proxy CONNECT ${host}:${port} answered ${res.statusCode}`)); return; }
      callback(null, tls.connect({ socket, servername: options.servername || host, ALPNProtocols: ['http/1.1'] }));
    });
    req.once('error', callback);
    req.end();
  }
}
function noProxy(host) {
  const list = (process.env.NO_PROXY || process.env.no_proxy || '').split(',').map((s) => s.trim()).filter(Boolean);
  return list.some((p) => p === '*' || host === p || host.endsWith(p.startsWith('.') ? p : '.' + p));
}

// ---- WebSocket ----
class BrowserWebSocket extends WsWebSocket {
  constructor(url, protocols) {
    const u = new URL(url);
    const opts = {};
    if (proxyUrl && u.protocol === 'wss:' && !noProxy(u.hostname)) opts.agent = new ConnectTunnelAgent(proxyUrl);
    super(url, protocols, opts);
  }
}
g.WebSocket = BrowserWebSocket;

// ---- Worker, run in-process ----
// importScripts(url) from a worker: the CDN bundles the SDK names, served from local packages.
const LOCAL_SCRIPTS = {
  rxjs: () => ({ ...rxjs, fetch: rxjsFetch, operators: rxjsOperators }),
};
const workerLog = process.env.NICE_WORKER_LOG === '1';
class InProcessWorker extends EventEmitter {
  #timers = new Set();
  #dead = false;
  #scope;
  onmessage = null;
  onerror = null;
  constructor(url, options = {}) {
    super();
    this.name = options.name || '';
    const blob = resolveObjectURL(String(url));
    if (!blob) throw new Error(`InProcessWorker: only blob: URLs are supported (${url})`);
    this.ready = blob.text().then((code) => this.#start(code));
  }
  #start(code) {
    const worker = this;
    const timers = this.#timers;
    const scope = {
      name: this.name,
      onmessage: null,
      postMessage(data) {
        if (worker.#dead) return;
        const copy = structuredClone(data);
        setImmediate(() => { if (!worker.#dead) worker.#emit('message', { data: copy }); });
      },
      close() { worker.terminate(); },
      importScripts(...urls) {
        for (const u of urls) {
          if (/rxjs/i.test(u)) scope.rxjs = LOCAL_SCRIPTS.rxjs();
          // sockjs is only used by the WEM notification worker (not the agent flow).
          else if (/sockjs/i.test(u)) scope.SockJS = class { constructor() { throw new Error('SockJS is not available in Node (shims.mjs)'); } };
          else throw new Error(`InProcessWorker: importScripts(${u}) is not served in Node`);
        }
      },
      addEventListener(type, fn) { if (type === 'message') scope.onmessage = fn; },
      removeEventListener() {},
    };
    const track = (set, clear) => [
      (fn, ms, ...a) => { const t = set(() => { if (set === setTimeout) timers.delete(t); fn(...a); }, ms); timers.add(t); return t; },
      (t) => { timers.delete(t); clear(t); },
    ];
    const [sT, cT] = track(setTimeout, clearTimeout);
    const [sI, cI] = track(setInterval, clearInterval);
    const log = workerLog ? console : { log() {}, info() {}, error() {}, warn() {}, debug() {} };
    // The worker script sees `self` (its global scope), timers that terminate() clears, and its
    // own console; everything else (fetch, Headers, URL, crypto) is the main thread's.
    const run = new Function('self', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'console', 'postMessage', 'importScripts', code);
    run(scope, sT, cT, sI, cI, log, scope.postMessage, scope.importScripts);
    this.#scope = scope;
  }
  #emit(type, ev) {
    if (type === 'message' && typeof this.onmessage === 'function') this.onmessage(ev);
    this.emit(type, ev);
  }
  postMessage(data) {
    const copy = structuredClone(data);
    this.ready.then(() => {
      setImmediate(() => {
        if (this.#dead || typeof this.#scope.onmessage !== 'function') return;
        try { this.#scope.onmessage({ data: copy }); } catch (e) {
          if (typeof this.onerror === 'function') this.onerror(e); else console.error('worker', this.name, e);
        }
      });
    });
  }
  addEventListener(type, fn) { this.on(type, fn); }
  removeEventListener(type, fn) { this.off(type, fn); }
  terminate() {
    this.#dead = true;
    for (const t of this.#timers) { clearTimeout(t); clearInterval(t); }
    this.#timers.clear();
  }
}
g.Worker = InProcessWorker;

// ---- errors thrown in SDK callbacks ----
// A browser reports an exception in an event handler or an unhandled promise rejection on the
// console and keeps the page running; Node would exit. Do what the browser does (on stderr).
process.on('uncaughtException', (e) => process.stderr.write(`sdk: uncaught ${e?.stack?.split('\n').slice(0, 2).join(' | ') || e}\n`));
process.on('unhandledRejection', (e) => process.stderr.write(`sdk: unhandled rejection ${e?.stack?.split('\n').slice(0, 2).join(' | ') || JSON.stringify(e)}\n`));
