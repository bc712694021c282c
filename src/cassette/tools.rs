//! Cassette tooling over plain data: summaries, the secrets audit, pruning, and HAR 1.2 in and out.
//! No sockets, no sled: the CLI loads and stores, these decide.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{json, Value};

use super::model::{Body, Cassette, Exchange, RecordedRequest, RecordedResponse};
use super::{Fingerprint, Matcher, Redactor};

/// One line per exchange and per WebSocket session, for `cassette show`.
pub fn describe(c: &Cassette) -> Vec<String> {
    let mut out = Vec::new();
    let mut frames: HashMap<u64, usize> = HashMap::new();
    for f in &c.frames {
        *frames.entry(f.session).or_default() += 1;
    }
    for e in &c.exchanges {
        let q = e.request.query.as_ref().map(|q| format!("?{q}")).unwrap_or_default();
        let ws = frames.get(&e.seq).map(|n| format!(" · {n} WebSocket frames")).unwrap_or_default();
        let sdk = e.sdk.as_ref().map(|s| format!(" · {s}")).unwrap_or_default();
        out.push(format!(
            "{:>5}  {} {}{}{} → {}{}{}",
            e.seq, e.request.method, e.request.host, e.request.path, q, e.response.status, ws, sdk
        ));
    }
    out
}

/// A secret found where none should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where: `exchange 3 request header authorization`, `frame 5/2 text`, ...
    pub location: String,
    /// What it looks like.
    pub kind: &'static str,
    /// The start of it (never the whole secret).
    pub excerpt: String,
}

/// The first ten characters and `…`: enough to find the secret, not enough to use it.
fn excerpt(s: &str) -> String {
    let head: String = s.chars().take(10).collect();
    format!("{head}…")
}

/// Patterns of secrets: bearer tokens, JWTs, private keys, cloud keys.
fn secret_patterns() -> Vec<(&'static str, regex::Regex)> {
    [
        ("bearer token", r"(?i)\bbearer\s+([A-Za-z0-9._~+/=-]{16,})"),
        ("JWT", r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
        ("private key", r"-----BEGIN (?:RSA |EC |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"),
        ("AWS access key", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
        ("basic credentials", r"(?i)\bbasic\s+([A-Za-z0-9+/=]{12,})"),
    ]
    .into_iter()
    .map(|(k, p)| (k, regex::Regex::new(p).expect("audit patterns parse")))
    .collect()
}

/// Scans every header, query, body and frame for secrets that slipped past redaction: the secret
/// patterns, and any value of a field redaction names that is not the replacement.
pub fn audit(c: &Cassette, redactor: &Redactor) -> Vec<Finding> {
    let pats = secret_patterns();
    let mut out = Vec::new();
    let mut scan = |location: String, text: &str| {
        if text.contains(redactor.replacement()) && text.trim() == redactor.replacement() {
            return;
        }
        for (kind, re) in &pats {
            for m in re.find_iter(text) {
                // A match the marker is in, or one the marker ends (a JWT kept without its
                // signature: `header.claims.[REDACTED]`), holds no credential.
                if m.as_str().contains(redactor.replacement()) || text[m.end()..].starts_with(redactor.replacement()) {
                    continue;
                }
                out.push(Finding { location: location.clone(), kind, excerpt: excerpt(m.as_str()) });
            }
        }
    };
    for e in &c.exchanges {
        let at = |what: &str| format!("exchange {} ({} {}) {what}", e.seq, e.request.method, e.request.path);
        for (k, v) in &e.request.headers {
            scan(at(&format!("request header {k}")), &format!("{k}: {v}"));
        }
        if let Some(q) = &e.request.query {
            scan(at("query"), q);
        }
        scan(at("request body"), &String::from_utf8_lossy(&e.request.body.bytes));
        for (k, v) in &e.response.headers {
            scan(at(&format!("response header {k}")), &format!("{k}: {v}"));
        }
        scan(at("response body"), &String::from_utf8_lossy(&e.response.body.bytes));
    }
    for f in &c.frames {
        scan(format!("frame {}/{} ({:?})", f.session, f.n, f.dir), &String::from_utf8_lossy(&f.data.bytes));
    }
    // Fields redaction names, present with a real value.
    let sensitive = redactor.sensitive_values(c);
    out.extend(sensitive.into_iter().map(|(location, field, value)| Finding {
        location: format!("{location} field {field}"),
        kind: "unredacted field",
        excerpt: excerpt(&value),
    }));
    out
}

/// Drops recordings replay could never tell apart from what it serves anyway: per fingerprint, the
/// last recording repeats once the others are used, so trailing recordings whose answer (status,
/// headers but `date`, body) equals the one before them change nothing. Earlier duplicates stay:
/// removing them would shift which answer the next request gets. WebSocket handshakes (they carry
/// frames) always stay. Returns the pruned cassette and how many exchanges went.
pub fn prune(c: &Cassette, matcher: &Matcher) -> (Cassette, usize) {
    let sessions: std::collections::HashSet<u64> = c.frames.iter().map(|f| f.session).collect();
    let same = |a: &RecordedResponse, b: &RecordedResponse| {
        let h = |r: &RecordedResponse| -> Vec<(String, String)> {
            r.headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("date")).cloned().collect()
        };
        a.status == b.status && a.body == b.body && h(a) == h(b)
    };
    let mut by_fp: HashMap<Fingerprint, Vec<usize>> = HashMap::new();
    for (i, e) in c.exchanges.iter().enumerate() {
        by_fp.entry(matcher.fingerprint(&e.request)).or_default().push(i);
    }
    let mut drop = std::collections::HashSet::new();
    for list in by_fp.values() {
        let mut end = list.len();
        while end >= 2 {
            let (last, prev) = (&c.exchanges[list[end - 1]], &c.exchanges[list[end - 2]]);
            if sessions.contains(&last.seq) || !same(&last.response, &prev.response) {
                break;
            }
            drop.insert(list[end - 1]);
            end -= 1;
        }
    }
    let keep: Vec<Exchange> =
        c.exchanges.iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, e)| e.clone()).collect();
    (Cassette { exchanges: keep, frames: c.frames.clone() }, drop.len())
}

