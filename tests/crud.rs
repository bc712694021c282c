//! The CRUD overlay through the real binary: create, read, update, delete and 404 on a root
//! collection replayed from a cassette; lists are the recorded answer with the run's changes,
//! unfiltered; changes deeper than one item are acknowledged and change nothing; reset restores the
//! cassette's state; numeric ids continue from the largest.

mod support;

use serde_json::{json, Value};
use support::*;

const API: &str = "api.mypurecloud.com";
const QUEUES: &str = "/api/v2/routing/queues";
const Q1: &str = "0b7c9a52-1111-4c47-9d0e-1f2a3b4c5d6e";
const Q2: &str = "0b7c9a52-2222-4c47-9d0e-1f2a3b4c5d6e";

async fn send(cv: &Callvcr, host: &str, method: &str, path: &str, body: &str) -> Resp {
    let mut c = h1_tls(cv, host).await;
    c.send(method, path, &[("host", host), ("content-type", "application/json")], body).await
}

fn names(v: &Value, field: &str) -> Vec<String> {
    v[field].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_collection_is_created_read_updated_and_deleted_in_memory_and_reset_restores_it() {
    let dir = tempdir("crud");
    let q = |id: &str, name: &str| json!({"id": id, "name": name, "memberCount": 4, "dateCreated": "2025-06-01T10:00:00Z", "selfUri": format!("{QUEUES}/{id}")});
    let list = json!({"entities": [q(Q1, "Sales"), q(Q2, "Billing")], "pageSize": 25, "pageNumber": 1, "total": 2, "pageCount": 1});
    let mut full = q(Q1, "Sales");
    full["description"] = json!("inbound sales");
    let q1 = format!("{QUEUES}/{Q1}");
    let q2 = format!("{QUEUES}/{Q2}");
    write_cassette(
        &dir,
        "q.jsonl",
        &[("GET", API, QUEUES, "", 200, &list.to_string()), ("GET", API, &q1, "", 200, &full.to_string())],
    );
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "q.jsonl", "--no-overlay", "auth"]);

    // Until the run changes it, the cassette answers.
    let v = send(&cv, API, "GET", QUEUES, "").await.json();
    assert_eq!(names(&v, "entities"), ["Sales", "Billing"]);

    // Create: a fresh id, fields the body leaves out at their type's default (never "now").
    let r = send(&cv, API, "POST", QUEUES, r#"{"name":"Support"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let made = r.json();
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36);
    assert_eq!((made["name"].as_str(), made["memberCount"].as_i64()), (Some("Support"), Some(0)));
    assert_eq!(made["dateCreated"], "");
    assert_eq!(made["selfUri"], format!("{QUEUES}/{id}"));
    assert_eq!(send(&cv, API, "GET", &format!("{QUEUES}/{id}"), "").await.json(), made);

    // The list: the recorded answer with the change, query parameters do not filter.
    let v = send(&cv, API, "GET", &format!("{QUEUES}?name=Sales&pageSize=1"), "").await.json();
    assert_eq!(names(&v, "entities"), ["Sales", "Billing", "Support"]);
    assert_eq!((v["total"].as_i64(), v["pageSize"].as_i64()), (Some(3), Some(25)));

    // Update merges; the item read back is the recorded full item with the change.
    let r = send(&cv, API, "PATCH", &q1, r#"{"memberCount":9}"#).await;
    assert_eq!((r.status, r.json()["memberCount"].clone()), (200, json!(9)));
    let v = send(&cv, API, "GET", &q1, "").await.json();
    assert_eq!((v["description"].as_str(), v["memberCount"].as_i64()), (Some("inbound sales"), Some(9)));

    // Delete, then 404 for everything about it; unknown ids 404 too.
    let r = send(&cv, API, "DELETE", &q2, "").await;
    assert_eq!((r.status, r.text()), (200, String::new()));
    for (m, b) in [("DELETE", ""), ("GET", ""), ("PATCH", r#"{"name":"x"}"#)] {
        let r = send(&cv, API, m, &q2, b).await;
        assert_eq!((r.status, r.json()["code"].clone()), (404, json!("not.found")), "{m}");
    }
    let nobody = format!("{QUEUES}/0b7c9a52-9999-4c47-9d0e-1f2a3b4c5d6e");
    assert_eq!(send(&cv, API, "PUT", &nobody, r#"{"name":"x"}"#).await.status, 404);

    // Deeper than one item: 200 and nothing changes.
    let r = send(&cv, API, "DELETE", &format!("{q1}/members/0b7c9a52-3333-4c47-9d0e-1f2a3b4c5d6e"), "").await;
    assert_eq!(r.status, 200);
    let r = send(&cv, API, "POST", &format!("{q1}/members"), r#"[{"id":"u-1"}]"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(names(&send(&cv, API, "GET", QUEUES, "").await.json(), "entities"), ["Sales", "Support"]);

    let j = admin(&cv, "GET", "/mock/admin/journal", "").await.json();
    let by: Vec<&str> = j.as_array().unwrap().iter().map(|e| e["answered_by"].as_str().unwrap()).collect();
    assert_eq!(by[..3], ["hit", "overlay:crud", "overlay:crud"], "{by:?}");

    // Reset: the cassette's state again.
    assert_eq!(admin(&cv, "POST", "/mock/admin/reset", "").await.status, 200);
    let r = send(&cv, API, "GET", QUEUES, "").await;
    assert_eq!(names(&r.json(), "entities"), ["Sales", "Billing"]);
    let r = send(&cv, API, "GET", &format!("{QUEUES}/{id}"), "").await;
    assert_eq!((r.status, r.headers.get("x-callvcr-miss").is_some()), (404, true), "the created queue is gone");
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_ids_continue_from_the_largest_in_a_configured_collection() {
    let dir = tempdir("crud-numeric");
    let host = "api-na1.niceincontact.com";
    let skills = "/incontactapi/services/v27.0/skills";
    let list = json!({"skills": [{"skillId": 1041, "skillName": "Sales", "isActive": true}, {"skillId": 977, "skillName": "Billing", "isActive": true}]});
    write_cassette(&dir, "s.jsonl", &[("GET", host, skills, "", 200, &list.to_string())]);
    std::fs::write(
        dir.join("c.yaml"),
        format!("crud:\n  collections:\n    - {{path: {skills}, id_field: skillId, list_field: skills}}\n"),
    )
    .unwrap();
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "s.jsonl", "--config", "c.yaml", "--no-overlay", "auth"]);
    let r = send(&cv, host, "POST", skills, r#"{"skillName":"Support"}"#).await;
    assert_eq!(r.json(), json!({"skillId": 1042, "skillName": "Support", "isActive": false}));
    let v = send(&cv, host, "GET", skills, "").await.json();
    let ids: Vec<i64> = v["skills"].as_array().unwrap().iter().map(|s| s["skillId"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1041, 977, 1042]);
    assert_eq!(send(&cv, host, "GET", &format!("{skills}/1042"), "").await.json()["skillName"], "Support");
    assert_eq!(cv.stop().0, 0);
}
