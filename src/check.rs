//! `callvcr cassette check`: a cassette's own requests sent again, in recorded order and in
//! process (a hyper connection over an in-memory pipe, no socket), through the overlays as
//! configured, on a virtual clock that follows the recorded times. Every answer that differs from
//! the recorded one is reported with the overlay and rule that answered it. It is how a user learns
//! that their org behaves differently from callvcr's built-in model before CI does.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::cassette::model::{is_long_poll, Exchange};
use crate::overlay::Platform;
use crate::proxy::{Proxy, Target};

/// How an answer differs from the recorded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The recorded exchange's sequence number.
    pub seq: u64,
    /// `METHOD host/path?query`.
    pub request: String,
    /// Who answered (`hit`, `overlay:auth`, `fault:...`), as the journal says.
    pub answered_by: String,
    /// The journal's detail: the rule that answered.
    pub detail: Option<String>,
    /// Each difference, one line each.
    pub diffs: Vec<String>,
}

/// What a check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Exchanges sent again.
    pub checked: usize,
    /// WebSocket handshakes the check does not replay (their frames are not compared yet).
    pub skipped_websockets: usize,
    /// Answers that differ.
    pub differences: Vec<Difference>,
}

/// A recorded request's answer now.
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// Headers whose values are the transport's, not the platform's.
const TRANSPORT: &[&str] = &["content-length", "transfer-encoding", "connection", "keep-alive"];

/// Sends every exchange of `exchanges` (recorded order) through `proxy` and compares the answers.
/// The proxy's clock should be frozen: it is set to each exchange's recorded time before it is sent.
pub async fn check(proxy: Arc<Proxy>, exchanges: &[Arc<Exchange>]) -> Report {
    let mut report = Report::default();
    let marker = crate::cassette::redact::MARKER;
    // Minted access tokens by platform, sent where the recording shows a redacted bearer.
    let mut tokens: std::collections::HashMap<&'static str, String> = std::collections::HashMap::new();
    let mut polls = Vec::new();
    for e in exchanges {
        if e.response.status == 101 {
            report.skipped_websockets += 1;
            continue;
        }
        if let Some(t) = crate::clock::parse_rfc3339(&e.recorded_at) {
            if t > proxy.timer().now_ms() {
                proxy.timer().set_ms(t);
            }
        }
        let host = e.request.host.to_ascii_lowercase();
        let platform = Platform::of_host(host.split(':').next().unwrap_or(&host));
        // A token request keeps its recorded (redacted) client credentials.
        let token_request = crate::overlay::auth::is_token_request(&host, &e.request.method, &e.request.path);
        let bearer = tokens.get(platform.as_str()).cloned().filter(|_| !token_request);
        let req = request_of(e, bearer.as_deref(), marker);
        let target = target_of(&host);
        if is_long_poll(&e.request.path) {
            // A long poll waits for a later request (or its timeout): answered alongside the rest.
            let p = proxy.clone();
            polls.push((e.clone(), tokio::spawn(async move { send(p, target, req).await })));
            continue;
        }
        let before = proxy.journal().last().map(|j| j.seq);
        let got = send(proxy.clone(), target, req).await;
        report.checked += 1;
        if let Ok(g) = &got {
            if let Some(t) = minted_token(e, g) {
                tokens.insert(platform.as_str(), t);
            }
        }
        let journal: Vec<_> = proxy.journal().into_iter().filter(|j| before.is_none_or(|b| j.seq > b)).collect();
        if let Some(d) = compare(e, got, &journal) {
            report.differences.push(d);
        }
    }
    // What the polls wait for has been sent; their timeouts pass on the virtual clock.
    for (e, handle) in polls {
        let timer = proxy.timer().clone();
        let got = tokio::select! {
            r = handle => r.unwrap_or_else(|e| Err(format!("the request task failed: {e}"))),
            _ = async {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    timer.advance_ms(1_000);
                }
            } => unreachable!("the loop never ends"),
        };
        report.checked += 1;
        if let Some(d) = compare(e.as_ref(), got, &[]) {
            report.differences.push(d);
        }
    }
    report
}

fn target_of(host: &str) -> Arc<Target> {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if p.parse::<u16>().is_ok() => (n.to_string(), p.parse().unwrap_or(443)),
        _ => (host.to_string(), 443),
    };
    Arc::new(Target::new("https", name, port))
}

