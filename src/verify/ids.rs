//! Ids made along the way. A call or item created during the run gets another id live than it
//! got when recorded; the mapping is learned by walking a recorded answer and its live answer
//! side by side (the recorded id at a JSON path ↔ the live id at the same path), and later
//! requests are rewritten with it: `GET /calls/{recorded id}` is sent as `GET /calls/{live id}`.
//! Plain text and JSON in, plain text out.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use crate::cassette::schema::is_id;

/// Whether `c` can be part of an id: letters, digits, `-` and `_`.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// The maximal runs of id characters in `text`, with where each starts.
pub(crate) fn tokens(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || {
        while rest.peek().is_some_and(|(_, c)| !is_token_char(*c)) {
            rest.next();
        }
        let (start, _) = *rest.peek()?;
        let mut end = start;
        while let Some((i, c)) = rest.peek().copied() {
            if !is_token_char(c) {
                break;
            }
            end = i + c.len_utf8();
            rest.next();
        }
        Some((start, &text[start..end]))
    })
}

/// Whether a token starts like a date (`2026-01-05...`): a time is not an id.
fn date_like(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[7] == b'-'
}

/// Whether a token reads as an id an answer hands out: a UUID, a long number, or a long token with
/// digits (the path-template rules), not a date.
pub(crate) fn id_like(t: &str) -> bool {
    t.len() >= 6 && is_id(t) && !date_like(t)
}

/// Whether a JSON key names an id (`id`, `userId`, `queue_id`, `ID`).
fn id_key(k: &str) -> bool {
    k.eq_ignore_ascii_case("id") || k.ends_with("Id") || k.ends_with("_id") || k.ends_with("ID")
}

/// One id learned: what the recording had, what the platform gave live, and where it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Learned {
    /// The id in the recording.
    pub(crate) recorded: String,
    /// The id live.
    pub(crate) live: String,
    /// The exchange whose answers showed it.
    pub(crate) seq: u64,
    /// The JSON location (or header) it was at.
    pub(crate) at: String,
}

/// Recorded ids and their live counterparts, both ways.
#[derive(Debug, Default)]
pub(crate) struct IdMap {
    /// In the order learned.
    learned: Vec<Learned>,
    /// Recorded id → index in `learned`.
    forward: HashMap<String, usize>,
    /// Live id → index in `learned`.
    back: HashMap<String, usize>,
    /// Every token of the recording: a live value among them is an id the recording already
    /// knew (a list in another order), not a new one.
    known: HashSet<String>,
}

impl IdMap {
    /// A map for a recording whose tokens are `known` (see [`IdMap::known_in`]).
    pub(crate) fn new(known: HashSet<String>) -> IdMap {
        IdMap { known, ..IdMap::default() }
    }

