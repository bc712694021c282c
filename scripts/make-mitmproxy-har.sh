#!/usr/bin/env bash
# Regenerates tests/fixtures/mitmproxy-genesys.har: a real HAR 1.2 file
# written by mitmproxy's `hardump` option (not hand-written), used to test
# callvcr's HAR importer against a third-party producer.
#
# What it does, all on 127.0.0.1:
#   1. installs mitmproxy into a virtualenv (default /tmp/mitm-venv) unless
#      the pinned version is already there;
#   2. starts a tiny stand-in Genesys Cloud server over HTTPS (self-signed
#      certificate made with openssl) that answers the OAuth client-credentials
#      grant, /api/v2/users/me and the conversations/calls endpoints, with the
#      call-details response gzip-encoded;
#   3. runs mitmdump as a reverse proxy in front of it with keep_host_header,
#      so the HAR's URLs read https://login.mypurecloud.com/... and
#      https://api.mypurecloud.com/...;
#   4. drives the flow with curl (HTTPS to mitmdump, explicit Host headers,
#      Basic auth for the token, then "Authorization: Bearer <token>"), so the
#      fixture carries secrets that the importer has to redact;
#   5. stops mitmdump with SIGINT (the HAR is written on shutdown), checks
#      the result and moves it into place.
#
# Needs: python3 (>= 3.10) with venv, openssl, curl. Network access is needed
# only to install mitmproxy from PyPI; no traffic leaves the loopback address.
#
# Usage: scripts/make-mitmproxy-har.sh [OUTPUT.har]
# Env:   MITM_VENV (default /tmp/mitm-venv), MITMPROXY_VERSION (default 11.0.2,
#        the newest release that supports Python 3.11).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo_root/tests/fixtures/mitmproxy-genesys.har}"
venv="${MITM_VENV:-/tmp/mitm-venv}"
mitm_version="${MITMPROXY_VERSION:-11.0.2}"

for tool in python3 openssl curl; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 1; }
done

# --- 1. mitmproxy -----------------------------------------------------------
if ! "$venv/bin/mitmdump" --version 2>/dev/null | grep -q "Mitmproxy: $mitm_version\$"; then
    echo "installing mitmproxy $mitm_version into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "mitmproxy==$mitm_version"
fi
"$venv/bin/mitmdump" --version | head -n 1 >&2

