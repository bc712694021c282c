// Types for callvcr's Node helper. See README.md for what each call does on the binary's side.

/** `replay` (default), `record` (`record --by-scope`: each scope recorded replaces its old recordings) or `missing` (`record --missing`). */
export type Mode = 'replay' | 'record' | 'missing';

export interface StartOptions {
  /** Cassette name (under `cassettes`), or a `.jsonl` / `.har` file (relative to `cwd`). */
  cassette: string;
  mode?: Mode;
  /** The binary. Default: `$CALLVCR_BIN`, else `callvcr` on PATH. */
  bin?: string;
  /** Working directory of the process; `certs`, `cassettes`, `config` and `report` resolve against it. Default: `process.cwd()`. */
  cwd?: string;
  /** CA directory (`--certs`, default `certs`). */
  certs?: string;
  /** Cassette directory (`--cassettes`, default `cassettes`). */
  cassettes?: string;
  /** proxy.yaml to use (`--config`; default: `./proxy.yaml` in `cwd` when present). */
  config?: string;
  /** Overlays to switch off (replay only): `faults`, `auth`, `rate-limit`, `versions`, `validate`, `state`, `crud`. */
  overlaysOff?: string[];
  /** Freeze the virtual clock (replay only). */
  clockFrozen?: boolean;
  /** Start the virtual clock here (replay only). */
  clockStart?: string | Date;
  /** Write a JUnit XML report here at shutdown (replay only). */
  report?: string;
  /** Extra CA for the upstream (record modes). */
  upstreamCa?: string;
  /** `HOST=ADDR:PORT` overrides for the upstream (record modes). */
  resolve?: string[];
  /** More arguments, after the ones above (`['--strict']`, `['--seed', '7']`). */
  args?: Array<string | number>;
  /** Send this process's global `fetch` through callvcr, trusting its CA (needs `undici`); undone by `stop()`. */
  installProxy?: boolean;
  /** `admin.token`, when the config sets one. */
  adminToken?: string;
  /** More environment for the process (on top of `process.env`). */
  env?: Record<string, string>;
  /** How long to wait for the ready file. Default 30 000. */
  readyTimeoutMs?: number;
}

export interface ConnectOptions {
  /** Default: `$CALLVCR_ADMIN`. */
  adminUrl?: string;
  /** Default: `$CALLVCR_PROXY`. */
  proxyUrl?: string;
  /** Default: `$CALLVCR_CA`. */
  caPath?: string;
  adminToken?: string;
  installProxy?: boolean;
}

/** The variables `callvcr run` gives its command. */
export interface CallvcrEnv {
  HTTPS_PROXY: string;
  https_proxy: string;
  NO_PROXY: string;
  no_proxy: string;
  SSL_CERT_FILE: string;
  REQUESTS_CA_BUNDLE: string;
  CURL_CA_BUNDLE: string;
  NODE_EXTRA_CA_CERTS: string;
  CALLVCR_CA: string;
  CALLVCR_PROXY: string;
  CALLVCR_ADMIN: string;
  CALLVCR_REDIRECT: string;
  [name: string]: string;
}

export interface StopResult {
  /** The exit code (0 ok, 1 a strict replay missed, 2 bad usage), null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when the process outlived the bound after SIGINT and was killed. */
  killed: boolean;
  /** Its log, the shutdown summary included. */
  stderr: string;
}

export interface FaultHandle {
  id: string;
  remove(): Promise<{ removed: number }>;
}

export interface FaultRule {
  match?: { method?: string; host?: string; path?: string };
  status?: number;
  retry_after_s?: number;
  delay_ms?: number;
  jitter_ms?: number;
  count?: number;
  duration_ms?: number;
  probability?: number;
  seed?: number;
  after_frames?: number;
  [field: string]: unknown;
}

export interface JournalEntry {
  seq: number;
  method: string;
  host: string;
  path: string;
  status: number;
  answered_by: string;
  detail?: string;
  scope?: string | null;
  [field: string]: unknown;
}

export interface ScopeSummary {
  name: string;
  hits: number;
  misses: number;
  /** Each miss explained (the closest recording). */
  missed: string[];
  overlay_answers: number;
  faults_fired: number;
  upstream: number;
  refused: number;
  unused: string[];
  [field: string]: unknown;
}