// ---------------------------------------------------------------------------------------------
// HAR 1.2

/// Headers as HAR `{name, value}` objects.
fn har_headers(h: &[(String, String)]) -> Value {
    Value::Array(h.iter().map(|(k, v)| json!({"name": k, "value": v})).collect())
}

/// The `Content-Type` header, empty when absent (HAR's `mimeType` is required).
fn content_type(h: &[(String, String)]) -> String {
    h.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.clone()).unwrap_or_default()
}

/// A body as HAR text: as is when UTF-8, else base64 with the encoding to say so.
fn har_text(b: &Body) -> (String, Option<&'static str>) {
    match std::str::from_utf8(&b.bytes) {
        Ok(t) => (t.to_string(), None),
        Err(_) => {
            use base64::Engine;
            (base64::engine::general_purpose::STANDARD.encode(&b.bytes), Some("base64"))
        }
    }
}

/// A cassette as a HAR 1.2 log (WebSocket frames are left out: HAR has no standard place for them).
pub fn to_har(c: &Cassette) -> Value {
    let entries: Vec<Value> = c
        .exchanges
        .iter()
        .map(|e| {
            let r = &e.request;
            let url = format!(
                "{}://{}{}{}",
                r.scheme,
                r.host,
                r.path,
                r.query.as_ref().map(|q| format!("?{q}")).unwrap_or_default()
            );
            let query: Vec<Value> = r
                .query
                .as_deref()
                .map(crate::encoding::decode_pairs)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect();
            let mut request = json!({
                "method": r.method,
                "url": url,
                "httpVersion": "HTTP/1.1",
                "cookies": [],
                "headers": har_headers(&r.headers),
                "queryString": query,
                "headersSize": -1,
                "bodySize": r.body.bytes.len(),
            });
            if !r.body.bytes.is_empty() {
                let (text, _) = har_text(&r.body);
                request["postData"] = json!({"mimeType": content_type(&r.headers), "text": text});
            }
            let (text, encoding) = har_text(&e.response.body);
            let mut content = json!({
                "size": e.response.body.bytes.len(),
                "mimeType": content_type(&e.response.headers),
                "text": text,
            });
            if let Some(enc) = encoding {
                content["encoding"] = Value::String(enc.into());
            }
            json!({
                "startedDateTime": e.recorded_at,
                "time": e.duration_ms,
                "request": request,
                "response": {
                    "status": e.response.status,
                    "statusText": http::StatusCode::from_u16(e.response.status).ok().and_then(|s| s.canonical_reason()).unwrap_or(""),
                    "httpVersion": "HTTP/1.1",
                    "cookies": [],
                    "headers": har_headers(&e.response.headers),
                    "content": content,
                    "redirectURL": "",
                    "headersSize": -1,
                    "bodySize": e.response.body.bytes.len(),
                },
                "cache": {},
                "timings": {"send": 0, "wait": e.duration_ms, "receive": 0},
                "_callvcr": {"seq": e.seq, "sdk": e.sdk},
            })
        })
        .collect();
    json!({"log": {
        "version": "1.2",
        "creator": {"name": "callvcr", "version": env!("CARGO_PKG_VERSION")},
        "entries": entries,
    }})
}

/// Why a HAR file could not be read: where, and what was wrong.
pub type HarError = String;

/// HAR headers at `at` as (lower-case name, value) pairs; `at` names the entry in errors.
fn headers_of(v: &Value, at: &str) -> Result<Vec<(String, String)>, HarError> {
    let Some(list) = v.as_array() else { return Err(format!("{at}: `headers` must be a list")) };
    list.iter()
        .enumerate()
        .map(|(i, h)| match (h["name"].as_str(), h["value"].as_str()) {
            (Some(n), Some(v)) => Ok((n.to_ascii_lowercase(), v.to_string())),
            _ => Err(format!("{at}: header {i} needs a `name` and a `value` string")),
        })
        .collect()
}

