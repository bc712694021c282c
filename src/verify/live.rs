//! The IO edge of `callvcr verify`: each planned request sent to the live platform through the
//! verified upstream client (its resolver and `resolve` overrides, never the hosts file), a 429
//! waited out and sent again, long polls answered alongside the requests that cause them, and
//! WebSocket sessions opened live and listened to until the recorded events have come. What to
//! send and how to judge the answers is the pure core's ([`super::plan`], [`super::session`],
//! [`super::compare`], [`super::events`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

use crate::cassette::index::describe;
use crate::cassette::model::{
    Anchor, Body, Cassette, Exchange, Frame, FrameKind, RecordedResponse, TokenShape, HOP_BY_HOP,
};
use crate::cassette::Redactor;
use crate::clock::Clock;
use crate::config::VerifyConfig;
use crate::upstream::Upstream;

use super::compare::{self, Rules};
use super::events::{self, LiveFrame};
use super::ids::IdMap;
use super::plan::{self, Kind, Skip};
use super::report::{self, ExchangeResult, Outcome, Replacement, Report};
use super::session::{Credentials, LiveRequest, Session};

/// How a run goes.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Send writes that change the sandbox.
    pub(crate) mutations: bool,
    /// What counts as drift.
    pub(crate) rules: Rules,
    /// The `verify:` settings (waits, retries, a token endpoint).
    pub(crate) cfg: VerifyConfig,
    /// How long an answer's body may take once its head came.
    pub(crate) body_timeout: Duration,
    /// The largest answer body read (`limits.max_body_bytes`).
    pub(crate) max_body_bytes: usize,
}

/// What a run found and what `--update` would write.
#[derive(Debug)]
pub(crate) struct Verified {
    /// The report.
    pub(crate) report: Report,
    /// The recording with the drifted exchanges' live answers.
    pub(crate) updated: Cassette,
    /// The run's sign-in state: it knows every secret, to scrub text before it is shown.
    pub(crate) session: Session,
}

/// A live answer: as received (decoded) for the session, and as a cassette would store it
/// (redacted) for comparing and writing back.
#[derive(Debug, Clone)]
struct Answer {
    /// Headers as received, hop-by-hop apart.
    raw_headers: Vec<(String, String)>,
    /// Body as received, decoded.
    raw_body: Bytes,
    /// Redacted as recording redacts.
    stored: RecordedResponse,
    /// How long the last attempt took.
    ms: u64,
    /// 429 answers waited out before it.
    rate_limited: u32,
    /// How long those waits were.
    waited_ms: u64,
}

/// What sending needs, owned so a long poll can be sent from its own task.
#[derive(Clone)]
struct Sender {
    /// The verified upstream client.
    upstream: Upstream,
    /// Redaction as recording does it.
    red: Redactor,
    /// Retries and their limits.
    cfg: VerifyConfig,
    /// How long a body may take.
    body_timeout: Duration,
    /// The largest body read.
    max_body_bytes: usize,
}

impl Sender {
    /// `req` as an HTTP request.
    fn http(req: &LiveRequest) -> Result<http::Request<Full<Bytes>>, String> {
        let mut b = http::Request::builder().method(req.method.as_str()).uri(req.uri());
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        b.body(Full::new(req.body.clone())).map_err(|e| format!("cannot build the request: {e}"))
    }

