//! `proxy.yaml`: the types, the Genesys and NICE defaults, and validation with `file:line:col` errors.
//! Reads the file and nothing else; flags are applied by the CLI on top of what this returns.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

pub mod stateful;
pub use stateful::{Binding, Collection, StateConfig, Trigger, VersionsConfig};

/// Hosts intercepted when `proxy.yaml` lists none: Genesys Cloud (all regions) and NICE CXone.
pub const DEFAULT_HOSTS: &[&str] = &[
    "api.mypurecloud.com",
    "login.mypurecloud.com",
    "streaming.mypurecloud.com",
    "api.nice-incontact.com",
    "*.mypurecloud.com",
    "*.mypurecloud.ie",
    "*.mypurecloud.de",
    "*.mypurecloud.jp",
    "*.mypurecloud.com.au",
    "*.pure.cloud",
    "*.us-gov-pure.cloud",
    "*.nice-incontact.com",
    "*.niceincontact.com",
];

/// A configuration error, located in the file where that is known.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file the error is in.
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub at: Option<(u64, u64)>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some((l, c)) => write!(f, "{}:{l}:{c}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// The whole of `proxy.yaml`. Every section has defaults, so an empty file is valid.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// Hosts to intercept: exact names or `*.domain` (any depth below `domain`).
    pub hosts: Option<Vec<Spanned<String>>>,
    /// Listener addresses.
    pub listen: ListenConfig,
    /// How to reach the real platform when recording.
    pub upstream: RawUpstream,
    /// What recording stores.
    pub record: RawRecord,
    /// Redaction of secrets before anything is stored.
    pub redact: RedactConfig,
    /// Which parts of a request decide a replay match.
    #[serde(rename = "match")]
    pub matching: MatchConfig,
    /// Size limits on what clients may send.
    pub limits: LimitsConfig,
    /// Seed for ids callvcr invents.
    pub seed: u64,
    /// The admin API.
    pub admin: AdminConfig,
    /// The virtual clock.
    pub clock: RawClock,
    /// Which overlays run in replay.
    pub overlays: RawOverlays,
    /// The auth overlay.
    pub auth: RawAuth,
    /// The rate-limit overlay.
    pub rate_limit: RawRateLimit,
    /// The faults overlay.
    pub faults: RawFaults,
    /// WebSocket replay.
    pub ws: WsConfig,
    /// The validation overlay.
    pub validate: RawValidate,
    /// The state overlay: call state machines.
    pub state: stateful::RawState,
    /// The CRUD overlay: root collections.
    pub crud: stateful::RawCrud,
    /// The versions overlay: SDK-version routing.
    pub versions: stateful::RawVersions,
}

/// How strictly a route's requests are checked against the schema inferred from the cassette.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidateMode {
    /// Not checked.
    Off,
    /// Checked; a violation is logged, the request goes on.
    Warn,
    /// Checked; a violation is answered 400 (or 415) in the platform's shape.
    #[default]
    Enforce,
}

/// A route's mode, by method and path regular expression.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawValidateRoute {
    /// Method; absent = any.
    #[serde(default)]
    pub method: Option<String>,
    /// Path regular expression.
    pub path: Spanned<String>,
    /// Its mode.
    pub mode: ValidateMode,
}

/// Fields a route's request body must have, beyond what inference found.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequired {
    /// Method; absent = any.
    #[serde(default)]
    pub method: Option<String>,
    /// Path regular expression.
    pub path: Spanned<String>,
    /// Top-level field names.
    pub fields: Vec<String>,
}

/// The validation overlay as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawValidate {
    /// The mode of routes no rule names (default `enforce`).
    pub mode: ValidateMode,
    /// Per-route modes, first match applies.
    pub routes: Vec<RawValidateRoute>,
    /// Required fields pinned per route.
    pub required: Vec<RawRequired>,
}

/// A validated per-route rule.
#[derive(Debug, Clone)]
pub struct RouteRule<T> {
    /// Method (upper case); `None` = any.
    pub method: Option<String>,
    /// Path pattern.
    pub path: regex::Regex,
    /// What applies.
    pub value: T,
}

impl<T> RouteRule<T> {
    /// Whether it applies to `method` and `path`.
    pub fn applies(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method)) && self.path.is_match(path)
    }
}

/// The validation overlay, validated.
#[derive(Debug, Clone, Default)]
pub struct ValidateConfig {
    /// Default mode.
    pub mode: ValidateMode,
    /// Per-route modes.
    pub routes: Vec<RouteRule<ValidateMode>>,
    /// Pinned required fields.
    pub required: Vec<RouteRule<Vec<String>>>,
}

/// What happens when a session's outbound queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFull {
    /// The sender waits for room (recorded frames and pushed events are held back).
    #[default]
    Wait,
    /// The oldest queued frame is dropped, with a log line.
    DropOldest,
    /// The session is closed (code 1008).
    Close,
}

