// useCallvcr for Vitest (ESM only, as Vitest itself): Vitest's hooks, and a test named as
// Vitest names it, describe blocks included ("suite > test").

import { beforeAll, afterAll, beforeEach, afterEach, expect } from 'vitest';
import adapter from './lib/adapter.js';

export const { CallvcrMissError } = adapter;

export const useCallvcr = adapter.createUseCallvcr({
  before: (fn, timeout) => beforeAll(() => fn(), timeout),
  after: (fn, timeout) => afterAll(() => fn(), timeout),
  beforeEach: (fn, timeout) => beforeEach((ctx) => fn(ctx), timeout),
  afterEach: (fn, timeout) => afterEach(() => fn(), timeout),
  // currentTestName is set before beforeEach runs; the task's own name is the fallback.
  testName: (ctx) => expect.getState().currentTestName || (ctx && ctx.task && ctx.task.name),
});
