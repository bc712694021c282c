//! A WebSocket session's events, recorded and live, compared by topic: the topics a channel
//! receives (ids in a topic's name read as `{id}`), and the shape of each topic's events (the
//! inference of `schema export` over all of them). Event order and count vary on a live platform
//! and are not compared; heartbeats are apart. Plain data in, drift out.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;

use crate::cassette::model::{Dir, Frame, FrameKind};

use super::compare::{shape_drift, shape_of, Category, Drift, Rules};
use super::ids::id_like;

/// A frame the live platform sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveFrame {
    /// Milliseconds from the start of the connection.
    pub(crate) at_ms: u64,
    /// The recorded exchange the run had last sent when it arrived.
    pub(crate) after: Option<u64>,
    /// Its kind (text or binary).
    pub(crate) kind: FrameKind,
    /// Its payload.
    pub(crate) data: Bytes,
}

/// Topic names a session's events are grouped under when they name none.
const UNNAMED: &str = "(no topic)";

/// An event's topic as compared (ids as `{id}`) and its JSON, for a text frame holding a JSON
/// event; `None` for a heartbeat and for anything else.
pub(crate) fn event(kind: FrameKind, data: &[u8]) -> Option<(String, Value)> {
    if kind != FrameKind::Text {
        return None;
    }
    let text = std::str::from_utf8(data).ok()?;
    if crate::platform::is_heartbeat(text) {
        return None;
    }
    let v: Value = serde_json::from_str(text).ok()?;
    let topic = match crate::platform::event_topic(&v) {
        Some(t) => t.split('.').map(|s| if id_like(s) { "{id}" } else { s }).collect::<Vec<_>>().join("."),
        None => UNNAMED.to_string(),
    };
    Some((topic, v))
}

/// A recorded platform frame's event, as [`event`] reads it.
fn recorded_event(f: &Frame) -> Option<(String, Value)> {
    (f.dir == Dir::Server).then(|| event(f.kind, &f.data.bytes)).flatten()
}

/// How many events of each topic the recording leads the run to wait for: those of the frames
/// `expected` accepts (the ones whose cause was sent).
pub(crate) fn expected_counts(recorded: &[Frame], expected: &dyn Fn(&Frame) -> bool) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for f in recorded.iter().filter(|f| expected(f)) {
        if let Some((t, _)) = recorded_event(f) {
            *out.entry(t).or_insert(0) += 1;
        }
    }
    out
}

/// Whether the live frames hold at least as many events of each topic as `expected`.
pub(crate) fn satisfied(expected: &BTreeMap<String, usize>, live: &[LiveFrame]) -> bool {
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for f in live {
        if let Some((t, _)) = event(f.kind, &f.data) {
            *got.entry(t).or_insert(0) += 1;
        }
    }
    expected.iter().all(|(t, n)| got.get(t).copied().unwrap_or(0) >= *n)
}

