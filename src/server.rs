//! A callvcr server: its parts built from a configuration and a mode, bound, served and shut down
//! in order. The command line and tests in process both start callvcr through here:
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! use callvcr::server::Server;
//! let cfg = callvcr::config::Config::default();
//! let server = Server::replay(cfg, "certs".as_ref(), "cassettes".as_ref(), "demo")?;
//! let running = server.start().await?;
//! println!("TLS on {}", running.addresses.tls);
//! let stopped = running.shutdown().await?;
//! println!("{} hits", stopped.proxy.stats.hits.get());
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::cassette::{Index, Matcher, Redactor, Store};
use crate::clock::{rfc3339_ms, Clock};
use crate::config::Config;
use crate::listen::{self, Shared};
use crate::proxy::{Proxy, Recorder};
use crate::tls::{self, Ca, LeafCache};
use crate::upstream::{Upstream, UpstreamOptions};

/// The addresses a running callvcr listens on.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    /// The transparent TLS listener.
    pub tls: SocketAddr,
    /// The HTTP proxy listener.
    pub proxy: SocketAddr,
    /// The admin API.
    pub admin: SocketAddr,
}

/// A callvcr built and not yet listening: the proxy with its mode, overlays and cassette, and the
/// CA its certificates come from.
pub struct Server {
    proxy: Arc<Proxy>,
    ca: Ca,
    store: Option<Arc<Store>>,
    name: String,
}

/// A listening callvcr.
pub struct Running {
    /// Where it listens.
    pub addresses: Addrs,
    proxy: Arc<Proxy>,
    store: Option<Arc<Store>>,
    name: String,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    drain: listen::DrainSignal,
}

/// A callvcr that has stopped: what it did, for a summary.
pub struct Stopped {
    /// The proxy, with its counters, journal and index.
    pub proxy: Arc<Proxy>,
    /// The cassette's name.
    pub name: String,
}

/// The CA under `certs`, made when missing; warns when its name constraints leave out a host the
/// configuration intercepts.
pub fn load_ca(certs: &Path, cfg: &Config) -> Result<Ca, String> {
    let domains = cfg.constraint_domains();
    // The CA is dated, and its expiry judged, on real time: clients judge it so.
    let (ca, created) = Ca::load_or_init(certs, &domains, &Clock::system()).map_err(|e| e.to_string())?;
    if created {
        tracing::info!("created a new CA at {} (trust it: `callvcr ca show`)", certs.join(tls::CA_CERT_FILE).display());
    }
    let uncovered = ca.uncovered(&domains);
    if !uncovered.is_empty() {
        tracing::warn!(
            "the CA's name constraints do not cover {}: clients will reject callvcr's certificates for them; run `callvcr ca init --force`",
            uncovered.join(", ")
        );
    }
    Ok(ca)
}

/// The virtual clock a replay runs on: `clock.start` and `clock.frozen` from the configuration.
fn replay_clock(cfg: &Config) -> Clock {
    match (cfg.clock_frozen, cfg.clock_start_ms) {
        (true, Some(t)) => Clock::frozen(t),
        (true, None) => Clock::frozen(Clock::system().now_ms()),
        (false, Some(t)) => Clock::starting_at(t),
        (false, None) => Clock::system(),
    }
}

/// What a recording does with the cassette it records into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordInto {
    /// Cleared first: the recording replaces it (`record`).
    Fresh,
    /// Kept and replayed: only what it does not answer goes upstream and is added (`record --missing`).
    Missing,
    /// Kept: every request goes upstream, and each test scope that records in this run replaces
    /// the exchanges it recorded before; other scopes' and unscoped ones stay (`record --by-scope`).
    ByScope,
}

impl Server {
    /// A recorder: forwards to the platform over verified TLS and stores every exchange in the
    /// named cassette under `cassettes`, which `how` says what becomes of.
    pub fn record(
        cfg: Config,
        certs: &Path,
        cassettes: &Path,
        cassette: &str,
        how: RecordInto,
    ) -> Result<Server, String> {
        let clock = Arc::new(Clock::system());
        let ca = load_ca(certs, &cfg)?;
        let tls_cfg =
            Arc::new(tls::upstream_client_config(cfg.upstream_extra_ca.as_deref()).map_err(|e| e.to_string())?);
        let upstream = Upstream::new(UpstreamOptions {
            tls: tls_cfg,
            resolve: cfg.resolve.clone(),
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            timeout: Duration::from_millis(cfg.upstream_timeout_ms),
            nameservers: cfg.nameservers.clone(),
        });
        let (name, file) = crate::cassette::store::source(cassette);
        if file.is_some() {
            return Err("record writes a named cassette under --cassettes; export it to JSON Lines afterwards with `callvcr cassette export`".into());
        }
        let store = Arc::new(Store::open_writer(&cassettes.join(&name), true).map_err(|e| e.to_string())?);
        let cfg = Arc::new(cfg);
        let matcher = Matcher::new(&cfg.matching, Redactor::new(&cfg.redact));
        let index = match how {
            RecordInto::Missing => Index::new(store.load_all().map_err(|e| e.to_string())?, &matcher),
            RecordInto::Fresh => {
                store.clear().map_err(|e| e.to_string())?;
                Index::new(vec![], &matcher)
            }
            RecordInto::ByScope => Index::new(vec![], &matcher),
        };
        tracing::info!(cassette = %name, path = %store.path().display(), "recording");
        let recorder = Recorder::new(store.clone(), upstream, how == RecordInto::Missing);
        let recorder = if how == RecordInto::ByScope { recorder.by_scope() } else { recorder };
        let proxy = Arc::new(Proxy::record(cfg, Arc::new(index), recorder, clock, name.clone()));
        Ok(Server { proxy, ca, store: Some(store), name })
    }

