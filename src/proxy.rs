//! One intercepted request, answered: from the cassette (replay), from the upstream and stored
//! (record), or as an explained miss. Listeners hand requests here with the target already known.

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
use crate::overlay::{Answer, Call, Ctx, Decision, Evidence, Ids, Overlays, Recorded};
use crate::timer::Timer;
use crate::upstream::{FailureKind, Upstream, UpstreamError};

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

/// How one request was answered, as the journal reports it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JournalEntry {
    /// Order of arrival.
    pub seq: u64,
    /// Method.
    pub method: String,
    /// Host.
    pub host: String,
    /// Path.
    pub path: String,
    /// Status answered.
    pub status: u16,
    /// `hit`, `miss`, `upstream`, or `callvcr` for callvcr's own refusals (oversized, not intercepted).
    pub answered_by: String,
    /// What else is worth knowing: `passthrough` (forwarded, not recorded), `upstream-error:<kind>`,
    /// `request-too-large`, `bad-request`, `not-intercepted`, `cassette-write-failed`, `websocket-replay-unsupported`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
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
    /// How to answer.
    pub mode: Mode,
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Fingerprinting (with redaction).
    pub matcher: Matcher,
    /// Replay index (empty in plain record mode).
    pub index: crate::sharded::ReadMostly<Arc<Index>>,
    /// Where recordings go.
    pub store: Option<Arc<Store>>,
    /// The upstream client (record modes only).
    pub upstream: Option<Upstream>,
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
    recorded: Recorded,
    /// WebSocket replay: recorded frames, live sessions, pushed events.
    pub ws: Arc<crate::ws::Hub>,
    /// Record mode: per client (bearer), the last REST exchange started: (sequence, monotonic ms).
    recent_rest: Mutex<HashMap<String, (u64, u64)>>,
    /// Record mode: Genesys notification channel id → the client that created it.
    channel_owner: Mutex<HashMap<String, String>>,
    /// Long polls waiting for the request that caused their events.
    poll_waiters: std::sync::atomic::AtomicUsize,
    /// Counters.
    pub stats: Stats,
    /// Name of the cassette in use.
    pub cassette_name: RwLock<String>,
    /// How each request was answered.
    pub journal: Arc<Journal>,
    missed: Mutex<Vec<String>>,
    /// Woken when the state overlay may have a new deadline (a move, a session, a reset).
    state_changed: Arc<tokio::sync::Notify>,
    /// The state overlay's generation the state clock last looked at.
    state_seen: AtomicU64,
}

/// The journal: the most recent answers, shared by the HTTP and WebSocket sides.
#[derive(Debug, Default)]
pub struct Journal {
    /// One ring per thread shard (see `crate::sharded`): threads noting answers at once do not
    /// wait on one lock; the entries are merged by sequence number when read.
    rings: crate::sharded::PerThread<Mutex<Ring>>,
    seq: AtomicU64,
}

/// Bytes of an entry's texts kept in its slot; longer entries keep them on the heap.
const INLINE: usize = 176;

/// One journal entry as kept: method, host, path, answered-by and detail one after another in the
/// slot itself. Noting an answer only writes its slot (no read of what the slot held before, no
/// allocation), so a busy replay does not wait on memory the journal last touched long ago.
#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: u64,
    status: u16,
    /// Where method, host, path and answered-by end in the text.
    ends: [u16; 4],
    /// Length of the whole text; `u16::MAX` when it lives on the heap.
    len: u16,
    detail: bool,
    inline: [u8; INLINE],
}

/// The most recent [`JOURNAL_CAP`] slots, oldest overwritten first.
#[derive(Debug, Default)]
struct Ring {
    slots: Vec<Slot>,
    /// Texts too long for their slot, by slot.
    long: std::collections::HashMap<usize, (String, [usize; 4])>,
    /// The slot written next.
    next: usize,
}

impl Ring {
    fn push(&mut self, seq: u64, status: u16, parts: [&str; 4], detail: Option<&str>) {
        let total: usize = parts.iter().map(|p| p.len()).sum::<usize>() + detail.map_or(0, str::len);
        let mut slot = Slot { seq, status, ends: [0; 4], len: 0, detail: detail.is_some(), inline: [0; INLINE] };
        let at = self.next;
        if total <= INLINE {
            let mut n = 0;
            for (i, p) in parts.iter().enumerate() {
                slot.inline[n..n + p.len()].copy_from_slice(p.as_bytes());
                n += p.len();
                slot.ends[i] = n as u16;
            }
            let d = detail.unwrap_or("");
            slot.inline[n..n + d.len()].copy_from_slice(d.as_bytes());
            slot.len = (n + d.len()) as u16;
            if !self.long.is_empty() {
                self.long.remove(&at);
            }
        } else {
            let mut text = String::with_capacity(total);
            let mut ends = [0; 4];
            for (i, p) in parts.iter().enumerate() {
                text.push_str(p);
                ends[i] = text.len();
            }
            text.push_str(detail.unwrap_or(""));
            slot.len = u16::MAX;
            self.long.insert(at, (text, ends));
        }
        if at == self.slots.len() {
            self.slots.push(slot);
        } else {
            self.slots[at] = slot;
        }
        self.next = (at + 1) % JOURNAL_CAP;
    }

    fn entry(&self, at: usize) -> JournalEntry {
        let s = &self.slots[at];
        let (text, ends): (&str, [usize; 4]) = match self.long.get(&at) {
            Some((t, e)) if s.len == u16::MAX => (t.as_str(), *e),
            _ => (std::str::from_utf8(&s.inline[..s.len as usize]).unwrap_or(""), s.ends.map(usize::from)),
        };
        let [a, b, c, d] = ends;
        let part = |from: usize, to: usize| text.get(from..to).unwrap_or("").to_string();
        JournalEntry {
            seq: s.seq,
            method: part(0, a),
            host: part(a, b),
            path: part(b, c),
            status: s.status,
            answered_by: part(c, d),
            detail: s.detail.then(|| part(d, text.len())),
        }
    }
}

