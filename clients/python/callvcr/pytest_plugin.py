"""The pytest plugin: each test runs in its own callvcr test scope, and a test whose requests
missed the cassette fails with the explanation.

- callvcr processes are started lazily, one per distinct (cassette, mode, overlays off, clock),
  kept for the session (per xdist worker: each worker has its own) and stopped at its end.
- The `callvcr` fixture opens the test's scope (its pytest node id) before the test and ends it
  after; its helpers call the admin API for that test (`fault`, `expire_tokens`, `journal`, ...).
- Misses are read from the scope's summary right after the test's call phase and turn a passing
  test into a failing one; misses made later (by fixture teardown) fail the teardown instead.

What it does not do: install or build callvcr, redirect an SDK by itself (the test passes `env`,
`proxy_url` or `configure_genesys` on), or share one callvcr between xdist workers.
"""

from __future__ import annotations

import os
import re
import shutil
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Optional, Tuple

import pytest

from . import Callvcr, CallvcrAdminError

MODES = ("replay", "record", "missing")
MARKER_KEYS = ("cassette", "overlays_off", "clock_frozen", "clock_start")

_ACTIVE = pytest.StashKey["CallvcrTest"]()
_POOL = pytest.StashKey["Pool"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("callvcr", "callvcr: record and replay platform traffic")
    g.addoption(
        "--callvcr-mode", choices=MODES, default=None,
        help="replay (default); record = `record --by-scope` (a test re-run replaces only its own "
        "exchanges); missing = `record --missing` (replay what matches, record what misses)",
    )
    g.addoption("--callvcr-cassette", default=None, metavar="NAME",
                help="cassette for every test (default: one per test module, named after its path)")
    g.addoption("--callvcr-bin", default=None, metavar="PATH",
                help="the callvcr binary (default: $CALLVCR_BIN, else `callvcr` on PATH)")
    g.addoption("--callvcr-dir", default=None, metavar="DIR",
                help="callvcr's working directory, holding certs/ and cassettes/ (default: rootdir)")
    g.addoption("--callvcr-allow-misses", action="store_true", default=False,
                help="do not fail tests whose requests missed the cassette")
    g.addoption("--callvcr-report", default=None, metavar="FILE",
                help="JUnit XML of every replay's test scopes (`replay --report`), merged into FILE")
    g.addoption("--callvcr-arg", action="append", default=[], metavar="ARG",
                help="extra argument for callvcr, repeatable; use the = form for flags: "
                "--callvcr-arg=--resolve=*=127.0.0.1:8443")
    parser.addini("callvcr_mode", "default for --callvcr-mode", default="replay")
    parser.addini("callvcr_dir", "default for --callvcr-dir (relative to rootdir)", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "callvcr(cassette=None, overlays_off=(), clock_frozen=False, clock_start=None): the callvcr "
        "process the `callvcr` fixture uses for this test (closest marker wins per key)",
    )
    pool = config.stash[_POOL] = Pool(config)
    if pool.mode() not in MODES:
        raise pytest.UsageError(f"callvcr_mode must be one of {', '.join(MODES)}, not {pool.mode()!r}")
    report = config.getoption("callvcr_report")
    if report and not _is_worker(config):
        # Parts from an earlier run would be merged into this one's report.
        shutil.rmtree(_parts_dir(config), ignore_errors=True)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stops every callvcr this process started (in parallel; each drains and writes its report),
    then, outside xdist workers, merges the reports into `--callvcr-report`."""
    pool = session.config.stash.get(_POOL, None)
    if pool is None:
        return
    pool.stop_all()
    if session.config.getoption("callvcr_report") and not _is_worker(session.config):
        _merge_reports(_parts_dir(session.config), _report_path(session.config))


class Pool:
    """The callvcr processes of this pytest process, by what tells them apart."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.servers: Dict[Tuple, Callvcr] = {}

    def mode(self) -> str:
        return self.config.getoption("callvcr_mode") or self.config.getini("callvcr_mode") or "replay"

    def workdir(self) -> str:
        d = self.config.getoption("callvcr_dir") or self.config.getini("callvcr_dir")
        return os.path.abspath(os.path.join(str(self.config.rootpath), d)) if d else str(self.config.rootpath)

    def get(self, cassette: str, overlays_off: Tuple[str, ...], clock_frozen: bool,
            clock_start: Optional[str]) -> Callvcr:
        mode = self.mode()
        # A recording runs no overlays and has the platform's clock: one recorder per cassette,
        # whatever the markers say (two would contend for the cassette's writer lock).
        key = (cassette, mode) + ((overlays_off, clock_frozen, clock_start) if mode == "replay" else ())
        server = self.servers.get(key)
        if server is None:
            opt = self.config.getoption
            report = None
            if mode == "replay" and opt("callvcr_report"):
                parts = _parts_dir(self.config)
                os.makedirs(parts, exist_ok=True)
                report = os.path.join(parts, f"{_worker_id(self.config)}-{os.getpid()}-{len(self.servers)}.xml")
            server = Callvcr(
                cassette,
                "replay" if mode == "replay" else "record",
                binary=opt("callvcr_bin"),
                cwd=self.workdir(),
                missing=mode == "missing",
                by_scope=mode == "record",
                overlays_off=overlays_off,
                clock_frozen=clock_frozen,
                clock_start=clock_start,
                report=report,
                extra_args=opt("callvcr_arg"),
            )
            server.start()
            self.servers[key] = server
        return server

    def stop_all(self) -> None:
        servers, self.servers = list(self.servers.values()), {}
        for s in servers:
            s.interrupt()
        for s in servers:
            s.wait()


def default_cassette(item: pytest.Item) -> str:
    """The module's path from rootdir without `.py`, every other character than letters,
    digits, `-` and `_` made `_`: `tests/test_calls.py` → `tests_test_calls`."""
    path = item.nodeid.split("::", 1)[0]
    if path.endswith(".py"):
        path = path[:-3]
    return re.sub(r"[^A-Za-z0-9_-]", "_", path)


def _settings(item: pytest.Item) -> Dict[str, Any]:
    """The closest `callvcr` marker's value for each key (a test's over its class's over its
    module's), then `--callvcr-cassette`, then the module default."""
    merged: Dict[str, Any] = {}
    for mark in item.iter_markers("callvcr"):
        kwargs = dict(mark.kwargs)
        if mark.args:
            kwargs.setdefault("cassette", mark.args[0])
        unknown = set(kwargs) - set(MARKER_KEYS)
        if unknown:
            pytest.fail(
                f"{item.nodeid}: callvcr marker: unknown {', '.join(sorted(unknown))} "
                f"(known: {', '.join(MARKER_KEYS)})",
                pytrace=False,
            )
        for k, v in kwargs.items():
            merged.setdefault(k, v)
    off = merged.get("overlays_off") or ()
    if isinstance(off, str):
        off = [off]
    return {
        "cassette": merged.get("cassette") or item.config.getoption("callvcr_cassette") or default_cassette(item),
        "overlays_off": tuple(sorted(off)),
        "clock_frozen": bool(merged.get("clock_frozen", False)),
        "clock_start": merged.get("clock_start"),
    }


@pytest.fixture
def callvcr(request: pytest.FixtureRequest):
    """This test's callvcr: a scope named after its node id, opened before the test and ended
    after, on the process its marker (or the module default) selects. See `CallvcrTest`."""
    item = request.node
    pool = request.config.stash[_POOL]
    server = pool.get(**_settings(item))
    test = CallvcrTest(server, item.nodeid)
    server.open_scope(test.scope)
    item.stash[_ACTIVE] = test
    try:
        yield test
    finally:
        if _ACTIVE in item.stash:
            del item.stash[_ACTIVE]
        late = test._teardown()
    if late and not request.config.getoption("callvcr_allow_misses"):
        pytest.fail(_explain(test.scope, late, "after the test (in fixture teardown)"), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Right after the test's call phase (its scope still open), reads the scope's misses: a
    passing test that missed becomes a failing one, whose report names each miss and the closest
    recording; a test that failed anyway gets them as a report section, since a miss is often why."""
    outcome = yield
    if call.when != "call":
        return
    test = item.stash.get(_ACTIVE, None)
    if test is None:
        return
    report = outcome.get_result()
    try:
        missed = test.misses()
    except Exception as e:  # the process died: say so on the test rather than crash the run
        report.sections.append(("callvcr", f"could not read the scope's misses: {e}"))
        return
    test._reported = len(missed)
    if not missed:
        return
    text = _explain(test.scope, missed, "")
    if item.config.getoption("callvcr_allow_misses") or report.skipped or hasattr(report, "wasxfail"):
        report.sections.append(("callvcr misses", text))
    elif report.passed:
        report.outcome = "failed"
        report.longrepr = text
    else:
        report.sections.append(("callvcr misses", text))


def _explain(scope: str, missed: List[str], when: str) -> str:
    head = f"callvcr: {len(missed)} request(s) of {scope} missed the cassette{(' ' + when) if when else ''}:"
    return "\n".join([head] + [f"  miss: {m}" for m in missed] + [
        "Re-record with --callvcr-mode record (this test's exchanges only) or missing, "
        "or pass --callvcr-allow-misses."
    ])


class Fault:
    """A fault rule added for one test. As a context manager it is removed on exit; any still
    in place when the test ends is removed then, so no fault outlives its test."""

    def __init__(self, test: "CallvcrTest", fault_id: str, rule: Dict[str, Any]):
        self.test = test
        self.id = fault_id
        self.rule = rule
        self.removed = False

    def remove(self) -> None:
        """Removes the rule (once; a rule its window already used up is still removed)."""
        if not self.removed:
            self.removed = True
            try:
                self.test.server.remove_fault(self.id)
            except CallvcrAdminError as e:
                if e.status != 404:
                    raise

    def __enter__(self) -> "Fault":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class CallvcrTest:
    """What the `callvcr` fixture gives a test: where callvcr is, and its admin calls made for
    this test's scope.

    The process may be shared with other tests (same cassette and marker values): tokens it
    issued, its clock and its call sessions carry over from one test to the next, while FIFO
    positions do not (opening a scope rewinds its own recordings). A test that needs a clock or
    overlays of its own says so in its `callvcr` marker and gets a process of its own.
    """

    def __init__(self, server: Callvcr, scope: str):
        self.server = server
        #: The test's scope: its pytest node id.
        self.scope = scope
        #: The header naming the scope per request, for a client shared between tests.
        self.scope_header = {"x-callvcr-scope": scope}
        self._faults: List[Fault] = []
        self._reported = 0

    @property
    def env(self) -> Dict[str, str]:
        """The variables `callvcr run` sets (proxy, CA bundle, admin URL, ...)."""
        return self.server.env()

    def apply_env(self, monkeypatch: pytest.MonkeyPatch) -> Dict[str, str]:
        """Sets `env` in this process for the test (undone after it), for clients that read it
        when they are made (`requests`, a fresh `urllib` opener). Returns it."""
        env = self.env
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        return env

    @property
    def proxy_url(self) -> str:
        """`http://127.0.0.1:<port>`, for `HTTPS_PROXY` or an SDK's proxy setting."""
        return self.server.proxy_url

    @property
    def ca_path(self) -> str:
        """callvcr's CA (PEM), for clients given one trust file for the platform."""
        return self.server.ca_path

    @property
    def bundle_path(self) -> str:
        """The system's roots plus callvcr's CA."""
        return self.server.bundle_path

    @property
    def admin_url(self) -> str:
        """The admin API's URL."""
        return self.server.admin_url

    def ssl_context(self):
        """A client `ssl.SSLContext` trusting callvcr's CA, whatever the environment says."""
        return self.server.ssl_context()

    def configure_genesys(self, configuration: Any = None) -> Any:
        """Points a Genesys Python SDK `Configuration` at callvcr: `.proxy` and `.ssl_ca_cert`,
        since that SDK reads neither `HTTPS_PROXY` nor `SSL_CERT_FILE`. Without an argument,
        the SDK's module-wide `PureCloudPlatformClientV2.configuration`. Returns it."""
        if configuration is None:
            import PureCloudPlatformClientV2  # noqa: the SDK is optional

            configuration = PureCloudPlatformClientV2.configuration
        configuration.proxy = self.proxy_url
        configuration.ssl_ca_cert = self.ca_path
        return configuration

    def expire_tokens(self, client_id: Optional[str] = None) -> int:
        """Expires the auth overlay's access tokens (all, or one client's); returns how many.
        The next call with one gets the platform's 401 `credentials.expired`."""
        return self.server.expire_tokens(client_id=client_id)

    def clock(self) -> str:
        """The virtual clock's now."""
        return self.server.clock()

    def advance_clock(self, ms: int) -> str:
        """Moves the virtual clock on by `ms`; returns the new now."""
        return self.server.advance_clock(ms)

    def set_clock(self, when: str) -> str:
        """Sets the virtual clock (RFC 3339); returns the new now."""
        return self.server.set_clock(when)

    def transition(self, session: str, to: str, from_: Optional[str] = None,
                   metadata: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Moves a call session as the platform would on its own (a customer hanging up)."""
        return self.server.transition(session, to, from_=from_, metadata=metadata)

    def release(self, session: str, participant_id: Optional[str] = None) -> Dict[str, Any]:
        """Lets a held move happen (a machine's `hold` rule)."""
        return self.server.release(session, participant_id)

    def session(self, session: str) -> Dict[str, Any]:
        """The state overlay's view of a call session."""
        return self.server.session(session)

    def push_event(self, event: Any, session: Optional[str] = None, topic: Optional[str] = None,
                   delay_ms: Optional[int] = None, **more: Any) -> int:
        """Queues a WebSocket message; returns how many sessions it went to."""
        return self.server.push_event(event, session=session, topic=topic, delay_ms=delay_ms, **more)

    def fault(self, kind: str, **rule: Any) -> Fault:
        """Adds fault rule `{"kind": kind, **rule}` (e.g. `status=503, match={"path": ...}`);
        use the answer as a context manager to remove it on exit."""
        body = {"kind": kind, **rule}
        f = Fault(self, self.server.add_fault(body), body)
        self._faults.append(f)
        return f

    def journal(self) -> List[Dict[str, Any]]:
        """This test's journal entries (those whose `scope` is this test's)."""
        return [e for e in self.server.journal() if e.get("scope") == self.scope]

    def summary(self) -> Optional[Dict[str, Any]]:
        """This scope's entry of `GET /mock/admin/scopes` (hits, misses, unused, ...), or `None`
        before its first request."""
        return next((s for s in self.server.scopes() if s.get("name") == self.scope), None)

    def misses(self) -> List[str]:
        """This test's misses so far, each explained (the request, the closest recording and
        what differs)."""
        s = self.summary()
        return list(s.get("missed") or []) if s else []

    def _teardown(self) -> List[str]:
        """Removes this test's faults, ends its scope, and returns the misses not yet reported."""
        try:
            for f in self._faults:
                f.remove()
            late = self.misses()[self._reported:]
        finally:
            try:
                if self.server.current_scope() == self.scope:
                    self.server.open_scope(None)
            except Exception:
                pass
        return late


# ----- reports ------------------------------------------------------------------------------------

def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _worker_id(config: pytest.Config) -> str:
    return config.workerinput["workerid"] if _is_worker(config) else "main"


def _report_path(config: pytest.Config) -> str:
    return os.path.join(str(config.rootpath), config.getoption("callvcr_report"))


def _parts_dir(config: pytest.Config) -> str:
    return _report_path(config) + ".parts"


def _merge_reports(parts: str, out: str) -> None:
    """One `<testsuites>` holding every replay's `<testsuite>`s (each process writes its own
    file; xdist workers write theirs before the controller gets here)."""
    if not os.path.isdir(parts):
        return
    merged = ET.Element("testsuites", name="callvcr")
    tests = failures = 0
    for name in sorted(os.listdir(parts)):
        try:
            root = ET.parse(os.path.join(parts, name)).getroot()
        except (ET.ParseError, OSError):
            continue
        for suite in root.iter("testsuite"):
            merged.append(suite)
            tests += int(suite.get("tests", 0))
            failures += int(suite.get("failures", 0))
    merged.set("tests", str(tests))
    merged.set("failures", str(failures))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    ET.ElementTree(merged).write(out, encoding="UTF-8", xml_declaration=True)
    shutil.rmtree(parts, ignore_errors=True)
