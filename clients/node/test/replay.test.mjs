// Every helper against the real binary in replay: the addresses and the child environment (this
// process's fetch, child processes and curl through it), tokens, the clock, events, faults,
// the journal and misses per scope, admin errors and stopping.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import undici from 'undici';
import { startCallvcr, connectCallvcr, CallvcrAdminError } from '../index.mjs';
import { BIN, PKG, API, tempdir, cleanup, exchange, writeCassette, run, clientCredentialsToken } from './helpers.mjs';

const ME = `https://${API}/api/v2/users/me`;
const QUEUES = `https://${API}/api/v2/routing/queues`;
const START = '2026-01-05T09:00:00.000Z';

describe('a replay started by startCallvcr', { timeout: 60000 }, () => {
  let dir;
  let cv;
  let token;
  const bearer = () => ({ authorization: `Bearer ${token}` });

  before(async () => {
    dir = tempdir('replay');
    writeCassette(dir, 'replay.jsonl', [
      exchange(1, { path: '/api/v2/users/me', json: { id: 'u-1', name: 'Agent Smith' } }),
      exchange(2, { path: '/api/v2/routing/queues', json: { entities: [{ id: 'q-1' }] }, scope: 'journal-test' }),
    ]);
    cv = await startCallvcr({
      cassette: 'replay.jsonl', cwd: dir, bin: BIN, installProxy: true, clockFrozen: true, clockStart: START,
    });
    token = await clientCredentialsToken('node-client', 'node-secret');
  });

  after(async () => {
    if (cv) await cv.stop();
    cleanup(dir);
  });

  it('gives the addresses, the CA and the environment `callvcr run` sets', async () => {
    assert.equal(cv.caPath, path.join(dir, 'certs', 'ca.pem'));
    assert.ok(fs.readFileSync(cv.caPath, 'utf8').includes('BEGIN CERTIFICATE'));
    assert.equal(cv.proxyUrl, `http://${cv.addresses.proxy}`);
    assert.equal(cv.adminUrl, `http://${cv.addresses.admin}`);
    assert.match(cv.addresses.tls, /^127\.0\.0\.1:\d+$/);
    assert.equal(cv.env.HTTPS_PROXY, cv.proxyUrl);
    assert.equal(cv.env.https_proxy, cv.proxyUrl);
    assert.equal(cv.env.NO_PROXY, '127.0.0.1,localhost,::1');
    assert.equal(cv.env.NODE_EXTRA_CA_CERTS, cv.caPath);
    assert.equal(cv.env.CALLVCR_CA, cv.caPath);
    assert.equal(cv.env.CALLVCR_ADMIN, cv.adminUrl);
    assert.equal(cv.env.CALLVCR_PROXY, cv.proxyUrl);
    // The bundle is the system's roots followed by callvcr's CA.
    const bundle = fs.readFileSync(cv.env.SSL_CERT_FILE, 'utf8');
    assert.equal(cv.env.SSL_CERT_FILE, path.join(dir, 'certs', 'bundle.pem'));
    assert.ok(bundle.trimEnd().endsWith(fs.readFileSync(cv.caPath, 'utf8').trimEnd()));
    const system = '/etc/ssl/certs/ca-certificates.crt';
    if (fs.existsSync(system)) assert.ok(bundle.startsWith(fs.readFileSync(system, 'utf8')));
    assert.equal(cv.env.REQUESTS_CA_BUNDLE, cv.env.SSL_CERT_FILE);
    const health = await cv.health();
    assert.equal(health.mode, 'replay');
    assert.ok(health.overlays.includes('auth'));
  });

  it('sends this process\'s fetch through callvcr, trusting its CA (installProxy)', async () => {
    const r = await fetch(ME, { headers: bearer() });
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { id: 'u-1', name: 'Agent Smith' });
    const last = (await cv.journal()).at(-1);
    assert.equal(last.answered_by, 'hit');
    assert.equal(last.path, '/api/v2/users/me');
  });

  it('gives a child node process what it needs: env and its own undici proxy agent', async () => {
    const script = `
      const { EnvHttpProxyAgent, setGlobalDispatcher } = require('undici');
      setGlobalDispatcher(new EnvHttpProxyAgent());
      fetch(${JSON.stringify(ME)}, { headers: { authorization: 'Bearer ' + process.env.TOKEN } })
        .then(async (r) => { console.log(r.status, await r.text()); })
        .catch((e) => { console.error(e.cause || e); process.exit(1); });`;
    // cwd is the package, so require('undici') finds its node_modules.
    const r = await run(process.execPath, ['-e', script], { cwd: PKG, env: { ...process.env, ...cv.env, TOKEN: token }, timeoutMs: 20000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '200 {"id":"u-1","name":"Agent Smith"}');
  });

  it('gives a child node process what it needs: env and the https module through a CONNECT tunnel', async () => {
    // No undici: the proxy from HTTPS_PROXY by hand, the CA from NODE_EXTRA_CA_CERTS (read at startup).
    const script = `
      const http = require('node:http'), https = require('node:https'), tls = require('node:tls');
      const p = new URL(process.env.HTTPS_PROXY);
      http.request({ host: p.hostname, port: p.port, method: 'CONNECT', path: '${API}:443' })
        .on('connect', (res, socket) => {
          if (res.statusCode !== 200) { console.error('CONNECT', res.statusCode); process.exit(1); }
          https.get({ host: '${API}', path: '/api/v2/users/me', headers: { authorization: 'Bearer ' + process.env.TOKEN },
                      createConnection: () => tls.connect({ socket, servername: '${API}' }) }, (r) => {
            let b = ''; r.on('data', (d) => { b += d; }); r.on('end', () => { console.log(r.statusCode, b); socket.end(); });
          }).on('error', (e) => { console.error(e); process.exit(1); });
        })
        .on('error', (e) => { console.error(e); process.exit(1); })
        .end();`;
    const r = await run(process.execPath, ['-e', script], { env: { ...process.env, ...cv.env, TOKEN: token }, timeoutMs: 20000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), '200 {"id":"u-1","name":"Agent Smith"}');
  });

  it('gives curl what it needs: https_proxy and the bundle in CURL_CA_BUNDLE', async (t) => {
    try {
      execFileSync('curl', ['--version'], { stdio: 'ignore' });
    } catch {
      t.skip('no curl on this machine');
      return;
    }
    const r = await run('curl', ['-sS', '-H', `authorization: Bearer ${token}`, ME], { env: { ...process.env, ...cv.env }, timeoutMs: 20000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '{"id":"u-1","name":"Agent Smith"}');
  });

  it('expires a client\'s tokens: the old token gets 401, a new sign-in works', async () => {
    const mine = await clientCredentialsToken('expiring-client', 's3cret');
    assert.equal((await fetch(ME, { headers: { authorization: `Bearer ${mine}` } })).status, 200);
    assert.deepEqual(await cv.expireTokens({ clientId: 'expiring-client' }), { expired: 1 });
    const r = await fetch(ME, { headers: { authorization: `Bearer ${mine}` } });
    assert.equal(r.status, 401);
    assert.equal((await r.json()).code, 'credentials.expired');
    // Only that client's: the suite's own token still works.
    assert.equal((await fetch(ME, { headers: bearer() })).status, 200);
    const again = await clientCredentialsToken('expiring-client', 's3cret');
    assert.equal((await fetch(ME, { headers: { authorization: `Bearer ${again}` } })).status, 200);
  });

  it('reads, advances and sets the frozen virtual clock', async () => {
    assert.deepEqual(await cv.clock(), { now: START });
    assert.deepEqual(await cv.advanceClock(1500), { now: '2026-01-05T09:00:01.500Z' });
    assert.deepEqual(await cv.clock(), { now: '2026-01-05T09:00:01.500Z' }, 'frozen: it moved only when told');
    assert.deepEqual(await cv.setClock(new Date('2027-02-03T04:05:06Z')), { now: '2027-02-03T04:05:06.000Z' });
    assert.deepEqual(await cv.setClock('2026-01-05T10:00:00Z'), { now: '2026-01-05T10:00:00.000Z' });
    assert.deepEqual(await cv.admin('GET', '/mock/admin/clock'), { now: '2026-01-05T10:00:00.000Z' });
  });

  it('pushes an event: none queued with no WebSocket session open, 404 for a session not open', async () => {
    assert.deepEqual(await cv.pushEvent({ topicName: 'v2.users.u-1.presence', eventBody: {} }), { queued: 0 });
    assert.deepEqual(await cv.pushEvent({ a: 1 }, { topic: 'v2.users.u-1.presence', delayMs: 10 }), { queued: 0 });
    // A session named but not open is refused, with the status.
    await assert.rejects(cv.pushEvent({ a: 1 }, { session: 'no-such-session' }), (e) => e.status === 404);
    assert.deepEqual(await cv.wsSessions(), []);
  });

  it('injects a fault and removes it: 503 inside, 200 after', async () => {
    const rule = { status: 503, match: { path: '/api/v2/users/me' } };
    const f = await cv.fault('status', rule);
    assert.match(f.id, /^f\d+$/);
    const r = await fetch(ME, { headers: bearer() });
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('x-callvcr-fault'), 'status');
    assert.deepEqual(await f.remove(), { removed: 1 });
    assert.equal((await fetch(ME, { headers: bearer() })).status, 200);

    const inside = await cv.withFault('status', rule, async (g) => {
      assert.ok((await cv.faults()).some((x) => x.id === g.id));
      return (await fetch(ME, { headers: bearer() })).status;
    });
    assert.equal(inside, 503);
    assert.equal((await fetch(ME, { headers: bearer() })).status, 200);
    assert.deepEqual(await cv.faults(), []);
    // Removed however fn ends, and a rule fn removed itself is no error.
    await assert.rejects(cv.withFault('status', rule, async () => { throw new Error('boom'); }), /boom/);
    await cv.withFault('status', rule, (g) => g.remove());
    assert.deepEqual(await cv.faults(), []);
  });

  it('keeps the journal and the misses per scope', async () => {
    assert.deepEqual(await cv.scope('journal-test'), { scope: 'journal-test' });
    assert.equal(await cv.currentScope(), 'journal-test');
    assert.equal((await fetch(QUEUES, { headers: bearer() })).status, 200);
    assert.equal((await fetch(`https://${API}/api/v2/nope`, { headers: bearer() })).status, 404);
    // The header wins over the open scope.
    assert.equal((await fetch(ME, { headers: { ...bearer(), ...cv.scopeHeader('other-test') } })).status, 200);
    assert.deepEqual(await cv.endScope(), { scope: null });

    const mine = await cv.journal({ scope: 'journal-test' });
    assert.deepEqual(mine.map((e) => [e.path, e.answered_by]), [['/api/v2/routing/queues', 'hit'], ['/api/v2/nope', 'miss']]);
    assert.deepEqual((await cv.journal({ scope: 'other-test' })).map((e) => e.path), ['/api/v2/users/me']);
    assert.ok((await cv.journal({ scope: null })).length > 0, 'unscoped requests are scope null');

    const missed = await cv.misses('journal-test');
    assert.equal(missed.length, 1);
    assert.match(missed[0], /GET api\.mypurecloud\.com\/api\/v2\/nope/);
    assert.deepEqual(await cv.misses('other-test'), []);
    assert.deepEqual(await cv.misses('never-opened'), []);
    const names = (await cv.scopes()).map((s) => s.name);
    assert.ok(names.includes('journal-test') && names.includes('other-test'), names.join(','));
  });

  it('rejects admin errors with their status and JSON body', async () => {
    const err = await cv.fault('nonsense', {}).catch((e) => e);
    assert.ok(err instanceof CallvcrAdminError);
    assert.equal(err.status, 400);
    assert.equal(err.code, 'bad_fault');
    assert.equal(err.body.error, 'bad_fault');
    const gone = await cv.admin('DELETE', '/mock/admin/faults/f999').catch((e) => e);
    assert.equal(gone.status, 404);
    assert.match(gone.message, /DELETE \/mock\/admin\/faults\/f999 → 404 not_found/);
    await assert.rejects(cv.session('no-such-session'), (e) => e.status === 404 && e.body.error === 'not_found');
  });

  it('attaches to a running callvcr from its environment (connectCallvcr)', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, cv.env);
    try {
      const other = connectCallvcr();
      assert.equal(other.adminUrl, cv.adminUrl);
      assert.equal(other.attached, true);
      assert.equal((await other.health()).mode, 'replay');
      await other.stop();
      assert.equal((await cv.health()).status, 'ok', 'detaching left the process running');
    } finally {
      for (const k of Object.keys(cv.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });
});

describe('starting and stopping', { timeout: 60000 }, () => {
  let dir;
  before(() => {
    dir = tempdir('lifecycle');
    writeCassette(dir, 'one.jsonl', [exchange(1, { path: '/api/v2/users/me', json: { id: 'u-1' } })]);
  });
  after(() => cleanup(dir));

  it('stops with SIGINT: exit code and the log with the summary; the global dispatcher comes back', async () => {
    const before = undici.getGlobalDispatcher();
    const cv = await startCallvcr({ cassette: 'one.jsonl', cwd: dir, bin: BIN, overlaysOff: ['auth'], installProxy: true });
    assert.notEqual(undici.getGlobalDispatcher(), before);
    assert.equal((await fetch(ME)).status, 200);
    const stopped = await cv.stop();
    assert.equal(stopped.code, 0);
    assert.equal(stopped.killed, false);
    assert.match(stopped.stderr, /replay summary for `one`: 1 hits, 0 misses/);
    assert.equal(undici.getGlobalDispatcher(), before);
    assert.deepEqual(await cv.stop(), stopped, 'stopping twice gives the same answer');
    await assert.rejects(cv.health(), /callvcr is not running \(exited with code 0/);
  });

  it('passes args through: a strict replay that missed exits 1', async () => {
    const cv = await startCallvcr({ cassette: 'one.jsonl', cwd: dir, bin: BIN, overlaysOff: ['auth'], args: ['--strict'] });
    const r = await fetch(`https://${API}/api/v2/nope`, { dispatcher: cv.proxyAgent() });
    assert.equal(r.status, 404);
    assert.equal((await cv.stop()).code, 1);
  });

  it('writes the JUnit report named by `report`', async () => {
    const cv = await startCallvcr({ cassette: 'one.jsonl', cwd: dir, bin: BIN, overlaysOff: ['auth'], report: 'report.xml' });
    await cv.scope('reported-test');
    await fetch(ME, { dispatcher: cv.proxyAgent() });
    await cv.stop();
    assert.match(fs.readFileSync(path.join(dir, 'report.xml'), 'utf8'), /<testcase classname="callvcr" name="reported-test">/);
  });

  it('rejects, with the log, when the binary exits before it is ready', async () => {
    const err = await startCallvcr({ cassette: 'no-such.jsonl', cwd: dir, bin: BIN }).catch((e) => e);
    assert.ok(err instanceof Error);
    assert.match(err.message, /exited \(code 2, signal null\) before it was ready/);
    assert.match(err.message, /--- its log ---\n[\s\S]*no-such/);
  });

  it('rejects when the binary cannot be started', async () => {
    await assert.rejects(startCallvcr({ cassette: 'one.jsonl', cwd: dir, bin: path.join(dir, 'not-a-binary') }), /could not start: spawn .* ENOENT/);
  });

  const stubDir = () => path.join(dir, 'stub');
  /**
   * A stand-in binary that ignores SIGINT (exec keeps the ignored signal, so no shell is left
   * behind): with `ready`, it writes the ready file first.
   */
  const stubborn = (ready) => {
    const file = path.join(dir, ready ? 'stubborn-ready.sh' : 'stubborn-silent.sh');
    fs.writeFileSync(file, `#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = --ready-file ] && out="$2"; shift; done
${ready ? `echo '{"tls":"127.0.0.1:1","proxy":"127.0.0.1:2","admin":"127.0.0.1:3"}' > "$out"` : ''}
echo "stubborn: up" >&2
trap '' INT
exec sleep 30
`, { mode: 0o755 });
    // Its own directory: the placeholder CA must not reach the real binary's tests.
    fs.mkdirSync(path.join(stubDir(), 'certs'), { recursive: true });
    fs.writeFileSync(path.join(stubDir(), 'certs', 'ca.pem'), '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
    return file;
  };

  it('kills a process that outlives the bound after SIGINT', async () => {
    const cv = await startCallvcr({ cassette: 'one.jsonl', cwd: stubDir(), bin: stubborn(true) });
    const t0 = Date.now();
    const stopped = await cv.stop({ timeoutMs: 300 });
    assert.deepEqual([stopped.killed, stopped.signal, stopped.code], [true, 'SIGKILL', null]);
    assert.match(stopped.stderr, /stubborn: up/);
    assert.ok(Date.now() - t0 < 5000);
  });

  it('gives up on a process never ready, and stops it', async () => {
    const err = await startCallvcr({ cassette: 'one.jsonl', cwd: stubDir(), bin: stubborn(false), readyTimeoutMs: 300 }).catch((e) => e);
    assert.match(err.message, /was not ready after 300 ms/);
    assert.match(err.message, /stubborn: up/);
  });

  it('does not keep a test process alive that forgot stop(), and stops callvcr when it ends', async () => {
    const script = `import { startCallvcr } from ${JSON.stringify(path.join(PKG, 'index.mjs'))};
      const cv = await startCallvcr({ cassette: 'one.jsonl', cwd: ${JSON.stringify(dir)}, bin: ${JSON.stringify(BIN)} });
      console.log(cv.pid);`;
    const r = await run(process.execPath, ['--input-type=module', '-e', script], { timeoutMs: 20000 });
    assert.equal(r.timedOut, false, 'the forgotten process kept node alive');
    const pid = Number(r.stdout.trim());
    assert.ok(pid > 0, r.stderr);
    // Wait (bounded) for the SIGINT it was sent at exit to take effect.
    const gone = () => { try { process.kill(pid, 0); return false; } catch { return true; } };
    for (const t0 = Date.now(); !gone() && Date.now() - t0 < 10000;) await new Promise((res) => setTimeout(res, 50));
    assert.ok(gone(), `callvcr ${pid} is still running`);
  });

  it('refuses a bad mode before spawning anything', async () => {
    await assert.rejects(startCallvcr({ cassette: 'one.jsonl', mode: 'rewind', bin: BIN }), TypeError);
  });
});
