//! Which recorded exchanges a verify run sends, and as what: a sign-in (the browser step of the
//! authorization-code grant, or a token request), a WebSocket session, a long poll, or an
//! ordinary call. Requests that change the sandbox are sent only when the user asks
//! (`--mutations`); what depends on one that was not sent (an id it created, a poll it answered)
//! is not sent either, and the report says why. Decided from the cassette alone, before any IO.

use std::collections::{HashMap, HashSet};

use crate::cassette::model::Exchange;
use crate::cassette::redact::MARKER;
use crate::platform::{AuthRoute, Platform};

use super::ids::{id_like, tokens};

/// What a recorded exchange is to a verify run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The browser step of a sign-in (`/oauth/authorize`): answered with a redirect carrying a code.
    Authorize,
    /// A token request: sent with the live credentials.
    Token,
    /// A WebSocket handshake: the session is opened live and its events compared.
    WebSocket,
    /// A long poll: its answer waits for what a later request causes, so it is sent alongside.
    LongPoll,
    /// Anything else.
    Call,
}

/// Why an exchange is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    /// It changes the sandbox (POST, PUT, PATCH, DELETE), and `--mutations` was not given.
    Mutation,
    /// It uses what an exchange that was not sent would have made (an id).
    DependsOn(u64),
    /// It is a long poll whose recorded answer that exchange, not sent, caused.
    AnsweredBy(u64),
}

/// One exchange of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// The recorded exchange.
    pub(crate) seq: u64,
    /// What it is.
    pub(crate) kind: Kind,
    /// Why it is not sent, if it is not.
    pub(crate) skip: Option<Skip>,
}

/// A recorded host without its port, lower case.
pub(crate) fn host_only(host: &str) -> String {
    host.split(':').next().unwrap_or(host).to_ascii_lowercase()
}

/// The platform a recorded request went to.
pub(crate) fn platform_of(e: &Exchange) -> Platform {
    Platform::of_host(&host_only(&e.request.host))
}

/// Whose tokens a request uses: one set per platform, and per host on the generic platform.
pub(crate) fn token_key(e: &Exchange) -> String {
    match platform_of(e) {
        Platform::Generic => host_only(&e.request.host),
        p => p.as_str().to_string(),
    }
}

/// What a recorded exchange is.
pub(crate) fn kind_of(e: &Exchange) -> Kind {
    let r = &e.request;
    let host = host_only(&r.host);
    if e.response.status == 101 || r.header("sec-websocket-key").is_some() {
        return Kind::WebSocket;
    }
    match Platform::of_host(&host).auth_route(&host, &r.method, &r.path) {
        Some(AuthRoute::Token | AuthRoute::AccessKey) => Kind::Token,
        Some(AuthRoute::Authorize) => Kind::Authorize,
        _ if crate::platform::is_long_poll(&r.path) => Kind::LongPoll,
        _ => Kind::Call,
    }
}

/// Whether sending the exchange again would change the sandbox: a write that is neither a
/// sign-in nor the client's own session plumbing (a notification channel and its subscriptions).
pub(crate) fn changes_sandbox(e: &Exchange) -> bool {
    let writes = matches!(e.request.method.to_ascii_uppercase().as_str(), "POST" | "PUT" | "PATCH" | "DELETE");
    writes && kind_of(e) != Kind::Token && !platform_of(e).is_session_plumbing(&e.request.path)
}

/// Whether the recorded request carried a bearer the recording redacted (so a live token goes there).
pub(crate) fn redacted_bearer(e: &Exchange) -> bool {
    e.request
        .header("authorization")
        .is_some_and(|v| v.contains(MARKER) && !v.to_ascii_lowercase().starts_with("basic"))
}

