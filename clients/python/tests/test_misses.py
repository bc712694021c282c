"""A miss fails the test that made it, and only that one: as the test's own failure when the
test body made it, as a teardown error when fixture teardown did, in the JUnit report under the
test's node id, and not at all with --callvcr-allow-misses."""

import xml.etree.ElementTree as ET

from support import exchange, run, write_cassette

SUITE = r'''
import pytest

pytestmark = pytest.mark.callvcr(overlays_off=["auth"])

def test_a(callvcr, http):
    assert http.api("GET", "/api/v2/users/me").status == 200

def test_b_misses(callvcr, http):
    r = http.api("GET", "/api/v2/users/nobody")
    assert r.status == 404 and r.headers["x-callvcr-miss"] == "1"
    # The test itself passes; the plugin fails it for the miss.

def test_c(callvcr, http):
    assert http.api("GET", "/api/v2/routing/queues").status == 200
    assert callvcr.misses() == []
'''


def cassette(directory, name):
    write_cassette(directory, name, [
        exchange(1, "/api/v2/users/me", {"id": "u-1"}),
        exchange(2, "/api/v2/routing/queues", {"entities": []}),
    ])


def test_a_miss_fails_exactly_its_test_and_is_explained(inner):
    cassette(inner.path, "test_suite")
    inner.makepyfile(test_suite=SUITE)
    result = run(inner, "--callvcr-report", "out/callvcr.xml")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "FAILED test_suite.py::test_b_misses" in out
    assert "callvcr: 1 request(s) of test_suite.py::test_b_misses missed the cassette" in out
    assert "miss: GET api.mypurecloud.com/api/v2/users/nobody; closest recording: GET api.mypurecloud.com/api/v2/users/me" in out

    # The replay's JUnit report, one test case per scope: the miss under test_b's node id.
    root = ET.parse(inner.path / "out" / "callvcr.xml").getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {"test_suite.py::test_a", "test_suite.py::test_b_misses", "test_suite.py::test_c"}
    failure = cases["test_suite.py::test_b_misses"].find("failure")
    assert failure is not None and "miss: GET api.mypurecloud.com/api/v2/users/nobody" in failure.text
    assert cases["test_suite.py::test_a"].find("failure") is None
    assert cases["test_suite.py::test_c"].find("failure") is None
    assert (root.get("tests"), root.get("failures")) == ("3", "1")
    assert not (inner.path / "out" / "callvcr.xml.parts").exists()


def test_allow_misses_lets_the_test_pass(inner):
    cassette(inner.path, "test_suite")
    inner.makepyfile(test_suite=SUITE)
    run(inner, "--callvcr-allow-misses").assert_outcomes(passed=3)


def test_a_miss_in_fixture_teardown_errors_that_tests_teardown(inner):
    cassette(inner.path, "test_late")
    inner.makepyfile(test_late=r'''
        import pytest

        pytestmark = pytest.mark.callvcr(overlays_off=["auth"])

        @pytest.fixture
        def late(callvcr, http):
            yield
            http.api("GET", "/api/v2/late")

        def test_late(late, http):
            assert http.api("GET", "/api/v2/users/me").status == 200

        def test_after(callvcr, http):
            assert http.api("GET", "/api/v2/users/me").status == 200
    ''')
    result = run(inner)
    result.assert_outcomes(passed=2, errors=1)
    out = result.stdout.str()
    assert "ERROR at teardown of test_late" in out
    assert "missed the cassette after the test (in fixture teardown)" in out and "/api/v2/late" in out


def test_a_test_that_fails_anyway_shows_its_misses(inner):
    cassette(inner.path, "test_broken")
    inner.makepyfile(test_broken=r'''
        import pytest

        @pytest.mark.callvcr(overlays_off=["auth"])
        def test_broken(callvcr, http):
            r = http.api("GET", "/api/v2/users/nobody")
            assert r.status == 200
    ''')
    result = run(inner)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "assert 404 == 200" in out
    assert "callvcr misses" in out and "miss: GET api.mypurecloud.com/api/v2/users/nobody" in out
