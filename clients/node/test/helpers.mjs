// What the tests share: the binary, temporary directories, hand-written JSON Lines cassettes,
// and running a child process with a bound.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** clients/node, where the package (and its node_modules) lives. */
export const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO = path.resolve(PKG, '..', '..');
/** The already-built binary; run-tests.sh sets CALLVCR_BIN, this default serves a bare `node --test`. */
export const BIN = process.env.CALLVCR_BIN || path.join(REPO, 'target', 'debug', 'callvcr');
export const API = 'api.mypurecloud.com';
export const LOGIN = 'login.mypurecloud.com';

/** A fresh directory under the system's temp dir; the caller removes it (see `cleanup`). */
export function tempdir(label) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `callvcr-node-test-${label}-`));
}

export function cleanup(dir) {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** One recorded exchange in the cassette's JSON Lines shape (tests/scopes.rs writes the same). */
export function exchange(seq, { method = 'GET', host = API, path: p, query, status = 200, json, text, scope, headers = [] }) {
  const e = {
    seq,
    recorded_at: '2026-01-05T09:00:00.000Z',
    duration_ms: 1,
    request: { method, scheme: 'https', host, path: p, headers: [['host', host]], body: { text: '' } },
    response: {
      status,
      headers: [['content-type', 'application/json'], ...headers],
      body: json !== undefined ? { json } : { text: text ?? '' },
    },
  };
  if (query) e.request.query = query;
  if (scope) e.scope = scope;
  return e;
}

/** Writes `name` in `dir`: the format line, then one exchange per line. Returns its path. */
export function writeCassette(dir, name, exchanges) {
  const lines = [JSON.stringify({ format: 'callvcr-cassette', version: 1 }), ...exchanges.map((e) => JSON.stringify(e))];
  const file = path.join(dir, name);
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

/**
 * Runs `cmd args` and resolves with `{code, signal, stdout, stderr}`; kills it past `timeoutMs`
 * (then `timedOut` is true), so a hung child fails the test instead of hanging the run.
 */
export function run(cmd, args, { cwd, env, timeoutMs = 60000, input } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: env || process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutMs);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
    child.stdin.end(input ?? '');
  });
}

/** Sign-in the way an SDK does with client credentials: Basic client auth, form body. */
export async function clientCredentialsToken(clientId, secret, init = {}) {
  const r = await fetch(`https://${LOGIN}/oauth/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: 'grant_type=client_credentials',
    ...init,
  });
  const body = await r.json();
  if (r.status !== 200) throw new Error(`token request answered ${r.status}: ${JSON.stringify(body)}`);
  return body.access_token;
}

/**
 * TAP (`--test-reporter=tap`) results by test name: 'ok', 'not ok' or 'skip', suites included.
 * Also the `# pass N` / `# fail N` totals.
 */
export function parseTap(text) {
  const results = {};
  for (const line of text.split('\n')) {
    const m = /^\s*(ok|not ok) \d+ - (.+?)(\s+#\s*(SKIP|TODO).*)?$/.exec(line);
    if (m) results[m[2]] = m[3] ? 'skip' : m[1];
  }
  const total = (k) => Number((new RegExp(`^# ${k} (\\d+)`, 'm').exec(text) || [])[1]);
  return { results, pass: total('pass'), fail: total('fail'), skipped: total('skipped') };
}
