//! WebSocket record and replay. Record: relays frames both ways between the SDK and the platform,
//! storing each with its offset and what it followed. Replay: answers the handshake fresh, plays the
//! recorded server frames in step with what caused them (a replayed REST exchange, a client
//! message), synthesizes heartbeats on the virtual clock, delivers pushed events, and keeps every
//! session's outbound queue bounded. Runs beside the HTTP path, never blocking it.

mod outbox;
mod record;
mod serve;

pub(crate) use outbox::Outbox;
pub(crate) use record::{record, RecordSink};

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
        // The recorded bytes as they are (no copy), unless they are not UTF-8.
        FrameKind::Text => match tungstenite::Utf8Bytes::try_from(f.data.bytes.clone()) {
            Ok(t) => Message::Text(t),
            Err(_) => Message::text(String::from_utf8_lossy(&f.data.bytes).into_owned()),
        },
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

/// Limits both a message and a single frame to `max` bytes (`ws.max_message_bytes`), so a client
/// cannot make callvcr buffer an unbounded message.
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
    /// Whether it replays a recorded session with frames: events of moves the cassette answered
    /// are then the recording's to send, not callvcr's. A session recorded without frames (a
    /// hand-written cassette, a channel only a declared machine speaks on) leaves that gap to the
    /// state overlay. Set when it opens, so no event slips in before its player starts.
    pub replaying: AtomicBool,
    /// Its frames as the inspector shows them, kept only while a page watches (the last
    /// [`FRAMES_KEPT`]).
    log: Mutex<std::collections::VecDeque<serde_json::Value>>,
    /// What made a frame queued while a page watches, by its text's hash, until the writer sends
    /// it: (kind, what it waited for).
    made_by: Mutex<std::collections::HashMap<u64, std::collections::VecDeque<Made>>>,
}

/// What made a queued frame, for the inspector: its kind and what it waited for.
type Made = (&'static str, Option<String>);

/// Closed sessions whose frames the inspector can still read.
const CLOSED_KEPT: usize = 50;

/// Frames a session keeps for the inspector.
const FRAMES_KEPT: usize = 500;

/// Bytes of a frame's text kept for the inspector.
const FRAME_TEXT: usize = 4096;

impl Session {
    /// Says what made a frame just queued (`pushed`, or a replayed `frame` and what it waited
    /// for), so the inspector shows it when the frame goes out. Nothing when no page watches.
    pub fn made(&self, journal: &crate::journal::Journal, data: &[u8], kind: &'static str, waited_for: Option<String>) {
        if journal.live.watched() {
            let mut m = self.made_by.lock().unwrap_or_else(|e| e.into_inner());
            if m.len() < FRAMES_KEPT {
                m.entry(crate::encoding::fnv1a(data)).or_default().push_back((kind, waited_for));
            }
        }
    }

    /// Notes a frame for the inspector, and tells the pages watching: `direction` `sent` (to the
    /// client) or `received`; `kind` `frame`, `heartbeat` or `pushed`. Nothing when none watches.
    pub fn log_frame(&self, journal: &crate::journal::Journal, direction: &str, kind: &str, data: &[u8]) {
        if !journal.live.watched() {
            return;
        }
        let text = String::from_utf8_lossy(&data[..data.len().min(FRAME_TEXT)]).into_owned();
        let made = if direction == "sent" {
            let mut m = self.made_by.lock().unwrap_or_else(|e| e.into_inner());
            let key = crate::encoding::fnv1a(data);
            let made = m.get_mut(&key).and_then(|q| q.pop_front());
            if m.get(&key).is_some_and(|q| q.is_empty()) {
                m.remove(&key);
            }
            made
        } else {
            None
        };
        let (kind, waited_for) = match made {
            Some((k, w)) => (k, w),
            None if kind == "frame" && crate::platform::is_heartbeat(&text) => ("heartbeat", None),
            None => (kind, None),
        };
        let at = crate::clock::rfc3339_ms(journal.now_ms());
        let mut f =
            serde_json::json!({"at": at, "direction": direction, "kind": kind, "text": text, "bytes": data.len()});
        if let Some(w) = waited_for {
            f["waited_for"] = serde_json::Value::String(w);
        }
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            if log.len() >= FRAMES_KEPT {
                log.pop_front();
            }
            log.push_back(f.clone());
        }
        let mut event = f;
        event["session"] = serde_json::Value::String(self.id.clone());
        journal.live.publish("ws", &event);
    }
}

