//! The admin API that tests drive, under `/mock/admin/`: JSON in and out, loopback only unless
//! configured, optional bearer token, browser requests refused. Health, journal, reset, cassette
//! switch, the virtual clock, and the overlays' handles: tokens (auth), fault rules, sessions and
//! machines (state), WebSocket sessions and pushed events. It decides nothing itself: each route
//! calls the proxy or an overlay.

// Admin handlers return their error answer directly (`Result<_, Response>`); the admin API is not a
// hot path, so the size of that error value does not matter.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::listen::Drain;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::rfc3339_ms;
use crate::proxy::Proxy;

mod ui;

/// A JSON answer.
fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap_or_default())));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

/// An error answer: `{"error": code, "message": message}`, the message saying what to send instead.
fn error(status: StatusCode, code: &str, message: String) -> Response<Full<Bytes>> {
    reply(status, json!({"error": code, "message": message}))
}

/// Answers one admin request from `peer`: the same rules for the API, the inspector's page and
/// its event stream (loopback, `Host` and `Origin`, then `admin.token`, as a bearer or the
/// page's cookie). `stop` ends event streams when callvcr shuts down.
pub(crate) async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    local: SocketAddr,
    proxy: Arc<Proxy>,
    stop: watch::Receiver<bool>,
) -> Response<ui::Body> {
    let admin = &proxy.config.admin;
    if !peer.ip().is_loopback() && !admin.allow_remote {
        return ui::boxed(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the admin API answers loopback callers only; {peer} is not one (set admin.allow_remote: true in proxy.yaml to allow it)"),
        ));
    }
    if let Err(refused) = browser_checks(&req, local, admin) {
        return ui::boxed(refused);
    }
    let path = req.uri().path().trim_end_matches('/').to_string();
    if path == "/ui" || path.starts_with("/ui/") {
        return ui::page(&req, &path, admin);
    }
    if let Some(token) = &admin.token {
        let bearer = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t == token);
        if !bearer && !ui::cookie_matches(&req, token) {
            return ui::boxed(error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <admin.token> (a browser: open /ui?token=<admin.token> once)".into(),
            ));
        }
    }
    if req.method() == Method::GET && path == "/mock/admin/events" {
        return ui::events(proxy, stop);
    }
    ui::boxed(answer(req, path, proxy).await)
}

/// An API call past the checks: its body read (bounded), then its route.
async fn answer(req: Request<Incoming>, path: String, proxy: Arc<Proxy>) -> Response<Full<Bytes>> {
    let Some(route) = path.strip_prefix("/mock/admin").map(String::from) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no admin route {path}; routes live under /mock/admin/"),
        );
    };
    let method = req.method().clone();
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_body",
                format!("could not read the request body (at most {MAX_BODY} bytes): {e}"),
            )
        }
    };
    let r = match route_call(&method, &route, &body, &proxy).await {
        Ok(r) => r,
        Err(e) => e,
    };
    if method != Method::GET && r.status().is_success() {
        // Pages watching refetch what the call changed (the clock, tokens, faults, a session...).
        let now = rfc3339_ms(proxy.timer.now_ms());
        proxy.journal.live.publish("changed", &json!({"method": method.as_str(), "route": route, "now": now}));
        // And by name, for a page that follows one thing.
        let named = match route.as_str() {
            "/clock" => Some("clock"),
            "/tokens/expire" => Some("tokens"),
            r if r.starts_with("/faults") => Some("faults"),
            r if r.starts_with("/session/") => Some("state"),
            _ => None,
        };
        if let Some(name) = named {
            proxy.journal.live.publish(name, &json!({"route": route, "now": now}));
        }
    }
    r
}

