//! The generic platform: any intercepted host that is neither Genesys Cloud nor NICE CXone, such
//! as a user's own REST API beside them. It speaks the standards: OAuth 2.0 (RFC 6749) at a token
//! endpoint, bearer tokens (RFC 6750) checked when a request presents one, and errors as problem
//! details (RFC 7807, `application/problem+json`). It has no call machine.

use serde_json::{json, Value};

use super::{ApiError, AuthRoute, ErrorBody, ErrorKind};

/// An access token lives an hour unless configured otherwise.
pub(super) const TOKEN_TTL_S: i64 = 3_600;

/// The media type of an RFC 7807 problem.
pub(super) const PROBLEM_JSON: &str = "application/problem+json";

/// The problem's `code` member for `kind`, in snake case.
fn code(kind: ErrorKind<'_>) -> &str {
    match kind {
        ErrorKind::BadRequest => "bad_request",
        ErrorKind::InvalidState => "invalid_state",
        ErrorKind::NotFound { .. } => "not_found",
        ErrorKind::Gone => "gone",
        ErrorKind::InvalidTransition => "invalid_transition",
        ErrorKind::TooManyRequests => "too_many_requests",
        ErrorKind::ServiceUnavailable => "service_unavailable",
        ErrorKind::Code(c) => c,
    }
}

/// The reason phrase of a status, as a problem's `title`.
fn title(status: u16) -> &'static str {
    http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error")
}

/// `{type, title, status, detail, code}` (the code as an extension member), with `errors` when
/// the refusal names what was wrong.
pub(super) fn error(e: &ApiError<'_>) -> ErrorBody {
    let mut body = json!({
        "type": "about:blank",
        "title": title(e.status),
        "status": e.status,
        "detail": e.message,
        "code": code(e.kind),
    });
    if e.details.as_array().is_some_and(|d| !d.is_empty()) {
        body["errors"] = e.details.clone();
    }
    ErrorBody { status: e.status, body, headers: vec![], content_type: PROBLEM_JSON }
}

/// A bearer refused (RFC 6750 section 3): a problem, and the challenge in `WWW-Authenticate`.
pub(super) fn unauthorized(code: &str, message: &str) -> ErrorBody {
    let mut b = error(&ApiError { status: 401, kind: ErrorKind::Code(code), message, details: Value::Array(vec![]) });
    b.headers.push((
        "www-authenticate".to_string(),
        format!("Bearer error=\"invalid_token\", error_description=\"{message}\""),
    ));
    b
}

/// The token endpoint's error (RFC 6749 section 5.2): `error` and `error_description`.
pub(super) fn token_error(error: &str, description: &str) -> Value {
    json!({"error": error, "error_description": description})
}

/// Whether `path` is a token endpoint: `/token`, or a path ending in `/oauth/token` or
/// `/oauth2/token` (where OAuth servers commonly put it).
fn is_token_path(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    p == "/token" || p.ends_with("/oauth/token") || p.ends_with("/oauth2/token")
}

/// The token endpoint, on any generic host.
pub(super) fn auth_route(method: &str, path: &str) -> Option<AuthRoute> {
    ((method.is_empty() || method == "POST") && is_token_path(path)).then_some(AuthRoute::Token)
}

/// Every other path is an API call (its bearer is checked when it presents one).
pub(super) fn is_api_call(path: &str) -> bool {
    !is_token_path(path)
}

/// The fields a generic event stream commonly names its topic in, in the order they are read.
pub(super) const TOPIC_FIELDS: &[&str] = &["topic", "type", "event", "channel"];

/// Standard rate-limit headers (the IETF draft's `ratelimit-*` and the common `x-ratelimit-*`).
pub(super) const RATE_LIMIT_HEADERS: &[&str] = &["ratelimit", "x-ratelimit-"];
