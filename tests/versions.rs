//! Versioned routing through the real binary: one cassette holding recordings from two SDK versions
//! replays the right one for each (and the nearest for a version it never saw); a route deprecated
//! for a version range answers 410 Gone naming its replacement, in each platform's shape.

mod support;

use serde_json::{json, Value};
use support::*;

const API: &str = "api.mypurecloud.com";
const QUERY: &str = "/api/v2/analytics/conversations/details/query";

fn exchange(seq: u64, host: &str, method: &str, path: &str, sdk: Option<&str>, body: &str) -> Value {
    let mut headers = vec![json!(["host", host])];
    if let Some(v) = sdk {
        headers.push(json!(["purecloud-sdk", v]));
        headers.push(json!(["user-agent", "PureCloud SDK/python"]));
    }
    let mut e = json!({"seq": seq, "recorded_at": "2026-01-05T09:00:00.000Z", "duration_ms": 1,
        "request": {"method": method, "scheme": "https", "host": host, "path": path, "headers": headers, "body": {"text": ""}},
        "response": {"status": 200, "headers": [["content-type", "application/json"]], "body": {"text": body}}});
    if let Some(v) = sdk {
        e["sdk"] = json!(v);
    }
    e
}

async fn get(cv: &Callvcr, host: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut c = h1_tls(cv, host).await;
    let mut h = vec![("host", host)];
    h.extend_from_slice(headers);
    c.send(method, path, &h, "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sdk_version_gets_its_own_recording_and_a_deprecated_route_answers_410() {
    let dir = tempdir("versions");
    let lines = [
        json!({"format": "callvcr-cassette", "version": 1}),
        exchange(1, API, "GET", "/api/v2/users/me", Some("150.0.0"), r#"{"id":"u-1","recordedBy":"150"}"#),
        exchange(2, API, "GET", "/api/v2/users/me", Some("211.0.0"), r#"{"id":"u-1","recordedBy":"211"}"#),
        exchange(3, API, "POST", QUERY, Some("211.0.0"), r#"{"conversations":[]}"#),
        exchange(
            4,
            "api-na1.niceincontact.com",
            "GET",
            "/incontactapi/services/v12.0/agents",
            None,
            r#"{"agents":[]}"#,
        ),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("v.jsonl"), text).unwrap();
    std::fs::write(
        dir.join("v.yaml"),
        format!(
            "versions:\n  user_agents:\n    - {{pattern: \"cxone-sdk/([0-9.]+)\", name: cxone}}\n  routes:\n    - {{method: POST, path: \"^{QUERY}$\", sdk: \"<200\", deprecated: true, replacement: /api/v2/analytics/conversations/details/jobs}}\n    - {{path: \"^/incontactapi/services/v12\\\\.0/\", sdk: \"<2\", sdk_name: cxone, deprecated: true, replacement: /incontactapi/services/v27.0/agents}}\n"
        ),
    )
    .unwrap();
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "v.jsonl", "--config", "v.yaml", "--no-overlay", "auth"]);
    let me = |v: &'static str| {
        let cv = &cv;
        async move {
            get(cv, API, "GET", "/api/v2/users/me", &[("purecloud-sdk", v), ("user-agent", "PureCloud SDK/python")])
                .await
                .json()["recordedBy"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    assert_eq!(me("211.0.0").await, "211");
    assert_eq!(me("150.0.0").await, "150");
    assert_eq!(me("180.2.0").await, "150", "never recorded: the newest recorded below it");
    assert_eq!(me("260.0.0").await, "211");

    // Deprecated for SDKs before 200: 410 naming the replacement; newer SDKs reach the recording.
    let old = [("purecloud-sdk", "150.0.0"), ("user-agent", "PureCloud SDK/python")];
    let r = get(&cv, API, "POST", QUERY, &old).await;
    assert_eq!(r.status, 410);
    let b = r.json();
    assert_eq!((b["code"].as_str(), b["status"].as_i64()), (Some("gone"), Some(410)));
    assert_eq!(b["replacement"], "/api/v2/analytics/conversations/details/jobs");
    assert!(b["message"].as_str().unwrap().contains("SDK python 150.0.0 (versions <200)"), "{b}");
    assert!(r.headers["link"].to_str().unwrap().contains("/api/v2/analytics/conversations/details/jobs"));
    let new = [("purecloud-sdk", "211.0.0"), ("user-agent", "PureCloud SDK/python")];
    assert_eq!(get(&cv, API, "POST", QUERY, &new).await.status, 200);
    assert_eq!(get(&cv, API, "POST", QUERY, &[]).await.status, 200, "no version announced: not judged");

    // An SDK known by its User-Agent, on NICE.
    let nice = "api-na1.niceincontact.com";
    let path = "/incontactapi/services/v12.0/agents";
    let r = get(&cv, nice, "GET", path, &[("user-agent", "cxone-sdk/1.4.2 node")]).await;
    assert_eq!((r.status, r.json()["error"].clone()), (410, json!("Gone")));
    assert_eq!(get(&cv, nice, "GET", path, &[("user-agent", "cxone-sdk/2.0.0 node")]).await.status, 200);
    let j = admin(&cv, "GET", "/mock/admin/journal", "").await.json();
    assert!(j.as_array().unwrap().iter().any(|e| e["answered_by"] == "overlay:versions"));
    assert_eq!(cv.stop().0, 0);
}