/// The admin API's defences against web pages: a `Host` it does not know (DNS rebinding) and an
/// `Origin` other than its own (a cross-site request) are refused with 403, and a state-changing
/// call with a body must say `Content-Type: application/json` (415), so no "simple" cross-site
/// request reaches it. Requests without `Origin` (curl, scripts, SDK helpers) are not affected.
fn browser_checks(
    req: &Request<Incoming>,
    local: SocketAddr,
    admin: &crate::config::AdminConfig,
) -> Result<(), Answer> {
    let header = |name: http::header::HeaderName| {
        req.headers().get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let host = header(http::header::HOST).or_else(|| req.uri().authority().map(|a| a.to_string()));
    if let Some(h) = &host {
        if !host_allowed(h, local, &admin.allowed_hosts) {
            return Err(error(
                StatusCode::FORBIDDEN,
                "forbidden_host",
                format!("Host `{h}` is not this admin API's address ({local}, localhost or 127.0.0.1 with port {}); list the names it is reached by in admin.allowed_hosts", local.port()),
            ));
        }
    }
    if let Some(origin) = header(http::header::ORIGIN) {
        let own = host.as_deref().map(|h| format!("http://{}", h.to_ascii_lowercase()));
        let listed = admin
            .allowed_origins
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin.trim_end_matches('/')));
        if own.as_deref() != Some(origin.to_ascii_lowercase().trim_end_matches('/')) && !listed {
            return Err(error(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!("requests from pages at `{origin}` are refused (a web page may not drive the admin API); list trusted origins in admin.allowed_origins"),
            ));
        }
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let has_body = !hyper::body::Body::is_end_stream(req.body())
        || req.headers().get(http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
    let json = header(http::header::CONTENT_TYPE).is_some_and(|c| {
        let base = c.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        base == "application/json"
    });
    if changes && (has_body || req.headers().contains_key(http::header::ORIGIN)) && !json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("{} needs Content-Type: application/json", req.method()),
        ));
    }
    Ok(())
}

/// Whether `host` (a `Host` header) names this admin listener.
fn host_allowed(host: &str, local: SocketAddr, listed: &[String]) -> bool {
    let host = host.trim().to_ascii_lowercase();
    if listed.iter().any(|l| {
        let l = l.trim().to_ascii_lowercase();
        l == host || (!l.contains(':') && host.rsplit_once(':').is_some_and(|(name, _)| name == l))
    }) {
        return true;
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p))
            if !n.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && (!n.starts_with('[') || n.ends_with(']')) =>
        {
            (n.to_string(), p.parse::<u16>().ok())
        }
        _ => (host.clone(), Some(80)),
    };
    if port != Some(local.port()) {
        return false;
    }
    let bound = match local.ip() {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    };
    matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]") || name == bound
}

/// Largest admin request body.
const MAX_BODY: usize = 1 << 20;

/// Every admin answer, the refusals too: handlers return `Result<Answer, Answer>` and `?` the
/// refusal out.
type Answer = Response<Full<Bytes>>;

/// The JSON body, or a 400 naming what is wrong with it. An empty body reads as `{}`.
fn json_body(body: &Bytes) -> Result<serde_json::Map<String, Value>, Answer> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => {
            Err(error(StatusCode::BAD_REQUEST, "bad_json", format!("expected a JSON object, got {}", kind_of(&other))))
        }
        Err(e) => Err(error(StatusCode::BAD_REQUEST, "bad_json", format!("the body is not valid JSON: {e}"))),
    }
}

/// What kind of JSON value `v` is, in words, for an error message.
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Refuses a body with a field `route` does not take (a typo would otherwise be silently ignored).
fn unknown_fields(m: &serde_json::Map<String, Value>, allowed: &[&str], route: &str) -> Result<(), Answer> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("unknown field `{k}` for {route}; expected {}", allowed.join(" or ")),
        )),
        None => Ok(()),
    }
}

/// An overlay's handle, or 409 naming it when it is not running.
fn running<'a, T>(
    proxy: &Proxy,
    handle: Option<&'a std::sync::Arc<T>>,
    name: &str,
) -> Result<&'a std::sync::Arc<T>, Answer> {
    handle.ok_or_else(|| {
        error(
            StatusCode::CONFLICT,
            "overlay_off",
            format!(
                "the {name} overlay is not running ({}); it runs in replay unless switched off with --no-overlay {name} or overlays.disable",
                proxy.mode.as_str()
            ),
        )
    })
}

