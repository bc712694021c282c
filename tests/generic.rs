//! The generic platform through the binary: a user's own REST API (`api.example.test`) listed in
//! `proxy.yaml` beside Genesys records and replays with auth (an RFC 6749 token endpoint, bearers
//! checked when presented), faults and rate limits, its errors as RFC 7807 problems.

mod support;

use support::*;

const HOSTS: &str = "hosts:\n  - api.mypurecloud.com\n  - login.mypurecloud.com\n  - api.example.test\n";

async fn token(c: &mut H1, basic: &str) -> Resp {
    let auth = format!("Basic {basic}");
    let h = [
        ("host", "api.example.test"),
        ("authorization", auth.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    c.send("POST", "/oauth/token", &h, "grant_type=client_credentials").await
}

async fn get(c: &mut H1, path: &str, bearer: Option<&str>) -> Resp {
    let auth = bearer.map(|b| format!("Bearer {b}"));
    let mut h = vec![("host", "api.example.test")];
    if let Some(a) = &auth {
        h.push(("authorization", a.as_str()));
    }
    c.send("GET", path, &h, "").await
}

fn is_problem(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.headers["content-type"], "application/problem+json", "{:?}", r.headers);
    let v = r.json();
    assert_eq!(v["status"], status, "{v}");
    assert_eq!(v["type"], "about:blank", "{v}");
    assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()) && v["detail"].is_string(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_own_api_records_and_replays_with_auth_faults_and_rate_limits() {
    let dir = tempdir("generic");
    let si = start_stand_in(&dir).await;
    std::fs::write(dir.join("proxy.yaml"), HOSTS).unwrap();
    let args = record_args(&si, "own-api");
    let cv = Callvcr::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut c = h1_tls(&cv, "api.example.test").await;
    // base64 of app-1:s3cret
    let t = token(&mut c, "YXBwLTE6czNjcmV0").await;
    assert_eq!(t.status, 200, "{}", t.text());
    let live = t.json()["access_token"].as_str().unwrap().to_string();
    let r = get(&mut c, "/api/v2/counter", Some(&live)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("2 exchanges"), "{log}");

    // Replay, with a rate limit on the user's API and its own token lifetime.
    std::fs::write(
        dir.join("proxy.yaml"),
        format!(
            "{HOSTS}rate_limit:\n  rules:\n    - {{host: api.example.test, path: \"^/api/\", limit: 1, window_s: 60}}\nauth:\n  ttl_s:\n    generic: 1200\n"
        ),
    )
    .unwrap();
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "own-api"]);
    let mut c = h1_tls(&cv, "api.example.test").await;
    let t = token(&mut c, "YXBwLTE6czNjcmV0").await;
    assert_eq!(t.status, 200, "{}", t.text());
    let v = t.json();
    let minted = v["access_token"].as_str().unwrap().to_string();
    assert_ne!(minted, live, "the token is minted on the virtual clock, not the recorded one");
    assert_eq!(v["expires_in"], 1200, "auth.ttl_s.generic: {v}");
    let r = get(&mut c, "/api/v2/counter", Some(&minted)).await;
    assert_eq!((r.status, r.json()["n"].clone()), (200, serde_json::json!(0)), "{}", r.text());

    // A bearer this run never issued, on a request the recording does not show: RFC 6750's
    // challenge with a problem body.
    let r = get(&mut c, "/api/v2/other", Some("not-a-token")).await;
    is_problem(&r, 401);
    assert!(r.headers["www-authenticate"].to_str().unwrap().starts_with("Bearer error=\"invalid_token\""));
    // No bearer at all: a generic API is not assumed to need one (the cassette answers: a miss).
    let r = get(&mut c, "/api/v2/other", None).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.headers["x-callvcr-miss"], "1");

    // The rate limit (one call a minute per token): the second call is refused, with Retry-After.
    let r = get(&mut c, "/api/v2/counter", Some(&minted)).await;
    is_problem(&r, 429);
    assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
    assert_eq!(r.json()["code"], "too_many_requests");

    // An injected fault on the user's host answers as a problem too.
    let added = admin(
        &cv,
        "POST",
        "/mock/admin/faults",
        r#"{"match":{"host":"api.example.test"},"kind":"status","status":503,"count":1}"#,
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.text());
    let r = get(&mut c, "/api/v2/counter", Some(&minted)).await;
    is_problem(&r, 503);
    assert_eq!(r.headers["x-callvcr-fault"], "status");

    // A wrong client secret on the token endpoint: RFC 6749's error body, not a problem.
    // base64 of app-1:wrong-secret
    let r = token(&mut c, "YXBwLTE6d3Jvbmctc2VjcmV0").await;
    assert!(r.status == 400 || r.status == 401, "{}", r.text());
    assert!(r.json()["error"].is_string() && r.json()["error_description"].is_string(), "{}", r.text());
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "{log}");
}
