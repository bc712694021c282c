//! The recording is the oracle (DESIGN's first rule), through the real binary: a sandbox that
//! differs from the platform's documentation is recorded with real TLS, and a replay with the
//! default settings answers as that sandbox did; `cassette check` says where a replay would not.

mod support;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use support::*;

fn s(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

async fn genesys_login(cv: &Callvcr, secret: &str) -> Resp {
    let mut c = h1_tls(cv, "login.mypurecloud.com").await;
    let auth = basic("org-app", secret);
    let h = [
        ("host", "login.mypurecloud.com"),
        ("authorization", auth.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    c.send("POST", "/oauth/token", &h, "grant_type=client_credentials").await
}

async fn nice_login(cv: &Callvcr, secret: &str) -> Resp {
    let mut c = h1_tls(cv, "api-na1.niceincontact.com").await;
    let h = [("host", "api-na1.niceincontact.com"), ("content-type", "application/x-www-form-urlencoded")];
    let body = format!("grant_type=password&username=KEYID-77&password={secret}&client_id=nice-app");
    c.send("POST", "/auth/token", &h, &body).await
}

async fn place_call(cv: &Callvcr, token: &str) -> Resp {
    let mut c = h1_tls(cv, "api.mypurecloud.com").await;
    let bearer = format!("Bearer {token}");
    let h = [("host", "api.mypurecloud.com"), ("authorization", bearer.as_str()), ("content-type", "application/json")];
    c.send("POST", "/api/v2/conversations/calls", &h, r#"{"phoneNumber":"+13175550100"}"#).await
}

async fn me(cv: &Callvcr, token: &str) -> Resp {
    let mut c = h1_tls(cv, "api.mypurecloud.com").await;
    let bearer = format!("Bearer {token}");
    c.send("GET", "/api/v2/users/me", &[("host", "api.mypurecloud.com"), ("authorization", bearer.as_str())], "").await
}

fn token(r: &Resp) -> String {
    r.json()["access_token"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_that_differs_from_the_documentation_replays_as_recorded() {
    let dir = tempdir("oracle-org");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "org")));
    // Recorded: a wrong secret refused, the right one accepted; a client-credentials app placing a
    // call (the documentation says it needs a user; this org allows it); no rate-limit headers; a
    // wrong NICE access key secret refused and the right one accepted.
    let wrong = genesys_login(&cv, "wrong-secret").await;
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    let right = genesys_login(&cv, "SECRET-ORG-APP-1").await;
    assert_eq!(right.status, 200);
    let placed = place_call(&cv, &token(&right)).await;
    assert_eq!(placed.status, 200);
    let who = me(&cv, &token(&right)).await;
    assert!(!who.headers.keys().any(|k| k.as_str().starts_with("inin-ratelimit-")));
    let nice_wrong = nice_login(&cv, "WRONG-KEY-SECRET").await;
    assert_eq!(nice_wrong.status, 401, "{}", nice_wrong.text());
    let nice_right = nice_login(&cv, "NICE-KEY-SECRET-OK").await;
    assert_eq!(nice_right.status, 200, "{}", nice_right.text());
    // Stopping runs `cassette check` on the recording (tests/support): it replays as recorded.
    assert_eq!(cv.stop().0, 0);
    si.stop();

    // No secret reached the cassette; ids did, and verifiers of the secrets.
    let stored = all_bytes(&dir.join("cassettes/org"));
    for secret in ["wrong-secret", "SECRET-ORG-APP-1", "WRONG-KEY-SECRET", "NICE-KEY-SECRET-OK", "SECRET-ACCESS-TOKEN"]
    {
        assert!(!contains(&stored, secret.as_bytes()), "{secret} is in the cassette");
    }
    let (code, out, err) = run(&dir, &["cassette", "export", "org", "--out", "org.jsonl"]);
    assert_eq!(code, 0, "{out}{err}");
    let exported = std::fs::read_to_string(dir.join("org.jsonl")).unwrap();
    assert!(exported.contains(r#""id":"org-app""#) && exported.contains("pbkdf2-sha256$600000$"), "{exported}");
    // A verifier is no secret: the audit finds none.
    let (code, out, err) = run(&dir, &["cassette", "audit", "org"]);
    assert_eq!(code, 0, "{out}{err}");

    // Replayed with the default settings, in recorded order: the sandbox's answers.
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "org"]);
    let r = genesys_login(&cv, "wrong-secret").await;
    assert_eq!((r.status, r.text()), (wrong.status, wrong.text()), "the recorded refusal, byte for byte");
    assert_eq!(r.headers["inin-correlation-id"], wrong.headers["inin-correlation-id"]);
    let r = genesys_login(&cv, "SECRET-ORG-APP-1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let minted = token(&r);
    assert!(!minted.is_empty() && minted != token(&right), "a token of callvcr's own");
    assert_eq!(r.json()["expires_in"], right.json()["expires_in"]);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&r.json()), keys(&right.json()), "the recorded answer's fields, in its order");
    let p = place_call(&cv, &minted).await;
    assert_eq!((p.status, p.text()), (200, placed.text()), "client credentials place calls in this org");
    let w = me(&cv, &minted).await;
    assert_eq!(w.status, 200);
    assert!(!w.headers.keys().any(|k| k.as_str().starts_with("inin-ratelimit-")), "none recorded, none replayed");
    let r = nice_login(&cv, "WRONG-KEY-SECRET").await;
    assert_eq!((r.status, r.text()), (401, nice_wrong.text()));
    let r = nice_login(&cv, "NICE-KEY-SECRET-OK").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["expires_in"], 3600);
    assert_eq!(cv.stop().0, 0);

    // Out of the recorded order, the secrets still decide: the right one first gets a token, a
    // wrong one the recorded refusal, and one the recording never saw is wrong too.
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "org"]);
    assert_eq!(genesys_login(&cv, "SECRET-ORG-APP-1").await.status, 200);
    let r = genesys_login(&cv, "wrong-secret").await;
    assert_eq!((r.status, r.text()), (401, wrong.text()));
    let r = genesys_login(&cv, "never-seen-secret").await;
    assert_eq!((r.status, r.text()), (401, wrong.text()), "a secret the recording never saw accepted");
    assert_eq!(nice_login(&cv, "NICE-KEY-SECRET-OK").await.status, 200);
    assert_eq!(nice_login(&cv, "ANOTHER-WRONG").await.status, 401);
    assert_eq!(cv.stop().0, 0);
}

