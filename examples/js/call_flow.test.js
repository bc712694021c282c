'use strict';
// The Genesys Cloud call flow of examples/genesys-call.jsonl as node:test tests a user would write,
// with the real JavaScript SDK (purecloud-platform-client-v2), unmodified, through callvcr started
// by the Node helper (callvcr/node-test). Four tests share the one cassette: the flow as recorded,
// a token that expires mid-flow, a 429 the app's SDK client retries, and a customer who hangs up.
//
// Each test has a callvcr of its own (`reuse: false`) and an SDK client of its own: the cassette was
// recorded without scopes, so tests sharing one process would share its call (one hangs up what
// another holds), its tokens and its fault rules. So they pass alone, in any order and side by side.
// Run from target/examples, with NODE_PATH=target/examples/js/node_modules and CALLVCR_BIN set
// (examples/run.sh installs the packages and runs all four ways):
//   node --test examples/js/call_flow.test.js
//   node --test --test-name-pattern='^the customer hangs up$' examples/js/call_flow.test.js
//   REVERSE=1 node --test examples/js/call_flow.test.js       the scenarios declared in reverse
//   CONCURRENCY=2 node --test examples/js/call_flow.test.js   two at a time
// node's --test-concurrency spreads files over processes; tests inside one file run side by side
// only through the suite's `concurrency` option, which CONCURRENCY sets.

const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const tls = require('node:tls');
const platformClient = require('purecloud-platform-client-v2');
const axios = require('axios'); // the SDK's own HTTP client, installed with it
const { HttpsProxyAgent } = require('hpagent'); // the proxy agent the SDK's README recommends
const { useCallvcr } = require('callvcr/node-test');

const cassette = path.join(__dirname, '..', 'genesys-call.jsonl');
const clientId = 'example-client';
const clientSecret = 'example-secret';
const redirectUri = 'http://localhost:8085/callback';
const customerNumber = '+13175550100';
/** The call the cassette placed. */
const recordedCallId = '5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e';

// ---- The app under test: what an application built on the SDK has. ----

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The SDK's HTTP client (axios), retrying a 429 after its Retry-After. The JavaScript SDK (262) has no
 * retry of its own (its callApi rejects on any error status); `setHttpClient` is its documented way
 * to change how requests are sent.
 */
class RetryAfterHttpClient extends platformClient.DefaultHttpClient {
  constructor(timeout, maxRetries = 3) {
    super(timeout);
    this.maxRetries = maxRetries;
  }

  // The proxy is the agent `setProxyAgent` hands in: without `proxy: false`, axios would follow
  // HTTPS_PROXY (when set) on its own and send the request there instead, leaving the agent out.
  toAxiosConfig(options) {
    return { ...super.toAxiosConfig(options), proxy: false };
  }

  async request(options) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await super.request(options);
      } catch (e) {
        if (e.response?.status !== 429 || attempt >= this.maxRetries) throw e;
        const after = e.response.headers['retry-after'];
        const seconds = Number(after);
        await sleep(Number.isFinite(seconds) ? seconds * 1000 : Math.max(0, Date.parse(after) - Date.now()));
      }
    }
  }
}

/**
 * An SDK client of its own (the package exports one shared instance; its API classes take any
 * client), sent through callvcr's proxy with callvcr's CA trusted next to Node's roots.
 */
function sdkClient(cv) {
  const agent = new HttpsProxyAgent({ proxy: cv.proxyUrl, keepAlive: true, ca: [...tls.rootCertificates, fs.readFileSync(cv.caPath, 'utf8')] });
  const client = new platformClient.ApiClient.constructor();
  client.setEnvironment(platformClient.PureCloudRegionHosts.us_east_1);
  client.setHttpClient(new RetryAfterHttpClient(client.timeout));
  client.setProxyAgent(agent);
  // The app refreshes an expired token itself (`withReauth`), as the SDK's README describes: the
  // SDK's own refresh on 401 (262) rejects the call with the 401 all the same and sends it again
  // in the background, where its answer is lost.
  client.config.refresh_access_token = false;
  return {
    client,
    agent,
    users: new platformClient.UsersApi(client),
    calls: new platformClient.ConversationsApi(client),
  };
}

/**
 * Signs in as a user with the authorization-code grant: the sign-in page's redirect, as a browser
 * would follow it (callvcr answers it headlessly), then the SDK's code exchange. Placing calls needs
 * a user's token: the platform refuses a client-credentials one.
 */
async function signIn(sdk) {
  const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: redirectUri });
  const r = await axios.get(`https://login.mypurecloud.com/oauth/authorize?${query}`, {
    httpsAgent: sdk.agent,
    proxy: false,
    maxRedirects: 0,
    validateStatus: (s) => s === 302,
  });
  const code = new URL(r.headers.location).searchParams.get('code');
  return sdk.client.loginCodeAuthorizationGrant(clientId, clientSecret, code, redirectUri);
}

