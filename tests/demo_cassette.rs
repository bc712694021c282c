//! The bundled demo cassette (`cassettes/demo.jsonl`): it replays, and it can be re-recorded from
//! the project's stand-in sandbox with `cargo test --test demo_cassette -- --ignored`.

mod support;

use support::*;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/cassettes/demo.jsonl");

/// The demo flow: log in as a user (code grant), read the user, list calls, place a call, read it back.
async fn flow(cv: &Callvcr) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    let r = user_login(cv, "ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ=").await;
    out.push((r.status, r.text()));
    // The token the login answered with: the stand-in's when recording, the auth overlay's in replay.
    let token =
        serde_json::from_str::<serde_json::Value>(&r.text()).unwrap()["access_token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");
    let mut api = h1_tls(cv, "api.mypurecloud.com").await;
    let h = [("host", "api.mypurecloud.com"), ("authorization", bearer.as_str()), ("content-type", "application/json")];
    for (m, p, b) in [
        ("GET", "/api/v2/users/me", ""),
        ("GET", "/api/v2/conversations/calls", ""),
        ("POST", "/api/v2/conversations/calls", r#"{"phoneNumber":"+13175550100"}"#),
        ("GET", "/api/v2/conversations/calls/5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e", ""),
    ] {
        let r = api.send(m, p, &h, b).await;
        out.push((r.status, r.text()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_demo_cassette_replays_strictly() {
    let dir = tempdir("demo");
    let cv = Callvcr::start(&dir, &["replay", "--cassette", DEMO, "--strict", "--fail-on-unused"]);
    let answers = flow(&cv).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert!(answers[1].1.contains("Agent Smith"));
    assert!(answers[4].1.contains("participants"));
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "every request hit and every recording was used: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "rewrites cassettes/demo.jsonl; run on purpose"]
async fn regenerate_demo_cassette() {
    let dir = tempdir("demo-rec");
    let si = start_stand_in(&dir).await;
    let args: Vec<String> = record_args(&si, "demo");
    let cv = Callvcr::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let answers = flow(&cv).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert_eq!(cv.stop().0, 0);
    let (code, _, err) = run(
        &dir,
        &[
            "cassette",
            "export",
            "demo",
            "--out",
            DEMO,
            "--note",
            "Recorded through callvcr from the project's own stand-in sandbox (tests/support), not from Genesys Cloud.",
        ],
    );
    assert_eq!(code, 0, "{err}");
}

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/genesys-call.jsonl");

/// The examples' flow, as the Genesys SDKs send it: log in as a user, read the user, place a call, read it,
/// hold the customer, disconnect the customer.
async fn call_flow(cv: &Callvcr) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    let r = user_login(cv, "ZXhhbXBsZS1jbGllbnQ6ZXhhbXBsZS1zZWNyZXQ=").await;
    out.push((r.status, r.text()));
    let token = r.json()["access_token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");
    let mut api = h1_tls(cv, "api.mypurecloud.com").await;
    let h = [("host", "api.mypurecloud.com"), ("authorization", bearer.as_str()), ("content-type", "application/json")];
    let call = "/api/v2/conversations/calls/5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e";
    let customer = format!("{call}/participants/8e2f3a4b-1c2d-4e5f-9a0b-1c2d3e4f5a6b");
    for (m, p, b) in [
        ("GET", "/api/v2/users/me", ""),
        ("POST", "/api/v2/conversations/calls", r#"{"phoneNumber":"+13175550100"}"#),
        ("GET", call, ""),
        ("PATCH", customer.as_str(), r#"{"held":true}"#),
        ("PATCH", customer.as_str(), r#"{"state":"disconnected"}"#),
    ] {
        let r = api.send(m, p, &h, b).await;
        out.push((r.status, r.text()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_cassette_replays_the_sdk_flow_strictly() {
    let dir = tempdir("example");
    let cv = Callvcr::start(&dir, &["replay", "--cassette", EXAMPLE, "--strict", "--fail-on-unused"]);
    let answers = call_flow(&cv).await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 202, 202], "{answers:?}");
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "every request hit and every recording was used: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "rewrites examples/genesys-call.jsonl; run on purpose"]
async fn regenerate_examples_cassette() {
    let dir = tempdir("example-rec");
    let si = start_stand_in(&dir).await;
    let args: Vec<String> = record_args(&si, "example");
    let cv = Callvcr::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let answers = call_flow(&cv).await;
    assert!(answers.iter().all(|(s, _)| *s == 200 || *s == 202), "{answers:?}");
    assert_eq!(cv.stop().0, 0);
    let (code, _, err) = run(
        &dir,
        &[
            "cassette",
            "export",
            "example",
            "--out",
            EXAMPLE,
            "--note",
            "Recorded through callvcr from the project's own stand-in sandbox (tests/support), not from Genesys Cloud.",
        ],
    );
    assert_eq!(code, 0, "{err}");
}
