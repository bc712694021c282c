// A short Genesys Cloud call flow with the real JavaScript SDK, unmodified, through callvcr.
// Run it with `examples/run.sh`, or: callvcr run --cassette examples/genesys-call.jsonl -- node this-file.
// The SDK (axios) follows HTTPS_PROXY, and Node trusts NODE_EXTRA_CA_CERTS: both set by `callvcr run`.
const platformClient = require('purecloud-platform-client-v2');

const client = platformClient.ApiClient.instance;
client.setEnvironment(platformClient.PureCloudRegionHosts.us_east_1);

(async () => {
  await client.loginClientCredentialsGrant(
    process.env.GENESYS_CLIENT_ID || 'example-client',
    process.env.GENESYS_CLIENT_SECRET || 'example-secret',
  );
  const me = await new platformClient.UsersApi().getUsersMe();
  const calls = new platformClient.ConversationsApi();
  const call = await calls.postConversationsCalls({ phoneNumber: '+13175550100' });
  const details = await calls.getConversationsCall(call.id);
  const customer = details.participants.find((p) => p.purpose === 'customer');
  await calls.patchConversationsCallParticipant(call.id, customer.id, { held: true });
  await calls.patchConversationsCallParticipant(call.id, customer.id, { state: 'disconnected' });
  console.log(`js: ${me.name} placed call ${call.id}, held and disconnected customer ${customer.id}`);
})().catch((e) => {
  console.error('js: FAILED', e.status || '', e.message || e, JSON.stringify(e.body || ''));
  process.exit(1);
});