/// The auth overlay, or 409 when it is off.
fn auth_overlay(proxy: &Proxy) -> Result<&std::sync::Arc<crate::overlay::auth::Auth>, Answer> {
    running(proxy, proxy.overlays.auth.as_ref(), "auth")
}

/// The state overlay, or 409 when it is off.
fn state_overlay(proxy: &Proxy) -> Result<&std::sync::Arc<crate::overlay::state::State>, Answer> {
    running(proxy, proxy.overlays.state.as_ref(), "state")
}

/// A session route: `/session/:id[/transition|/release]` → (id, action).
fn session_route(route: &str) -> Option<(&str, &str)> {
    let rest = route.strip_prefix("/session/")?;
    let (id, action) = match rest.split_once('/') {
        Some((id, a)) => (id, a),
        None => (rest, ""),
    };
    (!id.is_empty() && matches!(action, "" | "transition" | "release")).then_some((id, action))
}

/// `GET /session/:id`, `POST /session/:id/transition` and `POST /session/:id/release`; after a
/// change, lets the proxy deliver the events and deadlines it made.
async fn session_call(
    method: &Method,
    id: &str,
    action: &str,
    body: &Bytes,
    proxy: &Arc<Proxy>,
) -> Result<Answer, Answer> {
    let state = state_overlay(proxy)?;
    let now = proxy.timer.now_ms();
    let admin_error = |(status, code, message): crate::overlay::state::AdminError| {
        error(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), code, message)
    };
    let answer = match (method, action) {
        (&Method::GET, "") => match state.view(id, now) {
            Some(v) => reply(StatusCode::OK, v),
            None => error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no session `{id}`: not in the cassette and not made yet (a transition makes it); GET /mock/admin/sessions lists them"),
            ),
        },
        (&Method::POST, "transition") => {
            let m = json_body(body)?;
            unknown_fields(&m, &["from", "to", "metadata"], "POST /mock/admin/session/:id/transition")?;
            let bad = |msg: String| error(StatusCode::BAD_REQUEST, "bad_request", msg);
            let to = match m.get("to") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => return Err(bad("send {\"to\": STATE} (with \"from\" to check the current state)".into())),
            };
            let from = match m.get("from") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(v) => return Err(bad(format!("from must be a state name, got {v}"))),
            };
            let metadata = match m.get("metadata") {
                None | Some(Value::Null) => json!({}),
                Some(v @ Value::Object(_)) => v.clone(),
                Some(v) => return Err(bad(format!("metadata must be an object, got {v}"))),
            };
            let v = state.transition(id, from.as_deref(), &to, metadata, now).map_err(admin_error)?;
            reply(StatusCode::OK, v)
        }
        (&Method::POST, "release") => {
            let m = json_body(body)?;
            unknown_fields(&m, &["participantId"], "POST /mock/admin/session/:id/release")?;
            let party = m.get("participantId").and_then(Value::as_str).map(str::to_string);
            reply(StatusCode::OK, state.release(id, party.as_deref(), now).map_err(admin_error)?)
        }
        _ => {
            return Err(error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed on /mock/admin/session/{id}{}", if action.is_empty() { String::new() } else { format!("/{action}") }),
            ))
        }
    };
    proxy.state_moved().await;
    Ok(answer)
}

/// The faults overlay, or 409 when it is off.
fn faults_overlay(proxy: &Proxy) -> Result<&std::sync::Arc<crate::overlay::faults::Faults>, Answer> {
    running(proxy, proxy.overlays.faults.as_ref(), "faults")
}

