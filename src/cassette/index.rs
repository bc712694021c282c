//! The replay index: fingerprint key → recorded exchanges, served FIFO per key (the last repeats
//! once exhausted), and the explanation of a miss. Per exchange it keeps a fixed-size head (key,
//! sequence number, method, host, path, query, status, SDK version, a few flags) and reads the
//! whole exchange from its source on first use: memory (a JSON Lines or HAR file, a test), or the
//! cassette's replay file on disk, so a cassette of a million exchanges starts in well under a
//! second and holds only what is served. It does not read or write the store.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::error::CassetteError;
use super::fingerprint::{differences, Fingerprint, Key, Matcher};
use super::model::{Exchange, RecordedRequest};
use crate::route::Version;

pub(crate) use super::heads::{describe_parts, key_order, Heads, HeadsBuilder, HEAD_BYTES};
pub use super::heads::{Head, REQ_BODY, REQ_STATE, RESP_STATE};

/// Where the full exchanges are.
pub(crate) enum Source {
    /// In memory, in recorded order.
    Memory(Vec<Arc<Exchange>>),
    /// In a replay file's data section.
    File {
        /// The open file.
        file: std::fs::File,
        /// Its path, for errors.
        path: PathBuf,
    },
}

impl Source {
    /// The whole exchange `head` describes. From a file it must parse and carry the sequence number the
    /// head names; anything else is a corrupt replay file, not a wrong answer served.
    fn read(&self, head: &Head<'_>) -> Result<Arc<Exchange>, CassetteError> {
        match self {
            Source::Memory(v) => Ok(v[head.pos].clone()),
            Source::File { file, path } => {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; head.len as usize];
                let corrupt = |detail: String| CassetteError::Corrupt { path: path.clone(), detail };
                file.read_exact_at(&mut buf, head.off)
                    .map_err(|e| corrupt(format!("exchange {} cannot be read: {e}", head.seq)))?;
                let e: Exchange = serde_json::from_slice(&buf)
                    .map_err(|e| corrupt(format!("exchange {} does not parse: {e}", head.seq)))?;
                if e.seq != head.seq {
                    return Err(corrupt(format!("exchange {} is stored where {} should be", e.seq, head.seq)));
                }
                Ok(Arc::new(e))
            }
        }
    }
}

/// One FIFO of positions: the recordings of one key from one SDK version.
struct Slot {
    /// Positions, in recorded order.
    items: Vec<u32>,
    /// Next position to serve.
    next: AtomicUsize,
}

impl Slot {
    /// The position to serve now, moving on; the last one repeats once all were taken.
    fn take(&self) -> usize {
        let pos = self.next.fetch_add(1, Ordering::Relaxed).min(self.items.len() - 1);
        self.items[pos] as usize
    }

    /// The position [`Slot::take`] would give, without moving on.
    fn peek(&self) -> usize {
        self.items[self.next.load(Ordering::Relaxed).min(self.items.len() - 1)] as usize
    }

    /// The next position not yet served, moving on; `None` once all were taken (nothing repeats).
    fn try_take(&self) -> Option<usize> {
        let n = self.items.len();
        let at = self.next.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |i| (i < n).then_some(i + 1)).ok()?;
        Some(self.items[at] as usize)
    }

    /// The position [`Slot::try_take`] would give, without moving on.
    fn try_peek(&self) -> Option<usize> {
        self.items.get(self.next.load(Ordering::Relaxed)).map(|&p| p as usize)
    }

    /// An empty FIFO.
    fn empty() -> Slot {
        Slot { items: Vec::new(), next: AtomicUsize::new(0) }
    }
}

/// The recordings of one key in a cassette recorded in test scopes: one FIFO per scope, and one
/// for those recorded outside any scope. A request in a scope takes its scope's recordings first,
/// then the unscoped ones, then repeats its scope's last; so a test gets what it recorded whatever
/// ran before it.
#[derive(Default)]
struct ScopedRun {
    /// By scope name.
    scopes: HashMap<String, Slot>,
    /// Recorded outside any scope.
    unscoped: Option<Slot>,
}

impl ScopedRun {
    /// The position a request in `scope` gets (moving on when `take`); `None` when neither its
    /// scope nor the unscoped recordings hold this key, so the key's shared FIFO answers.
    fn pick(&self, scope: &str, take: bool) -> Option<usize> {
        let own = self.scopes.get(scope);
        let next = |s: &Slot| if take { s.try_take() } else { s.try_peek() };
        own.and_then(next).or_else(|| self.unscoped.as_ref().and_then(next)).or_else(|| own.map(Slot::peek))
    }
}

