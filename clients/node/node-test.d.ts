// Types for callvcr/node-test: see adapter.d.ts.
export { useCallvcr, CallvcrMissError } from './adapter';
export type { UseCallvcrOptions, CallvcrHandle } from './adapter';