/// WebSocket replay settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    /// Concurrent sessions allowed; the next upgrade gets 503.
    pub max_sessions: usize,
    /// Frames a session's outbound queue holds.
    pub queue: usize,
    /// What happens when that queue is full.
    pub on_full: OnFull,
    /// Genesys heartbeat interval in virtual seconds; absent = as recorded (else 30); 0 = none.
    pub heartbeat_s: Option<u64>,
    /// Send a PING control frame every this many virtual seconds (0 = never; the seed design's 15).
    pub ping_s: u64,
    /// Close (1011) when no PONG arrives within this many virtual seconds of a PING.
    pub pong_timeout_s: u64,
    /// Pacing of frames recorded on their own: a factor on recorded gaps (2 = twice as fast), or
    /// `instant`.
    pub speed: Option<String>,
    /// Largest message a client may send, in bytes (more → close 1009).
    pub max_message_bytes: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_sessions: 64,
            queue: 256,
            on_full: OnFull::Wait,
            heartbeat_s: None,
            ping_s: 0,
            pong_timeout_s: 5,
            speed: None,
            max_message_bytes: 1 << 20,
        }
    }
}

/// A pacing factor from `ws.speed` or `--ws-speed`: `None` = instant.
pub fn ws_speed(s: Option<&str>) -> Result<Option<f64>, String> {
    match s.map(str::trim) {
        None => Ok(Some(1.0)),
        Some("instant") => Ok(None),
        Some(x) => match x.parse::<f64>() {
            Ok(f) if f > 0.0 && f.is_finite() => Ok(Some(f)),
            _ => Err(format!(
                "`{x}` is not a speed: use a factor above 0 (1 = as recorded, 2 = twice as fast) or `instant`"
            )),
        },
    }
}

/// The faults overlay as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawFaults {
    /// Honour `?failure=timeout|rate_limit|socket_drop` on any request (default true).
    pub query_trigger: Option<bool>,
    /// How long `?failure=timeout` waits before its 504, in virtual milliseconds (default 5000).
    pub query_timeout_ms: Option<u64>,
    /// Rules active from the start, in the admin API's shape.
    pub rules: Vec<Spanned<serde_json::Value>>,
}

/// The faults overlay, validated.
#[derive(Debug, Clone)]
pub struct FaultsConfig {
    /// Whether `?failure=` works.
    pub query_trigger: bool,
    /// The wait before `?failure=timeout` answers 504.
    pub query_timeout_ms: u64,
    /// Rules active from the start (checked).
    pub rules: Vec<serde_json::Value>,
}

/// The virtual clock as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawClock {
    /// Time moves only when a test advances it.
    pub frozen: bool,
    /// Where virtual time starts (RFC 3339); default: now.
    pub start: Option<Spanned<String>>,
}

/// Overlay switches as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawOverlays {
    /// Overlays switched off (`faults`, `auth`, `rate-limit`, `versions`, `validate`, `state`, `crud`).
    pub disable: Vec<Spanned<String>>,
}

/// What to do with a refresh for a client whose previous refresh is still in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConcurrentRefresh {
    /// Answer 409 Conflict.
    #[default]
    Reject,
    /// Wait for the first refresh to finish, then handle it.
    Queue,
}

/// One OAuth client the auth overlay accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthClient {
    /// Client id (Genesys) or access key id (NICE).
    pub id: String,
    /// Client secret or access key secret; absent = any secret (or none, for PKCE public clients).
    #[serde(default)]
    pub secret: Option<String>,
}

/// Token lifetimes per platform, in seconds. Unset, a token lives as long as the recording shows
/// the platform's living (`expires_in` of a recorded token answer), else 86,400 s (Genesys) and
/// 3,600 s (NICE).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenTtl {
    /// Genesys Cloud access tokens.
    pub genesys: Option<u64>,
    /// NICE CXone access tokens.
    pub nice: Option<u64>,
}

/// The auth overlay as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAuth {
    /// Clients accepted; empty = any client id and secret.
    pub clients: Vec<AuthClient>,
    /// Access-token lifetimes.
    pub ttl_s: TokenTtl,
    /// Refresh-token lifetime.
    pub refresh_ttl_s: u64,
    /// A refresh while another for the same client is in flight: `reject` (409) or `queue`.
    pub concurrent_refresh: ConcurrentRefresh,
    /// How long a refresh takes, in virtual milliseconds (opens the window for concurrent refreshes).
    pub refresh_delay_ms: u64,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            clients: Vec::new(),
            ttl_s: TokenTtl::default(),
            refresh_ttl_s: 30 * 86_400,
            concurrent_refresh: ConcurrentRefresh::Reject,
            refresh_delay_ms: 0,
        }
    }
}

/// What a rate-limit bucket is kept per.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateKey {
    /// One bucket per access token.
    #[default]
    Token,
    /// One bucket per OAuth client (all its tokens together).
    Client,
}

/// A rate-limit rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateRule {
    /// Host pattern (exact or `*.domain`); absent = every host.
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    /// Path regular expression; absent = every path.
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// Bucket per `token` or per `client`.
    #[serde(default)]
    pub per: RateKey,
    /// Requests allowed per window.
    pub limit: Spanned<u64>,
    /// Window in seconds.
    pub window_s: Spanned<u64>,
}