/// The recording the next request with some key would get, seen without taking its place.
#[derive(Debug, Clone)]
pub struct Peeked {
    /// The exchange.
    pub exchange: Arc<Exchange>,
    /// Whether it has not been served yet in this run: the run is where the recording was. `false`
    /// once the recordings of this key ran out and the last one repeats.
    pub fresh: bool,
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

/// A recorded exchange read in full, with its response ready to serve.
#[derive(Debug)]
pub struct Loaded {
    /// The exchange.
    pub exchange: Arc<Exchange>,
    /// Its response, ready to serve.
    pub prepared: Prepared,
    /// Its response body as JSON, parsed on the first hit that an overlay reads it on.
    pub answer_json: OnceLock<Option<serde_json::Value>>,
}

/// Recorded exchanges, indexed for replay.
pub struct Index {
    /// Heads in recorded order.
    heads: Heads,
    /// Positions sorted by (key, recorded order).
    order: Vec<u32>,
    /// Per run of one key (at the run's first place in `order`): how many were served.
    next: Vec<AtomicU32>,
    /// Runs holding recordings from more than one SDK version: one FIFO per version.
    by_sdk: HashMap<u32, HashMap<String, Slot>>,
    /// Runs holding recordings made in a test scope: one FIFO per scope.
    by_scope: HashMap<u32, ScopedRun>,
    /// Per position: served since the start or the last rewind (for `unused`, `seq_served`, freshness).
    served: Vec<AtomicBool>,
    /// Per position: the exchange read and prepared on its first hit, kept for later hits.
    loaded: Vec<OnceLock<Box<Loaded>>>,
    /// Where the full exchanges are read from.
    source: Source,
    /// The matcher the keys were made under; near misses fingerprint recordings with it again.
    matcher: Matcher,
    /// What was worked out from the whole cassette when its replay file was written, by name.
    analyses: BTreeMap<String, serde_json::Value>,
    /// Replay's move of the recording's times onto the virtual clock, applied to each exchange as
    /// it is read (so a hit costs nothing more, and a large cassette is never read whole for it).
    shift: Option<super::timeshift::TimeShift>,
    /// Unique per index made (and per shift applied), so a request's key worked out against one
    /// index is not used against another that replaced it meanwhile (an admin cassette switch).
    id: u64,
}

impl std::fmt::Debug for Index {
    /// Only the size: the heads and FIFO counters would swamp a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("exchanges", &self.len()).finish()
    }
}

/// A recorded response made ready to serve: headers parsed and the body encoded once.
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
    /// What differs, field by field.
    pub fields: Vec<super::explain::Field>,
    /// The `match:` setting that would make it a hit, when one would.
    pub hint: Option<String>,
}