export interface Callvcr {
  /** `replay`, `record` or `missing`; null when attached. */
  mode: Mode | null;
  cassette: string | null;
  /** True for a handle from `connectCallvcr`: `stop()` detaches and leaves the process running. */
  attached: boolean;
  /** The process id (started handles only). */
  pid?: number;
  /** The binary's arguments (started handles only). */
  args?: string[];
  /** Resolves when the process exits (started handles only). */
  exited?: Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>;
  /** Bound addresses, `host:port` (tls is null when attached). */
  addresses: { tls: string | null; proxy: string; admin: string };
  /** `http://127.0.0.1:PORT` of the proxy listener. */
  proxyUrl: string;
  /** `http://127.0.0.1:PORT` of the admin API. */
  adminUrl: string;
  /** `<cwd>/<certs>/ca.pem`. */
  caPath: string;
  /** `<certs>/bundle.pem`: system roots plus the CA. */
  bundlePath: string;
  /** For a child process: `{...process.env, ...cv.env}`. */
  env: CallvcrEnv;
  /** The process's log so far. */
  stderr(): string;

  /** Any admin call. */
  admin<T = unknown>(method: string, route: string, body?: unknown): Promise<T>;
  health(): Promise<{ status: string; mode: string; cassette: string; overlays: string[]; clock: { now: string; frozen: boolean } }>;
  reset(): Promise<{ reset: boolean }>;
  useCassette(name: string): Promise<{ cassette: string; exchanges: number }>;

  /** Opens a test scope (ending the one open). */
  scope(name: string): Promise<{ scope: string }>;
  endScope(): Promise<{ scope: null }>;
  currentScope(): Promise<string | null>;
  /** The header that names a scope on one request (for tests sharing one callvcr in parallel). */
  scopeHeader(name: string): { 'x-callvcr-scope': string };
  scopes(): Promise<ScopeSummary[]>;
  /** The `missed` list of one scope ([] when the scope was never seen). */
  misses(scope: string): Promise<string[]>;
  /** The journal; with `scope`, only that scope's entries (`null`: those outside any scope). */
  journal(filter?: { scope?: string | null }): Promise<JournalEntry[]>;

  expireTokens(which?: { clientId?: string; token?: string }): Promise<{ expired: number }>;
  tokens(): Promise<unknown[]>;

  clock(): Promise<{ now: string }>;
  advanceClock(ms: number): Promise<{ now: string }>;
  setClock(time: string | Date): Promise<{ now: string }>;

  transition(session: string, to: string, opts?: { from?: string; metadata?: Record<string, unknown> }): Promise<{
    id: string; state: string; participantId?: string; held?: string; pending?: unknown;
  }>;
  release(session: string, opts?: { participantId?: string }): Promise<{ id: string; state: string; participantId?: string }>;
  session(id: string): Promise<Record<string, unknown>>;
  sessions(): Promise<Array<Record<string, unknown>>>;

  pushEvent(event: unknown, opts?: {
    session?: string; topic?: string; delayMs?: number; jitterMs?: number; duplicate?: number; reorder?: boolean;
  }): Promise<{ queued: number }>;
  wsSessions(): Promise<Array<{ id: string; url: string; topics: string[]; queued: number }>>;

  fault(kind: string, rule?: FaultRule): Promise<FaultHandle>;
  /** Runs `fn` with the fault in place, and removes it however `fn` ends. */
  withFault<T>(kind: string, rule: FaultRule, fn: (fault: FaultHandle) => T | Promise<T>): Promise<T>;
  faults(): Promise<Array<FaultRule & { id: string; active: boolean }>>;

  /** A new undici `EnvHttpProxyAgent` through callvcr, trusting its CA: `fetch(url, { dispatcher })`. */
  proxyAgent(extra?: Record<string, unknown>): import('undici-types').Dispatcher;
  /** Makes the global fetch go through callvcr; returns a function that undoes it (so does `stop()`). */
  installProxy(): () => Promise<void>;
  /** Stops the process (SIGINT, then at most `timeoutMs`, default 10 000, before SIGKILL). Attached handles detach. */
  stop(opts?: { timeoutMs?: number }): Promise<StopResult>;
}

/** An admin call refused: `status`, the JSON `body` and its `error` code. */
export class CallvcrAdminError extends Error {
  status: number;
  body: unknown;
  code?: string;
}

/** A test whose scope missed: `scope`, and `missed` as callvcr explained each miss. */
export class CallvcrMissError extends Error {
  scope: string;
  missed: string[];
}

/** Starts callvcr on free loopback ports and resolves once it is ready. */
export function startCallvcr(options: StartOptions): Promise<Callvcr>;
/** A handle on a callvcr already running (default: the one `callvcr run` started, from the environment). */
export function connectCallvcr(options?: ConnectOptions): Callvcr;
/** The binary's arguments for these options (the pure part of `startCallvcr`). */
export function buildArgs(options: StartOptions, readyFile: string): string[];
/** The environment for a child, from the ready file's addresses. */
export function buildEnv(ready: { proxy: string; admin: string; tls?: string | null }, caPath: string, bundlePath: string): CallvcrEnv;
