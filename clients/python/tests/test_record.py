"""Record modes through the plugin, against a real HTTPS upstream: a second callvcr replaying a
hand-written cassette stands in for the platform (its CA is given as `--upstream-ca`, its TLS
listener as `--resolve`), so nothing leaves the machine and no certificate is made in Python.

- `--callvcr-mode record` records each test in its scope; re-running one test replaces only its
  own exchanges (`record --by-scope`).
- `--callvcr-mode missing` replays what the cassette holds and records only what misses.
- The recording then replays with the default mode.
"""

import json
import subprocess

import pytest

from callvcr import Callvcr, find_binary
from support import exchange, run, write_cassette

TESTS = r'''
import pytest

def who(http, path="/api/v2/users/me"):
    r = http.api("GET", path)
    assert r.status == 200, r.raw
    return r.json["who"]

def test_a(callvcr, http):
    assert who(http) in ("up-1", "up-3")

def test_b(callvcr, http):
    assert who(http) in ("up-2", "up-4")
'''


@pytest.fixture
def upstream(tmp_path):
    """The stand-in platform: answers `/api/v2/users/me` with up-1, up-2, ... in turn, and
    `/api/v2/routing/queues` once."""
    write_cassette(tmp_path, "upstream", [
        exchange(i, "/api/v2/users/me", {"who": f"up-{i}"}) for i in range(1, 5)
    ] + [exchange(5, "/api/v2/routing/queues", {"who": "queues"})])
    with Callvcr("upstream", cwd=str(tmp_path), overlays_off=["auth"]) as up:
        yield up


def record_args(up, mode):
    return ["--callvcr-mode", mode, f"--callvcr-arg=--upstream-ca={up.ca_path}",
            f"--callvcr-arg=--resolve=*={up.tls_address}"]


def exported(directory, name):
    """The cassette's exchanges as (scope, answer) pairs, from `callvcr cassette export`."""
    out = directory / f"{name}-export.jsonl"
    subprocess.run([find_binary(), "cassette", "export", name, "--out", str(out)], cwd=str(directory),
                   check=True, capture_output=True, timeout=60)
    lines = [json.loads(l) for l in out.read_text().splitlines()[1:]]
    return [(e.get("scope"), e["response"]["body"]["json"]["who"]) for e in lines if "request" in e]


def test_record_by_scope_then_replay_then_record_one_test_again(inner, upstream):
    inner.makepyfile(test_rec=TESTS + r'''
@pytest.mark.callvcr(overlays_off=["auth"])
def test_c_mode(callvcr):
    assert callvcr.server.health()["mode"] == "record"
    assert "--by-scope" in callvcr.server.command() and "--no-overlay" not in callvcr.server.command()
    import os
    if os.path.exists(f"/proc/{callvcr.server.pid}/cmdline"):  # Linux: what really runs
        cmdline = open(f"/proc/{callvcr.server.pid}/cmdline").read().split("\0")
        assert "--by-scope" in cmdline and "--no-overlay" not in cmdline
''')
    run(inner, *record_args(upstream, "record")).assert_outcomes(passed=3)
    assert exported(inner.path, "test_rec") == [("test_rec.py::test_a", "up-1"), ("test_rec.py::test_b", "up-2")]

    # Replayed (no upstream used): each test its own recording.
    before = len(upstream.journal())
    run(inner, "-k", "test_a or test_b").assert_outcomes(passed=2)
    assert len(upstream.journal()) == before

    # test_a alone recorded again: its exchange replaced, test_b's kept.
    run(inner, "-k", "test_a", *record_args(upstream, "record")).assert_outcomes(passed=1)
    assert exported(inner.path, "test_rec") == [("test_rec.py::test_b", "up-2"), ("test_rec.py::test_a", "up-3")]


def test_missing_mode_records_only_what_misses(inner, upstream):
    inner.makepyfile(test_rec=TESTS)
    run(inner, "-k", "test_a", *record_args(upstream, "record")).assert_outcomes(passed=1)
    # A new test: in `missing` mode its request is recorded, and test_a replays. (test_b is left
    # out: a scope with no recording of a request shares the others', so it would not miss.)
    inner.makepyfile(test_rec=TESTS + r'''
def test_c_new(callvcr, http):
    assert who(http, "/api/v2/routing/queues") == "queues"
''')
    run(inner, "-k", "not test_b", *record_args(upstream, "missing")).assert_outcomes(passed=2)
    forwarded = [e["path"] for e in upstream.journal()]
    assert forwarded == ["/api/v2/users/me", "/api/v2/routing/queues"], forwarded
    assert exported(inner.path, "test_rec") == [("test_rec.py::test_a", "up-1"), ("test_rec.py::test_c_new", "queues")]
    # Both replay now.
    run(inner, "-k", "not test_b").assert_outcomes(passed=2)
