//! The replay file: a cassette laid out for replay, written beside its sled store (`replay.bin`)
//! when the cassette is imported or first replayed, and removed by the store before the store
//! changes. It holds the exchanges as the store keeps them (JSON, one after another), the WebSocket
//! frames, the index's head table and key order, and the results of analyses that need the whole
//! cassette. Replay reads the heads and reads an exchange on its first hit, so start-up and memory
//! do not grow with the bodies. It knows nothing of sled or sockets.
//!
//! Layout: data | frames (JSON) | analyses (JSON) | heads | strings | key order (u32 LE) | trailer.
//! The trailer (fixed size, at the end) gives the sections' places, the matcher identity the keys
//! were made under, and a CRC-32 of everything after the data (each exchange is checked as it is
//! read: it must parse and carry the sequence number its head names).

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::error::CassetteError;
use super::fingerprint::{Key, Matcher};
use super::index::{key_order, Heads, HeadsBuilder, Index, Source, HEAD_BYTES};
use super::model::{Exchange, Frame};

/// The replay file's name inside a cassette's directory.
pub const FILE_NAME: &str = "replay.bin";
/// First bytes of the trailer: a file without them is not a replay file.
const MAGIC: &[u8; 8] = b"CVRPLAY1";
/// Layout version; bump it when the layout changes, so older files are rebuilt rather than misread
/// (3: learned path templates name an id after the last resource before it, not another id).
const VERSION: u32 = 3;
/// Trailer size: magic, version, a reserved `u32`, matcher identity, head count, four (offset, length)
/// section places, the key order's offset, the CRC-32 and a reserved `u32`.
const TRAILER: usize = 8 + 4 + 4 + 8 * 11 + 4 + 4;
/// Exchanges parsed at once while writing (bounds the writer's memory).
const CHUNK: usize = 8192;

/// Work that needs every exchange of a cassette once, in recorded order (learning state machines,
/// for one); its result is kept in the replay file so replay need not read every exchange.
pub trait Analysis: Send {
    /// The name its result is kept under.
    fn name(&self) -> &'static str;
    /// Sees one exchange (in recorded order).
    fn observe(&mut self, e: &Exchange);
    /// The result.
    fn finish(self: Box<Self>) -> serde_json::Value;
}

/// Why a replay file was not used.
#[derive(Debug)]
pub enum Unusable {
    /// There is none.
    Missing,
    /// It was made under other settings, by another version, or is damaged; the text says which.
    Stale(String),
}

