//! Unit tests of the state overlay's pure core: learning, moves, refusals.

use super::*;
use crate::overlay::state::learn::{learned_of, LEARNED};
use crate::overlay::ParsedBody;

/// A recorded exchange on `api.mypurecloud.com`.
fn ex(seq: u64, method: &str, path: &str, req: &str, status: u16, resp: &str) -> Exchange {
    crate::cassette::model::test_exchange(seq, method, path, None, req, status, resp)
}

/// A widget instance's path: no preset covers it, so its states are learned.
const W: &str = "/api/v2/widgets/0b7c9a52-1111-4c47-9d0e-1f2a3b4c5d6e";

#[test]
fn machines_are_learned_from_the_states_a_cassette_shows() {
    let other = "/api/v2/widgets/0b7c9a52-2222-4c47-9d0e-1f2a3b4c5d6e";
    let cassette = [
        ex(1, "GET", W, "", 200, r#"{"state":"new"}"#),
        ex(2, "PATCH", W, r#"{"state":"open"}"#, 200, "{}"),
        ex(3, "GET", W, "", 200, r#"{"state":"open"}"#),
        ex(4, "GET", W, "", 200, r#"{"state":"closed"}"#),
        ex(5, "GET", other, "", 200, r#"{"state":"new"}"#),
        ex(6, "GET", "/api/v2/widgets", "", 200, r#"{"state":"listed"}"#),
    ];
    let list = learn(&cassette);
    assert_eq!(list.len(), 1, "{list:?}");
    let l = &list[0];
    assert_eq!((l.template.as_str(), l.field.as_str(), l.instances), ("/api/v2/widgets/{widgetId}", "state", 2));
    let m = &l.machine;
    assert_eq!(m.states, ["new", "open", "closed"]);
    assert_eq!(m.initial, "new");
    assert!(m.allows("new", "open") && m.allows("open", "closed") && !m.allows("new", "closed"));
    assert_eq!(m.refusal, Refusal::Genesys);
    let y = learned_yaml(&list);
    assert!(y.contains("resource: \"/api/v2/widgets/{widgetId}\"") && y.contains("new: [open]"), "{y}");

    // Learned once when a replay file is written, kept in it: the same machines as learning again.
    let dir = std::env::temp_dir().join(format!("callvcr-learned-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = crate::config::Config::default();
    let m = crate::cassette::Matcher::new(&cfg.matching, crate::cassette::Redactor::new(&cfg.redact));
    let records = cassette.iter().map(|e| Ok((e.seq, serde_json::to_vec(e).unwrap())));
    crate::cassette::replayfile::write(&dir, records, &[], &m, crate::overlay::analyses()).unwrap();
    let (file, _) = crate::cassette::replayfile::open(&dir, &m).unwrap();
    assert!(file.analysis(LEARNED).is_some());
    let kept = learned_of(&file);
    assert_eq!(learned_yaml(&kept), y);
    assert_eq!((kept[0].instances, &kept[0].seen, &kept[0].machine.states), (2, &l.seen, &l.machine.states));
    assert_eq!(learned_yaml(&learned_of(&crate::cassette::model::test_index(&cassette))), y);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A state overlay with the default settings, learned from `exchanges`.
fn overlay(exchanges: &[Exchange]) -> State {
    State::new(StateConfig::default(), Arc::new(Ids::new(1)), &crate::cassette::model::test_index(exchanges))
}

/// A Genesys call conversation's path.
const CALL: &str = "/api/v2/conversations/calls/5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e";
/// Its conversation id.
const CID: &str = "5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e";
/// The agent participant's id in [`call_body`].
const AGENT: &str = "7d1e2f3a-0b1c-4d5e-8f9a-0b1c2d3e4f5a";

/// A recorded Genesys call conversation: agent [`AGENT`] in state `agent`, a connected customer.
fn call_body(agent: &str) -> String {
    format!(
        r#"{{"id":"{CID}","participants":[{{"id":"{AGENT}","purpose":"agent","state":"{agent}","held":false}},{{"id":"8e2f3a4b-1c2d-4e5f-9a0b-1c2d3e4f5a6b","purpose":"customer","state":"connected","held":false}}]}}"#
    )
}

/// A live request as overlays see it.
fn req<'a>(method: &'a str, path: &'a str, headers: &'a http::HeaderMap, body: &'a Bytes) -> Call<'a> {
    // Leaked: a test's calls live as long as the test.
    let parsed = Box::leak(Box::new(ParsedBody::new(body)));
    Call { method, host: "api.mypurecloud.com", path, query: None, headers, body, parsed }
}

#[test]
fn genesys_participants_answer_hold_and_disconnect_and_refuse_a_reconnect() {
    let s = overlay(&[ex(1, "GET", CALL, "", 200, &call_body("alerting"))]);
    let h = http::HeaderMap::new();
    let ctx = Ctx { now_ms: 1_000, ..Default::default() };
    let patch = format!("{CALL}/participants/{AGENT}");
    let answer = Bytes::from_static(br#"{"state":"connected"}"#);
    let c = req("PATCH", &patch, &h, &answer);
    assert_eq!(
        s.on_request(
            &c,
            &mut Ctx { now_ms: 1_000, ..Default::default() },
            &Evidence::none(&crate::overlay::Recorded::default())
        ),
        Decision::Continue
    );
    s.on_answer(&c, &ctx, 202, &ParsedBody::new(b""));
    assert_eq!(s.view(CID, 1_000).unwrap()["participants"][0]["state"], "connected");
    let hold = Bytes::from_static(br#"{"held":true}"#);
    s.on_answer(&req("PATCH", &patch, &h, &hold), &ctx, 202, &ParsedBody::new(b""));
    let get = Bytes::new();
    // A fresh recording of the GET is what the platform answered there: served as recorded.
    assert_eq!(
        s.on_answer(&req("GET", CALL, &h, &get), &ctx, 200, &ParsedBody::new(call_body("alerting").as_bytes())),
        None
    );
    // A recording served before (the run went past it) shows the run's state instead.
    let again = Ctx { now_ms: 1_000, repeated: true.into(), ..Default::default() };
    let served = s
        .on_answer(&req("GET", CALL, &h, &get), &again, 200, &ParsedBody::new(call_body("alerting").as_bytes()))
        .unwrap();
    let v: Value = serde_json::from_slice(&served).unwrap();
    assert_eq!(v["participants"][0]["state"], "connected");
    assert_eq!(v["participants"][0]["held"], true);
    assert_eq!(v["participants"][0]["startHoldTime"], "1970-01-01T00:00:01.000Z");
    let bye = Bytes::from_static(br#"{"state":"disconnected"}"#);
    s.on_answer(&req("PATCH", &patch, &h, &bye), &ctx, 202, &ParsedBody::new(b""));
    // Reconnecting is refused as the platform refuses it, and nothing changes.
    let d = s.on_request(
        &req("PATCH", &patch, &h, &answer),
        &mut Ctx { now_ms: 2_000, ..Default::default() },
        &Evidence::none(&crate::overlay::Recorded::default()),
    );
    let Decision::Answer(a) = d else { panic!("refused: {d:?}") };
    assert_eq!(a.status, 400);
    let b: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(b["code"], "bad.request");
    assert_eq!(b["message"], "The participant cannot move from disconnected to connected.");
    let v = s.view(CID, 2_000).unwrap();
    assert_eq!(v["participants"][0]["state"], "disconnected");
    assert_eq!(v["participants"][0]["flags"]["held"]["on"], false, "disconnecting released the hold");
    assert_eq!(s.take_events().len(), 3, "answer, hold, disconnect each emit an event");
}

#[test]
fn a_recorded_refusal_of_that_move_is_answered_byte_for_byte() {
    let patch = format!("{CALL}/participants/{AGENT}");
    let platform = r#"{"message":"Participant is already disconnected","code":"conversation.participant.disconnected","status":400}"#;
    let s = overlay(&[
        ex(1, "GET", CALL, "", 200, &call_body("disconnected")),
        ex(2, "PATCH", &patch, r#"{"state":"connected"}"#, 400, platform),
    ]);
    let h = http::HeaderMap::new();
    let body = Bytes::from_static(br#"{"state":"connected"}"#);
    let d = s.on_request(
        &req("PATCH", &patch, &h, &body),
        &mut Ctx::default(),
        &Evidence::none(&crate::overlay::Recorded::default()),
    );
    let Decision::Answer(a) = d else { panic!("{d:?}") };
    assert_eq!((a.status, &a.body[..]), (400, platform.as_bytes()));
}

#[test]
fn moves_the_recording_makes_on_its_own_are_followed() {
    let s = overlay(&[]);
    let h = http::HeaderMap::new();
    let get = Bytes::new();
    let ctx = Ctx { now_ms: 5, ..Default::default() };
    s.on_answer(&req("GET", CALL, &h, &get), &ctx, 200, &ParsedBody::new(call_body("alerting").as_bytes()));
    // The platform connected the agent (no request of the run did): the run follows, so the
    // recorded bytes go out unchanged.
    assert_eq!(
        s.on_answer(&req("GET", CALL, &h, &get), &ctx, 200, &ParsedBody::new(call_body("connected").as_bytes())),
        None
    );
    let v = s.view(CID, 5).unwrap();
    assert_eq!(v["participants"][0]["state"], "connected");
    assert_eq!(v["history"][0]["by"], "recording");
    assert_eq!(s.take_events().len(), 1, "the platform's move is published too");
}

#[test]
fn a_recorded_move_a_carrier_delay_holds_back_is_still_the_recordings_when_it_happens() {
    let yaml = "state:\n  machines:\n    - name: genesys-call\n      delays: [{to: connected, ms: 500}]\n";
    let cfg = crate::config::Config::parse(yaml, std::path::Path::new("proxy.yaml")).unwrap();
    let s = State::new(
        cfg.state.clone(),
        Arc::new(Ids::new(1)),
        &crate::cassette::model::test_index(&[ex(1, "GET", CALL, "", 200, &call_body("alerting"))]),
    );
    let h = http::HeaderMap::new();
    let patch = format!("{CALL}/participants/{AGENT}");
    let answer = Bytes::from_static(br#"{"state":"connected"}"#);
    let ctx = Ctx { now_ms: 1_000, ..Default::default() };
    // The cassette answered the move (the run follows the recording); the carrier delays it.
    s.on_answer(&req("PATCH", &patch, &h, &answer), &ctx, 202, &ParsedBody::new(b""));
    assert_eq!(s.view(CID, 1_000).unwrap()["participants"][0]["state"], "alerting", "not yet");
    assert!(s.take_events().is_empty());
    s.tick(1_500);
    let events = s.take_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].recorded, "the delayed move is still one the cassette answered");
}