/// `GET /mock/admin/health`'s answer.
fn health(proxy: &Proxy) -> Value {
    json!({
        "status": "ok",
        "mode": proxy.mode.as_str(),
        "cassette": proxy.cassette_name.read().map(|s| s.clone()).unwrap_or_default(),
        "overlays": proxy.overlays.pipeline.names(),
        "clock": {"now": rfc3339_ms(proxy.timer.now_ms()), "frozen": proxy.clock.is_frozen()},
    })
}

/// Every admin route but the session ones, by method and path below `/mock/admin`; 404 names an
/// unknown one.
async fn route_call(method: &Method, route: &str, body: &Bytes, proxy: &Arc<Proxy>) -> Result<Answer, Answer> {
    let now = || json!({"now": rfc3339_ms(proxy.timer.now_ms())});
    if let Some(r) = ui::route(method, route, proxy) {
        return Ok(r);
    }
    Ok(match (method, route) {
        (&Method::GET, "/health") => reply(StatusCode::OK, health(proxy)),
        (&Method::GET, "/journal") => {
            reply(StatusCode::OK, serde_json::to_value(proxy.journal()).unwrap_or(Value::Null))
        }
        (&Method::POST, "/reset") => {
            proxy.reset();
            reply(StatusCode::OK, json!({"reset": true}))
        }
        (&Method::GET, "/clock") => reply(StatusCode::OK, now()),
        (&Method::POST, "/clock") => {
            let m = json_body(body)?;
            unknown_fields(&m, &["advance_ms", "set"], "POST /mock/admin/clock")?;
            match (m.get("advance_ms"), m.get("set")) {
                (Some(a), None) => {
                    let ms = a.as_i64().ok_or_else(|| {
                        error(
                            StatusCode::BAD_REQUEST,
                            "bad_request",
                            format!("advance_ms must be a whole number of milliseconds, got {a}"),
                        )
                    })?;
                    proxy.timer.advance_ms(ms);
                }
                (None, Some(v)) => {
                    let t = v.as_str().and_then(crate::clock::parse_rfc3339).ok_or_else(|| {
                        error(
                            StatusCode::BAD_REQUEST,
                            "bad_request",
                            format!("set must be an RFC 3339 time such as \"2026-01-05T09:00:00Z\", got {v}"),
                        )
                    })?;
                    proxy.timer.set_ms(t);
                }
                _ => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "send exactly one of {\"advance_ms\": N} or {\"set\": \"<RFC 3339>\"}".into(),
                    ))
                }
            }
            tracing::info!(now = %rfc3339_ms(proxy.timer.now_ms()), "virtual clock moved by the admin API");
            reply(StatusCode::OK, now())
        }
        (&Method::POST, "/tokens/expire") => {
            let m = json_body(body)?;
            unknown_fields(&m, &["client_id", "token"], "POST /mock/admin/tokens/expire")?;
            let text = |k: &str| -> Result<Option<String>, Answer> {
                match m.get(k) {
                    None => Ok(None),
                    Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                    Some(v) => Err(error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        format!("{k} must be a non-empty string, got {v}"),
                    )),
                }
            };
            use crate::overlay::auth::ExpireFilter;
            let filter = match (text("client_id")?, text("token")?) {
                (None, None) => ExpireFilter::All,
                (Some(c), None) => ExpireFilter::Client(c),
                (None, Some(t)) => ExpireFilter::Token(t),
                (Some(_), Some(_)) => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "send {} (all), {\"client_id\": ID} or {\"token\": T}, not both".into(),
                    ))
                }
            };
            let n = auth_overlay(proxy)?.expire(&filter, proxy.timer.now_ms());
            tracing::info!(expired = n, "tokens expired by the admin API");
            reply(StatusCode::OK, json!({"expired": n}))
        }
        (&Method::GET, "/tokens") => {
            let list = auth_overlay(proxy)?.tokens(proxy.timer.now_ms());
            reply(StatusCode::OK, serde_json::to_value(list).unwrap_or(Value::Null))
        }
        (&Method::POST, "/cassette") => {
            let m = json_body(body)?;
            unknown_fields(&m, &["name"], "POST /mock/admin/cassette")?;
            let name = match m.get("name") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "send {\"name\": NAME}: a cassette name under the cassettes directory or a .jsonl path".into(),
                    ))
                }
            };
            switch_cassette(proxy, name).await?
        }
        (&Method::POST, "/faults") => {
            let v: Value = Value::Object(json_body(body)?);
            let id = faults_overlay(proxy)?
                .add(&v, proxy.timer.now_ms())
                .map_err(|m| error(StatusCode::BAD_REQUEST, "bad_fault", m))?;
            reply(StatusCode::OK, json!({"id": id}))
        }
        (&Method::GET, "/faults") => {
            reply(StatusCode::OK, Value::Array(faults_overlay(proxy)?.list(proxy.timer.now_ms())))
        }
        (&Method::DELETE, "/faults") => {
            let n = faults_overlay(proxy)?.remove(None);
            tracing::info!(removed = n, "fault rules cleared by the admin API");
            reply(StatusCode::OK, json!({"removed": n}))
        }
        (&Method::DELETE, r) if r.starts_with("/faults/") => {
            let id = &r["/faults/".len()..];
            match faults_overlay(proxy)?.remove(Some(id)) {
                0 => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no fault rule `{id}`; GET /mock/admin/faults lists them"),
                ),
                n => {
                    tracing::info!(id, "fault rule removed by the admin API");
                    reply(StatusCode::OK, json!({"removed": n}))
                }
            }
        }
        (&Method::POST, "/scope") => {
            let m = json_body(body)?;
            unknown_fields(&m, &["name"], "POST /mock/admin/scope")?;
            let bad = |msg: String| error(StatusCode::BAD_REQUEST, "bad_request", msg);
            let name = match m.get("name") {
                Some(Value::Null) => None,
                Some(Value::String(s)) => {
                    crate::scope::check_name(s).map_err(bad)?;
                    Some(s.as_str())
                }
                _ => {
                    return Err(
                        bad("send {\"name\": \"<test id>\"} to open a scope, {\"name\": null} to end it".into()),
                    )
                }
            };
            let open = proxy.open_scope(name);
            reply(StatusCode::OK, json!({"scope": open.as_deref()}))
        }
        (&Method::GET, "/scope") => reply(StatusCode::OK, json!({"scope": proxy.journal.scopes.opened().as_deref()})),
        (&Method::GET, "/scopes") => reply(StatusCode::OK, serde_json::to_value(proxy.scopes()).unwrap_or(Value::Null)),
        (&Method::GET, "/sessions") => reply(StatusCode::OK, state_overlay(proxy)?.list(proxy.timer.now_ms())),
        (&Method::GET, "/machines") => reply(StatusCode::OK, state_overlay(proxy)?.machines()),
        (_, r) if session_route(r).is_some() => {
            let (id, action) = session_route(r).expect("checked");
            return session_call(method, id, action, body, proxy).await;
        }
        (&Method::GET, "/ws/sessions") => {
            reply(StatusCode::OK, serde_json::to_value(proxy.ws.sessions()).unwrap_or(Value::Null))
        }
        (&Method::POST, "/ws/events") => {
            let m = json_body(body)?;
            unknown_fields(
                &m,
                &["session", "topic", "event", "delay_ms", "jitter_ms", "duplicate", "reorder"],
                "POST /mock/admin/ws/events",
            )?;
            let bad = |msg: String| error(StatusCode::BAD_REQUEST, "bad_request", msg);
            let text = |k: &str| -> Result<Option<String>, Answer> {
                match m.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(v) => Err(bad(format!("{k} must be a string, got {v}"))),
                }
            };
            let num = |k: &str| -> Result<u64, Answer> {
                match m.get(k) {
                    None | Some(Value::Null) => Ok(0),
                    Some(v) => v.as_u64().ok_or_else(|| bad(format!("{k} must be a whole number ≥ 0, got {v}"))),
                }
            };
            let event = match m.get("event") {
                Some(e @ Value::Object(_)) => e.clone(),
                Some(v) => return Err(bad(format!("event must be the whole JSON message (an object), got {v}"))),
                None => return Err(bad("event is required: the whole JSON message to send".into())),
            };
            let reorder = match m.get("reorder") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(v) => return Err(bad(format!("reorder must be true or false, got {v}"))),
            };
            let push = crate::ws::Push {
                session: text("session")?,
                topic: text("topic")?,
                event,
                delay_ms: num("delay_ms")?,
                jitter_ms: num("jitter_ms")?,
                duplicate: num("duplicate")?,
                reorder,
            };
            match proxy.ws.push(push).await {
                Ok(n) => reply(StatusCode::OK, json!({"queued": n})),
                Err(msg) => error(StatusCode::NOT_FOUND, "not_found", msg),
            }
        }
        (
            _,
            "/health" | "/journal" | "/reset" | "/clock" | "/tokens/expire" | "/tokens" | "/cassette" | "/faults"
            | "/ws/sessions" | "/ws/events" | "/sessions" | "/machines" | "/scope" | "/scopes",
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on /mock/admin{route}"),
        ),
        _ => error(StatusCode::NOT_FOUND, "not_found", format!("no admin route {method} /mock/admin{route}")),
    })
}