/// Writes the replay file into `dir` from `records` (sequence number and stored JSON, in recorded
/// order) and `frames`, keys made by `matcher`; `analyses` see every exchange. Written to a
/// temporary file, synced, then renamed into place.
pub fn write<B: AsRef<[u8]> + Send + Sync>(
    dir: &Path,
    records: impl Iterator<Item = Result<(u64, B), CassetteError>>,
    frames: &[Frame],
    matcher: &Matcher,
    mut analyses: Vec<Box<dyn Analysis>>,
) -> Result<(), CassetteError> {
    let path = dir.join(FILE_NAME);
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let io = |e: std::io::Error| CassetteError::Io { path: path.clone(), detail: e.to_string() };
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).map_err(io)?);
    let mut heads = HeadsBuilder::default();
    let mut off = 0u64;
    let mut chunk: Vec<(u64, B)> = Vec::with_capacity(CHUNK);
    let mut records = records.peekable();
    while records.peek().is_some() {
        chunk.clear();
        while chunk.len() < CHUNK {
            match records.next() {
                Some(r) => chunk.push(r?),
                None => break,
            }
        }
        let parsed = super::par_map(&chunk, |(seq, raw)| {
            let e: Exchange = serde_json::from_slice(raw.as_ref()).map_err(|e| CassetteError::Corrupt {
                path: dir.to_path_buf(),
                detail: format!("exchange {seq} does not parse: {e}"),
            })?;
            let key = Key::of(&matcher.fingerprint(&e.request));
            Ok::<_, CassetteError>((e, key))
        });
        for ((_, raw), parsed) in chunk.iter().zip(parsed) {
            let (e, key) = parsed?;
            for a in analyses.iter_mut() {
                a.observe(&e);
            }
            let raw = raw.as_ref();
            let len = u32::try_from(raw.len()).map_err(|_| CassetteError::Io {
                path: path.clone(),
                detail: format!("exchange {} is larger than 4 GiB", e.seq),
            })?;
            heads.push(&e, key, off, len).map_err(|detail| CassetteError::Io { path: path.clone(), detail })?;
            out.write_all(raw).map_err(io)?;
            off += u64::from(len);
        }
    }
    let heads = heads.finish();
    let order = key_order(&heads);
    let results: BTreeMap<&str, serde_json::Value> = analyses.into_iter().map(|a| (a.name(), a.finish())).collect();
    let json = |e: serde_json::Error| CassetteError::Io { path: path.clone(), detail: e.to_string() };
    let sections: [Vec<u8>; 5] = [
        serde_json::to_vec(frames).map_err(json)?,
        serde_json::to_vec(&results).map_err(json)?,
        heads.recs,
        heads.strings,
        order.iter().flat_map(|p| p.to_le_bytes()).collect(),
    ];
    let mut crc = crc32fast::Hasher::new();
    let mut places = Vec::new();
    let mut at = off;
    for s in &sections {
        places.push((at, s.len() as u64));
        crc.update(s);
        out.write_all(s).map_err(io)?;
        at += s.len() as u64;
    }
    let mut t = Vec::with_capacity(TRAILER);
    t.extend_from_slice(MAGIC);
    t.extend_from_slice(&VERSION.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(&matcher.identity().to_le_bytes());
    t.extend_from_slice(&(heads_len(&places) as u64).to_le_bytes());
    for (o, l) in &places[..4] {
        t.extend_from_slice(&o.to_le_bytes());
        t.extend_from_slice(&l.to_le_bytes());
    }
    t.extend_from_slice(&places[4].0.to_le_bytes());
    t.extend_from_slice(&crc.finalize().to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    out.write_all(&t).map_err(io)?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// How many heads the head-table section (the third in `places`) holds.
fn heads_len(places: &[(u64, u64)]) -> usize {
    places[2].1 as usize / HEAD_BYTES
}

/// Gives `file` (a whole replay file's bytes) the checksum its sections now have, when its trailer
/// can be read. For the fuzz target: a file changed on purpose passes the checksum, so the checks
/// behind it are the ones exercised.
pub fn reseal(file: &mut [u8]) {
    let Some(at) = file.len().checked_sub(TRAILER) else { return };
    let from = {
        let mut a = [0u8; 8];
        a.copy_from_slice(&file[at + 32..at + 40]);
        u64::from_le_bytes(a)
    };
    let Some(region) = usize::try_from(from).ok().and_then(|f| file.get(f..at)) else { return };
    let crc = crc32fast::hash(region);
    let crc_at = at + 16 + 8 * 11;
    file[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Opens the replay file in `dir` as an index under `matcher`, with the cassette's frames.
pub fn open(dir: &Path, matcher: &Matcher) -> Result<(Index, Vec<Frame>), Unusable> {
    use std::os::unix::fs::FileExt;
    let path: PathBuf = dir.join(FILE_NAME);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
        Err(e) => return Err(Unusable::Stale(format!("cannot open it: {e}"))),
    };
    let stale = |s: &str| Unusable::Stale(s.to_string());
    let size = file.metadata().map_err(|e| Unusable::Stale(e.to_string()))?.len();
    if size < TRAILER as u64 {
        return Err(stale("it is cut short"));
    }
    let mut t = [0u8; TRAILER];
    file.read_exact_at(&mut t, size - TRAILER as u64).map_err(|e| Unusable::Stale(e.to_string()))?;
    let word = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&t[16 + 8 * i..24 + 8 * i]);
        u64::from_le_bytes(a)
    };
    if &t[..8] != MAGIC {
        return Err(stale("it is not a callvcr replay file"));
    }
    if u32::from_le_bytes([t[8], t[9], t[10], t[11]]) != VERSION || t[12..16] != [0; 4] || t[TRAILER - 4..] != [0; 4] {
        return Err(stale("another callvcr version wrote it"));
    }
    if word(0) != matcher.identity() {
        return Err(stale("it was made under other matching or redaction settings, or by another callvcr build"));
    }
    let n = word(1);
    let crc_at = 16 + 8 * 11;
    let crc = u32::from_le_bytes([t[crc_at], t[crc_at + 1], t[crc_at + 2], t[crc_at + 3]]);
    // Sections: frames, analyses, heads, strings (offset, length), then the order (offset).
    let mut places: Vec<(u64, u64)> = (0..4).map(|i| (word(2 + 2 * i), word(3 + 2 * i))).collect();
    places.push((word(10), n.checked_mul(4).ok_or_else(|| stale("its sizes do not add up"))?));
    let end = size - TRAILER as u64;
    let data_end = places[0].0;
    let mut at = data_end;
    for (o, l) in &places {
        if *o != at || o.checked_add(*l).is_none_or(|e| e > end) {
            return Err(stale("its sections do not add up"));
        }
        at = o + l;
    }
    if at != end || places[2].1 != n.saturating_mul(HEAD_BYTES as u64) {
        return Err(stale("its sections do not add up"));
    }
    let mut crc_check = crc32fast::Hasher::new();
    let mut read = |(o, l): (u64, u64)| -> Result<Vec<u8>, Unusable> {
        let mut v = vec![0u8; l as usize];
        file.read_exact_at(&mut v, o).map_err(|e| Unusable::Stale(e.to_string()))?;
        crc_check.update(&v);
        Ok(v)
    };
    let frames = read(places[0])?;
    let analyses = read(places[1])?;
    let recs = read(places[2])?;
    let strings = read(places[3])?;
    let order = read(places[4])?;
    if crc_check.finalize() != crc {
        return Err(stale("it is damaged (checksum)"));
    }
    let frames: Vec<Frame> =
        serde_json::from_slice(&frames).map_err(|e| Unusable::Stale(format!("its frames do not parse: {e}")))?;
    let analyses: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&analyses).map_err(|e| Unusable::Stale(format!("its analyses do not parse: {e}")))?;
    let heads = Heads { recs, strings };
    heads.check(data_end).map_err(Unusable::Stale)?;
    let order: Vec<u32> = order.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    if order.iter().any(|&p| u64::from(p) >= n) || !heads.sorted(&order) {
        return Err(stale("its key order is wrong"));
    }
    let source = Source::File { file, path };
    Ok((Index::from_parts(heads, order, source, matcher, analyses), frames))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassette::model::test_exchange;
    use crate::cassette::{Anchor, Body, Dir, FrameKind, Redactor};
    use crate::config::{MatchConfig, RedactConfig};

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("callvcr-replayfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn matcher(cfg: MatchConfig) -> Matcher {
        Matcher::new(&cfg, Redactor::new(&RedactConfig::default()))
    }

    fn cassette() -> (Vec<Exchange>, Vec<Frame>) {
        let mut ex = vec![
            test_exchange(1, "GET", "/api/v2/users/me", None, "", 200, r#"{"id":"u1"}"#),
            test_exchange(2, "POST", "/api/v2/queues", Some("a=1&b=2"), r#"{"name":"q"}"#, 201, r#"{"id":"q1"}"#),
            test_exchange(4, "GET", "/api/v2/users/me", None, "", 200, r#"{"id":"u2"}"#),
            test_exchange(7, "GET", "/api/v2/users/me", None, "", 200, r#"{"id":"u3"}"#),
        ];
        ex[2].sdk = Some("purecloud-sdk/1.0".into());
        ex[3].sdk = Some("purecloud-sdk/2.0".into());
        let frame = Frame {
            session: 2,
            n: 0,
            dir: Dir::Server,
            at_ms: 5,
            kind: FrameKind::Text,
            data: Body { bytes: bytes::Bytes::from_static(b"{\"topicName\":\"x\"}"), encoding: None },
            close_code: None,
            close_reason: None,
            after: Some(Anchor::Rest(1)),
        };
        (ex, vec![frame])
    }

    fn write_from(dir: &Path, ex: &[Exchange], frames: &[Frame], m: &Matcher) {
        let records = ex.iter().map(|e| Ok((e.seq, serde_json::to_vec(e).unwrap())));
        write(dir, records, frames, m, Vec::new()).unwrap();
    }

    fn body(r: Option<Result<&super::super::index::Loaded, CassetteError>>) -> String {
        String::from_utf8(r.unwrap().unwrap().prepared.body.to_vec()).unwrap()
    }

    #[test]
    fn a_replay_file_answers_as_the_cassette_in_memory_does() {
        let dir = scratch("same");
        let m = matcher(MatchConfig::default());
        let (ex, frames) = cassette();
        write_from(&dir, &ex, &frames, &m);
        let (file, got_frames) = open(&dir, &m).unwrap();
        let memory = Index::new(ex.clone(), &m);
        assert_eq!(got_frames, frames);
        assert_eq!(file.len(), 4);
        for (a, b) in file.heads().zip(memory.heads()) {
            assert_eq!(
                (a.key, a.seq, a.status, a.flags, a.method, a.host, a.path, a.query, a.sdk),
                (b.key, b.seq, b.status, b.flags, b.method, b.host, b.path, b.query, b.sdk)
            );
        }
        let me = m.fingerprint(&ex[0].request);
        // FIFO per key, the last repeating; the SDK version picks its own recording.
        for idx in [&file, &memory] {
            assert_eq!(body(idx.next(&me)), r#"{"id":"u1"}"#);
            assert_eq!(body(idx.next_by_key(Key::of(&me), Some("purecloud-sdk/2.0"))), r#"{"id":"u3"}"#);
            assert_eq!(body(idx.next(&me)), r#"{"id":"u2"}"#);
            assert_eq!(body(idx.next(&me)), r#"{"id":"u3"}"#);
            assert_eq!(body(idx.next(&me)), r#"{"id":"u3"}"#);
            let post = m.fingerprint(&ex[1].request);
            assert_eq!(idx.next(&post).unwrap().unwrap().exchange.as_ref(), &ex[1]);
            assert!(idx.seq_served(2) && idx.seq_served(3) && idx.unused().is_empty());
            let near = idx
                .near_misses(&m.fingerprint(&test_exchange(0, "GET", "/api/v2/users/you", None, "", 0, "").request), 1);
            assert_eq!(near[0].recorded, "GET api.mypurecloud.com/api/v2/users/me");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_or_foreign_replay_file_is_not_used_and_a_damaged_exchange_is_an_error() {
        let dir = scratch("damaged");
        let m = matcher(MatchConfig::default());
        let (ex, frames) = cassette();
        assert!(matches!(open(&dir, &m), Err(Unusable::Missing)));
        write_from(&dir, &ex, &frames, &m);
        let path = dir.join(FILE_NAME);
        let good = std::fs::read(&path).unwrap();
        let stale = |why: &str| match open(&dir, &m) {
            Err(Unusable::Stale(w)) => assert!(w.contains(why), "{w}"),
            Err(Unusable::Missing) => panic!("missing"),
            Ok(_) => panic!("a bad replay file was used"),
        };
        // Other matching settings: keys made under them would not match.
        let other = matcher(MatchConfig { ignore_query: vec!["a".into()], ..MatchConfig::default() });
        assert!(matches!(open(&dir, &other), Err(Unusable::Stale(w)) if w.contains("settings")));
        // Every byte after the data section is checked: flip each in turn.
        let data_end = ex.iter().map(|e| serde_json::to_vec(e).unwrap().len()).sum::<usize>();
        for at in data_end..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x41;
            std::fs::write(&path, &bad).unwrap();
            assert!(open(&dir, &m).is_err(), "byte {at} of {} flipped and not noticed", good.len());
        }
        for cut in [0, 10, good.len() / 2, good.len() - 1] {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert!(open(&dir, &m).is_err(), "cut at {cut}");
        }
        std::fs::write(&path, [b'x'; 300]).unwrap();
        stale("not a callvcr replay file");
        // A damaged exchange in the data section shows when it is read: an error naming it.
        let mut bad = good.clone();
        bad[3] = b'#';
        std::fs::write(&path, &bad).unwrap();
        let (idx, _) = open(&dir, &m).unwrap();
        match idx.next(&m.fingerprint(&ex[0].request)) {
            Some(Err(e)) => assert!(e.to_string().contains("exchange 1 does not parse"), "{e}"),
            _ => panic!("a damaged exchange was served"),
        }
        assert_eq!(body(idx.next(&m.fingerprint(&ex[1].request))), r#"{"id":"q1"}"#, "the others still serve");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