/// The recorded request as a client would send it: a redacted bearer replaced by the token the
/// replay minted for this platform.
fn request_of(e: &Exchange, bearer: Option<&str>, marker: &str) -> http::Request<Full<Bytes>> {
    let r = &e.request;
    let uri = match &r.query {
        Some(q) => format!("{}?{q}", r.path),
        None => r.path.clone(),
    };
    let mut b = http::Request::builder().method(r.method.as_str()).uri(uri);
    let mut has_host = false;
    for (k, v) in &r.headers {
        let lower = k.to_ascii_lowercase();
        if TRANSPORT.contains(&lower.as_str()) || lower == "content-encoding" {
            continue;
        }
        has_host |= lower == "host";
        let value = match (lower.as_str(), bearer) {
            ("authorization", Some(t)) if v.contains(marker) && !v.to_ascii_lowercase().starts_with("basic") => {
                format!("Bearer {t}")
            }
            _ => v.clone(),
        };
        b = b.header(k.as_str(), value);
    }
    if !has_host {
        b = b.header("host", r.host.as_str());
    }
    b.body(Full::new(r.body.bytes.clone())).unwrap_or_else(|_| http::Request::new(Full::new(Bytes::new())))
}

/// Sends one request to `proxy` over an in-memory connection.
async fn send(proxy: Arc<Proxy>, target: Arc<Target>, req: http::Request<Full<Bytes>>) -> Result<Got, String> {
    let (client, server) = tokio::io::duplex(1 << 16);
    let svc = hyper::service::service_fn(move |req| {
        let (p, t) = (proxy.clone(), target.clone());
        async move { Ok::<_, Infallible>(p.handle(req, t, None).await) }
    });
    tokio::spawn(async move {
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), svc).await;
    });
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(client)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let raw = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    let body = crate::proxy::decoded_body(&parts.headers, raw);
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    Ok(Got { status: parts.status.as_u16(), headers, body })
}

/// The access token a token answer carries, when the request was a token request.
fn minted_token(e: &Exchange, g: &Got) -> Option<String> {
    if !(200..300).contains(&g.status)
        || !crate::overlay::auth::is_token_request(&e.request.host, &e.request.method, &e.request.path)
    {
        return None;
    }
    let v: Value = serde_json::from_slice(&g.body).ok()?;
    v.get("access_token")?.as_str().map(String::from)
}

/// Header values an overlay mints: only their shape must match the recording.
fn minted_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("correlation") || n.contains("request-id") || n == "date"
}

/// Whether two strings have the same shape: length and character classes.
fn same_shape(a: &str, b: &str) -> bool {
    let class = |c: char| {
        if c.is_ascii_digit() || c.is_ascii_hexdigit() {
            'h'
        } else if c.is_ascii_alphanumeric() {
            'a'
        } else {
            c
        }
    };
    a.len() == b.len() && a.chars().map(class).eq(b.chars().map(class))
}

fn compare(e: &Exchange, got: Result<Got, String>, journal: &[crate::proxy::JournalEntry]) -> Option<Difference> {
    let marker = crate::cassette::redact::MARKER;
    let last = journal.last();
    let mut diffs = Vec::new();
    match got {
        Err(err) => diffs.push(format!("no answer: {err}")),
        Ok(g) => {
            if g.status != e.response.status {
                diffs.push(format!("status: recorded {}, replayed {}", e.response.status, g.status));
            }
            let rec = &e.response.headers;
            let find = |hs: &[(String, String)], k: &str| {
                hs.iter().filter(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone()).collect::<Vec<_>>()
            };
            let mut names: Vec<String> = rec.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
            names.dedup();
            for name in &names {
                if TRANSPORT.contains(&name.as_str()) {
                    continue;
                }
                let (want, have) = (find(rec, name), find(&g.headers, name));
                let redacted = want.iter().all(|w| w == marker);
                if have.is_empty() && redacted {
                    // A redacted value (a cookie) is left out of a minted answer.
                } else if have.is_empty() {
                    diffs.push(format!("header {name}: recorded {:?}, replayed none", want.join(", ")));
                } else if want != have {
                    let minted = want.len() == have.len()
                        && want.iter().zip(&have).all(|(w, h)| {
                            (minted_header(name) && (same_shape(w, h) || name == "date")) || redacted_match(w, h)
                        });
                    if !minted && !redacted {
                        diffs.push(format!(
                            "header {name}: recorded {:?}, replayed {:?}",
                            want.join(", "),
                            have.join(", ")
                        ));
                    }
                }
            }
            for (k, v) in &g.headers {
                let lower = k.to_ascii_lowercase();
                if !TRANSPORT.contains(&lower.as_str()) && lower != "date" && !names.contains(&lower) {
                    diffs.push(format!("header {lower}: not recorded, replayed {v:?}"));
                }
            }
            let recorded = &e.response.body.bytes;
            match (serde_json::from_slice::<Value>(recorded), serde_json::from_slice::<Value>(&g.body)) {
                (Ok(a), Ok(b)) => json_diff(&a, &b, "$", &mut diffs),
                _ if recorded[..] != g.body[..] => diffs.push(format!(
                    "body: recorded {} bytes, replayed {} bytes ({})",
                    recorded.len(),
                    g.body.len(),
                    excerpt(&g.body)
                )),
                _ => {}
            }
        }
    }
    if diffs.is_empty() {
        return None;
    }
    Some(Difference {
        seq: e.seq,
        request: crate::cassette::index::describe(&e.request),
        answered_by: last.map(|j| j.answered_by.clone()).unwrap_or_else(|| "?".into()),
        detail: last.and_then(|j| j.detail.clone()),
        diffs,
    })
}

