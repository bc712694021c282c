//! What callvcr knows about each platform, one file per platform behind the one interface of
//! [`Platform`]: its domains, its error bodies, its OAuth endpoints, how its SDKs name themselves,
//! its long polls and its WebSocket heartbeats. Protocol code (proxy, ws, cassette, overlays) asks
//! a `Platform` and names none; adding a platform is a file here and a variant below.
//!
//! Nothing here knows about sockets, cassettes or overlays: it sits below all of them.

mod generic;
pub(crate) mod genesys;
pub(crate) mod nice;

use serde_json::Value;

/// A contact-center platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Genesys Cloud.
    Genesys,
    /// NICE CXone.
    Nice,
    /// Any other intercepted host (a user's own API): standard OAuth 2.0, RFC 7807 errors.
    Generic,
}

/// A call-state machine as a platform defines it: plain data, so the platform knows its calls'
/// states without knowing how callvcr checks them (`config::machine` compiles it).
#[derive(Debug)]
pub(crate) struct CallPreset {
    /// The preset's name in `proxy.yaml` (`state.machines`).
    pub(crate) name: &'static str,
    /// Every state, in the platform's spelling.
    pub(crate) states: &'static [&'static str],
    /// Where a new call starts.
    pub(crate) initial: &'static str,
    /// The moves the platform allows: from a state, to any of these.
    pub(crate) moves: &'static [(&'static str, &'static [&'static str])],
    /// States a call does not leave.
    pub(crate) terminal: &'static [&'static str],
    /// Where a call goes when a timer runs out.
    pub(crate) timeout_state: &'static str,
    /// Conditions that are flags beside the state, not states (hold, mute, recording).
    pub(crate) flags: &'static [&'static str],
}

/// A platform's published rate limit: `limit` requests per `window_ms` per token on API paths.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RatePreset {
    /// The API paths it counts (a regular expression).
    pub(crate) path: &'static str,
    /// Requests allowed per window.
    pub(crate) limit: u64,
    /// The window's length.
    pub(crate) window_ms: u64,
}

/// What kind of refusal an overlay makes; each platform names it in its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind<'a> {
    /// The request is malformed or asks for something impossible (400).
    BadRequest,
    /// No item with this id (404).
    NotFound {
        /// The id asked for.
        id: &'a str,
    },
    /// The API version or path is retired (410).
    Gone,
    /// A state move the platform's own state machine refuses, as a 400.
    InvalidState,
    /// A state move refused as unprocessable (422).
    InvalidTransition,
    /// The caller exceeded a rate limit (429).
    TooManyRequests,
    /// The service cannot take the request now (503).
    ServiceUnavailable,
    /// A code the caller names itself (validation rules, injected faults).
    Code(&'a str),
}

/// One error answer to build: the status, what kind of refusal, the message and any details
/// (e.g. `[{errorCode, fieldName}]`).
#[derive(Debug, Clone)]
pub struct ApiError<'a> {
    /// HTTP status.
    pub status: u16,
    /// What kind of refusal it is.
    pub kind: ErrorKind<'a>,
    /// The human-readable message.
    pub message: &'a str,
    /// Structured details where the platform has a place for them.
    pub details: Value,
}

/// An error answer as the platform writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorBody {
    /// HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
    /// Headers the platform sends beside it (e.g. a correlation id).
    pub headers: Vec<(String, String)>,
    /// Its media type.
    pub content_type: &'static str,
}

/// The auth endpoints a platform serves (answered by the auth overlay in replay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRoute {
    /// The OAuth token endpoint.
    Token,
    /// NICE's access-key exchange.
    AccessKey,
    /// The browser sign-in (authorization code, implicit grant).
    Authorize,
    /// OpenID Connect discovery.
    Discovery,
    /// The token-signing key set.
    Jwks,
}

/// Whether `host` is `domain` or a name below it.
pub(crate) fn below(host: &str, domain: &str) -> bool {
    host == domain || (host.ends_with(domain) && host.as_bytes().get(host.len() - domain.len() - 1) == Some(&b'.'))
}

