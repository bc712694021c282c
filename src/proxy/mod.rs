//! One intercepted request, answered: from the cassette (replay), from the upstream and stored
//! (record), or as an explained miss. Listeners hand requests here with the target already known.
//!
//! - `mod.rs`: the proxy's shared state and the dispatch of one request (overlays first, then the
//!   cassette lookup);
//! - `replay.rs`: answers from the cassette (hits, long polls, misses explained, WebSocket replay);
//! - `record.rs`: forwarding upstream and storing what it answers;
//! - `upgrade.rs`: WebSocket handshakes in both modes;
//! - `respond.rs`: response writing and the helpers every path shares.

mod capture;
mod failure;
mod record;
mod replay;
mod respond;
mod scopes;
mod upgrade;
pub use capture::Captures;
pub use scopes::ScopeReport;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::json;

use crate::cassette::index::{describe, Prepared};
use crate::cassette::{Body, Exchange, Index, Matcher, RecordedRequest, RecordedResponse, Redactor, Store};
use crate::clock::{parse_rfc3339, rfc3339_ms, Clock};
use crate::config::Config;
use crate::overlay::faults::Cut;
use crate::overlay::{Answer, Call, Ctx, Decision, Evidence, Ids, Overlays, ParsedBody, Recorded};
use crate::timer::Timer;
use crate::upstream::{FailureKind, Upstream, UpstreamError};

use crate::journal::client_key;
pub use crate::journal::{Journal, JournalEntry, JOURNAL_CAP};
pub use failure::{Failure, Side};
pub use record::Recorder;
use record::*;
use replay::*;
pub use replay::{open_replay, replay_response};
use respond::*;
pub use respond::{decoded_body, json_response, strip_hop_by_hop, CutPlan, CutSwitch, CLOCK_HEADER};
use upgrade::*;

/// How the proxy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything and store it.
    Record,
    /// Replay what matches, forward and store what misses.
    RecordMissing,
    /// Answer from the cassette only; never touch the network.
    Replay,
}

impl Mode {
    /// The name reported by the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Record => "record",
            Mode::RecordMissing => "record-missing",
            Mode::Replay => "replay",
        }
    }
}

/// Where an intercepted request is going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https` or `http`.
    pub scheme: &'static str,
    /// Lower-case host name, without port.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `host`, or `host:port` when the port is not the scheme's default.
    authority: String,
}

impl Target {
    /// The target `host` (lower-case, without port) on `port`, reached over `scheme`.
    pub fn new(scheme: &'static str, host: String, port: u16) -> Target {
        let default = if scheme == "https" { 443 } else { 80 };
        let authority = if port == default { host.clone() } else { format!("{host}:{port}") };
        Target { scheme, host, port, authority }
    }

