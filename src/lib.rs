//! callvcr: a TLS-terminating record/replay proxy for contact-center SDK traffic
//! (Genesys Cloud, NICE CXone). The library holds every part; the binary is a thin CLI over it.

pub(crate) mod admin;
pub mod cassette;
pub(crate) mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub(crate) mod encoding;
pub mod journal;
pub(crate) mod listen;
pub(crate) mod lockfile;
pub(crate) mod overlay;
pub(crate) mod platform;
pub mod proxy;
pub(crate) mod route;
pub(crate) mod run;
pub mod scope;
pub mod server;
pub(crate) mod sharded;
pub(crate) mod timer;
pub mod tls;
pub(crate) mod upstream;
pub(crate) mod verify;
pub(crate) mod ws;

/// Crate-private parts the fuzz targets under `fuzz/` drive directly. Not an API: nothing here is
/// stable, and the CLI and server never use it.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::overlay::ids::Ids;
    pub use crate::platform::Platform;
    pub use crate::timer::Timer;
    pub use crate::ws::Hub;

    /// `a=1&b=2` (a query string or form body) as decoded pairs, in order.
    pub fn decode_pairs(s: &str) -> Vec<(String, String)> {
        crate::encoding::decode_pairs(s)
    }
}
