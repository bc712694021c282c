//! Genesys Cloud: its domains, error bodies, login service, SDK header and notification socket,
//! and its call-participant states and rate limit as plain data (`config` compiles them into a
//! machine and rate rules). Nothing Genesys-specific belongs anywhere else.

use serde_json::{json, Value};

use super::{ApiError, AuthRoute, CallPreset, ErrorBody, ErrorKind, RatePreset};

/// Domains of Genesys Cloud regions (and its development and test environments).
pub(super) const DOMAINS: &[&str] = &[
    "mypurecloud.com",
    "mypurecloud.ie",
    "mypurecloud.de",
    "mypurecloud.jp",
    "mypurecloud.com.au",
    "pure.cloud",
    "us-gov-pure.cloud",
    "inindca.com",
    "inintca.com",
];

/// An access token lives a day unless the client asks otherwise.
pub(super) const TOKEN_TTL_S: i64 = 86_400;

/// The notification socket sends a heartbeat every 30 seconds.
pub(super) const HEARTBEAT_S: u64 = 30;

/// The SDKs name themselves and their version in this header.
pub(super) const SDK_HEADER: &str = "purecloud-sdk";

/// The public API's paths, where rate limits and bearer checks apply.
pub(crate) const API_PATH: &str = "^/api/v2/";

/// Genesys Cloud's rate limit: 300 requests a minute per token on the API (the platform's
/// documented default for a client).
pub(crate) const RATE_LIMIT: RatePreset = RatePreset { path: API_PATH, limit: 300, window_ms: 60_000 };

/// Call participants' states. Hold, mute and recording are flags on a participant, not states;
/// `disconnected` and `terminated` end a participant.
pub(crate) const CALL: CallPreset = CallPreset {
    name: "genesys-call",
    states: &["alerting", "dialing", "contacting", "offering", "connected", "disconnected", "terminated"],
    initial: "alerting",
    moves: &[
        ("alerting", &["connected", "disconnected", "terminated"]),
        ("offering", &["alerting", "connected", "disconnected", "terminated"]),
        ("dialing", &["contacting", "connected", "disconnected", "terminated"]),
        ("contacting", &["connected", "disconnected", "terminated"]),
        ("connected", &["disconnected", "terminated"]),
        ("disconnected", &["terminated"]),
    ],
    terminal: &["disconnected", "terminated"],
    timeout_state: "disconnected",
    flags: &["held", "muted", "recording", "confined"],
};

/// The platform's dotted error code for `kind` (`not.found`, `bad.request`); `InvalidState` has no
/// code of its own here and is a plain `bad.request`.
fn code(kind: ErrorKind<'_>) -> &str {
    match kind {
        ErrorKind::BadRequest | ErrorKind::InvalidState => "bad.request",
        ErrorKind::NotFound { .. } => "not.found",
        ErrorKind::Gone => "gone",
        ErrorKind::InvalidTransition => "invalid.state.transition",
        ErrorKind::TooManyRequests => "too.many.requests",
        ErrorKind::ServiceUnavailable => "service.unavailable",
        ErrorKind::Code(c) => c,
    }
}

/// `{message, code, status, contextId, details, errors}`, with the correlation header beside it.
pub(super) fn error(e: &ApiError<'_>, context: String) -> ErrorBody {
    let body = json!({
        "message": e.message,
        "code": code(e.kind),
        "status": e.status,
        "contextId": context,
        "details": e.details,
        "errors": [],
    });
    ErrorBody {
        status: e.status,
        body,
        headers: vec![("inin-correlation-id".to_string(), context)],
        content_type: "application/json",
    }
}

/// The login service writes `error`, `description` and `error_description`.
pub(super) fn token_error(error: &str, description: &str) -> Value {
    json!({"error": error, "description": description, "error_description": description})
}

/// The login service (`login.<region>`) serves the token endpoint and the browser sign-in.
pub(super) fn auth_route(host: &str, method: &str, path: &str) -> Option<AuthRoute> {
    if !host.starts_with("login.") {
        return None;
    }
    let m = |want: &str| method.is_empty() || method == want;
    match path {
        "/oauth/token" if m("POST") => Some(AuthRoute::Token),
        "/oauth/authorize" if m("GET") => Some(AuthRoute::Authorize),
        _ => None,
    }
}