    /// The answer from its head and body: hop-by-hop headers left out, the body decoded, and a
    /// redacted copy as a cassette stores it.
    fn answer(&self, status: u16, headers: &http::HeaderMap, bytes: Bytes, ms: u64) -> Answer {
        let raw_headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()))
            .collect();
        let enc = headers
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_ascii_lowercase());
        let (raw_body, encoding) = match enc.as_deref() {
            Some(e) if e != "identity" => match crate::cassette::model::decode(e, &bytes) {
                Some(d) => (Bytes::from(d), Some(e.to_string())),
                None => (bytes, None),
            },
            _ => (bytes, None),
        };
        let mut stored_headers = raw_headers.clone();
        self.red.headers(&mut stored_headers);
        let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let stored_body = Bytes::from(self.red.stored_body(ct, &raw_body).into_owned());
        let stored = RecordedResponse { status, headers: stored_headers, body: Body { bytes: stored_body, encoding } };
        Answer { raw_headers, raw_body, stored, ms, rate_limited: 0, waited_ms: 0 }
    }

    /// Reads a response's body within the body timeout.
    async fn body(&self, body: hyper::body::Incoming) -> Result<Bytes, String> {
        let limited = http_body_util::Limited::new(body, self.max_body_bytes);
        match tokio::time::timeout(self.body_timeout, limited.collect()).await {
            Ok(Ok(c)) => Ok(c.to_bytes()),
            Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                Err(format!("the answer's body is over the {}-byte limit (limits.max_body_bytes)", self.max_body_bytes))
            }
            Ok(Err(e)) => Err(format!("the answer's body broke off: {e}")),
            Err(_) => Err(format!("the answer's body did not finish within {} ms", self.body_timeout.as_millis())),
        }
    }

    /// Sends `req`; a 429 (where the recording had none) waits its `Retry-After` and is sent
    /// again, up to the configured retries. Err: no answer (DNS, connect, TLS, timeout).
    async fn send(&self, req: &LiveRequest, recorded_status: u16) -> Result<Answer, String> {
        let (mut limited, mut waited) = (0u32, 0u64);
        loop {
            let started = Clock::instant();
            let resp = self.upstream.send(Self::http(req)?).await.map_err(|e| e.to_string())?;
            let (parts, body) = resp.into_parts();
            let bytes = self.body(body).await?;
            let ms = started.elapsed().as_millis() as u64;
            let status = parts.status.as_u16();
            if status == 429 && recorded_status != 429 && limited < self.cfg.max_retries {
                let after = parts.headers.get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok());
                let wait = super::retry_after_ms(after, Clock::system().now_ms(), limited);
                if wait <= self.cfg.max_retry_after_s.saturating_mul(1000) {
                    tracing::info!("rate limited (429): waiting {wait} ms as Retry-After says, then sending it again");
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    limited += 1;
                    waited += wait;
                    continue;
                }
            }
            let mut a = self.answer(status, &parts.headers, bytes, ms);
            a.rate_limited = limited;
            a.waited_ms = waited;
            return Ok(a);
        }
    }
}

/// A WebSocket session opened live.
struct LiveSession {
    /// The handshake exchange.
    seq: u64,
    /// Its result's place in the list.
    index: usize,
    /// The frames the platform sent so far.
    frames: Arc<Mutex<Vec<LiveFrame>>>,
    /// Tells the reader to close.
    stop: tokio::sync::watch::Sender<bool>,
    /// The reader; gives an error that ended it early.
    task: tokio::task::JoinHandle<Option<String>>,
}

/// The most frames of one live session kept for the comparison (a bound on memory).
const MAX_LIVE_FRAMES: usize = 100_000;

/// Reads a live session's frames until told to stop, after sending the recorded client frames;
/// each text frame redacted as recording redacts one.
async fn read_session<S>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    client: Vec<(FrameKind, Bytes)>,
    red: Redactor,
    frames: Arc<Mutex<Vec<LiveFrame>>>,
    arrived: Arc<tokio::sync::Notify>,
    last_sent: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let started = Clock::instant();
    for (kind, data) in client {
        let m = match kind {
            FrameKind::Text => Message::text(String::from_utf8_lossy(&data).into_owned()),
            _ => Message::binary(data),
        };
        if let Err(e) = ws.send(m).await {
            return Some(e.to_string());
        }
    }
    let err = loop {
        tokio::select! {
            m = ws.next() => {
                let (kind, data) = match m {
                    None => break None,
                    Some(Err(e)) => break Some(e.to_string()),
                    Some(Ok(Message::Text(t))) => (FrameKind::Text, Bytes::copy_from_slice(t.as_bytes())),
                    Some(Ok(Message::Binary(b))) => (FrameKind::Binary, b),
                    Some(Ok(Message::Close(_))) => break None,
                    Some(Ok(_)) => continue,
                };
                let after = Some(last_sent.load(Ordering::SeqCst)).filter(|s| *s > 0);
                let at_ms = started.elapsed().as_millis() as u64;
                // Redacted as recording redacts a frame: it is compared with redacted recordings
                // and may be written into the --update cassette.
                let data = match kind {
                    FrameKind::Text => Bytes::from(red.body(Some("application/json"), &data).into_owned()),
                    _ => data,
                };
                {
                    let mut kept = frames.lock().unwrap_or_else(|e| e.into_inner());
                    if kept.len() >= MAX_LIVE_FRAMES {
                        break Some(format!("more than {MAX_LIVE_FRAMES} frames: stopped reading the session"));
                    }
                    kept.push(LiveFrame { at_ms, after, kind, data });
                }
                arrived.notify_waiters();
            }
            _ = stop.changed() => break None,
        }
    };
    let _ = ws.close(None).await;
    err
}

