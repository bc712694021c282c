//! `callvcr cassette check`: a cassette's own requests sent again, in recorded order and in
//! process (a hyper connection over an in-memory pipe, no socket), through the overlays as
//! configured, on a virtual clock that follows the recorded times. Every answer that differs from
//! the recorded one is reported with the overlay and rule that answered it; WebSocket sessions are
//! opened again and the data frames they deliver compared, in order, with the recorded ones. It is
//! how a user learns that their org behaves differently from callvcr's built-in model before CI
//! does.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::cassette::model::{Dir, Exchange, Frame, FrameKind};
use crate::overlay::Platform;
use crate::platform::{is_heartbeat, is_long_poll};
use crate::proxy::{Proxy, Target};

/// How an answer differs from the recorded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Difference {
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
pub(crate) struct Report {
    /// Exchanges sent again.
    pub checked: usize,
    /// WebSocket sessions opened again, their frames compared.
    pub websockets: usize,
    /// Answers that differ.
    pub differences: Vec<Difference>,
}

/// The data frames a replayed WebSocket session delivers, as (kind, payload).
type Delivered = Arc<std::sync::Mutex<Vec<(FrameKind, Bytes)>>>;

/// Whether a recorded frame is one the check compares: a platform frame with data (text or binary),
/// not a Genesys heartbeat (replay makes its own on its clock).
fn compared(f: &Frame) -> bool {
    f.dir == Dir::Server
        && match f.kind {
            FrameKind::Text => !is_heartbeat(&String::from_utf8_lossy(&f.data.bytes)),
            FrameKind::Binary => true,
            _ => false,
        }
}

