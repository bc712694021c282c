//! What a verify run found, per exchange and per category, as text for people and JSON for
//! machines; and the cassette `--update` writes: the recording with the live answers (and live
//! WebSocket events) of the exchanges that drifted, their live ids put back to the recorded ones
//! so the requests that follow still match. Plain data in, text and data out.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::cassette::model::{Anchor, Body, Cassette, Dir, Frame, RecordedResponse, TokenShape};

use super::compare::{Category, Drift};
use super::events::LiveFrame;
use super::ids::{IdMap, Learned};

/// What became of one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    /// Sent, answered, compared.
    Verified,
    /// Not sent (see its reason).
    Skipped,
    /// Sent, but no answer to compare (an upstream failure, a rate limit that did not lift).
    Unverified,
}

/// One exchange's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExchangeResult {
    /// The recorded exchange.
    pub(crate) seq: u64,
    /// `METHOD host/path?query` as recorded.
    pub(crate) request: String,
    /// What became of it.
    pub(crate) outcome: Outcome,
    /// Why it was skipped or not verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// How the live answer differs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) drift: Vec<Drift>,
    /// The recorded status.
    pub(crate) recorded_status: u16,
    /// The live status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) live_status: Option<u16>,
    /// How long the recorded answer took.
    pub(crate) recorded_ms: u64,
    /// How long the live answer took (the last attempt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) live_ms: Option<u64>,
    /// 429 answers waited out before this one.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) rate_limited: u32,
    /// How long their `Retry-After`s made the run wait, in milliseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) waited_ms: u64,
}

/// serde's test for leaving a zero count out.
fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

impl ExchangeResult {
    /// A result for `seq` with nothing live yet.
    pub(crate) fn new(seq: u64, request: String, recorded_status: u16, recorded_ms: u64) -> ExchangeResult {
        ExchangeResult {
            seq,
            request,
            outcome: Outcome::Verified,
            reason: None,
            drift: Vec::new(),
            recorded_status,
            live_status: None,
            recorded_ms,
            live_ms: None,
            rate_limited: 0,
            waited_ms: 0,
        }
    }
}

/// 429 answers waited out across the run: not drift, but counted.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct RateLimited {
    /// How many 429 answers came.
    pub(crate) answers: u32,
    /// How long their `Retry-After`s made the run wait.
    pub(crate) waited_ms: u64,
}

/// A whole run's report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// The cassette verified.
    pub(crate) cassette: String,
    /// Whether writes that change the sandbox were sent.
    pub(crate) mutations: bool,
    /// Exchanges in the cassette.
    pub(crate) exchanges: usize,
    /// Sent and compared.
    pub(crate) verified: usize,
    /// Not sent.
    pub(crate) skipped: usize,
    /// Sent without an answer to compare.
    pub(crate) unverified: usize,
    /// Verified exchanges with any drift.
    pub(crate) drifted: usize,
    /// Per category, the exchanges with drift of it (every category listed).
    pub(crate) summary: BTreeMap<&'static str, Vec<u64>>,
    /// 429 answers waited out.
    pub(crate) rate_limited: RateLimited,
    /// Ids made along the way: recorded ↔ live.
    pub(crate) ids: Vec<Learned>,
    /// Sign-ins the run made that the cassette does not hold (client credentials for API calls).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) sign_ins: Vec<String>,
    /// Every exchange, in recorded order.
    pub(crate) results: Vec<ExchangeResult>,
}

impl Report {
    /// The report of `results`, counted and summed up.
    pub(crate) fn new(
        cassette: &str,
        mutations: bool,
        results: Vec<ExchangeResult>,
        ids: Vec<Learned>,
        sign_ins: Vec<String>,
    ) -> Report {
        let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
        let mut summary: BTreeMap<&'static str, Vec<u64>> =
            Category::ALL.iter().map(|c| (c.as_str(), Vec::new())).collect();
        for r in &results {
            for c in Category::ALL {
                if r.drift.iter().any(|d| d.category == c) {
                    summary.entry(c.as_str()).or_default().push(r.seq);
                }
            }
        }
        let rate_limited = RateLimited {
            answers: results.iter().map(|r| r.rate_limited).sum(),
            waited_ms: results.iter().map(|r| r.waited_ms).sum(),
        };
        Report {
            cassette: cassette.to_string(),
            mutations,
            exchanges: results.len(),
            verified: count(Outcome::Verified),
            skipped: count(Outcome::Skipped),
            unverified: count(Outcome::Unverified),
            drifted: results.iter().filter(|r| !r.drift.is_empty()).count(),
            summary,
            rate_limited,
            ids,
            sign_ins,
            results,
        }
    }

