//! Fault rules as written (`faults.rules` in `proxy.yaml`, `POST /mock/admin/faults`): parsed and
//! checked once into a [`FaultSpec`]; the faults overlay runs them.

use serde_json::Value;

use super::HostPattern;

/// What a connection-level fault does to the connection a request came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Close before any byte of the response.
    Close,
    /// Send part of the response, then cut the connection.
    Reset,
    /// Send bytes that are not HTTP, then close.
    Malformed,
}

impl Cut {
    /// The fault kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Cut::Close => "close",
            Cut::Reset => "reset",
            Cut::Malformed => "malformed",
        }
    }
}

/// A fault kind, with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Answer this status with the platform's error body (and `Retry-After` when given).
    Status {
        /// The error status (400 to 599).
        status: u16,
        /// Seconds for `Retry-After`, when the answer carries one.
        retry_after_s: Option<u64>,
    },
    /// Wait `delay_ms` of virtual time, then 504.
    Timeout {
        /// Virtual milliseconds before the 504.
        delay_ms: u64,
    },
    /// Never answer; hold the request until the client gives up.
    Hang,
    /// Delay the real answer by `delay_ms` plus up to `jitter_ms`.
    Latency {
        /// Virtual milliseconds added to every matching answer.
        delay_ms: u64,
        /// Up to this many more, drawn from the rule's seeded generator.
        jitter_ms: u64,
    },
    /// Cut the connection.
    Cut(Cut),
    /// Refuse the TLS handshake for the host.
    Tls,
    /// Drop a WebSocket session after this many server frames, or (without it) at random with the
    /// rule's probability per frame.
    WsDrop {
        /// Server frames sent before the drop.
        after_frames: Option<u64>,
    },
    /// Skip heartbeats on matching WebSocket sessions.
    HeartbeatMiss,
}

impl Kind {
    /// The kind's name, as rules and the journal spell it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Status { .. } => "status",
            Kind::Timeout { .. } => "timeout",
            Kind::Hang => "hang",
            Kind::Latency { .. } => "latency",
            Kind::Cut(c) => c.as_str(),
            Kind::Tls => "tls",
            Kind::WsDrop { .. } => "ws_drop",
            Kind::HeartbeatMiss => "heartbeat_miss",
        }
    }
}

/// Why a rule was refused.
pub type RuleError = String;

/// Field `k` of a rule as a whole number, `None` when absent or null; a negative, fractional or
/// non-numeric value is refused, naming the field.
pub(crate) fn opt_u64(m: &serde_json::Map<String, Value>, k: &str) -> Result<Option<u64>, RuleError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| format!("`{k}` must be a whole number ≥ 0, got {v}")),
    }
}

/// One fault rule, checked: what it matches, what it does, and its window.
#[derive(Debug, Clone)]
pub struct FaultSpec {
    /// Method to match (upper case).
    pub method: Option<String>,
    /// Host to match.
    pub host: Option<HostPattern>,
    /// Path to match.
    pub path: Option<regex::Regex>,
    /// What it does.
    pub kind: Kind,
    /// How many matching requests the window lasts.
    pub count: Option<u64>,
    /// How long the window lasts, in virtual milliseconds from when the rule starts.
    pub duration_ms: Option<u64>,
    /// Chance that a matching request gets the fault.
    pub probability: f64,
    /// The seed of its random numbers, when the rule names one.
    pub seed: Option<u64>,
    /// The rule as written, for listing.
    pub written: Value,
}

