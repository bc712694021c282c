//! A miss explained field by field: where a live request's fingerprint parts from a recording's
//! (the method, host, path, each query parameter and matched header, each JSON body field), and the
//! `match:` setting that would make the two one, when a setting can.

use serde::Serialize;
use serde_json::Value;

use super::fingerprint::{BodyKey, Fingerprint};

/// One differing field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    /// `method`, `host`, `path`, `query`, `header` or `body`.
    pub part: &'static str,
    /// The parameter or header name, or the body's JSON path (`$.a.b[0]`); empty for the whole part.
    pub field: String,
    /// The live request's value (`null`: absent).
    pub live: Value,
    /// The recording's value (`null`: absent).
    pub recorded: Value,
}

/// Fields compared in one body before the rest is left out.
const MAX_FIELDS: usize = 40;

/// The fields where `live` and `recorded` differ, and the `match:` setting that would ignore them
/// all, when there is one (only query parameters, only JSON body fields, or only matched headers).
pub fn fields(live: &Fingerprint, recorded: &Fingerprint) -> (Vec<Field>, Option<String>) {
    let mut out = Vec::new();
    let whole = |part, a: &str, b: &str| Field { part, field: String::new(), live: a.into(), recorded: b.into() };
    if live.method != recorded.method {
        out.push(whole("method", &live.method, &recorded.method));
    }
    if live.host != recorded.host {
        out.push(whole("host", &live.host, &recorded.host));
    }
    if live.path != recorded.path {
        out.push(whole("path", &live.path, &recorded.path));
    }
    pairs("query", &live.query, &recorded.query, &mut out);
    pairs("header", &live.headers, &recorded.headers, &mut out);
    if live.body != recorded.body {
        match (&live.body, &recorded.body) {
            (BodyKey::Json(a), BodyKey::Json(b)) => match (serde_json::from_str(a), serde_json::from_str(b)) {
                (Ok(a), Ok(b)) => json_fields(&a, &b, "$", &mut out),
                _ => out.push(whole("body", a, b)),
            },
            (BodyKey::Form(a), BodyKey::Form(b)) => pairs("body", a, b, &mut out),
            (a, b) => out.push(Field { part: "body", field: String::new(), live: shown(a), recorded: shown(b) }),
        }
    }
    let only = |part: &str| !out.is_empty() && out.iter().all(|f| f.part == part && !f.field.is_empty());
    let names = |star: bool| {
        let mut v: Vec<String> =
            out.iter().map(|f| if star { indices_as_star(&f.field) } else { f.field.clone() }).collect();
        v.dedup();
        v.join(", ")
    };
    let json_body = matches!((&live.body, &recorded.body), (BodyKey::Json(_), BodyKey::Json(_)));
    let hint = if only("query") {
        Some(format!("match.ignore_query: [{}]", names(false)))
    } else if only("body") && json_body {
        Some(format!("match.ignore_json_paths: [{}]", names(true)))
    } else if only("header") {
        Some(format!("match.headers without {}", names(false)))
    } else {
        None
    };
    (out, hint)
}

/// Sorted name/value pairs compared by name (a name may repeat: its values compared as a list).
fn pairs(part: &'static str, live: &[(String, String)], recorded: &[(String, String)], out: &mut Vec<Field>) {
    let values = |ps: &[(String, String)], k: &str| -> Value {
        let v: Vec<&str> = ps.iter().filter(|(n, _)| n == k).map(|(_, v)| v.as_str()).collect();
        match v.as_slice() {
            [] => Value::Null,
            [one] => Value::String(one.to_string()),
            many => many.iter().map(|s| Value::String(s.to_string())).collect(),
        }
    };
    let mut names: Vec<&str> = live.iter().chain(recorded).map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for k in names {
        let (a, b) = (values(live, k), values(recorded, k));
        if a != b && out.len() < MAX_FIELDS {
            out.push(Field { part, field: k.to_string(), live: a, recorded: b });
        }
    }
}

/// The JSON paths where `after` differs from `before` (what redaction replaced, by name only).
pub fn changed_paths(before: &Value, after: &Value) -> Vec<String> {
    let mut out = Vec::new();
    json_fields(before, after, "$", &mut out);
    out.into_iter().map(|f| f.field).collect()
}

/// The leaves where two JSON bodies differ, by path.
fn json_fields(live: &Value, recorded: &Value, at: &str, out: &mut Vec<Field>) {
    if out.len() >= MAX_FIELDS {
        return;
    }
    match (live, recorded) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            for k in keys {
                let path = format!("{at}.{k}");
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => json_fields(x, y, &path, out),
                    (x, y) => out.push(Field {
                        part: "body",
                        field: path,
                        live: x.cloned().unwrap_or(Value::Null),
                        recorded: y.cloned().unwrap_or(Value::Null),
                    }),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                json_fields(x, y, &format!("{at}[{i}]"), out);
            }
        }
        (a, b) if a != b => {
            out.push(Field { part: "body", field: at.to_string(), live: a.clone(), recorded: b.clone() })
        }
        _ => {}
    }
}

/// A JSON path as `match.ignore_json_paths` writes it: array positions as `*`.
fn indices_as_star(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str(".*");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// A body that is not JSON on both sides, as a value for the page.
fn shown(b: &BodyKey) -> Value {
    match b {
        BodyKey::Empty => Value::Null,
        BodyKey::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        BodyKey::Form(f) => f.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&").into(),
        BodyKey::Raw { len, hash } => format!("{len} bytes (hash {hash:016x})").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(path: &str, query: &[(&str, &str)], body: BodyKey) -> Fingerprint {
        Fingerprint {
            method: "POST".into(),
            host: "api.mypurecloud.com".into(),
            path: path.into(),
            query: query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            headers: vec![],
            body,
        }
    }

    #[test]
    fn each_differing_field_is_named_with_the_setting_that_would_ignore_it() {
        let json = |s: &str| BodyKey::Json(s.into());
        let (f, hint) = fields(
            &fp("/a", &[], json(r#"{"interval":"x","n":1,"items":[{"id":"l"}]}"#)),
            &fp("/a", &[], json(r#"{"interval":"y","n":1,"items":[{"id":"r"}]}"#)),
        );
        let names: Vec<&str> = f.iter().map(|x| x.field.as_str()).collect();
        assert_eq!(names, ["$.interval", "$.items[0].id"]);
        assert_eq!((f[0].live.as_str(), f[0].recorded.as_str()), (Some("x"), Some("y")));
        assert_eq!(hint.as_deref(), Some("match.ignore_json_paths: [$.interval, $.items.*.id]"));

        let (f, hint) = fields(
            &fp("/a", &[("page", "2"), ("t", "1")], BodyKey::Empty),
            &fp("/a", &[("page", "1")], BodyKey::Empty),
        );
        assert_eq!(f.iter().map(|x| x.field.as_str()).collect::<Vec<_>>(), ["page", "t"]);
        assert_eq!(f[1].recorded, Value::Null, "absent in the recording");
        assert_eq!(hint.as_deref(), Some("match.ignore_query: [page, t]"));

        // A different path is no setting's business.
        let (f, hint) = fields(&fp("/a", &[("x", "1")], BodyKey::Empty), &fp("/b", &[], BodyKey::Empty));
        assert_eq!((f[0].part, f.len()), ("path", 2));
        assert_eq!(hint, None);
    }
}
