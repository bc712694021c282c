"""Helpers of the plugin's tests: cassettes written by hand as JSON Lines, an inner conftest
giving the inner tests an HTTPS client through callvcr's proxy, and the inner-session runner."""

import json
import os

API = "api.mypurecloud.com"
LOGIN = "login.mypurecloud.com"
HEADER = {"format": "callvcr-cassette", "version": 1}

# The inner tests' client: urllib with an explicit proxy and an explicit SSL context on callvcr's
# CA, since this machine's environment (REQUESTS_CA_BUNDLE, SSL_CERT_FILE) names other roots.
INNER_CONFTEST = r'''
import base64, json, ssl, urllib.error, urllib.parse, urllib.request
import pytest

API = "https://api.mypurecloud.com"
LOGIN = "https://login.mypurecloud.com"


class Resp:
    def __init__(self, status, headers, raw):
        self.status, self.headers, self.raw = status, headers, raw
        try:
            self.json = json.loads(raw) if raw else None
        except ValueError:
            self.json = None


class Http:
    """HTTPS through callvcr's proxy listener, trusting callvcr's CA only."""

    def __init__(self, cv):
        self.cv = cv
        self.token = None
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"https": cv.proxy_url}),
            urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=cv.ca_path)),
        )

    def call(self, method, url, body=None, headers=None):
        headers = dict(headers or {})
        data = None
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self.opener.open(req, timeout=30) as r:
                return Resp(r.status, r.headers, r.read().decode())
        except urllib.error.HTTPError as e:
            return Resp(e.code, e.headers, e.read().decode())

    def sign_in(self, client="c1", secret="s1"):
        """Client credentials with HTTP Basic, as the Genesys SDKs send them."""
        basic = base64.b64encode(f"{client}:{secret}".encode()).decode()
        r = self.call("POST", LOGIN + "/oauth/token", "grant_type=client_credentials",
                      {"Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"})
        assert r.status == 200, r.raw
        self.token = r.json["access_token"]
        return self.token

    def api(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        return self.call(method, API + path, body, headers)


@pytest.fixture
def http(callvcr):
    return Http(callvcr)
'''


def exchange(seq, path, answer, *, method="GET", host=API, status=200, scope=None, query=None,
             body=None, headers=None):
    """One recorded exchange in the cassette's JSON Lines shape (see tests/scopes.rs)."""
    # The SDK sent a bearer (stored redacted): without it, the recording would show the platform
    # answering an unauthenticated call, and the auth overlay would let one through.
    req_headers = [["host", host], ["authorization", "[REDACTED]"]]
    if body is not None:
        req_headers.append(["content-type", "application/json"])
    e = {
        "seq": seq,
        "recorded_at": "2026-01-05T09:00:00.000Z",
        "duration_ms": 1,
        "request": {
            "method": method, "scheme": "https", "host": host, "path": path, "headers": req_headers,
            "body": {"json": body} if body is not None else {"text": ""},
        },
        "response": {
            "status": status,
            "headers": headers or [["content-type", "application/json"]],
            "body": {"json": answer} if answer is not None else {"text": ""},
        },
    }
    if query is not None:
        e["request"]["query"] = query
    if scope is not None:
        e["scope"] = scope
    return e


def write_cassette(directory, name, exchanges):
    """Writes `cassettes/NAME.jsonl`: the header line, then one exchange per line."""
    path = os.path.join(str(directory), "cassettes", name + ".jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(HEADER) + "\n")
        for e in exchanges:
            f.write(json.dumps(e) + "\n")
    return path


def run(pytester, *args):
    """Runs the inner session in a subprocess (as CI would run it), quietly, with no cache."""
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", *args, timeout=120)
