'use strict';
// callvcr from Node: start the binary on free ports (or attach to one `callvcr run` started),
// drive its admin API, and route this process's fetch through it. The test-framework adapters
// (node-test.js, jest.js, vitest.mjs) are thin layers over this.

const fs = require('node:fs');
const path = require('node:path');
const core = require('./lib/core');
const { adminClient, CallvcrAdminError } = require('./lib/admin');
const { spawnCallvcr, TAIL } = require('./lib/process');
const proxy = require('./lib/proxy');

/** Where system root bundles usually live; the first one found goes into `bundle.pem` (as `callvcr run` does). */
const SYSTEM_BUNDLES = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/ca-bundle.pem',
  '/etc/ssl/cert.pem',
  '/usr/local/etc/openssl/cert.pem',
];

/**
 * Writes `<certs>/bundle.pem`: the system's roots, then callvcr's CA, for runtimes that take one
 * file (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE). Written to a temporary name and
 * renamed, so a process sharing the directory never reads half of it.
 */
function writeBundle(caPath) {
  const system = SYSTEM_BUNDLES.find((p) => {
    try {
      return fs.statSync(p).isFile();
    } catch {
      return false;
    }
  });
  let text = system ? fs.readFileSync(system, 'utf8') : '';
  if (text && !text.endsWith('\n')) text += '\n';
  text += '# callvcr local CA (name-constrained to the platform domains)\n' + fs.readFileSync(caPath, 'utf8');
  const out = path.join(path.dirname(caPath), 'bundle.pem');
  const tmp = `${out}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, out);
  return out;
}

/**
 * Starts callvcr and resolves once it is ready. See index.d.ts for the options and the handle.
 */
async function startCallvcr(options = {}) {
  const proc = await spawnCallvcr(options);
  const caPath = core.caPathFor(options);
  let bundlePath;
  try {
    bundlePath = writeBundle(caPath);
  } catch (e) {
    await proc.stop();
    throw e;
  }
  const handle = makeHandle({
    ready: proc.ready,
    caPath,
    bundlePath,
    adminToken: options.adminToken,
    mode: options.mode || 'replay',
    cassette: options.cassette,
    // A refused connection to the admin API usually means the process died: say so, with its log.
    onTransportError: (e) => {
      const exit = proc.exitStatus();
      if (!exit) return e;
      const err = new Error(`callvcr is not running (exited with code ${exit.code}, signal ${exit.signal}):\n${proc.stderr().slice(-TAIL)}`);
      err.cause = e;
      return err;
    },
  });
  handle.pid = proc.child.pid;
  handle.args = proc.args;
  handle.stderr = proc.stderr;
  handle.exited = proc.exited;
  const detach = handle.stop;
  /** Stops the process (SIGINT, then at most `timeoutMs` for its drain) and resolves with `{code, signal, killed, stderr}`. */
  handle.stop = async ({ timeoutMs } = {}) => {
    await detach();
    return proc.stop(timeoutMs);
  };
  if (options.installProxy) {
    try {
      handle.installProxy();
    } catch (e) {
      await handle.stop();
      throw e;
    }
  }
  return handle;
}

/**
 * A handle on a callvcr that is already running, by default the one `callvcr run` started for this
 * process (CALLVCR_ADMIN, CALLVCR_PROXY, CALLVCR_CA). Its `stop()` only detaches: the process
 * belongs to whoever started it.
 */
function connectCallvcr(options = {}) {
  const adminUrl = options.adminUrl || process.env.CALLVCR_ADMIN;
  const proxyUrl = options.proxyUrl || process.env.CALLVCR_PROXY;
  const caPath = options.caPath || process.env.CALLVCR_CA;
  if (!adminUrl || !proxyUrl || !caPath) {
    throw new Error('callvcr: connectCallvcr needs adminUrl, proxyUrl and caPath (or CALLVCR_ADMIN, CALLVCR_PROXY, CALLVCR_CA, as `callvcr run` sets them)');
  }
  const hostOf = (u) => new URL(u).host;
  const bundlePath = process.env.SSL_CERT_FILE && fs.existsSync(process.env.SSL_CERT_FILE)
    ? process.env.SSL_CERT_FILE
    : path.join(path.dirname(caPath), 'bundle.pem');
  const handle = makeHandle({
    ready: { proxy: hostOf(proxyUrl), admin: hostOf(adminUrl), tls: null },
    caPath: path.resolve(caPath),
    bundlePath: path.resolve(bundlePath),
    adminToken: options.adminToken,
    mode: null,
    cassette: null,
  });
  handle.attached = true;
  if (options.installProxy) handle.installProxy();
  return handle;
}

/** The handle: addresses, the child environment and one method per admin call. */
function makeHandle({ ready, caPath, bundlePath, adminToken, mode, cassette, onTransportError }) {
  const adminUrl = `http://${ready.admin}`;
  const proxyUrl = `http://${ready.proxy}`;
  const admin = adminClient(adminUrl, { token: adminToken, onTransportError });
  const call = admin.call;
  const enc = encodeURIComponent;
  let uninstall = null;

  const fault = async (kind, rule = {}) => {
    const { id } = await call('POST', '/mock/admin/faults', { ...rule, kind });
    return {
      id,
      /** Removes the rule; resolves with `{removed}`. */
      remove: () => call('DELETE', `/mock/admin/faults/${enc(id)}`),
    };
  };

  const h = {
    mode,
    cassette,
    attached: false,
    /** `{tls, proxy, admin}` as the ready file gives them (host:port). */
    addresses: { ...ready },
    proxyUrl,
    adminUrl,
    caPath,
    bundlePath,
    env: core.buildEnv(ready, caPath, bundlePath),
    /** The process's log so far (empty when attached to a process started elsewhere). */
    stderr: () => '',

    /** Any admin call: `admin('GET', '/mock/admin/tokens')`. */
    admin: (method, route, body) => call(method, route, body),
    health: () => call('GET', '/mock/admin/health'),
    reset: () => call('POST', '/mock/admin/reset', {}),
    useCassette: (name) => call('POST', '/mock/admin/cassette', { name }),

    scope: (name) => call('POST', '/mock/admin/scope', { name }),
    endScope: () => call('POST', '/mock/admin/scope', { name: null }),
    currentScope: async () => (await call('GET', '/mock/admin/scope')).scope,
    scopeHeader: (name) => ({ 'x-callvcr-scope': name }),
    scopes: () => call('GET', '/mock/admin/scopes'),
    misses: async (scope) => core.missedOf(await call('GET', '/mock/admin/scopes'), scope),
    journal: async ({ scope } = {}) => {
      const all = await call('GET', '/mock/admin/journal');
      return scope === undefined ? all : all.filter((e) => (e.scope ?? null) === scope);
    },

    expireTokens: ({ clientId, token } = {}) => {
      const body = {};
      if (clientId !== undefined) body.client_id = clientId;
      if (token !== undefined) body.token = token;
      return call('POST', '/mock/admin/tokens/expire', body);
    },
    tokens: () => call('GET', '/mock/admin/tokens'),

    clock: () => call('GET', '/mock/admin/clock'),
    advanceClock: (ms) => call('POST', '/mock/admin/clock', { advance_ms: ms }),
    setClock: (time) => call('POST', '/mock/admin/clock', { set: core.toRfc3339(time) }),

    transition: (session, to, { from, metadata } = {}) => {
      const body = { to };
      if (from !== undefined) body.from = from;
      if (metadata !== undefined) body.metadata = metadata;
      return call('POST', `/mock/admin/session/${enc(session)}/transition`, body);
    },
    release: (session, { participantId } = {}) =>
      call('POST', `/mock/admin/session/${enc(session)}/release`, participantId === undefined ? {} : { participantId }),
    session: (id) => call('GET', `/mock/admin/session/${enc(id)}`),
    sessions: () => call('GET', '/mock/admin/sessions'),

    pushEvent: (event, { session, topic, delayMs, jitterMs, duplicate, reorder } = {}) => {
      const body = { event };
      const put = (k, v) => { if (v !== undefined) body[k] = v; };
      put('session', session);
      put('topic', topic);
      put('delay_ms', delayMs);
      put('jitter_ms', jitterMs);
      put('duplicate', duplicate);
      put('reorder', reorder);
      return call('POST', '/mock/admin/ws/events', body);
    },
    wsSessions: () => call('GET', '/mock/admin/ws/sessions'),

    fault,
    /** Runs `fn(fault)` with the rule in place and removes it afterwards, however `fn` ends. */
    withFault: async (kind, rule, fn) => {
      const f = await fault(kind, rule);
      try {
        return await fn(f);
      } finally {
        await f.remove().catch((e) => {
          // Already gone (removed inside fn, or a reset): nothing left to undo.
          if (!(e instanceof CallvcrAdminError && e.status === 404)) throw e;
        });
      }
    },
    faults: () => call('GET', '/mock/admin/faults'),

    /** A fresh undici dispatcher through callvcr, for `fetch(url, {dispatcher})` without touching the global one. */
    proxyAgent: (extra) => proxy.makeProxyAgent(proxyUrl, caPath, extra),
    /** Sends the global fetch through callvcr until `stop()` (or the returned function) undoes it. */
    installProxy: () => {
      if (!uninstall) {
        const restore = proxy.installGlobal(proxy.makeProxyAgent(proxyUrl, caPath));
        uninstall = async () => { uninstall = null; await restore(); };
      }
      return uninstall;
    },
    /** Detaches: restores the global dispatcher and closes the admin client. */
    stop: async () => {
      if (uninstall) await uninstall();
      admin.close();
      return { code: null, signal: null, killed: false, stderr: '' };
    },
  };
  return h;
}

module.exports = {
  startCallvcr,
  connectCallvcr,
  CallvcrAdminError,
  CallvcrMissError: require('./lib/adapter').CallvcrMissError,
  buildArgs: core.buildArgs,
  buildEnv: core.buildEnv,
};
