//! Test support: a stand-in platform (hyper + rustls with its own test CA), a harness that runs
//! the real `callvcr` binary on loopback ports, and real TLS/HTTP clients.
#![allow(dead_code, unreachable_pub)]

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Secrets the stand-in hands out or receives; none may reach a cassette.
pub const SECRETS: &[&str] = &[
    "SECRET-ACCESS-TOKEN-123",
    "SECRET-REFRESH-456",
    "SECRET-COOKIE-789",
    "SECRET-CLIENT-SECRET-000",
    "SECRET-BEARER-111",
    "SECRET-BASIC-222",
    "SECRET-QUERY-333",
    "SECRET-PASSWORD-444",
];

/// A fresh, empty directory for one test.
pub fn tempdir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    // Directories of earlier test processes that have ended are removed once per process, so
    // runs do not pile up in the temp directory (a running test process keeps its own).
    SWEEP.call_once(|| {
        // Whether a process still runs is read from /proc: where there is none, nothing is swept.
        if !Path::new("/proc/self").exists() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("callvcr-it-") else { continue };
            let mut parts = rest.rsplitn(3, '-');
            let (_, pid) = (parts.next(), parts.next().and_then(|p| p.parse::<u32>().ok()));
            if let Some(pid) = pid {
                if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    });
    let d = std::env::temp_dir().join(format!(
        "callvcr-it-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What the stand-in saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    pub version: http::Version,
    pub headers: HeaderMap,
    /// The request's body (filled once it has been read; empty for upgrades).
    pub body: Bytes,
}

/// How the stand-in has changed since a cassette was recorded from it: each switch is a change a
/// platform makes under its SDKs. All off by default, so the stand-in answers as it always has.
#[derive(Debug, Default)]
pub struct Drift {
    /// The API changed: `users/me` gains a field and a `deprecation` header, the call list loses
    /// `pageCount` and its `total` becomes a string, presence definitions are gone (404), and call
    /// events on the notification channel are reshaped (`version` a number, a new `mediaType`).
    pub api: std::sync::atomic::AtomicBool,
    /// Ids made live differ: a placed call and a notification channel get new ids (and the call's
    /// recorded id is unknown).
    pub new_ids: std::sync::atomic::AtomicBool,
    /// The next `users/me` is answered 429 with `Retry-After: 1`, once.
    pub rate_limit_once: std::sync::atomic::AtomicBool,
    /// `users/me` answers this many milliseconds late.
    pub slow_ms: AtomicU64,
    /// A call read gains a field (`securePause`): its answer drifts, times and all.
    pub call_field: std::sync::atomic::AtomicBool,
}

impl Drift {
    fn api(&self) -> bool {
        self.api.load(Ordering::SeqCst)
    }
    fn new_ids(&self) -> bool {
        self.new_ids.load(Ordering::SeqCst)
    }
}

/// The call the stand-in places.
pub const CALL_ID: &str = "5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e";
/// The call it places once ids drift.
pub const NEW_CALL_ID: &str = "9d2e3f4a-1b2c-4d5e-8f9a-0b1c2d3e4f5a";
/// The notification channel it makes once ids drift.
pub const NEW_CHANNEL_ID: &str = "streaming-1-3e5a7c9b1d2f";

/// The stand-in platform: one TLS listener answering for the Genesys hosts.
pub struct StandIn {
    pub addr: SocketAddr,
    pub ca_path: PathBuf,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Switches that change its answers (all off at start).
    pub drift: Arc<Drift>,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    /// Stops listening and closes the port.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Starts the stand-in with a fresh test CA written to `dir/upstream-ca.pem`.
pub async fn start_stand_in(dir: &Path) -> StandIn {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name.push(DnType::CommonName, "stand-in sandbox test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca_path = dir.join("upstream-ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf_params = CertificateParams::new(vec![
        "api.mypurecloud.com".to_string(),
        "login.mypurecloud.com".to_string(),
        "api.usw2.pure.cloud".to_string(),
        "streaming.mypurecloud.com".to_string(),
        "api-na1.niceincontact.com".to_string(),
        // A user's own API beside the platforms (the generic platform).
        "api.example.test".to_string(),
    ])
    .unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let counter = Arc::new(AtomicU64::new(0));
    let streams: Streams = Arc::new(Mutex::new(Vec::new()));
    let agent_events: AgentEvents = Arc::default();
    let drift: Arc<Drift> = Arc::default();
    let seen2 = seen.clone();
    let drift2 = drift.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { break };
            let acceptor = acceptor.clone();
            let seen = seen2.clone();
            let counter = counter.clone();
            let streams = streams.clone();
            let agent_events = agent_events.clone();
            let drift = drift2.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = hyper::service::service_fn(move |req| {
                    let seen = seen.clone();
                    let counter = counter.clone();
                    let streams = streams.clone();
                    let agent_events = agent_events.clone();
                    let drift = drift.clone();
                    async move {
                        let stall = req.uri().path() == "/stall";
                        let resp = if stall {
                            stalled_body()
                        } else {
                            stand_in_route(req, seen, counter, streams, agent_events, drift).await.map(|b| b.boxed())
                        };
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    StandIn { addr, ca_path, seen, drift, task }
}

type Boxed = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// A 200 whose head goes out at once and whose body never finishes (for 30 s).
fn stalled_body() -> Response<Boxed> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>(1);
    tokio::spawn(async move {
        let _ = tx.send(Ok(hyper::body::Frame::data(Bytes::from_static(b"{\"partial\":")))).await;
        // The stall is the behaviour: a body that does not finish (not a wait for anything).
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(tx);
    });
    let stream = RecvStream(rx);
    let mut r = Response::new(http_body_util::StreamBody::new(stream).boxed());
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

/// An mpsc receiver as a `Stream`.
struct RecvStream<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for RecvStream<T> {
    type Item = T;
    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

fn json(status: u16, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

/// Open notification WebSockets on the stand-in: events are pushed to them.
type Streams = Arc<Mutex<Vec<tokio::sync::mpsc::UnboundedSender<String>>>>;

/// NICE agent events waiting for a long poll, and a wake-up for the poll; one per stand-in, so
/// tests running in parallel do not see each other's events.
#[derive(Default)]
struct AgentQueue {
    events: Mutex<Vec<serde_json::Value>>,
    arrived: tokio::sync::Notify,
}

type AgentEvents = Arc<AgentQueue>;

/// The tenant the stand-in's NICE tokens belong to.
pub const NICE_TENANT: &str = "11eb7bd6-1c2e-4a80-9b7e-0242ac110002";

/// The claims the stand-in's NICE tokens carry, as the platform's do: tenant, user, agent,
/// business unit, issuer, audience, times.
pub fn nice_claims() -> serde_json::Value {
    serde_json::json!({"iss": "https://cxone.niceincontact.com", "aud": "CXone", "sub": "user:11eb-user",
        "tenantId": NICE_TENANT, "agentId": 4242, "icBUId": 4600123, "icClusterId": "B32",
        "iat": 1764500000, "exp": 1764503600, "jti": "stand-in-jti"})
}

/// A JWT with `claims` and a stand-in signature (the sandbox's own secret, never to reach a cassette).
pub fn nice_jwt(claims: &serde_json::Value, signature: &str) -> String {
    use base64::Engine;
    let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{signature}", b64(&serde_json::json!({"alg": "RS256", "kid": "stand-in"})), b64(claims))
}

/// The NICE long-poll path on the stand-in.
pub const NICE_POLL: &str = "/incontactapi/services/v27.0/agent-sessions/s-1/get-next-event";
/// The NICE request that changes the agent's state (and so produces an event).
pub const NICE_STATE: &str = "/incontactapi/services/v27.0/agent-sessions/s-1/state";

/// The notification channel the stand-in issues.
pub const CHANNEL_ID: &str = "streaming-0-7d1c9e2a4b6f";
/// The topic a call event arrives on.
pub const CALLS_TOPIC: &str = "v2.users.u-1.conversations.calls";

/// A call event as the stand-in pushes it.
pub fn call_event(state: &str, correlation: &str) -> serde_json::Value {
    serde_json::json!({
        "topicName": CALLS_TOPIC,
        "version": "2",
        "eventBody": {"id": "5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e", "participants": [{"purpose": "customer", "state": state}]},
        "metadata": {"CorrelationId": correlation}
    })
}

/// A call event as the stand-in pushes it once its API drifted: `version` a number, and a new
/// `mediaType` in the body; `call` is the call's id.
fn drifted_call_event(state: &str, correlation: &str, call: &str) -> serde_json::Value {
    let mut e = call_event(state, correlation);
    e["version"] = serde_json::json!(2);
    e["eventBody"]["id"] = serde_json::json!(call);
    e["eventBody"]["mediaType"] = serde_json::json!("voice");
    e
}

/// A Genesys-style notification socket: heartbeats every 250 ms, pong for ping, and whatever the
/// REST side pushes.
async fn notification_socket(up: hyper::upgrade::Upgraded, streams: Streams) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(up),
        tokio_tungstenite::tungstenite::protocol::Role::Server,
        None,
    )
    .await;
    let (mut tx, mut rx) = ws.split();
    let (push_tx, mut push_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    streams.lock().unwrap().push(push_tx);
    let mut beat = tokio::time::interval(Duration::from_millis(250));
    beat.tick().await;
    loop {
        tokio::select! {
            _ = beat.tick() => {
                let hb = serde_json::json!({"topicName": "channel.metadata", "eventBody": {"message": "WebSocket Heartbeat"}});
                if tx.send(Message::text(hb.to_string())).await.is_err() { break; }
            }
            Some(ev) = push_rx.recv() => {
                if tx.send(Message::text(ev)).await.is_err() { break; }
            }
            m = rx.next() => match m {
                Some(Ok(Message::Text(t))) if t.contains("\"ping\"") => {
                    let pong = serde_json::json!({"topicName": "channel.metadata", "eventBody": {"message": "pong"}});
                    if tx.send(Message::text(pong.to_string())).await.is_err() { break; }
                }
                Some(Ok(Message::Close(c))) => { let _ = tx.send(Message::Close(c)).await; break; }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    }
}

async fn stand_in_route(
    mut req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    counter: Arc<AtomicU64>,
    streams: Streams,
    agent_events: AgentEvents,
    drift: Arc<Drift>,
) -> Response<Full<Bytes>> {
    use base64::Engine as _;
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let seen_at = {
        let mut all = seen.lock().unwrap();
        all.push(Seen {
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
            host,
            version: req.version(),
            headers: req.headers().clone(),
            body: Bytes::new(),
        });
        all.len() - 1
    };
    let path = req.uri().path().to_string();
    let req_auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(String::from);
    let req_query = req.uri().query().map(String::from);
    let method = req.method().to_string();
    if path == "/ws" && req.headers().contains_key("upgrade") {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
        r.headers_mut().insert("connection", "Upgrade".parse().unwrap());
        r.headers_mut().insert("sec-websocket-accept", "stand-in-accept".parse().unwrap());
        return r;
    }
    if path.starts_with("/channels/") && req.headers().contains_key("upgrade") {
        let key = req.headers().get("sec-websocket-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let on = hyper::upgrade::on(&mut req);
        let streams = streams.clone();
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                notification_socket(up, streams).await;
            }
        });
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
        r.headers_mut().insert("connection", "Upgrade".parse().unwrap());
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        r.headers_mut().insert("sec-websocket-accept", accept.parse().unwrap());
        return r;
    }
    let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    if let Some(s) = seen.lock().unwrap().get_mut(seen_at) {
        s.body = body.clone();
    }
    let call_id = if drift.new_ids() { NEW_CALL_ID } else { CALL_ID };
    let push = |ev: serde_json::Value| {
        for s in streams.lock().unwrap().iter() {
            let _ = s.send(ev.to_string());
        }
    };
    match path.as_str() {
        NICE_POLL => {
            let timeout: u64 = req_query
                .as_deref()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("timeout=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(5);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
            loop {
                let wake = agent_events.arrived.notified();
                tokio::pin!(wake);
                wake.as_mut().enable();
                let events: Vec<serde_json::Value> = std::mem::take(&mut *agent_events.events.lock().unwrap());
                if !events.is_empty() {
                    return json(200, serde_json::json!({"sessionId": "s-1", "events": events}));
                }
                if tokio::time::timeout_at(deadline, wake).await.is_err() {
                    let mut r = Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = StatusCode::NOT_MODIFIED;
                    return r;
                }
            }
        }
        NICE_STATE if method == "POST" => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            agent_events
                .events
                .lock()
                .unwrap()
                .push(serde_json::json!({"Type": "AgentState", "CurrentState": v["state"]}));
            agent_events.arrived.notify_waiters();
            json(202, serde_json::json!({}))
        }
        "/api/v2/notifications/channels" if method == "POST" => {
            let channel = if drift.new_ids() { NEW_CHANNEL_ID } else { CHANNEL_ID };
            json(
                200,
                serde_json::json!({"id": channel, "connectUri": format!("wss://streaming.mypurecloud.com/channels/{channel}"), "expires": "2026-01-06T09:00:00.000Z"}),
            )
        }
        p if p.ends_with("/subscriptions") && method == "PUT" => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            json(200, serde_json::json!({"entities": v}))
        }
        "/api/v2/users/me" if drift.rate_limit_once.swap(false, Ordering::SeqCst) => {
            let mut r = json(
                429,
                serde_json::json!({"message": "Rate limit exceeded the maximum. Retry the request in [1] seconds", "code": "too.many.requests", "status": 429}),
            );
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
            r
        }
        "/api/v2/users/me" => {
            let slow = drift.slow_ms.load(Ordering::SeqCst);
            if slow > 0 {
                // A slower platform is the behaviour under test, not a wait for anything.
                tokio::time::sleep(Duration::from_millis(slow)).await;
            }
            if drift.api() {
                let mut r = json(
                    200,
                    serde_json::json!({"id": "u-1", "name": "Agent Smith", "state": "active", "department": "Support"}),
                );
                r.headers_mut().insert("deprecation", "true".parse().unwrap());
                r
            } else {
                json(200, serde_json::json!({"id": "u-1", "name": "Agent Smith", "state": "active"}))
            }
        }
        "/api/v2/presencedefinitions" if drift.api() => json(
            404,
            serde_json::json!({"message": "The requested resource was not found.", "code": "not.found", "status": 404}),
        ),
        "/api/v2/presencedefinitions" => json(
            200,
            serde_json::json!({"entities": [{"id": "6a3af858-942f-489d-9700-5f9bcdcdae9b", "systemPresence": "Available"}], "pageSize": 25, "total": 1}),
        ),
        "/api/v2/conversations/calls" if method == "POST" => {
            // The platform announces the call on the notification channel while the request is in
            // flight, then again once it connects.
            let reshaped = drift.api();
            let event = move |state: &str, c: &str| {
                if reshaped {
                    drifted_call_event(state, c, call_id)
                } else {
                    call_event(state, c)
                }
            };
            push(event("alerting", "c-1"));
            let later = streams.clone();
            let connected = event("connected", "c-2");
            tokio::spawn(async move {
                // The platform's own delay between the two events (a recorded gap replay must
                // keep), not a wait for anything.
                tokio::time::sleep(Duration::from_millis(150)).await;
                for s in later.lock().unwrap().iter() {
                    let _ = s.send(connected.to_string());
                }
            });
            json(200, serde_json::json!({"id": call_id, "selfUri": format!("/api/v2/conversations/calls/{call_id}")}))
        }
        "/api/v2/conversations/calls" if drift.api() => {
            json(200, serde_json::json!({"entities": [], "pageSize": 25, "pageNumber": 1, "total": "0"}))
        }
        "/api/v2/conversations/calls" => {
            json(200, serde_json::json!({"entities": [], "pageSize": 25, "pageNumber": 1, "total": 0, "pageCount": 0}))
        }
        p if p.strip_prefix("/api/v2/conversations/calls/") == Some(call_id) => {
            // As the platform does: the call and each participant carry their times (UTC, ms).
            let now = callvcr::clock::Clock::system().now_ms();
            let at = |ago_ms: i64| callvcr::clock::rfc3339_ms(now - ago_ms);
            let mut call = serde_json::json!({
                "id": call_id,
                "startTime": at(60_000),
                "participants": [
                    {"id": "7d1e2f3a-0b1c-4d5e-8f9a-0b1c2d3e4f5a", "purpose": "agent", "state": "connected", "held": false,
                     "startTime": at(60_000), "connectedTime": at(58_000)},
                    {"id": "8e2f3a4b-1c2d-4e5f-9a0b-1c2d3e4f5a6b", "purpose": "customer", "state": "connected", "held": false,
                     "startTime": at(60_000), "connectedTime": at(55_000)}
                ],
                "recordingState": "none"
            });
            if drift.call_field.load(Ordering::SeqCst) {
                call["securePause"] = serde_json::json!(false);
            }
            json(200, call)
        }
        p if method == "PATCH"
            && p.strip_prefix("/api/v2/conversations/calls/").is_some_and(|rest| {
                rest.starts_with(call_id) && rest[call_id.len()..].starts_with("/participants/")
            }) =>
        {
            // The platform accepts a participant update and applies it asynchronously.
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::ACCEPTED;
            r
        }
        "/api/v2/counter" => json(200, serde_json::json!({"n": counter.fetch_add(1, Ordering::SeqCst)})),
        "/api/v2/other" => json(200, serde_json::json!({"other": counter.fetch_add(1, Ordering::SeqCst)})),
        "/api/v2/echo" => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            json(200, serde_json::json!({"received": v}))
        }
        "/oauth/token"
            if req_auth.as_deref().is_some_and(|a| {
                a.strip_prefix("Basic ")
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .is_some_and(|d| d.ends_with(b":wrong-secret"))
            }) =>
        {
            // This sandbox refuses a wrong client secret.
            let mut r = json(
                401,
                serde_json::json!({"error": "invalid_client", "description": "client authentication failed", "error_description": "client authentication failed"}),
            );
            r.headers_mut().insert("inin-correlation-id", "0f1e2d3c-4b5a-4697-8877-665544332211".parse().unwrap());
            r
        }
        "/auth/token" => {
            // NICE CXone: an access key as a password grant; this sandbox knows one secret.
            let form = String::from_utf8_lossy(&body).into_owned();
            if form.contains("password=NICE-KEY-SECRET-OK") {
                json(
                    200,
                    serde_json::json!({
                        "access_token": nice_jwt(&nice_claims(), "SECRETSIGNATURE"),
                        "token_type": "Bearer",
                        "expires_in": 3600,
                        "refresh_token": "SECRET-NICE-REFRESH",
                        "id_token": nice_jwt(&nice_claims(), "SECRETIDSIGNATURE"),
                        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"
                    }),
                )
            } else {
                json(
                    401,
                    serde_json::json!({"error": "invalid_grant", "error_description": "Invalid access key or secret"}),
                )
            }
        }
        "/.well-known/cxone-configuration" => {
            // NICE CXone tells an SDK its tenant's hosts by the tenant id its token carries.
            if req_query.as_deref() == Some(&format!("tenantId={NICE_TENANT}")) {
                json(
                    200,
                    serde_json::json!({"tenantId": NICE_TENANT, "area": "na1", "cluster": "B32",
                                       "apiEndpoint": "https://api-na1.niceincontact.com"}),
                )
            } else {
                json(404, serde_json::json!({"error": "tenant not found"}))
            }
        }
        "/oauth/token" => {
            let mut r = json(
                200,
                serde_json::json!({
                    "access_token": "SECRET-ACCESS-TOKEN-123",
                    "token_type": "bearer",
                    "expires_in": 86399,
                    "refresh_token": "SECRET-REFRESH-456"
                }),
            );
            r.headers_mut().insert("set-cookie", "session=SECRET-COOKIE-789; Secure".parse().unwrap());
            r
        }
        "/oauth/authorize" => {
            // The sign-in page, already signed in: straight back to the app with a code.
            let q = req_query.clone().unwrap_or_default();
            let param =
                |k: &str| q.split('&').find_map(|kv| kv.strip_prefix(&format!("{k}="))).unwrap_or("").to_string();
            let to = format!(
                "{}?code=STAND-IN-CODE-1&state={}",
                param("redirect_uri").replace("%3A", ":").replace("%2F", "/"),
                param("state")
            );
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::FOUND;
            r.headers_mut().insert("location", to.parse().unwrap());
            r
        }
        "/gzip" => {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(br#"{"compressed":true}"#).unwrap();
            let mut r = Response::new(Full::new(Bytes::from(e.finish().unwrap())));
            r.headers_mut().insert("content-type", "application/json".parse().unwrap());
            r.headers_mut().insert("content-encoding", "gzip".parse().unwrap());
            r
        }
        "/slow" => {
            // A slow platform answer is the behaviour under test (a request in flight), not a wait.
            tokio::time::sleep(Duration::from_secs(3)).await;
            json(200, serde_json::json!({"slow": true}))
        }
        _ => json(404, serde_json::json!({"message": "no such route", "code": "not.found", "status": 404})),
    }
}

/// A loopback DNS server that answers NXDOMAIN to every query.
pub async fn nxdomain_server() -> std::net::SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        for _ in 0..64 {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else { break };
            if n < 12 {
                continue;
            }
            let mut resp = buf[..n].to_vec();
            resp[2] |= 0x80; // QR: a response
            resp[3] = (resp[3] & 0xF0) | 0x03 | 0x80; // RA, RCODE 3 (NXDOMAIN)
            let _ = sock.send_to(&resp, from).await;
        }
    });
    addr
}

/// A running `callvcr` process.
pub struct Callvcr {
    child: Option<Child>,
    pub dir: PathBuf,
    pub tls: SocketAddr,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// The threads serving connections, as its ready file says.
    pub workers: u64,
    stderr_path: PathBuf,
    /// For a recording: the `cassette check` arguments that run when it stops.
    check: Option<Vec<String>>,
}

/// The `cassette check` a recording started with `args` gets: its cassette and its config.
fn check_args(args: &[&str]) -> Option<Vec<String>> {
    if args.first() != Some(&"record") {
        return None;
    }
    let value = |flag: &str| args.iter().position(|a| *a == flag).and_then(|i| args.get(i + 1)).map(|v| v.to_string());
    let mut out = vec!["cassette".to_string(), "check".to_string(), value("--cassette")?];
    for flag in ["--config", "--cassettes"] {
        if let Some(v) = value(flag) {
            out.extend([flag.to_string(), v]);
        }
    }
    Some(out)
}

/// Runs `callvcr ARGS` to completion in `dir` with extra environment variables, off the async
/// runtime's threads (a stand-in in this process keeps answering); returns (exit code, stdout, stderr).
pub async fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callvcr"));
    cmd.args(args).current_dir(dir).envs(env.iter().copied()).env_remove("CALLVCR_LOG");
    outcome(tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap())
}

/// Runs `callvcr ARGS` to completion in `dir`; returns (exit code, stdout, stderr).
pub fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    run_with(dir, args, &[])
}

/// [`run`] with extra environment variables.
pub fn run_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    outcome(
        Command::new(env!("CARGO_BIN_EXE_callvcr"))
            .args(args)
            .current_dir(dir)
            .envs(env.iter().copied())
            .output()
            .unwrap(),
    )
}

/// A finished run as (exit code, stdout, stderr).
fn outcome(out: std::process::Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Callvcr {
    /// Starts `callvcr ARGS` in `dir` on free loopback ports and waits until it is ready.
    pub fn start(dir: &Path, args: &[&str]) -> Callvcr {
        Self::start_in(dir, args, None)
    }

    /// Starts callvcr with extra environment variables (e.g. `CALLVCR_LOG=debug`).
    pub fn start_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Callvcr {
        Self::launch(dir, args, None, env)
    }

    /// Like [`Callvcr::start`], with `/etc/hosts` replaced by `hosts` for this process only
    /// (a private mount namespace; needs root and `unshare`).
    pub fn start_in(dir: &Path, args: &[&str], hosts: Option<&Path>) -> Callvcr {
        Self::launch(dir, args, hosts, &[])
    }

    fn launch(dir: &Path, args: &[&str], hosts: Option<&Path>, env: &[(&str, &str)]) -> Callvcr {
        let ready = dir.join(format!("ready-{}.json", rand_suffix()));
        let stderr_path = dir.join(format!("stderr-{}.log", rand_suffix()));
        let _ = std::fs::remove_file(&ready);
        let mut cmd = match hosts {
            None => Command::new(env!("CARGO_BIN_EXE_callvcr")),
            Some(h) => {
                // unshare and sh exec in place, so the pid is callvcr's own and signals reach it.
                let mut c = Command::new("unshare");
                c.args(["-m", "sh", "-c", "mount --bind \"$0\" /etc/hosts && exec \"$@\""])
                    .arg(h)
                    .arg(env!("CARGO_BIN_EXE_callvcr"));
                c
            }
        };
        cmd.args(args);
        cmd.envs(env.iter().copied());
        // Free loopback ports, unless the test names an address itself.
        for flag in ["--listen", "--proxy-listen", "--admin"] {
            if !args.contains(&flag) {
                cmd.args([flag, "127.0.0.1:0"]);
            }
        }
        let child = cmd
            .arg("--ready-file")
            .arg(&ready)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let mut c = Callvcr {
            child: Some(child),
            dir: dir.to_path_buf(),
            tls: "0.0.0.0:0".parse().unwrap(),
            proxy: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
            workers: 0,
            stderr_path,
            check: check_args(args),
        };
        let v = wait_for_blocking("callvcr writing its ready file", Duration::from_secs(20), POLL, || {
            if let Some(status) = c.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("callvcr exited early ({status}): {}", c.stderr());
            }
            let text = std::fs::read_to_string(&ready).ok()?;
            serde_json::from_str::<serde_json::Value>(&text).ok()
        });
        c.tls = v["tls"].as_str().unwrap().parse().unwrap();
        c.proxy = v["proxy"].as_str().unwrap().parse().unwrap();
        c.admin = v["admin"].as_str().unwrap().parse().unwrap();
        c.workers = v["workers"].as_u64().unwrap();
        c
    }

    /// What it has logged so far.
    pub fn stderr(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The CA certificate callvcr uses.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("certs/ca.pem")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGINT, then wait (up to 15 s); returns the exit code and everything logged. A recording
    /// that ended well is then checked: `cassette check` must find the cassette replaying as
    /// recorded with the default overlays (the recording is the oracle).
    pub fn stop(self) -> (i32, String) {
        let check = self.check.clone();
        let dir = self.dir.clone();
        let (code, log) = self.stop_unchecked();
        if let (0, Some(args)) = (code, check) {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let (c, out, err) = run(&dir, &a);
            assert_eq!(c, 0, "the recording does not replay as recorded:\n{out}\n{err}");
        }
        (code, log)
    }

    /// SIGINT and wait, without checking a recording (one that stores what replay must not
    /// reproduce, such as an upstream failure).
    pub fn stop_unchecked(mut self) -> (i32, String) {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
        let limit = Duration::from_secs(15);
        match poll_blocking(limit, POLL, || child.try_wait().unwrap()) {
            Some(st) => (st.code().unwrap_or(-1), self.stderr()),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("callvcr did not stop within {limit:?} of SIGINT: {}", self.stderr());
            }
        }
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill").arg("-9").arg(child.id().to_string()).status();
        let _ = child.wait();
    }
}

impl Drop for Callvcr {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rand_suffix() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A rustls client configuration trusting only the CA at `ca`, offering `alpn`.
pub fn client_config(ca: &Path, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for c in CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(cfg)
}

/// TLS over `tcp` with SNI `host`.
pub async fn tls_over<IO>(
    io: IO,
    host: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<IO>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio_rustls::TlsConnector::from(cfg).connect(ServerName::try_from(host.to_string()).unwrap(), io).await
}

/// Opens a CONNECT tunnel to `target` through the proxy listener; returns the stream after `200`.
pub async fn connect_tunnel(proxy: SocketAddr, target: &str) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(proxy).await.map_err(|e| e.to_string())?;
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.map_err(|e| e.to_string())? == 0 {
            return Err(format!("closed: {}", String::from_utf8_lossy(&head)));
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    if !text.starts_with("HTTP/1.1 200") {
        return Err(text);
    }
    Ok(s)
}

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// An HTTP/1.1 connection (keep-alive) over any stream.
pub struct H1 {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl H1 {
    pub async fn over<IO>(io: IO) -> H1
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        H1 { sender }
    }

    /// Sends a request; `uri` may be origin-form or absolute-form.
    pub async fn send(&mut self, method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        self.sender.ready().await.expect("connection closed before the request");
        let resp = self.sender.send_request(req).await.unwrap();
        read(resp).await
    }

    /// Like `send`, but a connection that fails (the server was killed) is an error, not a panic.
    pub async fn try_send(
        &mut self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Resp, hyper::Error> {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Resp { status: parts.status.as_u16(), headers: parts.headers, body, version: parts.version })
    }
}

pub async fn read(resp: Response<Incoming>) -> Resp {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Resp { status: parts.status.as_u16(), headers: parts.headers, body, version: parts.version }
}

/// A keep-alive HTTP/1.1 connection to callvcr's TLS listener with SNI `host`.
pub async fn h1_tls(cv: &Callvcr, host: &str) -> H1 {
    let tcp = TcpStream::connect(cv.tls).await.unwrap();
    let tls = tls_over(tcp, host, client_config(&cv.ca_path(), &[b"http/1.1"])).await.unwrap();
    H1::over(tls).await
}

/// A Genesys user login, as an app with the authorization-code grant does it: the (headless)
/// sign-in redirect with a code, then the code exchanged with HTTP Basic `basic` (base64 of
/// `id:secret`). Returns the token answer. A client-credentials token cannot place or answer calls.
pub async fn user_login(cv: &Callvcr, basic: &str) -> Resp {
    use base64::Engine as _;
    let pair = base64::engine::general_purpose::STANDARD.decode(basic).expect("base64 of id:secret");
    let client = String::from_utf8(pair).unwrap().split(':').next().unwrap().to_string();
    let mut c = h1_tls(cv, "login.mypurecloud.com").await;
    let authorize = format!(
        "/oauth/authorize?response_type=code&client_id={client}&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&state=s1"
    );
    let r = c.send("GET", &authorize, &[("host", "login.mypurecloud.com")], "").await;
    assert_eq!(r.status, 302, "{}", r.text());
    let loc = r.headers["location"].to_str().unwrap().to_string();
    let code = loc.split("code=").nth(1).and_then(|c| c.split('&').next()).unwrap_or_default().to_string();
    let auth = format!("Basic {basic}");
    let h = [
        ("host", "login.mypurecloud.com"),
        ("authorization", auth.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let body = format!("grant_type=authorization_code&code={code}&redirect_uri=http%3A%2F%2Flocalhost%2Fcb");
    c.send("POST", "/oauth/token", &h, &body).await
}

/// Common record arguments pointing every configured host at the stand-in.
pub fn record_args(stand_in: &StandIn, cassette: &str) -> Vec<String> {
    vec![
        "record".into(),
        "--cassette".into(),
        cassette.into(),
        "--resolve".into(),
        format!("*={}", stand_in.addr),
        "--upstream-ca".into(),
        stand_in.ca_path.display().to_string(),
    ]
}

/// callvcr replaying `cassette` (under `dir`) on a virtual clock frozen at `start`, with `extra` flags.
pub fn replay_frozen_at(dir: &Path, cassette: &str, start: &str, extra: &[&str]) -> Callvcr {
    let mut args = vec!["replay", "--cassette", cassette, "--clock-frozen", "--clock-start", start];
    args.extend_from_slice(extra);
    Callvcr::start(dir, &args)
}

/// Every file under `dir`, concatenated.
pub fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.extend(std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// One call to callvcr's admin API (plain HTTP on loopback).
pub async fn admin(cv: &Callvcr, method: &str, path: &str, body: &str) -> Resp {
    admin_with(cv, method, path, body, &[]).await
}

/// One call to the admin API with extra headers.
pub async fn admin_with(cv: &Callvcr, method: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
    let tcp = TcpStream::connect(cv.admin).await.unwrap();
    let mut c = H1::over(tcp).await;
    let host = cv.admin.to_string();
    let mut h = vec![("host", host.as_str()), ("content-type", "application/json")];
    h.extend_from_slice(headers);
    c.send(method, path, &h, body).await
}

/// A recorded exchange for a hand-written cassette:
/// (method, host, path, request body, status, response body).
pub type Rec<'a> = (&'a str, &'a str, &'a str, &'a str, u16, &'a str);

/// Writes a JSON Lines cassette of `exchanges` to `dir/name` and returns its path.
pub fn write_cassette(dir: &Path, name: &str, exchanges: &[Rec<'_>]) -> PathBuf {
    let mut out = String::from("{\"format\":\"callvcr-cassette\",\"version\":1,\"note\":\"written by a test\"}\n");
    for (i, (method, host, path, req_body, status, body)) in exchanges.iter().enumerate() {
        let mut req_headers = vec![vec!["host", host]];
        if !req_body.is_empty() {
            let ct = if req_body.starts_with('{') || req_body.starts_with('[') {
                "application/json"
            } else {
                "application/x-www-form-urlencoded"
            };
            req_headers.push(vec!["content-type", ct]);
        }
        let ex = serde_json::json!({
            "seq": i + 1,
            "recorded_at": "2026-01-05T09:00:00.000Z",
            "duration_ms": 1,
            "request": {"method": method, "scheme": "https", "host": host, "path": path,
                        "headers": req_headers, "body": {"text": req_body}},
            "response": {"status": status, "headers": [["content-type", "application/json"]], "body": {"text": body}},
        });
        out.push_str(&ex.to_string());
        out.push('\n');
    }
    let p = dir.join(name);
    std::fs::write(&p, out).unwrap();
    p
}

/// Sends one request to callvcr's TLS listener (SNI `host`) on its own task, so a test can watch it
/// wait: the handle yields the response.
pub fn spawn_send(
    cv: &Callvcr,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> tokio::task::JoinHandle<Resp> {
    let (tls, ca) = (cv.tls, cv.ca_path());
    let (host, method, path, body) = (host.to_string(), method.to_string(), path.to_string(), body.to_string());
    let mut hs: Vec<(String, String)> = vec![("host".into(), host.clone())];
    hs.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    tokio::spawn(async move {
        let s = tls_over(TcpStream::connect(tls).await.unwrap(), &host, client_config(&ca, &[b"http/1.1"])).await;
        let mut c = H1::over(s.unwrap()).await;
        let h: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        c.send(&method, &path, &h, &body).await
    })
}

/// A small seeded generator (xorshift), so a failing random round can be named, and run again, by
/// its seed.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// Waiting for what a test needs. A test waits for the evidence itself (a journal entry, a session
// listed or freed, a log line, a request seen upstream), looking again every `POLL` up to a
// deadline, and fails naming what never happened; never a guessed pause instead.

/// How often a wait looks again.
pub const POLL: Duration = Duration::from_millis(20);
/// How long something that should happen promptly may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Looks at `check` every [`POLL`] until it gives `Some`, within `limit`; `None` when it never does.
pub async fn poll<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Like [`poll`], but a `check` that never gives `Some` within `limit` fails the test, naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match poll(limit, check).await {
        Some(v) => v,
        None => panic!("never happened within {limit:?}: {what}"),
    }
}

/// Waits until `check` holds, within `limit`; fails the test naming `what` when it never does.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for(what, limit, || {
        let f = check();
        async move { f.await.then_some(()) }
    })
    .await
}

/// [`poll`] for code that cannot await (a child process), every `every`.
pub fn poll_blocking<T>(limit: Duration, every: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = callvcr::clock::Clock::instant() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if callvcr::clock::Clock::instant() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// [`wait_for`] for code that cannot await, every `every`.
pub fn wait_for_blocking<T>(what: &str, limit: Duration, every: Duration, check: impl FnMut() -> Option<T>) -> T {
    match poll_blocking(limit, every, check) {
        Some(v) => v,
        None => panic!("never happened within {limit:?}: {what}"),
    }
}

/// The admin journal's entries.
pub async fn journal(cv: &Callvcr) -> Vec<serde_json::Value> {
    admin(cv, "GET", "/mock/admin/journal", "").await.json().as_array().cloned().unwrap_or_default()
}

/// The first journal entry `matches` accepts, once there is one (within [`WAIT`]).
pub async fn wait_for_journal(
    cv: &Callvcr,
    what: &str,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let what = format!("a journal entry: {what}");
    wait_for(&what, WAIT, || {
        let matches = &matches;
        async move { journal(cv).await.into_iter().find(|e| matches(e)) }
    })
    .await
}

/// The WebSocket sessions the admin API lists.
pub async fn ws_session_list(cv: &Callvcr) -> Vec<serde_json::Value> {
    admin(cv, "GET", "/mock/admin/ws/sessions", "").await.json().as_array().cloned().unwrap_or_default()
}

/// The WebSocket sessions, once `ok` accepts the list (within [`WAIT`]); fails naming `what`.
pub async fn wait_for_ws_sessions(
    cv: &Callvcr,
    what: &str,
    ok: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let what = format!("WebSocket sessions: {what}");
    wait_for(&what, WAIT, || {
        let ok = &ok;
        async move {
            let list = ws_session_list(cv).await;
            ok(&list).then_some(list)
        }
    })
    .await
}

/// Waits until callvcr has logged `line` (within [`WAIT`]); returns the log so far.
pub async fn wait_for_log(cv: &Callvcr, line: &str) -> String {
    let what = format!("callvcr logging `{line}`");
    wait_for(&what, WAIT, || async move {
        let log = cv.stderr();
        log.contains(line).then_some(log)
    })
    .await
}

/// Waits until the stand-in has seen a request for `path` (it is in flight upstream, or answered).
pub async fn wait_for_upstream(si: &StandIn, path: &str) {
    let what = format!("the stand-in seeing a request for {path}");
    wait_for(&what, WAIT, || async move { si.seen.lock().unwrap().iter().any(|s| s.path == path).then_some(()) }).await
}

/// Waits until the fault rule `id` has counted every request of its window (`remaining` 0): the
/// request it was meant for has reached it, and what it decided (a deadline) is fixed.
pub async fn wait_for_fault_used(cv: &Callvcr, id: &str) {
    let what = format!("fault rule {id} counting its request");
    wait_until(&what, WAIT, || async move {
        let rules = admin(cv, "GET", "/mock/admin/faults", "").await.json();
        rules.as_array().into_iter().flatten().any(|r| r["id"] == id && r["remaining"] == 0)
    })
    .await
}

/// Asserts that `task` does not finish within `window`: what must not happen (an answer before its
/// time) is waited for, and the test fails, with what came, as soon as it happens. The window is
/// the observation itself, so it starts only once the task's request is known to be waiting.
pub async fn stays_pending<T: std::fmt::Debug>(what: &str, task: &mut tokio::task::JoinHandle<T>, window: Duration) {
    if let Ok(done) = tokio::time::timeout(window, &mut *task).await {
        panic!("{what}: it finished within {window:?}: {done:?}");
    }
}

/// An open event stream: its events as (name, data) in order.
pub struct Events {
    tcp: TcpStream,
    buf: String,
}

impl Events {
    pub async fn open(cv: &Callvcr, headers: &[(&str, &str)]) -> (u16, Events) {
        let mut tcp = TcpStream::connect(cv.admin).await.unwrap();
        let mut req = format!("GET /mock/admin/events HTTP/1.1\r\nhost: {}\r\n", cv.admin);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut e = Events { tcp, buf: String::new() };
        let head = e.until("\r\n\r\n").await;
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, e)
    }

    /// Reads until `end` has arrived; returns what came before it (and takes it off).
    pub async fn until(&mut self, end: &str) -> String {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(i) = self.buf.find(end) {
                let out = self.buf[..i].to_string();
                self.buf.drain(..i + end.len());
                return out;
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.tcp.read(&mut chunk))
                .await
                .expect("an event within 10 s")
                .unwrap();
            assert!(n > 0, "the stream ended; had {:?}", self.buf);
            self.buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }

    /// The next event whose name is `name` (the chunked framing's size lines are skipped).
    pub async fn next(&mut self, name: &str) -> serde_json::Value {
        loop {
            let block = self.until("\n\n").await;
            let mut event = "";
            let mut data = "";
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e;
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = d;
                }
            }
            if event == name {
                return serde_json::from_str(data).unwrap_or_else(|e| panic!("{name} data {data:?}: {e}"));
            }
        }
    }
}
