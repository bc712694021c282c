//! WebSocket record and replay through the real binary, with real WebSocket clients over TLS: a
//! Genesys-style notification channel recorded from the stand-in while REST calls are made, then
//! replayed offline in step with the replayed REST calls; heartbeats on the virtual clock; pushed
//! events; the session limit; backpressure; bad frames; NICE long polls.

mod support;

use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// A WebSocket client through callvcr's TLS listener; the handshake checks Sec-WebSocket-Accept.
async fn ws_connect(cv: &Callvcr, host: &str, path: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let tcp = TcpStream::connect(cv.tls).await.unwrap();
    let tls = tls_over(tcp, host, client_config(&cv.ca_path(), &[b"http/1.1"])).await.unwrap();
    tokio_tungstenite::client_async(format!("wss://{host}{path}"), tls).await.map(|(ws, _)| ws)
}

/// The next text message that is not a heartbeat, within `wait`.
async fn next_event(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next()).await.ok()??.ok()?;
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["eventBody"]["message"] != "WebSocket Heartbeat" {
                return Some(v);
            }
        }
    }
}

/// The next text message of any kind, within `wait`.
async fn next_text(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.ok()??.ok()? {
            Message::Text(t) => return Some(serde_json::from_str(&t).unwrap()),
            _ => continue,
        }
    }
}

async fn rest(cv: &Callvcr, method: &str, path: &str, bearer: &str, body: &str) -> Resp {
    let mut c = h1_tls(cv, "api.mypurecloud.com").await;
    let auth = format!("Bearer {bearer}");
    let h = [("host", "api.mypurecloud.com"), ("authorization", auth.as_str()), ("content-type", "application/json")];
    c.send(method, path, &h, body).await
}

async fn login(cv: &Callvcr) -> String {
    // A user's token: placing calls needs one.
    let r = user_login(cv, "Y2xpZW50OnNlY3JldA==").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["access_token"].as_str().unwrap().to_string()
}

/// The replay sessions, once `n` are registered (a session is listed just after its handshake).
async fn ws_sessions(cv: &Callvcr, n: usize) -> Value {
    Value::Array(wait_for_ws_sessions(cv, &format!("{n} registered"), |a| a.len() >= n).await)
}

/// The number of sessions, once it is `n` (one closed has been freed).
async fn wait_for_session_count(cv: &Callvcr, n: usize) {
    wait_for_ws_sessions(cv, &format!("exactly {n} listed"), |a| a.len() == n).await;
}

/// Reads `ws` until `n` heartbeats have come through (each one relayed, so recorded); the other
/// messages read meanwhile are returned.
async fn heartbeats(ws: &mut Ws, n: usize) -> Vec<Value> {
    let (mut seen, mut others) = (0, Vec::new());
    while seen < n {
        let m = next_text(ws, LONG).await.unwrap_or_else(|| panic!("heartbeat {} never came", seen + 1));
        if m["eventBody"]["message"] == "WebSocket Heartbeat" {
            seen += 1;
        } else {
            others.push(m);
        }
    }
    others
}

async fn advance(cv: &Callvcr, ms: i64) {
    let r = admin(cv, "POST", "/mock/admin/clock", &json!({"advance_ms": ms}).to_string()).await;
    assert_eq!(r.status, 200);
}

