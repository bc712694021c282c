//! The journal: how each request was answered, the most recent entries in a bounded ring, shared
//! by the HTTP and WebSocket sides (it sits below both). And who made a request, as a key.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How one request was answered, as the journal reports it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JournalEntry {
    /// Order of arrival.
    pub seq: u64,
    /// Method.
    pub method: String,
    /// Host.
    pub host: String,
    /// Path.
    pub path: String,
    /// Status answered.
    pub status: u16,
    /// `hit`, `miss`, `upstream`, or `callvcr` for callvcr's own refusals (oversized, not intercepted).
    pub answered_by: String,
    /// What else is worth knowing: `passthrough` (forwarded, not recorded), `upstream-error:<kind>`,
    /// `request-too-large`, `bad-request`, `not-intercepted`, `cassette-write-failed`, `websocket-replay-unsupported`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The test scope the request was made in, if any (see `crate::scope`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// When it was answered, on the virtual clock (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// The journal: the most recent answers, shared by the HTTP and WebSocket sides.
#[derive(Debug, Default)]
pub struct Journal {
    /// One ring per thread shard (see `crate::sharded`): threads noting answers at once do not
    /// wait on one lock; the entries are merged by sequence number when read.
    rings: crate::sharded::PerThread<Mutex<Ring>>,
    /// The last sequence number handed out: entries from every shard merge in arrival order by it.
    seq: AtomicU64,
    /// The open test scope and what each scope saw; noted with each entry made in one.
    pub scopes: crate::scope::Book,
    /// The virtual clock entries are timed by (none: untimed).
    clock: Option<Arc<crate::clock::Clock>>,
    /// Pages watching live (the inspector's event stream).
    pub live: Arc<Live>,
}

/// What the inspector's event stream carries: each event a server-sent event's text, made only
/// while someone watches (the hit path pays one atomic read otherwise).
#[derive(Debug)]
pub struct Live {
    /// Open streams.
    watchers: AtomicUsize,
    /// Events as `event: NAME\ndata: JSON\n\n`.
    tx: tokio::sync::broadcast::Sender<Arc<str>>,
}

impl Default for Live {
    fn default() -> Live {
        Live { watchers: AtomicUsize::new(0), tx: tokio::sync::broadcast::channel(LIVE_BACKLOG).0 }
    }
}

/// Events a slow page may fall behind by before it is told it missed some.
const LIVE_BACKLOG: usize = 4096;