impl Journal {
    /// Notes one answer.
    pub fn note(&self, method: &str, host: &str, path: &str, status: u16, answered_by: &str, detail: Option<&str>) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut ring = self.rings.mine().lock().unwrap_or_else(|e| e.into_inner());
        ring.push(seq, status, [method, host, path, answered_by], detail);
    }

    /// A copy of the last [`JOURNAL_CAP`] entries, oldest first.
    pub fn entries(&self) -> Vec<JournalEntry> {
        let mut out = Vec::new();
        for r in self.rings.all() {
            let ring = r.lock().unwrap_or_else(|e| e.into_inner());
            let n = ring.slots.len();
            let first = if n < JOURNAL_CAP { 0 } else { ring.next };
            out.extend((0..n).map(|k| ring.entry((first + k) % n.max(1))));
        }
        out.sort_by_key(|e| e.seq);
        let extra = out.len().saturating_sub(JOURNAL_CAP);
        out.drain(..extra);
        out
    }

    /// Empties it.
    pub fn clear(&self) {
        for r in self.rings.all() {
            *r.lock().unwrap_or_else(|e| e.into_inner()) = Ring::default();
        }
        self.seq.store(0, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("mode", &self.mode).finish_non_exhaustive()
    }
}

/// The journal keeps the most recent entries only, so a long replay does not grow without bound.
pub const JOURNAL_CAP: usize = 10_000;

use crate::cassette::model::HOP_BY_HOP;

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<String> = h
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .filter(|s| !s.is_empty())
        .collect();
    for n in HOP_BY_HOP.iter().copied().map(String::from).chain(named) {
        h.remove(n.as_str());
    }
}

fn header_pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}

/// A live request as callvcr keeps it: for fingerprints on a miss, for storage, and for messages.
fn live_request(
    method: &Method,
    uri: &http::Uri,
    target: &Target,
    headers: &HeaderMap,
    body: Bytes,
) -> RecordedRequest {
    RecordedRequest {
        method: method.to_string(),
        scheme: target.scheme.to_string(),
        host: target.authority().to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(String::from),
        headers: header_pairs(headers),
        body: Body { bytes: body, encoding: None },
    }
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(http::header::UPGRADE)
        && h.get_all(http::header::CONNECTION)
            .iter()
            .any(|v| v.to_str().map(|s| s.to_ascii_lowercase().contains("upgrade")).unwrap_or(false))
}

/// A JSON response with callvcr's marker header.
pub fn json_response(status: StatusCode, marker: (&'static str, &str), body: serde_json::Value) -> Response<ProxyBody> {
    let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec_pretty(&body).unwrap_or_default())));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(marker.1) {
        r.headers_mut().insert(marker.0, v);
    }
    r
}

/// The body as stored: decoded when the encoding is one we can decode, else as received.
/// A response body as sent, decoded from its `Content-Encoding`.
pub fn decoded_body(headers: &HeaderMap, bytes: Bytes) -> Bytes {
    stored_body(headers, bytes).bytes
}

fn stored_body(headers: &HeaderMap, bytes: Bytes) -> Body {
    let enc = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase());
    match enc {
        Some(e) if e != "identity" => match crate::cassette::model::decode(&e, &bytes) {
            Some(d) => Body { bytes: d.into(), encoding: Some(e) },
            None => Body { bytes, encoding: None },
        },
        _ => Body { bytes, encoding: None },
    }
}

