//! `proxy.yaml`: the types, the Genesys and NICE defaults, and validation with `file:line:col` errors.
//! Reads the file and nothing else; flags are applied by the CLI on top of what this returns.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

/// What replaces a secret in a cassette unless `redact.replacement` says otherwise.
pub const REDACTED: &str = "[REDACTED]";

pub mod faults;
pub mod machine;
pub mod overlays;
mod ratelimit;
pub use ratelimit::{rate_preset, RateKey, RateRule, RawRateLimit, RawRateRule, GENESYS_API_PATH};
pub mod stateful;
mod timeshift;
pub use timeshift::{RawTimeShift, ShiftMode};
mod validate;
pub mod verify;
pub use stateful::{Binding, Collection, StateConfig, Trigger, VersionsConfig};
pub use verify::{CredentialVars, RawVerify, VerifyConfig};

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
    /// `file:line:col: message`, or `file: message` without a position: the form editors and CI logs
    /// turn into a link.
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
    /// How replay moves the recording's times onto the virtual clock.
    pub time_shift: Option<Spanned<RawTimeShift>>,
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
    /// `callvcr verify`: credentials (variable names), timing, waits.
    pub verify: RawVerify,
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
    /// 64 sessions, 256 queued frames each (waiting when full), heartbeats as recorded, no keep-alive
    /// pings, frames paced as recorded, 1 MiB messages.
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
    pub rules: Vec<faults::FaultSpec>,
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
    /// Access tokens of generic hosts (a user's own API).
    pub generic: Option<u64>,
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
    /// Any client accepted, access tokens living as recorded (else the platform's usual), refresh
    /// tokens for 30 days, a concurrent refresh refused, no refresh delay.
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
    /// Loopback only: TLS on 9443, the proxy on 8080, admin on 9901.
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
    /// Also replace phone numbers and e-mail addresses in bodies (and drop the personal claims
    /// of a stored JWT: `email`, `name`, `given_name`, `family_name`, `preferred_username`,
    /// `phone_number`).
    pub pii: bool,
    /// Claims dropped from a stored JWT besides its signature (its other claims are kept, since
    /// SDKs read them: tenant, user, business unit, scopes, issuer, audience).
    pub jwt_claims: Vec<String>,
    /// The text that replaces a secret.
    pub replacement: String,
}

impl Default for RedactConfig {
    /// The secrets the README lists: credential headers, OAuth and NICE secret fields, and OAuth
    /// `code` in query strings and forms; PII off.
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
            jwt_claims: Vec::new(),
            replacement: REDACTED.into(),
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
    /// 64 KiB of headers, 32 MiB bodies, 30 s to read a request.
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
    /// How much of a replay moves onto the virtual clock.
    pub time_shift: ShiftMode,
    /// Field names `time_shift.fields` lists as holding times.
    pub time_shift_fields: Vec<String>,
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
    /// `callvcr verify`'s settings.
    pub verify: VerifyConfig,
}

impl Config {
    /// Whether the overlay `name` is switched on.
    pub fn overlay_on(&self, name: &str) -> bool {
        !self.overlays_disabled.contains(&name)
    }
}

impl Default for Config {
    /// The defaults, through the same validation as a written file (so they cannot drift apart).
    fn default() -> Self {
        validate::validate(RawConfig::default(), None).expect("the defaults are valid")
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
            serde_saphyr::from_str(text).map_err(|e| validate::yaml_error(e, path, text))?
        };
        validate::validate(raw, Some(path))
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

#[cfg(test)]
mod tests;