impl Platform {
    /// The platform `host` (lower case, no port) belongs to.
    pub fn of_host(host: &str) -> Platform {
        if genesys::DOMAINS.iter().any(|d| below(host, d)) {
            Platform::Genesys
        } else if nice::DOMAINS.iter().any(|d| below(host, d)) {
            Platform::Nice
        } else {
            Platform::Generic
        }
    }

    /// Its name in configuration and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Genesys => "genesys",
            Platform::Nice => "nice",
            Platform::Generic => "generic",
        }
    }

    /// The DNS domains the platform's hosts live under.
    pub fn domains(self) -> &'static [&'static str] {
        match self {
            Platform::Genesys => genesys::DOMAINS,
            Platform::Nice => nice::DOMAINS,
            Platform::Generic => &[],
        }
    }

    /// An API error in the platform's shape. `context` is a fresh correlation id, used where the
    /// platform sends one.
    pub fn error(self, e: &ApiError<'_>, context: String) -> ErrorBody {
        match self {
            Platform::Genesys => genesys::error(e, context),
            Platform::Nice => nice::error(e),
            Platform::Generic => generic::error(e),
        }
    }

    /// An API call's 401 for a bearer the platform does not accept: `code` names why in the
    /// platform's words where it has them (Genesys), `message` says it to a person.
    pub fn unauthorized(self, code: &str, message: &str, context: String) -> ErrorBody {
        match self {
            Platform::Nice => nice::unauthorized(message),
            Platform::Genesys => genesys::error(
                &ApiError { status: 401, kind: ErrorKind::Code(code), message, details: Value::Array(vec![]) },
                context,
            ),
            Platform::Generic => generic::unauthorized(code, message),
        }
    }

    /// An OAuth 2.0 token endpoint's error in the platform's shape.
    pub fn token_error(self, error: &str, description: &str) -> Value {
        match self {
            Platform::Genesys => genesys::token_error(error, description),
            Platform::Nice => nice::token_error(error, description),
            Platform::Generic => generic::token_error(error, description),
        }
    }

    /// Which auth endpoint a request is for; an empty `method` matches any.
    pub fn auth_route(self, host: &str, method: &str, path: &str) -> Option<AuthRoute> {
        let path = path.trim_end_matches('/');
        match self {
            Platform::Genesys => genesys::auth_route(host, method, path),
            Platform::Nice => nice::auth_route(method, path),
            Platform::Generic => generic::auth_route(method, path),
        }
    }

    /// Whether a request is an API call whose bearer token the platform checks.
    pub fn checks_bearer(self, host: &str, path: &str) -> bool {
        match self {
            Platform::Genesys => genesys::is_api_call(host, path),
            Platform::Nice => nice::is_api_call(path),
            Platform::Generic => generic::is_api_call(path),
        }
    }

    /// Whether an API call without a bearer is refused: on Genesys and NICE, yes; on a generic
    /// host only a presented bearer is checked (not every API there needs one).
    pub fn requires_bearer(self) -> bool {
        self != Platform::Generic
    }

    /// An access token's usual lifetime on the platform, in seconds.
    pub fn default_token_ttl_s(self) -> i64 {
        match self {
            Platform::Genesys => genesys::TOKEN_TTL_S,
            Platform::Nice => nice::TOKEN_TTL_S,
            Platform::Generic => generic::TOKEN_TTL_S,
        }
    }

    /// Whether a write (POST, PUT, PATCH, DELETE) to `path` only sets up the client's own session
    /// on the platform (a Genesys notification channel and its subscriptions) and changes nothing
    /// else there, so `callvcr verify` may send it without `--mutations`. Sign-ins are told apart
    /// by [`Platform::auth_route`].
    pub fn is_session_plumbing(self, path: &str) -> bool {
        match self {
            Platform::Genesys => genesys::is_session_plumbing(path),
            Platform::Nice | Platform::Generic => false,
        }
    }

    /// The header-name prefixes answers report rate limits in: the standard ones, and the
    /// platform's own (Genesys `inin-ratelimit-*`).
    pub fn rate_limit_headers(self) -> Vec<&'static str> {
        let own: &[&str] = match self {
            Platform::Genesys => genesys::RATE_LIMIT_HEADERS,
            Platform::Nice | Platform::Generic => &[],
        };
        generic::RATE_LIMIT_HEADERS.iter().chain(own).copied().collect()
    }

    /// Where a client-credentials token for API calls on `host` is asked for when a recording
    /// holds no sign-in: the token endpoint's host and path (Genesys: the region's login service).
    pub fn token_endpoint_for(self, host: &str) -> Option<(String, &'static str)> {
        match self {
            Platform::Genesys => genesys::login_host(host).map(|h| (h, genesys::TOKEN_PATH)),
            Platform::Nice | Platform::Generic => None,
        }
    }

    /// The WebSocket heartbeat interval the platform keeps when the recording shows none, in
    /// seconds (0: none).
    pub fn heartbeat_s(self) -> u64 {
        match self {
            Platform::Genesys => genesys::HEARTBEAT_S,
            Platform::Nice | Platform::Generic => 0,
        }
    }
}