/** Runs `call()`, and once more after refreshing the token when the platform says it expired. */
async function withReauth(sdk, call) {
  try {
    return await call();
  } catch (e) {
    if (e?.status !== 401 || e.code !== 'credentials.expired') throw e;
    await sdk.client.refreshCodeAuthorizationGrant(clientId, clientSecret, sdk.client.authData.refreshToken);
    return call();
  }
}

const customerOf = (call) => call.participants.find((p) => p.purpose === 'customer');

// ---- The tests. ----

/** The journal as `METHOD path status answered_by` lines, the call's ids shortened, for comparing whole. */
async function journalLines(cv, ids = {}) {
  const entries = await cv.journal();
  return entries.map((e) => {
    let p = e.path;
    for (const [name, id] of Object.entries(ids)) p = p.split(id).join(`{${name}}`);
    return `${e.method} ${p} ${e.status} ${e.answered_by}`;
  });
}

/** Each scenario: a suite with its own callvcr, and its one test. */
const scenarios = [
  {
    suite: 'the flow as recorded',
    test: 'signs in, places a call, holds and disconnects the customer, reads the call back, cannot reconnect',
    async run(cv, sdk) {
      await signIn(sdk);
      const me = await sdk.users.getUsersMe();
      assert.equal(me.name, 'Agent Smith');
      const placed = await sdk.calls.postConversationsCalls({ phoneNumber: customerNumber });
      const call = await sdk.calls.getConversationsCall(placed.id);
      const customer = customerOf(call);
      assert.equal(customer.state, 'connected');
      // The recording's times arrive moved onto the replay's clock: the customer connected moments ago.
      const age = Date.now() - Date.parse(customer.connectedTime);
      assert.ok(age >= 0 && age <= 10 * 60 * 1000, `the customer connected ${age} ms ago (${customer.connectedTime})`);

      await sdk.calls.patchConversationsCallParticipant(call.id, customer.id, { held: true });
      await sdk.calls.patchConversationsCallParticipant(call.id, customer.id, { state: 'disconnected' });
      // The platform refuses to reconnect a disconnected participant; so does callvcr's state overlay.
      await assert.rejects(
        sdk.calls.patchConversationsCallParticipant(call.id, customer.id, { state: 'connected' }),
        (e) => e.status === 400,
      );
      // Read back: disconnected, though the recording's only read showed the customer connected.
      const after = await sdk.calls.getConversationsCall(call.id);
      assert.equal(customerOf(after).state, 'disconnected');

      assert.deepEqual(await journalLines(cv, { call: call.id, customer: customer.id }), [
        'GET /oauth/authorize 302 overlay:auth',
        'POST /oauth/token 200 overlay:auth',
        'GET /api/v2/users/me 200 hit',
        'POST /api/v2/conversations/calls 200 hit',
        'GET /api/v2/conversations/calls/{call} 200 hit',
        'PATCH /api/v2/conversations/calls/{call}/participants/{customer} 202 hit',
        'PATCH /api/v2/conversations/calls/{call}/participants/{customer} 202 hit',
        'PATCH /api/v2/conversations/calls/{call}/participants/{customer} 400 overlay:state',
        'GET /api/v2/conversations/calls/{call} 200 hit',
      ]);
    },
  },
  {
    suite: 'the token expires mid-flow',
    test: 'the next call gets 401, the app refreshes the token and the flow goes on',
    async run(cv, sdk) {
      // The SDK keeps one authData object and changes it in place: keep the first tokens' values.
      const { accessToken, refreshToken } = await signIn(sdk);
      assert.equal((await cv.expireTokens()).expired, 1);

      const me = await withReauth(sdk, () => sdk.users.getUsersMe());
      assert.equal(me.name, 'Agent Smith');
      const now = sdk.client.authData;
      assert.ok(now.accessToken !== accessToken, 'the SDK holds a new access token');
      assert.ok(now.refreshToken !== refreshToken, 'the refresh token rotated');
      // A refresh, not a second sign-in: the old refresh token is spent, the new tokens live.
      const tokens = (await cv.tokens()).sort((a, b) => Date.parse(a.issued_at) - Date.parse(b.issued_at));
      const state = (kind) => tokens.filter((t) => t.kind === kind).map((t) => (t.revoked ? 'revoked' : t.expired ? 'expired' : 'live'));
      assert.deepEqual([state('access'), state('refresh')], [['expired', 'live'], ['revoked', 'live']]);

      const placed = await withReauth(sdk, () => sdk.calls.postConversationsCalls({ phoneNumber: customerNumber }));
      const customer = customerOf(await sdk.calls.getConversationsCall(placed.id));
      await sdk.calls.patchConversationsCallParticipant(placed.id, customer.id, { held: true });
      await sdk.calls.patchConversationsCallParticipant(placed.id, customer.id, { state: 'disconnected' });
      assert.equal(customerOf(await sdk.calls.getConversationsCall(placed.id)).state, 'disconnected');

      const lines = await journalLines(cv, { call: placed.id, customer: customer.id });
      assert.deepEqual(lines.slice(0, 5), [
        'GET /oauth/authorize 302 overlay:auth',
        'POST /oauth/token 200 overlay:auth',
        'GET /api/v2/users/me 401 overlay:auth',
        'POST /oauth/token 200 overlay:auth',
        'GET /api/v2/users/me 200 hit',
      ]);
      assert.equal(lines.filter((l) => / 401 /.test(l)).length, 1, lines.join('\n'));
    },
  },
  {
    suite: 'the platform rate-limits placing the call once',
    test: 'the app\'s SDK client waits out Retry-After and the call is placed after exactly one 429',
    async run(cv, sdk) {
      await signIn(sdk);
      const rule = await cv.fault('status', {
        match: { method: 'POST', path: '^/api/v2/conversations/calls$' },
        status: 429,
        retry_after_s: 1,
        count: 1,
      });
      const started = Date.now();
      const placed = await sdk.calls.postConversationsCalls({ phoneNumber: customerNumber });
      const waited = Date.now() - started;
      assert.equal(placed.id, recordedCallId);
      assert.ok(waited >= 1000, `answered after ${waited} ms, before the Retry-After of 1 s`);

      const placing = (await cv.journal()).filter((e) => e.method === 'POST' && e.path === '/api/v2/conversations/calls');
      assert.deepEqual(
        placing.map((e) => [e.status, e.answered_by, e.detail ?? null]),
        [[429, 'fault:status', `status:${rule.id}`], [200, 'hit', null]],
      );
      const [used] = (await cv.faults()).filter((f) => f.id === rule.id);
      assert.deepEqual([used.remaining, used.active], [0, false]);

      // The flow goes on.
      const customer = customerOf(await sdk.calls.getConversationsCall(placed.id));
      await sdk.calls.patchConversationsCallParticipant(placed.id, customer.id, { state: 'disconnected' });
      assert.equal(customerOf(await sdk.calls.getConversationsCall(placed.id)).state, 'disconnected');
    },
  },
  {
    suite: 'the customer hangs up',
    test: 'the SDK reads the call as disconnected and the agent can no longer hold the customer',
    async run(cv, sdk) {
      await signIn(sdk);
      const placed = await sdk.calls.postConversationsCalls({ phoneNumber: customerNumber });
      const customer = customerOf(await sdk.calls.getConversationsCall(placed.id));
      assert.equal(customer.state, 'connected');

      // The platform's side of the call moves: nothing the SDK sends causes it.
      const moved = await cv.transition(placed.id, 'disconnected', { from: 'connected' });
      assert.deepEqual([moved.state, moved.participantId], ['disconnected', customer.id]);

      const call = await sdk.calls.getConversationsCall(placed.id);
      assert.deepEqual(
        call.participants.map((p) => [p.purpose, p.state]),
        [['agent', 'connected'], ['customer', 'disconnected']],
      );
      await assert.rejects(
        sdk.calls.patchConversationsCallParticipant(placed.id, customer.id, { held: true }),
        (e) => e.status === 400 && /disconnected/.test(e.message),
      );
      const session = await cv.session(placed.id);
      assert.deepEqual(
        session.history.map((h) => [h.participantId, h.from, h.to, h.by]),
        [[customer.id, 'connected', 'disconnected', 'admin']],
      );
    },
  },
];

if (process.env.REVERSE === '1') scenarios.reverse();
const concurrency = Number(process.env.CONCURRENCY || 1);

/** When each test ran, to show that CONCURRENCY really ran tests side by side. */
const ran = [];

describe('Genesys call flow through callvcr (JavaScript SDK)', { concurrency }, () => {
  for (const s of scenarios) {
    describe(s.suite, () => {
      const cv = useCallvcr({ cassette, reuse: false });
      it(s.test, { timeout: 30000 }, async (t) => {
        const sdk = sdkClient(cv);
        t.after(() => sdk.agent.destroy());
        const start = Date.now();
        try {
          await s.run(cv, sdk);
        } finally {
          ran.push({ name: s.suite, start, end: Date.now() });
        }
      });
    });
  }

  if (concurrency > 1) {
    after(() => {
      const overlapping = ran.some((a) => ran.some((b) => a !== b && a.start < b.end && b.start < a.end));
      assert.ok(ran.length < 2 || overlapping, `CONCURRENCY=${concurrency}, yet no two tests overlapped: ${JSON.stringify(ran)}`);
    });
  }
});
