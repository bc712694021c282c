//! The in-memory replay index: fingerprint → recorded exchanges, served FIFO per fingerprint
//! (the last repeats once exhausted), and the explanation of a miss.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::fingerprint::{differences, Fingerprint, Key, Matcher};
use super::model::{Exchange, RecordedRequest};
use crate::route::Version;

struct Slot {
    /// Indexes into `exchanges`, in recorded order.
    items: Vec<usize>,
    /// Next position to serve.
    next: AtomicUsize,
    /// When recordings of this fingerprint came from more than one SDK version: one FIFO per version.
    by_sdk: HashMap<String, Slot>,
}

impl Slot {
    fn new() -> Slot {
        Slot { items: Vec::new(), next: AtomicUsize::new(0), by_sdk: HashMap::new() }
    }

    fn take(&self) -> usize {
        let pos = self.next.fetch_add(1, Ordering::Relaxed).min(self.items.len() - 1);
        self.items[pos]
    }

    fn rewind(&self) {
        self.next.store(0, Ordering::Relaxed);
        self.by_sdk.values().for_each(Slot::rewind);
    }
}

/// The recordings of the SDK version closest to `live`: the newest recorded at or below it, else the
/// oldest above it (versions compared by number, whatever the header's wording around them).
fn nearest_version<'a>(by_sdk: &'a HashMap<String, Slot>, live: &str) -> Option<&'a Slot> {
    let live = Version::find_in(live)?;
    let versions: Vec<(Version, &Slot)> =
        by_sdk.iter().filter_map(|(k, s)| Version::find_in(k).map(|v| (v, s))).collect();
    let below = versions.iter().filter(|(v, _)| *v <= live).max_by(|a, b| a.0.cmp(&b.0));
    let above = versions.iter().filter(|(v, _)| *v > live).min_by(|a, b| a.0.cmp(&b.0));
    below.or(above).map(|(_, s)| *s)
}

/// Recorded exchanges, indexed for replay. Per recording it keeps the exchange, a 128-bit key and
/// a served flag; the response's wire form is built on its first hit.
pub struct Index {
    exchanges: Vec<Exchange>,
    prepared: Vec<std::sync::OnceLock<Prepared>>,
    slots: HashMap<Key, Slot>,
    served: Vec<AtomicBool>,
    matcher: Matcher,
    /// One exchange per distinct fingerprint, for explaining misses.
    reps: Vec<usize>,
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
    let mut headers = http::HeaderMap::with_capacity(rec.headers.len());
    for (k, v) in &rec.headers {
        if k.eq_ignore_ascii_case("content-length")
            || super::model::HOP_BY_HOP.iter().any(|s| k.eq_ignore_ascii_case(s))
        {
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
        let keys = super::par_map(&exchanges, |e| Key::of(&matcher.fingerprint(&e.request)));
        let mut slots: HashMap<Key, Slot> = HashMap::with_capacity(exchanges.len());
        let mut reps = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let slot = slots.entry(key).or_insert_with(Slot::new);
            if slot.items.is_empty() {
                reps.push(i);
            }
            slot.items.push(i);
        }
        for slot in slots.values_mut() {
            let mut versions: HashMap<String, Slot> = HashMap::new();
            for &i in &slot.items {
                if let Some(v) = &exchanges[i].sdk {
                    versions.entry(v.clone()).or_insert_with(Slot::new).items.push(i);
                }
            }
            if versions.len() > 1 {
                slot.by_sdk = versions;
            }
        }
        let served = exchanges.iter().map(|_| AtomicBool::new(false)).collect();
        let prepared = exchanges.iter().map(|_| std::sync::OnceLock::new()).collect();
        Index { exchanges, prepared, slots, served, matcher: matcher.clone(), reps }
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
        self.next_prepared(fp, None).map(|(e, _)| e)
    }

    /// Like [`Index::next`], with the response ready to serve. When the cassette holds recordings of
    /// this fingerprint from several SDK versions, those from `sdk` (the version the live request
    /// announced) are preferred, each version with its own FIFO.
    pub fn next_prepared(&self, fp: &Fingerprint, sdk: Option<&str>) -> Option<(&Exchange, &Prepared)> {
        self.next_by_key(Key::of(fp), sdk)
    }

    /// Like [`Index::next_prepared`], by key (see [`Matcher::key_parts`]).
    pub fn next_by_key(&self, key: Key, sdk: Option<&str>) -> Option<(&Exchange, &Prepared)> {
        let slot = self.slots.get(&key)?;
        let i = match sdk.filter(|_| !slot.by_sdk.is_empty()) {
            Some(v) => match slot.by_sdk.get(v).or_else(|| nearest_version(&slot.by_sdk, v)) {
                Some(version) => version.take(),
                None => slot.take(),
            },
            None => slot.take(),
        };
        if !self.served[i].load(Ordering::Relaxed) {
            self.served[i].store(true, Ordering::Relaxed);
        }
        let e = &self.exchanges[i];
        Some((e, self.prepared[i].get_or_init(|| prepare(&e.response))))
    }