/// HTTP/2 pseudo-headers and framing headers a HAR may carry, which a replayed answer must not.
fn keep_header(name: &str) -> bool {
    !name.starts_with(':') && !crate::cassette::model::HOP_BY_HOP.contains(&name) && name != "content-length"
}

/// Exchanges from a HAR 1.2 document (as browsers' devtools, mitmproxy and Charles write it),
/// redacted as anything recorded is. Errors name the entry and, for JSON errors, the line.
pub fn from_har(text: &str, redactor: &Redactor) -> Result<Vec<Exchange>, HarError> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| format!("line {}, column {}: not JSON: {e}", e.line(), e.column()))?;
    let log = doc.get("log").ok_or("no `log` object: not a HAR file")?;
    if let Some(v) = log.get("version").and_then(Value::as_str) {
        if !v.starts_with("1.") {
            return Err(format!("HAR version {v} is not 1.x, which this callvcr reads"));
        }
    }
    let entries = log.get("entries").and_then(Value::as_array).ok_or("`log.entries` must be a list")?;
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let at = format!("entry {i}");
        let req = &e["request"];
        let method = req["method"].as_str().ok_or_else(|| format!("{at}: request.method is missing"))?;
        let url_text = req["url"].as_str().ok_or_else(|| format!("{at}: request.url is missing"))?;
        let url: http::Uri = url_text.parse().map_err(|err| format!("{at}: request.url `{url_text}`: {err}"))?;
        let scheme = url.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let Some(auth) = url.authority() else { return Err(format!("{at}: request.url `{url_text}` has no host")) };
        let default = if scheme == "https" { 443 } else { 80 };
        let host = match auth.port_u16() {
            Some(p) if p != default => format!("{}:{p}", auth.host().to_ascii_lowercase()),
            _ => auth.host().to_ascii_lowercase(),
        };
        let mut headers: Vec<(String, String)> =
            headers_of(&req["headers"], &at)?.into_iter().filter(|(k, _)| keep_header(k)).collect();
        let body = req["postData"]["text"].as_str().unwrap_or("").to_string();
        let res = &e["response"];
        let status = res["status"].as_u64().filter(|s| (100..=599).contains(s)).ok_or_else(|| {
            format!("{at}: response.status must be an HTTP status (a browser writes 0 for a request that never completed; remove it)")
        })? as u16;
        let mut rheaders: Vec<(String, String)> =
            headers_of(&res["headers"], &at)?.into_iter().filter(|(k, _)| keep_header(k)).collect();
        let content = &res["content"];
        let rtext = content["text"].as_str().unwrap_or("");
        let rbytes = if content["encoding"].as_str() == Some("base64") {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(rtext)
                .map_err(|err| format!("{at}: response.content.text is not base64: {err}"))?
        } else {
            rtext.as_bytes().to_vec()
        };
        // HAR holds bodies decoded; the encoding header would describe bytes no longer there.
        let encoding = rheaders
            .iter()
            .find(|(k, _)| k == "content-encoding")
            .map(|(_, v)| v.trim().to_ascii_lowercase())
            .filter(|e| e != "identity");
        let encoding = encoding.filter(|e| matches!(e.as_str(), "gzip" | "deflate"));
        if encoding.is_none() {
            rheaders.retain(|(k, _)| k != "content-encoding");
        }
        // Redaction, as at record time: secrets never reach a cassette.
        let sdk = headers.iter().find(|(k, _)| k == "purecloud-sdk" || k == "user-agent").map(|(_, v)| v.clone());
        redactor.headers(&mut headers);
        redactor.headers(&mut rheaders);
        let ct = content_type(&headers);
        let rct = content_type(&rheaders);
        let query = url.query().map(|q| redactor.urlencoded(q).into_owned());
        out.push(Exchange {
            seq: e["_callvcr"]["seq"].as_u64().unwrap_or(i as u64 + 1),
            after: None,
            credentials: Vec::new(),
            recorded_at: e["startedDateTime"].as_str().unwrap_or("").to_string(),
            duration_ms: e["time"].as_f64().map(|t| t.max(0.0) as u64).unwrap_or(0),
            sdk,
            scope: None,
            token_shapes: Vec::new(),
            request: RecordedRequest {
                method: method.to_ascii_uppercase(),
                scheme,
                host,
                path: url.path().to_string(),
                query,
                body: Body {
                    bytes: Bytes::from(redactor.body(Some(&ct), body.as_bytes()).into_owned()),
                    encoding: None,
                },
                headers,
            },
            response: RecordedResponse {
                status,
                body: Body { bytes: Bytes::from(redactor.body(Some(&rct), &rbytes).into_owned()), encoding },
                headers: rheaders,
            },
        });
    }
    Ok(out)
}