impl Proxy {
    /// A proxy in `mode` over `index`, recording into `store` through `upstream` where given.
    pub fn new(
        mode: Mode,
        config: Arc<Config>,
        index: Arc<Index>,
        store: Option<Arc<Store>>,
        upstream: Option<Upstream>,
        clock: Arc<Clock>,
        cassette_name: String,
    ) -> Proxy {
        let matcher = Matcher::new(&config.matching, Redactor::new(&config.redact));
        let recorded = recorded_errors(&index);
        let timer = Arc::new(Timer::new(clock.clone()));
        let ids = Arc::new(Ids::new(config.seed));
        let journal = Arc::new(Journal::default());
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
            recent_rest: Mutex::new(HashMap::new()),
            channel_owner: Mutex::new(HashMap::new()),
            poll_waiters: std::sync::atomic::AtomicUsize::new(0),
            matcher,
            index: crate::sharded::ReadMostly::new(index),
            store,
            upstream,
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
            missed: Mutex::new(Vec::new()),
            state_changed: Arc::new(tokio::sync::Notify::new()),
            state_seen: AtomicU64::new(u64::MAX),
        }
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
        let idx = self.index();
        idx.unused()
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
        self.missed.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.state_changed.notify_waiters();
        self.stats.hits.reset();
        for c in [&self.stats.misses, &self.stats.passthrough, &self.stats.upstream_errors] {
            c.store(0, Ordering::SeqCst);
        }
    }

    /// Whether a TLS handshake for `host` is refused by an injected fault (replay only); journaled.
    pub fn refuse_tls(&self, host: &str) -> bool {
        let Some(f) = self.overlays.faults.as_ref().filter(|_| self.mode == Mode::Replay) else { return false };
        match f.refuse_tls(host, self.timer.now_ms()) {
            Some(rule) => {
                tracing::warn!(%host, rule = %rule, "injected fault: TLS handshake refused for {host}");
                self.note("TLS", host, "", 0, "fault:tls", Some(&format!("tls:{rule}")));
                true
            }
            None => false,
        }
    }

    fn note(&self, method: &str, host: &str, path: &str, status: u16, answered_by: &str, detail: Option<&str>) {
        self.journal.note(method, host, path, status, answered_by, detail)
    }

    /// Answers one request bound for `target`.
    /// `switch` lets an injected fault cut the connection the request came on.
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        target: Arc<Target>,
        switch: Option<Arc<CutSwitch>>,
    ) -> Response<ProxyBody> {
        let r = self.handle_request(req, &target, switch).await;
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
                state.tick(timer.now_ms());
                p.deliver_state_events().await;
            }
        });
    }

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

        // Overlays first (replay only): they may answer in the platform's place.
        let mut ctx = Ctx::default();
        let mut reset: Option<(Arc<CutSwitch>, String)> = None;
        let mut fault_mark: Option<String> = None;
        if self.mode == Mode::Replay && configured && !self.overlays.pipeline.is_empty() {
            let pinned = match parts.headers.get(CLOCK_HEADER) {
                None => None,
                Some(v) => match v.to_str().ok().and_then(parse_rfc3339) {
                    Some(t) => Some(t),
                    None => {
                        self.note(method, host, path, 400, "callvcr", Some("bad-clock-header"));
                        return json_response(
                            StatusCode::BAD_REQUEST,
                            ("x-callvcr-error", "request"),
                            json!({"message": format!("{CLOCK_HEADER}: `{}` is not an RFC 3339 time (expected e.g. 2026-01-05T09:00:00Z)", String::from_utf8_lossy(v.as_bytes())), "code": "callvcr.clock.header", "status": 400}),
                        );
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
            };
            // The recorded answer this request would get, looked at only when an overlay asks.
            let peek = || {
                let key = self.matcher.key_parts(method, host, path, query, |h| header_of(&parts.headers, h), &bytes);
                self.index.read().peek_by_key(key, sdk_of(&parts.headers))
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
                            let key = self.matcher.key_parts(
                                method,
                                host,
                                path,
                                query,
                                |h| header_of(&parts.headers, h),
                                &bytes,
                            );
                            let _ = self.index.read().next_by_key(key, sdk_of(&parts.headers));
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
            let seen = Seen { method, path, query, host, configured };
            let looked = self.look_up(&parts, &bytes, target, &seen, &ctx, None);
            let r = Box::pin(self.answer_from_cassette(&parts, bytes, target, &seen, &ctx, None, looked)).await;
            tracing::warn!(%method, %host, %path, detail = %detail, "injected fault: reset mid-response");
            self.note(method, host, path, r.status().as_u16(), "fault:reset", Some(&detail));
            switch.arm(CutPlan::After(wire_size(&r) / 2));
            return r;
        }
        let seen = Seen { method, path, query, host, configured };
        let mark = fault_mark.as_deref();
        match self.look_up(&parts, &bytes, target, &seen, &ctx, mark) {
            Lookup::Answered(r) => r,
            // Boxed: the slower paths' state stays out of every request's future.
            looked => Box::pin(self.answer_from_cassette(&parts, bytes, target, &seen, &ctx, mark, looked)).await,
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
        let collected =
            tokio::time::timeout(std::time::Duration::from_millis(read_ms), Limited::new(body, limit).collect());
        let Ok(collected) = collected.await else {
            // A client trickling its body (slowloris) gives up its connection slot.
            let msg = format!("the request body did not arrive within {read_ms} ms (limits.read_timeout_ms)");
            tracing::warn!(%method, %host, %path, "{msg}");
            self.note(method, host, path, 408, "callvcr", Some("request-timeout"));
            let mut r = json_response(
                StatusCode::REQUEST_TIMEOUT,
                ("x-callvcr-error", "request"),
                json!({"message": msg, "code": "callvcr.request.timeout", "status": 408}),
            );
            r.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            return Err(r);
        };
        match collected {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) => {
                let too_large = e.downcast_ref::<http_body_util::LengthLimitError>().is_some();
                let (status, code, msg) = if too_large {
                    (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "callvcr.request.too_large",
                        format!("request body over the {limit}-byte limit (limits.max_body_bytes)"),
                    )
                } else {
                    (StatusCode::BAD_REQUEST, "callvcr.request.body", format!("could not read the request body: {e}"))
                };
                tracing::warn!(%method, %host, %path, "{msg}");
                self.note(
                    method,
                    host,
                    path,
                    status.as_u16(),
                    "callvcr",
                    Some(if too_large { "request-too-large" } else { "bad-request" }),
                );
                Err(json_response(
                    status,
                    ("x-callvcr-error", "request"),
                    json!({"message": msg, "code": code, "status": status.as_u16()}),
                ))
            }
        }
    }

    /// The index's answer to a request, found without waiting: the hot path, kept synchronous (and
    /// out of the request's future) so nothing large is carried from await to await.
    fn look_up(
        &self,
        parts: &http::request::Parts,
        bytes: &Bytes,
        target: &Target,
        seen: &Seen<'_>,
        ctx: &Ctx,
        mark: Option<&str>,
    ) -> Lookup {
        let Seen { method, path, query, host, configured } = *seen;
        if self.mode == Mode::Record || !configured {
            return Lookup::Miss;
        }
        let key = self.matcher.key_parts(method, host, path, query, |h| header_of(&parts.headers, h), bytes);
        let headers = &parts.headers;
        let sdk = sdk_of(headers);
        let call = Call { method, host: &target.host, path, query, headers, body: bytes };
        // Answered under this thread's read lock on the index: no reference count is touched.
        // A long poll waits, so it takes its recording out of the lock.
        let index = self.index.read();
        match index.next_by_key_seen(key, sdk) {
            None => Lookup::Miss,
            Some((Err(e), _)) => Lookup::Answered(self.unreadable(method, host, path, &e)),
            Some((Ok(l), _)) if crate::platform::is_long_poll(path) => {
                Lookup::Poll(l.exchange.clone(), Box::new(l.prepared.clone()))
            }
            Some((Ok(l), fresh)) => {
                ctx.repeated.store(!fresh, Ordering::Relaxed);
                Lookup::Answered(self.answer_hit(&call, host, &l.exchange, &l.prepared, ctx, mark))
            }
        }
    }

    /// The cassette's answer (or, off replay, the upstream's) after [`Proxy::look_up`]: a long
    /// poll's wait, an overlay's answer for a miss, the miss explained, or the upstream's answer;
    /// `mark` notes an injected fault that shaped it (latency) in the journal.
    #[allow(clippy::too_many_arguments)] // the request's parts, as `look_up` takes them, and what it found
    async fn answer_from_cassette(
        &self,
        parts: &http::request::Parts,
        bytes: Bytes,
        target: &Target,
        seen: &Seen<'_>,
        ctx: &Ctx,
        mark: Option<&str>,
        looked: Lookup,
    ) -> Response<ProxyBody> {
        let Seen { method, path, query, host, configured } = *seen;
        let mut fp = None;
        match looked {
            Lookup::Answered(r) => return r,
            Lookup::Poll(ex, prepared) => {
                let secs = query
                    .and_then(|q| {
                        crate::cassette::fingerprint::decode_pairs(q).into_iter().find(|(k, _)| k == "timeout")
                    })
                    .and_then(|(_, v)| v.parse::<u64>().ok())
                    .unwrap_or(ex.duration_ms / 1000);
                if ex.response.status == 304 {
                    // A long poll that found nothing answers once its timeout has passed (virtual time).
                    Box::pin(self.timer.sleep_ms(secs.saturating_mul(1000))).await;
                } else if let Some(cause) = ex.after {
                    // Its events were caused by another request: answer once that was replayed
                    // (or, should it never come, when the poll's timeout runs out).
                    let index = self.index();
                    Box::pin(self.await_served(&index, cause, secs.saturating_mul(1000))).await;
                }
                let call = Call { method, host: &target.host, path, query, headers: &parts.headers, body: &bytes };
                return self.answer_hit(&call, host, &ex, &prepared, ctx, mark);
            }
            Lookup::Miss if self.mode != Mode::Record && configured => fp = Some(self.index()),
            Lookup::Miss => {}
        }

        let mut live_headers = parts.headers.clone();
        strip_hop_by_hop(&mut live_headers);
        live_headers.remove(CLOCK_HEADER);
        let live = live_request(&parts.method, &parts.uri, target, &live_headers, bytes.clone());
        if self.mode == Mode::Replay && !self.overlays.pipeline.is_empty() && fp.is_some() {
            let call = Call { method, host: &target.host, path, query, headers: &parts.headers, body: &bytes };
            if let Some((name, a)) = self.overlays.pipeline.on_miss(&call, ctx) {
                let by = answered_by(name, &a.detail);
                tracing::info!(%method, %host, %path, status = a.status, answered_by = %by, detail = %a.detail, "overlay answered (no recording)");
                self.note(method, host, path, a.status, &by, Some(&a.detail));
                return overlay_response(a, &ctx.response_headers);
            }
        }
        if self.mode == Mode::Replay {
            if let Some(index) = &fp {
                // Off the hit path: the whole fingerprint, to explain the miss.
                let f =
                    self.matcher.fingerprint_parts(method, host, path, query, |h| header_of(&parts.headers, h), &bytes);
                let mut r = self.miss(&live, &f, index, mark);
                add_headers(r.headers_mut(), &ctx.response_headers);
                return r;
            }
        }
        if self.mode == Mode::Replay {
            // Not a configured host: replay never touches the network.
            self.note(method, host, path, 403, "callvcr", Some("not-intercepted"));
            return json_response(
                StatusCode::FORBIDDEN,
                ("x-callvcr-error", "not-intercepted"),
                json!({"message": format!("callvcr is replaying and does not reach {host}: it is not a configured host"), "code": "callvcr.host.not_configured", "status": 403}),
            );
        }
        Box::pin(self.forward(parts.method.clone(), live_headers, live, bytes, target.clone(), configured)).await
    }

    /// A cassette hit: counted, journaled, and served as recorded, or as the overlays have the
    /// resource now. Synchronous, so the hit path can run under the index's read lock.
    fn answer_hit(
        &self,
        call: &Call<'_>,
        authority: &str,
        ex: &Exchange,
        prepared: &Prepared,
        ctx: &Ctx,
        mark: Option<&str>,
    ) -> Response<ProxyBody> {
        self.stats.hits.incr();
        if self.ws.active() || self.poll_waiters.load(Ordering::Relaxed) > 0 {
            self.ws.served();
            self.track_subscription(call.method, call.path, call.body);
        }
        let status = ex.response.status;
        match mark {
            None => self.note(call.method, authority, call.path, status, "hit", None),
            Some(m) => {
                let by = format!("fault:{}", m.split(':').next().unwrap_or("latency"));
                self.note(call.method, authority, call.path, status, &by, Some(&format!("hit; {m}")));
            }
        }
        let mut r = serve_prepared(prepared);
        if self.mode == Mode::Replay && !self.overlays.pipeline.is_empty() {
            if let Some(b) = self.overlays.pipeline.on_answer(call, ctx, ex.response.status, &ex.response.body.bytes) {
                // The resource as it stands now, encoded as the recording was.
                let b = match &ex.response.body.encoding {
                    Some(e) => Bytes::from(crate::cassette::model::encode(e, &b)),
                    None => b,
                };
                *r.body_mut() = Full::new(b);
            }
        }
        add_headers(r.headers_mut(), &ctx.response_headers);
        r
    }

    /// The answer when the cassette cannot give a recording its index names (a damaged replay file).
    fn unreadable(
        &self,
        method: &str,
        host: &str,
        path: &str,
        e: &crate::cassette::CassetteError,
    ) -> Response<ProxyBody> {
        tracing::error!(%method, %host, %path, "{e}");
        self.note(method, host, path, 500, "callvcr", Some("cassette-unreadable"));
        json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            ("x-callvcr-error", "cassette"),
            json!({"message": format!("callvcr cannot read the recording for {method} {host}{path}: {e}"), "code": "callvcr.cassette.unreadable", "status": 500}),
        )
    }

    fn miss(
        &self,
        live: &RecordedRequest,
        fp: &crate::cassette::Fingerprint,
        index: &Index,
        mark: Option<&str>,
    ) -> Response<ProxyBody> {
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let near = index.near_misses(fp, 3);
        let what = describe(live);
        let closest_line = near
            .first()
            .map(|n| format!("; closest recording: {} (differs in {})", n.recorded, n.differences.join("; ")))
            .unwrap_or_else(|| "; the cassette is empty".into());
        tracing::warn!(cassette = %self.cassette_name.read().map(|s| s.clone()).unwrap_or_default(), "replay miss: {what}{closest_line}");
        self.missed.lock().unwrap_or_else(|e| e.into_inner()).push(what.clone());
        match mark {
            Some(m) => self.note(
                &live.method,
                &live.host,
                &live.path,
                404,
                &format!("fault:{}", m.split(':').next().unwrap_or("latency")),
                Some(&format!("miss; {m}")),
            ),
            None => self.note(&live.method, &live.host, &live.path, 404, "miss", None),
        }
        let n = self.stats.misses.load(Ordering::Relaxed);
        json_response(
            StatusCode::NOT_FOUND,
            ("x-callvcr-miss", "1"),
            json!({
                "message": format!("callvcr replay miss: no recording matches {what}{closest_line}"),
                "code": "callvcr.replay.miss",
                "status": 404,
                "contextId": format!("callvcr-miss-{n}"),
                "details": [],
                "errors": [],
                "request": {"method": live.method, "host": live.host, "path": live.path, "query": live.query},
                "closest": near.iter().map(|m| json!({"recorded": m.recorded, "differences": m.differences})).collect::<Vec<_>>(),
            }),
        )
    }

    fn upstream_failure(&self, e: &UpstreamError, method: &str, host: &str, path: &str) -> Response<ProxyBody> {
        self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
        let status = if e.kind == FailureKind::Timeout { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
        tracing::error!(kind = e.kind.as_str(), %host, %path, "upstream failure, nothing stored: {}", e.detail);
        self.note(
            method,
            host,
            path,
            status.as_u16(),
            "upstream",
            Some(&format!("upstream-error:{}", e.kind.as_str())),
        );
        json_response(
            status,
            ("x-callvcr-error", "upstream"),
            json!({
                "message": format!("callvcr could not reach the upstream {host}: {} failure: {}", e.kind.as_str(), e.detail),
                "code": format!("callvcr.upstream.{}", e.kind.as_str()),
                "status": status.as_u16(),
                "kind": e.kind.as_str(),
                "host": e.host,
                "detail": e.detail,
            }),
        )
    }

    async fn forward(
        &self,
        method: Method,
        headers: HeaderMap,
        live: RecordedRequest,
        bytes: Bytes,
        target: Target,
        configured: bool,
    ) -> Response<ProxyBody> {
        let Some(upstream) = &self.upstream else {
            return no_upstream();
        };
        let uri = format!(
            "{}://{}{}{}",
            target.scheme,
            target.authority(),
            live.path,
            live.query.as_ref().map(|q| format!("?{q}")).unwrap_or_default()
        );
        let mut builder = Request::builder().method(method).uri(&uri);
        if let Some(h) = builder.headers_mut() {
            *h = headers;
        }
        let up_req = match builder.body(Full::new(bytes)) {
            Ok(r) => r,
            Err(e) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    ("x-callvcr-error", "request"),
                    json!({"message": format!("cannot forward this request: {e}"), "status": 400}),
                );
            }
        };
        let started = Clock::instant();
        let seq = self.store.as_ref().map(|st| st.allocate_seq()).unwrap_or(0);
        let client = client_key(&live.headers);
        self.recent_rest.lock().unwrap_or_else(|e| e.into_inner()).insert(client.clone(), (seq, crate::ws::mono_ms()));
        self.recent_rest.lock().unwrap_or_else(|e| e.into_inner()).insert(String::new(), (seq, crate::ws::mono_ms()));
        let resp = match upstream.send(up_req).await {
            Ok(r) => r,
            Err(e) => return self.upstream_failure(&e, &live.method, &live.host, &live.path),
        };
        let (mut rparts, rbody) = resp.into_parts();
        let rbytes = match self.upstream_body(rbody, &target.host).await {
            Ok(b) => b,
            Err(err) => return self.upstream_failure(&err, &live.method, &live.host, &live.path),
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        strip_hop_by_hop(&mut rparts.headers);
        let status = rparts.status.as_u16();

        let record = configured && !self.config.is_ignored(&target.host, &live.path);
        if record {
            if crate::platform::creates_channel(&live.method, &live.path) {
                if let Some(id) = serde_json::from_slice::<serde_json::Value>(&rbytes)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(String::from))
                {
                    let mut owners = self.channel_owner.lock().unwrap_or_else(|e| e.into_inner());
                    if owners.len() > 10_000 {
                        owners.clear();
                    }
                    owners.insert(id, client.clone());
                }
            }
            if let Err(refused) =
                self.record_or_refuse(seq, live.clone(), status, &rparts.headers, rbytes.clone(), duration_ms).await
            {
                return refused;
            }
            self.note(&live.method, &live.host, &live.path, status, "upstream", None);
        } else {
            self.stats.passthrough.fetch_add(1, Ordering::Relaxed);
            self.note(&live.method, &live.host, &live.path, status, "upstream", Some("passthrough"));
        }
        let mut r = Response::new(Full::new(rbytes));
        *r.status_mut() = rparts.status;
        *r.headers_mut() = rparts.headers;
        r.headers_mut().remove(http::header::CONTENT_LENGTH);
        r
    }

    /// An upstream answer's body, read as the record path reads every body: at most
    /// `limits.max_body_bytes`, within `upstream_timeout_ms`.
    async fn upstream_body(&self, body: hyper::body::Incoming, host: &str) -> Result<Bytes, UpstreamError> {
        let limit = self.config.limits.max_body_bytes;
        let deadline = std::time::Duration::from_millis(self.config.upstream_timeout_ms);
        match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
            Ok(Ok(c)) => Ok(c.to_bytes()),
            Err(_) => Err(UpstreamError {
                kind: FailureKind::Timeout,
                host: host.to_string(),
                detail: format!("the response body did not finish within {} ms", deadline.as_millis()),
            }),
            Ok(Err(e)) => Err(UpstreamError {
                kind: FailureKind::Protocol,
                host: host.to_string(),
                detail: format!("response body: {e}"),
            }),
        }
    }

    /// Stores an exchange before its answer goes out; when the store fails the client gets a 500
    /// saying so (an answer the cassette does not hold would make the next replay miss).
    async fn record_or_refuse(
        &self,
        seq: u64,
        live: RecordedRequest,
        status: u16,
        resp_headers: &HeaderMap,
        rbytes: Bytes,
        duration_ms: u64,
    ) -> Result<(), Response<ProxyBody>> {
        let (method, host, path) = (live.method.clone(), live.host.clone(), live.path.clone());
        match self.store_exchange(seq, live, status, resp_headers, rbytes, duration_ms).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!("could not store the exchange of {method} {host}{path}, answering 500: {e}");
                self.note(&method, &host, &path, 500, "callvcr", Some("cassette-write-failed"));
                Err(json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ("x-callvcr-error", "cassette"),
                    json!({"message": format!("callvcr could not store this exchange: {e}"), "code": "callvcr.cassette.write", "status": 500}),
                ))
            }
        }
    }

    async fn store_exchange(
        &self,
        seq: u64,
        live: RecordedRequest,
        status: u16,
        resp_headers: &HeaderMap,
        rbytes: Bytes,
        duration_ms: u64,
    ) -> Result<(), String> {
        let Some(store) = self.store.clone() else { return Ok(()) };
        let red = self.matcher.redactor();
        let live_headers_for_anchor = live.headers.clone();
        // A token request keeps who it presented itself as, the secrets only as verifiers.
        let presented = crate::overlay::auth::presented(
            &live.host,
            &live.method,
            &live.path,
            live.header("authorization"),
            &live.body.bytes,
        );
        let mut req = live;
        let sdk = req.header(crate::platform::SDK_HEADER).or_else(|| req.header("user-agent")).map(String::from);
        red.headers(&mut req.headers);
        if let Some(q) = &req.query {
            req.query = Some(red.urlencoded(q).into_owned());
        }
        let ct = req.header("content-type").map(String::from);
        req.body.bytes = Bytes::from(red.body(ct.as_deref(), &req.body.bytes).into_owned());

        let mut rheaders = header_pairs(resp_headers);
        red.headers(&mut rheaders);
        let mut rbody = stored_body(resp_headers, rbytes);
        let rct = resp_headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        rbody.bytes = Bytes::from(red.body(rct, &rbody.bytes).into_owned());
        // A long poll answered after another request by the same client started: that request
        // caused its events, so replay answers the poll once that one was replayed.
        let after = if crate::platform::is_long_poll(&req.path) && status == 200 {
            let client = client_key(&live_headers_for_anchor);
            self.recent_rest
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&client)
                .map(|(s, _)| *s)
                .filter(|s| *s > seq)
        } else {
            None
        };
        let ex = Exchange {
            seq,
            after,
            recorded_at: rfc3339_ms(self.clock.now_ms()),
            credentials: Vec::new(),
            duration_ms,
            sdk,
            request: req,
            response: RecordedResponse { status, headers: rheaders, body: rbody },
        };
        tokio::task::spawn_blocking(move || {
            let mut ex = ex;
            ex.credentials = presented
                .into_iter()
                .map(|p| crate::cassette::model::Credential {
                    role: p.role.to_string(),
                    id: p.id,
                    verifier: p
                        .secret
                        .map(|s| crate::cassette::verifier::make(&s, crate::cassette::verifier::run_salt())),
                })
                .collect();
            store.append(&ex)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        self.stats.recorded.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn handle_upgrade(
        self: Arc<Self>,
        parts: http::request::Parts,
        on_upgrade: hyper::upgrade::OnUpgrade,
        target: Target,
    ) -> Response<ProxyBody> {
        let method = parts.method.to_string();
        let host = target.authority().to_string();
        let path = parts.uri.path().to_string();
        let query = parts.uri.query().map(String::from);
        let configured = self.config.is_configured_host(&target.host);
        let live = live_request(&parts.method, &parts.uri, &target, &parts.headers, Bytes::new());
        if self.mode == Mode::Replay || (self.mode == Mode::RecordMissing && configured) {
            let fp = self.matcher.fingerprint(&live);
            let index = self.index();
            // The recording of this channel: the same URL, else the same URL template (a channel id
            // issued by a replayed request may differ from a recorded one).
            let found = index.next(&fp).map(|r| r.map(|l| (*l.exchange).clone())).or_else(|| {
                let want = url_template(&live.host, &live.path);
                let h = index.heads().find(|h| h.status == 101 && url_template(h.host, h.path) == want)?;
                Some(index.exchange(h.pos).map(|e| (*e).clone()))
            });
            let found = match found {
                Some(Err(e)) => return self.unreadable(&method, &host, &path, &e),
                Some(Ok(ex)) => Some(ex),
                None => None,
            };
            if let Some(ex) = found {
                if ex.response.status != 101 {
                    self.stats.hits.incr();
                    self.note(&method, &host, &path, ex.response.status, "hit", None);
                    return replay_response(&ex.response);
                }
                if self.mode == Mode::Replay {
                    return self.replay_websocket(&parts, on_upgrade, ex, &target, index);
                }
            } else if self.mode == Mode::Replay {
                return self.miss(&live, &fp, &index, None);
            }
        }
        let Some(upstream) = &self.upstream else {
            return no_upstream();
        };
        let mut headers = parts.headers.clone();
        // Frames are recorded uncompressed (permessage-deflate would hide them).
        headers.remove("sec-websocket-extensions");
        let uri = format!(
            "{}://{}{}{}",
            target.scheme,
            host,
            path,
            query.as_ref().map(|q| format!("?{q}")).unwrap_or_default()
        );
        let mut b = Request::builder().method(parts.method.clone()).uri(&uri);
        if let Some(h) = b.headers_mut() {
            *h = headers;
        }
        let Ok(up_req) = b.body(http_body_util::Empty::<Bytes>::new()) else {
            return json_response(
                StatusCode::BAD_REQUEST,
                ("x-callvcr-error", "request"),
                json!({"message": "cannot forward this upgrade request", "status": 400}),
            );
        };
        let started = Clock::instant();
        let seq = self.store.as_ref().map(|st| st.allocate_seq()).unwrap_or(0);
        let mut resp = match upstream.upgrade(up_req).await {
            Ok(r) => r,
            Err(e) => return self.upstream_failure(&e, &method, &host, &path),
        };
        let status = resp.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            // Not upgraded: an ordinary answer (401, 404...), forwarded and recorded like any other.
            let (rparts, rbody) = resp.into_parts();
            let rbytes = match self.upstream_body(rbody, &target.host).await {
                Ok(b) => b,
                Err(err) => return self.upstream_failure(&err, &method, &host, &path),
            };
            let mut h = rparts.headers.clone();
            strip_hop_by_hop(&mut h);
            if configured {
                let took = started.elapsed().as_millis() as u64;
                if let Err(refused) = self.record_or_refuse(seq, live, status.as_u16(), &h, rbytes.clone(), took).await
                {
                    return refused;
                }
            }
            self.note(&method, &host, &path, status.as_u16(), "upstream", None);
            let mut r = Response::new(Full::new(rbytes));
            *r.status_mut() = status;
            *r.headers_mut() = h;
            return r;
        }
        let up_upgrade = hyper::upgrade::on(&mut resp);
        let client = self.ws_client_of(&live);
        if configured {
            let h = resp.headers().clone();
            let took = started.elapsed().as_millis() as u64;
            if let Err(refused) = self.record_or_refuse(seq, live, 101, &h, Bytes::new(), took).await {
                // The upstream session is dropped with `resp`: frames of a handshake the cassette
                // does not hold could never be replayed.
                return refused;
            }
        }
        self.note(&method, &host, &path, 101, "upstream", None);
        let me = self.clone();
        tokio::spawn(async move {
            match (on_upgrade.await, up_upgrade.await) {
                (Ok(c), Ok(u)) if configured && me.store.is_some() => {
                    let max = me.config.ws.max_message_bytes;
                    let sink: Arc<dyn crate::ws::RecordSink> = Arc::new(FrameSink(me));
                    crate::ws::record(c, u, seq, client, sink, max, format!("{host}{path}")).await;
                }
                (Ok(c), Ok(u)) => {
                    // Not recorded (not a configured host): bytes through, untouched.
                    let mut c = hyper_util::rt::TokioIo::new(c);
                    let mut u = hyper_util::rt::TokioIo::new(u);
                    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                        tracing::debug!("WebSocket tunnel closed: {e}");
                    }
                }
                (a, b) => {
                    tracing::warn!("WebSocket upgrade did not complete: client {:?}, upstream {:?}", a.err(), b.err())
                }
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        for (k, v) in resp.headers() {
            r.headers_mut().append(k.clone(), v.clone());
        }
        r
    }
}

impl Proxy {
    /// The client a recorded WebSocket session belongs to: its own bearer, else the creator of its
    /// Genesys channel, else anyone.
    fn ws_client_of(&self, live: &RecordedRequest) -> String {
        if live.header("authorization").is_some() {
            return client_key(&live.headers);
        }
        let channel = live.path.rsplit('/').next().unwrap_or("");
        self.channel_owner.lock().unwrap_or_else(|e| e.into_inner()).get(channel).cloned().unwrap_or_default()
    }

    /// Waits until the exchange `seq` has been replayed, or `limit_ms` of virtual time.
    async fn await_served(&self, index: &Index, seq: u64, limit_ms: u64) {
        self.poll_waiters.fetch_add(1, Ordering::AcqRel);
        let wait = async {
            loop {
                let w = self.ws.served_notified();
                tokio::pin!(w);
                w.as_mut().enable();
                if index.seq_served(seq) {
                    return;
                }
                w.await;
            }
        };
        tokio::select! {
            _ = wait => {}
            _ = self.timer.sleep_ms(limit_ms) => {
                tracing::warn!(seq, "a replayed long poll waited its timeout out for exchange {seq}, which was never replayed");
            }
        }
        self.poll_waiters.fetch_sub(1, Ordering::AcqRel);
    }

    /// A replayed Genesys subscription request updates the topics of the sessions on its channel.
    fn track_subscription(&self, method: &str, path: &str, body: &Bytes) {
        let Some(rest) = path.strip_suffix("/subscriptions") else { return };
        let Some(channel) = rest.rsplit('/').next() else { return };
        if !(method == "PUT" || method == "POST") {
            return;
        }
        let topics: Vec<String> = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t.get("id").and_then(|i| i.as_str()).map(String::from))
            .collect();
        self.ws.subscribe_channel(channel, &topics, method == "PUT");
    }

    /// Answers a WebSocket handshake from a recording: a fresh accept key, then the session plays.
    fn replay_websocket(
        self: &Arc<Self>,
        parts: &http::request::Parts,
        on_upgrade: hyper::upgrade::OnUpgrade,
        ex: Exchange,
        target: &Target,
        index: Arc<Index>,
    ) -> Response<ProxyBody> {
        let (method, host, path) = (parts.method.as_str(), target.authority(), parts.uri.path());
        let Some(key) = parts.headers.get("sec-websocket-key").and_then(|v| v.to_str().ok()) else {
            self.note(method, host, path, 400, "callvcr", Some("websocket-no-key"));
            return json_response(
                StatusCode::BAD_REQUEST,
                ("x-callvcr-error", "request"),
                json!({"message": "a WebSocket upgrade needs a Sec-WebSocket-Key header", "code": "bad.request", "status": 400}),
            );
        };
        if !self.ws.admit() {
            let limit = self.config.ws.max_sessions;
            tracing::warn!(%host, %path, "WebSocket session refused: {limit} sessions are open (ws.max_sessions)");
            self.note(method, host, path, 503, "callvcr", Some("websocket-session-limit"));
            let a = crate::overlay::platform_error(
                &self.ids,
                crate::platform::Platform::of_host(&target.host),
                503,
                crate::platform::ErrorKind::ServiceUnavailable,
                &format!("The maximum of {limit} concurrent WebSocket sessions is in use. Close one and retry."),
                json!([]),
                "websocket-session-limit",
            );
            return overlay_response(a, &[]);
        }
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        self.stats.hits.incr();
        self.note(method, host, path, 101, "hit", Some("websocket"));
        let url = format!("wss://{host}{path}{}", parts.uri.query().map(|q| format!("?{q}")).unwrap_or_default());
        let platform = crate::platform::Platform::of_host(&target.host);
        let hub = self.ws.clone();
        let seq = ex.seq;
        let session = hub.open(&url);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(io) => hub.serve(session, hyper_util::rt::TokioIo::new(io), seq, index, platform).await,
                Err(e) => {
                    hub.abandon(&session);
                    tracing::warn!("WebSocket upgrade did not complete: {e}");
                }
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(http::header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert("sec-websocket-accept", v);
        }
        // A subprotocol only when the client asked for the one the recording agreed.
        let asked = parts.headers.get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
        let agreed = ex.response.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"));
        if let (Some(asked), Some((_, p))) = (asked, agreed) {
            if asked.split(',').any(|a| a.trim() == p) {
                if let Ok(v) = HeaderValue::from_str(p) {
                    h.insert("sec-websocket-protocol", v);
                }
            }
        }
        r
    }
}

/// Frames go to the cassette, redacted, flushed before they are relayed.
struct FrameSink(Arc<Proxy>);

impl crate::ws::RecordSink for FrameSink {
    fn store(&self, mut frame: crate::cassette::Frame) -> futures_util::future::BoxFuture<'static, Result<(), String>> {
        let store = self.0.store.clone();
        if frame.kind == crate::cassette::FrameKind::Text {
            let red = self.0.matcher.redactor();
            frame.data.bytes = Bytes::from(red.body(Some("application/json"), &frame.data.bytes).into_owned());
        }
        let stats = self.0.clone();
        Box::pin(async move {
            let Some(store) = store else { return Ok(()) };
            tokio::task::spawn_blocking(move || store.append_frame(&frame))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            stats.stats.frames.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    }

    fn last_rest(&self, client: &str) -> Option<(u64, u64)> {
        self.0.recent_rest.lock().unwrap_or_else(|e| e.into_inner()).get(client).copied()
    }
}

/// Who made a request, for anchoring frames: the bearer token's hash, or empty (anyone).
fn client_key(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| format!("{:016x}", crate::cassette::fingerprint::fnv1a(v.trim().as_bytes())))
        .unwrap_or_default()
}

/// `host` and `path` with id-like segments (UUIDs, numbers, long tokens with digits) replaced.
fn url_template(host: &str, path: &str) -> String {
    let segs: Vec<String> = path
        .split('/')
        .map(|seg| {
            let digits = seg.bytes().filter(u8::is_ascii_digit).count();
            if !seg.is_empty() && (digits == seg.len() || (seg.len() >= 8 && digits > 0)) {
                "{}".to_string()
            } else {
                seg.to_string()
            }
        })
        .collect();
    format!("{}{}", host.to_ascii_lowercase(), segs.join("/"))
}

/// What the index gave for a request, before anything waits.
enum Lookup {
    /// Answered already (a hit, or an unreadable recording).
    Answered(Response<ProxyBody>),
    /// A long poll's recording, answered once what it waits for has happened.
    Poll(Arc<Exchange>, Box<Prepared>),
    /// No recording (or none looked for, in record mode or for a host not configured).
    Miss,
}

/// What `handle` already worked out about a request, passed on rather than worked out again.
#[derive(Clone, Copy)]
struct Seen<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    host: &'a str,
    configured: bool,
}