/// One page's subscription to [`Live`]; counted while it lives.
pub struct Watch {
    live: Arc<Live>,
    /// The events, in order.
    pub rx: tokio::sync::broadcast::Receiver<Arc<str>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.live.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Live {
    /// Whether any page watches.
    pub fn watched(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    /// Starts watching.
    pub fn watch(self: &Arc<Self>) -> Watch {
        self.watchers.fetch_add(1, Ordering::AcqRel);
        Watch { live: self.clone(), rx: self.tx.subscribe() }
    }

    /// Sends `event` with `data` to every page watching (nothing when none does).
    pub fn publish(&self, event: &str, data: &serde_json::Value) {
        if self.watched() {
            let _ = self.tx.send(Arc::from(sse(event, data)));
        }
    }
}

/// A server-sent event's text.
pub fn sse(event: &str, data: &serde_json::Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

/// Bytes of an entry's texts kept in its slot; longer entries keep them on the heap.
const INLINE: usize = 176;

/// One journal entry as kept: method, host, path, answered-by, scope and detail one after another in the
/// slot itself. Noting an answer only writes its slot (no read of what the slot held before, no
/// allocation), so a busy replay does not wait on memory the journal last touched long ago.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The entry's sequence number.
    seq: u64,
    /// When, on the virtual clock (ms since the epoch; 0 untimed).
    at_ms: i64,
    /// Status answered.
    status: u16,
    /// Where method, host, path, answered-by and scope end in the text.
    ends: [u16; 5],
    /// Length of the whole text; `u16::MAX` when it lives on the heap.
    len: u16,
    /// Whether a detail follows answered-by in the text (an empty detail differs from none).
    detail: bool,
    /// The texts, when they fit.
    inline: [u8; INLINE],
}

/// The most recent [`JOURNAL_CAP`] slots, oldest overwritten first.
#[derive(Debug, Default)]
struct Ring {
    /// Grows to [`JOURNAL_CAP`], then is overwritten in place.
    slots: Vec<Slot>,
    /// Texts too long for their slot, by slot.
    long: std::collections::HashMap<usize, (String, [usize; 5])>,
    /// The slot written next.
    next: usize,
}

impl Ring {
    /// Writes one entry over the oldest slot: its texts inline when they fit, else on the heap.
    fn push(&mut self, (seq, at_ms): (u64, i64), status: u16, parts: [&str; 5], detail: Option<&str>) {
        let total: usize = parts.iter().map(|p| p.len()).sum::<usize>() + detail.map_or(0, str::len);
        let mut slot = Slot { seq, at_ms, status, ends: [0; 5], len: 0, detail: detail.is_some(), inline: [0; INLINE] };
        let at = self.next;
        if total <= INLINE {
            let mut n = 0;
            for (i, p) in parts.iter().enumerate() {
                slot.inline[n..n + p.len()].copy_from_slice(p.as_bytes());
                n += p.len();
                slot.ends[i] = n as u16;
            }
            let d = detail.unwrap_or("");
            slot.inline[n..n + d.len()].copy_from_slice(d.as_bytes());
            slot.len = (n + d.len()) as u16;
            if !self.long.is_empty() {
                self.long.remove(&at);
            }
        } else {
            let mut text = String::with_capacity(total);
            let mut ends = [0; 5];
            for (i, p) in parts.iter().enumerate() {
                text.push_str(p);
                ends[i] = text.len();
            }
            text.push_str(detail.unwrap_or(""));
            slot.len = u16::MAX;
            self.long.insert(at, (text, ends));
        }
        if at == self.slots.len() {
            self.slots.push(slot);
        } else {
            self.slots[at] = slot;
        }
        self.next = (at + 1) % JOURNAL_CAP;
    }

    /// The entry in slot `at`, as the journal reports it.
    fn entry(&self, at: usize) -> JournalEntry {
        let s = &self.slots[at];
        let (text, ends): (&str, [usize; 5]) = match self.long.get(&at) {
            Some((t, e)) if s.len == u16::MAX => (t.as_str(), *e),
            _ => (std::str::from_utf8(&s.inline[..s.len as usize]).unwrap_or(""), s.ends.map(usize::from)),
        };
        let [a, b, c, d, e] = ends;
        let part = |from: usize, to: usize| text.get(from..to).unwrap_or("").to_string();
        JournalEntry {
            seq: s.seq,
            method: part(0, a),
            host: part(a, b),
            path: part(b, c),
            status: s.status,
            answered_by: part(c, d),
            scope: (e > d).then(|| part(d, e)),
            detail: s.detail.then(|| part(e, text.len())),
            at: (s.at_ms != 0).then(|| crate::clock::rfc3339_ms(s.at_ms)),
        }
    }
}

impl Journal {
    /// The time entries are noted at (ms since the epoch, virtual; 0 untimed).
    pub fn now_ms(&self) -> i64 {
        self.clock.as_ref().map_or(0, |c| c.now_ms())
    }

    /// A journal whose entries are timed on `clock`.
    pub fn timed(clock: Arc<crate::clock::Clock>) -> Journal {
        Journal { clock: Some(clock), ..Journal::default() }
    }

    /// Notes one answer, in the scope of the request the current task serves (counted there too);
    /// returns its sequence number. A page watching gets the entry at once.
    pub fn note(
        &self,
        method: &str,
        host: &str,
        path: &str,
        status: u16,
        answered_by: &str,
        detail: Option<&str>,
    ) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let at_ms = self.now_ms();
        let scope = crate::scope::current();
        if let Some(s) = &scope {
            self.scopes.count(s, answered_by);
        }
        {
            let mut ring = self.rings.mine().lock().unwrap_or_else(|e| e.into_inner());
            ring.push((seq, at_ms), status, [method, host, path, answered_by, scope.as_deref().unwrap_or("")], detail);
        }
        if self.live.watched() {
            let entry = JournalEntry {
                seq,
                method: method.into(),
                host: host.into(),
                path: path.into(),
                status,
                answered_by: answered_by.into(),
                detail: detail.map(String::from),
                scope: scope.map(|s| s.to_string()),
                at: (at_ms != 0).then(|| crate::clock::rfc3339_ms(at_ms)),
            };
            self.live.publish("journal", &serde_json::to_value(&entry).unwrap_or_default());
            // What the answer changed besides: tokens issued or refused, a fault rule used.
            if answered_by == "overlay:auth" {
                self.live.publish("tokens", &serde_json::json!({"seq": seq, "detail": detail}));
            } else if answered_by.starts_with("fault:") {
                self.live.publish("faults", &serde_json::json!({"seq": seq, "detail": detail}));
            }
        }
        seq
    }

    /// A copy of the last [`JOURNAL_CAP`] entries, oldest first.
    pub fn entries(&self) -> Vec<JournalEntry> {
        let mut out = Vec::new();
        for r in self.rings.all() {
            let ring = r.lock().unwrap_or_else(|e| e.into_inner());
            let n = ring.slots.len();
            let first = if n < JOURNAL_CAP { 0 } else { ring.next };
            out.extend((0..n).map(|k| ring.entry((first + k) % n.max(1))));
        }
        out.sort_by_key(|e| e.seq);
        let extra = out.len().saturating_sub(JOURNAL_CAP);
        out.drain(..extra);
        out
    }

    /// Empties it, and forgets the scopes.
    pub fn clear(&self) {
        for r in self.rings.all() {
            *r.lock().unwrap_or_else(|e| e.into_inner()) = Ring::default();
        }
        self.seq.store(0, Ordering::SeqCst);
        self.scopes.clear();
    }
}

/// The journal keeps the most recent entries only, so a long replay does not grow without bound.
pub const JOURNAL_CAP: usize = 10_000;

/// Who made a request, for anchoring frames: the bearer token's hash, or empty (anyone).
pub fn client_key(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| format!("{:016x}", crate::encoding::fnv1a(v.trim().as_bytes())))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_keeps_the_last_entries_short_and_long() {
        let j = Journal::default();
        let long = format!("/api/v2/{}", "x".repeat(300));
        for i in 0..JOURNAL_CAP + 5 {
            let path = if i % 1000 == 7 { long.clone() } else { format!("/api/v2/users/{i}") };
            let detail = (i % 2 == 0).then(|| format!("d{i}"));
            j.note("GET", "api.mypurecloud.com", &path, 200, "hit", detail.as_deref());
        }
        let e = j.entries();
        assert_eq!(e.len(), JOURNAL_CAP);
        assert_eq!((e[0].seq, e[JOURNAL_CAP - 1].seq), (6, JOURNAL_CAP as u64 + 5));
        assert_eq!((e[0].path.as_str(), e[0].detail.as_deref()), ("/api/v2/users/5", None));
        let last = &e[JOURNAL_CAP - 1];
        assert_eq!((last.method.as_str(), last.host.as_str()), ("GET", "api.mypurecloud.com"));
        assert_eq!((last.path.as_str(), last.answered_by.as_str()), ("/api/v2/users/10004", "hit"));
        assert_eq!(last.detail.as_deref(), Some("d10004"));
        let l = e.iter().find(|x| x.seq == 1008).unwrap();
        assert_eq!((l.path.as_str(), l.detail.as_deref()), (long.as_str(), None));
        j.clear();
        j.note("POST", "h", "/p", 500, "miss", Some("why"));
        let e = j.entries();
        assert_eq!((e.len(), e[0].seq, e[0].detail.as_deref()), (1, 1, Some("why")));
    }
}
