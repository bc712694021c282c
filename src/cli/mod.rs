//! The command line: `record`, `replay`, `run`, `ca`, `hosts`, `cassette`, `schema`, `state`,
//! `verify`.
//! Parses flags, resolves them over `proxy.yaml`, wires the parts together and maps outcomes to
//! exit codes (0 ok, 1 strict failures, 2 usage or configuration errors). Holds no proxy logic.
//! The clap types' doc comments are the `--help` text, so they are written for users.

mod cassette;
mod schema;
mod state;
mod verify;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::clock::{rfc3339_ms, Clock};
use crate::config::Config;
use crate::proxy::Proxy;
use crate::server::{Server, Stopped};
use crate::tls;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: strict replay saw misses (or unused recordings with --fail-on-unused).
pub const EXIT_STRICT: i32 = 1;
/// Exit code: bad usage or configuration, missing or unreadable cassette, port in use.
pub const EXIT_USAGE: i32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "callvcr",
    version,
    about = "Record and replay contact-center SDK traffic through a TLS-terminating proxy"
)]
/// The whole command line. (clap reads doc comments as help text; the explicit `about` wins here.)
struct Cli {
    /// Log lines as `text` (default) or `json` (one object per line; no status line).
    #[arg(long = "log-format", global = true, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Threads that serve connections. Default: one fewer than the machine's cores, at least one,
    /// since the SDK under test shares the machine; `CALLVCR_WORKERS` sets it too.
    #[arg(long, global = true, value_name = "N")]
    workers: Option<usize>,
    /// The subcommand.
    #[command(subcommand)]
    cmd: Cmd,
}

/// Every subcommand; each variant's doc comment is its `--help` summary.
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Forward to the real platform and store every exchange in a cassette.
    Record(RecordArgs),
    /// Answer from a cassette, with no network at all.
    Replay(ReplayArgs),
    /// The local certificate authority.
    #[command(subcommand)]
    Ca(CaCmd),
    /// Print hosts-file lines that point the configured hosts at callvcr.
    Hosts(HostsArgs),
    /// Work with stored cassettes.
    #[command(subcommand)]
    Cassette(cassette::CassetteCmd),
    /// Schemas inferred from recordings: OpenAPI 3.1 / JSON Schema export, and drift.
    #[command(subcommand)]
    Schema(schema::SchemaCmd),
    /// Call state machines: the transitions a cassette shows, per resource.
    #[command(subcommand)]
    State(state::StateCmd),
    /// Start callvcr, run a command through it (trust and proxy set), stop, and exit with the
    /// command's status (or 1 when a strict replay missed).
    Run(RunArgs),
    /// Send a cassette's requests to the live sandbox, in recorded order, and report how the
    /// answers drifted from the recording (status, schema, headers, WebSocket events, timing).
    Verify(verify::VerifyArgs),
}

/// `callvcr run` flags: the replay flags plus the mode and the command.
#[derive(Args, Debug)]
struct RunArgs {
    /// Record from the real platform (default: replay).
    #[arg(long, conflicts_with = "replay_mode")]
    record: bool,
    /// Replay from the cassette (the default).
    #[arg(long = "replay", id = "replay_mode")]
    replay_mode: bool,
    /// With --record: replay what matches and record only what misses.
    #[arg(long, requires = "record")]
    missing: bool,
    /// With --record: keep the cassette, each test scope recorded in this run replacing its own.
    #[arg(long = "by-scope", requires = "record", conflicts_with = "missing")]
    by_scope: bool,
    /// Linux, as root: run the command in a private mount namespace whose /etc/hosts points the
    /// configured hosts at callvcr (TLS on 127.0.0.1:443), for SDKs that ignore HTTPS_PROXY.
    #[arg(long)]
    hosts: bool,
    /// Cassette, overlays, clock and listener flags, as `replay` takes them (also for `--record`).
    #[command(flatten)]
    replay: ReplayArgs,
    /// The command to run, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    cmd: Vec<String>,
}