/// The rate-limit overlay as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRateLimit {
    /// `genesys` (default: 300 per 60 s per token on Genesys API paths) or `strict` (5 per second per
    /// token on every API path); ignored when `rules` are given.
    pub preset: Option<Spanned<String>>,
    /// Rules, first match applies.
    pub rules: Option<Vec<RawRateRule>>,
    /// Send `inin-ratelimit-count`, `-allowed` and `-reset` on Genesys answers: `true` always,
    /// `false` never; unset, where the recording's answers from that host carry them.
    pub headers: Option<bool>,
}

/// A validated rate-limit rule.
#[derive(Debug, Clone)]
pub struct RateRule {
    /// Hosts it applies to; `None` = all.
    pub host: Option<HostPattern>,
    /// Paths it applies to; `None` = all.
    pub path: Option<regex::Regex>,
    /// What a bucket is kept per.
    pub per: RateKey,
    /// Requests per window.
    pub limit: u64,
    /// Window, in milliseconds.
    pub window_ms: u64,
}

impl RateRule {
    /// Whether the rule applies to a request for `host` and `path`.
    pub fn applies(&self, host: &str, path: &str) -> bool {
        self.host.as_ref().is_none_or(|h| h.matches(host)) && self.path.as_ref().is_none_or(|p| p.is_match(path))
    }

    /// `300 per 60 s per token on *.mypurecloud.com ^/api/v2/`.
    pub fn describe(&self) -> String {
        let per = match self.per {
            RateKey::Token => "token",
            RateKey::Client => "client",
        };
        let host = match &self.host {
            Some(HostPattern::Exact(h)) => h.clone(),
            Some(HostPattern::Below(d)) => format!("*.{d}"),
            None => "any host".into(),
        };
        let path = self.path.as_ref().map(|p| p.as_str().to_string()).unwrap_or_else(|| "any path".into());
        format!("{} per {} ms per {per} on {host} {path}", self.limit, self.window_ms)
    }
}

/// The Genesys API paths rate limits and auth checks apply to.
pub const GENESYS_API_PATH: &str = "^/api/v2/";

/// Listener addresses (`host:port`; port 0 picks a free one).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// The transparent TLS listener (SNI decides the host).
    pub tls: String,
    /// The HTTP listener: CONNECT, absolute-form and origin-form requests.
    pub proxy: String,
    /// The admin API.
    pub admin: String,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig { tls: "127.0.0.1:9443".into(), proxy: "127.0.0.1:8080".into(), admin: "127.0.0.1:9901".into() }
    }
}

/// Upstream settings as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawUpstream {
    /// Extra CA (PEM) trusted for the sandbox, added to the compiled-in web roots.
    pub extra_ca: Option<Spanned<String>>,
    /// `host: addr:port` overrides; `*` sends every configured host to one address.
    pub resolve: BTreeMap<String, Spanned<String>>,
    /// Connect timeout in milliseconds (default 10 000).
    pub connect_timeout_ms: Option<u64>,
    /// Whole-exchange timeout in milliseconds (default 60 000).
    pub timeout_ms: Option<u64>,
    /// DNS servers (`ip:port`) to ask instead of the system's; the hosts file is never read either way.
    pub nameservers: Vec<Spanned<String>>,
}

/// Recording settings as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRecord {
    /// Hosts and paths that pass through without being recorded.
    pub ignore: Vec<RawIgnore>,
}

/// One pass-through rule: a host (exact or `*.domain`) and/or a path regular expression.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawIgnore {
    /// Host pattern.
    pub host: Option<String>,
    /// Path regular expression.
    pub path: Option<Spanned<String>>,
}

/// What is redacted before anything reaches a cassette.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedactConfig {
    /// Header names whose values are replaced (case-insensitive).
    pub headers: Vec<String>,
    /// Field names replaced in query strings, form bodies and JSON bodies (any depth).
    pub fields: Vec<String>,
    /// Field names replaced in query strings, form bodies and redirect URLs only: an OAuth `code`
    /// is a secret there, while a JSON `code` is an error code.
    pub query_fields: Vec<String>,
    /// Also replace phone numbers and e-mail addresses in bodies.
    pub pii: bool,
    /// The text that replaces a secret.
    pub replacement: String,
}

impl Default for RedactConfig {
    fn default() -> Self {
        RedactConfig {
            headers: ["authorization", "proxy-authorization", "cookie", "set-cookie"].map(String::from).to_vec(),
            fields: [
                "client_secret",
                "password",
                "access_token",
                "refresh_token",
                "id_token",
                "accessKeySecret",
                "code_verifier",
            ]
            .map(String::from)
            .to_vec(),
            query_fields: vec!["code".into()],
            pii: false,
            replacement: crate::cassette::redact::MARKER.into(),
        }
    }
}

/// Which parts of a request decide a replay match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchConfig {
    /// Request headers that take part in the fingerprint (none by default).
    pub headers: Vec<String>,
    /// JSON paths (`a.b`, `items.*.id`) ignored when comparing bodies.
    pub ignore_json_paths: Vec<String>,
    /// Query parameters ignored when comparing queries.
    pub ignore_query: Vec<String>,
}

