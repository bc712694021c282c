//! The validation overlay: a request whose JSON body breaks the schema inferred from the cassette
//! (a missing required field, a wrong type) or whose `Content-Type` is not JSON where the recordings
//! sent JSON is refused as the platform refuses it (400 or 415), before any cassette lookup. Per
//! route: off, warn (log only) or enforce; configuration can pin required fields. An inferred
//! schema rests on its samples: one seen in a single recorded request only warns, unless the
//! recording shows the platform refusing a body there, a route declares `enforce`, or the field is
//! pinned; and a refusal yields to a recorded answer accepting this very request.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{json, Value};

use super::{Answer, Call, Ctx, Decision, Evidence, Ids, Overlay};
use crate::cassette::index::REQ_BODY;
use crate::cassette::schema::{has_template, template, Model};
use crate::cassette::Index;
use crate::config::{ValidateConfig, ValidateMode};
use crate::platform::ErrorKind;
use crate::sharded::ReadMostly;

/// What a route's requests must look like.
#[derive(Debug, Clone)]
struct Rule {
    /// The media type the recorded requests carried (without parameters); a JSON route refuses a body
    /// sent as anything else with 415.
    content_type: String,
    /// JSON Schema inferred from the recorded request bodies.
    schema: Value,
    /// Recorded requests the schema was inferred from.
    samples: usize,
    /// The first of them.
    first_seq: u64,
    /// Whether the recording shows the platform refusing a body here (400, 415, 422).
    refused: bool,
}

/// Samples an inferred schema needs before it refuses by itself.
const ENOUGH: usize = 2;

/// Request rules by host, then (method in lower case, path template): a request finds its rule
/// without building its template (see [`has_template`]).
type Rules = HashMap<String, Vec<(String, String, Rule)>>;

/// The validation overlay.
#[derive(Debug)]
pub struct Validate {
    /// `validate:` from `proxy.yaml`: the default mode, per-route modes and pinned required fields.
    cfg: ValidateConfig,
    /// For the correlation ids of refusal bodies.
    ids: Arc<Ids>,
    /// The inferred rules, swapped whole on a cassette switch; each thread reads its own copy of
    /// the `Arc` (no shared reference count touched per request).
    rules: ReadMostly<Arc<Rules>>,
}

/// The first way `v` breaks `schema` (the inferred subset: type, properties, required, items):
/// the field's dotted name and the rule.
pub(crate) fn violation(schema: &Value, v: &Value, at: &str) -> Option<(String, String)> {
    let mut path = at.to_string();
    first_violation(schema, v, &mut path)
}

/// [`violation`] with the field's name built in one buffer as the walk goes down, so a body that
/// keeps the rules costs no allocation per field.
fn first_violation(schema: &Value, v: &Value, at: &mut String) -> Option<(String, String)> {
    let field = |at: &str, k: &str| if at.is_empty() { k.to_string() } else { format!("{at}.{k}") };
    if let Some(t) = schema.get("type") {
        let allowed: &[Value] = match t {
            Value::String(_) => std::slice::from_ref(t),
            Value::Array(a) => a,
            _ => &[],
        };
        let actual = match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let has = |name: &str| allowed.iter().any(|a| a.as_str() == Some(name));
        let ok = allowed.is_empty() || has(actual) || (actual == "integer" && has("number"));
        if !ok {
            let name = if at.is_empty() { "the body".to_string() } else { format!("`{at}`") };
            let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
            return Some((at.clone(), format!("{name} must be {}, not {actual}", names.join(" or "))));
        }
    }
    if let Value::Object(m) = v {
        for r in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if !m.contains_key(r) {
                return Some((field(at, r), format!("`{}` is required", field(at, r))));
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, val) in m {
                if let Some(ps) = props.get(k) {
                    let len = at.len();
                    if !at.is_empty() {
                        at.push('.');
                    }
                    at.push_str(k);
                    let found = first_violation(ps, val, at);
                    at.truncate(len);
                    if found.is_some() {
                        return found;
                    }
                }
            }
        }
    }
    if let (Value::Array(items), Some(is)) = (v, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            let len = at.len();
            let _ = write!(at, "[{i}]");
            let found = first_violation(is, item, at);
            at.truncate(len);
            if found.is_some() {
                return found;
            }
        }
    }
    None
}

