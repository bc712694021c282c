// The test-framework adapters for real: an inner suite run as a child process (node --test,
// Jest, Vitest) where one test misses. Exactly that test must fail, in any order, and the others
// pass alone too.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startCallvcr } from '../index.mjs';
import { BIN, PKG, API, tempdir, cleanup, exchange, writeCassette, run, parseTap } from './helpers.mjs';

const INNER = path.join(PKG, 'test', 'fixtures', 'scoped.inner.mjs');
const MISSED_PATH = `GET ${API}/api/v2/never/recorded`;

/** What each inner test recorded, in its own scope, plus one answer outside any scope. */
function scopedCassette(dir, scopeOf) {
  const me = (seq, who, scope) => exchange(seq, { path: '/api/v2/users/me', json: { who }, scope });
  return writeCassette(dir, 'scoped.jsonl', [
    me(1, 'a1', scopeOf('test a')),
    me(2, 'b1', scopeOf('test b')),
    me(3, 'a2', scopeOf('test a')),
    me(4, 'shared', undefined),
  ]);
}

/** This process's environment without a callvcr of its own, so an inner suite never attaches by accident. */
function cleanEnv(extra) {
  const env = { ...process.env, CALLVCR_BIN: BIN, ...extra };
  for (const k of ['CALLVCR_ADMIN', 'CALLVCR_PROXY', 'CALLVCR_CA', 'NODE_TEST_CONTEXT']) if (!(k in (extra || {}))) delete env[k];
  return env;
}

describe('callvcr/node-test', { timeout: 90000 }, () => {
  let dir;
  before(() => {
    dir = tempdir('adapter-node');
    scopedCassette(dir, (t) => `inner > ${t}`);
  });
  after(() => cleanup(dir));

  /** Runs the inner suite with TAP output; `env` on top of the cassette's settings. */
  const inner = (args, env) =>
    run(process.execPath, ['--test', '--test-reporter=tap', ...args, INNER], {
      cwd: PKG,
      env: cleanEnv({ INNER_CASSETTE: 'scoped.jsonl', INNER_CWD: dir, ...env }),
      timeoutMs: 30000,
    });

  const assertOnlyTheMissFails = (r) => {
    const tap = parseTap(r.stdout);
    assert.deepEqual(
      [tap.results['test a'], tap.results['test b'], tap.results['test misses'], tap.pass, tap.fail],
      ['ok', 'ok', 'not ok', 2, 1],
      r.stdout + r.stderr,
    );
    assert.equal(r.code, 1);
    // The failure lists callvcr's explanation of the miss.
    assert.match(r.stdout, /test scope "inner > test misses" missed 1 request/);
    assert.ok(r.stdout.includes(MISSED_PATH), r.stdout);
  };

  it('fails exactly the test whose scope missed', async () => {
    assertOnlyTheMissFails(await inner([], {}));
  });

  it('gives each test its own recordings in reverse order', async () => {
    assertOnlyTheMissFails(await inner([], { INNER_ORDER: 'reverse' }));
  });

  it('passes a test run alone (--test-name-pattern)', async () => {
    for (const name of ['test b', 'test a']) {
      const r = await inner(['--test-name-pattern', `^${name}$`], {});
      const tap = parseTap(r.stdout);
      assert.deepEqual([tap.results[name], tap.pass, tap.fail, r.code], ['ok', 1, 0, 0], r.stdout + r.stderr);
    }
  });

  it('attaches to the callvcr in CALLVCR_ADMIN when given no cassette (as under `callvcr run`)', async () => {
    const cv = await startCallvcr({ cassette: 'scoped.jsonl', cwd: dir, bin: BIN, overlaysOff: ['auth'] });
    try {
      const r = await run(process.execPath, ['--test', '--test-reporter=tap', INNER], {
        cwd: PKG,
        env: { ...cleanEnv(cv.env), INNER_CASSETTE: '' },
        timeoutMs: 30000,
      });
      assertOnlyTheMissFails(r);
      // The outer process saw the inner tests' scopes.
      assert.equal((await cv.misses('inner > test misses')).length, 1);
      assert.deepEqual(await cv.misses('inner > test a'), []);
    } finally {
      await cv.stop();
    }
  });
});

/** The local bin of a dev dependency, or null when it is not installed (then its test is skipped). */
function devBin(pkg, file) {
  const p = path.join(PKG, 'node_modules', pkg, file);
  return fs.existsSync(p) ? p : null;
}

/**
 * An inner Jest or Vitest suite (`body` uses the framework's globals and `useCallvcr`), written to
 * a temp dir with the adapter required by absolute path, so nothing is written into the tree.
 */
function frameworkSuite(header) {
  return `${header}
const SCOPE = (t) => 'inner ' + t;
describe('inner', () => {
  const cv = useCallvcr({ cassette: 'scoped.jsonl', cwd: process.env.INNER_CWD, overlaysOff: ['auth'], installProxy: true });
  const who = async () => (await (await fetch('https://${API}/api/v2/users/me')).json()).who;
  const tests = [
    ['test a', async () => { expect(await who()).toBe('a1'); expect(await who()).toBe('a2'); }],
    ['test b', async () => { expect(await who()).toBe('b1'); expect(await cv.currentScope()).toBe(SCOPE('test b')); }],
    ['test misses', async () => { expect((await fetch('https://${API}/api/v2/never/recorded')).status).toBe(404); }],
  ];
  if (process.env.INNER_ORDER === 'reverse') tests.reverse();
  for (const [name, fn] of tests) it(name, fn);
});
`;
}