/// Size limits on client input.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request head (request line and headers), in bytes; more → 431.
    pub max_header_bytes: usize,
    /// Largest request or response body, in bytes; more → 413 (request) or 502 (response).
    pub max_body_bytes: usize,
    /// How long a client may take to send a request head, or leave an HTTP/1 connection idle between
    /// requests, in ms (then the connection is closed), and to send a request body once its head
    /// arrived (then 408). Real time: slow clients, not overlays.
    pub read_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig { max_header_bytes: 64 * 1024, max_body_bytes: 32 * 1024 * 1024, read_timeout_ms: 30_000 }
    }
}

/// The admin API's exposure.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Accept callers from off loopback (needs `allowed_hosts`: the names they reach it by).
    pub allow_remote: bool,
    /// When set, every call needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// `Host` names (with or without `:port`) accepted besides the bound address, `localhost`,
    /// `127.0.0.1` and `[::1]` with the admin port: a defence against DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`) whose pages may call the admin API besides its own.
    pub allowed_origins: Vec<String>,
}

/// A host pattern: an exact name or every name below a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this name.
    Exact(String),
    /// Any name below this domain (`*.domain`), at any depth.
    Below(String),
}

impl HostPattern {
    /// Parses `name` or `*.domain`; lower-cases it.
    ///
    /// ```
    /// use callvcr::config::HostPattern;
    /// let p = HostPattern::parse("*.Pure.Cloud").unwrap();
    /// assert!(p.matches("api.usw2.pure.cloud"));
    /// assert!(!p.matches("pure.cloud"));
    /// assert!(!p.matches("notpure.cloud"));
    /// assert!(HostPattern::parse("api.*.com").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let (wild, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, s.clone()),
        };
        if name.is_empty()
            || name.contains('*')
            || !name
                .split('.')
                .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Err(format!(
                "`{s}` is not a host name or `*.domain` pattern (expected e.g. api.mypurecloud.com or *.pure.cloud)"
            ));
        }
        Ok(if wild { HostPattern::Below(name) } else { HostPattern::Exact(name) })
    }

    /// Whether `host` (lower-case, no port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(n) => host == n,
            HostPattern::Below(d) => {
                host.len() > d.len() + 1
                    && host.ends_with(d.as_str())
                    && host.as_bytes()[host.len() - d.len() - 1] == b'.'
            }
        }
    }

    /// The domain a CA name constraint needs to permit this pattern.
    pub fn constraint_domain(&self) -> &str {
        match self {
            HostPattern::Exact(n) | HostPattern::Below(n) => n,
        }
    }
}

/// A compiled pass-through rule.
#[derive(Debug, Clone)]
pub struct IgnoreRule {
    /// Host pattern, if any.
    pub host: Option<HostPattern>,
    /// Path expression, if any.
    pub path: Option<regex::Regex>,
}

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (for messages), if a file.
    pub source: Option<PathBuf>,
    /// Intercepted hosts.
    pub hosts: Vec<HostPattern>,
    /// Listener addresses.
    pub listen: ListenConfig,
    /// Extra CA for the upstream.
    pub upstream_extra_ca: Option<PathBuf>,
    /// Resolve overrides: host (or `*`) → address.
    pub resolve: BTreeMap<String, SocketAddr>,
    /// Connect timeout.
    pub connect_timeout_ms: u64,
    /// Whole-exchange timeout.
    pub upstream_timeout_ms: u64,
    /// DNS servers to use instead of the system's (empty: the system's).
    pub nameservers: Vec<SocketAddr>,
    /// Pass-through rules.
    pub record_ignore: Vec<IgnoreRule>,
    /// Redaction.
    pub redact: RedactConfig,
    /// Matching.
    pub matching: MatchConfig,
    /// Limits.
    pub limits: LimitsConfig,
    /// Id seed.
    pub seed: u64,
    /// Admin API.
    pub admin: AdminConfig,
    /// The virtual clock is frozen (moves only when advanced).
    pub clock_frozen: bool,
    /// Where virtual time starts, in ms since the epoch; `None` = now.
    pub clock_start_ms: Option<i64>,
    /// Overlays switched off.
    pub overlays_disabled: Vec<&'static str>,
    /// The auth overlay's settings.
    pub auth: RawAuth,
    /// Rate-limit rules, first match applies.
    pub rate_rules: Vec<RateRule>,
    /// Whether Genesys answers carry the `inin-ratelimit-*` headers (`None`: as the recording shows).
    pub rate_headers: Option<bool>,
    /// The faults overlay's settings.
    pub faults: FaultsConfig,
    /// WebSocket replay settings.
    pub ws: WsConfig,
    /// Pacing factor for frames recorded on their own; `None` = instant.
    pub ws_speed: Option<f64>,
    /// The validation overlay's settings.
    pub validate: ValidateConfig,
    /// The state overlay's machines and bindings.
    pub state: StateConfig,
    /// The CRUD overlay's root collections.
    pub crud: Vec<Collection>,
    /// The versions overlay's settings.
    pub versions: VersionsConfig,
}

impl Config {
    /// Whether the overlay `name` is switched on.
    pub fn overlay_on(&self, name: &str) -> bool {
        !self.overlays_disabled.contains(&name)
    }
}

