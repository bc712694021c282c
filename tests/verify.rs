//! `callvcr verify` through the binary against the stand-in sandbox, which is changed between the
//! recording and the run (its `Drift` switches): exactly what changed is reported, by category and
//! exchange (and nothing when nothing changed); writes wait for `--mutations`; ids made live are
//! learned and written into later requests; a 429 is waited out; no secret is printed; `--update`
//! writes a cassette that replays the live answers, their times moved onto the recording's clock
//! (a recording made a month before the run included). The examples' cassette, the Genesys SDK's
//! recorded call flow, verifies with zero drift.

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use support::*;
use tokio::net::TcpStream;

/// `verify-client:recorded-secret`, as the app recorded its sign-in.
const RECORDED_BASIC: &str = "dmVyaWZ5LWNsaWVudDpyZWNvcmRlZC1zZWNyZXQ=";
/// The client secret the run reads from the environment.
const LIVE_SECRET: &str = "SECRET-CLIENT-SECRET-000";

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

async fn ws_connect(cv: &Callvcr, path: &str) -> Ws {
    let host = "streaming.mypurecloud.com";
    let tcp = TcpStream::connect(cv.tls).await.unwrap();
    let tls = tls_over(tcp, host, client_config(&cv.ca_path(), &[b"http/1.1"])).await.unwrap();
    tokio_tungstenite::client_async(format!("wss://{host}{path}"), tls).await.unwrap().0
}

/// The next call event (heartbeats apart), within [`WAIT`].
async fn next_event(ws: &mut Ws) -> Value {
    let what = "a call event on the recorded channel";
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m =
            tokio::time::timeout_at(deadline, ws.next()).await.unwrap_or_else(|_| panic!("{what}")).unwrap().unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["eventBody"]["message"] != "WebSocket Heartbeat" {
                return v;
            }
        }
    }
}

async fn api(cv: &Callvcr, token: &str, method: &str, path: &str, body: &str) -> Resp {
    let mut c = h1_tls(cv, "api.mypurecloud.com").await;
    let auth = format!("Bearer {token}");
    let h = [("host", "api.mypurecloud.com"), ("authorization", auth.as_str()), ("content-type", "application/json")];
    c.send(method, path, &h, body).await
}

