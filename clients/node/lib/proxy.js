'use strict';
// Sending this process's fetch through callvcr. Node's fetch ignores HTTPS_PROXY, and
// NODE_EXTRA_CA_CERTS is read only at process start, so both the proxy and the trust go into an
// undici dispatcher: the CA in its TLS options, next to Node's own roots.

const fs = require('node:fs');
const tls = require('node:tls');
const { NO_PROXY } = require('./core');

/** undici from npm (an optional dependency), or an error that says how to get it. */
function loadUndici() {
  try {
    return require('undici');
  } catch (e) {
    const err = new Error('callvcr: sending fetch through callvcr needs the `undici` package (npm install undici)');
    err.cause = e;
    throw err;
  }
}

/**
 * The certificates a client trusts: Node's bundled roots, NODE_EXTRA_CA_CERTS when this process
 * has one, and callvcr's CA. Giving `ca` replaces the defaults, so the roots must be listed too,
 * or every host not intercepted would fail verification.
 */
function trustedCas(caPath) {
  const cas = [...tls.rootCertificates];
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  if (extra) {
    try {
      cas.push(fs.readFileSync(extra, 'utf8'));
    } catch {
      // A broken NODE_EXTRA_CA_CERTS is Node's warning to give at startup, not ours.
    }
  }
  cas.push(fs.readFileSync(caPath, 'utf8'));
  return cas;
}

/**
 * A dispatcher that sends HTTPS through callvcr's proxy and trusts its CA; loopback and plain
 * HTTP go direct (as `callvcr run` sets it up: the admin API is never proxied). `extra` is passed
 * to undici's `EnvHttpProxyAgent`.
 */
function makeProxyAgent(proxyUrl, caPath, extra = {}) {
  const undici = loadUndici();
  const ca = trustedCas(caPath);
  return new undici.EnvHttpProxyAgent({
    httpsProxy: proxyUrl,
    // '' and not undefined: undefined would fall back to this process's HTTP_PROXY.
    httpProxy: '',
    noProxy: NO_PROXY,
    connect: { ca },
    requestTls: { ca },
    ...extra,
  });
}

/**
 * Makes `agent` the global dispatcher, so the global `fetch` (and undici's) goes through it.
 * Returns a function that puts the previous dispatcher back and closes the agent.
 */
function installGlobal(agent) {
  const undici = loadUndici();
  const previous = undici.getGlobalDispatcher();
  undici.setGlobalDispatcher(agent);
  let done = false;
  return async () => {
    if (done) return;
    done = true;
    if (undici.getGlobalDispatcher() === agent) undici.setGlobalDispatcher(previous);
    await agent.close().catch(() => {});
  };
}

module.exports = { loadUndici, trustedCas, makeProxyAgent, installGlobal };
