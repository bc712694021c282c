//! Time travels with the replay: a cassette recorded on 30 November and replayed on 2 December
//! (`--clock-start`, frozen) serves `Date` as the replay's now, cookie expiry, `Expires` and
//! body timestamps moved by exactly two days in their recorded formats, gaps between exchanges
//! kept, ids that only look like dates left alone; a request carrying its own time moved onto the
//! replay's clock hits the recording made for it; `--time-shift off` serves the recorded bytes.

mod support;

use support::*;

const API: &str = "api.mypurecloud.com";

/// Two exchanges ten minutes apart, with times in headers, bodies and a request's query.
fn cassette(dir: &std::path::Path) {
    let call = serde_json::json!({
        "seq": 1,
        "recorded_at": "2026-11-30T15:22:38.000Z",
        "duration_ms": 5,
        "request": {"method": "GET", "scheme": "https", "host": API, "path": "/api/v2/conversations/c-1",
                    "headers": [["host", API]], "body": {"text": ""}},
        "response": {"status": 200, "headers": [
            ["content-type", "application/json"],
            ["date", "Mon, 30 Nov 2026 15:22:38 GMT"],
            ["expires", "Mon, 30 Nov 2026 15:27:38 GMT"],
            ["set-cookie", "ses=1; Path=/; Expires=Tue, 01-Dec-2026 15:22:38 GMT; Max-Age=86400"],
            ["cache-control", "max-age=300"]],
            "body": {"text": "{\"id\": \"c-1\", \"ref\": \"2026-11-30T15:22:38Z\", \"startTime\": \"2026-11-30T15:20:00.000Z\",\n  \"participants\": [{\"connectedTime\": \"2026-11-30T15:20:05.1234Z\", \"endTime\": \"2026-11-30T15:21:00+01:00\"}], \"createdDate\": 1764516000000}"}},
    });
    let later = serde_json::json!({
        "seq": 2,
        "recorded_at": "2026-11-30T15:32:38.000Z",
        "duration_ms": 5,
        "request": {"method": "GET", "scheme": "https", "host": API, "path": "/api/v2/users",
                    "query": "updatedSince=2026-11-30T14:32:38.000Z&pageSize=25",
                    "headers": [["host", API]], "body": {"text": ""}},
        "response": {"status": 200, "headers": [["content-type", "application/json"]],
            "body": {"text": "{\"ref\": \"r-1\", \"entities\": [{\"dateModified\": \"2026-11-30T15:32:00Z\"}]}"}},
    });
    let text = format!("{{\"format\":\"callvcr-cassette\",\"version\":1}}\n{call}\n{later}\n");
    std::fs::write(dir.join("t.jsonl"), text).unwrap();
}

fn start(dir: &std::path::Path, extra: &[&str]) -> Callvcr {
    cassette(dir);
    replay_frozen_at(dir, "t.jsonl", "2026-12-02T15:22:38Z", extra)
}

async fn get(cv: &Callvcr, path: &str) -> Resp {
    let mut c = h1_tls(cv, API).await;
    c.send("GET", path, &[("host", API), ("authorization", "Bearer t")], "").await
}

