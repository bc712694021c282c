//! The record path: a request forwarded to the platform over verified TLS, its answer read within
//! the limits, stored (redacted, secrets as verifiers) before it is relayed.

use super::*;

/// The record side of a proxy: the upstream it forwards to, the store every exchange and frame
/// goes to, and what recording tracks per client so replay can keep causes before effects (a long
/// poll or a WebSocket event answered after the request that caused it).
pub struct Recorder {
    /// The cassette being written.
    pub(super) store: Arc<Store>,
    /// The client to the real platform.
    upstream: Upstream,
    /// Record only what the cassette does not answer (`record --missing`).
    pub(super) missing_only: bool,
    /// Per client (bearer), the last REST exchange started: (sequence, monotonic ms).
    recent_rest: Mutex<HashMap<String, (u64, u64)>>,
    /// Genesys notification channel id → the client that created it.
    channel_owner: Mutex<HashMap<String, String>>,
    /// Re-recording by test scope (`record --by-scope`): the scopes whose earlier exchanges this
    /// run already dropped, so each is replaced once, before its first new exchange is stored.
    by_scope: Option<Arc<Mutex<std::collections::HashSet<String>>>>,
}

/// The client key of requests sent without a credential (token requests), apart from anyone's.
const ANONYMOUS: &str = "(no credential)";

impl Recorder {
    /// Records into `store` what it forwards through `upstream`; with `missing_only`, only what
    /// the cassette already in `store` does not answer.
    pub fn new(store: Arc<Store>, upstream: Upstream, missing_only: bool) -> Recorder {
        Recorder {
            store,
            upstream,
            missing_only,
            recent_rest: Mutex::new(HashMap::new()),
            channel_owner: Mutex::new(HashMap::new()),
            by_scope: None,
        }
    }

    /// The recorder re-recording by test scope: the cassette is kept, and a scope that records in
    /// this run has the exchanges (and WebSocket frames) it recorded before dropped first.
    pub fn by_scope(mut self) -> Recorder {
        self.by_scope = Some(Arc::new(Mutex::new(std::collections::HashSet::new())));
        self
    }

    /// Whether only misses are recorded.
    pub fn missing_only(&self) -> bool {
        self.missing_only
    }

    /// The upstream client.
    pub(super) fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// A sequence number for an exchange about to be forwarded, noted as `client`'s latest (and
    /// anyone's, under the empty key) so a long poll or frame answered later can name its cause.
    pub(super) fn start(&self, client: &str) -> u64 {
        let seq = self.store.allocate_seq();
        let now = crate::clock::mono_ms();
        let mut recent = self.recent_rest.lock().unwrap_or_else(|e| e.into_inner());
        recent.insert(client.to_string(), (seq, now));
        recent.insert(String::new(), (seq, now));
        if client.is_empty() {
            // No credential: a sign-in or a token refresh, which any client's later answers may
            // follow from.
            recent.insert(ANONYMOUS.to_string(), (seq, now));
        }
        seq
    }

    /// A sequence number for a WebSocket handshake (not a cause of anything by itself).
    pub(super) fn allocate_seq(&self) -> u64 {
        self.store.allocate_seq()
    }

    /// The last REST exchange `client` started (sequence, monotonic ms); the empty key is anyone's,
    /// [`ANONYMOUS`] the last one sent without a credential.
    fn last_rest(&self, client: &str) -> Option<(u64, u64)> {
        self.recent_rest.lock().unwrap_or_else(|e| e.into_inner()).get(client).copied()
    }

    /// Notes that `client` created the notification channel `id` (bounded: a run that creates
    /// more than 10 000 channels forgets the older owners).
    fn owns_channel(&self, id: String, client: &str) {
        let mut owners = self.channel_owner.lock().unwrap_or_else(|e| e.into_inner());
        if owners.len() > 10_000 {
            owners.clear();
        }
        owners.insert(id, client.to_string());
    }

    /// The client that created the notification channel `id`, if recording saw it.
    pub(super) fn channel_owner(&self, id: &str) -> Option<String> {
        self.channel_owner.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }
}