const SHORT: Duration = Duration::from_millis(400);
const LONG: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_channel_replays_in_step_with_the_rest_calls_that_caused_its_events() {
    let dir = tempdir("ws-journey");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "chan")));

    // Record: channel, socket, subscription, ping, a call placed while events flow.
    let token = login(&cv).await;
    let ch = rest(&cv, "POST", "/api/v2/notifications/channels", &token, "").await.json();
    let uri = ch["connectUri"].as_str().unwrap().to_string();
    let path = uri.trim_start_matches("wss://streaming.mypurecloud.com").to_string();
    let mut ws = ws_connect(&cv, "streaming.mypurecloud.com", &path).await.expect("recording handshake");
    let sub = format!("/api/v2/notifications/channels/{CHANNEL_ID}/subscriptions");
    let body = json!([{"id": CALLS_TOPIC}]).to_string();
    assert_eq!(rest(&cv, "PUT", &sub, &token, &body).await.status, 200);
    ws.send(Message::text(r#"{"message":"ping"}"#)).await.unwrap();
    assert_eq!(next_event(&mut ws, LONG).await.unwrap()["eventBody"]["message"], "pong");
    // Two heartbeats recorded, so replay knows their interval. The stand-in sends them every
    // 250 ms of real time, so this takes real time: it waits for the frames, not for a guess.
    assert_eq!(heartbeats(&mut ws, 2).await, Vec::<Value>::new(), "nothing but heartbeats before the call");
    assert_eq!(
        rest(&cv, "POST", "/api/v2/conversations/calls", &token, r#"{"phoneNumber":"+13175550100"}"#).await.status,
        200
    );
    let a = next_event(&mut ws, LONG).await.unwrap();
    let b = next_event(&mut ws, LONG).await.unwrap();
    assert_eq!(a["eventBody"]["participants"][0]["state"], "alerting");
    assert_eq!(b["eventBody"]["participants"][0]["state"], "connected");
    ws.close(None).await.unwrap();
    wait_for_log(&cv, "WebSocket session recorded").await;
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("WebSocket frames stored"), "{log}");
    si.stop();

    // The frames are in the cassette, the call events anchored to the call's REST exchange.
    let (code, _, err) = run(&dir, &["cassette", "export", "chan", "--out", "chan.jsonl"]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(dir.join("chan.jsonl")).unwrap();
    let frames: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("frame").cloned())
        .collect();
    let calls_seq = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["request"]["method"] == "POST" && v["request"]["path"] == "/api/v2/conversations/calls")
        .unwrap()["seq"]
        .clone();
    let alerting = frames.iter().find(|f| f["data"].to_string().contains("alerting")).unwrap();
    assert_eq!(alerting["dir"], "server");
    assert_eq!(alerting["after"], json!({"rest": calls_seq}), "{alerting}");
    let ping = frames.iter().find(|f| f["dir"] == "client" && f["kind"] == "text").unwrap();
    let pong = frames.iter().find(|f| f["data"].to_string().contains("pong")).unwrap();
    assert_eq!(pong["after"], json!({"client": ping["n"]}));
    assert!(frames.iter().any(|f| f["kind"] == "close"), "close frames are recorded");

    // Replay, offline, on a frozen clock.
    let cv = Callvcr::start(
        &dir,
        &["replay", "--cassette", "chan", "--strict", "--clock-frozen", "--clock-start", "2026-01-05T09:00:00Z"],
    );
    // A page watches (the inspector's event stream): the session's frames are kept for it.
    let (status, mut events) = Events::open(&cv, &[]).await;
    assert_eq!(status, 200);
    events.next("hello").await;
    let token = login(&cv).await;
    let ch = rest(&cv, "POST", "/api/v2/notifications/channels", &token, "").await.json();
    assert_eq!(ch["id"], CHANNEL_ID);
    let mut ws = ws_connect(&cv, "streaming.mypurecloud.com", &path).await.expect("a fresh, valid accept key");
    let opened = events.next("ws_session").await;
    assert_eq!(opened["state"], "open", "{opened}");
    let sid = opened["session"].as_str().unwrap().to_string();
    assert_eq!(rest(&cv, "PUT", &sub, &token, &body).await.status, 200);
    let sessions = admin(&cv, "GET", "/mock/admin/ws/sessions", "").await.json();
    assert_eq!(sessions[0]["topics"], json!([CALLS_TOPIC]), "{sessions}");
    assert!(next_event(&mut ws, SHORT).await.is_none(), "nothing before its cause");
    ws.send(Message::text(r#"{"message":"ping"}"#)).await.unwrap();
    assert_eq!(next_event(&mut ws, LONG).await.unwrap()["eventBody"]["message"], "pong");
    assert!(next_event(&mut ws, SHORT).await.is_none(), "no call events before the call is placed");
    let r = rest(&cv, "POST", "/api/v2/conversations/calls", &token, r#"{"phoneNumber":"+13175550100"}"#).await;
    assert_eq!(r.status, 200);
    let a2 = next_event(&mut ws, LONG).await.expect("the alerting event follows the replayed call");
    assert_eq!(a2, a);
    assert!(
        next_event(&mut ws, SHORT).await.is_none(),
        "the second event keeps its recorded gap, on the virtual clock"
    );
    advance(&cv, 200).await;
    assert_eq!(next_event(&mut ws, LONG).await.unwrap(), b);

    // Heartbeats: synthesized on the virtual clock at the recorded interval (rounded to 1 s).
    assert!(next_text(&mut ws, SHORT).await.is_none());
    advance(&cv, 1_000).await;
    assert_eq!(next_text(&mut ws, LONG).await.unwrap()["eventBody"]["message"], "WebSocket Heartbeat");

    // A pushed event, delayed and duplicated.
    let push =
        json!({"topic": CALLS_TOPIC, "event": call_event("disconnected", "c-9"), "delay_ms": 500, "duplicate": 1});
    let r = admin(&cv, "POST", "/mock/admin/ws/events", &push.to_string()).await;
    assert_eq!(r.json(), json!({"queued": 2}));
    assert!(next_event(&mut ws, SHORT).await.is_none(), "not before its delay");
    advance(&cv, 500).await;
    for _ in 0..2 {
        let e = next_event(&mut ws, LONG).await.unwrap();
        assert_eq!(e["eventBody"]["participants"][0]["state"], "disconnected");
    }
    ws.close(None).await.unwrap();
    wait_for_session_count(&cv, 0).await;
    assert_eq!(admin(&cv, "GET", "/mock/admin/ws/sessions", "").await.json(), json!([]), "freed on close");
    // The inspector's view of the session, after it closed: each frame, what made it, and what
    // a replayed one waited for.
    let frames = admin(&cv, "GET", &format!("/mock/admin/ws/sessions/{sid}/frames"), "").await.json();
    let find = |needle: &str, kind: &str| {
        frames
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == kind && f["text"].as_str().unwrap().contains(needle))
            .cloned()
    };
    let alerting = find("alerting", "frame").unwrap_or_else(|| panic!("the alerting frame: {frames}"));
    assert_eq!(alerting["direction"], "sent");
    assert_eq!(alerting["waited_for"], format!("exchange #{calls_seq} replayed"), "{alerting}");
    let pong = find("pong", "frame").unwrap_or_else(|| panic!("the pong: {frames}"));
    assert!(pong["waited_for"].as_str().unwrap().starts_with("client frame"), "{pong}");
    assert!(find("ping", "frame").is_some_and(|f| f["direction"] == "received"), "the client's ping: {frames}");
    assert!(find("WebSocket Heartbeat", "heartbeat").is_some(), "a synthesized heartbeat: {frames}");
    let pushed: Vec<_> = frames.as_array().unwrap().iter().filter(|f| f["kind"] == "pushed").collect();
    assert_eq!(pushed.len(), 2, "the pushed event and its duplicate: {frames}");
    drop(events);
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "strict replay: every request hit: {log}");
}

/// Sign in, open a channel subscribed to the user's calls, place a call, read its two events and
/// read the call and hold the customer: the socket and the events read.
async fn hold_flow(cv: &Callvcr) -> (Ws, Vec<Value>) {
    let token = login(cv).await;
    let ch = rest(cv, "POST", "/api/v2/notifications/channels", &token, "").await.json();
    let uri = ch["connectUri"].as_str().unwrap().to_string();
    let path = uri.trim_start_matches("wss://streaming.mypurecloud.com").to_string();
    let mut ws = ws_connect(cv, "streaming.mypurecloud.com", &path).await.expect("handshake");
    let sub = format!("/api/v2/notifications/channels/{CHANNEL_ID}/subscriptions");
    let body = json!([{"id": CALLS_TOPIC}]).to_string();
    assert_eq!(rest(cv, "PUT", &sub, &token, &body).await.status, 200);
    let call =
        rest(cv, "POST", "/api/v2/conversations/calls", &token, r#"{"phoneNumber":"+13175550100"}"#).await.json();
    let id = call["id"].as_str().unwrap().to_string();
    let mut events = Vec::new();
    for _ in 0..2 {
        events.push(next_event(&mut ws, LONG).await.expect("a call event"));
    }
    // Read as SDKs do before moving a participant: the state overlay learns the call from it.
    assert_eq!(rest(cv, "GET", &format!("/api/v2/conversations/calls/{id}"), &token, "").await.status, 200);
    let customer = format!("/api/v2/conversations/calls/{id}/participants/8e2f3a4b-1c2d-4e5f-9a0b-1c2d3e4f5a6b");
    assert_eq!(rest(cv, "PATCH", &customer, &token, r#"{"held":true}"#).await.status, 202);
    (ws, events)
}

/// DESIGN's first rule on a notification channel: a call moved (a hold) the way the recording
/// shows, answered by the cassette, gets the events the recording shows on the channel, and no
/// event of the state overlay's own besides, while the channel still plays its recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_hold_on_an_open_channel_adds_no_event_the_recording_lacks() {
    let dir = tempdir("ws-hold");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "hold")));
    let (mut ws, recorded) = hold_flow(&cv).await;
    // The stand-in, like the platform here, sends no event for the hold: the recording has none.
    ws.close(None).await.unwrap();
    wait_for_log(&cv, "WebSocket session recorded").await;
    assert_eq!(cv.stop().0, 0);
    si.stop();

    // The cassette reproduces itself: no frame replayed that it did not record.
    let (code, out, err) = run(&dir, &["cassette", "check", "hold"]);
    assert_eq!(code, 0, "{out}{err}");

    // And a client replaying the flow gets the recorded events, then nothing of callvcr's own.
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "hold", "--strict"]);
    let (mut ws, replayed) = hold_flow(&cv).await;
    assert_eq!(replayed, recorded);
    assert!(next_event(&mut ws, SHORT).await.is_none(), "an event the recording does not show");
    ws.close(None).await.unwrap();
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "{log}");
}

