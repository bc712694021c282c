//! The admin API that tests drive, under `/mock/admin/`: JSON in and out, loopback only unless
//! configured, optional bearer token. This part serves health, journal, reset and clock reads;
//! overlay controls join it as the overlays land.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::listen::Drain;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::rfc3339_ms;
use crate::proxy::Proxy;

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap_or_default())));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, code: &str, message: String) -> Response<Full<Bytes>> {
    reply(status, json!({"error": code, "message": message}))
}

/// Answers one admin request from `peer`.
pub async fn handle(req: Request<Incoming>, peer: SocketAddr, proxy: Arc<Proxy>) -> Response<Full<Bytes>> {
    let admin = &proxy.config.admin;
    if !peer.ip().is_loopback() && !admin.allow_remote {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the admin API answers loopback callers only; {peer} is not one (set admin.allow_remote: true in proxy.yaml to allow it)"),
        );
    }
    if let Some(token) = &admin.token {
        let ok = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t == token);
        if !ok {
            return error(StatusCode::UNAUTHORIZED, "unauthorized", "send Authorization: Bearer <admin.token>".into());
        }
    }
    let path = req.uri().path().trim_end_matches('/').to_string();
    let Some(route) = path.strip_prefix("/mock/admin") else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no admin route {path}; routes live under /mock/admin/"),
        );
    };
    match (req.method().clone(), route) {
        (Method::GET, "/health") => reply(
            StatusCode::OK,
            json!({
                "status": "ok",
                "mode": proxy.mode.as_str(),
                "cassette": proxy.cassette_name.read().map(|s| s.clone()).unwrap_or_default(),
            }),
        ),
        (Method::GET, "/journal") => {
            reply(StatusCode::OK, serde_json::to_value(proxy.journal()).unwrap_or(Value::Null))
        }
        (Method::POST, "/reset") => {
            proxy.reset();
            reply(StatusCode::OK, json!({"reset": true}))
        }
        (Method::GET, "/clock") => reply(StatusCode::OK, json!({"now": rfc3339_ms(proxy.clock.now_ms())})),
        (_, "/health" | "/journal" | "/reset" | "/clock") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed on /mock/admin{route}", req.method()),
        ),
        _ => error(StatusCode::NOT_FOUND, "not_found", format!("no admin route {} /mock/admin{route}", req.method())),
    }
}

/// Serves the admin API until `stop` turns true.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, drain: Drain, stop: watch::Receiver<bool>) {
    crate::listen::accept_loop(listener, "admin API", stop, move |stream, peer| {
        let p = proxy.clone();
        let w = drain.clone();
        async move {
            let svc = service_fn(move |req| {
                let p = p.clone();
                async move { Ok::<_, Infallible>(handle(req, peer, p).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            let _ = w.watch(conn).await;
        }
    })
    .await
}
