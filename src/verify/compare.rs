//! How a live answer differs from the recorded one, in the categories a user acts on: the
//! **status**; the **schema** (the inference of `schema export` applied to both answers: fields
//! added, removed, retyped, newly null, newly required); the **headers** that matter (content
//! type, caching, deprecation and sunset, rate limits); the **timing** past a factor. Values that
//! differ but keep their type and format (a new UUID where a UUID was, a later timestamp) are not
//! drift, and neither is anything under `match.ignore_json_paths`. Plain data in, drift out.

use serde::Serialize;
use serde_json::Value;

use crate::cassette::model::RecordedResponse;
use crate::cassette::schema::{location, Shape, ShapeChange};
use crate::platform::Platform;

/// What kind of drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Category {
    /// The status code changed.
    Status,
    /// The body's shape changed.
    Schema,
    /// A header that matters was added, removed or changed.
    Headers,
    /// A WebSocket session's events changed (topics, event shapes).
    Websocket,
    /// The answer came much slower than recorded.
    Timing,
}

impl Category {
    /// Every category, in report order.
    pub(crate) const ALL: [Category; 5] =
        [Category::Status, Category::Schema, Category::Headers, Category::Websocket, Category::Timing];

    /// Its name in reports.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Category::Status => "status",
            Category::Schema => "schema",
            Category::Headers => "headers",
            Category::Websocket => "websocket",
            Category::Timing => "timing",
        }
    }
}

/// One difference between a recorded answer and the live one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Drift {
    /// Its category.
    pub(crate) category: Category,
    /// Where: a JSON location (`$.entities[].id`), a header name, `status`, a topic.
    pub(crate) at: String,
    /// What changed, in words.
    pub(crate) change: String,
}

impl Drift {
    /// A drift of `category` at `at`.
    pub(crate) fn new(category: Category, at: impl Into<String>, change: impl Into<String>) -> Drift {
        Drift { category, at: at.into(), change: change.into() }
    }
}

/// What counts as drift: volatile JSON locations to ignore, and when slower is too slow.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    /// `match.ignore_json_paths`, as segments (`items.*.ts` → `["items", "*", "ts"]`).
    ignore: Vec<Vec<String>>,
    /// Slower by this factor ...
    timing_factor: f64,
    /// ... and by this many milliseconds.
    timing_min_ms: u64,
}

impl Rules {
    /// Rules from `match.ignore_json_paths` and the timing thresholds.
    pub(crate) fn new(ignore_json_paths: &[String], timing_factor: f64, timing_min_ms: u64) -> Rules {
        let ignore = ignore_json_paths
            .iter()
            .map(|p| p.trim_start_matches('$').trim_start_matches('.').split('.').map(String::from).collect())
            .collect();
        Rules { ignore, timing_factor, timing_min_ms }
    }

    /// Whether a change at `at` is under an ignored location (`*` stands for any key or the
    /// items of an array, as an index does).
    fn ignored(&self, at: &[String]) -> bool {
        self.ignore.iter().any(|p| {
            p.len() <= at.len()
                && p.iter()
                    .zip(at)
                    .all(|(want, seg)| want == "*" || want == seg || (seg == "[]" && want.parse::<usize>().is_ok()))
        })
    }
}

/// A body as JSON, when its content type says JSON or it opens an object or array, and it parses.
pub(crate) fn json_of(headers: &[(String, String)], body: &[u8]) -> Option<Value> {
    let ct = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.as_str());
    if body.is_empty() || !crate::cassette::redact::looks_json(&ct.unwrap_or("").to_ascii_lowercase(), body) {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// The shape of some samples.
pub(crate) fn shape_of<'a>(samples: impl IntoIterator<Item = &'a Value>) -> Shape {
    let mut s = Shape::default();
    samples.into_iter().for_each(|v| s.merge(v));
    s
}

/// Shape changes as drift of `category`, `prefix` before each location, ignored locations left out.
pub(crate) fn shape_drift(
    recorded: &Shape,
    live: &Shape,
    rules: &Rules,
    category: Category,
    prefix: &str,
) -> Vec<Drift> {
    recorded
        .changes(live)
        .into_iter()
        .filter(|c| !rules.ignored(c.at()))
        .map(|c| {
            let at = format!("{prefix}{}", location(c.at()));
            let change = match c {
                ShapeChange::Added { types, .. } => format!("field added ({})", types.join(" | ")),
                ShapeChange::Removed { .. } => "field removed".to_string(),
                ShapeChange::TypeChanged { from, to, .. } => format!("type changed from {from} to {to}"),
                ShapeChange::NewlyNull { .. } => "newly null".to_string(),
                ShapeChange::NewlyRequired { .. } => "newly required".to_string(),
            };
            Drift::new(category, at, change)
        })
        .collect()
}

