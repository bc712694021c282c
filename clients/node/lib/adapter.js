'use strict';
// What the node:test, Jest and Vitest adapters share: one process per set of options (started in
// the suite's first hook, stopped when its last user is done), a scope per test, and a failure
// for a test whose scope missed. Each adapter only says which hooks to use and how a test is named.

const core = require('./core');

/** A test failed because its scope missed: `scope` names it, `missed` holds callvcr's explanations. */
class CallvcrMissError extends Error {
  constructor(scope, missed) {
    super(core.missMessage(scope, missed));
    this.name = 'CallvcrMissError';
    this.scope = scope;
    this.missed = missed;
  }
}

/** Processes shared by `useCallvcr` calls with the same options, in this module instance: key → {promise, users}. */
const shared = new Map();

/**
 * A running callvcr for `options`: attached to `callvcr run`'s when asked (or when no cassette
 * is given and CALLVCR_ADMIN is set), else shared with other users of the same options unless
 * `reuse: false`. Resolves with `{cv, done}`; `done()` stops it once its last user is done.
 */
async function acquire(options) {
  const index = require('../index');
  const { reuse = true, attach, ...start } = options;
  const attaching = attach === true || (attach !== false && !start.cassette && process.env.CALLVCR_ADMIN);
  if (attaching) {
    const cv = index.connectCallvcr(start);
    return { cv, done: () => cv.stop() };
  }
  if (!reuse) {
    const cv = await index.startCallvcr(start);
    return { cv, done: () => cv.stop() };
  }
  const key = core.optionsKey(start);
  let entry = shared.get(key);
  if (!entry) {
    entry = { promise: index.startCallvcr(start), users: 0 };
    shared.set(key, entry);
    // A start that failed is not kept: the next suite tries again (and reports its own error).
    entry.promise.catch(() => { if (shared.get(key) === entry) shared.delete(key); });
  }
  entry.users += 1;
  const cv = await entry.promise;
  let released = false;
  return {
    cv,
    done: async () => {
      if (released) return undefined;
      released = true;
      entry.users -= 1;
      if (entry.users > 0) return undefined;
      shared.delete(key);
      return cv.stop();
    },
  };
}

/**
 * A handle that forwards to the started process: `cv.proxyUrl`, `cv.scope(...)`, and `cv.current`
 * (the handle itself, or null before the suite's first hook ran). Reading anything else before
 * then throws, naming the mistake, rather than giving `undefined`.
 */
function lateHandle(box) {
  return new Proxy(box, {
    get(target, prop) {
      if (prop === 'current') return target.current;
      if (prop === 'lastStop') return target.lastStop;
      if (target.current) return target.current[prop];
      // Not a thenable, and quiet for inspection, so `await cv` and console.log(cv) do not throw.
      if (prop === 'then' || typeof prop === 'symbol' || prop === 'inspect' || prop === 'toJSON') return undefined;
      throw new Error(`callvcr: \`${String(prop)}\` was read before callvcr started; use the handle inside tests and hooks, not while the suite is being defined`);
    },
  });
}

/**
 * Replaces `target.fetch` with one that sends through `agent` unless the call names its own
 * dispatcher. Returns a function that puts the original back and closes the agent.
 */
function wrapFetch(target, agent) {
  const original = target.fetch;
  if (typeof original !== 'function') return async () => agent.close();
  const wrapped = (input, init) => original(input, { dispatcher: agent, ...(init || {}) });
  target.fetch = wrapped;
  return async () => {
    if (target.fetch === wrapped) target.fetch = original;
    await agent.close().catch(() => {});
  };
}

/**
 * Builds `useCallvcr(options)` for one framework. `hooks` gives its `before`, `after`,
 * `beforeEach`, `afterEach` (each called as `hook(fn, timeoutMs)`), `testName(ctx)`, the name
 * of the running test from a hook's context argument, and `sandboxed` when test files run in a
 * vm context (Jest).
 */
function createUseCallvcr(hooks) {
  return function useCallvcr(options = {}) {
    const { failOnMiss = true, scopeTests = true, hookTimeoutMs = 60000, ...startOptions } = options;
    const box = { current: null, lastStop: null };
    let done = null;
    let unwrapFetch = null;
    // Per test: its scope name and how many misses that scope had already (a scope name can come
    // back, e.g. a test retried), so only this run's misses fail it.
    let running = null;

    hooks.before(async () => {
      const got = await acquire(startOptions);
      box.current = got.cv;
      done = got.done;
      // Jest runs a test file in a vm context whose `fetch` belongs to the outer realm and reads
      // that realm's global dispatcher, which a module inside the sandbox cannot set: there the
      // sandbox's fetch is wrapped to carry the dispatcher itself.
      if (hooks.sandboxed && startOptions.installProxy) unwrapFetch = wrapFetch(globalThis, got.cv.proxyAgent());
    }, hookTimeoutMs);

    if (scopeTests) {
      hooks.beforeEach(async (ctx) => {
        const cv = box.current;
        if (!cv) return;
        const name = hooks.testName(ctx);
        running = { name, seen: (await cv.misses(name)).length };
        await cv.scope(name);
      }, hookTimeoutMs);

      hooks.afterEach(async () => {
        const cv = box.current;
        const test = running;
        running = null;
        if (!cv || !test) return;
        // Ended first, so what runs between tests is not counted against this one.
        await cv.endScope();
        const missed = (await cv.misses(test.name)).slice(test.seen);
        if (failOnMiss && missed.length) throw new CallvcrMissError(test.name, missed);
      }, hookTimeoutMs);
    }

    hooks.after(async () => {
      if (unwrapFetch) await unwrapFetch();
      unwrapFetch = null;
      if (done) box.lastStop = await done();
      box.current = null;
      done = null;
    }, hookTimeoutMs);

    return lateHandle(box);
  };
}

module.exports = { CallvcrMissError, createUseCallvcr, acquire, lateHandle, wrapFetch, shared };