/// Why a step was not sent, for the report.
fn skip_reason(s: Skip) -> String {
    match s {
        Skip::Mutation => "changes the sandbox (--mutations sends it)".to_string(),
        Skip::DependsOn(seq) => format!("uses what #{seq} would have made, and #{seq} was not sent"),
        Skip::AnsweredBy(seq) => format!("its recorded answer came of #{seq}, which was not sent"),
    }
}

/// A PKCE verifier for this run: 32 random bytes, base64url.
fn fresh_verifier() -> String {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 32];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Every recorded text ids could be in.
fn recorded_texts(c: &Cassette) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    for e in &c.exchanges {
        out.extend([e.request.path.as_bytes(), e.request.query.as_deref().unwrap_or("").as_bytes()]);
        out.extend([&e.request.body.bytes[..], &e.response.body.bytes[..]]);
        out.extend(e.response.headers.iter().map(|(_, v)| v.as_bytes()));
    }
    out.extend(c.frames.iter().map(|f| &f.data.bytes[..]));
    out
}

/// One run over a cassette.
struct Runner<'a> {
    /// Sends.
    sender: Sender,
    /// How the run goes.
    opts: &'a Options,
    /// Credentials, tokens, ids.
    session: Session,
    /// The exchange the run last sent (0: none yet), for anchoring live frames.
    last_sent: Arc<AtomicU64>,
    /// Token keys with no sign-in in the cassette: a client-credentials sign-in is made for them.
    fallback: HashSet<String>,
    /// What the run found, exchange by exchange.
    results: Vec<ExchangeResult>,
    /// Live answers of the exchanges that drifted.
    replacements: HashMap<u64, Replacement>,
    /// Sign-ins the run made itself.
    sign_ins: Vec<String>,
    /// Woken whenever a live session receives a frame.
    arrived: Arc<tokio::sync::Notify>,
}