/// How the live body's shape differs from the recorded body's.
fn schema(recorded: &RecordedResponse, live: &RecordedResponse, rules: &Rules) -> Vec<Drift> {
    let (a, b) = (json_of(&recorded.headers, &recorded.body.bytes), json_of(&live.headers, &live.body.bytes));
    let what = |r: &RecordedResponse| if r.body.bytes.is_empty() { "no body" } else { "a body that is not JSON" };
    match (a, b) {
        (Some(a), Some(b)) => shape_drift(&shape_of([&a]), &shape_of([&b]), rules, Category::Schema, ""),
        (None, None) => Vec::new(),
        (None, Some(_)) => {
            vec![Drift::new(Category::Schema, "$", format!("JSON where the recording had {}", what(recorded)))]
        }
        (Some(_), None) => {
            vec![Drift::new(Category::Schema, "$", format!("{} where the recording had JSON", what(live)))]
        }
    }
}

/// How a watched header is compared: by (normalised) value, or by presence alone (its value
/// moves by nature: a date, a count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// Added, removed or changed.
    Value,
    /// Added or removed.
    Presence,
}

/// Whether a header matters, and how; `None` for the rest.
fn watch(name: &str, rate_prefixes: &[&str]) -> Option<Watch> {
    match name {
        "content-type" | "cache-control" | "vary" | "deprecation" | "sunset" => Some(Watch::Value),
        "expires" | "etag" | "last-modified" | "retry-after" => Some(Watch::Presence),
        n if rate_prefixes.iter().any(|p| n.starts_with(p)) => Some(Watch::Presence),
        _ => None,
    }
}

/// A watched header's value as compared: a content type without its parameters, cache
/// directives without their numbers, `Vary` as a set; the others trimmed.
fn normalised(name: &str, value: &str) -> String {
    let v = value.trim().to_ascii_lowercase();
    let set = |s: &str, f: &dyn Fn(&str) -> String| {
        let mut parts: Vec<String> = s.split(',').map(|p| f(p.trim())).filter(|p| !p.is_empty()).collect();
        parts.sort();
        parts.dedup();
        parts.join(", ")
    };
    match name {
        "content-type" => v.split(';').next().unwrap_or("").trim().to_string(),
        "cache-control" => set(&v, &|d| d.split('=').next().unwrap_or("").trim().to_string()),
        "vary" => set(&v, &|d| d.to_string()),
        _ => value.trim().to_string(),
    }
}

/// The values of header `name` (any case), joined.
fn values(headers: &[(String, String)], name: &str) -> Option<String> {
    let v: Vec<&str> = headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect();
    (!v.is_empty()).then(|| v.join(", "))
}

/// Watched headers added, removed or changed.
fn headers(recorded: &RecordedResponse, live: &RecordedResponse, platform: Platform) -> Vec<Drift> {
    let prefixes = platform.rate_limit_headers();
    let mut names: Vec<String> =
        recorded.headers.iter().chain(&live.headers).map(|(k, _)| k.to_ascii_lowercase()).collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let Some(how) = watch(&name, &prefixes) else { continue };
        let change = match (values(&recorded.headers, &name), values(&live.headers, &name)) {
            (None, Some(l)) => format!("added ({l:?})"),
            (Some(r), None) => format!("removed (was {r:?})"),
            (Some(r), Some(l)) if how == Watch::Value && normalised(&name, &r) != normalised(&name, &l) => {
                format!("changed from {r:?} to {l:?}")
            }
            _ => continue,
        };
        out.push(Drift::new(Category::Headers, name, change));
    }
    out
}

/// How a live answer differs from the recorded one: the status alone when it changed (an error
/// body's shape says nothing of the answer's), else the schema and the watched headers.
pub(crate) fn answer(
    recorded: &RecordedResponse,
    live: &RecordedResponse,
    platform: Platform,
    rules: &Rules,
) -> Vec<Drift> {
    if recorded.status != live.status {
        return vec![Drift::new(
            Category::Status,
            "status",
            format!("changed from {} to {}", recorded.status, live.status),
        )];
    }
    let mut out = schema(recorded, live, rules);
    out.extend(headers(recorded, live, platform));
    out
}

