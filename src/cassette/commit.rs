//! Group commit for a recording: one thread writes what the proxy hands it and flushes once for
//! everything that arrived meanwhile; each writer is told when (and whether) its own write is on
//! disk. Nothing is acknowledged before the flush that covers it has returned. Knows nothing about
//! sockets; the sled side is behind [`Sink`], so the batching is tested without a database.

use std::sync::mpsc;

use super::error::CassetteError;

/// The most writes one flush covers; more wait for the next (a bound on how long the first of a
/// burst waits for the last).
const MAX_BATCH: usize = 512;

/// One write: which tree, the key and the serialized value.
#[derive(Debug)]
pub(crate) enum Write {
    /// An exchange, keyed by its big-endian sequence number.
    Exchange([u8; 8], Vec<u8>),
    /// A WebSocket frame, keyed by big-endian (session, n).
    Frame([u8; 12], Vec<u8>),
}

impl Write {
    /// Which item it writes.
    fn key(&self) -> Key {
        match self {
            Write::Exchange(k, _) => Key::Exchange(*k),
            Write::Frame(k, _) => Key::Frame(*k),
        }
    }
}

/// Which item a write wrote: to take it back when its flush failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    /// An exchange's key.
    Exchange([u8; 8]),
    /// A frame's key.
    Frame([u8; 12]),
}

/// Where writes go: a sled database in the store, a counting stand-in in tests.
pub(crate) trait Sink: Send + 'static {
    /// Writes one item (not yet durable).
    fn write(&mut self, w: Write) -> Result<(), CassetteError>;
    /// Makes every write so far durable.
    fn flush(&mut self) -> Result<(), CassetteError>;
    /// Takes back an item whose flush failed (its writer was told it is not stored, and its client
    /// got an error, so a later flush must not store it after all). Best effort.
    fn forget(&mut self, key: Key);
}

/// A write and who waits for it.
struct Job {
    /// What to write.
    write: Write,
    /// Told once the write is durable, or why it is not.
    done: tokio::sync::oneshot::Sender<Result<(), CassetteError>>,
}

/// The committing thread and the way to it. Dropping it lets the thread finish what it holds and
/// waits for it, so the sink (the database) is closed when this is gone.
pub(crate) struct Committer {
    /// To the thread; `None` once dropped.
    tx: Option<mpsc::Sender<Job>>,
    /// The thread, joined on drop.
    thread: Option<std::thread::JoinHandle<()>>,
    /// The cassette, for the error of a write the thread will not take.
    path: std::path::PathBuf,
}

impl std::fmt::Debug for Committer {
    /// Whether it still runs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").field("running", &self.tx.is_some()).finish()
    }
}

impl Committer {
    /// Starts the committing thread over `sink`.
    pub(crate) fn start(sink: impl Sink, path: &std::path::Path) -> Result<Committer, std::io::Error> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name("callvcr-commit".into()).spawn(move || run(sink, rx))?;
        Ok(Committer { tx: Some(tx), thread: Some(thread), path: path.to_path_buf() })
    }

    /// Hands `write` to the thread; the answer comes once it is durable (or failed). A committer
    /// that has stopped answers with an error at once.
    pub(crate) fn submit(&self, write: Write) -> tokio::sync::oneshot::Receiver<Result<(), CassetteError>> {
        let (done, rx) = tokio::sync::oneshot::channel();
        let job = Job { write, done };
        if let Some(tx) = &self.tx {
            if let Err(mpsc::SendError(job)) = tx.send(job) {
                let _ = job.done.send(Err(self.stopped()));
            }
        } else {
            let _ = job.done.send(Err(self.stopped()));
        }
        rx
    }

    /// The error for a write the committing thread will never take.
    fn stopped(&self) -> CassetteError {
        CassetteError::Io { path: self.path.clone(), detail: "the cassette's writer has stopped".into() }
    }
}