/// The id-like tokens of a request's path, query and body.
fn request_ids(e: &Exchange) -> Vec<String> {
    let r = &e.request;
    let body = String::from_utf8_lossy(&r.body.bytes);
    [r.path.as_str(), r.query.as_deref().unwrap_or(""), &body]
        .into_iter()
        .flat_map(|t| tokens(t).map(|(_, t)| t.to_string()).collect::<Vec<_>>())
        .filter(|t| id_like(t))
        .collect()
}

/// The id-like tokens of an answer's body and `Location`.
fn answer_ids(e: &Exchange) -> Vec<String> {
    let body = String::from_utf8_lossy(&e.response.body.bytes);
    let location = e
        .response
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    [&*body, location]
        .into_iter()
        .flat_map(|t| tokens(t).map(|(_, t)| t.to_string()).collect::<Vec<_>>())
        .filter(|t| id_like(t))
        .collect()
}

/// Whether a read of `read` sees what a write to `written` changed: the same resource, one below
/// it, or the collection it is in (its parent; not further up).
fn related(written: &str, read: &str) -> bool {
    let under = |long: &str, short: &str| {
        let short = short.trim_end_matches('/');
        long.strip_prefix(short).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    let written = written.trim_end_matches('/');
    let parent = written.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    under(read, written) || (!parent.is_empty() && read.trim_end_matches('/') == parent)
}

/// The plan for `exchanges` (recorded order): each one's kind, and why it is not sent when it is
/// not. Without `mutations`, writes that change the sandbox are left out, and so is whatever uses
/// an id first seen in the answer of one left out, reads a resource one would have changed (the
/// item, below it, or its collection), or is a long poll answered because of one.
pub(crate) fn plan(exchanges: &[Exchange], mutations: bool) -> Vec<Step> {
    let mut seen: HashSet<String> = HashSet::new();
    // Ids only an exchange that was not sent would have made, and which exchange that was.
    let mut unmade: HashMap<String, u64> = HashMap::new();
    let mut skipped: HashSet<u64> = HashSet::new();
    // The resources writes not sent would have changed: (host, path, the write's sequence).
    let mut changed: Vec<(String, String, u64)> = Vec::new();
    let mut out = Vec::with_capacity(exchanges.len());
    for e in exchanges {
        let kind = kind_of(e);
        let asked = request_ids(e);
        let skip = if !mutations && changes_sandbox(e) {
            changed.push((e.request.host.clone(), e.request.path.clone(), e.seq));
            Some(Skip::Mutation)
        } else {
            asked.iter().find_map(|t| unmade.get(t)).map(|s| Skip::DependsOn(*s)).or_else(|| {
                // A read of a resource a write not sent would have changed (the item itself,
                // below it, or its collection) shows that write's effect in its recorded answer.
                changed
                    .iter()
                    .rev()
                    .find(|(h, p, _)| *h == e.request.host && related(p, &e.request.path))
                    .map(|(_, _, s)| Skip::DependsOn(*s))
            })
        };
        let answered = answer_ids(e);
        if skip.is_some() {
            skipped.insert(e.seq);
            for t in answered.iter().filter(|t| !seen.contains(*t) && !asked.contains(*t)) {
                unmade.entry(t.clone()).or_insert(e.seq);
            }
        }
        seen.extend(asked);
        seen.extend(answered);
        out.push(Step { seq: e.seq, kind, skip });
    }
    // A long poll's answer was caused by a request sent after it (`after`): when that one is not
    // sent, the recorded answer will not come either.
    for (e, i) in exchanges.iter().zip(0..out.len()) {
        let cause = e.after.filter(|a| out[i].kind == Kind::LongPoll && out[i].skip.is_none() && skipped.contains(a));
        if let Some(a) = cause {
            out[i].skip = Some(Skip::AnsweredBy(a));
        }
    }
    out
}

/// What a plan needs before it can run: which credentials, and which hosts need a sign-in the
/// cassette does not hold (API calls sent with a bearer, with no token request before them).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Needs {
    /// A token request sent with a client secret (HTTP Basic or `client_secret`), first by seq.
    pub(crate) client_secret: Option<u64>,
    /// A password grant (NICE: an access key) sent, first by seq.
    pub(crate) password: Option<u64>,
    /// For each token key with no sign-in before its first bearer call: that call's host.
    pub(crate) sign_in: Vec<(String, String)>,
}

