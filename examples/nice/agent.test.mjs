// NICE CXone's own agent SDKs (@nice-devone/* 25.1.2, unmodified) replaying examples/nice-agent.jsonl
// through callvcr, as node:test tests: the agent flow of agent_flow.mjs (sign in, agent session,
// an inbound call accepted, held, resumed and ended, the SDK's token refresh, one more
// authenticated call, the platform ending the session), in two modes:
//  - proxy: callvcr started by its Node helper (clients/node), the flow run with the helper's
//    `env` (HTTPS_PROXY, NODE_EXTRA_CA_CERTS);
//  - hosts: `callvcr run --hosts` (as root on Linux), which runs the flow in a private mount
//    namespace whose /etc/hosts points the NICE names at callvcr's TLS listener on 127.0.0.1:443;
//    the flow runs without HTTPS_PROXY there, so the hosts file is the only way it reaches callvcr.
//    Skipped, saying why, when not root or without unshare.
// Each test has a callvcr of its own, so the tests pass alone and in any order (REVERSE=1 declares
// them in reverse; NICE_MODES=proxy or NICE_MODES=hosts runs one mode; CONCURRENCY=N runs proxy-mode
// tests N at a time). Replay is strict: a miss fails the test, and where the whole flow runs, so
// does a recording never replayed (--fail-on-unused).
//
// Run from a directory where certs/ may be written (examples/run.sh uses target/examples):
//   CALLVCR_BIN=target/debug/callvcr NICE_SDK_DIR=target/examples/nice node --test examples/nice/agent.test.mjs
// NICE_CASSETTE replays another recording (default examples/nice-agent.jsonl); NICE_CALLVCR_CONFIG
// gives callvcr a proxy.yaml (default: none, callvcr's built-in settings).
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const sdkDir = path.resolve(process.env.NICE_SDK_DIR || path.join(root, 'target/examples/nice'));
// The helper is installed beside the SDKs (npm install --prefix $NICE_SDK_DIR ... clients/node).
const { startCallvcr, connectCallvcr } = createRequire(path.join(sdkDir, 'package.json'))('callvcr');
const bin = path.resolve(process.env.CALLVCR_BIN || path.join(root, 'target/debug/callvcr'));
const cassette = path.resolve(process.env.NICE_CASSETTE || path.join(root, 'examples/nice-agent.jsonl'));
const config = process.env.NICE_CALLVCR_CONFIG ? path.resolve(process.env.NICE_CALLVCR_CONFIG) : null;
const flowArgs = ['--import', path.join(here, 'loader.mjs'), '--import', path.join(here, 'shims.mjs'), path.join(here, 'agent_flow.mjs')];

/** The ids the recording holds, shortened in journal lines. */
const CONTACT = '481516234';
const AGENT = '4242';

// ---- the flow as a child process ----

/** The flow's last pause: once it says so, no other line is coming. */
const FINAL = /^paused before exit/;

/**
 * Runs `cmd args` and follows its stdout line by line: `waitFor(re)` resolves with the first line
 * (seen or yet to come) matching `re`, and rejects, quoting the output, if the process ends first
 * or the flow reaches its last pause without such a line. `release()` writes a line to its stdin
 * (the flow's pauses wait for one).
 */
