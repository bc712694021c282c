//! WebSocket replay against a bare tokio-tungstenite server sending the same frames.
//!
//! Two measures, each in interleaved rounds (bare, callvcr, bare, ...), reported as the median
//! ratio callvcr/bare, since absolute numbers on a shared machine are noise:
//!
//! - **frames per second** a replayed Genesys notification session delivers to one client: a
//!   recorded session of `BENCH_WS_FRAMES` event frames (default 5000, about 330 bytes each) with
//!   no gaps between them, read to the end over TLS; the bare server sends the same frames on
//!   connect. Each server's CPU per frame (user + system) is reported beside.
//! - **REST answer → event latency**: a client with a notification session open sends
//!   `PATCH /api/v2/users/{id}/presences/purecloud` (bearer, JSON body, the default overlays on)
//!   and waits for the presence event the recording shows that request caused; the time from the
//!   REST answer to the event frame. The bare server answers the PATCH and pushes the same event on
//!   the client's socket. `BENCH_WS_EVENTS` requests per round (default 200).
//!
//! `cargo bench --bench ws` (env: `BENCH_ROUNDS`, default 5; `CALLVCR_BENCH_BIN` runs another
//! callvcr binary). Under `cargo test` it runs as a short smoke test.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const API: &str = "api.mypurecloud.com";
const STREAMING: &str = "streaming.mypurecloud.com";
const FLOOD: &str = "/channels/streaming-0-flood0000001";
const EVENTS: &str = "/channels/streaming-0-events000001";
const USER: &str = "0c2f6a1e-9b7d-4a53-8f0e-2d4c6b8a1e3f";
const PRESENCE_BODY: &str = r#"{"presenceDefinition":{"id":"6a3af858-942f-489d-9700-5f9bcdcdae9b"}}"#;

fn presence_path() -> String {
    format!("/api/v2/users/{USER}/presences/purecloud")
}

/// The `i`th event frame: a Genesys presence event as the notification service sends it.
fn event(i: usize) -> String {
    serde_json::json!({
        "topicName": format!("v2.users.{USER}.presence"),
        "version": "2",
        "eventBody": {
            "id": USER,
            "source": "PURECLOUD",
            "presenceDefinition": {"id": "6a3af858-942f-489d-9700-5f9bcdcdae9b", "systemPresence": "Available"},
            "message": format!("event {i:06}"),
        },
        "metadata": {"CorrelationId": format!("{i:08}-5c1e-4d2a-9b3f-0a1b2c3d4e5f")},
    })
    .to_string()
}