impl Runner<'_> {
    /// Signs in with client credentials before the first bearer call of a token key whose
    /// sign-in the cassette does not hold.
    async fn ensure_signed_in(&mut self, e: &Exchange) {
        let key = plan::token_key(e);
        if !plan::redacted_bearer(e) || self.session.has_token(&key) || !self.fallback.remove(&key) {
            return;
        }
        let host = plan::host_only(&e.request.host);
        let endpoint = self
            .opts
            .cfg
            .token_url
            .clone()
            .or_else(|| plan::platform_of(e).token_endpoint_for(&host).map(|(h, p)| (h, p.to_string())));
        let Some((h, p)) = endpoint else { return };
        let req = self.session.sign_in_request(&h, &p);
        let note = match self.sender.send(&req, 200).await {
            Ok(a) => {
                self.session.took_answer(&key, Kind::Token, a.stored.status, &a.raw_headers, &a.raw_body);
                format!("client credentials at https://{h}{p} for {host}: {}", a.stored.status)
            }
            Err(err) => format!("client credentials at https://{h}{p} for {host} failed: {err}"),
        };
        tracing::info!("signed in: {note}");
        self.sign_ins.push(note);
    }

    /// Takes a live answer to exchange `e` into `res`: tokens and codes to the session, ids
    /// learned, drift found, and the live answer kept for `--update` when it drifted.
    fn settle(&mut self, e: &Exchange, kind: Kind, res: &mut ExchangeResult, got: Result<Answer, String>) {
        let a = match got {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!("#{} {}: not verified: {why}", e.seq, res.request);
                res.outcome = Outcome::Unverified;
                res.reason = Some(why);
                return;
            }
        };
        tracing::info!("#{} {}: {} in {} ms", e.seq, res.request, a.stored.status, a.ms);
        (res.live_status, res.live_ms, res.rate_limited, res.waited_ms) =
            (Some(a.stored.status), Some(a.ms), a.rate_limited, a.waited_ms);
        self.session.took_answer(&plan::token_key(e), kind, a.stored.status, &a.raw_headers, &a.raw_body);
        if a.stored.status == 429 && e.response.status != 429 {
            res.outcome = Outcome::Unverified;
            res.reason = Some(format!("still rate limited (429) after {} retries", a.rate_limited));
            return;
        }
        let (rec, live) = (&e.response, &a.stored);
        if let (Some(x), Some(y)) =
            (compare::json_of(&rec.headers, &rec.body.bytes), compare::json_of(&live.headers, &live.body.bytes))
        {
            self.session.ids.learn_json(e.seq, &x, &y);
        }
        let location =
            |h: &[(String, String)]| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("location")).map(|(_, v)| v.clone());
        if let (Some(x), Some(y)) = (location(&rec.headers), location(&live.headers)) {
            self.session.ids.learn_text(e.seq, "Location", &x, &y, false);
        }
        let mut drift = compare::answer(rec, live, plan::platform_of(e), &self.opts.rules);
        if !matches!(kind, Kind::LongPoll | Kind::WebSocket) {
            drift.extend(compare::timing(e.duration_ms, a.ms, &self.opts.rules));
        }
        if !drift.is_empty() {
            let token_shapes = if kind == Kind::Token { TokenShape::of_answer(&a.raw_body) } else { Vec::new() };
            let response = report::restored(live, &self.session.ids);
            self.replacements.insert(e.seq, Replacement { response, duration_ms: a.ms, token_shapes });
        }
        res.drift = drift;
    }

    /// Waits for a long poll sent from its own task and settles its result (at `index`).
    async fn settle_poll(&mut self, index: usize, e: &Exchange, task: tokio::task::JoinHandle<Result<Answer, String>>) {
        let got = task.await.unwrap_or_else(|err| Err(format!("the request task failed: {err}")));
        let mut res = self.results[index].clone();
        self.settle(e, Kind::LongPoll, &mut res, got);
        self.results[index] = res;
    }

    /// Opens exchange `e`'s WebSocket session live. A handshake the platform does not accept is
    /// settled as an ordinary answer; an accepted one is read from its own task.
    async fn open(&mut self, e: &Exchange, c: &Cassette, mut res: ExchangeResult) -> Option<LiveSession> {
        let req = self.session.request(e, Kind::WebSocket);
        let mut b = http::Request::builder().method("GET").uri(req.uri());
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
        let built = b
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", key)
            .body(Empty::<Bytes>::new());
        let started = Clock::instant();
        let resp = match built {
            Ok(r) => self.sender.upstream.upgrade(r).await.map_err(|e| e.to_string()),
            Err(err) => Err(format!("cannot build the handshake: {err}")),
        };
        let mut resp = match resp {
            Ok(r) => r,
            Err(why) => {
                self.settle(e, Kind::WebSocket, &mut res, Err(why));
                self.results.push(res);
                return None;
            }
        };
        let ms = started.elapsed().as_millis() as u64;
        if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            let (parts, body) = resp.into_parts();
            let got =
                self.sender.body(body).await.map(|b| self.sender.answer(parts.status.as_u16(), &parts.headers, b, ms));
            self.settle(e, Kind::WebSocket, &mut res, got);
            self.results.push(res);
            return None;
        }
        let head = self.sender.answer(101, resp.headers(), Bytes::new(), ms);
        let upgraded = match hyper::upgrade::on(&mut resp).await {
            Ok(u) => u,
            Err(err) => {
                self.settle(e, Kind::WebSocket, &mut res, Err(format!("the WebSocket upgrade failed: {err}")));
                self.results.push(res);
                return None;
            }
        };
        self.settle(e, Kind::WebSocket, &mut res, Ok(head));
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await;
        let client: Vec<(FrameKind, Bytes)> = c
            .frames
            .iter()
            .filter(|f| f.session == e.seq && f.dir == crate::cassette::model::Dir::Client)
            .filter(|f| matches!(f.kind, FrameKind::Text | FrameKind::Binary))
            .map(|f| match std::str::from_utf8(&f.data.bytes) {
                Ok(t) => (f.kind, Bytes::from(self.session.ids.rewrite(t).into_owned())),
                Err(_) => (f.kind, f.data.bytes.clone()),
            })
            .collect();
        let frames: Arc<Mutex<Vec<LiveFrame>>> = Arc::default();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(read_session(
            ws,
            client,
            self.sender.red.clone(),
            frames.clone(),
            self.arrived.clone(),
            self.last_sent.clone(),
            stopped,
        ));
        let index = self.results.len();
        self.results.push(res);
        Some(LiveSession { seq: e.seq, index, frames, stop, task })
    }
}

