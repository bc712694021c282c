// Types for callvcr/vitest: see adapter.d.ts.
export { useCallvcr, CallvcrMissError } from './adapter';
export type { UseCallvcrOptions, CallvcrHandle } from './adapter';
