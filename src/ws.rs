//! WebSocket record and replay. Record: relays frames both ways between the SDK and the platform,
//! storing each with its offset and what it followed. Replay: answers the handshake fresh, plays the
//! recorded server frames in step with what caused them (a replayed REST exchange, a client
//! message), synthesizes heartbeats on the virtual clock, delivers pushed events, and keeps every
//! session's outbound queue bounded. Runs beside the HTTP path, never blocking it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::cassette::{Anchor, Body, Dir, Frame, FrameKind, Index};
use crate::clock::mono_ms;
use crate::clock::Clock;
use crate::config::{OnFull, WsConfig};
use crate::overlay::Ids;
use crate::timer::Timer;

/// A message as a recorded frame's kind and payload.
fn frame_parts(m: &Message) -> (FrameKind, Bytes, Option<u16>, Option<String>) {
    match m {
        Message::Text(t) => (FrameKind::Text, Bytes::copy_from_slice(t.as_bytes()), None, None),
        Message::Binary(b) => (FrameKind::Binary, b.clone(), None, None),
        Message::Ping(b) => (FrameKind::Ping, b.clone(), None, None),
        Message::Pong(b) => (FrameKind::Pong, b.clone(), None, None),
        Message::Close(c) => (
            FrameKind::Close,
            Bytes::new(),
            c.as_ref().map(|c| u16::from(c.code)),
            c.as_ref().map(|c| c.reason.to_string()),
        ),
        Message::Frame(_) => (FrameKind::Binary, Bytes::new(), None, None),
    }
}

/// A recorded frame as a message to send.
fn to_message(f: &Frame) -> Option<Message> {
    Some(match f.kind {
        FrameKind::Text => Message::text(String::from_utf8_lossy(&f.data.bytes).into_owned()),
        FrameKind::Binary => Message::Binary(f.data.bytes.clone()),
        FrameKind::Ping => Message::Ping(f.data.bytes.clone()),
        FrameKind::Pong => return None,
        FrameKind::Close => Message::Close(f.close_code.map(|c| CloseFrame {
            code: CloseCode::from(c),
            reason: f.close_reason.clone().unwrap_or_default().into(),
        })),
    })
}

/// The close code for a read error, and what to log.
fn close_for(e: &tungstenite::Error) -> Option<(CloseCode, String)> {
    use tungstenite::Error as E;
    match e {
        E::Protocol(p) => Some((CloseCode::Protocol, format!("protocol error: {p}"))),
        E::Utf8(_) => Some((CloseCode::Invalid, "a text frame was not valid UTF-8".into())),
        E::Capacity(c) => Some((CloseCode::Size, format!("message too large: {c}"))),
        _ => None,
    }
}

fn ws_config(max: usize) -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(max)).max_frame_size(Some(max))
}

/// Wraps an upgraded connection as a WebSocket in `role`.
async fn wrap(
    io: hyper::upgrade::Upgraded,
    role: Role,
    max: usize,
) -> WebSocketStream<TokioIo<hyper::upgrade::Upgraded>> {
    WebSocketStream::from_raw_socket(TokioIo::new(io), role, Some(ws_config(max))).await
}

