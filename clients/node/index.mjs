// ESM entry of callvcr: the CommonJS module re-exported, so `import` and `require` share state.
import cjs from './index.js';

export const { startCallvcr, connectCallvcr, CallvcrAdminError, CallvcrMissError, buildArgs, buildEnv } = cjs;
export default cjs;
