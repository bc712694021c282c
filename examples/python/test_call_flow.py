"""A Genesys Cloud call flow with the real Python SDK (`PureCloudPlatformClientV2`), unmodified,
tested with pytest through callvcr's plugin against the bundled cassette examples/genesys-call.jsonl.

Run it with `examples/run.sh python`, or, with the SDK, pytest and the plugin installed:
`CALLVCR_BIN=target/debug/callvcr pytest examples/python`.

Every test replays the same recording, one sign-in and call placed, held and hung up, and each
leaves it in its own way: as recorded, a token expiring halfway, a 429 on the way, the customer
hanging up first. The cassette was recorded without test scopes, so the tests share its
recordings; the `platform` fixture puts callvcr back where the cassette starts before each one,
which is what makes them independent of order, of each other and of running alone or in parallel.
"""

import datetime
import os
import urllib.error
import urllib.parse
import urllib.request

import pytest

import PureCloudPlatformClientV2 as genesys
from PureCloudPlatformClientV2.rest import ApiException

CASSETTE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "genesys-call.jsonl")
pytestmark = pytest.mark.callvcr(cassette=os.path.normpath(CASSETTE))

CLIENT_ID = "example-client"
CLIENT_SECRET = "example-secret"
REDIRECT_URI = "http://localhost:8085/callback"
CUSTOMER_NUMBER = "+13175550100"
# What the recording holds: the one call it placed, its customer and the signed-in user.
CALL_ID = "5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e"
CUSTOMER_ID = "8e2f3a4b-1c2d-4e5f-9a0b-1c2d3e4f5a6b"
AGENT_NAME = "Agent Smith"


@pytest.fixture
def platform(callvcr):
    """callvcr with the platform as the cassette starts it: tokens, call states, the clock and
    the recordings' order back to the start (`POST /mock/admin/reset`), then this test's scope
    opened again, since a reset ends it.

    Tests that share a callvcr process share its call states: without this, a test running after
    one that hung up would find the customer disconnected before it placed the call. xdist
    workers each have their own process, so a reset never reaches a test running beside this one.
    """
    callvcr.server.reset()
    callvcr.server.open_scope(callvcr.scope)
    callvcr.configure_genesys()  # proxy and CA: this SDK reads neither HTTPS_PROXY nor SSL_CERT_FILE
    return callvcr