/// How a connection is to be cut by an injected fault (carried out by the listener's IO wrapper).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutPlan {
    /// Write nothing more; close.
    Close,
    /// Write bytes that are not HTTP, then close.
    Malformed,
    /// Let this many more bytes through, then cut the connection.
    After(usize),
}

/// Per connection: the listener hands it to the proxy with every request, and the proxy arms it
/// when a fault says to cut that connection.
#[derive(Debug, Default)]
pub struct CutSwitch {
    armed: std::sync::atomic::AtomicBool,
    plan: Mutex<Option<CutPlan>>,
}

impl CutSwitch {
    /// Arms the switch: the connection's next write carries the plan out.
    pub fn arm(&self, plan: CutPlan) {
        *self.plan.lock().unwrap_or_else(|e| e.into_inner()) = Some(plan);
        self.armed.store(true, Ordering::Release);
    }

    /// Whether a plan waits to be carried out.
    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Acquire)
    }

    /// The plan, once armed (taken once).
    pub fn take(&self) -> Option<CutPlan> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        self.armed.store(false, Ordering::Release);
        self.plan.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Roughly how many bytes `r` takes on the wire (head and body), for cutting it half way.
fn wire_size(r: &Response<ProxyBody>) -> usize {
    use hyper::body::Body as _;
    let head: usize = 17 + r.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>() + 2;
    head + r.body().size_hint().exact().unwrap_or(0) as usize
}