/// Flags every serving command shares: files, directories, listeners and upstream overrides.
#[derive(Args, Debug, Clone)]
struct Common {
    /// proxy.yaml to use (default: ./proxy.yaml when present, else built-in defaults).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of the CA (created on first use).
    #[arg(long, value_name = "DIR", default_value = "certs")]
    certs: PathBuf,
    /// Directory holding cassettes.
    #[arg(long, value_name = "DIR", default_value = "cassettes")]
    cassettes: PathBuf,
    /// Transparent TLS listener address (use 127.0.0.1:443 for a hosts-file redirect).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// HTTP proxy listener (CONNECT, absolute-form) address.
    #[arg(long = "proxy-listen", value_name = "ADDR")]
    proxy_listen: Option<String>,
    /// Admin API address.
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    /// Write the bound addresses as JSON to this file once all listeners are ready.
    #[arg(long = "ready-file", value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Extra CA (PEM) to trust upstream, for a sandbox with a private CA (record modes; replay has no upstream).
    #[arg(long = "upstream-ca", value_name = "FILE")]
    upstream_ca: Option<PathBuf>,
    /// Send HOST to ADDR:PORT instead of resolving it (repeatable; HOST `*` sends every configured host).
    /// Record modes only; accepted by replay so scripts can pass one set of flags.
    #[arg(long, value_name = "HOST=ADDR:PORT")]
    resolve: Vec<String>,
}

/// `callvcr record` flags.
#[derive(Args, Debug)]
struct RecordArgs {
    /// Cassette name (a directory under --cassettes).
    #[arg(long)]
    cassette: String,
    /// Replay what matches and record only what misses, keeping the rest of the cassette.
    #[arg(long)]
    missing: bool,
    /// Keep the cassette and record again by test scope: each scope that records in this run
    /// replaces what it recorded before; other scopes and unscoped exchanges stay.
    #[arg(long = "by-scope", conflicts_with = "missing")]
    by_scope: bool,
    /// Files, listeners, upstream overrides.
    #[command(flatten)]
    common: Common,
}

/// `callvcr replay` flags; each overrides its `proxy.yaml` setting.
#[derive(Args, Debug)]
struct ReplayArgs {
    /// Cassette name, or a path to a `.jsonl` cassette.
    #[arg(long)]
    cassette: String,
    /// Exit 1 at shutdown if any request missed.
    #[arg(long)]
    strict: bool,
    /// Also exit 1 when recorded exchanges were never replayed.
    #[arg(long = "fail-on-unused")]
    fail_on_unused: bool,
    /// At shutdown, write a JUnit XML report here: one test case per test scope (the whole
    /// cassette when none was used), its misses and unused recordings as its failure.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Switch an overlay off (repeatable, or comma-separated): faults, auth, rate-limit, versions,
    /// validate, state, crud.
    #[arg(long = "no-overlay", value_name = "NAME", value_delimiter = ',')]
    no_overlay: Vec<String>,
    /// Freeze the virtual clock: it moves only when the admin API advances or sets it.
    #[arg(long = "clock-frozen")]
    clock_frozen: bool,
    /// Start virtual time here (RFC 3339), instead of now.
    #[arg(long = "clock-start", value_name = "TIME")]
    clock_start: Option<String>,
    /// How much of the recording moves onto the virtual clock: `off` (recorded bytes), `headers`
    /// (`Date`, `Expires`, `Last-Modified`, cookie expiry) or `all` (also JSON bodies, WebSocket
    /// events and requests' own times); overrides `time_shift` in proxy.yaml.
    #[arg(long = "time-shift", value_name = "MODE")]
    time_shift: Option<String>,
    /// Seed for ids and tokens callvcr invents (overrides `seed:` in proxy.yaml).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Pacing of WebSocket frames recorded on their own: a factor on recorded gaps (2 = twice as
    /// fast) or `instant` (overrides `ws.speed`).
    #[arg(long = "ws-speed", value_name = "FACTOR|instant")]
    ws_speed: Option<String>,
    /// Files, listeners, upstream overrides.
    #[command(flatten)]
    common: Common,
}