/// Records the flow the tests verify from the stand-in, as cassette `name`: a user sign-in,
/// reads, a notification channel with its subscription, a call placed (its events arrive on the
/// channel) and read. `with_channel: false` leaves the channel and the call out. (A hold would
/// move the call, and replay's state overlay would publish that move on the channel, which the
/// stand-in does not: the recording would not replay as recorded.)
async fn record(dir: &Path, si: &StandIn, name: &str, with_channel: bool) {
    let cv = Callvcr::start(dir, &s(&record_args(si, name)));
    let login = user_login(&cv, RECORDED_BASIC).await;
    assert_eq!(login.status, 200, "{}", login.text());
    let token = login.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(api(&cv, &token, "GET", "/api/v2/users/me", "").await.status, 200);
    if !with_channel {
        assert_eq!(cv.stop().0, 0);
        return;
    }
    assert_eq!(api(&cv, &token, "GET", "/api/v2/presencedefinitions", "").await.status, 200);
    assert_eq!(api(&cv, &token, "GET", "/api/v2/conversations/calls", "").await.status, 200);
    let ch = api(&cv, &token, "POST", "/api/v2/notifications/channels", "").await.json();
    let path = ch["connectUri"].as_str().unwrap().trim_start_matches("wss://streaming.mypurecloud.com").to_string();
    let mut ws = ws_connect(&cv, &path).await;
    let sub = format!("/api/v2/notifications/channels/{CHANNEL_ID}/subscriptions");
    assert_eq!(api(&cv, &token, "PUT", &sub, &json!([{"id": CALLS_TOPIC}]).to_string()).await.status, 200);
    let placed = api(&cv, &token, "POST", "/api/v2/conversations/calls", r#"{"phoneNumber":"+13175550100"}"#).await;
    assert_eq!(placed.json()["id"], CALL_ID);
    assert_eq!(next_event(&mut ws).await["eventBody"]["participants"][0]["state"], "alerting");
    assert_eq!(next_event(&mut ws).await["eventBody"]["participants"][0]["state"], "connected");
    let call = format!("/api/v2/conversations/calls/{CALL_ID}");
    assert_eq!(api(&cv, &token, "GET", &call, "").await.status, 200);
    ws.close(None).await.unwrap();
    wait_for_log(&cv, "WebSocket session recorded").await;
    let (code, log) = cv.stop();
    assert_eq!(code, 0, "{log}");
}

fn s(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `callvcr verify --cassette NAME` against the stand-in with `extra` flags and the sandbox
/// credentials in the environment; (exit code, stdout, stderr).
async fn verify(dir: &Path, si: &StandIn, cassette: &str, extra: &[&str]) -> (i32, String, String) {
    let env = [("CALLVCR_CLIENT_ID", "verify-client"), ("CALLVCR_CLIENT_SECRET", LIVE_SECRET)];
    verify_env(dir, si, cassette, extra, &env).await
}

/// [`verify`] with the environment `env`.
async fn verify_env(
    dir: &Path,
    si: &StandIn,
    cassette: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let resolve = format!("*={}", si.addr);
    let ca = si.ca_path.display().to_string();
    let mut args = vec!["verify", "--cassette", cassette, "--resolve", &resolve, "--upstream-ca", &ca];
    args.extend_from_slice(extra);
    run_env(dir, &args, env).await
}

/// The summary of a JSON report: each category's exchanges.
fn summary(report: &Value) -> Value {
    report["summary"].clone()
}

/// Each exchange's (seq, request, outcome).
fn outcomes(report: &Value) -> Vec<(u64, String, String)> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["seq"].as_u64().unwrap(),
                r["request"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The seq of the recorded exchange whose request is `method host/path`.
fn seq_of(report: &Value, request: &str) -> u64 {
    outcomes(report).into_iter().find(|(_, r, _)| r == request).unwrap_or_else(|| panic!("no {request} in {report}")).0
}

/// Asserts no secret the stand-in issued or the run was given is in `text`.
fn no_secret(what: &str, text: &[u8]) {
    for secret in SECRETS {
        assert!(!contains(text, secret.as_bytes()), "{what} holds {secret}");
    }
    assert!(!contains(text, b"STAND-IN-CODE-1"), "{what} holds the sign-in code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_sandbox_gives_zero_drift_and_writes_wait_for_mutations() {
    let dir = tempdir("verify-same");
    let si = start_stand_in(&dir).await;
    record(&dir, &si, "flow", true).await;
    let before = si.seen.lock().unwrap().len();

    let (code, out, err) = verify(&dir, &si, "flow", &["--fail-on-drift", "--format", "json"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["drifted"], 0, "{out}");
    assert_eq!(report["unverified"], 0, "{out}");
    for (_, seqs) in summary(&report).as_object().unwrap() {
        assert_eq!(seqs, &json!([]), "{out}");
    }
    // The writes are left out, and so is the read of the call only a write would have made.
    let place = seq_of(&report, "POST api.mypurecloud.com/api/v2/conversations/calls");
    let skipped: Vec<(u64, String)> =
        outcomes(&report).into_iter().filter(|(_, _, o)| o == "skipped").map(|(s, r, _)| (s, r)).collect();
    assert_eq!(
        skipped,
        [
            (place, "POST api.mypurecloud.com/api/v2/conversations/calls".to_string()),
            (place + 1, format!("GET api.mypurecloud.com/api/v2/conversations/calls/{CALL_ID}")),
        ],
        "{out}"
    );
    let reasons: Vec<&str> =
        report["results"].as_array().unwrap().iter().filter_map(|r| r["reason"].as_str()).collect();
    assert_eq!(reasons[0], "changes the sandbox (--mutations sends it)");
    assert_eq!(reasons[1], format!("uses what #{place} would have made, and #{place} was not sent"));
    // The sandbox saw no write but the sign-in and the notification channel's own plumbing.
    let writes: Vec<String> = si.seen.lock().unwrap()[before..]
        .iter()
        .filter(|s| s.method != "GET")
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(
        writes,
        [
            "POST /oauth/token".to_string(),
            "POST /api/v2/notifications/channels".into(),
            format!("PUT /api/v2/notifications/channels/{CHANNEL_ID}/subscriptions"),
        ]
    );

    // With --mutations everything is sent, and it all still answers as recorded.
    let (code, out, err) = verify(&dir, &si, "flow", &["--fail-on-drift", "--mutations"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("0 skipped, 0 not verified"), "{out}");
    assert!(out.ends_with("no drift: the 10 verified exchanges answer as recorded\n"), "{out}");
    no_secret("the report", out.as_bytes());
    no_secret("the log", err.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_sandbox_reports_exactly_what_changed_and_update_replays_it() {
    let dir = tempdir("verify-drift");
    let si = start_stand_in(&dir).await;
    record(&dir, &si, "flow", true).await;
    si.drift.api.store(true, Ordering::SeqCst);
    si.drift.new_ids.store(true, Ordering::SeqCst);
    si.drift.rate_limit_once.store(true, Ordering::SeqCst);
    let before = si.seen.lock().unwrap().len();

    let args = ["--mutations", "--fail-on-drift", "--format", "json", "--out", "flow.verify.json", "--update"];
    let (code, out, err) = verify(&dir, &si, "flow", &args).await;
    assert_eq!(code, 1, "drift fails the run with --fail-on-drift: {out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(std::fs::read_to_string(dir.join("flow.verify.json")).unwrap(), out, "--out writes the same report");
    let me = seq_of(&report, "GET api.mypurecloud.com/api/v2/users/me");
    let presence = seq_of(&report, "GET api.mypurecloud.com/api/v2/presencedefinitions");
    let list = seq_of(&report, "GET api.mypurecloud.com/api/v2/conversations/calls");
    let channel = seq_of(&report, &format!("GET streaming.mypurecloud.com/channels/{CHANNEL_ID}"));
    assert_eq!(
        summary(&report),
        json!({"status": [presence], "schema": [me, list], "headers": [me], "websocket": [channel], "timing": []}),
        "{out}"
    );
    let drift_of = |seq: u64| -> Vec<(String, String, String)> {
        let r = report["results"].as_array().unwrap().iter().find(|r| r["seq"] == seq).unwrap();
        r["drift"]
            .as_array()
            .map(|d| {
                d.iter()
                    .map(|d| {
                        (
                            d["category"].as_str().unwrap().into(),
                            d["at"].as_str().unwrap().into(),
                            d["change"].as_str().unwrap().into(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        drift_of(me),
        [t("schema", "$.department", "field added (string)"), t("headers", "deprecation", "added (\"true\")")]
    );
    assert_eq!(drift_of(presence), [t("status", "status", "changed from 200 to 404")]);
    assert_eq!(
        drift_of(list),
        [t("schema", "$.pageCount", "field removed"), t("schema", "$.total", "type changed from number to string")]
    );
    assert_eq!(
        drift_of(channel),
        [
            t("websocket", "v2.users.u-1.conversations.calls $.eventBody.mediaType", "field added (string)"),
            t("websocket", "v2.users.u-1.conversations.calls $.version", "type changed from string to number"),
        ]
    );
    assert_eq!((report["drifted"].as_u64(), report["unverified"].as_u64()), (Some(4), Some(0)), "{out}");
    // The 429 was waited out and counted, not reported.
    assert_eq!(report["rate_limited"]["answers"], 1, "{out}");
    assert!(report["rate_limited"]["waited_ms"].as_u64().unwrap() >= 1000, "{out}");
    // Ids made live differ; they were learned and written into the later requests.
    let ids: Vec<(String, String)> = report["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["recorded"].as_str().unwrap().into(), l["live"].as_str().unwrap().into()))
        .collect();
    assert!(ids.contains(&(CHANNEL_ID.to_string(), NEW_CHANNEL_ID.to_string())), "{out}");
    assert!(ids.contains(&(CALL_ID.to_string(), NEW_CALL_ID.to_string())), "{out}");
    let sent: Vec<(String, String, Option<String>, Bytes)> = si.seen.lock().unwrap()[before..]
        .iter()
        .map(|s| {
            let auth = s.headers.get("authorization").map(|v| v.to_str().unwrap().to_string());
            (s.method.clone(), s.path.clone(), auth, s.body.clone())
        })
        .collect();
    let paths: Vec<String> = sent.iter().map(|(m, p, _, _)| format!("{m} {p}")).collect();
    for want in [
        format!("GET /channels/{NEW_CHANNEL_ID}"),
        format!("PUT /api/v2/notifications/channels/{NEW_CHANNEL_ID}/subscriptions"),
        format!("GET /api/v2/conversations/calls/{NEW_CALL_ID}"),
    ] {
        assert!(paths.contains(&want), "{want} in {paths:?}");
    }
    assert!(!paths.iter().any(|p| p.contains(CALL_ID)), "the recorded call id is not sent: {paths:?}");
    // It signed in itself: the live code, the client secret from the environment, and the live
    // token where the recording had its redacted one.
    let token = sent.iter().find(|(m, p, _, _)| m == "POST" && p == "/oauth/token").unwrap();
    assert!(contains(&token.3, b"code=STAND-IN-CODE-1"), "{:?}", token.3);
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("verify-client:{LIVE_SECRET}"));
    assert_eq!(token.2.as_deref(), Some(format!("Basic {basic}").as_str()));
    for (m, p, auth, _) in sent.iter().filter(|(_, p, _, _)| p.starts_with("/api/v2/")) {
        assert_eq!(auth.as_deref(), Some("Bearer SECRET-ACCESS-TOKEN-123"), "{m} {p}");
    }
    no_secret("the report", out.as_bytes());
    no_secret("the log", err.as_bytes());
    no_secret("the cassettes", &all_bytes(&dir.join("cassettes")));
    assert!(!contains(err.as_bytes(), basic.as_bytes()));
    assert!(err.contains("wrote") && err.contains("flow-verified"), "{err}");

    // The updated cassette replays the live answers (and the recorded rest), and a replay of it
    // reproduces it.
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "flow-verified"]);
    let token = user_login(&cv, RECORDED_BASIC).await.json()["access_token"].as_str().unwrap().to_string();
    let me = api(&cv, &token, "GET", "/api/v2/users/me", "").await;
    assert_eq!(me.json()["department"], "Support");
    assert_eq!(me.headers["deprecation"], "true");
    assert_eq!(api(&cv, &token, "GET", "/api/v2/presencedefinitions", "").await.status, 404);
    assert_eq!(api(&cv, &token, "GET", "/api/v2/conversations/calls", "").await.json()["total"], "0");
    let placed = api(&cv, &token, "POST", "/api/v2/conversations/calls", r#"{"phoneNumber":"+13175550100"}"#).await;
    assert_eq!(placed.json()["id"], CALL_ID, "an exchange that did not drift keeps its recording");
    cv.stop_unchecked();
    let (code, out, err) = run(&dir, &["cassette", "check", "flow-verified"]);
    assert_eq!(code, 0, "{out}\n{err}");
}

/// The JSON body of a cassette line's response, stored as JSON or as text.
fn response_json(line: &Value) -> Value {
    let body = &line["response"]["body"];
    match body.get("json") {
        Some(j) => j.clone(),
        None => serde_json::from_str(body["text"].as_str().unwrap_or("null")).unwrap_or(Value::Null),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_a_month_after_the_recording_keeps_the_live_answers_on_the_recordings_clock() {
    let dir = tempdir("verify-month");
    let si = start_stand_in(&dir).await;
    record(&dir, &si, "flow", true).await;
    let (code, out, err) = run(&dir, &["cassette", "export", "flow", "--out", "flow.jsonl"]);
    assert_eq!(code, 0, "{out}\n{err}");
    // The same recording, as if made 30 days ago.
    const MONTH_MS: i64 = 30 * 86_400_000;
    let ms = |t: &str| callvcr::clock::parse_rfc3339(t).unwrap();
    let text = std::fs::read_to_string(dir.join("flow.jsonl")).unwrap();
    let mut earlier = String::new();
    for line in text.lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        if let Some(at) = v.get("recorded_at").and_then(Value::as_str).map(String::from) {
            v["recorded_at"] = json!(callvcr::clock::rfc3339_ms(ms(&at) - MONTH_MS));
        }
        earlier.push_str(&format!("{v}\n"));
    }
    std::fs::write(dir.join("month-ago.jsonl"), earlier).unwrap();

    // The call read now drifts (a field added), so --update takes its live answer.
    si.drift.call_field.store(true, Ordering::SeqCst);
    let (code, out, err) =
        verify(&dir, &si, "month-ago.jsonl", &["--mutations", "--update", "--into", "moved.jsonl"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let call_path = format!("/api/v2/conversations/calls/{CALL_ID}");
    let call_line = |file: &str| -> Value {
        std::fs::read_to_string(dir.join(file))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["request"]["method"] == "GET" && v["request"]["path"] == call_path.as_str())
            .unwrap_or_else(|| panic!("the call read in {file}"))
    };
    let moved = call_line("moved.jsonl");
    let answer = response_json(&moved);
    assert_eq!(answer["securePause"], false, "the live answer was taken: {answer}");
    // The stand-in answers a call started a minute before it was read. On the recording's clock
    // that is a minute before the call read's recorded time, a month ago, not a minute ago.
    let read_at = ms(moved["recorded_at"].as_str().unwrap());
    assert_eq!(moved["recorded_at"], call_line("month-ago.jsonl")["recorded_at"]);
    let started = ms(answer["startTime"].as_str().unwrap());
    let off_by = started - (read_at - 60_000);
    assert!(
        off_by.abs() < 5 * 60_000,
        "startTime {} is {off_by} ms from a minute before the read",
        answer["startTime"]
    );
    for p in answer["participants"].as_array().unwrap() {
        let connected = ms(p["connectedTime"].as_str().unwrap());
        assert!((started..started + 10_000).contains(&connected), "{p} moved with the call");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_mutations_a_drifted_sandbox_reports_the_reads_and_lists_the_writes() {
    let dir = tempdir("verify-reads");
    let si = start_stand_in(&dir).await;
    record(&dir, &si, "flow", true).await;
    si.drift.api.store(true, Ordering::SeqCst);
    si.drift.new_ids.store(true, Ordering::SeqCst);
    let (code, out, err) = verify(&dir, &si, "flow", &[]).await;
    assert_eq!(code, 0, "drift alone does not fail a run without --fail-on-drift: {err}");
    // The text report: a line per category with the exchanges behind it.
    let line = |c: &str| line_of(&out, c);
    assert!(line("status").ends_with(" 1  #4"), "{out}");
    assert!(line("schema").ends_with(" 2  #3 #5"), "{out}");
    assert!(line("headers").ends_with(" 1  #3"), "{out}");
    assert!(line("websocket").trim_end().ends_with(" 0"), "the call's events wait for the call: {out}");
    assert!(
        out.contains(
            "#9 POST api.mypurecloud.com/api/v2/conversations/calls: changes the sandbox (--mutations sends it)"
        ),
        "{out}"
    );
    assert!(out.contains(&format!("{CHANNEL_ID} → {NEW_CHANNEL_ID}")), "the channel made live is learned: {out}");
    assert!(out.ends_with("drift in 3 of 8 verified exchanges; 0 not verified\n"), "{out}");
    no_secret("the report", out.as_bytes());
    no_secret("the log", err.as_bytes());

    // --update --into a file: the recording as JSON Lines, the drifted answers live.
    let (code, _, err) = verify(&dir, &si, "flow", &["--update", "--into", "updated.jsonl"]).await;
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(dir.join("updated.jsonl")).unwrap();
    let statuses: Vec<(String, u64)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("request").is_some())
        .map(|v| (v["request"]["path"].as_str().unwrap().to_string(), v["response"]["status"].as_u64().unwrap()))
        .collect();
    assert!(statuses.contains(&("/api/v2/presencedefinitions".to_string(), 404)), "{statuses:?}");
    assert!(statuses.contains(&("/api/v2/conversations/calls".to_string(), 200)), "{statuses:?}");
    assert_eq!(statuses.len(), 10, "every exchange, skipped ones as recorded");
    no_secret("the updated cassette", text.as_bytes());

    // Fields named volatile for matching (`match.ignore_json_paths`) are not drift either.
    std::fs::write(dir.join("proxy.yaml"), "match:\n  ignore_json_paths: [total, pageCount]\n").unwrap();
    let (_, out, _) = verify(&dir, &si, "flow", &[]).await;
    assert!(line_of(&out, "schema").ends_with(" 1  #3"), "{out}");
}

/// The report's line for a category.
fn line_of(out: &str, category: &str) -> String {
    out.lines()
        .find(|l| l.trim_start().starts_with(category))
        .unwrap_or_else(|| panic!("{category}: {out}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_credentials_sign_in_recorded_or_not() {
    let dir = tempdir("verify-cc");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "service")));
    let mut c = h1_tls(&cv, "login.mypurecloud.com").await;
    let basic = format!("Basic {RECORDED_BASIC}");
    let h = [
        ("host", "login.mypurecloud.com"),
        ("authorization", basic.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let token = c.send("POST", "/oauth/token", &h, "grant_type=client_credentials").await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(api(&cv, &token, "GET", "/api/v2/users/me", "").await.status, 200);
    assert_eq!(cv.stop().0, 0);
    let (code, out, err) = verify(&dir, &si, "service", &["--fail-on-drift"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("2 exchanges: 2 verified") && out.contains("no drift"), "{out}");

    // A cassette of bearer calls with no sign-in in it: verify signs in with client credentials
    // at the region's login service, and the calls carry that token.
    let call = json!({"seq": 1, "recorded_at": "2026-01-05T09:00:00.000Z", "duration_ms": 3,
        "request": {"method": "GET", "scheme": "https", "host": "api.mypurecloud.com", "path": "/api/v2/users/me",
                    "headers": [["host", "api.mypurecloud.com"], ["authorization", "[REDACTED]"]], "body": {"text": ""}},
        "response": {"status": 200, "headers": [["content-type", "application/json"]],
                     "body": {"json": {"id": "u-1", "name": "Agent Smith", "state": "active"}}}});
    let text = format!("{{\"format\":\"callvcr-cassette\",\"version\":1}}\n{call}\n");
    std::fs::write(dir.join("calls-only.jsonl"), text).unwrap();
    let before = si.seen.lock().unwrap().len();
    let (code, out, err) = verify(&dir, &si, "calls-only.jsonl", &["--fail-on-drift"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(
            "signed in: client credentials at https://login.mypurecloud.com/oauth/token for api.mypurecloud.com: 200"
        ),
        "{out}"
    );
    let seen: Vec<(String, Option<String>)> = si.seen.lock().unwrap()[before..]
        .iter()
        .map(|s| (s.path.clone(), s.headers.get("authorization").map(|v| v.to_str().unwrap().to_string())))
        .collect();
    assert_eq!(
        seen[1],
        ("/api/v2/users/me".to_string(), Some("Bearer SECRET-ACCESS-TOKEN-123".to_string())),
        "{seen:?}"
    );
    no_secret("the report", out.as_bytes());
    no_secret("the log", err.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slower_platform_is_timing_drift_past_the_factor() {
    let dir = tempdir("verify-slow");
    let si = start_stand_in(&dir).await;
    record(&dir, &si, "small", false).await;
    std::fs::write(dir.join("proxy.yaml"), "verify:\n  timing:\n    factor: 3\n    min_ms: 300\n").unwrap();
    si.drift.slow_ms.store(900, Ordering::SeqCst);
    let (code, out, err) = verify(&dir, &si, "small", &["--format", "json", "--fail-on-drift"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let me = seq_of(&report, "GET api.mypurecloud.com/api/v2/users/me");
    assert_eq!(summary(&report), json!({"status": [], "schema": [], "headers": [], "websocket": [], "timing": [me]}));
    let r = report["results"].as_array().unwrap().iter().find(|r| r["seq"] == me).unwrap();
    assert!(r["live_ms"].as_u64().unwrap() >= 900, "{r}");
    assert_eq!(r["drift"][0]["at"], "latency");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_and_a_secret_in_proxy_yaml_are_usage_errors() {
    let dir = tempdir("verify-usage");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/genesys-call.jsonl");
    let (code, _, err) = run_env(&dir, &["verify", "--cassette", example], &[("CALLVCR_CLIENT_SECRET", "")]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("the sign-in at #2 needs the client secret: set the environment variable CALLVCR_CLIENT_SECRET"),
        "{err}"
    );
    std::fs::write(dir.join("proxy.yaml"), "verify:\n  credentials:\n    client_secret: my-Secret-Value!\n").unwrap();
    let (code, _, err) = run_env(&dir, &["verify", "--cassette", example], &[]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("proxy.yaml:3:") && err.contains("never the credential itself"), "{err}");
    assert!(!err.contains("my-Secret-Value"), "{err}");
    std::fs::write(dir.join("proxy.yaml"), "verify:\n  credentials:\n    client_secret: SANDBOX_SECRET\n").unwrap();
    let (code, _, err) = run_env(&dir, &["verify", "--cassette", example], &[("CALLVCR_CLIENT_SECRET", "x")]).await;
    assert_eq!(code, 2, "the variable proxy.yaml names is the one read: {err}");
    assert!(err.contains("verify.credentials.client_secret in proxy.yaml names"), "{err}");
    // A secret made of letters and digits, written where a name belongs, is never echoed.
    assert!(!err.contains("SANDBOX_SECRET"), "{err}");
    let (code, _, err) = run_env(&dir, &["verify", "--cassette", "nope"], &[]).await;
    assert_eq!(code, 2, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_cassette_of_the_genesys_sdk_flow_verifies_with_zero_drift() {
    let dir = tempdir("verify-example");
    let si = start_stand_in(&dir).await;
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/genesys-call.jsonl");
    for extra in [&[][..], &["--mutations"][..]] {
        let mut args = vec!["--fail-on-drift"];
        args.extend_from_slice(extra);
        let (code, out, err) = verify(&dir, &si, example, &args).await;
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains("no drift"), "{out}");
        no_secret("the report", out.as_bytes());
        no_secret("the log", err.as_bytes());
    }
    let (_, out, _) = verify(&dir, &si, example, &["--mutations"]).await;
    assert!(out.contains("7 exchanges: 7 verified, 0 skipped, 0 not verified"), "{out}");

    // The call placed live gets another id: no drift, and the hold and hang-up go to it.
    si.drift.new_ids.store(true, Ordering::SeqCst);
    let before = si.seen.lock().unwrap().len();
    let (code, out, err) = verify(&dir, &si, example, &["--mutations", "--fail-on-drift"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("#4 $.id: {CALL_ID} → {NEW_CALL_ID}")), "{out}");
    let customer =
        format!("/api/v2/conversations/calls/{NEW_CALL_ID}/participants/8e2f3a4b-1c2d-4e5f-9a0b-1c2d3e4f5a6b");
    let patched: Vec<String> = si.seen.lock().unwrap()[before..]
        .iter()
        .filter(|s| s.method == "PATCH")
        .map(|s| format!("{} {}", s.path, String::from_utf8_lossy(&s.body)))
        .collect();
    assert_eq!(
        patched,
        [format!(r#"{customer} {{"held":true}}"#), format!(r#"{customer} {{"state":"disconnected"}}"#)]
    );
}

const NICE: &str = "api-na1.niceincontact.com";

/// A NICE request with `bearer` (empty: none), on its own task.
fn nice(cv: &Callvcr, bearer: &str, method: &str, path: &str, body: &str) -> tokio::task::JoinHandle<Resp> {
    let auth = format!("Bearer {bearer}");
    let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
    if !bearer.is_empty() {
        h = vec![("authorization", auth.as_str()), ("content-type", "application/json")];
    }
    spawn_send(cv, NICE, method, path, &h, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nice_access_key_sign_in_and_its_long_polls_verify_with_zero_drift() {
    let dir = tempdir("verify-nice");
    let si = start_stand_in(&dir).await;
    let cv = Callvcr::start(&dir, &s(&record_args(&si, "agent")));
    // The access key as a password grant, its secret from the environment when verified.
    let body = "grant_type=password&username=KEYID-77&password=NICE-KEY-SECRET-OK&client_id=nice-app";
    let login = nice(&cv, "", "POST", "/auth/token", body).await.unwrap();
    assert_eq!(login.status, 200, "{}", login.text());
    let token = login.json()["access_token"].as_str().unwrap().to_string();
    let config = format!("/.well-known/cxone-configuration?tenantId={NICE_TENANT}");
    assert_eq!(nice(&cv, &token, "GET", &config, "").await.unwrap().status, 200);
    // A long poll answered by the state change that follows it, then a quiet one.
    let waiting = nice(&cv, &token, "GET", &format!("{NICE_POLL}?timeout=5"), "");
    wait_for_upstream(&si, NICE_POLL).await;
    assert_eq!(nice(&cv, &token, "POST", NICE_STATE, r#"{"state":"Available"}"#).await.unwrap().status, 202);
    assert_eq!(waiting.await.unwrap().json()["events"][0]["CurrentState"], "Available");
    assert_eq!(nice(&cv, &token, "GET", &format!("{NICE_POLL}?timeout=1"), "").await.unwrap().status, 304);
    assert_eq!(cv.stop().0, 0);

    let env = [("CALLVCR_PASSWORD", "NICE-KEY-SECRET-OK")];
    let (code, out, err) = verify_env(&dir, &si, "agent", &["--fail-on-drift"], &env).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("5 exchanges: 3 verified, 2 skipped"), "the poll waits for the skipped state change: {out}");
    assert!(
        out.contains("#3 GET api-na1.niceincontact.com")
            && out.contains("its recorded answer came of #4, which was not sent"),
        "{out}"
    );
    let (code, out, err) = verify_env(&dir, &si, "agent", &["--fail-on-drift", "--mutations"], &env).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("5 exchanges: 5 verified") && out.contains("no drift"), "{out}");
    for text in [&out, &err] {
        for secret in ["NICE-KEY-SECRET-OK", "SECRETSIGNATURE", "SECRETIDSIGNATURE", "SECRET-NICE-REFRESH"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    let sent = si.seen.lock().unwrap().iter().filter(|s| s.path == "/auth/token").count();
    assert_eq!(sent, 3, "signed in once when recorded, once per run");
    // Without the access key's secret there is no run.
    let (code, _, err) = verify_env(&dir, &si, "agent", &[], &[]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("CALLVCR_PASSWORD"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Genesys Python SDK under target/examples/py (`examples/run.sh python` installs it)"]
async fn the_genesys_python_sdks_own_recording_verifies_with_zero_drift() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sdk = std::env::var("CALLVCR_PY_SDK").unwrap_or_else(|_| root.join("target/examples/py").display().to_string());
    let script = root.join("tests/fixtures/genesys_sdk_flow.py").display().to_string();
    let dir = tempdir("verify-sdk");
    let si = start_stand_in(&dir).await;
    // The unmodified SDK records its flow from the stand-in through `callvcr run --record`.
    let resolve = format!("*={}", si.addr);
    let ca = si.ca_path.display().to_string();
    let args =
        ["run", "--record", "--cassette", "sdk", "--resolve", &resolve, "--upstream-ca", &ca, "--", "python3", &script];
    let (code, out, err) = run_env(&dir, &args, &[("PYTHONPATH", sdk.as_str())]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("placed call"), "{out}");
    let env = [("CALLVCR_CLIENT_ID", "sdk-client"), ("CALLVCR_CLIENT_SECRET", LIVE_SECRET)];
    for extra in [&["--fail-on-drift"][..], &["--fail-on-drift", "--mutations"][..]] {
        let (code, out, err) = verify_env(&dir, &si, "sdk", extra, &env).await;
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains("no drift"), "{out}");
        no_secret("the report", out.as_bytes());
        no_secret("the log", err.as_bytes());
    }
    // The SDK's call placed live gets a new id: learned, and the hold and hang-up go to it.
    si.drift.new_ids.store(true, Ordering::SeqCst);
    let (code, out, err) = verify_env(&dir, &si, "sdk", &["--fail-on-drift", "--mutations"], &env).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("7 exchanges: 7 verified") && out.contains(&format!("{CALL_ID} → {NEW_CALL_ID}")), "{out}");
}