/// A fresh [`Index`] identity.
fn next_index_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Index {
    /// Indexes `exchanges` (in memory) under `matcher`.
    pub fn new(mut exchanges: Vec<Exchange>, matcher: &Matcher) -> Index {
        exchanges.sort_by_key(|e| e.seq);
        let keys = super::par_map(&exchanges, |e| Key::of(&matcher.fingerprint(&e.request)));
        let mut b = HeadsBuilder::default();
        let mut kept = Vec::with_capacity(exchanges.len());
        for (e, key) in exchanges.into_iter().zip(keys) {
            // Only a string table past 4 GiB fails, and memory gives out long before.
            if b.push(&e, key, 0, 0).is_ok() {
                kept.push(Arc::new(e));
            }
        }
        let heads = b.finish();
        let order = key_order(&heads);
        Index::from_parts(heads, order, Source::Memory(kept), matcher, BTreeMap::new())
    }

    /// An index over heads and key order already made (a replay file's).
    pub(crate) fn from_parts(
        heads: Heads,
        order: Vec<u32>,
        source: Source,
        matcher: &Matcher,
        analyses: BTreeMap<String, serde_json::Value>,
    ) -> Index {
        let n = heads.len();
        let mut by_sdk = HashMap::new();
        let mut by_scope = HashMap::new();
        let mut lo = 0;
        while lo < n {
            let key = heads.key(order[lo] as usize);
            let mut hi = lo + 1;
            while hi < n && heads.key(order[hi] as usize) == key {
                hi += 1;
            }
            if order[lo..hi].iter().any(|&p| heads.get(p as usize).scope.is_some()) {
                let mut run = ScopedRun::default();
                for &p in &order[lo..hi] {
                    let slot = match heads.get(p as usize).scope {
                        Some(s) => run.scopes.entry(s.to_string()).or_insert_with(Slot::empty),
                        None => run.unscoped.get_or_insert_with(Slot::empty),
                    };
                    slot.items.push(p);
                }
                by_scope.insert(lo as u32, run);
            }
            if hi - lo > 1 {
                let mut versions: HashMap<String, Slot> = HashMap::new();
                for &p in &order[lo..hi] {
                    if let Some(v) = heads.get(p as usize).sdk {
                        versions
                            .entry(v.to_string())
                            .or_insert_with(|| Slot { items: Vec::new(), next: AtomicUsize::new(0) })
                            .items
                            .push(p);
                    }
                }
                if versions.len() > 1 {
                    by_sdk.insert(lo as u32, versions);
                }
            }
            lo = hi;
        }
        Index {
            next: (0..n).map(|_| AtomicU32::new(0)).collect(),
            served: (0..n).map(|_| AtomicBool::new(false)).collect(),
            loaded: (0..n).map(|_| OnceLock::new()).collect(),
            heads,
            order,
            by_sdk,
            by_scope,
            source,
            matcher: matcher.clone(),
            analyses,
            shift: None,
            id: next_index_id(),
        }
    }

    /// The index with `shift` applied to every exchange it reads (none when it is the identity).
    pub fn with_shift(mut self, shift: super::timeshift::TimeShift) -> Index {
        self.shift = (!shift.is_identity()).then_some(shift);
        self.id = next_index_id();
        self
    }

    /// This index's identity (see the field).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The shift applied to what this index serves, if any.
    pub fn shift(&self) -> Option<&super::timeshift::TimeShift> {
        self.shift.as_ref()
    }

    /// The exchange at `pos` from its source, moved in time where replay shifts it.
    fn read(&self, pos: usize) -> Result<Arc<Exchange>, CassetteError> {
        let e = self.source.read(&self.heads.get(pos))?;
        Ok(match &self.shift {
            None => e,
            Some(t) => {
                let mut e = (*e).clone();
                t.response(&mut e.response);
                Arc::new(e)
            }
        })
    }

    /// How many exchanges are indexed.
    pub fn len(&self) -> usize {
        self.heads.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.heads.len() == 0
    }

    /// The head of the exchange at `pos` (recorded order).
    pub fn head(&self, pos: usize) -> Head<'_> {
        self.heads.get(pos)
    }

    /// Every head, in recorded order.
    pub fn heads(&self) -> impl Iterator<Item = Head<'_>> {
        (0..self.len()).map(|p| self.heads.get(p))
    }

    /// A result worked out from the whole cassette when its replay file was written.
    pub fn analysis(&self, name: &str) -> Option<&serde_json::Value> {
        self.analyses.get(name)
    }

    /// The run of `key` in the key order: its first and one-past-last place.
    fn run(&self, key: Key) -> Option<(usize, usize)> {
        let k = key.to_u128();
        let lo = self.order.partition_point(|&p| self.heads.key(p as usize) < k);
        if lo == self.order.len() || self.heads.key(self.order[lo] as usize) != k {
            return None;
        }
        let hi = lo + self.order[lo..].partition_point(|&p| self.heads.key(p as usize) == k);
        Some((lo, hi))
    }

    /// The next recorded exchange for `fp`: FIFO, the last repeating once all were served.
    pub fn next(&self, fp: &Fingerprint) -> Option<Result<&Loaded, CassetteError>> {
        self.next_by_key(Key::of(fp), None)
    }

    /// The next recorded exchange for `key` (see [`Matcher::key_parts`]), read and made ready to
    /// serve on its first use. When the cassette holds recordings of this key from several SDK
    /// versions, those from `sdk` (the version the live request announced) are preferred, each
    /// version with its own FIFO. An error when the replay file cannot give the exchange.
    pub fn next_by_key(&self, key: Key, sdk: Option<&str>) -> Option<Result<&Loaded, CassetteError>> {
        self.next_by_key_seen(key, sdk).map(|(l, _)| l)
    }

    /// [`Index::next_by_key`], saying too whether the recording was fresh (not served before in
    /// this run: the run is where the recording was) or repeats.
    pub fn next_by_key_seen(&self, key: Key, sdk: Option<&str>) -> Option<(Result<&Loaded, CassetteError>, bool)> {
        self.next_in_scope(key, sdk, None)
    }

    /// [`Index::next_by_key_seen`] for a request made in test scope `scope`: that scope's
    /// recordings of the key first, each scope with its own FIFO, then those recorded outside any
    /// scope; the key's shared FIFO when neither holds it.
    pub fn next_in_scope(
        &self,
        key: Key,
        sdk: Option<&str>,
        scope: Option<&str>,
    ) -> Option<(Result<&Loaded, CassetteError>, bool)> {
        let (lo, hi) = self.run(key)?;
        let pos = self.pick(lo, hi, sdk, scope, true);
        let fresh = !self.served[pos].load(Ordering::Relaxed);
        if fresh {
            self.served[pos].store(true, Ordering::Relaxed);
        }
        Some((self.load(pos), fresh))
    }

    /// The position a request for the run `lo..hi` gets, moving the FIFO on when `take`.
    fn pick(&self, lo: usize, hi: usize, sdk: Option<&str>, scope: Option<&str>, take: bool) -> usize {
        if let Some(p) = scope.and_then(|s| self.by_scope.get(&(lo as u32)).and_then(|r| r.pick(s, take))) {
            return p;
        }
        let versions = sdk.and_then(|v| self.by_sdk.get(&(lo as u32)).map(|m| (m, v)));
        if let Some(slot) = versions.and_then(|(m, v)| m.get(v).or_else(|| nearest_version(m, v))) {
            return if take { slot.take() } else { slot.peek() };
        }
        let last = (hi - lo - 1) as u32;
        let n = if take {
            // Only a run with more to serve moves on: single recordings are never written to.
            match self.next[lo].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < last).then_some(n + 1)) {
                Ok(n) | Err(n) => n,
            }
        } else {
            self.next[lo].load(Ordering::Relaxed)
        };
        self.order[lo + n.min(last) as usize] as usize
    }

    /// What [`Index::next_by_key`] would give for `key` now, without moving any FIFO position;
    /// `None` when nothing is recorded for it or the recording cannot be read.
    pub fn peek_by_key(&self, key: Key, sdk: Option<&str>) -> Option<Peeked> {
        self.peek_in_scope(key, sdk, None)
    }

    /// [`Index::peek_by_key`] for a request made in test scope `scope`.
    pub fn peek_in_scope(&self, key: Key, sdk: Option<&str>, scope: Option<&str>) -> Option<Peeked> {
        let (lo, hi) = self.run(key)?;
        let pos = self.pick(lo, hi, sdk, scope, false);
        let fresh = !self.served[pos].load(Ordering::Relaxed);
        let exchange = self.load(pos).map_err(|e| tracing::error!("{e}")).ok()?.exchange.clone();
        Some(Peeked { exchange, fresh })
    }

    /// The exchange at `pos`, read and made ready to serve once.
    fn load(&self, pos: usize) -> Result<&Loaded, CassetteError> {
        if let Some(l) = self.loaded[pos].get() {
            return Ok(l);
        }
        let exchange = self.read(pos)?;
        let prepared = prepare(&exchange.response);
        let _ = self.loaded[pos].set(Box::new(Loaded { exchange, prepared, answer_json: OnceLock::new() }));
        self.loaded[pos]
            .get()
            .map(|b| &**b)
            .ok_or_else(|| CassetteError::Io { path: PathBuf::new(), detail: "a loaded exchange vanished".into() })
    }

    /// The exchange at `pos`, read in full (not kept: learning reads many once).
    pub fn exchange(&self, pos: usize) -> Result<Arc<Exchange>, CassetteError> {
        match self.loaded[pos].get() {
            Some(l) => Ok(l.exchange.clone()),
            None => self.read(pos),
        }
    }

    /// The exchanges whose heads pass `keep`, read in full, in recorded order. One that cannot be
    /// read is left out and logged.
    pub fn select(&self, keep: impl Fn(&Head<'_>) -> bool) -> Vec<Arc<Exchange>> {
        let picked: Vec<usize> = self.heads().filter(|h| keep(h)).map(|h| h.pos).collect();
        super::par_map(&picked, |&p| self.exchange(p))
            .into_iter()
            .filter_map(|r| r.map_err(|e| tracing::error!("{e}; left out")).ok())
            .collect()
    }

    /// Whether the exchange with sequence number `seq` has been served since the start (or the last
    /// rewind); `true` for a number the cassette does not hold, so nothing waits on it forever.
    pub fn seq_served(&self, seq: u64) -> bool {
        let n = self.len();
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.heads.seq(mid) < seq {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < n && self.heads.seq(lo) == seq {
            self.served[lo].load(Ordering::Relaxed)
        } else {
            true
        }
    }

    /// Whether the exchange at `pos` has been served since the start (or the last rewind).
    pub fn served_at(&self, pos: usize) -> bool {
        self.served.get(pos).is_some_and(|s| s.load(Ordering::Relaxed))
    }

    /// Rewinds every FIFO position to the start.
    pub fn rewind(&self) {
        for n in &self.next {
            if n.load(Ordering::Relaxed) != 0 {
                n.store(0, Ordering::Relaxed);
            }
        }
        for s in self.by_sdk.values().flat_map(HashMap::values) {
            s.next.store(0, Ordering::Relaxed);
        }
        for r in self.by_scope.values() {
            r.scopes.values().chain(&r.unscoped).for_each(|s| s.next.store(0, Ordering::Relaxed));
        }
        for s in &self.served {
            s.store(false, Ordering::Relaxed);
        }
    }

    /// Rewinds test scope `scope`: its FIFO positions to the start and its recordings to unserved,
    /// so a test run again in one process gets what it recorded again. The recordings outside any
    /// scope stay where they are (other tests share them).
    pub fn rewind_scope(&self, scope: &str) {
        for s in self.by_scope.values().filter_map(|r| r.scopes.get(scope)) {
            s.next.store(0, Ordering::Relaxed);
            for &p in &s.items {
                self.served[p as usize].store(false, Ordering::Relaxed);
            }
        }
    }

    /// Heads of the exchanges never served since start (or the last rewind).
    pub fn unused(&self) -> Vec<Head<'_>> {
        self.heads().filter(|h| !self.served[h.pos].load(Ordering::Relaxed)).collect()
    }

    /// Heads of the exchanges recorded in test scope `scope` never served since it last started.
    pub fn unused_in(&self, scope: &str) -> Vec<Head<'_>> {
        self.heads().filter(|h| h.scope == Some(scope) && !self.served[h.pos].load(Ordering::Relaxed)).collect()
    }

    /// Whether any exchange was recorded in a test scope.
    pub fn has_scopes(&self) -> bool {
        !self.by_scope.is_empty()
    }

    /// The `n` closest recorded requests to `fp`, one per distinct key. Off the hit path: a cheap
    /// look at method, host and path picks the candidates that are read and compared in full.
    pub fn near_misses(&self, fp: &Fingerprint, n: usize) -> Vec<NearMiss> {
        /// How many recordings, picked by [`rough_distance`], are read and compared in full.
        const CANDIDATES: usize = 64;
        let mut cand: Vec<(u32, usize)> = Vec::new();
        let mut prev = None;
        for &p in &self.order {
            let h = self.heads.get(p as usize);
            if prev == Some(h.key) {
                continue;
            }
            prev = Some(h.key);
            cand.push((rough_distance(fp, &h), h.pos));
        }
        if cand.len() > CANDIDATES {
            cand.select_nth_unstable(CANDIDATES);
            cand.truncate(CANDIDATES);
        }
        let mut out: Vec<NearMiss> = cand
            .into_iter()
            .filter_map(|(_, p)| {
                let e = self.exchange(p).map_err(|e| tracing::error!("{e}")).ok()?;
                let rec = self.matcher.fingerprint(&e.request);
                let d = differences(fp, &rec);
                let (fields, hint) = super::explain::fields(fp, &rec);
                Some(NearMiss { recorded: describe(&e.request), score: d.score, differences: d.parts, fields, hint })
            })
            .collect();
        out.sort_by(|a, b| a.score.cmp(&b.score).then_with(|| a.recorded.cmp(&b.recorded)));
        out.truncate(n);
        out
    }
}