    /// `host` or `host:port` when the port is not the scheme's default.
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

/// Counters for the summary and the status line.
#[derive(Debug, Default)]
pub struct Stats {
    /// Replay hits (counted per thread: every hit adds one).
    pub hits: crate::sharded::Counter,
    /// Replay misses.
    pub misses: AtomicU64,
    /// Exchanges stored.
    pub recorded: AtomicU64,
    /// Requests forwarded without recording.
    pub passthrough: AtomicU64,
    /// Upstream failures.
    pub upstream_errors: AtomicU64,
    /// WebSocket frames stored.
    pub frames: AtomicU64,
}

/// The response body type used throughout.
pub type ProxyBody = Full<Bytes>;

/// Shared state of a running proxy.
pub struct Proxy {
    /// The mode as reported (admin API, logs, summary). What the proxy does follows from its
    /// parts, not from this: a [`Recorder`] forwards and stores what the cassette does not answer,
    /// and without one nothing reaches the network; overlays exist in replay only.
    pub mode: Mode,
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Fingerprinting (with redaction).
    pub matcher: Matcher,
    /// Replay index (empty in plain record mode, so every lookup misses there).
    pub index: crate::sharded::ReadMostly<Arc<Index>>,
    /// The record side (record modes only): the upstream, the store, and what recording tracks.
    recorder: Option<Recorder>,
    /// Virtual time.
    pub clock: Arc<Clock>,
    /// Waiting on virtual time; every change to the clock goes through it.
    pub timer: Arc<Timer>,
    /// Ids callvcr invents.
    pub ids: Arc<Ids>,
    /// The overlays (replay only).
    pub overlays: Overlays,
    /// Where named cassettes live, for switching cassettes through the admin API.
    pub cassettes_dir: Option<std::path::PathBuf>,
    /// The cassette's error and token answers, for overlays to answer with the platform's own
    /// bytes; rebuilt on a cassette switch.
    recorded: Recorded,
    /// WebSocket replay: recorded frames, live sessions, pushed events.
    pub ws: Arc<crate::ws::Hub>,
    /// Long polls waiting for the request that caused their events.
    poll_waiters: std::sync::atomic::AtomicUsize,
    /// Counters.
    pub stats: Stats,
    /// Name of the cassette in use.
    pub cassette_name: RwLock<String>,
    /// How each request was answered.
    pub journal: Arc<Journal>,
    /// Requests and answers kept for the inspector while a page watches.
    pub captures: Captures,
    /// Every miss described, in order, for [`Proxy::missed`] and the summary.
    missed: Mutex<Vec<String>>,
    /// Woken when the state overlay may have a new deadline (a move, a session, a reset).
    state_changed: Arc<tokio::sync::Notify>,
    /// The state overlay's generation the state clock last looked at.
    state_seen: AtomicU64,
}

impl std::fmt::Debug for Proxy {
    /// The mode only: the index, overlays and journal would swamp a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("mode", &self.mode).finish_non_exhaustive()
    }
}

use crate::cassette::model::HOP_BY_HOP;

impl Proxy {
    /// A replayer over `index`: answers from the cassette only and never touches the network.
    /// Overlays are added with [`Proxy::with_overlays`].
    pub fn replay(config: Arc<Config>, index: Arc<Index>, clock: Arc<Clock>, cassette_name: String) -> Proxy {
        Proxy::new(Mode::Replay, config, index, None, clock, cassette_name)
    }

    /// A recorder: forwards through `recorder` and stores what it forwards. With
    /// [`Recorder::missing_only`], `index` (the cassette so far) answers what it holds first.
    pub fn record(
        config: Arc<Config>,
        index: Arc<Index>,
        recorder: Recorder,
        clock: Arc<Clock>,
        cassette_name: String,
    ) -> Proxy {
        let mode = if recorder.missing_only { Mode::RecordMissing } else { Mode::Record };
        Proxy::new(mode, config, index, Some(recorder), clock, cassette_name)
    }

    /// What both constructors share: the matcher with redaction, the cassette's recorded errors,
    /// a timer on `clock`, ids from the configured seed, and a WebSocket hub without faults (until
    /// [`Proxy::with_overlays`] replaces it).
    fn new(
        mode: Mode,
        config: Arc<Config>,
        index: Arc<Index>,
        recorder: Option<Recorder>,
        clock: Arc<Clock>,
        cassette_name: String,
    ) -> Proxy {
        let matcher = Matcher::new(&config.matching, Redactor::new(&config.redact));
        let recorded = recorded_errors(&index);
        let timer = Arc::new(Timer::new(clock.clone()));
        let ids = Arc::new(Ids::new(config.seed));
        let journal = Arc::new(Journal::timed(clock.clone()));
        let ws = Arc::new(crate::ws::Hub::new(
            config.ws.clone(),
            config.ws_speed,
            Vec::new(),
            timer.clone(),
            ids.clone(),
            journal.clone(),
            None,
        ));
        Proxy {
            mode,
            ws,
            poll_waiters: std::sync::atomic::AtomicUsize::new(0),
            matcher,
            index: crate::sharded::ReadMostly::new(index),
            recorder,
            timer,
            ids,
            overlays: Overlays::none(),
            cassettes_dir: None,
            recorded,
            config,
            clock,
            stats: Stats::default(),
            cassette_name: RwLock::new(cassette_name),
            journal,
            captures: Captures::default(),
            missed: Mutex::new(Vec::new()),
            state_changed: Arc::new(tokio::sync::Notify::new()),
            state_seen: AtomicU64::new(u64::MAX),
        }
    }

