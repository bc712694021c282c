// The record modes against the real binary: a local HTTPS stand-in for the platform (its own CA,
// made with openssl), recorded test by test (`mode: 'record'` = --by-scope, `mode: 'missing'`),
// then replayed with the stand-in gone, each scope getting what it recorded.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startCallvcr } from '../index.mjs';
import { BIN, API, tempdir, cleanup } from './helpers.mjs';

/** A CA and a leaf for the platform's API host, as files in `dir`; false when openssl is missing. */
function makeSandboxCerts(dir) {
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  try {
    ssl('version');
  } catch {
    return false;
  }
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '2',
    '-subj', '/CN=callvcr node test sandbox CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'leaf-key.pem', '-out', 'leaf.csr', '-subj', `/CN=${API}`);
  fs.writeFileSync(path.join(dir, 'leaf.ext'), `subjectAltName=DNS:${API}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  ssl('x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', 'leaf.pem', '-days', '2', '-extfile', 'leaf.ext');
  return true;
}

describe('recording through startCallvcr', { timeout: 90000 }, () => {
  let dir;
  let sandbox;
  let served = 0;
  let haveOpenssl = false;

  before(async () => {
    dir = tempdir('record');
    haveOpenssl = makeSandboxCerts(dir);
    if (!haveOpenssl) return;
    // Each answer names how many requests came before it, so a replay shows which one it serves.
    sandbox = https.createServer(
      { key: fs.readFileSync(path.join(dir, 'leaf-key.pem')), cert: fs.readFileSync(path.join(dir, 'leaf.pem')) },
      (req, res) => {
        served += 1;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ path: req.url, n: served }));
      },
    );
    await new Promise((resolve) => sandbox.listen(0, '127.0.0.1', resolve));
  });

  after(() => {
    if (sandbox) sandbox.close();
    cleanup(dir);
  });

  const startRecording = (mode) => startCallvcr({
    cassette: 'recorded', mode, cwd: dir, bin: BIN, cassettes: 'tapes',
    upstreamCa: path.join(dir, 'ca.pem'), resolve: [`*=127.0.0.1:${sandbox.address().port}`],
  });
  const get = async (cv, p) => (await fetch(`https://${API}${p}`, { dispatcher: cv.proxyAgent() })).json();

  it('records each test in its scope, then replays each its own', async (t) => {
    if (!haveOpenssl) return t.skip('no openssl to make the stand-in platform a certificate');
    let cv = await startRecording('record');
    assert.equal((await cv.health()).mode, 'record');
    await cv.scope('test_one');
    assert.deepEqual(await get(cv, '/api/v2/users/me'), { path: '/api/v2/users/me', n: 1 });
    await cv.scope('test_two');
    assert.deepEqual(await get(cv, '/api/v2/users/me'), { path: '/api/v2/users/me', n: 2 });
    await cv.endScope();
    assert.equal((await cv.stop()).code, 0);

    // Only test_two again, with `missing`: what it already recorded is served, a new request recorded.
    cv = await startRecording('missing');
    await cv.scope('test_two');
    assert.deepEqual(await get(cv, '/api/v2/users/me'), { path: '/api/v2/users/me', n: 2 }, 'recorded before: not forwarded');
    assert.deepEqual(await get(cv, '/api/v2/routing/queues'), { path: '/api/v2/routing/queues', n: 3 });
    assert.equal((await cv.stop()).code, 0);
    assert.equal(served, 3);

    // Replayed with the stand-in gone, in the reverse order: each test gets its own.
    sandbox.close();
    sandbox = null;
    cv = await startCallvcr({ cassette: 'recorded', cwd: dir, bin: BIN, cassettes: 'tapes', overlaysOff: ['auth'], args: ['--strict'] });
    try {
      await cv.scope('test_two');
      assert.equal((await get(cv, '/api/v2/users/me')).n, 2);
      assert.equal((await get(cv, '/api/v2/routing/queues')).n, 3);
      await cv.scope('test_one');
      assert.equal((await get(cv, '/api/v2/users/me')).n, 1);
      assert.deepEqual([await cv.misses('test_one'), await cv.misses('test_two')], [[], []]);
    } finally {
      assert.equal((await cv.stop()).code, 0, 'a strict replay that never missed');
    }
  });
});