/// Runs `c` (named `name`) against the live platform: every planned request sent in recorded
/// order, long polls and WebSocket sessions alongside, each answer compared.
pub(crate) async fn run(
    name: &str,
    c: &Cassette,
    upstream: Upstream,
    red: Redactor,
    creds: Credentials,
    opts: &Options,
) -> Verified {
    // Where the live run's clock starts: `--update` moves live times back onto the recording's by it.
    let asked_from_ms = Clock::system().now_ms();
    let steps = plan::plan(&c.exchanges, opts.mutations);
    let needs = plan::needs(&c.exchanges, &steps);
    let first_skipped = steps.iter().filter(|s| s.skip.is_some()).map(|s| s.seq).min();
    let session = Session::new(creds, fresh_verifier(), IdMap::new(IdMap::known_in(recorded_texts(c))));
    let sender = Sender {
        upstream,
        red,
        cfg: opts.cfg.clone(),
        body_timeout: opts.body_timeout,
        max_body_bytes: opts.max_body_bytes,
    };
    let mut r = Runner {
        sender,
        opts,
        session,
        last_sent: Arc::new(AtomicU64::new(0)),
        fallback: needs.sign_in.into_iter().map(|(k, _)| k).collect(),
        results: Vec::new(),
        replacements: HashMap::new(),
        sign_ins: Vec::new(),
        arrived: Arc::default(),
    };
    let mut polls = Vec::new();
    let mut sessions = Vec::new();
    for (e, step) in c.exchanges.iter().zip(&steps) {
        let mut res = ExchangeResult::new(e.seq, describe(&e.request), e.response.status, e.duration_ms);
        if let Some(skip) = step.skip {
            res.outcome = Outcome::Skipped;
            res.reason = Some(skip_reason(skip));
            r.results.push(res);
            continue;
        }
        r.ensure_signed_in(e).await;
        r.last_sent.store(e.seq, Ordering::SeqCst);
        match step.kind {
            Kind::WebSocket => sessions.extend(r.open(e, c, res).await),
            Kind::LongPoll => {
                // Its answer waits for what later requests cause: sent alongside them. An SDK
                // polls one session in a loop, so the poll before it on that path is answered first.
                let path = (e.request.host.clone(), e.request.path.clone());
                if let Some(i) = polls.iter().position(|(_, p, _, _)| *p == path) {
                    let (index, _, before, task) = polls.swap_remove(i);
                    r.settle_poll(index, before, task).await;
                }
                let (sender, req, status) = (r.sender.clone(), r.session.request(e, step.kind), e.response.status);
                polls.push((r.results.len(), path, e, tokio::spawn(async move { sender.send(&req, status).await })));
                r.results.push(res);
            }
            kind => {
                let req = r.session.request(e, kind);
                let got = r.sender.send(&req, e.response.status).await;
                r.settle(e, kind, &mut res, got);
                r.results.push(res);
            }
        }
    }
    for (index, _, e, task) in polls {
        r.settle_poll(index, e, task).await;
    }
    let expected = |f: &Frame| match f.after {
        Some(Anchor::Rest(a)) => first_skipped.is_none_or(|s| a < s),
        _ => true,
    };
    let session_updates = finish_sessions(&mut r, c, sessions, &expected).await;
    let ids = r.session.ids.learned().to_vec();
    let report = Report::new(name, opts.mutations, r.results, ids, r.sign_ins);
    let updated = report::updated(c, &r.replacements, &session_updates, asked_from_ms);
    Verified { report, updated, session: r.session }
}

/// Waits (up to `verify.ws_wait_ms`) until each live session has the events the recording
/// leads the run to expect, closes them, and compares their events; gives the frames to write
/// back for each session that drifted.
async fn finish_sessions(
    r: &mut Runner<'_>,
    c: &Cassette,
    sessions: Vec<LiveSession>,
    expected: &dyn Fn(&Frame) -> bool,
) -> HashMap<u64, Vec<Frame>> {
    if sessions.is_empty() {
        return HashMap::new();
    }
    let recorded = |seq: u64| c.frames.iter().filter(|f| f.session == seq).cloned().collect::<Vec<Frame>>();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(r.opts.cfg.ws_wait_ms);
    let wanted: Vec<_> = sessions.iter().map(|s| events::expected_counts(&recorded(s.seq), expected)).collect();
    loop {
        let woken = r.arrived.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let done = sessions
            .iter()
            .zip(&wanted)
            .all(|(s, w)| events::satisfied(w, &s.frames.lock().unwrap_or_else(|e| e.into_inner())));
        if done {
            // What the recording shows has come; a moment more shows what it does not.
            let grace = Duration::from_millis(r.opts.cfg.ws_wait_ms.min(300));
            tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + grace)).await;
            break;
        }
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let mut out = HashMap::new();
    for s in sessions {
        let _ = s.stop.send(true);
        if let Ok(Some(err)) = s.task.await {
            tracing::warn!("#{}: the live WebSocket session ended early: {err}", s.seq);
        }
        let live = s.frames.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let rec = recorded(s.seq);
        let drift = events::compare(&rec, expected, &live, &r.opts.rules);
        if !drift.is_empty() {
            out.insert(s.seq, report::session_frames(s.seq, &rec, &live, &r.session.ids));
        }
        r.results[s.index].drift.extend(drift);
    }
    out
}
