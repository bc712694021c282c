//! The web inspector on the admin listener: its page (`/ui`, files embedded in the binary), its
//! live event stream (`/mock/admin/events`, server-sent events), and the routes only it needs
//! (a journal entry in full, a WebSocket session's frames, the loaded cassette's exchanges).
//! Behind the same rules as the API; a browser proves `admin.token` once, by `/ui?token=`, and
//! then carries it in an `HttpOnly`, `SameSite=Strict` cookie no other site's page can send.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{error, reply};
use crate::proxy::Proxy;

/// Any admin answer's body: a whole JSON or page, or the event stream.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A whole answer as an admin body.
pub(crate) fn boxed(r: Response<Full<Bytes>>) -> Response<Body> {
    r.map(|b| b.boxed_unsync())
}

/// The cookie that carries `admin.token` for the inspector's page.
const COOKIE: &str = "callvcr_admin";

/// The page's files, embedded at build time (no CDN, nothing fetched).
const FILES: &[(&str, &str, &str)] = &[
    ("/ui", "text/html; charset=utf-8", include_str!("../../ui/index.html")),
    ("/ui/app.js", "text/javascript; charset=utf-8", include_str!("../../ui/app.js")),
    ("/ui/app.css", "text/css; charset=utf-8", include_str!("../../ui/app.css")),
];

/// Where the page may load from and talk to: itself only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// What a browser without the token sees.
const SIGN_IN: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>callvcr inspector</title></head>\
<body><h1>callvcr inspector</h1><p>This admin API has a token (<code>admin.token</code>). Open \
<code>/ui?token=&lt;admin.token&gt;</code> once; the browser then keeps it in a cookie for this page only.</p></body></html>\n";

/// Whether the request carries `admin.token` in the inspector's cookie.
pub(crate) fn cookie_matches(req: &Request<Incoming>, token: &str) -> bool {
    req.headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(';').filter_map(|kv| kv.trim().split_once('=')).any(|(k, val)| k == COOKIE && val == token))
}

/// The inspector's page and its files. With `admin.token` set, `/ui?token=<token>` sets the cookie
/// and goes to `/ui`; without the cookie (or with a wrong token) the page says how to get in.
pub(crate) fn page(req: &Request<Incoming>, path: &str, admin: &crate::config::AdminConfig) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return boxed(error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{path} answers GET only")));
    }
    if let Some(token) = &admin.token {
        let offered = req
            .uri()
            .query()
            .and_then(|q| crate::encoding::decode_pairs(q).into_iter().find(|(k, _)| k == "token").map(|(_, v)| v));
        match offered {
            Some(t) if &t == token => {
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = StatusCode::SEE_OTHER;
                r.headers_mut().insert(http::header::LOCATION, HeaderValue::from_static("/ui"));
                let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    r.headers_mut().insert(http::header::SET_COOKIE, v);
                }
                r.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return boxed(r);
            }
            Some(_) => return boxed(error(StatusCode::UNAUTHORIZED, "unauthorized", "that is not admin.token".into())),
            None if !cookie_matches(req, token) => {
                let mut r = Response::new(Full::new(Bytes::from_static(SIGN_IN.as_bytes())));
                *r.status_mut() = StatusCode::UNAUTHORIZED;
                let h = r.headers_mut();
                h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
                h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                h.insert(http::header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
                return boxed(r);
            }
            None => {}
        }
    }
    let Some((_, ct, text)) = FILES.iter().find(|(p, _, _)| *p == path) else {
        return boxed(error(StatusCode::NOT_FOUND, "not_found", format!("no inspector file {path}")));
    };
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(http::header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(http::header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(http::header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    boxed(r)
}

/// The live event stream: `hello` with the health, then every event the journal's [`Live`]
/// publishes (`journal`, `captured`, `changed`, `state`, `ws`), a comment every 15 s to keep it
/// open, `lagged` when this page fell behind; it ends when callvcr stops.
///
/// [`Live`]: crate::journal::Live
pub(crate) fn events(proxy: Arc<Proxy>, stop: watch::Receiver<bool>) -> Response<Body> {
    let watch = proxy.journal.live.watch();
    let hello = crate::journal::sse("hello", &super::health(&proxy));
    let state = (watch, Some(hello), stop);
    let stream = futures_util::stream::unfold(state, |(mut w, first, mut stop)| async move {
        if let Some(h) = first {
            return Some((Ok(Frame::data(Bytes::from(h))), (w, None, stop)));
        }
        if *stop.borrow() {
            return None;
        }
        let text = tokio::select! {
            _ = stop.changed() => return None,
            next = tokio::time::timeout(Duration::from_secs(15), w.rx.recv()) => match next {
                Err(_) => Bytes::from_static(b": keep-alive\n\n"),
                Ok(Ok(ev)) => Bytes::from(ev.as_bytes().to_vec()),
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                    Bytes::from(crate::journal::sse("lagged", &json!({"missed": n})))
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return None,
            },
        };
        Some((Ok::<_, Infallible>(Frame::data(text)), (w, None, stop)))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The inspector's own routes below `/mock/admin`; `None` for any other.
pub(crate) fn route(method: &Method, route: &str, proxy: &Arc<Proxy>) -> Option<Response<Full<Bytes>>> {
    if method != Method::GET {
        return None;
    }
    if let Some(seq) = route.strip_prefix("/journal/") {
        let Ok(seq) = seq.parse::<u64>() else {
            return Some(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("`{seq}` is not a journal sequence number"),
            ));
        };
        let entry = proxy.journal().into_iter().find(|e| e.seq == seq);
        return Some(match (entry, proxy.captures.get(seq)) {
            (None, _) => error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no journal entry {seq} (the journal keeps the last {})", crate::proxy::JOURNAL_CAP),
            ),
            (Some(e), None) => reply(
                StatusCode::OK,
                json!({"entry": e, "captured": false, "why": "requests are kept in full only while a page watches /mock/admin/events"}),
            ),
            (Some(e), Some(c)) => {
                let mut v = (*c).clone();
                if proxy.recorder().is_some() {
                    // Forwarded and kept: answered upstream with nothing else to say (a
                    // passthrough or a failed write says so in its detail).
                    v["stored"] = Value::Bool(e.answered_by == "upstream" && e.detail.is_none());
                }
                v["entry"] = serde_json::to_value(&e).unwrap_or(Value::Null);
                v["captured"] = Value::Bool(true);
                reply(StatusCode::OK, v)
            }
        });
    }
    if let Some(id) = route.strip_prefix("/ws/sessions/").and_then(|r| r.strip_suffix("/frames")) {
        return Some(match proxy.ws.frames_of(id) {
            Some(frames) => reply(StatusCode::OK, Value::Array(frames)),
            None => error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no WebSocket session `{id}`; GET /mock/admin/ws/sessions lists them"),
            ),
        });
    }
    if route == "/cassette" {
        return Some(reply(StatusCode::OK, proxy.cassette_listing()));
    }
    None
}