/// `callvcr ca` subcommands.
#[derive(Subcommand, Debug)]
enum CaCmd {
    /// Create the CA, name-constrained to the configured domains.
    Init {
        /// Replace an existing CA.
        #[arg(long)]
        force: bool,
        /// proxy.yaml to take the domains from.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Directory of the CA.
        #[arg(long, value_name = "DIR", default_value = "certs")]
        certs: PathBuf,
    },
    /// Print where the CA is, when it expires, and how to trust it in each runtime.
    Show {
        /// Directory of the CA.
        #[arg(long, value_name = "DIR", default_value = "certs")]
        certs: PathBuf,
    },
}

/// `callvcr hosts` flags.
#[derive(Args, Debug)]
struct HostsArgs {
    /// Address the lines point at.
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    /// Also include the hosts seen in this cassette.
    #[arg(long)]
    cassette: Option<String>,
    /// proxy.yaml to use.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory holding cassettes.
    #[arg(long, value_name = "DIR", default_value = "cassettes")]
    cassettes: PathBuf,
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    JSON_LOGS.store(cli.log_format == "json", Ordering::Relaxed);
    init_logging(cli.log_format == "json");
    // Each client connection is a descriptor (two while recording); the soft limit is often 1024,
    // so take what the hard limit allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < 4096 => {
            tracing::warn!("open-file limit is {n}: callvcr serves at most about that many connections")
        }
        Ok(_) => {}
        Err(e) => tracing::debug!("could not raise the open-file limit: {e}"),
    }
    let workers = match workers(cli.workers, std::env::var("CALLVCR_WORKERS").ok().as_deref()) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    tracing::debug!(workers, "starting the runtime");
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("callvcr: cannot start the runtime: {e}");
            return EXIT_USAGE;
        }
    };
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Record(a) => run_record(a).await,
            Cmd::Replay(a) => run_replay(a).await,
            Cmd::Ca(c) => run_ca(c),
            Cmd::Hosts(h) => run_hosts(h),
            Cmd::Cassette(c) => cassette::run(c).await,
            Cmd::Schema(c) => schema::run(c),
            Cmd::State(c) => state::run(c),
            Cmd::Run(r) => run_command(r).await,
            Cmd::Verify(a) => verify::run(a).await,
        }
    })
}

/// Most worker threads `--workers` takes: far above any core count, low enough that a typo does
/// not start thousands of threads.
const MAX_WORKERS: usize = 256;

/// How many threads serve connections: `--workers`, else `CALLVCR_WORKERS`, else one fewer than
/// the cores (at least one). The proxy runs beside the SDK under test, and on a small machine a
/// worker per core makes them take turns: on 2 cores, two workers cost 1.2–1.4× the CPU per
/// request of one and put a scheduler time slice (~0.75 ms) into the tail (docs/BENCHMARKS.md).
fn workers(flag: Option<usize>, env: Option<&str>) -> Result<usize, String> {
    let (n, from) = match (flag, env) {
        (Some(n), _) => (n, "--workers"),
        (None, Some(v)) => match v.trim().parse::<usize>() {
            Ok(n) => (n, "CALLVCR_WORKERS"),
            Err(_) => {
                return Err(format!("CALLVCR_WORKERS is `{v}`; expected a whole number of threads, 1 to {MAX_WORKERS}"))
            }
        },
        (None, None) => {
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            return Ok(cores.saturating_sub(1).clamp(1, MAX_WORKERS));
        }
    };
    if !(1..=MAX_WORKERS).contains(&n) {
        return Err(format!("{from} is {n}; expected 1 to {MAX_WORKERS} threads"));
    }
    Ok(n)
}

/// Logs to stderr, filtered by `CALLVCR_LOG` (default `info`): JSON lines, or text with colour only
/// on a terminal. Stdout stays free for what commands print.
fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CALLVCR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if json {
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Prints `callvcr: error: <msg>` and gives [`EXIT_USAGE`]: every refusal before serving exits 2.
pub(crate) fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("callvcr: error: {msg}");
    EXIT_USAGE
}