/// The rules of a rate-limit preset: `genesys`, `strict` or `none`.
pub fn rate_preset(name: &str) -> Option<Vec<RateRule>> {
    let api = |p: &str| Some(regex::Regex::new(p).expect("preset path parses"));
    match name {
        "genesys" => Some(
            crate::platform::Platform::Genesys
                .domains()
                .iter()
                .map(|d| RateRule {
                    host: Some(HostPattern::Below(d.to_string())),
                    path: api(GENESYS_API_PATH),
                    per: RateKey::Token,
                    limit: 300,
                    window_ms: 60_000,
                })
                .collect(),
        ),
        "strict" => Some(vec![RateRule {
            host: None,
            path: api(r"^/(api/v\d+|incontactapi|inContactAPI)/"),
            per: RateKey::Token,
            limit: 5,
            window_ms: 1_000,
        }]),
        "none" => Some(Vec::new()),
        _ => None,
    }
}

impl Default for Config {
    fn default() -> Self {
        validate(RawConfig::default(), None, "").expect("the defaults are valid")
    }
}

impl Config {
    /// Loads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            at: None,
            message: format!("cannot read the configuration file: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates YAML text; `path` names it in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| yaml_error(e, path, text))?
        };
        validate(raw, Some(path), text)
    }

    /// Whether callvcr intercepts `host` (any case, no port).
    pub fn is_configured_host(&self, host: &str) -> bool {
        let h = host.trim_end_matches('.');
        // Every request asks: copy only when the name is not already lower case.
        if h.bytes().any(|b| b.is_ascii_uppercase()) {
            let lower = h.to_ascii_lowercase();
            return self.hosts.iter().any(|p| p.matches(&lower));
        }
        self.hosts.iter().any(|p| p.matches(h))
    }

    /// The domains the CA's name constraints permit: one per pattern, with names already
    /// covered by another entry left out.
    pub fn constraint_domains(&self) -> Vec<String> {
        let mut all: Vec<String> = self.hosts.iter().map(|p| p.constraint_domain().to_string()).collect();
        all.sort();
        all.dedup();
        let covered = |d: &str, by: &str| d != by && d.ends_with(by) && d.as_bytes()[d.len() - by.len() - 1] == b'.';
        all.iter().filter(|d| !all.iter().any(|o| covered(d, o))).cloned().collect()
    }

    /// Concrete (non-wildcard) configured host names, for a hosts file.
    pub fn concrete_hosts(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter_map(|p| match p {
                HostPattern::Exact(n) => Some(n.clone()),
                HostPattern::Below(_) => None,
            })
            .collect()
    }

    /// Whether a request to `host` + `path` passes through unrecorded.
    pub fn is_ignored(&self, host: &str, path: &str) -> bool {
        self.record_ignore.iter().any(|r| {
            r.host.as_ref().is_none_or(|h| h.matches(host)) && r.path.as_ref().is_none_or(|p| p.is_match(path))
        })
    }
}

fn yaml_error(e: serde_saphyr::Error, path: &Path, text: &str) -> ConfigError {
    let at = e.location().map(|l| (l.line(), l.column()));
    // The crate's message carries its own position; keep only what is wrong.
    let full = e.to_string();
    let mut message = full.lines().next().unwrap_or("").trim().to_string();
    for prefix in ["error: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            message = rest.to_string();
        }
    }
    if let Some(i) = message.find(": ").filter(|_| message.starts_with("line ")) {
        message = message[i + 2..].to_string();
    }
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    let message = message
        .replace("invalid u64", "expected a whole number")
        .replace("invalid usize", "expected a whole number")
        .replace("invalid bool", "expected true or false");
    let message = match at.and_then(|(l, _)| text.lines().nth(l.saturating_sub(1) as usize)) {
        Some(line) if !line.trim().is_empty() => format!("{message} (the line reads `{}`)", line.trim()),
        _ => message,
    };
    ConfigError { file: path.to_path_buf(), at, message }
}

