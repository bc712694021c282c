//! The core journey with real parts: the real binary, real TLS over loopback, a real sled store,
//! and a stand-in platform with its own test CA.

mod support;

use std::io::Read as _;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn s(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn gunzip_if_needed(r: &Resp) -> String {
    if r.headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = String::new();
        flate2::read::GzDecoder::new(&r.body[..]).read_to_string(&mut out).unwrap();
        out
    } else {
        r.text()
    }
}

/// The same requests in record and in replay; returns (status, decoded body) per request.
async fn journey(cv: &Callvcr, bearer: &str, client_secret: &str) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    let auth = format!("Bearer {bearer}");
    // 1. Transparent TLS listener, host from SNI.
    let mut api = h1_tls(cv, "api.mypurecloud.com").await;
    let h = [("host", "api.mypurecloud.com"), ("authorization", auth.as_str())];
    let r = api.send("GET", "/api/v2/users/me", &h, "").await;
    out.push((r.status, r.text()));
    // Two fingerprints, interleaved: FIFO per fingerprint.
    for path in ["/api/v2/counter", "/api/v2/other", "/api/v2/counter", "/api/v2/other"] {
        let r = api.send("GET", path, &h, "").await;
        out.push((r.status, r.text()));
    }
    // A token request with secrets in the query, the form body and Basic auth.
    let mut login = h1_tls(cv, "login.mypurecloud.com").await;
    let form = format!("grant_type=client_credentials&client_secret={client_secret}&password=SECRET-PASSWORD-444");
    let r = login
        .send(
            "POST",
            "/oauth/token?client_secret=SECRET-QUERY-333",
            &[
                ("host", "login.mypurecloud.com"),
                ("authorization", "Basic SECRET-BASIC-222"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &form,
        )
        .await;
    out.push((r.status, r.text()));
    // 2. CONNECT through the HTTP listener, then TLS to callvcr's leaf.
    let tunnel = connect_tunnel(cv.proxy, "api.mypurecloud.com:443").await.unwrap();
    let tls = tls_over(tunnel, "api.mypurecloud.com", client_config(&cv.ca_path(), &[b"http/1.1"])).await.unwrap();
    let mut via_connect = H1::over(tls).await;
    let r = via_connect
        .send(
            "POST",
            "/api/v2/echo",
            &[("host", "api.mypurecloud.com"), ("content-type", "application/json"), ("authorization", auth.as_str())],
            r#"{"b":[1,2],"a":"x"}"#,
        )
        .await;
    out.push((r.status, r.text()));
    // 3. Absolute-form over plain HTTP (what axios sends through HTTPS_PROXY).
    let tcp = TcpStream::connect(cv.proxy).await.unwrap();
    let mut abs = H1::over(tcp).await;
    let r = abs
        .send(
            "GET",
            "https://api.mypurecloud.com/gzip",
            &[("host", "api.mypurecloud.com"), ("accept-encoding", "gzip")],
            "",
        )
        .await;
    assert_eq!(
        r.headers.get("content-encoding").map(|v| v.to_str().unwrap()),
        Some("gzip"),
        "served encoded as recorded"
    );
    out.push((r.status, gunzip_if_needed(&r)));
    let r = abs.send("GET", "https://api.mypurecloud.com/api/v2/nowhere", &[("host", "api.mypurecloud.com")], "").await;
    out.push((r.status, r.text()));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_then_replay_gives_identical_answers_without_the_upstream() {
    let dir = tempdir("journey");
    let si = start_stand_in(&dir).await;
    // At debug level, so the log check below covers everything callvcr can say.
    let cv = Callvcr::start_env(&dir, &s(&record_args(&si, "onboarding")), &[("CALLVCR_LOG", "debug")]);
    let recorded = journey(&cv, "SECRET-BEARER-111", "SECRET-CLIENT-SECRET-000").await;
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("9 exchanges and 0 WebSocket frames stored"), "{log}");

    // The upstream saw the Host header unchanged, for every route in.
    {
        let seen = si.seen.lock().unwrap();
        assert_eq!(seen.len(), 9);
        for x in seen.iter() {
            let want = if x.path == "/oauth/token" { "login.mypurecloud.com" } else { "api.mypurecloud.com" };
            assert_eq!(x.host.as_deref(), Some(want), "{x:?}");
            assert!(!x.headers.contains_key("proxy-connection") && !x.headers.contains_key("keep-alive"));
        }
    }
    assert_eq!(recorded[1].1, r#"{"n":0}"#);
    assert_eq!(recorded[2].1, r#"{"other":1}"#);
    assert_eq!(recorded[3].1, r#"{"n":2}"#);
    assert_eq!(recorded[6].1, r#"{"received":{"b":[1,2],"a":"x"}}"#);
    assert_eq!(recorded[7].1, r#"{"compressed":true}"#);
    assert_eq!(recorded[8].0, 404);
    assert_eq!(recorded[5].0, 200);

    // No secret reached the sled files; what is not secret did (the scan can fail).
    let bytes = all_bytes(&dir.join("cassettes/onboarding"));
    assert!(contains(&bytes, b"Agent Smith"), "positive control: the store holds the recorded bodies");
    for secret in SECRETS {
        assert!(!contains(&bytes, secret.as_bytes()), "secret {secret} found in the sled files");
        assert!(!log.contains(secret), "secret {secret} found in the log");
    }
    // Nor in the log at debug level: the CA's key never, the request secrets never.
    let key = std::fs::read_to_string(dir.join("certs/ca-key.pem")).unwrap();
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(key_body.len() > 40);
    assert!(!log.contains("PRIVATE KEY") && !log.contains(&key_body[..40]), "the CA key reached the log");
    // And the cassette audit agrees: nothing that looks like a secret.
    let (code, out, _) = run(&dir, &["cassette", "audit", "onboarding"]);
    assert_eq!(code, 0, "audit after a full record session: {out}");

    // Replay with the upstream gone: a different bearer and client secret still match.
    si.stop();
    // More workers than the default (one fewer than the cores): the flow replays the same.
    let cv = Callvcr::start(
        &dir,
        &["replay", "--no-overlay", "auth", "--cassette", "onboarding", "--strict", "--workers", "3"],
    );
    assert_eq!(cv.workers, 3);
    let replayed = journey(&cv, "another-token", "another-secret").await;
    for (i, (a, b)) in recorded.iter().zip(&replayed).enumerate() {
        if i == 5 {
            // The token response is stored redacted: same status and shape, no live secrets.
            assert_eq!(a.0, b.0);
            let v: serde_json::Value = serde_json::from_str(&b.1).unwrap();
            assert_eq!(v["access_token"], "[REDACTED]");
            assert_eq!(v["expires_in"], 86399);
        } else {
            assert_eq!(a, b, "request {i} answered differently in replay");
        }
    }
    // Exhausted fingerprints repeat the last recording.
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    let r = api.send("GET", "/api/v2/counter", &[("host", "api.mypurecloud.com")], "").await;
    assert_eq!(r.text(), r#"{"n":2}"#);

    let journal: serde_json::Value = {
        let mut admin = H1::over(TcpStream::connect(cv.admin).await.unwrap()).await;
        admin.send("GET", "/mock/admin/journal", &[("host", cv.admin.to_string().as_str())], "").await.json()
    };
    let entries = journal.as_array().unwrap();
    assert_eq!(entries.len(), 10);
    assert!(entries.iter().all(|e| e["answered_by"] == "hit"), "{journal}");
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "strict replay with no misses exits 0: {log}");
    assert!(log.contains("10 hits, 0 misses"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_is_explained_and_strict_replay_exits_1() {
    let dir = tempdir("miss");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "m")));
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    api.send("GET", "/api/v2/users/me", &[("host", "api.mypurecloud.com")], "").await;
    api.send("GET", "/api/v2/counter", &[("host", "api.mypurecloud.com")], "").await;
    assert_eq!(cv.stop().0, 0);
    si.stop();

    let cv = Callvcr::start(&dir, &["replay", "--no-overlay", "auth", "--cassette", "m", "--strict"]);
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    let r = api.send("GET", "/api/v2/users/me?expand=presence", &[("host", "api.mypurecloud.com")], "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.headers["x-callvcr-miss"], "1");
    let v = r.json();
    assert_eq!(v["code"], "callvcr.replay.miss");
    assert_eq!(v["status"], 404);
    assert_eq!(v["closest"][0]["recorded"], "GET api.mypurecloud.com/api/v2/users/me");
    let diffs = v["closest"][0]["differences"].to_string();
    assert!(diffs.contains("expand=presence"), "{diffs}");
    assert!(v["message"].as_str().unwrap().contains("closest recording"), "{v}");
    // A hit still works beside it.
    let r = api.send("GET", "/api/v2/users/me", &[("host", "api.mypurecloud.com")], "").await;
    assert_eq!(r.status, 200);
    // Origin-form on the proxy listener: the Host header names the target.
    let mut plain = H1::over(TcpStream::connect(cv.proxy).await.unwrap()).await;
    let r = plain.send("GET", "/api/v2/counter", &[("host", "api.mypurecloud.com")], "").await;
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"n":0}"#));
    let r = plain.send("GET", "/api/v2/counter", &[("host", "127.0.0.1:8080")], "").await;
    assert_eq!(r.status, 400, "a Host that is not a configured host is refused with a reason");
    assert!(r.text().contains("not a configured host"), "{}", r.text());
    let (code, log) = cv.stop();
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("miss: GET api.mypurecloud.com/api/v2/users/me?expand=presence"), "{log}");
    assert!(log.contains("replay miss"), "a log line names the miss: {log}");

    // Without --strict the same miss exits 0.
    let cv = Callvcr::start(&dir, &["replay", "--no-overlay", "auth", "--cassette", "m"]);
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    assert_eq!(api.send("GET", "/nope", &[("host", "api.mypurecloud.com")], "").await.status, 404);
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_by_alpn_and_record_missing() {
    let dir = tempdir("h2");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "h2")));
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    let first = api.send("GET", "/api/v2/counter", &[("host", "api.mypurecloud.com")], "").await;
    assert_eq!(first.text(), r#"{"n":0}"#);
    assert_eq!(cv.stop().0, 0);

    // record --missing: the counter replays, the new path is recorded.
    let mut args = record_args(&si, "h2");
    args.push("--missing".into());
    let cv = Callvcr::start(&dir, &s(&args));
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    let again = api.send("GET", "/api/v2/counter", &[("host", "api.mypurecloud.com")], "").await;
    assert_eq!(again.text(), r#"{"n":0}"#, "replayed, not forwarded");
    let new = api.send("GET", "/api/v2/users/me", &[("host", "api.mypurecloud.com")], "").await;
    assert_eq!(new.status, 200);
    let (code, log) = cv.stop();
    assert_eq!(code, 0);
    assert!(log.contains("1 exchanges and 0 WebSocket frames stored, 1 replayed"), "{log}");
    assert_eq!(si.seen.lock().unwrap().len(), 2, "the upstream saw only the first recording and the miss");
    si.stop();

    // HTTP/2 negotiated by ALPN on the TLS listener, in replay. A short read timeout: an idle
    // HTTP/2 connection is not cut by it (it times request heads on HTTP/1 only).
    std::fs::write(dir.join("h2.yaml"), "limits:\n  read_timeout_ms: 200\n").unwrap();
    let cv = Callvcr::start(
        &dir,
        &["replay", "--no-overlay", "auth", "--cassette", "h2", "--strict", "--config", "h2.yaml"],
    );
    let tcp = TcpStream::connect(cv.tls).await.unwrap();
    let tls = tls_over(tcp, "api.mypurecloud.com", client_config(&cv.ca_path(), &[b"h2"])).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for path in ["/api/v2/counter", "/api/v2/users/me"] {
        let req = http::Request::builder()
            .uri(format!("https://api.mypurecloud.com{path}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let r = read(sender.send_request(req).await.unwrap()).await;
        assert_eq!(r.version, http::Version::HTTP_2);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Idle for several read timeouts (real time: the timeout guards against real slow clients).
    // The idle time is the behaviour under test, not a wait for anything.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let req = http::Request::builder()
        .uri("https://api.mypurecloud.com/api/v2/users/me")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let r = read(sender.send_request(req).await.expect("the idle HTTP/2 connection is still open")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_acknowledged_exchanges_loses_none() {
    const N: usize = 25;
    let dir = tempdir("kill9");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "crash")));
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    for i in 0..N {
        let r = api
            .send(
                "POST",
                "/api/v2/echo",
                &[("host", "api.mypurecloud.com"), ("content-type", "application/json")],
                &format!(r#"{{"i":{i}}}"#),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    cv.kill9();
    si.stop();
    let (code, out, err) = run(&dir, &["cassette", "export", "crash", "--out", "crash.jsonl"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("wrote {N} exchanges")), "{out}");
    let text = std::fs::read_to_string(dir.join("crash.jsonl")).unwrap();
    for i in 0..N {
        assert!(text.contains(&format!(r#""json":{{"i":{i}}}"#)), "exchange {i} lost");
    }
    // And the exported form replays.
    let cv = Callvcr::start(&dir, &["replay", "--no-overlay", "auth", "--cassette", "crash.jsonl", "--strict"]);
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    let r = api
        .send(
            "POST",
            "/api/v2/echo",
            &[("host", "api.mypurecloud.com"), ("content-type", "application/json")],
            r#"{"i": 7}"#,
        )
        .await;
    assert_eq!(r.text(), r#"{"received":{"i":7}}"#);
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sessions_relay_while_recording_without_the_compression_offer() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let dir = tempdir("ws");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "ws")));
    let tcp = TcpStream::connect(cv.tls).await.unwrap();
    let tls = tls_over(tcp, "streaming.mypurecloud.com", client_config(&cv.ca_path(), &[b"http/1.1"])).await.unwrap();
    let mut req = format!("wss://streaming.mypurecloud.com/channels/{CHANNEL_ID}").into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-extensions", "permessage-deflate".parse().unwrap());
    let work = async {
        let (mut ws, resp) = tokio_tungstenite::client_async(req, tls).await.expect("handshake through callvcr");
        assert_eq!(resp.status(), 101);
        ws.send(tokio_tungstenite::tungstenite::Message::text(r#"{"message":"ping"}"#)).await.unwrap();
        loop {
            let m = ws.next().await.unwrap().unwrap();
            if m.to_text().unwrap_or("").contains("pong") {
                break;
            }
        }
        // A ping control frame gets exactly one pong (callvcr's side answers; the platform's pong
        // to the relayed ping is recorded, not sent twice).
        ws.send(tokio_tungstenite::tungstenite::Message::Ping(bytes::Bytes::from_static(b"p1"))).await.unwrap();
        let mut pongs = 0;
        let until = tokio::time::Instant::now() + Duration::from_millis(600);
        while let Ok(Some(Ok(m))) = tokio::time::timeout_at(until, ws.next()).await {
            if matches!(m, tokio_tungstenite::tungstenite::Message::Pong(_)) {
                pongs += 1;
            }
        }
        assert_eq!(pongs, 1);
        ws.close(None).await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(10), work).await.expect("the WebSocket relay hung");
    // The extension offer was removed on the way upstream, so frames stay readable.
    assert!(si
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|x| x.path.starts_with("/channels/") && !x.headers.contains_key("sec-websocket-extensions")));
    wait_for_log(&cv, "WebSocket session recorded").await;
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("WebSocket session recorded"), "{log}");
    // The check stop() ran opened the session again and compared its frames.
    let (code, out, err) = run(&dir, &["cassette", "check", "ws"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 WebSocket session(s)"), "{out}");
    // A recorded frame the replay does not deliver is a difference, named by session and frame:
    // here an injected fault drops the session before its first frame.
    std::fs::write(
        dir.join("drop.yaml"),
        "faults:\n  rules:\n    - {match: {path: \"^/channels/\"}, kind: ws_drop, probability: 1.0, seed: 1}\n",
    )
    .unwrap();
    let (code, out, err) = run(&dir, &["cassette", "check", "ws", "--config", "drop.yaml"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("(WebSocket): answered by websocket") && out.contains("frame 0 (recorded #1): not delivered"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_started_together_share_a_fresh_recording() {
    let dir = tempdir("together");
    let si = start_stand_in(&dir).await;
    let h = [("host", "api.mypurecloud.com")];
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "t")));
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    assert_eq!(api.send("GET", "/api/v2/users/me", &h, "").await.status, 200);
    assert_eq!(cv.stop().0, 0);
    si.stop();
    // Eight replays at once: one writes the replay file under the lock, the others wait for it
    // instead of failing on the held store.
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let d = dir.clone();
            std::thread::spawn(move || Callvcr::start(&d, &["replay", "--cassette", "t", "--no-overlay", "auth"]))
        })
        .collect();
    let running: Vec<Callvcr> = starts.into_iter().map(|t| t.join().unwrap()).collect();
    for cv in running {
        let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
        assert_eq!(api.send("GET", "/api/v2/users/me", &h, "").await.status, 200);
        assert_eq!(cv.stop().0, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cassette_held_by_a_recording_is_named_with_its_pid() {
    let dir = tempdir("held");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "held")));
    let (code, _, err) = run(
        &dir,
        &[
            "replay",
            "--cassette",
            "held",
            "--listen",
            "127.0.0.1:0",
            "--proxy-listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cassette `cassettes/held` is in use") && err.contains(&format!("(pid {})", cv.pid())),
        "{err}"
    );
    assert_eq!(cv.stop().0, 0);
    // Released on exit: now it opens.
    let (code, out, err) = run(&dir, &["cassette", "export", "held"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("wrote 0 exchanges"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_in_replay_gets_a_fresh_accept_key_not_the_recorded_one() {
    let dir = tempdir("wsreplay");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "wsr")));
    let upgrade = b"GET /ws HTTP/1.1\r\nHost: api.mypurecloud.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let tcp = TcpStream::connect(cv.tls).await.unwrap();
    let mut tls = tls_over(tcp, "api.mypurecloud.com", client_config(&cv.ca_path(), &[b"http/1.1"])).await.unwrap();
    tls.write_all(upgrade).await.unwrap();
    let mut buf = [0u8; 12];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 101");
    drop(tls);
    assert_eq!(cv.stop().0, 0);
    si.stop();
    let cv = Callvcr::start(&dir, &["replay", "--no-overlay", "auth", "--cassette", "wsr"]);
    for path in ["/ws", "/ws-never-recorded"] {
        let tcp = TcpStream::connect(cv.tls).await.unwrap();
        let mut tls = tls_over(tcp, "api.mypurecloud.com", client_config(&cv.ca_path(), &[b"http/1.1"])).await.unwrap();
        let req = String::from_utf8_lossy(upgrade).replace("GET /ws ", &format!("GET {path} "));
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut head = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut head)).await.expect("hung").unwrap();
        let head = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
        if path == "/ws" {
            assert!(head.starts_with("http/1.1 101"), "{head}");
            // RFC 6455's own example: this key must get this accept, whatever the recording said.
            assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
            assert!(!head.contains("stand-in-accept"), "{head}");
        } else {
            assert!(head.starts_with("http/1.1 404"), "{path}: {head}");
        }
    }
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_request_finish_and_stores_it() {
    let dir = tempdir("drain");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "drain")));
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    let slow = tokio::spawn(async move { api.send("GET", "/slow", &[("host", "api.mypurecloud.com")], "").await });
    // In flight: the platform has it (and takes 3 s to answer).
    wait_for_upstream(&si, "/slow").await;
    let stopping = tokio::task::spawn_blocking(move || cv.stop());
    let r = slow.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"slow":true}"#));
    let (code, log) = stopping.await.unwrap();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("1 exchanges and 0 WebSocket frames stored"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_host_outside_the_list_is_a_blind_tunnel_while_recording() {
    let dir = tempdir("blind");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "blind")));
    // 127.0.0.1 is not a configured host: callvcr must not terminate TLS, so the stand-in's own
    // certificate (trusted through its test CA) is what the client verifies.
    let tunnel = connect_tunnel(cv.proxy, &si.addr.to_string()).await.unwrap();
    let tls = tls_over(tunnel, "api.mypurecloud.com", client_config(&si.ca_path, &[b"http/1.1"])).await.unwrap();
    let mut c = H1::over(tls).await;
    let r = c.send("GET", "/api/v2/users/me", &[("host", "api.mypurecloud.com")], "").await;
    assert_eq!(r.status, 200);
    drop(c);
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("0 exchanges and 0 WebSocket frames stored") && log.contains("blind tunnel"), "{log}");
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_names_are_resolved_without_the_hosts_file() {
    if !is_root() || std::process::Command::new("unshare").arg("--help").output().is_err() {
        eprintln!("NOT RUN: needs root and unshare for a private /etc/hosts (CI runs as root)");
        return;
    }
    let dir = tempdir("hostsfile");
    // The user's redirect: the hosts file points the platform at callvcr itself.
    std::fs::write(dir.join("hosts"), "127.0.0.1 localhost\n127.0.0.1 login.mypurecloud.com api.mypurecloud.com\n")
        .unwrap();
    let dns = nxdomain_server().await;
    std::fs::write(dir.join("proxy.yaml"), format!("upstream:\n  nameservers: [\"{dns}\"]\n")).unwrap();
    let cv = Callvcr::start_in(&dir, &["record", "--cassette", "h"], Some(&dir.join("hosts")));
    let mut c = h1_tls(&cv, "login.mypurecloud.com").await;
    let r = c.send("POST", "/oauth/token", &[("host", "login.mypurecloud.com")], "").await;
    // Reading the hosts file would have sent callvcr to 127.0.0.1:443 (a connect failure, or itself).
    assert_eq!((r.status, r.json()["kind"].as_str()), (502, Some("dns")), "{}", r.text());
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "{log}");
    assert!(
        std::fs::read_to_string("/etc/hosts").unwrap().lines().all(|l| !l.contains("login.mypurecloud.com")),
        "the machine's hosts file is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_recording_replaces_and_a_changed_match_config_still_matches_the_stored_requests() {
    let dir = tempdir("rerecord");
    let si = start_stand_in(&dir).await;
    let h = [("host", "api.mypurecloud.com")];
    let replay_file = dir.join("cassettes/re/replay.bin");
    // First run: three exchanges.
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "re")));
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    for path in ["/api/v2/users/me", "/api/v2/counter?cacheBuster=1", "/api/v2/other"] {
        assert_eq!(api.send("GET", path, &h, "").await.status, 200);
    }
    assert_eq!(cv.stop().0, 0);
    assert!(!replay_file.exists(), "recording leaves no replay file");
    // The first replay writes the replay file, and answers from it.
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "re", "--no-overlay", "auth"]);
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    assert_eq!(api.send("GET", "/api/v2/other", &h, "").await.status, 200);
    assert_eq!(cv.stop().0, 0);
    assert!(replay_file.exists(), "the first replay writes the replay file");
    // Second run over the same name: one exchange, and only it remains (nothing appended).
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "re")));
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    assert!(!replay_file.exists(), "a recording removes the replay file before it changes the store");
    assert_eq!(api.send("GET", "/api/v2/counter?cacheBuster=1", &h, "").await.text(), r#"{"n":2}"#);
    assert_eq!(cv.stop().0, 0);
    si.stop();
    // Replay sees the new recording, not the old replay file: the old exchange is gone.
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "re", "--no-overlay", "auth"]);
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    assert_eq!(api.send("GET", "/api/v2/other", &h, "").await.status, 404);
    assert_eq!(api.send("GET", "/api/v2/counter?cacheBuster=1", &h, "").await.text(), r#"{"n":2}"#);
    assert_eq!(cv.stop().0, 0);
    let (code, out, _) = run(&dir, &["cassette", "show", "re"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().filter(|l| l.contains("→ 200")).count(), 1, "{out}");
    assert!(out.contains("/api/v2/counter?cacheBuster=1") && !out.contains("/api/v2/other"), "{out}");

    // Matching was not frozen at record time: a config that ignores the cache buster, written after
    // the recording, matches the stored request with another value.
    std::fs::write(dir.join("m.yaml"), "match:\n  ignore_query: [cacheBuster]\n").unwrap();
    let cv =
        Callvcr::start(&dir, &["replay", "--cassette", "re", "--config", "m.yaml", "--no-overlay", "auth", "--strict"]);
    let mut api = h1_tls(&cv, "api.mypurecloud.com").await;
    let r = api.send("GET", "/api/v2/counter?cacheBuster=977", &h, "").await;
    assert_eq!((r.status, r.text()), (200, r#"{"n":2}"#.to_string()));
    assert_eq!(cv.stop().0, 0);
}
