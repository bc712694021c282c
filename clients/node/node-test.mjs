// ESM entry of callvcr/node-test: the CommonJS module, so both share one process registry.
import cjs from './node-test.js';

export const { useCallvcr, CallvcrMissError } = cjs;
export default cjs;