work="$(mktemp -d)"
server_pid=""
mitm_pid=""
cleanup() {
    [[ -n "$mitm_pid" ]] && kill "$mitm_pid" 2>/dev/null || true
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# --- 2. stand-in Genesys Cloud server ---------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
    -keyout "$work/upstream.key" -out "$work/upstream.crt" \
    -subj "/CN=api.mypurecloud.com" \
    -addext "subjectAltName=DNS:api.mypurecloud.com,DNS:login.mypurecloud.com,IP:127.0.0.1" \
    2>/dev/null

cat >"$work/standin.py" <<'PY'
"""Stand-in for the Genesys Cloud endpoints the fixture exercises."""
import base64
import gzip
import json
import re
import ssl
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CLIENT_ID = "7de3af06-c0b3-4f9b-af45-72f4a1403797"
CLIENT_SECRET = "hS1nVqj9yL0oZk2Xb4cRt7uWm3pEa6dFg8iJ5sQ_xYz"
ACCESS_TOKEN = (
    "wVvE7bZ4k9HnQ2mXc5LrT8pYs1aJd6fGu3oKi0eWq7zNb4vCx2yM9tRl5hPj8gSf"
    "-Ud1AoEk6wIz3nHq0rBy7mLc_FxTv"
)
USER_ID = "2f8c6a4e-91b3-4d57-8e0a-3b6f1c9d2e74"
CALL_ID = "b1e0d4c7-5a92-4f36-9c81-7e2a3d6f0b58"
CUSTOMER_PARTICIPANT_ID = "4c9e1a72-3b8d-4e65-a0f1-92d7c5b38e16"
AGENT_PARTICIPANT_ID = "e7a35d10-6c4f-4b92-8d3e-1f0b9a2c7d45"
CORRELATION_ID = "0d5b9e3a-7c1f-4a28-b6e4-58f2c1d9a037"
PHONE = "+13175550100"

USER = {
    "id": USER_ID,
    "name": "Avery Fixture",
    "division": {"id": "a9d2c4e6-1b3f-4d58-9e7a-0c2b4d6f8a13", "name": "Home",
                 "selfUri": "/api/v2/authorization/divisions/a9d2c4e6-1b3f-4d58-9e7a-0c2b4d6f8a13"},
    "chat": {"jabberId": "5f1e2d3c4b5a69788796a5b4@example.orgspan.com"},
    "email": "avery.fixture@example.com",
    "primaryContactInfo": [{"address": "avery.fixture@example.com",
                            "mediaType": "EMAIL", "type": "PRIMARY"}],
    "addresses": [],
    "state": "active",
    "username": "avery.fixture@example.com",
    "version": 7,
    "acdAutoAnswer": False,
    "selfUri": f"/api/v2/users/{USER_ID}",
}


def call_details():
    def participant(pid, purpose, name, address):
        return {
            "id": pid,
            "name": name,
            "address": address,
            "startTime": "2024-05-14T15:02:11.482Z",
            "connectedTime": "2024-05-14T15:02:13.907Z",
            "purpose": purpose,
            "state": "connected",
            "direction": "outbound",
            "held": False,
            "muted": False,
            "confined": False,
            "recording": False,
            "recordingState": "none",
            "ani": f"tel:{PHONE}",
            "dnis": f"tel:{PHONE}",
            "attributes": {},
        }

    return {
        "id": CALL_ID,
        "startTime": "2024-05-14T15:02:11.482Z",
        "participants": [
            participant(AGENT_PARTICIPANT_ID, "agent", "Avery Fixture", "sip:avery.fixture@example.com"),
            participant(CUSTOMER_PARTICIPANT_ID, "customer", "Mobile Number, Indiana", f"tel:{PHONE}"),
        ],
        "recordingState": "none",
        "divisions": [{"division": {"id": USER["division"]["id"],
                                    "selfUri": USER["division"]["selfUri"]},
                       "entities": [{"id": USER_ID, "selfUri": USER["selfUri"]}]}],
        "selfUri": f"/api/v2/conversations/calls/{CALL_ID}",
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "genesys-standin"
    sys_version = ""

    def log_message(self, fmt, *args):
        sys.stderr.write("standin: " + (fmt % args) + "\n")

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status, obj, gzipped=False):
        body = json.dumps(obj).encode()
        if gzipped:
            body = gzip.compress(body, mtime=0)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("inin-correlation-id", CORRELATION_ID)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status, code, message):
        self._send(status, {"message": message, "code": code, "status": status})

    def _bearer_ok(self):
        if self.headers.get("Authorization") == f"Bearer {ACCESS_TOKEN}":
            return True
        self._error(401, "bad.credentials", "Invalid login credentials.")
        return False

    def do_POST(self):
        body = self._body()
        if self.path == "/oauth/token":
            expected = "Basic " + base64.b64encode(
                f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            form = urllib.parse.parse_qs(body.decode())
            if self.headers.get("Authorization") != expected:
                return self._error(401, "bad.credentials", "Invalid client credentials.")
            if form.get("grant_type") != ["client_credentials"]:
                return self._error(400, "invalid_grant", "Unsupported grant type.")
            return self._send(200, {"access_token": ACCESS_TOKEN,
                                    "token_type": "bearer",
                                    "expires_in": 86400})
        if self.path == "/api/v2/conversations/calls":
            if not self._bearer_ok():
                return
            if json.loads(body or b"{}").get("phoneNumber") != PHONE:
                return self._error(400, "bad.request", "phoneNumber is required.")
            return self._send(200, {"id": CALL_ID,
                                    "selfUri": f"/api/v2/conversations/calls/{CALL_ID}"})
        self._error(404, "not.found", "Not found.")

    def do_GET(self):
        if self.path == "/api/v2/users/me":
            if self._bearer_ok():
                self._send(200, USER)
            return
        m = re.fullmatch(r"/api/v2/conversations/calls/([0-9a-f-]{36})", self.path)
        if m and m.group(1) == CALL_ID:
            if self._bearer_ok():
                self._send(200, call_details(), gzipped=True)
            return
        self._error(404, "not.found", "Not found.")


def main():
    cert, key, port_file = sys.argv[1:4]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    with open(port_file, "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


main()
PY

python3 "$work/standin.py" "$work/upstream.crt" "$work/upstream.key" "$work/upstream.port" \
    2>"$work/standin.log" &
server_pid=$!

wait_for() {  # wait_for DESCRIPTION COMMAND...
    local what="$1"; shift
    for _ in $(seq 1 100); do
        "$@" && return 0
        sleep 0.1
    done
    echo "error: timed out waiting for $what" >&2
    exit 1
}
wait_for "stand-in server" test -s "$work/upstream.port"
upstream_port="$(cat "$work/upstream.port")"

# --- 3. mitmdump in reverse-proxy mode --------------------------------------
proxy_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
har_tmp="$work/out.har"
"$venv/bin/mitmdump" \
    --mode "reverse:https://127.0.0.1:$upstream_port" \
    --listen-host 127.0.0.1 --listen-port "$proxy_port" \
    --ssl-insecure \
    --set keep_host_header=true \
    --set confdir="$work/mitmproxy-conf" \
    --set hardump="$har_tmp" \
    >"$work/mitmdump.log" 2>&1 &
mitm_pid=$!
port_open() { python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $proxy_port), 1)" 2>/dev/null; }
wait_for "mitmdump" port_open

# --- 4. drive the Genesys flow through mitmdump -----------------------------
# HTTPS to mitmdump (its own CA, hence -k); the Host header names the real
# Genesys host so that mitmproxy records https://<that host>/... URLs.
client_id="7de3af06-c0b3-4f9b-af45-72f4a1403797"
client_secret="hS1nVqj9yL0oZk2Xb4cRt7uWm3pEa6dFg8iJ5sQ_xYz"
genesys() {  # genesys HOST PATH CURL-ARGS...
    local host="$1" path="$2"; shift 2
    curl --silent --show-error --fail --insecure --http1.1 --compressed \
        --resolve "$host:$proxy_port:127.0.0.1" \
        -H "Host: $host" -A "callvcr-har-fixture/1.0" -H "Accept: application/json" \
        "$@" "https://$host:$proxy_port$path"
}
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }

token="$(genesys login.mypurecloud.com /oauth/token \
    -u "$client_id:$client_secret" --data "grant_type=client_credentials" \
    | json_field access_token)"
auth="Authorization: Bearer $token"
genesys api.mypurecloud.com /api/v2/users/me -H "$auth" >/dev/null
call_id="$(genesys api.mypurecloud.com /api/v2/conversations/calls -H "$auth" \
    -H "Content-Type: application/json" --data '{"phoneNumber":"+13175550100"}' \
    | json_field id)"
genesys api.mypurecloud.com "/api/v2/conversations/calls/$call_id" -H "$auth" >/dev/null

# --- 5. stop mitmdump (writes the HAR on shutdown), check, install ----------
kill -INT "$mitm_pid"
wait "$mitm_pid" || true
mitm_pid=""
[[ -s "$har_tmp" ]] || { echo "error: mitmdump wrote no HAR" >&2; cat "$work/mitmdump.log" >&2; exit 1; }

python3 - "$har_tmp" "$call_id" <<'PY'
import json, sys
har = json.load(open(sys.argv[1]))
log = har["log"]
assert log["version"] == "1.2", log["version"]
assert "mitmproxy" in log["creator"]["name"], log["creator"]
got = [(e["request"]["method"], e["request"]["url"], e["response"]["status"])
       for e in log["entries"]]
want = [
    ("POST", "https://login.mypurecloud.com/oauth/token", 200),
    ("GET", "https://api.mypurecloud.com/api/v2/users/me", 200),
    ("POST", "https://api.mypurecloud.com/api/v2/conversations/calls", 200),
    ("GET", f"https://api.mypurecloud.com/api/v2/conversations/calls/{sys.argv[2]}", 200),
]
assert got == want, got
for method, url, status in got:
    print(f"  {method} {url} -> {status}", file=sys.stderr)
PY

mkdir -p "$(dirname "$out")"
mv "$har_tmp" "$out"
echo "wrote $out" >&2