/// The request header that pins virtual time for one request.
pub const CLOCK_HEADER: &str = "x-callvcr-clock";

/// Error answers recorded in the cassette, for overlays to answer with the platform's own bytes.
fn recorded_errors(index: &Index) -> Recorded {
    let errors = index.select(|h| h.status >= 400);
    let by_code = Recorded::from_responses(
        errors.iter().map(|e| (e.response.status, e.response.headers.as_slice(), &e.response.body.bytes[..])),
    );
    let tokens = index
        .select(|h| crate::overlay::auth::is_token_request(h.host, h.method, h.path))
        .iter()
        .map(|e| crate::overlay::RecordedToken {
            seq: e.seq,
            host: e.request.host.split(':').next().unwrap_or(&e.request.host).to_ascii_lowercase(),
            credentials: e.credentials.clone(),
            answer: crate::overlay::recorded_answer(
                e.response.status,
                &e.response.headers,
                &e.response.body.bytes,
                format!("recorded:#{}", e.seq),
            ),
        })
        .collect();
    by_code.with_tokens(tokens)
}

/// The SDK a request announces (see [`crate::platform::SDK_HEADER`]), for the index's
/// per-version recordings.
fn sdk_of(headers: &HeaderMap) -> Option<&str> {
    const SDK: http::HeaderName = http::HeaderName::from_static(crate::platform::SDK_HEADER);
    headers.get(SDK).or_else(|| headers.get(http::header::USER_AGENT)).and_then(|v| v.to_str().ok())
}

