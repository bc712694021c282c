'use strict';
// The pure part of the helper: the command line for the binary, the environment a child gets,
// and the misses a test added. No processes, sockets or files here, so it is unit-tested
// without starting callvcr.

const path = require('node:path');

/** Loopback names that must never go through the proxy (the admin API is plain HTTP on them). */
const NO_PROXY = '127.0.0.1,localhost,::1';

/** The modes `startCallvcr` knows, and the binary's subcommand and flags for each. */
const MODES = {
  replay: ['replay'],
  // A test suite records test by test: each scope recorded in this run replaces what it held.
  record: ['record', '--by-scope'],
  // Keep the cassette and record only what a scope's requests miss.
  missing: ['record', '--missing'],
};

/**
 * The binary's arguments for `options` (see `startCallvcr`), the listeners on free loopback
 * ports and the ready file at `readyFile`. Throws on a mode or option it does not know, before
 * anything is spawned.
 */
function buildArgs(options, readyFile) {
  const o = options || {};
  const mode = o.mode || 'replay';
  const sub = MODES[mode];
  if (!sub) {
    throw new TypeError(`callvcr: mode must be one of ${Object.keys(MODES).join(', ')}; got ${JSON.stringify(mode)}`);
  }
  if (typeof o.cassette !== 'string' || o.cassette === '') {
    throw new TypeError('callvcr: `cassette` is required (a cassette name, or a .jsonl / .har file)');
  }
  const [cmd, ...modeFlags] = sub;
  const args = [cmd, '--cassette', o.cassette, ...modeFlags];
  // Port 0 everywhere: parallel test processes never collide, and the ready file says what was bound.
  args.push('--listen', '127.0.0.1:0', '--proxy-listen', '127.0.0.1:0', '--admin', '127.0.0.1:0');
  args.push('--ready-file', readyFile);
  if (o.certs) args.push('--certs', o.certs);
  if (o.cassettes) args.push('--cassettes', o.cassettes);
  if (o.config) args.push('--config', o.config);
  const off = [].concat(o.overlaysOff || []);
  if (off.length) {
    if (mode !== 'replay') throw new TypeError('callvcr: overlaysOff applies to replay only (record modes run no overlays)');
    args.push('--no-overlay', off.join(','));
  }
  const replayOnly = { clockFrozen: '--clock-frozen', clockStart: '--clock-start', report: '--report' };
  for (const [key, flag] of Object.entries(replayOnly)) {
    if (o[key] === undefined || o[key] === false || o[key] === null) continue;
    if (mode !== 'replay') throw new TypeError(`callvcr: ${key} applies to replay only`);
    if (key === 'clockFrozen') args.push(flag);
    else args.push(flag, key === 'clockStart' ? toRfc3339(o[key]) : String(o[key]));
  }
  if (o.upstreamCa) args.push('--upstream-ca', o.upstreamCa);
  for (const r of [].concat(o.resolve || [])) args.push('--resolve', r);
  return args.concat((o.args || []).map(String));
}

/** A Date or a string, as the RFC 3339 text the binary and the admin API take. */
function toRfc3339(t) {
  return t instanceof Date ? t.toISOString() : String(t);
}

/**
 * The environment `callvcr run` gives its command (README, "`callvcr run`"), for the listeners in
 * `ready` (`{tls, proxy, admin}` as written to the ready file) and the CA and bundle paths.
 */
function buildEnv(ready, caPath, bundlePath) {
  const proxy = `http://${ready.proxy}`;
  return {
    HTTPS_PROXY: proxy,
    https_proxy: proxy,
    NO_PROXY,
    no_proxy: NO_PROXY,
    SSL_CERT_FILE: bundlePath,
    REQUESTS_CA_BUNDLE: bundlePath,
    CURL_CA_BUNDLE: bundlePath,
    NODE_EXTRA_CA_CERTS: caPath,
    CALLVCR_CA: caPath,
    CALLVCR_PROXY: proxy,
    CALLVCR_ADMIN: `http://${ready.admin}`,
    CALLVCR_REDIRECT: 'proxy',
  };
}

/** Where the CA lives for these options: `<cwd>/<certs or "certs">/ca.pem`, as the binary resolves it. */
function caPathFor(options) {
  const cwd = path.resolve((options && options.cwd) || process.cwd());
  return path.resolve(cwd, (options && options.certs) || 'certs', 'ca.pem');
}

/** The ready file's JSON when it is complete, else null (still being written, or not yet). */
function parseReady(text) {
  try {
    const r = JSON.parse(text);
    return r && typeof r.admin === 'string' && typeof r.proxy === 'string' ? r : null;
  } catch {
    return null;
  }
}

/** The `missed` list of scope `name` in a `GET /mock/admin/scopes` answer ([] when it is absent). */
function missedOf(scopes, name) {
  const s = (scopes || []).find((x) => x && x.name === name);
  return s && Array.isArray(s.missed) ? s.missed : [];
}

/** Why a test failed when its scope missed: the scope and each miss as callvcr explained it. */
function missMessage(name, missed) {
  const n = missed.length;
  return `callvcr: test scope "${name}" missed ${n} request${n === 1 ? '' : 's'} in the cassette:\n` +
    missed.map((m) => `  - ${m}`).join('\n');
}

/**
 * A key for sharing one process between `useCallvcr` calls with the same options: their JSON
 * with sorted keys (functions and undefined left out, as they cannot change the command line).
 */
function optionsKey(options) {
  const sort = (v) => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === 'object' && !(v instanceof Date)) {
      return Object.fromEntries(Object.keys(v).sort().filter((k) => typeof v[k] !== 'function').map((k) => [k, sort(v[k])]));
    }
    return v;
  };
  return JSON.stringify(sort(options || {}));
}

module.exports = { NO_PROXY, MODES, buildArgs, buildEnv, caPathFor, parseReady, missedOf, missMessage, optionsKey, toRfc3339 };