/// Timing drift: the live answer took `rules`' factor times as long as the recorded one, and at
/// least its minimum more.
pub(crate) fn timing(recorded_ms: u64, live_ms: u64, rules: &Rules) -> Option<Drift> {
    let slow = live_ms as f64 > recorded_ms as f64 * rules.timing_factor
        && live_ms.saturating_sub(recorded_ms) >= rules.timing_min_ms;
    slow.then(|| {
        Drift::new(
            Category::Timing,
            "latency",
            format!("{live_ms} ms live, {recorded_ms} ms recorded (over {}× slower)", rules.timing_factor),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassette::model::Body;
    use bytes::Bytes;
    use serde_json::json;

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> RecordedResponse {
        RecordedResponse {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: Body { bytes: Bytes::from(body.to_string()), encoding: None },
        }
    }

    fn rules() -> Rules {
        Rules::new(&["meta.requestId".into(), "items.*.ts".into()], 3.0, 500)
    }

    const JSON: (&str, &str) = ("content-type", "application/json");

    #[test]
    fn new_values_of_the_same_type_and_format_are_no_drift() {
        let a = resp(200, &[JSON, ("date", "Mon, 05 Jan 2026 09:00:00 GMT"), ("inin-correlation-id", "c-1")],
            &json!({"id": "5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e", "at": "2026-01-05T09:00:00Z", "token": "[REDACTED]", "n": 1}).to_string());
        let b = resp(200, &[("Content-Type", "application/json; charset=UTF-8"), ("date", "Tue, 06 Jan 2026 10:00:00 GMT"), ("inin-correlation-id", "c-2")],
            &json!({"id": "9d2e3f4a-1b2c-4d5e-8f9a-0b1c2d3e4f5a", "at": "2026-02-01T10:11:12.131Z", "token": "[REDACTED]", "n": 7}).to_string());
        assert_eq!(answer(&a, &b, Platform::Genesys, &rules()), vec![]);
    }

    #[test]
    fn fields_types_nulls_and_ignored_paths() {
        let a = resp(200, &[JSON], &json!({"id": "u-1", "state": "active", "total": 0, "name": "A", "meta": {"requestId": "r"}, "items": [{"ts": 1}]}).to_string());
        let b = resp(200, &[JSON], &json!({"id": "u-1", "total": "0", "name": null, "department": "Support", "meta": {"requestId": 5}, "items": [{"ts": "x"}]}).to_string());
        let got: Vec<(String, String)> =
            answer(&a, &b, Platform::Genesys, &rules()).into_iter().map(|d| (d.at, d.change)).collect();
        assert_eq!(
            got,
            [
                ("$.name".to_string(), "newly null".to_string()),
                ("$.state".into(), "field removed".into()),
                ("$.total".into(), "type changed from number to string".into()),
                ("$.department".into(), "field added (string)".into()),
            ]
        );
        let empty = resp(202, &[], "");
        assert_eq!(answer(&empty, &resp(202, &[], ""), Platform::Genesys, &rules()), vec![]);
        let d = answer(&empty, &resp(202, &[JSON], "{}"), Platform::Genesys, &rules());
        assert_eq!(
            d,
            [
                Drift::new(Category::Schema, "$", "JSON where the recording had no body"),
                Drift::new(Category::Headers, "content-type", "added (\"application/json\")"),
            ]
        );
    }

    #[test]
    fn a_changed_status_is_reported_alone() {
        let a = resp(200, &[JSON], r#"{"entities":[]}"#);
        let b = resp(404, &[JSON, ("deprecation", "true")], r#"{"code":"not.found"}"#);
        assert_eq!(
            answer(&a, &b, Platform::Genesys, &rules()),
            [Drift::new(Category::Status, "status", "changed from 200 to 404")]
        );
    }

    #[test]
    fn headers_that_matter_by_value_or_presence() {
        let a = resp(
            200,
            &[JSON, ("cache-control", "no-cache, max-age=0"), ("inin-ratelimit-count", "3"), ("etag", "\"a\"")],
            "{}",
        );
        let b = resp(
            200,
            &[
                ("content-type", "text/html"),
                ("cache-control", "max-age=60, no-cache"),
                ("inin-ratelimit-count", "4"),
                ("deprecation", "true"),
                ("sunset", "Wed, 01 Jul 2026 00:00:00 GMT"),
                ("x-ratelimit-remaining", "9"),
                ("x-other", "1"),
            ],
            "{}",
        );
        let got: Vec<(String, String)> =
            headers(&a, &b, Platform::Genesys).into_iter().map(|d| (d.at, d.change)).collect();
        assert_eq!(
            got,
            [
                ("content-type".to_string(), "changed from \"application/json\" to \"text/html\"".to_string()),
                ("deprecation".into(), "added (\"true\")".into()),
                ("etag".into(), "removed (was \"\\\"a\\\"\")".into()),
                ("sunset".into(), "added (\"Wed, 01 Jul 2026 00:00:00 GMT\")".into()),
                ("x-ratelimit-remaining".into(), "added (\"9\")".into()),
            ],
            "cache directives without their numbers; rate-limit counts by presence"
        );
    }

    #[test]
    fn slower_is_drift_past_the_factor_and_the_minimum() {
        let r = rules();
        assert!(timing(10, 25, &r).is_none(), "2.5× slower");
        assert!(timing(10, 400, &r).is_none(), "40× slower, but only 390 ms");
        assert!(timing(200, 900, &r).is_some());
        assert!(timing(300, 850, &r).is_none(), "under 3×");
    }
}