    /// Whether anything drifted, or could not be verified: `--fail-on-drift` exits 1 then.
    pub(crate) fn failed(&self) -> bool {
        self.drifted > 0 || self.unverified > 0
    }

    /// The report for people: the counts, a line per category with the exchanges behind it, the
    /// rate limits and ids, then each exchange that drifted, was skipped or not verified.
    pub(crate) fn text(&self) -> String {
        let mut out = format!(
            "callvcr verify `{}`: {} exchanges: {} verified, {} skipped, {} not verified\n",
            self.cassette, self.exchanges, self.verified, self.skipped, self.unverified
        );
        for c in Category::ALL {
            let seqs = self.summary.get(c.as_str()).map(Vec::as_slice).unwrap_or_default();
            let list: Vec<String> = seqs.iter().map(|s| format!("#{s}")).collect();
            let line = format!("  {:<10} {:>3}  {}", c.as_str(), seqs.len(), list.join(" "));
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let rl = &self.rate_limited;
        if rl.answers > 0 {
            out.push_str(&format!(
                "rate limits: {} answer(s) 429, waited {:.1} s in all and sent again (not drift)\n",
                rl.answers,
                rl.waited_ms as f64 / 1000.0
            ));
        }
        if !self.ids.is_empty() {
            out.push_str(&format!("ids made along the way: {}\n", self.ids.len()));
            for l in &self.ids {
                out.push_str(&format!("  #{} {}: {} → {}\n", l.seq, l.at, l.recorded, l.live));
            }
        }
        for s in &self.sign_ins {
            out.push_str(&format!("signed in: {s}\n"));
        }
        for r in self.results.iter().filter(|r| !r.drift.is_empty()) {
            out.push_str(&format!("\n#{} {}\n", r.seq, r.request));
            for d in &r.drift {
                let c = d.category.as_str();
                match d.at == c {
                    true => out.push_str(&format!("  {c:<10} {}\n", d.change)),
                    false => out.push_str(&format!("  {c:<10} {}: {}\n", d.at, d.change)),
                }
            }
        }
        let listed = |o: Outcome, title: &str, out: &mut String| {
            let rs: Vec<&ExchangeResult> = self.results.iter().filter(|r| r.outcome == o).collect();
            if rs.is_empty() {
                return;
            }
            out.push_str(&format!("\n{title}:\n"));
            for r in rs {
                out.push_str(&format!("  #{} {}: {}\n", r.seq, r.request, r.reason.as_deref().unwrap_or("")));
            }
        };
        listed(Outcome::Skipped, "skipped", &mut out);
        listed(Outcome::Unverified, "not verified", &mut out);
        out.push('\n');
        out.push_str(&match (self.drifted, self.unverified) {
            (0, 0) => format!("no drift: the {} verified exchanges answer as recorded\n", self.verified),
            (d, u) => format!("drift in {d} of {} verified exchanges; {u} not verified\n", self.verified),
        });
        out
    }
}

/// A live answer to put in the cassette in place of a recorded one.
#[derive(Debug, Clone)]
pub(crate) struct Replacement {
    /// The live answer, redacted.
    pub(crate) response: RecordedResponse,
    /// How long it took.
    pub(crate) duration_ms: u64,
    /// For a token answer: its opaque tokens' shapes.
    pub(crate) token_shapes: Vec<TokenShape>,
}

/// A live answer with the live ids learned put back to the recorded ones (body and redirect
/// headers), so the recorded requests that follow it still match.
pub(crate) fn restored(r: &RecordedResponse, ids: &IdMap) -> RecordedResponse {
    let mut out = r.clone();
    if let Ok(text) = std::str::from_utf8(&r.body.bytes) {
        if let std::borrow::Cow::Owned(t) = ids.restore(text) {
            out.body = Body { bytes: t.into(), encoding: r.body.encoding.clone() };
        }
    }
    for (k, v) in out.headers.iter_mut() {
        if k.eq_ignore_ascii_case("location") || k.eq_ignore_ascii_case("content-location") {
            *v = ids.restore(v).into_owned();
        }
    }
    // The body may have changed length; replay frames it afresh.
    out.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("content-length"));
    out
}