    /// A replayer: answers from `cassette` (a name under `cassettes`, or a JSON Lines / HAR file)
    /// through the overlays, on the virtual clock, with no network.
    pub fn replay(cfg: Config, certs: &Path, cassettes: &Path, cassette: &str) -> Result<Server, String> {
        let clock = Arc::new(replay_clock(&cfg));
        let matcher = Matcher::new(&cfg.matching, Redactor::new(&cfg.redact));
        let (name, index, frames) = crate::proxy::open_replay(&cfg, cassette, cassettes, &matcher, clock.now_ms())
            .map_err(|e| e.to_string())?;
        let index = Arc::new(index);
        let ca = load_ca(certs, &cfg)?;
        let cfg = Arc::new(cfg);
        tracing::info!(cassette = %name, exchanges = index.len(), "replaying (no network)");
        let key_dir = certs.to_path_buf();
        let nice_key: crate::overlay::auth::KeySource = Box::new(move || {
            let der = tls::token_signing_key(&key_dir).map_err(|e| e.to_string())?;
            crate::overlay::jwt::Signer::rs256(&der).map_err(|e| e.to_string())
        });
        let ids = Arc::new(crate::overlay::Ids::new(cfg.seed));
        let overlays = crate::overlay::Overlays::from_config(&cfg, ids.clone(), nice_key, clock.now_ms(), &index);
        tracing::info!(overlays = ?overlays.pipeline.names(), frozen = clock.is_frozen(), now = %rfc3339_ms(clock.now_ms()), "overlays and virtual clock");
        let proxy = Arc::new(
            Proxy::replay(cfg, index, clock, name.clone())
                .with_overlays(overlays, ids)
                .with_frames(frames)
                .with_cassettes_dir(cassettes.to_path_buf()),
        );
        proxy.start_state_clock();
        Ok(Server { proxy, ca, store: None, name })
    }

    /// The proxy it serves.
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// Binds the TLS listener, the HTTP proxy listener and the admin API (`listen` in the
    /// configuration; port 0 picks a free one) and serves them until [`Running::shutdown`].
    pub async fn start(self) -> Result<Running, String> {
        let Server { proxy, ca, store, name } = self;
        let cfg = proxy.config.clone();
        // Clients check certificates against their own (real) time, not the virtual clock: a
        // replay whose clock starts a year away must still present a leaf valid today.
        let leaves = Arc::new(LeafCache::new(ca, Arc::new(Clock::system())).map_err(|e| e.to_string())?);
        let tls_l = listen::bind(&cfg.listen.tls, "TLS listener", "--listen").await.map_err(|e| e.to_string())?;
        let proxy_l =
            listen::bind(&cfg.listen.proxy, "proxy listener", "--proxy-listen").await.map_err(|e| e.to_string())?;
        let admin_l = listen::bind(&cfg.listen.admin, "admin API", "--admin").await.map_err(|e| e.to_string())?;
        let local = |l: &tokio::net::TcpListener| l.local_addr().map_err(|e| e.to_string());
        let addresses = Addrs { tls: local(&tls_l)?, proxy: local(&proxy_l)?, admin: local(&admin_l)? };
        let read_timeout = Duration::from_millis(cfg.limits.read_timeout_ms);
        let (drain, connections) = listen::DrainSignal::new(Some(read_timeout));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let shared = Shared { proxy: proxy.clone(), leaves, drain: connections.clone() };
        let tasks = vec![
            tokio::spawn(listen::serve_tls(tls_l, shared.clone(), stopped.clone())),
            tokio::spawn(listen::serve_proxy(proxy_l, shared, stopped.clone())),
            tokio::spawn(crate::admin::serve(admin_l, proxy.clone(), connections, stopped)),
        ];
        tracing::info!(
            mode = proxy.mode.as_str(),
            "callvcr ready: TLS {} · proxy http://{} · admin http://{}",
            addresses.tls,
            addresses.proxy,
            addresses.admin
        );
        Ok(Running { addresses, proxy, store, name, stop, tasks, drain })
    }
}

impl Running {
    /// The proxy it serves (counters, journal, index).
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// Stops in order: no new connections, in-flight requests finish (up to 5 s), WebSockets get
    /// a close frame, then the cassette is flushed. An error says the cassette could not be
    /// flushed.
    pub async fn shutdown(self) -> Result<Stopped, String> {
        let Running { proxy, store, name, stop, tasks, drain, .. } = self;
        tracing::info!("shutting down: letting in-flight requests finish (up to 5 s)");
        let _ = stop.send(true);
        for t in tasks {
            if let Err(e) = t.await {
                tracing::warn!("a listener ended abnormally: {e}");
            }
        }
        if !drain.drain(Duration::from_secs(5)).await {
            tracing::warn!("some connections were still open after 5 s and were closed");
        }
        if tokio::time::timeout(Duration::from_secs(2), proxy.ws.shutdown()).await.is_err() {
            tracing::warn!("some WebSocket sessions did not close within 2 s");
        }
        if let Some(s) = &store {
            s.flush().map_err(|e| e.to_string())?;
        }
        Ok(Stopped { proxy, name })
    }
}
