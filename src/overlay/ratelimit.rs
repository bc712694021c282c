//! The rate-limit overlay: token buckets per access token (or per OAuth client), refilled on the
//! virtual clock. Over the limit → 429 with `Retry-After` and the platform's body; counted answers
//! carry the `inin-ratelimit-*` headers where the recording shows the platform sending them (or
//! where `rate_limit.headers` says so).

use std::collections::HashMap;

use serde_json::json;
use std::sync::Mutex;

use super::{Call, Ctx, Decision, Evidence, Ids, Overlay, Platform};
use crate::config::{RateKey, RateRule};
use crate::platform::ErrorKind;
use std::sync::Arc;

/// Buckets kept before idle, full ones are dropped.
const MAX_BUCKETS: usize = 100_000;

/// One bucket. The level is kept in request·milliseconds (a request costs `window_ms`, and the
/// bucket refills `limit` per millisecond), so refills are exact integers and nothing is lost to
/// rounding however often the bucket is looked at.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Capacity left, in request·milliseconds: `limit × window_ms` when full, a request costs `window_ms`.
    level: i128,
    /// When `level` was last brought up to date (virtual time); never moves backwards.
    at_ms: i64,
}

impl Bucket {
    /// A full bucket: a new caller starts with the whole limit.
    fn full(limit: u64, window_ms: u64, now_ms: i64) -> Bucket {
        Bucket { level: limit as i128 * window_ms.max(1) as i128, at_ms: now_ms }
    }
}

/// Where one bucket stands after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Standing {
    /// Whether the request was allowed.
    pub allowed: bool,
    /// Requests counted against the limit (the bucket's used capacity, rounded up).
    pub count: u64,
    /// The limit.
    pub limit: u64,
    /// Whole seconds until the bucket is full again.
    pub reset_s: u64,
    /// Whole seconds until one more request is allowed (0 when allowed).
    pub retry_after_s: u64,
}

/// `a / b` rounded up, 0 for `a <= 0`: a wait of 0.2 s is advertised as 1 s, never 0.
fn ceil_div(a: i128, b: i128) -> i128 {
    if a <= 0 {
        0
    } else {
        (a + b - 1) / b
    }
}

/// Takes one request from a bucket of `limit` per `window_ms`, refilled continuously, at `now_ms`.
fn take(b: &mut Bucket, limit: u64, window_ms: u64, now_ms: i64) -> Standing {
    let rate = limit as i128;
    let cost = window_ms.max(1) as i128;
    let cap = rate * cost;
    let elapsed = (now_ms - b.at_ms).max(0) as i128;
    b.level = (b.level + elapsed * rate).min(cap);
    b.at_ms = b.at_ms.max(now_ms);
    let allowed = b.level >= cost;
    if allowed {
        b.level -= cost;
    }
    let reset_s = ceil_div(ceil_div(cap - b.level, rate), 1000) as u64;
    let retry_after_s = if allowed { 0 } else { (ceil_div(ceil_div(cost - b.level, rate), 1000) as u64).max(1) };
    Standing { allowed, count: ceil_div(cap - b.level, cost) as u64, limit, reset_s, retry_after_s }
}

/// The rate-limit overlay.
#[derive(Debug)]
pub(crate) struct RateLimit {
    /// Checked rules; the first that applies to a request counts it.
    rules: Vec<RateRule>,
    /// Where the `inin-ratelimit-*` headers go.
    headers: Headers,
    /// For the correlation ids of 429 bodies.
    ids: Arc<Ids>,
    /// Buckets by (rule index, caller key); bounded by [`MAX_BUCKETS`].
    buckets: Mutex<HashMap<(usize, String), Bucket>>,
}

/// Where the `inin-ratelimit-*` headers go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Headers {
    /// On every counted Genesys answer.
    Always,
    /// Never.
    Never,
    /// On counted answers from these hosts (the ones whose recorded answers carry them).
    Hosts(std::collections::HashSet<String>),
}

impl Headers {
    /// Whether answers from `host` get the headers.
    fn on(&self, host: &str) -> bool {
        match self {
            Headers::Always => true,
            Headers::Never => false,
            Headers::Hosts(h) => h.contains(host),
        }
    }
}

/// How many recorded answers per host are looked at for the headers.
const SAMPLE: usize = 16;