/// The header an SDK names itself in, before `user-agent` (Genesys SDKs send `purecloud-sdk`):
/// the index keeps per-version recordings by it.
pub(crate) const SDK_HEADER: &str = genesys::SDK_HEADER;

/// Whether a path is a long poll (NICE agent events): its answer waits for something to happen.
pub(crate) fn is_long_poll(path: &str) -> bool {
    nice::is_long_poll(path)
}

/// Whether a request creates a notification channel (Genesys), whose answer's `id` names the
/// WebSocket session that follows.
pub(crate) fn creates_channel(method: &str, path: &str) -> bool {
    genesys::creates_channel(method, path)
}

/// The heartbeat message a platform's notification socket sends (Genesys).
pub(crate) fn heartbeat() -> Value {
    genesys::heartbeat()
}

/// The platform's answer to a client's ping message on a notification socket (Genesys
/// `{"message":"ping"}`), when it is one.
pub(crate) fn ping_reply(message: &Value) -> Option<Value> {
    genesys::ping_reply(message)
}

/// The topic an event on a notification socket is published on, when it names one: Genesys's
/// `topicName`, else a `topic`, `type`, `event` or `channel` field.
pub(crate) fn event_topic(event: &Value) -> Option<&str> {
    std::iter::once(genesys::TOPIC_FIELD)
        .chain(generic::TOPIC_FIELDS.iter().copied())
        .find_map(|f| event.get(f).and_then(Value::as_str))
}

