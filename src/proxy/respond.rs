//! Response writing and the request helpers every path shares: callvcr's own JSON answers,
//! stored bodies, hop-by-hop headers, the connection cut switch.

use super::*;

/// Removes hop-by-hop headers, including those the `Connection` header names.
/// The fixed names are removed as they are (no copy per request); only names a `Connection` header
/// lists are collected first.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<String> = h
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .filter(|s| !s.is_empty())
        .collect();
    for n in HOP_BY_HOP {
        h.remove(*n);
    }
    for n in &named {
        h.remove(n.as_str());
    }
}

/// Headers as the cassette keeps them: (name, value) text pairs in order, a value that is not
/// UTF-8 read lossily.
pub(super) fn header_pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}

/// A live request as callvcr keeps it: for fingerprints on a miss, for storage, and for messages.
pub(super) fn live_request(
    method: &Method,
    uri: &http::Uri,
    target: &Target,
    headers: &HeaderMap,
    body: Bytes,
) -> RecordedRequest {
    RecordedRequest {
        method: method.to_string(),
        scheme: target.scheme.to_string(),
        host: target.authority().to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(String::from),
        headers: header_pairs(headers),
        body: Body { bytes: body, encoding: None },
    }
}

/// A JSON response with callvcr's marker header.
pub fn json_response(status: StatusCode, marker: (&'static str, &str), body: serde_json::Value) -> Response<ProxyBody> {
    let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec_pretty(&body).unwrap_or_default())));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(marker.1) {
        r.headers_mut().insert(marker.0, v);
    }
    r
}

/// A response body as sent, decoded from its `Content-Encoding` (as received when callvcr cannot
/// decode that encoding).
pub fn decoded_body(headers: &HeaderMap, bytes: Bytes) -> Bytes {
    stored_body(headers, bytes).bytes
}

/// The body as stored: decoded when the encoding is one we can decode, else as received. The
/// encoding it was decoded from is kept, so replay sends it encoded again.
pub(super) fn stored_body(headers: &HeaderMap, bytes: Bytes) -> Body {
    let enc = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_ascii_lowercase());
    match enc {
        Some(e) if e != "identity" => match crate::cassette::model::decode(&e, &bytes) {
            Some(d) => Body { bytes: d.into(), encoding: Some(e) },
            None => Body { bytes, encoding: None },
        },
        _ => Body { bytes, encoding: None },
    }
}

/// How a connection is to be cut by an injected fault (carried out by the listener's IO wrapper).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutPlan {
    /// Write nothing more; close.
    Close,
    /// Write bytes that are not HTTP, then close.
    Malformed,
    /// Let this many more bytes through, then cut the connection.
    After(usize),
}

/// Per connection: the listener hands it to the proxy with every request, and the proxy arms it
/// when a fault says to cut that connection.
#[derive(Debug, Default)]
pub struct CutSwitch {
    /// Whether a plan is set: read on every write, so the lock is taken only once armed.
    armed: std::sync::atomic::AtomicBool,
    /// The plan, until the connection's IO wrapper takes it.
    plan: Mutex<Option<CutPlan>>,
}

impl CutSwitch {
    /// Arms the switch: the connection's next write carries the plan out.
    pub fn arm(&self, plan: CutPlan) {
        *self.plan.lock().unwrap_or_else(|e| e.into_inner()) = Some(plan);
        self.armed.store(true, Ordering::Release);
    }

    /// Whether a plan waits to be carried out.
    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Acquire)
    }

    /// The plan, once armed (taken once).
    pub fn take(&self) -> Option<CutPlan> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        self.armed.store(false, Ordering::Release);
        self.plan.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Roughly how many bytes `r` takes on the wire (head and body), for cutting it half way.
pub(super) fn wire_size(r: &Response<ProxyBody>) -> usize {
    use hyper::body::Body as _;
    let head: usize = 17 + r.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>() + 2;
    head + r.body().size_hint().exact().unwrap_or(0) as usize
}

/// The request header that pins virtual time for one request.
pub const CLOCK_HEADER: &str = "x-callvcr-clock";

/// The SDK a request announces (see [`crate::platform::SDK_HEADER`]), for the index's
/// per-version recordings.
pub(super) fn sdk_of(headers: &HeaderMap) -> Option<&str> {
    /// Built at compile time, so a lookup does not parse the name per request.
    const SDK: http::HeaderName = http::HeaderName::from_static(crate::platform::SDK_HEADER);
    headers.get(SDK).or_else(|| headers.get(http::header::USER_AGENT)).and_then(|v| v.to_str().ok())
}

/// A request header's value as text.
pub(super) fn header_of<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Sets `extra` headers on a response, replacing any of the same name.
pub(super) fn add_headers(h: &mut HeaderMap, extra: &[(String, String)]) {
    for (k, v) in extra {
        if let (Ok(name), Ok(value)) = (http::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            h.insert(name, value);
        }
    }
}

/// The journal's `answered_by` for an overlay's answer: `fault:<kind>` for injected faults.
pub(super) fn answered_by(overlay: &str, detail: &str) -> String {
    if overlay == "faults" {
        format!("fault:{}", detail.split(':').next().unwrap_or("status"))
    } else {
        format!("overlay:{overlay}")
    }
}