/// The configuration: `path` when given, else `./proxy.yaml` when present, else the defaults.
pub(crate) fn load_config(path: Option<&Path>) -> Result<Config, String> {
    match path {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None if Path::new("proxy.yaml").exists() => Config::load(Path::new("proxy.yaml")).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

/// Listener flags over `proxy.yaml`'s `listen:` addresses.
fn apply_common(cfg: &mut Config, c: &Common) {
    if let Some(a) = &c.listen {
        cfg.listen.tls = a.clone();
    }
    if let Some(a) = &c.proxy_listen {
        cfg.listen.proxy = a.clone();
    }
    if let Some(a) = &c.admin {
        cfg.listen.admin = a.clone();
    }
}

/// What ends a serving callvcr, given its bound addresses: a signal, or a command finishing.
type Until = Box<dyn FnOnce(crate::server::Addrs) -> futures_util::future::BoxFuture<'static, ()> + Send>;

/// Ends on SIGINT/SIGTERM.
fn on_signal() -> Until {
    Box::new(|_| Box::pin(wait_for_signal()))
}

/// Starts `server`, tells `--ready-file` where it listens, serves until `until` completes, then
/// shuts down in order; returns what it did, or an exit code.
async fn serve(server: Server, common: &Common, until: Until) -> Result<Stopped, i32> {
    let running = server.start().await.map_err(fail)?;
    let addrs = running.addresses;
    if let Some(path) = &common.ready_file {
        // `workers`: the threads serving connections, as the runtime counts them.
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        let j = serde_json::json!({"tls": addrs.tls.to_string(), "proxy": addrs.proxy.to_string(), "admin": addrs.admin.to_string(), "workers": workers});
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, j.to_string()).and_then(|_| std::fs::rename(&tmp, path)) {
            let _ = running.shutdown().await;
            return Err(fail(format!("cannot write the ready file {}: {e}", path.display())));
        }
    }
    let status = (std::io::IsTerminal::is_terminal(&std::io::stderr()) && !common_quiet())
        .then(|| tokio::spawn(status_line(running.proxy().clone())));
    until(addrs).await;
    if let Some(s) = status {
        s.abort();
        eprint!("\r\x1b[2K");
    }
    running.shutdown().await.map_err(|e| {
        eprintln!("callvcr: error: {e}");
        EXIT_USAGE
    })
}

/// Whether the live status line is off (logs as JSON, or CALLVCR_NO_STATUS set).
fn common_quiet() -> bool {
    JSON_LOGS.load(Ordering::Relaxed) || std::env::var_os("CALLVCR_NO_STATUS").is_some()
}

/// Set once at start from `--log-format json`: the status line would break JSON log lines.
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// On a terminal: one line, redrawn twice a second, with the counters that matter.
async fn status_line(proxy: Arc<Proxy>) {
    use std::io::Write;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let s = &proxy.stats;
        let line = format!(
            "[callvcr {}] hits {} · misses {} · recorded {} · upstream errors {}",
            proxy.mode.as_str(),
            s.hits.get(),
            s.misses.load(Ordering::Relaxed),
            s.recorded.load(Ordering::Relaxed),
            s.upstream_errors.load(Ordering::Relaxed),
        );
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }
}

/// Waits for Ctrl-C or (on Unix) SIGTERM, whichever comes first.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `--resolve HOST=ADDR:PORT` flags as (lower-case host, address) pairs.
fn parse_resolve(list: &[String]) -> Result<Vec<(String, SocketAddr)>, String> {
    list.iter()
        .map(|r| {
            let (h, a) = r.split_once('=').ok_or_else(|| format!("--resolve `{r}`: expected HOST=ADDR:PORT"))?;
            let addr: SocketAddr = a.parse().map_err(|_| format!("--resolve `{r}`: `{a}` is not ADDR:PORT"))?;
            Ok((h.to_ascii_lowercase(), addr))
        })
        .collect()
}

/// `callvcr record` until a signal.
async fn run_record(a: RecordArgs) -> i32 {
    run_record_until(a, on_signal()).await
}

