//! WebSocket handshakes: replayed from a recording, or forwarded and recorded frame by frame.

use super::*;

impl Proxy {
    /// Answers an upgrade request (a WebSocket handshake). The recording is looked up by URL, else
    /// by URL template: a recorded refusal (401, 404...) is served as it is, and in replay a
    /// recorded session plays (no recording is a miss). Otherwise recording forwards the
    /// handshake without compression and stores it and then every frame; a host not configured is
    /// tunnelled byte for byte, unrecorded.
    pub(super) async fn handle_upgrade(
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
        // Replay looks every handshake up; recording looks up configured hosts only (the index is
        // the cassette so far with `--missing`, empty otherwise).
        if self.recorder.is_none() || configured {
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
                if self.recorder.is_none() {
                    return self.replay_websocket(&parts, on_upgrade, ex, &target, index);
                }
            } else if self.recorder.is_none() {
                return self.miss(&live, &fp, &index, None);
            }
        }
        let Some(rec) = &self.recorder else {
            // Replay found a recording that is not a session (above) or missed: nothing is left.
            return self.miss(&live, &self.matcher.fingerprint(&live), &self.index(), None);
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
            let f = Failure::request(
                StatusCode::BAD_REQUEST,
                "callvcr.request.forward",
                "cannot forward this upgrade request".into(),
                "bad-request",
            );
            return self.refuse(f, &method, &host, &path);
        };
        let started = Clock::instant();
        let seq = rec.allocate_seq();
        let mut resp = match rec.upstream().upgrade(up_req).await {
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
                let stored =
                    Stored { seq, status: status.as_u16(), headers: &h, body: rbytes.clone(), duration_ms: took };
                if let Err(refused) = self.store_or_refuse(rec, live, stored).await {
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
            let stored = Stored { seq, status: 101, headers: &h, body: Bytes::new(), duration_ms: took };
            if let Err(refused) = self.store_or_refuse(rec, live, stored).await {
                // The upstream session is dropped with `resp`: frames of a handshake the cassette
                // does not hold could never be replayed.
                return refused;
            }
        }
        self.note(&method, &host, &path, 101, "upstream", None);
        let me = self.clone();
        tokio::spawn(async move {
            match (on_upgrade.await, up_upgrade.await) {
                (Ok(c), Ok(u)) if configured => {
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

    /// The client a recorded WebSocket session belongs to: its own bearer, else the creator of its
    /// Genesys channel, else anyone.
    pub(super) fn ws_client_of(&self, live: &RecordedRequest) -> String {
        if live.header("authorization").is_some() {
            return client_key(&live.headers);
        }
        let channel = live.path.rsplit('/').next().unwrap_or("");
        self.recorder.as_ref().and_then(|r| r.channel_owner(channel)).unwrap_or_default()
    }
}

/// Whether a request asks to switch protocols (`Upgrade` with `Connection: upgrade`).
pub(super) fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(http::header::UPGRADE)
        && h.get_all(http::header::CONNECTION)
            .iter()
            .any(|v| v.to_str().map(|s| s.to_ascii_lowercase().contains("upgrade")).unwrap_or(false))
}

/// `host` and `path` with id-like segments (UUIDs, numbers, long tokens with digits) replaced.
pub(super) fn url_template(host: &str, path: &str) -> String {
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
