//! The state overlay through the real binary: a replayed Genesys call driven through its states by a
//! real client (answer, hold, disconnect) with the platform's refusals; the generic machine through
//! the admin API (422, 409, held and released moves, carrier delays and timeouts on the virtual
//! clock); a declared machine moved by SDK requests; events on Genesys WebSocket topics and NICE long
//! polls; the client-credentials rule.

mod support;

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use support::*;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const API: &str = "api.mypurecloud.com";
const CID: &str = "5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e";
const AGENT: &str = "7d1e2f3a-0b1c-4d5e-8f9a-0b1c2d3e4f5a";
const CUSTOMER: &str = "8e2f3a4b-1c2d-4e5f-9a0b-1c2d3e4f5a6b";
/// The platform's own refusal of reconnecting the customer, as recorded.
const RECORDED_REFUSAL: &str = r#"{"message":"Unable to connect a disconnected participant","code":"conversation.participant.disconnected","status":400,"contextId":"rec-1","details":[],"errors":[]}"#;

fn call() -> String {
    format!("/api/v2/conversations/calls/{CID}")
}

fn participant(id: &str) -> String {
    format!("{}/participants/{id}", call())
}

fn call_body(agent: &str, customer: &str) -> String {
    json!({"id": CID, "participants": [
        {"id": AGENT, "purpose": "agent", "state": agent, "held": false, "muted": false},
        {"id": CUSTOMER, "purpose": "customer", "state": customer, "held": false},
    ], "recordingState": "none"})
    .to_string()
}

async fn send(cv: &Callvcr, method: &str, path: &str, body: &str) -> Resp {
    let mut c = h1_tls(cv, API).await;
    c.send(method, path, &[("host", API), ("content-type", "application/json")], body).await
}

fn answered_by(cv_journal: &Value) -> Vec<String> {
    cv_journal.as_array().unwrap().iter().map(|e| e["answered_by"].as_str().unwrap().to_string()).collect()
}

