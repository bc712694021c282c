//! The admin API against web pages, through the real binary: a `Host` it does not know (DNS
//! rebinding) and a foreign `Origin` (a cross-site request) get 403, a state-changing call with a
//! body that is not JSON gets 415, and callers without `Origin` (curl, tests, SDK helpers) work as
//! before; `admin.token` still applies on top.

mod support;

use support::*;
use tokio::net::TcpStream;

async fn raw(cv: &Callvcr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let tcp = TcpStream::connect(cv.admin).await.unwrap();
    let mut c = H1::over(tcp).await;
    c.send(method, path, headers, body).await
}

fn start(dir: &std::path::Path, config: &str) -> Callvcr {
    write_cassette(dir, "a.jsonl", &[("GET", "api.mypurecloud.com", "/api/v2/users/me", "", 200, r#"{"id":"u-1"}"#)]);
    std::fs::write(dir.join("a.yaml"), config).unwrap();
    Callvcr::start(
        dir,
        &[
            "replay",
            "--cassette",
            "a.jsonl",
            "--config",
            "a.yaml",
            "--clock-frozen",
            "--clock-start",
            "2026-01-05T09:00:00Z",
        ],
    )
}

const CLOCK: &str = r#"{"advance_ms": 60000}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_pages_cannot_drive_or_read_the_admin_api() {
    let dir = tempdir("admin-web");
    let cv = start(&dir, "");
    let own = cv.admin.to_string();
    let port = cv.admin.port();
    let now = |r: Resp| r.json()["now"].as_str().unwrap().to_string();
    let start_time = now(raw(&cv, "GET", "/mock/admin/clock", &[("host", &own)], "").await);

    // DNS rebinding: a foreign name on the admin port is refused, naming the setting.
    let evil = format!("evil.example:{port}");
    let r = raw(&cv, "GET", "/mock/admin/journal", &[("host", &evil)], "").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"], "forbidden_host");
    assert!(r.json()["message"].as_str().unwrap().contains("admin.allowed_hosts"), "{}", r.text());
    // The loopback names with the admin port are this listener; another port is not.
    for h in [own.clone(), format!("localhost:{port}"), format!("LOCALHOST:{port}"), format!("127.0.0.1:{port}")] {
        let r = raw(&cv, "GET", "/mock/admin/health", &[("host", &h)], "").await;
        assert_eq!(r.status, 200, "{h}: {}", r.text());
    }
    let r = raw(&cv, "GET", "/mock/admin/health", &[("host", "127.0.0.1:1")], "").await;
    assert_eq!(r.status, 403, "another port");

    // A cross-site "simple" request: refused before it does anything.
    let h = [("host", own.as_str()), ("origin", "https://evil.example"), ("content-type", "text/plain")];
    let r = raw(&cv, "POST", "/mock/admin/clock", &h, CLOCK).await;
    assert_eq!((r.status, r.json()["error"].clone()), (403, serde_json::json!("forbidden_origin")), "{}", r.text());
    assert!(r.headers.get("access-control-allow-origin").is_none(), "no CORS headers");
    // Even as JSON, a foreign origin is refused.
    let h = [("host", own.as_str()), ("origin", "https://evil.example"), ("content-type", "application/json")];
    assert_eq!(raw(&cv, "POST", "/mock/admin/clock", &h, CLOCK).await.status, 403);
    // Without Origin, a body that is not JSON cannot change state either.
    let h = [("host", own.as_str()), ("content-type", "text/plain")];
    let r = raw(&cv, "POST", "/mock/admin/clock", &h, CLOCK).await;
    assert_eq!((r.status, r.json()["error"].clone()), (415, serde_json::json!("unsupported_media_type")));
    assert_eq!(now(raw(&cv, "GET", "/mock/admin/clock", &[("host", &own)], "").await), start_time, "nothing moved");

    // Its own origin (the inspector's page) and callers without Origin work.
    let origin = format!("http://{own}");
    let h = [("host", own.as_str()), ("origin", origin.as_str()), ("content-type", "application/json")];
    assert_eq!(raw(&cv, "POST", "/mock/admin/clock", &h, CLOCK).await.status, 200);
    let h = [("host", own.as_str()), ("content-type", "application/json")];
    assert_eq!(raw(&cv, "POST", "/mock/admin/clock", &h, CLOCK).await.status, 200);
    assert_eq!(
        raw(&cv, "POST", "/mock/admin/reset", &[("host", own.as_str())], "").await.status,
        200,
        "no body, no Origin: as before"
    );
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_hosts_and_origins_are_accepted_and_the_token_still_applies() {
    let dir = tempdir("admin-web-listed");
    let cv = start(
        &dir,
        "admin:\n  token: t0ken\n  allowed_hosts: [callvcr.test]\n  allowed_origins: [\"http://inspector.test:3000\"]\n",
    );
    let port = cv.admin.port();
    let named = format!("callvcr.test:{port}");
    let bearer = [("authorization", "Bearer t0ken")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v = bearer.to_vec();
        v.extend_from_slice(extra);
        v
    };
    let mut h = with(&[]);
    h.push(("host", named.as_str()));
    assert_eq!(raw(&cv, "GET", "/mock/admin/health", &h, "").await.status, 200, "a listed name");
    let mut h = with(&[("origin", "http://inspector.test:3000"), ("content-type", "application/json")]);
    h.push(("host", named.as_str()));
    assert_eq!(raw(&cv, "POST", "/mock/admin/clock", &h, CLOCK).await.status, 200, "a listed origin");
    // The token on top: a listed origin without it is still refused.
    let h = [("host", named.as_str()), ("origin", "http://inspector.test:3000"), ("content-type", "application/json")];
    assert_eq!(raw(&cv, "POST", "/mock/admin/clock", &h, CLOCK).await.status, 401);
    let mut h = with(&[("origin", "http://other.test:3000")]);
    h.push(("host", named.as_str()));
    assert_eq!(raw(&cv, "GET", "/mock/admin/journal", &h, "").await.status, 403, "an origin not listed");
    assert_eq!(cv.stop().0, 0);
}

#[test]
fn remote_callers_need_the_names_they_use() {
    let dir = tempdir("admin-web-remote");
    std::fs::write(dir.join("r.yaml"), "admin:\n  allow_remote: true\n").unwrap();
    write_cassette(&dir, "a.jsonl", &[("GET", "api.mypurecloud.com", "/api/v2/users/me", "", 200, "{}")]);
    let (code, _, err) = run(&dir, &["replay", "--cassette", "a.jsonl", "--config", "r.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("admin.allow_remote: true needs admin.allowed_hosts"), "{err}");
}
