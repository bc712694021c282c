//! Cassettes: what a recording holds ([`model`]), where it is kept (the sled [`store`], JSON Lines,
//! HAR, the [`replayfile`]), how a live request finds its recording ([`fingerprint`], [`index`]),
//! and what is kept out of it ([`redact`], [`verifier`]). Knows nothing about sockets: the proxy
//! records through [`Store`] and replays through [`Index`].

mod canonical;
mod commit;
pub mod error;
pub mod explain;
pub mod fingerprint;
mod heads;
pub mod index;
pub mod model;
pub mod redact;
pub mod replayfile;
pub mod schema;
pub mod store;
pub mod timeshift;
pub mod tools;
pub mod verifier;

pub use error::CassetteError;
pub use fingerprint::{Fingerprint, Matcher};
pub use index::{Head, Index};
pub use model::{Anchor, Body, Cassette, Dir, Exchange, Frame, FrameKind, RecordedRequest, RecordedResponse};
pub use redact::Redactor;
pub use store::Store;

/// `f` over `items` on every core the machine has, results in order: loading and indexing a large
/// cassette is the one place callvcr does a lot of work at once.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if threads < 2 || items.len() < 4096 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> =
            items.chunks(chunk).map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<R>>())).collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}