impl FaultSpec {
    /// Parses a rule as the admin API and `proxy.yaml` write it:
    /// `{"match":{"method"?,"host"?,"path"?},"kind":K, ...parameters, "count"?, "duration_ms"?,
    /// "seed"?, "probability"?}`.
    pub fn parse(spec: &Value) -> Result<FaultSpec, RuleError> {
        let Value::Object(m) = spec else {
            return Err(format!("a fault rule is a JSON object, got {spec}"));
        };
        /// Every field a rule may have: a misspelt one is refused rather than silently ignored.
        const KNOWN: &[&str] = &[
            "match",
            "kind",
            "status",
            "retry_after_s",
            "delay_ms",
            "jitter_ms",
            "count",
            "duration_ms",
            "seed",
            "probability",
            "after_frames",
        ];
        if let Some(k) = m.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(format!("unknown field `{k}` in a fault rule; expected {}", KNOWN.join(", ")));
        }
        let (mut method, mut host, mut path) = (None, None, None);
        match m.get("match") {
            None | Some(Value::Null) => {}
            Some(Value::Object(mm)) => {
                for (k, v) in mm {
                    let s = v.as_str().ok_or_else(|| format!("match.{k} must be a string, got {v}"))?;
                    match k.as_str() {
                        "method" => method = Some(s.to_ascii_uppercase()),
                        "host" => host = Some(HostPattern::parse(s).map_err(|e| format!("match.host: {e}"))?),
                        "path" => {
                            path = Some(
                                regex::Regex::new(s)
                                    .map_err(|e| format!("match.path `{s}` is not a regular expression: {e}"))?,
                            )
                        }
                        other => return Err(format!("unknown field `match.{other}`; expected method, host or path")),
                    }
                }
            }
            Some(v) => return Err(format!("`match` must be an object like {{\"path\": \"^/api/v2/\"}}, got {v}")),
        }
        let kind_name = m.get("kind").and_then(Value::as_str).ok_or_else(|| {
            "`kind` is required: status, timeout, hang, latency, reset, close, malformed, tls, ws_drop or heartbeat_miss"
                .to_string()
        })?;
        let kind = match kind_name {
            "status" => {
                let status = opt_u64(m, "status")?.ok_or("`status` is required for kind status (e.g. 503)")?;
                if !(400..=599).contains(&status) {
                    return Err(format!("`status` must be an error status from 400 to 599, got {status}"));
                }
                Kind::Status { status: status as u16, retry_after_s: opt_u64(m, "retry_after_s")? }
            }
            "timeout" => Kind::Timeout { delay_ms: opt_u64(m, "delay_ms")?.unwrap_or(5_000) },
            "hang" => Kind::Hang,
            "latency" => Kind::Latency {
                delay_ms: opt_u64(m, "delay_ms")?.ok_or("`delay_ms` is required for kind latency")?,
                jitter_ms: opt_u64(m, "jitter_ms")?.unwrap_or(0),
            },
            "reset" => Kind::Cut(Cut::Reset),
            "close" => Kind::Cut(Cut::Close),
            "malformed" => Kind::Cut(Cut::Malformed),
            "tls" => {
                if method.is_some() || path.is_some() {
                    return Err("a tls fault matches on `host` only (the SNI): nothing else is known at handshake time".into());
                }
                Kind::Tls
            }
            "ws_drop" => {
                let after_frames = opt_u64(m, "after_frames")?;
                if after_frames.is_none() && m.get("probability").is_none() {
                    return Err("a ws_drop fault needs `after_frames` (drop after N frames) or `probability` (per frame)".into());
                }
                Kind::WsDrop { after_frames }
            }
            "heartbeat_miss" => Kind::HeartbeatMiss,
            other => {
                return Err(format!(
                    "`{other}` is not a fault kind; expected status, timeout, hang, latency, reset, close, malformed or tls"
                ))
            }
        };
        let probability = match m.get("probability") {
            None | Some(Value::Null) => 1.0,
            Some(v) => match v.as_f64() {
                Some(p) if (0.0..=1.0).contains(&p) => p,
                _ => return Err(format!("`probability` must be a number from 0 to 1, got {v}")),
            },
        };
        Ok(FaultSpec {
            method,
            host,
            path,
            kind,
            count: opt_u64(m, "count")?,
            duration_ms: opt_u64(m, "duration_ms")?,
            probability,
            seed: opt_u64(m, "seed")?,
            written: spec.clone(),
        })
    }
}