    /// The tokens of some recorded texts (paths, queries, bodies, headers).
    pub(crate) fn known_in<'a>(texts: impl IntoIterator<Item = &'a [u8]>) -> HashSet<String> {
        let mut out = HashSet::new();
        for t in texts {
            for (_, tok) in tokens(&String::from_utf8_lossy(t)) {
                if tok.len() >= 3 {
                    out.insert(tok.to_string());
                }
            }
        }
        out
    }

    /// What was learned, in order.
    pub(crate) fn learned(&self) -> &[Learned] {
        &self.learned
    }

    /// Records `recorded` ↔ `live` unless either side is known already, or `live` is an id the
    /// recording holds anyway.
    fn add(&mut self, recorded: &str, live: &str, seq: u64, at: &str) {
        if recorded == live
            || self.forward.contains_key(recorded)
            || self.back.contains_key(live)
            || self.known.contains(live)
        {
            return;
        }
        let i = self.learned.len();
        self.learned.push(Learned { recorded: recorded.into(), live: live.into(), seq, at: at.into() });
        self.forward.insert(recorded.into(), i);
        self.back.insert(live.into(), i);
    }

    /// Learns from two strings at one place: token by token, where both have the same number of
    /// tokens (an id, or a URI with ids in it), the ids that differ. `numeric` lets a number of
    /// three digits or more count (it stood under an id's key).
    pub(crate) fn learn_text(&mut self, seq: u64, at: &str, recorded: &str, live: &str, numeric: bool) {
        // A token (a JWT's claims differ in their times) or a redacted value is no id.
        let secretish = |t: &str| {
            t.contains(crate::cassette::redact::MARKER) || (t.starts_with("eyJ") && t.matches('.').count() == 2)
        };
        if secretish(recorded) || secretish(live) {
            return;
        }
        let (a, b): (Vec<&str>, Vec<&str>) =
            (tokens(recorded).map(|(_, t)| t).collect(), tokens(live).map(|(_, t)| t).collect());
        if a.len() != b.len() {
            return;
        }
        let ok = |t: &str| id_like(t) || (numeric && t.len() >= 3 && t.bytes().all(|b| b.is_ascii_digit()));
        for (r, l) in a.iter().zip(&b) {
            if r != l && ok(r) && ok(l) {
                self.add(r, l, seq, at);
            }
        }
    }

    /// Learns from a recorded answer body and its live answer, walked side by side: objects by
    /// key, arrays by position.
    pub(crate) fn learn_json(&mut self, seq: u64, recorded: &Value, live: &Value) {
        self.walk(seq, "$", None, recorded, live);
    }

    /// [`IdMap::learn_json`] at `at`, under the key `key`.
    fn walk(&mut self, seq: u64, at: &str, key: Option<&str>, a: &Value, b: &Value) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, va) in x {
                    if let Some(vb) = y.get(k) {
                        self.walk(seq, &format!("{at}.{k}"), Some(k), va, vb);
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    self.walk(seq, &format!("{at}[{i}]"), key, va, vb);
                }
            }
            (Value::String(x), Value::String(y)) => self.learn_text(seq, at, x, y, key.is_some_and(id_key)),
            (Value::Number(x), Value::Number(y)) if key.is_some_and(id_key) && x.is_u64() && y.is_u64() => {
                self.learn_text(seq, at, &x.to_string(), &y.to_string(), true)
            }
            _ => {}
        }
    }

    /// `text` with every token in `map` replaced; borrowed when nothing was.
    fn replace<'t>(&self, text: &'t str, map: &HashMap<String, usize>, live: bool) -> Cow<'t, str> {
        if map.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::new();
        let mut copied = 0;
        for (start, tok) in tokens(text) {
            if let Some(&i) = map.get(tok) {
                let l = &self.learned[i];
                out.push_str(&text[copied..start]);
                out.push_str(if live { &l.live } else { &l.recorded });
                copied = start + tok.len();
            }
        }
        if copied == 0 {
            return Cow::Borrowed(text);
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// A recorded path, query or body with each recorded id learned so far as its live id.
    pub(crate) fn rewrite<'t>(&self, text: &'t str) -> Cow<'t, str> {
        self.replace(text, &self.forward, true)
    }

    /// A live answer with each live id learned as the recorded one, so an answer written back to
    /// a cassette agrees with the recorded requests that follow it.
    pub(crate) fn restore<'t>(&self, text: &'t str) -> Cow<'t, str> {
        self.replace(text, &self.back, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const REC: &str = "5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e";
    const LIVE: &str = "9d2e3f4a-1b2c-4d5e-8f9a-0b1c2d3e4f5a";

    #[test]
    fn tokens_split_on_everything_but_id_characters() {
        let t: Vec<&str> = tokens("/api/v2/calls/ab-1_2?x=1&y=%2F").map(|(_, t)| t).collect();
        assert_eq!(t, ["api", "v2", "calls", "ab-1_2", "x", "1", "y", "2F"]);
        assert!(id_like(REC) && id_like("streaming-0-7d1c9e2a4b6f") && id_like("1234567"));
        assert!(!id_like("calls") && !id_like("2026-01-05T09") && !id_like("12345"));
    }

    #[test]
    fn a_created_id_is_learned_at_its_path_and_rewrites_later_requests() {
        let known = IdMap::known_in([format!("{{\"id\":\"{REC}\"}}").as_bytes()]);
        let mut m = IdMap::new(known);
        m.learn_json(
            4,
            &json!({"id": REC, "selfUri": format!("/api/v2/conversations/calls/{REC}"), "n": 1, "agentId": 4242}),
            &json!({"id": LIVE, "selfUri": format!("/api/v2/conversations/calls/{LIVE}"), "n": 2, "agentId": 5151}),
        );
        let learned: Vec<(&str, &str, &str)> =
            m.learned().iter().map(|l| (l.recorded.as_str(), l.live.as_str(), l.at.as_str())).collect();
        assert_eq!(learned, [(REC, LIVE, "$.id"), ("4242", "5151", "$.agentId")], "a count is no id; `n` is not");
        assert_eq!(
            m.rewrite(&format!("/api/v2/conversations/calls/{REC}/participants/p-1")),
            format!("/api/v2/conversations/calls/{LIVE}/participants/p-1")
        );
        assert_eq!(m.rewrite("/agents/4242/x42420"), "/agents/5151/x42420", "whole tokens only");
        assert!(matches!(m.rewrite("/api/v2/users/me"), Cow::Borrowed(_)));
        assert_eq!(m.restore(&format!("{{\"id\":\"{LIVE}\"}}")), format!("{{\"id\":\"{REC}\"}}"));
    }

    #[test]
    fn a_list_in_another_order_teaches_nothing() {
        let (a, b) = ("1a2b3c4d-0000-4000-8000-000000000001", "1a2b3c4d-0000-4000-8000-000000000002");
        let recorded = json!({"entities": [{"id": a}, {"id": b}]});
        let mut m = IdMap::new(IdMap::known_in([recorded.to_string().as_bytes()]));
        m.learn_json(2, &recorded, &json!({"entities": [{"id": b}, {"id": a}]}));
        assert!(m.learned().is_empty(), "{:?}", m.learned());
        // Nor is a token whose claims differ.
        m.learn_json(
            4,
            &json!({"t": "eyJhbGciOiJSUzI1NiJ9.eyJpYXQiOjF9.[REDACTED]"}),
            &json!({"t": "eyJhbGciOiJSUzI1NiJ9.eyJpYXQiOjJ9.[REDACTED]"}),
        );
        assert!(m.learned().is_empty(), "{:?}", m.learned());
        // Dates and short values that differ are no ids either.
        m.learn_json(
            3,
            &json!({"at": "2026-01-05T09:00:00Z", "v": "ab"}),
            &json!({"at": "2026-02-01T10:00:00Z", "v": "cd"}),
        );
        assert!(m.learned().is_empty(), "{:?}", m.learned());
    }
}