fn start(dir: &Path, cassette: &str, config: &str) -> Callvcr {
    std::fs::write(dir.join("s.yaml"), config).unwrap();
    Callvcr::start(
        dir,
        &[
            "replay",
            "--cassette",
            cassette,
            "--config",
            "s.yaml",
            "--no-overlay",
            "auth",
            "--clock-frozen",
            "--clock-start",
            "2026-01-05T09:00:00Z",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_is_answered_held_and_disconnected_and_refused_as_the_platform_refuses() {
    let dir = tempdir("state-call");
    let (call, agent, customer) = (call(), participant(AGENT), participant(CUSTOMER));
    let first = call_body("alerting", "connected");
    let answered = call_body("connected", "connected");
    write_cassette(
        &dir,
        "call.jsonl",
        &[
            ("GET", API, &call, "", 200, &first),
            ("PATCH", API, &agent, r#"{"state":"connected"}"#, 202, ""),
            ("GET", API, &call, "", 200, &answered),
            ("PATCH", API, &customer, r#"{"held":true}"#, 202, ""),
            ("PATCH", API, &customer, r#"{"state":"disconnected"}"#, 202, ""),
            ("PATCH", API, &customer, r#"{"state":"connected"}"#, 400, RECORDED_REFUSAL),
        ],
    );
    let cv = start(&dir, "call.jsonl", "");
    let state_of = |v: &Value, i: usize| v["participants"][i]["state"].as_str().unwrap().to_string();

    assert_eq!(state_of(&send(&cv, "GET", &call, "").await.json(), 0), "alerting");
    // Answer.
    assert_eq!(send(&cv, "PATCH", &agent, r#"{"state":"connected"}"#).await.status, 202);
    assert_eq!(state_of(&send(&cv, "GET", &call, "").await.json(), 0), "connected");
    // Hold is a flag with its start time, not a state; the answer shows it though the recording
    // (repeating its last GET) does not.
    assert_eq!(send(&cv, "PATCH", &customer, r#"{"held":true}"#).await.status, 202);
    let v = send(&cv, "GET", &call, "").await.json();
    assert_eq!((state_of(&v, 1).as_str(), &v["participants"][1]["held"]), ("connected", &json!(true)));
    assert_eq!(v["participants"][1]["startHoldTime"], "2026-01-05T09:00:00.000Z");
    // Disconnect.
    assert_eq!(send(&cv, "PATCH", &customer, r#"{"state":"disconnected"}"#).await.status, 202);
    let v = send(&cv, "GET", &call, "").await.json();
    assert_eq!((state_of(&v, 1).as_str(), &v["participants"][1]["held"]), ("disconnected", &json!(false)));
    assert!(v["participants"][1].get("startHoldTime").is_none(), "disconnecting released the hold");

    // Reconnecting the customer: the platform's own recorded refusal, byte for byte.
    let r = send(&cv, "PATCH", &customer, r#"{"state":"connected"}"#).await;
    assert_eq!((r.status, r.text()), (400, RECORDED_REFUSAL.to_string()));
    // The agent back to alerting: no recording of that refusal, so the platform's shape.
    let r = send(&cv, "PATCH", &agent, r#"{"state":"alerting"}"#).await;
    assert_eq!(r.status, 400);
    let b = r.json();
    assert_eq!(b["code"], "bad.request");
    assert_eq!(b["status"], 400);
    assert_eq!(b["message"], "The participant cannot move from connected to alerting.");
    assert_eq!(b["contextId"].as_str().unwrap().len(), 36);
    assert!(r.headers.contains_key("inin-correlation-id"));
    // Holding a disconnected participant is refused too, and so is disconnecting it again.
    assert_eq!(send(&cv, "PATCH", &customer, r#"{"held":true}"#).await.status, 400);
    let r = send(&cv, "PATCH", &customer, r#"{"state":"disconnected"}"#).await;
    assert_eq!(
        (r.status, r.json()["message"].clone()),
        (400, json!("The participant cannot move from disconnected to disconnected."))
    );

    // Nothing changed; the admin API shows the same.
    let s = admin(&cv, "GET", &format!("/mock/admin/session/{CID}"), "").await.json();
    assert_eq!(s["state"], "disconnected", "the customer is the session's state: {s}");
    assert_eq!(s["machine"], "genesys-call");
    assert_eq!(s["participants"][0]["state"], "connected");
    let moves: Vec<(String, String)> = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["from"].as_str().unwrap().into(), h["to"].as_str().unwrap().into()))
        .collect();
    assert_eq!(moves, [("alerting".to_string(), "connected".to_string()), ("connected".into(), "disconnected".into())]);
    let by = answered_by(&admin(&cv, "GET", "/mock/admin/journal", "").await.json());
    // The reconnect is the recording's own answer (the run is where it was recorded); the
    // refusals past the recording are the state overlay's.
    assert_eq!(&by[7..], ["hit", "overlay:state", "overlay:state", "overlay:state"], "{by:?}");

    // Admin transitions on a Genesys conversation move the customer unless told otherwise, and
    // refuse (422) what the machine does not allow.
    let r = admin(&cv, "POST", &format!("/mock/admin/session/{CID}/transition"), r#"{"to":"connected"}"#).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.json()["message"].as_str().unwrap().contains("allowed from here: terminated"), "{}", r.text());
    let body = json!({"from": "connected", "to": "disconnected", "metadata": {"participantId": AGENT}}).to_string();
    let r = admin(&cv, "POST", &format!("/mock/admin/session/{CID}/transition"), &body).await;
    assert_eq!((r.status, r.json()["state"].clone()), (200, json!("disconnected")));
    assert_eq!(state_of(&send(&cv, "GET", &call, "").await.json(), 0), "disconnected", "GET reflects it");

    // Reset brings the recorded state back.
    assert_eq!(admin(&cv, "POST", "/mock/admin/reset", "").await.status, 200);
    assert_eq!(state_of(&send(&cv, "GET", &call, "").await.json(), 0), "alerting");
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generic_machine_refuses_jumps_holds_and_releases_and_keeps_time_on_the_virtual_clock() {
    let dir = tempdir("state-generic");
    write_cassette(&dir, "empty.jsonl", &[]);
    let cfg = "state:\n  machines:\n    - name: generic\n      hold: [{from: RINGING, to: ANSWERED}]\n      delays: [{to: HOLD, ms: 2000}]\n      timeouts_ms: {RINGING: 30000}\n";
    let cv = start(&dir, "empty.jsonl", cfg);
    let t = |id: &str, body: Value| {
        let path = format!("/mock/admin/session/{id}/transition");
        let body = body.to_string();
        let cv = &cv;
        async move { admin(cv, "POST", &path, &body).await }
    };
    let get = |id: &str| {
        let path = format!("/mock/admin/session/{id}");
        let cv = &cv;
        async move { admin(cv, "GET", &path, "").await }
    };
    assert_eq!(get("c-123456").await.status, 404, "unknown until a transition makes it");

    // INIT → COMPLETE is a jump the machine refuses: 422, and the state stays.
    let r = t("c-123456", json!({"from": "INIT", "to": "COMPLETE"})).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["error"], "invalid_transition");
    assert_eq!(get("c-123456").await.json()["state"], "INIT");
    let r =
        t("c-123456", json!({"from": "INIT", "to": "RINGING", "metadata": {"carrierResponse": "180 Ringing"}})).await;
    assert_eq!(r.json(), json!({"id": "c-123456", "state": "RINGING"}));
    // `from` that is not the current state: 409.
    assert_eq!(t("c-123456", json!({"from": "INIT", "to": "RINGING"})).await.status, 409);
    assert_eq!(t("c-123456", json!({"to": "NOWHERE"})).await.status, 422);

    // RINGING → ANSWERED is held until released.
    let r = t("c-123456", json!({"from": "RINGING", "to": "ANSWERED"})).await.json();
    assert_eq!((r["state"].as_str(), r["held"].as_str()), (Some("RINGING"), Some("ANSWERED")));
    assert_eq!(get("c-123456").await.json()["pending"], json!({"to": "ANSWERED", "held": true}));
    let r = admin(&cv, "POST", "/mock/admin/session/c-123456/release", "").await;
    assert_eq!((r.status, r.json()["state"].clone()), (200, json!("ANSWERED")));
    assert_eq!(admin(&cv, "POST", "/mock/admin/session/c-123456/release", "").await.status, 409, "none held");

    // ANSWERED → HOLD takes 2 s of carrier delay on the virtual clock.
    let r = t("c-123456", json!({"to": "HOLD"})).await.json();
    assert_eq!(r["pending"], json!({"to": "HOLD", "at": "2026-01-05T09:00:02.000Z"}));
    admin(&cv, "POST", "/mock/admin/clock", r#"{"advance_ms":1999}"#).await;
    assert_eq!(get("c-123456").await.json()["state"], "ANSWERED");
    admin(&cv, "POST", "/mock/admin/clock", r#"{"advance_ms":1}"#).await;
    let s = get("c-123456").await.json();
    assert_eq!(s["state"], "HOLD");
    let last = s["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["by"].as_str(), last["at"].as_str()), (Some("delay"), Some("2026-01-05T09:00:02.000Z")));
    assert_eq!(s["history"][0]["metadata"]["carrierResponse"], "180 Ringing");

    // A call left ringing past its 30 s timeout moves to TIMEOUT at that instant.
    t("c-2", json!({"to": "RINGING"})).await;
    admin(&cv, "POST", "/mock/admin/clock", r#"{"advance_ms":45000}"#).await;
    let s = get("c-2").await.json();
    assert_eq!(s["state"], "TIMEOUT");
    let last = s["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["by"].as_str(), last["at"].as_str()), (Some("timeout"), Some("2026-01-05T09:00:32.000Z")));
    assert_eq!(t("c-2", json!({"to": "ANSWERED"})).await.status, 422, "nothing moves out of TIMEOUT");
    let list = admin(&cv, "GET", "/mock/admin/sessions", "").await.json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let machines = admin(&cv, "GET", "/mock/admin/machines", "").await.json();
    assert!(machines.as_array().unwrap().iter().any(|m| m["name"] == "genesys-call"));
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_machine_is_moved_by_sdk_requests_refuses_with_422_and_publishes_its_moves() {
    let dir = tempdir("state-declared");
    let id = "0b7c9a52-1111-4c47-9d0e-1f2a3b4c5d6e";
    let res = format!("/api/v2/mockcalls/{id}");
    let topic = format!("v2.mockcalls.{id}");
    let (channel, subs) = channel_and_subscriptions();
    write_cassette(
        &dir,
        "d.jsonl",
        &[
            ("GET", "streaming.mypurecloud.com", channel, "", 101, ""),
            ("PUT", API, subs, &json!([{"id": topic}]).to_string(), 200, "{}"),
            ("GET", API, &res, "", 200, &json!({"id": id, "state": "INIT"}).to_string()),
            ("POST", API, &format!("{res}/ring"), "", 200, "{}"),
        ],
    );
    let cfg = r#"ws:
  heartbeat_s: 0
state:
  machines:
    - name: generic
      resource: "/api/v2/mockcalls/{id}"
      topic: "v2.mockcalls.{id}"
      triggers:
        - {method: POST, path: "/api/v2/mockcalls/{id}/ring", to: RINGING}
        - {method: POST, path: "/api/v2/mockcalls/{id}/answer", to: ANSWERED}
        - {method: POST, path: "/api/v2/mockcalls/{id}/complete", to: COMPLETE}
"#;
    let cv = start(&dir, "d.jsonl", cfg);
    let mut ws = subscribed(&cv, &topic).await;
    let r = send(&cv, "POST", &format!("{res}/complete"), "").await;
    assert_eq!(r.status, 422, "INIT → COMPLETE: {}", r.text());
    assert_eq!(r.json()["code"], "invalid.state.transition");
    assert_eq!(send(&cv, "GET", &res, "").await.json()["state"], "INIT", "unchanged");
    assert_eq!(send(&cv, "POST", &format!("{res}/ring"), "").await.status, 200, "recorded");
    let ev = next_call_event(&mut ws).await;
    assert_eq!((ev["topicName"].as_str(), ev["eventBody"]["state"].as_str()), (Some(topic.as_str()), Some("RINGING")));
    assert_eq!(ev["eventBody"]["previous"], "INIT");
    assert_eq!(send(&cv, "GET", &res, "").await.json()["state"], "RINGING", "GET reflects the move");
    // Not in the cassette, but a valid move: accepted in the platform's place.
    let r = send(&cv, "POST", &format!("{res}/answer"), "").await;
    assert_eq!((r.status, r.json()), (200, json!({"id": id, "state": "ANSWERED"})));
    assert_eq!(next_call_event(&mut ws).await["eventBody"]["state"], "ANSWERED");
    let by = answered_by(&admin(&cv, "GET", "/mock/admin/journal", "").await.json());
    assert_eq!(&by[by.len() - 5..], ["overlay:state", "hit", "hit", "hit", "overlay:state"], "{by:?}");
    drop(ws);
    assert_eq!(cv.stop().0, 0);
}

/// The recorded notification channel and its subscriptions endpoint.
fn channel_and_subscriptions() -> (&'static str, &'static str) {
    ("/channels/streaming-0-aaaaaaaa11", "/api/v2/notifications/channels/streaming-0-aaaaaaaa11/subscriptions")
}

/// A replayed notification channel subscribed to `topic` (the recorded subscription replayed).
async fn subscribed(cv: &Callvcr, topic: &str) -> Ws {
    let (channel, subs) = channel_and_subscriptions();
    let tcp = TcpStream::connect(cv.tls).await.unwrap();
    let tls = tls_over(tcp, "streaming.mypurecloud.com", client_config(&cv.ca_path(), &[b"http/1.1"])).await.unwrap();
    let (ws, _) =
        tokio_tungstenite::client_async(format!("wss://streaming.mypurecloud.com{channel}"), tls).await.unwrap();
    wait_for_ws_sessions(cv, "the channel registered", |s| !s.is_empty()).await;
    assert_eq!(send(cv, "PUT", subs, &json!([{"id": topic}]).to_string()).await.status, 200);
    ws
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

async fn next_call_event(ws: &mut Ws) -> Value {
    loop {
        let m =
            tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("an event in time").unwrap().unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["topicName"] != "channel.metadata" {
                return v;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_publish_call_events_to_subscribed_topics_and_timeouts_fire_on_the_clock() {
    let dir = tempdir("state-events");
    let (call, agent) = (call(), participant(AGENT));
    let (channel, subs) = channel_and_subscriptions();
    let topic = "v2.users.u-1.conversations.calls";
    write_cassette(
        &dir,
        "ev.jsonl",
        &[
            ("GET", "streaming.mypurecloud.com", channel, "", 101, ""),
            (
                "PUT",
                API,
                subs,
                &json!([{"id": topic}]).to_string(),
                200,
                &json!({"entities": [{"id": topic}]}).to_string(),
            ),
            ("GET", API, &call, "", 200, &call_body("alerting", "connected")),
        ],
    );
    let cfg =
        "ws:\n  heartbeat_s: 0\nstate:\n  machines:\n    - name: genesys-call\n      timeouts_ms: {alerting: 30000}\n";
    let cv = start(&dir, "ev.jsonl", cfg);
    let mut ws = subscribed(&cv, topic).await;
    assert_eq!(send(&cv, "GET", &call, "").await.status, 200);

    // The SDK answers (no recording of it: the overlay accepts it as the platform does) → an event.
    assert_eq!(send(&cv, "PATCH", &agent, r#"{"state":"connected"}"#).await.status, 202);
    let ev = next_call_event(&mut ws).await;
    assert_eq!(ev["topicName"], topic);
    assert_eq!(ev["eventBody"]["id"], CID);
    assert_eq!(ev["eventBody"]["participants"][0]["state"], "connected");
    assert_eq!(ev["eventBody"]["participants"][0]["id"], AGENT);

    // Reset: the agent rings again; left alerting past its 30 s timeout, it is disconnected by the
    // state clock (no request needed) and the event says why.
    assert_eq!(admin(&cv, "POST", "/mock/admin/reset", "").await.status, 200);
    assert_eq!(send(&cv, "GET", &call, "").await.status, 200, "the session starts again, alerting");
    admin(&cv, "POST", "/mock/admin/clock", r#"{"advance_ms":30000}"#).await;
    let ev = next_call_event(&mut ws).await;
    let p = &ev["eventBody"]["participants"][0];
    assert_eq!((p["state"].as_str(), p["disconnectType"].as_str()), (Some("disconnected"), Some("timeout")));
    drop(ws);
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nice_contact_actions_move_the_contact_and_its_events_reach_the_long_poll() {
    let dir = tempdir("state-nice");
    let host = "api-na1.niceincontact.com";
    let base = "/incontactapi/services/v27.0/agent-sessions/s-1";
    let poll = format!("{base}/get-next-event");
    let action = |a: &str| format!("{base}/interactions/1234567/{a}");
    let incoming = json!({"sessionId": "s-1", "events": [{"Type": "CallContactEvent", "ContactID": "1234567", "Status": "Incoming", "Skill": "42"}]});
    write_cassette(
        &dir,
        "n.jsonl",
        &[("GET", host, &poll, "", 200, &incoming.to_string()), ("POST", host, &action("accept"), "", 202, "")],
    );
    let cv = start(&dir, "n.jsonl", "");
    let nice = |method: &str, path: String| {
        let method = method.to_string();
        let cv = &cv;
        async move {
            let mut c = h1_tls(cv, host).await;
            c.send(&method, &path, &[("host", host)], "").await
        }
    };
    assert_eq!(nice("GET", poll.clone()).await.json()["events"][0]["Status"], "Incoming");
    assert_eq!(nice("POST", action("accept")).await.status, 202);
    let ev = nice("GET", poll.clone()).await.json();
    assert_eq!(ev["events"][0]["Status"], "Active", "{ev}");
    assert_eq!(ev["events"][0]["Skill"], "42", "built from the recorded event");
    assert_eq!(nice("POST", action("hold")).await.status, 202, "accepted in the platform's place");
    assert_eq!(nice("GET", poll.clone()).await.json()["events"][0]["Status"], "Holding");
    assert_eq!(nice("POST", action("end")).await.status, 202);
    let r = nice("POST", action("hold")).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "InvalidState");
    let s = admin(&cv, "GET", "/mock/admin/session/1234567", "").await.json();
    assert_eq!((s["state"].as_str(), s["machine"].as_str()), (Some("Disconnected"), Some("nice-contact")));
    assert_eq!(cv.stop().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_credentials_token_cannot_place_or_answer_a_call_unless_the_recording_shows_the_org_allowing_it() {
    let dir = tempdir("state-cc");
    let (path, read, placed) = (call(), call_body("alerting", "connected"), json!({"id": CID}).to_string());
    let place = r#"{"phoneNumber":"+13175550100"}"#;
    // Without evidence, the documented rule: client credentials have no user to place a call as.
    write_cassette(&dir, "cc.jsonl", &[("GET", API, &path, "", 200, &read)]);
    // Recorded from an org that lets this client place calls: the recording wins.
    write_cassette(
        &dir,
        "allowed.jsonl",
        &[("POST", API, "/api/v2/conversations/calls", place, 200, &placed), ("GET", API, &path, "", 200, &read)],
    );
    let cv = Callvcr::start(&dir, &["replay", "--cassette", "cc.jsonl"]);
    let token = client_token(&cv).await;
    let bearer = format!("Bearer {token}");
    let mut c = h1_tls(&cv, API).await;
    let h = [("host", API), ("authorization", bearer.as_str()), ("content-type", "application/json")];
    let r = c.send("POST", "/api/v2/conversations/calls", &h, r#"{"phoneNumber":"+13175550100"}"#).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "This request requires a user context. Client credentials cannot be used for requests to this resource."
    );
    let r = c.send("PATCH", &participant(AGENT), &h, r#"{"state":"connected"}"#).await;
    assert_eq!(r.status, 400, "answering needs a user too");
    assert_eq!(c.send("GET", &call(), &h, "").await.status, 200, "reading does not");
    assert_eq!(cv.stop().0, 0);

    let cv = Callvcr::start(&dir, &["replay", "--cassette", "allowed.jsonl"]);
    let token = client_token(&cv).await;
    let bearer = format!("Bearer {token}");
    let mut c = h1_tls(&cv, API).await;
    let h = [("host", API), ("authorization", bearer.as_str()), ("content-type", "application/json")];
    let r = c.send("POST", "/api/v2/conversations/calls", &h, r#"{"phoneNumber":"+13175550100"}"#).await;
    assert_eq!((r.status, r.json()["id"].clone()), (200, json!(CID)), "as recorded");
    // The org allows it: a second placement (past the recording) is not refused by the rule either.
    let r = c.send("POST", "/api/v2/conversations/calls", &h, r#"{"phoneNumber":"+13175550100"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(cv.stop().0, 0);
}

async fn client_token(cv: &Callvcr) -> String {
    let mut login = h1_tls(cv, "login.mypurecloud.com").await;
    let h = [
        ("host", "login.mypurecloud.com"),
        ("authorization", "Basic YXBwOnNlY3JldA=="),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    login.send("POST", "/oauth/token", &h, "grant_type=client_credentials").await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_learned_from_a_cassette_are_printed_and_enforced_where_no_preset_applies() {
    let dir = tempdir("state-learned");
    let w = "/api/v2/workitems/0b7c9a52-1111-4c47-9d0e-1f2a3b4c5d6e";
    let body = |s: &str| json!({"id": "0b7c9a52-1111-4c47-9d0e-1f2a3b4c5d6e", "state": s}).to_string();
    write_cassette(
        &dir,
        "l.jsonl",
        &[
            ("GET", API, w, "", 200, &body("new")),
            ("PATCH", API, w, r#"{"state":"open"}"#, 200, &body("open")),
            ("GET", API, w, "", 200, &body("open")),
            ("PATCH", API, w, r#"{"state":"closed"}"#, 200, &body("closed")),
        ],
    );
    let (code, out, err) = run(&dir, &["state", "learn", "--cassette", "l.jsonl"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(r#"resource: "/api/v2/workitems/{workitemId}""#), "{out}");
    assert!(out.contains("states: [new, open, closed]"), "{out}");
    assert!(out.contains("new: [open]") && out.contains("open: [closed]"), "{out}");

    let cv = start(&dir, "l.jsonl", "");
    assert_eq!(send(&cv, "GET", w, "").await.json()["state"], "new");
    // new → closed was never seen: refused as the platform's 400, nothing changes.
    let r = send(&cv, "PATCH", w, r#"{"state":"closed"}"#).await;
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!("bad.request")), "{}", r.text());
    let j = admin(&cv, "GET", "/mock/admin/journal", "").await.json();
    let detail = j.as_array().unwrap().last().unwrap()["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("machine learned from 1 recorded resource and 2 recorded moves"),
        "the refusal names its evidence: {detail}"
    );
    let r = send(&cv, "PATCH", w, r#"{"state":"open"}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(send(&cv, "GET", w, "").await.json()["state"], "open");
    assert_eq!(send(&cv, "PATCH", w, r#"{"state":"closed"}"#).await.status, 200, "open → closed was seen");
    let s = admin(&cv, "GET", "/mock/admin/session/0b7c9a52-1111-4c47-9d0e-1f2a3b4c5d6e", "").await.json();
    assert_eq!(s["state"], "closed");
    assert!(s["machine"].as_str().unwrap().starts_with("learned "), "{s}");
    assert_eq!(cv.stop().0, 0);
}
