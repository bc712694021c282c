"""Reaching callvcr: the fixture's `env`, `proxy_url`, `ca_path` and `configure_genesys` carry a
real HTTPS request through the proxy, and the `Callvcr` class works on its own."""

import importlib.util
import os

import pytest

from callvcr import Callvcr, CallvcrStartError
from support import exchange, run, write_cassette

ME = {"id": "u-1", "name": "Agent Smith"}


def test_proxy_ca_and_env_carry_a_real_https_request(inner):
    write_cassette(inner.path, "test_reach", [exchange(1, "/api/v2/users/me", ME)])
    inner.makepyfile(test_reach=r'''
        import json, os, subprocess, sys

        def test_through_the_proxy(callvcr, http):
            http.sign_in("c1", "s1")
            r = http.api("GET", "/api/v2/users/me")
            assert (r.status, r.json["name"]) == (200, "Agent Smith"), r.raw
            # Now without a bearer (the recording was replayed): the auth overlay answers as the
            # platform does.
            http.token = None
            r = http.api("GET", "/api/v2/users/me")
            assert r.status == 401 and r.json["code"] == "authentication.required", r.raw

        def test_env_is_what_callvcr_run_sets(callvcr):
            env = callvcr.env
            assert env["HTTPS_PROXY"] == env["https_proxy"] == callvcr.proxy_url
            assert callvcr.proxy_url.startswith("http://127.0.0.1:")
            assert env["NO_PROXY"] == env["no_proxy"] == "127.0.0.1,localhost,::1"
            bundle = env["SSL_CERT_FILE"]
            assert env["REQUESTS_CA_BUNDLE"] == env["CURL_CA_BUNDLE"] == bundle
            assert env["NODE_EXTRA_CA_CERTS"] == env["CALLVCR_CA"] == callvcr.ca_path
            assert callvcr.ca_path == os.path.join(os.getcwd(), "certs", "ca.pem")
            assert env["CALLVCR_ADMIN"] == callvcr.admin_url and env["CALLVCR_PROXY"] == callvcr.proxy_url
            assert "x-callvcr-scope" not in env
            assert callvcr.scope_header == {"x-callvcr-scope": "test_reach.py::test_env_is_what_callvcr_run_sets"}
            ca = open(callvcr.ca_path).read().strip()
            text = open(bundle).read()
            assert ca in text
            if os.path.exists("/etc/ssl/certs/ca-certificates.crt"):
                assert text.count("BEGIN CERTIFICATE") > 10, "the system roots are missing"

        def test_a_child_process_given_env_trusts_and_uses_callvcr(callvcr):
            # The child's urllib reads HTTPS_PROXY and SSL_CERT_FILE (the bundle) by itself.
            child = (
                "import urllib.request, urllib.error\n"
                "try:\n"
                "    urllib.request.urlopen('https://api.mypurecloud.com/api/v2/users/me', timeout=30)\n"
                "except urllib.error.HTTPError as e:\n"
                "    print(e.code, e.read().decode())\n"
            )
            env = {**os.environ, **callvcr.env}
            out = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=60)
            assert out.stdout.startswith("401 ") and "authentication.required" in out.stdout, out.stdout + out.stderr
            assert [e["answered_by"] for e in callvcr.journal()] == ["overlay:auth"]

        def test_apply_env_sets_it_in_process(callvcr, monkeypatch):
            import ssl, urllib.request, urllib.error
            assert callvcr.apply_env(monkeypatch) == callvcr.env
            assert os.environ["SSL_CERT_FILE"] == callvcr.bundle_path
            # A fresh opener reads the proxy from the environment, a default context the bundle.
            opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ssl.create_default_context()))
            try:
                opener.open("https://api.mypurecloud.com/api/v2/users/me", timeout=30)
            except urllib.error.HTTPError as e:
                assert e.code == 401
            assert [e["answered_by"] for e in callvcr.journal()] == ["overlay:auth"]
    ''')
    result = run(inner)
    result.assert_outcomes(passed=4)


def test_configure_genesys_sets_proxy_and_ca(inner):
    write_cassette(inner.path, "test_genesys", [exchange(1, "/api/v2/users/me", ME)])
    inner.makepyfile(test_genesys=r'''
        import pytest

        class StandIn:
            """The two attributes of PureCloudPlatformClientV2.Configuration that matter here."""
            proxy = None
            ssl_ca_cert = None

        def test_stand_in(callvcr):
            conf = StandIn()
            assert callvcr.configure_genesys(conf) is conf
            assert (conf.proxy, conf.ssl_ca_cert) == (callvcr.proxy_url, callvcr.ca_path)

        def test_real_sdk(callvcr):
            genesys = pytest.importorskip("PureCloudPlatformClientV2")
            conf = callvcr.configure_genesys()
            assert conf is genesys.configuration
            conf.host = "https://api.mypurecloud.com"
            client = genesys.api_client.ApiClient().get_client_credentials_token("c1", "s1")
            me = genesys.UsersApi(client).get_users_me()
            assert me.name == "Agent Smith"
    ''')
    result = run(inner, "-rs")
    # find_spec, not import: the SDK takes seconds to import.
    if importlib.util.find_spec("PureCloudPlatformClientV2") is None:
        result.assert_outcomes(passed=1, skipped=1)
    else:
        result.assert_outcomes(passed=2)


def test_the_class_alone_starts_answers_and_stops(tmp_path):
    write_cassette(tmp_path, "alone", [exchange(1, "/api/v2/users/me", ME)])
    with Callvcr("alone", cwd=str(tmp_path), overlays_off=["auth"]) as cv:
        assert cv.health()["cassette"] == "alone"
        assert cv.health()["mode"] == "replay"
        assert "auth" not in cv.health()["overlays"]
        pid = cv.pid
        assert os.path.isfile(cv.ca_path) and os.path.isfile(cv.bundle_path)
    assert cv.returncode == 0 and cv.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "replay summary" in cv.log()


def test_a_process_that_cannot_start_says_why(tmp_path):
    with pytest.raises(CallvcrStartError) as e:
        Callvcr("no-such-cassette", cwd=str(tmp_path)).start()
    assert "exited with 2" in str(e.value) and "no-such-cassette" in str(e.value)
