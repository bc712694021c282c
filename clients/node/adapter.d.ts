// Types shared by the test-framework adapters (callvcr/node-test, callvcr/jest, callvcr/vitest).

import type { Callvcr, StartOptions, StopResult } from './index';

export interface UseCallvcrOptions extends Partial<StartOptions> {
  /** Fail a test whose scope missed (default true). */
  failOnMiss?: boolean;
  /** Open a scope per test named after it (default true). */
  scopeTests?: boolean;
  /** Share one process between useCallvcr calls with the same options in this module instance (default true). */
  reuse?: boolean;
  /** Attach to `callvcr run`'s process (CALLVCR_ADMIN...) instead of starting one. Default: when no cassette is given and CALLVCR_ADMIN is set. */
  attach?: boolean;
  /** Timeout of each hook, ms (default 60 000). */
  hookTimeoutMs?: number;
}

/** The started handle's members, forwarded; `current` is the handle itself (null before the suite's first hook). */
export type CallvcrHandle = Callvcr & {
  readonly current: Callvcr | null;
  /** What the last stop gave (after the suite's last hook). */
  readonly lastStop: StopResult | null;
};

export function useCallvcr(options?: UseCallvcrOptions): CallvcrHandle;
export { CallvcrMissError } from './index';
