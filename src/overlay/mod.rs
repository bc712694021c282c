//! Stateful overlays: the platform's rules kept alive in replay (injected faults, auth, rate limits,
//! SDK versions, request validation, call states, CRUD collections). Each overlay is a plain function
//! of (request, its own state, virtual now) → decision; none of them touches a socket or reads the
//! system time. The proxy runs them as one [`Pipeline`] in the order DESIGN gives:
//! faults → auth → rate-limit → versions → validate → state → crud.

pub(crate) mod auth;
pub(crate) mod crud;
pub(crate) mod faults;
pub(crate) mod ids;
pub(crate) mod jwt;
pub(crate) mod machine;
pub(crate) mod ratelimit;
pub(crate) mod state;
pub(crate) mod validate;
pub(crate) mod versions;

use std::collections::HashMap;

use bytes::Bytes;
use http::HeaderMap;

use crate::cassette::index::Peeked;
use crate::cassette::model::Exchange;

pub(crate) use crate::encoding::ParsedBody;
pub(crate) use crate::platform::Platform;
use crate::platform::{ApiError, ErrorBody, ErrorKind};
pub(crate) use ids::Ids;

pub(crate) use crate::config::overlays::{check_name, NAMES};

/// One request as overlays see it.
#[derive(Debug)]
pub struct Call<'a> {
    /// Method, upper case.
    pub method: &'a str,
    /// Host name, lower case, without port.
    pub host: &'a str,
    /// Path.
    pub path: &'a str,
    /// Raw query string.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Request body.
    pub body: &'a Bytes,
    /// The same body, parsed once when first read as JSON (see [`Call::json`]).
    pub parsed: &'a ParsedBody<'a>,
}

impl Call<'_> {
    /// The body as JSON, parsed once per request and shared by every overlay (and the matcher);
    /// `None` when it is empty or not JSON.
    pub fn json(&self) -> Option<&serde_json::Value> {
        self.parsed.json()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The bearer token in `Authorization`, when there is one.
    pub fn bearer(&self) -> Option<&str> {
        let v = self.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.trim();
        let (scheme, rest) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim()).filter(|t| !t.is_empty())
    }

    /// Which platform this host belongs to.
    pub fn platform(&self) -> Platform {
        Platform::of_host(self.host)
    }
}

/// What one request carries from overlay to overlay.
#[derive(Debug, Default)]
pub struct Ctx {
    /// Virtual now for this request (pinned by `x-callvcr-clock` when sent).
    pub now_ms: i64,
    /// The caller, once the auth overlay has recognised its token.
    pub principal: Option<Principal>,
    /// Headers overlays want on whatever answer goes out (replacing ones of the same name).
    pub response_headers: Vec<(String, String)>,
    /// Set by an overlay that answered in the place of the recording the request would get (a
    /// token minted for a recorded token answer): that recording counts as served, so the next
    /// request finds the one after it.
    pub took_recording: bool,
    /// Set when the cassette answered with a recording served before (its key's recordings ran
    /// out and the last repeats): the run has left the recording there.
    pub repeated: std::sync::atomic::AtomicBool,
}

/// Who made a request, once its bearer token is recognised: the OAuth client it was issued to.
/// (The token itself is the request's `Authorization` header.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The OAuth client id (shared with the token store, so cloning it is cheap).
    pub client_id: std::sync::Arc<str>,
    /// Whether the token speaks for a user (any grant but client credentials).
    pub user: bool,
}

/// An error answer in `platform`'s shape: `kind` says what was refused, `message` why, `details`
/// what was wrong where the platform has a place for it.
pub(crate) fn platform_error(
    ids: &Ids,
    platform: Platform,
    status: u16,
    kind: ErrorKind<'_>,
    message: &str,
    details: serde_json::Value,
    detail: impl Into<String>,
) -> Answer {
    Answer::from_error(platform.error(&ApiError { status, kind, message, details }, ids.uuid()), detail)
}

/// An answer made by an overlay, in the platform's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
    /// Why, for the log and journal (e.g. `expired-token`).
    pub detail: String,
    /// Hold the answer until virtual time reaches this instant (a slow platform operation).
    pub not_before_ms: Option<i64>,
    /// What the answer rests on: the run (a token the run expired, a call it moved) or a built-in
    /// rule, which yields to a recorded answer that says otherwise.
    pub basis: Basis,
}