    /// The record side, in record modes; `None` when replaying (nothing reaches the network).
    pub fn recorder(&self) -> Option<&Recorder> {
        self.recorder.as_ref()
    }

    /// The virtual clock and its waiters.
    pub fn timer(&self) -> &Arc<Timer> {
        &self.timer
    }

    /// Switches the overlays on (replay), sharing `ids` with them.
    pub fn with_overlays(mut self, overlays: Overlays, ids: Arc<Ids>) -> Proxy {
        self.ws = Arc::new(crate::ws::Hub::new(
            self.config.ws.clone(),
            self.config.ws_speed,
            Vec::new(),
            self.timer.clone(),
            ids.clone(),
            self.journal.clone(),
            overlays.faults.clone(),
        ));
        self.overlays = overlays;
        self.ids = ids;
        self
    }

    /// The recorded WebSocket frames replay plays.
    pub fn with_frames(self, frames: Vec<crate::cassette::Frame>) -> Proxy {
        self.ws.set_frames(frames);
        self
    }

    /// Lets the admin API switch to other cassettes under `dir`.
    pub fn with_cassettes_dir(mut self, dir: std::path::PathBuf) -> Proxy {
        self.cassettes_dir = Some(dir);
        self
    }

    /// Replaces the replay index (a cassette switch) and resets everything.
    pub fn set_index(&self, index: Arc<Index>, frames: Vec<crate::cassette::Frame>, name: String) {
        self.ws.set_frames(frames);
        if let Some(v) = &self.overlays.validate {
            v.learn(&index);
        }
        if let Some(s) = &self.overlays.state {
            s.learn(&index);
        }
        if let Some(c) = &self.overlays.crud {
            c.learn(&index);
        }
        let recorded = recorded_errors(&index);
        self.index.set(index);
        self.recorded.replace(recorded);
        *self.cassette_name.write().unwrap_or_else(|e| e.into_inner()) = name;
        self.reset();
    }

    /// Recorded exchanges never replayed (`METHOD host/path?query`), leaving out those an overlay
    /// answers in their place.
    pub fn unused(&self) -> Vec<String> {
        self.unused_of(self.index().unused())
    }

    /// Of `heads`, those an overlay does not answer in the place of, described.
    fn unused_of(&self, heads: Vec<crate::cassette::Head<'_>>) -> Vec<String> {
        heads
            .into_iter()
            .filter(|h| {
                let host = h.host.split(':').next().unwrap_or("").to_ascii_lowercase();
                !self.overlays.pipeline.owns(&host, h.path)
            })
            .map(|h| h.describe())
            .collect()
    }

    /// The current replay index.
    pub fn index(&self) -> Arc<Index> {
        self.index.read().clone()
    }

