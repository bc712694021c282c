//! callvcr's own refusals, one type: what went wrong and on which side. A `Failure` makes the
//! response (a JSON body with a `callvcr.*` code and a marker header), the journal entry and the
//! log line, so the three always agree.

use http::header::HeaderValue;
use http::{Response, StatusCode};
use serde_json::{Map, Value};

use super::{json_response, Proxy, ProxyBody};
use crate::upstream::{FailureKind, UpstreamError};

/// Which side a failure is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's request cannot be handled (malformed, too large, too slow).
    Request,
    /// The platform could not be reached or answered badly (record modes).
    Upstream(FailureKind),
    /// The cassette could not be read or written.
    Cassette,
    /// No recording matches (replay).
    Miss,
    /// The host is not one callvcr intercepts, and replay never reaches the network.
    NotIntercepted,
    /// A path callvcr should never take (a bug, said plainly).
    Internal,
}

impl Side {
    /// The marker header and its value: `x-callvcr-error: <side>`, or `x-callvcr-miss: 1`.
    fn marker(self) -> (&'static str, &'static str) {
        match self {
            Side::Request => ("x-callvcr-error", "request"),
            Side::Upstream(_) => ("x-callvcr-error", "upstream"),
            Side::Cassette => ("x-callvcr-error", "cassette"),
            Side::Miss => ("x-callvcr-miss", "1"),
            Side::NotIntercepted => ("x-callvcr-error", "not-intercepted"),
            Side::Internal => ("x-callvcr-error", "internal"),
        }
    }

    /// Who the journal says answered.
    fn answered_by(self) -> &'static str {
        match self {
            Side::Upstream(_) => "upstream",
            Side::Miss => "miss",
            _ => "callvcr",
        }
    }
}

/// One of callvcr's own refusals.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Which side it is on.
    pub side: Side,
    /// HTTP status.
    pub status: StatusCode,
    /// `callvcr.<area>.<what>` (or the platform's code where an SDK reads it).
    pub code: String,
    /// What happened, for a person.
    pub message: String,
    /// The journal's detail (`request-too-large`, `upstream-error:timeout`...); none for a miss.
    pub detail: Option<String>,
    /// More body fields (an upstream failure's kind and host, a miss's closest recordings).
    pub extra: Map<String, Value>,
    /// Close the connection after the answer (a client too slow to keep its slot).
    pub close: bool,
}

impl Failure {
    /// The common part of the constructors: no extra body fields, the connection kept open.
    fn new(side: Side, status: StatusCode, code: &str, message: String, detail: Option<&str>) -> Failure {
        Failure {
            side,
            status,
            code: code.to_string(),
            message,
            detail: detail.map(String::from),
            extra: Map::new(),
            close: false,
        }
    }

    /// A request callvcr cannot handle; `detail` names it in the journal.
    pub fn request(status: StatusCode, code: &str, message: String, detail: &str) -> Failure {
        Failure::new(Side::Request, status, code, message, Some(detail))
    }

    /// The platform could not be reached, or answered so badly nothing could be stored.
    pub fn upstream(e: &UpstreamError, host: &str) -> Failure {
        let status = if e.kind == FailureKind::Timeout { StatusCode::GATEWAY_TIMEOUT } else { StatusCode::BAD_GATEWAY };
        let kind = e.kind.as_str();
        let mut f = Failure::new(
            Side::Upstream(e.kind),
            status,
            &format!("callvcr.upstream.{kind}"),
            format!("callvcr could not reach the upstream {host}: {kind} failure: {}", e.detail),
            Some(&format!("upstream-error:{kind}")),
        );
        f.extra.insert("kind".into(), kind.into());
        f.extra.insert("host".into(), e.host.clone().into());
        f.extra.insert("detail".into(), e.detail.clone().into());
        f
    }

    /// The cassette could not be read or written.
    pub fn cassette(code: &str, message: String, detail: &str) -> Failure {
        Failure::new(Side::Cassette, StatusCode::INTERNAL_SERVER_ERROR, code, message, Some(detail))
    }

    /// No recording matches; `extra` carries what the miss explanation adds.
    pub fn miss(message: String, extra: Map<String, Value>) -> Failure {
        let mut f = Failure::new(Side::Miss, StatusCode::NOT_FOUND, "callvcr.replay.miss", message, None);
        f.extra = extra;
        f
    }

    /// A host replay does not reach.
    pub fn not_intercepted(host: &str) -> Failure {
        Failure::new(
            Side::NotIntercepted,
            StatusCode::FORBIDDEN,
            "callvcr.host.not_configured",
            format!("callvcr is replaying and does not reach {host}: it is not a configured host"),
            Some("not-intercepted"),
        )
    }

    /// A path callvcr should never take.
    pub fn internal(message: &str) -> Failure {
        Failure::new(Side::Internal, StatusCode::INTERNAL_SERVER_ERROR, "callvcr.internal", message.into(), None)
    }

    /// The answer: `{message, code, status, ...extra}` with the side's marker header.
    pub fn response(&self) -> Response<ProxyBody> {
        let mut body = Map::new();
        body.insert("message".into(), self.message.clone().into());
        body.insert("code".into(), self.code.clone().into());
        body.insert("status".into(), self.status.as_u16().into());
        body.extend(self.extra.clone());
        let mut r = json_response(self.status, self.side.marker(), Value::Object(body));
        if self.close {
            r.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }

    /// The log line, at the level its side calls for: the client's request or a miss at warn, a
    /// host not intercepted at info, an upstream, cassette or internal failure at error.
    fn log(&self, method: &str, host: &str, path: &str) {
        match self.side {
            Side::Request => tracing::warn!(%method, %host, %path, code = %self.code, "{}", self.message),
            Side::Miss => tracing::warn!(%method, %host, %path, "{}", self.message),
            Side::NotIntercepted => tracing::info!(%method, %host, %path, "{}", self.message),
            Side::Upstream(k) => {
                tracing::error!(kind = k.as_str(), %host, %path, "upstream failure, nothing stored: {}", self.message)
            }
            Side::Cassette | Side::Internal => tracing::error!(%method, %host, %path, "{}", self.message),
        }
    }
}

impl Proxy {
    /// Answers with `f`: logged, journaled and written as one.
    pub(crate) fn refuse(&self, f: Failure, method: &str, host: &str, path: &str) -> Response<ProxyBody> {
        f.log(method, host, path);
        self.note(method, host, path, f.status.as_u16(), f.side.answered_by(), f.detail.as_deref());
        f.response()
    }
}