/// The headers as configured (`Some`), else as the cassette in `index` shows: a host gets them
/// when a sample of its recorded answers carries them.
pub(crate) fn headers_from(configured: Option<bool>, index: &crate::cassette::Index) -> Headers {
    match configured {
        Some(true) => return Headers::Always,
        Some(false) => return Headers::Never,
        None => {}
    }
    let mut per_host: HashMap<&str, Vec<usize>> = HashMap::new();
    for h in index.heads() {
        let v = per_host.entry(h.host).or_default();
        if v.len() < SAMPLE && h.status != 101 {
            v.push(h.pos);
        }
    }
    let mut hosts = std::collections::HashSet::new();
    for (host, picks) in per_host {
        let shows = picks.iter().filter_map(|&p| index.exchange(p).ok()).any(|e| {
            e.response.headers.iter().any(|(k, _)| k.len() > 15 && k[..15].eq_ignore_ascii_case("inin-ratelimit-"))
        });
        if shows {
            hosts.insert(host.split(':').next().unwrap_or(host).to_ascii_lowercase());
        }
    }
    Headers::Hosts(hosts)
}

impl RateLimit {
    /// An overlay enforcing `rules` (the first rule that matches a request applies); `headers` says
    /// where Genesys answers get the `inin-ratelimit-*` headers.
    pub(crate) fn new(rules: Vec<RateRule>, headers: Headers, ids: Arc<Ids>) -> RateLimit {
        RateLimit { rules, headers, ids, buckets: Mutex::new(HashMap::new()) }
    }

    /// The caller a bucket belongs to: the OAuth client once auth recognised the token (`per: client`),
    /// else the bearer token itself. Requests without a token share one bucket.
    fn key(rule: &RateRule, call: &Call<'_>, ctx: &Ctx) -> String {
        let token = call.bearer();
        match rule.per {
            RateKey::Client => match ctx.principal.as_ref() {
                Some(p) => format!("client:{}", p.client_id),
                None => format!("token:{}", token.unwrap_or("")),
            },
            RateKey::Token => format!("token:{}", token.unwrap_or("")),
        }
    }

    /// Counts a request at `now_ms` against the rule that applies, if any.
    pub(crate) fn check(&self, call: &Call<'_>, ctx: &Ctx) -> Option<(usize, Standing)> {
        let (i, rule) = self.rules.iter().enumerate().find(|(_, r)| r.applies(call.host, call.path))?;
        let key = (i, Self::key(rule, call, ctx));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&key) {
            // Drop buckets that would be full by now: forgetting them changes nothing.
            let rules = &self.rules;
            buckets.retain(|(ri, _), b| {
                let r = &rules[*ri];
                let refill = (ctx.now_ms - b.at_ms).max(0) as i128 * r.limit as i128;
                b.level + refill < Bucket::full(r.limit, r.window_ms, 0).level
            });
        }
        let b = buckets.entry(key).or_insert_with(|| Bucket::full(rule.limit, rule.window_ms, ctx.now_ms));
        Some((i, take(b, rule.limit, rule.window_ms, ctx.now_ms)))
    }
}

/// Genesys's `inin-ratelimit-count`, `-allowed` and `-reset` headers for a standing.
fn headers(s: &Standing) -> [(String, String); 3] {
    [
        ("inin-ratelimit-count".into(), s.count.to_string()),
        ("inin-ratelimit-allowed".into(), s.limit.to_string()),
        ("inin-ratelimit-reset".into(), s.reset_s.to_string()),
    ]
}