/// Records until `until` ends, then prints the summary; exit 0, or 2 when it could not start.
async fn run_record_until(a: RecordArgs, until: Until) -> i32 {
    let mut cfg = match load_config(a.common.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    apply_common(&mut cfg, &a.common);
    match parse_resolve(&a.common.resolve) {
        Ok(list) => cfg.resolve.extend(list),
        Err(e) => return fail(e),
    }
    if let Some(ca) = &a.common.upstream_ca {
        cfg.upstream_extra_ca = Some(ca.clone());
    }
    use crate::server::RecordInto;
    let how = match (a.missing, a.by_scope) {
        (true, _) => RecordInto::Missing,
        (false, true) => RecordInto::ByScope,
        (false, false) => RecordInto::Fresh,
    };
    let server = match Server::record(cfg, &a.common.certs, &a.common.cassettes, &a.cassette, how) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let Stopped { proxy, name } = match serve(server, &a.common, until).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let s = &proxy.stats;
    eprintln!(
        "callvcr: record summary for `{name}`: {} exchanges and {} WebSocket frames stored, {} replayed, {} passed through unrecorded, {} upstream failures",
        s.recorded.load(Ordering::Relaxed),
        s.frames.load(Ordering::Relaxed),
        s.hits.get(),
        s.passthrough.load(Ordering::Relaxed),
        s.upstream_errors.load(Ordering::Relaxed),
    );
    EXIT_OK
}

/// `callvcr replay` until a signal.
async fn run_replay(a: ReplayArgs) -> i32 {
    run_replay_until(a, on_signal()).await
}

/// Replays until `until` ends, then prints the summary and every miss; exit 1 when `--strict` saw
/// a miss or `--fail-on-unused` an unused recording, 2 when it could not start, else 0.
async fn run_replay_until(a: ReplayArgs, until: Until) -> i32 {
    let mut cfg = match load_config(a.common.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    apply_common(&mut cfg, &a.common);
    if let Err(e) = parse_resolve(&a.common.resolve) {
        return fail(e);
    }
    for n in &a.no_overlay {
        match crate::overlay::check_name(n.trim()) {
            Ok(name) => {
                if !cfg.overlays_disabled.contains(&name) {
                    cfg.overlays_disabled.push(name)
                }
            }
            Err(m) => return fail(format!("--no-overlay: {m}")),
        }
    }
    if a.clock_frozen {
        cfg.clock_frozen = true;
    }
    if let Some(t) = &a.clock_start {
        match crate::clock::parse_rfc3339(t) {
            Some(ms) => cfg.clock_start_ms = Some(ms),
            None => {
                return fail(format!(
                    "--clock-start: `{t}` is not an RFC 3339 time (expected e.g. 2026-01-05T09:00:00Z)"
                ))
            }
        }
    }
    if let Some(t) = &a.time_shift {
        match crate::config::ShiftMode::parse(t) {
            Some(m) => cfg.time_shift = m,
            None => return fail(format!("--time-shift: `{t}` is not a mode (off, headers or all)")),
        }
    }
    if let Some(seed) = a.seed {
        cfg.seed = seed;
    }
    if let Some(sp) = &a.ws_speed {
        match crate::config::ws_speed(Some(sp)) {
            Ok(v) => cfg.ws_speed = v,
            Err(m) => return fail(format!("--ws-speed: {m}")),
        }
    }
    let server = match Server::replay(cfg, &a.common.certs, &a.common.cassettes, &a.cassette) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let Stopped { proxy: p, name } = match serve(server, &a.common, until).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let hits = p.stats.hits.get();
    let misses = p.stats.misses.load(Ordering::Relaxed);
    let idx = p.index();
    let unused = p.unused();
    eprintln!(
        "callvcr: replay summary for `{name}`: {hits} hits, {misses} misses, {} of {} recordings never replayed",
        unused.len(),
        idx.len()
    );
    for m in p.missed() {
        eprintln!("  miss: {m}");
    }
    if let Some(path) = &a.report {
        if let Err(e) = std::fs::write(path, p.junit()) {
            eprintln!("callvcr: cannot write the report {}: {e}", path.display());
            return EXIT_USAGE;
        }
        eprintln!("callvcr: report written to {}", path.display());
    }
    if a.fail_on_unused {
        for u in &unused {
            eprintln!("  unused: {u}");
        }
    }
    if (a.strict || a.fail_on_unused) && misses > 0 {
        eprintln!("callvcr: strict replay failed: {misses} request(s) missed");
        return EXIT_STRICT;
    }
    if a.fail_on_unused && !unused.is_empty() {
        eprintln!("callvcr: {} recorded exchange(s) were never replayed", unused.len());
        return EXIT_STRICT;
    }
    EXIT_OK
}

/// `callvcr run`: callvcr around one command.
async fn run_command(mut r: RunArgs) -> i32 {
    let common = &mut r.replay.common;
    // Free ports unless given: runs must not collide with another callvcr. With --hosts the SDK
    // dials port 443, so the TLS listener takes it.
    if common.listen.is_none() {
        common.listen = Some(if r.hosts { "127.0.0.1:443".into() } else { "127.0.0.1:0".into() });
    }
    common.proxy_listen.get_or_insert_with(|| "127.0.0.1:0".into());
    common.admin.get_or_insert_with(|| "127.0.0.1:0".into());
    let certs = common.certs.clone();
    let cfg = match load_config(common.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    // The CA must exist before the child is told to trust it.
    if let Err(e) = crate::server::load_ca(&certs, &cfg) {
        return fail(e);
    }
    let (bundle, system) = match crate::run::write_bundle(&certs) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    if system.is_none() {
        tracing::warn!("no system CA bundle found: {} holds callvcr's CA only", bundle.display());
    }
    let hosts_file = if r.hosts {
        let mut names = cfg.concrete_hosts();
        if let Ok((_, c)) = crate::cassette::store::load(&r.replay.cassette, &r.replay.common.cassettes) {
            for e in c.exchanges {
                let h = e.request.host.split(':').next().unwrap_or("").to_string();
                if !h.is_empty() && !names.contains(&h) {
                    names.push(h);
                }
            }
        }
        let path = std::env::temp_dir().join(format!("callvcr-hosts-{}", std::process::id()));
        if let Err(e) = crate::run::write_hosts(&names, &path) {
            return fail(e);
        }
        Some(path)
    } else {
        None
    };
    let mut cmd = match crate::run::command(&r.cmd, hosts_file.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let status: Arc<std::sync::Mutex<Option<i32>>> = Arc::new(std::sync::Mutex::new(None));
    let started: Arc<std::sync::atomic::AtomicBool> = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (st, go) = (status.clone(), started.clone());
    let ca = certs.join(tls::CA_CERT_FILE);
    let redirect = if r.hosts { "hosts" } else { "proxy" };
    let shown = r.cmd.join(" ");
    let until: Until = Box::new(move |addrs| {
        Box::pin(async move {
            for (k, v) in crate::run::child_env(&addrs, &ca, &bundle, redirect) {
                cmd.env(k, v);
            }
            cmd.kill_on_drop(true);
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("cannot run `{shown}`: {e}");
                    // As a shell says of a command it cannot run.
                    *st.lock().unwrap_or_else(|e| e.into_inner()) = Some(127);
                    return;
                }
            };
            go.store(true, Ordering::Relaxed);
            tracing::info!(redirect, "running `{shown}` through callvcr");
            tokio::select! {
                s = child.wait() => {
                    let code = s.ok().and_then(|s| s.code());
                    tracing::info!("`{shown}` exited with {}", code.map(|c| c.to_string()).unwrap_or_else(|| "a signal".into()));
                    *st.lock().unwrap_or_else(|e| e.into_inner()) = code;
                }
                _ = wait_for_signal() => {
                    tracing::warn!("interrupted: stopping `{shown}`");
                    let _ = child.kill().await;
                }
            }
        })
    });
    let code = if r.record {
        let a = RecordArgs {
            cassette: r.replay.cassette.clone(),
            missing: r.missing,
            by_scope: r.by_scope,
            common: r.replay.common.clone(),
        };
        run_record_until(a, until).await
    } else {
        run_replay_until(r.replay, until).await
    };
    if let Some(h) = hosts_file {
        let _ = std::fs::remove_file(h);
    }
    if code == EXIT_USAGE && !started.load(Ordering::Relaxed) {
        return EXIT_USAGE;
    }
    let child = *status.lock().unwrap_or_else(|e| e.into_inner());
    crate::run::exit_code(child, code)
}

/// `callvcr ca init` and `callvcr ca show` (the trust step for each runtime).
fn run_ca(c: CaCmd) -> i32 {
    match c {
        CaCmd::Init { force, config, certs } => {
            let cfg = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            let domains = cfg.constraint_domains();
            match tls::init_ca(&certs, &domains, force, &Clock::system()) {
                Ok(info) => {
                    println!(
                        "created {} (key {}, mode 0600)",
                        info.cert_path.display(),
                        certs.join(tls::CA_KEY_FILE).display()
                    );
                    println!("valid only for: {}", info.permitted.join(", "));
                    println!(
                        "next: trust it in your runtime; `callvcr ca show --certs {}` prints how",
                        certs.display()
                    );
                    EXIT_OK
                }
                Err(e) => fail(e),
            }
        }
        CaCmd::Show { certs } => {
            let path = certs.join(tls::CA_CERT_FILE);
            let info = match tls::ca_info(&path) {
                Ok(i) => i,
                Err(_) if !path.exists() => {
                    return fail(format!("no CA at {}; run `callvcr ca init` first", path.display()))
                }
                Err(e) => return fail(e),
            };
            let abs = std::fs::canonicalize(&path).unwrap_or(path.clone());
            let p = abs.display();
            println!("CA certificate: {p}");
            println!("expires:        {}", rfc3339_ms(info.not_after * 1000));
            println!("valid only for: {}", info.permitted.join(", "));
            println!();
            println!("Trust it, per runtime:");
            println!("  OpenSSL-based tools   export SSL_CERT_FILE={p}   (replaces the default bundle: combine it with your system roots if other hosts are reached)");
            println!("  Python requests       export REQUESTS_CA_BUNDLE={p}");
            println!("  Node.js               export NODE_EXTRA_CA_CERTS={p}   (added to Node's roots)");
            println!("  curl                  curl --cacert {p} https://api.mypurecloud.com/...");
            println!("  Java                  keytool -importcert -noprompt -alias callvcr -file {p} -keystore callvcr.jks -storepass changeit");
            println!("                        then run with -Djavax.net.ssl.trustStore=callvcr.jks -Djavax.net.ssl.trustStorePassword=changeit");
            println!("  Genesys Python SDK    it ignores the environment; set it in code:");
            println!("                          PureCloudPlatformClientV2.configuration.ssl_ca_cert = \"{p}\"");
            EXIT_OK
        }
    }
}

/// `callvcr hosts`: one hosts-file line per concrete configured host (and, with `--cassette`, every
/// host it recorded), each once.
fn run_hosts(h: HostsArgs) -> i32 {
    let cfg = match load_config(h.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut names = cfg.concrete_hosts();
    if let Some(c) = &h.cassette {
        match crate::cassette::store::load(c, &h.cassettes) {
            Ok((_, all)) => {
                for e in all.exchanges {
                    let host = e.request.host.split(':').next().unwrap_or("").to_string();
                    if !host.is_empty() {
                        names.push(host);
                    }
                }
            }
            Err(e) => return fail(e),
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    println!("# callvcr: point these hosts at callvcr (listen on {}:443)", h.address);
    for n in names {
        println!("{} {}", h.address, n);
    }
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_count_comes_from_the_flag_then_the_environment_then_the_cores() {
        assert_eq!(workers(Some(3), Some("5")), Ok(3));
        assert_eq!(workers(None, Some(" 5 ")), Ok(5));
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        assert_eq!(workers(None, None), Ok(cores.saturating_sub(1).max(1)));
        let e = workers(None, Some("two")).unwrap_err();
        assert!(e.contains("CALLVCR_WORKERS is `two`") && e.contains("whole number"), "{e}");
        let e = workers(Some(0), None).unwrap_err();
        assert!(e.contains("--workers is 0") && e.contains("1 to 256"), "{e}");
        let e = workers(None, Some("100000")).unwrap_err();
        assert!(e.contains("CALLVCR_WORKERS is 100000"), "{e}");
    }
}
