// The pure part, without a process: the command line per mode and option, the child
// environment, and which misses belong to a test.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import core from '../lib/core.js';

const PORTS = ['--listen', '127.0.0.1:0', '--proxy-listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--ready-file', '/r.json'];

test('each mode starts its subcommand on free ports with the ready file', () => {
  assert.deepEqual(core.buildArgs({ cassette: 'c.jsonl' }, '/r.json'), ['replay', '--cassette', 'c.jsonl', ...PORTS]);
  assert.deepEqual(core.buildArgs({ cassette: 'c', mode: 'record' }, '/r.json'), ['record', '--cassette', 'c', '--by-scope', ...PORTS]);
  assert.deepEqual(core.buildArgs({ cassette: 'c', mode: 'missing' }, '/r.json'), ['record', '--cassette', 'c', '--missing', ...PORTS]);
});

test('replay options become their flags, and args come last', () => {
  const args = core.buildArgs({
    cassette: 'c',
    certs: 'my-certs',
    cassettes: 'tapes',
    config: 'p.yaml',
    overlaysOff: ['auth', 'rate-limit'],
    clockFrozen: true,
    clockStart: new Date('2026-01-05T09:00:00Z'),
    report: 'out.xml',
    args: ['--strict', '--seed', 7],
  }, '/r.json');
  assert.deepEqual(args.slice(PORTS.length + 3), [
    '--certs', 'my-certs', '--cassettes', 'tapes', '--config', 'p.yaml', '--no-overlay', 'auth,rate-limit',
    '--clock-frozen', '--clock-start', '2026-01-05T09:00:00.000Z', '--report', 'out.xml', '--strict', '--seed', '7',
  ]);
  assert.ok(!core.buildArgs({ cassette: 'c', clockFrozen: false }, '/r').includes('--clock-frozen'));
});

test('record options: upstream CA and resolves', () => {
  const args = core.buildArgs({ cassette: 'c', mode: 'record', upstreamCa: 'ca.pem', resolve: ['*=127.0.0.1:8443'] }, '/r');
  assert.deepEqual(args.slice(-4), ['--upstream-ca', 'ca.pem', '--resolve', '*=127.0.0.1:8443']);
});

test('mistakes are refused before anything starts', () => {
  assert.throws(() => core.buildArgs({}, '/r'), /cassette.*required/);
  assert.throws(() => core.buildArgs({ cassette: 'c', mode: 'rewind' }, '/r'), /mode must be one of replay, record, missing/);
  assert.throws(() => core.buildArgs({ cassette: 'c', mode: 'record', overlaysOff: ['auth'] }, '/r'), /replay only/);
  assert.throws(() => core.buildArgs({ cassette: 'c', mode: 'missing', clockFrozen: true }, '/r'), /clockFrozen applies to replay only/);
});

test('the environment is the one `callvcr run` sets', () => {
  const env = core.buildEnv({ tls: '127.0.0.1:1', proxy: '127.0.0.1:2', admin: '127.0.0.1:3' }, '/c/ca.pem', '/c/bundle.pem');
  assert.deepEqual(env, {
    HTTPS_PROXY: 'http://127.0.0.1:2',
    https_proxy: 'http://127.0.0.1:2',
    NO_PROXY: '127.0.0.1,localhost,::1',
    no_proxy: '127.0.0.1,localhost,::1',
    SSL_CERT_FILE: '/c/bundle.pem',
    REQUESTS_CA_BUNDLE: '/c/bundle.pem',
    CURL_CA_BUNDLE: '/c/bundle.pem',
    NODE_EXTRA_CA_CERTS: '/c/ca.pem',
    CALLVCR_CA: '/c/ca.pem',
    CALLVCR_PROXY: 'http://127.0.0.1:2',
    CALLVCR_ADMIN: 'http://127.0.0.1:3',
    CALLVCR_REDIRECT: 'proxy',
  });
});

test('the CA is <cwd>/<certs>/ca.pem', () => {
  assert.equal(core.caPathFor({ cwd: '/w' }), path.resolve('/w/certs/ca.pem'));
  assert.equal(core.caPathFor({ cwd: '/w', certs: '/elsewhere' }), path.resolve('/elsewhere/ca.pem'));
  assert.equal(core.caPathFor({}), path.resolve(process.cwd(), 'certs', 'ca.pem'));
});

test('a ready file counts only once it is whole', () => {
  assert.equal(core.parseReady(''), null);
  assert.equal(core.parseReady('{"tls":"127.0.0.1:1","pro'), null);
  assert.equal(core.parseReady('{"tls":"127.0.0.1:1"}'), null);
  assert.deepEqual(core.parseReady('{"tls":"a","proxy":"b","admin":"c"}'), { tls: 'a', proxy: 'b', admin: 'c' });
});

test('misses are read per scope and explained in the failure', () => {
  const scopes = [{ name: 'a', missed: ['GET x/1 (closest: GET x/2)'] }, { name: 'b', missed: [] }];
  assert.deepEqual(core.missedOf(scopes, 'a'), ['GET x/1 (closest: GET x/2)']);
  assert.deepEqual(core.missedOf(scopes, 'never-seen'), []);
  assert.equal(core.missMessage('a', ['m1', 'm2']), 'callvcr: test scope "a" missed 2 requests in the cassette:\n  - m1\n  - m2');
});

test('options that start the same process share a key whatever their order', () => {
  assert.equal(core.optionsKey({ cassette: 'c', overlaysOff: ['auth'] }), core.optionsKey({ overlaysOff: ['auth'], cassette: 'c' }));
  assert.notEqual(core.optionsKey({ cassette: 'c' }), core.optionsKey({ cassette: 'd' }));
});
