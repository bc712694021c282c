// An agent's day on NICE CXone with NICE's own browser SDKs (@nice-devone/*), unmodified, in Node:
// sign in, start an agent session, take an inbound call (accept, hold, resume, end), survive a
// token refresh, and see the platform end the session.
//
//   node --import ./loader.mjs --import ./shims.mjs agent_flow.mjs
//
// Trust and routing: NODE_EXTRA_CA_CERTS=<callvcr or stand-in CA>, and either a hosts file that
// maps the platform names to the proxy, or HTTPS_PROXY=http://127.0.0.1:8080 (see shims.mjs).
// Prints one line per step; exits 0 when the whole flow completed, 3 when the platform ended the
// session before the flow was done (the line "session ended by the platform while <step>"), 1
// with the reason otherwise.
//
// After the token refresh it reads the agent's permissions with the refreshed token (one more
// authenticated call). For tests, NICE_PAUSE (comma-separated) stops the flow on a line of its own
// until a line arrives on stdin (or stdin closes): `start` prints "paused before signing in"
// (so a test can set up faults before the first request), `refresh` prints "paused after the token
// refresh" before that call (so a replay's clock can be moved in between), `exit` prints "paused
// before exit (<status>)" before any exit (so callvcr's journal can be read while `callvcr run` is
// still up). NICE_CHECK_FIRST_TOKEN=1 also sends the permissions call with the first access token
// and prints the status the platform answered it with.
import { CXoneAuth, AuthStatus } from '@nice-devone/auth-sdk';
import { CXoneAcdClient } from '@nice-devone/acd-sdk';
import { CXoneClient } from '@nice-devone/agent-sdk';
import { AgentSessionStatus, CXoneLeaderElector } from '@nice-devone/common-sdk';
import { AdminService } from '@nice-devone/core-sdk';
import readline from 'node:readline';

const env = (k, d) => process.env[k] || d;
const cfg = {
  cxoneHostname: env('NICE_CXONE_HOST', 'https://cxone.niceincontact.com'),
  clientId: env('NICE_CLIENT_ID', 'example-nice-client'),
  redirectUri: env('NICE_REDIRECT_URI', 'https://localhost/callback'),
  tenantId: env('NICE_TENANT_ID', '11eb7bd6-1c2e-4a80-9b7e-0242ac110002'),
  // Seconds to wait for each step; the refresh is awaited for (expires_in - 600) s more, as the
  // SDK refreshes by its own timer at that time.
  stepTimeout: +env('NICE_STEP_TIMEOUT_S', '30'),
};
if (process.env.NICE_SDK_LOG !== '1') {
  // The SDKs log every step to the console; keep the script's output to its own lines.
  for (const k of ['log', 'info', 'debug', 'warn', 'trace']) console[k] = () => {};
}
const out = (line) => process.stdout.write(line + '\n');
let step = 'starting';

// ---- pauses (NICE_PAUSE) ----
const pauses = new Set(env('NICE_PAUSE', '').split(',').map((w) => w.trim()).filter(Boolean));
let stdinLines = null;
/** The next line on stdin (or its end). */
function nextLine() {
  if (!stdinLines) {
    const queue = [];
    const waiting = [];
    let closed = false;
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', (l) => (waiting.length ? waiting.shift()(l) : queue.push(l)));
    rl.on('close', () => { closed = true; while (waiting.length) waiting.shift()(null); });
    stdinLines = () => (queue.length ? Promise.resolve(queue.shift()) : closed ? Promise.resolve(null) : new Promise((r) => waiting.push(r)));
  }
  return stdinLines();
}
async function pause(where, text) {
  if (!pauses.has(where)) return;
  out(`paused ${text}`);
  await nextLine();
}
let exiting = false;
async function exit(code) {
  if (exiting) return;
  exiting = true;
  await pause('exit', `before exit (${code})`);
  process.exit(code);
}
function fail(msg) {
  process.stderr.write(`agent_flow: FAILED while ${step}: ${msg}\n`);
  return exit(1);
}
const withTimeout = (p, s, what) => Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`timed out after ${s}s waiting for ${what}`)), s * 1000))]);
// The SDKs reject with CXoneSdkError {errorType, message, data: HttpResponse {status, body}} or a string.
const errText = (e) => {
  if (typeof e === 'string') return e;
  if (e?.errorType) return `${e.errorType}: ${e.message}${e.data?.status ? ` (HTTP ${e.data.status} ${JSON.stringify(e.data.body)})` : ' (no HTTP answer: is the platform or proxy reachable, and its CA in NODE_EXTRA_CA_CERTS?)'}`;
  if (e instanceof Error) return e.message + (e.cause ? ` (${e.cause.code || e.cause.message})` : '');
  return JSON.stringify(e);
};
// An rxjs Subject's first value that satisfies pred, as a promise.
const first = (subject, pred, what, s = cfg.stepTimeout) => withTimeout(new Promise((resolve) => {
  const sub = subject.subscribe((v) => { if (pred(v)) { sub.unsubscribe(); resolve(v); } });
}), s, what);