fn s(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A cassette with one recorded socket (no frames) and a NICE long poll.
fn fixture(dir: &Path) {
    let mut text = String::from("{\"format\":\"callvcr-cassette\",\"version\":1}\n");
    let ex = |seq: u64, method: &str, host: &str, path: &str, query: Option<&str>, status: u16, body: &str| {
        json!({"seq": seq, "recorded_at": "2026-01-05T09:00:00.000Z", "duration_ms": 1,
            "request": {"method": method, "scheme": "https", "host": host, "path": path, "query": query, "headers": [], "body": {"text": ""}},
            "response": {"status": status, "headers": [["content-type", "application/json"]], "body": {"text": body}}})
        .to_string()
    };
    let poll = "/incontactapi/services/v27.0/agent-sessions/s-1/get-next-event";
    for l in [
        ex(1, "GET", "streaming.mypurecloud.com", "/channels/streaming-0-aaaaaaaa11", None, 101, ""),
        ex(
            2,
            "GET",
            "api-na1.niceincontact.com",
            poll,
            Some("timeout=10"),
            200,
            r#"{"sessionId":"s-1","events":[{"Type":"AgentState","CurrentState":"Available"}]}"#,
        ),
        ex(3, "GET", "api-na1.niceincontact.com", poll, Some("timeout=10"), 304, ""),
        ex(4, "GET", "api-na1.niceincontact.com", poll, Some("timeout=10"), 409, r#"{"error":"Session ended"}"#),
    ] {
        text.push_str(&l);
        text.push('\n');
    }
    std::fs::write(dir.join("fx.jsonl"), text).unwrap();
}

fn start_fixture(dir: &Path, config: &str) -> Callvcr {
    fixture(dir);
    std::fs::write(dir.join("proxy.yaml"), config).unwrap();
    Callvcr::start(
        dir,
        &["replay", "--cassette", "fx.jsonl", "--config", "proxy.yaml", "--no-overlay", "auth", "--clock-frozen"],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_limit_answers_503_and_closed_sessions_are_freed() {
    let dir = tempdir("ws-limit");
    let cv = start_fixture(&dir, "ws:\n  max_sessions: 2\n  heartbeat_s: 0\n");
    // The channel id differs from the recorded one: matched by URL template.
    let p = "/channels/streaming-0-bbbbbbbb22";
    let mut one = ws_connect(&cv, "streaming.mypurecloud.com", p).await.unwrap();
    let _two = ws_connect(&cv, "streaming.mypurecloud.com", p).await.unwrap();
    match ws_connect(&cv, "streaming.mypurecloud.com", p).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 503);
            let body: Value = serde_json::from_slice(r.body().as_deref().unwrap_or(b"{}")).unwrap();
            assert_eq!(body["code"], "service.unavailable");
            assert!(body["message"].as_str().unwrap().contains("2 concurrent WebSocket sessions"));
        }
        other => panic!("expected a 503, got {:?}", other.map(|_| "a session")),
    }
    assert_eq!(admin(&cv, "GET", "/mock/admin/ws/sessions", "").await.json().as_array().unwrap().len(), 2);
    one.close(None).await.unwrap();
    // Wait for the server to free it.
    wait_for_session_count(&cv, 1).await;
    assert!(ws_connect(&cv, "streaming.mypurecloud.com", p).await.is_ok(), "a freed slot is usable again");
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_gets_a_bounded_queue_and_others_keep_working() {
    let dir = tempdir("ws-backpressure");
    let cv = start_fixture(&dir, "ws:\n  queue: 4\n  on_full: drop-oldest\n  heartbeat_s: 0\n");
    let p = "/channels/streaming-0-aaaaaaaa11";
    let _stuck = ws_connect(&cv, "streaming.mypurecloud.com", p).await.unwrap(); // never read
    let sessions = ws_sessions(&cv, 1).await;
    let stuck_id = sessions[0]["id"].as_str().unwrap().to_string();
    let big = "x".repeat(64 * 1024);
    for i in 0..200 {
        let ev = json!({"session": stuck_id, "event": {"topicName": "t", "eventBody": {"i": i, "pad": big}}});
        assert_eq!(admin(&cv, "POST", "/mock/admin/ws/events", &ev.to_string()).await.status, 200);
    }
    // The queue filled and its policy acted.
    wait_for_log(&cv, "dropped the oldest frame").await;
    let sessions = admin(&cv, "GET", "/mock/admin/ws/sessions", "").await.json();
    let queued = sessions[0]["queued"].as_u64().unwrap();
    assert!(queued <= 4, "the bound holds: {queued}");
    // Another session is served meanwhile.
    let mut ok = ws_connect(&cv, "streaming.mypurecloud.com", p).await.unwrap();
    ok.send(Message::text(r#"{"message":"ping"}"#)).await.unwrap();
    assert_eq!(next_event(&mut ok, LONG).await.unwrap()["eventBody"]["message"], "pong");
    let (code, log) = cv.stop();
    assert_eq!(code, 0);
    assert!(log.contains("dropped the oldest frame"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_the_right_close_code_and_other_sessions_keep_working() {
    let dir = tempdir("ws-bad");
    let cv = start_fixture(&dir, "ws:\n  heartbeat_s: 0\n  max_message_bytes: 1024\n");
    let p = "/channels/streaming-0-aaaaaaaa11";
    let mut other = ws_connect(&cv, "streaming.mypurecloud.com", p).await.unwrap();

    // Invalid UTF-8 in a text frame (written raw, masked as a client must): 1007.
    let mut bad = ws_connect(&cv, "streaming.mypurecloud.com", p).await.unwrap();
    let mask = [1u8, 2, 3, 4];
    let payload = [0xffu8, 0xfe];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    bad.get_mut().write_all(&frame).await.unwrap();
    bad.get_mut().flush().await.unwrap();
    let close = tokio::time::timeout(LONG, bad.next()).await.unwrap();
    match close {
        Some(Ok(Message::Close(Some(c)))) => assert_eq!(u16::from(c.code), 1007),
        other => panic!("expected close 1007, got {other:?}"),
    }

    // Oversized: 1009.
    let mut big = ws_connect(&cv, "streaming.mypurecloud.com", p).await.unwrap();
    let _ = big.send(Message::text("y".repeat(4096))).await;
    match tokio::time::timeout(LONG, big.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(c)))) => assert_eq!(u16::from(c.code), 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }

    // An abrupt TCP close.
    let abrupt = ws_connect(&cv, "streaming.mypurecloud.com", p).await.unwrap();
    drop(abrupt);

    other.send(Message::text(r#"{"type":"PING"}"#)).await.unwrap();
    let pong = next_text(&mut other, LONG).await.unwrap();
    assert_eq!(pong["type"], "PONG", "the other session is unaffected");
    other.send(Message::text(r#"{"type":"SUBSCRIBE","channels":["agent"]}"#)).await.unwrap();
    assert_eq!(next_text(&mut other, LONG).await.unwrap(), json!({"type": "SUBSCRIBED", "channels": ["agent"]}));
    let (code, log) = cv.stop();
    assert_eq!(code, 0);
    assert!(log.contains("not valid UTF-8") && log.contains("message too large"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nice_long_polls_return_recorded_events_then_304_after_the_timeout_then_409() {
    let dir = tempdir("ws-poll");
    let cv = start_fixture(&dir, "");
    let host = "api-na1.niceincontact.com";
    let path = "/incontactapi/services/v27.0/agent-sessions/s-1/get-next-event?timeout=10";
    let poll = |cv: &Callvcr| spawn_send(cv, host, "GET", path, &[], "");
    let r = poll(&cv).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["events"][0]["CurrentState"], "Available");
    let mut pending = poll(&cv);
    // No admin-visible sign shows a replayed long poll waiting (the journal notes answers only),
    // so this window both lets the poll arrive before the clock moves and checks it stays open.
    stays_pending("nothing happened: the poll waits its timeout out", &mut pending, SHORT).await;
    advance(&cv, 9_999).await;
    stays_pending("one millisecond short of its timeout", &mut pending, Duration::from_millis(200)).await;
    advance(&cv, 1).await;
    assert_eq!(pending.await.unwrap().status, 304);
    let r = poll(&cv).await.unwrap();
    assert_eq!(r.status, 409, "the session ended");
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_pings_close_a_silent_client_and_spare_one_that_answers() {
    let dir = tempdir("ws-ping");
    let cv = start_fixture(&dir, "ws:\n  heartbeat_s: 0\n  ping_s: 15\n  pong_timeout_s: 5\n");
    let p = "/channels/streaming-0-aaaaaaaa11";
    let mut lively = ws_connect(&cv, "streaming.mypurecloud.com", p).await.unwrap();
    let mut silent = ws_connect(&cv, "streaming.mypurecloud.com", p).await.unwrap();
    // Both sessions are served (their readers answer), so their keep-alive timers are running.
    for ws in [&mut lively, &mut silent] {
        ws.send(Message::text(r#"{"message":"ping"}"#)).await.unwrap();
        assert_eq!(next_event(ws, LONG).await.unwrap()["eventBody"]["message"], "pong");
    }
    // The lively client reads all along (tungstenite answers pings as it reads). After each ping
    // it flushes its pong and asks for a platform pong: that answer, read by the server after the
    // WebSocket pong on the same connection, shows the pong has been seen.
    let answered = std::sync::Arc::new(tokio::sync::Notify::new());
    let reader = tokio::spawn({
        let answered = answered.clone();
        async move {
            let mut pings = 0;
            while let Some(Ok(m)) = lively.next().await {
                match m {
                    Message::Ping(_) => {
                        pings += 1;
                        lively.flush().await.unwrap();
                        lively.send(Message::text(r#"{"message":"ping"}"#)).await.unwrap();
                    }
                    Message::Text(t) if t.contains("pong") => answered.notify_one(),
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            pings
        }
    });
    let lively_answered = answered.notified();
    advance(&cv, 15_000).await;
    tokio::time::timeout(LONG, lively_answered).await.expect("the lively client never got its ping");
    // The silent client's ping has arrived (peeked at, not read: reading would answer it).
    let mut byte = [0u8; 1];
    tokio::time::timeout(LONG, silent.get_ref().get_ref().0.peek(&mut byte))
        .await
        .expect("the silent client never got its ping")
        .unwrap();
    advance(&cv, 5_000).await;
    wait_for_log(&cv, "no PONG within 5 s: closing (1011)").await;
    // The silent one: a ping, then a close 1011, since no pong came back in time.
    let mut seen = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(LONG, silent.next()).await {
        let close = matches!(m, Message::Close(_));
        seen.push(m);
        if close {
            break;
        }
    }
    assert!(matches!(seen.first(), Some(Message::Ping(_))), "{seen:?}");
    match seen.last() {
        Some(Message::Close(Some(c))) => assert_eq!(u16::from(c.code), 1011),
        other => panic!("expected close 1011, got {other:?}"),
    }
    wait_for_session_count(&cv, 1).await;
    let sessions = admin(&cv, "GET", "/mock/admin/ws/sessions", "").await.json();
    assert_eq!(sessions.as_array().unwrap().len(), 1, "the closed one is freed, the answering one stays: {sessions}");
    // Shutdown closes it with 1001.
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "{log}");
    assert!(reader.await.unwrap() >= 1, "the lively client saw the ping");
    assert!(log.contains("closing WebSocket sessions (1001)"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_close_with_1002_and_a_full_queue_can_close_the_session() {
    let dir = tempdir("ws-garbage");
    let cv = start_fixture(&dir, "ws:\n  heartbeat_s: 0\n  queue: 2\n  on_full: close\n");
    let p = "/channels/streaming-0-aaaaaaaa11";
    let mut g = ws_connect(&cv, "streaming.mypurecloud.com", p).await.unwrap();
    // Reserved bits set and an unknown opcode: not a WebSocket frame.
    g.get_mut().write_all(&[0xF3, 0x80, 1, 2, 3, 4]).await.unwrap();
    g.get_mut().flush().await.unwrap();
    match tokio::time::timeout(LONG, g.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(c)))) => assert_eq!(u16::from(c.code), 1002),
        other => panic!("expected close 1002, got {other:?}"),
    }

    // on_full: close — a client that never reads is closed with 1008 once its queue is full.
    let _stuck = ws_connect(&cv, "streaming.mypurecloud.com", p).await.unwrap();
    let sessions = ws_sessions(&cv, 1).await;
    let id = sessions.as_array().unwrap().last().unwrap()["id"].as_str().unwrap().to_string();
    let big = "z".repeat(64 * 1024);
    for i in 0..200 {
        let ev = json!({"session": id, "event": {"i": i, "pad": big}});
        let r = admin(&cv, "POST", "/mock/admin/ws/events", &ev.to_string()).await;
        if r.status == 404 {
            break; // already closed and freed
        }
    }
    let gone = poll(Duration::from_millis(2_500), || async {
        let s = ws_session_list(&cv).await;
        (!s.iter().any(|x| x["id"] == id.as_str())).then_some(())
    })
    .await
    .is_some();
    let (code, log) = cv.stop();
    assert_eq!(code, 0);
    assert!(log.contains("protocol error"), "{log}");
    assert!(log.contains("closing the session (1008)"), "{log}");
    assert!(gone || log.contains("closed and freed"), "the session was torn down: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reordered_push_overtakes_what_is_queued_and_pings_get_pongs() {
    let dir = tempdir("ws-reorder");
    let cv = start_fixture(&dir, "ws:\n  heartbeat_s: 0\n  queue: 1000\n");
    let p = "/channels/streaming-0-aaaaaaaa11";
    let mut ws = ws_connect(&cv, "streaming.mypurecloud.com", p).await.unwrap();
    ws.send(Message::Ping(bytes::Bytes::from_static(b"are-you-there"))).await.unwrap();
    match tokio::time::timeout(LONG, ws.next()).await.unwrap() {
        Some(Ok(Message::Pong(b))) => assert_eq!(&b[..], b"are-you-there"),
        other => panic!("expected a pong, got {other:?}"),
    }
    // Not reading: 300 large events back up through the socket buffers into the queue.
    let id = admin(&cv, "GET", "/mock/admin/ws/sessions", "").await.json()[0]["id"].as_str().unwrap().to_string();
    let pad = "q".repeat(64 * 1024);
    for i in 0..300 {
        let ev = json!({"session": id, "event": {"i": i, "pad": pad}});
        assert_eq!(admin(&cv, "POST", "/mock/admin/ws/events", &ev.to_string()).await.status, 200);
    }
    let queued = admin(&cv, "GET", "/mock/admin/ws/sessions", "").await.json()[0]["queued"].as_u64().unwrap();
    assert!(queued > 0, "a backlog exists (the comparison below can fail only with one)");
    let ev = json!({"session": id, "event": {"i": "urgent"}, "reorder": true});
    assert_eq!(admin(&cv, "POST", "/mock/admin/ws/events", &ev.to_string()).await.json(), json!({"queued": 1}));
    let mut order = Vec::new();
    while order.len() < 301 {
        match tokio::time::timeout(LONG, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => order.push(serde_json::from_str::<Value>(&t).unwrap()["i"].clone()),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    let urgent = order.iter().position(|i| i == "urgent").unwrap();
    let last = order.iter().position(|i| i == 299).unwrap();
    assert!(urgent < last, "the reordered event overtook the queue: at {urgent}, the last queued at {last}");
    let numbers: Vec<i64> = order.iter().filter_map(Value::as_i64).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "the others keep their order");
    assert_eq!(cv.stop().0, 0);
}

/// Counts the events a session receives until its connection goes; whether it went without a
/// close frame.
async fn until_dropped(ws: &mut Ws) -> (usize, bool) {
    let mut n = 0;
    loop {
        match tokio::time::timeout(LONG, ws.next()).await.expect("neither an event nor a drop") {
            Some(Ok(Message::Text(_))) => n += 1,
            Some(Ok(Message::Close(_))) => return (n, false),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (n, true),
        }
    }
}

async fn push_n(cv: &Callvcr, n: usize) {
    for i in 0..n {
        let ev = json!({"event": {"i": i}});
        assert_eq!(admin(cv, "POST", "/mock/admin/ws/events", &ev.to_string()).await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_faults_drop_sessions_and_skip_heartbeats_as_injected() {
    let dir = tempdir("ws-faults");
    let cv = start_fixture(&dir, "ws:\n  heartbeat_s: 1\n");
    let p = "/channels/streaming-0-aaaaaaaa11";
    let rule = json!({"match": {"path": "^/channels/"}, "kind": "ws_drop", "after_frames": 2, "count": 1});
    assert_eq!(admin(&cv, "POST", "/mock/admin/faults", &rule.to_string()).await.status, 200);
    let mut first = ws_connect(&cv, "streaming.mypurecloud.com", p).await.unwrap();
    push_n(&cv, 3).await;
    assert_eq!(until_dropped(&mut first).await, (2, true), "two frames, then the connection goes without a close");
    // The window was one session: the next is whole.
    let mut second = ws_connect(&cv, "streaming.mypurecloud.com", p).await.unwrap();
    push_n(&cv, 3).await;
    for _ in 0..3 {
        assert!(next_event(&mut second, LONG).await.unwrap()["i"].is_number());
    }

    // A missed heartbeat: the first one due is skipped, the next arrives.
    let rule = json!({"kind": "heartbeat_miss", "count": 1});
    assert_eq!(admin(&cv, "POST", "/mock/admin/faults", &rule.to_string()).await.status, 200);
    // The dropped session has been freed: the heartbeats due are the second session's alone.
    wait_for_session_count(&cv, 1).await;
    advance(&cv, 1_000).await;
    assert!(next_text(&mut second, SHORT).await.is_none(), "the heartbeat was missed");
    advance(&cv, 1_000).await;
    assert_eq!(next_text(&mut second, LONG).await.unwrap()["eventBody"]["message"], "WebSocket Heartbeat");
    let by: Vec<String> = admin(&cv, "GET", "/mock/admin/journal", "")
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["answered_by"].as_str().unwrap().to_string())
        .collect();
    assert!(by.contains(&"fault:ws_drop".into()) && by.contains(&"fault:heartbeat_miss".into()), "{by:?}");
    assert_eq!(cv.stop().0, 0);
}

async fn random_drop_point(dir: &Path, seed: u64) -> usize {
    let cv = start_fixture(dir, "ws:\n  heartbeat_s: 0\n");
    let rule = json!({"kind": "ws_drop", "probability": 0.15, "seed": seed});
    assert_eq!(admin(&cv, "POST", "/mock/admin/faults", &rule.to_string()).await.status, 200);
    let mut ws = ws_connect(&cv, "streaming.mypurecloud.com", "/channels/streaming-0-aaaaaaaa11").await.unwrap();
    let reader = tokio::spawn(async move { until_dropped(&mut ws).await });
    push_n(&cv, 60).await;
    let (n, dropped) = reader.await.unwrap();
    assert!(dropped, "a 15% per-frame drop over 60 frames");
    assert_eq!(cv.stop().0, 0);
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_websocket_drop_with_a_seed_repeats_across_runs() {
    let dir = tempdir("ws-fault-seed");
    let mut points = Vec::new();
    for seed in [5, 6, 7, 8] {
        let a = random_drop_point(&dir, seed).await;
        let b = random_drop_point(&dir, seed).await;
        assert_eq!(a, b, "seed {seed}: the same seed drops at the same frame");
        points.push(a);
    }
    assert!(points.iter().any(|p| *p != points[0]), "other seeds, other points: {points:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_full_wait_a_push_to_a_client_that_does_not_read_holds_the_caller_back() {
    let dir = tempdir("ws-wait");
    let cv = start_fixture(&dir, "ws:\n  heartbeat_s: 0\n  queue: 2\n  on_full: wait\n");
    let mut ws = ws_connect(&cv, "streaming.mypurecloud.com", "/channels/streaming-0-aaaaaaaa11").await.unwrap();
    let id = admin(&cv, "GET", "/mock/admin/ws/sessions", "").await.json()[0]["id"].as_str().unwrap().to_string();
    let pad = "w".repeat(64 * 1024);
    // Push until a call does not come back: the socket buffers and the queue are full.
    let mut held = None;
    for i in 0..400 {
        let ev = json!({"session": id, "event": {"i": i, "pad": pad}}).to_string();
        let (admin_addr, body) = (cv.admin, ev);
        let mut call = tokio::spawn(async move {
            let tcp = TcpStream::connect(admin_addr).await.unwrap();
            let mut c = H1::over(tcp).await;
            let host = admin_addr.to_string();
            c.send(
                "POST",
                "/mock/admin/ws/events",
                &[("host", host.as_str()), ("content-type", "application/json")],
                &body,
            )
            .await
        });
        // A push that has not come back within 300 ms is held: its answer is waited for, and the
        // window is the observation.
        if tokio::time::timeout(Duration::from_millis(300), &mut call).await.is_err() {
            held = Some((i, call));
            break;
        }
    }
    let (i, call) = held.expect("a push was held back once the queue was full");
    let queued = admin(&cv, "GET", "/mock/admin/ws/sessions", "").await.json()[0]["queued"].as_u64().unwrap();
    assert!(queued <= 2, "the bound holds: {queued}");
    // Reading lets it through, and nothing was lost.
    let mut got = 0;
    while got <= i {
        match tokio::time::timeout(LONG, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(_))) => got += 1,
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(call.await.unwrap().json(), json!({"queued": 1}));
    assert_eq!(cv.stop().0, 0);
}

async fn nice(cv: &Callvcr, method: &str, path: &str, body: &str) -> tokio::task::JoinHandle<Resp> {
    let h = [("authorization", "bearer nice-agent-token"), ("content-type", "application/json")];
    spawn_send(cv, "api-na1.niceincontact.com", method, path, &h, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_long_poll_answers_in_step_with_the_request_that_caused_its_events() {
    let dir = tempdir("ws-longpoll");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "poll")));
    let poll = format!("{NICE_POLL}?timeout=5");
    let mut waiting = nice(&cv, "GET", &poll, "").await;
    // The poll is waiting at the platform before the state changes.
    wait_for_upstream(&si, NICE_POLL).await;
    stays_pending("the recorded poll waits for an event", &mut waiting, Duration::from_millis(200)).await;
    assert_eq!(nice(&cv, "POST", NICE_STATE, r#"{"state":"Available"}"#).await.await.unwrap().status, 202);
    let r = waiting.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["events"][0]["CurrentState"], "Available");
    let quiet = nice(&cv, "GET", &format!("{NICE_POLL}?timeout=1"), "").await.await.unwrap();
    assert_eq!(quiet.status, 304);
    assert_eq!(cv.stop().0, 0);
    si.stop();
    let (code, _, err) = run(&dir, &["cassette", "export", "poll", "--out", "poll.jsonl"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = std::fs::read_to_string(dir.join("poll.jsonl"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let post = lines.iter().find(|e| e["request"]["method"] == "POST").unwrap();
    let answered = lines.iter().find(|e| e["response"]["status"] == 200).unwrap();
    assert_eq!(answered["after"], post["seq"], "the poll's answer is anchored to the state change");

    // Replay: the poll waits for the replayed state change, not for a wall-clock timer.
    let cv =
        Callvcr::start(&dir, &["replay", "--cassette", "poll", "--strict", "--no-overlay", "auth", "--clock-frozen"]);
    let mut waiting = nice(&cv, "GET", &poll, "").await;
    // No admin-visible sign shows a replayed long poll waiting (the journal notes answers only),
    // so this window both lets the poll arrive before its cause and checks it stays open.
    stays_pending("its cause has not been replayed yet", &mut waiting, SHORT).await;
    assert_eq!(nice(&cv, "POST", NICE_STATE, r#"{"state":"Available"}"#).await.await.unwrap().status, 202);
    let r = tokio::time::timeout(LONG, waiting).await.unwrap().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["events"][0]["CurrentState"], "Available");
    let mut quiet = nice(&cv, "GET", &format!("{NICE_POLL}?timeout=1"), "").await;
    // As above: the window lets the poll arrive before the clock moves, and checks it waits.
    stays_pending("a quiet poll waits its timeout out", &mut quiet, Duration::from_millis(300)).await;
    advance(&cv, 1_000).await;
    assert_eq!(tokio::time::timeout(LONG, quiet).await.unwrap().unwrap().status, 304);
    assert_eq!(cv.stop().0, 0);
}

/// Pushes one event with `jitter_ms` 1000 and steps the frozen clock by 100 ms until it arrives:
/// the step it arrived at.
async fn jitter_step(dir: &Path) -> u32 {
    let cv = start_fixture(dir, "seed: 42\nws:\n  heartbeat_s: 0\n");
    let mut ws = ws_connect(&cv, "streaming.mypurecloud.com", "/channels/streaming-0-aaaaaaaa11").await.unwrap();
    let ev = json!({"event": {"jittered": true}, "delay_ms": 1, "jitter_ms": 1000});
    assert_eq!(admin(&cv, "POST", "/mock/admin/ws/events", &ev.to_string()).await.json(), json!({"queued": 1}));
    let mut step = 0;
    loop {
        if next_text(&mut ws, Duration::from_millis(150)).await.is_some() {
            break;
        }
        step += 1;
        assert!(step <= 11, "a 1 + 0..1000 ms delay is over by 1100 ms");
        advance(&cv, 100).await;
    }
    assert_eq!(cv.stop().0, 0);
    step
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_event_jitter_is_bounded_and_repeats_with_the_seed() {
    let dir = tempdir("ws-jitter");
    let a = jitter_step(&dir).await;
    let b = jitter_step(&dir).await;
    assert_eq!(a, b, "the same seed, the same delay");
    assert!(a >= 1, "the event waited for the clock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_listed_and_takes_pushes_as_soon_as_its_handshake_is_answered() {
    // Test code drives the admin API right after its WebSocket client connects: the session must
    // already be there (it once was registered only after the upgrade completed, a race).
    let dir = tempdir("ws-registered");
    let cv = start_fixture(&dir, "ws:\n  heartbeat_s: 0\n");
    for i in 0..20 {
        let mut ws = ws_connect(&cv, "streaming.mypurecloud.com", "/channels/streaming-0-aaaaaaaa11").await.unwrap();
        let ev = json!({"event": {"n": i}});
        assert_eq!(admin(&cv, "POST", "/mock/admin/ws/events", &ev.to_string()).await.json(), json!({"queued": 1}));
        assert_eq!(next_text(&mut ws, LONG).await.unwrap()["n"], i);
        ws.close(None).await.unwrap();
        while next_text(&mut ws, SHORT).await.is_some() {}
        drop(ws);
        // Freed before the next round: one session at a time.
        wait_for_session_count(&cv, 0).await;
    }
    assert_eq!(cv.stop().0, 0);
}

/// A replayed event carries its times moved onto the replay's clock, as REST answers do: a frame
/// recorded on 30 November plays on 2 December with its `eventTime` two days later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_events_carry_shifted_times() {
    let dir = tempdir("ws-timeshift");
    let host = "streaming.mypurecloud.com";
    let hs = json!({"seq": 1, "recorded_at": "2026-11-30T15:22:38.000Z", "duration_ms": 3,
        "request": {"method": "GET", "scheme": "https", "host": host, "path": "/channels/ch-t",
                    "headers": [["host", host], ["upgrade", "websocket"], ["connection", "Upgrade"]], "body": {"text": ""}},
        "response": {"status": 101, "headers": [["upgrade", "websocket"], ["connection", "Upgrade"]], "body": {"text": ""}}});
    let event =
        r#"{"topicName":"v2.users.u-1.presence","eventBody":{"id":"u-1","eventTime":"2026-11-30T15:22:39.500Z"}}"#;
    let frame =
        json!({"frame": {"session": 1, "n": 0, "dir": "server", "at_ms": 10, "kind": "text", "data": {"text": event}}});
    std::fs::write(dir.join("t.jsonl"), format!("{{\"format\":\"callvcr-cassette\",\"version\":1}}\n{hs}\n{frame}\n"))
        .unwrap();
    let cv = replay_frozen_at(&dir, "t.jsonl", "2026-12-02T15:22:38Z", &["--ws-speed", "instant"]);
    let mut ws = ws_connect(&cv, host, "/channels/ch-t").await.expect("replayed handshake");
    let e = next_event(&mut ws, LONG).await.expect("the recorded event");
    assert_eq!(e["eventBody"]["eventTime"], "2026-12-02T15:22:39.500Z", "{e}");
    assert_eq!(e["eventBody"]["id"], "u-1");
}