    /// A copy of the journal.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.journal.entries()
    }

    /// Requests that missed, described.
    pub fn missed(&self) -> Vec<String> {
        self.missed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Back to the start: FIFO positions rewound, overlays, ids and the clock back to their start
    /// state, journal and counters cleared.
    pub fn reset(&self) {
        self.index().rewind();
        self.overlays.pipeline.reset();
        self.ids.reset();
        self.timer.reset();
        if let Some(f) = &self.overlays.faults {
            f.restart(self.timer.now_ms());
        }
        self.journal.clear();
        self.captures.clear();
        self.missed.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.state_changed.notify_waiters();
        self.stats.hits.reset();
        for c in [&self.stats.misses, &self.stats.passthrough, &self.stats.upstream_errors] {
            c.store(0, Ordering::SeqCst);
        }
    }

    /// Whether a TLS handshake for `host` is refused by an injected fault (replay only); journaled.
    pub fn refuse_tls(&self, host: &str) -> bool {
        let Some(f) = self.overlays.faults.as_ref() else { return false };
        match f.refuse_tls(host, self.timer.now_ms()) {
            Some(rule) => {
                tracing::warn!(%host, rule = %rule, "injected fault: TLS handshake refused for {host}");
                self.note("TLS", host, "", 0, "fault:tls", Some(&format!("tls:{rule}")));
                true
            }
            None => false,
        }
    }

    /// Journals how one request was answered.
    fn note(&self, method: &str, host: &str, path: &str, status: u16, answered_by: &str, detail: Option<&str>) {
        let seq = self.journal.note(method, host, path, status, answered_by, detail);
        if self.journal.live.watched() {
            capture::noted(seq);
        }
    }

    /// Answers one request bound for `target`.
    /// `switch` lets an injected fault cut the connection the request came on.
    /// The request runs in its test scope (the one its `x-callvcr-scope` header names, which is
    /// taken off it, else the one open), so the journal, the index and the recorder see it.
    pub async fn handle(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
        target: Arc<Target>,
        switch: Option<Arc<CutSwitch>>,
    ) -> Response<ProxyBody> {
        let scope = match req.headers_mut().remove(crate::scope::SCOPE_HEADER) {
            Some(v) => self.journal.scopes.of_request(Some(&v)),
            None => self.journal.scopes.opened(),
        };
        match scope {
            None => self.handle_in_scope(req, target, switch).await,
            Some(s) => crate::scope::within(s, self.handle_in_scope(req, target, switch)).await,
        }
    }

    /// [`Proxy::handle`] within the request's scope.
    async fn handle_in_scope(
        self: &Arc<Self>,
        req: Request<Incoming>,
        target: Arc<Target>,
        switch: Option<Arc<CutSwitch>>,
    ) -> Response<ProxyBody> {
        let r = if self.journal.live.watched() {
            // A page watches: the request and its answer are kept for it (boxed: rare).
            Box::pin(self.handle_captured(req, &target, switch)).await
        } else {
            self.handle_request(req, &target, switch).await
        };
        if self.overlays.state.is_some() {
            self.state_moved().await;
        }
        r
    }

    /// Delivers the events state moves made and wakes the state clock (a request or an admin call
    /// may have moved something, or set a new deadline).
    pub async fn state_moved(&self) {
        let Some(state) = &self.overlays.state else { return };
        if state.has_events() {
            // Boxed: rare, and its future would otherwise sit in every request's.
            Box::pin(self.deliver_state_events()).await;
        }
        // Wake the state clock only when a session appeared or moved, not on every request.
        let g = state.generation();
        // Read first: most requests move nothing, and a write would bounce the line between cores.
        if self.state_seen.load(Ordering::Acquire) != g && self.state_seen.swap(g, Ordering::AcqRel) != g {
            self.state_changed.notify_waiters();
            self.journal.live.publish("state", &json!({"generation": g}));
        }
    }

    /// Delivers the events state moves made: Genesys notification topics get them now; NICE events
    /// wait in the overlay for the next long poll.
    async fn deliver_state_events(&self) {
        let Some(state) = &self.overlays.state else { return };
        for e in state.take_events() {
            let ids = self.ids.clone();
            let n = self
                .ws
                .publish(
                    |topic| e.wants(topic),
                    |topic| {
                        json!({
                            "topicName": topic,
                            "version": "2",
                            "eventBody": e.body,
                            "metadata": {"CorrelationId": ids.uuid()},
                        })
                    },
                    e.recorded,
                )
                .await;
            tracing::debug!(conversation = %e.conversation, delivered = n, "state event published");
        }
    }

    /// Runs the state overlay's clock: carries out delayed moves and timeouts when virtual time
    /// reaches them, and delivers their events. Ends when the proxy is dropped.
    pub fn start_state_clock(self: &Arc<Self>) {
        if self.overlays.state.is_none() {
            return;
        }
        let weak = Arc::downgrade(self);
        let timer = self.timer.clone();
        let wake = self.state_changed.clone();
        let state = self.overlays.state.clone().expect("checked above");
        tokio::spawn(async move {
            loop {
                let changed = wake.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let deadline = state.next_deadline();
                match deadline {
                    Some(d) => tokio::select! {
                        _ = timer.sleep_until(d) => {}
                        _ = &mut changed => {}
                    },
                    None => changed.await,
                }
                let Some(p) = weak.upgrade() else { return };
                let before = state.generation();
                state.tick(timer.now_ms());
                if state.generation() != before {
                    // A move on the state's own clock (a timeout, a delayed move): pages refetch.
                    p.journal.live.publish("state", &json!({"generation": state.generation(), "by": "clock"}));
                }
                p.deliver_state_events().await;
            }
        });
    }

    /// The dispatch of one request: an upgrade goes to the WebSocket path; otherwise the body is
    /// read (within the limits), the overlays run in order (at the virtual now, or the time the
    /// `x-callvcr-clock` header pins) and may answer, wait, delay, hold or cut the connection;
    /// what they let through is looked up in the cassette, then recorded or explained as a miss.
    async fn handle_request(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
        target: &Target,
        switch: Option<Arc<CutSwitch>>,
    ) -> Response<ProxyBody> {
        let host = target.authority();
        let configured = self.config.is_configured_host(&target.host);

        if is_upgrade(req.headers()) {
            let on_upgrade = hyper::upgrade::on(&mut req);
            let (parts, _) = req.into_parts();
            // Cold paths are boxed, so the hot request future stays small (it is moved per request).
            return Box::pin(self.clone().handle_upgrade(parts, on_upgrade, target.clone())).await;
        }

        let (parts, body) = req.into_parts();
        // Borrowed from the request head: no copies on the hit path.
        let (method, path, query) = (parts.method.as_str(), parts.uri.path(), parts.uri.query());
        // A request without a body (most reads) needs no read timer.
        let bytes = if hyper::body::Body::is_end_stream(&body) {
            Bytes::new()
        } else {
            // Boxed: a body's read state would otherwise sit in every request's future.
            match Box::pin(self.read_body(body, method, host, path)).await {
                Ok(b) => b,
                Err(r) => return r,
            }
        };
        if self.journal.live.watched() {
            capture::body_read(&bytes);
        }

        // Parsed as JSON once, when first read, for the overlays and the matcher alike.
        let parsed = ParsedBody::new(&bytes);
        let seen = Seen { method, path, query, host, configured };
        // Its match key, worked out once for the overlays' peek and the lookup alike.
        let key = RequestKey::default();
        // Overlays first (replay only): they may answer in the platform's place.
        let mut ctx = Ctx::default();
        let mut reset: Option<(Arc<CutSwitch>, String)> = None;
        let mut fault_mark: Option<String> = None;
        if configured && !self.overlays.pipeline.is_empty() {
            let pinned = match parts.headers.get(CLOCK_HEADER) {
                None => None,
                Some(v) => match v.to_str().ok().and_then(parse_rfc3339) {
                    Some(t) => Some(t),
                    None => {
                        let message = format!(
                            "{CLOCK_HEADER}: `{}` is not an RFC 3339 time (expected e.g. 2026-01-05T09:00:00Z)",
                            String::from_utf8_lossy(v.as_bytes())
                        );
                        let f = Failure::request(
                            StatusCode::BAD_REQUEST,
                            "callvcr.clock.header",
                            message,
                            "bad-clock-header",
                        );
                        return self.refuse(f, method, host, path);
                    }
                },
            };
            ctx.now_ms = pinned.unwrap_or_else(|| self.timer.now_ms());
            let call = Call {
                method: parts.method.as_str(),
                host: &target.host,
                path,
                query,
                headers: &parts.headers,
                body: &bytes,
                parsed: &parsed,
            };
            // The recorded answer this request would get, looked at only when an overlay asks.
            let peek = || {
                let index = self.index.read();
                let k = key.get_or_make(&index, || self.request_key(&index, &parts, (&bytes, &parsed), &seen));
                index.peek_in_scope(k, sdk_of(&parts.headers), crate::scope::current().as_deref())
            };
            let mut from = 0;
            // (The evidence is made per round: it is not kept across a wait.)
            loop {
                let next = {
                    let ev = Evidence::new(&self.recorded, &peek);
                    self.overlays.pipeline.on_request(from, &call, &mut ctx, &ev)
                };
                let Some((pos, name, decision)) = next else { break };
                match decision {
                    Decision::Answer(a) => {
                        if let Some(t) = a.not_before_ms {
                            Box::pin(self.timer.sleep_ms((t - ctx.now_ms).max(0) as u64)).await;
                        }
                        let by = answered_by(name, &a.detail);
                        if name == "faults" {
                            tracing::warn!(%method, %host, %path, status = a.status, answered_by = %by, detail = %a.detail, "injected fault");
                        } else {
                            tracing::info!(%method, %host, %path, status = a.status, answered_by = %by, detail = %a.detail, "overlay answered");
                        }
                        self.note(method, host, path, a.status, &by, Some(&a.detail));
                        if ctx.took_recording {
                            // Answered in the place of the recording: the next request gets the one after it.
                            let index = self.index.read();
                            let k =
                                key.get_or_make(&index, || self.request_key(&index, &parts, (&bytes, &parsed), &seen));
                            let scope = crate::scope::current();
                            let _ = index.next_in_scope(k, sdk_of(&parts.headers), scope.as_deref());
                            drop(index);
                            // A long poll may be waiting for this very exchange (a refresh before
                            // the platform ended a session).
                            if self.poll_waiters.load(Ordering::Relaxed) > 0 {
                                self.ws.served();
                            }
                        }
                        return overlay_response(a, &ctx.response_headers);
                    }
                    Decision::RetryAt(t) => {
                        // A queued request: wait (on virtual time) and ask the same overlay again.
                        Box::pin(self.timer.sleep_ms((t - ctx.now_ms).max(0) as u64)).await;
                        ctx.now_ms = if pinned.is_some() { t } else { self.timer.now_ms().max(t) };
                        from = pos;
                    }
                    Decision::Delay(t, detail) => {
                        tracing::warn!(%method, %host, %path, detail = %detail, "injected fault: latency of {} ms (virtual)", t - ctx.now_ms);
                        Box::pin(self.timer.sleep_ms((t - ctx.now_ms).max(0) as u64)).await;
                        ctx.now_ms = if pinned.is_some() { t } else { self.timer.now_ms().max(t) };
                        fault_mark = Some(detail);
                        from = pos + 1;
                    }
                    Decision::Hang(detail) => {
                        tracing::warn!(%method, %host, %path, detail = %detail, "injected fault: holding the request until the client gives up");
                        self.note(method, host, path, 0, "fault:hang", Some(&detail));
                        std::future::pending::<()>().await;
                    }
                    Decision::Cut(cut, detail) => {
                        let Some(switch) = &switch else {
                            tracing::error!("cannot cut this connection (no switch on it); answering normally");
                            from = pos + 1;
                            continue;
                        };
                        if cut == Cut::Reset {
                            // Cut half way through the real answer, once it is known.
                            reset = Some((switch.clone(), detail));
                            from = pos + 1;
                            continue;
                        }
                        tracing::warn!(%method, %host, %path, detail = %detail, "injected fault: {} the connection", cut.as_str());
                        self.note(method, host, path, 0, &format!("fault:{}", cut.as_str()), Some(&detail));
                        switch.arm(if cut == Cut::Close { CutPlan::Close } else { CutPlan::Malformed });
                        return Response::new(Full::new(Bytes::new()));
                    }
                    Decision::Continue => break,
                }
            }
        }
        if let Some((switch, detail)) = reset {
            let looked = self.look_up(&parts, (&bytes, &parsed), target, &seen, &ctx, None, &key);
            let r =
                Box::pin(self.answer_from_cassette(&parts, (&bytes, &parsed), target, &seen, &ctx, None, looked)).await;
            tracing::warn!(%method, %host, %path, detail = %detail, "injected fault: reset mid-response");
            self.note(method, host, path, r.status().as_u16(), "fault:reset", Some(&detail));
            switch.arm(CutPlan::After(wire_size(&r) / 2));
            return r;
        }
        let mark = fault_mark.as_deref();
        match self.look_up(&parts, (&bytes, &parsed), target, &seen, &ctx, mark, &key) {
            Lookup::Answered(r) => r,
            // Boxed: the slower paths' state stays out of every request's future.
            looked => {
                Box::pin(self.answer_from_cassette(&parts, (&bytes, &parsed), target, &seen, &ctx, mark, looked)).await
            }
        }
    }

    /// Reads a request body within the size limit and the read timeout; the answer to send when
    /// it cannot (413, 400, or 408 closing the connection).
    async fn read_body(
        &self,
        body: Incoming,
        method: &str,
        host: &str,
        path: &str,
    ) -> Result<Bytes, Response<ProxyBody>> {
        let limit = self.config.limits.max_body_bytes;
        let read_ms = self.config.limits.read_timeout_ms;
        let mut collect = std::pin::pin!(Limited::new(body, limit).collect());
        // A small body usually came with the head: then it is read at once, with no timer set.
        let at_once =
            std::future::poll_fn(|cx| std::task::Poll::Ready(std::future::Future::poll(collect.as_mut(), cx))).await;
        let collected = match at_once {
            std::task::Poll::Ready(r) => Ok(r),
            std::task::Poll::Pending => {
                tokio::time::timeout(std::time::Duration::from_millis(read_ms), collect.as_mut()).await
            }
        };
        let Ok(collected) = collected else {
            // A client trickling its body (slowloris) gives up its connection slot.
            let msg = format!("the request body did not arrive within {read_ms} ms (limits.read_timeout_ms)");
            let mut f =
                Failure::request(StatusCode::REQUEST_TIMEOUT, "callvcr.request.timeout", msg, "request-timeout");
            f.close = true;
            return Err(self.refuse(f, method, host, path));
        };
        match collected {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) => {
                let too_large = e.downcast_ref::<http_body_util::LengthLimitError>().is_some();
                let f = if too_large {
                    Failure::request(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "callvcr.request.too_large",
                        format!("request body over the {limit}-byte limit (limits.max_body_bytes)"),
                        "request-too-large",
                    )
                } else {
                    Failure::request(
                        StatusCode::BAD_REQUEST,
                        "callvcr.request.body",
                        format!("could not read the request body: {e}"),
                        "bad-request",
                    )
                };
                Err(self.refuse(f, method, host, path))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_round_trips_through_storage() {
        let raw = b"{\"hello\":\"world\"}";
        let gz = crate::cassette::model::encode("gzip", raw);
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let stored = stored_body(&h, Bytes::from(gz));
        assert_eq!(&stored.bytes[..], raw);
        assert_eq!(stored.encoding.as_deref(), Some("gzip"));
        let served = replay_response(&RecordedResponse {
            status: 200,
            headers: vec![("content-encoding".into(), "gzip".into())],
            body: stored,
        });
        assert_eq!(served.headers()["content-encoding"], "gzip");
    }

    #[test]
    fn a_request_key_is_made_again_for_an_index_switched_in_meanwhile() {
        let matcher = crate::cassette::Matcher::new(
            &crate::config::MatchConfig::default(),
            crate::cassette::Redactor::new(&crate::config::RedactConfig::default()),
        );
        let (a, b) = (Index::new(Vec::new(), &matcher), Index::new(Vec::new(), &matcher));
        let key = replay::RequestKey::default();
        let made = std::cell::Cell::new(0);
        let make = |v: u128| {
            made.set(made.get() + 1);
            crate::cassette::fingerprint::Key::from_u128(v)
        };
        assert_eq!(key.get_or_make(&a, || make(1)).to_u128(), 1);
        assert_eq!(key.get_or_make(&a, || make(2)).to_u128(), 1, "made once per index");
        assert_eq!(key.get_or_make(&b, || make(3)).to_u128(), 3, "another index, another key");
        assert_eq!(made.get(), 2);
        // An index with a time shift applied is another index: its keys differ.
        let shift = crate::cassette::timeshift::TimeShift {
            delta_ms: 60_000,
            mode: crate::config::ShiftMode::All,
            fields: Default::default(),
        };
        let shifted = a.with_shift(shift);
        assert_eq!(key.get_or_make(&shifted, || make(4)).to_u128(), 4);
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("host", HeaderValue::from_static("api.mypurecloud.com"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("host"));
    }
}