impl Validate {
    /// An overlay checking requests against what `exchanges` show.
    pub fn new(cfg: ValidateConfig, ids: Arc<Ids>, index: &Index) -> Validate {
        let v = Validate { cfg, ids, rules: ReadMostly::new(Arc::new(HashMap::new())) };
        v.learn(index);
        v
    }

    /// Infers the request schemas again (a cassette switch).
    pub fn learn(&self, index: &Index) {
        let mut m = Model::default();
        // Only requests with a body teach anything: a cassette of reads is not read at all.
        let picked = index.select(|h| h.flags & REQ_BODY != 0 && h.status != 101);
        m.add_request_bodies(picked.iter().map(|e| &**e));
        let mut seen: HashMap<(String, String, String), (u64, bool)> = HashMap::new();
        for e in &picked {
            let host = e.request.host.split(':').next().unwrap_or("").to_string();
            let key = (host, template(&e.request.path).0, e.request.method.to_ascii_lowercase());
            let s = seen.entry(key).or_insert((e.seq, false));
            s.1 |= matches!(e.response.status, 400 | 415 | 422);
        }
        let mut rules: Rules = HashMap::new();
        for (k, op) in m.ops {
            let (first_seq, refused) = seen.get(&k).copied().unwrap_or((0, false));
            if let Some((ct, shape)) = op.request {
                let schema = shape.to_schema();
                let rule = Rule { content_type: ct, schema, samples: op.samples, first_seq, refused };
                let (host, tpl, method) = k;
                rules.entry(host).or_default().push((method, tpl, rule));
            }
        }
        self.rules.set(Arc::new(rules));
    }

    /// The rule for `call`'s route, from `rules`.
    fn rule_of<'r>(rules: &'r Rules, call: &Call<'_>) -> Option<&'r Rule> {
        rules.get(call.host)?.iter().find_map(|(method, tpl, rule)| {
            (method.eq_ignore_ascii_case(call.method) && has_template(call.path, tpl)).then_some(rule)
        })
    }

    /// The mode for a route, and whether a route rule declares it.
    fn mode(&self, method: &str, path: &str) -> (ValidateMode, bool) {
        match self.cfg.routes.iter().find(|r| r.applies(method, path)) {
            Some(r) => (r.value, true),
            None => (self.cfg.mode, false),
        }
    }

    /// A refusal in the platform's shape, naming the field and the rule broken (`required`, `type`,
    /// `json`, `content-type`) in `details`.
    fn refuse(&self, call: &Call<'_>, status: u16, code: &str, message: String, field: &str, rule: &str) -> Answer {
        let detail = format!("{code}: {message}");
        let details = json!([{"errorCode": rule, "fieldName": field}]);
        super::platform_error(&self.ids, call.platform(), status, ErrorKind::Code(code), &message, details, detail)
    }
}