function follow(cmd, args, options) {
  const child = spawn(cmd, args, { ...options, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = [];
  const waiters = [];
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(line);
    for (const w of [...waiters]) {
      if (w.re.test(line)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(line); }
      else if (FINAL.test(line)) { waiters.splice(waiters.indexOf(w), 1); w.reject(new Error(`the flow ended without a line matching ${w.re}\n${tail()}`)); }
    }
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  // Output is complete once stdout has closed, which comes after the last line.
  const closed = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  const tail = () => `--- stdout ---\n${lines.join('\n')}\n--- stderr (end) ---\n${stderr.slice(-6000)}`;
  closed.then((e) => {
    for (const w of waiters.splice(0)) w.reject(new Error(`exited (${e.code ?? e.signal}) before a line matched ${w.re}\n${tail()}`));
  });
  return {
    child,
    lines,
    exited,
    closed,
    tail,
    stderr: () => stderr,
    waitFor(re) {
      const seen = lines.find((l) => re.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      if (lines.some((l) => FINAL.test(l))) return Promise.reject(new Error(`the flow ended without a line matching ${re}\n${tail()}`));
      return new Promise((resolve, reject) => {
        if (child.exitCode !== null && child.stdout.readableEnded) {
          reject(new Error(`exited (${child.exitCode}) before a line matched ${re}\n${tail()}`));
          return;
        }
        waiters.push({ re, resolve, reject });
      });
    },
    release() { if (child.stdin.writable) child.stdin.write('\n'); },
    /** Ends its stdin (a paused flow goes on to its exit) and sends SIGTERM. */
    kill() {
      child.stdin.end();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    },
  };
}

/** The flow's environment besides callvcr's: the SDKs' install and a step timeout. */
const flowEnv = (extra) => ({ NICE_SDK_DIR: sdkDir, NICE_STEP_TIMEOUT_S: '20', ...extra });

// ---- the two modes ----

/**
 * Proxy mode: callvcr by the Node helper, the flow with its `env`. Resolves with `{cv, flow,
 * finish()}`; `finish()` waits for the flow and stops callvcr: `{flowCode, callvcrCode, log}`.
 */
async function proxyMode({ failOnUnused, env }) {
  const cv = await startCallvcr({ cassette, bin, ...(config ? { config } : {}), args: ['--strict', ...(failOnUnused ? ['--fail-on-unused'] : [])] });
  const base = { ...process.env };
  for (const k of ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy']) delete base[k];
  const flow = follow(process.execPath, flowArgs, { env: { ...base, ...cv.env, ...flowEnv(env) } });
  return {
    cv,
    flow,
    async finish() {
      const f = await flow.closed;
      const s = await cv.stop();
      return { flowCode: f.code, callvcrCode: s.code, log: s.stderr };
    },
    async abort() { flow.kill(); await cv.stop(); },
  };
}

/**
 * Hosts mode: `callvcr run --hosts -- env -u HTTPS_PROXY ... node agent_flow.mjs`. callvcr's admin
 * API is found through run's ready file; `finish()` gives run's exit status (the flow's when not
 * 0, else 1 for a strict failure) as both codes.
 */
async function hostsMode({ failOnUnused, env }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nice-hosts-'));
  const readyFile = path.join(dir, 'ready.json');
  const args = ['run', '--hosts', '--cassette', cassette, ...(config ? ['--config', config] : []), '--strict', ...(failOnUnused ? ['--fail-on-unused'] : []),
    '--proxy-listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--ready-file', readyFile,
    '--', 'env', '-u', 'HTTPS_PROXY', '-u', 'https_proxy', '-u', 'HTTP_PROXY', '-u', 'http_proxy', process.execPath, ...flowArgs];
  const flow = follow(bin, args, { env: { ...process.env, CALLVCR_NO_STATUS: '1', ...flowEnv(env) } });
  const ready = await new Promise((resolve, reject) => {
    // The ready file is written once every listener is bound; the process ending first is an error.
    const check = () => {
      let text = null;
      try { text = fs.readFileSync(readyFile, 'utf8'); } catch { /* not yet */ }
      if (text) { try { return resolve(JSON.parse(text)); } catch { /* half written */ } }
      if (flow.child.exitCode !== null) return reject(new Error(`callvcr run exited (${flow.child.exitCode}) before it was ready\n${flow.tail()}`));
      return setTimeout(check, 20);
    };
    check();
  });
  const cv = connectCallvcr({ adminUrl: `http://${ready.admin}`, proxyUrl: `http://${ready.proxy}`, caPath: path.resolve('certs/ca.pem') });
  return {
    cv,
    flow,
    async finish() {
      const f = await flow.closed;
      fs.rmSync(dir, { recursive: true, force: true });
      return { flowCode: f.code, callvcrCode: f.code, log: flow.stderr() };
    },
    async abort() { flow.kill(); await flow.closed; fs.rmSync(dir, { recursive: true, force: true }); },
  };
}

/** Why hosts mode cannot run here, or null. */
function hostsModeUnavailable() {
  if (process.platform !== 'linux') return 'hosts mode needs Linux (a private mount namespace for /etc/hosts)';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'hosts mode needs root (callvcr run --hosts: a mount namespace and port 443)';
  const probe = spawnSync('unshare', ['-m', 'true']);
  if (probe.error || probe.status !== 0) return 'hosts mode needs unshare -m (util-linux), which failed here';
  return null;
}

// ---- journal helpers ----

/** The journal as `METHOD path status answered_by` lines, with the session and contact ids shortened. */
async function journalLines(cv) {
  const entries = await cv.journal();
  return entries.map((e) => {
    const p = e.path
      .replace(/\/agent-sessions\/[^/]+/, '/agent-sessions/{session}')
      .replace(new RegExp(`/interactions/${CONTACT}/`), '/interactions/{contact}/');
    return `${e.method} ${p} ${e.status} ${e.answered_by}`;
  });
}
const polls = (lines) => lines.filter((l) => l.includes('/get-next-event '));
const misses = (entries) => entries.filter((e) => e.answered_by === 'miss').map((e) => `${e.method} ${e.host}${e.path}`);

// ---- the scenarios ----

// The SDK looks a contact's skill up (its dispositions, tags and the skill) for each contact event
// it handles; events that arrive close together share one lookup, so a replay (faster than the
// sandbox) may make fewer of them than the recording holds. Only these may go unused where the
// whole flow runs; any other recording never replayed fails the test.
const SKILL_LOOKUPS = /^GET \S+\/InContactAPI\/services\/v\d+\.0\/skills\/\d+(\/(tags|dispositions))?$/;

const scenarios = [
  {
    name: 'a contact is accepted, held, resumed and ended, and the platform ends the session (the flow as recorded)',
    failOnUnused: false,
    unusedMayBe: SKILL_LOOKUPS,
    env: { NICE_PAUSE: 'exit' },
    async run({ cv, flow }) {
      await flow.waitFor(/^paused before exit/);
      const lines = await journalLines(cv);
      const entries = await cv.journal();
      assert.deepEqual(misses(entries), [], 'no request missed the cassette');
      assert.deepEqual(flow.lines, [
        `signed in as agent ${AGENT} (tenant 11eb7bd6-1c2e-4a80-9b7e-0242ac110002, business unit 4600112)`,
        flow.lines[1],
        `contact ${CONTACT} offered from 3175550123`,
        `contact ${CONTACT} accepted`,
        `contact ${CONTACT} on hold`,
        `contact ${CONTACT} resumed`,
        `contact ${CONTACT} ended`,
        'access token refreshed (expires_in 3600)',
        'permissions read with the refreshed token (RecordContact, MuteAgent, AgentSoftphone)',
        'session ended by the platform',
        'paused before exit (0)',
      ], flow.tail());
      assert.match(flow.lines[1], /^session a1b2c3d4-[0-9a-f-]+ started$/);
      // Sign-in and refresh: the auth overlay issues the tokens (from the recording's claims);
      // the SDK's id_token check passes against callvcr's key set.
      assert.deepEqual(lines.filter((l) => l.startsWith('POST /auth/token')), [
        'POST /auth/token 200 overlay:auth',
        'POST /auth/token 200 overlay:auth',
      ]);
      // The call's commands, in order, each the platform's recorded 202.
      assert.deepEqual(lines.filter((l) => l.includes('/interactions/')), [
        'POST /InContactAPI/services/v23.0/agent-sessions/{session}/interactions/{contact}/accept 202 hit',
        'POST /InContactAPI/services/v23.0/agent-sessions/{session}/interactions/{contact}/hold 202 hit',
        'POST /InContactAPI/services/v23.0/agent-sessions/{session}/interactions/{contact}/resume 202 hit',
        'POST /InContactAPI/services/v23.0/agent-sessions/{session}/interactions/{contact}/end 202 hit',
      ]);
      // The session's events came by get-next-event, and the last poll is the platform's 409
      // from the recording, answered after the refresh as the platform answered it.
      const p = polls(lines);
      assert.ok(p.length >= 5, lines.join('\n'));
      assert.ok(p.slice(0, -1).every((l) => / 200 /.test(l)), p.join('\n'));
      assert.equal(p.at(-1), 'GET /InContactAPI/services/v23.0/agent-sessions/{session}/get-next-event 409 hit');
      const refresh = lines.lastIndexOf('POST /auth/token 200 overlay:auth');
      assert.ok(lines.lastIndexOf(p.at(-1)) > refresh, `the session ended after the token refresh:\n${lines.join('\n')}`);
      assert.ok(lines.indexOf(`GET /InContactAPI/services/v23.0/permissions 200 hit`) > refresh, lines.join('\n'));
      flow.release();
      return { flowCode: 0 };
    },
  },
  {
    name: 'an expired access token: after the SDK\'s refresh the clock passes the first token\'s 605 s, the refreshed one still works, the first is refused',
    failOnUnused: false,
    unusedMayBe: SKILL_LOOKUPS,
    env: { NICE_PAUSE: 'refresh,exit', NICE_CHECK_FIRST_TOKEN: '1' },
    async run({ cv, flow }) {
      await flow.waitFor(/^paused after the token refresh$/);
      // The SDK refreshed by its own timer, 5 s in (expires_in 605 − 600): the first token still lives.
      const before = await cv.tokens();
      const access = before.filter((t) => t.kind === 'access').sort((a, b) => Date.parse(a.issued_at) - Date.parse(b.issued_at));
      assert.equal(access.length, 2, JSON.stringify(before));
      assert.deepEqual(access.map((t) => t.expired), [false, false]);
      const firstLife = Math.round((Date.parse(access[0].expires_at) - Date.parse(access[0].issued_at)) / 1000);
      assert.equal(firstLife, 605, 'the first token lives as long as the recording says (expires_in 605)');
      // Past the first token's expiry on callvcr's clock.
      const passed = Date.parse(access[0].expires_at) - Date.parse((await cv.clock()).now) + 1000;
      await cv.advanceClock(passed);
      const now = await cv.tokens();
      const byId = new Map(now.map((t) => [t.token_id, t]));
      assert.equal(byId.get(access[0].token_id).expired, true, 'the first access token has expired');
      assert.equal(byId.get(access[1].token_id).expired, false, 'the refreshed access token lives');
      flow.release();

      await flow.waitFor(/^paused before exit/);
      assert.ok(flow.lines.includes('permissions read with the refreshed token (RecordContact, MuteAgent, AgentSoftphone)'), flow.tail());
      assert.ok(flow.lines.includes('the first access token got 401'), flow.tail());
      assert.ok(flow.lines.includes('session ended by the platform'), flow.tail());
      assert.equal(flow.lines.at(-1), 'paused before exit (0)', flow.tail());
      const entries = await cv.journal();
      assert.deepEqual(misses(entries), []);
      const perms = entries.filter((e) => e.path === '/InContactAPI/services/v23.0/permissions');
      assert.deepEqual(perms.map((e) => [e.status, e.answered_by, e.detail ?? null]), [
        [200, 'hit', null],
        [401, 'overlay:auth', 'expired-token'],
      ]);
      // Rotation: the first refresh token is spent.
      const refresh = now.filter((t) => t.kind === 'refresh').sort((a, b) => Date.parse(a.issued_at) - Date.parse(b.issued_at));
      assert.deepEqual(refresh.map((t) => t.revoked), [true, false], JSON.stringify(now));
      flow.release();
      return { flowCode: 0 };
    },
  },
  {
    name: 'the platform ends the session early: a 409 on get-next-event before the call is offered',
    failOnUnused: false,
    env: { NICE_PAUSE: 'start,exit' },
    async run({ cv, flow }) {
      // The rule is in place before the flow sends its first request.
      await flow.waitFor(/^paused before signing in$/);
      const rule = await cv.fault('status', { match: { method: 'GET', path: '/get-next-event' }, status: 409, count: 1 });
      flow.release();
      await flow.waitFor(/^paused before exit/);
      const ended = flow.lines.find((l) => l.startsWith('session ended by the platform while '));
      assert.match(ended ?? '', /^session ended by the platform while (starting the agent session|handling the call)$/, flow.tail());
      assert.ok(!flow.lines.some((l) => l.startsWith('contact ')), `no contact was offered:\n${flow.tail()}`);
      assert.equal(flow.lines.at(-1), 'paused before exit (3)');
      const entries = await cv.journal();
      assert.deepEqual(misses(entries), []);
      const p = entries.filter((e) => e.path.endsWith('/get-next-event'));
      assert.deepEqual(p.map((e) => [e.status, e.answered_by, e.detail ?? null]), [[409, 'fault:status', `status:${rule.id}`]],
        'one poll, answered by the fault; the SDK polls no more');
      flow.release();
      return { flowCode: 3 };
    },
  },
];
if (process.env.REVERSE === '1') scenarios.reverse();

const wanted = new Set((process.env.NICE_MODES || 'proxy,hosts').split(',').map((m) => m.trim()));
const modes = [
  { key: 'proxy', name: 'proxy mode (HTTPS_PROXY)', start: proxyMode, skip: () => null },
  { key: 'hosts', name: 'hosts mode (callvcr run --hosts)', start: hostsMode, skip: hostsModeUnavailable },
].filter((m) => wanted.has(m.key));
if (process.env.REVERSE === '1') modes.reverse();

/** How long each test took, printed at the end. */
const took = [];
/** Runs not finished yet: a test that failed or timed out leaves nothing running behind it. */
const live = new Set();
after(() => {
  for (const t of took) process.stdout.write(`# ${t.ms} ms: ${t.name}\n`);
});

for (const mode of modes) {
  // CONCURRENCY=N runs proxy-mode tests N at a time (each with its own callvcr on free ports);
  // hosts mode runs one at a time, as each needs callvcr on 127.0.0.1:443.
  const concurrency = mode.key === 'proxy' ? Number(process.env.CONCURRENCY || 1) : 1;
  describe(`NICE agent SDKs through callvcr, ${mode.name}`, { skip: mode.skip() ?? false, concurrency }, () => {
    for (const s of scenarios) {
      it(s.name, { timeout: 90_000 }, async () => {
        const started = Date.now();
        const r = await mode.start({ failOnUnused: s.failOnUnused, env: s.env });
        live.add(r);
        try {
          const want = await s.run({ cv: r.cv, flow: r.flow });
          const got = await r.finish();
          live.delete(r);
          // Proxy mode: the flow's status, and callvcr's own at shutdown (1 when the strict replay
          // missed or left a recording unused). Hosts mode: callvcr run's status, which is the
          // flow's when not 0, else 1 when the strict replay failed.
          assert.equal(got.flowCode, want.flowCode, `the flow (or callvcr run) exited ${got.flowCode}\n${r.flow.tail()}\n${got.log.slice(-4000)}`);
          assert.equal(got.callvcrCode, want.flowCode === 0 || mode.start === proxyMode ? 0 : want.flowCode,
            `callvcr exited ${got.callvcrCode} (strict${s.failOnUnused ? ', --fail-on-unused' : ''}):\n${got.log.slice(-4000)}`);
          if (s.unusedMayBe) {
            // callvcr's summary names each recording never replayed.
            const unused = [...got.log.matchAll(/^\s*unused: (.*)$/gm)].map((m) => m[1].trim());
            for (const u of unused) assert.match(u, s.unusedMayBe, `a recording other than the SDK's skill lookups was never replayed:\n${got.log.slice(-4000)}`);
          }
        } finally {
          took.push({ name: `${mode.name}: ${s.name}`, ms: Date.now() - started });
          // This test's own run only (others may be running beside it, CONCURRENCY).
          if (live.delete(r)) await r.abort().catch(() => {});
        }
      });
    }
  });
}
