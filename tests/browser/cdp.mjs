// A small WebSocket client (RFC 6455, client side) over any connected socket, and a Chrome DevTools
// protocol client on top of it. Written here so the browser test needs no npm package: the same
// client talks to Chromium's DevTools endpoint and to callvcr's replayed WebSocket channels.

import crypto from 'node:crypto';
import net from 'node:net';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/**
 * Opens a WebSocket over `socket` (already connected; TLS or not) for `path` on `host`. Resolves to an
 * emitter with send(text), close() and 'message' (text), 'close' ({code, reason}) events.
 */
export function wsOpen(socket, host, path, extraHeaders = {}) {
  return new Promise((resolve, reject) => {
    const key = crypto.randomBytes(16).toString('base64');
    const head = [
      `GET ${path} HTTP/1.1`, `Host: ${host}`, 'Upgrade: websocket', 'Connection: Upgrade',
      `Sec-WebSocket-Key: ${key}`, 'Sec-WebSocket-Version: 13',
      ...Object.entries(extraHeaders).map(([k, v]) => `${k}: ${v}`), '', '',
    ].join('\r\n');
    let buf = Buffer.alloc(0);
    const onData = (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.off('error', onError);
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(lines[0].split(' ')[1]);
      const headers = Object.fromEntries(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      const want = crypto.createHash('sha1').update(key + GUID).digest('base64');
      if (status !== 101) { socket.destroy(); reject(new Error(`WebSocket handshake for ${path} answered ${lines[0]}`)); return; }
      if (headers['sec-websocket-accept'] !== want) { socket.destroy(); reject(new Error('WebSocket handshake: wrong Sec-WebSocket-Accept')); return; }
      resolve(new WsConn(socket, buf.subarray(end + 4)));
    };
    const onError = (e) => reject(e);
    socket.on('data', onData);
    socket.on('error', onError);
    socket.write(head);
  });
}

class WsConn extends EventEmitter {
  constructor(socket, rest) {
    super();
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.parts = [];
    this.closed = false;
    socket.on('data', (c) => this.feed(c));
    socket.on('close', () => { if (!this.closed) { this.closed = true; this.emit('close', { code: 1006, reason: 'connection lost' }); } });
    socket.on('error', () => {});
    if (rest.length) this.feed(rest);
  }

  feed(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const fin = (b[0] & 0x80) !== 0;
      const op = b[0] & 0x0f;
      const masked = (b[1] & 0x80) !== 0;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) { if (b.length < 4) return; len = b.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (b.length < 10) return; len = Number(b.readBigUInt64BE(2)); off = 10; }
      let mask = null;
      if (masked) { if (b.length < off + 4) return; mask = b.subarray(off, off + 4); off += 4; }
      if (b.length < off + len) return;
      let payload = Buffer.from(b.subarray(off, off + len));
      if (mask) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
      this.buf = b.subarray(off + len);
      this.frame(fin, op, payload);
    }
  }

  frame(fin, op, payload) {
    if (op === 0x9) { this.raw(0xA, payload); return; }
    if (op === 0xA) return;
    if (op === 0x8) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      const reason = payload.subarray(2).toString('utf8');
      if (!this.closed) { this.closed = true; try { this.raw(0x8, payload.subarray(0, 2)); } catch { /* gone */ } this.emit('close', { code, reason }); }
      this.socket.end();
      return;
    }
    if (op === 0x1 || op === 0x2) this.parts = [payload];
    else if (op === 0x0) this.parts.push(payload);
    if (fin) {
      const whole = Buffer.concat(this.parts);
      this.parts = [];
      this.emit('message', whole.toString('utf8'));
    }
  }

  raw(op, payload) {
    const mask = crypto.randomBytes(4);
    const n = payload.length;
    const head = n < 126 ? Buffer.from([0x80 | op, 0x80 | n])
      : n < 65536 ? Buffer.from([0x80 | op, 0x80 | 126, n >> 8, n & 255])
        : (() => { const x = Buffer.alloc(10); x[0] = 0x80 | op; x[1] = 0x80 | 127; x.writeBigUInt64BE(BigInt(n), 2); return x; })();
    const body = Buffer.from(payload);
    for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3];
    this.socket.write(Buffer.concat([head, mask, body]));
  }

  send(text) { this.raw(0x1, Buffer.from(text, 'utf8')); }

  close(code = 1000) {
    if (this.closed) return;
    this.closed = true;
    const p = Buffer.alloc(2);
    p.writeUInt16BE(code);
    try { this.raw(0x8, p); } catch { /* gone */ }
    setTimeout(() => this.socket.destroy(), 200).unref();
  }
}