/// `POST /cassette`: replays another cassette from the same directory (replay mode only). The new
/// cassette is opened off the async threads, then the proxy takes its index and resets.
async fn switch_cassette(proxy: &Arc<Proxy>, name: String) -> Result<Answer, Answer> {
    if proxy.mode != crate::proxy::Mode::Replay {
        return Err(error(
            StatusCode::CONFLICT,
            "not_replaying",
            format!("cassettes are switched in replay only; this callvcr is in {} mode", proxy.mode.as_str()),
        ));
    }
    let Some(dir) = proxy.cassettes_dir.clone() else {
        return Err(error(StatusCode::CONFLICT, "no_cassettes_dir", "this callvcr has no cassettes directory".into()));
    };
    let is_file = name.ends_with(".jsonl");
    if !is_file && (name.contains('/') || name.contains('\\') || name.starts_with('.')) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`{name}` is not a cassette name (a name has no `/` and does not start with `.`; a file ends in .jsonl)"),
        ));
    }
    let matcher = proxy.matcher.clone();
    let (cfg, now) = (proxy.config.clone(), proxy.timer().now_ms());
    let loaded = tokio::task::spawn_blocking(move || crate::proxy::open_replay(&cfg, &name, &dir, &matcher, now)).await;
    let (name, index, frames) = match loaded {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return Err(error(StatusCode::NOT_FOUND, "cassette", e.to_string())),
        Err(e) => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())),
    };
    let n = index.len();
    proxy.set_index(Arc::new(index), frames, name.clone());
    tracing::info!(cassette = %name, exchanges = n, "switched cassette (and reset)");
    Ok(reply(StatusCode::OK, json!({"cassette": name, "exchanges": n})))
}

/// Serves the admin API until `stop` turns true.
pub(crate) async fn serve(listener: TcpListener, proxy: Arc<Proxy>, drain: Drain, stop: watch::Receiver<bool>) {
    let Ok(local) = listener.local_addr() else {
        tracing::error!("the admin listener has no address; not serving the admin API");
        return;
    };
    let stop_events = stop.clone();
    crate::listen::accept_loop(listener, "admin API", stop, move |stream, peer| {
        let stop_events = stop_events.clone();
        let p = proxy.clone();
        let w = drain.clone();
        async move {
            let stop = stop_events.clone();
            let svc = service_fn(move |req| {
                let p = p.clone();
                let stop = stop.clone();
                async move { Ok::<_, Infallible>(handle(req, peer, local, p, stop).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            let _ = w.watch(conn, crate::listen::ConnWatch::new(false)).await;
        }
    })
    .await
}