async function main() {
  // a. Sign in: authorization code + PKCE. The SDK builds the authorize URL (and keeps the code
  //    verifier in sessionStorage); a browser would show the login page and come back to the
  //    redirect URI with ?code=. Here the authorize URL is fetched and the code taken from the 302.
  await pause('start', 'before signing in');
  step = 'signing in';
  const auth = CXoneAuth.instance;
  auth.init({ cxoneHostname: cfg.cxoneHostname, clientId: cfg.clientId, redirectUri: cfg.redirectUri });
  const authorizeUrl = await auth.getAuthorizeUrl('page', 'S256', cfg.tenantId);
  const r = await fetch(authorizeUrl, { redirect: 'manual' });
  const location = r.headers.get('location');
  const code = location && new URL(location, authorizeUrl).searchParams.get('code');
  if (!code) throw new Error(`authorize answered ${r.status} without a redirect carrying ?code= (location: ${location})`);
  // getAccessTokenByCode() neither resolves nor rejects when the id_token fails verification
  // (RS256 against the JWKS, exp/nbf/iat against this machine's clock with 60 s grace): it only
  // emits AUTHENTICATION_FAILED. Watch for that too.
  const failed = first(auth.onAuthStatusChange, (v) => v.status === AuthStatus.AUTHENTICATION_FAILED, 'sign-in failure', 3600)
    .then((v) => { throw new Error(`the SDK reported AUTHENTICATION_FAILED${v.response ? ': ' + errText(v.response) : ' (id_token rejected: signature, kid, or exp/iat vs. the clock)'}`); });
  await withTimeout(Promise.race([auth.getAccessTokenByCode({ clientId: cfg.clientId, code }), failed]), cfg.stepTimeout, 'the token exchange');
  const firstAccessToken = auth.getAuthToken().accessToken;
  const refreshIn = Math.max(0, auth.getAuthToken().expiresIn - 600) + cfg.stepTimeout;
  const refreshed = first(auth.onAuthStatusChange, (v) => v.status === AuthStatus.REFRESH_TOKEN_SUCCESS, 'the token refresh', refreshIn);
  const user = CXoneClient.instance.cxoneUser.getUserInfo();
  out(`signed in as agent ${user.icAgentId} (tenant ${user.tenantId}, business unit ${user.icBUId})`);

  // b. Agent session. initAcdEngagement() builds the ACD objects; this tab must win the SDK's
  //    leader election (broadcast-channel, ~1 s alone) before it polls events or refreshes tokens.
  step = 'starting the agent session';
  CXoneAcdClient.instance.initAcdEngagement();
  const acd = CXoneAcdClient.instance;
  if (!CXoneLeaderElector.instance.isLeader) {
    await first(CXoneLeaderElector.instance.onLeaderChanged, (v) => v, 'leader election');
  }
  const ended = first(acd.session.onAgentSessionChange, (v) => v.status === AgentSessionStatus.SESSION_END, 'the session end', refreshIn + cfg.stepTimeout);
  // A session the platform ends before the flow is done ends the flow (exit 3), at any step.
  let flowDone = false;
  ended.then(() => {
    if (flowDone) return;
    out(`session ended by the platform while ${step}`);
    exit(3);
  }, () => {});
  const contacts = acd.contactManager.voiceContactUpdateEvent;
  const status = (want) => first(contacts, (c) => c.contactStatus?.toLowerCase?.() === want || c.status?.toLowerCase?.() === want, `contact status ${want}`);

  // Events come by get-next-event long polls unless the business unit has the UI queue product
  // (30254) and agent-settings say EnableUIQueue: then the SDK uses a SignalR WebSocket instead.
  // NICE_UI_QUEUE=0 (the default) keeps this run on get-next-event: CXoneClient's public flag,
  // read by startSession().
  if (env('NICE_UI_QUEUE', '0') !== '1') CXoneClient.instance.isUIQueueEnabled = false;
  const incoming = status('incoming');
  const resp = await acd.session.startSession({ stationId: '', stationPhoneNumber: 'WebRTC' });
  out(`session ${resp.data.sessionId} started`);

  // c. An inbound call arrives through get-next-event.
  step = 'handling the call';
  const contact = await incoming;
  out(`contact ${contact.contactID} offered from ${contact.ani}`);
  let active = status('active');
  await acd.contactManager.contactService.acceptContact(contact.contactID);
  let c = await active;
  out(`contact ${c.contactID} accepted`);
  const holding = status('holding');
  await c.hold();
  c = await holding;
  out(`contact ${c.contactID} on hold`);
  active = status('active');
  await c.resume();
  c = await active;
  out(`contact ${c.contactID} resumed`);
  const gone = status('disconnected');
  await c.end();
  c = await gone;
  out(`contact ${c.contactID} ended`);

  // d. Token refresh: the SDK's own timer (started when this tab became leader) fires
  //    expires_in - 600 s after the token arrived (at once if expires_in <= 600).
  step = 'waiting for the token refresh';
  const rr = await refreshed;
  // From here on the platform may end the session (it does so once the token was refreshed).
  flowDone = true;
  out(`access token refreshed (expires_in ${rr.response.expiresIn})`);

  // d2. One more authenticated call, with the refreshed token the SDK now holds.
  step = 'paused after the token refresh';
  await pause('refresh', 'after the token refresh');
  step = 'reading the permissions with the refreshed token';
  const permissions = await AdminService.instance.getPermissions(true);
  out(`permissions read with the refreshed token (${permissions.map((p) => p.key).join(', ')})`);
  if (env('NICE_CHECK_FIRST_TOKEN', '0') === '1') {
    // The same call as the app would send it with the first token, which has expired by now.
    const base = auth.getCXoneConfig().acdApiBaseUri;
    const r2 = await fetch(`${base}/InContactAPI/services/v23.0/permissions?agentId=${user.icAgentId}`, {
      headers: { Authorization: `Bearer ${firstAccessToken}`, 'Content-Type': 'application/json' },
    });
    out(`the first access token got ${r2.status}`);
  }

  // e. The platform ends the session (get-next-event answers 409).
  step = 'waiting for the platform to end the session';
  await ended;
  out('session ended by the platform');
}

main().then(() => exit(0), (e) => fail(errText(e)));
