//! The sled-backed cassette store: one database per cassette, a format version key, exchanges
//! keyed by sequence number and flushed to disk before a write returns. Also reads and writes the
//! JSON Lines form. Knows nothing about sockets.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::model::{Cassette, Exchange, Frame};
use crate::lockfile::LockFile;

pub use super::error::{CassetteError, FORMAT_VERSION};

/// The tree holding the format version.
const META_TREE: &str = "meta";
/// The tree of exchanges, keyed by big-endian sequence number so sled's byte order is recorded order.
const EXCHANGES_TREE: &str = "exchanges";
/// The tree of WebSocket frames, keyed by big-endian (session, `n`): by session, then in order.
const FRAMES_TREE: &str = "frames";
/// The meta key of the format version; a store without it is refused as not a cassette.
const VERSION_KEY: &str = "format_version";
/// The id of the process that has the store open, so "in use" can name it (sled's lock does not).
const OWNER_FILE: &str = "callvcr.pid";
/// Locked (exclusively) by a process that writes the store: a recording, an import. A replay
/// writing the replay file holds it shared, so no writer starts meanwhile.
const WRITER_LOCK: &str = "writer.lock";
/// Locked (exclusively) by the one replay writing the replay file; the others wait on it.
const BUILD_LOCK: &str = "replay-file.lock";
/// How long a replay waits for another to finish writing the replay file, unless
/// `CALLVCR_LOCK_WAIT_MS` says otherwise.
const BUILD_WAIT_MS: u64 = 120_000;

/// An open sled cassette.
#[derive(Debug)]
pub struct Store {
    /// The cassette's directory.
    path: PathBuf,
    /// The database; flushed after every write.
    db: sled::Db,
    /// See [`EXCHANGES_TREE`].
    exchanges: sled::Tree,
    /// See [`FRAMES_TREE`].
    frames: sled::Tree,
    /// The sequence number the next recorded exchange gets: one past the highest stored.
    next_seq: AtomicU64,
    /// Whether the replay file was removed since it was last written (see [`Store::before_change`]).
    replay_file_gone: AtomicBool,
    /// The writer lock, for a store opened to be written ([`Store::open_writer`]).
    _writer: Option<LockFile>,
    /// Group commit: the thread exchanges and frames are written by, each batch sharing one
    /// flush; started by the first write.
    committer: std::sync::OnceLock<Result<super::commit::Committer, String>>,
}

/// The error for a store another process writes: a recording or import (named by its pid), or a
/// replay writing its replay file.
fn writer_busy(path: &Path) -> CassetteError {
    let build = path.join(BUILD_LOCK);
    if let Ok(l) = LockFile::open(&build) {
        if let Ok(false) = l.try_take(true, &build) {
            return CassetteError::InUse { path: path.to_path_buf(), pid: LockFile::holder(&build) };
        }
    }
    CassetteError::InUse { path: path.to_path_buf(), pid: LockFile::holder(&path.join(WRITER_LOCK)) }
}

impl Store {
    /// Opens the store at `path`; creates it when `create` is set, else it must exist.
    /// (Commands that only read it; sled's own lock refuses a second opener.)
    pub fn open(path: &Path, create: bool) -> Result<Store, CassetteError> {
        Store::open_locked(path, create, None)
    }

    /// Opens the store to write it (a recording, an import): holds the writer lock until dropped,
    /// and is refused at once, naming the holder, while another process records, imports or
    /// writes the replay file.
    pub fn open_writer(path: &Path, create: bool) -> Result<Store, CassetteError> {
        if !create && !exists(path) {
            return Err(CassetteError::Missing(path.to_path_buf()));
        }
        std::fs::create_dir_all(path)
            .map_err(|e| CassetteError::Io { path: path.to_path_buf(), detail: e.to_string() })?;
        let lock_path = path.join(WRITER_LOCK);
        let lock = LockFile::open(&lock_path)?;
        if !lock.try_take(true, &lock_path)? {
            return Err(writer_busy(path));
        }
        lock.note_holder();
        Store::open_locked(path, create, Some(lock))
    }