/// Opens the WebSocket session exchange `e` recorded, sends its recorded client frames, and
/// collects what the replay delivers until the socket ends or `want` data frames arrived.
async fn open_session(
    proxy: Arc<Proxy>,
    target: Arc<Target>,
    e: Arc<Exchange>,
    client: Vec<Frame>,
    want: usize,
    into: Delivered,
) -> Result<(), String> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (client_io, server) = tokio::io::duplex(1 << 16);
    let svc = hyper::service::service_fn(move |req| {
        let (p, t) = (proxy.clone(), target.clone());
        async move { Ok::<_, Infallible>(p.handle(req, t, None).await) }
    });
    tokio::spawn(async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), svc)
            .with_upgrades()
            .await;
    });
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(client_io)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn.with_upgrades());
    let r = &e.request;
    let uri = match &r.query {
        Some(q) => format!("{}?{q}", r.path),
        None => r.path.clone(),
    };
    let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
    let mut b = http::Request::builder().method("GET").uri(uri).header("host", r.host.as_str());
    for (k, v) in &r.headers {
        let lower = k.to_ascii_lowercase();
        if !matches!(lower.as_str(), "host" | "sec-websocket-key" | "sec-websocket-extensions" | "content-length") {
            b = b.header(k.as_str(), v.as_str());
        }
    }
    let req = b
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", key)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(format!("the handshake was answered {}", resp.status()));
    }
    let upgraded = hyper::upgrade::on(resp).await.map_err(|e| e.to_string())?;
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    for f in client.iter().filter(|f| matches!(f.kind, FrameKind::Text | FrameKind::Binary)) {
        let m = match f.kind {
            FrameKind::Text => Message::text(String::from_utf8_lossy(&f.data.bytes).into_owned()),
            _ => Message::binary(f.data.bytes.clone()),
        };
        ws.send(m).await.map_err(|e| e.to_string())?;
    }
    let mut grace: Option<tokio::time::Instant> = None;
    loop {
        let enough = into.lock().unwrap_or_else(|e| e.into_inner()).len() >= want;
        let m = if enough {
            // All recorded frames came: a short grace shows any the recording does not have.
            let until =
                *grace.get_or_insert_with(|| tokio::time::Instant::now() + std::time::Duration::from_millis(200));
            match tokio::time::timeout_at(until, ws.next()).await {
                Ok(m) => m,
                Err(_) => break,
            }
        } else {
            ws.next().await
        };
        let Some(m) = m else { break };
        let (kind, data) = match m.map_err(|e| e.to_string())? {
            Message::Text(t) => (FrameKind::Text, Bytes::copy_from_slice(t.as_bytes())),
            Message::Binary(b) => (FrameKind::Binary, b),
            Message::Close(_) => break,
            _ => continue,
        };
        if kind == FrameKind::Text && is_heartbeat(&String::from_utf8_lossy(&data)) {
            continue;
        }
        into.lock().unwrap_or_else(|e| e.into_inner()).push((kind, data));
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// How the frames a session delivered differ from the recorded ones.
fn compare_frames(
    e: &Exchange,
    want: &[&Frame],
    got: &[(FrameKind, Bytes)],
    err: Option<String>,
) -> Option<Difference> {
    let mut diffs = Vec::new();
    if let Some(err) = err {
        diffs.push(format!("WebSocket: {err}"));
    }
    for (i, f) in want.iter().enumerate() {
        match got.get(i) {
            None => {
                diffs.push(format!("frame {} (recorded #{}): not delivered ({})", i, f.n, excerpt(&f.data.bytes)));
                break;
            }
            Some((kind, data)) => {
                let before = diffs.len();
                match (serde_json::from_slice::<Value>(&f.data.bytes), serde_json::from_slice::<Value>(data)) {
                    (Ok(a), Ok(b)) if *kind == f.kind => json_diff(&a, &b, &format!("frame {i}"), &mut diffs),
                    _ if *kind != f.kind || f.data.bytes[..] != data[..] => diffs.push(format!(
                        "frame {i}: recorded {}, replayed {}",
                        excerpt(&f.data.bytes),
                        excerpt(data)
                    )),
                    _ => {}
                }
                if diffs.len() > before + 5 {
                    break;
                }
            }
        }
    }
    for (i, (_, data)) in got.iter().enumerate().skip(want.len()) {
        diffs.push(format!("frame {i}: not recorded, replayed {}", excerpt(data)));
    }
    if diffs.is_empty() {
        return None;
    }
    Some(Difference {
        seq: e.seq,
        request: format!("{} (WebSocket)", crate::cassette::index::describe(&e.request)),
        answered_by: "websocket".into(),
        detail: None,
        diffs,
    })
}

/// A recorded request's answer now.
struct Got {
    /// Status answered.
    status: u16,
    /// Headers, in order.
    headers: Vec<(String, String)>,
    /// Body, decoded.
    body: Bytes,
}

/// Headers whose values are the transport's, not the platform's.
const TRANSPORT: &[&str] = &["content-length", "transfer-encoding", "connection", "keep-alive"];

/// Sends every exchange of `exchanges` (recorded order) through `proxy` and compares the answers.
/// The proxy's clock should be frozen: it is set to each exchange's recorded time before it is sent.
pub(crate) async fn check(proxy: Arc<Proxy>, exchanges: &[Arc<Exchange>], frames: &[Frame]) -> Report {
    let mut report = Report::default();
    let marker = crate::cassette::redact::MARKER;
    // Minted access tokens by platform, sent where the recording shows a redacted bearer.
    let mut tokens: std::collections::HashMap<&'static str, String> = std::collections::HashMap::new();
    let mut polls = Vec::new();
    let mut sessions = Vec::new();
    for e in exchanges {
        if e.response.status == 101 {
            // Opened now, answered alongside the rest: its frames wait for the requests they followed.
            let mine: Vec<Frame> = frames.iter().filter(|f| f.session == e.seq).cloned().collect();
            let want: Vec<Frame> = mine.iter().filter(|f| compared(f)).cloned().collect();
            let client: Vec<Frame> = mine.into_iter().filter(|f| f.dir == Dir::Client).collect();
            let got: Delivered = Arc::default();
            let (p, t, ex, g, n) =
                (proxy.clone(), target_of(&e.request.host.to_ascii_lowercase()), e.clone(), got.clone(), want.len());
            let before = proxy.ws.sessions().len();
            let task = tokio::spawn(async move { open_session(p, t, ex, client, n, g).await });
            // Open before the requests its frames follow are sent (bounded).
            for _ in 0..1000 {
                if proxy.ws.sessions().len() > before || task.is_finished() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            sessions.push((e.clone(), want, got, task));
            report.websockets += 1;
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
    for (e, want, got, task) in sessions {
        let timer = proxy.timer().clone();
        // Bounded: a frame that never comes is a difference, not a hang.
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            tokio::select! {
                r = task => r.unwrap_or_else(|e| Err(format!("the session task failed: {e}"))),
                _ = async {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        timer.advance_ms(1_000);
                    }
                } => unreachable!("the loop never ends"),
            }
        })
        .await;
        let err = match ended {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => None,
        };
        let delivered = got.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let want: Vec<&Frame> = want.iter().collect();
        if let Some(d) = compare_frames(&e, &want, &delivered, err) {
            report.differences.push(d);
        }
    }
    report
}

/// Where a recorded host is sent in process: `https`, its port when it names one, else 443.
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

/// The differences between a recorded answer and the replayed one, credited to what answered the
/// last journal entry. Transport headers are skipped; minted values (tokens, ids, dates) pass when
/// they have the recorded shape or fill a redaction marker; JSON bodies are compared by meaning.
fn compare(e: &Exchange, got: Result<Got, String>, journal: &[crate::journal::JournalEntry]) -> Option<Difference> {
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
    if last
        .is_some_and(|j| j.answered_by == "overlay:auth" && j.detail.as_deref().is_some_and(|d| d.starts_with("jwks")))
    {
        // The key set serves callvcr's public key, which signs the tokens it mints: its key
        // material differs from the platform's by design (the key id and the rest do not).
        diffs.retain(|d| !is_key_material(d));
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

/// Whether a difference is in a key set's public key material (`$.keys[i].n`, `.e`, a
/// certificate chain).
fn is_key_material(diff: &str) -> bool {
    let Some(rest) = diff.strip_prefix("body $.keys[") else { return false };
    let field = rest.split_once("].").map(|(_, f)| f.split(':').next().unwrap_or("")).unwrap_or("");
    matches!(field, "n" | "e" | "x5c" | "x5t" | "x5t#S256" | "x5u")
}

/// Whether `have` is `want` with each redaction marker in it (plain or percent-encoded) standing
/// for some minted value.
fn redacted_match(want: &str, have: &str) -> bool {
    let marker = crate::cassette::redact::MARKER;
    let encoded = crate::encoding::percent_encode(marker);
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

/// The first 80 characters of a body, for a message.
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
        (Value::String(w), Value::String(h)) if w.ends_with(&format!(".{}", crate::cassette::redact::MARKER)) => {
            // A recorded JWT kept without its signature: the minted one must carry its claims
            // (times and token id are minted fresh).
            let (Some(wc), hc) = (crate::cassette::redact::jwt_claims(w), crate::cassette::redact::jwt_claims(h))
            else {
                return;
            };
            let Some(hc) = hc else {
                out.push(format!("body {at}: recorded a JWT, replayed {}", short(have)));
                return;
            };
            let fresh = |k: &str| crate::cassette::redact::FRESH_CLAIMS.contains(&k);
            for (k, wv) in wc.iter().filter(|(k, _)| !fresh(k)) {
                if hc.get(k) != Some(wv) {
                    let got = hc.get(k).map(short).unwrap_or_else(|| "none".into());
                    out.push(format!("body {at} claim {k}: recorded {}, minted {got}", short(wv)));
                }
            }
            for k in hc.keys().filter(|k| !fresh(k) && !wc.contains_key(*k)) {
                out.push(format!("body {at} claim {k}: not recorded, minted {}", short(&hc[k])));
            }
        }
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

/// A JSON value cut to 60 characters, for a message.
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

    #[test]
    fn a_minted_token_is_checked_by_its_claims() {
        use base64::Engine;
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let head = b64(json!({"alg": "RS256"}));
        let recorded = format!("{head}.{}.[REDACTED]", b64(json!({"tenantId": "t-1", "iat": 1, "jti": "a"})));
        let same = format!("{head}.{}.sig", b64(json!({"tenantId": "t-1", "iat": 99, "jti": "b"})));
        let other = format!("{head}.{}.sig", b64(json!({"tenantId": "t-2", "iat": 99, "extra": 1})));
        let diff = |have: &str| {
            let mut out = Vec::new();
            json_diff(&json!({"id_token": recorded}), &json!({"id_token": have}), "$", &mut out);
            out
        };
        assert!(diff(&same).is_empty(), "{:?}", diff(&same));
        assert_eq!(
            diff(&other),
            [
                "body $.id_token claim tenantId: recorded \"t-1\", minted \"t-2\"",
                "body $.id_token claim extra: not recorded, minted 1"
            ]
        );
        assert_eq!(diff("opaque"), ["body $.id_token: recorded a JWT, replayed \"opaque\""]);
    }
}
