"""A short Genesys Cloud call flow with the real Python SDK, unmodified, through callvcr.

Run it with `examples/run.sh`, or: callvcr run --cassette examples/genesys-call.jsonl -- python3 this-file.
"""
import os
import sys

import PureCloudPlatformClientV2 as genesys

genesys.configuration.host = "https://api.mypurecloud.com"
# This SDK trusts only the CA file it is given, not the environment's: give it callvcr's bundle.
genesys.configuration.ssl_ca_cert = os.environ["REQUESTS_CA_BUNDLE"]
# This SDK ignores HTTPS_PROXY. `callvcr run --hosts` redirects it without one; otherwise tell it.
if os.environ.get("CALLVCR_REDIRECT") == "proxy":
    genesys.configuration.proxy = os.environ["HTTPS_PROXY"]

client = genesys.api_client.ApiClient().get_client_credentials_token(
    os.environ.get("GENESYS_CLIENT_ID", "example-client"), os.environ.get("GENESYS_CLIENT_SECRET", "example-secret")
)


def model(cls, **fields):
    """The SDK's models take their fields as attributes."""
    m = cls()
    for k, v in fields.items():
        setattr(m, k, v)
    return m


me = genesys.UsersApi(client).get_users_me()
calls = genesys.ConversationsApi(client)
call = calls.post_conversations_calls(model(genesys.CreateCallRequest, phone_number="+13175550100"))
customer = next(p for p in calls.get_conversations_call(call.id).participants if p.purpose == "customer")
calls.patch_conversations_call_participant(call.id, customer.id, model(genesys.MediaParticipantRequest, held=True))
calls.patch_conversations_call_participant(
    call.id, customer.id, model(genesys.MediaParticipantRequest, state="disconnected")
)
print(f"python: {me.name} placed call {call.id}, held and disconnected customer {customer.id}")
sys.exit(0)
