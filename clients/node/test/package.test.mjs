// The package as users get it: every entry point by import and by require, installed with
// `npm install <dir>` into another project (what is shipped, and that it runs there), and the
// type declarations compiled against a usage file.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { PKG, BIN, tempdir, cleanup, exchange, writeCassette, run } from './helpers.mjs';

const require = createRequire(import.meta.url);

describe('the package', { timeout: 90000 }, () => {
  it('gives the same module to import and require, for every entry point', async () => {
    const esm = await import('callvcr');
    const cjs = require('callvcr');
    assert.equal(esm.startCallvcr, cjs.startCallvcr);
    assert.equal(esm.default, cjs);
    for (const sub of ['node-test', 'jest']) {
      const m = await import(`callvcr/${sub}`);
      assert.equal(m.useCallvcr, require(`callvcr/${sub}`).useCallvcr, sub);
      assert.equal(m.CallvcrMissError, cjs.CallvcrMissError, sub);
    }
  });

  it('loads callvcr/vitest when vitest is installed', { skip: !fs.existsSync(path.join(PKG, 'node_modules', 'vitest')) && 'vitest is not installed' }, async () => {
    const m = await import('callvcr/vitest');
    assert.equal(typeof m.useCallvcr, 'function');
  });

  it('installs with `npm install <dir>` and runs from the other project', async () => {
    const dir = tempdir('consumer');
    try {
      fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
      // --install-links copies the package as npm would pack it, so `files` is what is tested.
      const npm = await run('npm', ['install', '--install-links', '--prefer-offline', '--no-audit', '--no-fund', '--no-package-lock', PKG], { cwd: dir, timeoutMs: 60000 });
      assert.equal(npm.code, 0, npm.stderr);
      const shipped = fs.readdirSync(path.join(dir, 'node_modules', 'callvcr')).sort();
      for (const f of ['README.md', 'index.d.ts', 'index.js', 'index.mjs', 'lib', 'node-test.js', 'jest.js', 'vitest.mjs']) assert.ok(shipped.includes(f), `${f} shipped: ${shipped}`);
      assert.ok(!shipped.includes('test') && !shipped.includes('node_modules'), `nothing else: ${shipped}`);
      assert.ok(fs.existsSync(path.join(dir, 'node_modules', 'undici')), 'the optional undici came along');

      writeCassette(dir, 'c.jsonl', [exchange(1, { path: '/api/v2/users/me', json: { id: 'u-1' } })]);
      fs.writeFileSync(path.join(dir, 'use.mjs'), `
        import { startCallvcr } from 'callvcr';
        const cv = await startCallvcr({ cassette: 'c.jsonl', overlaysOff: ['auth'], installProxy: true });
        const r = await fetch('https://api.mypurecloud.com/api/v2/users/me');
        console.log(r.status, await r.text(), (await cv.stop()).code);`);
      const r = await run(process.execPath, ['use.mjs'], { cwd: dir, env: { ...process.env, CALLVCR_BIN: BIN }, timeoutMs: 30000 });
      assert.equal(r.stdout.trim(), '200 {"id":"u-1"} 0', r.stderr);
    } finally {
      cleanup(dir);
    }
  });

  it('declares types that compile against a usage file', { skip: !fs.existsSync(path.join(PKG, 'node_modules', 'typescript')) && 'typescript is not installed' }, async () => {
    const tsc = path.join(PKG, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = await run(process.execPath, [tsc, '-p', path.join(PKG, 'test', 'types', 'tsconfig.json')], { cwd: PKG, timeoutMs: 60000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
});
