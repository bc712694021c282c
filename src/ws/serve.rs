//! One replayed session served: the writer (the only task writing to the socket), the player
//! (recorded server frames, each when what caused it has happened), heartbeats and keep-alive
//! pings on the virtual clock, and the reader (client messages and their replies).

use super::*;

/// Where a session is: its number, and the host and path it was opened on (for faults and the
/// journal).
struct Where {
    /// The number in its id (`ws-<n>`).
    n: u64,
    /// Host, without port.
    host: String,
    /// Path, without query.
    path: String,
}

impl Where {
    /// Where `session` is, from its id and URL.
    fn of(session: &Session) -> Where {
        let n = session.id.trim_start_matches("ws-").parse().unwrap_or(0);
        let rest = session.url.trim_start_matches("wss://").trim_start_matches("ws://");
        let (h, p) = rest.split_once('/').unwrap_or((rest, ""));
        let host = h.split(':').next().unwrap_or(h).to_string();
        Where { n, host, path: format!("/{}", p.split('?').next().unwrap_or("")) }
    }
}

/// The recorded client data frames of a session: matched, in any order, by what a replaying
/// client sends; server frames recorded after one wait until it is matched.
struct ClientFrames {
    /// Each recorded client data frame's `n` within the session.
    ns: Vec<u32>,
    /// Its payload.
    data: Vec<Bytes>,
    /// Whether the live client has sent it yet.
    consumed: Vec<AtomicBool>,
    /// Wakes server frames waiting on a client frame whenever one is matched.
    matched: Notify,
}

impl ClientFrames {
    /// The client text and binary frames of a recorded session (control frames are not matched).
    fn of(recorded: &[Frame]) -> ClientFrames {
        let frames: Vec<&Frame> = recorded
            .iter()
            .filter(|f| f.dir == Dir::Client && matches!(f.kind, FrameKind::Text | FrameKind::Binary))
            .collect();
        ClientFrames {
            ns: frames.iter().map(|f| f.n).collect(),
            data: frames.iter().map(|f| f.data.bytes.clone()).collect(),
            consumed: frames.iter().map(|_| AtomicBool::new(false)).collect(),
            matched: Notify::new(),
        }
    }

    /// Marks the first unmatched recorded frame with this payload as sent; whether there was one.
    fn consume(&self, data: &[u8]) -> bool {
        let hit = (0..self.data.len())
            .find(|&i| !self.consumed[i].load(Ordering::Acquire) && same_payload(&self.data[i], data));
        if let Some(i) = hit {
            self.consumed[i].store(true, Ordering::Release);
            self.matched.notify_waiters();
        }
        hit.is_some()
    }

    /// Waits until recorded client frame `n` has been sent (at once when there is no such frame).
    async fn wait_for(&self, n: u32) {
        let Some(i) = self.ns.iter().position(|&x| x == n) else { return };
        loop {
            let w = self.matched.notified();
            tokio::pin!(w);
            w.as_mut().enable();
            if self.consumed[i].load(Ordering::Acquire) {
                return;
            }
            w.await;
        }
    }
}

/// The most queued frames written with one flush.
const WRITE_BATCH: usize = 64;

