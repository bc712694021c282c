//! The web inspector's server side, through the real binary: the page behind the admin API's
//! rules (token by a one-time `?token=` and an HttpOnly cookie; foreign `Host` and `Origin`
//! refused), its live event stream (journal entries as they happen, then `captured` once the
//! request is kept in full), the full request and answer of a hit and a miss, and nothing kept
//! while no page watches. (The page itself is driven in a real browser by tests/browser.)

mod support;

use support::*;
use tokio::net::TcpStream;

const API: &str = "api.mypurecloud.com";

async fn raw(cv: &Callvcr, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let tcp = TcpStream::connect(cv.admin).await.unwrap();
    let mut c = H1::over(tcp).await;
    c.send(method, path, headers, "").await
}

fn cassette(dir: &std::path::Path) {
    write_cassette(
        dir,
        "c.jsonl",
        &[
            ("GET", API, "/api/v2/users/me", "", 200, r#"{"id":"u-1","name":"Agent Smith"}"#),
            ("POST", API, "/api/v2/analytics/conversations/details/query", r#"{"order":"asc","size":25}"#, 200, "{}"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_stream_sit_behind_the_admin_rules_and_the_token() {
    let dir = tempdir("inspector-token");
    cassette(&dir);
    std::fs::write(dir.join("p.yaml"), "admin:\n  token: s3cret-admin\n").unwrap();
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "c.jsonl", "--config", "p.yaml", "--no-overlay", "auth"]);
    let own = cv.admin.to_string();
    let host = [("host", own.as_str())];
    // No token: the page says how to get in; a wrong one is refused.
    let r = raw(&cv, "GET", "/ui", &host).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("/ui?token="), "{}", r.text());
    assert_eq!(raw(&cv, "GET", "/ui?token=wrong", &host).await.status, 401);
    // The token once: a cookie only this origin's pages send, and back to the page.
    let r = raw(&cv, "GET", "/ui?token=s3cret-admin", &host).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"], "/ui");
    let cookie = r.headers["set-cookie"].to_str().unwrap().to_string();
    for part in ["callvcr_admin=s3cret-admin", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let jar = "callvcr_admin=s3cret-admin";
    let with = [("host", own.as_str()), ("cookie", jar)];
    let page = raw(&cv, "GET", "/ui", &with).await;
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(page.text().contains("app.js"), "the page loads its script from this origin");
    for f in ["/ui/app.js", "/ui/app.css"] {
        assert_eq!(raw(&cv, "GET", f, &with).await.status, 200, "{f}");
    }
    // The cookie stands for the token on the API, the bearer still works, nothing else does.
    assert_eq!(raw(&cv, "GET", "/mock/admin/health", &with).await.status, 200);
    let bearer = [("host", own.as_str()), ("authorization", "Bearer s3cret-admin")];
    assert_eq!(raw(&cv, "GET", "/mock/admin/health", &bearer).await.status, 200);
    assert_eq!(raw(&cv, "GET", "/mock/admin/health", &host).await.status, 401);
    let (status, _) = Events::open(&cv, &host).await;
    assert_eq!(status, 401, "the stream needs the token too");
    // Another site's page, or a rebound name, gets nothing: not the page, not the stream.
    let evil_origin = [("host", own.as_str()), ("cookie", jar), ("origin", "https://evil.example")];
    assert_eq!(raw(&cv, "GET", "/ui", &evil_origin).await.status, 403);
    let (status, _) = Events::open(&cv, &[("cookie", jar), ("origin", "https://evil.example")]).await;
    assert_eq!(status, 403);
    let rebound = format!("evil.example:{}", cv.admin.port());
    assert_eq!(raw(&cv, "GET", "/ui", &[("host", rebound.as_str()), ("cookie", jar)]).await.status, 403);
    // Its own origin is the page's: allowed.
    let origin = format!("http://{own}");
    let (status, mut ev) = Events::open(&cv, &[("cookie", jar), ("origin", origin.as_str())]).await;
    assert_eq!(status, 200);
    assert_eq!(ev.next("hello").await["mode"], "replay");
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watching_page_sees_each_answer_live_and_can_read_it_in_full() {
    let dir = tempdir("inspector-live");
    cassette(&dir);
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "c.jsonl", "--no-overlay", "auth"]);
    // Before any page watches, nothing is kept in full.
    let mut api = h1_tls(&cv, API).await;
    assert_eq!(api.send("GET", "/api/v2/users/me", &[("host", API)], "").await.status, 200);
    let first = journal(&cv).await[0]["seq"].as_u64().unwrap();
    let r = admin(&cv, "GET", &format!("/mock/admin/journal/{first}"), "").await;
    assert_eq!((r.status, r.json()["captured"].as_bool()), (200, Some(false)), "{}", r.text());

    let (status, mut ev) = Events::open(&cv, &[]).await;
    assert_eq!(status, 200);
    let hello = ev.next("hello").await;
    assert_eq!(hello["cassette"], "c");
    // A hit: its journal entry, timed on the virtual clock, then its capture.
    let h = [("host", API), ("authorization", "Bearer live-secret-token")];
    assert_eq!(api.send("GET", "/api/v2/users/me", &h, "").await.status, 200);
    let hit = ev.next("journal").await;
    assert_eq!((hit["answered_by"].as_str(), hit["path"].as_str()), (Some("hit"), Some("/api/v2/users/me")));
    assert!(hit["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{hit}");
    let seq = hit["seq"].as_u64().unwrap();
    let captured = ev.next("captured").await;
    assert_eq!(captured["seqs"][0], seq);
    let full = admin(&cv, "GET", &format!("/mock/admin/journal/{seq}"), "").await.json();
    assert_eq!(full["captured"], true, "{full}");
    assert_eq!(full["request"]["method"], "GET");
    assert_eq!(full["response"]["status"], 200);
    assert!(full["response"]["body"].as_str().unwrap().contains("Agent Smith"), "{full}");
    assert_eq!(full["recorded"]["status"], 200, "the recording it came from: {full}");
    // A secret in a header is shown redacted, never as sent.
    let shown = full["request"]["headers"].to_string();
    assert!(!shown.contains("live-secret-token") && shown.contains("[REDACTED]"), "{shown}");
    assert_eq!(full["redacted"], serde_json::json!(["request.header.authorization"]), "names only: {full}");

    // A miss: the page can show its closest recording and what differs.
    let r = api.send("GET", "/api/v2/users/you", &[("host", API)], "").await;
    assert_eq!(r.status, 404);
    let miss = ev.next("journal").await;
    assert_eq!(miss["answered_by"], "miss");
    ev.next("captured").await;
    let full = admin(&cv, "GET", &format!("/mock/admin/journal/{}", miss["seq"]), "").await.json();
    let body: serde_json::Value = serde_json::from_str(full["response"]["body"].as_str().unwrap()).unwrap();
    let closest = &body["closest"][0];
    assert!(closest["recorded"].as_str().unwrap().contains("/api/v2/users/me"), "{body}");
    assert!(closest["differences"].to_string().contains("path"), "{body}");
    assert_eq!(closest["parts"][0]["part"], "path", "{body}");
    assert_eq!(closest["parts"][0]["recorded"], "/api/v2/users/me");
    // A body that differs in one field: that field, side by side, and the setting that ignores it.
    let h = [("host", API), ("content-type", "application/json")];
    let q = "/api/v2/analytics/conversations/details/query";
    assert_eq!(api.send("POST", q, &h, r#"{"order":"desc","size":25}"#).await.status, 404);
    let miss = ev.next("journal").await;
    ev.next("captured").await;
    let full = admin(&cv, "GET", &format!("/mock/admin/journal/{}", miss["seq"]), "").await.json();
    assert!(full["request"]["body"].as_str().unwrap().contains("desc"), "{full}");
    let body: serde_json::Value = serde_json::from_str(full["response"]["body"].as_str().unwrap()).unwrap();
    let closest = &body["closest"][0];
    assert_eq!(
        closest["parts"],
        serde_json::json!([{"part": "body", "field": "$.order", "live": "desc", "recorded": "asc"}]),
        "{body}"
    );
    assert_eq!(closest["hint"], "match.ignore_json_paths: [$.order]");

    // An admin change is announced, so the page refetches what it shows.
    assert_eq!(admin(&cv, "POST", "/mock/admin/clock", r#"{"advance_ms": 1000}"#).await.status, 200);
    assert_eq!(ev.next("changed").await["route"], "/clock");
    // So is a fault rule firing (its count goes down).
    let rule = r#"{"match": {"path": "^/api/v2/users/me$"}, "kind": "status", "status": 503, "count": 1}"#;
    assert_eq!(admin(&cv, "POST", "/mock/admin/faults", rule).await.status, 200);
    assert_eq!(api.send("GET", "/api/v2/users/me", &[("host", API)], "").await.status, 503);
    assert_eq!(ev.next("faults").await["route"], "/faults", "the rule added");
    let fired = ev.next("faults").await;
    assert!(fired["detail"].as_str().is_some_and(|d| d.starts_with("status:")), "the rule used: {fired}");
    // The loaded cassette, with what was served.
    let listing = admin(&cv, "GET", "/mock/admin/cassette", "").await.json();
    assert_eq!(listing["total"], 2);
    assert_eq!(listing["exchanges"][0]["served"], true, "{listing}");
    assert_eq!(listing["exchanges"][1]["served"], false, "{listing}");
    assert_eq!(admin(&cv, "GET", "/mock/admin/journal/999999", "").await.status, 404);
    drop(ev);
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_shows_live_what_was_stored_and_the_names_of_what_was_redacted() {
    let dir = tempdir("inspector-record");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &record_args(&si, "rec").iter().map(String::as_str).collect::<Vec<_>>());
    let (status, mut ev) = Events::open(&cv, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(ev.next("hello").await["mode"], "record");
    let mut c = h1_tls(&cv, "login.mypurecloud.com").await;
    let h = [
        ("host", "login.mypurecloud.com"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("authorization", "Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ="),
    ];
    assert_eq!(c.send("POST", "/oauth/token", &h, "grant_type=client_credentials").await.status, 200);
    let e = ev.next("journal").await;
    assert_eq!((e["answered_by"].as_str(), e["path"].as_str()), (Some("upstream"), Some("/oauth/token")), "{e}");
    ev.next("captured").await;
    let full = admin(&cv, "GET", &format!("/mock/admin/journal/{}", e["seq"]), "").await.json();
    let names =
        full["redacted"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect::<Vec<_>>();
    for n in ["request.header.authorization", "response.body.$.access_token", "response.body.$.refresh_token"] {
        assert!(names.contains(&n.to_string()), "{n} in {names:?}");
    }
    assert_eq!(full["stored"], true, "{full}");
    let listing = admin(&cv, "GET", "/mock/admin/cassette", "").await.json();
    assert_eq!((listing["recording"].as_bool(), listing["total"].as_u64()), (Some(true), Some(1)), "{listing}");
    assert_eq!(listing["exchanges"][0]["path"], "/oauth/token");
    let text = full.to_string();
    for secret in
        ["SECRET-ACCESS-TOKEN-123", "SECRET-REFRESH-456", "SECRET-COOKIE-789", "ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ="]
    {
        assert!(!text.contains(secret), "no value ({secret}): {text}");
    }
    drop(ev);
    assert_eq!(cv.stop().0, 0);
    si.stop();
}
