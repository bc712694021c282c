// A short Genesys Cloud call flow with the real JavaScript SDK, unmodified, through callvcr.
// Run it with `examples/run.sh`, or: callvcr run --cassette examples/genesys-call.jsonl -- node this-file.
// The SDK (axios) follows HTTPS_PROXY, and Node trusts NODE_EXTRA_CA_CERTS: both set by `callvcr run`.
const platformClient = require('purecloud-platform-client-v2');
const axios = require('axios'); // the SDK's own HTTP client, installed with it

const client = platformClient.ApiClient.instance;
client.setEnvironment(platformClient.PureCloudRegionHosts.us_east_1);

const clientId = process.env.GENESYS_CLIENT_ID || 'example-client';
const clientSecret = process.env.GENESYS_CLIENT_SECRET || 'example-secret';
const redirectUri = 'http://localhost:8085/callback';

// The authorization-code grant's first step, as a browser would take it: the sign-in page redirects
// back to the app with a code (callvcr answers it headlessly in replay). Placing and answering calls
// needs a user's token: the platform refuses a client-credentials one.
async function signIn() {
  const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: redirectUri });
  const r = await axios.get(`https://login.mypurecloud.com/oauth/authorize?${query}`, {
    maxRedirects: 0,
    validateStatus: (s) => s === 302,
  });
  return new URL(r.headers.location).searchParams.get('code');
}

(async () => {
  await client.loginCodeAuthorizationGrant(clientId, clientSecret, await signIn(), redirectUri);
  const me = await new platformClient.UsersApi().getUsersMe();
  const calls = new platformClient.ConversationsApi();
  const call = await calls.postConversationsCalls({ phoneNumber: '+13175550100' });
  const details = await calls.getConversationsCall(call.id);
  const customer = details.participants.find((p) => p.purpose === 'customer');
  // The recording's times arrive moved onto the replay's clock: the customer connected moments ago.
  const age = Date.now() - new Date(customer.connectedTime).getTime();
  if (!(age >= 0 && age <= 10 * 60 * 1000)) {
    throw new Error(`the customer connected ${age} ms ago (${customer.connectedTime}); replayed times are not on the replay's clock`);
  }
  await calls.patchConversationsCallParticipant(call.id, customer.id, { held: true });
  await calls.patchConversationsCallParticipant(call.id, customer.id, { state: 'disconnected' });
  // The platform refuses to reconnect a disconnected participant; so does callvcr's state overlay.
  const refused = await calls
    .patchConversationsCallParticipant(call.id, customer.id, { state: 'connected' })
    .then(() => false, (e) => e.status === 400);
  if (!refused) throw new Error('reconnecting a disconnected participant was not refused with 400');
  const after = await calls.getConversationsCall(call.id);
  const state = after.participants.find((p) => p.id === customer.id).state;
  console.log(`js: ${me.name} placed call ${call.id}, held and disconnected customer ${customer.id} (${state}; reconnect refused)`);
})().catch((e) => {
  console.error('js: FAILED', e.status || '', e.message || e, JSON.stringify(e.body || ''));
  process.exit(1);
});
