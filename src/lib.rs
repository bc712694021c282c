//! callvcr: a TLS-terminating record/replay proxy for contact-center SDK traffic
//! (Genesys Cloud, NICE CXone). The library holds every part; the binary is a thin CLI over it.

pub mod admin;
pub mod cassette;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod encoding;
pub mod journal;
pub mod listen;
pub mod lockfile;
pub mod overlay;
pub mod platform;
pub mod proxy;
pub mod route;
pub mod run;
pub mod server;
pub mod sharded;
pub mod timer;
pub mod tls;
pub mod upstream;
pub mod ws;