    /// Opens (or creates) the store with `writer` already taken. Refuses a store of a newer format and
    /// one with exchanges but no format version; stamps a new one with [`FORMAT_VERSION`].
    fn open_locked(path: &Path, create: bool, writer: Option<LockFile>) -> Result<Store, CassetteError> {
        if !create && !exists(path) {
            return Err(CassetteError::Missing(path.to_path_buf()));
        }
        let db = sled::Config::new().path(path).open().map_err(|e| open_error(path, e))?;
        let io = |e: sled::Error| CassetteError::Io { path: path.to_path_buf(), detail: e.to_string() };
        let meta = db.open_tree(META_TREE).map_err(io)?;
        let exchanges = db.open_tree(EXCHANGES_TREE).map_err(io)?;
        let frames = db.open_tree(FRAMES_TREE).map_err(io)?;
        match meta.get(VERSION_KEY).map_err(io)? {
            Some(v) => {
                let found = std::str::from_utf8(&v).ok().and_then(|s| s.parse::<u32>().ok()).ok_or_else(|| {
                    CassetteError::Corrupt { path: path.to_path_buf(), detail: "unreadable format version".into() }
                })?;
                if found > FORMAT_VERSION {
                    return Err(CassetteError::Newer { path: path.to_path_buf(), found });
                }
            }
            None if !create || !exchanges.is_empty() => {
                return Err(CassetteError::Corrupt {
                    path: path.to_path_buf(),
                    detail: "no format version (not a callvcr cassette?)".into(),
                });
            }
            None => {
                meta.insert(VERSION_KEY, FORMAT_VERSION.to_string().as_bytes()).map_err(io)?;
                db.flush().map_err(io)?;
            }
        }
        let next = exchanges.last().map_err(io)?.map(|(k, _)| seq_of(&k) + 1).unwrap_or(1);
        let _ = std::fs::write(path.join(OWNER_FILE), std::process::id().to_string());
        Ok(Store {
            path: path.to_path_buf(),
            db,
            exchanges,
            frames,
            next_seq: AtomicU64::new(next),
            replay_file_gone: AtomicBool::new(false),
            _writer: writer,
            committer: std::sync::OnceLock::new(),
        })
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An IO error naming this store.
    fn io(&self, e: impl std::fmt::Display) -> CassetteError {
        CassetteError::Io { path: self.path.clone(), detail: e.to_string() }
    }

    /// Before the first change: removes the replay file, so no replay reads one that no longer
    /// matches the store (a missing file is made again from the store).
    fn before_change(&self) -> Result<(), CassetteError> {
        if self.replay_file_gone.load(Ordering::Relaxed) {
            return Ok(());
        }
        match std::fs::remove_file(self.path.join(super::replayfile::FILE_NAME)) {
            Ok(()) => {
                if let Ok(d) = std::fs::File::open(&self.path) {
                    let _ = d.sync_all();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io(format!("cannot remove the old replay file: {e}"))),
        }
        self.replay_file_gone.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Writes the replay file from what the store holds (keys made by `matcher`).
    pub fn write_replay_file(
        &self,
        matcher: &super::Matcher,
        analyses: Vec<Box<dyn super::replayfile::Analysis>>,
    ) -> Result<(), CassetteError> {
        let frames = self.load_frames()?;
        let corrupt = |e: sled::Error| CassetteError::Corrupt { path: self.path.clone(), detail: e.to_string() };
        let records = self.exchanges.iter().map(|r| r.map(|(k, v)| (seq_of(&k), v)).map_err(corrupt));
        super::replayfile::write(&self.path, records, &frames, matcher, analyses)?;
        self.replay_file_gone.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Removes every exchange (a fresh recording replaces the old one).
    pub fn clear(&self) -> Result<(), CassetteError> {
        self.before_change()?;
        self.exchanges.clear().map_err(|e| self.io(e))?;
        self.frames.clear().map_err(|e| self.io(e))?;
        self.db.flush().map_err(|e| self.io(e))?;
        self.next_seq.store(1, Ordering::SeqCst);
        Ok(())
    }

    /// Removes the exchanges recorded in test scope `scope`, and the WebSocket frames of those
    /// that opened a session (a test recorded again replaces only its own); flushed before it
    /// returns. How many exchanges went.
    pub fn remove_scope(&self, scope: &str) -> Result<usize, CassetteError> {
        /// The one field read of each stored exchange.
        #[derive(serde::Deserialize)]
        struct ScopeOnly {
            /// See [`Exchange::scope`].
            #[serde(default)]
            scope: Option<String>,
        }
        let corrupt = |detail: String| CassetteError::Corrupt { path: self.path.clone(), detail };
        let mut gone = Vec::new();
        for item in self.exchanges.iter() {
            let (k, v) = item.map_err(|e| corrupt(e.to_string()))?;
            let s: ScopeOnly = serde_json::from_slice(&v)
                .map_err(|e| corrupt(format!("exchange {} does not parse: {e}", seq_of(&k))))?;
            if s.scope.as_deref() == Some(scope) {
                gone.push(k);
            }
        }
        if gone.is_empty() {
            return Ok(0);
        }
        self.before_change()?;
        let mut frames = sled::Batch::default();
        let mut exchanges = sled::Batch::default();
        for k in &gone {
            for f in self.frames.scan_prefix(k) {
                frames.remove(f.map_err(|e| corrupt(e.to_string()))?.0);
            }
            exchanges.remove(k.clone());
        }
        self.frames.apply_batch(frames).map_err(|e| self.io(e))?;
        self.exchanges.apply_batch(exchanges).map_err(|e| self.io(e))?;
        self.db.flush().map_err(|e| self.io(e))?;
        Ok(gone.len())
    }

    /// The next sequence number to use.
    pub fn allocate_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::SeqCst)
    }

    /// Hands `ex` to the store's writer thread; the answer comes once it is on disk (one flush
    /// covers every write queued meanwhile), or says why it is not.
    pub fn commit(&self, ex: &Exchange) -> tokio::sync::oneshot::Receiver<Result<(), CassetteError>> {
        let write = serde_json::to_vec(ex).map(|v| super::commit::Write::Exchange(ex.seq.to_be_bytes(), v));
        self.submit(write)
    }

    /// Queues `write` (or answers at once with why it cannot be written).
    fn submit(
        &self,
        write: Result<super::commit::Write, serde_json::Error>,
    ) -> tokio::sync::oneshot::Receiver<Result<(), CassetteError>> {
        let refused = |e: CassetteError| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(Err(e));
            rx
        };
        if let Err(e) = self.before_change() {
            return refused(e);
        }
        let write = match write {
            Ok(w) => w,
            Err(e) => return refused(self.io(e)),
        };
        let committer = self.committer.get_or_init(|| {
            let sink = SledSink {
                path: self.path.clone(),
                db: self.db.clone(),
                exchanges: self.exchanges.clone(),
                frames: self.frames.clone(),
            };
            super::commit::Committer::start(sink, &self.path)
                .map_err(|e| format!("cannot start the writer thread: {e}"))
        });
        match committer {
            Ok(c) => c.submit(write),
            Err(e) => refused(self.io(e)),
        }
    }

    /// Replaces the whole content with `c` (an import): written as one batch per tree, flushed once.
    pub fn replace_all(&self, c: &Cassette) -> Result<(), CassetteError> {
        self.clear()?;
        let mut batch = sled::Batch::default();
        for ex in &c.exchanges {
            batch.insert(&ex.seq.to_be_bytes(), serde_json::to_vec(ex).map_err(|e| self.io(e))?);
        }
        self.exchanges.apply_batch(batch).map_err(|e| self.io(e))?;
        let mut batch = sled::Batch::default();
        for f in &c.frames {
            let mut key = [0u8; 12];
            key[..8].copy_from_slice(&f.session.to_be_bytes());
            key[8..].copy_from_slice(&f.n.to_be_bytes());
            batch.insert(&key, serde_json::to_vec(f).map_err(|e| self.io(e))?);
        }
        self.frames.apply_batch(batch).map_err(|e| self.io(e))?;
        if let Some(max) = c.exchanges.iter().map(|e| e.seq).max() {
            self.next_seq.fetch_max(max + 1, Ordering::SeqCst);
        }
        self.db.flush().map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Hands frame `f` to the writer thread, as [`Store::commit`] does an exchange.
    pub fn commit_frame(&self, f: &Frame) -> tokio::sync::oneshot::Receiver<Result<(), CassetteError>> {
        let mut key = [0u8; 12];
        key[..8].copy_from_slice(&f.session.to_be_bytes());
        key[8..].copy_from_slice(&f.n.to_be_bytes());
        self.submit(serde_json::to_vec(f).map(|v| super::commit::Write::Frame(key, v)))
    }

    /// Every stored frame, by session and order.
    pub fn load_frames(&self) -> Result<Vec<Frame>, CassetteError> {
        let mut out = Vec::with_capacity(self.frames.len());
        for item in self.frames.iter() {
            let (_, v) = item.map_err(|e| CassetteError::Corrupt { path: self.path.clone(), detail: e.to_string() })?;
            out.push(serde_json::from_slice(&v).map_err(|e| CassetteError::Corrupt {
                path: self.path.clone(),
                detail: format!("a WebSocket frame does not parse: {e}"),
            })?);
        }
        Ok(out)
    }

    /// Exchanges and frames together.
    pub fn load_cassette(&self) -> Result<Cassette, CassetteError> {
        Ok(Cassette { exchanges: self.load_all()?, frames: self.load_frames()? })
    }

    /// Number of stored exchanges.
    pub fn len(&self) -> usize {
        self.exchanges.len()
    }

    /// Whether the store holds no exchange.
    pub fn is_empty(&self) -> bool {
        self.exchanges.is_empty()
    }

    /// Every stored exchange, in sequence order (parsed on every core: a large cassette loads faster).
    pub fn load_all(&self) -> Result<Vec<Exchange>, CassetteError> {
        let mut raw = Vec::with_capacity(self.exchanges.len());
        for item in self.exchanges.iter() {
            raw.push(item.map_err(|e| CassetteError::Corrupt { path: self.path.clone(), detail: e.to_string() })?);
        }
        let parsed = super::par_map(&raw, |(k, v)| {
            serde_json::from_slice::<Exchange>(v).map_err(|e| CassetteError::Corrupt {
                path: self.path.clone(),
                detail: format!("exchange {} does not parse: {e}", seq_of(k)),
            })
        });
        parsed.into_iter().collect()
    }

    /// Flushes everything to disk.
    pub fn flush(&self) -> Result<(), CassetteError> {
        self.db.flush().map(|_| ()).map_err(|e| self.io(e))
    }
}

/// The store's trees as the writer thread sees them.
struct SledSink {
    /// The cassette, for errors.
    path: PathBuf,
    /// The database, flushed once per batch.
    db: sled::Db,
    /// See [`EXCHANGES_TREE`].
    exchanges: sled::Tree,
    /// See [`FRAMES_TREE`].
    frames: sled::Tree,
}

impl super::commit::Sink for SledSink {
    /// Inserts into the tree the write belongs to.
    fn write(&mut self, w: super::commit::Write) -> Result<(), CassetteError> {
        let r = match w {
            super::commit::Write::Exchange(k, v) => self.exchanges.insert(k, v),
            super::commit::Write::Frame(k, v) => self.frames.insert(k, v),
        };
        r.map(|_| ()).map_err(|e| CassetteError::Io { path: self.path.clone(), detail: e.to_string() })
    }

    /// Removes the item from its tree (not flushed: the next flush, or none, settles it).
    fn forget(&mut self, key: super::commit::Key) {
        let _ = match key {
            super::commit::Key::Exchange(k) => self.exchanges.remove(k),
            super::commit::Key::Frame(k) => self.frames.remove(k),
        };
    }

    /// Flushes the database.
    fn flush(&mut self) -> Result<(), CassetteError> {
        self.db.flush().map(|_| ()).map_err(|e| CassetteError::Io { path: self.path.clone(), detail: e.to_string() })
    }
}

impl Drop for Store {
    /// Lets the writer thread finish, flushes and removes the owner file: the store is no longer
    /// in use by this process.
    fn drop(&mut self) {
        drop(self.committer.take());
        let _ = self.db.flush();
        let _ = std::fs::remove_file(self.path.join(OWNER_FILE));
    }
}

/// Whether a sled store exists at `path`.
fn exists(path: &Path) -> bool {
    path.join("db").exists() || path.join("conf").exists()
}

/// The sequence number a big-endian key stands for (a key shorter than 8 bytes is zero-padded).
fn seq_of(k: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = k.len().min(8);
    b[8 - n..].copy_from_slice(&k[k.len() - n..]);
    u64::from_be_bytes(b)
}

/// Sled's open error in our terms: its lock refused ([`CassetteError::InUse`], naming the owner file's
/// pid), corruption, or plain IO.
fn open_error(path: &Path, e: sled::Error) -> CassetteError {
    let text = e.to_string();
    match e {
        sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock || text.contains("lock") => {
            let pid = std::fs::read_to_string(path.join(OWNER_FILE))
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()));
            CassetteError::InUse { path: path.to_path_buf(), pid }
        }
        sled::Error::Corruption { .. } => CassetteError::Corrupt { path: path.to_path_buf(), detail: text },
        _ => CassetteError::Io { path: path.to_path_buf(), detail: text },
    }
}