/// What an overlay's answer rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Basis {
    /// Something the run did that the recording did not (an expired token, an advanced clock, a
    /// call moved another way, an injected fault): stands whatever the recording shows.
    #[default]
    Run,
    /// Built-in or inferred knowledge of the platform: overruled where the run is where the
    /// recording was and the recording shows what the platform answered to this very request.
    Rule,
}

impl Answer {
    /// A JSON answer.
    pub fn json(status: u16, body: &serde_json::Value, detail: impl Into<String>) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
            detail: detail.into(),
            not_before_ms: None,
            basis: Basis::Run,
        }
    }

    /// A platform's error answer (see [`Platform::error`]).
    pub fn from_error(e: ErrorBody, detail: impl Into<String>) -> Answer {
        let mut a = Answer::json(e.status, &e.body, detail);
        a.headers[0].1 = e.content_type.to_string();
        a.headers.extend(e.headers);
        a
    }

    /// The same answer, resting on a built-in rule (see [`Basis::Rule`]).
    pub fn by_rule(mut self) -> Answer {
        self.basis = Basis::Rule;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Answer {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// What an overlay decides about a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not mine, or allowed: the next overlay (then the cassette) answers.
    Continue,
    /// Answer now with this.
    Answer(Answer),
    /// Ask again once virtual time reaches this instant (a queued request).
    RetryAt(i64),
    /// Wait until this virtual instant, then go on to the next overlay (injected latency); the
    /// text says what was injected.
    Delay(i64, String),
    /// Never answer: hold the request until the client gives up (an injected hang).
    Hang(String),
    /// Cut the connection the request came on (an injected connection fault).
    Cut(faults::Cut, String),
}

/// Platform error answers found in the cassette, keyed by status and error code, so an overlay can
/// answer with the platform's own bytes where the recording holds them.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Behind a lock only taken when an overlay looks an answer up (a refusal) or the cassette
    /// changes: requests pass a reference to it, nothing per request.
    by_code: std::sync::RwLock<std::sync::Arc<HashMap<(u16, String), Answer>>>,
    /// The recorded token requests: who presented themselves and what the platform answered.
    tokens: std::sync::RwLock<std::sync::Arc<Vec<RecordedToken>>>,
}

/// One recorded token request, as the auth overlay learns from it.
#[derive(Debug, Clone)]
pub struct RecordedToken {
    /// Its sequence number in the cassette.
    pub seq: u64,
    /// Host, without port.
    pub host: String,
    /// Who it presented itself as (identifiers and verifiers, never secrets).
    pub credentials: Vec<crate::cassette::model::Credential>,
    /// The platform's answer.
    pub answer: Answer,
    /// The shapes of the opaque tokens it gave.
    pub shapes: Vec<crate::cassette::model::TokenShape>,
}

/// A recorded response as an answer (the platform's own bytes; lengths and encodings are the
/// server's to set again).
pub(crate) fn recorded_answer(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    detail: impl Into<String>,
) -> Answer {
    Answer {
        status,
        headers: headers
            .iter()
            .filter(|(k, _)| {
                !k.eq_ignore_ascii_case("content-length")
                    && !k.eq_ignore_ascii_case("content-encoding")
                    && !k.eq_ignore_ascii_case("transfer-encoding")
            })
            .cloned()
            .collect(),
        body: Bytes::copy_from_slice(body),
        detail: detail.into(),
        not_before_ms: None,
        basis: Basis::Run,
    }
}

/// The analyses a cassette's replay file keeps for the overlays (learned state machines).
pub(crate) fn analyses() -> Vec<Box<dyn crate::cassette::replayfile::Analysis>> {
    vec![Box::new(state::Learner::default())]
}

impl Recorded {
    /// Collects error answers from recorded responses: (status, headers, body).
    pub fn from_responses<'a>(responses: impl Iterator<Item = (u16, &'a [(String, String)], &'a [u8])>) -> Recorded {
        let mut by_code = HashMap::new();
        for (status, headers, body) in responses {
            if status < 400 {
                continue;
            }
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { continue };
            let code = v.get("code").or_else(|| v.get("error")).and_then(|c| c.as_str());
            if let Some(code) = code {
                by_code
                    .entry((status, code.to_string()))
                    .or_insert_with(|| recorded_answer(status, headers, body, String::new()));
            }
        }
        Recorded { by_code: std::sync::RwLock::new(std::sync::Arc::new(by_code)), tokens: Default::default() }
    }

    /// The same, knowing the cassette's token requests too.
    pub fn with_tokens(self, tokens: Vec<RecordedToken>) -> Recorded {
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(tokens);
        self
    }

    /// The cassette's token requests, in recorded order.
    pub fn tokens(&self) -> std::sync::Arc<Vec<RecordedToken>> {
        self.tokens.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The platform's own answer for `status` and `code`, when the cassette holds one.
    pub fn get(&self, status: u16, code: &str) -> Option<Answer> {
        let map = self.by_code.read().unwrap_or_else(|e| e.into_inner()).clone();
        map.get(&(status, code.to_string())).cloned()
    }

    /// Takes what `other` holds (a cassette switch).
    pub fn replace(&self, other: Recorded) {
        let new = other.by_code.into_inner().unwrap_or_else(|e| e.into_inner());
        *self.by_code.write().unwrap_or_else(|e| e.into_inner()) = new;
        let tokens = other.tokens.into_inner().unwrap_or_else(|e| e.into_inner());
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = tokens;
    }
}