/// Whether a text frame is a heartbeat (dropped on replay, synthesized instead).
pub(crate) fn is_heartbeat(text: &str) -> bool {
    genesys::is_heartbeat(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_known_however_its_text_is_escaped_and_an_event_is_not() {
        assert!(is_heartbeat(&heartbeat().to_string()));
        let escaped = r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket\u0020Heartbeat"}}"#;
        assert!(is_heartbeat(escaped), "{escaped}");
        let event = r#"{"topicName":"v2.users.u-1.presence","eventBody":{"message":"WebSocket Heartbeats are off"}}"#;
        assert!(!is_heartbeat(event));
        assert!(!is_heartbeat("not json, Heartbeat"));
    }

    #[test]
    fn hosts_map_to_their_platform() {
        assert_eq!(Platform::of_host("api.mypurecloud.com"), Platform::Genesys);
        assert_eq!(Platform::of_host("login.usw2.pure.cloud"), Platform::Genesys);
        assert_eq!(Platform::of_host("api-na1.niceincontact.com"), Platform::Nice);
        assert_eq!(Platform::of_host("cxone.niceincontact.com"), Platform::Nice);
        assert_eq!(Platform::of_host("notpure.cloud"), Platform::Generic);
        assert_eq!(Platform::of_host("example.com"), Platform::Generic);
    }

    #[test]
    fn each_platform_writes_its_own_error_shape() {
        let e = ApiError {
            status: 404,
            kind: ErrorKind::NotFound { id: "abc" },
            message: "The requested resource was not found.",
            details: Value::Array(vec![]),
        };
        let g = Platform::Genesys.error(&e, "ctx-1".into());
        assert_eq!(g.body["code"], "not.found");
        assert_eq!(g.body["status"], 404);
        assert_eq!(g.body["contextId"], "ctx-1");
        assert_eq!(g.headers, vec![("inin-correlation-id".to_string(), "ctx-1".to_string())]);
        let n = Platform::Nice.error(&e, "ctx-1".into());
        assert_eq!(n.body, serde_json::json!({"error": "NotFound", "error_description": "No item with id abc."}));
        assert!(n.headers.is_empty());
    }

    #[test]
    fn a_generic_host_speaks_the_standards() {
        let g = Platform::of_host("api.example.test");
        assert_eq!(g, Platform::Generic);
        let e = ApiError {
            status: 429,
            kind: ErrorKind::TooManyRequests,
            message: "slow down",
            details: Value::Array(vec![]),
        };
        let b = g.error(&e, "unused".into());
        assert_eq!(b.content_type, "application/problem+json");
        assert_eq!(
            b.body,
            serde_json::json!({"type": "about:blank", "title": "Too Many Requests", "status": 429, "detail": "slow down", "code": "too_many_requests"})
        );
        assert_eq!(g.auth_route("api.example.test", "POST", "/v1/oauth2/token"), Some(AuthRoute::Token));
        assert_eq!(g.auth_route("api.example.test", "GET", "/token"), None);
        assert!(g.checks_bearer("api.example.test", "/v1/orders") && !g.requires_bearer());
        let u = g.unauthorized("bad.credentials", "Invalid login credentials.", String::new());
        assert!(u
            .headers
            .iter()
            .any(|(k, v)| k == "www-authenticate" && v.starts_with("Bearer error=\"invalid_token\"")));
    }

    #[test]
    fn what_verify_asks_a_platform() {
        let g = Platform::Genesys;
        assert!(g.is_session_plumbing("/api/v2/notifications/channels"));
        assert!(g.is_session_plumbing("/api/v2/notifications/channels/ch-1/subscriptions"));
        assert!(!g.is_session_plumbing("/api/v2/conversations/calls"));
        assert!(!Platform::Nice.is_session_plumbing("/api/v2/notifications/channels"));
        assert!(g.rate_limit_headers().contains(&"inin-ratelimit-"));
        assert!(!Platform::Generic.rate_limit_headers().contains(&"inin-ratelimit-"));
        assert_eq!(
            g.token_endpoint_for("api.usw2.pure.cloud"),
            Some(("login.usw2.pure.cloud".to_string(), "/oauth/token"))
        );
        assert_eq!(Platform::Nice.token_endpoint_for("api-na1.niceincontact.com"), None);
        assert_eq!(
            event_topic(&serde_json::json!({"topicName": "v2.users.u-1.presence"})),
            Some("v2.users.u-1.presence")
        );
        assert_eq!(event_topic(&serde_json::json!({"type": "PONG"})), Some("PONG"));
        assert_eq!(event_topic(&serde_json::json!({"n": 1})), None);
    }

    #[test]
    fn auth_routes_are_the_platforms_own() {
        let g = Platform::of_host("login.mypurecloud.com");
        assert_eq!(g.auth_route("login.mypurecloud.com", "POST", "/oauth/token"), Some(AuthRoute::Token));
        assert_eq!(g.auth_route("api.mypurecloud.com", "POST", "/oauth/token"), None);
        let n = Platform::Nice;
        assert_eq!(n.auth_route("cxone.niceincontact.com", "", "/auth/jwks/"), Some(AuthRoute::Jwks));
        assert!(n.checks_bearer("api-na1.niceincontact.com", "/incontactapi/services/v27.0/agents"));
        assert!(!n.checks_bearer("api-na1.niceincontact.com", "/authentication/v1/token/access-key"));
    }
}