def authorization_code(callvcr):
    """The authorization-code grant's first step as a browser takes it: the sign-in page redirects
    back to the app with a code (answered headlessly by callvcr's auth overlay in replay). Placing
    a call needs a user's token: the platform refuses a client-credentials one."""

    class Stop(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    browser = urllib.request.build_opener(
        Stop(),
        urllib.request.ProxyHandler({"https": callvcr.proxy_url}),
        urllib.request.HTTPSHandler(context=callvcr.ssl_context()),
    )
    query = urllib.parse.urlencode({"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI})
    with pytest.raises(urllib.error.HTTPError) as redirect:
        browser.open(f"https://login.mypurecloud.com/oauth/authorize?{query}")
    assert redirect.value.code == 302, redirect.value
    location = urllib.parse.urlparse(redirect.value.headers["Location"])
    assert location._replace(query="").geturl() == REDIRECT_URI
    return urllib.parse.parse_qs(location.query)["code"][0]


def sign_in(callvcr, api_client=None):
    """Signs the user in (the code, then the SDK's own code exchange); returns the SDK's client."""
    api_client = api_client or genesys.api_client.ApiClient()
    client, token = api_client.get_code_authorization_token(
        CLIENT_ID, CLIENT_SECRET, authorization_code(callvcr), REDIRECT_URI
    )
    assert token["access_token"] and token["refresh_token"]
    return client


def model(cls, **fields):
    """The SDK's models take their fields as attributes."""
    m = cls()
    for k, v in fields.items():
        setattr(m, k, v)
    return m


def place_call(calls):
    call = calls.post_conversations_calls(model(genesys.CreateCallRequest, phone_number=CUSTOMER_NUMBER))
    assert call.id == CALL_ID
    return call


def customer_of(calls, call_id):
    return next(p for p in calls.get_conversations_call(call_id).participants if p.purpose == "customer")


def move(calls, call_id, participant_id, **fields):
    calls.patch_conversations_call_participant(
        call_id, participant_id, model(genesys.MediaParticipantRequest, **fields)
    )


def answers(callvcr, path_end=None):
    """(method, path, status, answered_by) of this test's requests, optionally only those whose
    path ends with `path_end`."""
    return [
        (e["method"], e["path"], e["status"], e["answered_by"])
        for e in callvcr.journal()
        if path_end is None or e["path"].endswith(path_end)
    ]


def test_call_flow_as_recorded(platform):
    """Sign in, read the user, place the call, read it, hold the customer, hang up: every API call
    answered by the recording, the call read back as the state overlay keeps it."""
    client = sign_in(platform)
    assert genesys.UsersApi(client).get_users_me().name == AGENT_NAME
    calls = genesys.ConversationsApi(client)
    call = place_call(calls)
    customer = customer_of(calls, call.id)
    assert (customer.id, customer.state, customer.held) == (CUSTOMER_ID, "connected", False)

    # The recording's times arrive moved onto the replay's clock, parsed by the SDK as datetimes:
    # the customer connected moments before the replay's now, not on the day it was recorded.
    now = datetime.datetime.fromisoformat(platform.clock().replace("Z", "+00:00"))
    assert isinstance(customer.connected_time, datetime.datetime)
    assert datetime.timedelta(0) <= now - customer.connected_time <= datetime.timedelta(minutes=10)

    move(calls, call.id, customer.id, held=True)
    customer = customer_of(calls, call.id)
    assert (customer.state, customer.held) == ("connected", True)
    move(calls, call.id, customer.id, state="disconnected")
    assert customer_of(calls, call.id).state == "disconnected"
    # The platform refuses to reconnect a disconnected participant; so does the state overlay.
    with pytest.raises(ApiException) as refused:
        move(calls, call.id, customer.id, state="connected")
    assert refused.value.status == 400

    api = [a for a in answers(platform) if a[1].startswith("/api/")]
    participant = f"/api/v2/conversations/calls/{CALL_ID}/participants/{CUSTOMER_ID}"
    assert [(m, p, s) for m, p, s, _ in api] == [
        ("GET", "/api/v2/users/me", 200),
        ("POST", "/api/v2/conversations/calls", 200),
        ("GET", f"/api/v2/conversations/calls/{CALL_ID}", 200),
        ("PATCH", participant, 202),
        ("GET", f"/api/v2/conversations/calls/{CALL_ID}", 200),
        ("PATCH", participant, 202),
        ("GET", f"/api/v2/conversations/calls/{CALL_ID}", 200),
        ("PATCH", participant, 400),
    ]
    # The recorded moves came from the cassette; the refused one from the state overlay.
    assert [by for *_, by in api[:4]] == ["hit"] * 4
    assert api[5][3] == "hit" and api[7][3] == "overlay:state"


@pytest.mark.parametrize("recovery", ["sdk-refresh", "sign-in-again"])
def test_token_expires_mid_flow(platform, monkeypatch, recovery):
    """The access token expires after sign-in: the next call gets the platform's 401
    `credentials.expired`, and the flow goes on with a new token.

    `sdk-refresh`: the SDK's own path. For a code grant it keeps the refresh token, and on a 401
    (`Configuration.should_refresh_access_token`, on by default) it refreshes and sends the call
    again, so the app sees nothing. `sign-in-again`: with that switched off, the 401 reaches the
    app, which signs the user in again, as an app without refresh does.
    """
    if recovery == "sign-in-again":
        monkeypatch.setattr(genesys.configuration, "should_refresh_access_token", False)
    client = sign_in(platform)
    first_token = client.access_token
    users = genesys.UsersApi(client)
    assert users.get_users_me().name == AGENT_NAME

    assert platform.expire_tokens() >= 1
    calls = genesys.ConversationsApi(client)
    if recovery == "sdk-refresh":
        call = place_call(calls)
    else:
        with pytest.raises(ApiException) as expired:
            place_call(calls)
        assert expired.value.status == 401
        assert '"credentials.expired"' in expired.value.body
        sign_in(platform, client)
        call = place_call(calls)
    assert client.access_token != first_token

    customer = customer_of(calls, call.id)
    move(calls, call.id, customer.id, held=True)
    move(calls, call.id, customer.id, state="disconnected")
    assert customer_of(calls, call.id).state == "disconnected"

    placed = answers(platform, "/api/v2/conversations/calls")
    assert placed == [
        ("POST", "/api/v2/conversations/calls", 401, "overlay:auth"),
        ("POST", "/api/v2/conversations/calls", 200, "hit"),
    ]
    # Between the two, the new token: a refresh grant, or a second sign-in.
    tokens = [(m, p) for m, p, _, _ in answers(platform) if p.startswith("/oauth/")]
    again = [("POST", "/oauth/token")] if recovery == "sdk-refresh" else [
        ("GET", "/oauth/authorize"), ("POST", "/oauth/token")]
    assert tokens == [("GET", "/oauth/authorize"), ("POST", "/oauth/token")] + again


def test_rate_limited_call_is_retried(platform):
    """One 429 with `Retry-After: 1` on reading the user: the SDK's HTTP client (urllib3's `Retry`,
    which honours `Retry-After` on 429 by default) waits and sends it again, and the app gets the
    user. The journal shows the injected 429, then the recording's answer."""
    client = sign_in(platform)
    users = genesys.UsersApi(client)
    with platform.fault("status", status=429, retry_after_s=1, count=1,
                        match={"method": "GET", "path": "^/api/v2/users/me$"}):
        assert users.get_users_me().name == AGENT_NAME
    assert answers(platform, "/api/v2/users/me") == [
        ("GET", "/api/v2/users/me", 429, "fault:status"),
        ("GET", "/api/v2/users/me", 200, "hit"),
    ]
    # The flow goes on after it.
    calls = genesys.ConversationsApi(client)
    call = place_call(calls)
    assert customer_of(calls, call.id).state == "connected"


def test_customer_hangs_up(platform):
    """The customer hangs up on their own (an admin transition, with no request of the SDK behind
    it): the SDK reads the call with the customer disconnected and the agent still connected, and
    holding the customer is refused with the platform's 400."""
    client = sign_in(platform)
    calls = genesys.ConversationsApi(client)
    call = place_call(calls)
    assert customer_of(calls, call.id).state == "connected"

    moved = platform.transition(call.id, "disconnected", from_="connected")
    assert (moved["participantId"], moved["state"]) == (CUSTOMER_ID, "disconnected")

    parties = {p.purpose: p.state for p in calls.get_conversations_call(call.id).participants}
    assert parties == {"agent": "connected", "customer": "disconnected"}
    with pytest.raises(ApiException) as refused:
        move(calls, call.id, CUSTOMER_ID, held=True)
    assert refused.value.status == 400
    history = platform.session(call.id)["history"]
    assert [(h["participantId"], h["to"]) for h in history][-1:] == [(CUSTOMER_ID, "disconnected")]