/// Equal as messages: JSON compared by meaning, anything else byte for byte.
fn same_payload(a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    match (serde_json::from_slice::<Value>(a), serde_json::from_slice::<Value>(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Recording

/// What a recording session needs from the proxy: where frames go, and what REST exchange the
/// session's client last started.
pub trait RecordSink: Send + Sync + 'static {
    /// Stores one frame (flushed before it is relayed).
    fn store(&self, frame: Frame) -> futures_util::future::BoxFuture<'static, Result<(), String>>;
    /// The sequence number and start time (ms, monotonic) of the last REST exchange by `client`.
    fn last_rest(&self, client: &str) -> Option<(u64, u64)>;
}

/// Relays one recorded session until either side closes, storing every frame.
pub async fn record(
    client: hyper::upgrade::Upgraded,
    upstream: hyper::upgrade::Upgraded,
    session: u64,
    client_key: String,
    sink: Arc<dyn RecordSink>,
    max: usize,
    label: String,
) {
    let mut c = wrap(client, Role::Server, max).await;
    let mut u = wrap(upstream, Role::Client, max).await;
    let started = Clock::instant();
    let mut n: u32 = 0;
    // The last client message: (its n, when it arrived, on the shared monotonic scale).
    let mut last_client: Option<(u32, u64)> = None;
    let (mut pings_to_upstream, mut pings_to_client) = (0u32, 0u32);
    tracing::info!(session, %label, "recording WebSocket session");
    loop {
        let (dir, msg) = tokio::select! {
            m = c.next() => (Dir::Client, m),
            m = u.next() => (Dir::Server, m),
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                match close_for(&e) {
                    Some((code, why)) => {
                        tracing::warn!(session, side = ?dir, "WebSocket {why}; closing with {}", u16::from(code));
                        let frame = Message::Close(Some(CloseFrame { code, reason: why.clone().into() }));
                        let _ =
                            if dir == Dir::Client { c.send(frame.clone()).await } else { u.send(frame.clone()).await };
                        let _ = if dir == Dir::Client { u.send(frame).await } else { c.send(frame).await };
                    }
                    None => tracing::info!(session, side = ?dir, "WebSocket connection ended: {e}"),
                }
                break;
            }
            None => {
                tracing::info!(session, side = ?dir, "WebSocket connection closed");
                break;
            }
        };
        if let Message::Frame(_) = msg {
            continue;
        }
        let (kind, data, close_code, close_reason) = frame_parts(&msg);
        let at_ms = started.elapsed().as_millis() as u64;
        let after = match dir {
            Dir::Client => None,
            Dir::Server => {
                let rest = sink.last_rest(&client_key);
                match (rest, last_client) {
                    (Some((seq, t_rest)), Some((cn, t_client))) => {
                        Some(if t_client > t_rest { Anchor::Client(cn) } else { Anchor::Rest(seq) })
                    }
                    (Some((seq, _)), None) => Some(Anchor::Rest(seq)),
                    (None, Some((cn, _))) => Some(Anchor::Client(cn)),
                    (None, None) => None,
                }
            }
        };
        let frame = Frame {
            session,
            n,
            dir,
            at_ms,
            kind,
            data: Body { bytes: data, encoding: None },
            close_code,
            close_reason,
            after,
        };
        if dir == Dir::Client && matches!(kind, FrameKind::Text | FrameKind::Binary) {
            last_client = Some((n, mono_ms()));
        }
        n += 1;
        if let Err(e) = sink.store(frame).await {
            tracing::error!(session, "could not store a WebSocket frame: {e}");
        }
        // Each side's WebSocket answers a ping by itself, so a pong that answers a relayed ping is
        // recorded but not relayed (the other side already had its pong).
        match (&msg, dir) {
            (Message::Ping(_), Dir::Client) => pings_to_upstream += 1,
            (Message::Ping(_), Dir::Server) => pings_to_client += 1,
            (Message::Pong(_), Dir::Server) if pings_to_upstream > 0 => {
                pings_to_upstream -= 1;
                continue;
            }
            (Message::Pong(_), Dir::Client) if pings_to_client > 0 => {
                pings_to_client -= 1;
                continue;
            }
            _ => {}
        }
        let closing = matches!(msg, Message::Close(_));
        let sent = match dir {
            Dir::Client => u.send(msg).await,
            Dir::Server => c.send(msg).await,
        };
        if let Err(e) = sent {
            tracing::info!(session, "WebSocket relay ended: {e}");
            break;
        }
        if closing {
            // Let the close handshake finish on both sides.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                let _ = c.close(None).await;
                let _ = u.close(None).await;
            })
            .await;
            break;
        }
    }
    tracing::info!(session, frames = n, "WebSocket session recorded");
}

// ---------------------------------------------------------------------------------------------
// Replay

/// One session's bounded outbound queue.
#[derive(Debug)]
pub struct Outbox {
    q: Mutex<VecDeque<Message>>,
    cap: usize,
    policy: OnFull,
    more: Notify,
    room: Notify,
    closed: AtomicBool,
    dropped: AtomicU64,
}