/// A session's frames from its live ones: the recorded client frames, and the live platform
/// frames (ids put back) anchored to the exchange the run had last sent, numbered by time.
pub(crate) fn session_frames(session: u64, recorded: &[Frame], live: &[LiveFrame], ids: &IdMap) -> Vec<Frame> {
    let mut all: Vec<Frame> = recorded.iter().filter(|f| f.dir == Dir::Client).cloned().collect();
    for f in live {
        let data = match std::str::from_utf8(&f.data) {
            Ok(t) => Body { bytes: ids.restore(t).into_owned().into(), encoding: None },
            Err(_) => Body { bytes: f.data.clone(), encoding: None },
        };
        all.push(Frame {
            session,
            n: 0,
            dir: Dir::Server,
            at_ms: f.at_ms,
            kind: f.kind,
            data,
            close_code: None,
            close_reason: None,
            after: f.after.map(Anchor::Rest),
        });
    }
    all.sort_by_key(|f| f.at_ms);
    for (i, f) in all.iter_mut().enumerate() {
        f.n = i as u32;
    }
    all
}

/// The cassette `--update` writes: `c` with each replaced exchange's answer and each replaced
/// session's frames, their times moved onto the recording's clock (see [`onto_recording_clock`]).
/// `asked_from_ms` is when the live run began (epoch ms).
pub(crate) fn updated(
    c: &Cassette,
    answers: &HashMap<u64, Replacement>,
    sessions: &HashMap<u64, Vec<Frame>>,
    asked_from_ms: i64,
) -> Cassette {
    let exchanges = c
        .exchanges
        .iter()
        .map(|e| match answers.get(&e.seq) {
            Some(r) => {
                let mut e = e.clone();
                e.response = r.response.clone();
                e.duration_ms = r.duration_ms;
                if !r.token_shapes.is_empty() {
                    e.token_shapes = r.token_shapes.clone();
                }
                e
            }
            None => e.clone(),
        })
        .collect();
    let mut frames: Vec<Frame> = c.frames.iter().filter(|f| !sessions.contains_key(&f.session)).cloned().collect();
    for fs in sessions.values() {
        frames.extend(fs.iter().cloned());
    }
    frames.sort_by_key(|f| (f.session, f.n));
    let mut u = Cassette { exchanges, frames };
    onto_recording_clock(&mut u, answers, sessions, asked_from_ms);
    u
}

