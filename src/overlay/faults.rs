//! The faults overlay: injected outages, throttling, timeouts, latency, dropped connections and
//! refused handshakes, each rule matched by method/host/path and active for a window (the next N
//! matching requests, or a span of virtual time). Randomness (jitter, probability) comes from a
//! generator seeded per rule, so the same seed gives the same sequence. Decides only; the proxy and
//! the listeners carry the decision out (a delay, a hang, a cut connection).

use std::sync::Mutex;

use serde_json::{json, Value};

use super::ids::mix;
use super::{Answer, Call, Ctx, Decision, Evidence, Ids, Overlay};
pub(crate) use crate::config::faults::{Cut, FaultSpec, Kind, RuleError};
use crate::config::HostPattern;
use crate::platform::ErrorKind;

/// One fault rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// Its id (`f1`, `f2`, ...).
    pub id: String,
    /// Only requests with this method (any when `None`).
    method: Option<String>,
    /// Only requests to hosts this pattern matches.
    host: Option<HostPattern>,
    /// Only paths this expression matches (unanchored, as written).
    path: Option<regex::Regex>,
    /// What it does.
    pub kind: Kind,
    /// Matching requests left in the window.
    remaining: Option<u64>,
    /// The window ends at this virtual time.
    until_ms: Option<i64>,
    /// Chance that a matching request gets the fault.
    probability: f64,
    /// The rule's generator state: seeded once, so the same seed draws the same sequence of hits.
    rng: u64,
    /// The rule as written, for listing.
    pub spec: Value,
}

impl Rule {
    /// Parses and starts a rule (see [`FaultSpec::parse`]); `now_ms` starts a `duration_ms`
    /// window; `default_seed` seeds it when the rule names no seed.
    pub(crate) fn parse(spec: &Value, id: String, now_ms: i64, default_seed: u64) -> Result<Rule, RuleError> {
        Ok(Rule::start(&FaultSpec::parse(spec)?, id, now_ms, default_seed))
    }

    /// A checked rule, started at `now_ms`.
    pub(crate) fn start(spec: &FaultSpec, id: String, now_ms: i64, default_seed: u64) -> Rule {
        let seed = spec.seed.unwrap_or_else(|| mix(default_seed ^ fnv(&id)));
        Rule {
            id,
            method: spec.method.clone(),
            host: spec.host.clone(),
            path: spec.path.clone(),
            kind: spec.kind.clone(),
            remaining: spec.count,
            until_ms: spec.duration_ms.map(|d| now_ms.saturating_add(d as i64)),
            probability: spec.probability,
            rng: seed,
            spec: spec.written.clone(),
        }
    }

    /// Whether a request falls under the rule's method, host and path (each unset one matches all).
    fn matches(&self, method: &str, host: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self.host.as_ref().is_none_or(|h| h.matches(host))
            && self.path.as_ref().is_none_or(|p| p.is_match(path))
    }

    /// Whether the window is open at `now_ms`: requests left, and before its end.
    fn live(&self, now_ms: i64) -> bool {
        self.remaining != Some(0) && self.until_ms.is_none_or(|u| now_ms < u)
    }

