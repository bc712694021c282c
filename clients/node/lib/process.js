'use strict';
// The callvcr process: spawned on free ports, waited for through its ready file, stopped with
// SIGINT (its drain, flush and summary) and killed only past a bound.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { buildArgs, parseReady } = require('./core');

/** How much of the log an error message quotes. */
const TAIL = 4000;

/**
 * Spawns the binary for `options` and resolves once every listener is bound, with
 * `{child, ready, stderr(), exited, stop(timeoutMs)}`. Rejects (and leaves nothing running) when
 * the process exits first or `readyTimeoutMs` passes.
 */
async function spawnCallvcr(options) {
  const bin = options.bin || process.env.CALLVCR_BIN || 'callvcr';
  const cwd = path.resolve(options.cwd || process.cwd());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'callvcr-node-'));
  const readyFile = path.join(dir, 'ready.json');
  const logFile = path.join(dir, 'stderr.log');
  const args = buildArgs(options, readyFile);

  // stderr goes to a file, not a pipe: nothing has to drain it, it survives this process, and the
  // binary's shutdown summary is never cut by a closed pipe.
  const log = fs.openSync(logFile, 'w');
  const env = { ...process.env, CALLVCR_NO_STATUS: '1', ...(options.env || {}) };
  let child;
  try {
    child = spawn(bin, args, { cwd, env, stdio: ['ignore', 'ignore', log] });
  } finally {
    fs.closeSync(log);
  }
  const stderr = () => {
    try {
      return fs.readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  const exited = new Promise((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  let exit = null;
  exited.then((e) => { exit = e; });

  // A test process that ends without stop() (a crash, a forgotten `after`) must neither hang on
  // this child nor leave it behind: unref it, and ask it to stop when this process exits.
  child.unref();
  const onExit = () => { if (!exit) try { child.kill('SIGINT'); } catch { /* already gone */ } };
  process.once('exit', onExit);

  let stopping = null;
  /** SIGINT, then up to `timeoutMs` for the drain; SIGKILL past it. Idempotent. */
  function stop(timeoutMs = 10000) {
    if (!stopping) {
      stopping = (async () => {
        let killed = false;
        // Held by the loop again until it exits: an awaited promise alone would not keep this
        // process alive, and it could end with the child still draining.
        child.ref();
        if (!exit) {
          child.kill('SIGINT');
          let timer;
          const bound = new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs, 'timeout'); });
          if ((await Promise.race([exited, bound])) === 'timeout') {
            killed = true;
            child.kill('SIGKILL');
          }
          clearTimeout(timer);
        }
        const e = await exited;
        process.removeListener('exit', onExit);
        const text = stderr();
        fs.rmSync(dir, { recursive: true, force: true });
        return { code: e.code, signal: e.signal, killed, stderr: text };
      })();
    }
    return stopping;
  }

  const ready = await waitReady(readyFile, exited, options.readyTimeoutMs || 30000).catch(async (e) => {
    const tail = stderr().slice(-TAIL);
    await stop(2000);
    const err = new Error(`callvcr: ${bin} ${args.join(' ')} ${e.message}${tail ? `\n--- its log ---\n${tail}` : ''}`);
    err.cause = e.cause;
    throw err;
  });
  return { child, bin, args, ready, stderr, exited, exitStatus: () => exit, stop };
}

/**
 * Waits for the ready file to hold the bound addresses. The binary writes it once every listener
 * is bound, so this is the condition to wait for; it is read every 20 ms, since fs.watch misses
 * events on some filesystems.
 */
function waitReady(file, exited, timeoutMs) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    let timer;
    exited.then((e) => {
      clearTimeout(timer);
      const why = e.error ? `could not start: ${e.error.message}` : `exited (code ${e.code}, signal ${e.signal}) before it was ready`;
      const err = new Error(why);
      err.cause = e.error;
      reject(err);
    });
    const poll = () => {
      let text = null;
      try {
        text = fs.readFileSync(file, 'utf8');
      } catch {
        // Not written yet.
      }
      const ready = text && parseReady(text);
      if (ready) return resolve(ready);
      if (Date.now() > deadline) return reject(new Error(`was not ready after ${timeoutMs} ms`));
      timer = setTimeout(poll, 20);
    };
    poll();
  });
}

module.exports = { spawnCallvcr, TAIL };
