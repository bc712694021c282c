//! Schemas from recordings: path templates (`/users/{userId}`), JSON Schema inferred from samples
//! and merged incrementally, an OpenAPI 3.1 document, and the drift between two recordings.
//! Plain data in, plain data out.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::model::Exchange;

/// Whether a path segment is an id rather than a resource name.
pub(crate) fn is_id(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    let digits = seg.bytes().filter(u8::is_ascii_digit).count();
    let uuid = seg.len() == 36
        && seg.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    uuid || digits == seg.len() || (seg.len() >= 8 && digits > 0 && !seg.contains('.'))
}

/// The parameter name for an id that follows `resource` (Genesys and NICE names first).
fn param_name(resource: &str) -> String {
    let known = match resource {
        "calls" | "chats" | "emails" | "messages" | "callbacks" | "conversations" => "conversationId",
        "participants" => "participantId",
        "users" => "userId",
        "queues" => "queueId",
        "channels" => "channelId",
        "agent-sessions" => "sessionId",
        "agents" => "agentId",
        "contacts" => "contactId",
        "skills" => "skillId",
        "groups" => "groupId",
        "teams" => "teamId",
        "divisions" => "divisionId",
        "subscriptions" => "subscriptionId",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let stem = resource.trim_end_matches('s');
    let mut out = String::new();
    let mut upper = false;
    for c in stem.chars() {
        if c == '-' || c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    if out.is_empty() {
        "id".into()
    } else {
        format!("{out}Id")
    }
}

/// A path as a template, with its parameters: `/api/v2/users/{userId}`.
pub fn template(path: &str) -> (String, Vec<String>) {
    let mut params: Vec<String> = Vec::new();
    let mut prev = "";
    let segs: Vec<String> = path
        .split('/')
        .map(|seg| {
            let out = if is_id(seg) {
                let mut name = param_name(prev);
                if params.contains(&name) {
                    name = format!("{name}{}", params.len() + 1);
                }
                params.push(name.clone());
                format!("{{{name}}}")
            } else {
                // An id is named after the last resource before it, never after another id's
                // value (two paths alike but for their ids share one template).
                prev = seg;
                seg.to_string()
            };
            out
        })
        .collect();
    (segs.join("/"), params)
}

/// Whether `path` has the template `tpl` (`template(path).0 == tpl`), without building it: each
/// segment is the same text, or an id where the template has a parameter. For the hot path, where
/// a template is looked up per request.
pub fn has_template(path: &str, tpl: &str) -> bool {
    // A literal segment that looks like a parameter (an SDK's unfilled `{userId}`) would make the
    // segment walk below accept another parameter's name: such a path builds its template.
    if path.contains('{') {
        return template(path).0 == tpl;
    }
    let mut p = path.split('/');
    let mut t = tpl.split('/');
    loop {
        match (p.next(), t.next()) {
            (None, None) => return true,
            (Some(ps), Some(ts)) => {
                let ok = if is_id(ps) { ts.starts_with('{') && ts.ends_with('}') } else { ps == ts };
                if !ok {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// What samples of one JSON location looked like, merged incrementally.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shape {
    /// How many samples were folded in.
    samples: usize,
    /// JSON Schema type names seen (`integer` and `number` apart until the schema is written).
    types: BTreeSet<&'static str>,
    /// Objects: each property's shape, and in how many object samples it was present.
    properties: BTreeMap<String, (Shape, usize)>,
    /// How many samples were objects: a property present in all of them is required.
    objects: usize,
    /// Arrays: the shape of every item of every array sample, merged.
    items: Option<Box<Shape>>,
    /// Distinct string values, until there are too many to be an enum.
    strings: Option<BTreeSet<String>>,
    /// How many samples were strings (an enum needs more samples than values).
    string_samples: usize,
    /// `None` before the first string; then the format every string had, or `Some(None)` once two disagree.
    format: Option<Option<&'static str>>,
    /// The first scalar sample, shown as the schema's example.
    example: Option<Value>,
}

/// Most distinct strings a location may show and still read as an enum.
const ENUM_MAX: usize = 6;

/// The JSON Schema `format` a string looks like (`uuid`, `date-time`, `uri`, `email`), if any.
fn format_of(s: &str) -> Option<&'static str> {
    let b = s.as_bytes();
    if s.len() == 36 && is_id(s) && s.contains('-') {
        return Some("uuid");
    }
    if b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && crate::clock::parse_rfc3339(s).is_some() {
        return Some("date-time");
    }
    if s.starts_with("https://") || s.starts_with("http://") || s.starts_with("wss://") {
        return Some("uri");
    }
    let at = s.find('@');
    if let Some(i) = at {
        if i > 0 && s[i + 1..].contains('.') && !s.contains(' ') {
            return Some("email");
        }
    }
    None
}

impl Shape {
    /// Folds one sample in.
    pub fn merge(&mut self, v: &Value) {
        self.samples += 1;
        if self.example.is_none() && !v.is_null() && !v.is_object() && !v.is_array() {
            self.example = Some(v.clone());
        }
        match v {
            Value::Null => {
                self.types.insert("null");
            }
            Value::Bool(_) => {
                self.types.insert("boolean");
            }
            Value::Number(n) => {
                self.types.insert(if n.is_i64() || n.is_u64() { "integer" } else { "number" });
            }
            Value::String(s) => {
                self.types.insert("string");
                self.string_samples += 1;
                let f = format_of(s);
                self.format = Some(match self.format {
                    None => f,
                    Some(prev) if prev == f => f,
                    Some(_) => None,
                });
                if self.string_samples == 1 {
                    self.strings = Some(BTreeSet::new());
                }
                if let Some(set) = self.strings.as_mut() {
                    set.insert(s.clone());
                    if set.len() > ENUM_MAX {
                        self.strings = None;
                    }
                }
            }
            Value::Array(items) => {
                self.types.insert("array");
                let it = self.items.get_or_insert_with(Default::default);
                for i in items {
                    it.merge(i);
                }
            }
            Value::Object(m) => {
                self.types.insert("object");
                self.objects += 1;
                for (k, val) in m {
                    let e = self.properties.entry(k.clone()).or_default();
                    e.0.merge(val);
                    e.1 += 1;
                }
            }
        }
    }

    /// As JSON Schema (2020-12 vocabulary, as OpenAPI 3.1 uses it).
    pub fn to_schema(&self) -> Value {
        let mut m = Map::new();
        // "integer" inside "number" is just a number.
        let mut types: Vec<&str> = self.types.iter().copied().collect();
        if types.contains(&"number") {
            types.retain(|t| *t != "integer");
        }
        match types.len() {
            0 => {}
            1 => {
                m.insert("type".into(), json!(types[0]));
            }
            _ => {
                m.insert("type".into(), json!(types));
            }
        }
        if self.types.contains("object") {
            let props: Map<String, Value> =
                self.properties.iter().map(|(k, (s, _))| (k.clone(), s.to_schema())).collect();
            m.insert("properties".into(), Value::Object(props));
            let required: Vec<&String> =
                self.properties.iter().filter(|(_, (_, n))| *n == self.objects).map(|(k, _)| k).collect();
            if !required.is_empty() {
                m.insert("required".into(), json!(required));
            }
        }
        if let Some(it) = &self.items {
            if it.samples > 0 {
                m.insert("items".into(), it.to_schema());
            }
        }
        if self.types.contains("string") {
            if let Some(Some(f)) = self.format {
                m.insert("format".into(), json!(f));
            } else if let Some(set) = &self.strings {
                // A small set of values seen more often than it has members reads as an enum.
                if set.len() <= ENUM_MAX && self.string_samples > set.len() && types == ["string"] {
                    m.insert("enum".into(), json!(set));
                }
            }
        }
        if let Some(e) = &self.example {
            m.insert("examples".into(), json!([e]));
        }
        Value::Object(m)
    }
}

/// How the shape of one JSON location changed from one set of samples to another (see
/// [`Shape::changes`]). `at` is the location as segments from the root: object keys, and `[]`
/// for the items of an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShapeChange {
    /// A field the earlier samples never had, with the types it has now.
    Added {
        /// Where.
        at: Vec<String>,
        /// Its types now (`string`, `object`, ...).
        types: Vec<&'static str>,
    },
    /// A field the earlier samples had and the later ones do not.
    Removed {
        /// Where.
        at: Vec<String>,
    },
    /// Its types (or a string's format) differ, nulls apart.
    TypeChanged {
        /// Where.
        at: Vec<String>,
        /// Before, e.g. `string (uuid)`.
        from: String,
        /// After.
        to: String,
    },
    /// It is null now, where the earlier samples never were.
    NewlyNull {
        /// Where.
        at: Vec<String>,
    },
    /// Every object has it now, where only some did before.
    NewlyRequired {
        /// Where.
        at: Vec<String>,
    },
}

impl ShapeChange {
    /// Where it happened, as segments.
    pub fn at(&self) -> &[String] {
        match self {
            ShapeChange::Added { at, .. }
            | ShapeChange::Removed { at }
            | ShapeChange::TypeChanged { at, .. }
            | ShapeChange::NewlyNull { at }
            | ShapeChange::NewlyRequired { at } => at,
        }
    }
}

/// A location as JSON-path-like text: `$`, `$.entities[].id`.
pub fn location(at: &[String]) -> String {
    let mut s = String::from("$");
    for seg in at {
        if seg == "[]" {
            s.push_str("[]");
        } else {
            s.push('.');
            s.push_str(seg);
        }
    }
    s
}

impl Shape {
    /// The non-null types seen, `integer` folded into `number` (a whole number where a decimal
    /// was, or the other way round, is one type, as the written schema says).
    fn value_types(&self) -> BTreeSet<&'static str> {
        self.types.iter().map(|t| if *t == "integer" { "number" } else { *t }).filter(|t| *t != "null").collect()
    }

    /// Its types as text, with a string's format: `string (uuid)`, `number | null`.
    fn type_text(&self) -> String {
        let mut parts: Vec<String> = self
            .value_types()
            .into_iter()
            .map(|t| match (t, self.format) {
                ("string", Some(Some(f))) => format!("string ({f})"),
                _ => t.to_string(),
            })
            .collect();
        if self.types.contains("null") {
            parts.push("null".into());
        }
        parts.join(" | ")
    }

    /// How `later` differs from `self` (the earlier samples), location by location: fields added,
    /// fields removed (that every earlier object had), types changed (nulls apart, integers and decimals one type, a string's format
    /// counted: a UUID where a UUID was is no change, a plain string where a UUID was is), newly
    /// null, newly required. A location the earlier samples only ever saw as null says nothing of
    /// its type, so a value there later is no change; nor is an array with no items on either side.
    pub fn changes(&self, later: &Shape) -> Vec<ShapeChange> {
        let mut out = Vec::new();
        self.changes_at(later, &mut Vec::new(), &mut out);
        out
    }

    /// [`Shape::changes`] below `at`.
    fn changes_at(&self, b: &Shape, at: &mut Vec<String>, out: &mut Vec<ShapeChange>) {
        let (ta, tb) = (self.value_types(), b.value_types());
        if b.types.contains("null") && !self.types.contains("null") && !self.types.is_empty() {
            out.push(ShapeChange::NewlyNull { at: at.clone() });
        }
        let format_of = |s: &Shape| match s.format {
            Some(Some(f)) => Some(f),
            _ => None,
        };
        let format_lost = ta.contains("string")
            && tb.contains("string")
            && format_of(self).is_some()
            && format_of(self) != format_of(b);
        if !ta.is_empty() && !tb.is_empty() && (ta != tb || format_lost) {
            out.push(ShapeChange::TypeChanged { at: at.clone(), from: self.type_text(), to: b.type_text() });
        }
        if self.objects > 0 && b.objects > 0 {
            for (k, (sa, na)) in &self.properties {
                at.push(k.clone());
                match b.properties.get(k) {
                    // A field only some earlier objects had may be missing from the later ones.
                    None if *na == self.objects => out.push(ShapeChange::Removed { at: at.clone() }),
                    None => {}
                    Some((sb, nb)) => {
                        if *na < self.objects && *nb == b.objects && b.objects > 0 {
                            out.push(ShapeChange::NewlyRequired { at: at.clone() });
                        }
                        sa.changes_at(sb, at, out);
                    }
                }
                at.pop();
            }
            for (k, (sb, _)) in &b.properties {
                if !self.properties.contains_key(k) {
                    at.push(k.clone());
                    out.push(ShapeChange::Added { at: at.clone(), types: sb.value_types().into_iter().collect() });
                    at.pop();
                }
            }
        }
        if let (Some(ia), Some(ib)) = (&self.items, &b.items) {
            if ia.samples > 0 && ib.samples > 0 {
                at.push("[]".into());
                ia.changes_at(ib, at, out);
                at.pop();
            }
        }
    }
}

/// One operation seen in recordings: its request body shape, query parameters, and responses.
#[derive(Debug, Clone, Default)]
pub struct Operation {
    /// Path parameters, in order.
    pub params: Vec<String>,
    /// Query parameters seen (with whether every sample had them).
    pub query: BTreeMap<String, usize>,
    /// How many requests.
    pub samples: usize,
    /// Request body content type and shape (JSON bodies only).
    pub request: Option<(String, Shape)>,
    /// Responses by status: content type and shape (JSON bodies only).
    pub responses: BTreeMap<u16, Option<(String, Shape)>>,
}

/// Everything inferred from a cassette: operations by (host, template, method).
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Operations.
    pub ops: BTreeMap<(String, String, String), Operation>,
}

/// A body as JSON when its type says JSON or it starts like an object or array, and it parses.
fn json_of(ct: &str, bytes: &[u8]) -> Option<Value> {
    if bytes.is_empty() || !(ct.contains("json") || bytes.first() == Some(&b'{') || bytes.first() == Some(&b'[')) {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

/// The first header named `name` (any case), empty when absent.
fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).unwrap_or("")
}

impl Model {
    /// Folds recorded exchanges in (WebSocket handshakes are left out).
    pub fn add(&mut self, exchanges: &[Exchange]) {
        self.fold(exchanges, true)
    }

    /// Folds in only the requests that carry a body (what request validation needs), leaving
    /// responses out: cheap on a large cassette of reads.
    pub fn add_request_bodies<'a>(&mut self, exchanges: impl IntoIterator<Item = &'a Exchange>) {
        self.fold(exchanges, false)
    }

    /// Folds exchanges in; `responses: false` skips bodiless requests and every response.
    fn fold<'a>(&mut self, exchanges: impl IntoIterator<Item = &'a Exchange>, responses: bool) {
        for e in exchanges {
            if e.response.status == 101 || (!responses && e.request.body.bytes.is_empty()) {
                continue;
            }
            let host = e.request.host.split(':').next().unwrap_or("").to_string();
            let (tpl, params) = template(&e.request.path);
            let op = self.ops.entry((host, tpl, e.request.method.to_ascii_lowercase())).or_default();
            op.params = params;
            op.samples += 1;
            for (k, _) in e.request.query.as_deref().map(crate::encoding::decode_pairs).unwrap_or_default() {
                *op.query.entry(k).or_default() += 1;
            }
            let ct = header(&e.request.headers, "content-type");
            if let Some(v) = json_of(ct, &e.request.body.bytes) {
                let base = ct.split(';').next().unwrap_or("application/json").trim();
                let ct = if base.is_empty() { "application/json".to_string() } else { base.to_string() };
                op.request.get_or_insert_with(|| (ct, Shape::default())).1.merge(&v);
            }
            if !responses {
                continue;
            }
            let rct = header(&e.response.headers, "content-type");
            let slot = op.responses.entry(e.response.status).or_insert(None);
            if let Some(v) = json_of(rct, &e.response.body.bytes) {
                let base = rct.split(';').next().unwrap_or("application/json").trim();
                let ct = if base.is_empty() { "application/json".to_string() } else { base.to_string() };
                slot.get_or_insert_with(|| (ct, Shape::default())).1.merge(&v);
            }
        }
    }

    /// A JSON Schema document: one definition per operation and status.
    pub fn to_jsonschema(&self) -> Value {
        let mut defs = Map::new();
        for ((host, tpl, method), op) in &self.ops {
            let key = format!("{} {host}{tpl}", method.to_ascii_uppercase());
            let mut entry = Map::new();
            if let Some((_, s)) = &op.request {
                entry.insert("request".into(), s.to_schema());
            }
            let responses: Map<String, Value> = op
                .responses
                .iter()
                .filter_map(|(st, r)| r.as_ref().map(|(_, s)| (st.to_string(), s.to_schema())))
                .collect();
            entry.insert("responses".into(), Value::Object(responses));
            defs.insert(key, Value::Object(entry));
        }
        json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": defs})
    }

    /// An OpenAPI 3.1 document: servers, paths, parameters, bodies, responses, and OAuth security
    /// for the platform hosts.
    pub fn to_openapi(&self, title: &str) -> Value {
        let hosts: BTreeSet<&String> = self.ops.keys().map(|(h, _, _)| h).collect();
        let servers: Vec<Value> = hosts.iter().map(|h| json!({"url": format!("https://{h}")})).collect();
        let mut paths: Map<String, Value> = Map::new();
        let mut schemes = Map::new();
        let mut security_name = None;
        for (host, tpl, method) in self.ops.keys() {
            if tpl == "/oauth/token" && method == "post" {
                let name = "oauth".to_string();
                schemes.insert(
                    name.clone(),
                    json!({"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": format!("https://{host}{tpl}"), "scopes": {}}}}),
                );
                security_name = Some(name);
            }
        }
        for ((host, tpl, method), op) in &self.ops {
            let mut o = Map::new();
            let mut parameters: Vec<Value> = op
                .params
                .iter()
                .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
                .collect();
            parameters.extend(op.query.iter().map(
                |(q, n)| json!({"name": q, "in": "query", "required": *n == op.samples, "schema": {"type": "string"}}),
            ));
            if !parameters.is_empty() {
                o.insert("parameters".into(), Value::Array(parameters));
            }
            if let Some((ct, s)) = &op.request {
                o.insert("requestBody".into(), json!({"required": true, "content": {ct: {"schema": s.to_schema()}}}));
            }
            let mut responses = Map::new();
            for (status, r) in &op.responses {
                let desc =
                    http::StatusCode::from_u16(*status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Response");
                let mut resp = json!({"description": desc});
                if let Some((ct, s)) = r {
                    resp["content"] = json!({ct: {"schema": s.to_schema()}});
                }
                responses.insert(status.to_string(), resp);
            }
            o.insert("responses".into(), Value::Object(responses));
            o.insert("x-callvcr-host".into(), json!(host));
            if let Some(name) = &security_name {
                if tpl.starts_with("/api/") {
                    o.insert("security".into(), json!([{name: []}]));
                }
            }
            let item = paths.entry(tpl.clone()).or_insert_with(|| json!({}));
            item[method.as_str()] = Value::Object(o);
        }
        let mut doc = json!({
            "openapi": "3.1.0",
            "info": {"title": title, "version": "recorded", "description": "Inferred by callvcr from recorded traffic."},
            "servers": servers,
            "paths": paths,
        });
        if !schemes.is_empty() {
            doc["components"] = json!({"securitySchemes": schemes});
        }
        doc
    }
}

