'use strict';
// useCallvcr for node:test: one callvcr for the describe block (or file) it is called in, a
// scope per test named by the test's full name ("suite > test"), and a failed test when its
// scope missed.

const test = require('node:test');
const { createUseCallvcr, CallvcrMissError } = require('./lib/adapter');

const useCallvcr = createUseCallvcr({
  before: (fn, timeout) => test.before(fn, { timeout }),
  after: (fn, timeout) => test.after(fn, { timeout }),
  beforeEach: (fn, timeout) => test.beforeEach(fn, { timeout }),
  afterEach: (fn, timeout) => test.afterEach(fn, { timeout }),
  // fullName (Node ≥ 20.16) keeps tests of the same name in different suites apart.
  testName: (t) => t.fullName || t.name,
});

module.exports = { useCallvcr, CallvcrMissError };