/** The DevTools protocol over a WebSocket: send(method, params) resolves with the result. */
export class Cdp extends EventEmitter {
  constructor(ws) {
    super();
    this.ws = ws;
    this.next = 1;
    this.waiting = new Map();
    ws.on('message', (text) => {
      const m = JSON.parse(text);
      if (m.id !== undefined) {
        const w = this.waiting.get(m.id);
        if (!w) return;
        this.waiting.delete(m.id);
        if (m.error) w.reject(new Error(`${w.method}: ${m.error.message}`));
        else w.resolve(m.result);
      } else this.emit(m.method, m.params, m.sessionId);
    });
    ws.on('close', () => { for (const w of this.waiting.values()) w.reject(new Error('DevTools connection closed')); this.waiting.clear(); });
  }

  send(method, params = {}, sessionId) {
    const id = this.next++;
    const msg = { id, method, params };
    if (sessionId) msg.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, method });
      this.ws.send(JSON.stringify(msg));
    });
  }
}

/** Finds Debian's chromium (or another Chromium-family binary) on PATH; null when there is none. */
export function chromiumPath() {
  const names = [process.env.CHROMIUM, 'chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'].filter(Boolean);
  const runnable = (p) => {
    try { fs.accessSync(p, fs.constants.X_OK); return fs.statSync(p).isFile(); } catch { return false; }
  };
  for (const n of names) {
    if (n.includes('/')) { if (runnable(n)) return n; continue; }
    for (const dir of (process.env.PATH || '').split(':')) if (dir && runnable(`${dir}/${n}`)) return `${dir}/${n}`;
  }
  return null;
}

/**
 * Starts headless Chromium with a DevTools port of its choosing and resolves to {child, cdp} once
 * its DevTools WebSocket (read from stderr) is connected.
 */
export function launchChromium(bin, profileDir, { width = 1280, height = 800, log } = {}) {
  const args = [
    '--headless=new', '--remote-debugging-port=0', `--user-data-dir=${profileDir}`,
    '--no-first-run', '--no-default-browser-check', '--disable-gpu', '--disable-extensions',
    '--disable-background-networking', '--disable-sync', '--disable-component-update', '--mute-audio',
    '--no-proxy-server', '--password-store=basic', `--window-size=${width},${height}`,
  ];
  if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
  args.push('about:blank');
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  return new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => { reject(new Error('chromium printed no DevTools address within 20 s:\n' + err.slice(-2000))); }, 20000);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`chromium exited (${code}) before DevTools was ready:\n` + err.slice(-2000))); });
    child.stderr.on('data', async (c) => {
      const text = c.toString();
      err += text;
      if (log) log(text);
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
      if (!m || child._cdpStarted) return;
      child._cdpStarted = true;
      clearTimeout(timer);
      try {
        const u = new URL(m[1]);
        const sock = net.connect(Number(u.port), u.hostname);
        await new Promise((ok, no) => { sock.once('connect', ok); sock.once('error', no); });
        const ws = await wsOpen(sock, u.host, u.pathname);
        child.removeAllListeners('exit');
        resolve({ child, cdp: new Cdp(ws) });
      } catch (e) { reject(e); }
    });
  });
}
