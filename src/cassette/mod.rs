//! Cassettes: the sled store, fingerprints and matching, redaction, and the replay index.
//! Knows nothing about sockets.

pub mod fingerprint;
pub mod index;
pub mod model;
pub mod redact;
pub mod schema;
pub mod store;
pub mod tools;

pub use fingerprint::{Fingerprint, Matcher};
pub use index::Index;
pub use model::{Anchor, Body, Cassette, Dir, Exchange, Frame, FrameKind, RecordedRequest, RecordedResponse};
pub use redact::Redactor;
pub use store::{CassetteError, Store};