impl Proxy {
    /// The answer to an upstream that failed (refused, timed out, broke the protocol), counted.
    pub(super) fn upstream_failure(
        &self,
        e: &UpstreamError,
        method: &str,
        host: &str,
        path: &str,
    ) -> Response<ProxyBody> {
        self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
        self.refuse(Failure::upstream(e, host), method, host, path)
    }

    /// Forwards a request through `rec` and relays the answer, stored first when `configured`
    /// (and not ignored); any other host's traffic passes through unrecorded.
    #[allow(clippy::too_many_arguments)] // the request as the dispatcher split it, and the recorder
    pub(super) async fn forward(
        &self,
        rec: &Recorder,
        (method, version): (Method, http::Version),
        headers: HeaderMap,
        live: RecordedRequest,
        bytes: Bytes,
        target: Target,
        configured: bool,
    ) -> Response<ProxyBody> {
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
                let f = Failure::request(
                    StatusCode::BAD_REQUEST,
                    "callvcr.request.forward",
                    format!("cannot forward this request: {e}"),
                    "bad-request",
                );
                return self.refuse(f, &live.method, &live.host, &live.path);
            }
        };
        let started = Clock::instant();
        let client = client_key(&live.headers);
        let seq = rec.start(&client);
        // The platform hears the protocol the SDK spoke: HTTP/1.1 stays HTTP/1.1, HTTP/2 may stay HTTP/2.
        let h1 = version < http::Version::HTTP_2;
        let resp = match rec.upstream.send_as(up_req, h1).await {
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
                    rec.owns_channel(id, &client);
                }
            }
            let stored = Stored { seq, status, headers: &rparts.headers, body: rbytes.clone(), duration_ms };
            if let Err(refused) = self.store_or_refuse(rec, live.clone(), stored).await {
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
    pub(super) async fn upstream_body(&self, body: hyper::body::Incoming, host: &str) -> Result<Bytes, UpstreamError> {
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
    /// saying so (an answer the cassette does not hold would make the next replay miss). The
    /// request and answer are redacted, and a token request keeps who it presented itself as, its
    /// secrets only as verifiers.
    pub(super) async fn store_or_refuse(
        &self,
        rec: &Recorder,
        live: RecordedRequest,
        answer: Stored<'_>,
    ) -> Result<(), Response<ProxyBody>> {
        let (method, host, path) = (live.method.clone(), live.host.clone(), live.path.clone());
        let Stored { seq, status, headers: resp_headers, body: rbytes, duration_ms } = answer;
        let store = rec.store.clone();
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
        red.stored_headers(&mut req.headers);
        if let Some(q) = &req.query {
            req.query = Some(red.urlencoded(q).into_owned());
        }
        let ct = req.header("content-type").map(String::from);
        req.body.bytes = Bytes::from(red.body(ct.as_deref(), &req.body.bytes).into_owned());

        let mut rheaders = header_pairs(resp_headers);
        red.headers(&mut rheaders);
        let mut rbody = stored_body(resp_headers, rbytes);
        // An opaque token leaves only its shape: replay mints one alike.
        let token_shapes = if crate::overlay::auth::is_token_request(&host, &method, &path) && status == 200 {
            crate::cassette::model::TokenShape::of_answer(&rbody.bytes)
        } else {
            Vec::new()
        };
        let rct = resp_headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        rbody.bytes = Bytes::from(red.stored_body(rct, &rbody.bytes).into_owned());
        // A long poll answered (with events, or the session's end: anything but the idle 304)
        // after another request by the same client started, or a token request: that request
        // caused its answer, so replay answers the poll once that one was replayed.
        let after = if crate::platform::is_long_poll(&req.path) && status != 304 {
            let by_client = rec.last_rest(&client_key(&live_headers_for_anchor)).map(|(s, _)| s);
            let by_sign_in = rec.last_rest(ANONYMOUS).map(|(s, _)| s);
            by_client.max(by_sign_in).filter(|s| *s > seq)
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
            scope: crate::scope::current().map(|s| s.to_string()),
            token_shapes,
            request: req,
            response: RecordedResponse { status, headers: rheaders, body: rbody },
        };
        let replacing = rec.by_scope.clone().zip(ex.scope.clone());
        if let Some((done, scope)) = replacing {
            let store = store.clone();
            let dropped = tokio::task::spawn_blocking(move || {
                // Held while the old ones go, so a scope's first two exchanges at once wait for it.
                let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
                if !done.contains(&scope) {
                    let n = store.remove_scope(&scope)?;
                    tracing::info!(%scope, dropped = n, "scope recorded again: its earlier exchanges dropped");
                    done.insert(scope);
                }
                Ok::<(), crate::cassette::store::CassetteError>(())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
            if let Err(e) = dropped {
                let message = format!("callvcr could not store this exchange: {e}");
                let f = Failure::cassette("callvcr.cassette.write", message, "cassette-write-failed");
                return Err(self.refuse(f, &method, &host, &path));
            }
        }
        let mut ex = ex;
        if !presented.is_empty() {
            // A secret's verifier is slow to make by design (a key-derivation function): off the
            // async threads.
            let made = tokio::task::spawn_blocking(move || {
                presented
                    .into_iter()
                    .map(|p| crate::cassette::model::Credential {
                        role: p.role.to_string(),
                        id: p.id,
                        verifier: p
                            .secret
                            .map(|s| crate::cassette::verifier::make(&s, crate::cassette::verifier::run_salt())),
                    })
                    .collect()
            })
            .await;
            match made {
                Ok(c) => ex.credentials = c,
                Err(e) => {
                    let message = format!("callvcr could not store this exchange: {e}");
                    let f = Failure::cassette("callvcr.cassette.write", message, "cassette-write-failed");
                    return Err(self.refuse(f, &method, &host, &path));
                }
            }
        }
        let appended = store
            .commit(&ex)
            .await
            .map_err(|_| "the cassette's writer has stopped".to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match appended {
            Ok(()) => {
                self.stats.recorded.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                let message = format!("callvcr could not store this exchange: {e}");
                let f = Failure::cassette("callvcr.cassette.write", message, "cassette-write-failed");
                Err(self.refuse(f, &method, &host, &path))
            }
        }
    }
}

/// An upstream answer about to be stored: its sequence, status, headers, body and how long the
/// upstream took.
pub(super) struct Stored<'a> {
    /// The exchange's sequence number, taken before it was forwarded.
    pub(super) seq: u64,
    /// HTTP status.
    pub(super) status: u16,
    /// Response headers (redacted when stored).
    pub(super) headers: &'a HeaderMap,
    /// The body as received (still encoded; decoded for storage).
    pub(super) body: Bytes,
    /// How long the upstream took, from sending the request to reading the whole answer.
    pub(super) duration_ms: u64,
}

/// Frames go to the cassette, redacted, flushed before they are relayed. Holds the proxy, which
/// is known to have a recorder (the sink is made only on the record path).
pub(super) struct FrameSink(pub(super) Arc<Proxy>);

impl FrameSink {
    /// The proxy's recorder: always there on the record path; were it not, frames would be
    /// dropped rather than the session panicking.
    fn recorder(&self) -> Option<&Recorder> {
        self.0.recorder.as_ref()
    }
}

impl crate::ws::RecordSink for FrameSink {
    /// Redacts a text frame as JSON, appends it off the async threads and counts it; the future
    /// resolves once it is written, so the frame is relayed only after it is stored.
    fn store(&self, mut frame: crate::cassette::Frame) -> futures_util::future::BoxFuture<'static, Result<(), String>> {
        let store = self.recorder().map(|r| r.store.clone());
        if frame.kind == crate::cassette::FrameKind::Text {
            let red = self.0.matcher.redactor();
            frame.data.bytes = Bytes::from(red.body(Some("application/json"), &frame.data.bytes).into_owned());
        }
        let stats = self.0.clone();
        Box::pin(async move {
            let Some(store) = store else { return Ok(()) };
            store
                .commit_frame(&frame)
                .await
                .map_err(|_| "the cassette's writer has stopped".to_string())?
                .map_err(|e| e.to_string())?;
            stats.stats.frames.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    }

    /// The recorder's last REST exchange by `client`: the cause a server frame may name.
    fn last_rest(&self, client: &str) -> Option<(u64, u64)> {
        self.recorder()?.last_rest(client)
    }
}