impl Hub {
    /// Plays one replay session (from [`Hub::open`]) on its upgraded connection (any byte stream)
    /// until it closes: a writer, a player, heartbeats and keep-alive pings run beside the reader,
    /// and all of them stop when it ends.
    pub async fn serve<IO>(
        self: Arc<Self>,
        session: Arc<Session>,
        io: IO,
        handshake_seq: u64,
        index: Arc<Index>,
        platform: crate::platform::Platform,
    ) where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let at = Where::of(&session);
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config(self.cfg.max_message_bytes))).await;
        let (sink, stream) = ws.split();
        let recorded: Arc<Vec<Frame>> =
            self.frames.read().unwrap_or_else(|e| e.into_inner()).get(&handshake_seq).cloned().unwrap_or_default();
        let client = Arc::new(ClientFrames::of(&recorded));
        let pong_seen = Arc::new(AtomicU64::new(0));
        let abort = Arc::new(Notify::new());
        let wrote_close = Arc::new(Notify::new());

        let writer = self.spawn_writer(&session, sink, &at, abort.clone(), wrote_close.clone());
        let player = {
            let (hub, s, client, recorded) = (self.clone(), session.clone(), client.clone(), recorded.clone());
            tokio::spawn(async move { hub.play(recorded, s, index, client).await })
        };
        let beat = self.spawn_heartbeat(&session, self.heartbeat_s(&recorded, platform), &at);
        let keepalive = self.spawn_keepalive(&session, pong_seen.clone(), at.n);
        self.read(stream, &session, &client, &pong_seen, &abort, &wrote_close, at.n).await;

        // Teardown: stop every task and free the session.
        session.outbox.close();
        player.abort();
        for t in [beat, keepalive].into_iter().flatten() {
            t.abort();
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&session.id);
        self.ended(&session);
        self.active.fetch_sub(1, Ordering::AcqRel);
        tracing::info!(session = %session.id, "WebSocket session closed and freed");
    }

    /// The writer: the only task that writes to the socket, carrying out an injected drop. Once it
    /// has sent a close, `wrote_close` tells the reader, which ends the session when the client
    /// answers it (or after 2 s).
    fn spawn_writer<S>(
        &self,
        session: &Arc<Session>,
        mut sink: S,
        at: &Where,
        abort: Arc<Notify>,
        wrote_close: Arc<Notify>,
    ) -> tokio::task::JoinHandle<()>
    where
        S: futures_util::Sink<Message> + Unpin + Send + 'static,
    {
        let mut drop_plan = self.faults.as_ref().and_then(|f| f.ws_session(&at.host, &at.path, self.timer.now_ms()));
        let out = session.clone();
        let journal = self.journal.clone();
        let (host, path, n) = (at.host.clone(), at.path.clone(), at.n);
        tokio::spawn(async move {
            let mut sent: u64 = 0;
            let mut batch: Vec<Message> = Vec::with_capacity(WRITE_BATCH);
            let mut shown: Vec<Vec<u8>> = Vec::new();
            'writing: loop {
                // What is queued goes out together, with one flush (one TLS record and one write
                // for a burst of small frames rather than one each).
                batch.push(out.outbox.pop().await);
                // No more than the queue holds, so a client that does not read keeps at most
                // about `ws.queue` frames waiting, as before batching.
                while batch.len() < WRITE_BATCH.min(out.outbox.cap) {
                    match out.outbox.try_pop() {
                        Some(m) => batch.push(m),
                        None => break,
                    }
                }
                let mut closing = false;
                for m in batch.drain(..) {
                    if matches!(m, Message::Text(_) | Message::Binary(_)) {
                        if let Some(plan) = drop_plan.as_mut() {
                            if plan.drop_now(sent) {
                                // An injected fault: the connection just goes, no close frame.
                                let _ = sink.flush().await;
                                for data in shown.drain(..) {
                                    out.log_frame(&journal, "sent", "frame", &data);
                                }
                                tracing::warn!(session = n, rule = %plan.rule, "injected fault: WebSocket connection dropped after {sent} frames");
                                let detail = format!("ws_drop:{}; after {sent} frames", plan.rule);
                                journal.note("WS", &host, &path, 0, "fault:ws_drop", Some(&detail));
                                abort.notify_one();
                                return;
                            }
                        }
                        sent += 1;
                    }
                    closing = matches!(m, Message::Close(_));
                    if journal.live.watched() {
                        match &m {
                            Message::Text(t) => shown.push(t.as_bytes().to_vec()),
                            Message::Binary(b) => shown.push(b.to_vec()),
                            _ => {}
                        }
                    }
                    if sink.feed(m).await.is_err() {
                        break 'writing;
                    }
                    if closing {
                        break;
                    }
                }
                batch.clear();
                let flushed = sink.flush().await.is_ok();
                for data in shown.drain(..) {
                    out.log_frame(&journal, "sent", "frame", &data);
                }
                if !flushed || closing {
                    break;
                }
            }
            wrote_close.notify_one();
            let _ = sink.close().await;
        })
    }

    /// Seconds between synthesized heartbeats: as configured, else the recording's median gap,
    /// else the platform's own (0: none).
    fn heartbeat_s(&self, recorded: &[Frame], platform: crate::platform::Platform) -> u64 {
        let beats: Vec<u64> = recorded
            .iter()
            .filter(|f| {
                f.dir == Dir::Server
                    && f.kind == FrameKind::Text
                    && std::str::from_utf8(&f.data.bytes).is_ok_and(crate::platform::is_heartbeat)
            })
            .map(|f| f.at_ms)
            .collect();
        match self.cfg.heartbeat_s {
            Some(s) => s,
            None if beats.len() >= 2 => {
                let mut gaps: Vec<u64> = beats.windows(2).map(|w| w[1].saturating_sub(w[0])).collect();
                gaps.sort_unstable();
                (gaps[gaps.len() / 2] / 1000).max(1)
            }
            None => platform.heartbeat_s(),
        }
    }

    /// Heartbeats on the virtual clock every `secs` (none when 0), skipped by an injected fault.
    fn spawn_heartbeat(
        self: &Arc<Self>,
        session: &Arc<Session>,
        secs: u64,
        at: &Where,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if secs == 0 {
            return None;
        }
        let (hub, s) = (self.clone(), session.clone());
        let (h, p, n) = (at.host.clone(), at.path.clone(), at.n);
        Some(tokio::spawn(async move {
            loop {
                hub.timer.sleep_ms(secs * 1000).await;
                if let Some(rule) = hub.faults.as_ref().and_then(|f| f.heartbeat_miss(&h, &p, hub.timer.now_ms())) {
                    tracing::warn!(session = n, rule = %rule, "injected fault: heartbeat skipped");
                    hub.journal.note("WS", &h, &p, 0, "fault:heartbeat_miss", Some(&format!("heartbeat_miss:{rule}")));
                    continue;
                }
                if !s.outbox.push(Message::text(crate::platform::heartbeat().to_string()), false, n).await {
                    break;
                }
            }
        }))
    }

    /// Keep-alive pings (`ws.ping_s`); a client that does not answer within `ws.pong_timeout_s`
    /// is closed with 1011.
    fn spawn_keepalive(
        self: &Arc<Self>,
        session: &Arc<Session>,
        pong_seen: Arc<AtomicU64>,
        n: u64,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if self.cfg.ping_s == 0 {
            return None;
        }
        let (hub, s) = (self.clone(), session.clone());
        Some(tokio::spawn(async move {
            loop {
                hub.timer.sleep_ms(hub.cfg.ping_s * 1000).await;
                let sent_at = hub.timer.now_ms() as u64;
                if !s.outbox.push(Message::Ping(Bytes::from_static(b"callvcr")), false, n).await {
                    break;
                }
                hub.timer.sleep_ms(hub.cfg.pong_timeout_s * 1000).await;
                if pong_seen.load(Ordering::Acquire) < sent_at {
                    tracing::warn!(session = n, "no PONG within {} s: closing (1011)", hub.cfg.pong_timeout_s);
                    let close = CloseFrame { code: CloseCode::Error, reason: "no pong received".into() };
                    let _ = s.outbox.push(Message::Close(Some(close)), true, n).await;
                    break;
                }
            }
        }))
    }

    /// The reader: client messages matched to the recorded ones (releasing what waited on them),
    /// else given the protocol's own reply; ends on close, error, abort, or once the writer has
    /// sent a close and the client answered it.
    #[allow(clippy::too_many_arguments)] // the session's shared parts, each owned by serve
    async fn read<St>(
        &self,
        mut stream: St,
        session: &Session,
        client: &ClientFrames,
        pong_seen: &AtomicU64,
        abort: &Notify,
        wrote_close: &Notify,
        n: u64,
    ) where
        St: futures_util::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
    {
        let id = &session.id;
        loop {
            let next = tokio::select! {
                m = stream.next() => m,
                _ = abort.notified() => break,
                _ = wrote_close.notified() => {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                        while let Some(Ok(m)) = stream.next().await {
                            if matches!(m, Message::Close(_)) {
                                break;
                            }
                        }
                    })
                    .await;
                    break;
                }
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    match close_for(&e) {
                        Some((code, why)) => {
                            tracing::warn!(session = %id, "WebSocket {why}; closing with {}", u16::from(code));
                            let mut q = session.outbox.lock();
                            q.clear();
                            q.push_back(Message::Close(Some(CloseFrame { code, reason: why.into() })));
                            drop(q);
                            session.outbox.more.notify_one();
                        }
                        None => tracing::info!(session = %id, "WebSocket connection ended: {e}"),
                    }
                    break;
                }
                None => break,
            };
            match &msg {
                Message::Text(_) | Message::Binary(_) => {
                    let data: &[u8] = match &msg {
                        Message::Text(t) => t.as_bytes(),
                        Message::Binary(b) => b,
                        _ => &[],
                    };
                    session.log_frame(&self.journal, "received", "frame", data);
                    if client.consume(data) {
                        continue;
                    }
                    if let Some(reply) = self.protocol_reply(data, session) {
                        session.outbox.push(Message::text(reply.to_string()), false, n).await;
                    } else {
                        tracing::info!(session = %id, "client message with no recorded reply: {}", String::from_utf8_lossy(&data[..data.len().min(200)]));
                    }
                }
                Message::Pong(_) => pong_seen.store(self.timer.now_ms() as u64, Ordering::Release),
                Message::Close(c) => {
                    tracing::info!(session = %id, code = ?c.as_ref().map(|c| u16::from(c.code)), "client closed the WebSocket");
                    session.outbox.push(Message::Close(c.clone()), true, n).await;
                    break;
                }
                _ => {}
            }
        }
    }

    /// The protocol's own answer to a client message no recording answers.
    fn protocol_reply(&self, data: &[u8], session: &Session) -> Option<Value> {
        let v: Value = serde_json::from_slice(data).ok()?;
        if let Some(pong) = crate::platform::ping_reply(&v) {
            return Some(pong);
        }
        match v.get("type").and_then(Value::as_str) {
            Some("PING") => Some(json!({"type": "PONG", "timestamp": self.timer.now_ms()})),
            Some("SUBSCRIBE") => {
                let channels = v.get("channels").cloned().unwrap_or(json!([]));
                if let Some(list) = channels.as_array() {
                    let mut t = session.topics.lock().unwrap_or_else(|e| e.into_inner());
                    for c in list.iter().filter_map(Value::as_str) {
                        if !t.iter().any(|x| x == c) {
                            t.push(c.to_string());
                        }
                    }
                }
                Some(json!({"type": "SUBSCRIBED", "channels": channels}))
            }
            _ => None,
        }
    }

    /// Plays the recorded server frames in order: each waits for what it followed (a REST exchange
    /// served, a client frame sent), frames following the same thing keep their recorded gaps (scaled by
    /// `ws.speed`), and recorded heartbeats are left to the heartbeat task. Ends at a close frame or
    /// when the session closes.
    async fn play(&self, recorded: Arc<Vec<Frame>>, s: Arc<Session>, index: Arc<Index>, client: Arc<ClientFrames>) {
        let sid: u64 = s.id.trim_start_matches("ws-").parse().unwrap_or(0);
        let mut prev: Option<(Option<Anchor>, u64)> = None;
        // Frames ready to go, queued together (one lock, one wake of the writer) before the
        // player next waits for anything.
        let mut ready: Vec<Message> = Vec::with_capacity(WRITE_BATCH);
        for f in recorded.iter().filter(|f| f.dir == Dir::Server) {
            if f.kind == FrameKind::Text && std::str::from_utf8(&f.data.bytes).is_ok_and(crate::platform::is_heartbeat)
            {
                continue;
            }
            // Wait for what caused it.
            match f.after {
                Some(Anchor::Rest(seq)) if !index.seq_served(seq) => {
                    if !s.outbox.push_all(&mut ready, sid).await {
                        return;
                    }
                    self.until_served(&index, seq).await;
                }
                Some(Anchor::Client(cn)) => {
                    if !s.outbox.push_all(&mut ready, sid).await {
                        return;
                    }
                    client.wait_for(cn).await
                }
                _ => {}
            }
            // Frames that followed nothing new keep their recorded pacing.
            if let Some((prev_after, prev_at)) = prev {
                if prev_after == f.after {
                    if let Some(speed) = self.speed {
                        let gap = (f.at_ms.saturating_sub(prev_at) as f64 / speed) as u64;
                        if gap > 0 {
                            if !s.outbox.push_all(&mut ready, sid).await {
                                return;
                            }
                            self.timer.sleep_ms(gap).await;
                        }
                    }
                }
            }
            prev = Some((f.after, f.at_ms));
            if self.journal.live.watched() {
                let waited = match f.after {
                    Some(Anchor::Rest(seq)) => Some(format!("exchange #{seq} replayed")),
                    Some(Anchor::Client(cn)) => Some(format!("client frame {cn}")),
                    None => None,
                };
                s.made(&self.journal, &f.data.bytes, "frame", waited);
            }
            let Some(m) = to_message(f) else { continue };
            let closing = matches!(m, Message::Close(_));
            ready.push(m);
            if (closing || ready.len() >= WRITE_BATCH) && !s.outbox.push_all(&mut ready, sid).await {
                return;
            }
            if closing {
                return;
            }
        }
        let _ = s.outbox.push_all(&mut ready, sid).await;
    }
}