/// Moves the live answers and the live (server) frames in `u` by `recording start − asked_from_ms`,
/// the way replay's time shift moves recorded times: the updated cassette then holds one clock.
/// Each exchange keeps its `recorded_at`. Without the move, replay would shift a live answer from
/// months after the recording by the same amount as the rest, into the future.
fn onto_recording_clock(
    u: &mut Cassette,
    answers: &HashMap<u64, Replacement>,
    sessions: &HashMap<u64, Vec<Frame>>,
    asked_from_ms: i64,
) {
    use crate::cassette::timeshift::{TimeAnalysis, TimeShift};
    let (start, fields) = TimeAnalysis::of(u.exchanges.iter(), &u.frames);
    let Some(start) = start else { return };
    let shift = TimeShift { delta_ms: start - asked_from_ms, mode: crate::config::ShiftMode::All, fields };
    for e in u.exchanges.iter_mut().filter(|e| answers.contains_key(&e.seq)) {
        shift.response(&mut e.response);
    }
    // A replaced session's client frames are the recording's own; its server frames are live.
    for f in u.frames.iter_mut().filter(|f| f.dir == Dir::Server && sessions.contains_key(&f.session)) {
        shift.frame(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassette::model::{test_exchange, FrameKind};

    fn result(seq: u64, outcome: Outcome, drift: Vec<Drift>) -> ExchangeResult {
        let mut r = ExchangeResult::new(seq, format!("GET api.mypurecloud.com/x/{seq}"), 200, 5);
        r.outcome = outcome;
        r.drift = drift;
        r
    }

    #[test]
    fn an_update_moves_live_times_onto_the_recordings_clock_and_leaves_recorded_ones() {
        let ms = |t: &str| crate::clock::parse_rfc3339(t).unwrap();
        // Recorded on 2026-01-05 from 09:00:00; verified on 2026-06-01 from 12:00:00.
        let c = Cassette {
            exchanges: vec![
                test_exchange(
                    1,
                    "GET",
                    "/calls/a",
                    None,
                    "",
                    200,
                    r#"{"id":"a","startTime":"2026-01-05T09:00:01.000Z"}"#,
                ),
                test_exchange(
                    2,
                    "GET",
                    "/calls/b",
                    None,
                    "",
                    200,
                    r#"{"id":"b","startTime":"2026-01-05T09:00:02.000Z"}"#,
                ),
            ],
            frames: vec![],
        };
        let mut live = test_exchange(1, "GET", "/calls/a", None, "", 200, "").response;
        live.body.bytes = r#"{"id":"a","startTime":"2026-06-01T12:00:03.500Z","new":1}"#.into();
        live.headers.push(("expires".into(), "Mon, 01 Jun 2026 12:00:10 GMT".into()));
        let mut answers = HashMap::new();
        answers.insert(1, Replacement { response: live, duration_ms: 3, token_shapes: vec![] });
        let frame = |n: u32, dir: Dir, text: &str| Frame {
            session: 2,
            n,
            dir,
            at_ms: n as u64,
            kind: FrameKind::Text,
            data: Body { bytes: text.to_string().into(), encoding: None },
            close_code: None,
            close_reason: None,
            after: None,
        };
        let mut sessions = HashMap::new();
        sessions.insert(
            2,
            vec![
                frame(0, Dir::Client, r#"{"startTime":"2026-01-05T09:00:02.500Z"}"#),
                frame(1, Dir::Server, r#"{"startTime":"2026-06-01T12:00:04.000Z"}"#),
            ],
        );
        let u = updated(&c, &answers, &sessions, ms("2026-06-01T12:00:00.000Z"));
        let body = |i: usize| String::from_utf8(u.exchanges[i].response.body.bytes.to_vec()).unwrap();
        assert_eq!(body(0), r#"{"id":"a","startTime":"2026-01-05T09:00:03.500Z","new":1}"#);
        assert!(u.exchanges[0].response.headers.contains(&("expires".into(), "Mon, 05 Jan 2026 09:00:10 GMT".into())));
        assert_eq!(u.exchanges[0].recorded_at, c.exchanges[0].recorded_at);
        assert_eq!(u.exchanges[1], c.exchanges[1], "a recorded answer is not moved");
        let text = |f: &Frame| String::from_utf8(f.data.bytes.to_vec()).unwrap();
        assert_eq!(
            text(&u.frames[0]),
            r#"{"startTime":"2026-01-05T09:00:02.500Z"}"#,
            "the recorded client frame stays"
        );
        assert_eq!(text(&u.frames[1]), r#"{"startTime":"2026-01-05T09:00:04.000Z"}"#);
    }

    #[test]
    fn the_summary_lists_each_category_and_the_exchanges_behind_it() {
        let mut limited = result(2, Outcome::Verified, vec![]);
        limited.rate_limited = 1;
        let mut skipped = result(4, Outcome::Skipped, vec![]);
        skipped.reason = Some("changes the sandbox (--mutations sends it)".into());
        let r = Report::new(
            "flow",
            false,
            vec![
                result(
                    1,
                    Outcome::Verified,
                    vec![
                        Drift::new(Category::Schema, "$.a", "field added (string)"),
                        Drift::new(Category::Headers, "deprecation", "added (\"true\")"),
                    ],
                ),
                limited,
                result(3, Outcome::Verified, vec![Drift::new(Category::Schema, "$.b", "field removed")]),
                skipped,
            ],
            vec![],
            vec![],
        );
        assert_eq!((r.verified, r.skipped, r.unverified, r.drifted), (3, 1, 0, 2));
        assert_eq!(r.summary["schema"], [1, 3]);
        assert_eq!(r.summary["headers"], [1]);
        assert!(r.summary["status"].is_empty() && r.summary["timing"].is_empty());
        assert!(r.failed());
        let t = r.text();
        assert!(t.contains("  schema       2  #1 #3\n"), "{t}");
        assert!(t.contains("rate limits: 1 answer(s) 429"), "{t}");
        assert!(t.contains("#4 GET api.mypurecloud.com/x/4: changes the sandbox"), "{t}");
        assert!(t.ends_with("drift in 2 of 3 verified exchanges; 0 not verified\n"), "{t}");
        let clean = Report::new("flow", true, vec![result(1, Outcome::Verified, vec![])], vec![], vec![]);
        assert!(!clean.failed() && clean.text().ends_with("no drift: the 1 verified exchanges answer as recorded\n"));
        let j = serde_json::to_value(&clean).unwrap();
        assert_eq!(j["summary"]["websocket"], serde_json::json!([]));
        assert_eq!(j["results"][0]["outcome"], "verified");
    }

    #[test]
    fn an_update_takes_the_live_answer_with_the_recorded_ids() {
        const REC: &str = "5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e";
        const LIVE: &str = "9d2e3f4a-1b2c-4d5e-8f9a-0b1c2d3e4f5a";
        let mut ids = IdMap::default();
        ids.learn_json(1, &serde_json::json!({"id": REC}), &serde_json::json!({"id": LIVE}));
        let c = Cassette {
            exchanges: vec![
                test_exchange(1, "POST", "/calls", None, "{}", 200, &format!(r#"{{"id":"{REC}"}}"#)),
                test_exchange(2, "GET", "/other", None, "", 200, "{}"),
            ],
            frames: vec![],
        };
        let live =
            test_exchange(1, "POST", "/calls", None, "{}", 201, &format!(r#"{{"id":"{LIVE}","new":true}}"#)).response;
        let mut answers = HashMap::new();
        answers.insert(1, Replacement { response: restored(&live, &ids), duration_ms: 9, token_shapes: vec![] });
        // Asked at the recording's own start: nothing moves.
        let u =
            updated(&c, &answers, &HashMap::new(), crate::clock::parse_rfc3339("2026-01-05T09:00:00.000Z").unwrap());
        assert_eq!(u.exchanges[0].response.status, 201);
        assert_eq!(&u.exchanges[0].response.body.bytes[..], format!(r#"{{"id":"{REC}","new":true}}"#).as_bytes());
        assert_eq!(u.exchanges[0].duration_ms, 9);
        assert_eq!(u.exchanges[1], c.exchanges[1]);
        let client = Frame {
            session: 3,
            n: 0,
            dir: Dir::Client,
            at_ms: 5,
            kind: FrameKind::Text,
            data: Body { bytes: "ping".into(), encoding: None },
            close_code: None,
            close_reason: None,
            after: None,
        };
        let lf = |at: u64, t: &str| LiveFrame {
            at_ms: at,
            after: Some(1),
            kind: FrameKind::Text,
            data: t.to_string().into(),
        };
        let fs = session_frames(
            3,
            std::slice::from_ref(&client),
            &[lf(1, &format!("{{\"c\":\"{LIVE}\"}}")), lf(9, "x")],
            &ids,
        );
        let got: Vec<(u32, Dir, u64)> = fs.iter().map(|f| (f.n, f.dir, f.at_ms)).collect();
        assert_eq!(got, [(0, Dir::Server, 1), (1, Dir::Client, 5), (2, Dir::Server, 9)]);
        assert_eq!(&fs[0].data.bytes[..], format!("{{\"c\":\"{REC}\"}}").as_bytes());
        assert_eq!(fs[0].after, Some(Anchor::Rest(1)));
    }
}