/// Replay-side WebSocket state shared by every session.
pub struct Hub {
    /// Settings.
    pub cfg: WsConfig,
    /// Pacing factor; `None` = instant.
    pub speed: Option<f64>,
    /// Recorded frames by session (handshake sequence number).
    frames: RwLock<Arc<HashMap<u64, Arc<Vec<Frame>>>>>,
    /// Live sessions by id.
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Sessions admitted and not yet ended (counted from [`Hub::admit`], before the upgrade completes).
    active: AtomicUsize,
    /// The frames of sessions that closed while a page watched (the last [`CLOSED_KEPT`]).
    closed: Mutex<std::collections::VecDeque<(String, Vec<serde_json::Value>)>>,
    /// The number of the next session id (`ws-<n>`).
    next_id: AtomicU64,
    /// Notified whenever a REST exchange is served while sessions are open.
    served: Notify,
    /// Virtual-time sleeps: pacing, heartbeats, pings, delayed pushes.
    timer: Arc<Timer>,
    /// Seeded randomness for push jitter.
    ids: Arc<Ids>,
    /// Where injected WebSocket faults are recorded.
    journal: Arc<crate::journal::Journal>,
    /// The faults overlay, for `ws_drop` and `heartbeat_miss` rules (none with the overlay off).
    faults: Option<Arc<crate::overlay::faults::Faults>>,
}

impl std::fmt::Debug for Hub {
    /// Only the number of active sessions: frames and sessions would swamp a log line.
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

/// Frames by session (the handshake's sequence number), each session's in recorded order.
fn group(frames: Vec<Frame>) -> HashMap<u64, Arc<Vec<Frame>>> {
    let mut by: HashMap<u64, Vec<Frame>> = HashMap::new();
    for f in frames {
        by.entry(f.session).or_default().push(f);
    }
    // Shared by every replay of the session, never copied per connection.
    by.into_iter()
        .map(|(k, mut v)| {
            v.sort_by_key(|f| f.n);
            (k, Arc::new(v))
        })
        .collect()
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
            closed: Mutex::new(std::collections::VecDeque::new()),
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

    /// Returns once `index` has served the exchange `seq` (woken by each `served` call; the
    /// wake-up is registered before each check, so none is missed).
    pub async fn until_served(&self, index: &crate::cassette::Index, seq: u64) {
        loop {
            let w = self.served.notified();
            tokio::pin!(w);
            w.as_mut().enable();
            if index.seq_served(seq) {
                return;
            }
            w.await;
        }
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

    /// A session's frames as the inspector keeps them; `None` for no such open session.
    pub fn frames_of(&self, id: &str) -> Option<Vec<serde_json::Value>> {
        if let Some(session) = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            let log = session.log.lock().unwrap_or_else(|e| e.into_inner());
            return Some(log.iter().cloned().collect());
        }
        let closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        closed.iter().find(|(s, _)| s == id).map(|(_, f)| f.clone())
    }

    /// A session ends: while a page watches, its frames stay readable and the page is told.
    pub(super) fn ended(&self, session: &Session) {
        if !self.journal.live.watched() {
            return;
        }
        let frames: Vec<serde_json::Value> =
            session.log.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
        let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        if closed.len() >= CLOSED_KEPT {
            closed.pop_front();
        }
        closed.push_back((session.id.clone(), frames));
        drop(closed);
        let at = crate::clock::rfc3339_ms(self.journal.now_ms());
        self.journal
            .live
            .publish("ws_session", &serde_json::json!({"session": session.id, "state": "closed", "at": at}));
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
                s.made(&self.journal, text.as_bytes(), "pushed", None);
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
    /// With `recorded` (an event a move the cassette answered made), sessions replaying a
    /// recording are left out: where the run follows the recording, the recording shows what the
    /// platform sent on them (the event, or nothing).
    pub async fn publish(&self, wants: impl Fn(&str) -> bool, make: impl Fn(&str) -> Value, recorded: bool) -> usize {
        let targets: Vec<(Arc<Session>, Vec<String>)> = {
            let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            s.values()
                .filter(|x| !(recorded && x.replaying.load(Ordering::Acquire)))
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
    /// `replaying`: the recording holds frames for it (see [`Session::replaying`]).
    pub fn open(&self, url: &str, replaying: bool) -> Arc<Session> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("ws-{n}");
        let channel = url.split("/channels/").nth(1).map(|c| c.split(['/', '?']).next().unwrap_or("").to_string());
        let session = Arc::new(Session {
            id: id.clone(),
            url: url.to_string(),
            topics: Mutex::new(Vec::new()),
            outbox: Outbox::new(self.cfg.queue, self.cfg.on_full),
            channel,
            replaying: AtomicBool::new(replaying),
            log: Mutex::new(std::collections::VecDeque::new()),
            made_by: Mutex::new(std::collections::HashMap::new()),
        });
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), session.clone());
        tracing::info!(session = %id, %url, "WebSocket session opened (replay)");
        let at = crate::clock::rfc3339_ms(self.journal.now_ms());
        self.journal
            .live
            .publish("ws_session", &serde_json::json!({"session": id, "state": "open", "url": url, "at": at}));
        session
    }

    /// Forgets a session whose upgrade never completed.
    pub fn abandon(&self, session: &Session) {
        session.outbox.close();
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&session.id);
        self.release();
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
}
