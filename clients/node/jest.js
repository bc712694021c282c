'use strict';
// useCallvcr for Jest: the hooks are Jest's globals (or @jest/globals when injectGlobals is off),
// and a test is named as Jest names it, describe blocks included
// (expect.getState().currentTestName).

const { createUseCallvcr, CallvcrMissError } = require('./lib/adapter');

/** Jest's hook functions and expect, looked up when useCallvcr is called (inside a test file). */
function jestApi() {
  if (typeof globalThis.beforeAll === 'function' && globalThis.expect) return globalThis;
  return require('@jest/globals');
}

function useCallvcr(options) {
  const j = jestApi();
  return createUseCallvcr({
    before: (fn, timeout) => j.beforeAll(fn, timeout),
    after: (fn, timeout) => j.afterAll(fn, timeout),
    beforeEach: (fn, timeout) => j.beforeEach(() => fn(), timeout),
    afterEach: (fn, timeout) => j.afterEach(() => fn(), timeout),
    testName: () => j.expect.getState().currentTestName,
    // Test files run in a vm context: installProxy also wraps that context's fetch (see lib/adapter.js).
    sandboxed: true,
  })(options);
}

module.exports = { useCallvcr, CallvcrMissError };