/// One difference between two recordings' schemas.
pub type Drift = String;

/// Pushes what changed from schema `a` to schema `b` at `at` (type, fields, newly required), then
/// compares the properties both have and array items, recursively.
fn diff_schema(at: &str, a: &Value, b: &Value, out: &mut Vec<Drift>) {
    if a.get("type") != b.get("type") {
        out.push(format!(
            "{at}: type changed from {} to {}",
            a.get("type").unwrap_or(&json!("?")),
            b.get("type").unwrap_or(&json!("?"))
        ));
    }
    let props = |v: &Value| v.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    let req = |v: &Value| -> BTreeSet<String> {
        v.get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(|x| x.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let (pa, pb) = (props(a), props(b));
    for k in pa.keys().filter(|k| !pb.contains_key(*k)) {
        out.push(format!("{at}.{k}: field removed"));
    }
    for k in pb.keys().filter(|k| !pa.contains_key(*k)) {
        out.push(format!("{at}.{k}: field added"));
    }
    for k in req(b).difference(&req(a)) {
        if pa.contains_key(k) {
            out.push(format!("{at}.{k}: newly required"));
        }
    }
    for (k, va) in &pa {
        if let Some(vb) = pb.get(k) {
            diff_schema(&format!("{at}.{k}"), va, vb, out);
        }
    }
    if let (Some(ia), Some(ib)) = (a.get("items"), b.get("items")) {
        diff_schema(&format!("{at}[]"), ia, ib, out);
    }
}

/// What changed from recording `a` to recording `b`: operations added and removed, and, per
/// operation and status, fields added or removed, type changes and newly required fields.
pub fn diff(a: &Model, b: &Model) -> Vec<Drift> {
    let mut out = Vec::new();
    let name = |(h, t, m): &(String, String, String)| format!("{} {h}{t}", m.to_ascii_uppercase());
    for k in a.ops.keys().filter(|k| !b.ops.contains_key(*k)) {
        out.push(format!("{}: operation removed", name(k)));
    }
    for k in b.ops.keys().filter(|k| !a.ops.contains_key(*k)) {
        out.push(format!("{}: operation added", name(k)));
    }
    for (k, oa) in &a.ops {
        let Some(ob) = b.ops.get(k) else { continue };
        let n = name(k);
        if let (Some((_, sa)), Some((_, sb))) = (&oa.request, &ob.request) {
            diff_schema(&format!("{n} request"), &sa.to_schema(), &sb.to_schema(), &mut out);
        }
        for (st, ra) in &oa.responses {
            match ob.responses.get(st) {
                None => out.push(format!("{n} {st}: response status no longer seen")),
                Some(rb) => {
                    if let (Some((_, sa)), Some((_, sb))) = (ra, rb) {
                        diff_schema(&format!("{n} {st}"), &sa.to_schema(), &sb.to_schema(), &mut out);
                    }
                }
            }
        }
        for st in ob.responses.keys().filter(|s| !oa.responses.contains_key(*s)) {
            out.push(format!("{n} {st}: response status newly seen"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_template_agrees_with_template() {
        let paths = [
            "/api/v2/conversations/calls/5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e/participants/8e2f3a4b-1c2d-4e5f-9a0b-1c2d3e4f5a6b",
            "/api/v2/users/me",
            "/api/v2/users/12345",
            "/api/v2/users/{userId}",
            "/incontactapi/services/v27.0/agents/12345",
            "/api/v2/flows/outcomes/abc123def456",
            "/api/v2/routing/queues",
            "/api/v2/routing/queues/",
            "/",
            "",
            "//x//1",
            "/a/1/2/3",
            "/a/5/2/7",
            "/users/{userId}/5",
            "/users/{userId}/{userId2}",
            "/users/7/{userId}",
            "/a/b1/c",
        ];
        for p in paths {
            for q in paths {
                let tpl = template(q).0;
                assert_eq!(has_template(p, &tpl), template(p).0 == tpl, "{p} against the template of {q} ({tpl})");
            }
        }
    }

    #[test]
    fn templates_name_ids_after_their_resource() {
        assert_eq!(
            template("/api/v2/conversations/calls/5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e/participants/8e2f3a4b-1c2d-4e5f-9a0b-1c2d3e4f5a6b"),
            (
                "/api/v2/conversations/calls/{conversationId}/participants/{participantId}".to_string(),
                vec!["conversationId".to_string(), "participantId".to_string()]
            )
        );
        assert_eq!(template("/api/v2/users/me").0, "/api/v2/users/me");
        assert_eq!(
            template("/incontactapi/services/v27.0/agents/12345").0,
            "/incontactapi/services/v27.0/agents/{agentId}"
        );
        assert_eq!(template("/api/v2/flows/outcomes/abc123def456").0, "/api/v2/flows/outcomes/{outcomeId}");
        assert_eq!(template("/api/v2/routing/queues").0, "/api/v2/routing/queues");
    }

    fn shape(samples: &[Value]) -> Value {
        let mut s = Shape::default();
        samples.iter().for_each(|v| s.merge(v));
        s.to_schema()
    }

    #[test]
    fn inference_merges_samples_into_types_required_nullable_enums_and_formats() {
        let s = shape(&[
            json!({"id": "5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e", "state": "alerting", "n": 1, "when": "2026-01-05T09:00:00Z", "mail": "a@b.co", "self": "https://x/y", "opt": "x", "maybe": null, "list": [{"a": 1}]}),
            json!({"id": "6b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e", "state": "connected", "n": 2.5, "when": "2026-01-05T09:01:00Z", "mail": "c@d.co", "self": "https://x/z", "maybe": "v", "list": [{"a": 2, "b": true}]}),
            json!({"id": "7b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e", "state": "connected", "n": 3, "when": "2026-01-05T09:02:00Z", "mail": "e@f.co", "self": "https://x/w", "maybe": null, "list": []}),
        ]);
        assert_eq!(s["type"], "object");
        let req: Vec<&str> = s["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(req.contains(&"id") && req.contains(&"state") && !req.contains(&"opt"), "{s}");
        let p = &s["properties"];
        assert_eq!(p["id"]["format"], "uuid");
        assert_eq!(p["when"]["format"], "date-time");
        assert_eq!(p["mail"]["format"], "email");
        assert_eq!(p["self"]["format"], "uri");
        assert_eq!(p["state"]["enum"], json!(["alerting", "connected"]));
        assert_eq!(p["n"]["type"], "number", "integers and decimals merge to number");
        assert_eq!(p["maybe"]["type"], json!(["null", "string"]), "nullable");
        assert_eq!(p["list"]["items"]["required"], json!(["a"]), "array items merged; b only sometimes");
        assert_eq!(p["list"]["items"]["properties"]["b"]["type"], "boolean");
        assert!(p["opt"]["examples"].is_array());
    }

    #[test]
    fn shape_changes_are_located_and_ignore_what_keeps_its_type_and_format() {
        let of = |samples: &[Value]| {
            let mut s = Shape::default();
            samples.iter().for_each(|v| s.merge(v));
            s
        };
        let before = of(&[json!({
            "id": "5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e", "n": 1, "gone": true, "later": null, "name": "a",
            "when": "2026-01-05T09:00:00Z", "list": [{"a": 1, "b": 1}, {"a": 2}], "none": []
        })]);
        let same = of(&[json!({
            "id": "9d2e3f4a-0000-4c47-9d0e-aaaaaaaaaaaa", "n": 2.5, "gone": false, "later": "now", "name": "b",
            "when": "2027-02-06T10:00:00.123Z", "list": [{"a": 3, "b": 1}, {"a": 4}], "none": [{"x": 1}]
        })]);
        assert_eq!(before.changes(&same), vec![], "new values, same types and formats");
        let after = of(&[json!({
            "id": "not-a-uuid", "n": "1", "later": null, "name": null, "when": "2026-01-05T09:00:00Z",
            "list": [{"a": 1, "b": 1}, {"a": 2, "b": 2}], "none": [], "extra": {"k": 1}
        })]);
        let at = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let got = before.changes(&after);
        assert_eq!(
            got,
            vec![
                ShapeChange::Removed { at: at(&["gone"]) },
                ShapeChange::TypeChanged { at: at(&["id"]), from: "string (uuid)".into(), to: "string".into() },
                ShapeChange::NewlyRequired { at: at(&["list", "[]", "b"]) },
                ShapeChange::TypeChanged { at: at(&["n"]), from: "number".into(), to: "string".into() },
                ShapeChange::NewlyNull { at: at(&["name"]) },
                ShapeChange::Added { at: at(&["extra"]), types: vec!["object"] },
            ]
        );
        // A field only some recorded items had is not "removed" when no live item has it.
        let sometimes = of(&[json!({"list": [{"a": 1, "b": 1}, {"a": 2}]})]);
        assert_eq!(sometimes.changes(&of(&[json!({"list": [{"a": 3}]})])), vec![]);
        assert_eq!(location(&at(&["list", "[]", "b"])), "$.list[].b");
        assert_eq!(location(&[]), "$");
    }

    #[test]
    fn drift_reports_added_removed_retyped_and_newly_required_fields() {
        let a =
            shape(&[json!({"id": "x", "n": 1, "old": true, "sometimes": 1}), json!({"id": "y", "n": 2, "old": false})]);
        let b = shape(&[
            json!({"id": "x", "n": "1", "new": 1, "sometimes": 1}),
            json!({"id": "y", "n": "2", "new": 2, "sometimes": 2}),
        ]);
        let mut out = Vec::new();
        diff_schema("GET /x 200", &a, &b, &mut out);
        assert!(out.contains(&"GET /x 200.old: field removed".to_string()), "{out:?}");
        assert!(out.contains(&"GET /x 200.new: field added".to_string()), "{out:?}");
        assert!(out.contains(&"GET /x 200.sometimes: newly required".to_string()), "{out:?}");
        assert!(
            out.iter().any(|d| d.starts_with("GET /x 200.n: type changed from \"integer\" to \"string\"")),
            "{out:?}"
        );
    }
}
