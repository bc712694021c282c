//! What can go wrong with a cassette, for every part that reads or writes one: the store, JSON
//! Lines and the replay file. Each variant names the cassette's path and says what to do, since
//! these messages reach the user as they are.

use std::path::PathBuf;

/// The cassette format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Errors opening or using a cassette.
#[derive(Debug, thiserror::Error)]
pub enum CassetteError {
    /// No cassette by that name or path.
    #[error("cassette `{0}` not found (record it first with `callvcr record --cassette NAME`, or check --cassettes)")]
    Missing(PathBuf),
    /// Another process holds the store.
    #[error("cassette `{path}` is in use by another callvcr process{pid}; stop it or use another cassette", pid = .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    InUse {
        /// The store.
        path: PathBuf,
        /// The holder's process id, when it wrote one.
        pid: Option<u32>,
    },
    /// Another replay kept writing the replay file for longer than this one would wait.
    #[error("cassette `{path}`: another callvcr replay{pid} has been writing its replay file for {waited_s} s and has not finished; is that process stuck? (the wait is set by CALLVCR_LOCK_WAIT_MS)", pid = .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Waited {
        /// The store.
        path: PathBuf,
        /// The process writing the file, as it noted itself.
        pid: Option<u32>,
        /// How long this one waited.
        waited_s: u64,
    },
    /// Written by a newer callvcr.
    #[error("cassette `{path}` has format version {found}, newer than this callvcr reads ({FORMAT_VERSION}); upgrade callvcr")]
    Newer {
        /// The store.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// A lock file beside the store could not be used.
    #[error("cassette lock: {0}")]
    Lock(#[from] crate::lockfile::LockError),
    /// Unreadable contents.
    #[error("cassette `{path}` is corrupt: {detail}")]
    Corrupt {
        /// The store or file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// An I/O or storage failure.
    #[error("cassette `{path}`: {detail}")]
    Io {
        /// The store or file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}