#[test]
fn every_shipped_cassette_replays_as_recorded() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempdir("oracle-shipped");
    let mut checked = 0;
    for sub in ["cassettes", "examples", "tests/fixtures"] {
        for entry in std::fs::read_dir(root.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.to_string_lossy().into_owned();
            if !(name.ends_with(".jsonl") || name.ends_with(".har")) {
                continue;
            }
            // Checked with no proxy.yaml: the defaults, as a new user has them.
            let (code, out, err) = run(&dir, &["cassette", "check", &name]);
            assert_eq!(code, 0, "{name}:\n{out}\n{err}");
            assert!(out.contains("replayed as recorded"), "{out}");
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked} cassettes checked");
}

#[test]
fn a_check_names_the_overlay_and_rule_that_answered_differently() {
    let dir = tempdir("oracle-diff");
    let call = r#"{"phoneNumber":"+13175550100"}"#;
    write_cassette(
        &dir,
        "d.jsonl",
        &[
            ("POST", "api.mypurecloud.com", "/api/v2/conversations/calls", call, 200, r#"{"id":"c-1"}"#),
            ("GET", "api.mypurecloud.com", "/api/v2/users/me", "", 200, r#"{"id":"u-1"}"#),
        ],
    );
    let (code, out, _) = run(&dir, &["cassette", "check", "d.jsonl"]);
    assert_eq!(code, 0, "{out}");
    // A pinned field the recording lacks, and rate-limit headers asked for: both depart from it.
    std::fs::write(
        dir.join("p.yaml"),
        "validate:\n  required:\n    - {method: POST, path: \"^/api/v2/conversations/calls$\", fields: [callerId]}\nrate_limit:\n  headers: true\n",
    )
    .unwrap();
    let (code, out, err) = run(&dir, &["cassette", "check", "d.jsonl", "--config", "p.yaml"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("#1 POST api.mypurecloud.com/api/v2/conversations/calls: answered by overlay:validate (bad.request: Validation failed: `callerId` is required"), "{out}");
    assert!(out.contains("    status: recorded 200, replayed 400"), "{out}");
    assert!(out.contains("header inin-ratelimit-count: not recorded, replayed \"2\""), "{out}");
    assert!(out.contains("2 of 2 exchanges answered differently from the recording"), "{out}");
}

/// One random step of an SDK's session against the stand-in.
async fn random_step(cv: &Callvcr, rng: &mut Rng, bearer: &mut String, refresh: &mut Option<String>) {
    let api = "api.mypurecloud.com";
    let call = "/api/v2/conversations/calls/5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e";
    let with_bearer = |b: &str| format!("Bearer {b}");
    match rng.below(11) {
        0 => *bearer = token(&genesys_login(cv, "SECRET-ORG-APP-1").await),
        1 => {
            genesys_login(cv, "wrong-secret").await;
        }
        2 => {
            me(cv, bearer).await;
        }
        3 => {
            let body = serde_json::json!({"n": rng.below(1000), "tag": format!("t{}", rng.below(50))}).to_string();
            let mut c = h1_tls(cv, api).await;
            let b = with_bearer(bearer);
            let h = [("host", api), ("authorization", b.as_str()), ("content-type", "application/json")];
            c.send("POST", "/api/v2/echo", &h, &body).await;
        }
        4 => {
            let mut c = h1_tls(cv, api).await;
            let b = with_bearer(bearer);
            c.send("GET", "/api/v2/counter", &[("host", api), ("authorization", b.as_str())], "").await;
        }
        5 => {
            place_call(cv, bearer).await;
        }
        6 => {
            let mut c = h1_tls(cv, api).await;
            let b = with_bearer(bearer);
            c.send("GET", call, &[("host", api), ("authorization", b.as_str())], "").await;
        }
        7 => {
            let body = [r#"{"state":"disconnected"}"#, r#"{"held":true}"#, r#"{"held":false}"#, r#"{"muted":true}"#]
                [rng.below(4) as usize];
            let mut c = h1_tls(cv, api).await;
            let b = with_bearer(bearer);
            let h = [("host", api), ("authorization", b.as_str()), ("content-type", "application/json")];
            let p = format!("{call}/participants/8e2f3a4b-1c2d-4e5f-9a0b-1c2d3e4f5a6b");
            c.send("PATCH", &p, &h, body).await;
        }
        8 => {
            nice_login(cv, if rng.below(2) == 0 { "NICE-KEY-SECRET-OK" } else { "WRONG-KEY-SECRET" }).await;
        }
        9 => {
            let h = [("host", "login.mypurecloud.com")];
            let mut c = h1_tls(cv, "login.mypurecloud.com").await;
            let q = "/oauth/authorize?response_type=code&client_id=org-app&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&state=s1";
            let r = c.send("GET", q, &h, "").await;
            let loc = r.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let code = loc.split("code=").nth(1).and_then(|c| c.split('&').next()).unwrap_or("").to_string();
            let auth = basic("org-app", "SECRET-ORG-APP-1");
            let h = [
                ("host", "login.mypurecloud.com"),
                ("authorization", auth.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
            ];
            let body = format!("grant_type=authorization_code&code={code}&redirect_uri=http%3A%2F%2Flocalhost%2Fcb");
            let t = c.send("POST", "/oauth/token", &h, &body).await.json();
            *bearer = t["access_token"].as_str().unwrap_or_default().to_string();
            *refresh = t["refresh_token"].as_str().map(String::from);
        }
        _ => {
            if let Some(r) = refresh.clone() {
                let auth = basic("org-app", "SECRET-ORG-APP-1");
                let mut c = h1_tls(cv, "login.mypurecloud.com").await;
                let h = [
                    ("host", "login.mypurecloud.com"),
                    ("authorization", auth.as_str()),
                    ("content-type", "application/x-www-form-urlencoded"),
                ];
                let t = c
                    .send("POST", "/oauth/token", &h, &format!("grant_type=refresh_token&refresh_token={r}"))
                    .await
                    .json();
                *bearer = t["access_token"].as_str().unwrap_or_default().to_string();
                *refresh = t["refresh_token"].as_str().map(String::from);
            }
        }
    }
}

/// Random sessions (logins right and wrong, reads, creates, call moves, code grants and refreshes,
/// NICE logins) recorded from the stand-in: every one replays as recorded (`cassette check`, run by
/// `Callvcr::stop` after each recording), and a replay through the binary in recorded order gets
/// the recorded statuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_recorded_sessions_replay_as_recorded() {
    let base: u64 =
        std::env::var("CALLVCR_PROPERTY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x005e_ed0f_ca11);
    let dir = tempdir("oracle-random");
    let si = start_stand_in(&dir).await;
    for round in 0..6u64 {
        let seed = base.wrapping_add(round).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let name = format!("random-{round}");
        let cv = Callvcr::start(&dir, &s(&record_args(&si, &name)));
        let mut rng = Rng(seed);
        let (mut bearer, mut refresh) = (String::new(), None);
        for _ in 0..10 {
            random_step(&cv, &mut rng, &mut bearer, &mut refresh).await;
        }
        // stop() runs `cassette check` on the recording; say which seed made it.
        let check = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cv.stop()));
        match check {
            Ok((code, log)) => assert_eq!(code, 0, "seed {seed}: {log}"),
            Err(e) => panic!("seed {seed} (CALLVCR_PROPERTY_SEED={base}, round {round}): {e:?}"),
        }
    }
    si.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_token_gets_the_recording_only_when_it_was_recorded_without_one() {
    let dir = tempdir("oracle-notoken");
    let api = "api.mypurecloud.com";
    let ex = |seq: u64, path: &str, auth: Option<&str>| {
        let mut headers = vec![serde_json::json!(["host", api])];
        if let Some(a) = auth {
            headers.push(serde_json::json!(["authorization", a]));
        }
        serde_json::json!({
            "seq": seq, "recorded_at": "2026-01-05T09:00:00.000Z", "duration_ms": 1,
            "request": {"method": "GET", "scheme": "https", "host": api, "path": path, "headers": headers, "body": {"text": ""}},
            "response": {"status": 200, "headers": [["content-type", "application/json"]], "body": {"text": "{\"ok\": true}"}},
        })
        .to_string()
    };
    let text = format!(
        "{{\"format\":\"callvcr-cassette\",\"version\":1}}\n{}\n{}\n{}\n",
        ex(1, "/api/v2/users/me", Some("[REDACTED]")),
        ex(2, "/api/v2/routing/queues", None),
        ex(3, "/api/v2/routing/skills", Some("Bearer ")),
    );
    std::fs::write(dir.join("nt.jsonl"), text).unwrap();
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "nt.jsonl"]);
    let get = |path: &'static str| {
        let cv = &cv;
        async move {
            let mut c = h1_tls(cv, api).await;
            c.send("GET", path, &[("host", api)], "").await
        }
    };
    // Recorded with a token: the platform's rule answers one sent without.
    let r = get("/api/v2/users/me").await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["code"], "authentication.required");
    // Recorded without one, or with an empty bearer: the recording answers.
    assert_eq!(get("/api/v2/routing/queues").await.status, 200);
    assert_eq!(get("/api/v2/routing/skills").await.status, 200);
    let j = journal(&cv).await;
    let by: Vec<&str> = j.iter().map(|e| e["answered_by"].as_str().unwrap()).collect();
    assert_eq!(by, vec!["overlay:auth", "hit", "hit"]);
    cv.stop_unchecked();
}