    /// The next random number in [0, 1).
    fn roll(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        (mix(self.rng) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Counts one matching request against the window; whether the fault fires for it.
    fn take(&mut self) -> bool {
        if let Some(r) = self.remaining.as_mut() {
            *r -= 1;
        }
        self.probability >= 1.0 || self.roll() < self.probability
    }

    /// The rule for listing: as written, plus its id and what is left of its window.
    pub(crate) fn listing(&self, now_ms: i64) -> Value {
        let mut v = self.spec.clone();
        if let Value::Object(m) = &mut v {
            m.insert("id".into(), Value::String(self.id.clone()));
            if let Some(r) = self.remaining {
                m.insert("remaining".into(), json!(r));
            }
            if let Some(u) = self.until_ms {
                m.insert("remaining_ms".into(), json!((u - now_ms).max(0)));
            }
            m.insert("active".into(), json!(self.live(now_ms)));
        }
        v
    }
}

/// A stable hash of a rule id, so rules without their own seed still draw different sequences.
fn fnv(s: &str) -> u64 {
    crate::encoding::fnv1a(s.as_bytes())
}

/// The rules in force, behind one lock.
#[derive(Debug)]
struct State {
    /// In the order added: the first live match wins.
    rules: Vec<Rule>,
    /// The number of the next rule's id (`f<n>`); not reused after a removal.
    next_id: u64,
}

/// The faults overlay.
#[derive(Debug)]
pub struct Faults {
    /// The rules from `proxy.yaml`, started again on [`Faults::restart`].
    configured: Vec<FaultSpec>,
    /// `seed:` from `proxy.yaml`, for rules that name none.
    seed: u64,
    /// Whether `?failure=...` on a request injects a fault (`faults.query_trigger`).
    query_trigger: bool,
    /// How long `?failure=timeout` holds its 504, in virtual milliseconds.
    query_timeout_ms: u64,
    /// For the correlation ids of injected error bodies.
    ids: std::sync::Arc<Ids>,
    /// The rules in force.
    state: Mutex<State>,
    /// How many rules there are, so requests skip the lock when there are none (the common case).
    count: std::sync::atomic::AtomicUsize,
}

/// How an injected `ws_drop` fault ends one WebSocket session.
#[derive(Debug, Clone)]
pub struct WsDropPlan {
    /// The rule's id.
    pub rule: String,
    /// Drop once this many server frames were sent.
    pub after_frames: Option<u64>,
    /// Else, drop before each frame with this probability.
    pub probability: Option<f64>,
    /// The session's own seeded generator state.
    pub rng: u64,
}

impl WsDropPlan {
    /// Whether to drop the connection instead of sending the next frame, `sent` frames in.
    pub fn drop_now(&mut self, sent: u64) -> bool {
        if let Some(n) = self.after_frames {
            return sent >= n;
        }
        let p = self.probability.unwrap_or(0.0);
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        ((mix(self.rng) >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// The query parameter that asks for a fault on one request (`?failure=timeout|rate_limit|socket_drop`).
pub(crate) const QUERY_TRIGGER: &str = "failure";

impl Faults {
    /// An overlay starting with the rules in `proxy.yaml` (already checked), seeded by `seed`.
    pub fn new(
        configured: Vec<FaultSpec>,
        seed: u64,
        query_trigger: bool,
        query_timeout_ms: u64,
        ids: std::sync::Arc<Ids>,
        now_ms: i64,
    ) -> Faults {
        let f = Faults {
            configured,
            seed,
            query_trigger,
            query_timeout_ms,
            ids,
            state: Mutex::new(State { rules: Vec::new(), next_id: 1 }),
            count: std::sync::atomic::AtomicUsize::new(0),
        };
        f.restart(now_ms);
        f
    }

    /// The rules, locked (a poisoned lock is taken over).
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, unless there are no rules at all (then requests skip the lock).
    fn state_if_any(&self) -> Option<std::sync::MutexGuard<'_, State>> {
        (!self.none()).then(|| self.state())
    }

    /// The first live rule of a WebSocket kind matching a session's URL.
    fn live_ws_rule<'s>(
        st: &'s mut State,
        host: &str,
        path: &str,
        now_ms: i64,
        kind: impl Fn(&Kind) -> bool,
    ) -> Option<&'s mut Rule> {
        st.rules.iter_mut().find(|r| kind(&r.kind) && r.live(now_ms) && r.matches("GET", host, path))
    }

    /// Publishes how many rules there are, for the lock-free check in [`Faults::none`].
    fn recount(&self, st: &State) {
        self.count.store(st.rules.len(), std::sync::atomic::Ordering::Release);
    }

    /// Whether there are no rules at all: the common case, checked without the lock.
    fn none(&self) -> bool {
        self.count.load(std::sync::atomic::Ordering::Acquire) == 0
    }

    /// Back to the configured rules, their windows starting at `now_ms`.
    pub fn restart(&self, now_ms: i64) {
        let mut st = self.state();
        st.rules.clear();
        st.next_id = 1;
        for spec in &self.configured {
            let id = format!("f{}", st.next_id);
            st.next_id += 1;
            st.rules.push(Rule::start(spec, id, now_ms, self.seed));
        }
        self.recount(&st);
    }

    /// Adds a rule; returns its id.
    pub fn add(&self, spec: &Value, now_ms: i64) -> Result<String, RuleError> {
        let mut st = self.state();
        let id = format!("f{}", st.next_id);
        let rule = Rule::parse(spec, id.clone(), now_ms, self.seed)?;
        st.next_id += 1;
        tracing::info!(id = %id, kind = rule.kind.as_str(), "fault rule added");
        st.rules.push(rule);
        self.recount(&st);
        Ok(id)
    }

    /// Every rule, with what is left of its window.
    pub fn list(&self, now_ms: i64) -> Vec<Value> {
        self.state().rules.iter().map(|r| r.listing(now_ms)).collect()
    }

    /// Removes one rule (`Some(id)`) or all; how many went.
    pub fn remove(&self, id: Option<&str>) -> usize {
        let mut st = self.state();
        let before = st.rules.len();
        match id {
            Some(id) => st.rules.retain(|r| r.id != id),
            None => st.rules.clear(),
        }
        self.recount(&st);
        before - st.rules.len()
    }

    /// Whether a TLS handshake for `host` is to be refused now (a `tls` rule's window counts it).
    pub fn refuse_tls(&self, host: &str, now_ms: i64) -> Option<String> {
        if self.none() {
            return None;
        }
        let mut st = self.state();
        let rule = st.rules.iter_mut().find(|r| r.kind == Kind::Tls && r.live(now_ms) && r.matches("", host, ""))?;
        rule.take().then(|| rule.id.clone())
    }

    /// For a WebSocket session opening on `host` and `path`: the drop plan of the first live
    /// `ws_drop` rule that matches (its window counts sessions).
    pub fn ws_session(&self, host: &str, path: &str, now_ms: i64) -> Option<WsDropPlan> {
        let mut st = self.state_if_any()?;
        let r = Self::live_ws_rule(&mut st, host, path, now_ms, |k| matches!(k, Kind::WsDrop { .. }))?;
        if let Some(n) = r.remaining.as_mut() {
            *n -= 1;
        }
        let Kind::WsDrop { after_frames } = r.kind else { return None };
        let probability = (after_frames.is_none()).then_some(r.probability);
        r.rng = r.rng.wrapping_add(1);
        Some(WsDropPlan { rule: r.id.clone(), after_frames, probability, rng: mix(r.rng) })
    }

    /// Whether a heartbeat due now on a session at `host`/`path` is to be skipped: the rule's id.
    pub fn heartbeat_miss(&self, host: &str, path: &str, now_ms: i64) -> Option<String> {
        let mut st = self.state_if_any()?;
        let r = Self::live_ws_rule(&mut st, host, path, now_ms, |k| *k == Kind::HeartbeatMiss)?;
        r.take().then(|| r.id.clone())
    }

    /// The first live rule matching the request, counted; `None` when none fires.
    fn fire(&self, call: &Call<'_>, now_ms: i64) -> Option<(String, Kind, u64)> {
        if self.none() {
            return None;
        }
        let mut st = self.state();
        for r in st.rules.iter_mut() {
            if matches!(r.kind, Kind::Tls | Kind::WsDrop { .. } | Kind::HeartbeatMiss)
                || !r.live(now_ms)
                || !r.matches(call.method, call.host, call.path)
            {
                continue;
            }
            if !r.take() {
                return None;
            }
            let jitter = match r.kind {
                Kind::Latency { jitter_ms, .. } if jitter_ms > 0 => (r.roll() * (jitter_ms + 1) as f64) as u64,
                _ => 0,
            };
            return Some((r.id.clone(), r.kind.clone(), jitter));
        }
        None
    }

    /// The platform's error answer for an injected status.
    fn status_answer(&self, call: &Call<'_>, status: u16, retry_after_s: Option<u64>, detail: String) -> Answer {
        let (code, message) = match status {
            429 => (
                "too.many.requests",
                format!(
                    "Rate limit exceeded the maximum. Retry the request in [{}] seconds",
                    retry_after_s.unwrap_or(1)
                ),
            ),
            500 => ("internal.server.error", "The server encountered an internal error.".to_string()),
            502 => ("bad.gateway", "The server received an invalid response from an upstream server.".to_string()),
            503 => ("service.unavailable", "Service Unavailable: the service is temporarily unavailable.".to_string()),
            504 => {
                ("gateway.timeout", "The server did not receive a timely response from an upstream server.".to_string())
            }
            408 => ("request.timeout", "The request timed out.".to_string()),
            s if s < 500 => ("bad.request", format!("The request could not be processed (status {s}).")),
            s => ("server.error", format!("The server could not process the request (status {s}).")),
        };
        let mut a = super::platform_error(
            &self.ids,
            call.platform(),
            status,
            ErrorKind::Code(code),
            &message,
            json!([]),
            detail,
        );
        if let Some(s) = retry_after_s {
            a.headers.push(("retry-after".into(), s.to_string()));
        }
        a
    }

    /// Adds `x-callvcr-fault: <kind>`, so a test (and its reader) can tell an injected failure from a
    /// real one.
    fn marked(a: Answer, kind: &str) -> Answer {
        a.with_header("x-callvcr-fault", kind)
    }
}

/// The `failure` query parameter's value, when present.
fn query_failure(query: Option<&str>) -> Option<String> {
    crate::encoding::decode_pairs(query?).into_iter().find(|(k, _)| k == QUERY_TRIGGER).map(|(_, v)| v)
}

impl Overlay for Faults {
    /// `faults`.
    fn name(&self) -> &'static str {
        "faults"
    }

    /// A `?failure=` trigger first, then the first live rule that matches and fires: an error answer,
    /// a timeout (504 held until its delay passes), a hang, added latency or a cut. Rules for TLS and
    /// WebSocket faults are left to the listeners and sessions.
    fn on_request(&self, call: &Call<'_>, ctx: &mut Ctx, _ev: &Evidence<'_>) -> Decision {
        if self.query_trigger && call.query.is_some_and(|q| q.contains(QUERY_TRIGGER)) {
            if let Some(f) = query_failure(call.query) {
                return match f.as_str() {
                    "timeout" => {
                        let mut a =
                            Self::marked(self.status_answer(call, 504, None, "timeout:query".into()), "timeout");
                        a.not_before_ms = Some(ctx.now_ms + self.query_timeout_ms as i64);
                        Decision::Answer(a)
                    }
                    "rate_limit" => Decision::Answer(Self::marked(
                        self.status_answer(call, 429, Some(10), "status:query".into()),
                        "status",
                    )),
                    "socket_drop" => Decision::Cut(Cut::Close, "close:query".into()),
                    other => Decision::Answer(Answer::json(
                        400,
                        &json!({
                            "message": format!("callvcr: ?{QUERY_TRIGGER}={other} is not a fault; use timeout, rate_limit or socket_drop"),
                            "code": "callvcr.fault.query",
                            "status": 400,
                        }),
                        "bad-fault-query",
                    )),
                };
            }
        }
        let Some((id, kind, jitter)) = self.fire(call, ctx.now_ms) else { return Decision::Continue };
        let detail = format!("{}:{id}", kind.as_str());
        match kind {
            Kind::Status { status, retry_after_s } => {
                Decision::Answer(Self::marked(self.status_answer(call, status, retry_after_s, detail), "status"))
            }
            Kind::Timeout { delay_ms } => {
                let mut a = Self::marked(self.status_answer(call, 504, None, detail), "timeout");
                a.not_before_ms = Some(ctx.now_ms + delay_ms as i64);
                Decision::Answer(a)
            }
            Kind::Hang => Decision::Hang(detail),
            Kind::Latency { delay_ms, .. } => {
                ctx.response_headers.push(("x-callvcr-fault".into(), "latency".into()));
                Decision::Delay(ctx.now_ms + (delay_ms + jitter) as i64, detail)
            }
            Kind::Cut(c) => Decision::Cut(c, detail),
            Kind::Tls | Kind::WsDrop { .. } | Kind::HeartbeatMiss => Decision::Continue,
        }
    }

    /// Nothing: windows run on virtual time, so the proxy starts them again at the clock's start
    /// through [`Faults::restart`], which needs the time this phase does not get.
    fn reset(&self) {
        // The proxy restarts the windows at the clock's start through `restart`.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(v: Value) -> Rule {
        Rule::parse(&v, "f1".into(), 0, 0).unwrap()
    }

    #[test]
    fn windows_end_by_count_or_by_virtual_time() {
        let mut r = rule(json!({"kind": "status", "status": 503, "count": 2}));
        assert!(r.live(0) && r.take());
        assert!(r.live(0) && r.take());
        assert!(!r.live(0), "two requests, then the window is over");
        let r = rule(json!({"kind": "status", "status": 503, "duration_ms": 30_000}));
        assert!(r.live(29_999));
        assert!(!r.live(30_000));
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let spec = json!({"kind": "status", "status": 503, "probability": 0.5, "seed": 42});
        let run = || {
            let mut r = rule(spec.clone());
            (0..64).map(|_| r.take()).collect::<Vec<bool>>()
        };
        let a = run();
        assert_eq!(a, run());
        let fired = a.iter().filter(|x| **x).count();
        assert!((16..=48).contains(&fired), "about half of 64 fire: {fired}");
        let mut other = rule(json!({"kind": "status", "status": 503, "probability": 0.5, "seed": 43}));
        assert_ne!(a, (0..64).map(|_| other.take()).collect::<Vec<bool>>());
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let err = |v: Value| Rule::parse(&v, "f".into(), 0, 0).unwrap_err();
        assert!(err(json!({"kind": "explode"})).contains("not a fault kind"));
        assert!(err(json!({"kind": "status"})).contains("`status` is required"));
        assert!(err(json!({"kind": "status", "status": 200})).contains("400 to 599"));
        assert!(err(json!({"kind": "latency"})).contains("delay_ms"));
        assert!(err(json!({"kind": "tls", "match": {"path": "/x"}})).contains("host"));
        assert!(err(json!({"kind": "hang", "match": {"path": "(["}})).contains("regular expression"));
        assert!(err(json!({"kind": "hang", "probability": 2})).contains("from 0 to 1"));
        assert!(err(json!({"kind": "hang", "colour": "red"})).contains("unknown field `colour`"));
        assert!(err(json!({"kind": "ws_drop"})).contains("after_frames"));
        assert!(err(json!([1])).contains("JSON object"));
    }

    #[test]
    fn rules_match_on_method_host_and_path() {
        let r = rule(
            json!({"kind": "close", "match": {"method": "post", "host": "*.mypurecloud.com", "path": "^/api/v2/conversations"}}),
        );
        assert!(r.matches("POST", "api.mypurecloud.com", "/api/v2/conversations/calls"));
        assert!(!r.matches("GET", "api.mypurecloud.com", "/api/v2/conversations/calls"));
        assert!(!r.matches("POST", "api.nice-incontact.com", "/api/v2/conversations/calls"));
        assert!(!r.matches("POST", "api.mypurecloud.com", "/api/v2/users/me"));
    }

    #[test]
    fn latency_jitter_is_bounded_and_repeats_with_the_seed() {
        let h = http::HeaderMap::new();
        let body = bytes::Bytes::new();
        let parsed = crate::overlay::ParsedBody::new(&body);
        let call = Call {
            method: "GET",
            host: "api.mypurecloud.com",
            path: "/x",
            query: None,
            headers: &h,
            body: &body,
            parsed: &parsed,
        };
        let delays = || {
            let f = Faults::new(vec![], 0, true, 5_000, std::sync::Arc::new(Ids::new(0)), 0);
            f.add(&json!({"kind": "latency", "delay_ms": 100, "jitter_ms": 50, "seed": 9}), 0).unwrap();
            (0..32)
                .map(|_| {
                    let mut ctx = Ctx::default();
                    match f.on_request(&call, &mut ctx, &Evidence::none(&crate::overlay::Recorded::default())) {
                        Decision::Delay(t, _) => t,
                        other => panic!("{other:?}"),
                    }
                })
                .collect::<Vec<i64>>()
        };
        let a = delays();
        assert_eq!(a, delays(), "same seed, same delays");
        assert!(a.iter().all(|d| (100..=150).contains(d)), "{a:?}");
        assert!(a.iter().any(|d| *d != a[0]), "the jitter varies: {a:?}");
    }
}
