//! `callvcr cassette ...` through the real binary: ls, show, rm; JSON Lines export/import round trip;
//! HAR import (redacted) and export; audit; prune; bad files refused with their line, nothing imported.

mod support;

use serde_json::{json, Value};
use support::*;

const HAR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/devtools-shape.har");
/// Written by mitmproxy 11 itself (`scripts/make-mitmproxy-har.sh`), not by hand.
const MITM_HAR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mitmproxy-genesys.har");

/// A hand-written cassette with exchanges and WebSocket frames.
fn jsonl(dir: &std::path::Path, name: &str, extra: &[Value]) -> String {
    let mut lines = vec![json!({"format": "callvcr-cassette", "version": 1})];
    let ex = |seq: u64, path: &str, status: u16, body: &str| {
        json!({"seq": seq, "recorded_at": "2026-01-05T09:00:00.000Z", "duration_ms": 3,
            "request": {"method": "GET", "scheme": "https", "host": "api.mypurecloud.com", "path": path, "headers": [["host", "api.mypurecloud.com"]], "body": {"text": ""}},
            "response": {"status": status, "headers": [["content-type", "application/json"]], "body": {"text": body}}})
    };
    lines.push(ex(1, "/api/v2/users/me", 200, r#"{"id":"u-1","name":"Agent Smith"}"#));
    lines.push(ex(2, "/channels/streaming-0-aaaaaaaa11", 101, ""));
    lines.push(json!({"frame": {"session": 2, "n": 0, "dir": "server", "at_ms": 5, "kind": "text", "data": {"text": "{\"topicName\":\"t\",\"eventBody\":{}}"}}}));
    lines.push(json!({"frame": {"session": 2, "n": 1, "dir": "client", "at_ms": 9, "kind": "binary", "data": {"base64": "AAEC/w=="}}}));
    lines.extend(extra.iter().cloned());
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join(name), text).unwrap();
    name.to_string()
}

#[test]
fn ls_show_and_rm_manage_stored_cassettes() {
    let dir = tempdir("tools-ls");
    let file = jsonl(&dir, "fx.jsonl", &[]);
    let (code, out, err) = run(&dir, &["cassette", "import", &file, "--name", "fx"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported 2 exchanges and 2 WebSocket frames"), "{out}");
    assert_eq!(run(&dir, &["cassette", "export", "fx"]).0, 0, "exports next to the store, as cassettes/fx.jsonl");
    let (code, out, _) = run(&dir, &["cassette", "ls"]);
    assert_eq!(code, 0);
    let line = |start: &str| out.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("{start}: {out}"));
    assert!(line("fx ").contains("2 exchanges, 2 frames") && line("fx ").contains("(sled)"), "{out}");
    assert!(line("fx.jsonl").contains("2 exchanges, 2 frames") && line("fx.jsonl").contains("(JSON Lines)"), "{out}");
    let (code, out, _) = run(&dir, &["cassette", "show", "fx"]);
    assert_eq!(code, 0);
    assert!(out.contains("GET api.mypurecloud.com/api/v2/users/me → 200"), "{out}");
    assert!(out.contains("→ 101 · 2 WebSocket frames"), "{out}");
    let (code, out, _) = run(&dir, &["cassette", "rm", "fx"]);
    assert_eq!(code, 0);
    assert!(out.contains("removed"));
    assert!(!dir.join("cassettes/fx").exists());
    let (code, _, err) = run(&dir, &["cassette", "rm", "fx"]);
    assert_eq!(code, 2);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn export_then_import_then_export_is_byte_identical_and_json_bodies_read_as_json() {
    let dir = tempdir("tools-roundtrip");
    let file = jsonl(&dir, "fx.jsonl", &[]);
    assert_eq!(run(&dir, &["cassette", "import", &file, "--name", "a"]).0, 0);
    assert_eq!(run(&dir, &["cassette", "export", "a", "--out", "a.jsonl"]).0, 0);
    assert_eq!(run(&dir, &["cassette", "import", "a.jsonl", "--name", "b"]).0, 0);
    assert_eq!(run(&dir, &["cassette", "export", "b", "--out", "b.jsonl"]).0, 0);
    let a = std::fs::read(dir.join("a.jsonl")).unwrap();
    let b = std::fs::read(dir.join("b.jsonl")).unwrap();
    assert!(!a.is_empty());
    assert_eq!(a, b, "the round trip is byte-identical");
    let text = String::from_utf8(a).unwrap();
    assert!(text.contains(r#""json":{"id":"u-1","name":"Agent Smith"}"#), "JSON bodies are JSON: {text}");
    assert!(text.contains(r#""base64":"AAEC/w==""#), "binary frames are base64: {text}");
    assert_eq!(text.lines().count(), 5, "a header, two exchanges, two frames: one per line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_har_file_imports_redacted_replays_and_exports_back_to_har() {
    let dir = tempdir("tools-har");
    // The HAR as written holds secrets; audit says so, with where.
    let (code, out, _) = run(&dir, &["cassette", "audit", HAR]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("request header authorization") && out.contains("JWT"), "{out}");
    assert!(out.contains("field access_token"), "{out}");

    let (code, out, err) = run(&dir, &["cassette", "import", HAR, "--name", "har"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported 2 exchanges"), "{out}");
    let bytes = all_bytes(&dir.join("cassettes/har"));
    for secret in
        ["HAR-ACCESS-TOKEN-555", "HAR-COOKIE-777", "SEFSLUNMSUVOVDpIQVItU0VDUkVULTk5OQ", "eyJhbGciOiJIUzI1NiJ9"]
    {
        assert!(!contains(&bytes, secret.as_bytes()), "{secret} reached the cassette");
    }
    assert!(contains(&bytes, b"HAR Agent"), "positive control");
    let (code, out, _) = run(&dir, &["cassette", "audit", "har"]);
    assert_eq!(code, 0, "the imported cassette is clean: {out}");

    // It replays (HTTP/2 pseudo-headers and the HAR's decoded gzip body handled).
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "har", "--no-overlay", "auth", "--strict"]);
    let mut c = h1_tls(&cv, "api.mypurecloud.com").await;
    let r = c.send("GET", "/api/v2/users/me?expand=presence", &[("host", "api.mypurecloud.com")], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-encoding"], "gzip");
    assert_eq!(cv.stop().0, 0);
    // And straight from the .har file.
    let cv = Callvcr::start(&dir, &["replay", "--cassette", HAR, "--no-overlay", "auth", "--strict"]);
    let mut c = h1_tls(&cv, "api.mypurecloud.com").await;
    assert_eq!(
        c.send("GET", "/api/v2/users/me?expand=presence", &[("host", "api.mypurecloud.com")], "").await.status,
        200
    );
    assert_eq!(cv.stop().0, 0);

    // Export as HAR 1.2 and read it back.
    let (code, _, err) = run(&dir, &["cassette", "export", "har", "--format", "har", "--out", "back.har"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("back.har")).unwrap()).unwrap();
    assert_eq!(v["log"]["version"], "1.2");
    let entries = v["log"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["request"]["url"], "https://api.mypurecloud.com/api/v2/users/me?expand=presence");
    assert_eq!(entries[1]["request"]["queryString"][0]["name"], "expand");
    assert!(entries[1]["response"]["content"]["text"].as_str().unwrap().contains("HAR Agent"));
    let (code, _, err) = run(&dir, &["cassette", "import", "back.har", "--name", "again"]);
    assert_eq!(code, 0, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_har_written_by_mitmproxy_imports_redacted_and_replays_with_its_gzip_answer() {
    let dir = tempdir("tools-mitm");
    let token = "wVvE7bZ4k9HnQ2mXc5LrT8pYs1aJd6fGu3oKi0eWq7zNb4vCx2yM9tRl5hPj8gSf-Ud1AoEk6wIz3nHq0rBy7mLc_FxTv";
    let (code, out, _) = run(&dir, &["cassette", "audit", MITM_HAR]);
    assert_eq!(code, 1, "mitmproxy's HAR holds the live token: {out}");
    let (code, out, err) = run(&dir, &["cassette", "import", MITM_HAR, "--name", "mitm"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported 4 exchanges"), "{out}");
    let bytes = all_bytes(&dir.join("cassettes/mitm"));
    // The token (bearer and token answer) and the Basic credentials of the token request.
    for secret in [token, "hS1nVqj9yL0oZk2Xb4cRt7uWm3pEa6dFg8iJ5sQ_xYz"] {
        assert!(!contains(&bytes, secret.as_bytes()), "{secret} reached the cassette");
    }
    assert!(contains(&bytes, b"Avery Fixture"), "positive control");
    assert_eq!(run(&dir, &["cassette", "audit", "mitm"]).0, 0, "the imported cassette is clean");

    let cv = Callvcr::start(&dir, &["replay", "--cassette", "mitm", "--no-overlay", "auth", "--strict"]);
    let mut c = h1_tls(&cv, "api.mypurecloud.com").await;
    let h = [("host", "api.mypurecloud.com"), ("content-type", "application/json")];
    let r = c.send("GET", "/api/v2/users/me", &h[..1], "").await;
    assert_eq!((r.status, r.json()["id"].clone()), (200, json!("2f8c6a4e-91b3-4d57-8e0a-3b6f1c9d2e74")));
    let r = c.send("POST", "/api/v2/conversations/calls", &h, r#"{"phoneNumber":"+13175550100"}"#).await;
    assert_eq!((r.status, r.json()["id"].clone()), (200, json!("b1e0d4c7-5a92-4f36-9c81-7e2a3d6f0b58")));
    // mitmproxy wrote this body decoded beside `Content-Encoding: gzip`: it is served gzipped, as it was.
    let raw = c.send("GET", "/api/v2/conversations/calls/b1e0d4c7-5a92-4f36-9c81-7e2a3d6f0b58", &h[..1], "").await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.headers["content-encoding"], "gzip");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&raw.body[..]), &mut text).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["participants"].as_array().unwrap().len(), 2, "{text}");
    assert_eq!(cv.stop().0, 0, "every request hit");
}

#[test]
fn audit_finds_a_planted_token_and_says_where() {
    let dir = tempdir("tools-audit");
    let planted = json!({"seq": 3, "recorded_at": "2026-01-05T09:00:00.000Z", "duration_ms": 1,
        "request": {"method": "POST", "scheme": "https", "host": "api.mypurecloud.com", "path": "/api/v2/notes", "headers": [["host", "api.mypurecloud.com"]], "body": {"text": "{\"note\":\"call back\"}"}},
        "response": {"status": 200, "headers": [["content-type", "application/json"]], "body": {"text": "{\"debug\":\"sent Bearer abcdefghijklmnopqrstuvwxyz0123456789\",\"client_secret\":\"s3cr3t-value\"}"}}});
    let file = jsonl(&dir, "fx.jsonl", &[planted]);
    let (code, out, err) = run(&dir, &["cassette", "audit", &file]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("exchange 3 (POST /api/v2/notes) response body: bearer token"), "{out}");
    assert!(out.contains("field client_secret"), "{out}");
    assert!(!out.contains("abcdefghijklmnopqrstuvwxyz0123456789"), "the report shows the start only: {out}");
    let clean = jsonl(&dir, "clean.jsonl", &[]);
    assert_eq!(run(&dir, &["cassette", "audit", &clean]).0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_drops_only_what_replay_would_never_tell_apart() {
    let dir = tempdir("tools-prune");
    let e = |seq: u64, body: &str| {
        json!({"seq": seq, "recorded_at": "2026-01-05T09:00:00.000Z", "duration_ms": 1,
            "request": {"method": "GET", "scheme": "https", "host": "api.mypurecloud.com", "path": "/api/v2/counter", "headers": [], "body": {"text": ""}},
            "response": {"status": 200, "headers": [["date", format!("Mon, 05 Jan 2026 09:00:0{seq} GMT")]], "body": {"text": body}}})
    };
    // A, A, B, B, B: the first A must stay (it shifts what the next request gets); the last two Bs go.
    let extra = [e(10, "A"), e(11, "A"), e(12, "B"), e(13, "B"), e(14, "B")];
    let file = jsonl(&dir, "fx.jsonl", &extra);
    assert_eq!(run(&dir, &["cassette", "import", &file, "--name", "p"]).0, 0);
    let (code, out, _) = run(&dir, &["cassette", "prune", "p", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("would prune 2 of 7"), "{out}");
    let (code, out, _) = run(&dir, &["cassette", "prune", "p"]);
    assert_eq!(code, 0);
    assert!(out.contains("pruned 2 of 7"), "{out}");
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "p", "--no-overlay", "auth"]);
    let mut c = h1_tls(&cv, "api.mypurecloud.com").await;
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(c.send("GET", "/api/v2/counter", &[("host", "api.mypurecloud.com")], "").await.text());
    }
    assert_eq!(got, ["A", "A", "B", "B", "B"], "replay answers as before pruning");
    assert_eq!(cv.stop().0, 0);
}

#[test]
fn bad_files_are_refused_with_their_line_and_import_nothing() {
    let dir = tempdir("tools-bad");
    let good = jsonl(&dir, "good.jsonl", &[]);
    assert_eq!(run(&dir, &["cassette", "import", &good, "--name", "keep"]).0, 0);
    std::fs::write(
        dir.join("broken.jsonl"),
        format!("{}\n{{\"seq\": 1, \"nope\": true}}\n", json!({"format": "callvcr-cassette", "version": 1})),
    )
    .unwrap();
    let (code, _, err) = run(&dir, &["cassette", "import", "broken.jsonl", "--name", "keep"]);
    assert_eq!(code, 2);
    assert!(err.contains("line 2"), "{err}");
    std::fs::write(dir.join("broken.har"), "{\n  \"log\": {\n    \"entries\": [\n      {\"request\": \n").unwrap();
    let (code, _, err) = run(&dir, &["cassette", "import", "broken.har", "--name", "keep"]);
    assert_eq!(code, 2);
    assert!(err.contains("broken.har: line 5"), "{err}");
    std::fs::write(dir.join("v9.har"), r#"{"log":{"version":"9.0","entries":[]}}"#).unwrap();
    let (code, _, err) = run(&dir, &["cassette", "import", "v9.har", "--name", "keep"]);
    assert_eq!(code, 2);
    assert!(err.contains("HAR version 9.0"), "{err}");
    std::fs::write(dir.join("v9.jsonl"), format!("{}\n", json!({"format": "callvcr-cassette", "version": 9}))).unwrap();
    let (code, _, err) = run(&dir, &["cassette", "import", "v9.jsonl", "--name", "keep"]);
    assert_eq!(code, 2);
    assert!(err.contains("newer"), "{err}");
    let (_, out, _) = run(&dir, &["cassette", "show", "keep"]);
    assert!(out.contains("2 exchanges, 2 WebSocket frames"), "nothing was half-imported: {out}");
}
