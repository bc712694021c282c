//! The in-memory replay index: fingerprint → recorded exchanges, served FIFO per fingerprint
//! (the last repeats once exhausted), and the explanation of a miss.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::fingerprint::{differences, Fingerprint, Matcher};
use super::model::{Exchange, RecordedRequest};

struct Slot {
    /// Indexes into `exchanges`, in recorded order.
    items: Vec<usize>,
    /// Next position to serve.
    next: AtomicUsize,
}

/// Recorded exchanges, indexed for replay.
pub struct Index {
    exchanges: Vec<Exchange>,
    prepared: Vec<Prepared>,
    keys: Vec<Fingerprint>,
    slots: HashMap<Fingerprint, Slot>,
    served: Vec<AtomicBool>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("exchanges", &self.exchanges.len()).finish()
    }
}

/// A recorded response made ready to serve: headers parsed and the body encoded once, at load.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Status.
    pub status: http::StatusCode,
    /// Headers as recorded, without `Content-Length` and hop-by-hop headers.
    pub headers: http::HeaderMap,
    /// The body as it is sent (re-encoded when it was recorded encoded).
    pub body: bytes::Bytes,
}

/// Builds the response a recording is served as.
pub fn prepare(rec: &super::model::RecordedResponse) -> Prepared {
    const SKIP: &[&str] = &[
        "content-length",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    let mut headers = http::HeaderMap::with_capacity(rec.headers.len());
    for (k, v) in &rec.headers {
        if SKIP.iter().any(|s| k.eq_ignore_ascii_case(s)) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(k.as_bytes()), http::HeaderValue::from_str(v)) {
            headers.append(n, v);
        }
    }
    let body = match &rec.body.encoding {
        Some(e) => bytes::Bytes::from(super::model::encode(e, &rec.body.bytes)),
        None => rec.body.bytes.clone(),
    };
    Prepared {
        status: http::StatusCode::from_u16(rec.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
        headers,
        body,
    }
}

/// A near miss: a recorded request and how the live one differs from it.
#[derive(Debug, Clone)]
pub struct NearMiss {
    /// `METHOD host/path?query` of the recording.
    pub recorded: String,
    /// Distance (lower is closer).
    pub score: u32,
    /// What differs.
    pub differences: Vec<String>,
}

impl Index {
    /// Indexes `exchanges` (in recorded order) under `matcher`.
    pub fn new(mut exchanges: Vec<Exchange>, matcher: &Matcher) -> Index {
        exchanges.sort_by_key(|e| e.seq);
        let keys: Vec<Fingerprint> = exchanges.iter().map(|e| matcher.fingerprint(&e.request)).collect();
        let mut slots: HashMap<Fingerprint, Slot> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            slots
                .entry(k.clone())
                .or_insert_with(|| Slot { items: Vec::new(), next: AtomicUsize::new(0) })
                .items
                .push(i);
        }
        let served = exchanges.iter().map(|_| AtomicBool::new(false)).collect();
        let prepared = exchanges.iter().map(|e| prepare(&e.response)).collect();
        Index { exchanges, prepared, keys, slots, served }
    }

    /// How many exchanges are indexed.
    pub fn len(&self) -> usize {
        self.exchanges.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.exchanges.is_empty()
    }

    /// The next recorded exchange for `fp`: FIFO, the last repeating once all were served.
    pub fn next(&self, fp: &Fingerprint) -> Option<&Exchange> {
        self.next_prepared(fp).map(|(e, _)| e)
    }

    /// Like [`Index::next`], with the response ready to serve.
    pub fn next_prepared(&self, fp: &Fingerprint) -> Option<(&Exchange, &Prepared)> {
        let slot = self.slots.get(fp)?;
        let pos = slot.next.fetch_add(1, Ordering::Relaxed).min(slot.items.len() - 1);
        let i = slot.items[pos];
        if !self.served[i].load(Ordering::Relaxed) {
            self.served[i].store(true, Ordering::Relaxed);
        }
        Some((&self.exchanges[i], &self.prepared[i]))
    }

    /// Rewinds every FIFO position to the start.
    pub fn rewind(&self) {
        for s in self.slots.values() {
            s.next.store(0, Ordering::Relaxed);
        }
        for s in &self.served {
            s.store(false, Ordering::Relaxed);
        }
    }

    /// Exchanges never served since start (or the last rewind).
    pub fn unused(&self) -> Vec<&Exchange> {
        self.exchanges.iter().zip(&self.served).filter(|(_, s)| !s.load(Ordering::Relaxed)).map(|(e, _)| e).collect()
    }

    /// The `n` closest recorded requests to `fp`, one per distinct fingerprint. Off the hit path.
    pub fn near_misses(&self, fp: &Fingerprint, n: usize) -> Vec<NearMiss> {
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<NearMiss> = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            if !seen.insert(k) {
                continue;
            }
            let d = differences(fp, k);
            out.push(NearMiss { recorded: describe(&self.exchanges[i].request), score: d.score, differences: d.parts });
        }
        out.sort_by_key(|m| m.score);
        out.truncate(n);
        out
    }

    /// All exchanges, in recorded order.
    pub fn exchanges(&self) -> &[Exchange] {
        &self.exchanges
    }
}

/// `METHOD host/path?query`.
pub fn describe(r: &RecordedRequest) -> String {
    match &r.query {
        Some(q) => format!("{} {}{}?{}", r.method, r.host, r.path, q),
        None => format!("{} {}{}", r.method, r.host, r.path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassette::model::{Body, RecordedResponse};
    use crate::cassette::redact::Redactor;
    use crate::config::{MatchConfig, RedactConfig};

    fn ex(seq: u64, path: &str, body: &str) -> Exchange {
        Exchange {
            seq,
            recorded_at: String::new(),
            duration_ms: 0,
            sdk: None,
            request: RecordedRequest {
                method: "GET".into(),
                scheme: "https".into(),
                host: "api.mypurecloud.com".into(),
                path: path.into(),
                query: None,
                headers: vec![],
                body: Body::default(),
            },
            response: RecordedResponse {
                status: 200,
                headers: vec![],
                body: Body { bytes: body.to_string().into(), encoding: None },
            },
        }
    }

    #[test]
    fn fifo_per_key_and_last_repeats() {
        let m = Matcher::new(&MatchConfig::default(), Redactor::new(&RedactConfig::default()));
        let idx = Index::new(vec![ex(1, "/a", "a1"), ex(2, "/b", "b1"), ex(3, "/a", "a2"), ex(4, "/b", "b2")], &m);
        let ka = m.fingerprint(&ex(0, "/a", "").request);
        let kb = m.fingerprint(&ex(0, "/b", "").request);
        let body = |e: Option<&Exchange>| String::from_utf8(e.unwrap().response.body.bytes.to_vec()).unwrap();
        assert_eq!(body(idx.next(&kb)), "b1");
        assert_eq!(body(idx.next(&ka)), "a1");
        assert_eq!(body(idx.next(&ka)), "a2");
        assert_eq!(body(idx.next(&ka)), "a2");
        assert_eq!(idx.unused().len(), 1);
        assert_eq!(body(idx.next(&kb)), "b2");
        idx.rewind();
        assert_eq!(body(idx.next(&ka)), "a1");
        let miss = m.fingerprint(&ex(0, "/c", "").request);
        assert!(idx.next(&miss).is_none());
        let near = idx.near_misses(&miss, 3);
        assert_eq!(near.len(), 2);
    }
}
