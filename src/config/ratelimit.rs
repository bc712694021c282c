//! The `rate_limit` section of `proxy.yaml`: rules as written (with positions for errors), rules as
//! checked (what the rate-limit overlay counts against), and the shipped presets (`genesys`,
//! `strict`, `none`).

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::HostPattern;

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
pub const GENESYS_API_PATH: &str = crate::platform::genesys::API_PATH;

/// The rules of a rate-limit preset: `genesys`, `strict` or `none`.
pub fn rate_preset(name: &str) -> Option<Vec<RateRule>> {
    let api = |p: &str| Some(regex::Regex::new(p).expect("preset path parses"));
    match name {
        "genesys" => {
            let p = crate::platform::genesys::RATE_LIMIT;
            Some(
                crate::platform::Platform::Genesys
                    .domains()
                    .iter()
                    .map(|d| RateRule {
                        host: Some(HostPattern::Below(d.to_string())),
                        path: api(p.path),
                        per: RateKey::Token,
                        limit: p.limit,
                        window_ms: p.window_ms,
                    })
                    .collect(),
            )
        }
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
