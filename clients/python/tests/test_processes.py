"""Which callvcr a test gets, and that tests do not depend on each other: one process per
distinct (cassette, marker values), started lazily and stopped at the session's end; each test
replays its own recordings in any order, alone, and under pytest-xdist."""

import json
import os

import pytest

from support import exchange, run, write_cassette

# Two tests that recorded the same request, each its own answer, plus one recorded outside any
# test: replay gives each test its own whatever runs first.
ORDER = r'''
import pytest

pytestmark = pytest.mark.callvcr(overlays_off=["auth"])

def who(http):
    r = http.api("GET", "/api/v2/users/me")
    assert r.status == 200, r.raw
    return r.json["who"]

def test_a(callvcr, http):
    assert (who(http), who(http)) == ("a1", "a2")
    assert who(http) == "shared"

def test_b(callvcr, http):
    assert who(http) == "b1"
'''

REVERSE = r'''
def pytest_collection_modifyitems(items):
    items.reverse()
'''


def order_cassette(directory):
    write_cassette(directory, "test_order", [
        exchange(1, "/api/v2/users/me", {"who": "a1"}, scope="test_order.py::test_a"),
        exchange(2, "/api/v2/users/me", {"who": "b1"}, scope="test_order.py::test_b"),
        exchange(3, "/api/v2/users/me", {"who": "a2"}, scope="test_order.py::test_a"),
        exchange(4, "/api/v2/users/me", {"who": "shared"}),
    ])


def test_each_test_gets_its_own_recordings_in_order_reversed_and_alone(inner):
    order_cassette(inner.path)
    inner.makepyfile(test_order=ORDER)
    run(inner).assert_outcomes(passed=2)
    run(inner, "-k", "test_b").assert_outcomes(passed=1)
    run(inner, "-k", "test_a").assert_outcomes(passed=1)
    # test_a run twice in one session: opening its scope again rewinds its recordings.
    run(inner, "test_order.py::test_a", "test_order.py::test_a").assert_outcomes(passed=1)
    inner.path.joinpath("reverse").mkdir()
    inner.path.joinpath("reverse", "conftest.py").write_text(REVERSE)
    (inner.path / "reverse" / "test_order.py").write_text(ORDER)
    # Same node ids as at the top (rootdir is this directory, so the cassette is matched by the
    # test_order.py ids only when run from there): give the reversed copy its own cassette.
    write_cassette(inner.path, "reverse_test_order", [
        exchange(1, "/api/v2/users/me", {"who": "a1"}, scope="reverse/test_order.py::test_a"),
        exchange(2, "/api/v2/users/me", {"who": "b1"}, scope="reverse/test_order.py::test_b"),
        exchange(3, "/api/v2/users/me", {"who": "a2"}, scope="reverse/test_order.py::test_a"),
        exchange(4, "/api/v2/users/me", {"who": "shared"}),
    ])
    result = run(inner, "reverse", "-v")
    result.assert_outcomes(passed=2)
    lines = [l for l in result.stdout.lines if "PASSED" in l]
    assert "test_b" in lines[0] and "test_a" in lines[1], lines


def test_under_xdist_each_worker_has_its_own_callvcr(inner):
    pytest.importorskip("xdist")
    order_cassette(inner.path)
    inner.makepyfile(test_order=ORDER + r'''
import json, os

def test_z_where(callvcr):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(f"where-{worker}-{callvcr.scope.rsplit('::', 1)[1]}.json", "w") as f:
        json.dump({"admin": callvcr.admin_url, "pid": callvcr.server.pid}, f)
''')
    inner.makepyfile(test_other=r'''
import json, os

def test_where(callvcr):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(f"where-{worker}-other.json", "w") as f:
        json.dump({"admin": callvcr.admin_url, "pid": callvcr.server.pid}, f)
''')
    write_cassette(inner.path, "test_other", [exchange(1, "/api/v2/users/me", {"who": "x"})])
    result = run(inner, "-n", "2", "--dist", "loadfile", "--callvcr-report", "report.xml")
    result.assert_outcomes(passed=4)
    where = {p.name: json.loads(p.read_text()) for p in inner.path.glob("where-*.json")}
    assert len(where) == 2 and all(n.startswith("where-gw") for n in where), where
    assert len({w["admin"] for w in where.values()}) == 2
    for w in where.values():
        with pytest.raises(ProcessLookupError):
            os.kill(w["pid"], 0)
    # One report, merged from both workers' replays.
    text = (inner.path / "report.xml").read_text()
    assert text.count("<testsuite ") == 2 and 'name="test_order.py::test_b"' in text and 'name="test_other.py::test_where"' in text


def test_one_process_per_cassette_and_marker_values_stopped_at_the_end(inner):
    write_cassette(inner.path, "test_pool", [exchange(1, "/api/v2/users/me", {"who": "pool"})])
    write_cassette(inner.path, "named", [exchange(1, "/api/v2/users/me", {"who": "named"})])
    inner.makepyfile(test_pool=r'''
        import json
        import pytest

        seen = {}

        def note(name, callvcr):
            seen[name] = (callvcr.admin_url, callvcr.server.pid, callvcr.server.cassette)
            with open("pids.json", "w") as f:
                json.dump([v[1] for v in seen.values()], f)

        def test_default_1(callvcr):
            note("d1", callvcr)

        def test_default_2(callvcr):
            note("d2", callvcr)

        @pytest.mark.callvcr(overlays_off=["auth"])
        def test_auth_off(callvcr):
            note("off", callvcr)

        @pytest.mark.callvcr("named")
        class TestNamed:
            def test_named(self, callvcr, http):
                note("named", callvcr)
                http.sign_in("c1", "s1")
                assert http.api("GET", "/api/v2/users/me").json["who"] == "named"

            @pytest.mark.callvcr(overlays_off=["auth"])
            def test_named_auth_off(self, callvcr):
                note("named-off", callvcr)

        def test_check():
            assert seen["d1"] == seen["d2"]
            assert seen["d1"][2] == "test_pool"
            assert len({v[0] for v in seen.values()}) == 4
            assert seen["named"][2] == seen["named-off"][2] == "named"
    ''')
    result = run(inner)
    result.assert_outcomes(passed=6)
    pids = json.loads((inner.path / "pids.json").read_text())
    assert len(set(pids)) == 4
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_cassette_option_and_an_unknown_marker_key(inner):
    write_cassette(inner.path, "everyone", [exchange(1, "/api/v2/users/me", {"who": "everyone"})])
    inner.makepyfile(test_opt=r'''
        import pytest

        def test_uses_the_option(callvcr):
            assert callvcr.server.health()["cassette"] == "everyone"

        @pytest.mark.callvcr(casette="typo")
        def test_typo(callvcr):
            pass
    ''')
    result = run(inner, "--callvcr-cassette", "everyone")
    result.assert_outcomes(passed=1, errors=1)
    assert "unknown casette" in result.stdout.str()


def test_callvcr_dir_holds_certs_and_cassettes(inner):
    write_cassette(inner.path / "vcr", "test_dir", [exchange(1, "/api/v2/users/me", {"who": "dir"})])
    inner.makepyfile(test_dir=r'''
        import os

        def test_dir(callvcr, http):
            assert callvcr.ca_path == os.path.join(os.getcwd(), "vcr", "certs", "ca.pem")
            assert os.path.isfile(callvcr.ca_path)
            http.sign_in()
            assert http.api("GET", "/api/v2/users/me").json["who"] == "dir"
    ''')
    run(inner, "--callvcr-dir", "vcr").assert_outcomes(passed=1)
    assert not (inner.path / "certs").exists()