impl Overlay for RateLimit {
    /// `rate-limit`.
    fn name(&self) -> &'static str {
        "rate-limit"
    }

    /// Counts the request; over the limit, answers the platform's 429 with a `Retry-After` that agrees
    /// with its message. The answer rests on a rule, so a recording of this very request answered
    /// otherwise wins.
    fn on_request(&self, call: &Call<'_>, ctx: &mut Ctx, _ev: &Evidence<'_>) -> Decision {
        let Some((i, s)) = self.check(call, ctx) else { return Decision::Continue };
        let genesys = call.platform() == Platform::Genesys && self.headers.on(call.host);
        if genesys {
            ctx.response_headers.extend(headers(&s));
        }
        if s.allowed {
            return Decision::Continue;
        }
        let rule = &self.rules[i];
        let message = format!("Rate limit exceeded the maximum. Retry the request in [{}] seconds", s.retry_after_s);
        let detail = format!("rate-limit:{}", rule.describe());
        // Made fresh even when the cassette holds a 429: a recorded message names its own wait, and
        // the number in the message must agree with Retry-After.
        // A model of the platform's limits, not evidence: where the recording shows this very
        // request answered, the recording wins.
        let mut a = super::platform_error(
            &self.ids,
            call.platform(),
            429,
            ErrorKind::TooManyRequests,
            &message,
            json!([]),
            detail,
        )
        .by_rule();
        a.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("retry-after") && !k.starts_with("inin-ratelimit-"));
        a.headers.push(("retry-after".into(), s.retry_after_s.to_string()));
        if genesys {
            a.headers.extend(headers(&s));
        }
        Decision::Answer(a)
    }

    /// Every bucket forgotten: callers start full again.
    fn reset(&self) {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_trips_at_the_limit_and_refills_on_virtual_time() {
        let mut b = Bucket::full(300, 60_000, 0);
        for i in 1..=300 {
            let s = take(&mut b, 300, 60_000, 0);
            assert!(s.allowed, "request {i}");
            assert_eq!(s.count, i);
        }
        let over = take(&mut b, 300, 60_000, 0);
        assert!(!over.allowed);
        assert_eq!(over.retry_after_s, 1, "one request refills in 200 ms, advertised as 1 s");
        assert_eq!(over.reset_s, 60);
        assert!(!take(&mut b, 300, 60_000, 199).allowed);
        assert!(take(&mut b, 300, 60_000, 200).allowed);
        let later = take(&mut b, 300, 60_000, 200 + 60_000);
        assert!(later.allowed);
        assert_eq!(later.count, 1);
    }

    #[test]
    fn retry_after_covers_the_wait_for_slow_buckets() {
        // 5 per minute: one request every 12 s.
        let mut b = Bucket::full(5, 60_000, 0);
        for _ in 0..5 {
            assert!(take(&mut b, 5, 60_000, 0).allowed);
        }
        let over = take(&mut b, 5, 60_000, 0);
        assert_eq!(over.retry_after_s, 12);
        assert!(!take(&mut b, 5, 60_000, 11_999).allowed);
        assert!(take(&mut b, 5, 60_000, 12_000).allowed);
    }

    #[test]
    fn buckets_are_kept_per_token_or_per_client_as_the_rule_says() {
        use crate::config::{HostPattern, RateKey, RateRule};
        let rule = |per| RateRule {
            host: Some(HostPattern::parse("api.mypurecloud.com").unwrap()),
            path: None,
            per,
            limit: 2,
            window_ms: 60_000,
        };
        let body = bytes::Bytes::new();
        let headers = |token: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("authorization", format!("Bearer {token}").parse().unwrap());
            h
        };
        let hs: Vec<(&str, http::HeaderMap)> = ["t1", "t2", "t3"].iter().map(|t| (*t, headers(t))).collect();
        let parsed = crate::overlay::ParsedBody::new(&body);
        let call_as = |token: &str| {
            let h = &hs.iter().find(|(t, _)| *t == token).unwrap().1;
            Call {
                method: "GET",
                host: "api.mypurecloud.com",
                path: "/api/v2/users/me",
                query: None,
                headers: h,
                body: &body,
                parsed: &parsed,
            }
        };
        let ctx = |client: &str| Ctx {
            now_ms: 0,
            principal: Some(super::super::Principal { client_id: client.into(), user: false }),
            response_headers: Vec::new(),
            took_recording: false,
            repeated: Default::default(),
        };
        let per_token = RateLimit::new(vec![rule(RateKey::Token)], Headers::Always, Arc::new(Ids::new(0)));
        let per_client = RateLimit::new(vec![rule(RateKey::Client)], Headers::Always, Arc::new(Ids::new(0)));
        for rl in [&per_token, &per_client] {
            assert!(rl.check(&call_as("t1"), &ctx("c")).unwrap().1.allowed);
            assert!(rl.check(&call_as("t1"), &ctx("c")).unwrap().1.allowed);
            assert!(!rl.check(&call_as("t1"), &ctx("c")).unwrap().1.allowed, "a third is over the limit of 2");
        }
        // A second token of the same client: its own bucket per token, the shared one per client.
        assert!(per_token.check(&call_as("t2"), &ctx("c")).unwrap().1.allowed);
        assert!(!per_client.check(&call_as("t2"), &ctx("c")).unwrap().1.allowed);
        // Another client is never affected.
        assert!(per_client.check(&call_as("t3"), &ctx("d")).unwrap().1.allowed);
        // Rules only apply where they match.
        let other = Call { host: "login.mypurecloud.com", ..call_as("t1") };
        assert!(per_token.check(&other, &ctx("c")).is_none());
    }
}