describe('callvcr/jest', { timeout: 120000 }, () => {
  const jest = devBin('jest', 'bin/jest.js');
  let dir;
  before(() => {
    dir = tempdir('adapter-jest');
    // Jest names a test "describe test", with a space.
    scopedCassette(dir, (t) => `inner ${t}`);
    fs.writeFileSync(path.join(dir, 'jest.config.json'), '{}');
    fs.writeFileSync(path.join(dir, 'inner.test.js'),
      frameworkSuite(`const { useCallvcr } = require(${JSON.stringify(path.join(PKG, 'jest.js'))});`));
  });
  after(() => cleanup(dir));

  for (const order of ['', 'reverse']) {
    it(`fails exactly the test whose scope missed${order ? ', in reverse order' : ''}`, { skip: !jest && 'jest is not installed' }, async () => {
      const out = path.join(dir, `out${order}.json`);
      const r = await run(process.execPath, [jest, '--rootDir', dir, '--ci', '--watchman=false', '--json', '--outputFile', out], {
        cwd: dir, env: cleanEnv({ INNER_CWD: dir, INNER_ORDER: order }), timeoutMs: 60000,
      });
      const report = JSON.parse(fs.readFileSync(out, 'utf8'));
      const status = Object.fromEntries(report.testResults[0].assertionResults.map((a) => [a.title, a.status]));
      assert.deepEqual(status, { 'test a': 'passed', 'test b': 'passed', 'test misses': 'failed' }, r.stderr);
      const failure = report.testResults[0].assertionResults.find((a) => a.title === 'test misses').failureMessages.join('\n');
      assert.match(failure, /test scope "inner test misses" missed 1 request/);
      assert.ok(failure.includes(MISSED_PATH), failure);
      assert.equal(r.code, 1);
    });
  }

  it('passes a test run alone (-t)', { skip: !jest && 'jest is not installed' }, async () => {
    const out = path.join(dir, 'alone.json');
    const r = await run(process.execPath, [jest, '--rootDir', dir, '--ci', '--watchman=false', '--json', '--outputFile', out, '-t', 'inner test b'], {
      cwd: dir, env: cleanEnv({ INNER_CWD: dir }), timeoutMs: 60000,
    });
    const results = JSON.parse(fs.readFileSync(out, 'utf8')).testResults[0].assertionResults;
    const status = Object.fromEntries(results.map((a) => [a.title, a.status]));
    assert.deepEqual(status, { 'test a': 'pending', 'test b': 'passed', 'test misses': 'pending' }, r.stderr);
    assert.equal(r.code, 0);
  });
});

describe('callvcr/vitest', { timeout: 120000 }, () => {
  const vitest = devBin('vitest', 'vitest.mjs');
  let dir;
  before(() => {
    dir = tempdir('adapter-vitest');
    // Vitest names a test "describe > test".
    scopedCassette(dir, (t) => `inner > ${t}`);
    const header = `import { useCallvcr } from ${JSON.stringify(path.join(PKG, 'vitest.mjs'))};
import { describe, it, expect } from ${JSON.stringify(path.join(PKG, 'node_modules', 'vitest', 'dist', 'index.js'))};`;
    fs.writeFileSync(path.join(dir, 'inner.test.mjs'), frameworkSuite(header).replace("'inner ' + t", "'inner > ' + t"));
  });
  after(() => cleanup(dir));

  for (const order of ['', 'reverse']) {
    it(`fails exactly the test whose scope missed${order ? ', in reverse order' : ''}`, { skip: !vitest && 'vitest is not installed' }, async () => {
      const out = path.join(dir, `out${order}.json`);
      const r = await run(process.execPath, [vitest, 'run', '--root', dir, '--reporter=json', `--outputFile=${out}`], {
        cwd: dir, env: cleanEnv({ INNER_CWD: dir, INNER_ORDER: order }), timeoutMs: 60000,
      });
      assert.ok(fs.existsSync(out), r.stdout + r.stderr);
      const report = JSON.parse(fs.readFileSync(out, 'utf8'));
      const results = report.testResults[0].assertionResults;
      const status = Object.fromEntries(results.map((a) => [a.title, a.status]));
      assert.deepEqual(status, { 'test a': 'passed', 'test b': 'passed', 'test misses': 'failed' }, r.stdout + r.stderr);
      const failure = results.find((a) => a.title === 'test misses').failureMessages.join('\n');
      assert.match(failure, /test scope "inner > test misses" missed 1 request/);
      assert.ok(failure.includes(MISSED_PATH), failure);
      assert.equal(r.code, 1);
    });
  }

  it('passes a test run alone (-t)', { skip: !vitest && 'vitest is not installed' }, async () => {
    const out = path.join(dir, 'alone.json');
    const r = await run(process.execPath, [vitest, 'run', '--root', dir, '--reporter=json', `--outputFile=${out}`, '-t', 'test b'], {
      cwd: dir, env: cleanEnv({ INNER_CWD: dir }), timeoutMs: 60000,
    });
    const results = JSON.parse(fs.readFileSync(out, 'utf8')).testResults[0].assertionResults;
    const status = Object.fromEntries(results.map((a) => [a.title, a.status]));
    assert.deepEqual(status, { 'test a': 'skipped', 'test b': 'passed', 'test misses': 'skipped' }, r.stdout + r.stderr);
    assert.equal(r.code, 0);
  });
});