/// A cheap distance from a live request's fingerprint to a recorded request's head.
fn rough_distance(fp: &Fingerprint, r: &Head<'_>) -> u32 {
    let mut d = 0;
    if !fp.method.eq_ignore_ascii_case(r.method) {
        d += 4;
    }
    if !fp.host.eq_ignore_ascii_case(r.host) {
        d += 8;
    }
    let (a, b): (Vec<&str>, Vec<&str>) = (fp.path.split('/').collect(), r.path.split('/').collect());
    d += a.iter().zip(&b).filter(|(x, y)| x != y).count() as u32 * 2;
    d += a.len().abs_diff(b.len()) as u32 * 2;
    d
}

/// `METHOD host/path?query`.
pub fn describe(r: &RecordedRequest) -> String {
    describe_parts(&r.method, &r.host, &r.path, r.query.as_deref())
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
            scope: None,
            token_shapes: Vec::new(),
            after: None,
            credentials: Vec::new(),
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
        let body = |e: Option<Result<&Loaded, CassetteError>>| {
            String::from_utf8(e.unwrap().unwrap().exchange.response.body.bytes.to_vec()).unwrap()
        };
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
        assert!(idx.seq_served(1) && idx.seq_served(99) && !idx.seq_served(4));
        let h = idx.head(2);
        assert_eq!((h.seq, h.method, h.path, h.query, h.status), (3, "GET", "/a", None, 200));
        assert_eq!(h.describe(), "GET api.mypurecloud.com/a");
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
        let body = |e: Option<Result<&Loaded, CassetteError>>| {
            String::from_utf8(e.unwrap().unwrap().prepared.body.to_vec()).unwrap()
        };
        let k = Key::of(&k);
        assert_eq!(body(idx.next_by_key(k, Some("purecloud-sdk/2.0"))), "from-v2");
        assert_eq!(body(idx.next_by_key(k, Some("purecloud-sdk/2.0"))), "from-v2", "its own FIFO repeats its last");
        assert_eq!(body(idx.next_by_key(k, Some("purecloud-sdk/1.0"))), "from-v1");
        // A version not recorded: the newest recorded at or below it, else the oldest above it.
        assert_eq!(body(idx.next_by_key(k, Some("purecloud-sdk/1.5.3"))), "from-v1");
        assert_eq!(body(idx.next_by_key(k, Some("9.0.0"))), "from-v2");
        assert_eq!(body(idx.next_by_key(k, Some("0.9"))), "from-v1");
        assert_eq!(body(idx.next_by_key(k, Some("PureCloud SDK/python"))), "from-v1", "no version: recorded order");
        assert_eq!(body(idx.next_by_key(k, None)), "from-v2");
    }

    #[test]
    fn a_scope_gets_its_own_recordings_first_then_the_unscoped_ones() {
        let m = Matcher::new(&MatchConfig::default(), Redactor::new(&RedactConfig::default()));
        let scoped = |seq, body, scope: Option<&str>| {
            let mut e = ex(seq, "/me", body);
            e.scope = scope.map(String::from);
            e
        };
        let idx = Index::new(
            vec![
                scoped(1, "a1", Some("test_a")),
                scoped(2, "b1", Some("test_b")),
                scoped(3, "a2", Some("test_a")),
                scoped(4, "u1", None),
            ],
            &m,
        );
        let k = Key::of(&m.fingerprint(&ex(0, "/me", "").request));
        let take = |scope| {
            let (l, _) = idx.next_in_scope(k, None, scope).unwrap();
            String::from_utf8(l.unwrap().prepared.body.to_vec()).unwrap()
        };
        assert!(idx.has_scopes());
        assert_eq!(idx.unused_in("test_a").len(), 2);
        // Run in the reverse of the recorded order: each test still gets its own answers.
        assert_eq!(take(Some("test_b")), "b1");
        assert_eq!(idx.peek_in_scope(k, None, Some("test_a")).unwrap().exchange.response.body.bytes, "a1");
        assert_eq!(take(Some("test_a")), "a1");
        assert_eq!(take(Some("test_a")), "a2");
        assert!(idx.unused_in("test_a").is_empty());
        // Past its own: the unscoped recording, then its own last repeats.
        assert_eq!(take(Some("test_a")), "u1");
        assert_eq!(take(Some("test_a")), "a2");
        assert_eq!(take(Some("test_b")), "b1", "the unscoped one was taken; test_b repeats its last");
        // A scope that recorded nothing, and no scope at all: the key's shared FIFO.
        assert_eq!(take(Some("test_new")), "a1");
        assert_eq!(take(None), "b1");
        // Starting test_a again gives its recordings again, and only its.
        idx.rewind_scope("test_a");
        assert_eq!(idx.unused_in("test_a").len(), 2);
        assert_eq!(take(Some("test_a")), "a1");
        assert_eq!(take(Some("test_b")), "b1");
        assert_eq!(idx.head(0).scope, Some("test_a"));
        assert_eq!(idx.head(3).scope, None);
    }
}