/// Whether `have` is `want` with each redaction marker in it (plain or percent-encoded) standing
/// for some minted value.
fn redacted_match(want: &str, have: &str) -> bool {
    let marker = crate::cassette::redact::MARKER;
    let encoded = crate::cassette::redact::percent_encode(marker);
    let w = want.replace(&encoded, marker);
    if !w.contains(marker) {
        return false;
    }
    let pieces: Vec<&str> = w.split(marker).collect();
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if !have.starts_with(first) || !have.ends_with(last) || have.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &have[first.len()..have.len() - last.len()];
    for p in &pieces[1..pieces.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

fn excerpt(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let cut: String = s.chars().take(80).collect();
    if cut.len() < s.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// JSON differences at `at`; a recorded redaction marker stands for any string (a minted token).
fn json_diff(want: &Value, have: &Value, at: &str, out: &mut Vec<String>) {
    if out.len() >= 20 {
        return;
    }
    match (want, have) {
        (Value::String(w), Value::String(_)) if w == crate::cassette::redact::MARKER => {}
        (Value::Object(w), Value::Object(h)) => {
            for (k, wv) in w {
                match h.get(k) {
                    Some(hv) => json_diff(wv, hv, &format!("{at}.{k}"), out),
                    None => out.push(format!("body {at}.{k}: recorded {}, replayed none", short(wv))),
                }
            }
            for (k, hv) in h {
                if !w.contains_key(k) {
                    out.push(format!("body {at}.{k}: not recorded, replayed {}", short(hv)));
                }
            }
        }
        (Value::Array(w), Value::Array(h)) if w.len() == h.len() => {
            for (i, (wv, hv)) in w.iter().zip(h).enumerate() {
                json_diff(wv, hv, &format!("{at}[{i}]"), out);
            }
        }
        _ if want != have => out.push(format!("body {at}: recorded {}, replayed {}", short(want), short(have))),
        _ => {}
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_differences_name_the_path_and_a_marker_matches_any_string() {
        let mut out = Vec::new();
        json_diff(
            &json!({"access_token": "[REDACTED]", "expires_in": 86399, "a": [1, 2]}),
            &json!({"access_token": "eyJ.x.y", "expires_in": 86400, "a": [1, 3], "extra": true}),
            "$",
            &mut out,
        );
        assert_eq!(
            out,
            [
                "body $.expires_in: recorded 86399, replayed 86400",
                "body $.a[1]: recorded 2, replayed 3",
                "body $.extra: not recorded, replayed true"
            ]
        );
        assert!(same_shape("2f1e0c1a-1111-4c47-9d0e-1f2a3b4c5d6e", "9a8b7c6d-2222-4c47-9d0e-aaaaaaaaaaaa"));
        assert!(!same_shape("abc", "abcd"));
        assert!(redacted_match(
            "http://localhost/cb?code=%5BREDACTED%5D&state=s1",
            "http://localhost/cb?code=r80&state=s1"
        ));
        assert!(!redacted_match(
            "http://localhost/cb?code=%5BREDACTED%5D&state=s1",
            "http://localhost/cb?code=r80&state=s2"
        ));
    }
}
