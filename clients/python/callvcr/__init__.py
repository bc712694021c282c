"""Drive a callvcr process from Python: start it on free ports, wait until it is ready, call its
admin API, stop it.

`Callvcr` starts the binary (`callvcr replay ...` or `callvcr record ...`) with every listener on
`127.0.0.1:0` and a ready file, so any number of them (one per pytest-xdist worker, one per
cassette) run side by side without a port ever being chosen by hand. It does not know pytest; the
pytest plugin (`callvcr.pytest_plugin`) builds on it.

Only the standard library is used: `subprocess` for the process, `urllib` for the admin API.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any, Dict, Iterable, List, Optional, Sequence

__all__ = [
    "Callvcr",
    "CallvcrError",
    "CallvcrStartError",
    "CallvcrAdminError",
    "find_binary",
    "NO_PROXY",
]

__version__ = "0.1.0"

#: What `callvcr run` puts in `NO_PROXY`: loopback stays direct, so the admin API is never proxied.
NO_PROXY = "127.0.0.1,localhost,::1"

# Where the system's roots usually are. The environment (`SSL_CERT_FILE`) is deliberately not
# read: under callvcr it may already point at a bundle made here, which would then grow each run.
_SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",  # macOS, Alpine, OpenBSD
    "/etc/ssl/ca-bundle.pem",  # openSUSE
)


class CallvcrError(Exception):
    """Base of the errors this package raises."""


class CallvcrStartError(CallvcrError):
    """The process did not become ready: it exited, or the ready file did not come in time.
    The message carries the end of its log, which names the cause (a bad flag, a missing
    cassette, a port in use)."""


class CallvcrAdminError(CallvcrError):
    """An admin call answered 4xx/5xx. `status` is the HTTP status, `error` and `message` the
    fields of callvcr's JSON error (`{"error": "<code>", "message": "..."}`), `body` the whole
    decoded answer (or its text when it is not JSON)."""

    def __init__(self, method: str, path: str, status: int, body: Any):
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        self.error = body.get("error") if isinstance(body, dict) else None
        self.message = body.get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"callvcr admin {method} {path}: {status} {self.error or ''} {self.message or ''}".rstrip())


def find_binary(explicit: Optional[str] = None) -> str:
    """The callvcr binary to run: `explicit`, else `$CALLVCR_BIN`, else `callvcr` on `PATH`."""
    candidate = explicit or os.environ.get("CALLVCR_BIN")
    if candidate:
        path = os.path.abspath(os.path.expanduser(candidate))
        if not os.access(path, os.X_OK):
            raise CallvcrStartError(f"callvcr binary {path} does not exist or is not executable")
        return path
    found = shutil.which("callvcr")
    if not found:
        raise CallvcrStartError(
            "no callvcr binary: set CALLVCR_BIN, pass --callvcr-bin, or put `callvcr` on PATH "
            "(`cargo build` makes target/debug/callvcr)"
        )
    return found


class Callvcr:
    """One callvcr process and its admin API.

    `mode` is `"replay"` or `"record"`; `missing=True` makes a recording `record --missing`
    (replay what matches, record what misses) and `by_scope=True` makes it `record --by-scope`
    (each test scope that records replaces only its own exchanges). Replay-only settings
    (`overlays_off`, `clock_frozen`, `clock_start`, `report`) are not passed to a recording, since
    the platform itself answers there and the binary refuses them.

    `cwd` is the binary's working directory (default: the current one); `certs` and `cassettes`
    are passed as `--certs` / `--cassettes` and resolved against it (defaults `certs`,
    `cassettes`). The CA is made there on first use (`certs/ca.pem`). `config` is a proxy.yaml;
    without it the binary reads `./proxy.yaml` in `cwd` when there is one.

    In replay, a cassette *name* whose store `cassettes/NAME/` does not exist but whose
    `cassettes/NAME.jsonl` does is replayed from that file, so a hand-written or exported
    cassette needs no import step.

    Use it as a context manager, or call `start()` and `stop()`.
    """

    def __init__(
        self,
        cassette: str,
        mode: str = "replay",
        *,
        binary: Optional[str] = None,
        cwd: Optional[str] = None,
        certs: Optional[str] = None,
        cassettes: Optional[str] = None,
        config: Optional[str] = None,
        missing: bool = False,
        by_scope: bool = False,
        overlays_off: Iterable[str] = (),
        clock_frozen: bool = False,
        clock_start: Optional[str] = None,
        report: Optional[str] = None,
        upstream_ca: Optional[str] = None,
        resolve: Iterable[str] = (),
        extra_args: Sequence[str] = (),
        ready_timeout: float = 60.0,
        env: Optional[Dict[str, str]] = None,
    ):
        if mode not in ("replay", "record"):
            raise ValueError(f"mode must be 'replay' or 'record', not {mode!r}")
        if missing and by_scope:
            raise ValueError("record --missing and --by-scope exclude each other")
        self.cassette = cassette
        self.mode = mode
        self.binary = find_binary(binary)
        self.cwd = os.path.abspath(cwd or os.getcwd())
        self.certs_dir = os.path.join(self.cwd, certs or "certs")
        self.cassettes_dir = os.path.join(self.cwd, cassettes or "cassettes")
        self.config = config
        self.missing = missing
        self.by_scope = by_scope
        self.overlays_off = list(overlays_off)
        self.clock_frozen = clock_frozen
        self.clock_start = clock_start
        self.report = os.path.join(self.cwd, report) if report else None
        self.upstream_ca = upstream_ca
        self.resolve = list(resolve)
        self.extra_args = list(extra_args)
        self.ready_timeout = ready_timeout
        self.process_env = env
        self.addresses: Dict[str, str] = {}
        self.returncode: Optional[int] = None
        self._proc: Optional[subprocess.Popen] = None
        self._tmp: Optional[str] = None
        self._log = None
        self._log_text = ""
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # ----- the process -------------------------------------------------------------------------

    def command(self) -> List[str]:
        """The command line `start()` runs, for logs and error messages."""
        ready = os.path.join(self._tmp or "<tmp>", "ready.json")
        args = [self.binary, self.mode, "--cassette", self._cassette_arg()]
        if self.mode == "record":
            if self.missing:
                args.append("--missing")
            if self.by_scope:
                args.append("--by-scope")
            if self.upstream_ca:
                args += ["--upstream-ca", self.upstream_ca]
        else:
            for name in self.overlays_off:
                args += ["--no-overlay", name]
            if self.clock_frozen:
                args.append("--clock-frozen")
            if self.clock_start:
                args += ["--clock-start", self.clock_start]
            if self.report:
                args += ["--report", self.report]
        for r in self.resolve:
            args += ["--resolve", r]
        if self.config:
            args += ["--config", self.config]
        args += [
            "--certs", self.certs_dir,
            "--cassettes", self.cassettes_dir,
            "--listen", "127.0.0.1:0",
            "--proxy-listen", "127.0.0.1:0",
            "--admin", "127.0.0.1:0",
            "--ready-file", ready,
        ]
        return args + self.extra_args

    def _cassette_arg(self) -> str:
        c = self.cassette
        if self.mode != "replay" or c.endswith((".jsonl", ".har")) or os.sep in c or "/" in c:
            return c
        store = os.path.join(self.cassettes_dir, c)
        file = store + ".jsonl"
        if not os.path.exists(store) and os.path.isfile(file):
            return file
        return c

    @property
    def pid(self) -> Optional[int]:
        """The process id, while it runs."""
        return self._proc.pid if self._proc else None

    def start(self) -> "Callvcr":
        """Starts the process and returns once its ready file names every bound address.
        Raises `CallvcrStartError` with the end of its log when it exits first or is not ready
        within `ready_timeout` seconds (a replay may first wait for another process writing the
        cassette's replay file)."""
        if self._proc:
            return self
        # The ready file and the log live in a directory of this process's own, so any number of
        # pytest processes (xdist workers) and callvcr processes never share one.
        self._tmp = tempfile.mkdtemp(prefix=f"callvcr-{os.getpid()}-")
        ready = os.path.join(self._tmp, "ready.json")
        self._log = open(os.path.join(self._tmp, "callvcr.log"), "w+b")
        env = dict(os.environ if self.process_env is None else self.process_env)
        env.setdefault("CALLVCR_NO_STATUS", "1")
        self._proc = subprocess.Popen(
            self.command(), cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.monotonic() + self.ready_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self.returncode = code
                self._proc = None
                raise CallvcrStartError(
                    f"callvcr exited with {code} before it was ready: {' '.join(self.command())}\n{self._close_log()}"
                )
            try:
                with open(ready, encoding="utf-8") as f:
                    addresses = json.load(f)
                if all(k in addresses for k in ("tls", "proxy", "admin")):
                    self.addresses = addresses
                    break
            except (OSError, ValueError):
                pass  # not written yet, or half written
            if time.monotonic() > deadline:
                self._kill()
                raise CallvcrStartError(
                    f"callvcr was not ready within {self.ready_timeout:.0f}s: {' '.join(self.command())}\n"
                    f"{self._close_log()}"
                )
            time.sleep(0.02)
        self.write_bundle()
        return self

    def interrupt(self) -> None:
        """Sends SIGINT: callvcr stops accepting, lets in-flight requests finish (up to 5 s),
        flushes the cassette, writes its report and prints its summary. `wait()` for it."""
        if self._proc and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)

    def wait(self, timeout: float = 15.0) -> Optional[int]:
        """Waits for the process to end (killing it after `timeout` seconds) and returns its exit
        code: 0 ok, 1 strict replay misses, 2 bad usage or configuration."""
        if not self._proc:
            return self.returncode
        try:
            self.returncode = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
        self._proc = None
        self._close_log()
        return self.returncode

    def stop(self, timeout: float = 15.0) -> Optional[int]:
        """SIGINT, then waits (bounded) for the drain; returns the exit code."""
        self.interrupt()
        return self.wait(timeout)

    def _kill(self) -> None:
        if self._proc:
            self._proc.kill()
            self.returncode = self._proc.wait()
            self._proc = None

    def _close_log(self) -> str:
        """Keeps the end of the log for `log()` and removes the private directory."""
        if self._log:
            self._log.flush()
            self._log.seek(0)
            self._log_text = self._log.read().decode("utf-8", "replace")[-8000:]
            self._log.close()
            self._log = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        return self._log_text

    def log(self) -> str:
        """What the process wrote so far (its log lines and, once stopped, its summary)."""
        if self._log:
            self._log.flush()
            with open(self._log.name, "rb") as f:
                return f.read().decode("utf-8", "replace")
        return self._log_text

    def __enter__(self) -> "Callvcr":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----- where it is -------------------------------------------------------------------------

    @property
    def proxy_url(self) -> str:
        """`http://127.0.0.1:<port>`: the HTTP proxy listener (CONNECT and absolute-form)."""
        return f"http://{self.addresses['proxy']}"

    @property
    def admin_url(self) -> str:
        """`http://127.0.0.1:<port>`: the admin API."""
        return f"http://{self.addresses['admin']}"

    @property
    def tls_address(self) -> str:
        """`127.0.0.1:<port>`: the transparent TLS listener (for a hosts-file redirect)."""
        return self.addresses["tls"]

    @property
    def ca_path(self) -> str:
        """callvcr's CA certificate (`certs/ca.pem`), made on first start."""
        return os.path.join(self.certs_dir, "ca.pem")

    @property
    def bundle_path(self) -> str:
        """`certs/bundle.pem`: the system's roots plus callvcr's CA, as `callvcr run` gives it."""
        return os.path.join(self.certs_dir, "bundle.pem")

    def write_bundle(self) -> str:
        """Writes `bundle_path` for runtimes that replace their roots with the one file they are
        given (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`): a bundle of callvcr's CA
        alone would make them distrust everything else. Written to a temporary file and renamed,
        so processes writing it at once never leave a half-written one."""
        parts = []
        for candidate in _system_bundles():
            try:
                with open(candidate, encoding="utf-8", errors="replace") as f:
                    parts.append(f.read().rstrip("\n") + "\n")
                break
            except OSError:
                continue
        with open(self.ca_path, encoding="utf-8") as f:
            parts.append(f.read().rstrip("\n") + "\n")
        tmp = f"{self.bundle_path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(parts))
        os.replace(tmp, self.bundle_path)
        return self.bundle_path

    def env(self) -> Dict[str, str]:
        """The variables `callvcr run` gives its command, for a subprocess or `monkeypatch`."""
        bundle = self.bundle_path
        return {
            "HTTPS_PROXY": self.proxy_url,
            "https_proxy": self.proxy_url,
            "NO_PROXY": NO_PROXY,
            "no_proxy": NO_PROXY,
            "SSL_CERT_FILE": bundle,
            "REQUESTS_CA_BUNDLE": bundle,
            "CURL_CA_BUNDLE": bundle,
            "NODE_EXTRA_CA_CERTS": self.ca_path,
            "CALLVCR_ADMIN": self.admin_url,
            "CALLVCR_PROXY": self.proxy_url,
            "CALLVCR_CA": self.ca_path,
            "CALLVCR_REDIRECT": "proxy",
        }

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting callvcr's CA only, built explicitly so that no
        `SSL_CERT_FILE` in the environment changes what it trusts."""
        return ssl.create_default_context(cafile=self.ca_path)

    # ----- the admin API -----------------------------------------------------------------------

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """One admin call; returns the decoded JSON answer. A body is sent as JSON with
        `Content-Type: application/json`, which callvcr requires of every state-changing call
        with a body (so no cross-site "simple" request reaches it); a POST without a body sends
        `{}`. Raises `CallvcrAdminError` on a 4xx/5xx answer."""
        if not self.addresses:
            raise CallvcrError("callvcr is not running: start() it first")
        data = None
        headers = {"Accept": "application/json"}
        if body is not None or method in ("POST", "PUT", "PATCH"):
            data = json.dumps({} if body is None else body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.admin_url + path, data=data, method=method, headers=headers)
        try:
            with self._opener.open(req, timeout=30) as resp:
                return _decode(resp.read())
        except urllib.error.HTTPError as e:
            raise CallvcrAdminError(method, path, e.code, _decode(e.read())) from None
        except urllib.error.URLError as e:
            code = self._proc.poll() if self._proc else self.returncode
            state = "still running" if code is None else f"exited with {code}"
            raise CallvcrError(f"callvcr admin {method} {path}: {e.reason} (callvcr {state})\n{self.log()[-2000:]}") from None

    def health(self) -> Dict[str, Any]:
        """`GET /mock/admin/health`: mode, cassette, overlays, clock."""
        return self.admin("GET", "/mock/admin/health")

    def open_scope(self, name: Optional[str]) -> Optional[str]:
        """Opens test scope `name` (ending the one open; replaying, its own recordings start
        again from its first), or ends the open one with `None`."""
        return self.admin("POST", "/mock/admin/scope", {"name": name})["scope"]

    def current_scope(self) -> Optional[str]:
        """The scope open now, or `None`."""
        return self.admin("GET", "/mock/admin/scope")["scope"]

    def scopes(self) -> List[Dict[str, Any]]:
        """`GET /mock/admin/scopes`: per scope seen in this run, hits, misses with their
        explanation (`missed`), overlay answers, faults fired and unused recordings."""
        return self.admin("GET", "/mock/admin/scopes")

    def journal(self) -> List[Dict[str, Any]]:
        """The last 10,000 requests: method, host, path, status, `answered_by`, `detail`, `scope`."""
        return self.admin("GET", "/mock/admin/journal")

    def clock(self) -> str:
        """The virtual clock's now (RFC 3339)."""
        return self.admin("GET", "/mock/admin/clock")["now"]

    def advance_clock(self, ms: int) -> str:
        """Moves the virtual clock `ms` milliseconds on; returns the new now."""
        return self.admin("POST", "/mock/admin/clock", {"advance_ms": int(ms)})["now"]

    def set_clock(self, when: str) -> str:
        """Sets the virtual clock to `when` (RFC 3339); returns the new now."""
        return self.admin("POST", "/mock/admin/clock", {"set": when})["now"]

    def expire_tokens(self, client_id: Optional[str] = None, token: Optional[str] = None) -> int:
        """Expires access tokens the auth overlay issued: all, one client's, or one token.
        Returns how many."""
        body: Dict[str, Any] = {}
        if client_id is not None:
            body["client_id"] = client_id
        if token is not None:
            body["token"] = token
        return self.admin("POST", "/mock/admin/tokens/expire", body)["expired"]

    def tokens(self) -> List[Dict[str, Any]]:
        """The tokens the auth overlay issued (prefix, client, kind, expiry)."""
        return self.admin("GET", "/mock/admin/tokens")

    def add_fault(self, rule: Dict[str, Any]) -> str:
        """Adds a fault rule (`{"kind", "match"?, ...}`, see the README's faults overlay);
        returns its id."""
        return self.admin("POST", "/mock/admin/faults", rule)["id"]

    def remove_fault(self, fault_id: Optional[str] = None) -> int:
        """Removes one fault rule, or every one with `None`; returns how many."""
        path = "/mock/admin/faults" + (f"/{fault_id}" if fault_id else "")
        return self.admin("DELETE", path)["removed"]

    def faults(self) -> List[Dict[str, Any]]:
        """The fault rules, with what is left of their windows."""
        return self.admin("GET", "/mock/admin/faults")

    def push_event(
        self,
        event: Any,
        session: Optional[str] = None,
        topic: Optional[str] = None,
        delay_ms: Optional[int] = None,
        **more: Any,
    ) -> int:
        """Queues WebSocket message `event` to one session, to the sessions subscribed to
        `topic`, or (neither) to every open session; `more` passes `jitter_ms`, `duplicate`,
        `reorder`. Returns how many sessions it was queued to."""
        body: Dict[str, Any] = {"event": event}
        for k, v in (("session", session), ("topic", topic), ("delay_ms", delay_ms)):
            if v is not None:
                body[k] = v
        body.update(more)
        return self.admin("POST", "/mock/admin/ws/events", body)["queued"]

    def ws_sessions(self) -> List[Dict[str, Any]]:
        """The open WebSocket sessions: id, url, topics, queued."""
        return self.admin("GET", "/mock/admin/ws/sessions")

    def session(self, session_id: str) -> Dict[str, Any]:
        """One call session the state overlay tracks (state, flags, history, participants)."""
        return self.admin("GET", f"/mock/admin/session/{_segment(session_id)}")

    def sessions(self) -> List[Dict[str, Any]]:
        """Every session the state overlay tracks."""
        return self.admin("GET", "/mock/admin/sessions")

    def transition(
        self,
        session_id: str,
        to: str,
        from_: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Any]:
        """Moves a session (for a Genesys conversation: the participant in
        `metadata["participantId"]`, else the customer) to state `to`; `from_` makes the move
        conditional. 422 `invalid_transition` when the machine forbids it, 409 when `from_` is
        not the current state."""
        body: Dict[str, Any] = {"to": to}
        if from_ is not None:
            body["from"] = from_
        if metadata is not None:
            body["metadata"] = metadata
        return self.admin("POST", f"/mock/admin/session/{_segment(session_id)}/transition", body)

    def release(self, session_id: str, participant_id: Optional[str] = None) -> Dict[str, Any]:
        """Lets a move held by the machine's `hold` rule happen; 409 when none is held."""
        body = {} if participant_id is None else {"participantId": participant_id}
        return self.admin("POST", f"/mock/admin/session/{_segment(session_id)}/release", body)

    def reset(self) -> Dict[str, Any]:
        """Tokens, buckets, ids, the clock, call sessions and FIFO positions back to the start;
        the journal and the per-scope summaries are cleared and the open scope ends."""
        return self.admin("POST", "/mock/admin/reset")

    def switch_cassette(self, name: str) -> Dict[str, Any]:
        """Replays another cassette from now on, without a restart (and resets)."""
        return self.admin("POST", "/mock/admin/cassette", {"name": name})


def _system_bundles() -> List[str]:
    out = list(_SYSTEM_BUNDLES)
    compiled = ssl.get_default_verify_paths().openssl_cafile
    if compiled and compiled not in out:
        out.append(compiled)
    return out


def _segment(s: str) -> str:
    return urllib.request.quote(s, safe="")


def _decode(raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return text