impl Outbox {
    fn new(cap: usize, policy: OnFull) -> Outbox {
        Outbox {
            q: Mutex::new(VecDeque::new()),
            cap,
            policy,
            more: Notify::new(),
            room: Notify::new(),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Message>> {
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Frames waiting to be written.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a message (at the front when `first`), applying the policy when full. `false` when the
    /// session is closed (or was closed by the policy).
    pub async fn push(&self, m: Message, first: bool, session: u64) -> bool {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut q = self.lock();
                if q.len() < self.cap {
                    if first {
                        q.push_front(m);
                    } else {
                        q.push_back(m);
                    }
                    drop(q);
                    self.more.notify_one();
                    return true;
                }
                match self.policy {
                    OnFull::Wait => {}
                    OnFull::DropOldest => {
                        q.pop_front();
                        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                        tracing::warn!(
                            session,
                            dropped = n,
                            "WebSocket outbound queue full ({}): dropped the oldest frame",
                            self.cap
                        );
                        continue;
                    }
                    OnFull::Close => {
                        tracing::warn!(
                            session,
                            "WebSocket outbound queue full ({}): closing the session (1008)",
                            self.cap
                        );
                        q.clear();
                        q.push_back(Message::Close(Some(CloseFrame {
                            code: CloseCode::Policy,
                            reason: "outbound queue full: the client is not reading".into(),
                        })));
                        drop(q);
                        self.closed.store(true, Ordering::Release);
                        self.more.notify_one();
                        return false;
                    }
                }
            }
            room.await;
        }
    }

    /// The next message to write, waiting for one.
    async fn pop(&self) -> Message {
        loop {
            let more = self.more.notified();
            tokio::pin!(more);
            more.as_mut().enable();
            if let Some(m) = self.lock().pop_front() {
                self.room.notify_waiters();
                return m;
            }
            more.await;
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_waiters();
        self.more.notify_waiters();
    }
}

/// A live replay session, as the admin API sees it.
#[derive(Debug)]
pub struct Session {
    /// Its id.
    pub id: String,
    /// The URL the client connected to.
    pub url: String,
    /// Topics it is subscribed to.
    pub topics: Mutex<Vec<String>>,
    /// Its outbound queue.
    pub outbox: Outbox,
    /// The channel id in its URL, when it has one (Genesys `/channels/<id>`).
    pub channel: Option<String>,
}

/// Replay-side WebSocket state shared by every session.
pub struct Hub {
    /// Settings.
    pub cfg: WsConfig,
    /// Pacing factor; `None` = instant.
    pub speed: Option<f64>,
    /// Recorded frames by session (handshake sequence number).
    frames: RwLock<Arc<HashMap<u64, Vec<Frame>>>>,
    /// Live sessions by id.
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    active: AtomicUsize,
    next_id: AtomicU64,
    /// Notified whenever a REST exchange is served while sessions are open.
    served: Notify,
    timer: Arc<Timer>,
    ids: Arc<Ids>,
    journal: Arc<crate::journal::Journal>,
    faults: Option<Arc<crate::overlay::faults::Faults>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("active", &self.active.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

/// A session's view for the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    /// Id.
    pub id: String,
    /// URL.
    pub url: String,
    /// Topics.
    pub topics: Vec<String>,
    /// Frames queued, not yet written.
    pub queued: usize,
}

/// A pushed event as the admin API takes it.
#[derive(Debug, Clone)]
pub struct Push {
    /// One session, by id.
    pub session: Option<String>,
    /// Sessions subscribed to this topic.
    pub topic: Option<String>,
    /// The whole message.
    pub event: Value,
    /// Delay in virtual ms.
    pub delay_ms: u64,
    /// Bounded jitter added to the delay, seeded.
    pub jitter_ms: u64,
    /// Extra copies.
    pub duplicate: u64,
    /// Deliver ahead of what is already queued.
    pub reorder: bool,
}

fn group(frames: Vec<Frame>) -> HashMap<u64, Vec<Frame>> {
    let mut by: HashMap<u64, Vec<Frame>> = HashMap::new();
    for f in frames {
        by.entry(f.session).or_default().push(f);
    }
    for v in by.values_mut() {
        v.sort_by_key(|f| f.n);
    }
    by
}

impl Hub {
    /// A hub over recorded `frames`; `faults` injects WebSocket faults, `journal` records them.
    pub fn new(
        cfg: WsConfig,
        speed: Option<f64>,
        frames: Vec<Frame>,
        timer: Arc<Timer>,
        ids: Arc<Ids>,
        journal: Arc<crate::journal::Journal>,
        faults: Option<Arc<crate::overlay::faults::Faults>>,
    ) -> Hub {
        Hub {
            cfg,
            speed,
            frames: RwLock::new(Arc::new(group(frames))),
            sessions: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            served: Notify::new(),
            timer,
            ids,
            journal,
            faults,
        }
    }

    /// Replaces the recorded frames (a cassette switch).
    pub fn set_frames(&self, frames: Vec<Frame>) {
        *self.frames.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(group(frames));
    }

    /// Whether a recording holds frames for the handshake `seq`.
    pub fn has_session(&self, seq: u64) -> bool {
        self.frames.read().unwrap_or_else(|e| e.into_inner()).contains_key(&seq)
    }

    /// Whether any session is open (the HTTP path only signals served exchanges then).
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// Called when a REST exchange was served: wakes sessions waiting on it.
    pub fn served(&self) {
        self.served.notify_waiters();
    }

    /// A future that completes at the next `served` call (register it before checking).
    pub fn served_notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.served.notified()
    }

    /// Open sessions.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<SessionInfo> = s
            .values()
            .map(|x| SessionInfo {
                id: x.id.clone(),
                url: x.url.clone(),
                topics: x.topics.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                queued: x.outbox.len(),
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Adds topics to the sessions on `channel` (a replayed Genesys subscription request).
    pub fn subscribe_channel(&self, channel: &str, topics: &[String], replace: bool) {
        for s in self.sessions.lock().unwrap_or_else(|e| e.into_inner()).values() {
            if s.channel.as_deref() == Some(channel) {
                let mut t = s.topics.lock().unwrap_or_else(|e| e.into_inner());
                if replace {
                    t.clear();
                }
                for x in topics {
                    if !t.contains(x) {
                        t.push(x.clone());
                    }
                }
            }
        }
    }

    /// Whether another session may open now.
    pub fn has_room(&self) -> bool {
        self.active.load(Ordering::Acquire) < self.cfg.max_sessions
    }

    /// Queues a pushed event; how many deliveries were queued (0 when no session matched). An
    /// undelayed event is queued before this returns, so with `on_full: wait` a caller pushing to a
    /// client that does not read is itself held back: memory stays bounded.
    pub async fn push(self: &Arc<Self>, p: Push) -> Result<usize, String> {
        let targets: Vec<Arc<Session>> = {
            let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            s.values()
                .filter(|x| p.session.as_ref().is_none_or(|id| &x.id == id))
                .filter(|x| {
                    p.topic.as_ref().is_none_or(|t| x.topics.lock().unwrap_or_else(|e| e.into_inner()).contains(t))
                })
                .cloned()
                .collect()
        };
        if let Some(id) = &p.session {
            if targets.is_empty() {
                return Err(format!("no open WebSocket session `{id}`; GET /mock/admin/ws/sessions lists them"));
            }
        }
        let text = p.event.to_string();
        let copies = 1 + p.duplicate as usize;
        let mut queued = 0;
        for s in targets {
            for _ in 0..copies {
                let jitter = if p.jitter_ms > 0 { self.ids.next_u64() % (p.jitter_ms + 1) } else { 0 };
                let delay = p.delay_ms + jitter;
                let hub = self.clone();
                let s = s.clone();
                let msg = Message::text(text.clone());
                let first = p.reorder;
                queued += 1;
                let id: u64 = s.id.trim_start_matches("ws-").parse().unwrap_or(0);
                if delay == 0 {
                    s.outbox.push(msg, first, id).await;
                    continue;
                }
                tokio::spawn(async move {
                    hub.timer.sleep_ms(delay).await;
                    s.outbox.push(msg, first, id).await;
                });
            }
        }
        Ok(queued)
    }

    /// Sends `make(topic)` to every open session once for each topic it is subscribed to that
    /// `wants` accepts (events a state move makes); how many were queued.
    pub async fn publish(&self, wants: impl Fn(&str) -> bool, make: impl Fn(&str) -> Value) -> usize {
        let targets: Vec<(Arc<Session>, Vec<String>)> = {
            let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            s.values()
                .map(|x| {
                    let topics = x.topics.lock().unwrap_or_else(|e| e.into_inner());
                    (x.clone(), topics.iter().filter(|t| wants(t)).cloned().collect::<Vec<_>>())
                })
                .filter(|(_, t)| !t.is_empty())
                .collect()
        };
        let mut n = 0;
        for (s, topics) in targets {
            let id: u64 = s.id.trim_start_matches("ws-").parse().unwrap_or(0);
            for t in topics {
                if s.outbox.push(Message::text(make(&t).to_string()), false, id).await {
                    n += 1;
                }
            }
        }
        n
    }

    /// Opens a replay session for `url` as its handshake is answered, so that once a client has
    /// its 101 the admin API lists the session and events pushed to it are queued for it.
    pub fn open(&self, url: &str) -> Arc<Session> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("ws-{n}");
        let channel = url.split("/channels/").nth(1).map(|c| c.split(['/', '?']).next().unwrap_or("").to_string());
        let session = Arc::new(Session {
            id: id.clone(),
            url: url.to_string(),
            topics: Mutex::new(Vec::new()),
            outbox: Outbox::new(self.cfg.queue, self.cfg.on_full),
            channel,
        });
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), session.clone());
        tracing::info!(session = %id, %url, "WebSocket session opened (replay)");
        session
    }

    /// Forgets a session whose upgrade never completed.
    pub fn abandon(&self, session: &Session) {
        session.outbox.close();
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&session.id);
        self.release();
    }

