//! Answers from the cassette: a hit served as recorded (or as the overlays have the resource
//! now), a long poll answered once what it waited for was replayed, a miss explained with its
//! closest recordings, and a recorded WebSocket session played.

use super::*;
use crate::cassette::fingerprint::Key;
use crate::cassette::timeshift::{TimeAnalysis, TimeShift};

impl Proxy {
    /// The index's answer to a request, found without waiting: the hot path, kept synchronous (and
    /// out of the request's future) so nothing large is carried from await to await.
    #[allow(clippy::too_many_arguments)] // the request's parts, and its key once worked out
    pub(super) fn look_up(
        &self,
        parts: &http::request::Parts,
        (bytes, parsed): (&Bytes, &ParsedBody<'_>),
        target: &Target,
        seen: &Seen<'_>,
        ctx: &Ctx,
        mark: Option<&str>,
        key: &RequestKey,
    ) -> Lookup {
        let Seen { method, path, query, host, configured } = *seen;
        // Only configured hosts are recorded; in plain record mode the index is empty and misses.
        if !configured {
            return Lookup::Miss;
        }
        // Answered under this thread's read lock on the index: no reference count is touched.
        // A long poll waits, so it takes its recording out of the lock.
        let index = self.index.read();
        let key = key.get_or_make(&index, || self.request_key(&index, parts, (bytes, parsed), seen));
        let headers = &parts.headers;
        let sdk = sdk_of(headers);
        let call = Call { method, host: &target.host, path, query, headers, body: bytes, parsed };
        let scope = crate::scope::current();
        match index.next_in_scope(key, sdk, scope.as_deref()) {
            None => Lookup::Miss,
            Some((Err(e), _)) => Lookup::Answered(self.unreadable(method, host, path, &e)),
            Some((Ok(l), _)) if crate::platform::is_long_poll(path) => {
                Lookup::Poll(l.exchange.clone(), Box::new(l.prepared.clone()))
            }
            Some((Ok(l), fresh)) => {
                ctx.repeated.store(!fresh, Ordering::Relaxed);
                Lookup::Answered(self.answer_hit(
                    &call,
                    host,
                    &l.exchange,
                    (&l.prepared, Some(&l.answer_json)),
                    ctx,
                    mark,
                ))
            }
        }
    }

    /// The key a request is matched by: its own times (a query's `updatedSince`, a body's
    /// interval) moved back onto the recording's clock first, as `index` keeps it. The overlays see
    /// the request as sent.
    pub(super) fn request_key(
        &self,
        index: &Index,
        parts: &http::request::Parts,
        (bytes, parsed): (&Bytes, &ParsedBody<'_>),
        seen: &Seen<'_>,
    ) -> Key {
        let (shifted_query, shifted_body) = shifted(index, seen.query, bytes);
        let shifted_parsed = shifted_body.as_ref().map(|b| ParsedBody::new(b));
        self.matcher.key_parsed(
            seen.method,
            seen.host,
            seen.path,
            shifted_query.as_deref().or(seen.query),
            |h| header_of(&parts.headers, h),
            shifted_parsed.as_ref().unwrap_or(parsed),
        )
    }

    /// The cassette's answer after [`Proxy::look_up`]: a long poll's wait; for a miss, the
    /// recorder's forward where there is one, else an overlay's answer or the miss explained;
    /// `mark` notes an injected fault that shaped it (latency) in the journal.
    #[allow(clippy::too_many_arguments)] // the request's parts, as `look_up` takes them, and what it found
    pub(super) async fn answer_from_cassette(
        &self,
        parts: &http::request::Parts,
        (bytes, parsed): (&Bytes, &ParsedBody<'_>),
        target: &Target,
        seen: &Seen<'_>,
        ctx: &Ctx,
        mark: Option<&str>,
        looked: Lookup,
    ) -> Response<ProxyBody> {
        let Seen { method, path, query, host, configured } = *seen;
        // The request as the overlays see it, its body parsed once (in `handle_request`).
        let call = Call { method, host: &target.host, path, query, headers: &parts.headers, body: bytes, parsed };
        match looked {
            Lookup::Answered(r) => return r,
            Lookup::Poll(ex, prepared) => {
                let secs = query
                    .and_then(|q| crate::encoding::decode_pairs(q).into_iter().find(|(k, _)| k == "timeout"))
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
                return self.answer_hit(&call, host, &ex, (&prepared, None), ctx, mark);
            }
            Lookup::Miss => {}
        }

        let mut live_headers = parts.headers.clone();
        strip_hop_by_hop(&mut live_headers);
        live_headers.remove(CLOCK_HEADER);
        let live = live_request(&parts.method, &parts.uri, target, &live_headers, bytes.clone());
        if let Some(rec) = &self.recorder {
            let method = (parts.method.clone(), parts.version);
            return Box::pin(self.forward(rec, method, live_headers, live, bytes.clone(), target.clone(), configured))
                .await;
        }
        if !configured {
            // Not a configured host: replay never touches the network.
            return self.refuse(Failure::not_intercepted(host), method, host, path);
        }
        if !self.overlays.pipeline.is_empty() {
            if let Some((name, a)) = self.overlays.pipeline.on_miss(&call, ctx) {
                let by = answered_by(name, &a.detail);
                tracing::info!(%method, %host, %path, status = a.status, answered_by = %by, detail = %a.detail, "overlay answered (no recording)");
                self.note(method, host, path, a.status, &by, Some(&a.detail));
                return overlay_response(a, &ctx.response_headers);
            }
        }
        // Off the hit path: the whole fingerprint, to explain the miss, of the request as it was
        // matched (its own times moved back onto the recording's clock).
        let index = self.index();
        let (shifted_query, shifted_body) = shifted(&index, query, bytes);
        let shifted_parsed = shifted_body.as_ref().map(|b| ParsedBody::new(b));
        let f = self.matcher.fingerprint_parsed(
            method,
            host,
            path,
            shifted_query.as_deref().or(query),
            |h| header_of(&parts.headers, h),
            shifted_parsed.as_ref().unwrap_or(parsed),
        );
        let mut r = self.miss(&live, &f, &index, mark);
        add_headers(r.headers_mut(), &ctx.response_headers);
        r
    }

    /// A cassette hit: counted, journaled, and served as recorded, or as the overlays have the
    /// resource now. Synchronous, so the hit path can run under the index's read lock.
    pub(super) fn answer_hit(
        &self,
        call: &Call<'_>,
        authority: &str,
        ex: &Exchange,
        (prepared, answer_json): (&Prepared, Option<&std::sync::OnceLock<Option<serde_json::Value>>>),
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
        if self.config.time_shift != crate::config::ShiftMode::Off {
            // `Date` is when the answer is given, on the virtual clock.
            let now = if ctx.now_ms != 0 { ctx.now_ms } else { self.timer.now_ms() };
            if let Some(v) = date_header(now) {
                r.headers_mut().insert(http::header::DATE, v);
            }
        }
        if !self.overlays.pipeline.is_empty() {
            // The recorded answer as JSON is parsed once per cassette (kept with the loaded exchange).
            let own;
            let answer = match answer_json {
                Some(slot) => ParsedBody::shared(&ex.response.body.bytes, slot),
                None => {
                    own = ParsedBody::new(&ex.response.body.bytes);
                    own
                }
            };
            if let Some(b) = self.overlays.pipeline.on_answer(call, ctx, ex.response.status, &answer) {
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
    pub(super) fn unreadable(
        &self,
        method: &str,
        host: &str,
        path: &str,
        e: &crate::cassette::CassetteError,
    ) -> Response<ProxyBody> {
        let message = format!("callvcr cannot read the recording for {method} {host}{path}: {e}");
        self.refuse(
            Failure::cassette("callvcr.cassette.unreadable", message, "cassette-unreadable"),
            method,
            host,
            path,
        )
    }

    /// A replay miss, explained: counted, logged and journaled (with `mark`, an injected fault
    /// that shaped it), and answered 404 with the closest three recordings and what differs, in
    /// the platform's error shape so an SDK reads it as an API error.
    pub(super) fn miss(
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
        if let Some(scope) = crate::scope::current() {
            // The journal counts a plain miss; one an injected fault shaped is counted here.
            self.journal.scopes.missed(&scope, format!("{what}{closest_line}"), mark.is_none());
        }
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
        // The platform's error fields beside callvcr's own, so an SDK reads it as an API error.
        let extra = json!({
            "contextId": format!("callvcr-miss-{n}"),
            "details": [],
            "errors": [],
            "request": {"method": live.method, "host": live.host, "path": live.path, "query": live.query},
            "closest": near.iter().map(|m| json!({"recorded": m.recorded, "differences": m.differences, "parts": m.fields, "hint": m.hint})).collect::<Vec<_>>(),
        });
        let serde_json::Value::Object(extra) = extra else { unreachable!("a JSON object literal") };
        Failure::miss(format!("callvcr replay miss: no recording matches {what}{closest_line}"), extra).response()
    }

    /// Waits until the exchange `seq` has been replayed, or `limit_ms` of virtual time.
    pub(super) async fn await_served(&self, index: &Index, seq: u64, limit_ms: u64) {
        self.poll_waiters.fetch_add(1, Ordering::AcqRel);
        let wait = self.ws.until_served(index, seq);
        tokio::select! {
            _ = wait => {}
            _ = self.timer.sleep_ms(limit_ms) => {
                tracing::warn!(seq, "a replayed long poll waited its timeout out for exchange {seq}, which was never replayed");
            }
        }
        self.poll_waiters.fetch_sub(1, Ordering::AcqRel);
    }

    /// A replayed Genesys subscription request updates the topics of the sessions on its channel.
    pub(super) fn track_subscription(&self, method: &str, path: &str, body: &Bytes) {
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
    pub(super) fn replay_websocket(
        self: &Arc<Self>,
        parts: &http::request::Parts,
        on_upgrade: hyper::upgrade::OnUpgrade,
        ex: Exchange,
        target: &Target,
        index: Arc<Index>,
    ) -> Response<ProxyBody> {
        let (method, host, path) = (parts.method.as_str(), target.authority(), parts.uri.path());
        let Some(key) = parts.headers.get("sec-websocket-key").and_then(|v| v.to_str().ok()) else {
            let message = "a WebSocket upgrade needs a Sec-WebSocket-Key header".to_string();
            let f = Failure::request(StatusCode::BAD_REQUEST, "bad.request", message, "websocket-no-key");
            return self.refuse(f, method, host, path);
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
        let session = hub.open(&url, hub.has_session(seq));
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

/// What the index gave for a request, before anything waits.
pub(super) enum Lookup {
    /// Answered already (a hit, or an unreadable recording).
    Answered(Response<ProxyBody>),
    /// A long poll's recording, answered once what it waits for has happened.
    Poll(Arc<Exchange>, Box<Prepared>),
    /// No recording (or none looked for, in record mode or for a host not configured).
    Miss,
}

/// What `handle` already worked out about a request, passed on rather than worked out again.
#[derive(Clone, Copy)]
pub(super) struct Seen<'a> {
    /// The request method.
    pub(super) method: &'a str,
    /// The request path.
    pub(super) path: &'a str,
    /// The query string, without `?`.
    pub(super) query: Option<&'a str>,
    /// The target's authority (`host` or `host:port`), as the cassette records hosts.
    pub(super) host: &'a str,
    /// Whether the host is one callvcr intercepts (only those are recorded and looked up).
    pub(super) configured: bool,
}

/// A request's match key, worked out at most once per index, by whichever needs it first (an
/// overlay's peek at the recording, or the lookup), and shared by both. Kept with the identity of
/// the index it was made against: the key depends on that index's time shift, and a cassette
/// switched in while the request waited gets a key of its own.
#[derive(Debug, Default)]
pub(super) struct RequestKey(std::sync::Mutex<Option<(u64, Key)>>);

impl RequestKey {
    /// The key for `index`, made by `make` the first time (or when the index is another).
    pub(super) fn get_or_make(&self, index: &Index, make: impl FnOnce() -> Key) -> Key {
        let mut k = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match *k {
            Some((id, key)) if id == index.id() => key,
            _ => {
                let key = make();
                *k = Some((index.id(), key));
                key
            }
        }
    }
}

/// Error answers recorded in the cassette, for overlays to answer with the platform's own bytes.
pub(super) fn recorded_errors(index: &Index) -> Recorded {
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
            shapes: e.token_shapes.clone(),
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

/// An overlay's answer as the client receives it.
pub(super) fn overlay_response(a: Answer, extra: &[(String, String)]) -> Response<ProxyBody> {
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

/// Builds the client's response from a recording: status, headers as recorded (length recomputed),
/// body re-encoded as it arrived.
pub fn replay_response(rec: &RecordedResponse) -> Response<ProxyBody> {
    serve_prepared(&crate::cassette::index::prepare(rec))
}

/// The response for a prepared recording: status and headers cloned, the body's bytes shared;
/// decoding and re-encoding were done when it was prepared, not per hit.
pub(super) fn serve_prepared(p: &Prepared) -> Response<ProxyBody> {
    let mut r = Response::new(Full::new(p.body.clone()));
    *r.status_mut() = p.status;
    *r.headers_mut() = p.headers.clone();
    r
}

/// `Date` for the second holding `now_ms`, made once per second per thread: the hit path formats
/// no date of its own.
fn date_header(now_ms: i64) -> Option<HeaderValue> {
    thread_local! {
        /// The last second formatted on this thread, and its header value.
        static LAST: std::cell::RefCell<(i64, Option<HeaderValue>)> = const { std::cell::RefCell::new((i64::MIN, None)) };
    }
    let sec = now_ms.div_euclid(1000);
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != sec {
            *last = (sec, HeaderValue::from_str(&crate::cassette::timeshift::http_date(now_ms, ' ')).ok());
        }
        last.1.clone()
    })
}

/// The time analysis kept in a replay file (beside the overlays' own): the recording's start and
/// its time fields, so a replay need not read the whole cassette to shift it.
impl crate::cassette::replayfile::Analysis for TimeAnalysis {
    /// The key it is kept under: [`crate::cassette::timeshift::ANALYSIS`].
    fn name(&self) -> &'static str {
        crate::cassette::timeshift::ANALYSIS
    }

    /// Sees one exchange: its recorded time and its JSON answer's fields.
    fn observe(&mut self, e: &Exchange) {
        TimeAnalysis::observe(self, e)
    }

    /// The recording's start and its time fields, as [`TimeAnalysis::read`] reads them back.
    fn finish(self: Box<Self>) -> serde_json::Value {
        TimeAnalysis::finish(*self)
    }
}

/// Opens `cassette` (a name under `dir`, or a file) for a replay that starts at `now_ms`: its
/// index and frames with the recording's times moved onto the virtual clock as `cfg` says.
pub fn open_replay(
    cfg: &Config,
    cassette: &str,
    dir: &std::path::Path,
    matcher: &Matcher,
    now_ms: i64,
) -> Result<(String, Index, Vec<crate::cassette::Frame>), crate::cassette::CassetteError> {
    let analyses = || {
        let mut a = crate::overlay::analyses();
        a.push(Box::<TimeAnalysis>::default());
        a
    };
    let (name, index, mut frames) = crate::cassette::store::open_for_replay(cassette, dir, matcher, &analyses)?;
    let shift = time_shift(cfg, &index, &frames, now_ms);
    tracing::info!(cassette = %name, mode = shift.mode.as_str(), shift_ms = shift.delta_ms, "recorded times move onto the virtual clock");
    frames.iter_mut().for_each(|f| shift.frame(f));
    Ok((name, index.with_shift(shift), frames))
}

/// How a replay starting at `now_ms` moves the recording's times: by the distance from the
/// recording's first exchange to now, over the fields the cassette shows holding times (from its
/// replay file, else read from the cassette once) and those `time_shift.fields` lists.
fn time_shift(cfg: &Config, index: &Index, frames: &[crate::cassette::Frame], now_ms: i64) -> TimeShift {
    let (start, mut fields) = match index.analysis(crate::cassette::timeshift::ANALYSIS).and_then(TimeAnalysis::read) {
        Some(found) => found,
        None => {
            let all = index.select(|_| true);
            TimeAnalysis::of(all.iter().map(|e| &**e), frames)
        }
    };
    // A replay file's analysis saw the exchanges only; the frames name their own time fields.
    let (_, in_frames) = TimeAnalysis::of(std::iter::empty(), frames);
    fields.strings.extend(in_frames.strings);
    fields.epochs.extend(in_frames.epochs);
    let delta_ms = start.map(|s| now_ms - s).unwrap_or(0);
    TimeShift { delta_ms, mode: cfg.time_shift, fields: fields.with_listed(&cfg.time_shift_fields) }
}

/// A live request's query and body with their own times moved back onto the recording's clock
/// (each `None` when nothing moved): what matching compares with the recordings.
fn shifted(index: &Index, query: Option<&str>, body: &[u8]) -> (Option<String>, Option<Bytes>) {
    match index.shift() {
        Some(t) => (query.and_then(|q| t.live_query(q)), t.live_body(body)),
        None => (None, None),
    }
}
