//! The head table of a cassette's index: one fixed-size little-endian record per exchange (key,
//! sequence number, where its bytes are, status, flags, and its method, host, path, query, SDK
//! version and scope in a shared string table). The same bytes in memory as in a replay file, so
//! an index over a million exchanges is read, not rebuilt.

use std::collections::HashMap;

use super::fingerprint::Key;
use super::model::Exchange;

/// Bytes per head in [`Heads`].
pub(crate) const HEAD_BYTES: usize = 88;

/// Head flag: the request has a body.
pub const REQ_BODY: u16 = 1;
/// Head flag: the request body mentions `"state"`.
pub const REQ_STATE: u16 = 2;
/// Head flag: the response body mentions `"state"`.
pub const RESP_STATE: u16 = 4;
/// Head flag: the request has a query, so the query text is read (an empty query and none differ).
const HAS_QUERY: u16 = 8;
/// Head flag: the exchange names the SDK version its request announced.
const HAS_SDK: u16 = 16;
/// Head flag: the exchange was recorded in a test scope.
const HAS_SCOPE: u16 = 32;

/// What the index knows of one exchange without reading it.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// Position in recorded order.
    pub pos: usize,
    /// Fingerprint key under the index's matcher.
    pub key: Key,
    /// Sequence number.
    pub seq: u64,
    /// Status of the response.
    pub status: u16,
    /// [`REQ_BODY`], [`REQ_STATE`], [`RESP_STATE`].
    pub flags: u16,
    /// Request method.
    pub method: &'a str,
    /// Request host (with `:port` when not the default).
    pub host: &'a str,
    /// Request path.
    pub path: &'a str,
    /// Request query, without `?`.
    pub query: Option<&'a str>,
    /// The SDK version the request announced.
    pub sdk: Option<&'a str>,
    /// The test scope it was recorded in.
    pub scope: Option<&'a str>,
    /// Where the exchange's bytes start in the replay file's data section (0 in memory).
    pub(super) off: u64,
    /// How many bytes the exchange takes there (0 in memory).
    pub(super) len: u32,
}

impl Head<'_> {
    /// `METHOD host/path?query`.
    pub fn describe(&self) -> String {
        describe_parts(self.method, self.host, self.path, self.query)
    }
}

/// Heads of every exchange in recorded order, as fixed-size little-endian records plus one string
/// table: the same bytes in memory as in a replay file.
#[derive(Debug, Default)]
pub(crate) struct Heads {
    /// [`HEAD_BYTES`] per exchange: key (16), seq (8), offset (8), length (4), status (2), flags (2), then
    /// (offset, length) pairs into `strings` for method, host, path, query, SDK version and scope.
    pub(crate) recs: Vec<u8>,
    /// The texts the records point into, UTF-8, laid end to end.
    pub(crate) strings: Vec<u8>,
}

/// The little-endian `u64` at `at`; panics past the end, so callers bound `at` by the record size.
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The little-endian `u32` at `at`.
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// The little-endian `u16` at `at`.
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

impl Heads {
    /// How many heads there are.
    pub(crate) fn len(&self) -> usize {
        self.recs.len() / HEAD_BYTES
    }

    /// The fingerprint key of the head at `pos`, read without building a [`Head`] (sorting and
    /// searching read only this).
    pub(super) fn key(&self, pos: usize) -> u128 {
        let at = pos * HEAD_BYTES;
        (u128::from(u64_at(&self.recs, at)) << 64) | u128::from(u64_at(&self.recs, at + 8))
    }

    /// The sequence number of the head at `pos`.
    pub(super) fn seq(&self, pos: usize) -> u64 {
        u64_at(&self.recs, pos * HEAD_BYTES + 16)
    }

    /// The string whose (offset, length) pair sits at `at` in `rec`; empty when the pair points outside the
    /// table or at invalid UTF-8 ([`Heads::check`] refuses such a file before replay reads it).
    fn text(&self, rec: &[u8], at: usize) -> &str {
        let (off, len) = (u32_at(rec, at) as usize, u32_at(rec, at + 4) as usize);
        self.strings.get(off..off + len).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
    }

