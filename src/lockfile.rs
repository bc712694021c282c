//! OS file locks (`flock`): one process at a time for what must not be done twice at once
//! (writing a cassette, writing its replay file, making the CA). The kernel drops a lock when its
//! process ends, however it ends, so a killed process leaves nothing stale; the file's text (a
//! process id) only names the holder in messages. No other IO.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A lock file that could not be opened or locked.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {detail}")]
pub struct LockError {
    /// The lock file.
    pub path: PathBuf,
    /// What failed.
    pub detail: String,
}

/// An OS lock (`flock`) on a file. The kernel drops it when the process ends,
/// however it ends, so a killed process leaves nothing stale behind; the file's text (a process
/// id) only names the holder in messages.
#[derive(Debug)]
pub(crate) struct LockFile {
    /// The open lock file; the lock lives as long as this descriptor, and closing it releases the lock.
    file: std::fs::File,
}

impl LockFile {
    /// Opens (creating) the lock file at `path`; takes no lock yet.
    pub(crate) fn open(path: &Path) -> Result<LockFile, LockError> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map(|file| LockFile { file })
            .map_err(|e| LockError { path: path.to_path_buf(), detail: format!("cannot open the lock file: {e}") })
    }

    /// Takes the lock (exclusive or shared) if it is free: `Ok(false)` when another holds it.
    pub(crate) fn try_take(&self, exclusive: bool, path: &Path) -> Result<bool, LockError> {
        let r = if exclusive { self.file.try_lock() } else { self.file.try_lock_shared() };
        match r {
            Ok(()) => Ok(true),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(LockError { path: path.to_path_buf(), detail: format!("cannot lock: {e}") })
            }
        }
    }

    /// Notes this process as the holder (after taking the lock exclusively).
    pub(crate) fn note_holder(&self) {
        use std::io::Seek;
        let mut f = &self.file;
        let _ = f.set_len(0);
        let _ = f.seek(std::io::SeekFrom::Start(0));
        let _ = write!(f, "{}", std::process::id());
        let _ = f.flush();
    }

    /// The holder's process id, as it noted itself.
    pub(crate) fn holder(path: &Path) -> Option<u32> {
        std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok())
    }
}

/// Takes the lock at `path` exclusively, waiting for another holder up to `wait_ms`; on timeout,
/// the holder's process id (as it noted itself).
pub(crate) fn take_within(path: &Path, wait_ms: u64) -> Result<Result<LockFile, Option<u32>>, LockError> {
    let lock = LockFile::open(path)?;
    let started = crate::clock::Clock::instant();
    while !lock.try_take(true, path)? {
        if started.elapsed().as_millis() as u64 >= wait_ms {
            return Ok(Err(LockFile::holder(path)));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    lock.note_holder();
    Ok(Ok(lock))
}