/// How the live events differ from the recorded ones: a topic the run waited for that never
/// came, a topic the recording never had, and each shared topic's event shape.
pub(crate) fn compare(
    recorded: &[Frame],
    expected: &dyn Fn(&Frame) -> bool,
    live: &[LiveFrame],
    rules: &Rules,
) -> Vec<Drift> {
    let mut rec: BTreeMap<String, (Vec<Value>, bool)> = BTreeMap::new();
    for f in recorded {
        if let Some((t, v)) = recorded_event(f) {
            let e = rec.entry(t).or_default();
            e.0.push(v);
            e.1 |= expected(f);
        }
    }
    let mut got: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for f in live {
        if let Some((t, v)) = event(f.kind, &f.data) {
            got.entry(t).or_default().push(v);
        }
    }
    let mut out = Vec::new();
    for (topic, (events, waited)) in &rec {
        match got.get(topic) {
            None if *waited => out.push(Drift::new(
                Category::Websocket,
                topic.clone(),
                format!("no longer delivered (the recording has {} event(s))", events.len()),
            )),
            None => {}
            Some(live) => {
                // Which of a topic's events arrive within the wait varies, so a field every live
                // event happens to carry is not "newly required".
                let prefix = format!("{topic} ");
                let changes = shape_drift(&shape_of(events), &shape_of(live), rules, Category::Websocket, &prefix);
                out.extend(changes.into_iter().filter(|d| d.change != "newly required"));
            }
        }
    }
    for (topic, live) in got.iter().filter(|(t, _)| !rec.contains_key(*t)) {
        out.push(Drift::new(Category::Websocket, topic.clone(), format!("newly delivered ({} event(s))", live.len())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassette::model::{Anchor, Body};
    use serde_json::json;

    fn rec(n: u32, v: Value, after: u64) -> Frame {
        Frame {
            session: 5,
            n,
            dir: Dir::Server,
            at_ms: u64::from(n) * 10,
            kind: FrameKind::Text,
            data: Body { bytes: Bytes::from(v.to_string()), encoding: None },
            close_code: None,
            close_reason: None,
            after: Some(Anchor::Rest(after)),
        }
    }

    fn live(v: Value) -> LiveFrame {
        LiveFrame { at_ms: 1, after: None, kind: FrameKind::Text, data: Bytes::from(v.to_string()) }
    }

    fn call(state: &str, version: Value) -> Value {
        json!({"topicName": "v2.conversations.calls.5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e", "version": version,
               "eventBody": {"participants": [{"state": state}]}})
    }

    const BEAT: &str = r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#;

    #[test]
    fn topics_read_ids_as_placeholders_and_heartbeats_are_apart() {
        assert_eq!(
            event(FrameKind::Text, call("x", json!("2")).to_string().as_bytes()).unwrap().0,
            "v2.conversations.calls.{id}"
        );
        assert!(event(FrameKind::Text, BEAT.as_bytes()).is_none());
        assert!(event(FrameKind::Binary, b"{}").is_none());
        assert_eq!(event(FrameKind::Text, b"{\"a\":1}").unwrap().0, "(no topic)");
    }

    #[test]
    fn shapes_per_topic_and_topics_come_and_go() {
        let recorded = vec![
            rec(1, call("alerting", json!("2")), 4),
            rec(2, call("connected", json!("2")), 4),
            rec(3, json!({"topicName": "v2.users.x.presence"}), 9),
        ];
        let all = |_: &Frame| true;
        let r = Rules::new(&[], 3.0, 500);
        let same = vec![
            live(call("connected", json!("2"))),
            live(serde_json::from_str(BEAT).unwrap()),
            live(json!({"topicName": "v2.users.x.presence"})),
        ];
        assert_eq!(compare(&recorded, &all, &same, &r), vec![], "one event of a topic is enough; heartbeats apart");
        let counts = expected_counts(&recorded, &all);
        assert_eq!(counts.get("v2.conversations.calls.{id}"), Some(&2));
        assert!(
            !satisfied(&counts, &same)
                && satisfied(&counts, &[same.clone(), vec![live(call("x", json!("2")))]].concat())
        );
        let changed = vec![live(call("connected", json!(2))), live(json!({"topicName": "v2.routing.queues.q"}))];
        let got: Vec<(String, String)> =
            compare(&recorded, &all, &changed, &r).into_iter().map(|d| (d.at, d.change)).collect();
        assert_eq!(
            got,
            [
                ("v2.conversations.calls.{id} $.version".to_string(), "type changed from string to number".to_string()),
                ("v2.users.x.presence".into(), "no longer delivered (the recording has 1 event(s))".into()),
                ("v2.routing.queues.q".into(), "newly delivered (1 event(s))".into()),
            ]
        );
        // A topic whose cause was not sent is not waited for.
        let only_calls = |f: &Frame| f.n != 3;
        assert_eq!(compare(&recorded, &only_calls, &changed, &r).len(), 2);
        assert!(!expected_counts(&recorded, &only_calls).contains_key("v2.users.x.presence"));
    }
}