/// A request header's value as text.
fn header_of<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Sets `extra` headers on a response, replacing any of the same name.
fn add_headers(h: &mut HeaderMap, extra: &[(String, String)]) {
    for (k, v) in extra {
        if let (Ok(name), Ok(value)) = (http::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            h.insert(name, value);
        }
    }
}

/// The journal's `answered_by` for an overlay's answer: `fault:<kind>` for injected faults.
fn answered_by(overlay: &str, detail: &str) -> String {
    if overlay == "faults" {
        format!("fault:{}", detail.split(':').next().unwrap_or("status"))
    } else {
        format!("overlay:{overlay}")
    }
}

/// An overlay's answer as the client receives it.
fn overlay_response(a: Answer, extra: &[(String, String)]) -> Response<ProxyBody> {
    let mut r = Response::new(Full::new(a.body));
    *r.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in &a.headers {
        if let (Ok(name), Ok(value)) = (http::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            r.headers_mut().append(name, value);
        }
    }
    add_headers(r.headers_mut(), extra);
    r
}

/// The answer when a forwarding path is reached in a mode without an upstream client (a bug, said plainly).
fn no_upstream() -> Response<ProxyBody> {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        ("x-callvcr-error", "internal"),
        json!({"message": "callvcr internal error: no upstream client in this mode", "code": "callvcr.internal", "status": 500}),
    )
}

