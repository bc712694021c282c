//! Failure injection through the real binary: each fault kind observed by a real client over real
//! TLS (status and headers, elapsed virtual time, the connection error), windows that end when they
//! should, seeded randomness that repeats, and rules driven through the admin API and proxy.yaml.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ME: &str = r#"{"id":"u-1","name":"Agent Smith"}"#;
const API: &str = "api.mypurecloud.com";

fn start(dir: &Path, config: &str) -> Callvcr {
    write_cassette(
        dir,
        "f.jsonl",
        &[
            ("GET", API, "/api/v2/users/me", "", 200, ME),
            ("GET", API, "/api/v2/routing/queues", "", 200, r#"{"entities":[]}"#),
        ],
    );
    std::fs::write(dir.join("proxy.yaml"), config).unwrap();
    Callvcr::start(
        dir,
        &[
            "replay",
            "--cassette",
            "f.jsonl",
            "--config",
            "proxy.yaml",
            "--no-overlay",
            "auth",
            "--clock-frozen",
            "--clock-start",
            "2026-01-05T09:00:00Z",
        ],
    )
}

async fn get(cv: &Callvcr, path: &str) -> Resp {
    let mut c = h1_tls(cv, API).await;
    c.send("GET", path, &[("host", API)], "").await
}

async fn add(cv: &Callvcr, rule: Value) -> String {
    let r = admin(cv, "POST", "/mock/admin/faults", &rule.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

async fn advance(cv: &Callvcr, ms: i64) {
    let r = admin(cv, "POST", "/mock/admin/clock", &json!({"advance_ms": ms}).to_string()).await;
    assert_eq!(r.status, 200);
}

/// Sends one raw HTTP/1.1 request over TLS and reads until the server closes: the bytes it sent.
async fn raw(cv: &Callvcr, path: &str) -> Vec<u8> {
    let tcp = TcpStream::connect(cv.tls).await.unwrap();
    let mut s = tls_over(tcp, API, client_config(&cv.ca_path(), &[b"http/1.1"])).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: {API}\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server neither answered nor closed: {}", String::from_utf8_lossy(&out)),
        }
    }
    out
}

fn journal_by(j: &Value) -> Vec<String> {
    j.as_array().unwrap().iter().map(|e| e["answered_by"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_faults_answer_the_platform_body_for_their_window_then_stop() {
    let dir = tempdir("fault-status");
    let cv = start(&dir, "");
    // An outage of 30 s of virtual time on users/me only.
    add(&cv, json!({"match": {"path": "^/api/v2/users"}, "kind": "status", "status": 503, "duration_ms": 30000})).await;
    let r = get(&cv, "/api/v2/users/me").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["x-callvcr-fault"], "status");
    let b = r.json();
    assert_eq!(b["code"], "service.unavailable");
    assert_eq!(b["status"], 503);
    assert_eq!(b["contextId"].as_str().unwrap().len(), 36);
    assert_eq!(get(&cv, "/api/v2/routing/queues").await.status, 200, "other paths are not affected");
    advance(&cv, 29_999).await;
    assert_eq!(get(&cv, "/api/v2/users/me").await.status, 503, "still inside the window");
    advance(&cv, 1).await;
    let r = get(&cv, "/api/v2/users/me").await;
    assert_eq!((r.status, r.text()), (200, ME.to_string()), "the window is over");
    assert!(!r.headers.contains_key("x-callvcr-fault"));

    // 429 with Retry-After for the next two matching requests.
    add(&cv, json!({"match": {"method": "GET"}, "kind": "status", "status": 429, "retry_after_s": 10, "count": 2}))
        .await;
    for _ in 0..2 {
        let r = get(&cv, "/api/v2/users/me").await;
        assert_eq!(r.status, 429);
        assert_eq!(r.headers["retry-after"], "10");
        assert_eq!(r.json()["code"], "too.many.requests");
    }
    assert_eq!(get(&cv, "/api/v2/users/me").await.status, 200, "two requests, then the window is over");

    let j = admin(&cv, "GET", "/mock/admin/journal", "").await.json();
    let by = journal_by(&j);
    assert_eq!(by.iter().filter(|b| *b == "fault:status").count(), 4, "{j}");
    assert!(by.contains(&"hit".to_string()));
    let (code, log) = cv.stop();
    assert_eq!(code, 0);
    assert!(log.contains("injected fault"), "every injected fault is logged as injected: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_latency_and_hang_wait_on_the_virtual_clock_or_for_the_client() {
    let dir = tempdir("fault-time");
    let cv = start(&dir, "");

    // timeout: 504 once 5 s of virtual time have passed.
    let id = add(&cv, json!({"kind": "timeout", "delay_ms": 5000, "count": 1})).await;
    let mut pending = spawn_send(&cv, API, "GET", "/api/v2/users/me", &[], "");
    wait_for_fault_used(&cv, &id).await;
    stays_pending("a timeout waits for virtual time", &mut pending, Duration::from_millis(300)).await;
    advance(&cv, 4_999).await;
    stays_pending("one millisecond short", &mut pending, Duration::from_millis(200)).await;
    advance(&cv, 1).await;
    let r = pending.await.unwrap();
    assert_eq!(r.status, 504);
    assert_eq!(r.headers["x-callvcr-fault"], "timeout");
    assert_eq!(r.json()["code"], "gateway.timeout");

    // latency: the real answer, 1.5 s of virtual time later.
    let id = add(&cv, json!({"kind": "latency", "delay_ms": 1500, "count": 1})).await;
    let mut pending = spawn_send(&cv, API, "GET", "/api/v2/users/me", &[], "");
    wait_for_fault_used(&cv, &id).await;
    stays_pending("latency waits for virtual time", &mut pending, Duration::from_millis(300)).await;
    advance(&cv, 1_500).await;
    let r = pending.await.unwrap();
    assert_eq!((r.status, r.text()), (200, ME.to_string()));
    assert_eq!(r.headers["x-callvcr-fault"], "latency");

    // hang: no answer at all; the client gives up; others are served meanwhile.
    add(&cv, json!({"match": {"path": "queues"}, "kind": "hang"})).await;
    let mut c = h1_tls(&cv, API).await;
    let gave_up =
        tokio::time::timeout(Duration::from_millis(500), c.send("GET", "/api/v2/routing/queues", &[("host", API)], ""))
            .await;
    assert!(gave_up.is_err(), "a hung request never answers");
    advance(&cv, 3_600_000).await;
    assert_eq!(get(&cv, "/api/v2/users/me").await.status, 200, "other requests are served");

    let by = journal_by(&admin(&cv, "GET", "/mock/admin/journal", "").await.json());
    assert!(by.contains(&"fault:timeout".into()) && by.contains(&"fault:latency".into()), "{by:?}");
    assert!(by.contains(&"fault:hang".into()), "{by:?}");
    assert_eq!(cv.stop().0, 0, "shutdown is not held up by a hung request for long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_faults_close_reset_and_garble_the_connection() {
    let dir = tempdir("fault-conn");
    let cv = start(&dir, "");
    let control = raw(&cv, "/api/v2/users/me").await;
    assert!(String::from_utf8_lossy(&control).starts_with("HTTP/1.1 200"), "control");
    assert!(String::from_utf8_lossy(&control).ends_with(ME), "control: the whole answer");

    add(&cv, json!({"kind": "close", "count": 1})).await;
    assert_eq!(raw(&cv, "/api/v2/users/me").await, b"", "closed before any byte of the response");

    add(&cv, json!({"kind": "reset", "count": 1})).await;
    let got = raw(&cv, "/api/v2/users/me").await;
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "part of the response went out: {text:?}");
    let full = control.len();
    assert!(got.len() < full, "cut short: {} of {full} bytes", got.len());
    assert!(!text.contains(ME), "the body never completes: {text:?}");

    add(&cv, json!({"kind": "malformed", "count": 1})).await;
    let got = raw(&cv, "/api/v2/users/me").await;
    assert!(got.starts_with(b"HTTP/1.1 2x0 Garbled"), "{:?}", String::from_utf8_lossy(&got));
    // A real HTTP client fails on it.
    add(&cv, json!({"kind": "malformed", "count": 1})).await;
    let tcp = TcpStream::connect(cv.tls).await.unwrap();
    let s = tls_over(tcp, API, client_config(&cv.ca_path(), &[b"http/1.1"])).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/api/v2/users/me")
        .header("host", API)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let err = sender.send_request(req).await.expect_err("a malformed response is an error to a client");
    assert!(err.is_parse() || err.is_incomplete_message(), "{err:?}");

    // The connection faults were one-shot: the next request is whole.
    assert_eq!(get(&cv, "/api/v2/users/me").await.text(), ME);
    let by = journal_by(&admin(&cv, "GET", "/mock/admin/journal", "").await.json());
    for k in ["fault:close", "fault:reset", "fault:malformed"] {
        assert!(by.contains(&k.to_string()), "{k} in {by:?}");
    }
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_faults_refuse_the_handshake_for_their_host_only() {
    let dir = tempdir("fault-tls");
    let cv = start(&dir, "");
    add(&cv, json!({"match": {"host": API}, "kind": "tls", "count": 1})).await;
    let cfg = client_config(&cv.ca_path(), &[b"http/1.1"]);
    let other = tls_over(TcpStream::connect(cv.tls).await.unwrap(), "login.mypurecloud.com", cfg.clone()).await;
    assert!(other.is_ok(), "another host's handshake is not affected");
    let refused = tls_over(TcpStream::connect(cv.tls).await.unwrap(), API, cfg.clone()).await;
    assert!(refused.is_err(), "the handshake is refused");
    let again = tls_over(TcpStream::connect(cv.tls).await.unwrap(), API, cfg).await;
    assert!(again.is_ok(), "the window was one handshake");
    let j = admin(&cv, "GET", "/mock/admin/journal", "").await.json();
    assert!(j.as_array().unwrap().iter().any(|e| e["answered_by"] == "fault:tls" && e["host"] == API), "{j}");
    let (code, log) = cv.stop();
    assert_eq!(code, 0);
    assert!(log.contains("injected fault: TLS handshake refused"), "{log}");
}

/// Runs 24 requests against a 50% outage with `seed`; returns which got the fault.
async fn sequence(dir: &Path, seed: u64) -> Vec<bool> {
    let cv = start(dir, "");
    add(&cv, json!({"kind": "status", "status": 503, "probability": 0.5, "seed": seed})).await;
    let mut c = h1_tls(&cv, API).await;
    let mut out = Vec::new();
    for _ in 0..24 {
        out.push(c.send("GET", "/api/v2/users/me", &[("host", API)], "").await.status == 503);
    }
    assert_eq!(cv.stop().0, 0);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_sequence_across_two_runs() {
    let dir = tempdir("fault-seed");
    let a = sequence(&dir, 7).await;
    let b = sequence(&dir, 7).await;
    assert_eq!(a, b, "same seed, same sequence");
    assert!(a.contains(&true) && a.contains(&false), "a 50% fault both fires and not: {a:?}");
    let c = sequence(&dir, 8).await;
    assert_ne!(a, c, "another seed, another sequence (the comparison can fail)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_trigger_works_and_can_be_switched_off() {
    let dir = tempdir("fault-query");
    let cv = start(&dir, "faults:\n  query_timeout_ms: 2000\n");
    let r = get(&cv, "/api/v2/users/me?failure=rate_limit").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "10");
    assert_eq!(r.headers["x-callvcr-fault"], "status");
    assert_eq!(raw(&cv, "/api/v2/users/me?failure=socket_drop").await, b"");
    let mut pending = spawn_send(&cv, API, "GET", "/api/v2/users/me?failure=timeout", &[], "");
    // A query-triggered timeout has no rule to count it and is journaled only when answered: no
    // admin-visible sign shows it waiting, so this window both lets it arrive before the clock
    // moves and checks that it waits.
    stays_pending("a query-triggered timeout waits for virtual time", &mut pending, Duration::from_millis(300)).await;
    advance(&cv, 2_000).await;
    assert_eq!(pending.await.unwrap().status, 504);
    let r = get(&cv, "/api/v2/users/me?failure=explode").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("timeout, rate_limit or socket_drop"), "{}", r.text());
    assert_eq!(cv.stop().0, 0);

    let cv = start(&dir, "faults:\n  query_trigger: false\n");
    let r = get(&cv, "/api/v2/users/me?failure=rate_limit").await;
    assert_eq!(r.status, 404, "switched off: an ordinary request, which this cassette does not hold");
    assert_eq!(r.headers["x-callvcr-miss"], "1");
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_from_the_admin_api_and_proxy_yaml_take_effect_list_and_clear() {
    let dir = tempdir("fault-admin");
    let cfg = "faults:\n  rules:\n    - {match: {path: queues}, kind: status, status: 500, count: 1}\n";
    let cv = start(&dir, cfg);
    let list = admin(&cv, "GET", "/mock/admin/faults", "").await.json();
    assert_eq!(list[0]["id"], "f1");
    assert_eq!(list[0]["remaining"], 1);
    assert_eq!(get(&cv, "/api/v2/routing/queues").await.status, 500, "the configured rule is live from the start");
    assert_eq!(get(&cv, "/api/v2/routing/queues").await.status, 200);
    assert_eq!(admin(&cv, "GET", "/mock/admin/faults", "").await.json()[0]["remaining"], 0);

    let id = add(&cv, json!({"match": {"path": "users"}, "kind": "status", "status": 502})).await;
    assert_eq!(id, "f2");
    assert_eq!(get(&cv, "/api/v2/users/me").await.status, 502, "takes effect on the next request");
    let r = admin(&cv, "DELETE", &format!("/mock/admin/faults/{id}"), "").await;
    assert_eq!(r.json(), json!({"removed": 1}));
    assert_eq!(get(&cv, "/api/v2/users/me").await.status, 200, "removed cleanly");
    let r = admin(&cv, "DELETE", "/mock/admin/faults/f99", "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");

    for (rule, says) in [
        (json!({"kind": "status"}), "`status` is required"),
        (json!({"kind": "ws_drop"}), "after_frames"),
        (json!({"kind": "status", "status": 503, "match": {"verb": "GET"}}), "match.verb"),
    ] {
        let r = admin(&cv, "POST", "/mock/admin/faults", &rule.to_string()).await;
        assert_eq!(r.status, 400, "{rule}");
        assert_eq!(r.json()["error"], "bad_fault");
        assert!(r.json()["message"].as_str().unwrap().contains(says), "{}", r.text());
    }

    add(&cv, json!({"kind": "close"})).await;
    add(&cv, json!({"kind": "status", "status": 503})).await;
    let r = admin(&cv, "DELETE", "/mock/admin/faults", "").await;
    assert_eq!(r.json(), json!({"removed": 3}), "the spent configured rule and the two added");
    assert_eq!(get(&cv, "/api/v2/users/me").await.status, 200);

    // Reset brings the configured rules back, windows fresh.
    admin(&cv, "POST", "/mock/admin/reset", "").await;
    assert_eq!(get(&cv, "/api/v2/routing/queues").await.status, 500);
    assert_eq!(cv.stop().0, 0);

    // A bad rule in proxy.yaml is refused at start with its line.
    std::fs::write(dir.join("bad.yaml"), "faults:\n  rules:\n    - {kind: status, status: 200}\n").unwrap();
    let (code, _, err) = run(&dir, &["replay", "--cassette", "f.jsonl", "--config", "bad.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.yaml:3:") && err.contains("400 to 599"), "{err}");
}
