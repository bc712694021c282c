//! Test scopes through the binary: a recording made in a scope keeps it (opened by the admin API
//! or named per request in `x-callvcr-scope`, which never reaches the sandbox); replayed, each
//! scope gets its own recordings first whatever order the tests run in and when they run at once,
//! journal entries name their scope, `GET /mock/admin/scopes` gives each scope's hits, misses with
//! their explanation and unused recordings, and `--report` writes them as JUnit XML.

mod support;

use support::*;

const API: &str = "api.mypurecloud.com";

async fn get(cv: &Callvcr, path: &str, scope: Option<&str>) -> Resp {
    let mut c = h1_tls(cv, API).await;
    let mut h = vec![("host", API), ("authorization", "Bearer t")];
    if let Some(s) = scope {
        h.push(("x-callvcr-scope", s));
    }
    c.send("GET", path, &h, "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_keeps_its_scope_and_the_header_stays_home() {
    let dir = tempdir("scopes-record");
    let si = start_stand_in(&dir).await;
    let args = record_args(&si, "sc");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cv = Callvcr::start(&dir, &args);
    let opened = admin(&cv, "POST", "/mock/admin/scope", r#"{"name": "tests/test_a.py::test_one"}"#).await;
    assert_eq!(opened.status, 200, "{}", opened.text());
    assert_eq!(opened.json()["scope"], "tests/test_a.py::test_one");
    assert_eq!(get(&cv, "/api/v2/users/me", None).await.status, 200);
    // A request naming its own scope wins over the open one.
    assert_eq!(get(&cv, "/api/v2/users/me", Some("worker-2::test_two")).await.status, 200);
    let ended = admin(&cv, "POST", "/mock/admin/scope", r#"{"name": null}"#).await;
    assert_eq!(ended.json()["scope"], serde_json::Value::Null);
    assert_eq!(get(&cv, "/api/v2/users/me", None).await.status, 200);
    let bad = admin(&cv, "POST", "/mock/admin/scope", r#"{"name": ""}"#).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    let j = journal(&cv).await;
    let scopes: Vec<Option<&str>> = j.iter().map(|e| e["scope"].as_str()).collect();
    assert_eq!(scopes, vec![Some("tests/test_a.py::test_one"), Some("worker-2::test_two"), None]);
    cv.stop();
    let seen = si.seen.lock().unwrap().clone();
    si.stop();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.headers.get("x-callvcr-scope").is_none()), "the scope header reached the sandbox");

    assert_eq!(run(&dir, &["cassette", "export", "sc", "--out", "sc.jsonl"]).0, 0);
    let text = std::fs::read_to_string(dir.join("sc.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().skip(1).map(|l| serde_json::from_str(l).unwrap()).collect();
    let stored: Vec<Option<&str>> = lines.iter().map(|e| e["scope"].as_str()).collect();
    assert_eq!(stored, vec![Some("tests/test_a.py::test_one"), Some("worker-2::test_two"), None]);
    assert!(!text.contains("x-callvcr-scope"), "the scope header was stored");

    // One test recorded again (`record --by-scope`): only its exchanges are replaced.
    let si = start_stand_in(&dir).await;
    let mut args = record_args(&si, "sc");
    args.push("--by-scope".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cv = Callvcr::start(&dir, &args);
    admin(&cv, "POST", "/mock/admin/scope", r#"{"name": "tests/test_a.py::test_one"}"#).await;
    assert_eq!(get(&cv, "/api/v2/users/me", None).await.status, 200);
    assert_eq!(get(&cv, "/api/v2/users/me", None).await.status, 200);
    cv.stop();
    si.stop();
    assert_eq!(run(&dir, &["cassette", "export", "sc", "--out", "sc2.jsonl"]).0, 0);
    let text = std::fs::read_to_string(dir.join("sc2.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().skip(1).map(|l| serde_json::from_str(l).unwrap()).collect();
    let kept: Vec<(u64, Option<&str>)> =
        lines.iter().map(|e| (e["seq"].as_u64().unwrap(), e["scope"].as_str())).collect();
    assert_eq!(
        kept,
        vec![
            (2, Some("worker-2::test_two")),
            (3, None),
            (4, Some("tests/test_a.py::test_one")),
            (5, Some("tests/test_a.py::test_one"))
        ]
    );

    // Replayed from the store (its replay file carries the scopes): each scope its own.
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "sc", "--no-overlay", "auth"]);
    assert_eq!(get(&cv, "/api/v2/users/me", Some("worker-2::test_two")).await.status, 200);
    let list = admin(&cv, "GET", "/mock/admin/scopes", "").await.json();
    assert_eq!(list[0]["name"], "worker-2::test_two");
    assert_eq!((list[0]["hits"].as_u64(), list[0]["unused"].as_array().map(Vec::len)), (Some(1), Some(0)));
    cv.stop();
}

/// One key recorded in two scopes and outside any, plus a recording only scope `test_a` made.
fn cassette(dir: &std::path::Path) {
    let ex = |seq: u64, method: &str, path: &str, body: &str, scope: Option<&str>| {
        let mut e = serde_json::json!({
            "seq": seq, "recorded_at": "2026-01-05T09:00:00.000Z", "duration_ms": 1,
            "request": {"method": method, "scheme": "https", "host": API, "path": path,
                        "headers": [["host", API]], "body": {"text": ""}},
            "response": {"status": 200, "headers": [["content-type", "application/json"]], "body": {"text": body}},
        });
        if let Some(s) = scope {
            e["scope"] = s.into();
        }
        e.to_string()
    };
    let lines = [
        ex(1, "GET", "/api/v2/users/me", r#"{"who": "a1"}"#, Some("test_a")),
        ex(2, "GET", "/api/v2/users/me", r#"{"who": "b1"}"#, Some("test_b")),
        ex(3, "GET", "/api/v2/users/me", r#"{"who": "a2"}"#, Some("test_a")),
        ex(4, "GET", "/api/v2/users/me", r#"{"who": "shared"}"#, None),
        ex(5, "GET", "/api/v2/routing/queues", r#"{"entities": []}"#, Some("test_a")),
    ];
    std::fs::write(
        dir.join("s.jsonl"),
        format!("{{\"format\":\"callvcr-cassette\",\"version\":1}}\n{}\n", lines.join("\n")),
    )
    .unwrap();
}

async fn who(cv: &Callvcr, scope: Option<&str>) -> String {
    let r = get(cv, "/api/v2/users/me", scope).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["who"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scope_replays_its_own_in_any_order_and_reports_per_test() {
    let dir = tempdir("scopes-replay");
    cassette(&dir);
    let cv =
        Callvcr::start(&dir, &["replay", "--cassette", "s.jsonl", "--no-overlay", "auth", "--report", "report.xml"]);

    // The tests in the reverse of the recorded order, each opened by the admin API.
    admin(&cv, "POST", "/mock/admin/scope", r#"{"name": "test_b"}"#).await;
    assert_eq!(who(&cv, None).await, "b1");
    assert_eq!(get(&cv, "/api/v2/nope", None).await.status, 404);
    admin(&cv, "POST", "/mock/admin/scope", r#"{"name": "test_a"}"#).await;
    assert_eq!((who(&cv, None).await, who(&cv, None).await), ("a1".to_string(), "a2".to_string()));
    // Past its own recordings: the unscoped one.
    assert_eq!(who(&cv, None).await, "shared");
    assert_eq!(admin(&cv, "GET", "/mock/admin/scope", "").await.json()["scope"], "test_a");

    // test_a run again, and test_b beside it at once (two workers naming their scope per request).
    admin(&cv, "POST", "/mock/admin/scope", r#"{"name": "test_a"}"#).await;
    admin(&cv, "POST", "/mock/admin/scope", r#"{"name": null}"#).await;
    let both_a = async { (who(&cv, Some("test_a")).await, who(&cv, Some("test_a")).await) };
    let ((a1, a2), b) = tokio::join!(both_a, who(&cv, Some("test_b")));
    assert_eq!((a1.as_str(), a2.as_str(), b.as_str()), ("a1", "a2", "b1"));
    assert_eq!(who(&cv, Some("test_c")).await, "a1", "a scope that recorded nothing shares the key's FIFO");

    let j = journal(&cv).await;
    let miss = j.iter().find(|e| e["answered_by"] == "miss").unwrap();
    assert_eq!(miss["scope"], "test_b");
    assert!(j.iter().filter(|e| e["answered_by"] == "hit").all(|e| e["scope"].is_string()));

    let list = admin(&cv, "GET", "/mock/admin/scopes", "").await.json();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["test_b", "test_a", "test_c"]);
    let by = |n: &str| list.as_array().unwrap().iter().find(|s| s["name"] == n).unwrap().clone();
    let (sa, sb, sc) = (by("test_a"), by("test_b"), by("test_c"));
    assert_eq!((sb["hits"].as_u64(), sb["misses"].as_u64()), (Some(2), Some(1)));
    let explained = sb["missed"][0].as_str().unwrap();
    assert!(explained.contains("GET api.mypurecloud.com/api/v2/nope") && explained.contains("closest"), "{explained}");
    assert_eq!(sa["hits"].as_u64(), Some(5));
    assert_eq!(sa["unused"], serde_json::json!(["GET api.mypurecloud.com/api/v2/routing/queues"]));
    assert_eq!(
        (sc["hits"].as_u64(), sc["misses"].as_u64(), sc["unused"].as_array().unwrap().len()),
        (Some(1), Some(0), 0)
    );

    let (code, _) = cv.stop();
    assert_eq!(code, 0);
    let xml = std::fs::read_to_string(dir.join("report.xml")).unwrap();
    assert!(xml.starts_with("<?xml") && xml.contains("tests=\"3\" failures=\"2\""), "{xml}");
    let case = |n: &str| {
        let at =
            xml.find(&format!("<testcase classname=\"callvcr\" name=\"{n}\">")).unwrap_or_else(|| panic!("{n}: {xml}"));
        xml[at..at + xml[at..].find("</testcase>").unwrap()].to_string()
    };
    assert!(
        case("test_b").contains("<failure") && case("test_b").contains("miss: GET api.mypurecloud.com/api/v2/nope")
    );
    assert!(case("test_a").contains("unused: GET api.mypurecloud.com/api/v2/routing/queues"));
    assert!(!case("test_c").contains("<failure"), "{}", case("test_c"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_scopes_the_report_has_one_case_for_the_cassette() {
    let dir = tempdir("scopes-none");
    cassette(&dir);
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "s.jsonl", "--no-overlay", "auth", "--report", "r.xml"]);
    assert_eq!(who(&cv, None).await, "a1");
    assert_eq!(get(&cv, "/api/v2/nope", None).await.status, 404);
    assert!(admin(&cv, "GET", "/mock/admin/scopes", "").await.json().as_array().unwrap().is_empty());
    cv.stop_unchecked();
    let xml = std::fs::read_to_string(dir.join("r.xml")).unwrap();
    assert!(xml.contains("tests=\"1\" failures=\"1\""), "{xml}");
    assert!(xml.contains("<testcase classname=\"callvcr\" name=\"s\">"), "named after the cassette: {xml}");
    assert!(xml.contains("miss: GET api.mypurecloud.com/api/v2/nope"), "{xml}");
    assert!(xml.contains("unused: GET api.mypurecloud.com/api/v2/routing/queues"), "{xml}");
}