    /// The head at `pos`, decoded from its record.
    pub(super) fn get(&self, pos: usize) -> Head<'_> {
        let rec = &self.recs[pos * HEAD_BYTES..(pos + 1) * HEAD_BYTES];
        let flags = u16_at(rec, 38);
        Head {
            pos,
            key: Key::from_u128(self.key(pos)),
            seq: u64_at(rec, 16),
            off: u64_at(rec, 24),
            len: u32_at(rec, 32),
            status: u16_at(rec, 36),
            flags,
            method: self.text(rec, 40),
            host: self.text(rec, 48),
            path: self.text(rec, 56),
            query: (flags & HAS_QUERY != 0).then(|| self.text(rec, 64)),
            sdk: (flags & HAS_SDK != 0).then(|| self.text(rec, 72)),
            scope: (flags & HAS_SCOPE != 0).then(|| self.text(rec, 80)),
        }
    }

    /// Whether `order` is sorted by key.
    pub(crate) fn sorted(&self, order: &[u32]) -> bool {
        order.windows(2).all(|w| self.key(w[0] as usize) <= self.key(w[1] as usize))
    }

    /// Checks what a replay file gave: every string inside the table and UTF-8, every exchange
    /// inside the data section (which ends at `data_end`), sequence numbers in order.
    pub(crate) fn check(&self, data_end: u64) -> Result<(), String> {
        if !self.recs.len().is_multiple_of(HEAD_BYTES) {
            return Err("the head table is cut short".into());
        }
        let mut last = None;
        for pos in 0..self.len() {
            let rec = &self.recs[pos * HEAD_BYTES..(pos + 1) * HEAD_BYTES];
            for at in [40, 48, 56, 64, 72, 80] {
                let (off, len) = (u32_at(rec, at) as usize, u32_at(rec, at + 4) as usize);
                match self.strings.get(off..off + len) {
                    Some(b) if std::str::from_utf8(b).is_ok() => {}
                    _ => return Err(format!("head {pos} names text outside the string table")),
                }
            }
            if u64_at(rec, 24).checked_add(u64::from(u32_at(rec, 32))).is_none_or(|e| e > data_end) {
                return Err(format!("head {pos} names bytes outside the data section"));
            }
            let seq = u64_at(rec, 16);
            if last.is_some_and(|l| l > seq) {
                return Err(format!("head {pos}: sequence numbers out of order"));
            }
            last = Some(seq);
        }
        Ok(())
    }
}

/// Builds [`Heads`], sharing repeated methods, hosts, SDK versions and scopes in the string table.
#[derive(Default)]
pub(crate) struct HeadsBuilder {
    /// What has been built so far.
    heads: Heads,
    /// Texts already in the string table, for the columns that repeat (method, host, SDK version, scope).
    shared: HashMap<String, (u32, u32)>,
}

/// Which flags an exchange gets.
pub(crate) fn flags_of(e: &Exchange) -> u16 {
    let has = |b: &[u8]| b.windows(7).any(|w| w == b"\"state\"");
    let mut f = 0;
    if !e.request.body.bytes.is_empty() {
        f |= REQ_BODY;
    }
    if has(&e.request.body.bytes) {
        f |= REQ_STATE;
    }
    if has(&e.response.body.bytes) {
        f |= RESP_STATE;
    }
    if e.request.query.is_some() {
        f |= HAS_QUERY;
    }
    if e.sdk.is_some() {
        f |= HAS_SDK;
    }
    if e.scope.is_some() {
        f |= HAS_SCOPE;
    }
    f
}

impl HeadsBuilder {
    /// Puts `s` in the string table (once, when `share`) and gives its (offset, length). Paths and queries
    /// are not shared: they rarely repeat and the map would cost more than it saves.
    fn text(&mut self, s: &str, share: bool) -> Result<(u32, u32), String> {
        if share {
            if let Some(r) = self.shared.get(s) {
                return Ok(*r);
            }
        }
        let off = u32::try_from(self.heads.strings.len()).map_err(|_| "more than 4 GiB of paths".to_string())?;
        let len = u32::try_from(s.len()).map_err(|_| "a path longer than 4 GiB".to_string())?;
        self.heads.strings.extend_from_slice(s.as_bytes());
        if share {
            self.shared.insert(s.to_string(), (off, len));
        }
        Ok((off, len))
    }

    /// Adds the head of `e`, whose bytes lie at `off`, `len` in the data section (0, 0 in memory).
    pub(crate) fn push(&mut self, e: &Exchange, key: Key, off: u64, len: u32) -> Result<(), String> {
        let refs = [
            self.text(&e.request.method, true)?,
            self.text(&e.request.host, true)?,
            self.text(&e.request.path, false)?,
            self.text(e.request.query.as_deref().unwrap_or(""), false)?,
            self.text(e.sdk.as_deref().unwrap_or(""), true)?,
            self.text(e.scope.as_deref().unwrap_or(""), true)?,
        ];
        let r = &mut self.heads.recs;
        let k = key.to_u128();
        r.extend_from_slice(&((k >> 64) as u64).to_le_bytes());
        r.extend_from_slice(&(k as u64).to_le_bytes());
        r.extend_from_slice(&e.seq.to_le_bytes());
        r.extend_from_slice(&off.to_le_bytes());
        r.extend_from_slice(&len.to_le_bytes());
        r.extend_from_slice(&e.response.status.to_le_bytes());
        r.extend_from_slice(&flags_of(e).to_le_bytes());
        for (o, l) in refs {
            r.extend_from_slice(&o.to_le_bytes());
            r.extend_from_slice(&l.to_le_bytes());
        }
        Ok(())
    }

    /// The heads built.
    pub(crate) fn finish(self) -> Heads {
        self.heads
    }
}

/// Positions sorted by key, then recorded order: the runs of one key are its FIFO.
pub(crate) fn key_order(heads: &Heads) -> Vec<u32> {
    let mut order: Vec<u32> = (0..heads.len() as u32).collect();
    order.sort_by_key(|&p| heads.key(p as usize));
    order
}

/// `METHOD host/path?query` from its parts.
pub(crate) fn describe_parts(method: &str, host: &str, path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{method} {host}{path}?{q}"),
        None => format!("{method} {host}{path}"),
    }
}