fn validate(raw: RawConfig, path: Option<&Path>, _text: &str) -> Result<Config, ConfigError> {
    let file = path.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("<defaults>"));
    let err_at = |loc: serde_saphyr::Location, message: String| ConfigError {
        file: file.clone(),
        at: Some((loc.line(), loc.column())),
        message,
    };
    let err = |message: String| ConfigError { file: file.clone(), at: None, message };

    let hosts = match &raw.hosts {
        None => DEFAULT_HOSTS.iter().map(|h| HostPattern::parse(h).expect("default hosts parse")).collect(),
        Some(list) => {
            if list.is_empty() {
                return Err(err(
                    "`hosts` is empty: list the hosts to intercept, or remove the key to use the Genesys and NICE defaults"
                        .into(),
                ));
            }
            let mut out = Vec::new();
            for h in list {
                out.push(HostPattern::parse(&h.value).map_err(|m| err_at(h.referenced, m))?);
            }
            out
        }
    };

    for (name, addr) in [("tls", &raw.listen.tls), ("proxy", &raw.listen.proxy), ("admin", &raw.listen.admin)] {
        if addr.parse::<SocketAddr>().is_err() {
            return Err(err(format!(
                "listen.{name}: `{addr}` is not an address (expected host:port, e.g. 127.0.0.1:9443)"
            )));
        }
    }

    let mut resolve = BTreeMap::new();
    for (host, addr) in &raw.upstream.resolve {
        let a: SocketAddr = addr.value.parse().map_err(|_| {
            err_at(
                addr.referenced,
                format!(
                    "upstream.resolve.{host}: `{}` is not an address (expected ip:port, e.g. 10.0.0.5:443)",
                    addr.value
                ),
            )
        })?;
        resolve.insert(host.to_ascii_lowercase(), a);
    }

    let mut nameservers = Vec::new();
    for n in &raw.upstream.nameservers {
        nameservers.push(n.value.parse::<SocketAddr>().map_err(|_| {
            err_at(
                n.referenced,
                format!("upstream.nameservers: `{}` is not an address (expected ip:port, e.g. 10.0.0.2:53)", n.value),
            )
        })?);
    }

    let mut record_ignore = Vec::new();
    for r in &raw.record.ignore {
        let host = match &r.host {
            Some(h) => Some(HostPattern::parse(h).map_err(err)?),
            None => None,
        };
        let path = match &r.path {
            Some(p) => Some(regex::Regex::new(&p.value).map_err(|e| {
                err_at(p.referenced, format!("record.ignore path `{}` is not a regular expression: {e}", p.value))
            })?),
            None => None,
        };
        if host.is_none() && path.is_none() {
            return Err(err("record.ignore: each rule needs a `host`, a `path`, or both".into()));
        }
        record_ignore.push(IgnoreRule { host, path });
    }

    if raw.limits.max_header_bytes < 1024 {
        return Err(err("limits.max_header_bytes must be at least 1024".into()));
    }
    if raw.limits.read_timeout_ms < 100 {
        return Err(err("limits.read_timeout_ms must be at least 100".into()));
    }
    if raw.redact.replacement.is_empty() {
        return Err(err("redact.replacement must not be empty".into()));
    }

    let clock_start_ms = match &raw.clock.start {
        Some(s) => Some(crate::clock::parse_rfc3339(&s.value).ok_or_else(|| {
            err_at(
                s.referenced,
                format!("clock.start: `{}` is not an RFC 3339 time (expected e.g. 2026-01-05T09:00:00Z)", s.value),
            )
        })?),
        None => None,
    };
    let mut overlays_disabled = Vec::new();
    for n in &raw.overlays.disable {
        overlays_disabled.push(
            crate::overlay::check_name(&n.value).map_err(|m| err_at(n.referenced, format!("overlays.disable: {m}")))?,
        );
    }
    let mut seen = std::collections::HashSet::new();
    for c in &raw.auth.clients {
        if c.id.is_empty() {
            return Err(err("auth.clients: a client needs a non-empty `id`".into()));
        }
        if !seen.insert(c.id.as_str()) {
            return Err(err(format!("auth.clients: `{}` is listed twice", c.id)));
        }
    }
    if raw.admin.allow_remote && raw.admin.allowed_hosts.is_empty() {
        return Err(err(
            "admin.allow_remote: true needs admin.allowed_hosts, the names remote callers reach the admin API by (e.g. [ci-runner.internal:9901]); other Host headers are refused, against DNS rebinding".into(),
        ));
    }
    if raw.auth.ttl_s.genesys == Some(0) || raw.auth.ttl_s.nice == Some(0) || raw.auth.refresh_ttl_s == 0 {
        return Err(err(
            "auth: token lifetimes (ttl_s.genesys, ttl_s.nice, refresh_ttl_s) must be at least 1 second".into()
        ));
    }
    let rate_rules = match (&raw.rate_limit.rules, &raw.rate_limit.preset) {
        (Some(rules), _) => {
            let mut out = Vec::new();
            for r in rules {
                let host = match &r.host {
                    Some(h) => Some(
                        HostPattern::parse(&h.value)
                            .map_err(|m| err_at(h.referenced, format!("rate_limit.rules host: {m}")))?,
                    ),
                    None => None,
                };
                let path = match &r.path {
                    Some(p) => Some(regex::Regex::new(&p.value).map_err(|e| {
                        err_at(
                            p.referenced,
                            format!("rate_limit.rules path `{}` is not a regular expression: {e}", p.value),
                        )
                    })?),
                    None => None,
                };
                if r.limit.value == 0 {
                    return Err(err_at(
                        r.limit.referenced,
                        "rate_limit.rules limit must be at least 1 (switch the overlay off to allow everything)".into(),
                    ));
                }
                if r.window_s.value == 0 {
                    return Err(err_at(
                        r.window_s.referenced,
                        "rate_limit.rules window_s must be at least 1 second".into(),
                    ));
                }
                out.push(RateRule { host, path, per: r.per, limit: r.limit.value, window_ms: r.window_s.value * 1000 });
            }
            out
        }
        (None, Some(p)) => rate_preset(&p.value).ok_or_else(|| {
            err_at(
                p.referenced,
                format!("rate_limit.preset: `{}` is not a preset (expected genesys, strict or none)", p.value),
            )
        })?,
        (None, None) => rate_preset("genesys").expect("the default preset exists"),
    };

    let mut fault_rules = Vec::new();
    for (i, r) in raw.faults.rules.iter().enumerate() {
        crate::overlay::faults::Rule::parse(&r.value, format!("f{}", i + 1), 0, raw.seed)
            .map_err(|m| err_at(r.referenced, format!("faults.rules: {m}")))?;
        fault_rules.push(r.value.clone());
    }
    let faults = FaultsConfig {
        query_trigger: raw.faults.query_trigger.unwrap_or(true),
        query_timeout_ms: raw.faults.query_timeout_ms.unwrap_or(5_000),
        rules: fault_rules,
    };

    let ws_speed = ws_speed(raw.ws.speed.as_deref()).map_err(|m| err(format!("ws.speed: {m}")))?;
    let re = |p: &Spanned<String>, what: &str| {
        regex::Regex::new(&p.value)
            .map_err(|e| err_at(p.referenced, format!("{what} path `{}` is not a regular expression: {e}", p.value)))
    };
    let mut validate = ValidateConfig { mode: raw.validate.mode, ..Default::default() };
    for r in &raw.validate.routes {
        validate.routes.push(RouteRule {
            method: r.method.as_ref().map(|m| m.to_ascii_uppercase()),
            path: re(&r.path, "validate.routes")?,
            value: r.mode,
        });
    }
    for r in &raw.validate.required {
        validate.required.push(RouteRule {
            method: r.method.as_ref().map(|m| m.to_ascii_uppercase()),
            path: re(&r.path, "validate.required")?,
            value: r.fields.clone(),
        });
    }
    if raw.ws.queue == 0 || raw.ws.max_sessions == 0 {
        return Err(err("ws.queue and ws.max_sessions must be at least 1".into()));
    }
    let state = stateful::state(&raw.state, &err_at)?;
    let crud = stateful::crud(&raw.crud, &err_at)?;
    let versions = stateful::versions(&raw.versions, &err_at)?;

    Ok(Config {
        source: path.map(Path::to_path_buf),
        hosts,
        listen: raw.listen,
        upstream_extra_ca: raw.upstream.extra_ca.map(|s| PathBuf::from(s.value)),
        resolve,
        connect_timeout_ms: raw.upstream.connect_timeout_ms.unwrap_or(10_000),
        upstream_timeout_ms: raw.upstream.timeout_ms.unwrap_or(60_000),
        nameservers,
        record_ignore,
        redact: raw.redact,
        matching: raw.matching,
        limits: raw.limits,
        seed: raw.seed,
        admin: raw.admin,
        clock_frozen: raw.clock.frozen,
        clock_start_ms,
        overlays_disabled,
        auth: raw.auth,
        rate_rules,
        rate_headers: raw.rate_limit.headers,
        faults,
        ws: raw.ws,
        ws_speed,
        validate,
        state,
        crud,
        versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_genesys_and_nice() {
        let c = Config::default();
        for h in [
            "api.mypurecloud.com",
            "login.usw2.pure.cloud",
            "api.mypurecloud.ie",
            "api-c32.nice-incontact.com",
            "cxone.niceincontact.com",
        ] {
            assert!(c.is_configured_host(h), "{h}");
        }
        assert!(!c.is_configured_host("example.com"));
        assert!(!c.is_configured_host("mypurecloud.com.evil.net"));
        assert!(!c.is_configured_host("evilmypurecloud.com"));
        let d = c.constraint_domains();
        assert!(d.contains(&"mypurecloud.com".to_string()));
        assert!(!d.contains(&"api.mypurecloud.com".to_string()), "covered by mypurecloud.com: {d:?}");
    }

    #[test]
    fn unknown_key_is_located() {
        let e = Config::parse("hosts:\n  - api.mypurecloud.com\nlisten:\n  tsl: 1.2.3.4:5\n", Path::new("p.yaml"))
            .unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("p.yaml:4:"), "{s}");
        assert!(s.contains("tsl"), "{s}");
    }

    #[test]
    fn bad_host_is_located() {
        let e = Config::parse("hosts:\n  - api.mypurecloud.com\n  - 'bad host!'\n", Path::new("p.yaml")).unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(3), "{e}");
        assert!(e.to_string().contains("not a host name"), "{e}");
    }

    #[test]
    fn bad_resolve_and_regex_are_located() {
        let e = Config::parse("upstream:\n  resolve:\n    api.mypurecloud.com: nowhere\n", Path::new("p.yaml"))
            .unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(3), "{e}");
        let e = Config::parse("record:\n  ignore:\n    - path: '(['\n", Path::new("p.yaml")).unwrap_err();
        assert_eq!(e.at.map(|a| a.0), Some(3), "{e}");
    }

    #[test]
    fn state_crud_and_versions_settings_are_validated_and_located() {
        let at = |text: &str| {
            let e = Config::parse(text, Path::new("p.yaml")).unwrap_err();
            (e.at.map(|a| a.0), e.to_string())
        };
        let (line, msg) = at(
            "state:\n  machines:\n    - name: ticket\n      states: [new, open]\n      transitions: {new: [gone]}\n",
        );
        assert_eq!(line, Some(3), "{msg}");
        assert!(msg.contains("`gone` is not one of its states (new, open)"), "{msg}");
        let (line, msg) = at("state:\n  machines:\n    - name: generic\n      refusal: 418\n");
        assert_eq!(line, Some(4), "{msg}");
        assert!(msg.contains("not 422, genesys or nice"), "{msg}");
        let (_, msg) = at("state:\n  machines:\n    - name: genesys-call\n      states: [a]\n");
        assert!(msg.contains("a preset keeps its states"), "{msg}");
        let (_, msg) = at("state:\n  machines:\n    - name: generic\n      timeouts_ms: {RINGING: 0}\n");
        assert!(msg.contains("at least 1"), "{msg}");
        let (line, msg) = at("state:\n  default: nosuch\n");
        assert_eq!(line, Some(2), "{msg}");
        assert!(msg.contains("known: generic, genesys-call, nice-contact"), "{msg}");
        let (line, msg) = at("state:\n  machines:\n    - name: t\n      states: [a, b]\n      triggers:\n        - {method: POST, path: widgets, to: b}\n");
        assert_eq!(line, Some(6), "{msg}");
        assert!(msg.contains("starts with /"), "{msg}");
        let (line, msg) = at("crud:\n  collections:\n    - {path: \"/api/v2/users/{userId}\"}\n");
        assert_eq!(line, Some(3), "{msg}");
        assert!(msg.contains("not a collection path"), "{msg}");
        let (line, msg) = at("versions:\n  routes:\n    - {path: x, sdk: \">= banana\", deprecated: true}\n");
        assert_eq!(line, Some(3), "{msg}");
        assert!(msg.contains("not a version range"), "{msg}");
        let (_, msg) = at("versions:\n  user_agents:\n    - {pattern: \"cxone-sdk\", name: cxone}\n");
        assert!(msg.contains("needs a group around the version"), "{msg}");

        let c = Config::parse(
            "state:\n  machines:\n    - name: generic\n      timeouts_ms: {ringing: 30000}\n      hold: [{from: ringing, to: answered}]\n",
            Path::new("p.yaml"),
        )
        .unwrap();
        let g = &c.state.machines["generic"];
        assert_eq!(g.timeouts_ms["RINGING"], 30_000, "state names take the machine's spelling");
        assert_eq!(g.holds[0].to, "ANSWERED");
        assert_eq!(c.crud.len(), 2, "the default collections");
    }

    #[test]
    fn overlay_settings_are_validated_and_located() {
        let at = |text: &str| {
            let e = Config::parse(text, Path::new("p.yaml")).unwrap_err();
            (e.at.map(|a| a.0), e.to_string())
        };
        let (line, msg) = at("overlays:\n  disable: [auth, ratelimit]\n");
        assert_eq!(line, Some(2), "{msg}");
        assert!(msg.contains("`ratelimit` is not an overlay") && msg.contains("rate-limit"), "{msg}");
        let (line, msg) = at("clock:\n  frozen: true\n  start: next tuesday\n");
        assert_eq!(line, Some(3), "{msg}");
        assert!(msg.contains("RFC 3339"), "{msg}");
        let (line, msg) = at("rate_limit:\n  preset: lenient\n");
        assert_eq!(line, Some(2), "{msg}");
        assert!(msg.contains("genesys, strict or none"), "{msg}");
        let (line, msg) = at("rate_limit:\n  rules:\n    - {limit: 0, window_s: 1}\n");
        assert_eq!(line, Some(3), "{msg}");
        assert!(msg.contains("at least 1"), "{msg}");
        let (_, msg) = at("auth:\n  concurrent_refresh: wait\n");
        assert!(msg.contains("p.yaml:2:"), "{msg}");
        let (_, msg) = at("auth:\n  clients:\n    - {id: a}\n    - {id: a}\n");
        assert!(msg.contains("listed twice"), "{msg}");

        let c = Config::parse(
            "clock: {frozen: true, start: '2026-01-05T09:00:00Z'}\noverlays: {disable: [rate-limit]}\nrate_limit: {preset: strict}\n",
            Path::new("p.yaml"),
        )
        .unwrap();
        assert!(c.clock_frozen);
        assert_eq!(c.clock_start_ms, Some(1_767_603_600_000));
        assert!(!c.overlay_on("rate-limit") && c.overlay_on("auth"));
        assert_eq!((c.rate_rules[0].limit, c.rate_rules[0].window_ms), (5, 1_000));
        assert!(c.rate_rules[0].applies("api-na1.niceincontact.com", "/incontactapi/services/v27.0/agents"));
        let d = Config::default();
        assert_eq!((d.rate_rules[0].limit, d.rate_rules[0].window_ms), (300, 60_000));
        assert!(d.rate_rules.iter().any(|r| r.applies("api.usw2.pure.cloud", "/api/v2/users/me")));
        assert!(!d.rate_rules.iter().any(|r| r.applies("api.mypurecloud.com", "/oauth/token")));
    }
}