impl Overlay for Validate {
    /// `validate`.
    fn name(&self) -> &'static str {
        "validate"
    }

    /// Checks the body against pinned fields, the route's content type, JSON syntax and the inferred
    /// schema, in that order. Under `warn`, or on an inferred schema of one sample the recording gives
    /// no other support, only logs; otherwise refuses (a pinned field's refusal stands, an inferred one
    /// yields to a recording of this very request).
    fn on_request(&self, call: &Call<'_>, _ctx: &mut Ctx, ev: &Evidence<'_>) -> Decision {
        // The hot path: a request with no body breaks nothing unless a pinned field is required.
        if call.body.is_empty() && self.cfg.required.is_empty() {
            return Decision::Continue;
        }
        let (mode, declared) = self.mode(call.method, call.path);
        if mode == ValidateMode::Off {
            return Decision::Continue;
        }
        let rules = self.rules.read();
        let pinned: Vec<&String> = if self.cfg.required.is_empty() {
            Vec::new()
        } else {
            self.cfg.required.iter().filter(|r| r.applies(call.method, call.path)).flat_map(|r| &r.value).collect()
        };
        let rule = Self::rule_of(&rules, call);
        if rule.is_none() && pinned.is_empty() {
            return Decision::Continue;
        }
        // With no field pinned, any refusal here rests on an inferred rule, and yields to a
        // recording of this very request (the pipeline's rule): such a request is not read at all.
        // So is one whose exact bytes the recording shows sent (a repeat, served by the last
        // recording again): the platform took this body as it is.
        let recorded_as_is = || {
            ev.peek().is_some_and(|p| {
                let rec = &p.exchange.request;
                rec.body.bytes[..] == call.body[..] && rec.header("content-type") == call.header("content-type")
            })
        };
        if pinned.is_empty() && (ev.following(call).is_some() || recorded_as_is()) {
            return Decision::Continue;
        }
        let ct = call.header("content-type").unwrap_or("").to_ascii_lowercase();
        let found = if !call.body.is_empty()
            && rule.is_some_and(|r| r.content_type.contains("json"))
            && !ct.contains("json")
        {
            let shown = if ct.is_empty() { "none".to_string() } else { ct.clone() };
            Some((
                415,
                "unsupported.media.type",
                format!("Content-Type {shown} is not supported here: send application/json"),
                String::new(),
                "content-type",
            ))
        } else {
            // The body's one parse; a body that is not JSON is parsed again, for the error.
            let parsed = match call.json() {
                Some(v) => Ok(v),
                None if call.body.is_empty() => Ok(&Value::Null),
                None => serde_json::from_slice::<Value>(call.body).map(|_| &Value::Null),
            };
            match parsed {
                Err(e) => Some((
                    400,
                    "bad.request",
                    format!("The request body is not valid JSON: {e}"),
                    String::new(),
                    "json",
                )),
                Ok(v) => {
                    let missing = pinned.iter().find(|f| v.get(f.as_str()).is_none());
                    match (missing, rule) {
                        (Some(f), _) => Some((
                            400,
                            "bad.request",
                            format!("Validation failed: `{f}` is required"),
                            f.to_string(),
                            "required",
                        )),
                        (None, Some(r)) if !call.body.is_empty() => violation(&r.schema, v, "").map(|(field, msg)| {
                            let kind = if msg.ends_with("is required") { "required" } else { "type" };
                            (400, "bad.request", format!("Validation failed: {msg}"), field, kind)
                        }),
                        _ => None,
                    }
                }
            }
        };
        let Some((status, code, message, field, rule_name)) = found else { return Decision::Continue };
        // What the refusal rests on: a pinned field, or the recorded requests the schema came from.
        let pinned_hit = rule_name == "required" && pinned.iter().any(|f| **f == field);
        let (evidence, thin) = match rule {
            _ if pinned_hit => ("validate.required".to_string(), false),
            Some(_) if rule_name == "json" => ("the body is not JSON".to_string(), false),
            Some(r) => (
                format!(
                    "schema inferred from {} recorded request{} (first #{}){}",
                    r.samples,
                    if r.samples == 1 { "" } else { "s" },
                    r.first_seq,
                    if r.refused { ", the recording shows the platform refusing bodies here" } else { "" }
                ),
                r.samples < ENOUGH && !r.refused && !declared,
            ),
            None => ("validate.required".to_string(), false),
        };
        if mode == ValidateMode::Warn || thin {
            let why = if thin { "thin evidence, warn only" } else { "warn only" };
            tracing::warn!(
                method = call.method,
                host = call.host,
                path = call.path,
                "validation ({why}): {message}; {evidence}"
            );
            return Decision::Continue;
        }
        // A pinned field is the user's own rule and stands; an inferred one yields to a recorded
        // answer accepting this very request.
        let mut a = self.refuse(call, status, code, message, &field, rule_name);
        if !pinned_hit {
            a = a.by_rule();
        }
        a.detail = format!("{}; {evidence}", a.detail);
        tracing::info!(method = call.method, host = call.host, path = call.path, "validation refused: {}", a.detail);
        Decision::Answer(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_name_the_field_and_the_rule() {
        let s = json!({"type": "object", "required": ["phoneNumber"], "properties": {
            "phoneNumber": {"type": "string"},
            "n": {"type": "number"},
            "list": {"type": "array", "items": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}}
        }});
        assert_eq!(violation(&s, &json!({"phoneNumber": "+1", "n": 3}), ""), None, "an integer is a number");
        assert_eq!(violation(&s, &json!({"n": 1}), "").map(|x| x.0), Some("phoneNumber".into()));
        let (f, m) = violation(&s, &json!({"phoneNumber": 5}), "").unwrap();
        assert_eq!((f.as_str(), m.as_str()), ("phoneNumber", "`phoneNumber` must be string, not integer"));
        let (f, _) = violation(&s, &json!({"phoneNumber": "x", "list": [{"id": "a"}, {}]}), "").unwrap();
        assert_eq!(f, "list[1].id");
        assert!(violation(&s, &json!([1]), "").unwrap().1.contains("the body must be object"));
    }
}