/// API calls are `/api/v2/` paths on the API hosts.
pub(super) fn is_api_call(host: &str, path: &str) -> bool {
    !host.starts_with("login.") && path.starts_with("/api/v2/")
}

/// `POST /api/v2/notifications/channels` makes a channel whose WebSocket follows.
pub(super) fn creates_channel(method: &str, path: &str) -> bool {
    method == "POST" && path.ends_with("/notifications/channels")
}

/// The field a notification event names its topic in.
pub(super) const TOPIC_FIELD: &str = "topicName";

/// The prefix of the rate-limit headers Genesys Cloud answers with (`inin-ratelimit-count`, ...).
pub(super) const RATE_LIMIT_HEADERS: &[&str] = &["inin-ratelimit-"];

/// Notification channels and their subscriptions belong to the client's own session: making one
/// changes nothing in the org, so a verify run may make them without `--mutations`.
pub(super) fn is_session_plumbing(path: &str) -> bool {
    path == "/api/v2/notifications/channels" || path.starts_with("/api/v2/notifications/channels/")
}

/// The login service of an API host's region (`api.usw2.pure.cloud` → `login.usw2.pure.cloud`),
/// where a client-credentials token is asked for.
pub(super) fn login_host(api_host: &str) -> Option<String> {
    let rest = api_host.strip_prefix("api.")?;
    Some(format!("login.{rest}"))
}

/// The token endpoint's path on the login service.
pub(super) const TOKEN_PATH: &str = "/oauth/token";

/// The heartbeat message of the notification socket.
pub(super) fn heartbeat() -> Value {
    json!({"topicName": "channel.metadata", "eventBody": {"message": "WebSocket Heartbeat"}})
}

/// A client's `{"message":"ping"}` is answered with a `pong` on the metadata topic.
pub(super) fn ping_reply(message: &Value) -> Option<Value> {
    (message.get("message").and_then(Value::as_str) == Some("ping"))
        .then(|| json!({"topicName": "channel.metadata", "eventBody": {"message": "pong"}}))
}

/// Whether a text frame is that heartbeat.
pub(super) fn is_heartbeat(text: &str) -> bool {
    // Most frames are events: the message text, literal or \u-escaped, is not in them, and they
    // are not parsed at all.
    if !text.contains("Heartbeat") && !text.contains("\\u") {
        return false;
    }
    serde_json::from_str::<Value>(text)
        .ok()
        .is_some_and(|v| v["topicName"] == "channel.metadata" && v["eventBody"]["message"] == "WebSocket Heartbeat")
}

// ---- conversation paths and bodies (the call-state preset) ----

/// A Genesys call path: (conversation id, participant id, whether it is the calls API).
pub(crate) fn call_path(path: &str) -> Option<(&str, Option<&str>, bool)> {
    let rest = path.strip_prefix("/api/v2/conversations/")?;
    let (calls, rest) = match rest.strip_prefix("calls/") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let mut it = rest.trim_end_matches('/').split('/');
    let cid = it.next().filter(|c| !c.is_empty() && *c != "calls")?;
    match (it.next(), it.next(), it.next()) {
        (None, _, _) => Some((cid, None, calls)),
        (Some("participants"), Some(pid), None) => Some((cid, Some(pid), calls)),
        (Some("disconnect"), None, _) if !calls => Some((cid, None, false)),
        _ => None,
    }
}

/// A participant's state and purpose in a Genesys body (calls API: on the participant; the
/// conversations API: on its first call).
pub(crate) fn participant_state(p: &Value) -> Option<(&str, &str, &str)> {
    let id = p.get("id")?.as_str()?;
    let purpose = p.get("purpose").and_then(Value::as_str).unwrap_or("");
    let state = p
        .get("state")
        .and_then(Value::as_str)
        .or_else(|| p.get("calls")?.as_array()?.first()?.get("state")?.as_str())?;
    Some((id, purpose, state))
}