/// The first line of a JSON Lines cassette.
#[derive(serde::Serialize, serde::Deserialize)]
struct JsonlHeader {
    /// Always [`JSONL_FORMAT`]: a file that says otherwise is not a cassette.
    format: String,
    /// The [`FORMAT_VERSION`] it was written in.
    version: u32,
    /// Free text about where the cassette came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// The `format` of a JSON Lines cassette's header line.
const JSONL_FORMAT: &str = "callvcr-cassette";

/// One line of a JSON Lines cassette after the header: a frame (`{"frame": {...}}`) or an exchange.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Line {
    /// A WebSocket frame, wrapped so it cannot be taken for an exchange.
    Frame { frame: Frame },
    /// An exchange (boxed: much larger than a frame).
    Exchange(Box<Exchange>),
}

/// Writes a cassette as JSON Lines: a header line, one exchange per line in sequence order, then
/// one WebSocket frame per line (`{"frame": {...}}`) by session and order.
pub fn write_jsonl(path: &Path, cassette: &Cassette, note: Option<&str>) -> Result<(), CassetteError> {
    let exchanges = &cassette.exchanges;
    let io = |e: std::io::Error| CassetteError::Io { path: path.to_path_buf(), detail: e.to_string() };
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    let header = JsonlHeader { format: JSONL_FORMAT.into(), version: FORMAT_VERSION, note: note.map(String::from) };
    writeln!(f, "{}", serde_json::to_string(&header).unwrap_or_default()).map_err(io)?;
    for e in exchanges {
        let line = serde_json::to_string(e)
            .map_err(|e| CassetteError::Io { path: path.to_path_buf(), detail: e.to_string() })?;
        writeln!(f, "{line}").map_err(io)?;
    }
    for fr in &cassette.frames {
        let line = serde_json::to_string(&serde_json::json!({ "frame": fr }))
            .map_err(|e| CassetteError::Io { path: path.to_path_buf(), detail: e.to_string() })?;
        writeln!(f, "{line}").map_err(io)?;
    }
    f.flush().map_err(io)
}