/// The cassette: a flood session of `flood` frames, and an events session whose frame `i`
/// followed the `i`th of `events` presence updates.
fn cassette(flood: usize, events: usize) -> String {
    let mut out = String::from("{\"format\":\"callvcr-cassette\",\"version\":1}\n");
    let mut push = |v: serde_json::Value| {
        out.push_str(&v.to_string());
        out.push('\n');
    };
    let handshake = |seq: u64, path: &str| {
        serde_json::json!({
            "seq": seq, "recorded_at": "2026-01-05T09:00:00.000Z", "duration_ms": 1,
            "request": {"method": "GET", "scheme": "https", "host": STREAMING, "path": path,
                        "headers": [["host", STREAMING], ["upgrade", "websocket"], ["connection", "Upgrade"]], "body": {"text": ""}},
            "response": {"status": 101, "headers": [["upgrade", "websocket"], ["connection", "Upgrade"]], "body": {"text": ""}}
        })
    };
    push(handshake(1, FLOOD));
    push(handshake(2, EVENTS));
    for i in 0..events {
        push(serde_json::json!({
            "seq": 3 + i, "recorded_at": "2026-01-05T09:00:00.000Z", "duration_ms": 1,
            "request": {"method": "PATCH", "scheme": "https", "host": API, "path": presence_path(),
                        "headers": [["host", API], ["content-type", "application/json"]],
                        "body": {"json": serde_json::from_str::<serde_json::Value>(PRESENCE_BODY).unwrap()}},
            "response": {"status": 200, "headers": [["content-type", "application/json"]],
                         "body": {"text": format!("{{\"id\":\"{USER}\",\"presenceDefinition\":{{\"systemPresence\":\"Available\"}}}}")}}
        }));
    }
    for i in 0..flood {
        push(serde_json::json!({"frame": {"session": 1, "n": i, "dir": "server", "at_ms": 0, "kind": "text",
                                          "data": {"text": event(i)}}}));
    }
    for i in 0..events {
        push(serde_json::json!({"frame": {"session": 2, "n": i, "dir": "server", "at_ms": 0, "kind": "text",
                                          "data": {"text": event(i)}, "after": {"rest": 3 + i}}}));
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--bare-server") {
        let n = |i: usize| args[i].parse::<usize>().unwrap();
        bare_server(Path::new(&args[2]), n(3), n(4));
        return;
    }
    let benching = args.iter().any(|a| a == "--bench");
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|s| s.parse().ok()).unwrap_or(d);
    let flood = env("BENCH_WS_FRAMES", if benching { 5000 } else { 200 });
    let events = env("BENCH_WS_EVENTS", if benching { 200 } else { 20 });
    let rounds = env("BENCH_ROUNDS", if benching { 5 } else { 1 }).max(1);
    let dir = std::env::temp_dir().join(format!("callvcr-wsbench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ws.jsonl"), cassette(flood, events)).unwrap();

    let bin = std::env::var("CALLVCR_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_callvcr").to_string());
    let mut callvcr = Command::new(&bin)
        .args(["replay", "--cassette", "ws.jsonl", "--listen", "127.0.0.1:0", "--proxy-listen", "127.0.0.1:0"])
        .args(["--admin", "127.0.0.1:0", "--ready-file", "ready.json", "--no-overlay", "rate-limit"])
        .env("CALLVCR_LOG", "warn")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let (cv_tls, cv_admin) = ready(&dir.join("ready.json"));
    let (mut bare, bare_addr) =
        common::spawn_bare(&[dir.join("certs").to_str().unwrap(), &flood.to_string(), &events.to_string()]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let cfg = common::client_config(&dir.join("certs/ca.pem"));
    println!("WebSocket benchmark: {flood} frames per flood, {events} REST-caused events per round, {rounds} rounds");
    println!("{:<44} {:>12} {:>12} {:>12} {:>12}", "scenario", "frames/s", "p50 µs", "p99 µs", "CPU µs/frame");

    let mut flood_rounds = Vec::new();
    let mut lat_rounds = Vec::new();
    for round in 0..rounds {
        // Frames per second.
        let one = |name: &str, pid: u32, addr: SocketAddr| {
            let t0 = cpu_us(pid);
            let (fps, n) = rt.block_on(read_flood(addr, cfg.clone(), flood));
            let cpu = (cpu_us(pid) - t0) as f64 / n.max(1) as f64;
            println!("{:<44} {fps:>12.0} {:>12} {:>12} {cpu:>12.2}", format!("{name}, flood #{}", round + 1), "", "");
            (fps, cpu)
        };
        let (b, b_cpu) = one("bare", bare.id(), bare_addr);
        let (c, c_cpu) = one("callvcr", callvcr.id(), cv_tls);
        flood_rounds.push((c / b, b_cpu, c_cpu));
        // REST answer → event.
        let b = rt.block_on(event_latency(bare_addr, None, cfg.clone(), events));
        let c = rt.block_on(event_latency(cv_tls, Some(cv_admin), cfg.clone(), events));
        for (name, l) in [("bare", &b), ("callvcr", &c)] {
            println!("{:<44} {:>12} {:>12} {:>12}", format!("{name}, REST → event #{}", round + 1), "", l.0, l.1);
        }
        lat_rounds.push((c.0 as f64 / b.0.max(1) as f64, c.1 as f64 / b.1.max(1) as f64, b, c));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!();
    println!(
        "median ratio callvcr/bare over {rounds} rounds, WebSocket flood: frames per second {:.2}x; CPU per frame {:.2} µs vs {:.2} µs bare",
        median(flood_rounds.iter().map(|r| r.0).collect()),
        median(flood_rounds.iter().map(|r| r.2).collect()),
        median(flood_rounds.iter().map(|r| r.1).collect()),
    );
    println!(
        "median ratio callvcr/bare over {rounds} rounds, REST answer to event frame: p50 {:.2}x, p99 {:.2}x (callvcr p50 {} µs, p99 {} µs; bare p50 {} µs, p99 {} µs)",
        median(lat_rounds.iter().map(|r| r.0).collect()),
        median(lat_rounds.iter().map(|r| r.1).collect()),
        median(lat_rounds.iter().map(|r| r.3 .0 as f64).collect()),
        median(lat_rounds.iter().map(|r| r.3 .1 as f64).collect()),
        median(lat_rounds.iter().map(|r| r.2 .0 as f64).collect()),
        median(lat_rounds.iter().map(|r| r.2 .1 as f64).collect()),
    );
    let _ = Command::new("kill").arg("-INT").arg(callvcr.id().to_string()).status();
    let _ = callvcr.wait();
    let _ = bare.kill();
    let _ = bare.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// callvcr's TLS and admin addresses, from its `--ready-file` once written.
fn ready(path: &Path) -> (SocketAddr, SocketAddr) {
    loop {
        if let Ok(t) = std::fs::read_to_string(path) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                return (v["tls"].as_str().unwrap().parse().unwrap(), v["admin"].as_str().unwrap().parse().unwrap());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CPU time (user + system, all threads) `pid` has used, in µs (Linux; clock ticks of 10 ms).
fn cpu_us(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * 10_000
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS connection to `addr` for `host`.
async fn tls(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>, host: &str) -> Tls {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tokio_rustls::TlsConnector::from(cfg).connect(ServerName::try_from(host.to_string()).unwrap(), tcp).await.unwrap()
}

/// A WebSocket session to `path` on the streaming host.
async fn ws(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>, path: &str) -> WebSocketStream<Tls> {
    let io = tls(addr, cfg, STREAMING).await;
    let (ws, resp) = tokio_tungstenite::client_async(format!("wss://{STREAMING}{path}"), io).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

/// Reads the flood session to its `n`th frame: (frames per second, frames read).
#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
async fn read_flood(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>, n: usize) -> (f64, usize) {
    let mut ws = ws(addr, cfg, FLOOD).await;
    let start = Instant::now();
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                // Heartbeats are not part of the recording's frames.
                if !t.contains("WebSocket Heartbeat") {
                    got += 1;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("the flood ended after {got} of {n} frames: {other:?}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = ws.close(None).await;
    (n as f64 / secs, got)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// An HTTP/1.1 connection over TLS to `host`.
async fn http(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>, host: &str) -> Sender {
    let io = tls(addr, cfg, host).await;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// A POST with `body`; the answer's status and body.
async fn send(
    s: &mut Sender,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Bytes) {
    s.ready().await.unwrap();
    let mut req = hyper::Request::builder().method(method).uri(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = s.send_request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// With the events session open, `n` presence updates, each followed by the event it causes:
/// p50 and p99 µs from the REST answer to the event frame. With `admin`, callvcr is reset first
/// (its FIFO positions rewound) and a token taken from its auth overlay.
#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
async fn event_latency(
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    cfg: Arc<rustls::ClientConfig>,
    n: usize,
) -> (u128, u128) {
    let mut bearer = String::from("Bearer bare");
    if let Some(admin) = admin {
        let tcp = TcpStream::connect(admin).await.unwrap();
        let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        let (status, body) = send(&mut s, "POST", &admin.to_string(), "/mock/admin/reset", &[], "").await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let mut login = http(addr, cfg.clone(), "login.mypurecloud.com").await;
        let form = [("authorization", "Basic YmVuY2g6YmVuY2g="), ("content-type", "application/x-www-form-urlencoded")];
        let (status, body) =
            send(&mut login, "POST", "login.mypurecloud.com", "/oauth/token", &form, "grant_type=client_credentials")
                .await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        bearer = format!("Bearer {}", v["access_token"].as_str().unwrap());
    }
    let mut ws = ws(addr, cfg.clone(), EVENTS).await;
    let mut api = http(addr, cfg, API).await;
    let path = presence_path();
    let headers = [("authorization", bearer.as_str()), ("content-type", "application/json")];
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let (status, _) = send(&mut api, "PATCH", API, &path, &headers, PRESENCE_BODY).await;
        assert_eq!(status, 200, "presence update {i}");
        let answered = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains(&format!("event {i:06}")) => break,
                Ok(Some(Ok(_))) => {}
                other => panic!("no event for presence update {i}: {other:?}"),
            }
        }
        lat.push(answered.elapsed().as_micros());
    }
    let _ = ws.close(None).await;
    lat.sort_unstable();
    (lat[lat.len() / 2], lat[(lat.len() * 99 / 100).min(lat.len() - 1)])
}

/// The baseline: hyper + rustls + tokio-tungstenite with callvcr's certificate chain. The flood
/// path sends the `flood` frames on connect; the events path holds the socket, and each PATCH
/// answered pushes the next event on it.
fn bare_server(certs: &Path, flood: usize, _events: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let clock = Arc::new(callvcr::clock::Clock::system());
        let leaves = callvcr::tls::LeafCache::new(callvcr::tls::Ca::load(certs).unwrap(), clock).unwrap();
        let mut by_name = std::collections::HashMap::new();
        for host in [API, STREAMING] {
            by_name.insert(host, leaves.server_config(host).unwrap());
        }
        let frames: Arc<Vec<String>> = Arc::new((0..flood.max(1)).map(event).collect());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        // The events socket's sender, and how many events went so far.
        type Push = Arc<std::sync::Mutex<(Option<tokio::sync::mpsc::UnboundedSender<String>>, usize)>>;
        let push: Push = Arc::default();
        let answer =
            Bytes::from(format!("{{\"id\":\"{USER}\",\"presenceDefinition\":{{\"systemPresence\":\"Available\"}}}}"));
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = tcp.set_nodelay(true);
            let by_name = by_name.clone();
            let (frames, push, answer) = (frames.clone(), push.clone(), answer.clone());
            tokio::spawn(async move {
                let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
                let Ok(start) = start.await else { return };
                let name = start.client_hello().server_name().unwrap_or(API).to_string();
                let cfg = by_name.get(name.as_str()).cloned().unwrap_or_else(|| by_name[API].clone());
                let Ok(tls) = start.into_stream(cfg).await else { return };
                let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    let (frames, push, answer) = (frames.clone(), push.clone(), answer.clone());
                    async move {
                        if req.headers().contains_key("upgrade") {
                            let key = req.headers().get("sec-websocket-key").cloned().unwrap();
                            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
                            let path = req.uri().path().to_string();
                            let on = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                let Ok(up) = on.await else { return };
                                let mut ws =
                                    WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None).await;
                                if path == FLOOD {
                                    for f in frames.iter() {
                                        if ws.feed(Message::text(f.clone())).await.is_err() {
                                            return;
                                        }
                                    }
                                    let _ = ws.flush().await;
                                    while let Some(Ok(_)) = ws.next().await {}
                                } else {
                                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                                    *push.lock().unwrap() = (Some(tx), 0);
                                    let (mut sink, mut stream) = ws.split();
                                    tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
                                    while let Some(t) = rx.recv().await {
                                        if sink.send(Message::text(t)).await.is_err() {
                                            return;
                                        }
                                    }
                                }
                            });
                            let r = hyper::Response::builder()
                                .status(101)
                                .header("upgrade", "websocket")
                                .header("connection", "Upgrade")
                                .header("sec-websocket-accept", accept)
                                .body(Full::new(Bytes::new()))
                                .unwrap();
                            return Ok::<_, std::convert::Infallible>(r);
                        }
                        let _ = req.into_body().collect().await;
                        {
                            let mut p = push.lock().unwrap();
                            let i = p.1;
                            p.1 += 1;
                            if let Some(tx) = &p.0 {
                                let _ = tx.send(event(i));
                            }
                        }
                        let mut r = hyper::Response::new(Full::new(answer));
                        r.headers_mut().insert("content-type", "application/json".parse().unwrap());
                        Ok(r)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
}
