//! NICE CXone: its domains, error bodies, auth endpoints and agent-event long polls, and its
//! contact states as plain data (`config` compiles them into a machine). Nothing NICE-specific
//! belongs anywhere else.

use serde_json::{json, Value};

use super::{ApiError, AuthRoute, CallPreset, ErrorBody, ErrorKind};

/// Contacts as the agent session sees them: a contact rings in, is answered, may be held and
/// resumed, and ends disconnected; mute and recording are flags.
pub(crate) const CONTACT: CallPreset = CallPreset {
    name: "nice-contact",
    states: &["Incoming", "Dialing", "Active", "Holding", "Disconnected"],
    initial: "Incoming",
    moves: &[
        ("Incoming", &["Active", "Disconnected"]),
        ("Dialing", &["Active", "Disconnected"]),
        ("Active", &["Holding", "Disconnected"]),
        ("Holding", &["Active", "Disconnected"]),
    ],
    terminal: &["Disconnected"],
    timeout_state: "Disconnected",
    flags: &["muted", "recording"],
};

/// Domains of NICE CXone.
pub(super) const DOMAINS: &[&str] = &["nice-incontact.com", "niceincontact.com"];

/// An access token lives an hour.
pub(super) const TOKEN_TTL_S: i64 = 3_600;

/// The error code for `kind`, in NICE's PascalCase.
fn code(kind: ErrorKind<'_>) -> &str {
    match kind {
        ErrorKind::BadRequest => "BadRequest",
        ErrorKind::InvalidState => "InvalidState",
        ErrorKind::NotFound { .. } => "NotFound",
        ErrorKind::Gone => "Gone",
        ErrorKind::InvalidTransition => "InvalidStateTransition",
        ErrorKind::TooManyRequests => "TooManyRequests",
        ErrorKind::ServiceUnavailable => "ServiceUnavailable",
        ErrorKind::Code(c) => c,
    }
}

/// `{error, error_description}`; a missing item names its id.
pub(super) fn error(e: &ApiError<'_>) -> ErrorBody {
    let description = match e.kind {
        ErrorKind::NotFound { id } => format!("No item with id {id}."),
        _ => e.message.to_string(),
    };
    ErrorBody {
        status: e.status,
        body: json!({"error": code(e.kind), "error_description": description}),
        headers: vec![],
        content_type: "application/json",
    }
}

/// A bearer refused: `invalid_token`, said again in `WWW-Authenticate`.
pub(super) fn unauthorized(message: &str) -> ErrorBody {
    ErrorBody {
        status: 401,
        body: json!({"error": "invalid_token", "error_description": message}),
        headers: vec![(
            "www-authenticate".to_string(),
            format!("Bearer error=\"invalid_token\", error_description=\"{message}\""),
        )],
        content_type: "application/json",
    }
}

/// The token endpoint writes `error` and `error_description`.
pub(super) fn token_error(error: &str, description: &str) -> Value {
    json!({"error": error, "error_description": description})
}

/// Auth paths (any host): sign-in, tokens, discovery, keys.
pub(super) fn is_auth_path(p: &str) -> bool {
    p.contains("/authentication/")
        || p.starts_with("/auth/")
        || p.starts_with("/.well-known/")
        || p == "/auth"
        || p.starts_with("/incontactauthorizationserver/")
}

/// The auth endpoints: OAuth token and authorize, discovery, the key set, the access-key exchange.
pub(super) fn auth_route(method: &str, path: &str) -> Option<AuthRoute> {
    let m = |want: &str| method.is_empty() || method == want;
    match path {
        "/auth/token" if m("POST") => Some(AuthRoute::Token),
        "/auth/authorize" if m("GET") => Some(AuthRoute::Authorize),
        "/.well-known/openid-configuration" if m("GET") => Some(AuthRoute::Discovery),
        "/auth/jwks" if m("GET") => Some(AuthRoute::Jwks),
        p if m("POST") && p.to_ascii_lowercase().ends_with("/authentication/v1/token/access-key") => {
            Some(AuthRoute::AccessKey)
        }
        _ => None,
    }
}

/// API calls: `/incontactapi/` and `/api/` paths that are not auth paths.
pub(super) fn is_api_call(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    !is_auth_path(&p) && (p.starts_with("/incontactapi/") || p.starts_with("/api/"))
}

/// The agent-event poll waits until an event happens.
pub(super) fn is_long_poll(path: &str) -> bool {
    path.ends_with("/get-next-event")
}

// ---- agent-session paths and actions (the contact-state preset) ----

/// A NICE agent-session interaction path: (session id, contact id, action).
pub(crate) fn interaction_path(path: &str) -> Option<(&str, &str, String)> {
    let lower = path.to_ascii_lowercase();
    let i = lower.find("/agent-sessions/")?;
    let rest = &path[i + "/agent-sessions/".len()..];
    let mut it = rest.split('/');
    let sid = it.next()?;
    if !it.next()?.eq_ignore_ascii_case("interactions") {
        return None;
    }
    let contact = it.next()?;
    let action = it.next()?.to_ascii_lowercase();
    it.next().is_none().then_some((sid, contact, action))
}

/// The NICE session id of a `get-next-event` long poll.
pub(crate) fn poll_session(path: &str) -> Option<&str> {
    let lower = path.to_ascii_lowercase();
    if !lower.ends_with("/get-next-event") {
        return None;
    }
    let i = lower.find("/agent-sessions/")?;
    path[i + "/agent-sessions/".len()..].split('/').next()
}

/// What a NICE interaction action does: a move to a state, or a flag set on or off.
pub(crate) type Effect = (Option<&'static str>, Option<(&'static str, bool)>);

/// The effect of a NICE interaction action.
pub(crate) fn action(action: &str) -> Option<Effect> {
    Some(match action {
        "accept" | "resume" => (Some("Active"), None),
        "hold" => (Some("Holding"), None),
        "end" | "reject" => (Some("Disconnected"), None),
        "mute" => (None, Some(("muted", true))),
        "unmute" => (None, Some(("muted", false))),
        "record" => (None, Some(("recording", true))),
        _ => return None,
    })
}