/// Reads a JSON Lines cassette.
pub fn read_jsonl(path: &Path) -> Result<Cassette, CassetteError> {
    let f = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CassetteError::Missing(path.to_path_buf()),
        _ => CassetteError::Io { path: path.to_path_buf(), detail: e.to_string() },
    })?;
    parse_jsonl(std::io::BufReader::new(f), path)
}

/// Parses a JSON Lines cassette from `input`; `path` names it in errors.
pub fn parse_jsonl(input: impl std::io::BufRead, path: &Path) -> Result<Cassette, CassetteError> {
    let corrupt = |line: usize, detail: String| CassetteError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("line {line}: {detail}"),
    };
    let mut out = Cassette::default();
    let mut saw_header = false;
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| corrupt(i + 1, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        if !saw_header {
            let h: JsonlHeader = serde_json::from_str(&line)
                .map_err(|e| corrupt(i + 1, format!("expected the cassette header line: {e}")))?;
            if h.format != JSONL_FORMAT {
                return Err(corrupt(i + 1, format!("format `{}` is not {JSONL_FORMAT}", h.format)));
            }
            if h.version > FORMAT_VERSION {
                return Err(CassetteError::Newer { path: path.to_path_buf(), found: h.version });
            }
            saw_header = true;
            continue;
        }
        match serde_json::from_str::<Line>(&line) {
            Ok(Line::Frame { frame }) => out.frames.push(frame),
            Ok(Line::Exchange(e)) => out.exchanges.push(*e),
            // Say why it is not an exchange, the common case.
            Err(_) => {
                let e = serde_json::from_str::<Exchange>(&line).err().map(|e| e.to_string()).unwrap_or_default();
                return Err(corrupt(i + 1, e));
            }
        }
    }
    out.frames.sort_by_key(|f| (f.session, f.n));
    if !saw_header {
        return Err(corrupt(1, "empty file, expected the cassette header line".into()));
    }
    Ok(out)
}