fn header<'a>(r: &'a Resp, name: &str) -> Vec<&'a str> {
    r.headers.get_all(name).iter().map(|v| v.to_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_times_move_onto_the_replay_clock() {
    let dir = tempdir("timeshift");
    let cv = start(&dir, &["--no-overlay", "auth,state,crud,validate"]);
    let r = get(&cv, "/api/v2/conversations/c-1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(header(&r, "date"), ["Wed, 02 Dec 2026 15:22:38 GMT"]);
    assert_eq!(header(&r, "expires"), ["Wed, 02 Dec 2026 15:27:38 GMT"]);
    assert_eq!(header(&r, "set-cookie"), ["ses=1; Path=/; Expires=Thu, 03-Dec-2026 15:22:38 GMT; Max-Age=86400"]);
    assert_eq!(header(&r, "cache-control"), ["max-age=300"]);
    // Every byte as recorded but the times: two days later, each in its own format and precision;
    // `ref` looks like a date but is not one everywhere it appears, so it stays.
    assert_eq!(
        r.text(),
        "{\"id\": \"c-1\", \"ref\": \"2026-11-30T15:22:38Z\", \"startTime\": \"2026-12-02T15:20:00.000Z\",\n  \"participants\": [{\"connectedTime\": \"2026-12-02T15:20:05.1234Z\", \"endTime\": \"2026-12-02T15:21:00+01:00\"}], \"createdDate\": 1764688800000}"
    );

    // The query's own time, moved onto the replay's clock, finds the recording made for it; the
    // answer ten minutes later keeps its gap.
    let r = get(&cv, "/api/v2/users?pageSize=25&updatedSince=2026-12-02T14%3A32%3A38.000Z").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "{\"ref\": \"r-1\", \"entities\": [{\"dateModified\": \"2026-12-02T15:32:00Z\"}]}");
    let j = journal(&cv).await;
    assert!(j.iter().all(|e| e["answered_by"] == "hit"), "{j:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_shift_off_serves_the_recorded_bytes() {
    let dir = tempdir("timeshift-off");
    let cv = start(&dir, &["--no-overlay", "auth,state,crud,validate", "--time-shift", "off"]);
    let r = get(&cv, "/api/v2/conversations/c-1").await;
    assert_eq!(header(&r, "date"), ["Mon, 30 Nov 2026 15:22:38 GMT"]);
    assert_eq!(header(&r, "expires"), ["Mon, 30 Nov 2026 15:27:38 GMT"]);
    assert!(r.text().contains("\"startTime\": \"2026-11-30T15:20:00.000Z\""), "{}", r.text());
    let r = get(&cv, "/api/v2/users?pageSize=25&updatedSince=2026-11-30T14%3A32%3A38.000Z").await;
    assert_eq!(r.status, 200, "the recorded query hits as recorded: {}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_mode_moves_headers_and_leaves_bodies() {
    let dir = tempdir("timeshift-headers");
    let cv = start(&dir, &["--no-overlay", "auth,state,crud,validate", "--time-shift", "headers"]);
    let r = get(&cv, "/api/v2/conversations/c-1").await;
    assert_eq!(header(&r, "date"), ["Wed, 02 Dec 2026 15:22:38 GMT"]);
    assert_eq!(header(&r, "expires"), ["Wed, 02 Dec 2026 15:27:38 GMT"]);
    assert!(r.text().contains("\"startTime\": \"2026-11-30T15:20:00.000Z\""), "{}", r.text());
}

/// One call, one timeline: the recorded `startTime` moves onto the replay's clock, and the hold
/// the state overlay stamps on that clock (the recording shows no read after the hold, so the
/// overlay answers the second read from the first) lands the recorded distance after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_start_and_an_overlay_stamp_share_one_timeline() {
    let dir = tempdir("timeshift-state");
    let path = "/api/v2/conversations/calls/c-1";
    let party = "/api/v2/conversations/calls/c-1/participants/p-1";
    let call = || {
        serde_json::json!({"id": "c-1", "startTime": "2026-11-30T15:21:38.000Z", "participants": [
            {"id": "p-1", "purpose": "customer", "state": "connected", "held": false,
             "connectedTime": "2026-11-30T15:21:40.000Z"}]})
        .to_string()
    };
    let ex = |seq: u32, at: &str, method: &str, p: &str, req: &str, status: u16, body: String| {
        serde_json::json!({"seq": seq, "recorded_at": at, "duration_ms": 5,
            "request": {"method": method, "scheme": "https", "host": API, "path": p,
                        "headers": [["host", API], ["content-type", "application/json"]], "body": {"text": req}},
            "response": {"status": status, "headers": [["content-type", "application/json"]], "body": {"text": body}}})
    };
    let lines = [
        ex(1, "2026-11-30T15:22:38.000Z", "GET", path, "", 200, call()),
        ex(2, "2026-11-30T15:22:39.000Z", "PATCH", party, r#"{"held":true}"#, 202, String::new()),
    ];
    let text = format!(
        "{{\"format\":\"callvcr-cassette\",\"version\":1}}\n{}\n",
        lines.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("\n")
    );
    std::fs::write(dir.join("t.jsonl"), text).unwrap();
    let cv = replay_frozen_at(&dir, "t.jsonl", "2026-12-02T15:22:38Z", &["--no-overlay", "auth"]);
    let mut c = h1_tls(&cv, API).await;
    let h = [("host", API), ("content-type", "application/json")];
    assert_eq!(c.send("GET", path, &h, "").await.status, 200);
    assert_eq!(c.send("PATCH", party, &h, r#"{"held":true}"#).await.status, 202);
    let r = c.send("GET", path, &h, "").await;
    let j = r.json();
    let at =
        |v: &serde_json::Value| callvcr::clock::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("{j}"))).unwrap();
    let start = at(&j["startTime"]);
    let customer = &j["participants"][0];
    assert_eq!(j["startTime"], "2026-12-02T15:21:38.000Z", "{j}");
    assert_eq!(customer["connectedTime"], "2026-12-02T15:21:40.000Z", "{j}");
    let hold = at(&customer["startHoldTime"]);
    assert_eq!(
        hold - start,
        60_000,
        "the hold is stamped on the replay's clock, a minute after the shifted start: {j}"
    );
}