    /// Whether the exchange with sequence number `seq` has been served since the start (or the last
    /// rewind); `true` for a number the cassette does not hold, so nothing waits on it forever.
    pub fn seq_served(&self, seq: u64) -> bool {
        match self.exchanges.binary_search_by_key(&seq, |e| e.seq) {
            Ok(i) => self.served[i].load(Ordering::Relaxed),
            Err(_) => true,
        }
    }

    /// Rewinds every FIFO position to the start.
    pub fn rewind(&self) {
        for s in self.slots.values() {
            s.rewind();
        }
        for s in &self.served {
            s.store(false, Ordering::Relaxed);
        }
    }

    /// Exchanges never served since start (or the last rewind).
    pub fn unused(&self) -> Vec<&Exchange> {
        self.exchanges.iter().zip(&self.served).filter(|(_, s)| !s.load(Ordering::Relaxed)).map(|(e, _)| e).collect()
    }

    /// The `n` closest recorded requests to `fp`, one per distinct fingerprint. Off the hit path;
    /// on a large cassette a cheap look at method, host and path picks the candidates that are
    /// compared in full.
    pub fn near_misses(&self, fp: &Fingerprint, n: usize) -> Vec<NearMiss> {
        const CANDIDATES: usize = 64;
        let mut cand: Vec<(u32, usize)> =
            self.reps.iter().map(|&i| (rough_distance(fp, &self.exchanges[i].request), i)).collect();
        if cand.len() > CANDIDATES {
            cand.select_nth_unstable(CANDIDATES);
            cand.truncate(CANDIDATES);
        }
        let mut out: Vec<NearMiss> = cand
            .into_iter()
            .map(|(_, i)| {
                let e = &self.exchanges[i];
                let d = differences(fp, &self.matcher.fingerprint(&e.request));
                NearMiss { recorded: describe(&e.request), score: d.score, differences: d.parts }
            })
            .collect();
        out.sort_by(|a, b| a.score.cmp(&b.score).then_with(|| a.recorded.cmp(&b.recorded)));
        out.truncate(n);
        out
    }

    /// All exchanges, in recorded order.
    pub fn exchanges(&self) -> &[Exchange] {
        &self.exchanges
    }
}

/// A cheap distance from a live request's fingerprint to a recorded request, from their raw parts.
fn rough_distance(fp: &Fingerprint, r: &RecordedRequest) -> u32 {
    let mut d = 0;
    if !fp.method.eq_ignore_ascii_case(&r.method) {
        d += 4;
    }
    if !fp.host.eq_ignore_ascii_case(&r.host) {
        d += 8;
    }
    let (a, b): (Vec<&str>, Vec<&str>) = (fp.path.split('/').collect(), r.path.split('/').collect());
    d += a.iter().zip(&b).filter(|(x, y)| x != y).count() as u32 * 2;
    d += a.len().abs_diff(b.len()) as u32 * 2;
    d
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
            after: None,
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

    #[test]
    fn recordings_from_the_same_sdk_version_are_preferred() {
        let m = Matcher::new(&MatchConfig::default(), Redactor::new(&RedactConfig::default()));
        let mut a = ex(1, "/me", "from-v1");
        a.sdk = Some("purecloud-sdk/1.0".into());
        let mut b = ex(2, "/me", "from-v2");
        b.sdk = Some("purecloud-sdk/2.0".into());
        let idx = Index::new(vec![a, b], &m);
        let k = m.fingerprint(&ex(0, "/me", "").request);
        let body =
            |e: Option<(&Exchange, &Prepared)>| String::from_utf8(e.unwrap().0.response.body.bytes.to_vec()).unwrap();
        assert_eq!(body(idx.next_prepared(&k, Some("purecloud-sdk/2.0"))), "from-v2");
        assert_eq!(body(idx.next_prepared(&k, Some("purecloud-sdk/2.0"))), "from-v2", "its own FIFO repeats its last");
        assert_eq!(body(idx.next_prepared(&k, Some("purecloud-sdk/1.0"))), "from-v1");
        // A version not recorded: the newest recorded at or below it, else the oldest above it.
        assert_eq!(body(idx.next_prepared(&k, Some("purecloud-sdk/1.5.3"))), "from-v1");
        assert_eq!(body(idx.next_prepared(&k, Some("9.0.0"))), "from-v2");
        assert_eq!(body(idx.next_prepared(&k, Some("0.9"))), "from-v1");
        assert_eq!(body(idx.next_prepared(&k, Some("PureCloud SDK/python"))), "from-v1", "no version: recorded order");
        assert_eq!(body(idx.next_prepared(&k, None)), "from-v2");
    }
}