    /// Plays one replay session (from [`Hub::open`]) on its upgraded connection (any byte stream)
    /// until it closes.
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
        let id = session.id.clone();
        let n: u64 = id.trim_start_matches("ws-").parse().unwrap_or(0);
        let url = session.url.clone();
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config(self.cfg.max_message_bytes))).await;
        let (mut sink, mut stream) = ws.split();
        let recorded: Vec<Frame> =
            self.frames.read().unwrap_or_else(|e| e.into_inner()).get(&handshake_seq).cloned().unwrap_or_default();
        let client_frames: Vec<&Frame> = recorded
            .iter()
            .filter(|f| f.dir == Dir::Client && matches!(f.kind, FrameKind::Text | FrameKind::Binary))
            .collect();
        let consumed: Arc<Vec<AtomicBool>> = Arc::new(client_frames.iter().map(|_| AtomicBool::new(false)).collect());
        let client_ns: Vec<u32> = client_frames.iter().map(|f| f.n).collect();
        let client_data: Vec<Bytes> = client_frames.iter().map(|f| f.data.bytes.clone()).collect();
        let matched = Arc::new(Notify::new());
        let pong_seen = Arc::new(AtomicU64::new(0));
        let (ws_host, ws_path) = {
            let rest = url.trim_start_matches("wss://").trim_start_matches("ws://");
            let (h, p) = rest.split_once('/').unwrap_or((rest, ""));
            (h.split(':').next().unwrap_or(h).to_string(), format!("/{}", p.split('?').next().unwrap_or("")))
        };
        let mut drop_plan = self.faults.as_ref().and_then(|f| f.ws_session(&ws_host, &ws_path, self.timer.now_ms()));
        let abort = Arc::new(Notify::new());

        // Writer: the only task that writes to the socket. Once it has sent a close, the session
        // ends when the client answers it, or after 2 s if it never does.
        let out = session.clone();
        let wrote_close = Arc::new(Notify::new());
        let signal = wrote_close.clone();
        let abort_writer = abort.clone();
        let journal = self.journal.clone();
        let (jh, jp) = (ws_host.clone(), ws_path.clone());
        let writer = tokio::spawn(async move {
            let mut sent: u64 = 0;
            loop {
                let m = out.outbox.pop().await;
                let data = matches!(m, Message::Text(_) | Message::Binary(_));
                if data {
                    if let Some(plan) = drop_plan.as_mut() {
                        if plan.drop_now(sent) {
                            // An injected fault: the connection just goes, no close frame.
                            tracing::warn!(session = n, rule = %plan.rule, "injected fault: WebSocket connection dropped after {sent} frames");
                            journal.note(
                                "WS",
                                &jh,
                                &jp,
                                0,
                                "fault:ws_drop",
                                Some(&format!("ws_drop:{}; after {sent} frames", plan.rule)),
                            );
                            abort_writer.notify_one();
                            return;
                        }
                    }
                    sent += 1;
                }
                let closing = matches!(m, Message::Close(_));
                if sink.send(m).await.is_err() {
                    break;
                }
                if closing {
                    break;
                }
            }
            signal.notify_one();
            let _ = sink.close().await;
        });

        // Player: recorded server frames, in order, each when what caused it has happened.
        let heartbeats: Vec<u64> = recorded
            .iter()
            .filter(|f| {
                f.dir == Dir::Server
                    && f.kind == FrameKind::Text
                    && crate::platform::is_heartbeat(&String::from_utf8_lossy(&f.data.bytes))
            })
            .map(|f| f.at_ms)
            .collect();
        let player = {
            let hub = self.clone();
            let s = session.clone();
            let index = index.clone();
            let consumed = consumed.clone();
            let matched = matched.clone();
            let client_ns = client_ns.clone();
            let recorded = recorded.clone();
            tokio::spawn(async move { hub.play(recorded, s, index, consumed, client_ns, matched).await })
        };

        // Heartbeats on the virtual clock (Genesys), and optional keep-alive pings.
        let heartbeat_s = match self.cfg.heartbeat_s {
            Some(s) => s,
            None if heartbeats.len() >= 2 => {
                let mut gaps: Vec<u64> = heartbeats.windows(2).map(|w| w[1].saturating_sub(w[0])).collect();
                gaps.sort_unstable();
                (gaps[gaps.len() / 2] / 1000).max(1)
            }
            None => platform.heartbeat_s(),
        };
        let beat = (heartbeat_s > 0).then(|| {
            let hub = self.clone();
            let s = session.clone();
            let (h, p) = (ws_host.clone(), ws_path.clone());
            tokio::spawn(async move {
                loop {
                    hub.timer.sleep_ms(heartbeat_s * 1000).await;
                    if let Some(rule) = hub.faults.as_ref().and_then(|f| f.heartbeat_miss(&h, &p, hub.timer.now_ms())) {
                        tracing::warn!(session = n, rule = %rule, "injected fault: heartbeat skipped");
                        hub.journal.note(
                            "WS",
                            &h,
                            &p,
                            0,
                            "fault:heartbeat_miss",
                            Some(&format!("heartbeat_miss:{rule}")),
                        );
                        continue;
                    }
                    if !s.outbox.push(Message::text(crate::platform::heartbeat().to_string()), false, n).await {
                        break;
                    }
                }
            })
        });
        let keepalive = (self.cfg.ping_s > 0).then(|| {
            let hub = self.clone();
            let s = session.clone();
            let pong_seen = pong_seen.clone();
            tokio::spawn(async move {
                loop {
                    hub.timer.sleep_ms(hub.cfg.ping_s * 1000).await;
                    let sent_at = hub.timer.now_ms() as u64;
                    if !s.outbox.push(Message::Ping(Bytes::from_static(b"callvcr")), false, n).await {
                        break;
                    }
                    hub.timer.sleep_ms(hub.cfg.pong_timeout_s * 1000).await;
                    if pong_seen.load(Ordering::Acquire) < sent_at {
                        tracing::warn!(session = n, "no PONG within {} s: closing (1011)", hub.cfg.pong_timeout_s);
                        let _ = s
                            .outbox
                            .push(
                                Message::Close(Some(CloseFrame {
                                    code: CloseCode::Error,
                                    reason: "no pong received".into(),
                                })),
                                true,
                                n,
                            )
                            .await;
                        break;
                    }
                }
            })
        });

        // Reader: client messages get their recorded replies, or the protocol's own.
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
                            session.outbox.lock().clear();
                            session
                                .outbox
                                .lock()
                                .push_back(Message::Close(Some(CloseFrame { code, reason: why.into() })));
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
                    let hit = (0..client_data.len())
                        .find(|&i| !consumed[i].load(Ordering::Acquire) && same_payload(&client_data[i], data));
                    match hit {
                        Some(i) => {
                            consumed[i].store(true, Ordering::Release);
                            matched.notify_waiters();
                        }
                        None => {
                            if let Some(reply) = self.protocol_reply(data, &session) {
                                session.outbox.push(Message::text(reply.to_string()), false, n).await;
                            } else {
                                tracing::info!(session = %id, "client message with no recorded reply: {}", String::from_utf8_lossy(&data[..data.len().min(200)]));
                            }
                        }
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
        // Teardown: stop every task and free the session.
        session.outbox.close();
        player.abort();
        if let Some(b) = beat {
            b.abort();
        }
        if let Some(k) = keepalive {
            k.abort();
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        self.active.fetch_sub(1, Ordering::AcqRel);
        tracing::info!(session = %id, "WebSocket session closed and freed");
    }

    /// Closes every open session with 1001 (going away), ahead of anything queued; the future ends
    /// when they are gone.
    pub fn shutdown(self: &Arc<Self>) -> impl std::future::Future<Output = ()> + Send + 'static {
        let open: Vec<Arc<Session>> =
            self.sessions.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for s in &open {
            {
                let mut q = s.outbox.lock();
                q.clear();
                q.push_back(Message::Close(Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "callvcr is shutting down".into(),
                })));
            }
            s.outbox.more.notify_one();
        }
        if !open.is_empty() {
            tracing::info!(sessions = open.len(), "closing WebSocket sessions (1001)");
        }
        let hub = self.clone();
        async move {
            while hub.active() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }

    /// Counts a session in before its upgrade completes, so the limit holds under a burst.
    pub fn admit(&self) -> bool {
        let mut cur = self.active.load(Ordering::Acquire);
        loop {
            if cur >= self.cfg.max_sessions {
                return false;
            }
            match self.active.compare_exchange(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(x) => cur = x,
            }
        }
    }

    /// Gives back an admitted slot whose upgrade never completed.
    pub fn release(&self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
    }

    /// The protocol's own answer to a client message no recording answers.
    fn protocol_reply(&self, data: &[u8], session: &Session) -> Option<Value> {
        let v: Value = serde_json::from_slice(data).ok()?;
        if v.get("message").and_then(Value::as_str) == Some("ping") {
            return Some(json!({"topicName": "channel.metadata", "eventBody": {"message": "pong"}}));
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

    async fn play(
        &self,
        recorded: Vec<Frame>,
        s: Arc<Session>,
        index: Arc<Index>,
        consumed: Arc<Vec<AtomicBool>>,
        client_ns: Vec<u32>,
        matched: Arc<Notify>,
    ) {
        let sid: u64 = s.id.trim_start_matches("ws-").parse().unwrap_or(0);
        let mut prev: Option<(Option<Anchor>, u64)> = None;
        for f in recorded.iter().filter(|f| f.dir == Dir::Server) {
            if f.kind == FrameKind::Text && crate::platform::is_heartbeat(&String::from_utf8_lossy(&f.data.bytes)) {
                continue;
            }
            // Wait for what caused it.
            match f.after {
                Some(Anchor::Rest(seq)) => loop {
                    let w = self.served.notified();
                    tokio::pin!(w);
                    w.as_mut().enable();
                    if index.seq_served(seq) {
                        break;
                    }
                    w.await;
                },
                Some(Anchor::Client(cn)) => {
                    if let Some(i) = client_ns.iter().position(|&x| x == cn) {
                        loop {
                            let w = matched.notified();
                            tokio::pin!(w);
                            w.as_mut().enable();
                            if consumed[i].load(Ordering::Acquire) {
                                break;
                            }
                            w.await;
                        }
                    }
                }
                None => {}
            }
            // Frames that followed nothing new keep their recorded pacing.
            if let Some((prev_after, prev_at)) = prev {
                if prev_after == f.after {
                    if let Some(speed) = self.speed {
                        let gap = (f.at_ms.saturating_sub(prev_at) as f64 / speed) as u64;
                        if gap > 0 {
                            self.timer.sleep_ms(gap).await;
                        }
                    }
                }
            }
            prev = Some((f.after, f.at_ms));
            let Some(m) = to_message(f) else { continue };
            let closing = matches!(m, Message::Close(_));
            if !s.outbox.push(m, false, sid).await || closing {
                break;
            }
        }
    }
}
