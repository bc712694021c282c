"""A short Genesys Cloud call flow with the real Python SDK, unmodified, through callvcr.

Run it with `examples/run.sh`, or: callvcr run --cassette examples/genesys-call.jsonl -- python3 this-file.
"""
import datetime
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request

import PureCloudPlatformClientV2 as genesys

genesys.configuration.host = "https://api.mypurecloud.com"
# This SDK trusts only the CA file it is given, not the environment's: give it callvcr's bundle.
genesys.configuration.ssl_ca_cert = os.environ["REQUESTS_CA_BUNDLE"]
# This SDK ignores HTTPS_PROXY. `callvcr run --hosts` redirects it without one; otherwise tell it.
if os.environ.get("CALLVCR_REDIRECT") == "proxy":
    genesys.configuration.proxy = os.environ["HTTPS_PROXY"]

CLIENT_ID = os.environ.get("GENESYS_CLIENT_ID", "example-client")
CLIENT_SECRET = os.environ.get("GENESYS_CLIENT_SECRET", "example-secret")
REDIRECT_URI = "http://localhost:8085/callback"


def sign_in():
    """The authorization-code grant's first step, as a browser would take it: the sign-in page
    redirects back to the app with a code (callvcr answers it headlessly in replay). Placing and
    answering calls needs a user's token: the platform refuses a client-credentials one."""

    class Stop(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    tls = ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"])
    opener = urllib.request.build_opener(Stop(), urllib.request.HTTPSHandler(context=tls))
    query = urllib.parse.urlencode({"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI})
    try:
        opener.open(f"https://login.mypurecloud.com/oauth/authorize?{query}")
    except urllib.error.HTTPError as e:
        if e.code == 302:
            return urllib.parse.parse_qs(urllib.parse.urlparse(e.headers["Location"]).query)["code"][0]
        raise
    raise RuntimeError("the sign-in page did not redirect back with a code")


# This one answers (client, token answer); the refresh token is in the answer for later.
client, _token = genesys.api_client.ApiClient().get_code_authorization_token(
    CLIENT_ID, CLIENT_SECRET, sign_in(), REDIRECT_URI
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
# The recording's times arrive moved onto the replay's clock, and the SDK parses them as datetimes:
# the customer connected moments ago, not on the day the cassette was recorded.
connected = customer.connected_time
if not isinstance(connected, datetime.datetime):
    sys.exit(f"python: connected_time is not a parsed datetime: {connected!r}")
age = datetime.datetime.now(datetime.timezone.utc) - connected
if not datetime.timedelta(0) <= age <= datetime.timedelta(minutes=10):
    sys.exit(f"python: the customer connected {age} ago; replayed times are not on the replay's clock")
calls.patch_conversations_call_participant(call.id, customer.id, model(genesys.MediaParticipantRequest, held=True))
calls.patch_conversations_call_participant(
    call.id, customer.id, model(genesys.MediaParticipantRequest, state="disconnected")
)
# The platform refuses to reconnect a disconnected participant; so does callvcr's state overlay.
try:
    calls.patch_conversations_call_participant(
        call.id, customer.id, model(genesys.MediaParticipantRequest, state="connected")
    )
    sys.exit("python: reconnecting a disconnected participant was accepted")
except genesys.rest.ApiException as e:
    if e.status != 400:
        raise
state = next(p.state for p in calls.get_conversations_call(call.id).participants if p.id == customer.id)
print(
    f"python: {me.name} placed call {call.id}, held and disconnected customer {customer.id} ({state}; reconnect refused);"
    f" connected {int(age.total_seconds())} s ago on the replay's clock"
)
sys.exit(0)