/// What running `steps` over `exchanges` needs.
pub(crate) fn needs(exchanges: &[Exchange], steps: &[Step]) -> Needs {
    let mut n = Needs::default();
    let mut signed_in: HashSet<String> = HashSet::new();
    for (e, s) in exchanges.iter().zip(steps) {
        if s.skip.is_some() {
            continue;
        }
        let key = token_key(e);
        if s.kind == Kind::Token {
            let body = String::from_utf8_lossy(&e.request.body.bytes).to_string();
            let has = |k: &str| body.contains(&format!("{k}=")) || body.contains(&format!("\"{k}\""));
            let basic = e.request.header("authorization").is_some_and(|v| !crate::cassette::redact::no_credential(v));
            if basic || has("client_secret") {
                n.client_secret.get_or_insert(e.seq);
            }
            if body.contains("grant_type=password") || has("accessKeySecret") {
                n.password.get_or_insert(e.seq);
            }
            signed_in.insert(key);
        } else if redacted_bearer(e) && !signed_in.contains(&key) {
            n.sign_in.push((key.clone(), host_only(&e.request.host)));
            signed_in.insert(key);
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassette::model::test_exchange;

    const CALL: &str = "5b4c1a7e-2f5e-4c47-9d0e-1f2a3b4c5d6e";

    fn with_host(mut e: Exchange, host: &str) -> Exchange {
        e.request.host = host.into();
        e
    }

    fn bearer(mut e: Exchange) -> Exchange {
        e.request.headers.push(("authorization".into(), MARKER.into()));
        e
    }

    #[test]
    fn a_read_of_what_a_skipped_write_changed_is_skipped_too() {
        let x = "/api/v2/routing/queues/q-0001";
        let exchanges = vec![
            bearer(test_exchange(1, "DELETE", x, None, "", 204, "")),
            bearer(test_exchange(2, "GET", x, None, "", 404, r#"{"code":"not.found"}"#)),
            bearer(test_exchange(3, "GET", "/api/v2/routing/queues", None, "", 200, r#"{"entities":[]}"#)),
            bearer(test_exchange(4, "GET", &format!("{x}/members"), None, "", 404, "{}")),
            bearer(test_exchange(5, "GET", "/api/v2/routing/queuesx", None, "", 200, "{}")),
            bearer(test_exchange(6, "GET", "/api/v2/users/me", None, "", 200, "{}")),
        ];
        let skips: Vec<Option<Skip>> = plan(&exchanges, false).into_iter().map(|s| s.skip).collect();
        assert_eq!(
            skips,
            [
                Some(Skip::Mutation),
                Some(Skip::DependsOn(1)),
                Some(Skip::DependsOn(1)),
                Some(Skip::DependsOn(1)),
                None,
                None
            ]
        );
        assert!(plan(&exchanges, true).iter().all(|s| s.skip.is_none()), "with --mutations all are sent");
    }

    fn flow() -> Vec<Exchange> {
        let created = format!(r#"{{"id":"{CALL}","user":{{"id":"u-1"}}}}"#);
        let mut token = with_host(
            test_exchange(1, "POST", "/oauth/token", None, "grant_type=client_credentials", 200, "{}"),
            "login.mypurecloud.com",
        );
        token.request.headers.push(("authorization".into(), MARKER.into()));
        let mut ws = with_host(
            test_exchange(5, "GET", "/channels/streaming-0-7d1c9e2a4b6f", None, "", 101, ""),
            "streaming.mypurecloud.com",
        );
        ws.request.headers.push(("sec-websocket-key".into(), "k".into()));
        vec![
            token,
            bearer(test_exchange(2, "GET", "/api/v2/users/me", None, "", 200, r#"{"id":"u-1"}"#)),
            bearer(test_exchange(
                3,
                "POST",
                "/api/v2/notifications/channels",
                None,
                "",
                200,
                r#"{"id":"streaming-0-7d1c9e2a4b6f"}"#,
            )),
            bearer(test_exchange(
                4,
                "POST",
                "/api/v2/conversations/calls",
                None,
                r#"{"phoneNumber":"+1"}"#,
                200,
                &created,
            )),
            ws,
            bearer(test_exchange(6, "GET", &format!("/api/v2/conversations/calls/{CALL}"), None, "", 200, &created)),
            bearer(test_exchange(
                7,
                "PATCH",
                &format!("/api/v2/conversations/calls/{CALL}/participants/p-1"),
                None,
                r#"{"held":true}"#,
                202,
                "",
            )),
            bearer(test_exchange(8, "GET", "/api/v2/conversations/calls", None, "", 200, r#"{"entities":[]}"#)),
        ]
    }

    #[test]
    fn writes_wait_for_mutations_and_so_does_what_uses_their_ids() {
        let ex = flow();
        let p = plan(&ex, false);
        let got: Vec<(u64, Kind, Option<Skip>)> = p.iter().map(|s| (s.seq, s.kind, s.skip)).collect();
        assert_eq!(
            got,
            [
                (1, Kind::Token, None),
                (2, Kind::Call, None),
                (3, Kind::Call, None), // a notification channel is the client's own plumbing
                (4, Kind::Call, Some(Skip::Mutation)),
                (5, Kind::WebSocket, None),
                (6, Kind::Call, Some(Skip::DependsOn(4))), // the call #4 would have made
                (7, Kind::Call, Some(Skip::Mutation)),
                (8, Kind::Call, Some(Skip::DependsOn(4))), // the list the call #4 made would be in
            ]
        );
        assert!(plan(&ex, true).iter().all(|s| s.skip.is_none()));
    }

    #[test]
    fn a_long_poll_answered_by_a_skipped_write_is_skipped_too() {
        let host = "api-na1.niceincontact.com";
        let events = "/incontactapi/services/v27.0/agent-sessions/s-1/get-next-event";
        let mut poll = with_host(test_exchange(1, "GET", events, Some("timeout=5"), "", 200, "{}"), host);
        // The poll was waiting when the state changed, and that change answered it.
        poll.after = Some(2);
        let state = with_host(
            test_exchange(2, "POST", "/incontactapi/services/v27.0/agent-sessions/s-1/state", None, "{}", 202, "{}"),
            host,
        );
        let p = plan(&[poll.clone(), state.clone()], false);
        assert_eq!(p[0].kind, Kind::LongPoll);
        assert_eq!(p[0].skip, Some(Skip::AnsweredBy(2)));
        assert_eq!(plan(&[poll, state], true)[0].skip, None);
    }

    #[test]
    fn needs_name_the_credentials_and_the_missing_sign_ins() {
        let ex = flow();
        let n = needs(&ex, &plan(&ex, false));
        assert_eq!(n, Needs { client_secret: Some(1), password: None, sign_in: vec![] });
        let no_sign_in = &ex[1..];
        let n = needs(no_sign_in, &plan(no_sign_in, false));
        assert_eq!(n.sign_in, vec![("genesys".to_string(), "api.mypurecloud.com".to_string())]);
        let nice = with_host(
            test_exchange(
                1,
                "POST",
                "/auth/token",
                None,
                "grant_type=password&username=k&password=%5BREDACTED%5D",
                200,
                "{}",
            ),
            "cxone.niceincontact.com",
        );
        let n = needs(std::slice::from_ref(&nice), &plan(std::slice::from_ref(&nice), false));
        assert_eq!((n.client_secret, n.password), (None, Some(1)));
    }
}