/// A cassette argument: a file (`.jsonl`) or a name under the cassettes directory.
pub fn source(arg: &str) -> (String, Option<PathBuf>) {
    let p = Path::new(arg);
    let is_file = arg.ends_with(".jsonl") || arg.ends_with(".har") || p.is_file();
    if is_file {
        let name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| arg.to_string());
        (name, Some(p.to_path_buf()))
    } else {
        (arg.to_string(), None)
    }
}

/// A cassette given by name (under `dir`) or by file path, indexed for replay under `matcher`,
/// with its WebSocket frames. A stored cassette is read through its replay file, which is written
/// from the store (seen by `analyses`) when it is missing or out of date; should that fail, the
/// store is read into memory instead.
pub fn open_for_replay(
    arg: &str,
    dir: &Path,
    matcher: &super::Matcher,
    analyses: &dyn Fn() -> Vec<Box<dyn super::replayfile::Analysis>>,
) -> Result<(String, super::Index, Vec<Frame>), CassetteError> {
    use super::replayfile::{self, Unusable};
    let (name, file) = source(arg);
    if file.is_some() {
        let (name, c) = load(arg, dir)?;
        return Ok((name, super::Index::new(c.exchanges, matcher), c.frames));
    }
    let path = dir.join(&name);
    match replayfile::open(&path, matcher) {
        Ok((index, frames)) => return Ok((name, index, frames)),
        Err(Unusable::Missing) => {}
        Err(Unusable::Stale(why)) => {
            tracing::info!(cassette = %name, "the replay file is not used ({why}); writing it again from the store")
        }
    }
    if !exists(&path) {
        return Err(CassetteError::Missing(path));
    }
    // One replay writes the replay file; the others wait for it and then read it. Shared on the
    // writer lock: no recording starts meanwhile, and one that holds the store is named at once.
    let writer_path = path.join(WRITER_LOCK);
    let writer = LockFile::open(&writer_path)?;
    if !writer.try_take(false, &writer_path)? {
        return Err(writer_busy(&path));
    }
    let build_path = path.join(BUILD_LOCK);
    let wait_ms = std::env::var("CALLVCR_LOCK_WAIT_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(BUILD_WAIT_MS);
    let _build = crate::lockfile::take_within(&build_path, wait_ms)?.map_err(|pid| CassetteError::Waited {
        path: path.clone(),
        pid,
        waited_s: wait_ms / 1000,
    })?;
    // The one that held it before may have finished the file: then it is used as it is.
    if let Ok((index, frames)) = replayfile::open(&path, matcher) {
        return Ok((name, index, frames));
    }
    let store = Store::open(&path, false)?;
    match store.write_replay_file(matcher, analyses()).map_err(|e| e.to_string()).and_then(|()| {
        replayfile::open(&path, matcher).map_err(|u| match u {
            Unusable::Missing => "it vanished after writing".to_string(),
            Unusable::Stale(w) => w,
        })
    }) {
        Ok((index, frames)) => Ok((name, index, frames)),
        Err(why) => {
            tracing::warn!(cassette = %name, "no replay file ({why}); replaying from memory");
            let c = store.load_cassette()?;
            Ok((name, super::Index::new(c.exchanges, matcher), c.frames))
        }
    }
}

/// Loads every exchange of a cassette given by name (under `dir`) or by file path; the store is
/// closed again before this returns.
pub fn load(arg: &str, dir: &Path) -> Result<(String, Cassette), CassetteError> {
    match source(arg) {
        (name, Some(file)) => {
            if file.extension().is_some_and(|e| e == "har") {
                let text = std::fs::read_to_string(&file).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => CassetteError::Missing(file.clone()),
                    _ => CassetteError::Io { path: file.clone(), detail: e.to_string() },
                })?;
                let red = super::Redactor::new(&crate::config::RedactConfig::default());
                let exchanges = super::tools::from_har(&text, &red)
                    .map_err(|detail| CassetteError::Corrupt { path: file.clone(), detail })?;
                return Ok((name, Cassette { exchanges, frames: Vec::new() }));
            }
            Ok((name, read_jsonl(&file)?))
        }
        (name, None) => {
            let store = Store::open(&dir.join(&name), false)?;
            let all = store.load_cassette()?;
            Ok((name, all))
        }
    }
}
