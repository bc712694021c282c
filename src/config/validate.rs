//! From `proxy.yaml` as written to a checked [`Config`]: one function per section, each error with
//! the file and, where the YAML gives one, the line and column.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};

use super::*;

/// A YAML or type error from the parser as a [`ConfigError`]: its position, the parser's message cut
/// to what is wrong (its own "at line" text removed, Rust type names in plain words), and the
/// offending line quoted, so the user sees the fix without opening the file.
pub(super) fn yaml_error(e: serde_saphyr::Error, path: &Path, text: &str) -> ConfigError {
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

/// Where errors point: the file, and a YAML position when there is one.
struct Errs {
    /// The file checked, or `<defaults>` when there is none.
    file: PathBuf,
}

impl Errs {
    /// An error at a YAML position.
    fn at(&self, loc: Location, message: String) -> ConfigError {
        ConfigError { file: self.file.clone(), at: Some((loc.line(), loc.column())), message }
    }

    /// An error naming only the file (the value has no position, or the problem is between keys).
    fn plain(&self, message: String) -> ConfigError {
        ConfigError { file: self.file.clone(), at: None, message }
    }
}

/// A regular expression as written, or an error naming `what` and where it is.
fn regex_at(e: &Errs, p: &Spanned<String>, what: &str) -> Result<regex::Regex, ConfigError> {
    regex::Regex::new(&p.value)
        .map_err(|x| e.at(p.referenced, format!("{what} path `{}` is not a regular expression: {x}", p.value)))
}

/// The hosts to intercept: the Genesys and NICE defaults when the key is absent; an empty list is
/// refused (it would intercept nothing, which is never meant).
fn hosts(e: &Errs, raw: &Option<Vec<Spanned<String>>>) -> Result<Vec<HostPattern>, ConfigError> {
    let Some(list) = raw else {
        return Ok(DEFAULT_HOSTS.iter().map(|h| HostPattern::parse(h).expect("default hosts parse")).collect());
    };
    if list.is_empty() {
        return Err(e.plain(
            "`hosts` is empty: list the hosts to intercept, or remove the key to use the Genesys and NICE defaults"
                .into(),
        ));
    }
    list.iter().map(|h| HostPattern::parse(&h.value).map_err(|m| e.at(h.referenced, m))).collect()
}

/// Checks that each listener is a `host:port` address.
fn listen(e: &Errs, l: &ListenConfig) -> Result<(), ConfigError> {
    for (name, addr) in [("tls", &l.tls), ("proxy", &l.proxy), ("admin", &l.admin)] {
        if addr.parse::<SocketAddr>().is_err() {
            return Err(e.plain(format!(
                "listen.{name}: `{addr}` is not an address (expected host:port, e.g. 127.0.0.1:9443)"
            )));
        }
    }
    Ok(())
}

/// `upstream.resolve` overrides (host lower-cased) and `upstream.nameservers`, as addresses.
fn upstream(e: &Errs, u: &RawUpstream) -> Result<(BTreeMap<String, SocketAddr>, Vec<SocketAddr>), ConfigError> {
    let mut resolve = BTreeMap::new();
    for (host, addr) in &u.resolve {
        let a: SocketAddr = addr.value.parse().map_err(|_| {
            e.at(
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
    for n in &u.nameservers {
        nameservers.push(n.value.parse::<SocketAddr>().map_err(|_| {
            e.at(
                n.referenced,
                format!("upstream.nameservers: `{}` is not an address (expected ip:port, e.g. 10.0.0.2:53)", n.value),
            )
        })?);
    }
    Ok((resolve, nameservers))
}

/// `record.ignore` rules; each needs a host, a path, or both, so no rule ignores everything.
fn record_ignore(e: &Errs, r: &RawRecord) -> Result<Vec<IgnoreRule>, ConfigError> {
    let mut out = Vec::new();
    for r in &r.ignore {
        let host = match &r.host {
            Some(h) => Some(HostPattern::parse(h).map_err(|m| e.plain(m))?),
            None => None,
        };
        let path = match &r.path {
            Some(p) => Some(regex::Regex::new(&p.value).map_err(|x| {
                e.at(p.referenced, format!("record.ignore path `{}` is not a regular expression: {x}", p.value))
            })?),
            None => None,
        };
        if host.is_none() && path.is_none() {
            return Err(e.plain("record.ignore: each rule needs a `host`, a `path`, or both".into()));
        }
        out.push(IgnoreRule { host, path });
    }
    Ok(out)
}

/// Lower bounds on the size and time limits, and a non-empty redaction marker (an empty one would
/// make a redacted value look like an absent one).
fn limits_and_redaction(e: &Errs, raw: &RawConfig) -> Result<(), ConfigError> {
    if raw.limits.max_header_bytes < 1024 {
        return Err(e.plain("limits.max_header_bytes must be at least 1024".into()));
    }
    if raw.limits.read_timeout_ms < 100 {
        return Err(e.plain("limits.read_timeout_ms must be at least 100".into()));
    }
    if raw.redact.replacement.is_empty() {
        return Err(e.plain("redact.replacement must not be empty".into()));
    }
    Ok(())
}

/// `clock.start` as epoch milliseconds.
fn clock_start(e: &Errs, c: &RawClock) -> Result<Option<i64>, ConfigError> {
    let Some(s) = &c.start else { return Ok(None) };
    crate::clock::parse_rfc3339(&s.value).map(Some).ok_or_else(|| {
        e.at(
            s.referenced,
            format!("clock.start: `{}` is not an RFC 3339 time (expected e.g. 2026-01-05T09:00:00Z)", s.value),
        )
    })
}

/// `time_shift`: its mode named right (at the value's line and column), and the fields it lists.
fn time_shift(e: &Errs, t: &Option<Spanned<RawTimeShift>>) -> Result<(ShiftMode, Vec<String>), ConfigError> {
    let Some(t) = t else { return Ok((ShiftMode::All, Vec::new())) };
    let mode = match &t.value.mode {
        None => ShiftMode::All,
        Some(m) => ShiftMode::parse(m)
            .ok_or_else(|| e.at(t.referenced, format!("time_shift: `{m}` is not a mode (off, headers or all)")))?,
    };
    Ok((mode, t.value.fields.clone()))
}

/// `overlays.disable`, each name checked against the overlays that exist.
fn overlays_disabled(e: &Errs, o: &RawOverlays) -> Result<Vec<&'static str>, ConfigError> {
    o.disable
        .iter()
        .map(|n| overlays::check_name(&n.value).map_err(|m| e.at(n.referenced, format!("overlays.disable: {m}"))))
        .collect()
}

/// Auth clients unique and named, token lifetimes of at least a second, and a remote admin API only
/// with `admin.allowed_hosts` (the Host check that stops DNS rebinding).
fn auth_and_admin(e: &Errs, raw: &RawConfig) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for c in &raw.auth.clients {
        if c.id.is_empty() {
            return Err(e.plain("auth.clients: a client needs a non-empty `id`".into()));
        }
        if !seen.insert(c.id.as_str()) {
            return Err(e.plain(format!("auth.clients: `{}` is listed twice", c.id)));
        }
    }
    if raw.admin.allow_remote && raw.admin.allowed_hosts.is_empty() {
        return Err(e.plain(
            "admin.allow_remote: true needs admin.allowed_hosts, the names remote callers reach the admin API by (e.g. [ci-runner.internal:9901]); other Host headers are refused, against DNS rebinding".into(),
        ));
    }
    let ttl = &raw.auth.ttl_s;
    if [ttl.genesys, ttl.nice, ttl.generic].contains(&Some(0)) || raw.auth.refresh_ttl_s == 0 {
        return Err(e.plain(
            "auth: token lifetimes (ttl_s.genesys, ttl_s.nice, ttl_s.generic, refresh_ttl_s) must be at least 1 second"
                .into(),
        ));
    }
    Ok(())
}

/// The rate-limit rules: written ones, else the named preset, else the `genesys` preset.
fn rate_rules(e: &Errs, r: &RawRateLimit) -> Result<Vec<RateRule>, ConfigError> {
    let rules = match (&r.rules, &r.preset) {
        (Some(rules), _) => rules,
        (None, Some(p)) => {
            return rate_preset(&p.value).ok_or_else(|| {
                e.at(
                    p.referenced,
                    format!("rate_limit.preset: `{}` is not a preset (expected genesys, strict or none)", p.value),
                )
            })
        }
        (None, None) => return Ok(rate_preset("genesys").expect("the default preset exists")),
    };
    let mut out = Vec::new();
    for r in rules {
        let host = match &r.host {
            Some(h) => Some(
                HostPattern::parse(&h.value).map_err(|m| e.at(h.referenced, format!("rate_limit.rules host: {m}")))?,
            ),
            None => None,
        };
        let path = match &r.path {
            Some(p) => Some(regex::Regex::new(&p.value).map_err(|x| {
                e.at(p.referenced, format!("rate_limit.rules path `{}` is not a regular expression: {x}", p.value))
            })?),
            None => None,
        };
        if r.limit.value == 0 {
            return Err(e.at(
                r.limit.referenced,
                "rate_limit.rules limit must be at least 1 (switch the overlay off to allow everything)".into(),
            ));
        }
        if r.window_s.value == 0 {
            return Err(e.at(r.window_s.referenced, "rate_limit.rules window_s must be at least 1 second".into()));
        }
        out.push(RateRule { host, path, per: r.per, limit: r.limit.value, window_ms: r.window_s.value * 1000 });
    }
    Ok(out)
}

/// Fault rules checked once, and the `?failure=` trigger settings with their defaults.
fn fault_rules(e: &Errs, f: &RawFaults) -> Result<FaultsConfig, ConfigError> {
    let mut rules = Vec::new();
    for r in &f.rules {
        rules.push(faults::FaultSpec::parse(&r.value).map_err(|m| e.at(r.referenced, format!("faults.rules: {m}")))?);
    }
    Ok(FaultsConfig {
        query_trigger: f.query_trigger.unwrap_or(true),
        query_timeout_ms: f.query_timeout_ms.unwrap_or(5_000),
        rules,
    })
}

/// `validate:` routes and pinned required fields, paths compiled.
fn validation(e: &Errs, v: &RawValidate) -> Result<ValidateConfig, ConfigError> {
    let mut out = ValidateConfig { mode: v.mode, ..Default::default() };
    for r in &v.routes {
        out.routes.push(RouteRule {
            method: r.method.as_ref().map(|m| m.to_ascii_uppercase()),
            path: regex_at(e, &r.path, "validate.routes")?,
            value: r.mode,
        });
    }
    for r in &v.required {
        out.required.push(RouteRule {
            method: r.method.as_ref().map(|m| m.to_ascii_uppercase()),
            path: regex_at(e, &r.path, "validate.required")?,
            value: r.fields.clone(),
        });
    }
    Ok(out)
}

/// The WebSocket pacing factor (`None` = instant); queue and session limits of at least 1.
fn websocket(e: &Errs, w: &WsConfig) -> Result<Option<f64>, ConfigError> {
    let speed = ws_speed(w.speed.as_deref()).map_err(|m| e.plain(format!("ws.speed: {m}")))?;
    if w.queue == 0 || w.max_sessions == 0 {
        return Err(e.plain("ws.queue and ws.max_sessions must be at least 1".into()));
    }
    Ok(speed)
}

/// Checks every section of `raw`, read from `path` (none: the defaults).
pub(super) fn validate(raw: RawConfig, path: Option<&Path>) -> Result<Config, ConfigError> {
    let e = Errs { file: path.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("<defaults>")) };
    let hosts = hosts(&e, &raw.hosts)?;
    listen(&e, &raw.listen)?;
    let (resolve, nameservers) = upstream(&e, &raw.upstream)?;
    let record_ignore = record_ignore(&e, &raw.record)?;
    limits_and_redaction(&e, &raw)?;
    let clock_start_ms = clock_start(&e, &raw.clock)?;
    let (time_shift, time_shift_fields) = time_shift(&e, &raw.time_shift)?;
    let overlays_disabled = overlays_disabled(&e, &raw.overlays)?;
    auth_and_admin(&e, &raw)?;
    let rate_rules = rate_rules(&e, &raw.rate_limit)?;
    let faults = fault_rules(&e, &raw.faults)?;
    let ws_speed = websocket(&e, &raw.ws)?;
    let validate = validation(&e, &raw.validate)?;
    let at = |loc: Location, message: String| e.at(loc, message);
    let state = stateful::state(&raw.state, &at)?;
    let crud = stateful::crud(&raw.crud, &at)?;
    let versions = stateful::versions(&raw.versions, &at)?;
    let verify = verify::verify(&raw.verify, &at)?;

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
        time_shift,
        time_shift_fields,
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
        verify,
    })
}