/// Builds the client's response from a recording: status, headers as recorded (length recomputed),
/// body re-encoded as it arrived.
pub fn replay_response(rec: &RecordedResponse) -> Response<ProxyBody> {
    serve_prepared(&crate::cassette::index::prepare(rec))
}

fn serve_prepared(p: &Prepared) -> Response<ProxyBody> {
    let mut r = Response::new(Full::new(p.body.clone()));
    *r.status_mut() = p.status;
    *r.headers_mut() = p.headers.clone();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_keeps_the_last_entries_short_and_long() {
        let j = Journal::default();
        let long = format!("/api/v2/{}", "x".repeat(300));
        for i in 0..JOURNAL_CAP + 5 {
            let path = if i % 1000 == 7 { long.clone() } else { format!("/api/v2/users/{i}") };
            let detail = (i % 2 == 0).then(|| format!("d{i}"));
            j.note("GET", "api.mypurecloud.com", &path, 200, "hit", detail.as_deref());
        }
        let e = j.entries();
        assert_eq!(e.len(), JOURNAL_CAP);
        assert_eq!((e[0].seq, e[JOURNAL_CAP - 1].seq), (6, JOURNAL_CAP as u64 + 5));
        assert_eq!((e[0].path.as_str(), e[0].detail.as_deref()), ("/api/v2/users/5", None));
        let last = &e[JOURNAL_CAP - 1];
        assert_eq!((last.method.as_str(), last.host.as_str()), ("GET", "api.mypurecloud.com"));
        assert_eq!((last.path.as_str(), last.answered_by.as_str()), ("/api/v2/users/10004", "hit"));
        assert_eq!(last.detail.as_deref(), Some("d10004"));
        let l = e.iter().find(|x| x.seq == 1008).unwrap();
        assert_eq!((l.path.as_str(), l.detail.as_deref()), (long.as_str(), None));
        j.clear();
        j.note("POST", "h", "/p", 500, "miss", Some("why"));
        let e = j.entries();
        assert_eq!((e.len(), e[0].seq, e[0].detail.as_deref()), (1, 1, Some("why")));
    }

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
