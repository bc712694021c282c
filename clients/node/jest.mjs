// ESM entry of callvcr/jest (for Jest's experimental ESM mode).
import cjs from './jest.js';

export const { useCallvcr, CallvcrMissError } = cjs;
export default cjs;