/// What the cassette shows about one request, for an overlay deciding it: the platform's recorded
/// errors, and the recorded answer this request would get (looked at only when an overlay asks).
pub struct Evidence<'a> {
    /// The platform's error answers found in the cassette.
    pub recorded: &'a Recorded,
    /// Finds the recording the request would get; called at most once, on the first [`Evidence::peek()`].
    peek: &'a (dyn Fn() -> Option<Peeked> + 'a),
    /// What `peek` found, once asked: reading a recording can mean a disk read, so most requests never do.
    seen: std::cell::OnceCell<Option<Peeked>>,
}

impl std::fmt::Debug for Evidence<'_> {
    /// Shows what was peeked, if anything (the closure has nothing to show).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evidence").field("peeked", &self.seen.get()).finish()
    }
}

/// The peek of [`Evidence::none`]: no recording.
fn no_peek() -> Option<Peeked> {
    None
}

impl<'a> Evidence<'a> {
    /// Evidence whose recorded answer `peek` finds, once asked for.
    pub fn new(recorded: &'a Recorded, peek: &'a (dyn Fn() -> Option<Peeked> + 'a)) -> Evidence<'a> {
        Evidence { recorded, peek, seen: std::cell::OnceCell::new() }
    }

    /// Evidence with no recorded answer for the request (a unit test, a miss).
    pub fn none(recorded: &'a Recorded) -> Evidence<'a> {
        Evidence::new(recorded, &no_peek)
    }

    /// The recording the request would be answered with, whether or not it was served already.
    pub fn peek(&self) -> Option<&Peeked> {
        self.seen.get_or_init(|| (self.peek)()).as_ref()
    }

    /// The recorded exchange the request would get, when the run is where the recording was: the
    /// recording has not been served yet, and the live request carries the recorded body.
    pub fn following(&self, call: &Call<'_>) -> Option<&Exchange> {
        let p = self.peek().filter(|p| p.fresh)?;
        let rec = &p.exchange.request.body.bytes;
        let same = rec[..] == call.body[..]
            || (!call.body.is_empty()
                && matches!(
                    (serde_json::from_slice::<serde_json::Value>(rec), call.json()),
                    (Ok(a), Some(b)) if a == *b
                ));
        same.then_some(&*p.exchange)
    }
}

/// An overlay: implements the phases it cares about; the rest pass on.
pub trait Overlay: Send + Sync {
    /// Its name, as `--no-overlay` and the journal spell it.
    fn name(&self) -> &'static str;

    /// Before the cassette: answer, continue, or ask to be called again later.
    fn on_request(&self, _call: &Call<'_>, _ctx: &mut Ctx, _ev: &Evidence<'_>) -> Decision {
        Decision::Continue
    }

    /// On the way back: may add headers to any answer (the cassette's or another overlay's).
    fn on_response(&self, _call: &Call<'_>, _ctx: &Ctx, _headers: &mut HeaderMap) {}

    /// After the cassette answered with `status` and (decoded) `body`: may replace the body the
    /// client gets (a resource shown in its current state), or take note of the answer.
    fn on_answer(&self, _call: &Call<'_>, _ctx: &Ctx, _status: u16, _body: &ParsedBody<'_>) -> Option<Bytes> {
        None
    }

    /// When the cassette holds no answer: may answer in the platform's place.
    fn on_miss(&self, _call: &Call<'_>, _ctx: &Ctx) -> Option<Answer> {
        None
    }

    /// Whether recordings of this request are superseded by the overlay (so never replaying them is
    /// not "unused").
    fn owns(&self, _host: &str, _path: &str) -> bool {
        false
    }

    /// Back to the start state.
    fn reset(&self) {}
}

impl<T: Overlay> Overlay for std::sync::Arc<T> {
    /// The inner overlay's; this and the other phases forward to it, so a shared handle (kept for the
    /// admin API) runs in the pipeline as the overlay itself.
    fn name(&self) -> &'static str {
        (**self).name()
    }
    /// Forwards to the inner overlay.
    fn on_request(&self, call: &Call<'_>, ctx: &mut Ctx, ev: &Evidence<'_>) -> Decision {
        (**self).on_request(call, ctx, ev)
    }
    /// Forwards to the inner overlay.
    fn on_response(&self, call: &Call<'_>, ctx: &Ctx, headers: &mut HeaderMap) {
        (**self).on_response(call, ctx, headers)
    }
    /// Forwards to the inner overlay.
    fn on_answer(&self, call: &Call<'_>, ctx: &Ctx, status: u16, body: &ParsedBody<'_>) -> Option<Bytes> {
        (**self).on_answer(call, ctx, status, body)
    }
    /// Forwards to the inner overlay.
    fn on_miss(&self, call: &Call<'_>, ctx: &Ctx) -> Option<Answer> {
        (**self).on_miss(call, ctx)
    }
    /// Forwards to the inner overlay.
    fn owns(&self, host: &str, path: &str) -> bool {
        (**self).owns(host, path)
    }
    /// Forwards to the inner overlay.
    fn reset(&self) {
        (**self).reset()
    }
}

/// The overlays of one replay: the pipeline, plus handles the admin API drives.
#[derive(Debug)]
pub struct Overlays {
    /// The overlays switched on, in running order.
    pub pipeline: Pipeline,
    /// The auth overlay, when on.
    pub auth: Option<std::sync::Arc<auth::Auth>>,
    /// The faults overlay, when on.
    pub faults: Option<std::sync::Arc<faults::Faults>>,
    /// The validation overlay, when on.
    pub validate: Option<std::sync::Arc<validate::Validate>>,
    /// The state overlay, when on.
    pub state: Option<std::sync::Arc<state::State>>,
    /// The CRUD overlay, when on.
    pub crud: Option<std::sync::Arc<crud::Crud>>,
}

impl Overlays {
    /// No overlays (record modes).
    pub fn none() -> Overlays {
        Overlays { pipeline: Pipeline::empty(), auth: None, faults: None, validate: None, state: None, crud: None }
    }

    /// The overlays `config` switches on, sharing `ids`; `nice_key` gives the key for NICE tokens;
    /// fault windows start at `now_ms`; request schemas, recorded calls and collections are learned
    /// from the cassette `index` holds.
    pub fn from_config(
        config: &crate::config::Config,
        ids: std::sync::Arc<Ids>,
        nice_key: auth::KeySource,
        now_ms: i64,
        index: &std::sync::Arc<crate::cassette::Index>,
    ) -> Overlays {
        let mut list: Vec<Box<dyn Overlay>> = Vec::new();
        let mut auth_handle = None;
        let mut faults_handle = None;
        if config.overlay_on("faults") {
            let f = std::sync::Arc::new(faults::Faults::new(
                config.faults.rules.clone(),
                config.seed,
                config.faults.query_trigger,
                config.faults.query_timeout_ms,
                ids.clone(),
                now_ms,
            ));
            faults_handle = Some(f.clone());
            list.push(Box::new(f));
        }
        if config.overlay_on("auth") {
            let a = std::sync::Arc::new(auth::Auth::new(config.auth.clone(), ids.clone(), nice_key));
            auth_handle = Some(a.clone());
            list.push(Box::new(a));
        }
        if config.overlay_on("rate-limit") && !config.rate_rules.is_empty() {
            list.push(Box::new(ratelimit::RateLimit::new(
                config.rate_rules.clone(),
                ratelimit::headers_from(config.rate_headers, index),
                ids.clone(),
            )));
        }
        if config.overlay_on("versions") && !config.versions.routes.is_empty() {
            list.push(Box::new(versions::Versions::new(config.versions.clone(), ids.clone())));
        }
        let mut validate_handle = None;
        if config.overlay_on("validate") {
            let v = std::sync::Arc::new(validate::Validate::new(config.validate.clone(), ids.clone(), index));
            validate_handle = Some(v.clone());
            list.push(Box::new(v));
        }
        let mut state_handle = None;
        if config.overlay_on("state") {
            let s = std::sync::Arc::new(state::State::new(config.state.clone(), ids.clone(), index));
            state_handle = Some(s.clone());
            list.push(Box::new(s));
        }
        let mut crud_handle = None;
        if config.overlay_on("crud") && !config.crud.is_empty() {
            let c = std::sync::Arc::new(crud::Crud::new(config.crud.clone(), ids, index));
            crud_handle = Some(c.clone());
            list.push(Box::new(c));
        }
        Overlays {
            pipeline: Pipeline::new(list),
            auth: auth_handle,
            faults: faults_handle,
            validate: validate_handle,
            state: state_handle,
            crud: crud_handle,
        }
    }
}

/// The overlays switched on, in running order.
pub struct Pipeline {
    /// Sorted into [`NAMES`] order by [`Pipeline::new`]; the order is part of the behaviour (faults
    /// before auth, so an injected outage answers even a request without a token).
    overlays: Vec<Box<dyn Overlay>>,
}

impl std::fmt::Debug for Pipeline {
    /// The overlays' names, in running order.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.overlays.iter().map(|o| o.name())).finish()
    }
}

impl Pipeline {
    /// A pipeline of `overlays`, run in the order of [`NAMES`] whatever order they are given in.
    pub fn new(mut overlays: Vec<Box<dyn Overlay>>) -> Pipeline {
        overlays.sort_by_key(|o| NAMES.iter().position(|n| *n == o.name()).unwrap_or(usize::MAX));
        Pipeline { overlays }
    }

    /// No overlays.
    pub fn empty() -> Pipeline {
        Pipeline { overlays: Vec::new() }
    }

    /// Whether no overlay is on.
    pub fn is_empty(&self) -> bool {
        self.overlays.is_empty()
    }

    /// Names of the overlays switched on.
    pub fn names(&self) -> Vec<&'static str> {
        self.overlays.iter().map(|o| o.name()).collect()
    }

    /// Runs the request phase of each overlay from position `from` on, until one answers or asks to
    /// be called again: `Some((position, name, decision))`, or `None` when all continue. A caller
    /// told `RetryAt` calls again from that position, so earlier overlays do not count it twice.
    pub fn on_request(
        &self,
        from: usize,
        call: &Call<'_>,
        ctx: &mut Ctx,
        ev: &Evidence<'_>,
    ) -> Option<(usize, &'static str, Decision)> {
        for (i, o) in self.overlays.iter().enumerate().skip(from) {
            match o.on_request(call, ctx, ev) {
                Decision::Continue => {}
                Decision::Answer(a) if a.basis == Basis::Rule => {
                    // A built-in rule answers where the recording shows what the platform answered
                    // to this very request: the recording wins (DESIGN's first rule).
                    match ev.following(call) {
                        Some(ex) => tracing::info!(
                            overlay = o.name(),
                            rule = %a.detail,
                            "not answered with {}: the recording (#{}) shows the platform answering {} to this request",
                            a.status,
                            ex.seq,
                            ex.response.status
                        ),
                        None => return Some((i, o.name(), Decision::Answer(a))),
                    }
                }
                d => return Some((i, o.name(), d)),
            }
        }
        None
    }

    /// Runs every overlay's response phase.
    pub fn on_response(&self, call: &Call<'_>, ctx: &Ctx, headers: &mut HeaderMap) {
        for o in &self.overlays {
            o.on_response(call, ctx, headers);
        }
    }

    /// Runs every overlay's answer phase over a cassette answer; the last replacement body wins
    /// (each overlay sees the body as the one before it left it).
    pub fn on_answer(&self, call: &Call<'_>, ctx: &Ctx, status: u16, body: &ParsedBody<'_>) -> Option<Bytes> {
        let mut out: Option<Bytes> = None;
        for o in &self.overlays {
            let replaced = out.as_ref().map(|b| ParsedBody::new(b));
            if let Some(b) = o.on_answer(call, ctx, status, replaced.as_ref().unwrap_or(body)) {
                out = Some(b);
            }
        }
        out
    }

    /// The first overlay that answers a miss: (its name, the answer).
    pub fn on_miss(&self, call: &Call<'_>, ctx: &Ctx) -> Option<(&'static str, Answer)> {
        self.overlays.iter().find_map(|o| o.on_miss(call, ctx).map(|a| (o.name(), a)))
    }

    /// Whether an overlay supersedes recordings of this request.
    pub fn owns(&self, host: &str, path: &str) -> bool {
        self.overlays.iter().any(|o| o.owns(host, path))
    }

    /// Every overlay back to its start state.
    pub fn reset(&self) {
        self.overlays.iter().for_each(|o| o.reset());
    }
}