impl Drop for Committer {
    /// Closes the queue and waits for the thread to finish the writes it holds.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The same error again, for each writer a failed flush leaves without its write on disk.
fn again(e: &CassetteError) -> CassetteError {
    match e {
        CassetteError::Io { path, detail } => CassetteError::Io { path: path.clone(), detail: detail.clone() },
        CassetteError::Corrupt { path, detail } => {
            CassetteError::Corrupt { path: path.clone(), detail: detail.clone() }
        }
        other => CassetteError::Io { path: Default::default(), detail: other.to_string() },
    }
}

/// The thread: takes what is queued (at least one write, at most [`MAX_BATCH`]), writes each,
/// flushes once, then answers every writer of the batch.
fn run(mut sink: impl Sink, rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<(Key, Result<(), CassetteError>, tokio::sync::oneshot::Sender<_>)> = Vec::new();
    let (mut writes, mut flushes) = (0u64, 0u64);
    while let Ok(first) = rx.recv() {
        let mut job = Some(first);
        while let Some(Job { write, done }) = job.take() {
            let key = write.key();
            batch.push((key, sink.write(write), done));
            if batch.len() < MAX_BATCH {
                job = rx.try_recv().ok();
            }
        }
        // One flush for the batch; a write that failed stays failed, the rest share the flush's fate.
        let flushed = if batch.iter().any(|(_, r, _)| r.is_ok()) { sink.flush() } else { Ok(()) };
        if flushed.is_err() {
            for (key, written, _) in &batch {
                if written.is_ok() {
                    sink.forget(*key);
                }
            }
        }
        writes += batch.len() as u64;
        flushes += 1;
        for (_, written, done) in batch.drain(..) {
            let r = match (written, &flushed) {
                (Err(e), _) => Err(e),
                (Ok(()), Ok(())) => Ok(()),
                (Ok(()), Err(e)) => Err(again(e)),
            };
            let _ = done.send(r);
        }
    }
    if writes > 0 {
        tracing::debug!(writes, flushes, "cassette writer done: {writes} writes in {flushes} flushes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Counts writes and flushes; the first flush waits until the test lets it end, and a write of
    /// an empty value fails.
    struct Counting {
        log: Arc<Mutex<Vec<String>>>,
        gate: Option<mpsc::Receiver<Result<(), CassetteError>>>,
    }

    impl Sink for Counting {
        fn write(&mut self, w: Write) -> Result<(), CassetteError> {
            let (key, value) = match w {
                Write::Exchange(k, v) => (u64::from_be_bytes(k), v),
                Write::Frame(_, v) => (0, v),
            };
            if value.is_empty() {
                return Err(CassetteError::Io { path: Default::default(), detail: "refused".into() });
            }
            self.log.lock().unwrap().push(format!("write {key}"));
            Ok(())
        }
        fn forget(&mut self, key: Key) {
            if let Key::Exchange(k) = key {
                self.log.lock().unwrap().push(format!("forget {}", u64::from_be_bytes(k)));
            }
        }
        fn flush(&mut self) -> Result<(), CassetteError> {
            self.log.lock().unwrap().push("flush".into());
            match self.gate.take() {
                Some(g) => g.recv().unwrap(),
                None => Ok(()),
            }
        }
    }

    fn ex(n: u64, v: &[u8]) -> Write {
        Write::Exchange(n.to_be_bytes(), v.to_vec())
    }

    #[test]
    fn writes_queued_during_a_flush_share_the_next_one_and_a_failed_flush_fails_its_batch() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (release, gate) = mpsc::channel();
        let c =
            Committer::start(Counting { log: log.clone(), gate: Some(gate) }, std::path::Path::new("test")).unwrap();
        let first = c.submit(ex(1, b"a"));
        // Wait until the first flush is under way, then queue three more (one of which fails to write).
        while !log.lock().unwrap().contains(&"flush".to_string()) {
            std::thread::yield_now();
        }
        let late = [c.submit(ex(2, b"b")), c.submit(ex(3, b"")), c.submit(ex(4, b"d"))];
        release.send(Err(CassetteError::Io { path: Default::default(), detail: "disk full".into() })).unwrap();
        assert!(first.blocking_recv().unwrap().is_err(), "the write under the failed flush is told so");
        let answers: Vec<bool> = late.into_iter().map(|r| r.blocking_recv().unwrap().is_ok()).collect();
        assert_eq!(answers, [true, false, true], "the refused write fails; the others share a good flush");
        drop(c);
        assert_eq!(
            *log.lock().unwrap(),
            ["write 1", "flush", "forget 1", "write 2", "write 4", "flush"],
            "the write under the failed flush is taken back, so no later flush stores it"
        );
    }

    #[test]
    fn a_dropped_committer_finishes_what_it_holds_and_refuses_nothing_silently() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let c = Committer::start(Counting { log: log.clone(), gate: None }, std::path::Path::new("test")).unwrap();
        let answers: Vec<_> = (1..=100).map(|n| c.submit(ex(n, b"x"))).collect();
        drop(c);
        assert!(answers.into_iter().all(|r| r.blocking_recv().unwrap().is_ok()));
        let log = log.lock().unwrap();
        assert_eq!(log.iter().filter(|l| l.starts_with("write")).count(), 100);
        assert_eq!(log.last().map(String::as_str), Some("flush"), "the last write was flushed");
    }
}
